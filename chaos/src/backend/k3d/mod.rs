//! The live backend: a k3d cluster built by playground/setup.sh (kubeconfig context
//! `k3d-bloodraven`). Pod and node-scheduling faults go through the Kubernetes API;
//! node faults go through the Docker API, because a k3d node is a Docker container:
//! stop/start it (node-crash), disconnect it from the cluster network
//! (network-partition), or exec iptables inside it (partition between sites), or
//! exec `kill -STOP`/`-CONT` inside it on the sidecar's process (disable-sidecar).
//!
//! The Docker and Kubernetes calls sit behind two small traits (`DockerApi`, `NodeApi`)
//! so that tests can record exactly which calls each fault makes and how it is undone.
//! The data plane (counter, writability, the SQL faults) is `k3d_live`, over
//! port-forward tunnels (`tunnel`). The production implementations of the two traits
//! are in [`clients`].

use std::sync::Arc;

use bloodraven::seams::{SharedClock, SystemClock};
use futures::future::BoxFuture;

mod api;
mod clients;
mod plan;
pub mod preflight;

pub use api::{
    DockerApi, DockerError, ExecOutput, NetworkEndpoint, NodeApi, NodeInfo, NodeLabels, PodRef,
    UnavailableDocker,
};
pub use clients::{BollardDocker, DOCKER_CALL_TIMEOUT, KubeNodes};
pub use plan::{
    IPTABLES_LOCK_WAIT, K3dOp, dragonfly_signal_command, remove_rule_command,
    sidecar_signal_command,
};

use super::k3d_live::{K3dCounter, KubeGroups, Live, LiveConfig, LiveError, LiveParts};
use super::tunnel::KubeForwarder;
use super::{Backend, BackendError, FaultOps, SiteWritability, TypedPlan};
use crate::cluster::{ClusterError, KubeCluster, SharedCluster};
use crate::scenario::{BackendKind, Fault};
use crate::workload::CounterTarget;
use preflight::{COREDNS_SELECTOR, PlacedPod, PreflightError};

/// Names the playground uses; override only for a differently built cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K3dConfig {
    pub context: String,
    /// The Docker network k3d created for the cluster.
    pub network: String,
    /// Pod label whose value is the site name (docs/operator.md "Children": pod labels).
    pub site_pod_label: String,
    /// Pod label that tells MySQL from Dragonfly pods.
    pub component_label: String,
    /// Label selector of the operator's pods, found in whichever namespace they run
    /// (the playground's is `bloodraven-playground`, a chart install's may differ).
    pub operator_selector: String,
    /// The operator's leader-election Lease (in the operator's namespace): its holder
    /// is the replica whose /metrics are scraped.
    pub operator_leader_lease: String,
    /// The operator pods' metrics port, reached through the API server's pod proxy.
    pub metrics_port: u16,
    /// The ordinary MySQL account the counter writes as (password: the group's
    /// credentials Secret, key `app-password`).
    pub app_user: String,
    /// Dragonfly's client port in its pods.
    pub dragonfly_port: u16,
}

impl Default for K3dConfig {
    fn default() -> Self {
        Self {
            context: "k3d-bloodraven".into(),
            network: "k3d-bloodraven".into(),
            site_pod_label: "shipstream.io/site".into(),
            component_label: "app.kubernetes.io/name".into(),
            operator_selector: bloodraven::deploy::OPERATOR_POD_SELECTOR.into(),
            operator_leader_lease: bloodraven::leader::LEADER_LEASE.into(),
            metrics_port: bloodraven::deploy::METRICS_PORT,
            app_user: bloodraven::children::APP_USER.into(),
            dragonfly_port: 6379,
        }
    }
}

pub struct K3dBackend {
    config: K3dConfig,
    docker: Arc<dyn DockerApi>,
    nodes: Arc<dyn NodeApi>,
    cluster: SharedCluster,
    clock: SharedClock,
    /// The data plane, when the backend has one (`with_live`).
    live: Option<Arc<Live>>,
    counter: Option<Arc<K3dCounter>>,
}

