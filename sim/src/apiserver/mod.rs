//! The simulated Kubernetes API server: an in-memory object store with Kubernetes'
//! read/write/watch semantics, served in process (this module's `ApiServer` methods)
//! and over HTTP (`serve`) so that `kube::Client`, `kube::runtime` and kubectl talk to
//! it unchanged. See docs/simulation.md, "API server", for what it implements and what
//! it deliberately leaves out.

mod apply;
mod crd;
mod error;
mod events;
mod http;
mod meta;
mod patch;
pub mod protobuf;
mod registry;
mod schema_check;
mod selector;
mod store;
mod table;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bloodraven::seams::SharedClock;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

pub use error::{ApiError, ErrorSubject, StatusCause};
pub use http::TurmoilListener;
pub use registry::{PrinterColumn, ResourceInfo};
pub use selector::{FieldSelector, LabelSelector};

use store::State;

/// Which collection: group ("" for core), version, plural resource name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl ResourceKey {
    /// A core (`/api/v1`) resource.
    pub fn core(version: &str, resource: &str) -> Self {
        ResourceKey::new("", version, resource)
    }

    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        ResourceKey {
            group: group.to_string(),
            version: version.to_string(),
            resource: resource.to_string(),
        }
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Who is calling: used for request counting by user agent and for SSA field managers.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub user_agent: &'a str,
}

impl Caller<'_> {
    /// The caller for in-process reads that take no `Caller`.
    pub const IN_PROCESS: Caller<'static> = Caller {
        user_agent: "in-process",
    };
}

/// Label and field selectors of a list or watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

/// A list result: the items (sorted by namespace, then name) and the list's resourceVersion.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectList {
    pub items: Vec<Value>,
    pub resource_version: u64,
}

/// One event of a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    /// Every event up to this resourceVersion has been delivered.
    Bookmark(u64),
}

/// The kinds of patch (`Content-Type` over HTTP).
#[derive(Clone, Debug, PartialEq)]
pub enum Patch {
    /// `application/merge-patch+json` (RFC 7386).
    Merge(Value),
    /// `application/json-patch+json` (RFC 6902).
    Json(Value),
    /// `application/strategic-merge-patch+json` (built-in kinds only).
    StrategicMerge(Value),
    /// `application/apply-patch+yaml` (server-side apply).
    Apply {
        field_manager: String,
        force: bool,
        object: Value,
    },
}

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
}

/// `propagationPolicy` of a delete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// Delete the owner now, its dependents after (the default).
    #[default]
    Background,
    /// Delete dependents first; the owner waits with the `foregroundDeletion` finalizer.
    Foreground,
    /// Delete the owner and leave its dependents without that owner reference.
    Orphan,
}

/// Options of a delete beyond the contract's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

/// What `request_counts` is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestCountKey {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// `pods`, `leases.coordination.k8s.io`, `pods/status`.
    pub resource: String,
    pub user_agent: String,
}

/// A watch registered with [`ApiServer::watch_with`]: the receiver and the id with
/// which to request bookmarks or cancel it.
#[derive(Debug)]
pub struct Watch {
    pub id: u64,
    pub events: UnboundedReceiver<WatchEvent>,
}

/// Tunables; the defaults suit both the simulation and serve mode.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How many changes the watch history keeps; older resourceVersions get 410 Gone.
    pub history_limit: usize,
    /// Seed for generated names (`generateName`) and uids.
    pub seed: u64,
    /// How often a watch that allowed bookmarks receives one.
    pub bookmark_interval: std::time::Duration,
    /// Watch timeout when the client sends no `timeoutSeconds`.
    pub default_watch_timeout: std::time::Duration,
    /// Upper bound of a delay before each watch event is sent (zero: none). Each delay
    /// is drawn from `seed`, the watch and the event's position in it, so a run replays
    /// exactly. A real API server's watch lags behind its writes; a client that reads
    /// its own writes back from a watch cache must cope (issue 12).
    pub watch_delay_max: std::time::Duration,
    /// Faults the HTTP layer injects into the product's requests and watch streams
    /// (off by default; see `crate::seam_faults`).
    pub seam_faults: crate::seam_faults::SeamFaults,
}

