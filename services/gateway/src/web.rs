//! The web app: static ES modules compiled into the binary, so one file runs a call.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

const INDEX_HTML: &str = include_str!("../../../web/index.html");
const ROOM_HTML: &str = include_str!("../../../web/room.html");

/// Files under `/static/`, with their content types.
const STATIC_FILES: [(&str, &str, &str); 8] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/app.js"),
    ),
    (
        "sdk.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/sdk.js"),
    ),
    (
        "muted.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/muted.js"),
    ),
    (
        "devices.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/devices.js"),
    ),
    (
        "local_media.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/local_media.js"),
    ),
    (
        "prejoin.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/prejoin.js"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/ui.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../../web/style.css"),
    ),
];

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route("/r/{room}", get(|| async { Html(ROOM_HTML) }))
        .route("/static/{file}", get(static_file))
}

async fn static_file(Path(file): Path<String>) -> Response {
    match STATIC_FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
