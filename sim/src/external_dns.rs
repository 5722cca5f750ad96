//! The playground's DNS pipeline in the simulation: the dns-webhook provider as a pod
//! program (the real crate's routers on simulated sockets) and an external-dns stand-in
//! that does what external-dns's CRD source and webhook provider do: negotiate the
//! domain filter (`GET /`), list DNSEndpoint objects, `POST /adjustendpoints`, read
//! `GET /records`, plan the difference and `POST /records` the change set, then record
//! `status.observedGeneration`. The plan is pure ([`plan`]); the program only does I/O.
//! Not modelled: the TXT ownership registry (only `--registry=noop`), `--events`.

use std::collections::BTreeMap;
use std::time::Duration;

use bloodraven_dns_webhook::cli::Args as WebhookArgs;
use bloodraven_dns_webhook::http::{MEDIA_TYPE, Shared, health_router, webhook_router};
use bloodraven_dns_webhook::records::{Changes, DomainFilter, Endpoint};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::apiserver::TurmoilListener;
use crate::images::StartupProfile;
use crate::pod::{PodContext, PodProgram, ProgramFuture, SharedDialer};
use crate::transport::{API_SERVER_HOST, API_SERVER_PORT, SimClientConfig, kube_client};

/// Image of the dns-webhook provider (`make images` builds it; `playground/Containerfile.dns-webhook`).
pub const DNS_WEBHOOK_IMAGE: &str = "ghcr.io/shipstream/bloodraven-dns-webhook";
/// Image of external-dns, whose stand-in runs in the simulation.
pub const EXTERNAL_DNS_IMAGE: &str = "registry.k8s.io/external-dns/external-dns";
/// The stand-in's user agent at the API server.
pub const EXTERNAL_DNS_USER_AGENT: &str = "external-dns";
/// Bound on one webhook exchange: turmoil TCP does not retransmit, so an exchange
/// stalled by a partition never finishes on its own.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Registers the two programs.
pub fn register(registry: &mut crate::images::ImageRegistry) {
    registry.register(
        DNS_WEBHOOK_IMAGE,
        DnsWebhookProgram,
        StartupProfile::default(),
    );
    registry.register(
        EXTERNAL_DNS_IMAGE,
        ExternalDnsProgram,
        StartupProfile::default(),
    );
}

/// `dns-webhook <args>`: the provider's own routers, flags and defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct DnsWebhookProgram;

impl PodProgram for DnsWebhookProgram {
    fn run(&self, ctx: PodContext) -> ProgramFuture {
        Box::pin(async move {
            let args = WebhookArgs::try_parse_from(
                std::iter::once("dns-webhook".to_string()).chain(ctx.args.iter().cloned()),
            )?;
            let zone = Shared::new(args.zone());
            let webhook = turmoil::net::TcpListener::bind(("0.0.0.0", args.listen.port())).await?;
            let health =
                turmoil::net::TcpListener::bind(("0.0.0.0", args.health_listen.port())).await?;
            tracing::info!(webhook = %args.listen, health = %args.health_listen, "serving");
            tokio::task::spawn_local(async move {
                let _ = axum::serve(TurmoilListener(health), health_router()).await;
            });
            ctx.ready.set(true);
            // axum serves each connection on a task of its own, outside the container's
            // span: carry the span into every request, so that the provider's log lines
            // are this container's (`kubectl logs ... -c dns-webhook`), not external-dns's.
            let span = tracing::Span::current();
            let router = webhook_router(zone).layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    next.run(request).instrument(span.clone())
                },
            ));
            axum::serve(TurmoilListener(webhook), router).await?;
            Ok(())
        })
    }
}

/// What the stand-in does with records it finds that no DNSEndpoint wants, and with
/// records whose targets differ (external-dns's `--policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// Create, update and delete.
    Sync,
    /// Create and update, never delete.
    UpsertOnly,
    /// Only create.
    CreateOnly,
}