/// The delay before the `index`-th event of watch `watch_id`: uniform in
/// `[0, max]` by milliseconds, from a splitmix64 hash of the three (no shared RNG, so
/// one watch's delays do not depend on how many events other watches saw).
pub fn watch_delay(
    seed: u64,
    watch_id: u64,
    index: u64,
    max: std::time::Duration,
) -> std::time::Duration {
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if max_ms == 0 {
        return std::time::Duration::ZERO;
    }
    let z = crate::rng::mix(
        seed ^ watch_id.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ index.wrapping_mul(0xbf58_476d_1ce4_e5b9),
    );
    std::time::Duration::from_millis(z % max_ms.saturating_add(1))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            history_limit: 10_000,
            seed: 0,
            bookmark_interval: std::time::Duration::from_secs(60),
            default_watch_timeout: std::time::Duration::from_secs(1800),
            watch_delay_max: std::time::Duration::ZERO,
            seam_faults: crate::seam_faults::SeamFaults::off(),
        }
    }
}

/// The in-memory API server. Cheap to clone (shared state).
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    clock: SharedClock,
    config: ServerConfig,
    /// What simulated containers printed, for `kubectl logs` (the kubelet writes it).
    logs: crate::logs::ContainerLogs,
    /// Requests of the product's clients so far: the index of the next seam-fault draw.
    faultable_requests: std::sync::atomic::AtomicU64,
}

impl ApiServer {
    /// A server with the built-in kinds and the namespaces `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease`.
    pub fn new(clock: SharedClock) -> Self {
        ApiServer::with_config(clock, ServerConfig::default())
    }

