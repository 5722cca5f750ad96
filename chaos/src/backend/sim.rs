//! The simulated backend: a seeded bloodraven-sim playground World in this process. The
//! runner runs as a turmoil client host (`chaos-runner`, on the control plane), so its
//! polling, `within`, `hold` and `wait` run on simulated time; it talks to the API
//! server with a `kube::Client` over simulated TCP. Faults on the network and on nodes
//! go to the World through a mailbox that the driver loop serves between ticks; pod
//! deletions go through the API; divergent writes and replication delay go to the MySQL
//! models through `SimMysqlSession`, as a SUPER user would. After every tick the driver
//! samples each MySQL model's writability for single-writer.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bloodraven::transport::mysql::{MysqlConnector, MysqlSession, MysqlTarget, MysqlTimeouts};
use bloodraven::transport::{DragonflyConnector, DragonflyTarget, DragonflyTimeouts, SharedClock};
use bloodraven_sim::apiserver::{ApiServer, ResourceKey};
use bloodraven_sim::dialer::ClusterDialer;
use bloodraven_sim::images::{StartupProfile, normalize_repository};
use bloodraven_sim::models::dragonfly::SimDragonflyConnector;
use bloodraven_sim::models::mysql::{
    MYSQL_PORT, MysqlObserver, MysqlProgram, SimMysqlConnector, SimMysqlSession,
};
use bloodraven_sim::models::{DRAGONFLY_IMAGE, MYSQL_IMAGE};
use bloodraven_sim::pod::SharedDialer;
use bloodraven_sim::{Fault as WorldFault, Placement, SimClock, World, WorldBuilder, WorldError};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Container, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Backend, BackendError, FaultPlan};
use crate::cluster::{KubeCluster, SharedCluster};
use crate::runner::{self, Failure, RunConfig, ScenarioOutcome};
use crate::scenario::{BackendKind, Component, Fault, Scenario};
use crate::workload::{
    self, CounterAck, CounterTarget, SessionSlot, WritabilitySample, increment_in, present_in,
};

/// The seed a sim run uses when `--seed` is not given (printed with every run).
pub const DEFAULT_SEED: u64 = 1;
/// The turmoil host the runner runs on.
pub const RUNNER_HOST: &str = "chaos-runner";
/// How the operator's pods are found (the label its Deployment sets).
pub const OPERATOR_SELECTOR: &str = bloodraven::deploy::OPERATOR_POD_SELECTOR;
/// The operator's metrics port when its pod names no `metrics` container port.
pub const OPERATOR_METRICS_PORT: u16 = bloodraven::deploy::METRICS_PORT;
/// Pod selector of the primary Service and of the app-facing Dragonfly Service
/// (DESIGN.md, pod labels): the counter finds its Services by what they select.
const PRIMARY_SELECTOR: (&str, &str) = ("shipstream.io/role", "primary");
const DRAGONFLY_SELECTOR: (&str, &str) = ("shipstream.io/dragonfly-role", "master");
/// Keys the counter and write-divergent write in the models' counter table.
const CACHE_COUNTER_KEY: &str = "chaos-counter";
const DIVERGENT_KEY_PREFIX: &str = "chaos-divergent/";
/// How long mysqld takes from container start to accepting connections in the
/// scenarios' World: a server with an existing data directory (InnoDB recovery, GTID
/// state, the image's entrypoint) takes seconds, not the model's default half second;
/// with that default a killed primary came back inside the 3 s detection window and
/// `kill-site` could never cause a failover.
pub const MYSQL_STARTUP: StartupProfile = StartupProfile {
    delay: Duration::from_secs(5),
    jitter: Duration::from_secs(3),
};
/// Simulated time the driver grants a run beyond the scenario's own timeout and the
/// fixture's wait, before it declares the simulation stuck.
const DRIVER_SLACK: Duration = Duration::from_secs(600);

/// One concrete operation; what the ledger stores for the sim backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum SimOp {
    /// Delete the namespace's pods on the site's node; only those running one of
    /// `components` (by container image) unless it is empty.
    DeletePods {
        namespace: String,
        site: String,
        components: Vec<Component>,
    },
    /// Delete the operator's pods (any namespace).
    DeleteOperatorPods {
        selector: String,
    },
    Cordon {
        site: String,
    },
    Uncordon {
        site: String,
    },
    IsolateSite {
        site: String,
    },
    HealSite {
        site: String,
    },
    PartitionSites {
        sites: [String; 2],
    },
    HealSites {
        sites: [String; 2],
    },
    CrashNode {
        site: String,
    },
    RecoverNode {
        site: String,
    },
    /// Commit `transactions` writes on the site's mysqld as a SUPER user, bypassing
    /// read-only (errant GTIDs with that server's UUID).
    ForcedWrites {
        namespace: String,
        site: String,
        transactions: u32,
    },
    /// `read_only=OFF, super_read_only=OFF` on the site's mysqld as root.
    ForceWritable {
        namespace: String,
        site: String,
    },
    /// Freeze (`frozen: true`) or thaw the named container of the namespace's MySQL
    /// pods on the site's node (the sidecar runs in the MySQL pod).
    FreezeContainer {
        namespace: String,
        site: String,
        container: String,
        frozen: bool,
    },
    /// STOP REPLICA; CHANGE REPLICATION SOURCE TO SOURCE_DELAY = seconds; START REPLICA.
    SetSourceDelay {
        namespace: String,
        site: String,
        seconds: u32,
    },
}

