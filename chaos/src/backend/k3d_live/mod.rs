//! The k3d backend's data plane: SQL and Redis-protocol sessions from the runner's
//! machine into the cluster's pods, through port-forward tunnels (`tunnel`). It serves
//! the counter workload, the per-tick writability poll for single-writer, and the two
//! faults that need a SQL session (write-divergent, replication-delay).
//!
//! The clients are the operator's own production adapters (the MySQL protocol client, the redis
//! crate) behind the seams' connector traits; the Kubernetes reads sit behind
//! [`GroupApi`], so tests record every call without a cluster. The counter is in
//! `counter`, the production `GroupApi` in `groups`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bloodraven::production::mysql::sql;
use bloodraven::seams::{
    MysqlSession, MysqlTarget, MysqlTimeouts, SharedDragonflyConnector, SharedMysqlConnector,
};
use futures::future::BoxFuture;

use super::SiteWritability;
use super::k3d::{DockerApi, DockerError, ExecOutput};
use super::tunnel::{
    LastConnection, PodSource, SharedForwarder, Tunnel, TunnelError, TunnelTarget, Tunnels,
};
use crate::cluster::ClusterError;

mod counter;
mod groups;

pub use counter::K3dCounter;
pub use groups::KubeGroups;

/// Keys the counter and write-divergent write; the same as the sim backend's, so that a
/// scenario reads the same on both.
pub use crate::workload::COUNTER_KEY_PREFIX;
pub const CACHE_COUNTER_KEY: &str = "chaos-counter";
pub const DIVERGENT_KEY_PREFIX: &str = "chaos-divergent/";
/// Keys of the group's credentials Secret (`spec.mysql.credentialsSecret`).
pub const ROOT_PASSWORD_KEY: &str = bloodraven::children::ROOT_PASSWORD_KEY;
pub const APP_PASSWORD_KEY: &str = bloodraven::children::APP_PASSWORD_KEY;

/// Why a data-plane call failed: which group, Secret, tunnel, site or node, and what it
/// said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    #[error("listing MysqlFailoverGroups: {0}")]
    ListGroups(String),
    #[error("no MysqlFailoverGroup in namespace {namespace}")]
    NoGroup { namespace: String },
    #[error("no MysqlFailoverGroup in the cluster")]
    NoGroupAnywhere,
    #[error("reading Secret {namespace}/{secret}: {message}")]
    ReadSecret {
        namespace: String,
        secret: String,
        message: String,
    },
    #[error("Secret {namespace}/{secret} (the group's credentialsSecret) has no key {key}")]
    MissingSecretKey {
        namespace: String,
        secret: String,
        key: String,
    },
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    /// A client could not connect through a tunnel; the tunnel's own reason when it
    /// has one.
    #[error("{what}: {reason}")]
    Connect {
        what: String,
        target: String,
        reason: String,
    },
    /// A statement on a site's mysqld failed.
    #[error("{action} on site {site}: {source}")]
    Sql {
        action: String,
        site: String,
        source: bloodraven::seams::MysqlError,
    },
    #[error("finding the pod {selector} in {namespace}: {message}")]
    FindPod {
        namespace: String,
        selector: String,
        message: String,
    },
    #[error("no pod matches {selector} in {namespace}")]
    NoPod { namespace: String, selector: String },
    #[error("in node {node}: {source}")]
    NodeExec { node: String, source: DockerError },
    /// The in-node read ran and failed; its stderr says why.
    #[error("reading read_only of pod {pod} in node {node} exited with {exit_code}: {stderr}")]
    NodeReadFailed {
        pod: String,
        node: String,
        exit_code: i64,
        stderr: String,
    },
    /// The in-node mysql client ran statements and failed; its stderr says why.
    #[error("the mysql client in pod {pod} on node {node} exited with {exit_code}: {stderr}")]
    NodeStatementsFailed {
        pod: String,
        node: String,
        exit_code: i64,
        stderr: String,
    },
    /// A fault's statements could reach the site neither through a session nor inside
    /// its node: both reasons.
    #[error("{through_session}; inside its node: {inside_node}")]
    SiteUnreachable {
        through_session: Box<LiveError>,
        inside_node: Box<LiveError>,
    },
    #[error("unexpected output reading read_only of pod {pod}: {stdout:?}")]
    NodeReadOutput { pod: String, stdout: String },
    #[error("site {site} has no replication channel: replication-delay needs a replica")]
    NotAReplica { site: String },
    #[error("the Dragonfly password ({selector}): {message}")]
    DragonflyPassword { selector: String, message: String },
}