    pub fn with_config(clock: SharedClock, config: ServerConfig) -> Self {
        let now = meta::format_time(clock.now());
        let state = State::new(&config, &now);
        ApiServer {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                clock,
                config,
                logs: crate::logs::ContainerLogs::default(),
                faultable_requests: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// The output of every simulated container run.
    pub fn container_logs(&self) -> &crate::logs::ContainerLogs {
        &self.inner.logs
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the store half-written (every
        // write builds the new object first), so a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> String {
        meta::format_time(self.inner.clock.now())
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The seam fault for this request of `user_agent` (`write`: a PUT or non-apply
    /// PATCH). Only the product's clients are faulted, and only they advance the draw
    /// index, so the runner's own reads cannot shift the operator's faults.
    pub fn seam_fault(&self, user_agent: &str, write: bool) -> crate::seam_faults::ApiFault {
        let faults = &self.inner.config.seam_faults;
        if faults.is_off() || !crate::seam_faults::faults_apply_to(user_agent) {
            return crate::seam_faults::ApiFault::None;
        }
        let index = self
            .inner
            .faultable_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        faults.api_fault(self.inner.config.seed, index, write)
    }

    /// The resource registered at `key`, if any.
    pub fn resource(&self, key: &ResourceKey) -> Option<ResourceInfo> {
        self.lock().registry.get(key).map(|info| (**info).clone())
    }

    /// Every served resource, in key order.
    pub fn resources(&self) -> Vec<ResourceInfo> {
        self.lock()
            .registry
            .all()
            .map(|info| (**info).clone())
            .collect()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// The resourceVersion of the newest write to `key`'s objects (0: never written):
    /// a list of `key` is unchanged while this is.
    pub fn storage_version(&self, key: &ResourceKey) -> Result<u64, ApiError> {
        self.lock().storage_version(key)
    }

    pub fn get(&self, key: &ResourceKey, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.get_as(key, ns, name, &Caller::IN_PROCESS)
    }

    pub fn get_as(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        who: &Caller,
    ) -> Result<Value, ApiError> {
        self.lock().get(key, ns, name, who)
    }

    pub fn list(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        q: &ListQuery,
    ) -> Result<ObjectList, ApiError> {
        self.list_as(key, ns, q, &Caller::IN_PROCESS)
    }

    pub fn list_as(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        q: &ListQuery,
        who: &Caller,
    ) -> Result<ObjectList, ApiError> {
        self.lock().list(key, ns, q, who)
    }

    pub fn create(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        obj: Value,
        who: &Caller,
    ) -> Result<Value, ApiError> {
        self.create_managed(key, ns, obj, who, None)
    }

    /// `create` with an explicit field manager (`?fieldManager=`); `None` derives it
    /// from the user agent as Kubernetes does.
    pub fn create_managed(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        obj: Value,
        who: &Caller,
        field_manager: Option<&str>,
    ) -> Result<Value, ApiError> {
        let now = self.now();
        let manager =
            field_manager.map_or_else(|| store::manager_name(who.user_agent), str::to_string);
        self.lock().create(key, ns, obj, who, &manager, &now)
    }

    /// Replaces an object; 409 Conflict when `metadata.resourceVersion` is stale. For
    /// kinds with a status subresource the status is kept as stored.
    pub fn update(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        obj: Value,
        who: &Caller,
    ) -> Result<Value, ApiError> {
        self.update_managed(key, ns, obj, Subresource::Main, who, None)
    }

    /// `update` or `update_status` with an explicit field manager.
    pub fn update_managed(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        obj: Value,
        sub: Subresource,
        who: &Caller,
        field_manager: Option<&str>,
    ) -> Result<Value, ApiError> {
        let now = self.now();
        let manager =
            field_manager.map_or_else(|| store::manager_name(who.user_agent), str::to_string);
        self.lock().update(key, ns, obj, sub, who, &manager, &now)
    }

    /// Replaces only the status (`PUT .../status`).
    pub fn update_status(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        obj: Value,
        who: &Caller,
    ) -> Result<Value, ApiError> {
        self.update_managed(key, ns, obj, Subresource::Status, who, None)
    }

    pub fn patch(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        patch: Patch,
        sub: Subresource,
        who: &Caller,
    ) -> Result<Value, ApiError> {
        self.patch_managed(key, ns, name, patch, sub, who, None)
    }

    /// `patch` with an explicit field manager for non-apply patches (apply patches
    /// carry their own).
    #[allow(clippy::too_many_arguments)]
    pub fn patch_managed(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        patch: Patch,
        sub: Subresource,
        who: &Caller,
        field_manager: Option<&str>,
    ) -> Result<Value, ApiError> {
        let now = self.now();
        let manager =
            field_manager.map_or_else(|| store::manager_name(who.user_agent), str::to_string);
        self.lock()
            .patch(key, ns, name, patch, sub, who, &manager, &now)
    }

    /// Deletes with background propagation. An object with finalizers only gets its
    /// deletionTimestamp; the object returned is the deleted (or terminating) one.
    pub fn delete(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        who: &Caller,
    ) -> Result<Value, ApiError> {
        self.delete_with(key, ns, name, &DeleteOptions::default(), who)
            .map(|(obj, _)| obj)
    }

    /// Delete with options; the flag says whether the object is gone (false: it waits
    /// for finalizers).
    pub fn delete_with(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        who: &Caller,
    ) -> Result<(Value, bool), ApiError> {
        let now = self.now();
        self.lock().delete(key, ns, name, opts, who, &now)
    }

    /// Deletes every object of the collection matching the query; returns them.
    pub fn delete_collection(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        q: &ListQuery,
        who: &Caller,
    ) -> Result<Vec<Value>, ApiError> {
        let now = self.now();
        self.lock().delete_collection(key, ns, q, who, &now)
    }

    /// Watches from `from_rv` (exclusive): `None` or `Some(0)` first sends the current
    /// objects as `Added`; an rv older than the history window is 410 Gone.
    pub fn watch(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        q: &ListQuery,
        from_rv: Option<u64>,
    ) -> Result<UnboundedReceiver<WatchEvent>, ApiError> {
        self.watch_with(key, ns, q, from_rv, &Caller::IN_PROCESS)
            .map(|w| w.events)
    }

    /// `watch` with an id for [`ApiServer::send_bookmark`] and [`ApiServer::cancel_watch`].
    pub fn watch_with(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        q: &ListQuery,
        from_rv: Option<u64>,
        who: &Caller,
    ) -> Result<Watch, ApiError> {
        self.lock().watch(key, ns, q, from_rv, who)
    }

    /// Sends a bookmark carrying the current resourceVersion to one watch. Ordered
    /// with its events: everything up to that rv has already been queued.
    pub fn send_bookmark(&self, watch_id: u64) {
        self.lock().send_bookmark(watch_id);
    }

    pub fn cancel_watch(&self, watch_id: u64) {
        self.lock().watchers.retain(|w| w.id != watch_id);
    }

    /// Drops the watch history up to the current resourceVersion, so that any watch
    /// from an older rv gets 410 Gone (as after an etcd compaction).
    pub fn compact(&self) {
        self.lock().compact();
    }

    pub fn request_counts(&self) -> BTreeMap<RequestCountKey, u64> {
        self.lock().counts.clone()
    }

    /// Serves the Kubernetes REST API over any axum listener (tokio or turmoil TCP).
    pub async fn serve<L>(self, listener: L) -> std::io::Result<()>
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        axum::serve(listener, http::router(self)).await
    }

    /// The axum router, for callers that compose it with more routes.
    pub fn router(self) -> axum::Router {
        http::router(self)
    }
}
