#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The webhook API as external-dns calls it, through the router (no sockets).

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bloodraven_dns_webhook::http::{MEDIA_TYPE, Shared, health_router, webhook_router};
use bloodraven_dns_webhook::records::{DomainFilter, Zone};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn zone() -> Shared {
    Shared::new(Zone::new(DomainFilter {
        include: vec!["bloodraven.internal".into()],
        exclude: vec![],
    }))
}

async fn call(
    zone: &Shared,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::ACCEPT, MEDIA_TYPE);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, MEDIA_TYPE);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = webhook_router(zone.clone())
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn negotiation_returns_the_domain_filter_in_the_webhook_media_type() {
    let (status, content_type, body) = call(&zone(), "GET", "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, MEDIA_TYPE);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"include": ["bloodraven.internal"], "exclude": []})
    );
}

#[tokio::test]
async fn a_failover_flips_the_record_external_dns_pushes() {
    let zone = zone();
    let iad = json!({"dnsName": "mysql.playground.bloodraven.internal", "targets": ["10.0.0.1"],
                     "recordType": "A", "recordTTL": 30, "labels": {"owner": "playground"}});
    let pdx = json!({"dnsName": "mysql.playground.bloodraven.internal", "targets": ["10.0.0.2"],
                     "recordType": "A", "recordTTL": 30, "labels": {"owner": "playground"}});
    let (status, _, _) = call(
        &zone,
        "POST",
        "/records",
        Some(json!({"Create": [iad], "UpdateOld": null})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = call(
        &zone,
        "POST",
        "/records",
        Some(json!({"updateOld": [iad], "updateNew": [pdx]})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, content_type, body) = call(&zone, "GET", "/records", None).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, MEDIA_TYPE)
    );
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!([pdx]));
}

#[tokio::test]
async fn bad_change_sets_are_refused_with_the_reason() {
    let zone = zone();
    let outside = json!({"create": [{"dnsName": "x.example.com", "targets": ["1.2.3.4"], "recordType": "A"}]});
    let (status, _, body) = call(&zone, "POST", "/records", Some(outside)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body.contains("create[0]") && body.contains("outside the domain filter"),
        "{body}"
    );
    let record =
        json!({"dnsName": "a.bloodraven.internal", "targets": ["1.1.1.1"], "recordType": "A"});
    let (status, _, _) = call(&zone, "POST", "/records", Some(json!({"create": [record]}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, body) =
        call(&zone, "POST", "/records", Some(json!({"create": [record]}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _, body) = call(&zone, "POST", "/records", Some(json!([null, null]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = call(
        &zone,
        "POST",
        "/adjustendpoints",
        Some(json!([["a", [], "A"]])),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let empty_type = json!([{"dnsName": "a.bloodraven.internal", "targets": [], "recordType": ""}]);
    let (status, _, body) = call(&zone, "POST", "/adjustendpoints", Some(empty_type)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("endpoints[0]: recordType is empty"), "{body}");
    let response = webhook_router(zone.clone())
        .oneshot(
            Request::post("/records")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn adjust_endpoints_drops_trailing_dots() {
    let (status, _, body) = call(
        &zone(),
        "POST",
        "/adjustendpoints",
        Some(json!([{"dnsName": "a.bloodraven.internal.", "targets": ["1.1.1.1"], "recordType": "A"}])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!([{"dnsName": "a.bloodraven.internal", "targets": ["1.1.1.1"], "recordType": "A"}])
    );
}

#[tokio::test]
async fn health() {
    let response = health_router()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