fn ops(list: Vec<SimOp>) -> Result<Vec<Value>, BackendError> {
    super::encode_ops(BackendKind::Sim, list)
}

fn call_error(operation: impl Into<String>, message: impl std::fmt::Display) -> BackendError {
    BackendError::Call {
        backend: BackendKind::Sim,
        operation: operation.into(),
        message: message.to_string(),
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<(), String>>;

/// World faults requested by the runner's host, applied by the driver between ticks
/// (the World is not reachable from inside a host).
#[derive(Clone, Default)]
pub struct WorldMailbox(Arc<Mutex<Vec<WorldRequest>>>);

/// Faults to apply in order, and where to say how it went.
type WorldRequest = (Vec<WorldFault>, Reply);

impl WorldMailbox {
    async fn apply(&self, faults: Vec<WorldFault>) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0
            .lock()
            .map_err(|_| "world mailbox poisoned".to_owned())?
            .push((faults, tx));
        rx.await
            .map_err(|_| "the simulation driver stopped before applying the fault".to_owned())?
    }

    /// Applies every pending request in order and answers it.
    fn serve(&self, world: &mut World) {
        let pending = match self.0.lock() {
            Ok(mut queue) => std::mem::take(&mut *queue),
            Err(_) => return,
        };
        for (faults, reply) in pending {
            let mut result = Ok(());
            for fault in faults {
                if let Err(e) = world.apply(fault.clone()) {
                    result = Err(format!("{fault:?}: {e}"));
                    break;
                }
            }
            let _ = reply.send(result);
        }
    }
}

/// What a [`SimBackend`] shares with the driver; `Send`, so it can cross into a host.
#[derive(Clone)]
pub struct SimShared {
    pub seed: u64,
    api: ApiServer,
    clock: SimClock,
    mailbox: WorldMailbox,
    observer: MysqlObserver,
    /// site -> node.
    sites: BTreeMap<String, String>,
    /// Writability changes recorded by the driver, not yet taken by the runner.
    samples: Arc<Mutex<Vec<WritabilitySample>>>,
}

impl SimShared {
    /// Each site's writability now: a site accepts writes when any MySQL model running
    /// on its node does.
    fn site_writability(&self) -> BTreeMap<String, bool> {
        self.sites
            .iter()
            .map(|(site, node)| (site.clone(), self.observer.accepts_writes_on(node)))
            .collect()
    }
}

/// The playground World plus what the sim backend needs from it: a MySQL observer
/// registered with the image registry, the CRDs installed, the fault mailbox, and the
/// per-tick writability sampler.
pub struct SimWorld {
    world: World,
    shared: SimShared,
    last: BTreeMap<String, bool>,
    clients: u32,
}

/// Why the driver could not finish a run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulation: {0}")]
    World(#[from] WorldError),
    #[error("installing {what} into the simulated API server: {message}")]
    Install { what: String, message: String },
    #[error("the simulated run did not finish within {0:?} of simulated time")]
    Stuck(Duration),
}

impl SimWorld {
    /// The playground topology (sites iad and pdx) for `seed`, with the Bloodraven CRDs.
    pub fn playground(seed: u64) -> Result<Self, SimError> {
        Self::playground_with_mysql_startup(seed, MYSQL_STARTUP)
    }

    /// [`SimWorld::playground`] with another mysqld start-up time: component tests that
    /// restart a primary within the detection window need a mysqld that comes back in
    /// well under it.
    pub fn playground_with_mysql_startup(
        seed: u64,
        mysql_startup: StartupProfile,
    ) -> Result<Self, SimError> {
        let observer = MysqlObserver::default();
        let mut builder = WorldBuilder::new(seed);
        builder.images_mut().register(
            MYSQL_IMAGE,
            MysqlProgram::default().with_observer(observer.clone()),
            mysql_startup,
        );
        let world = builder.build()?;
        let api = world.api().clone();
        bloodraven_sim::playground::install_crds(&world).map_err(|e| SimError::Install {
            what: "the Bloodraven CRDs".into(),
            message: e.to_string(),
        })?;
        let sites = world
            .sites()
            .iter()
            .map(|s| (s.name.clone(), s.node.clone()))
            .collect();
        let shared = SimShared {
            seed,
            api,
            clock: world.clock().clone(),
            mailbox: WorldMailbox::default(),
            observer,
            sites,
            samples: Arc::default(),
        };
        Ok(Self {
            world,
            shared,
            last: BTreeMap::new(),
            clients: 0,
        })
    }

    /// Installs the operator (its namespace and Deployment, running the real
    /// controller through the Bloodraven image), as `bloodraven_sim::playground` does.
    pub fn install_operator(&mut self) -> Result<(), SimError> {
        bloodraven_sim::playground::install_operator(&self.world).map_err(|e| SimError::Install {
            what: "the operator".into(),
            message: e.to_string(),
        })
    }

    pub fn world(&mut self) -> &mut World {
        &mut self.world
    }

    pub fn shared(&self) -> SimShared {
        self.shared.clone()
    }

    /// One tick: step the World, apply requested faults, sample writability.
    pub fn step(&mut self) -> Result<(), SimError> {
        self.world.step()?;
        self.shared.mailbox.serve(&mut self.world);
        self.sample();
        Ok(())
    }

    fn sample(&mut self) {
        // Runs after every tick: compare in place, allocate only on a change.
        let now = self.shared.clock.now_ms();
        let mut changes = Vec::new();
        for (site, node) in &self.shared.sites {
            let writable = self.shared.observer.accepts_writes_on(node);
            if self.last.get(site) != Some(&writable) {
                changes.push(WritabilitySample {
                    at: now,
                    site: site.clone(),
                    writable,
                });
                self.last.insert(site.clone(), writable);
            }
        }
        if !changes.is_empty()
            && let Ok(mut samples) = self.shared.samples.lock()
        {
            samples.extend(changes);
        }
    }

    /// Runs `client` as a runner host (on the control plane) with a [`SimBackend`] built
    /// inside it, stepping the World until the client returns or `limit` of simulated
    /// time passes. On `Stuck` the client's future is dropped (as a runner that died).
    pub fn run_client<T, F, Fut>(&mut self, limit: Duration, client: F) -> Result<T, SimError>
    where
        T: 'static,
        F: FnOnce(Arc<SimBackend>) -> Fut + 'static,
        Fut: Future<Output = T> + 'static,
    {
        self.clients += 1;
        let host = if self.clients == 1 {
            RUNNER_HOST.to_owned()
        } else {
            format!("{RUNNER_HOST}-{}", self.clients)
        };
        let slot: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
        let out = slot.clone();
        let shared = self.shared.clone();
        let own_host = host.clone();
        // turmoil cannot crash a client host: a runner that overruns is killed by
        // dropping its future (as a process dies, without running its `finally`).
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        self.world
            .add_client(&host, Placement::ControlPlane, async move {
                let client_api = bloodraven_sim::transport::api_server_client()?;
                let backend = Arc::new(SimBackend::new(shared, client_api, &own_host));
                tokio::select! {
                    value = client(backend) => *out.borrow_mut() = Some(value),
                    _ = killed => {}
                }
                Ok(())
            });
        let until = self.world.elapsed() + limit;
        loop {
            if let Some(value) = slot.borrow_mut().take() {
                return Ok(value);
            }
            if self.world.elapsed() >= until {
                let _ = kill.send(());
                self.step()?;
                return Err(SimError::Stuck(limit));
            }
            self.step()?;
        }
    }

    /// Steps the World for `duration` of simulated time (faults keep being served).
    pub fn run_for(&mut self, duration: Duration) -> Result<(), SimError> {
        let until = self.world.elapsed() + duration;
        while self.world.elapsed() < until {
            self.step()?;
        }
        Ok(())
    }
}

/// Runs one scenario on a fresh playground World seeded with `config.seed` (default
/// [`DEFAULT_SEED`]). Blocking: the World lives on the calling thread.
pub fn run_scenario(scenario: &Scenario, config: &RunConfig) -> ScenarioOutcome {
    let seed = config.seed.unwrap_or(DEFAULT_SEED);
    let mut config = config.clone();
    config.seed = Some(seed);
    let wall = std::time::Instant::now();
    let setup_failure = |message: String| ScenarioOutcome {
        id: scenario.id.clone(),
        backend: BackendKind::Sim,
        backend_description: describe(seed),
        seed: Some(seed),
        failures: vec![Failure {
            step: "setup".into(),
            message,
            detail: String::new(),
            last_error: None,
        }],
        wall_ms: u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX),
        simulated_ms: 0,
        timeline: Vec::new(),
        workload: None,
        ledger: config.ledger_path.clone(),
    };
    let mut sim = match SimWorld::playground(seed) {
        Ok(sim) => sim,
        Err(e) => return setup_failure(e.to_string()),
    };
    // A fixture with a failover group needs the operator to make it Healthy.
    match runner::fixture_needs_operator(scenario) {
        Ok(false) => {}
        Ok(true) => {
            if let Err(e) = sim.install_operator() {
                return setup_failure(e.to_string());
            }
        }
        Err(e) => return setup_failure(e),
    }
    let limit = scenario.timeout.as_duration() + runner::FIXTURE_HEALTHY_WITHIN + DRIVER_SLACK;
    let owned = scenario.clone();
    let run_config = config.clone();
    match sim.run_client(limit, move |backend| async move {
        runner::run_scenario(&owned, backend, &run_config).await
    }) {
        Ok(outcome) => outcome,
        Err(e) => setup_failure(e.to_string()),
    }
}

