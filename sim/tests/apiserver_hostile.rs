#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The API server's HTTP layer under requests a careless or hostile client sends: empty
//! path segments, continue tokens it never issued, bodies of unknown media types, and
//! unknown fields under `fieldValidation`. Raw HTTP/1.1, so nothing in between fixes
//! the request up.

use std::sync::Arc;

use bloodraven::seams::Clock;
use bloodraven_sim::apiserver::{ApiServer, Caller, ResourceKey};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> jiff::Timestamp {
        "2025-01-01T00:00:00Z".parse().unwrap()
    }
}

const ME: Caller<'static> = Caller {
    user_agent: "hostile-test",
};

fn configmaps() -> ResourceKey {
    ResourceKey::core("v1", "configmaps")
}

async fn start() -> (ApiServer, std::net::SocketAddr) {
    let api = ApiServer::new(Arc::new(FixedClock));
    for crd in bloodraven::api::crds() {
        api.create(
            &ResourceKey::new("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
            None,
            serde_json::to_value(&crd).unwrap(),
            &ME,
        )
        .unwrap();
    }
    for ns in ["a", "b"] {
        api.create(
            &ResourceKey::core("v1", "namespaces"),
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            &ME,
        )
        .unwrap();
        api.create(
            &configmaps(),
            Some(ns),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}),
            &ME,
        )
        .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api.clone().serve(listener));
    (api, addr)
}

/// Sends one request; returns the status code and the whole response text.
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let content_type = content_type
        .map(|c| format!("Content-Type: {c}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, response)
}

#[tokio::test]
async fn protobuf_bodies_are_decoded_or_refused_with_the_reason() {
    let (_api, addr) = start().await;
    let protobuf = Some("application/vnd.kubernetes.protobuf");
    let (code, text) = send(
        addr,
        "POST",
        "/api/v1/namespaces/a/configmaps",
        protobuf,
        "{}",
    )
    .await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("magic"), "{text}");
    // The envelope's TypeMeta, then a field that claims more bytes than follow.
    let truncated = "k8s\0\n\u{f}\n\u{2}v1\u{12}\tConfigMap\u{12}\u{7f}";
    let (code, text) = send(
        addr,
        "POST",
        "/api/v1/namespaces/a/configmaps",
        protobuf,
        truncated,
    )
    .await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("truncated"), "{text}");
    // A kind the server does not decode from protobuf: 415, as for a CRD in Kubernetes.
    let node = "k8s\0\n\n\n\u{2}v1\u{12}\u{4}Node";
    let (code, text) = send(addr, "POST", "/api/v1/nodes", protobuf, node).await;
    assert_eq!(code, 415, "{text}");
    assert!(text.contains("v1 Node"), "{text}");
    // A decodable one is created.
    let name = "\n\u{4}\n\u{2}pb";
    let cm = format!("k8s\0\n\u{f}\n\u{2}v1\u{12}\tConfigMap\u{12}\u{6}{name}");
    let (code, text) = send(
        addr,
        "POST",
        "/api/v1/namespaces/a/configmaps",
        protobuf,
        &cm,
    )
    .await;
    assert_eq!(code, 201, "{text}");
    assert!(text.contains("\"name\":\"pb\""), "{text}");
}

#[tokio::test]
async fn an_empty_namespace_segment_is_not_cluster_scope() {
    let (api, addr) = start().await;
    let (code, text) = send(addr, "DELETE", "/api/v1/namespaces//configmaps", None, "").await;
    assert_eq!(code, 404, "{text}");
    let (code, text) = send(addr, "GET", "/api/v1/namespaces//configmaps", None, "").await;
    assert_eq!(code, 404, "{text}");
    for ns in ["a", "b"] {
        api.get(&configmaps(), Some(ns), "cm").unwrap();
    }
}

#[tokio::test]
async fn a_continue_token_this_server_never_issued_is_a_400() {
    let (_api, addr) = start().await;
    let (code, text) = send(
        addr,
        "GET",
        "/api/v1/namespaces/a/configmaps?limit=1&continue=bm90LWEtdG9rZW4",
        None,
        "",
    )
    .await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("continue"), "{text}");
    assert!(text.contains("bm90LWEtdG9rZW4"), "names the token: {text}");
}

