//! `confer dev`: gateway, room service, chat service and SFU in one process on embedded
//! defaults (SQLite in memory, live state and chat fan-out in memory, one SFU).

use std::sync::Arc;

use base64::Engine as _;
use confer_gateway::{ChatLink, GatewayConfig, LOCAL_SFU, SfuDirectory};
use confer_room::api::TenantCreated;
use confer_room::registry::{SfuNode, SfuRegistry};
use confer_room::store::MasterKey;
use confer_room::{Backends, RoomConfig};
use tracing::info;

use crate::cli::DevArgs;

/// The built-in tenant of `confer dev`; its API key is `dev` too.
const DEV_TENANT: &str = "dev";

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let secret = args.token_secret.clone().unwrap_or_else(|| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    });
    let sfu = super::start_sfu(
        args.media_bind,
        args.announce_ip,
        args.media_workers,
        args.media_gso,
        Some(args.recordings.dev_dir()),
        &shutdown,
    )
    .await?;
    let mut config = RoomConfig {
        turn: args.turn.config(),
        anonymous_tenant: (!args.require_token).then(|| DEV_TENANT.to_owned()),
        ..RoomConfig::default()
    };
    config.limits.joins_per_address.0 = args.join_burst_per_address.max(1);
    let registry = SfuRegistry::new(vec![SfuNode {
        id: "local".into(),
        region: config.default_region.clone(),
        control: LOCAL_SFU.into(),
    }]);
    let backends = Backends {
        database_url: args.database_url.clone(),
        redis_url: None,
        master_key: match &args.master_key {
            Some(key) => MasterKey::from_base64(key)?,
            None => MasterKey::random(),
        },
        database_connections: confer_room::store::DEFAULT_CONNECTIONS,
    };
    let room = confer_room::start(
        config,
        backends,
        registry,
        args.webhooks.config(),
        shutdown.clone(),
    )
    .await?;
    let dev_tenant = TenantCreated {
        tenant: DEV_TENANT.into(),
        api_key: "dev".into(),
        api_secret: secret.clone(),
    };
    room.store()
        .ensure_tenant(&dev_tenant, "Development")
        .await?;
    let chat_service = confer_chat::connect(&args.database_url, None).await?;
    chat_service.spawn_expiry(shutdown.clone());
    let chat = ChatLink::local(chat_service);
    let listener = super::bind(args.listen).await?;
    let http = listener.local_addr()?;
    let sip = start_sip(&args, http, &secret, &shutdown).await;
    let gateway = GatewayConfig {
        sfu_stats: Some(sfu.stats().clone()),
        files: args.files.config()?,
        recordings: Some(args.recordings.dev_dir()),
        recordings_keep: args.recordings_keep.keep(),
        chat_rate: args.chat_rate.rate(),
        liveness: args.liveness.liveness(),
        // The in-process SIP bridge joins over loopback for its callers.
        trusted_proxies: if sip.is_some() {
            ["127.0.0.1", "::1"]
                .iter()
                .filter_map(|net| net.parse().ok())
                .collect()
        } else {
            Vec::new()
        },
        extra_metrics: sip
            .iter()
            .map(|(_, stats)| {
                let stats = stats.clone();
                let render: confer_gateway::ExtraMetrics = Arc::new(move |out| stats.render(out));
                render
            })
            .collect(),
        ..GatewayConfig::default()
    };
    // The lines a newcomer needs; stdout so scripts can read them.
    #[allow(clippy::print_stdout)]
    {
        println!("Confer is running. Open http://{http}/r/hello?name=You in two browser tabs.");
        println!("Tenant API: key `dev`, secret `{secret}` (Basic auth) at http://{http}/v1/rooms");
        if let Some((addr, _)) = &sip {
            println!("Dial in over SIP (Opus): sip:hello@{addr}");
        }
        if args.require_token {
            println!(
                "Mint tokens with: confer token --secret {secret} --room hello --identity you"
            );
        }
    }
    info!(http = %http, media = ?sfu.media_addrs(), "confer dev ready");
    confer_gateway::run(
        gateway,
        listener,
        Arc::new(room),
        SfuDirectory::with_local(Arc::new(sfu)),
        chat,
        shutdown,
    )
    .await
}

/// The SIP bridge on `--sip-listen`, joining through this process's gateway with the
/// built-in tenant's key; `None` when turned off or its port is taken (dev goes on
/// without dial-in then).
async fn start_sip(
    args: &DevArgs,
    http: std::net::SocketAddr,
    secret: &str,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> Option<(std::net::SocketAddr, confer_sip::SipStats)> {
    if args.sip_listen == "off" {
        return None;
    }
    let listen = match args.sip_listen.parse() {
        Ok(listen) => listen,
        Err(_) => {
            tracing::warn!(sip_listen = %args.sip_listen, "not an address or `off`: running without SIP");
            return None;
        }
    };
    let key = confer_auth::TokenKey::new(DEV_TENANT, secret.as_bytes());
    let signal_url = format!("ws://{http}/v1/signal");
    match super::sip::start(listen, &args.sip, signal_url, key, shutdown.clone()).await {
        Ok(started) => Some(started),
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "running without SIP");
            None
        }
    }
}
