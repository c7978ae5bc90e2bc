//! The `/metrics` endpoint every role serves on its `--metrics-listen` address: what
//! `render` writes, as Prometheus text or OpenMetrics by the scraper's `Accept`.

use axum::http::{HeaderMap, header};

pub async fn serve<R>(listener: tokio::net::TcpListener, render: R) -> anyhow::Result<()>
where
    R: Fn(&mut confer_metrics::Exposition) + Clone + Send + Sync + 'static,
{
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let format = confer_metrics::Format::negotiate(
                headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
            );
            let mut out = confer_metrics::Exposition::new(format);
            render(&mut out);
            let text = out.finish();
            async move { ([(header::CONTENT_TYPE, format.content_type())], text) }
        }),
    );
    axum::serve(listener, app).await?;
    Ok(())
}
