//! The gateway: what browsers and SDKs talk to.
//!
//! - `/v1/signal`: WebSocket signalling ([`session`]): join with token check, SDP
//!   offer/answer through the SFU's control API, trickle ICE, chat, mute state.
//! - `/r/<room>`: the web app ([`web`]); `/metrics`: Prometheus text ([`metrics`]).
//!
//! Rooms as users see them (who is in, names, chat) live in [`rooms`], in memory.
//! Not here: media. The gateway reaches the SFU only through [`confer_sfu::SfuApi`].

mod config;
mod metrics;
mod relay;
mod rooms;
mod session;
mod web;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use confer_sfu::SfuApi;
use tokio::sync::watch;

pub use config::GatewayConfig;

pub(crate) struct AppState {
    config: GatewayConfig,
    sfu: Arc<dyn SfuApi>,
    rooms: rooms::Rooms,
    metrics: metrics::Metrics,
}

/// Serves the gateway on `listener` until `shutdown` fires.
pub async fn run(
    config: GatewayConfig,
    listener: tokio::net::TcpListener,
    sfu: Arc<dyn SfuApi>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let state = Arc::new(AppState {
        config,
        sfu,
        rooms: rooms::Rooms::default(),
        metrics: metrics::Metrics::default(),
    });
    tokio::spawn(relay::relay_sfu_events(state.clone()));
    let app = Router::new()
        .route("/v1/signal", get(session::upgrade))
        .route("/metrics", get(metrics::render))
        .route("/healthz", get(|| async { "ok" }))
        .merge(web::routes())
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await?;
    Ok(())
}
