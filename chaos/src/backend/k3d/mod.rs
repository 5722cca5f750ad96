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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bloodraven::seams::{SharedClock, SystemClock};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

mod clients;

pub use clients::{BollardDocker, KubeNodes};

use super::k3d_live::{K3dCounter, KubeGroups, Live, LiveConfig, LiveParts};
use super::tunnel::KubeForwarder;
use super::{Backend, BackendError, FaultOps, SiteWritability, TypedPlan};
use crate::cluster::{KubeCluster, SharedCluster};
use crate::scenario::{BackendKind, Component, Fault};
use crate::workload::CounterTarget;

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

/// One concrete operation; what the ledger stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum K3dOp {
    DeletePods {
        namespace: String,
        selector: String,
        node: Option<String>,
        /// A kill that deletes nothing is an error (a scenario must not pass because
        /// its fault missed); an eviction of whatever is on a node is not.
        #[serde(default)]
        must_match: bool,
    },
    SetUnschedulable {
        node: String,
        unschedulable: bool,
    },
    StopContainer {
        container: String,
    },
    StartContainer {
        container: String,
    },
    DisconnectNetwork {
        network: String,
        container: String,
    },
    ConnectNetwork {
        network: String,
        container: String,
        /// The address and aliases the node had before the fault, recorded at plan
        /// time: Docker keeps neither across a disconnect, and a node that returns
        /// with another IP breaks flannel and cross-site replication.
        #[serde(default)]
        endpoint: Option<NetworkEndpoint>,
    },
    Exec {
        container: String,
        cmd: Vec<String>,
    },
    /// As root through a tunnel to the site's mysqld: `transactions` forced writes
    /// (`chaos-divergent/1..=n`) that bypass read-only.
    ForcedWrites {
        namespace: String,
        site: String,
        transactions: u32,
    },
    /// As root through a tunnel to the site's mysqld: `read_only=OFF,
    /// super_read_only=OFF`.
    ForceWritable {
        namespace: String,
        site: String,
    },
    /// As root on the site's mysqld: STOP REPLICA; CHANGE REPLICATION SOURCE TO
    /// SOURCE_DELAY = seconds; START REPLICA.
    SetSourceDelay {
        namespace: String,
        site: String,
        seconds: u32,
    },
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
    fn ping(&self) -> BoxFuture<'_, Result<(), String>>;
    fn stop_container<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), String>>;
    fn start_container<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), String>>;
    fn disconnect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Connects `container`, with `endpoint`'s address and aliases when given.
    fn connect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
        endpoint: Option<&'a NetworkEndpoint>,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// `container`'s endpoint on `network`; `None` when it is not connected to it.
    fn network_endpoint<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<Option<NetworkEndpoint>, String>>;
    /// Runs `cmd` in the container with `env` (`NAME=value`: how secrets reach a
    /// command without appearing in its argv) and returns its exit code and output.
    fn exec<'a>(
        &'a self,
        container: &'a str,
        cmd: &'a [String],
        env: &'a [String],
    ) -> BoxFuture<'a, Result<ExecOutput, String>>;
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

/// A pod by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

/// The Kubernetes calls the backend makes for faults and metrics.
pub trait NodeApi: Send + Sync {
    /// The pods matching `selector` in every namespace, not being deleted.
    fn pods_in_all_namespaces<'a>(
        &'a self,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodRef>, String>>;
    /// `spec.holderIdentity` of Lease `namespace/name`; `None` when unheld or absent.
    fn lease_holder<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// Nodes matching the label `selector` (`""`: every node).
    fn nodes_with_label<'a>(
        &'a self,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NodeInfo>, String>>;
    /// `spec.sites[name=site].nodeSelector` of the MysqlFailoverGroup in `namespace`
    /// that has the site (first by name); `None` when no group there has it.
    fn site_node_selector<'a>(
        &'a self,
        namespace: &'a str,
        site: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, String>>;
    /// `spec.nodeName` of each scheduled pod matching `selector` in `namespace`.
    fn pod_nodes<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, String>>;
    /// Deletes the pods matching `selector` (on `node` when given); returns their names.
    fn delete_pods<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
        node: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, String>>;
    fn set_unschedulable<'a>(
        &'a self,
        node: &'a str,
        unschedulable: bool,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// GET /metrics of `pod:port` in `namespace` through the API server's pod proxy.
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<String, String>>;
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