fn describe(seed: u64) -> String {
    format!("simulated playground (bloodraven-sim, seed {seed})")
}

/// The backend the runner sees inside the simulation.
pub struct SimBackend {
    shared: SimShared,
    client: kube::Client,
    cluster: SharedCluster,
    clock: SharedClock,
    /// The runner's own host, for the cluster dialer.
    host: String,
}

impl SimBackend {
    /// Must be built inside a turmoil host (the kube client spawns on its runtime).
    pub fn new(shared: SimShared, client: kube::Client, host: &str) -> Self {
        Self {
            clock: Arc::new(shared.clock.clone()),
            cluster: Arc::new(KubeCluster::new(client.clone())),
            shared,
            client,
            host: host.to_owned(),
        }
    }

    fn dialer(&self, namespace: &str) -> SharedDialer {
        ClusterDialer::new(
            self.shared.api.clone(),
            namespace,
            &self.host,
            Duration::from_secs(1),
        )
        .shared()
    }

    fn node_of(&self, site: &str) -> Result<&str, BackendError> {
        self.shared
            .sites
            .get(site)
            .map(String::as_str)
            .ok_or_else(|| BackendError::NoNodeForSite {
                backend: BackendKind::Sim,
                site: site.to_owned(),
                selector: format!(
                    "the simulated playground's sites ({})",
                    self.shared
                        .sites
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    async fn run_op(&self, op: &SimOp) -> Result<(), BackendError> {
        let world = |faults: Vec<WorldFault>| async move {
            self.shared
                .mailbox
                .apply(faults)
                .await
                .map_err(|m| call_error(format!("{op:?}"), m))
        };
        let node = |site: &str| self.node_of(site).map(str::to_owned);
        match op {
            SimOp::DeletePods {
                namespace,
                site,
                components,
            } => {
                let node = node(site)?;
                let pods = self.site_pods(namespace, &node, components).await?;
                let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
                for pod in pods {
                    match api.delete(&pod, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => {
                            return Err(call_error(format!("delete pod {namespace}/{pod}"), e));
                        }
                    }
                }
                Ok(())
            }
            SimOp::DeleteOperatorPods { selector } => {
                let api: Api<Pod> = Api::all(self.client.clone());
                let pods = api
                    .list(&ListParams::default().labels(selector))
                    .await
                    .map_err(|e| call_error(format!("list pods {selector}"), e))?;
                if pods.items.is_empty() {
                    return Err(call_error(
                        "kill-operator",
                        format!("no operator pod runs (no pod labelled {selector})"),
                    ));
                }
                for pod in pods.items {
                    let ns = pod.metadata.namespace.clone().unwrap_or_default();
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                    api.delete(&name, &DeleteParams::default())
                        .await
                        .map_err(|e| call_error(format!("delete pod {ns}/{name}"), e))?;
                }
                Ok(())
            }
            SimOp::Cordon { site } => world(vec![WorldFault::Cordon(node(site)?)]).await,
            SimOp::Uncordon { site } => world(vec![WorldFault::Uncordon(node(site)?)]).await,
            SimOp::IsolateSite { site } => {
                node(site)?;
                world(vec![WorldFault::IsolateSite(site.clone())]).await
            }
            SimOp::HealSite { site } => world(vec![WorldFault::HealSite(site.clone())]).await,
            SimOp::PartitionSites { sites: [a, b] } => {
                node(a)?;
                node(b)?;
                world(vec![WorldFault::PartitionSites(a.clone(), b.clone())]).await
            }
            SimOp::HealSites { sites: [a, b] } => {
                world(vec![WorldFault::HealSites(a.clone(), b.clone())]).await
            }
            SimOp::CrashNode { site } => world(vec![WorldFault::CrashNode(node(site)?)]).await,
            SimOp::RecoverNode { site } => world(vec![WorldFault::RecoverNode(node(site)?)]).await,
            SimOp::ForcedWrites {
                namespace,
                site,
                transactions,
            } => {
                let mut session = self.site_mysql_root(namespace, site).await?;
                for n in 1..=*transactions {
                    let key = format!("{DIVERGENT_KEY_PREFIX}{n}");
                    session
                        .forced_write(&key, i64::from(n))
                        .await
                        .map_err(|e| call_error("write-divergent", e))?;
                }
                Ok(())
            }
            SimOp::ForceWritable { namespace, site } => {
                let mut session = self.site_mysql_root(namespace, site).await?;
                session
                    .set_read_only(bloodraven::transport::mysql::ReadOnlyMode::Writable)
                    .await
                    .map_err(|e| call_error("force-writable", e))
            }
            SimOp::FreezeContainer {
                namespace,
                site,
                container,
                frozen,
            } => {
                let pods = self
                    .site_pods(namespace, &node(site)?, &[Component::Mysql])
                    .await?;
                if pods.is_empty() && *frozen {
                    return Err(call_error(
                        format!("freeze {container} at {site}"),
                        format!("no MySQL pod of {namespace} runs on {site}'s node"),
                    ));
                }
                // Thawing a pod that was recreated since is a no-op: its container
                // started unfrozen.
                let faults = pods
                    .into_iter()
                    .map(|pod| {
                        let (namespace, container) = (namespace.clone(), container.clone());
                        if *frozen {
                            WorldFault::FreezeContainer {
                                namespace,
                                pod,
                                container,
                            }
                        } else {
                            WorldFault::ThawContainer {
                                namespace,
                                pod,
                                container,
                            }
                        }
                    })
                    .collect();
                world(faults).await
            }
            SimOp::SetSourceDelay {
                namespace,
                site,
                seconds,
            } => {
                let mut session = self.site_mysql_root(namespace, site).await?;
                let fail =
                    |e: bloodraven::transport::MysqlError| call_error("replication-delay", e);
                session.stop_replica().await.map_err(fail)?;
                session.set_source_delay(*seconds).await.map_err(fail)?;
                session.start_replica().await.map_err(fail)
            }
        }
    }

    /// Names of the namespace's pods on `node` running one of `components` (any when empty).
    async fn site_pods(
        &self,
        namespace: &str,
        node: &str,
        components: &[Component],
    ) -> Result<Vec<String>, BackendError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pods = api
            .list(&ListParams::default())
            .await
            .map_err(|e| call_error(format!("list pods in {namespace}"), e))?;
        let mut names: Vec<String> = pods
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .filter(|p| components.is_empty() || components.iter().any(|c| runs(p, *c)))
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        names.sort();
        Ok(names)
    }

    /// A root session to the site's mysqld (the first MySQL pod on its node by name),
    /// with the password from the pod's `MYSQL_ROOT_PASSWORD`.
    async fn site_mysql_root(
        &self,
        namespace: &str,
        site: &str,
    ) -> Result<SimMysqlSession, BackendError> {
        let node = self.node_of(site)?.to_owned();
        let pods = self
            .site_pods(namespace, &node, &[Component::Mysql])
            .await?;
        let Some(pod_name) = pods.first() else {
            return Err(call_error(
                format!("MySQL of site {site}"),
                format!("no MySQL pod runs on {node} in namespace {namespace}"),
            ));
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod = api
            .get(pod_name)
            .await
            .map_err(|e| call_error(format!("get pod {namespace}/{pod_name}"), e))?;
        let container = mysql_container(&pod).ok_or_else(|| {
            call_error(
                format!("pod {namespace}/{pod_name}"),
                "has no mysql container",
            )
        })?;
        let password = self
            .env_value(namespace, &container, "MYSQL_ROOT_PASSWORD")
            .await?
            .unwrap_or_default();
        let target = MysqlTarget {
            host: bloodraven_sim::cluster::pod_host_name(namespace, pod_name),
            port: MYSQL_PORT,
            user: "root".into(),
            password,
        };
        SimMysqlSession::connect(&self.dialer(namespace), &target, MysqlTimeouts::default())
            .await
            .map_err(|e| call_error(format!("connect to MySQL of site {site}"), e))
    }

    /// A container's environment variable, with `valueFrom.secretKeyRef` resolved.
    async fn env_value(
        &self,
        namespace: &str,
        container: &Container,
        name: &str,
    ) -> Result<Option<String>, BackendError> {
        let Some(var) = container.env.iter().flatten().find(|v| v.name == name) else {
            return Ok(None);
        };
        if let Some(value) = &var.value {
            return Ok(Some(value.clone()));
        }
        let Some(secret_ref) = var
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref())
        else {
            return Ok(None);
        };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api
            .get(&secret_ref.name)
            .await
            .map_err(|e| call_error(format!("get secret {namespace}/{}", secret_ref.name), e))?;
        Ok(secret_value(&secret, &secret_ref.key))
    }

    /// The operator pods' metrics endpoints (`host:port`), sorted.
    async fn operator_endpoints(&self) -> Result<Vec<(String, u16)>, BackendError> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let pods = api
            .list(&ListParams::default().labels(OPERATOR_SELECTOR))
            .await
            .map_err(|e| call_error(format!("list pods {OPERATOR_SELECTOR}"), e))?;
        let mut out: Vec<(String, u16)> = pods
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| {
                let ns = p.metadata.namespace.as_deref()?;
                let name = p.metadata.name.as_deref()?;
                let port = p
                    .spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|port| {
                        port.name.as_deref() == Some(bloodraven::deploy::METRICS_PORT_NAME)
                    })
                    .and_then(|port| u16::try_from(port.container_port).ok())
                    .unwrap_or(OPERATOR_METRICS_PORT);
                Some((bloodraven_sim::cluster::pod_host_name(ns, name), port))
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// A Secret's value under `key`, from `data` or (as the simulated API server stores a
/// Secret created with it) `stringData`.
fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    from_data.or_else(|| secret.string_data.as_ref()?.get(key).cloned())
}

/// Whether a pod runs the component's model (by its containers' images).
fn runs(pod: &Pod, component: Component) -> bool {
    let image = match component {
        Component::Mysql => MYSQL_IMAGE,
        Component::Dragonfly => DRAGONFLY_IMAGE,
    };
    pod.spec.iter().flat_map(|s| s.containers.iter()).any(|c| {
        c.image
            .as_deref()
            .is_some_and(|i| normalize_repository(i) == image)
    })
}

fn mysql_container(pod: &Pod) -> Option<Container> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| {
            c.image
                .as_deref()
                .is_some_and(|i| normalize_repository(i) == MYSQL_IMAGE)
        })
        .cloned()
}

/// `GET /metrics` over simulated TCP, HTTP/1.1 with `Connection: close`.
async fn http_get_metrics(host: &str, port: u16) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = turmoil::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| "timed out after 3s".to_owned())??;
    parse_http_response(&raw)
}

