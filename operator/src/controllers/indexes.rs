//! In-memory indexes fed by watches: the groups, their pods, the nodes, the writer
//! Leases and every child kind the operator applies. Decisions read these stores,
//! never the API server in a loop. Writer-lease sightings are stamped here, on the
//! operator's monotonic clock, at the moment each change arrives.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::{DNSEndpoint, MysqlBackup, MysqlBackupVerification, MysqlFailoverGroup};
use crate::children::dragonfly::DRAGONFLY_APP_NAME;
use crate::children::{
    DesiredObject, INSTANCE_LABEL, MANAGED_BY_LABEL, MYSQL_APP_NAME, NAME_LABEL,
};
use crate::engine::lease::{LeaseRecord, LeaseSighting};
use crate::engine::time::Millis;
use crate::production::kube::ChildCache;
use crate::production::lease as lease_object;
use crate::rbac::{ApiAccess, Scope};

const LIST_WATCH: &[&str] = &["list", "watch"];

/// What [`Indexes::start`] watches (see `crate::rbac`): every store is a list + watch.
pub const API_ACCESS: &[ApiAccess] = &[
    ApiAccess::watched(
        "bloodraven.shipstream.io",
        "mysqlfailovergroups",
        LIST_WATCH,
        "the groups the operator reconciles",
    ),
    ApiAccess::watched(
        "",
        "pods",
        LIST_WATCH,
        "mysqld and Dragonfly pods: phase, readiness, node, role and traffic labels",
    ),
    ApiAccess {
        group: "",
        resource: "nodes",
        verbs: LIST_WATCH,
        scope: Scope::Cluster,
        why: "node readiness and cordon of each site",
    },
    ApiAccess::watched(
        "coordination.k8s.io",
        "leases",
        LIST_WATCH,
        "writer Lease sightings, on the operator's clock",
    ),
    ApiAccess::watched(
        "",
        "services",
        LIST_WATCH,
        "child cache: skip applies that change nothing",
    ),
    ApiAccess::watched("apps", "statefulsets", LIST_WATCH, "child cache"),
    ApiAccess::watched("policy", "poddisruptionbudgets", LIST_WATCH, "child cache"),
    ApiAccess::watched("", "serviceaccounts", LIST_WATCH, "child cache"),
    ApiAccess::watched(
        "rbac.authorization.k8s.io",
        "roles",
        LIST_WATCH,
        "child cache",
    ),
    ApiAccess::watched(
        "rbac.authorization.k8s.io",
        "rolebindings",
        LIST_WATCH,
        "child cache",
    ),
    ApiAccess::watched(
        "externaldns.k8s.io",
        "dnsendpoints",
        LIST_WATCH,
        "child cache and the DNS target now",
    ),
    ApiAccess::watched("batch", "cronjobs", LIST_WATCH, "child cache"),
    ApiAccess::watched(
        "batch",
        "jobs",
        LIST_WATCH,
        "backup Jobs: whether each MysqlBackup's dump finished",
    ),
    ApiAccess::watched(
        "bloodraven.shipstream.io",
        "mysqlbackups",
        LIST_WATCH,
        "the backups the backup controller reconciles",
    ),
    ApiAccess::watched(
        "bloodraven.shipstream.io",
        "mysqlbackupverifications",
        LIST_WATCH,
        "the verifications the verification controller reconciles",
    ),
];

/// A group as the watch delivers it: its metadata always, its typed form only when it
/// deserializes. The store is filled per object, so one group the operator cannot read
/// (a value its types refuse) does not fail the whole list and blind the operator to
/// every other group; that one is reported instead (see `controllers::unreadable`).
#[derive(Clone, Debug)]
pub struct GroupObject {
    metadata: ObjectMeta,
    /// The typed group, or why it could not be read (`spec.x.y: message`).
    pub group: Result<Arc<MysqlFailoverGroup>, String>,
}

impl GroupObject {
    /// Reads one group object; only metadata that is not an ObjectMeta is an error.
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        let metadata: ObjectMeta =
            serde_json::from_value(value.get("metadata").cloned().unwrap_or(Value::Null))?;
        let group = serde_path_to_error::deserialize::<_, MysqlFailoverGroup>(value)
            .map(Arc::new)
            .map_err(|err| {
                let path = err.path().to_string();
                if path == "." {
                    err.inner().to_string()
                } else {
                    format!("{path}: {}", err.inner())
                }
            });
        Ok(Self { metadata, group })
    }
}