    /// Connects to the real cluster: kubeconfig context and the local Docker daemon.
    pub async fn connect(config: K3dConfig) -> Result<Self, BackendError> {
        let unavailable = |reason: String| BackendError::Unavailable {
            backend: BackendKind::K3d,
            reason,
        };
        let options = kube::config::KubeConfigOptions {
            context: Some(config.context.clone()),
            ..Default::default()
        };
        let kube_config = kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| unavailable(format!("kubeconfig context {}: {e}", config.context)))?;
        let client = kube::Client::try_from(kube_config)
            .map_err(|e| unavailable(format!("kube client for {}: {e}", config.context)))?;
        // Docker is needed only by node faults: a missing daemon fails those (at plan
        // time, through the ping), not the whole backend.
        let docker: Arc<dyn DockerApi> = match bollard::Docker::connect_with_defaults() {
            Ok(d) => Arc::new(BollardDocker(d)),
            Err(e) => Arc::new(UnavailableDocker(format!("Docker client: {e}"))),
        };
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
        Ok(Self::new(
            config,
            docker,
            Arc::new(KubeNodes(client.clone())),
            Arc::new(KubeCluster::new(client)),
            Arc::new(SystemClock),
        )
        .with_live(live))
    }

    fn call_error(operation: String, message: String) -> BackendError {
        BackendError::Call {
            backend: BackendKind::K3d,
            operation,
            message,
        }
    }

    /// A site's nodes as the operator schedules it: the nodes matching the group's
    /// `spec.sites[].nodeSelector` (the playground: `topology.kubernetes.io/zone=
    /// zone-<site>`); for a site without one, the nodes its pods run on.
    async fn site_nodes(&self, site: &str, namespace: &str) -> Result<Vec<NodeInfo>, BackendError> {
        let node_selector = self
            .nodes
            .site_node_selector(namespace, site)
            .await
            .map_err(|m| {
                Self::call_error(format!("read site {site}'s nodeSelector in {namespace}"), m)
            })?
            .filter(|labels| !labels.is_empty());
        let (mut nodes, looked_for) = match node_selector {
            Some(labels) => {
                let selector = labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let nodes = self
                    .nodes
                    .nodes_with_label(&selector)
                    .await
                    .map_err(|m| Self::call_error(format!("list nodes {selector}"), m))?;
                (
                    nodes,
                    format!("nodes labelled {selector} (the site's nodeSelector)"),
                )
            }
            None => {
                let pods = self.site_pods(site, None);
                let names: BTreeSet<String> = self
                    .nodes
                    .pod_nodes(namespace, &pods)
                    .await
                    .map_err(|m| Self::call_error(format!("list pods {pods} in {namespace}"), m))?
                    .into_iter()
                    .collect();
                let nodes = self
                    .nodes
                    .nodes_with_label("")
                    .await
                    .map_err(|m| Self::call_error("list nodes".into(), m))?
                    .into_iter()
                    .filter(|n| names.contains(&n.name))
                    .collect();
                (nodes, format!("the nodes of pods {pods} in {namespace}"))
            }
        };
        if nodes.is_empty() {
            return Err(BackendError::NoNodeForSite {
                backend: BackendKind::K3d,
                site: site.to_owned(),
                selector: looked_for,
            });
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(nodes)
    }

    /// The operator's pods, in whichever namespace they run; none is an error.
    async fn operator_pods(&self) -> Result<Vec<PodRef>, BackendError> {
        let selector = &self.config.operator_selector;
        let mut pods = self
            .nodes
            .pods_in_all_namespaces(selector)
            .await
            .map_err(|m| Self::call_error(format!("list pods {selector} in all namespaces"), m))?;
        if pods.is_empty() {
            return Err(BackendError::NoPodsMatched {
                backend: BackendKind::K3d,
                namespace: "(any)".into(),
                selector: selector.clone(),
            });
        }
        pods.sort();
        Ok(pods)
    }

    /// The operator replica to scrape: the only one, or the leader-election Lease's
    /// holder (a standby's metrics are zeros: scraping through a Service in front of
    /// both would alternate between them).
    async fn operator_leader(&self) -> Result<PodRef, BackendError> {
        let pods = self.operator_pods().await?;
        if let [only] = pods.as_slice() {
            return Ok(only.clone());
        }
        let lease = &self.config.operator_leader_lease;
        let namespaces: BTreeSet<&str> = pods.iter().map(|p| p.namespace.as_str()).collect();
        for ns in namespaces {
            let holder = self
                .nodes
                .lease_holder(ns, lease)
                .await
                .map_err(|m| Self::call_error(format!("get Lease {ns}/{lease}"), m))?;
            if let Some(pod) = pods
                .iter()
                .find(|p| p.namespace == ns && Some(&p.name) == holder.as_ref())
            {
                return Ok(pod.clone());
            }
        }
        Err(Self::call_error(
            "find the operator's leader".into(),
            format!(
                "{} operator pods ({}) and no Lease {lease} held by one of them",
                pods.len(),
                pods.iter()
                    .map(|p| format!("{}/{}", p.namespace, p.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }

    fn site_pods(&self, site: &str, component: Option<Component>) -> String {
        let mut selector = format!("{}={site}", self.config.site_pod_label);
        if let Some(c) = component {
            selector.push_str(&format!(",{}={c}", self.config.component_label));
        }
        selector
    }

    /// iptables rules that drop traffic between `node` and each of `peer_ips`, both
    /// directions: inserted by the apply, removed by the undo.
    fn drop_rules(insert: bool, node: &NodeInfo, peer_ips: &BTreeSet<String>) -> Vec<K3dOp> {
        let mut ops = Vec::new();
        for ip in peer_ips {
            for (chain, flag) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                let cmd = if insert {
                    [
                        "iptables",
                        "-w",
                        IPTABLES_LOCK_WAIT,
                        "-I",
                        chain,
                        flag,
                        ip,
                        "-j",
                        "DROP",
                    ]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
                } else {
                    remove_rule_command(chain, flag, ip)
                };
                ops.push(K3dOp::Exec {
                    container: node.name.clone(),
                    cmd,
                });
            }
        }
        ops
    }

    /// Decides the operations for `fault` and their undo.
    async fn plan(&self, fault: &Fault, namespace: &str) -> Result<TypedPlan<K3dOp>, BackendError> {
        let unsupported = |reason: &str| BackendError::UnsupportedFault {
            backend: BackendKind::K3d,
            fault: fault.to_string(),
            reason: reason.to_owned(),
        };
        let kill = |selector: String| K3dOp::DeletePods {
            namespace: namespace.to_owned(),
            selector,
            node: None,
            must_match: true,
        };
        Ok(match fault {
            // Pod deletions need no undo: the StatefulSets recreate the pods.
            Fault::KillSite(site) => (vec![kill(self.site_pods(site, None))], vec![]),
            Fault::KillPod { site, component } => {
                (vec![kill(self.site_pods(site, Some(*component)))], vec![])
            }
            Fault::KillDragonfly(site) => (
                vec![kill(self.site_pods(site, Some(Component::Dragonfly)))],
                vec![],
            ),
            Fault::KillOperator {} => {
                let namespaces: BTreeSet<String> = self
                    .operator_pods()
                    .await?
                    .into_iter()
                    .map(|p| p.namespace)
                    .collect();
                let apply = namespaces
                    .into_iter()
                    .map(|ns| K3dOp::DeletePods {
                        namespace: ns,
                        selector: self.config.operator_selector.clone(),
                        node: None,
                        must_match: true,
                    })
                    .collect();
                (apply, vec![])
            }
            Fault::Cordon(site) => {
                let nodes = self.site_nodes(site, namespace).await?;
                let mut apply = Vec::new();
                let mut undo = Vec::new();
                for node in &nodes {
                    apply.push(K3dOp::SetUnschedulable {
                        node: node.name.clone(),
                        unschedulable: true,
                    });
                    undo.push(K3dOp::SetUnschedulable {
                        node: node.name.clone(),
                        unschedulable: false,
                    });
                }
                // Evict: the site's pods leave the cordoned node(s) and cannot come back.
                for node in &nodes {
                    apply.push(K3dOp::DeletePods {
                        namespace: namespace.to_owned(),
                        selector: self.site_pods(site, None),
                        node: Some(node.name.clone()),
                        must_match: false,
                    });
                }
                (apply, undo)
            }
            Fault::Uncordon(site) => {
                let nodes = self.site_nodes(site, namespace).await?;
                let apply = nodes
                    .iter()
                    .map(|n| K3dOp::SetUnschedulable {
                        node: n.name.clone(),
                        unschedulable: false,
                    })
                    .collect();
                (apply, vec![])
            }
            Fault::NetworkPartition(site) => {
                self.require_docker(fault).await?;
                let nodes = self.site_nodes(site, namespace).await?;
                let network = self.config.network.clone();
                let mut apply = Vec::new();
                let mut undo = Vec::new();
                for n in &nodes {
                    let endpoint = self
                        .docker
                        .network_endpoint(&network, &n.name)
                        .await
                        .map_err(|m| {
                            Self::call_error(format!("inspect {} on network {network}", n.name), m)
                        })?
                        .ok_or_else(|| {
                            unsupported(&format!(
                                "node container {} is not on network {network}",
                                n.name
                            ))
                        })?;
                    apply.push(K3dOp::DisconnectNetwork {
                        network: network.clone(),
                        container: n.name.clone(),
                    });
                    undo.push(K3dOp::ConnectNetwork {
                        network: network.clone(),
                        container: n.name.clone(),
                        endpoint: Some(endpoint),
                    });
                }
                (apply, undo)
            }
            Fault::Partition { between: [a, b] } => {
                self.require_docker(fault).await?;
                let side_a = self.site_nodes(a, namespace).await?;
                let side_b = self.site_nodes(b, namespace).await?;
                let ips =
                    |nodes: &[NodeInfo], site: &str| -> Result<BTreeSet<String>, BackendError> {
                        nodes
                            .iter()
                            .map(|n| {
                                n.internal_ip.clone().ok_or_else(|| {
                                    unsupported(&format!(
                                        "node {} of site {site} reports no InternalIP",
                                        n.name
                                    ))
                                })
                            })
                            .collect()
                    };
                let (ips_a, ips_b) = (ips(&side_a, a)?, ips(&side_b, b)?);
                let mut apply = Vec::new();
                let mut undo = Vec::new();
                for (nodes, peers) in [(&side_a, &ips_b), (&side_b, &ips_a)] {
                    for node in nodes.iter() {
                        apply.extend(Self::drop_rules(true, node, peers));
                        undo.extend(Self::drop_rules(false, node, peers));
                    }
                }
                (apply, undo)
            }
            Fault::DisableSidecar(site) => {
                self.require_docker(fault).await?;
                let nodes = self.site_nodes(site, namespace).await?;
                let signal = |signal: &str, must_find: bool| -> Vec<K3dOp> {
                    nodes
                        .iter()
                        .map(|n| K3dOp::Exec {
                            container: n.name.clone(),
                            cmd: sidecar_signal_command(site, signal, must_find),
                        })
                        .collect()
                };
                // The undo finds nothing to continue when the kubelet has meanwhile
                // restarted the stopped container (its liveness probe fails after
                // 3 x 10 s): that is not an error.
                (signal("STOP", true), signal("CONT", false))
            }
            Fault::NodeCrash(site) => {
                self.require_docker(fault).await?;
                let nodes = self.site_nodes(site, namespace).await?;
                let apply = nodes
                    .iter()
                    .map(|n| K3dOp::StopContainer {
                        container: n.name.clone(),
                    })
                    .collect();
                let undo = nodes
                    .iter()
                    .map(|n| K3dOp::StartContainer {
                        container: n.name.clone(),
                    })
                    .collect();
                (apply, undo)
            }
            Fault::WriteDivergent { site, transactions } => {
                self.require_live(fault)?;
                (
                    vec![K3dOp::ForcedWrites {
                        namespace: namespace.to_owned(),
                        site: site.to_string(),
                        transactions: *transactions,
                    }],
                    // Committed transactions cannot be taken back: resolving the
                    // divergence is the operator's reclone flow, which scenarios assert.
                    vec![],
                )
            }
            Fault::ForceWritable(site) => {
                self.require_live(fault)?;
                (
                    vec![K3dOp::ForceWritable {
                        namespace: namespace.to_owned(),
                        site: site.to_string(),
                    }],
                    // No undo: fencing the second writer is the operator's job.
                    vec![],
                )
            }
            Fault::ReplicationDelay { site, seconds } => {
                self.require_live(fault)?;
                let delay = |seconds: u32| K3dOp::SetSourceDelay {
                    namespace: namespace.to_owned(),
                    site: site.to_string(),
                    seconds,
                };
                (vec![delay(*seconds)], vec![delay(0)])
            }
            Fault::Recover(_) => {
                return Err(unsupported("recover is done by the runner from the ledger"));
            }
        })
    }

    /// Docker is needed only by node faults: pinged when one is planned, so a run
    /// without them (and a `recover` of Kubernetes-only undos) never needs it.
    async fn require_docker(&self, fault: &Fault) -> Result<(), BackendError> {
        tokio::time::timeout(DOCKER_PING_TIMEOUT, self.docker.ping())
            .await
            .map_err(|_| format!("no answer to GET /_ping within {DOCKER_PING_TIMEOUT:?}"))
            .and_then(|r| r)
            .map_err(|reason| BackendError::Unavailable {
                backend: BackendKind::K3d,
                reason: format!("`{fault}` needs the Docker daemon: {reason}"),
            })
    }

    fn require_live(&self, fault: &Fault) -> Result<&Arc<Live>, BackendError> {
        self.live
            .as_ref()
            .ok_or_else(|| BackendError::UnsupportedFault {
                backend: BackendKind::K3d,
                fault: fault.to_string(),
                reason: "this k3d backend was built without a data plane (no port-forward tunnels)"
                    .into(),
            })
    }

    async fn run(&self, op: &K3dOp) -> Result<(), BackendError> {
        let label = format!("{op:?}");
        let fail = |m: String| Self::call_error(label.clone(), m);
        let live = || {
            self.live.as_ref().ok_or_else(|| BackendError::Unavailable {
                backend: BackendKind::K3d,
                reason: format!("{label} needs the data plane (port-forward tunnels)"),
            })
        };
        match op {
            K3dOp::ForcedWrites {
                namespace,
                site,
                transactions,
            } => live()?
                .forced_writes(namespace, site, *transactions)
                .await
                .map_err(|m| Self::call_error(format!("write-divergent {site}"), m)),
            K3dOp::ForceWritable { namespace, site } => live()?
                .force_writable(namespace, site)
                .await
                .map_err(|m| Self::call_error(format!("force-writable {site}"), m)),
            K3dOp::SetSourceDelay {
                namespace,
                site,
                seconds,
            } => live()?
                .set_source_delay(namespace, site, *seconds)
                .await
                .map_err(|m| Self::call_error(format!("replication-delay {site} {seconds}s"), m)),
            K3dOp::DeletePods {
                namespace,
                selector,
                node,
                must_match,
            } => {
                let deleted = self
                    .nodes
                    .delete_pods(namespace, selector, node.as_deref())
                    .await
                    .map_err(fail)?;
                if *must_match && deleted.is_empty() {
                    return Err(BackendError::NoPodsMatched {
                        backend: BackendKind::K3d,
                        namespace: namespace.clone(),
                        selector: selector.clone(),
                    });
                }
                Ok(())
            }
            K3dOp::SetUnschedulable {
                node,
                unschedulable,
            } => self
                .nodes
                .set_unschedulable(node, *unschedulable)
                .await
                .map_err(fail),
            K3dOp::StopContainer { container } => {
                self.docker.stop_container(container).await.map_err(fail)
            }
            K3dOp::StartContainer { container } => {
                self.docker.start_container(container).await.map_err(fail)
            }
            K3dOp::DisconnectNetwork { network, container } => self
                .docker
                .disconnect_network(network, container)
                .await
                .map_err(fail),
            K3dOp::ConnectNetwork {
                network,
                container,
                endpoint,
            } => self
                .docker
                .connect_network(network, container, endpoint.as_ref())
                .await
                .map_err(fail),
            K3dOp::Exec { container, cmd } => match self.docker.exec(container, cmd, &[]).await {
                Ok(out) if out.exit_code == 0 => Ok(()),
                Ok(out) => Err(fail(format!(
                    "exited with {}: {}",
                    out.exit_code,
                    out.stderr.trim()
                ))),
                Err(m) => Err(fail(m)),
            },
        }
    }
}

/// Bounds the Docker ping before a node fault.
const DOCKER_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A Docker client that could not be built (no socket, bad `DOCKER_HOST`): every call
/// fails with why, so that only the faults that need Docker fail.
pub struct UnavailableDocker(pub String);

impl UnavailableDocker {
    fn fail<'a, T: Send + 'a>(&'a self) -> BoxFuture<'a, Result<T, String>> {
        let why = self.0.clone();
        Box::pin(async move { Err(why) })
    }
}

impl DockerApi for UnavailableDocker {
    fn ping(&self) -> BoxFuture<'_, Result<(), String>> {
        self.fail()
    }
    fn stop_container<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), String>> {
        self.fail()
    }
    fn start_container<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), String>> {
        self.fail()
    }
    fn disconnect_network<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.fail()
    }
    fn connect_network<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Option<&'a NetworkEndpoint>,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.fail()
    }
    fn network_endpoint<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<NetworkEndpoint>, String>> {
        self.fail()
    }
    fn exec<'a>(
        &'a self,
        _: &'a str,
        _: &'a [String],
        _: &'a [String],
    ) -> BoxFuture<'a, Result<ExecOutput, String>> {
        self.fail()
    }
}

