//! The Kubernetes REST API over HTTP: discovery, the resource paths (`/api/v1/...`,
//! `/apis/G/V/...`), watch streams (newline-delimited JSON), Table responses for
//! kubectl, every patch content type, and `Status` errors. Generic over the listener,
//! so the same router serves on turmoil's simulated TCP and on real TCP.

mod discovery;

use discovery::{
    group_info, group_list, openapi_group_version, openapi_root, resource_list, version,
};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};

use super::error::ApiError;
use super::registry::ResourceInfo;
use super::table::{self, IncludeObject};
use super::{
    ApiServer, Caller, DeleteOptions, ListQuery, Patch, Propagation, ResourceKey, Subresource,
    WatchEvent,
};
use crate::seam_faults::ApiFault;

/// turmoil's TCP listener as an axum listener (turmoil's TcpStream is tokio-compatible).
pub struct TurmoilListener(pub turmoil::net::TcpListener);

impl axum::serve::Listener for TurmoilListener {
    type Io = turmoil::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(pair) => return pair,
                // A failed accept (e.g. while the host is being torn down) is retried
                // after a pause, as axum does for tokio listeners.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

pub(super) fn router(server: ApiServer) -> Router {
    Router::new().fallback(handle).with_state(server)
}

const JSON: &str = "application/json";

/// What kube-apiserver labels its protobuf `/openapi/v2` reply with (the media type
/// kubectl asks for contains an `@`, which Go's media-type parser refuses).
const OPENAPI_V2_PROTOBUF: &str = "application/octet-stream";

fn json_response(status: u16, body: &Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [(header::CONTENT_TYPE, JSON)], body.to_string()).into_response()
}

fn error_response(error: &ApiError) -> Response {
    json_response(error.code, &error.to_status())
}

async fn handle(
    State(server): State<ApiServer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = parse_query(uri.query().unwrap_or_default());
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_string();
    let path = uri.path().trim_matches('/').to_string();
    let segments: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    // `namespaces//configmaps`: an empty segment names nothing. It must not read as
    // "no namespace" (cluster scope), which would list or delete across namespaces.
    if segments.iter().any(|s| s.is_empty()) {
        return error_response(&ApiError::new(
            404,
            "NotFound",
            format!(
                "the server could not find the requested resource ({}: empty path segment)",
                uri.path()
            ),
        ));
    }
    // Seam faults (off unless the world was built with them): only resource requests,
    // only from the product's clients (`ApiServer::seam_fault`).
    let is_resource_request = matches!(
        segments.as_slice(),
        ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] if !rest.is_empty()
    );
    let fault = if is_resource_request {
        server.seam_fault(&user_agent, is_conflictable_write(&method, &headers))
    } else {
        ApiFault::None
    };
    match fault {
        ApiFault::None | ApiFault::LostResponse => {}
        ApiFault::Conflict => {
            return error_response(&ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {}: the object has been modified; please apply your changes to the latest version and try again",
                    uri.path()
                ),
            ));
        }
        ApiFault::Throttle => {
            let mut response = error_response(&ApiError::new(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ));
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return response;
        }
        ApiFault::Unavailable(code) => {
            let (reason, message) = if code == 503 {
                (
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                )
            } else {
                (
                    "InternalError",
                    "an error on the server (\"etcdserver: leader changed\") has prevented the request from succeeding",
                )
            };
            return error_response(&ApiError::new(code, reason, message));
        }
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let result = match (method.clone(), segments.as_slice()) {
        (Method::GET, ["version"]) => Ok(json_response(200, &version())),
        (Method::GET, ["healthz" | "livez" | "readyz"]) => {
            Ok((StatusCode::OK, "ok").into_response())
        }
        (Method::GET, ["api"]) => Ok(json_response(
            200,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
            }),
        )),
        (Method::GET, ["apis"]) => Ok(json_response(200, &group_list(&server))),
        // OpenAPI v2 with no definitions: older kubectl (Debian's 1.20) refuses to apply
        // without it, and with no schema for a kind it leaves validation to the server.
        // An empty protobuf message is exactly that document.
        (Method::GET, ["openapi", "v2"]) => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, OPENAPI_V2_PROTOBUF)],
            Vec::<u8>::new(),
        )
            .into_response()),
        (Method::GET, ["openapi", "v3"]) => Ok(json_response(200, &openapi_root(&server))),
        (Method::GET, ["openapi", "v3", "api", version]) => {
            openapi_group_version(&server, "", version)
        }
        (Method::GET, ["openapi", "v3", "apis", group, version]) => {
            openapi_group_version(&server, group, version)
        }
        (Method::GET, ["api", version]) => resource_list(&server, "", version),
        (Method::GET, ["apis", group]) => group_info(&server, group),
        (Method::GET, ["apis", group, version]) => resource_list(&server, group, version),
        (_, ["api", version, rest @ ..]) if !rest.is_empty() => {
            resource_request(
                &server,
                &method,
                "",
                version,
                rest,
                &query,
                &headers,
                &body,
                &user_agent,
            )
            .await
        }
        (_, ["apis", group, version, rest @ ..]) if !rest.is_empty() => {
            resource_request(
                &server,
                &method,
                group,
                version,
                rest,
                &query,
                &headers,
                &body,
                &user_agent,
            )
            .await
        }
        _ => Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    };
    let response = result.unwrap_or_else(|e| error_response(&e));
    if fault == ApiFault::LostResponse {
        return lose_body(response);
    }
    response
}

