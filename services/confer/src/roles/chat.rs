//! `confer chat`: the chat service over gRPC, on PostgreSQL and Redis, with its
//! `/metrics`.

use tracing::info;

use crate::cli::ChatArgs;

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let tls = args.tls.load()?;
    let service = confer_chat::connect_with(
        &args.database_url,
        Some(&args.redis_url),
        args.database_connections,
        args.default_retention(),
    )
    .await?;
    service.spawn_expiry(shutdown.clone());
    let listener = super::bind(args.listen).await?;
    let metrics = super::bind(args.metrics_listen).await?;
    info!(
        listen = %listener.local_addr()?,
        metrics = %metrics.local_addr()?,
        grpc_tls = tls.is_some(),
        "chat service ready"
    );
    let stats = service.stats().clone();
    let pool = service.clone();
    tokio::spawn(super::metrics::serve(metrics, move |out| {
        stats.render(out);
        pool.pool_use().render(
            out,
            "confer_chat_database_connections",
            "confer_chat_database_connections_max",
        );
    }));
    confer_chat::grpc::serve(service, listener, tls, shutdown).await
}
