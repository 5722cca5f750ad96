//! Fault planning and execution for the k3d backend: which Docker and Kubernetes
//! operations inject each fault and which undo it ([`K3dOp`], what the ledger stores),
//! how a site's nodes and the operator's pods are found, and the shell commands run
//! inside node containers. Reads only while planning; writes only in `run`.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::api::DockerError;
use super::api::{NetworkEndpoint, NodeInfo, PodRef};
use super::{K3dBackend, docker_failed, kube_failed, live_failed};
use crate::backend::k3d_live::Live;
use crate::backend::{BackendError, TypedPlan};
use crate::scenario::{BackendKind, Component, Fault};

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
    KillContainer {
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

impl K3dBackend {
    /// zone-<site>`); for a site without one, the nodes its pods run on.
    async fn site_nodes(&self, site: &str, namespace: &str) -> Result<Vec<NodeInfo>, BackendError> {
        let node_selector = self
            .nodes
            .site_node_selector(namespace, site)
            .await
            .map_err(kube_failed(format!(
                "read site {site}'s nodeSelector in {namespace}"
            )))?
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
                    .map_err(kube_failed(format!("list nodes {selector}")))?;
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
                    .map_err(kube_failed(format!("list pods {pods} in {namespace}")))?
                    .into_iter()
                    .collect();
                let nodes = self
                    .nodes
                    .nodes_with_label("")
                    .await
                    .map_err(kube_failed("list nodes"))?
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
            .map_err(kube_failed(format!(
                "list pods {selector} in all namespaces"
            )))?;
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
    pub(super) async fn operator_leader(&self) -> Result<PodRef, BackendError> {
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
                .map_err(kube_failed(format!("get Lease {ns}/{lease}")))?;
            if let Some(pod) = pods
                .iter()
                .find(|p| p.namespace == ns && Some(&p.name) == holder.as_ref())
            {
                return Ok(pod.clone());
            }
        }
        Err(BackendError::NoOperatorLeader {
            backend: BackendKind::K3d,
            pods: pods
                .iter()
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect::<Vec<_>>()
                .join(", "),
            lease: lease.clone(),
        })
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
    pub(super) async fn plan(
        &self,
        fault: &Fault,
        namespace: &str,
    ) -> Result<TypedPlan<K3dOp>, BackendError> {
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
                        .map_err(docker_failed(format!(
                            "inspect {} on network {network}",
                            n.name
                        )))?
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
            Fault::FreezeDragonfly(site) => {
                self.require_docker(fault).await?;
                let nodes = self.site_nodes(site, namespace).await?;
                let signal = |signal: &str, must_find: bool| -> Vec<K3dOp> {
                    nodes
                        .iter()
                        .map(|n| K3dOp::Exec {
                            container: n.name.clone(),
                            cmd: dragonfly_signal_command(site, signal, must_find),
                        })
                        .collect()
                };
                // The pod has no liveness probe on the cache, so the stopped process
                // stays stopped until the undo continues it.
                (signal("STOP", true), signal("CONT", false))
            }
            Fault::NodeCrash(site) => {
                self.require_docker(fault).await?;
                let nodes = self.site_nodes(site, namespace).await?;
                let apply = nodes
                    .iter()
                    .map(|n| K3dOp::KillContainer {
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
        let answer = match tokio::time::timeout(DOCKER_PING_TIMEOUT, self.docker.ping()).await {
            Ok(answer) => answer,
            Err(_) => Err(DockerError::TimedOut {
                call: "GET /_ping",
                object: "(daemon)".into(),
                after: DOCKER_PING_TIMEOUT,
            }),
        };
        answer.map_err(docker_failed(format!("`{fault}` needs the Docker daemon")))
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

    pub(super) async fn run(&self, op: &K3dOp) -> Result<(), BackendError> {
        let label = format!("{op:?}");
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
                .map_err(live_failed(format!("write-divergent {site}"))),
            K3dOp::ForceWritable { namespace, site } => live()?
                .force_writable(namespace, site)
                .await
                .map_err(live_failed(format!("force-writable {site}"))),
            K3dOp::SetSourceDelay {
                namespace,
                site,
                seconds,
            } => live()?
                .set_source_delay(namespace, site, *seconds)
                .await
                .map_err(live_failed(format!("replication-delay {site} {seconds}s"))),
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
                    .map_err(kube_failed(label.clone()))?;
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
                .map_err(kube_failed(label)),
            K3dOp::KillContainer { container } => self
                .docker
                .kill_container(container)
                .await
                .map_err(docker_failed(label)),
            K3dOp::StartContainer { container } => self
                .docker
                .start_container(container)
                .await
                .map_err(docker_failed(label)),
            K3dOp::DisconnectNetwork { network, container } => self
                .docker
                .disconnect_network(network, container)
                .await
                .map_err(docker_failed(label)),
            K3dOp::ConnectNetwork {
                network,
                container,
                endpoint,
            } => self
                .docker
                .connect_network(network, container, endpoint.as_ref())
                .await
                .map_err(docker_failed(label)),
            K3dOp::Exec { container, cmd } => {
                let out = self
                    .docker
                    .exec(container, cmd, &[])
                    .await
                    .map_err(docker_failed(label.clone()))?;
                if out.exit_code == 0 {
                    return Ok(());
                }
                Err(BackendError::CommandFailed {
                    backend: BackendKind::K3d,
                    operation: "exec".into(),
                    container: container.clone(),
                    command: cmd.join(" "),
                    exit_code: out.exit_code,
                    stderr: out.stderr.trim().to_owned(),
                })
            }
        }
    }
}

/// Bounds the Docker ping before a node fault.
const DOCKER_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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

/// As `sidecar_signal_command`, for the Dragonfly process(es) on a site's node: those
/// whose command line is `...dragonfly ... --break_replication_on_master_restart...`
/// (as `children::dragonfly_args` writes it). The command line names no site; a site's
/// nodes run only that site's Dragonfly.
pub fn dragonfly_signal_command(site: &str, signal: &str, must_find: bool) -> Vec<String> {
    let check = if must_find {
        format!(
            "[ \"$found\" = 1 ] || {{ echo 'no dragonfly process for site {site} on this node' >&2; exit 1; }}"
        )
    } else {
        "true".to_owned()
    };
    let script = format!(
        r#"found=0; for d in /proc/[0-9]*; do p="${{d#/proc/}}"; [ "$p" = "$$" ] && continue; c=$(tr '\000' ' ' < "$d/cmdline" 2>/dev/null) || continue; case "$c " in *dragonfly' '*'--break_replication_on_master_restart'*) kill -{signal} "$p" && found=1;; esac; done; {check}"#
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