/// Seconds iptables waits for the xtables lock (plain `-w` waits forever, and kube-proxy
/// or flannel may hold it).
pub const IPTABLES_LOCK_WAIT: &str = "5";

/// An idempotent undo of one DROP rule: deletes every copy of it (a fault applied twice
/// inserted two) and succeeds when there is none left, so that an undo replayed by
/// `recover` after a crash before the apply, or after a half-applied fault, or twice,
/// does not fail for good on iptables' "Bad rule" exit.
pub fn remove_rule_command(chain: &str, flag: &str, ip: &str) -> Vec<String> {
    let rule = format!("{chain} {flag} {ip} -j DROP");
    let w = IPTABLES_LOCK_WAIT;
    let script = format!(
        "while iptables -w {w} -C {rule} 2>/dev/null; do iptables -w {w} -D {rule} || exit 1; done"
    );
    vec!["sh".to_owned(), "-c".to_owned(), script]
}

/// A shell command, run in a k3d node container (its PID namespace holds every pod
/// process on the node), that sends `signal` to the site's sidecar processes: those
/// whose command line is `.../bloodraven sidecar ... --site=<site> ...` (as
/// `children::sidecar_args` writes it). The pattern's quotes keep the script's own
/// command line from matching it, and its own PID is skipped besides. With
/// `must_find`, finding none exits 1. Uses only POSIX sh, `tr` and `kill`, which the
/// k3s node image has.
pub fn sidecar_signal_command(site: &str, signal: &str, must_find: bool) -> Vec<String> {
    let check = if must_find {
        format!(
            "[ \"$found\" = 1 ] || {{ echo 'no sidecar process for site {site} on this node' >&2; exit 1; }}"
        )
    } else {
        "true".to_owned()
    };
    let script = format!(
        r#"found=0; for d in /proc/[0-9]*; do p="${{d#/proc/}}"; [ "$p" = "$$" ] && continue; c=$(tr '\000' ' ' < "$d/cmdline" 2>/dev/null) || continue; case "$c " in *bloodraven' sidecar '*' --site={site} '*) kill -{signal} "$p" && found=1;; esac; done; {check}"#
    );
    vec!["sh".to_owned(), "-c".to_owned(), script]
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
                .map_err(|m| {
                    Self::call_error(
                        format!("GET {}/{}:{port}/metrics", leader.namespace, leader.name),
                        m,
                    )
                })
        })
    }

    fn counter(&self, namespace: &str) -> Option<Arc<dyn CounterTarget>> {
        let counter = self.counter.clone()?;
        counter.use_namespace(namespace);
        Some(counter as Arc<dyn CounterTarget>)
    }

    fn writability<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, SiteWritability>>, BackendError>> {
        Box::pin(async move {
            let Some(live) = &self.live else {
                return Ok(None);
            };
            live.site_writability(namespace)
                .await
                .map(Some)
                .map_err(|m| Self::call_error("poll read_only".into(), m))
        })
    }
}