/// A request a `409 Conflict` is plausible for: an update, or a patch that is not a
/// server-side apply (a forced apply takes ownership instead of conflicting).
fn is_conflictable_write(method: &Method, headers: &HeaderMap) -> bool {
    match *method {
        Method::PUT => true,
        Method::PATCH => !headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/apply-patch")),
        _ => false,
    }
}

/// `response` with its headers but a body that fails at once: hyper then cuts the
/// connection, so the client never reads the answer of a request that was served (a
/// write that committed, for all the client knows maybe not).
fn lose_body(response: Response) -> Response {
    let (parts, _) = response.into_parts();
    let failing = stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "seam fault: response lost",
        ))
    });
    Response::from_parts(parts, Body::from_stream(failing))
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a resource path points.
struct Target<'a> {
    namespace: Option<&'a str>,
    resource: &'a str,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

fn parse_target<'a>(rest: &[&'a str]) -> Result<Target<'a>, ApiError> {
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let namespaced = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    if namespaced {
        if rest.len() > 5 {
            return Err(not_found());
        }
        Ok(Target {
            namespace: Some(rest[1]),
            resource: rest[2],
            name: rest.get(3).copied(),
            subresource: rest.get(4).copied(),
        })
    } else {
        if rest.len() > 3 {
            return Err(not_found());
        }
        Ok(Target {
            namespace: None,
            resource: rest[0],
            name: rest.get(1).copied(),
            subresource: rest.get(2).copied(),
        })
    }
}

/// The list options of a request. This server returns every list whole and never
/// issues a continue token, so any `continue` is one it cannot honour: a 400, as
/// Kubernetes answers a token it cannot decode, rather than a silently full list.
fn list_query(query: &BTreeMap<String, String>) -> Result<ListQuery, ApiError> {
    if let Some(token) = query.get("continue").filter(|t| !t.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "continue key is not valid: {token:?} was not issued by this server (it never paginates)"
        )));
    }
    Ok(ListQuery {
        label_selector: query
            .get("labelSelector")
            .filter(|s| !s.is_empty())
            .cloned(),
        field_selector: query
            .get("fieldSelector")
            .filter(|s| !s.is_empty())
            .cloned(),
    })
}

fn flag(query: &BTreeMap<String, String>, key: &str) -> bool {
    query.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// The media types a create or update body may have. A body in any other is a 415, as
/// in Kubernetes.
fn check_object_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    match object_media_type(headers) {
        "application/json" | "application/yaml" | "*/*" | "" => Ok(()),
        super::protobuf::MEDIA_TYPE => Ok(()),
        other => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({other}) - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        ))),
    }
}

fn object_media_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
}

/// A create or update body: protobuf (kubectl's typed clients) or JSON/YAML.
fn decode_object_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    if object_media_type(headers) == super::protobuf::MEDIA_TYPE {
        return super::protobuf::decode(body).map_err(|e| match e {
            // As kube-apiserver answers protobuf for a kind it cannot decode (a CRD).
            super::protobuf::ProtobufError::UnknownKind { .. } => {
                ApiError::unsupported_media_type(e.to_string())
            }
            other => ApiError::bad_request(other.to_string()),
        });
    }
    decode_body(body)
}

