#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The MysqlFailoverGroup controller against an API server over real HTTP, through
//! `kube::Client`: CRD installation, server-side apply of the children (and no write
//! when nothing changed), status writes, Events, and leader election between two
//! controller replicas. There is no MySQL here: the controller is given a MySQL
//! connector that refuses every connection, so both sites are unreachable and the
//! tests exercise everything that talks to the API server.
//!
//! Runs against the simulated API server by default; set
//! `BLOODRAVEN_ENVTEST_KUBECONFIG=/path/to/kubeconfig` to use a real kube-apiserver
//! (each test works in a namespace of its own and deletes it at the end).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bloodraven::api::MysqlFailoverGroup;
use bloodraven::children::BuildContext;
use bloodraven::controllers::indexes::WatchSettings;
use bloodraven::controllers::{ControllerDeps, ControllerSettings};
use bloodraven::engine::LeaseTiming;
use bloodraven::metrics::{Metrics, Readiness};
use bloodraven::seams::SystemClock;
use bloodraven::seams::mysql::{MysqlConnector, MysqlError, MysqlSession, MysqlTarget};
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

const GROUP: &str = "playground";
const PLANNED: &str = "bloodraven.shipstream.io/planned-failover";

/// The API server a test talks to.
struct Env {
    client: Client,
    namespace: String,
    /// Kept alive for the test (the simulated server), `None` on a real one.
    _sim: Option<bloodraven_sim::apiserver::ApiServer>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Env {
    /// Connects to the API server (simulated unless `BLOODRAVEN_ENVTEST_KUBECONFIG` is
    /// set), installs the Bloodraven CRDs and creates a fresh namespace for `test`.
    async fn start(test: &str) -> Env {
        let (client, sim) = match std::env::var("BLOODRAVEN_ENVTEST_KUBECONFIG") {
            Ok(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(&path)
                    .unwrap_or_else(|e| panic!("BLOODRAVEN_ENVTEST_KUBECONFIG={path}: {e}"));
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .unwrap_or_else(|e| panic!("BLOODRAVEN_ENVTEST_KUBECONFIG={path}: {e}"));
                eprintln!(
                    "envtest {test}: real kube-apiserver at {} (BLOODRAVEN_ENVTEST_KUBECONFIG={path})",
                    config.cluster_url
                );
                (Client::try_from(config).unwrap(), None)
            }
            Err(_) => {
                let api = bloodraven_sim::apiserver::ApiServer::new(Arc::new(SystemClock));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let address = listener.local_addr().unwrap();
                tokio::spawn(api.clone().serve(listener));
                eprintln!(
                    "envtest {test}: simulated API server (bloodraven-sim) at http://{address}"
                );
                let config = kube::Config::new(format!("http://{address}").parse().unwrap());
                (Client::try_from(config).unwrap(), Some(api))
            }
        };
        install_crds(&client).await;
        // Unique per run and test, so that a real cluster can run the suite repeatedly.
        let namespace = format!(
            "envtest-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
            )
            .await
            .unwrap();
        Env {
            client,
            namespace,
            _sim: sim,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The playground's Secret and group from `examples/playground.yaml`, in this
    /// test's namespace.
    async fn create_playground_group(&self) -> MysqlFailoverGroup {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/playground.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        let mut group = None;
        for mut document in documents {
            let kind = document["kind"].as_str().unwrap_or_default().to_string();
            document["metadata"]["namespace"] = json!(self.namespace);
            match kind.as_str() {
                "Secret" => {
                    let secret: Secret = serde_json::from_value(document).unwrap();
                    self.api::<Secret>()
                        .create(&PostParams::default(), &secret)
                        .await
                        .unwrap();
                }
                "MysqlFailoverGroup" => group = Some(serde_json::from_value(document).unwrap()),
                _ => {}
            }
        }
        let group: MysqlFailoverGroup = group.expect("examples/playground.yaml has a group");
        self.api::<MysqlFailoverGroup>()
            .create(&PostParams::default(), &group)
            .await
            .unwrap()
    }

    /// Starts a controller replica named `identity`; dropping the handle stops it.
    fn start_controller(&self, identity: &str) -> Controller {
        let settings = ControllerSettings {
            identity: identity.to_string(),
            leader_namespace: self.namespace.clone(),
            leader_lease: bloodraven::leader::LEADER_LEASE.to_string(),
            leader_timing: LeaseTiming::new(Duration::from_secs(3), Duration::from_millis(500))
                .unwrap(),
            leader_renew_interval: Duration::from_millis(500),
            watch: WatchSettings {
                namespace: Some(self.namespace.clone()),
                timeout_seconds: 30,
            },
            build: BuildContext {
                sidecar_image: "ghcr.io/shipstream/bloodraven:envtest".into(),
            },
        };
        let deps = ControllerDeps {
            client: self.client.clone(),
            mysql: Arc::new(NoMysql),
            dragonfly: Arc::new(
                bloodraven::production::dragonfly::RedisDragonflyConnector::new(
                    bloodraven::seams::DragonflyTimeouts::default(),
                ),
            ),
            storage: Arc::new(bloodraven::seams::object_storage::TcpDialer),
            clock: Arc::new(SystemClock),
            metrics: Metrics::new(),
            readiness: Readiness::default(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bloodraven::controllers::run(settings, deps, async move {
            let _ = stopped.await;
        }));
        Controller {
            stop: Some(stop),
            task,
        }
    }

    async fn group(&self) -> MysqlFailoverGroup {
        self.api::<MysqlFailoverGroup>().get(GROUP).await.unwrap()
    }

    async fn status(&self) -> Value {
        serde_json::to_value(self.group().await.status).unwrap()
    }

    /// Events regarding the group with `reason`: (type, note, reportingInstance).
    async fn events(&self, reason: &str) -> Vec<(String, String, String)> {
        self.api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(GROUP))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                    e.reporting_instance.unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn leader(&self) -> Option<String> {
        self.api::<Lease>()
            .get_opt(bloodraven::leader::LEADER_LEASE)
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    }

    async fn annotate(&self, key: &str, value: &str) {
        self.api::<MysqlFailoverGroup>()
            .patch(
                GROUP,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .unwrap();
    }

    /// Every child the controller owns, as `kind/name -> resourceVersion`.
    async fn children(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut add = |kind: &str, objects: Vec<(String, Option<String>, bool)>| {
            for (name, version, owned) in objects {
                if owned {
                    out.insert(format!("{kind}/{name}"), version.unwrap_or_default());
                }
            }
        };
        let owned = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            meta.owner_references.iter().flatten().any(|o| {
                o.kind == "MysqlFailoverGroup" && o.name == GROUP && o.controller == Some(true)
            })
        };
        macro_rules! collect {
            ($kind:ty) => {
                self.api::<$kind>()
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .map(|o| (o.name_any(), o.resource_version(), owned(o.meta())))
                    .collect::<Vec<_>>()
            };
        }
        add("StatefulSet", collect!(StatefulSet));
        add("Service", collect!(Service));
        add("PodDisruptionBudget", collect!(PodDisruptionBudget));
        add("Lease", collect!(Lease));
        let dns = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint"),
            "dnsendpoints",
        );
        let endpoints: Vec<_> =
            Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.namespace, &dns)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|o| (o.name_any(), o.resource_version(), owned(&o.metadata)))
                .collect();
        add("DNSEndpoint", endpoints);
        out
    }

    /// Deletes the test's namespace (a real cluster keeps it otherwise).
    async fn finish(self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.namespace, &DeleteParams::default())
            .await;
    }
}

