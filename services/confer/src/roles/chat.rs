//! `confer chat`: the chat service over gRPC, on PostgreSQL and Redis, with its
//! `/metrics`.

use axum::http::{HeaderMap, header};
use tracing::info;

use crate::cli::ChatArgs;

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let service = confer_chat::connect_with(
        &args.database_url,
        Some(&args.redis_url),
        args.database_connections,
    )
    .await?;
    service.spawn_expiry(shutdown.clone());
    let listener = super::bind(args.listen).await?;
    let metrics = super::bind(args.metrics_listen).await?;
    info!(
        listen = %listener.local_addr()?,
        metrics = %metrics.local_addr()?,
        "chat service ready"
    );
    tokio::spawn(serve_metrics(metrics, service.stats().clone()));
    confer_chat::grpc::serve(service, listener, shutdown).await
}

/// `/metrics`: entries stored, duplicates, refusals by reason, publish failures,
/// expiry, send time; Prometheus text or OpenMetrics by the scraper's `Accept`.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    stats: confer_chat::ChatStats,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let format = confer_metrics::Format::negotiate(
                headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
            );
            let mut out = confer_metrics::Exposition::new(format);
            stats.render(&mut out);
            let text = out.finish();
            async move { ([(header::CONTENT_TYPE, format.content_type())], text) }
        }),
    );
    axum::serve(listener, app).await?;
    Ok(())
}