/// What the live data plane needs to know about a MysqlFailoverGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub namespace: String,
    pub name: String,
    pub sites: Vec<String>,
    pub credentials_secret: String,
    pub mysql_port: u16,
}

/// The Kubernetes reads behind the data plane (tests record them).
pub trait GroupApi: Send + Sync {
    /// Every MysqlFailoverGroup in the cluster, sorted by namespace and name.
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, ClusterError>>;
    /// `key` of Secret `namespace/name`; `None` when the Secret lacks the key.
    fn secret_value<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>>;
    /// Dragonfly's `requirepass` as the first pod (by name) matching `selector` is given
    /// it: env `DFLY_requirepass` (Secret references resolved) or a `--requirepass=` arg.
    fn dragonfly_password<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>>;
    /// The first pod (by name) matching `selector` that is not being deleted, and the
    /// node it is scheduled on, whatever its phase: a pod on a cut-off node still
    /// reads Running until the node controller notices.
    fn pod_placement<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodPlacement>, ClusterError>>;
}

/// A pod and the node (a k3d node container of the same name) it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlacement {
    pub pod: String,
    pub node: String,
}

/// The parts of the live data plane; production builds them in `K3dBackend::connect`,
/// tests pass recording doubles.
#[derive(Clone)]
pub struct LiveParts {
    pub forwarder: SharedForwarder,
    pub groups: Arc<dyn GroupApi>,
    pub mysql: SharedMysqlConnector,
    pub dragonfly: SharedDragonflyConnector,
}

/// Names the data plane uses (from `K3dConfig`).
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub site_pod_label: String,
    pub component_label: String,
    /// The ordinary account the counter writes as (never root, which could write
    /// through `read_only`); its password is the Secret's `app-password`.
    pub app_user: String,
    pub dragonfly_port: u16,
}

/// The live clients' timeouts. Connecting outlasts the tunnel's own forward timeout
/// (3 s), so that a refused forward is reported with the tunnel's reason.
pub fn counter_timeouts() -> MysqlTimeouts {
    MysqlTimeouts {
        connect: super::tunnel::FORWARD_TIMEOUT + Duration::from_secs(1),
        request: Duration::from_secs(3),
    }
}

/// Sessions and tunnels shared by the counter, the writability poll and the SQL faults.
pub struct Live {
    config: LiveConfig,
    tunnels: Tunnels,
    groups: Arc<dyn GroupApi>,
    mysql: SharedMysqlConnector,
    dragonfly: SharedDragonflyConnector,
    /// Root sessions per (namespace, site) kept open between writability polls.
    site_sessions: tokio::sync::Mutex<BTreeMap<(String, String), Box<dyn MysqlSession>>>,
    /// Reads `read_only` inside a site's node when no session reaches it.
    docker: Arc<dyn DockerApi>,
}

impl Live {
    pub fn new(config: LiveConfig, parts: LiveParts, docker: Arc<dyn DockerApi>) -> Self {
        Self {
            docker,
            config,
            tunnels: Tunnels::new(parts.forwarder),
            groups: parts.groups,
            mysql: parts.mysql,
            dragonfly: parts.dragonfly,
            site_sessions: tokio::sync::Mutex::default(),
        }
    }

    /// The group in `namespace`, or (none given) the first in the cluster.
    pub async fn group(&self, namespace: Option<&str>) -> Result<GroupInfo, LiveError> {
        let groups = self
            .groups
            .groups()
            .await
            .map_err(|e| LiveError::ListGroups(e.to_string()))?;
        groups
            .into_iter()
            .find(|g| namespace.is_none_or(|ns| g.namespace == ns))
            .ok_or_else(|| match namespace {
                Some(ns) => LiveError::NoGroup {
                    namespace: ns.to_owned(),
                },
                None => LiveError::NoGroupAnywhere,
            })
    }

    async fn password(&self, group: &GroupInfo, key: &str) -> Result<String, LiveError> {
        self.groups
            .secret_value(&group.namespace, &group.credentials_secret, key)
            .await
            .map_err(|e| LiveError::ReadSecret {
                namespace: group.namespace.clone(),
                secret: group.credentials_secret.clone(),
                message: e.to_string(),
            })?
            .ok_or_else(|| LiveError::MissingSecretKey {
                namespace: group.namespace.clone(),
                secret: group.credentials_secret.clone(),
                key: key.to_owned(),
            })
    }

