//! The sim backend's fault operations: what a scenario fault becomes in the simulated
//! playground (World faults through the driver's mailbox, pod deletions through the
//! API, SUPER-user statements on the MySQL models) and how each operation runs. The
//! ledger stores these operations; `recover` replays their undo in another process.

use bloodraven::seams::mysql::{MysqlConnector, MysqlSession, MysqlTarget, MysqlTimeouts};
use bloodraven_sim::Fault as WorldFault;
use bloodraven_sim::models::mysql::{MYSQL_PORT, mysql_connector};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use serde::{Deserialize, Serialize};

use super::{SimBackend, call_error, pods};
use futures::future::BoxFuture;

use crate::backend::{BackendError, FaultOps, TypedPlan};
use crate::scenario::{BackendKind, Component, Fault};

/// How the operator's pods are found (the label its Deployment sets).
const OPERATOR_SELECTOR: &str = bloodraven_sim::harness::metrics::OPERATOR_SELECTOR;
/// Keys the write-divergent fault writes in the models' counter table.
const DIVERGENT_KEY_PREFIX: &str = "chaos-divergent/";

fn mysql_component() -> Component {
    Component::Mysql
}

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
    /// Freeze (`frozen: true`) or thaw the named container of the namespace's
    /// `component` pods on the site's node (the sidecar runs in the MySQL pod).
    FreezeContainer {
        namespace: String,
        site: String,
        /// Absent in ledgers written before Dragonfly could be frozen: MySQL.
        #[serde(default = "mysql_component")]
        component: Component,
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

impl FaultOps for SimBackend {
    type Op = SimOp;
    const KIND: BackendKind = BackendKind::Sim;

    fn plan_ops<'a>(
        &'a self,
        fault: &'a Fault,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<TypedPlan<SimOp>, BackendError>> {
        // Reads only the playground's sites: ready at once.
        Box::pin(std::future::ready(self.plan(fault, namespace)))
    }

    fn run_op<'a>(&'a self, op: &'a SimOp) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.run(op))
    }
}