impl K3dBackend {
    /// Builds the backend from its parts (tests pass recording doubles).
    pub fn new(
        config: K3dConfig,
        docker: Arc<dyn DockerApi>,
        nodes: Arc<dyn NodeApi>,
        cluster: SharedCluster,
        clock: SharedClock,
    ) -> Self {
        Self {
            config,
            docker,
            nodes,
            cluster,
            clock,
            live: None,
            counter: None,
        }
    }

    /// Adds the data plane: tunnels into pods and SQL/Redis sessions over them, for the
    /// counter, the writability poll and the SQL faults.
    pub fn with_live(mut self, parts: LiveParts) -> Self {
        let live = Arc::new(Live::new(
            LiveConfig {
                site_pod_label: self.config.site_pod_label.clone(),
                component_label: self.config.component_label.clone(),
                app_user: self.config.app_user.clone(),
                dragonfly_port: self.config.dragonfly_port,
            },
            parts,
            self.docker.clone(),
        ));
        // One counter for the run: it remembers which increments it attempted, which
        // no-acknowledged-write-lost reads back at the end.
        self.counter = Some(Arc::new(K3dCounter::new(live.clone())));
        self.live = Some(live);
        self
    }

    /// Connects to the real cluster: kubeconfig context and the Docker daemon (found as
    /// the docker CLI finds it), then checks the cluster before anything changes: the
    /// API server answers, and the operator and CoreDNS run on the control plane.
    pub async fn connect(config: K3dConfig) -> Result<Self, BackendError> {
        let unavailable = |reason: String| BackendError::Unavailable {
            backend: BackendKind::K3d,
            reason,
        };
        let options = kube::config::KubeConfigOptions {
            context: Some(config.context.clone()),
            ..Default::default()
        };
        let mut kube_config = kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| unavailable(format!("kubeconfig context {}: {e}", config.context)))?;
        // No client-wide read timeout: it would cut the port-forward tunnels. Each
        // request is bounded on its own instead (`cluster::bounded`).
        kube_config.connect_timeout = Some(KUBE_CONNECT_TIMEOUT);
        let client = kube::Client::try_from(kube_config)
            .map_err(|e| unavailable(format!("kube client for {}: {e}", config.context)))?;
        let docker = Self::docker_client()?;
        let live = LiveParts {
            forwarder: Arc::new(KubeForwarder(client.clone())),
            groups: Arc::new(KubeGroups(client.clone())),
            mysql: Arc::new(bloodraven::production::mysql::MysqlProtocolConnector::tcp(
                super::k3d_live::counter_timeouts(),
            )),
            dragonfly: Arc::new(
                bloodraven::production::dragonfly::RedisDragonflyConnector::new(
                    bloodraven::seams::DragonflyTimeouts::default(),
                ),
            ),
        };
        let backend = Self::new(
            config,
            docker,
            Arc::new(KubeNodes(client.clone())),
            Arc::new(KubeCluster::new(client)),
            Arc::new(SystemClock),
        )
        .with_live(live);
        backend.preflight().await?;
        Ok(backend)
    }

    /// The Docker client, for the daemon `DOCKER_HOST` or the current Docker context
    /// names. Docker is needed only by node faults: a daemon that cannot be reached
    /// fails those (at plan time, through the ping), not the whole backend; a context
    /// that names nothing readable is an error now.
    fn docker_client() -> Result<Arc<dyn DockerApi>, BackendError> {
        let env = |name: &str| std::env::var(name).ok();
        let config_dir =
            preflight::docker_config_dir(env("DOCKER_CONFIG").as_deref(), env("HOME").as_deref());
        let host = preflight::docker_host(
            env("DOCKER_HOST").as_deref(),
            env("DOCKER_CONTEXT").as_deref(),
            &config_dir,
            &|path| std::fs::read_to_string(path),
        )
        .map_err(|source| BackendError::Preflight {
            backend: BackendKind::K3d,
            source: Box::new(source),
        })?;
        let client = match &host {
            Some(host) => bollard::Docker::connect_with_host(host),
            None => bollard::Docker::connect_with_defaults(),
        };
        Ok(match client {
            Ok(d) => Arc::new(BollardDocker(d)),
            Err(e) => Arc::new(UnavailableDocker(format!(
                "Docker client for {}: {e}",
                host.as_deref().unwrap_or("the default socket")
            ))),
        })
    }

    /// The cluster preflight: the API server answers, and the operator's and CoreDNS's
    /// pods run on control-plane nodes (a site partition or node crash must cut off
    /// neither: scenario 06 forbids the failover a cut-off operator would cause).
    pub async fn preflight(&self) -> Result<(), BackendError> {
        let failed = |source| BackendError::Preflight {
            backend: BackendKind::K3d,
            source: Box::new(source),
        };
        self.nodes.api_version().await.map_err(|e| {
            failed(PreflightError::ApiServer {
                context: self.config.context.clone(),
                reason: e.to_string(),
            })
        })?;
        let mut pods = Vec::new();
        for (role, selector) in [
            ("operator", self.config.operator_selector.as_str()),
            ("CoreDNS", COREDNS_SELECTOR),
        ] {
            let found = self
                .nodes
                .pods_in_all_namespaces(selector)
                .await
                .map_err(kube_failed(format!("list {role} pods ({selector})")))?;
            pods.extend(found.into_iter().map(|pod| PlacedPod { role, pod }));
        }
        let node_labels = self
            .nodes
            .node_labels()
            .await
            .map_err(kube_failed("list nodes"))?;
        let problems = preflight::placement_problems(&["operator", "CoreDNS"], &pods, &node_labels);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(failed(PreflightError::Placement { problems }))
        }
    }
}

