//! The Kubernetes API operations scenario steps need (apply, get, merge-patch, delete,
//! Events), behind a small trait. Both backends hand the runner a `KubeCluster` over
//! their `kube::Client`; the trait exists so the runner can be tested without a server.

use std::sync::Arc;

use futures::future::BoxFuture;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use serde_json::Value;

use crate::scenario::ObjectRef;

/// The field manager for everything the runner writes.
pub const FIELD_MANAGER: &str = "bloodraven-chaos";

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    #[error("API discovery failed: {0}")]
    Discovery(String),
    #[error("no API resource has kind {kind}{}", api_version.as_ref().map(|v| format!(" in {v}")).unwrap_or_default())]
    UnknownKind {
        kind: String,
        api_version: Option<String>,
    },
    #[error("kind {kind} is served by {candidates}; add apiVersion to the reference")]
    AmbiguousKind { kind: String, candidates: String },
    #[error("manifest has no {0}")]
    BadManifest(&'static str),
    #[error("{verb} {object}: {message}")]
    Api {
        verb: &'static str,
        object: String,
        message: String,
    },
    /// kube-client has no read timeout of its own: every call is bounded by
    /// [`bounded`], so that an API server that stops answering fails the call.
    #[error("{verb} {object}: no answer within {after:?}")]
    TimedOut {
        verb: &'static str,
        object: String,
        after: std::time::Duration,
    },
}

/// How long one Kubernetes request may take, answer body included.
pub const KUBE_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs one Kubernetes request, bounded by [`KUBE_CALL_TIMEOUT`]; a failure names
/// `verb` and `object`.
pub async fn bounded<T>(
    verb: &'static str,
    object: impl std::fmt::Display,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(KUBE_CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(api_error(verb, object, e)),
        Err(_) => Err(ClusterError::TimedOut {
            verb,
            object: object.to_string(),
            after: KUBE_CALL_TIMEOUT,
        }),
    }
}

/// As [`bounded`], for a call whose 404 means "there is none".
pub async fn bounded_opt<T>(
    verb: &'static str,
    object: impl std::fmt::Display,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<Option<T>, ClusterError> {
    match tokio::time::timeout(KUBE_CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(Some(value)),
        Ok(Err(e)) if is_not_found(&e) => Ok(None),
        Ok(Err(e)) => Err(api_error(verb, object, e)),
        Err(_) => Err(ClusterError::TimedOut {
            verb,
            object: object.to_string(),
            after: KUBE_CALL_TIMEOUT,
        }),
    }
}

/// Object references carry a namespace once resolved (fixture namespace as default).
pub trait Cluster: Send + Sync {
    /// Server-side apply of one manifest (namespace defaulted to `namespace`).
    fn apply<'a>(
        &'a self,
        manifest: &'a Value,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
    /// The object as JSON, or `None` when it does not exist.
    fn get<'a>(
        &'a self,
        object: &'a ObjectRef,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, ClusterError>>;
    /// A JSON merge patch (RFC 7386).
    fn merge_patch<'a>(
        &'a self,
        object: &'a ObjectRef,
        namespace: &'a str,
        patch: &'a Value,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
    /// Deletes the object; deleting a missing object is not an error.
    fn delete<'a>(
        &'a self,
        object: &'a ObjectRef,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
    /// core/v1 Events whose involvedObject is the object.
    fn events<'a>(
        &'a self,
        object: &'a ObjectRef,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Value>, ClusterError>>;
    /// Every version of the object from `resource_version` on (`"0"`: starting with the
    /// current one), until the server ends the watch; `None` when this cluster cannot
    /// watch (asserts then only poll).
    fn watch<'a>(
        &'a self,
        object: &'a ObjectRef,
        namespace: &'a str,
        resource_version: &'a str,
    ) -> BoxFuture<'a, Option<Result<ObjectVersions, ClusterError>>> {
        let _ = (object, namespace, resource_version);
        Box::pin(async { None })
    }
}

/// The versions a watch delivers, as JSON objects.
pub type ObjectVersions = futures::stream::BoxStream<'static, Result<Value, ClusterError>>;

/// How long one watch request lasts before it is reopened: in the simulation a dropped
/// segment could otherwise stall it unnoticed (as for the operator's watches).
const WATCH_TIMEOUT_SECONDS: u32 = 10;