fn decode_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    serde_json::from_slice(body).or_else(|json_error| {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
        serde_saphyr::from_str::<Value>(text).map_err(|yaml_error| {
            ApiError::bad_request(format!(
                "the request body is neither JSON ({json_error}) nor YAML ({yaml_error})"
            ))
        })
    })
}

/// What the client asked the response to look like.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Plain,
    Table,
    Metadata,
}

fn shape(headers: &HeaderMap) -> Shape {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // The first acceptable media type wins, as content negotiation goes.
    for media in accept.split(',') {
        let media = media.trim();
        if media.contains("as=Table") {
            return Shape::Table;
        }
        if media.contains("as=PartialObjectMetadata") {
            return Shape::Metadata;
        }
        if media.starts_with("application/json")
            || media.starts_with("*/*")
            || media.starts_with("application/yaml")
        {
            return Shape::Plain;
        }
    }
    Shape::Plain
}

fn metadata_only(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

#[allow(clippy::too_many_arguments)]
async fn resource_request(
    server: &ApiServer,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
    user_agent: &str,
) -> Result<Response, ApiError> {
    let target = parse_target(rest)?;
    let key = ResourceKey::new(group, version, target.resource);
    let info = server.resource(&key).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            format!(
                "the server could not find the requested resource ({group}/{version}, {})",
                target.resource
            ),
        )
    })?;
    let who = Caller { user_agent };
    let ns = target.namespace;
    if let (Some("log"), Some(name), "Pod", &Method::GET) =
        (target.subresource, target.name, info.kind.as_str(), method)
    {
        return pod_log(server, &key, ns, name, query, &who).await;
    }
    let sub = match target.subresource {
        None => Subresource::Main,
        Some("status") if info.status_subresource => Subresource::Status,
        Some("status") if info.kind == "Namespace" => Subresource::Status,
        Some("finalize") if info.kind == "Namespace" => Subresource::Status,
        Some(other) => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource ({}/{other})",
                    info.key.resource
                ),
            ));
        }
    };
    let shape = shape(headers);
    let manager = query.get("fieldManager").filter(|m| !m.is_empty()).cloned();
    // Unknown fields under `fieldValidation=Warn`, as `Warning` headers on success.
    let mut warnings: Vec<String> = Vec::new();
    let result = match (method, target.name) {
        (&Method::GET, None) if flag(query, "watch") => watch(server, &info, ns, query, &who).await,
        (&Method::GET, None) => {
            let list = server.list_as(&key, ns, &list_query(query)?, &who)?;
            match shape {
                Shape::Table => Ok(json_response(
                    200,
                    &table::table(
                        &info,
                        &list.items,
                        list.resource_version,
                        now_seconds(server),
                        include_object(query),
                    ),
                )),
                _ => {
                    let items: Vec<Value> = if shape == Shape::Metadata {
                        list.items.iter().map(metadata_only).collect()
                    } else {
                        list.items
                    };
                    let (kind, api_version) = if shape == Shape::Metadata {
                        (
                            "PartialObjectMetadataList".to_string(),
                            "meta.k8s.io/v1".to_string(),
                        )
                    } else {
                        (info.list_kind.clone(), info.api_version())
                    };
                    Ok(json_response(
                        200,
                        &json!({
                            "kind": kind,
                            "apiVersion": api_version,
                            "metadata": {"resourceVersion": list.resource_version.to_string()},
                            "items": items,
                        }),
                    ))
                }
            }
        }
        (&Method::GET, Some(name)) => {
            let obj = server.get_as(&key, ns, name, &who)?;
            match shape {
                Shape::Table => {
                    let rv = server.resource_version();
                    Ok(json_response(
                        200,
                        &table::table(
                            &info,
                            &[obj],
                            rv,
                            now_seconds(server),
                            include_object(query),
                        ),
                    ))
                }
                Shape::Metadata => Ok(json_response(200, &metadata_only(&obj))),
                Shape::Plain => Ok(json_response(200, &obj)),
            }
        }
        (&Method::POST, None) => {
            check_object_content_type(headers)?;
            let obj = decode_object_body(headers, body)?;
            warnings.extend(field_validation(query, &info, &obj)?);
            if is_dry_run(query) {
                return Err(ApiError::bad_request(
                    "dryRun is not supported by the simulated API server",
                ));
            }
            let created = server.create_managed(&key, ns, obj, &who, manager.as_deref())?;
            Ok(json_response(201, &created))
        }
        (&Method::PUT, Some(name)) => {
            check_object_content_type(headers)?;
            let obj = decode_object_body(headers, body)?;
            warnings.extend(field_validation(query, &info, &obj)?);
            if meta_name(&obj) != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta_name(&obj)
                )));
            }
            if is_dry_run(query) {
                return Err(ApiError::bad_request(
                    "dryRun is not supported by the simulated API server",
                ));
            }
            let updated = server.update_managed(&key, ns, obj, sub, &who, manager.as_deref())?;
            Ok(json_response(200, &updated))
        }
        (&Method::PATCH, Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let content_type = content_type.split(';').next().unwrap_or_default().trim();
            // The media type first: a body of an unknown type is a 415 whatever it holds.
            if !matches!(
                content_type,
                "application/merge-patch+json"
                    | "application/json-patch+json"
                    | "application/strategic-merge-patch+json"
                    | "application/apply-patch+yaml"
                    | "application/apply-patch+cbor"
            ) {
                return Err(ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format ({content_type}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
                )));
            }
            let value = decode_body(body)?;
            // A JSON patch is a list of operations, not an object to check field by field.
            if content_type != "application/json-patch+json" {
                warnings.extend(field_validation(query, &info, &value)?);
            }
            let patch = match content_type {
                "application/merge-patch+json" => Patch::Merge(value),
                "application/json-patch+json" => Patch::Json(value),
                "application/strategic-merge-patch+json" => Patch::StrategicMerge(value),
                _ => Patch::Apply {
                    field_manager: query.get("fieldManager").cloned().unwrap_or_default(),
                    force: flag(query, "force"),
                    object: value,
                },
            };
            if is_dry_run(query) {
                return Err(ApiError::bad_request(
                    "dryRun is not supported by the simulated API server",
                ));
            }
            let patched =
                server.patch_managed(&key, ns, name, patch, sub, &who, manager.as_deref())?;
            Ok(json_response(200, &patched))
        }
        (&Method::DELETE, Some(name)) => {
            let opts = delete_options(body, query)?;
            let (obj, gone) = server.delete_with(&key, ns, name, &opts, &who)?;
            if gone {
                Ok(json_response(
                    200,
                    &json!({
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": {"name": name, "group": info.key.group, "kind": info.key.resource, "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)},
                    }),
                ))
            } else {
                Ok(json_response(200, &obj))
            }
        }
        (&Method::DELETE, None) => {
            let deleted = server.delete_collection(&key, ns, &list_query(query)?, &who)?;
            Ok(json_response(
                200,
                &json!({
                    "kind": info.list_kind,
                    "apiVersion": info.api_version(),
                    "metadata": {"resourceVersion": server.resource_version().to_string()},
                    "items": deleted,
                }),
            ))
        }
        _ => Err(ApiError::method_not_supported(format!(
            "{method} is not supported on {}",
            rest.join("/")
        ))),
    };
    result.map(|mut response| {
        for warning in warnings {
            // RFC 7234 warn-code 299 with a quoted text, as kube-apiserver writes it.
            if let Ok(value) = header::HeaderValue::from_str(&format!("299 - {warning:?}")) {
                response.headers_mut().append(header::WARNING, value);
            }
        }
        response
    })
}

