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

use bloodraven::transport::{SharedClock, SystemClock};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

mod clients;

pub use clients::{BollardDocker, KubeNodes};

use super::k3d_live::{K3dCounter, KubeGroups, Live, LiveConfig, LiveParts};
use super::tunnel::KubeForwarder;
use super::{Backend, BackendError, FaultOps, TypedPlan};
use crate::cluster::{KubeCluster, SharedCluster};
use crate::scenario::{BackendKind, Component, Fault};
use crate::workload::CounterTarget;

/// Names the playground uses; override only for a differently built cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K3dConfig {
    pub context: String,
    /// The Docker network k3d created for the cluster.
    pub network: String,
    /// Node label whose value is the site name.
    pub site_node_label: String,
    /// Pod label whose value is the site name (DESIGN.md pod labels).
    pub site_pod_label: String,
    /// Pod label that tells MySQL from Dragonfly pods.
    pub component_label: String,
    pub operator_namespace: String,
    pub operator_selector: String,
    /// `service:port` of the operator's metrics, reached through the API server proxy.
    pub metrics_service: String,
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
            site_node_label: "topology.kubernetes.io/zone".into(),
            site_pod_label: "shipstream.io/site".into(),
            component_label: "app.kubernetes.io/name".into(),
            operator_namespace: "bloodraven-system".into(),
            operator_selector: bloodraven::deploy::OPERATOR_POD_SELECTOR.into(),
            metrics_service: "bloodraven-metrics:8080".into(),
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
    fn stop_container<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), String>>;
    fn start_container<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), String>>;
    fn disconnect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
    fn connect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Runs `cmd` in the container and returns its exit code.
    fn exec<'a>(
        &'a self,
        container: &'a str,
        cmd: &'a [String],
    ) -> BoxFuture<'a, Result<i64, String>>;
}