pub type SharedCluster = Arc<dyn Cluster>;

/// `Cluster` over a `kube::Client`, resolving kinds through API discovery (run once,
/// lazily, so CRDs installed by the fixture are found).
pub struct KubeCluster {
    client: kube::Client,
    discovery: tokio::sync::Mutex<Option<Arc<Discovery>>>,
}

impl KubeCluster {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            discovery: tokio::sync::Mutex::new(None),
        }
    }

    async fn discovery(&self, refresh: bool) -> Result<Arc<Discovery>, ClusterError> {
        let mut guard = self.discovery.lock().await;
        if let Some(d) = guard.as_ref()
            && !refresh
        {
            return Ok(d.clone());
        }
        let d = Discovery::new(self.client.clone())
            .run()
            .await
            .map_err(|e| ClusterError::Discovery(e.to_string()))?;
        let d = Arc::new(d);
        *guard = Some(d.clone());
        Ok(d)
    }

    /// Finds the resource for a kind, re-running discovery once if it is unknown (the
    /// fixture may just have installed its CRD).
    async fn resolve(
        &self,
        kind: &str,
        api_version: Option<&str>,
    ) -> Result<(ApiResource, ApiCapabilities), ClusterError> {
        for refresh in [false, true] {
            let discovery = self.discovery(refresh).await?;
            let mut found: Vec<(ApiResource, ApiCapabilities)> = discovery
                .groups()
                .flat_map(|g| g.recommended_resources())
                .filter(|(ar, _)| ar.kind == kind)
                .filter(|(ar, _)| api_version.is_none_or(|v| ar.api_version == v))
                .collect();
            found.sort_by(|a, b| a.0.api_version.cmp(&b.0.api_version));
            match found.len() {
                0 => continue,
                1 => return Ok(found.remove(0)),
                _ => {
                    return Err(ClusterError::AmbiguousKind {
                        kind: kind.to_owned(),
                        candidates: found
                            .iter()
                            .map(|(ar, _)| ar.api_version.clone())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
        Err(ClusterError::UnknownKind {
            kind: kind.to_owned(),
            api_version: api_version.map(str::to_owned),
        })
    }

    /// The API of `object`'s kind, in its own namespace or else `namespace`.
    async fn api_for(
        &self,
        object: &ObjectRef,
        namespace: &str,
    ) -> Result<Api<DynamicObject>, ClusterError> {
        let ns = object.namespace.as_deref().unwrap_or(namespace);
        self.api(&object.kind, object.api_version.as_deref(), ns)
            .await
    }

    async fn api(
        &self,
        kind: &str,
        api_version: Option<&str>,
        namespace: &str,
    ) -> Result<Api<DynamicObject>, ClusterError> {
        let (ar, caps) = self.resolve(kind, api_version).await?;
        Ok(match caps.scope {
            Scope::Namespaced => Api::namespaced_with(self.client.clone(), namespace, &ar),
            Scope::Cluster => Api::all_with(self.client.clone(), &ar),
        })
    }
}

pub fn api_error(
    verb: &'static str,
    object: impl std::fmt::Display,
    e: kube::Error,
) -> ClusterError {
    ClusterError::Api {
        verb,
        object: object.to_string(),
        message: e.to_string(),
    }
}

/// The pods matching `params` in `namespace` (every namespace: `None`), sorted by
/// namespace and name, in one bounded request: what the k3d backend's clients list.
pub async fn list_pods(
    client: &kube::Client,
    namespace: Option<&str>,
    params: &ListParams,
) -> Result<Vec<k8s_openapi::api::core::v1::Pod>, ClusterError> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let object = format!(
        "pods [{}] in {}",
        params.label_selector.as_deref().unwrap_or(""),
        namespace.unwrap_or("all namespaces")
    );
    let mut pods = bounded("list", object, api.list(params)).await?.items;
    pods.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    Ok(pods)
}

/// An object the server sent that could not be turned into JSON.
fn encode_error(
    verb: &'static str,
    object: impl std::fmt::Display,
    e: serde_json::Error,
) -> ClusterError {
    ClusterError::Api {
        verb,
        object: object.to_string(),
        message: format!("encoding the answer as JSON: {e}"),
    }
}

pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

impl Cluster for KubeCluster {
    fn watch<'a>(
        &'a self,
        object: &'a ObjectRef,
        namespace: &'a str,
        resource_version: &'a str,
    ) -> BoxFuture<'a, Option<Result<ObjectVersions, ClusterError>>> {
        use futures::StreamExt;
        Box::pin(async move {
            let api = match self.api_for(object, namespace).await {
                Ok(api) => api,
                Err(e) => return Some(Err(e)),
            };
            let params = kube::api::WatchParams::default()
                .fields(&format!("metadata.name={}", object.name))
                .timeout(WATCH_TIMEOUT_SECONDS);
            let described = object.to_string();
            // Bounds opening the watch; the stream itself ends when the server's
            // watch timeout does.
            let stream = match bounded("watch", object, api.watch(&params, resource_version)).await
            {
                Ok(stream) => stream,
                Err(e) => return Some(Err(e)),
            };
            let versions = stream.filter_map(move |event| {
                let described = described.clone();
                async move {
                    let fail = |message: String| ClusterError::Api {
                        verb: "watch",
                        object: described.clone(),
                        message,
                    };
                    match event {
                        Ok(
                            kube::api::WatchEvent::Added(o) | kube::api::WatchEvent::Modified(o),
                        ) => Some(
                            serde_json::to_value(o)
                                .map_err(|e| encode_error("watch", &described, e)),
                        ),
                        Ok(
                            kube::api::WatchEvent::Deleted(_) | kube::api::WatchEvent::Bookmark(_),
                        ) => None,
                        Ok(kube::api::WatchEvent::Error(e)) => Some(Err(fail(e.to_string()))),
                        Err(e) => Some(Err(fail(e.to_string()))),
                    }
                }
            });
            Some(Ok(versions.boxed()))
        })
    }

    fn apply<'a>(
        &'a self,
        manifest: &'a Value,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let kind = manifest
                .get("kind")
                .and_then(Value::as_str)
                .ok_or(ClusterError::BadManifest("kind"))?;
            let api_version = manifest
                .get("apiVersion")
                .and_then(Value::as_str)
                .ok_or(ClusterError::BadManifest("apiVersion"))?;
            let name = manifest
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .ok_or(ClusterError::BadManifest("metadata.name"))?;
            let ns = manifest
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(namespace);
            let object = ObjectRef {
                kind: kind.to_owned(),
                name: name.to_owned(),
                namespace: Some(ns.to_owned()),
                api_version: Some(api_version.to_owned()),
            };
            let api = self.api(kind, Some(api_version), ns).await?;
            let params = PatchParams::apply(FIELD_MANAGER).force();
            bounded(
                "apply",
                &object,
                api.patch(name, &params, &Patch::Apply(manifest)),
            )
            .await
            .map(|_| ())
        })
    }

    fn get<'a>(
        &'a self,
        object: &'a ObjectRef,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, ClusterError>> {
        Box::pin(async move {
            let api = self.api_for(object, namespace).await?;
            bounded_opt("get", object, api.get(&object.name))
                .await?
                .map(|obj| serde_json::to_value(obj).map_err(|e| encode_error("get", object, e)))
                .transpose()
        })
    }

    fn merge_patch<'a>(
        &'a self,
        object: &'a ObjectRef,
        namespace: &'a str,
        patch: &'a Value,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let api = self.api_for(object, namespace).await?;
            let params = PatchParams::default();
            bounded(
                "patch",
                object,
                api.patch(&object.name, &params, &Patch::Merge(patch)),
            )
            .await
            .map(|_| ())
        })
    }

    fn delete<'a>(
        &'a self,
        object: &'a ObjectRef,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let api = self.api_for(object, namespace).await?;
            let params = DeleteParams::default();
            bounded_opt("delete", object, api.delete(&object.name, &params))
                .await
                .map(|_| ())
        })
    }

    fn events<'a>(
        &'a self,
        object: &'a ObjectRef,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Value>, ClusterError>> {
        Box::pin(async move {
            let ns = object.namespace.as_deref().unwrap_or(namespace);
            let api: Api<k8s_openapi::api::core::v1::Event> =
                Api::namespaced(self.client.clone(), ns);
            let selector = format!(
                "involvedObject.kind={},involvedObject.name={}",
                object.kind, object.name
            );
            let params = ListParams::default().fields(&selector);
            let list = bounded("list events for", object, api.list(&params)).await?;
            list.items
                .into_iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| encode_error("list events for", object, e))
        })
    }
}
