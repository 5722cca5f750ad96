//! The k3d backend's data plane: SQL and Redis-protocol sessions from the runner's
//! machine into the cluster's pods, through port-forward tunnels (`tunnel`). It serves
//! the counter workload, the per-tick writability poll for single-writer, and the two
//! faults that need a SQL session (write-divergent, replication-delay).
//!
//! The clients are the operator's own production adapters (the MySQL protocol client, the redis
//! crate) behind the seams' connector traits; the Kubernetes reads sit behind
//! [`GroupApi`], so tests record every call without a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bloodraven::api::{
    DRAGONFLY_ROLE_LABEL, DRAGONFLY_TRAFFIC_LABEL, MysqlFailoverGroup, ROLE_LABEL,
};
use bloodraven::seams::{
    DragonflyTarget, MysqlSession, MysqlTarget, MysqlTimeouts, SharedDragonflyConnector,
    SharedMysqlConnector,
};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, Secret};

use super::SiteWritability;
use super::k3d::DockerApi;
use super::tunnel::{LastConnection, SharedForwarder, Tunnel, TunnelTarget, Tunnels};
use crate::workload::{
    CounterAck, CounterError, CounterTarget, SessionSlot, increment_in, present_in,
};

/// Keys the counter and write-divergent write; the same as the sim backend's, so that a
/// scenario reads the same on both.
pub use crate::workload::COUNTER_KEY_PREFIX;
pub const CACHE_COUNTER_KEY: &str = "chaos-counter";
pub const DIVERGENT_KEY_PREFIX: &str = "chaos-divergent/";
/// Keys of the group's credentials Secret (`spec.mysql.credentialsSecret`).
pub const ROOT_PASSWORD_KEY: &str = bloodraven::children::ROOT_PASSWORD_KEY;
pub const APP_PASSWORD_KEY: &str = bloodraven::children::APP_PASSWORD_KEY;

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
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, String>>;
    /// `key` of Secret `namespace/name`; `None` when the Secret lacks the key.
    fn secret_value<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// Dragonfly's `requirepass` as the first pod (by name) matching `selector` is given
    /// it: env `DFLY_requirepass` (Secret references resolved) or a `--requirepass=` arg.
    fn dragonfly_password<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// The first pod (by name) matching `selector` that is not being deleted, and the
    /// node it is scheduled on, whatever its phase: a pod on a cut-off node still
    /// reads Running until the node controller notices.
    fn pod_placement<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodPlacement>, String>>;
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
    pub async fn group(&self, namespace: Option<&str>) -> Result<GroupInfo, String> {
        let groups = self
            .groups
            .groups()
            .await
            .map_err(|e| format!("listing MysqlFailoverGroups: {e}"))?;
        groups
            .into_iter()
            .find(|g| namespace.is_none_or(|ns| g.namespace == ns))
            .ok_or_else(|| match namespace {
                Some(ns) => format!("no MysqlFailoverGroup in namespace {ns}"),
                None => "no MysqlFailoverGroup in the cluster".to_owned(),
            })
    }

    async fn password(&self, group: &GroupInfo, key: &str) -> Result<String, String> {
        self.groups
            .secret_value(&group.namespace, &group.credentials_secret, key)
            .await
            .map_err(|e| {
                format!(
                    "reading Secret {}/{}: {e}",
                    group.namespace, group.credentials_secret
                )
            })?
            .ok_or_else(|| {
                format!(
                    "Secret {}/{} (the group's credentialsSecret) has no key {key}",
                    group.namespace, group.credentials_secret
                )
            })
    }

    fn site_mysql_selector(&self, site: &str) -> String {
        format!(
            "{}={site},{}=mysql",
            self.config.site_pod_label, self.config.component_label
        )
    }

    async fn tunnel(&self, target: TunnelTarget) -> Result<Arc<Tunnel>, String> {
        self.tunnels.get(target).await
    }

    /// Connects `user` through `tunnel`; returns the session and the pod it reached.
    async fn connect_mysql(
        &self,
        tunnel: &Tunnel,
        user: &str,
        password: String,
        timeouts_note: &str,
    ) -> Result<(Box<dyn MysqlSession>, Option<LastConnection>), String> {
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
            Err(e) => Err(match tunnel.last_connection() {
                Some(LastConnection::Failed(why)) => format!("{timeouts_note}: {why}"),
                _ => format!("{timeouts_note} via {}: {e}", tunnel.target()),
            }),
        }
    }

    /// A root session to `site`'s mysqld in the group of `namespace`.
    async fn root_session(
        &self,
        group: &GroupInfo,
        site: &str,
    ) -> Result<Box<dyn MysqlSession>, String> {
        let password = self.password(group, ROOT_PASSWORD_KEY).await?;
        let tunnel = self
            .tunnel(TunnelTarget {
                namespace: group.namespace.clone(),
                selector: self.site_mysql_selector(site),
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

    /// Each site's writability now in the group of `namespace` (the fixture's), as an
    /// ordinary client's commit needs it: neither `read_only` nor `super_read_only`.
    /// A site is read through a root session over its tunnel; when that fails, inside
    /// its node container (`docker exec`, no cluster network needed: a partitioned
    /// node is still readable); when both fail it is `Unknown`, with both reasons.
    pub async fn site_writability(
        &self,
        namespace: &str,
    ) -> Result<BTreeMap<String, SiteWritability>, String> {
        let group = self.group(Some(namespace)).await?;
        let polls = group.sites.iter().map(|site| {
            let group = &group;
            async move { (site.clone(), self.poll_site(group, site).await) }
        });
        Ok(futures::future::join_all(polls).await.into_iter().collect())
    }

    async fn poll_site(&self, group: &GroupInfo, site: &str) -> SiteWritability {
        let through_session = match self.poll_site_session(group, site).await {
            Ok(state) => return state,
            Err(why) => why,
        };
        match self.poll_site_in_node(group, site).await {
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
    ) -> Result<SiteWritability, String> {
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
            Err(e) => Err(format!("reading read_only as root: {e}")),
        }
    }

    /// `read_only` and `super_read_only` read by the mysql client inside the site's
    /// mysqld container, reached from its node container through crictl.
    async fn poll_site_in_node(
        &self,
        group: &GroupInfo,
        site: &str,
    ) -> Result<SiteWritability, String> {
        let selector = self.site_mysql_selector(site);
        let placement = self
            .groups
            .pod_placement(&group.namespace, &selector)
            .await
            .map_err(|e| format!("finding the pod {selector}: {e}"))?
            .ok_or_else(|| format!("no pod matches {selector} in {}", group.namespace))?;
        let password = self.password(group, ROOT_PASSWORD_KEY).await?;
        let cmd = read_only_in_node_command(&group.namespace, &placement.pod);
        let env = [format!("{READ_ONLY_PASSWORD_ENV}={password}")];
        let out = tokio::time::timeout(
            NODE_READ_TIMEOUT,
            self.docker.exec(&placement.node, &cmd, &env),
        )
        .await
        .map_err(|_| {
            format!(
                "docker exec in node {} timed out after {NODE_READ_TIMEOUT:?}",
                placement.node
            )
        })?
        .map_err(|e| format!("docker exec in node {}: {e}", placement.node))?;
        if out.exit_code != 0 {
            return Err(format!(
                "reading read_only of pod {} in node {} exited with {}: {}",
                placement.pod,
                placement.node,
                out.exit_code,
                out.stderr.trim()
            ));
        }
        parse_read_only_flags(&out.stdout)
            .map(|(ro, sro)| SiteWritability::from_flags(ro, sro))
            .ok_or_else(|| {
                format!(
                    "unexpected output reading read_only of pod {}: {:?}",
                    placement.pod, out.stdout
                )
            })
    }

    /// write-divergent: `transactions` writes as root that bypass read-only
    /// (`chaos-divergent/1..=n`), each an errant GTID of that server's UUID.
    pub async fn forced_writes(
        &self,
        namespace: &str,
        site: &str,
        transactions: u32,
    ) -> Result<(), String> {
        let group = self.group(Some(namespace)).await?;
        let mut session = self.root_session(&group, site).await?;
        for n in 1..=transactions {
            let key = format!("{DIVERGENT_KEY_PREFIX}{n}");
            session
                .forced_write(&key, i64::from(n))
                .await
                .map_err(|e| format!("forced write {key} on site {site}: {e}"))?;
        }
        Ok(())
    }

    /// force-writable: `read_only=OFF, super_read_only=OFF` on `site`'s mysqld as root.
    pub async fn force_writable(&self, namespace: &str, site: &str) -> Result<(), String> {
        let group = self.group(Some(namespace)).await?;
        let mut session = self.root_session(&group, site).await?;
        session
            .set_read_only(bloodraven::seams::mysql::ReadOnlyMode::Writable)
            .await
            .map_err(|e| format!("on site {site}: {e}"))
    }

    /// replication-delay: STOP REPLICA; CHANGE REPLICATION SOURCE TO SOURCE_DELAY = n;
    /// START REPLICA on `site`'s mysqld.
    pub async fn set_source_delay(
        &self,
        namespace: &str,
        site: &str,
        seconds: u32,
    ) -> Result<(), String> {
        let group = self.group(Some(namespace)).await?;
        let mut session = self.root_session(&group, site).await?;
        let on = |e: bloodraven::seams::MysqlError| format!("on site {site}: {e}");
        session.stop_replica().await.map_err(on)?;
        session.set_source_delay(seconds).await.map_err(on)?;
        session.start_replica().await.map_err(on)
    }
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

/// The live counter: one row per increment (`chaos-counter/<seq>`) through whichever pod
/// is labelled `shipstream.io/role=primary`, as the app user; INCR `chaos-counter`
/// through the Dragonfly master that takes traffic.
pub struct K3dCounter {
    live: Arc<Live>,
    /// The fixture's namespace, whose group the counter writes to (`None`: the first
    /// group in the cluster, for a run without a fixture).
    namespace: Mutex<Option<String>>,
    session: tokio::sync::Mutex<SessionSlot>,
    attempted: Mutex<BTreeSet<u64>>,
}

impl K3dCounter {
    pub fn new(live: Arc<Live>) -> Self {
        Self {
            live,
            namespace: Mutex::default(),
            session: tokio::sync::Mutex::default(),
            attempted: Mutex::default(),
        }
    }

    /// Writes to the group of `namespace` from now on.
    pub fn use_namespace(&self, namespace: &str) {
        if let Ok(mut ns) = self.namespace.lock() {
            *ns = Some(namespace.to_owned());
        }
    }

    fn namespace(&self) -> Option<String> {
        self.namespace.lock().ok().and_then(|ns| ns.clone())
    }

    /// Opens a session to the current primary when none is open; returns the slot.
    async fn open(&self) -> Result<tokio::sync::MutexGuard<'_, SessionSlot>, CounterError> {
        let mut slot = self.session.lock().await;
        if slot.is_none() {
            let live = &self.live;
            let locate = |e: String| CounterError::locate("the primary", e);
            let namespace = self.namespace();
            let group = live.group(namespace.as_deref()).await.map_err(locate)?;
            let password = live
                .password(&group, APP_PASSWORD_KEY)
                .await
                .map_err(locate)?;
            let tunnel = live
                .tunnel(TunnelTarget {
                    namespace: group.namespace.clone(),
                    selector: format!("{ROLE_LABEL}=primary"),
                    port: group.mysql_port,
                })
                .await
                .map_err(locate)?;
            let (session, reached) = live
                .connect_mysql(
                    &tunnel,
                    &live.config.app_user,
                    password,
                    "connecting to the primary",
                )
                .await
                .map_err(|message| CounterError::Connect {
                    target: tunnel.target().to_string(),
                    message,
                })?;
            // The counter is the primary tunnel's only client, so the tunnel's latest
            // connection is this session's: its pod's site committed what it acks.
            let site = match reached {
                Some(LastConnection::Forwarded(pod)) => pod
                    .labels
                    .get(&live.config.site_pod_label)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into()),
                _ => "unknown".into(),
            };
            *slot = Some((site, session));
        }
        Ok(slot)
    }
}

impl CounterTarget for K3dCounter {
    fn increment(&self, seq: u64) -> BoxFuture<'_, Result<CounterAck, CounterError>> {
        Box::pin(async move {
            if let Ok(mut a) = self.attempted.lock() {
                a.insert(seq);
            }
            let mut slot = self.open().await?;
            increment_in(&mut slot, seq).await
        })
    }

    fn cache_incr(&self) -> BoxFuture<'_, Result<u64, CounterError>> {
        Box::pin(async move {
            let live = &self.live;
            let namespace = self.namespace();
            let group = live
                .group(namespace.as_deref())
                .await
                .map_err(|e| CounterError::locate("the Dragonfly master", e))?;
            let selector =
                format!("{DRAGONFLY_ROLE_LABEL}=master,{DRAGONFLY_TRAFFIC_LABEL}=enabled");
            let password = live
                .groups
                .dragonfly_password(&group.namespace, &selector)
                .await
                .map_err(|e| CounterError::locate(format!("Dragonfly password ({selector})"), e))?;
            let tunnel = live
                .tunnel(TunnelTarget {
                    namespace: group.namespace.clone(),
                    selector,
                    port: live.config.dragonfly_port,
                })
                .await
                .map_err(|e| CounterError::locate("the Dragonfly master", e))?;
            let local = tunnel.local_addr();
            let target = DragonflyTarget {
                host: local.ip().to_string(),
                port: local.port(),
                password,
            };
            let mut conn =
                live.dragonfly
                    .connect(&target)
                    .await
                    .map_err(|e| CounterError::Connect {
                        target: tunnel.target().to_string(),
                        message: match tunnel.last_connection() {
                            Some(LastConnection::Failed(why)) => why,
                            _ => format!("{e} (via {})", tunnel.target()),
                        },
                    })?;
            let value: i64 = redis::cmd("INCR")
                .arg(CACHE_COUNTER_KEY)
                .query_async(&mut conn)
                .await
                .map_err(|e| CounterError::Cache {
                    target: tunnel.target().to_string(),
                    message: e.to_string(),
                })?;
            Ok(u64::try_from(value).unwrap_or_default())
        })
    }

    fn committed(&self) -> BoxFuture<'_, Result<BTreeSet<u64>, CounterError>> {
        Box::pin(async move { present_in(|| self.open(), &self.attempted).await })
    }
}