/// The Kubernetes calls the backend makes for faults and metrics.
pub trait NodeApi: Send + Sync {
    fn nodes_with_label<'a>(
        &'a self,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NodeInfo>, String>>;
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
    /// GET /metrics of `service:port` in `namespace` through the API server's proxy.
    fn service_metrics<'a>(
        &'a self,
        namespace: &'a str,
        service: &'a str,
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
        let docker = bollard::Docker::connect_with_defaults()
            .map_err(|e| unavailable(format!("Docker daemon: {e}")))?;
        let live = LiveParts {
            forwarder: Arc::new(KubeForwarder(client.clone())),
            groups: Arc::new(KubeGroups(client.clone())),
            mysql: Arc::new(bloodraven::adapters::mysql::MysqlAsyncConnector::new(
                super::k3d_live::counter_timeouts(),
            )),
            dragonfly: Arc::new(
                bloodraven::adapters::dragonfly::RedisDragonflyConnector::new(
                    bloodraven::transport::DragonflyTimeouts::default(),
                ),
            ),
        };
        Ok(Self::new(
            config,
            Arc::new(BollardDocker(docker)),
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

    async fn site_nodes(&self, site: &str) -> Result<Vec<NodeInfo>, BackendError> {
        let selector = format!("{}={site}", self.config.site_node_label);
        let mut nodes = self
            .nodes
            .nodes_with_label(&selector)
            .await
            .map_err(|m| Self::call_error(format!("list nodes {selector}"), m))?;
        if nodes.is_empty() {
            return Err(BackendError::NoNodeForSite {
                backend: BackendKind::K3d,
                site: site.to_owned(),
                selector,
            });
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(nodes)
    }

    fn site_pods(&self, site: &str, component: Option<Component>) -> String {
        let mut selector = format!("{}={site}", self.config.site_pod_label);
        if let Some(c) = component {
            selector.push_str(&format!(",{}={c}", self.config.component_label));
        }
        selector
    }

    /// iptables rules that drop traffic between every node of `from` and each IP of
    /// `to`, both directions, as seen from `from`'s nodes.
    fn drop_rules(action: &str, node: &NodeInfo, peer_ips: &BTreeSet<String>) -> Vec<K3dOp> {
        let mut ops = Vec::new();
        for ip in peer_ips {
            for (chain, flag) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                ops.push(K3dOp::Exec {
                    container: node.name.clone(),
                    cmd: ["iptables", "-w", action, chain, flag, ip, "-j", "DROP"]
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect(),
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
        let delete = |selector: String, node: Option<String>| K3dOp::DeletePods {
            namespace: namespace.to_owned(),
            selector,
            node,
        };
        Ok(match fault {
            // Pod deletions need no undo: the StatefulSets recreate the pods.
            Fault::KillSite(site) => (vec![delete(self.site_pods(site, None), None)], vec![]),
            Fault::KillPod { site, component } => (
                vec![delete(self.site_pods(site, Some(*component)), None)],
                vec![],
            ),
            Fault::KillDragonfly(site) => (
                vec![delete(
                    self.site_pods(site, Some(Component::Dragonfly)),
                    None,
                )],
                vec![],
            ),
            Fault::KillOperator {} => (
                vec![K3dOp::DeletePods {
                    namespace: self.config.operator_namespace.clone(),
                    selector: self.config.operator_selector.clone(),
                    node: None,
                }],
                vec![],
            ),
            Fault::Cordon(site) => {
                let nodes = self.site_nodes(site).await?;
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
                    apply.push(delete(self.site_pods(site, None), Some(node.name.clone())));
                }
                (apply, undo)
            }
            Fault::Uncordon(site) => {
                let nodes = self.site_nodes(site).await?;
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
                let nodes = self.site_nodes(site).await?;
                let network = self.config.network.clone();
                let apply = nodes
                    .iter()
                    .map(|n| K3dOp::DisconnectNetwork {
                        network: network.clone(),
                        container: n.name.clone(),
                    })
                    .collect();
                let undo = nodes
                    .iter()
                    .map(|n| K3dOp::ConnectNetwork {
                        network: network.clone(),
                        container: n.name.clone(),
                    })
                    .collect();
                (apply, undo)
            }
            Fault::Partition { between: [a, b] } => {
                let side_a = self.site_nodes(a).await?;
                let side_b = self.site_nodes(b).await?;
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
                        apply.extend(Self::drop_rules("-I", node, peers));
                        undo.extend(Self::drop_rules("-D", node, peers));
                    }
                }
                (apply, undo)
            }
            Fault::DisableSidecar(site) => {
                let nodes = self.site_nodes(site).await?;
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
                let nodes = self.site_nodes(site).await?;
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
            } => self
                .nodes
                .delete_pods(namespace, selector, node.as_deref())
                .await
                .map(|_| ())
                .map_err(fail),
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
            K3dOp::ConnectNetwork { network, container } => self
                .docker
                .connect_network(network, container)
                .await
                .map_err(fail),
            K3dOp::Exec { container, cmd } => match self.docker.exec(container, cmd).await {
                Ok(0) => Ok(()),
                Ok(code) => Err(fail(format!("exited with {code}"))),
                Err(m) => Err(fail(m)),
            },
        }
    }
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
            self.nodes
                .service_metrics(
                    &self.config.operator_namespace,
                    &self.config.metrics_service,
                )
                .await
                .map_err(|m| {
                    Self::call_error(format!("GET {} /metrics", self.config.metrics_service), m)
                })
        })
    }

    fn counter(&self) -> Option<Arc<dyn CounterTarget>> {
        self.counter.clone().map(|c| c as Arc<dyn CounterTarget>)
    }

    fn writability(&self) -> BoxFuture<'_, Result<Option<BTreeMap<String, bool>>, BackendError>> {
        Box::pin(async move {
            let Some(live) = &self.live else {
                return Ok(None);
            };
            live.site_writability()
                .await
                .map(Some)
                .map_err(|m| Self::call_error("poll read_only".into(), m))
        })
    }
}