/// The body of an HTTP/1.1 response with status 200 (plain or chunked).
fn parse_http_response(raw: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "malformed HTTP response (no header end)".to_owned())?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("HTTP status: {status}"));
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok(body.to_owned());
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| "malformed chunked body".to_owned())?;
        let size = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| format!("bad chunk size {size:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = after
            .get(..size)
            .ok_or_else(|| "truncated chunk".to_owned())?;
        out.push_str(chunk);
        rest = after.get(size + 2..).unwrap_or_default();
    }
}

impl Backend for SimBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sim
    }

    fn describe(&self) -> String {
        describe(self.shared.seed)
    }

    fn cluster(&self) -> SharedCluster {
        self.cluster.clone()
    }

    fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    fn plan_fault<'a>(
        &'a self,
        fault: &'a Fault,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<FaultPlan, BackendError>> {
        Box::pin(async move {
            let ns = namespace.to_owned();
            let site = |s: &crate::scenario::Site| -> Result<String, BackendError> {
                let name = s.to_string();
                self.node_of(&name)?;
                Ok(name)
            };
            let delete = |site: String, components: Vec<Component>| SimOp::DeletePods {
                namespace: ns.clone(),
                site,
                components,
            };
            let (apply, undo) = match fault {
                Fault::KillSite(s) => (
                    vec![delete(
                        site(s)?,
                        vec![Component::Mysql, Component::Dragonfly],
                    )],
                    vec![],
                ),
                Fault::KillPod { site: s, component } => {
                    (vec![delete(site(s)?, vec![*component])], vec![])
                }
                Fault::KillDragonfly(s) => {
                    (vec![delete(site(s)?, vec![Component::Dragonfly])], vec![])
                }
                Fault::Cordon(s) => {
                    let s = site(s)?;
                    (
                        vec![
                            SimOp::Cordon { site: s.clone() },
                            // Evict: every pod of the namespace on the node; the
                            // controllers recreate them, and the scheduler holds them
                            // Pending while the node is cordoned.
                            delete(s.clone(), vec![]),
                        ],
                        vec![SimOp::Uncordon { site: s }],
                    )
                }
                Fault::Uncordon(s) => (vec![SimOp::Uncordon { site: site(s)? }], vec![]),
                Fault::NetworkPartition(s) => {
                    let s = site(s)?;
                    (
                        vec![SimOp::IsolateSite { site: s.clone() }],
                        vec![SimOp::HealSite { site: s }],
                    )
                }
                Fault::Partition { between: [a, b] } => {
                    let sites = [site(a)?, site(b)?];
                    (
                        vec![SimOp::PartitionSites {
                            sites: sites.clone(),
                        }],
                        vec![SimOp::HealSites { sites }],
                    )
                }
                Fault::NodeCrash(s) => {
                    let s = site(s)?;
                    (
                        vec![SimOp::CrashNode { site: s.clone() }],
                        vec![SimOp::RecoverNode { site: s }],
                    )
                }
                Fault::ForceWritable(s) => (
                    vec![SimOp::ForceWritable {
                        namespace: ns.clone(),
                        site: site(s)?,
                    }],
                    // No undo: fencing the second writer is the operator's job, which
                    // scenarios assert; a runner that re-fenced it would hide that.
                    vec![],
                ),
                Fault::DisableSidecar(s) => {
                    let s = site(s)?;
                    let freeze = |frozen: bool| SimOp::FreezeContainer {
                        namespace: ns.clone(),
                        site: s.clone(),
                        container: bloodraven::children::SIDECAR_CONTAINER.to_owned(),
                        frozen,
                    };
                    (vec![freeze(true)], vec![freeze(false)])
                }
                Fault::WriteDivergent {
                    site: s,
                    transactions,
                } => (
                    vec![SimOp::ForcedWrites {
                        namespace: ns.clone(),
                        site: site(s)?,
                        transactions: *transactions,
                    }],
                    // Committed transactions cannot be taken back: resolving the
                    // divergence is the operator's reclone flow, which scenarios assert.
                    vec![],
                ),
                Fault::ReplicationDelay { site: s, seconds } => {
                    let s = site(s)?;
                    (
                        vec![SimOp::SetSourceDelay {
                            namespace: ns.clone(),
                            site: s.clone(),
                            seconds: *seconds,
                        }],
                        vec![SimOp::SetSourceDelay {
                            namespace: ns.clone(),
                            site: s,
                            seconds: 0,
                        }],
                    )
                }
                Fault::KillOperator {} => (
                    vec![SimOp::DeleteOperatorPods {
                        selector: OPERATOR_SELECTOR.into(),
                    }],
                    vec![],
                ),
                Fault::Recover(_) => {
                    return Err(BackendError::UnsupportedFault {
                        backend: BackendKind::Sim,
                        fault: fault.to_string(),
                        reason: "recover is the runner's, not a backend fault".into(),
                    });
                }
            };
            Ok(FaultPlan {
                apply: ops(apply)?,
                undo: ops(undo)?,
            })
        })
    }

    fn execute<'a>(&'a self, ops: &'a [Value]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            for value in ops {
                let op: SimOp = super::decode_op(BackendKind::Sim, value)?;
                self.run_op(&op).await?;
            }
            Ok(())
        })
    }

    fn scrape_metrics(&self) -> BoxFuture<'_, Result<String, BackendError>> {
        Box::pin(async move {
            let endpoints = self.operator_endpoints().await?;
            if endpoints.is_empty() {
                return Err(call_error(
                    "GET /metrics",
                    format!(
                        "no operator /metrics reachable: no Running pod labelled {OPERATOR_SELECTOR} (is the operator installed?)"
                    ),
                ));
            }
            let mut errors = Vec::new();
            for (host, port) in endpoints {
                match http_get_metrics(&host, port).await {
                    Ok(body) => return Ok(body),
                    Err(e) => errors.push(format!("{host}:{port}: {e}")),
                }
            }
            Err(call_error(
                "GET /metrics",
                format!("no operator /metrics reachable: {}", errors.join("; ")),
            ))
        })
    }

    fn counter(&self) -> Option<Arc<dyn CounterTarget>> {
        Some(Arc::new(SimCounter {
            client: self.client.clone(),
            host: self.host.clone(),
            api: self.shared.api.clone(),
            session: tokio::sync::Mutex::new(None),
            attempted: Mutex::new(BTreeSet::new()),
        }))
    }

    fn writability(&self) -> BoxFuture<'_, Result<Option<BTreeMap<String, bool>>, BackendError>> {
        Box::pin(async move { Ok(Some(self.shared.site_writability())) })
    }

    fn writability_changes(&self) -> Option<Vec<WritabilitySample>> {
        self.shared
            .samples
            .lock()
            .ok()
            .map(|mut s| std::mem::take(&mut *s))
    }
}