/// `?fieldValidation=` on a write: what to do with fields the kind's schema does not
/// declare (they are pruned either way). `Strict` refuses them with a 400 naming each
/// field path; `Warn` (the default, as in Kubernetes) returns them as warnings;
/// `Ignore` says nothing. Kinds without a schema here (built-in ones) are not checked.
fn field_validation(
    query: &BTreeMap<String, String>,
    info: &ResourceInfo,
    body: &Value,
) -> Result<Vec<String>, ApiError> {
    let directive = query.get("fieldValidation").map(String::as_str);
    if !matches!(directive, None | Some("" | "Ignore" | "Warn" | "Strict")) {
        return Err(ApiError::bad_request(format!(
            "fieldValidation must be one of Ignore, Warn, Strict, not {:?}",
            directive.unwrap_or_default()
        )));
    }
    let Some(schema) = &info.schema else {
        return Ok(Vec::new());
    };
    let unknown: Vec<String> = super::schema_check::unknown_fields(schema, body)
        .into_iter()
        .map(|path| format!("unknown field {path:?}"))
        .collect();
    match directive {
        Some("Ignore") => Ok(Vec::new()),
        Some("Strict") if !unknown.is_empty() => Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
            unknown.join(", "),
            kind = info.kind,
            version = info.key.version,
        ))),
        _ => Ok(unknown),
    }
}

