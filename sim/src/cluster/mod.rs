//! Cluster behaviour: the controllers a real control plane and kubelets run (scheduler,
//! StatefulSets, Deployments, Jobs and CronJobs, Service endpoints, PVC binding, node
//! lifecycle, kubelets), as deterministic passes over the in-process API server that
//! the world runs between simulation steps.
//!
//! Every pass reads one snapshot of the objects it needs, then each controller writes
//! what differs from the desired state; a write is made only on a real change, so an
//! idle cluster costs no resourceVersions.

mod endpoints;
mod events;
mod jobs;
mod kubelet;
mod nodes;
mod scheduler;
mod workloads;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bloodraven::seams::Clock;
use serde_json::Value;

use crate::apiserver::{ApiError, ApiServer, Caller, ListQuery, Patch, ResourceKey, Subresource};
use crate::clock::SimClock;
use crate::images::ImageRegistry;
use crate::network::Network;

pub use bloodraven::cron::{CronError, CronSchedule};
pub(crate) use events::EventRecorder;
pub use kubelet::FreezeError;
pub(crate) use kubelet::Kubelet;
pub(crate) use nodes::NodeLifecycle;

/// Timings of the simulated control plane and kubelets (Kubernetes defaults unless
/// noted).
#[derive(Clone, Debug)]
pub struct ClusterTimings {
    /// How often the controllers and kubelets run a pass (real ones react to watches
    /// within milliseconds; 100 ms keeps the reaction shape at a fraction of the cost).
    pub controller_interval: Duration,
    /// A node whose kubelet has not reported for this long is marked NotReady
    /// (`node-monitor-grace-period`, 40 s).
    pub node_monitor_grace: Duration,
    /// Pods on an unreachable node are evicted after this long (the default
    /// `tolerationSeconds` of the `unreachable:NoExecute` taint, 300 s). They stay
    /// Terminating until the node's kubelet confirms, as live.
    pub unreachable_eviction: Duration,
    /// First container restart delay; doubles per restart (CrashLoopBackOff).
    pub restart_backoff_initial: Duration,
    pub restart_backoff_max: Duration,
    /// A container that ran this long resets its restart backoff.
    pub restart_backoff_reset: Duration,
    /// Retry interval of an image that has no program (ImagePullBackOff).
    pub image_pull_backoff: Duration,
}

impl Default for ClusterTimings {
    fn default() -> Self {
        Self {
            controller_interval: Duration::from_millis(100),
            node_monitor_grace: Duration::from_secs(40),
            unreachable_eviction: Duration::from_secs(300),
            restart_backoff_initial: Duration::from_secs(10),
            restart_backoff_max: Duration::from_secs(300),
            restart_backoff_reset: Duration::from_secs(600),
            image_pull_backoff: Duration::from_secs(10),
        }
    }
}

pub(crate) fn key_pods() -> ResourceKey {
    ResourceKey::core("v1", "pods")
}
pub(crate) fn key_nodes() -> ResourceKey {
    ResourceKey::core("v1", "nodes")
}
pub(crate) fn key_services() -> ResourceKey {
    ResourceKey::core("v1", "services")
}
pub(crate) fn key_endpoints() -> ResourceKey {
    ResourceKey::core("v1", "endpoints")
}
pub(crate) fn key_pvcs() -> ResourceKey {
    ResourceKey::core("v1", "persistentvolumeclaims")
}
pub(crate) fn key_secrets() -> ResourceKey {
    ResourceKey::core("v1", "secrets")
}
pub(crate) fn key_configmaps() -> ResourceKey {
    ResourceKey::core("v1", "configmaps")
}
pub(crate) fn key_events() -> ResourceKey {
    ResourceKey::core("v1", "events")
}
pub(crate) fn key_statefulsets() -> ResourceKey {
    ResourceKey::new("apps", "v1", "statefulsets")
}
pub(crate) fn key_deployments() -> ResourceKey {
    ResourceKey::new("apps", "v1", "deployments")
}
pub(crate) fn key_jobs() -> ResourceKey {
    ResourceKey::new("batch", "v1", "jobs")
}
pub(crate) fn key_cronjobs() -> ResourceKey {
    ResourceKey::new("batch", "v1", "cronjobs")
}

/// Kubernetes' metav1.Time text (RFC 3339, whole seconds, UTC).
pub(crate) fn format_time(ts: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(ts.as_second())
        .unwrap_or(ts)
        .to_string()
}

/// One kind's objects as a pass reads them; shared between passes while unchanged.
pub(crate) type Listed = Arc<Vec<Value>>;

/// The objects one pass reads, listed once.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub nodes: Listed,
    pub pods: Listed,
    pub services: Listed,
    pub endpoints: Listed,
    pub pvcs: Listed,
    pub statefulsets: Listed,
    pub deployments: Listed,
    pub jobs: Listed,
    pub cronjobs: Listed,
}

/// The last list of each kind with the storage version it was read at: a pass
/// re-lists only the kinds written since (leases, events and status writes change
/// the store's resourceVersion every few milliseconds, but rarely most kinds).
#[derive(Default)]
struct ListCache {
    lists: BTreeMap<ResourceKey, (u64, Listed)>,
}

