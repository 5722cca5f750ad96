//! The k3d backend's two request boundaries, as traits that tests double: [`DockerApi`]
//! (the node containers) and [`NodeApi`] (the Kubernetes calls of faults and the
//! metrics scrape), the values they carry, and why a Docker call failed. Their
//! production implementations are in `clients`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::cluster::ClusterError;

/// Every node's labels, by node name.
pub type NodeLabels = BTreeMap<String, BTreeMap<String, String>>;

/// A Docker Engine API call that failed: which call, on which object, and what the
/// daemon (or the connection to it) said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    /// No client could be built (no socket, a bad `DOCKER_HOST` or Docker context).
    #[error("no Docker client: {reason}")]
    NoClient { reason: String },
    /// The daemon answered with an error status.
    #[error("docker {call} {object}: HTTP {status}: {message}")]
    Status {
        call: &'static str,
        object: String,
        status: u16,
        message: String,
    },
    /// The request, or the stream of its answer, failed below HTTP (socket, protocol).
    #[error("docker {call} {object}: {message}")]
    Transport {
        call: &'static str,
        object: String,
        message: String,
    },
    /// No complete answer in time (bollard's own timeout covers only the headers).
    #[error("docker {call} {object}: no complete answer within {after:?}")]
    TimedOut {
        call: &'static str,
        object: String,
        after: Duration,
    },
    #[error("docker exec in {container}: it finished without an exit code")]
    NoExitCode { container: String },
}

/// A k3d node: its Kubernetes name (also its Docker container's name) and its IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub internal_ip: Option<String>,
}

/// The Docker calls the backend makes.
pub trait DockerApi: Send + Sync {
    /// `GET /_ping`: is the daemon there at all? Checked when a fault that needs
    /// Docker is planned, so that a dead daemon is found before anything changes.
    fn ping(&self) -> BoxFuture<'_, Result<(), DockerError>>;
    /// SIGKILLs the container (a power cut, not a shutdown).
    fn kill_container<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), DockerError>>;
    fn start_container<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), DockerError>>;
    fn disconnect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<(), DockerError>>;
    /// Connects `container`, with `endpoint`'s address and aliases when given.
    fn connect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
        endpoint: Option<&'a NetworkEndpoint>,
    ) -> BoxFuture<'a, Result<(), DockerError>>;
    /// `container`'s endpoint on `network`; `None` when it is not connected to it.
    fn network_endpoint<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<Option<NetworkEndpoint>, DockerError>>;
    /// Runs `cmd` in the container with `env` (`NAME=value`: how secrets reach a
    /// command without appearing in its argv) and returns its exit code and output.
    fn exec<'a>(
        &'a self,
        container: &'a str,
        cmd: &'a [String],
        env: &'a [String],
    ) -> BoxFuture<'a, Result<ExecOutput, DockerError>>;
}

/// A container's place on a Docker network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkEndpoint {
    pub ipv4_address: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// What a command run by [`DockerApi::exec`] left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// A pod by namespace and name, and the node it is scheduled on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// `spec.nodeName`; `None` while unscheduled.
    pub node: Option<String>,
}

/// The Kubernetes calls the backend makes for faults and metrics.
pub trait NodeApi: Send + Sync {
    /// The pods matching `selector` in every namespace, not being deleted.
    fn pods_in_all_namespaces<'a>(
        &'a self,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodRef>, ClusterError>>;
    /// `spec.holderIdentity` of Lease `namespace/name`; `None` when unheld or absent.
    fn lease_holder<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>>;
    /// Nodes matching the label `selector` (`""`: every node).
    fn nodes_with_label<'a>(
        &'a self,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NodeInfo>, ClusterError>>;
    /// `spec.sites[name=site].nodeSelector` of the MysqlFailoverGroup in `namespace`
    /// that has the site (first by name); `None` when no group there has it.
    fn site_node_selector<'a>(
        &'a self,
        namespace: &'a str,
        site: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, ClusterError>>;
    /// `spec.nodeName` of each scheduled pod matching `selector` in `namespace`.
    fn pod_nodes<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterError>>;
    /// Deletes the pods matching `selector` (on `node` when given); returns their names.
    fn delete_pods<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
        node: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterError>>;
    fn set_unschedulable<'a>(
        &'a self,
        node: &'a str,
        unschedulable: bool,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
    /// Every node's labels, by node name (the placement preflight).
    fn node_labels<'a>(&'a self) -> BoxFuture<'a, Result<NodeLabels, ClusterError>>;
    /// `GET /version`: is the API server there at all (the cluster preflight)?
    fn api_version(&self) -> BoxFuture<'_, Result<String, ClusterError>>;
    /// GET /metrics of `pod:port` in `namespace` through the API server's pod proxy.
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<String, ClusterError>>;
}
/// A Docker client that could not be built (no socket, bad `DOCKER_HOST`): every call
/// fails with why, so that only the faults that need Docker fail.
pub struct UnavailableDocker(pub String);

impl UnavailableDocker {
    fn fail<'a, T: Send + 'a>(&'a self) -> BoxFuture<'a, Result<T, DockerError>> {
        let reason = self.0.clone();
        Box::pin(async move { Err(DockerError::NoClient { reason }) })
    }
}

impl DockerApi for UnavailableDocker {
    fn ping(&self) -> BoxFuture<'_, Result<(), DockerError>> {
        self.fail()
    }
    fn kill_container<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        self.fail()
    }
    fn start_container<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        self.fail()
    }
    fn disconnect_network<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        self.fail()
    }
    fn connect_network<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Option<&'a NetworkEndpoint>,
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        self.fail()
    }
    fn network_endpoint<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<NetworkEndpoint>, DockerError>> {
        self.fail()
    }
    fn exec<'a>(
        &'a self,
        _: &'a str,
        _: &'a [String],
        _: &'a [String],
    ) -> BoxFuture<'a, Result<ExecOutput, DockerError>> {
        self.fail()
    }
}