impl<'de> serde::Deserialize<'de> for GroupObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl Resource for GroupObject {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
        MysqlFailoverGroup::kind(dt)
    }
    fn group(dt: &()) -> std::borrow::Cow<'_, str> {
        MysqlFailoverGroup::group(dt)
    }
    fn version(dt: &()) -> std::borrow::Cow<'_, str> {
        MysqlFailoverGroup::version(dt)
    }
    fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
        MysqlFailoverGroup::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Every store the controller reads, plus the lease sightings.
#[derive(Clone)]
pub struct Indexes {
    pub groups: Store<GroupObject>,
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    pub leases: Store<Lease>,
    pub services: Store<Service>,
    pub statefulsets: Store<StatefulSet>,
    pub pdbs: Store<PodDisruptionBudget>,
    pub service_accounts: Store<ServiceAccount>,
    pub roles: Store<Role>,
    pub role_bindings: Store<RoleBinding>,
    pub dns_endpoints: Store<DNSEndpoint>,
    pub cronjobs: Store<CronJob>,
    /// Jobs labelled managed-by=bloodraven: backup Jobs and the CronJobs' trigger Jobs.
    pub jobs: Store<Job>,
    pub backups: Store<MysqlBackup>,
    pub verifications: Store<MysqlBackupVerification>,
    /// Woken by any change to a `MysqlBackup`, a `MysqlBackupVerification` or a managed
    /// Job: the backup and verification controllers reconcile at once instead of at
    /// their next tick.
    pub backups_changed: Arc<Notify>,
    pub sightings: LeaseSightings,
    /// Woken when any group changes: the controller's loop starts and stops workers.
    pub changed: Arc<Notify>,
    /// Per-group wake-ups: a change to a group or one of its pods wakes that group's
    /// worker only, so that a reconcile follows at once instead of at the next probe.
    pub wakeups: GroupWakeups,
}

/// One `Notify` per group, keyed by (namespace, name). `notify_one` keeps a permit
/// when the worker is busy, so a change that arrives during a pass wakes it right after
/// that pass instead of at the next probe.
#[derive(Clone, Default)]
pub struct GroupWakeups {
    groups: Arc<Mutex<WakeupMap>>,
}

/// (namespace, name) -> the group's wake-up.
type WakeupMap = BTreeMap<(String, String), Arc<Notify>>;

impl GroupWakeups {
    /// The wake-up of one group (created on first use).
    pub fn of(&self, namespace: &str, name: &str) -> Arc<Notify> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups
            .entry((namespace.to_string(), name.to_string()))
            .or_default()
            .clone()
    }

    pub fn wake(&self, namespace: &str, name: &str) {
        self.of(namespace, name).notify_one();
    }

    /// After a relist nobody knows what changed: every group is woken.
    pub fn wake_all(&self) {
        let groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        for notify in groups.values() {
            notify.notify_one();
        }
    }

    pub fn forget(&self, namespace: &str, name: &str) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_string(), name.to_string()));
    }
}

/// Which group an event concerns: a group itself, or the instance label of a pod.
fn wake_for<K: Resource>(
    wakeups: &GroupWakeups,
    event: &watcher::Event<K>,
    group_of: impl Fn(&K) -> Option<(String, String)>,
) {
    match event {
        watcher::Event::Apply(object)
        | watcher::Event::Delete(object)
        | watcher::Event::InitApply(object) => {
            if let Some((namespace, name)) = group_of(object) {
                wakeups.wake(&namespace, &name);
            }
        }
        watcher::Event::InitDone => wakeups.wake_all(),
        watcher::Event::Init => {}
    }
}

/// The operator's sightings of each writer Lease, keyed by (namespace, name), on the
/// monotonic clock whose origin is `origin`.
#[derive(Clone)]
pub struct LeaseSightings {
    origin: Instant,
    seen: Arc<Mutex<BTreeMap<(String, String), LeaseSighting>>>,
}

impl LeaseSightings {
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            seen: Arc::default(),
        }
    }

    pub fn now(&self) -> Millis {
        Millis::from_instant(self.origin, Instant::now())
    }

    /// Folds a fresh read of a Lease (`None`: it does not exist) into the sighting.
    pub fn observe(&self, namespace: &str, name: &str, record: LeaseRecord) -> LeaseSighting {
        let now = self.now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        let sighting = LeaseSighting::observe(seen.get(&key), record, now);
        seen.insert(key, sighting.clone());
        sighting
    }
}