impl ListCache {
    fn list(&mut self, api: &ControllerApi, key: ResourceKey) -> Listed {
        // Read the version before listing: a write in between makes the cached version
        // older than the list, so the next pass re-lists (never the reverse).
        let version = api.api.storage_version(&key).ok();
        if let (Some(version), Some((cached, list))) = (version, self.lists.get(&key))
            && *cached == version
        {
            return list.clone();
        }
        let list = Arc::new(api.list_all(&key));
        match version {
            Some(version) => {
                self.lists.insert(key, (version, list.clone()));
            }
            None => {
                self.lists.remove(&key);
            }
        }
        list
    }

    /// The storage version the cached list of `key` was read at.
    fn version(&self, key: &ResourceKey) -> Option<u64> {
        self.lists.get(key).map(|(version, _)| *version)
    }
}

/// Typed-error-free wrapper around the API server for controllers: a failed write is
/// logged and retried by the next pass, as a real controller requeues.
#[derive(Clone)]
pub(crate) struct ControllerApi {
    pub api: ApiServer,
    /// Writes attempted and events recorded through this API and its clones: a
    /// controller run that adds none changed nothing.
    effects: Arc<AtomicU64>,
}

impl ControllerApi {
    pub(crate) fn new(api: ApiServer) -> Self {
        Self {
            api,
            effects: Arc::default(),
        }
    }

    /// Counts a write attempt or a recorded event.
    pub(crate) fn note_effect(&self) {
        self.effects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn effects(&self) -> u64 {
        self.effects.load(Ordering::Relaxed)
    }

    pub(crate) fn list_all(&self, key: &ResourceKey) -> Vec<Value> {
        match self.api.list(key, None, &ListQuery::default()) {
            Ok(list) => list.items,
            Err(err) => {
                tracing::debug!(resource = %key.resource, %err, "list failed");
                Vec::new()
            }
        }
    }

    pub(crate) fn get(&self, key: &ResourceKey, ns: Option<&str>, name: &str) -> Option<Value> {
        self.api.get(key, ns, name).ok()
    }

    pub(crate) fn create(
        &self,
        who: &str,
        key: &ResourceKey,
        ns: Option<&str>,
        obj: Value,
    ) -> Option<Value> {
        self.note_effect();
        log_failure(
            who,
            "create",
            key,
            self.api.create(key, ns, obj, &Caller { user_agent: who }),
        )
    }

    pub(crate) fn update_status(
        &self,
        who: &str,
        key: &ResourceKey,
        ns: Option<&str>,
        obj: Value,
    ) -> Option<Value> {
        self.note_effect();
        log_failure(
            who,
            "update status",
            key,
            self.api
                .update_status(key, ns, obj, &Caller { user_agent: who }),
        )
    }

    pub(crate) fn merge_patch(
        &self,
        who: &str,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        patch: Value,
    ) -> Option<Value> {
        self.merge_patch_to(Subresource::Main, who, key, ns, name, patch)
    }

    pub(crate) fn merge_patch_status(
        &self,
        who: &str,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        patch: Value,
    ) -> Option<Value> {
        self.merge_patch_to(Subresource::Status, who, key, ns, name, patch)
    }

    fn merge_patch_to(
        &self,
        sub: Subresource,
        who: &str,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        patch: Value,
    ) -> Option<Value> {
        self.note_effect();
        let operation = match sub {
            Subresource::Status => "patch status",
            Subresource::Main => "patch",
        };
        let result = self.api.patch(
            key,
            ns,
            name,
            Patch::Merge(patch),
            sub,
            &Caller { user_agent: who },
        );
        log_failure(who, operation, key, result)
    }

    pub(crate) fn delete(
        &self,
        who: &str,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.note_effect();
        log_failure(
            who,
            "delete",
            key,
            self.api.delete(key, ns, name, &Caller { user_agent: who }),
        )
    }
}

fn log_failure(
    who: &str,
    verb: &str,
    key: &ResourceKey,
    result: Result<Value, ApiError>,
) -> Option<Value> {
    match result {
        Ok(value) => Some(value),
        Err(err) => {
            // Conflicts and not-founds are normal races between passes; the next pass
            // re-reads and retries.
            tracing::debug!(controller = who, verb, resource = %key.resource, %err, "write failed; retrying next pass");
            None
        }
    }
}

/// The whole simulated control plane plus the kubelets.
pub(crate) struct ControlPlane {
    pub api: ControllerApi,
    pub clock: SimClock,
    pub timings: ClusterTimings,
    pub rng: crate::rng::SimRng,
    pub events: EventRecorder,
    pub scheduler: scheduler::Scheduler,
    pub nodes: NodeLifecycle,
    pub kubelet: Kubelet,
    pub cronjobs: jobs::CronJobState,
    cached_snapshot: Option<(u64, Arc<Snapshot>)>,
    lists: ListCache,
    /// Per input-driven controller: the versions of its input lists at its last run,
    /// kept only when that run had no effect.
    quiet: BTreeMap<&'static str, Vec<u64>>,
}

/// What the world knows about one node that the control plane needs.
#[derive(Clone, Debug)]
pub(crate) struct NodeInfo {
    pub name: String,
    /// The turmoil host holding the node's address.
    pub host: String,
    pub site: Option<String>,
    /// The node is powered off (Fault::CrashNode).
    pub crashed: bool,
}

impl ControlPlane {
    pub(crate) fn new(
        api: ApiServer,
        clock: SimClock,
        timings: ClusterTimings,
        rng: crate::rng::SimRng,
        images: ImageRegistry,
    ) -> Self {
        let api = ControllerApi::new(api);
        Self {
            events: EventRecorder::new(api.clone(), clock.clone()),
            scheduler: scheduler::Scheduler::default(),
            nodes: NodeLifecycle::default(),
            kubelet: Kubelet::new(images),
            cronjobs: jobs::CronJobState::default(),
            cached_snapshot: None,
            lists: ListCache::default(),
            quiet: BTreeMap::new(),
            api,
            clock,
            timings,
            rng,
        }
    }

