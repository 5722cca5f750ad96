//! The two HTTP servers: the webhook API external-dns calls (negotiation, records,
//! adjustendpoints; every answer in external-dns's media type) and the health endpoint
//! for the kubelet's probes. Handlers only translate between HTTP and [`Zone`].

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::records::{ChangeError, Changes, Endpoint, Zone};

/// The media type of every webhook request and answer (external-dns webhook API v1).
pub const MEDIA_TYPE: &str = "application/external.dns.webhook+json;version=1";

/// The zone shared by the handlers.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<Zone>>);

impl Shared {
    pub fn new(zone: Zone) -> Self {
        Self(Arc::new(Mutex::new(zone)))
    }

    fn lock(&self) -> MutexGuard<'_, Zone> {
        // Every write builds the new record set before swapping it in, so a poisoned
        // lock still guards a consistent zone.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The webhook API (port 8888).
pub fn webhook_router(zone: Shared) -> Router {
    Router::new()
        .route("/", get(negotiate))
        .route("/records", get(records).post(apply_changes))
        .route("/adjustendpoints", axum::routing::post(adjust_endpoints))
        .with_state(zone)
}

/// The health endpoint (port 8080): `/healthz`, as external-dns's webhook guide names it.
pub fn health_router() -> Router {
    Router::new().route("/healthz", get(|| async { "ok" }))
}

fn webhook_json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, MEDIA_TYPE)], bytes).into_response(),
        Err(err) => problem(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

fn problem(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        format!("{message}\n"),
    )
        .into_response()
}

/// The JSON shape a body must have before it is decoded: serde would otherwise accept a
/// struct written as an array (`[null, null]` as a change set), which Go does not.
#[derive(Clone, Copy)]
enum Shape {
    /// A change set: an object.
    Object,
    /// A list of endpoints: an array of objects.
    ArrayOfObjects,
}

impl Shape {
    fn check(self, value: &serde_json::Value) -> Result<(), String> {
        match (self, value) {
            (Shape::Object, serde_json::Value::Object(_)) => Ok(()),
            (Shape::Object, _) => Err("a change set must be a JSON object".into()),
            (Shape::ArrayOfObjects, serde_json::Value::Array(items)) => {
                match items.iter().position(|item| !item.is_object()) {
                    Some(index) => Err(format!("endpoint [{index}] must be a JSON object")),
                    None => Ok(()),
                }
            }
            (Shape::ArrayOfObjects, _) => Err("the endpoints must be a JSON array".into()),
        }
    }
}

/// A request body must be JSON, in the webhook media type or plain `application/json`,
/// of the expected shape.
fn parse<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
    shape: Shape,
) -> Result<T, (StatusCode, String)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !matches!(
        media,
        "application/external.dns.webhook+json" | "application/json"
    ) {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {content_type:?} is not {MEDIA_TYPE}"),
        ));
    }
    let bad = |message: String| (StatusCode::BAD_REQUEST, format!("request body: {message}"));
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|err| bad(err.to_string()))?;
    shape.check(&value).map_err(bad)?;
    serde_json::from_value(value).map_err(|err| bad(err.to_string()))
}

async fn negotiate(State(zone): State<Shared>) -> Response {
    let filter = zone.lock().filter().clone();
    webhook_json(StatusCode::OK, &filter)
}

async fn records(State(zone): State<Shared>) -> Response {
    let records = zone.lock().records();
    webhook_json(StatusCode::OK, &records)
}

async fn apply_changes(State(zone): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let changes: Changes = match parse(&headers, &body, Shape::Object) {
        Ok(changes) => changes,
        Err((status, message)) => return problem(status, &message),
    };
    let result = zone.lock().apply(&changes);
    match result {
        Ok(()) => {
            tracing::info!(
                create = changes.create.len(),
                update = changes.update_new.len(),
                delete = changes.delete.len(),
                "applied changes"
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err @ ChangeError::AlreadyExists { .. }) => {
            problem(StatusCode::CONFLICT, &err.to_string())
        }
        Err(err) => problem(StatusCode::UNPROCESSABLE_ENTITY, &err.to_string()),
    }
}

async fn adjust_endpoints(State(zone): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let endpoints: Vec<Endpoint> = match parse(&headers, &body, Shape::ArrayOfObjects) {
        Ok(endpoints) => endpoints,
        Err((status, message)) => return problem(status, &message),
    };
    let adjusted = zone.lock().adjust(endpoints);
    match adjusted {
        Ok(adjusted) => webhook_json(StatusCode::OK, &adjusted),
        Err(err) => problem(StatusCode::UNPROCESSABLE_ENTITY, &err.to_string()),
    }
}