trait ClockMs {
    fn now_ms(&self) -> workload::Millis;
}

impl ClockMs for SimClock {
    fn now_ms(&self) -> workload::Millis {
        use bloodraven::transport::Clock;
        self.now().as_millisecond()
    }
}

/// The counter client: one row per increment (`chaos-counter/<seq>`) through the primary
/// Service, so that no-acknowledged-write-lost can check each acknowledged increment on
/// the final primary; INCR `chaos-counter` through the Dragonfly Service.
struct SimCounter {
    client: kube::Client,
    host: String,
    api: ApiServer,
    session: tokio::sync::Mutex<SessionSlot>,
    attempted: Mutex<BTreeSet<u64>>,
}

/// Where the counter connects: the Service (by DNS name) and the account.
struct Endpoint {
    namespace: String,
    service: String,
    port: u16,
    user: String,
    password: Option<String>,
}

impl SimCounter {
    /// The Service selecting `label=value` pods, in any namespace (first by namespace
    /// and name), and the env of one of the pods it selects.
    async fn find_service(&self, selector: (&str, &str)) -> Result<(Service, Option<Pod>), String> {
        let services: Api<Service> = Api::all(self.client.clone());
        let mut list = services
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing Services: {e}"))?
            .items;
        list.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
        let service = list
            .into_iter()
            .find(|s| {
                s.spec
                    .as_ref()
                    .and_then(|spec| spec.selector.as_ref())
                    .and_then(|sel| sel.get(selector.0))
                    .is_some_and(|v| v == selector.1)
            })
            .ok_or_else(|| {
                format!(
                    "no Service selects {}={} (no primary to write to)",
                    selector.0, selector.1
                )
            })?;
        let ns = service.metadata.namespace.clone().unwrap_or_default();
        let labels = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let pod = pods
            .list(&ListParams::default().labels(&labels))
            .await
            .map_err(|e| format!("listing pods {labels}: {e}"))?
            .items
            .into_iter()
            .next();
        Ok((service, pod))
    }

