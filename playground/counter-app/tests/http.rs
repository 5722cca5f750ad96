#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The counter app's HTTP face through the router, with the production connectors
//! aimed at a closed local port: what a person sees while MySQL and Dragonfly are down.
//! The counting itself runs against the simulated cluster in
//! component-tests/tests/playground_apps.rs.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bloodraven::production::dragonfly::RedisDragonflyConnector;
use bloodraven::production::mysql::MysqlProtocolConnector;
use bloodraven::seams::object_storage::TcpDialer;
use bloodraven_counter_app::{Args, CounterApp, http};
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn app(extra: &[&str]) -> axum::Router {
    let port = closed_port().to_string();
    let mut argv = vec![
        "counter-app",
        "--mysql-host",
        "127.0.0.1",
        "--mysql-port",
        &port,
        "--dragonfly-host",
        "127.0.0.1",
        "--dragonfly-port",
        &port,
        "--timeout-ms",
        "500",
    ];
    argv.extend_from_slice(extra);
    let args = Args::try_parse_from(argv).unwrap();
    http::router(Arc::new(CounterApp::new(
        Arc::new(MysqlProtocolConnector::new(
            Arc::new(TcpDialer),
            args.mysql_timeouts(),
        )),
        args.mysql_target(),
        Arc::new(RedisDragonflyConnector::new(args.dragonfly_timeouts())),
        args.dragonfly_target(),
        args.counter_name.clone(),
    )))
}

async fn call(router: axum::Router, method: &str, path: &str) -> (StatusCode, String) {
    let response = router
        .oneshot(
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn healthz_answers_without_any_backend() {
    assert_eq!(
        call(app(&[]), "GET", "/healthz").await,
        (StatusCode::OK, "ok".to_string())
    );
}

#[tokio::test]
async fn the_page_shows_both_counters_and_the_increment_button() {
    let (status, page) = call(app(&[]), "GET", "/").await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "MySQL counter",
        "Cache (Dragonfly)",
        "+ Increment",
        "/api/increment",
    ] {
        assert!(page.contains(needle), "page lacks {needle:?}");
    }
}

#[tokio::test]
async fn unreachable_mysql_is_a_503_naming_the_target_for_reads_and_increments() {
    for (method, path) in [("GET", "/api/counter"), ("POST", "/api/increment")] {
        let (status, body) = call(app(&[]), method, path).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}: {body}"
        );
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["name"], "main");
        assert_eq!(body["mysql"]["value"], Value::Null, "{body:#}");
        let target = body["mysql"]["target"].as_str().unwrap().to_string();
        assert!(target.starts_with("127.0.0.1:"), "{body:#}");
        let error = body["mysql"]["error"].as_str().unwrap();
        assert!(error.contains(&target), "error names the target: {body:#}");
        // The cache is reported on its own, also unreachable.
        assert_eq!(body["cache"]["value"], Value::Null, "{body:#}");
        assert!(body["cache"]["error"].is_string(), "{body:#}");
    }
}

#[tokio::test]
async fn without_a_dragonfly_service_the_cache_is_absent_not_an_error() {
    let (_, body) = call(app(&["--dragonfly-host", ""]), "GET", "/api/counter").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["cache"], Value::Null, "{body:#}");
}

#[tokio::test]
async fn increment_is_a_post() {
    let (status, _) = call(app(&[]), "GET", "/api/increment").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}