/// The external-dns flags the stand-in honours; any other flag is refused, so a
/// manifest cannot silently ask for something that is not modelled.
#[derive(Parser, Debug, Clone)]
#[command(name = "external-dns")]
pub struct ExternalDnsArgs {
    /// Only `crd` (DNSEndpoint objects).
    #[arg(long, default_value = "crd", value_parser = ["crd"])]
    pub source: String,
    /// Only `webhook`.
    #[arg(long, default_value = "webhook", value_parser = ["webhook"])]
    pub provider: String,
    #[arg(long, default_value = "http://localhost:8888")]
    pub webhook_provider_url: String,
    /// Only `noop`: the TXT ownership registry is not modelled.
    #[arg(long, default_value = "noop", value_parser = ["noop"])]
    pub registry: String,
    #[arg(long, value_enum, default_value = "sync")]
    pub policy: Policy,
    /// Time between two syncs.
    #[arg(long, default_value = "1m")]
    pub interval: bloodraven::api::Duration,
    /// Namespace whose DNSEndpoints are read (empty: all).
    #[arg(long, default_value = "")]
    pub namespace: String,
    #[arg(long, default_value = "externaldns.k8s.io/v1alpha1")]
    pub crd_source_apiversion: String,
    #[arg(long, default_value = "DNSEndpoint")]
    pub crd_source_kind: String,
    /// Accepted for compatibility with the live manifest; the stand-in logs at info.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// The identity of a record set: name (lowercase, no trailing dot), type, set id.
type RecordKey = (String, String, String);

fn key_of(endpoint: &Endpoint) -> RecordKey {
    (
        endpoint.dns_name.trim_end_matches('.').to_ascii_lowercase(),
        endpoint.record_type.clone(),
        endpoint.set_identifier.clone(),
    )
}

/// Whether `desired` asks for something `current` does not have: other targets (as a
/// set), another TTL (when one is asked for) or other provider-specific properties.
fn differs(current: &Endpoint, desired: &Endpoint) -> bool {
    let targets = |e: &Endpoint| {
        let mut t: Vec<String> = e
            .targets
            .iter()
            .map(|t| t.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        t.sort();
        t.dedup();
        t
    };
    targets(current) != targets(desired)
        || desired
            .record_ttl
            .is_some_and(|ttl| Some(ttl) != current.record_ttl)
        || current.provider_specific != desired.provider_specific
}

/// external-dns's plan: the change set that turns the provider's `current` records into
/// the `desired` ones under `policy`, for names inside `filter` only (records outside it
/// belong to someone else). Two desired endpoints with one key: the first wins, as
/// external-dns resolves such conflicts deterministically.
pub fn plan(
    current: &[Endpoint],
    desired: &[Endpoint],
    policy: Policy,
    filter: &DomainFilter,
) -> Changes {
    let current: BTreeMap<RecordKey, &Endpoint> = current
        .iter()
        .filter(|e| filter.matches(&e.dns_name))
        .map(|e| (key_of(e), e))
        .collect();
    let mut wanted: BTreeMap<RecordKey, &Endpoint> = BTreeMap::new();
    for endpoint in desired.iter().filter(|e| filter.matches(&e.dns_name)) {
        wanted.entry(key_of(endpoint)).or_insert(endpoint);
    }
    let mut changes = Changes::default();
    for (key, want) in &wanted {
        match current.get(key) {
            None => changes.create.push((*want).clone()),
            Some(have) if policy != Policy::CreateOnly && differs(have, want) => {
                changes.update_old.push((*have).clone());
                changes.update_new.push((*want).clone());
            }
            Some(_) => {}
        }
    }
    if policy == Policy::Sync {
        changes.delete = current
            .iter()
            .filter(|(key, _)| !wanted.contains_key(*key))
            .map(|(_, e)| (*e).clone())
            .collect();
    }
    changes
}

/// Whether a change set changes nothing (external-dns then skips the POST).
pub fn is_empty(changes: &Changes) -> bool {
    changes.create.is_empty()
        && changes.update_old.is_empty()
        && changes.update_new.is_empty()
        && changes.delete.is_empty()
}

/// The endpoints of one DNSEndpoint object as external-dns's CRD source reads them: an
/// empty record type is inferred from the targets (A for IPv4, AAAA for IPv6, CNAME
/// otherwise), and each carries the `resource` label naming its object.
pub fn crd_endpoints(object: &Value) -> Vec<Endpoint> {
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(list) = object.pointer("/spec/endpoints").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|raw| serde_json::from_value::<Endpoint>(with_record_type(raw)).ok())
        .map(|mut endpoint| {
            endpoint
                .labels
                .insert("resource".into(), format!("crd/{namespace}/{name}"));
            endpoint
        })
        .collect()
}

fn with_record_type(raw: &Value) -> Value {
    let mut raw = raw.clone();
    let missing = raw
        .get("recordType")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if missing && let Some(map) = raw.as_object_mut() {
        let targets: Vec<&str> = map
            .get("targets")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let inferred = if !targets.is_empty()
            && targets
                .iter()
                .all(|t| t.parse::<std::net::Ipv4Addr>().is_ok())
        {
            "A"
        } else if !targets.is_empty()
            && targets
                .iter()
                .all(|t| t.parse::<std::net::Ipv6Addr>().is_ok())
        {
            "AAAA"
        } else {
            "CNAME"
        };
        map.insert("recordType".into(), json!(inferred));
    }
    raw
}

/// Why one sync failed (the stand-in logs it and tries again next interval).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("webhook {method} {path}: {message}")]
    Webhook {
        method: &'static str,
        path: &'static str,
        message: String,
    },
    #[error("listing {kind} objects: {source}")]
    List {
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error("bad --webhook-provider-url {0:?}: expected http://host:port")]
    Url(String),
    #[error("bad --crd-source-apiversion {0:?}: expected group/version")]
    ApiVersion(String),
}