fn meta_name(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn is_dry_run(query: &BTreeMap<String, String>) -> bool {
    query.get("dryRun").is_some_and(|v| !v.is_empty())
}

fn include_object(query: &BTreeMap<String, String>) -> IncludeObject {
    match query.get("includeObject").map(String::as_str) {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

fn now_seconds(server: &ApiServer) -> i64 {
    server.inner.clock.now().as_second()
}

fn delete_options(
    body: &Bytes,
    query: &BTreeMap<String, String>,
) -> Result<DeleteOptions, ApiError> {
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        decode_body(body)?
    };
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| query.get("propagationPolicy").cloned())
        .or_else(
            || match body.get("orphanDependents").and_then(Value::as_bool) {
                Some(true) => Some("Orphan".into()),
                _ => None,
            },
        );
    let propagation = match policy.as_deref() {
        None | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported propagationPolicy {other:?}"
            )));
        }
    };
    Ok(DeleteOptions {
        propagation,
        uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// A watch stream: newline-delimited `{"type": ..., "object": ...}` until the timeout.
async fn watch(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    query: &BTreeMap<String, String>,
    who: &Caller<'_>,
) -> Result<Response, ApiError> {
    let from_rv = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        None => server.config().default_watch_timeout,
    };
    let bookmarks = flag(query, "allowWatchBookmarks");
    let watch = match server.watch_with(&info.key, ns, &list_query(query)?, from_rv, who) {
        Ok(watch) => watch,
        // Like the real server: a watch from a compacted rv is a 200 whose only event
        // is an ERROR carrying the 410 Status.
        Err(e) if e.code == 410 => {
            let line = format!("{}\n", json!({"type": "ERROR", "object": e.to_status()}));
            return Ok(stream_response(Body::from(line)));
        }
        Err(e) => return Err(e),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let bookmark_every = server.config().bookmark_interval;
    let state = WatchState {
        server: server.clone(),
        id: watch.id,
        events: watch.events,
        deadline,
        next_bookmark: bookmarks.then(|| tokio::time::Instant::now() + bookmark_every),
        bookmark_every,
        kind: info.kind.clone(),
        api_version: info.api_version(),
        sent: 0,
        faulted: crate::seam_faults::faults_apply_to(who.user_agent),
    };
    let lines = stream::unfold(state, |mut state| async move {
        let line = state.next_line().await?;
        Some((Ok::<_, Infallible>(Bytes::from(line)), state))
    });
    Ok(stream_response(Body::from_stream(lines.boxed())))
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}/log`: what the container's program logged
/// (`container`, `previous`, `tailLines`, `sinceSeconds`, `timestamps`, `follow`).
async fn pod_log(
    server: &ApiServer,
    key: &ResourceKey,
    ns: Option<&str>,
    name: &str,
    query: &BTreeMap<String, String>,
    who: &Caller<'_>,
) -> Result<Response, ApiError> {
    let pod = server.get_as(key, ns, name, who)?;
    let namespace = ns.unwrap_or("default");
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(container) => container.clone(),
        None => match containers.as_slice() {
            [only] => only.clone(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                )));
            }
        },
    };
    if !containers.contains(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let previous = flag(query, "previous");
    let buffer = server
        .container_logs()
        .get(namespace, name, &container, previous)
        .ok_or_else(|| {
            ApiError::bad_request(if previous {
                format!("previous terminated container \"{container}\" in pod \"{name}\" not found")
            } else {
                format!("container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating")
            })
        })?;
    let timestamps = flag(query, "timestamps");
    let since = match query.get("sinceSeconds") {
        Some(text) => {
            let seconds: i64 = text.parse().map_err(|_| {
                ApiError::bad_request(format!("sinceSeconds {text:?} is not a whole number"))
            })?;
            Some(now_seconds(server) - seconds)
        }
        None => None,
    };
    let tail = match query.get("tailLines") {
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("tailLines {text:?} is not a whole number"))
        })?),
        None => None,
    };
    let (mut lines, seen) = buffer.since(0);
    if let Some(since) = since {
        lines.retain(|line| line.time.as_second() >= since);
    }
    if let Some(tail) = tail.and_then(|t| usize::try_from(t).ok()) {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let render = move |lines: &[crate::logs::LogLine]| {
        let mut out = String::new();
        for line in lines {
            if timestamps {
                out.push_str(&line.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ ").to_string());
            }
            out.push_str(&line.text);
            out.push('\n');
        }
        Bytes::from(out)
    };
    let first = render(&lines);
    if !flag(query, "follow") {
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            first,
        )
            .into_response());
    }
    // Follow: what is there, then every new line until the run ends or the client goes.
    let progress = buffer.subscribe();
    let state = (Some(first), buffer, progress, seen);
    let chunks = stream::unfold(
        state,
        move |(first, buffer, mut progress, seen)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, Infallible>(first), (None, buffer, progress, seen)));
            }
            loop {
                let (lines, total) = buffer.since(seen);
                if !lines.is_empty() {
                    return Some((Ok(render(&lines)), (None, buffer, progress, total)));
                }
                if progress.borrow_and_update().1 || progress.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(chunks.boxed()),
    )
        .into_response())
}

fn stream_response(body: Body) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, JSON)], body).into_response()
}

struct WatchState {
    server: ApiServer,
    id: u64,
    events: tokio::sync::mpsc::UnboundedReceiver<WatchEvent>,
    deadline: tokio::time::Instant,
    next_bookmark: Option<tokio::time::Instant>,
    bookmark_every: Duration,
    kind: String,
    api_version: String,
    /// Events sent so far (the index of the next one's seeded delay).
    sent: u64,
    /// Whether seam faults (a stall) may hit this stream: a product client's watch.
    faulted: bool,
}

impl WatchState {
    async fn next_line(&mut self) -> Option<String> {
        loop {
            let bookmark_at = self
                .next_bookmark
                .unwrap_or(self.deadline)
                .min(self.deadline);
            tokio::select! {
                event = self.events.recv() => {
                    let event = event?;
                    let config = self.server.config();
                    let delay = crate::apiserver::watch_delay(
                        config.seed,
                        self.id,
                        self.sent,
                        config.watch_delay_max,
                    );
                    if self.faulted
                        && config.seam_faults.watch_stalls(config.seed, self.id, self.sent)
                    {
                        // A stalled stream: nothing more until the watch's own timeout
                        // (a client with an idle timeout gives up sooner and re-watches
                        // from its last resourceVersion, losing nothing).
                        tokio::time::sleep_until(self.deadline).await;
                        return None;
                    }
                    self.sent += 1;
                    if !delay.is_zero() {
                        // Later events queue behind this one: order is kept.
                        tokio::time::sleep(delay).await;
                    }
                    let (type_, object) = match event {
                        WatchEvent::Added(o) => ("ADDED", o),
                        WatchEvent::Modified(o) => ("MODIFIED", o),
                        WatchEvent::Deleted(o) => ("DELETED", o),
                        WatchEvent::Bookmark(rv) => ("BOOKMARK", json!({
                            "kind": self.kind,
                            "apiVersion": self.api_version,
                            "metadata": {"resourceVersion": rv.to_string()},
                        })),
                    };
                    return Some(format!("{}\n", json!({"type": type_, "object": object})));
                }
                _ = tokio::time::sleep_until(bookmark_at) => {
                    if tokio::time::Instant::now() >= self.deadline {
                        return None;
                    }
                    // The bookmark goes through the store so it is ordered after every
                    // event already queued for this watch.
                    self.server.send_bookmark(self.id);
                    self.next_bookmark = Some(tokio::time::Instant::now() + self.bookmark_every);
                }
            }
        }
    }
}

impl Drop for WatchState {
    fn drop(&mut self) {
        self.server.cancel_watch(self.id);
    }
}
