//! `confer chat`: the chat service over gRPC, on PostgreSQL and Redis.

use tracing::info;

use crate::cli::ChatArgs;

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let service = confer_chat::connect(&args.database_url, Some(&args.redis_url)).await?;
    service.spawn_expiry(shutdown.clone());
    let listener = super::bind(args.listen).await?;
    info!(listen = %listener.local_addr()?, "chat service ready");
    confer_chat::grpc::serve(service, listener, shutdown).await
}