/// Bounds opening a connection to the API server.
const KUBE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A failed Kubernetes call of `operation`, as the backend reports it.
fn kube_failed(operation: impl Into<String>) -> impl FnOnce(ClusterError) -> BackendError {
    move |source| BackendError::Kube {
        backend: BackendKind::K3d,
        operation: operation.into(),
        source: Box::new(source),
    }
}

/// A failed Docker call of `operation`, as the backend reports it.
fn docker_failed(operation: impl Into<String>) -> impl FnOnce(DockerError) -> BackendError {
    move |source| BackendError::Docker {
        backend: BackendKind::K3d,
        operation: operation.into(),
        source: Box::new(source),
    }
}

/// A failed data-plane call of `operation`, as the backend reports it.
fn live_failed(operation: impl Into<String>) -> impl FnOnce(LiveError) -> BackendError {
    move |source| BackendError::Live {
        backend: BackendKind::K3d,
        operation: operation.into(),
        source: Box::new(source),
    }
}

impl FaultOps for K3dBackend {
    type Op = K3dOp;
    const KIND: BackendKind = BackendKind::K3d;

    fn plan_ops<'a>(
        &'a self,
        fault: &'a Fault,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<TypedPlan<K3dOp>, BackendError>> {
        Box::pin(self.plan(fault, namespace))
    }

    fn run_op<'a>(&'a self, op: &'a K3dOp) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.run(op))
    }
}

impl Backend for K3dBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::K3d
    }

    fn describe(&self) -> String {
        format!(
            "k3d (context {}, network {})",
            self.config.context, self.config.network
        )
    }

    fn cluster(&self) -> SharedCluster {
        self.cluster.clone()
    }

    fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    fn scrape_metrics(&self) -> BoxFuture<'_, Result<String, BackendError>> {
        Box::pin(async move {
            let leader = self.operator_leader().await?;
            let port = self.config.metrics_port;
            self.nodes
                .pod_metrics(&leader.namespace, &leader.name, port)
                .await
                .map_err(kube_failed(format!(
                    "scrape {}/{}:{port}/metrics",
                    leader.namespace, leader.name
                )))
        })
    }

    fn counter(&self, namespace: &str) -> Option<Arc<dyn CounterTarget>> {
        let counter = self.counter.clone()?;
        counter.use_namespace(namespace);
        Some(counter as Arc<dyn CounterTarget>)
    }

    fn writability_sites<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, BackendError>> {
        Box::pin(async move {
            let Some(live) = &self.live else {
                return Ok(None);
            };
            live.sites(namespace)
                .await
                .map(Some)
                .map_err(live_failed("list the sites to poll"))
        })
    }

    fn site_writability<'a>(
        &'a self,
        namespace: &'a str,
        site: &'a str,
    ) -> BoxFuture<'a, SiteWritability> {
        Box::pin(async move {
            match &self.live {
                Some(live) => live.site_writability(namespace, site).await,
                None => SiteWritability::Unknown("no data plane (port-forward tunnels)".into()),
            }
        })
    }
}