/// A minimal HTTP/1.1 client for the webhook: one connection per exchange, through the
/// pod's cluster DNS (so `localhost` is the pod's own host, as for a sidecar).
pub struct WebhookClient {
    dialer: SharedDialer,
    host: String,
    port: u16,
}

impl WebhookClient {
    /// A client for `url` (`http://host[:port]`), dialing through `dialer`.
    pub fn new(dialer: SharedDialer, url: &str) -> Result<Self, SyncError> {
        let bad = || SyncError::Url(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| bad())?),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            dialer,
            host: host.to_string(),
            port,
        })
    }

    async fn exchange(
        &self,
        method: &'static str,
        path: &'static str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), SyncError> {
        let fail = |message: String| SyncError::Webhook {
            method,
            path,
            message,
        };
        let work = async {
            let stream = self
                .dialer
                .dial(&self.host, self.port)
                .await
                .map_err(|e| fail(format!("connect {}:{}: {e}", self.host, self.port)))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| fail(e.to_string()))?;
            tokio::task::spawn_local(connection);
            let mut request = http::Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, format!("{}:{}", self.host, self.port))
                .header(http::header::ACCEPT, MEDIA_TYPE);
            if body.is_some() {
                request = request.header(http::header::CONTENT_TYPE, MEDIA_TYPE);
            }
            let request = request
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| fail(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(WEBHOOK_TIMEOUT, work)
            .await
            .map_err(|_| fail(format!("timed out after {WEBHOOK_TIMEOUT:?}")))?
    }

    /// The provider's records (`GET /records`).
    pub async fn records(&self) -> Result<Vec<Endpoint>, SyncError> {
        self.json("GET", "/records", None).await
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        path: &'static str,
        body: Option<Vec<u8>>,
    ) -> Result<T, SyncError> {
        let (status, bytes) = self.exchange(method, path, body).await?;
        if status != 200 {
            return Err(SyncError::Webhook {
                method,
                path,
                message: format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes).trim()),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| SyncError::Webhook {
            method,
            path,
            message: format!("undecodable answer: {e}"),
        })
    }
}

