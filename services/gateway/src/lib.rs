//! The gateway: what browsers, SDKs and tenant backends talk to.
//!
//! - `/v1/signal`: WebSocket signalling ([`session`]): join through the room service
//!   (tokens, passwords, waiting room), SDP offer/answer with the room's SFU, trickle
//!   ICE, chat (through the chat service, fanned out by [`chat`]), mute, host controls.
//! - `/v1/...`: the tenant REST API ([`api`]), with its OpenAPI document.
//! - `/r/<room>`: the web app ([`web`]); `/metrics`: Prometheus text ([`metrics`]).
//!
//! The gateway owns no room state: it asks the room service ([`confer_room::RoomApi`])
//! and follows its commands ([`commands`]); media goes through the SFUs
//! ([`sfus`], [`relay`]).

pub mod api;
mod chat;
mod chat_cursor;
mod chat_order;
mod chat_pace;
mod chat_rate;
mod client_addr;
mod commands;
mod config;
mod convert;
mod file_sweep;
mod files;
mod group;
mod links;
mod metrics;
mod recording_sweep;
mod relay;
mod rooms;
mod serve;
mod session;
mod sfus;
mod socket;
mod web;
mod whip;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use confer_room::RoomApi;
use tokio::sync::watch;

pub use chat::ChatLink;
pub use chat_rate::ChatRate;
pub use config::{ExtraMetrics, GatewayConfig, Liveness};
pub use files::FileConfig;
pub use sfus::{LOCAL_SFU, SfuDirectory};

pub(crate) struct AppState {
    config: GatewayConfig,
    room: Arc<dyn RoomApi>,
    sfus: SfuDirectory,
    rooms: rooms::Rooms,
    chat: chat::ChatHub,
    metrics: metrics::Metrics,
    sweep_files: Arc<file_sweep::SweepNow>,
    /// True once the room service's command stream has given its first cursor.
    commands_watched: watch::Sender<bool>,
    /// Publishers (WHIP) and players (WHEP) in rooms over HTTP.
    whip: whip::Sessions,
    /// This gateway's own signalling URL, for its WHIP publishers' sessions.
    whip_url: String,
    /// A key only this process knows, marking its own signalling sessions.
    internal_key: String,
}

/// Serves the gateway on `listener` until `shutdown` fires.
pub async fn run(
    config: GatewayConfig,
    listener: tokio::net::TcpListener,
    room: Arc<dyn RoomApi>,
    sfus: SfuDirectory,
    chat: ChatLink,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (chat, chat_inputs) = chat::ChatHub::start(chat);
    let state = Arc::new(AppState {
        config,
        room,
        sfus,
        rooms: rooms::Rooms::default(),
        chat,
        metrics: metrics::Metrics::default(),
        sweep_files: Arc::default(),
        commands_watched: watch::Sender::new(false),
        whip: whip::Sessions::default(),
        whip_url: own_signal_url(listener.local_addr()?),
        internal_key: format!("{:032x}", rand::random::<u128>()),
    });
    let hub = tokio::spawn(chat::run_hub(Arc::downgrade(&state), chat_inputs));
    if let Some(local) = state.sfus.local() {
        tokio::spawn(relay::relay_sfu_events(
            Arc::downgrade(&state),
            local.subscribe(),
        ));
    }
    let watcher = tokio::spawn(commands::watch_room_service(state.clone()));
    let sweeper = tokio::spawn(file_sweep::run(
        Arc::downgrade(&state),
        state.sweep_files.clone(),
    ));
    let recordings_sweeper = tokio::spawn(recording_sweep::run(Arc::downgrade(&state)));
    let app = Router::new()
        .route("/v1/signal", get(session::upgrade))
        .nest("/v1", api::routes())
        .merge(files::routes(state.config.files.max_bytes))
        .merge(whip::routes())
        .route("/metrics", get(metrics::render))
        .route("/healthz", get(|| async { "ok" }))
        .merge(web::routes())
        .with_state(state);
    let result = serve::serve(listener, app, shutdown).await;
    watcher.abort();
    hub.abort();
    sweeper.abort();
    recordings_sweeper.abort();
    result?;
    Ok(())
}

/// Where this gateway's signalling is reached from the gateway itself.
fn own_signal_url(bound: std::net::SocketAddr) -> String {
    let ip = match bound.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!(
        "ws://{}/v1/signal",
        std::net::SocketAddr::new(ip, bound.port())
    )
}