    pub(crate) fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// The pass's snapshot: re-listed only when the store changed since the last one
    /// (an unchanged resourceVersion means every list would return the same objects).
    fn snapshot(&mut self) -> Arc<Snapshot> {
        let rv = self.api.api.resource_version();
        if let Some((cached_rv, snapshot)) = &self.cached_snapshot
            && *cached_rv == rv
        {
            return snapshot.clone();
        }
        let snapshot = Arc::new(self.list_snapshot());
        self.cached_snapshot = Some((rv, snapshot.clone()));
        snapshot
    }

    fn list_snapshot(&mut self) -> Snapshot {
        let (api, lists) = (&self.api, &mut self.lists);
        Snapshot {
            nodes: lists.list(api, key_nodes()),
            pods: lists.list(api, key_pods()),
            services: lists.list(api, key_services()),
            endpoints: lists.list(api, key_endpoints()),
            pvcs: lists.list(api, key_pvcs()),
            statefulsets: lists.list(api, key_statefulsets()),
            deployments: lists.list(api, key_deployments()),
            jobs: lists.list(api, key_jobs()),
            cronjobs: lists.list(api, key_cronjobs()),
        }
    }

    /// One pass of every controller and kubelet. `api_reachable` is false while the API
    /// server's host is down: then the control plane is down with it (its controllers
    /// cannot reach the store) and kubelets keep their pods running unreported.
    pub(crate) fn pass(
        &mut self,
        net: &mut Network,
        nodes: &[NodeInfo],
        api_host: &str,
        api_reachable: bool,
    ) {
        if !api_reachable {
            kubelet::run_detached(self, net, nodes);
            return;
        }
        let unchanged = self
            .cached_snapshot
            .as_ref()
            .is_some_and(|(rv, _)| *rv == self.api.api.resource_version());
        let snap = self.snapshot();
        // A quiescent cluster has nothing any controller could act on: the store is
        // unchanged, no pod, Job or CronJob exists (no timers: restarts, back-offs,
        // schedules), and every kubelet is connected (no node-monitor grace running).
        let quiescent = unchanged
            && self.kubelet.is_idle()
            && snap.pods.is_empty()
            && snap.jobs.is_empty()
            && snap.cronjobs.is_empty()
            && nodes
                .iter()
                .all(|n| NodeLifecycle::kubelet_connected(n, net, api_host));
        if quiescent {
            return;
        }
        nodes::reconcile(self, &snap, net, nodes, api_host);
        scheduler::reconcile(self, &snap);
        self.run_input_driven(
            "statefulset-controller",
            &[key_statefulsets(), key_pods(), key_pvcs()],
            &snap,
            workloads::reconcile_statefulsets,
        );
        workloads::reconcile_deployments(self, &snap);
        jobs::reconcile_jobs(self, &snap);
        jobs::reconcile_cronjobs(self, &snap);
        self.run_input_driven(
            "persistentvolume-controller",
            &[key_pvcs()],
            &snap,
            workloads::bind_claims,
        );
        self.run_input_driven(
            "endpoint-controller",
            &[key_services(), key_pods(), key_endpoints()],
            &snap,
            endpoints::reconcile,
        );
        kubelet::reconcile(self, &snap, net, nodes, api_host);
    }

    /// Runs `controller`, a function of the `inputs` lists alone (no clock, no random
    /// draw without a write), unless its last run had no effect (no write, no event)
    /// and those lists are unchanged since: it would do nothing again. Most passes
    /// follow a lease renewal or a status write that none of these controllers reads.
    fn run_input_driven(
        &mut self,
        name: &'static str,
        inputs: &[ResourceKey],
        snap: &Snapshot,
        controller: fn(&mut ControlPlane, &Snapshot),
    ) {
        let versions: Option<Vec<u64>> = inputs.iter().map(|k| self.lists.version(k)).collect();
        if versions.is_some() && self.quiet.get(name) == versions.as_ref() {
            return;
        }
        let before = self.api.effects();
        controller(self, snap);
        match versions {
            Some(versions) if self.api.effects() == before => {
                self.quiet.insert(name, versions);
            }
            _ => {
                self.quiet.remove(name);
            }
        }
    }
}