/// The external-dns stand-in (image `registry.k8s.io/external-dns/external-dns`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExternalDnsProgram;

impl PodProgram for ExternalDnsProgram {
    fn run(&self, ctx: PodContext) -> ProgramFuture {
        Box::pin(async move {
            let args = ExternalDnsArgs::try_parse_from(
                std::iter::once("external-dns".to_string()).chain(ctx.args.iter().cloned()),
            )?;
            let webhook = WebhookClient::new(ctx.dialer.clone(), &args.webhook_provider_url)?;
            let (group, version) = args
                .crd_source_apiversion
                .split_once('/')
                .ok_or_else(|| SyncError::ApiVersion(args.crd_source_apiversion.clone()))?;
            let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
                group,
                version,
                &args.crd_source_kind,
            ));
            let client = kube_client(
                API_SERVER_HOST,
                API_SERVER_PORT,
                &SimClientConfig {
                    default_namespace: ctx.namespace.clone(),
                    user_agent: Some(EXTERNAL_DNS_USER_AGENT.to_string()),
                    ..SimClientConfig::default()
                },
            )?;
            let source = CrdSource {
                api: if args.namespace.is_empty() {
                    Api::all_with(client.clone(), &resource)
                } else {
                    Api::namespaced_with(client.clone(), &args.namespace, &resource)
                },
                client,
                resource,
            };
            // external-dns negotiates once at start and retries until the provider
            // answers (it is a sidecar that may start later).
            let filter = loop {
                match webhook.json::<DomainFilter>("GET", "/", None).await {
                    Ok(filter) => break filter,
                    Err(err) => {
                        tracing::warn!(%err, "negotiation with the webhook provider failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            tracing::info!(include = ?filter.include, exclude = ?filter.exclude, "negotiated the domain filter");
            ctx.ready.set(true);
            let interval: Duration = args.interval.into();
            loop {
                if let Err(err) = sync_once(&source, &webhook, &filter, args.policy).await {
                    tracing::warn!(%err, "sync failed");
                }
                tokio::time::sleep(interval).await;
            }
        })
    }
}

/// Where the DNSEndpoint objects are read and their status written.
struct CrdSource {
    api: Api<DynamicObject>,
    client: kube::Client,
    resource: ApiResource,
}

/// One reconciliation, as external-dns's controller runs it every interval.
async fn sync_once(
    source: &CrdSource,
    webhook: &WebhookClient,
    filter: &DomainFilter,
    policy: Policy,
) -> Result<(), SyncError> {
    let objects = source
        .api
        .list(&ListParams::default())
        .await
        .map_err(|err| SyncError::List {
            kind: source.resource.kind.clone(),
            source: err,
        })?;
    let mut desired = Vec::new();
    let mut generations = Vec::new();
    for object in &objects.items {
        let value = serde_json::to_value(object).unwrap_or(Value::Null);
        desired.extend(crd_endpoints(&value));
        if let (Some(ns), Some(name), Some(generation)) = (
            object.metadata.namespace.clone(),
            object.metadata.name.clone(),
            object.metadata.generation,
        ) {
            let observed = value
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64);
            if observed != Some(generation) {
                generations.push((ns, name, generation));
            }
        }
    }
    let desired_body = serde_json::to_vec(&desired).unwrap_or_default();
    let adjusted: Vec<Endpoint> = webhook
        .json("POST", "/adjustendpoints", Some(desired_body))
        .await?;
    let current = webhook.records().await?;
    let changes = plan(&current, &adjusted, policy, filter);
    if !is_empty(&changes) {
        let body = serde_json::to_vec(&changes).unwrap_or_default();
        let (status, answer) = webhook.exchange("POST", "/records", Some(body)).await?;
        if !(200..300).contains(&status) {
            return Err(SyncError::Webhook {
                method: "POST",
                path: "/records",
                message: format!("HTTP {status}: {}", String::from_utf8_lossy(&answer).trim()),
            });
        }
        tracing::info!(
            create = changes.create.len(),
            update = changes.update_new.len(),
            delete = changes.delete.len(),
            "applied changes"
        );
    }
    // external-dns records the generation it has pushed, on the status subresource.
    for (namespace, name, generation) in generations {
        let namespaced: Api<DynamicObject> =
            Api::namespaced_with(source.client.clone(), &namespace, &source.resource);
        let patch = json!({"status": {"observedGeneration": generation}});
        if let Err(err) = namespaced
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(%err, %namespace, %name, "cannot record observedGeneration");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, kind: &str, targets: &[&str]) -> Endpoint {
        Endpoint {
            dns_name: name.into(),
            record_type: kind.into(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            ..Endpoint::default()
        }
    }

    const HOST: &str = "mysql.playground.bloodraven.internal";

    #[test]
    fn plans_follow_external_dns_policies() {
        let iad = record(HOST, "CNAME", &["mysql-iad.svc"]);
        let pdx = record(HOST, "CNAME", &["mysql-pdx.svc"]);
        let stale = record("old.bloodraven.internal", "A", &["10.0.0.1"]);
        let foreign = record("db.example.com", "A", &["10.0.0.2"]);
        let filter = DomainFilter {
            include: vec!["bloodraven.internal".into()],
            exclude: vec![],
        };
        struct Case<'a> {
            what: &'a str,
            current: Vec<Endpoint>,
            desired: Vec<Endpoint>,
            policy: Policy,
            create: usize,
            update: usize,
            delete: usize,
        }
        let cases = [
            Case {
                what: "empty provider: create",
                current: vec![],
                desired: vec![iad.clone()],
                policy: Policy::Sync,
                create: 1,
                update: 0,
                delete: 0,
            },
            Case {
                what: "in step: nothing",
                current: vec![iad.clone()],
                desired: vec![iad.clone()],
                policy: Policy::Sync,
                create: 0,
                update: 0,
                delete: 0,
            },
            Case {
                what: "failover: update",
                current: vec![iad.clone()],
                desired: vec![pdx.clone()],
                policy: Policy::Sync,
                create: 0,
                update: 1,
                delete: 0,
            },
            Case {
                what: "create-only never updates",
                current: vec![iad.clone()],
                desired: vec![pdx.clone()],
                policy: Policy::CreateOnly,
                create: 0,
                update: 0,
                delete: 0,
            },
            Case {
                what: "sync deletes the unwanted",
                current: vec![iad.clone(), stale.clone()],
                desired: vec![iad.clone()],
                policy: Policy::Sync,
                create: 0,
                update: 0,
                delete: 1,
            },
            Case {
                what: "upsert-only keeps the unwanted",
                current: vec![iad.clone(), stale.clone()],
                desired: vec![iad.clone()],
                policy: Policy::UpsertOnly,
                create: 0,
                update: 0,
                delete: 0,
            },
            Case {
                what: "outside the filter: never touched",
                current: vec![foreign.clone()],
                desired: vec![record("x.example.com", "A", &["10.0.0.3"])],
                policy: Policy::Sync,
                create: 0,
                update: 0,
                delete: 0,
            },
            Case {
                what: "trailing dot and case are one name",
                current: vec![record(
                    &format!("{}.", HOST.to_uppercase()),
                    "CNAME",
                    &["mysql-iad.svc."],
                )],
                desired: vec![iad.clone()],
                policy: Policy::Sync,
                create: 0,
                update: 0,
                delete: 0,
            },
            Case {
                what: "duplicate desired: first wins",
                current: vec![],
                desired: vec![iad.clone(), pdx.clone()],
                policy: Policy::Sync,
                create: 1,
                update: 0,
                delete: 0,
            },
        ];
        for case in cases {
            let changes = plan(&case.current, &case.desired, case.policy, &filter);
            assert_eq!(
                (
                    changes.create.len(),
                    changes.update_new.len(),
                    changes.delete.len()
                ),
                (case.create, case.update, case.delete),
                "{}: {changes:?}",
                case.what
            );
            assert_eq!(
                changes.update_old.len(),
                changes.update_new.len(),
                "{}",
                case.what
            );
        }
        let failover = plan(
            std::slice::from_ref(&iad),
            std::slice::from_ref(&pdx),
            Policy::Sync,
            &filter,
        );
        assert_eq!(failover.update_old, vec![iad.clone()]);
        assert_eq!(failover.update_new, vec![pdx]);
        let first = plan(
            &[],
            &[iad.clone(), record(HOST, "CNAME", &["other"])],
            Policy::Sync,
            &filter,
        );
        assert_eq!(first.create, vec![iad]);
    }

    #[test]
    fn ttl_changes_update_only_when_asked_for() {
        let filter = DomainFilter::default();
        let mut have = record(HOST, "CNAME", &["a"]);
        have.record_ttl = Some(30);
        let mut want = have.clone();
        want.record_ttl = None;
        assert!(is_empty(&plan(
            &[have.clone()],
            &[want.clone()],
            Policy::Sync,
            &filter
        )));
        want.record_ttl = Some(60);
        assert_eq!(
            plan(&[have], &[want], Policy::Sync, &filter)
                .update_new
                .len(),
            1
        );
    }

    #[test]
    fn crd_source_infers_record_types_and_labels_the_resource() {
        let object = json!({
            "metadata": {"namespace": "ns", "name": "group-dns"},
            "spec": {"endpoints": [
                {"dnsName": "a.x", "targets": ["10.0.0.1"]},
                {"dnsName": "b.x", "targets": ["fd00::1"]},
                {"dnsName": "c.x", "targets": ["svc.cluster.local"]},
                {"dnsName": "d.x", "targets": ["10.0.0.1"], "recordType": "CNAME", "recordTTL": 30},
            ]}
        });
        let endpoints = crd_endpoints(&object);
        let types: Vec<&str> = endpoints.iter().map(|e| e.record_type.as_str()).collect();
        assert_eq!(types, ["A", "AAAA", "CNAME", "CNAME"]);
        assert_eq!(endpoints[3].record_ttl, Some(30));
        assert!(
            endpoints
                .iter()
                .all(|e| e.labels.get("resource").map(String::as_str) == Some("crd/ns/group-dns"))
        );
        assert!(crd_endpoints(&json!({"metadata": {}, "spec": {}})).is_empty());
    }

    #[test]
    fn webhook_urls_parse_or_name_the_bad_value() {
        let dialer: SharedDialer = std::sync::Arc::new(crate::pod::HostDialer::default());
        let client = WebhookClient::new(dialer.clone(), "http://localhost:8888").unwrap();
        assert_eq!((client.host.as_str(), client.port), ("localhost", 8888));
        let client = WebhookClient::new(dialer.clone(), "http://dns-webhook/").unwrap();
        assert_eq!((client.host.as_str(), client.port), ("dns-webhook", 80));
        for bad in [
            "https://x:1",
            "localhost:8888",
            "http://:80",
            "http://x:port",
        ] {
            let err = WebhookClient::new(dialer.clone(), bad).err().unwrap();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn unsupported_flags_are_refused() {
        let parse = |args: &[&str]| {
            ExternalDnsArgs::try_parse_from(
                std::iter::once("external-dns").chain(args.iter().copied()),
            )
        };
        let ok = parse(&[
            "--source=crd",
            "--provider=webhook",
            "--interval=2s",
            "--policy=upsert-only",
        ])
        .unwrap();
        assert_eq!(
            std::time::Duration::from(ok.interval),
            Duration::from_secs(2)
        );
        assert_eq!(ok.policy, Policy::UpsertOnly);
        assert!(parse(&["--registry=txt"]).is_err());
        assert!(parse(&["--source=service"]).is_err());
        assert!(parse(&["--events"]).is_err());
    }
}