/// How the watches behave. The API server ends a watch after `timeout` and the
/// watcher resumes it from the last resourceVersion; short timeouts suit networks that
/// silently drop connections (the simulation's), long ones save requests.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    pub namespace: Option<String>,
    pub timeout_seconds: u32,
}

/// Exponential backoff without jitter (500 ms doubling to 10 s), on tokio's clock: a
/// handful of watches per operator needs no thundering-herd protection, and a seeded
/// simulation needs the same delays on every run.
#[derive(Debug, Clone, Default)]
pub struct WatchBackoff {
    current: Option<Duration>,
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let next = self.current.map_or(Duration::from_millis(500), |d| {
            (d * 2).min(Duration::from_secs(10))
        });
        self.current = Some(next);
        Some(next)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.current = None;
    }
}

fn api<K>(client: &Client, settings: &WatchSettings) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Starts one reflector; `on_event` sees every event after the store applied it.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    tasks: &mut JoinSet<()>,
    on_event: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let stream = reflector::reflector(
        writer,
        watcher(api, config).backoff(WatchBackoff::default()),
    );
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => on_event(&event),
                Err(err) => tracing::warn!(%err, %kind, "watch failed; retrying"),
            }
        }
    });
    reader
}

impl Indexes {
    /// Starts every watch; the stores fill in the background (see `wait_ready`).
    pub fn start(client: &Client, settings: &WatchSettings, tasks: &mut JoinSet<()>) -> Self {
        let changed = Arc::new(Notify::new());
        let backups_changed = Arc::new(Notify::new());
        let sightings = LeaseSightings::new(Instant::now());
        let base = watcher::Config::default().timeout(settings.timeout_seconds);
        let children = base
            .clone()
            .labels(&format!("{MANAGED_BY_LABEL}=bloodraven"));
        let wakeups = GroupWakeups::default();
        let groups = {
            let (changed, wakeups) = (changed.clone(), wakeups.clone());
            reflect(
                api::<GroupObject>(client, settings),
                base.clone(),
                tasks,
                move |event| {
                    wake_for(&wakeups, event, |group: &GroupObject| {
                        Some((group.namespace().unwrap_or_default(), group.name_any()))
                    });
                    changed.notify_waiters();
                },
            )
        };
        let pods = {
            let wakeups = wakeups.clone();
            reflect(
                api::<Pod>(client, settings),
                base.clone().labels(&format!(
                    "{NAME_LABEL} in ({MYSQL_APP_NAME},{DRAGONFLY_APP_NAME})"
                )),
                tasks,
                move |event| {
                    wake_for(&wakeups, event, |pod: &Pod| {
                        let instance = pod.labels().get(INSTANCE_LABEL)?.clone();
                        Some((pod.namespace().unwrap_or_default(), instance))
                    });
                },
            )
        };
        let nodes = reflect(
            Api::<Node>::all(client.clone()),
            base.clone(),
            tasks,
            |_| {},
        );
        let lease_sightings = sightings.clone();
        let leases = reflect(
            api::<Lease>(client, settings),
            children.clone(),
            tasks,
            move |event| {
                let seen = |lease: &Lease, record: LeaseRecord| {
                    lease_sightings.observe(
                        &lease.namespace().unwrap_or_default(),
                        &lease.name_any(),
                        record,
                    );
                };
                match event {
                    watcher::Event::Apply(lease) | watcher::Event::InitApply(lease) => {
                        seen(lease, lease_object::record(lease));
                    }
                    watcher::Event::Delete(lease) => seen(lease, LeaseRecord::absent()),
                    watcher::Event::Init | watcher::Event::InitDone => {}
                }
            },
        );
        Self {
            groups,
            pods,
            nodes,
            leases,
            services: reflect(api(client, settings), children.clone(), tasks, |_| {}),
            statefulsets: reflect(api(client, settings), children.clone(), tasks, |_| {}),
            pdbs: reflect(api(client, settings), children.clone(), tasks, |_| {}),
            service_accounts: reflect(api(client, settings), children.clone(), tasks, |_| {}),
            roles: reflect(api(client, settings), children.clone(), tasks, |_| {}),
            role_bindings: reflect(api(client, settings), children.clone(), tasks, |_| {}),
            dns_endpoints: reflect(api(client, settings), children.clone(), tasks, |_| {}),
            cronjobs: reflect(api(client, settings), children.clone(), tasks, |_| {}),
            jobs: {
                let changed = backups_changed.clone();
                reflect(api(client, settings), children, tasks, move |_| {
                    changed.notify_waiters();
                })
            },
            backups: {
                let changed = backups_changed.clone();
                reflect(api(client, settings), base.clone(), tasks, move |_| {
                    changed.notify_waiters();
                })
            },
            verifications: {
                let changed = backups_changed.clone();
                reflect(api(client, settings), base, tasks, move |_| {
                    changed.notify_waiters();
                })
            },
            backups_changed,
            sightings,
            changed,
            wakeups,
        }
    }