    async fn mysql_endpoint(&self) -> Result<Endpoint, String> {
        let (service, pod) = self.find_service(PRIMARY_SELECTOR).await?;
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let pod = pod.ok_or_else(|| format!("Service {namespace}/{name} selects no pod"))?;
        let container = mysql_container(&pod)
            .ok_or_else(|| format!("Service {namespace}/{name} selects a pod without mysql"))?;
        let env = self.env(&namespace, &container).await?;
        let (user, password) = match (env.get("MYSQL_USER"), env.get("MYSQL_PASSWORD")) {
            (Some(u), Some(p)) => (u.clone(), p.clone()),
            _ => {
                return Err(format!(
                    "the MySQL pods behind {namespace}/{name} define no MYSQL_USER/MYSQL_PASSWORD: the counter writes as an ordinary client, never as root"
                ));
            }
        };
        Ok(Endpoint {
            port: service_port(&service).unwrap_or(MYSQL_PORT),
            namespace,
            service: name,
            user,
            password: Some(password),
        })
    }

    async fn env(
        &self,
        namespace: &str,
        container: &Container,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        for var in container.env.iter().flatten() {
            if let Some(v) = &var.value {
                out.insert(var.name.clone(), v.clone());
            } else if let Some(r) = var
                .value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref())
            {
                let secret = secrets
                    .get(&r.name)
                    .await
                    .map_err(|e| format!("secret {namespace}/{}: {e}", r.name))?;
                if let Some(value) = secret_value(&secret, &r.key) {
                    out.insert(var.name.clone(), value);
                }
            }
        }
        Ok(out)
    }

    fn dialer(&self, namespace: &str) -> SharedDialer {
        ClusterDialer::new(
            self.api.clone(),
            namespace,
            &self.host,
            Duration::from_secs(1),
        )
        .shared()
    }

    /// The session to the primary Service (opened if none is open) and the site it
    /// reached. A caller whose request fails sets the slot back to `None`, so the next
    /// attempt reconnects (the primary may have moved).
    async fn open_session(&self) -> Result<tokio::sync::MutexGuard<'_, SessionSlot>, String> {
        let mut guard = self.session.lock().await;
        if guard.is_none() {
            let endpoint = self.mysql_endpoint().await?;
            let target = MysqlTarget {
                host: format!("{}.{}", endpoint.service, endpoint.namespace),
                port: endpoint.port,
                user: endpoint.user,
                password: endpoint.password.unwrap_or_default(),
            };
            let dialer = self.dialer(&endpoint.namespace);
            let connector = SimMysqlConnector::new(dialer, counter_timeouts());
            let session = connector
                .connect(&target)
                .await
                .map_err(|e| e.to_string())?;
            // Which site answered: the pod the Service resolves to right now.
            let site = self.site_of_service(&endpoint.namespace, &endpoint.service);
            *guard = Some((site, session));
        }
        Ok(guard)
    }

    /// The site (node's `shipstream.io/site` label) of the pod a Service resolves to.
    fn site_of_service(&self, namespace: &str, service: &str) -> String {
        let endpoints = self
            .api
            .get(
                &ResourceKey::core("v1", "endpoints"),
                Some(namespace),
                service,
            )
            .ok();
        let node = endpoints
            .as_ref()
            .and_then(|e| e.pointer("/subsets/0/addresses/0/nodeName"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let site = node.and_then(|n| {
            self.api
                .get(&ResourceKey::core("v1", "nodes"), None, &n)
                .ok()
                .and_then(|node| {
                    node.pointer("/metadata/labels/shipstream.io~1site")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
        });
        site.unwrap_or_else(|| "unknown".into())
    }
}

fn service_port(service: &Service) -> Option<u16> {
    service
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .first()
        .and_then(|p| u16::try_from(p.port).ok())
}

fn counter_timeouts() -> MysqlTimeouts {
    MysqlTimeouts {
        connect: Duration::from_secs(1),
        request: Duration::from_secs(2),
    }
}

impl CounterTarget for SimCounter {
    fn increment(&self, seq: u64) -> BoxFuture<'_, Result<CounterAck, String>> {
        Box::pin(async move {
            if let Ok(mut a) = self.attempted.lock() {
                a.insert(seq);
            }
            let mut slot = self.open_session().await?;
            increment_in(&mut slot, seq).await
        })
    }

    fn cache_incr(&self) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            let (service, pod) = self.find_service(DRAGONFLY_SELECTOR).await?;
            let ns = service.metadata.namespace.clone().unwrap_or_default();
            let name = service.metadata.name.clone().unwrap_or_default();
            let mut password = None;
            if let Some(container) = pod.as_ref().and_then(|p| {
                p.spec.as_ref()?.containers.iter().find(|c| {
                    c.image
                        .as_deref()
                        .is_some_and(|i| normalize_repository(i) == DRAGONFLY_IMAGE)
                })
            }) {
                let env = self.env(&ns, container).await?;
                password = env.get("DFLY_requirepass").cloned().or_else(|| {
                    container
                        .args
                        .iter()
                        .flatten()
                        .find_map(|a| a.strip_prefix("--requirepass=").map(str::to_owned))
                });
            }
            let target = DragonflyTarget {
                host: format!("{name}.{ns}"),
                port: service_port(&service).unwrap_or(6379),
                password,
            };
            let connector =
                SimDragonflyConnector::new(self.dialer(&ns), DragonflyTimeouts::default());
            let mut conn = connector
                .connect(&target)
                .await
                .map_err(|e| e.to_string())?;
            let value: i64 = redis::cmd("INCR")
                .arg(CACHE_COUNTER_KEY)
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("INCR on {}: {e}", target.address()))?;
            Ok(u64::try_from(value).unwrap_or_default())
        })
    }

    fn committed(&self) -> BoxFuture<'_, Result<BTreeSet<u64>, String>> {
        Box::pin(async move { present_in(|| self.open_session(), &self.attempted).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_responses_parse_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\na 1\n\n";
        assert_eq!(parse_http_response(plain).unwrap(), "a 1\n\n");
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\na 1\n\r\n3\r\nb 2\r\n0\r\n\r\n";
        assert_eq!(parse_http_response(chunked).unwrap(), "a 1\nb 2");
        let err = parse_http_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").unwrap_err();
        assert!(err.contains("503"), "{err}");
    }

    #[test]
    fn sim_ops_round_trip_through_the_ledger_format() {
        let op = SimOp::PartitionSites {
            sites: ["iad".into(), "pdx".into()],
        };
        let value = serde_json::to_value(&op).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"op": "partition-sites", "sites": ["iad", "pdx"]})
        );
        assert_eq!(serde_json::from_value::<SimOp>(value).unwrap(), op);
        let op = SimOp::ForceWritable {
            namespace: "bp".into(),
            site: "pdx".into(),
        };
        let value = serde_json::to_value(&op).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"op": "force-writable", "namespace": "bp", "site": "pdx"})
        );
        assert_eq!(serde_json::from_value::<SimOp>(value).unwrap(), op);
    }
}