/// Issue 12: a malformed field selector (no operator, an unescaped `=` in the value, a
/// bad escape, an unsupported field) is a 400 that names what was wrong, never a list.
#[tokio::test]
async fn malformed_field_selectors_are_a_400_naming_the_value() {
    let (_api, addr) = start().await;
    for (selector, named) in [
        ("metadata.name", "metadata.name"),
        ("metadata.name%3Dcm%3Dx", "cm=x"),
        ("metadata.name%3Dc%5Cm", "invalid escape sequence"),
        ("data.key%3Dx", "data.key"),
    ] {
        let (code, text) = send(
            addr,
            "GET",
            &format!("/api/v1/namespaces/a/configmaps?fieldSelector={selector}"),
            None,
            "",
        )
        .await;
        assert_eq!(code, 400, "{selector}: {text}");
        assert!(
            text.contains(named),
            "{selector} should name {named}: {text}"
        );
    }
    let (code, text) = send(
        addr,
        "GET",
        "/api/v1/namespaces/a/configmaps?fieldSelector=metadata.name%3Dcm",
        None,
        "",
    )
    .await;
    assert_eq!(code, 200, "a well-formed selector still lists: {text}");
}

#[tokio::test]
async fn bodies_of_unknown_media_types_are_415() {
    let (_api, addr) = start().await;
    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}).to_string();
    let (code, text) = send(
        addr,
        "POST",
        "/api/v1/namespaces/a/configmaps",
        Some("text/plain"),
        &cm,
    )
    .await;
    assert_eq!(code, 415, "{text}");
    let (code, text) = send(
        addr,
        "PATCH",
        "/api/v1/namespaces/a/configmaps/cm",
        Some("text/plain"),
        "not json",
    )
    .await;
    assert_eq!(code, 415, "{text}");
    let (code, text) = send(
        addr,
        "POST",
        "/api/v1/namespaces/a/configmaps",
        Some("application/json"),
        &cm,
    )
    .await;
    assert_eq!(code, 201, "{text}");
}

fn group_with_typo() -> String {
    json!({
        "apiVersion": "bloodraven.shipstream.io/v1alpha1",
        "kind": "MysqlFailoverGroup",
        "metadata": {"name": "orders"},
        "spec": {
            "sites": [
                {"name": "iad", "nodeSelector": {"zone": "iad"}},
                {"name": "pdx", "nodeSelector": {"zone": "pdx"}}
            ],
            "mysql": {"credentialsSecret": "orders-mysql"},
            "failover": {"detectionWindw": "3s"}
        }
    })
    .to_string()
}

#[tokio::test]
async fn strict_field_validation_names_unknown_fields() {
    let (api, addr) = start().await;
    let path = "/apis/bloodraven.shipstream.io/v1alpha1/namespaces/a/mysqlfailovergroups";
    let (code, text) = send(
        addr,
        "POST",
        &format!("{path}?fieldValidation=Strict"),
        Some("application/json"),
        &group_with_typo(),
    )
    .await;
    assert_eq!(code, 400, "{text}");
    assert!(
        text.contains(r#"strict decoding error: unknown field \"spec.failover.detectionWindw\""#),
        "{text}"
    );
    // Warn (the default): created, pruned, and the field named in a Warning header.
    let (code, text) = send(
        addr,
        "POST",
        path,
        Some("application/json"),
        &group_with_typo(),
    )
    .await;
    assert_eq!(code, 201, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains(r#"warning: 299 - "unknown field \"spec.failover.detectionwindw\"""#),
        "{text}"
    );
    let stored: Value = api
        .get(
            &ResourceKey::new(
                "bloodraven.shipstream.io",
                "v1alpha1",
                "mysqlfailovergroups",
            ),
            Some("a"),
            "orders",
        )
        .unwrap();
    assert!(
        stored.pointer("/spec/failover/detectionWindw").is_none(),
        "{stored}"
    );
    let (code, text) = send(
        addr,
        "POST",
        &format!("{path}?fieldValidation=Sloppy"),
        Some("application/json"),
        &group_with_typo(),
    )
    .await;
    assert_eq!(code, 400, "{text}");
}
