//! `confer sfu`: the media port and its internal control API.

use confer_sfu::grpc;
use tracing::info;

use crate::cli::SfuArgs;

pub async fn run(args: SfuArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let sfu = super::start_sfu(args.media_bind, args.announce_ip, &shutdown).await?;
    let listener = super::bind(args.control_listen).await?;
    info!(control = %listener.local_addr()?, media = %sfu.media_addr(), "sfu ready");
    grpc::serve(sfu, listener, shutdown).await
}