/// A running controller replica.
struct Controller {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Controller {
    /// Graceful shutdown: finishes the reconcile in progress, then returns.
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the controller did not shut down within 10s")
            .unwrap();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// No MySQL in envtest: every connection is refused, so every site is unreachable.
struct NoMysql;

impl MysqlConnector for NoMysql {
    fn connect<'a>(
        &'a self,
        target: &'a MysqlTarget,
    ) -> BoxFuture<'a, Result<Box<dyn MysqlSession>, MysqlError>> {
        Box::pin(async move {
            Err(MysqlError::Connect {
                address: target.address(),
                message: "envtest runs no MySQL".into(),
            })
        })
    }
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in bloodraven::api::crds() {
        match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            // A real cluster may have them from an earlier run or the chart.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => panic!("installing CRD {}: {e}", crd.name_any()),
        }
    }
    // Served once listing works (a real API server establishes a CRD asynchronously).
    let groups: Api<MysqlFailoverGroup> = Api::all(client.clone());
    eventually(
        Duration::from_secs(30),
        "the MysqlFailoverGroup CRD is served",
        || {
            let groups = groups.clone();
            async move { groups.list(&ListParams::default()).await.is_ok() }
        },
    )
    .await;
}

/// Polls `check` every 100 ms until it holds, or fails the test after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn crds_install_and_the_group_kind_is_served_with_its_schema() {
    let env = Env::start("crds").await;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for crd in bloodraven::api::crds() {
        let served = crds.get(&crd.name_any()).await.unwrap();
        assert_eq!(served.spec.group, crd.spec.group);
        assert_eq!(served.spec.names.kind, crd.spec.names.kind);
    }
    let group = env.create_playground_group().await;
    assert_eq!(group.metadata.generation, Some(1));
    assert!(group.metadata.uid.is_some());
    // The structural schema rejects a group whose spec breaks it.
    let mut bad = serde_json::to_value(&group).unwrap();
    bad["metadata"] = json!({"name": "bad", "namespace": env.namespace});
    bad["spec"]["sites"] = json!("iad");
    let resource = ApiResource::erase::<MysqlFailoverGroup>(&());
    let err = Api::<DynamicObject>::namespaced_with(env.client.clone(), &env.namespace, &resource)
        .create(
            &PostParams::default(),
            &serde_json::from_value(bad).unwrap(),
        )
        .await;
    match err {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "{status:?}"),
        other => panic!("a spec with sites: \"iad\" was not refused as invalid: {other:?}"),
    }
    env.finish().await;
}