// ---------------------------------------------------------------------------------
// Production implementation of `GroupApi`.

/// `GroupApi` over kube.
pub struct KubeGroups(pub kube::Client);

impl GroupApi for KubeGroups {
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, String>> {
        Box::pin(async move {
            let api: kube::Api<MysqlFailoverGroup> = kube::Api::all(self.0.clone());
            let list = api
                .list(&kube::api::ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let mut groups: Vec<GroupInfo> = list
                .items
                .into_iter()
                .map(|g| GroupInfo {
                    namespace: g.metadata.namespace.clone().unwrap_or_default(),
                    name: g.metadata.name.clone().unwrap_or_default(),
                    sites: g.spec.sites.iter().map(|s| s.name.clone()).collect(),
                    credentials_secret: g.spec.mysql.credentials_secret.clone(),
                    mysql_port: u16::try_from(g.spec.mysql.port).unwrap_or(3306),
                })
                .collect();
            groups.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            Ok(groups)
        })
    }

    fn secret_value<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let api: kube::Api<Secret> = kube::Api::namespaced(self.0.clone(), namespace);
            let secret = api.get(name).await.map_err(|e| e.to_string())?;
            Ok(secret_key(&secret, key))
        })
    }

    fn pod_placement<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodPlacement>, String>> {
        Box::pin(async move {
            let api: kube::Api<Pod> = kube::Api::namespaced(self.0.clone(), namespace);
            let mut pods: Vec<PodPlacement> = api
                .list(&kube::api::ListParams::default().labels(selector))
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| {
                    Some(PodPlacement {
                        pod: p.metadata.name?,
                        node: p.spec?.node_name?,
                    })
                })
                .collect();
            pods.sort_by(|a, b| a.pod.cmp(&b.pod));
            Ok(pods.into_iter().next())
        })
    }

    fn dragonfly_password<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let api: kube::Api<Pod> = kube::Api::namespaced(self.0.clone(), namespace);
            let mut pods = api
                .list(&kube::api::ListParams::default().labels(selector))
                .await
                .map_err(|e| e.to_string())?
                .items;
            pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            let Some(pod) = pods.into_iter().next() else {
                return Err(format!("no pod matches {selector}"));
            };
            for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                if let Some(var) = container
                    .env
                    .iter()
                    .flatten()
                    .find(|v| v.name == "DFLY_requirepass")
                {
                    if let Some(value) = &var.value {
                        return Ok(Some(value.clone()));
                    }
                    if let Some(r) = var
                        .value_from
                        .as_ref()
                        .and_then(|f| f.secret_key_ref.as_ref())
                    {
                        return self.secret_value(namespace, &r.name, &r.key).await;
                    }
                }
                if let Some(pass) = container
                    .args
                    .iter()
                    .flatten()
                    .find_map(|a| a.strip_prefix("--requirepass="))
                {
                    return Ok(Some(pass.to_owned()));
                }
            }
            Ok(None)
        })
    }
}

fn secret_key(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| secret.string_data.as_ref()?.get(key).cloned())
}