    fn site_mysql_selector(&self, site: &str) -> String {
        format!(
            "{}={site},{}=mysql",
            self.config.site_pod_label, self.config.component_label
        )
    }

    async fn tunnel(&self, target: TunnelTarget) -> Result<Arc<Tunnel>, LiveError> {
        Ok(self.tunnels.get(target).await?)
    }

    /// Connects `user` through `tunnel`; returns the session and the pod it reached.
    async fn connect_mysql(
        &self,
        tunnel: &Tunnel,
        user: &str,
        password: String,
        what: &str,
    ) -> Result<(Box<dyn MysqlSession>, Option<LastConnection>), LiveError> {
        let local = tunnel.local_addr();
        let target = MysqlTarget {
            host: local.ip().to_string(),
            port: local.port(),
            user: user.to_owned(),
            password,
        };
        match self.mysql.connect(&target).await {
            Ok(session) => Ok((session, tunnel.last_connection())),
            // The tunnel knows why better than the client's EOF does.
            Err(e) => Err(LiveError::Connect {
                what: what.to_owned(),
                target: tunnel.target().to_string(),
                reason: match tunnel.last_connection() {
                    Some(LastConnection::Failed(why)) => why.to_string(),
                    _ => format!("{e} (via {})", tunnel.target()),
                },
            }),
        }
    }

    /// A root session to `site`'s mysqld in the group of `namespace`.
    async fn root_session(
        &self,
        group: &GroupInfo,
        site: &str,
    ) -> Result<Box<dyn MysqlSession>, LiveError> {
        let password = self.password(group, ROOT_PASSWORD_KEY).await?;
        let tunnel = self
            .tunnel(TunnelTarget {
                namespace: group.namespace.clone(),
                pods: PodSource::Selector(self.site_mysql_selector(site)),
                port: group.mysql_port,
            })
            .await?;
        let (session, _) = self
            .connect_mysql(
                &tunnel,
                "root",
                password,
                &format!("root session to the MySQL of site {site}"),
            )
            .await?;
        Ok(session)
    }

    /// The sites of the group in `namespace` (the fixture's): what the writability
    /// poll observes, each site on its own.
    pub async fn sites(&self, namespace: &str) -> Result<Vec<String>, LiveError> {
        Ok(self.group(Some(namespace)).await?.sites)
    }

    /// `site`'s writability now in the group of `namespace`, as an ordinary client's
    /// commit needs it: neither `read_only` nor `super_read_only`. Read through a root
    /// session over the site's tunnel; when that fails, inside its node container
    /// (`docker exec`, no cluster network needed: a partitioned node is still
    /// readable); when both fail it is `Unknown`, with both reasons.
    pub async fn site_writability(&self, namespace: &str, site: &str) -> SiteWritability {
        let group = match self.group(Some(namespace)).await {
            Ok(group) => group,
            Err(e) => return SiteWritability::Unknown(format!("site {site}: {e}")),
        };
        let through_session = match self.poll_site_session(&group, site).await {
            Ok(state) => return state,
            Err(why) => why,
        };
        match self.poll_site_in_node(&group, site).await {
            Ok(state) => state,
            Err(why) => SiteWritability::Unknown(format!(
                "site {site}: {through_session}; inside its node: {why}"
            )),
        }
    }

    async fn poll_site_session(
        &self,
        group: &GroupInfo,
        site: &str,
    ) -> Result<SiteWritability, LiveError> {
        let key = (group.namespace.clone(), site.to_owned());
        let existing = self.site_sessions.lock().await.remove(&key);
        let mut session = match existing {
            Some(s) => s,
            None => self.root_session(group, site).await?,
        };
        match session.observe().await {
            Ok(status) => {
                self.site_sessions.lock().await.insert(key, session);
                Ok(SiteWritability::from_flags(
                    status.read_only,
                    status.super_read_only,
                ))
            }
            // Dropped: the next poll reconnects (and re-resolves the site's pod).
            Err(source) => Err(LiveError::Sql {
                action: "reading read_only as root".into(),
                site: site.to_owned(),
                source,
            }),
        }
    }

