//! `confer gateway`: signalling, the tenant API and the web app, in front of a remote
//! room service and the SFUs it places rooms on.

use std::sync::Arc;

use confer_chat::grpc::GrpcChat;
use confer_gateway::{ChatLink, GatewayConfig, SfuDirectory};
use confer_room::grpc::GrpcRoom;
use tracing::info;

use crate::cli::GatewayArgs;

pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let tls = args.tls.load()?;
    let room = GrpcRoom::connect(&args.room_service, tls.as_ref())?;
    let listener = super::bind(args.listen).await?;
    let mut config = GatewayConfig {
        files: args.files.config()?,
        recordings: args.recordings.recordings_dir.clone(),
        recordings_keep: args.recordings_keep.keep(),
        region: args.region.clone(),
        trusted_proxies: args.trusted_proxies.clone(),
        chat_rate: args.chat_rate.rate(),
        liveness: args.liveness.liveness(),
        ..GatewayConfig::default()
    };
    if let Some(id) = args.gateway_id {
        config.gateway_id = id;
    }
    let chat = match (&args.chat_service, &args.redis_url) {
        (Some(addr), Some(redis)) => ChatLink {
            api: Arc::new(GrpcChat::connect(addr, tls.as_ref())?),
            bus: confer_chat::Bus::redis(redis)?,
            stats: None,
        },
        _ => {
            tracing::warn!("no --chat-service: chat is kept by this gateway alone, in memory");
            ChatLink::local(confer_chat::connect("sqlite::memory:", None).await?)
        }
    };
    info!(http = %listener.local_addr()?, room = %args.room_service, gateway = %config.gateway_id, grpc_tls = tls.is_some(), "gateway ready");
    confer_gateway::run(
        config,
        listener,
        Arc::new(room),
        SfuDirectory::remote(tls),
        chat,
        shutdown,
    )
    .await
}