#[tokio::test]
async fn the_controller_applies_children_writes_status_and_events_and_rewrites_nothing_unchanged() {
    let env = Env::start("children").await;
    let created = env.create_playground_group().await;
    let controller = env.start_controller("envtest-operator-a");

    // Children: per site a StatefulSet, headless and per-site Services and a PDB; the
    // primary Service and the writer Lease; the Dragonfly children; all owned by the group. No DNSEndpoint: a
    // record pointing nowhere is worse than none, and no site is active without MySQL.
    let want = [
        "StatefulSet/playground-mysql-iad",
        "StatefulSet/playground-mysql-pdx",
        "Service/playground-mysql-iad",
        "Service/playground-mysql-pdx",
        "Service/playground-mysql-iad-headless",
        "Service/playground-mysql-pdx-headless",
        "PodDisruptionBudget/playground-mysql-iad",
        "PodDisruptionBudget/playground-mysql-pdx",
        "Service/playground-mysql-primary",
        "Lease/playground-writer",
        // examples/playground.yaml sets spec.dragonfly: its children per site and the
        // app-facing Service.
        "StatefulSet/playground-dragonfly-iad",
        "StatefulSet/playground-dragonfly-pdx",
        "Service/playground-dragonfly-iad-headless",
        "Service/playground-dragonfly-pdx-headless",
        "PodDisruptionBudget/playground-dragonfly-iad",
        "PodDisruptionBudget/playground-dragonfly-pdx",
        "Service/playground-dragonfly",
    ];
    let mut children = BTreeMap::new();
    for _ in 0..100 {
        children = env.children().await;
        if want.iter().all(|w| children.contains_key(*w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in want {
        assert!(children.contains_key(w), "missing {w}: {children:?}");
    }
    assert!(
        !children.contains_key("DNSEndpoint/playground"),
        "a DNSEndpoint before any site is active: {children:?}"
    );
    let statefulset = env
        .api::<StatefulSet>()
        .get("playground-mysql-iad")
        .await
        .unwrap();
    assert!(
        statefulset
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .any(
                |m| m.manager.as_deref() == Some(bloodraven::children::FIELD_MANAGER)
                    && m.operation.as_deref() == Some("Apply")
            ),
        "not server-side applied under {}: {:?}",
        bloodraven::children::FIELD_MANAGER,
        statefulset.metadata.managed_fields
    );

    // Status: both sites unreachable (no MySQL), no primary, conditions that name the
    // generation they describe.
    let mut status = Value::Null;
    for _ in 0..100 {
        status = env.status().await;
        if status["observedGeneration"] == json!(created.metadata.generation)
            && status["sites"].as_array().is_some_and(|s| s.len() == 2)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["health"], "NoPrimary", "{status:#}");
    for site in status["sites"].as_array().unwrap() {
        assert_eq!(site["state"], "unreachable", "{status:#}");
    }
    let conditions = status["conditions"].as_array().unwrap();
    assert!(!conditions.is_empty(), "{status:#}");
    for condition in conditions {
        assert_eq!(
            condition["observedGeneration"],
            json!(created.metadata.generation),
            "{status:#}"
        );
    }

    // Nothing changes, so nothing is written: the children and the group keep their
    // resourceVersions over several probe intervals (1 s each), once the bootstrap
    // stopped waiting for silent sites (one detection window, 3 s) and says so.
    let settled = |status: &Value| {
        status["conditions"].as_array().is_some_and(|c| {
            c.iter().any(|c| {
                c["type"] == "Ready"
                    && c["message"]
                        .as_str()
                        // The Dragonfly half adds its own note after MySQL's.
                        .is_some_and(|m| m.contains("bootstrap: no site answers"))
            })
        })
    };
    for _ in 0..100 {
        if settled(&env.status().await) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(settled(&env.status().await), "{:#}", env.status().await);
    let children_before = env.children().await;
    let group_before = env.group().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(env.children().await, children_before);
    let group_after = env.group().await;
    assert_eq!(
        group_after.resource_version(),
        group_before.resource_version(),
        "the group was rewritten although nothing changed:\nbefore: {:#}\nafter: {:#}",
        serde_json::to_value(&group_before.status).unwrap(),
        serde_json::to_value(&group_after.status).unwrap()
    );

    // Events: a planned failover to an unknown site is refused with a Warning Event,
    // the status says why, and the annotation is consumed.
    env.annotate(PLANNED, "ord").await;
    let mut rejected = Vec::new();
    for _ in 0..100 {
        rejected = env.events("PlannedFailoverRejected").await;
        if !rejected.is_empty() && env.group().await.annotations().get(PLANNED).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message = "unknown site \"ord\" (sites: iad, pdx)";
    assert!(
        rejected.iter().any(|(kind, note, by)| kind == "Warning"
            && note.ends_with(message)
            && by == "envtest-operator-a"),
        "{rejected:?}"
    );
    let status = env.status().await;
    assert_eq!(status["plannedFailover"]["phase"], "Rejected", "{status:#}");
    assert_eq!(status["plannedFailover"]["message"], message, "{status:#}");
    assert!(env.group().await.annotations().get(PLANNED).is_none());

    controller.shutdown().await;
    env.finish().await;
}

#[tokio::test]
async fn only_the_leader_writes_and_a_second_replica_takes_over_when_it_stops() {
    let env = Env::start("leader").await;
    env.create_playground_group().await;
    let a = env.start_controller("envtest-operator-a");
    let mut holder = None;
    for _ in 0..100 {
        holder = env.leader().await;
        if holder.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(holder.as_deref(), Some("envtest-operator-a"));
    let b = env.start_controller("envtest-operator-b");

    // While a leads, b never takes the lease and never acts: the rejection Event comes
    // from a alone.
    env.annotate(PLANNED, "ord").await;
    for _ in 0..30 {
        assert_eq!(env.leader().await.as_deref(), Some("envtest-operator-a"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rejected = env.events("PlannedFailoverRejected").await;
    assert!(!rejected.is_empty(), "the leader did not act");
    assert!(
        rejected.iter().all(|(_, _, by)| by == "envtest-operator-a"),
        "a non-leader acted: {rejected:?}"
    );

    // a stops; b takes the lease after it expires and acts from then on.
    a.shutdown().await;
    let mut holder = None;
    for _ in 0..100 {
        holder = env.leader().await;
        if holder.as_deref() == Some("envtest-operator-b") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(holder.as_deref(), Some("envtest-operator-b"));
    env.annotate(PLANNED, "sea").await;
    let mut by_b = Vec::new();
    for _ in 0..100 {
        by_b = env
            .events("PlannedFailoverRejected")
            .await
            .into_iter()
            .filter(|(_, note, by)| by == "envtest-operator-b" && note.contains("\"sea\""))
            .collect();
        if !by_b.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!by_b.is_empty(), "the new leader did not act");
    b.shutdown().await;
    env.finish().await;
}