impl SimBackend {
    /// Decides the operations that inject `fault` and those that undo it.
    fn plan(&self, fault: &Fault, namespace: &str) -> Result<TypedPlan<SimOp>, BackendError> {
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
            Fault::KillDragonfly(s) => (vec![delete(site(s)?, vec![Component::Dragonfly])], vec![]),
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
                    component: Component::Mysql,
                    container: bloodraven::children::SIDECAR_CONTAINER.to_owned(),
                    frozen,
                };
                (vec![freeze(true)], vec![freeze(false)])
            }
            Fault::FreezeDragonfly(s) => {
                let s = site(s)?;
                let freeze = |frozen: bool| SimOp::FreezeContainer {
                    namespace: ns.clone(),
                    site: s.clone(),
                    component: Component::Dragonfly,
                    container: bloodraven::children::DRAGONFLY_CONTAINER.to_owned(),
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
        Ok((apply, undo))
    }

    async fn run(&self, op: &SimOp) -> Result<(), BackendError> {
        let world = |faults: Vec<WorldFault>| async move {
            self.world
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
                self.on_site_mysql(
                    namespace,
                    site,
                    LocalStatements::ForcedWrites(*transactions),
                )
                .await
            }
            SimOp::ForceWritable { namespace, site } => {
                self.on_site_mysql(namespace, site, LocalStatements::ForceWritable)
                    .await
            }
            SimOp::FreezeContainer {
                namespace,
                site,
                component,
                container,
                frozen,
            } => {
                let pods = self
                    .site_pods(namespace, &node(site)?, &[*component])
                    .await?;
                if pods.is_empty() && *frozen {
                    return Err(call_error(
                        format!("freeze {container} at {site}"),
                        format!("no {component} pod of {namespace} runs on {site}'s node"),
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
                self.on_site_mysql(namespace, site, LocalStatements::SourceDelay(*seconds))
                    .await
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
            .filter(|p| components.is_empty() || components.iter().any(|c| pods::runs(p, *c)))
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Root's target for the site's mysqld (the first MySQL pod on its node by name),
    /// with the password from the pod's `MYSQL_ROOT_PASSWORD`. Read through the API
    /// server by the runner, which reaches the control plane whatever the site's fate.
    async fn site_mysql_root(
        &self,
        namespace: &str,
        site: &str,
    ) -> Result<MysqlTarget, BackendError> {
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
        let container = pods::container_of(&pod, Component::Mysql).ok_or_else(|| {
            call_error(
                format!("pod {namespace}/{pod_name}"),
                "has no mysql container",
            )
        })?;
        let password = pods::container_env(&self.client, namespace, container)
            .await
            .map_err(|e| call_error(format!("environment of pod {namespace}/{pod_name}"), e))?
            .remove("MYSQL_ROOT_PASSWORD")
            .unwrap_or_default();
        Ok(MysqlTarget {
            host: bloodraven_sim::hosts::pod_host_name(namespace, pod_name),
            port: MYSQL_PORT,
            user: "root".into(),
            password,
        })
    }

    /// Runs `statements` as root on the site's mysqld the way a person on the site's
    /// node would (the k3d backend's `docker exec`): from a client host inside the
    /// site's network, so a partition between the site and the runner does not stop
    /// it. "The isolated primary keeps taking local writes" needs exactly this.
    async fn on_site_mysql(
        &self,
        namespace: &str,
        site: &str,
        statements: LocalStatements,
    ) -> Result<(), BackendError> {
        let target = self.site_mysql_root(namespace, site).await?;
        let world = self.world.clone();
        let (namespace_owned, site_owned) = (namespace.to_owned(), site.to_owned());
        // The outer error: the site-local client could not run; the inner one is its own.
        self.world
            .run_in_site(site, move |host| async move {
                let dialer = super::dialer(&world, &namespace_owned, &host);
                // A session the server (or the site's sidecar, fencing) cuts is opened
                // again, as a person at a mysql prompt would: every statement here is
                // safe to repeat (upserts of fixed keys, SETs).
                let mut attempt = 1;
                // Forced writes already committed: a retry goes on after them, so the
                // site ends with exactly the divergent transactions the step asked for.
                let mut done = 0;
                loop {
                    let mut session = mysql_connector(dialer.clone(), MysqlTimeouts::default())
                        .connect(&target)
                        .await
                        .map_err(|e| {
                            call_error(
                                format!("connect to MySQL of site {site_owned} from inside it"),
                                e,
                            )
                        })?;
                    match statements.run(&mut session, &mut done).await {
                        Err(bloodraven::seams::MysqlError::ConnectionLost { .. })
                            if attempt < LOCAL_STATEMENT_ATTEMPTS =>
                        {
                            attempt += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                        result => {
                            return result.map_err(|e| call_error(statements_label(statements), e));
                        }
                    }
                }
            })
            .await
            .map_err(|e| {
                call_error(
                    format!("{} on site {site}", statements_label(statements)),
                    e,
                )
            })?
    }
}

/// How often a fault's statements are tried on a site when the session is cut.
const LOCAL_STATEMENT_ATTEMPTS: u32 = 3;

/// The SUPER-user statements a fault runs on one site's mysqld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalStatements {
    /// `write-divergent`: this many writes through read-only (`chaos-divergent/1..=n`).
    ForcedWrites(u32),
    /// `force-writable`: read_only and super_read_only OFF.
    ForceWritable,
    /// `replication-delay` (0 undoes it): STOP REPLICA, SOURCE_DELAY, START REPLICA.
    SourceDelay(u32),
}

fn statements_label(statements: LocalStatements) -> &'static str {
    match statements {
        LocalStatements::ForcedWrites(_) => "write-divergent",
        LocalStatements::ForceWritable => "force-writable",
        LocalStatements::SourceDelay(_) => "replication-delay",
    }
}

impl LocalStatements {
    /// Runs the statements; `done` counts the forced writes that committed (a retry
    /// starts after them).
    async fn run(
        self,
        session: &mut Box<dyn MysqlSession>,
        done: &mut u32,
    ) -> Result<(), bloodraven::seams::MysqlError> {
        match self {
            LocalStatements::ForcedWrites(transactions) => {
                for n in (*done + 1)..=transactions {
                    let key = format!("{DIVERGENT_KEY_PREFIX}{n}");
                    session.forced_write(&key, i64::from(n)).await?;
                    *done = n;
                }
                Ok(())
            }
            LocalStatements::ForceWritable => {
                session
                    .set_read_only(bloodraven::seams::mysql::ReadOnlyMode::Writable)
                    .await
            }
            LocalStatements::SourceDelay(seconds) => {
                session.stop_replica().await?;
                session.set_source_delay(seconds).await?;
                session.start_replica().await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