    /// `read_only` and `super_read_only` read by the mysql client inside the site's
    /// mysqld container, reached from its node container through crictl.
    async fn poll_site_in_node(
        &self,
        group: &GroupInfo,
        site: &str,
    ) -> Result<SiteWritability, LiveError> {
        let placement = self.site_placement(group, site).await?;
        let password = self.password(group, ROOT_PASSWORD_KEY).await?;
        let cmd = read_only_in_node_command(&group.namespace, &placement.pod);
        let env = [format!("{READ_ONLY_PASSWORD_ENV}={password}")];
        let out = self.exec_in_node(&placement, &cmd, &env).await?;
        if out.exit_code != 0 {
            return Err(LiveError::NodeReadFailed {
                pod: placement.pod,
                node: placement.node,
                exit_code: out.exit_code,
                stderr: out.stderr.trim().to_owned(),
            });
        }
        parse_read_only_flags(&out.stdout)
            .map(|(ro, sro)| SiteWritability::from_flags(ro, sro))
            .ok_or(LiveError::NodeReadOutput {
                pod: placement.pod,
                stdout: out.stdout,
            })
    }

    /// Where `site`'s mysqld pod runs (pod and node), from the cluster.
    async fn site_placement(
        &self,
        group: &GroupInfo,
        site: &str,
    ) -> Result<PodPlacement, LiveError> {
        let selector = self.site_mysql_selector(site);
        self.groups
            .pod_placement(&group.namespace, &selector)
            .await
            .map_err(|e| LiveError::FindPod {
                namespace: group.namespace.clone(),
                selector: selector.clone(),
                message: e.to_string(),
            })?
            .ok_or_else(|| LiveError::NoPod {
                namespace: group.namespace.clone(),
                selector: selector.clone(),
            })
    }

    /// `cmd` in the node container of `placement`, bounded by [`NODE_READ_TIMEOUT`].
    async fn exec_in_node(
        &self,
        placement: &PodPlacement,
        cmd: &[String],
        env: &[String],
    ) -> Result<ExecOutput, LiveError> {
        let node_failed = |source| LiveError::NodeExec {
            node: placement.node.clone(),
            source,
        };
        match tokio::time::timeout(
            NODE_READ_TIMEOUT,
            self.docker.exec(&placement.node, cmd, env),
        )
        .await
        {
            Ok(answer) => answer.map_err(node_failed),
            Err(_) => Err(node_failed(DockerError::TimedOut {
                call: "exec",
                object: placement.node.clone(),
                after: NODE_READ_TIMEOUT,
            })),
        }
    }