    /// Waits until every store has its first full list.
    pub async fn wait_ready(&self) {
        // A store's only error is its writer being dropped (the operator is stopping).
        let _ = futures::join!(
            self.groups.wait_until_ready(),
            self.pods.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.leases.wait_until_ready(),
            self.services.wait_until_ready(),
            self.statefulsets.wait_until_ready(),
            self.pdbs.wait_until_ready(),
            self.service_accounts.wait_until_ready(),
            self.roles.wait_until_ready(),
            self.role_bindings.wait_until_ready(),
            self.dns_endpoints.wait_until_ready(),
            self.cronjobs.wait_until_ready(),
            self.jobs.wait_until_ready(),
            self.backups.wait_until_ready(),
            self.verifications.wait_until_ready(),
        );
    }
}

fn cached<K: Resource<DynamicType = ()> + Clone + serde::Serialize>(
    store: &Store<K>,
    object: &DesiredObject,
) -> Option<Value> {
    let reference = ObjectRef::new(&object.name).within(&object.namespace);
    store
        .get(&reference)
        .and_then(|o| serde_json::to_value(o.as_ref()).ok())
}

impl ChildCache for Indexes {
    fn cached(&self, object: &DesiredObject) -> Option<Value> {
        match object.resource.kind.as_str() {
            "Service" => cached(&self.services, object),
            "StatefulSet" => cached(&self.statefulsets, object),
            "PodDisruptionBudget" => cached(&self.pdbs, object),
            "ServiceAccount" => cached(&self.service_accounts, object),
            "Role" => cached(&self.roles, object),
            "RoleBinding" => cached(&self.role_bindings, object),
            "Lease" => cached(&self.leases, object),
            "DNSEndpoint" => cached(&self.dns_endpoints, object),
            "CronJob" => cached(&self.cronjobs, object),
            // Unknown kinds are always applied: writing too often is safe, never
            // writing is not.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(namespace: &str, instance: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": namespace,
                         "labels": {INSTANCE_LABEL: instance}}
        }))
        .unwrap()
    }

    /// Issue 12: a pod event wakes its own group's worker, not every worker.
    #[tokio::test]
    async fn a_pod_change_wakes_only_its_group() {
        let wakeups = GroupWakeups::default();
        let orders = wakeups.of("shop", "orders");
        let billing = wakeups.of("shop", "billing");
        let of_instance = |pod: &Pod| {
            Some((
                pod.namespace().unwrap_or_default(),
                pod.labels().get(INSTANCE_LABEL)?.clone(),
            ))
        };
        let quick = std::time::Duration::from_millis(50);
        let orders_woken = orders.notified();
        let billing_woken = billing.notified();
        tokio::pin!(orders_woken, billing_woken);
        orders_woken.as_mut().enable();
        billing_woken.as_mut().enable();
        wake_for(
            &wakeups,
            &watcher::Event::Apply(pod("shop", "orders")),
            of_instance,
        );
        assert!(tokio::time::timeout(quick, orders_woken).await.is_ok());
        assert!(
            tokio::time::timeout(quick, billing_woken.as_mut())
                .await
                .is_err()
        );
        wake_for(&wakeups, &watcher::Event::InitDone, of_instance);
        assert!(tokio::time::timeout(quick, billing_woken).await.is_ok());
    }

    /// Issue 12: a change that arrives while the worker is in a pass (nobody waits on
    /// the `Notify`) is kept and wakes the worker's next wait at once.
    #[tokio::test]
    async fn a_change_during_a_pass_wakes_the_worker_after_it() {
        let wakeups = GroupWakeups::default();
        let orders = wakeups.of("shop", "orders");
        wakeups.wake("shop", "orders");
        let quick = std::time::Duration::from_millis(50);
        assert!(tokio::time::timeout(quick, orders.notified()).await.is_ok());
        // One permit, not one per change.
        assert!(
            tokio::time::timeout(quick, orders.notified())
                .await
                .is_err()
        );
    }
}
