//! The counter app's HTTP face: the page (`GET /`), the JSON API (`GET /api/counter`,
//! `POST /api/increment`) and the probe endpoint (`GET /healthz`). Handlers only
//! translate between HTTP and [`CounterApp`].

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::counter::{CounterApp, CounterReading};

/// The page: one self-contained HTML file (no framework, no external assets), polling
/// `/api/counter` and posting `/api/increment`.
pub const PAGE: &str = include_str!("../assets/index.html");

pub fn router(app: Arc<CounterApp>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/counter", get(counter))
        .route("/api/increment", post(increment))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(app)
}

async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
}

/// 200 when the MySQL counter (the durable one) was read or written, 503 when not: the
/// body says why either way. The cache counter's failure alone is not an error.
fn answer(reading: CounterReading) -> Response {
    let status = if reading.mysql.error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(reading)).into_response()
}

async fn counter(State(app): State<Arc<CounterApp>>) -> Response {
    answer(app.read().await)
}

async fn increment(State(app): State<Arc<CounterApp>>) -> Response {
    answer(app.increment().await)
}