    /// Runs root statements on `site`'s mysqld as a local client would (issue 12 item
    /// 10): through a root session over its tunnel when one can be opened, otherwise
    /// with the mysql client inside the site's mysqld container, reached from its node
    /// container (`docker exec` needs no cluster network, so a partitioned site's
    /// mysqld is still reached). `in_node` is the same work as one batch for that
    /// client. Only a session that could not be opened falls back: a statement that
    /// failed in a session is an error, never run twice.
    async fn on_site_mysql<F>(
        &self,
        namespace: &str,
        site: &str,
        in_node: &[String],
        in_session: F,
    ) -> Result<(), LiveError>
    where
        F: for<'s> FnOnce(&'s mut Box<dyn MysqlSession>) -> BoxFuture<'s, Result<(), LiveError>>,
    {
        let group = self.group(Some(namespace)).await?;
        let through_session = match self.root_session(&group, site).await {
            Ok(mut session) => return in_session(&mut session).await,
            Err(why) => why,
        };
        self.run_in_node(&group, site, in_node)
            .await
            .map_err(|inside_node| LiveError::SiteUnreachable {
                through_session: Box::new(through_session),
                inside_node: Box::new(inside_node),
            })
    }

    /// `statements` as root by the mysql client inside `site`'s mysqld container.
    async fn run_in_node(
        &self,
        group: &GroupInfo,
        site: &str,
        statements: &[String],
    ) -> Result<(), LiveError> {
        let placement = self.site_placement(group, site).await?;
        let password = self.password(group, ROOT_PASSWORD_KEY).await?;
        let cmd = statements_in_node_command(&group.namespace, &placement.pod);
        let env = [
            format!("{READ_ONLY_PASSWORD_ENV}={password}"),
            format!("{STATEMENTS_ENV}={}", in_node_batch(statements)),
        ];
        let out = self.exec_in_node(&placement, &cmd, &env).await?;
        if out.exit_code != 0 {
            return Err(LiveError::NodeStatementsFailed {
                pod: placement.pod,
                node: placement.node,
                exit_code: out.exit_code,
                stderr: out.stderr.trim().to_owned(),
            });
        }
        Ok(())
    }

    /// write-divergent: `transactions` writes as root that bypass read-only
    /// (`chaos-divergent/1..=n`), each an errant GTID of that server's UUID; inside the
    /// site's node when the site is cut off (the isolated primary keeps taking local
    /// writes).
    pub async fn forced_writes(
        &self,
        namespace: &str,
        site: &str,
        transactions: u32,
    ) -> Result<(), LiveError> {
        let keys: Vec<String> = (1..=transactions)
            .map(|n| format!("{DIVERGENT_KEY_PREFIX}{n}"))
            .collect();
        // One batch, so the fence is read once and put back as it was found.
        let mut in_node = vec![format!(
            "SET {WAS_FENCED_VARIABLE} = @@global.super_read_only"
        )];
        for (n, key) in (1..=transactions).zip(&keys) {
            in_node.extend(sql::forced_write(key, i64::from(n), false));
        }
        in_node.push(format!(
            "SET GLOBAL super_read_only = {WAS_FENCED_VARIABLE}"
        ));
        let site_name = site.to_owned();
        self.on_site_mysql(namespace, site, &in_node, move |session| {
            Box::pin(async move {
                for (n, key) in (1..=transactions).zip(&keys) {
                    session
                        .forced_write(key, i64::from(n))
                        .await
                        .map_err(sql_failed(format!("forced write {key}"), &site_name))?;
                }
                Ok(())
            })
        })
        .await
    }

    /// force-writable: `read_only=OFF, super_read_only=OFF` on `site`'s mysqld as root
    /// (inside its node when the site is cut off).
    pub async fn force_writable(&self, namespace: &str, site: &str) -> Result<(), LiveError> {
        let writable = bloodraven::seams::mysql::ReadOnlyMode::Writable;
        let in_node: Vec<String> = sql::set_read_only(writable)
            .iter()
            .map(|s| s.to_string())
            .collect();
        let site_name = site.to_owned();
        self.on_site_mysql(namespace, site, &in_node, move |session| {
            Box::pin(async move {
                session
                    .set_read_only(writable)
                    .await
                    .map_err(sql_failed("SET GLOBAL read_only=OFF", &site_name))
            })
        })
        .await
    }

    /// replication-delay (and its undo, `seconds = 0`): `CHANGE REPLICATION SOURCE TO
    /// SOURCE_DELAY = n` on `site`'s mysqld, as [`source_delay_steps`] decides from the
    /// site's replication now.
    pub async fn set_source_delay(
        &self,
        namespace: &str,
        site: &str,
        seconds: u32,
    ) -> Result<(), LiveError> {
        let group = self.group(Some(namespace)).await?;
        let mut session = self.root_session(&group, site).await?;
        let status = session
            .observe()
            .await
            .map_err(sql_failed("SHOW REPLICA STATUS", site))?;
        match source_delay_steps(status.replica.as_ref(), seconds) {
            SourceDelaySteps::NothingToUndo => Ok(()),
            SourceDelaySteps::NotAReplica => Err(LiveError::NotAReplica {
                site: site.to_owned(),
            }),
            SourceDelaySteps::Change { restart } => {
                if restart {
                    session
                        .stop_replica()
                        .await
                        .map_err(sql_failed("STOP REPLICA", site))?;
                }
                session.set_source_delay(seconds).await.map_err(sql_failed(
                    "CHANGE REPLICATION SOURCE TO SOURCE_DELAY",
                    site,
                ))?;
                if restart {
                    session
                        .start_replica()
                        .await
                        .map_err(sql_failed("START REPLICA", site))?;
                }
                Ok(())
            }
        }
    }
}

/// A failed statement on `site`, as the data plane reports it.
fn sql_failed(
    action: impl Into<String>,
    site: &str,
) -> impl FnOnce(bloodraven::seams::MysqlError) -> LiveError {
    let site = site.to_owned();
    move |source| LiveError::Sql {
        action: action.into(),
        site,
        source,
    }
}

/// What changing a site's `SOURCE_DELAY` takes, given its replication now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceDelaySteps {
    /// The undo (`seconds = 0`) on a site without a replication channel: it has since
    /// become the primary (promotion resets replication), so there is no delay left to
    /// take back, and starting replication there would be wrong.
    NothingToUndo,
    /// The fault (`seconds > 0`) on a site that does not replicate.
    NotAReplica,
    /// `CHANGE REPLICATION SOURCE TO SOURCE_DELAY`, inside STOP/START REPLICA only when
    /// a replication thread was running: replication the operator stopped stays
    /// stopped.
    Change { restart: bool },
}

