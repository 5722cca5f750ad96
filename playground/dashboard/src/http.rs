//! The dashboard's HTTP face: the page (`GET /`), what it renders (`GET /api/state`,
//! polled by the page every second) and the probe endpoint (`GET /healthz`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::sources::Sources;

/// One self-contained HTML file (no framework, no external assets).
pub const PAGE: &str = include_str!("../assets/index.html");

pub fn router(sources: Sources) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/state", get(state))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(sources)
}

async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
}

async fn state(State(sources): State<Sources>) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(sources.state())).into_response()
}