/// Decides [`SourceDelaySteps`] from `SHOW REPLICA STATUS` (`None`: no channel).
pub fn source_delay_steps(
    replica: Option<&bloodraven::seams::ReplicaStatus>,
    seconds: u32,
) -> SourceDelaySteps {
    match replica {
        None if seconds == 0 => SourceDelaySteps::NothingToUndo,
        None => SourceDelaySteps::NotAReplica,
        Some(r) => SourceDelaySteps::Change {
            restart: r.sql_thread_running
                || r.io_thread != bloodraven::seams::IoThreadState::Stopped,
        },
    }
}

/// The environment variable that carries the statements into
/// [`statements_in_node_command`] (one batch, `;`-terminated lines).
pub const STATEMENTS_ENV: &str = "BLOODRAVEN_CHAOS_STATEMENTS";

/// The session variable the in-node forced writes keep the fence in.
const WAS_FENCED_VARIABLE: &str = "@bloodraven_chaos_was_fenced";

/// The statements as the mysql client reads them from stdin: one per line, each ended
/// by `;`.
pub fn in_node_batch(statements: &[String]) -> String {
    statements
        .iter()
        .map(|s| format!("{s};"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A shell command for a k3d node container that runs the statements in
/// [`STATEMENTS_ENV`] as root over the local socket of pod `namespace/pod`'s mysqld
/// (as [`read_only_in_node_command`] reads the flags): the password is the first line
/// of the client's stdin, the statements follow. Exit 3: no running mysqld container
/// of that pod here; otherwise the mysql client's exit code.
pub fn statements_in_node_command(namespace: &str, pod: &str) -> Vec<String> {
    let container = bloodraven::children::MYSQL_CONTAINER;
    let script = format!(
        r#"id=$(crictl ps -q --state running --label io.kubernetes.pod.namespace={namespace} --label io.kubernetes.pod.name={pod} --name '^{container}$' | head -n 1); [ -n "$id" ] || {{ echo 'no running {container} container of pod {namespace}/{pod} on this node' >&2; exit 3; }}; printf '%s\n%s\n' "${READ_ONLY_PASSWORD_ENV}" "${STATEMENTS_ENV}" | crictl exec -i "$id" sh -c 'read -r MYSQL_PWD; export MYSQL_PWD; exec mysql -uroot -N -B'"#
    );
    vec!["sh".to_owned(), "-c".to_owned(), script]
}

/// The environment variable that carries the root password into
/// [`read_only_in_node_command`] (never its argv, which `docker inspect` and `ps` show).
pub const READ_ONLY_PASSWORD_ENV: &str = "BLOODRAVEN_CHAOS_ROOT_PASSWORD";

/// Bounds one in-node read: a node container that is stopped or hung must not stall
/// the poll.
const NODE_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A shell command for a k3d node container (k3s ships `crictl`) that prints
/// `<read_only>\t<super_read_only>` of pod `namespace/pod`'s mysqld, as root over the
/// server's local socket; the password arrives on stdin from
/// [`READ_ONLY_PASSWORD_ENV`]. Exit 3: no running mysqld container of that pod here.
pub fn read_only_in_node_command(namespace: &str, pod: &str) -> Vec<String> {
    let container = bloodraven::children::MYSQL_CONTAINER;
    let script = format!(
        r#"id=$(crictl ps -q --state running --label io.kubernetes.pod.namespace={namespace} --label io.kubernetes.pod.name={pod} --name '^{container}$' | head -n 1); [ -n "$id" ] || {{ echo 'no running {container} container of pod {namespace}/{pod} on this node' >&2; exit 3; }}; printf '%s\n' "${READ_ONLY_PASSWORD_ENV}" | crictl exec -i "$id" sh -c 'read -r MYSQL_PWD; export MYSQL_PWD; exec mysql -uroot -N -B -e "SELECT @@global.read_only, @@global.super_read_only"'"#
    );
    vec!["sh".to_owned(), "-c".to_owned(), script]
}

/// Parses the `mysql -N -B` output of [`read_only_in_node_command`]: `1\t0`.
pub fn parse_read_only_flags(stdout: &str) -> Option<(bool, bool)> {
    let line = stdout.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut fields = line.split_whitespace();
    let flag = |f: Option<&str>| match f {
        Some("1") => Some(true),
        Some("0") => Some(false),
        _ => None,
    };
    let read_only = flag(fields.next())?;
    let super_read_only = flag(fields.next())?;
    fields
        .next()
        .is_none()
        .then_some((read_only, super_read_only))
}
