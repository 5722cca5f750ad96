//! The k3d backend's data plane at its request boundary: which pod each tunnel forwards
//! to (and that a primary move re-resolves it), which account connects, which SQL each
//! fault and its undo run, the counter's history and the writability poll. Recording
//! doubles stand in for the API server's port-forward and for MySQL; the Dragonfly path
//! runs the production redis-crate connector against a tiny RESP server behind the
//! forwarded stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bloodraven::gtid::GtidSet;
use bloodraven::production::mysql::sql;
use bloodraven::seams::{
    CloneState, DragonflyTimeouts, GtidWait, IoThreadState, MysqlConnector, MysqlError,
    MysqlSession, MysqlStatus, MysqlTarget, ReadOnlyMode, ReplicaStatus, SemisyncSourceStatus,
};
use bloodraven_chaos::backend::k3d::{
    DockerApi, DockerError, ExecOutput, K3dBackend, K3dConfig, NetworkEndpoint, NodeApi, NodeInfo,
    PodRef,
};
use bloodraven_chaos::backend::k3d_live::{
    GroupApi, GroupInfo, LiveParts, PodPlacement, STATEMENTS_ENV, in_node_batch,
    parse_read_only_flags, read_only_in_node_command, statements_in_node_command,
};
use bloodraven_chaos::backend::tunnel::{BoxPodStream, PodForwarder, PodSource, ResolvedPod};
use bloodraven_chaos::backend::{Backend, BackendError, LedgerFaults, SiteWritability};
use bloodraven_chaos::cluster::ClusterError;
use bloodraven_chaos::scenario::Fault;
use bloodraven_chaos::workload::CounterAck;
use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const NS: &str = "bloodraven-playground";
/// The primary Service's ready endpoints, as the double's `pods` map keys them.
const PRIMARY: &str = "service/playground-mysql-primary";
const DRAGONFLY: &str =
    "shipstream.io/dragonfly-role=master,shipstream.io/dragonfly-traffic=enabled";

#[derive(Default)]
struct World {
    calls: Mutex<Vec<String>>,
    /// selector -> the pod it resolves to (name, site).
    pods: Mutex<BTreeMap<String, (String, String)>>,
    /// pod -> (read_only, super_read_only); a pod missing here is down.
    flags: Mutex<BTreeMap<String, (bool, bool)>>,
    /// pod -> counter keys committed there.
    rows: Mutex<BTreeMap<String, BTreeSet<String>>>,
    cache: Mutex<i64>,
    /// Pods the API server cannot port-forward to (their node is cut off).
    cut_off: Mutex<BTreeSet<String>>,
}

impl World {
    fn push(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
    fn place(&self, selector: &str, pod: &str, site: &str) {
        self.pods
            .lock()
            .unwrap()
            .insert(selector.into(), (pod.into(), site.into()));
    }
    fn set_flags(&self, pod: &str, read_only: bool, super_read_only: bool) {
        self.flags
            .lock()
            .unwrap()
            .insert(pod.into(), (read_only, super_read_only));
    }
}

struct Forwarder(Arc<World>);

impl PodForwarder for Forwarder {
    fn resolve<'a>(
        &'a self,
        ns: &'a str,
        pods: &'a PodSource,
    ) -> BoxFuture<'a, Result<Option<ResolvedPod>, ClusterError>> {
        let (key, call) = match pods {
            PodSource::Selector(selector) => (
                selector.clone(),
                format!("kube GET pods -n {ns} labelSelector={selector}"),
            ),
            PodSource::Service(service) => (
                format!("service/{service}"),
                format!(
                    "kube GET endpointslices -n {ns} labelSelector=kubernetes.io/service-name={service} (ready)"
                ),
            ),
        };
        let found = self.0.pods.lock().unwrap().get(&key).cloned();
        self.0.push(format!(
            "{call} -> {}",
            found.as_ref().map_or("none", |(p, _)| p.as_str())
        ));
        Box::pin(async move {
            Ok(found.map(|(name, site)| ResolvedPod {
                name,
                labels: BTreeMap::from([("shipstream.io/site".to_owned(), site)]),
            }))
        })
    }

    fn forward<'a>(
        &'a self,
        ns: &'a str,
        pod: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<BoxPodStream, ClusterError>> {
        self.0.push(format!(
            "kube POST /api/v1/namespaces/{ns}/pods/{pod}/portforward?ports={port}"
        ));
        if self.0.cut_off.lock().unwrap().contains(pod) {
            let why = ClusterError::Api {
                verb: "port-forward",
                object: format!("{ns}/{pod}:{port}"),
                message: format!("error dialing backend: node of {pod} unreachable"),
            };
            return Box::pin(async move { Err(why) });
        }
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let world = self.0.clone();
        let pod = pod.to_owned();
        tokio::spawn(async move {
            if port == 6379 {
                resp_server(theirs, world).await;
            } else {
                // A "MySQL" that greets with its pod name, read by `Mysql` below.
                let mut theirs = theirs;
                let _ = theirs.write_all(format!("{pod}\n").as_bytes()).await;
                let mut sink = [0u8; 64];
                while matches!(theirs.read(&mut sink).await, Ok(n) if n > 0) {}
            }
        });
        Box::pin(async move { Ok(Box::new(ours) as BoxPodStream) })
    }
}

/// Just enough RESP2 for the redis crate: arrays of bulk strings in, `+OK` or an
/// integer out. Records AUTH (password shown, it is a test value) and INCR.
async fn resp_server(stream: tokio::io::DuplexStream, world: Arc<World>) {
    let (read, mut write) = tokio::io::split(stream);
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let n: usize = line.trim().trim_start_matches('*').parse().unwrap();
        let mut args = Vec::new();
        for _ in 0..n {
            let mut len = String::new();
            read.read_line(&mut len).await.unwrap();
            let len: usize = len.trim().trim_start_matches('$').parse().unwrap();
            let mut buf = vec![0u8; len + 2];
            read.read_exact(&mut buf).await.unwrap();
            args.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        let reply = match args[0].to_ascii_uppercase().as_str() {
            "AUTH" => {
                world.push(format!("dragonfly AUTH {}", args[1..].join(" ")));
                "+OK\r\n".to_owned()
            }
            "INCR" => {
                world.push(format!("dragonfly INCR {}", args[1]));
                let mut c = world.cache.lock().unwrap();
                *c += 1;
                format!(":{c}\r\n")
            }
            _ => "+OK\r\n".to_owned(),
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A MySQL client that connects for real (to the tunnel), learns the pod from the
/// greeting, and records each session call as the SQL the production adapter sends.
struct Mysql(Arc<World>);

impl MysqlConnector for Mysql {
    fn connect<'a>(
        &'a self,
        target: &'a MysqlTarget,
    ) -> BoxFuture<'a, Result<Box<dyn MysqlSession>, MysqlError>> {
        Box::pin(async move {
            assert_eq!(
                target.host, "127.0.0.1",
                "clients connect to the local tunnel"
            );
            let refused = |m: &str| MysqlError::Connect {
                address: target.address(),
                message: m.into(),
            };
            let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|e| refused(&e.to_string()))?;
            let mut stream = BufReader::new(stream);
            let mut pod = String::new();
            stream
                .read_line(&mut pod)
                .await
                .map_err(|e| refused(&e.to_string()))?;
            let pod = pod.trim().to_owned();
            if pod.is_empty() {
                return Err(refused("connection closed"));
            }
            self.0.push(format!(
                "mysql connect {}@{pod} password={}",
                target.user, target.password
            ));
            Ok(Box::new(Session {
                world: self.0.clone(),
                pod,
                _stream: stream,
            }) as Box<dyn MysqlSession>)
        })
    }
}

struct Session {
    world: Arc<World>,
    pod: String,
    _stream: BufReader<tokio::net::TcpStream>,
}

impl Session {
    fn run(&self, statements: &[String]) {
        for s in statements {
            self.world.push(format!("{}: {s}", self.pod));
        }
    }
    fn flags(&self) -> Result<(bool, bool), MysqlError> {
        self.world
            .flags
            .lock()
            .unwrap()
            .get(&self.pod)
            .copied()
            .ok_or_else(|| MysqlError::ConnectionLost {
                address: self.pod.clone(),
                operation: "query",
                message: "server went away".into(),
            })
    }
    fn unsupported<T: Send + 'static>(&self) -> BoxFuture<'static, Result<T, MysqlError>> {
        let address = self.pod.clone();
        Box::pin(async move {
            Err(MysqlError::Protocol {
                address,
                operation: "unsupported in this test",
                message: String::new(),
            })
        })
    }
}

impl MysqlSession for Session {
    fn address(&self) -> &str {
        &self.pod
    }
    fn observe(&mut self) -> BoxFuture<'_, Result<MysqlStatus, MysqlError>> {
        self.run(&[sql::OBSERVE.to_owned()]);
        let flags = self.flags();
        Box::pin(async move {
            let (read_only, super_read_only) = flags?;
            Ok(MysqlStatus {
                server_uuid: "uuid".into(),
                read_only,
                super_read_only,
                gtid_executed: GtidSet::default(),
                gtid_purged: GtidSet::default(),
                // A fenced site replicates; a writable one is the primary, whose
                // promotion reset its replication (`RESET REPLICA ALL`).
                replica: read_only.then(|| ReplicaStatus {
                    source_host: "playground-mysql-iad".into(),
                    source_port: 3306,
                    io_thread: IoThreadState::Running,
                    sql_thread_running: true,
                    retrieved_gtid_set: GtidSet::default(),
                    seconds_behind_source: Some(0),
                    last_io_error: None,
                    last_sql_error: None,
                    auto_position: true,
                    sql_delay_seconds: 0,
                }),
                semisync_source: SemisyncSourceStatus::default(),
            })
        })
    }
    fn set_read_only(&mut self, _: ReadOnlyMode) -> BoxFuture<'_, Result<(), MysqlError>> {
        self.unsupported()
    }
    fn stop_replica(&mut self) -> BoxFuture<'_, Result<(), MysqlError>> {
        self.run(&[sql::STOP_REPLICA.to_owned()]);
        Box::pin(async { Ok(()) })
    }
    fn start_replica(&mut self) -> BoxFuture<'_, Result<(), MysqlError>> {
        self.run(&[sql::START_REPLICA.to_owned()]);
        Box::pin(async { Ok(()) })
    }
    fn reset_replica_all(&mut self) -> BoxFuture<'_, Result<(), MysqlError>> {
        self.unsupported()
    }
    fn set_source_delay(&mut self, seconds: u32) -> BoxFuture<'_, Result<(), MysqlError>> {
        self.run(&[sql::set_source_delay(seconds)]);
        Box::pin(async { Ok(()) })
    }
    fn change_source<'a>(
        &'a mut self,
        _: &'a bloodraven::seams::ReplicationSource,
    ) -> BoxFuture<'a, Result<(), MysqlError>> {
        self.unsupported()
    }
    fn wait_for_executed_gtid_set<'a>(
        &'a mut self,
        _: &'a GtidSet,
        _: std::time::Duration,
    ) -> BoxFuture<'a, Result<GtidWait, MysqlError>> {
        self.unsupported()
    }
    fn clone_from<'a>(
        &'a mut self,
        _: &'a bloodraven::seams::CloneDonor,
        _: std::time::Duration,
    ) -> BoxFuture<'a, Result<(), MysqlError>> {
        self.unsupported()
    }
    fn ensure_replication_account<'a>(
        &'a mut self,
        _: &'a bloodraven::seams::ReplicationAccount,
    ) -> BoxFuture<'a, Result<(), MysqlError>> {
        self.unsupported()
    }
    fn kill_client_connections(&mut self) -> BoxFuture<'_, Result<u64, MysqlError>> {
        self.unsupported()
    }
    fn counter_increment<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<i64, MysqlError>> {
        let [_, upsert, _, _] = sql::counter_increment(key);
        self.run(&[upsert]);
        let result = self.flags().and_then(|(ro, sro)| {
            if ro || sro {
                return Err(MysqlError::Server {
                    address: self.pod.clone(),
                    operation: "counter increment",
                    code: 1290,
                    message: "read-only".into(),
                });
            }
            self.world
                .rows
                .lock()
                .unwrap()
                .entry(self.pod.clone())
                .or_default()
                .insert(key.to_owned());
            Ok(1)
        });
        Box::pin(async move { result })
    }
    fn counter_read<'a>(
        &'a mut self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, MysqlError>> {
        let present = self
            .world
            .rows
            .lock()
            .unwrap()
            .get(&self.pod)
            .is_some_and(|r| r.contains(key));
        Box::pin(async move { Ok(present.then_some(1)) })
    }
    fn forced_write<'a>(
        &'a mut self,
        key: &'a str,
        value: i64,
    ) -> BoxFuture<'a, Result<(), MysqlError>> {
        let fenced = self.flags().map(|(_, sro)| sro);
        Box::pin(async move {
            self.run(&sql::forced_write(key, value, fenced?));
            Ok(())
        })
    }
    fn read_only_mode(&mut self) -> BoxFuture<'_, Result<ReadOnlyMode, MysqlError>> {
        let flags = self.flags();
        Box::pin(async move {
            let (read_only, super_read_only) = flags?;
            Ok(ReadOnlyMode::from_flags(read_only, super_read_only))
        })
    }
    fn clone_state(&mut self) -> BoxFuture<'_, Result<Option<CloneState>, MysqlError>> {
        self.unsupported()
    }
    fn enable_replica_side_disabled_events(&mut self) -> BoxFuture<'_, Result<u64, MysqlError>> {
        self.unsupported()
    }
}

struct Groups(Arc<World>);

/// The node each site's pods run on (also its Docker container's name).
fn node_of(site: &str) -> String {
    format!("k3d-bloodraven-agent-{site}")
}

impl GroupApi for Groups {
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, ClusterError>> {
        Box::pin(async {
            Ok(vec![
                // Another group, sorted first: the runner must poll the fixture's.
                GroupInfo {
                    namespace: "aaa-other".into(),
                    name: "other".into(),
                    sites: vec!["east".into(), "west".into()],
                    credentials_secret: "other-mysql".into(),
                    mysql_port: 3306,
                },
                GroupInfo {
                    namespace: NS.into(),
                    name: "playground".into(),
                    sites: vec!["iad".into(), "pdx".into()],
                    credentials_secret: "playground-mysql".into(),
                    mysql_port: 3306,
                },
            ])
        })
    }
    fn pod_placement<'a>(
        &'a self,
        ns: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodPlacement>, ClusterError>> {
        let found = self.0.pods.lock().unwrap().get(selector).cloned();
        self.0.push(format!(
            "kube GET pods -n {ns} labelSelector={selector} (placement) -> {}",
            found.as_ref().map_or("none", |(p, _)| p.as_str())
        ));
        Box::pin(async move {
            Ok(found.map(|(pod, site)| PodPlacement {
                pod,
                node: node_of(&site),
            }))
        })
    }
    fn secret_value<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>> {
        assert_eq!((ns, name), (NS, "playground-mysql"));
        let value = match key {
            "root-password" => Some("r00t".to_owned()),
            "app-password" => Some("app-pw".to_owned()),
            _ => None,
        };
        Box::pin(async move { Ok(value) })
    }
    fn dragonfly_password<'a>(
        &'a self,
        ns: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>> {
        assert_eq!((ns, selector), (NS, DRAGONFLY));
        Box::pin(async { Ok(Some("dfly-pw".into())) })
    }
}

/// Docker as the in-node read_only read sees it: `exec` runs the production command
/// against the world's flags (the mysqld is readable inside its node even when the
/// node is cut off from the API server); no other Docker call is expected.
struct NodeDocker(Arc<World>);
impl DockerApi for NodeDocker {
    fn ping(&self) -> BoxFuture<'_, Result<(), DockerError>> {
        panic!("no docker call expected")
    }
    fn kill_container<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        panic!("no docker call expected")
    }
    fn start_container<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        panic!("no docker call expected")
    }
    fn disconnect_network<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        panic!("no docker call expected")
    }
    fn connect_network<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Option<&'a NetworkEndpoint>,
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        panic!("no docker call expected")
    }
    fn network_endpoint<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<NetworkEndpoint>, DockerError>> {
        panic!("no docker call expected")
    }
    fn exec<'a>(
        &'a self,
        node: &'a str,
        cmd: &'a [String],
        env: &'a [String],
    ) -> BoxFuture<'a, Result<ExecOutput, DockerError>> {
        let pods = self.0.pods.lock().unwrap().clone();
        // Statements run inside the node (a partitioned site's SQL faults).
        if let Some((pod, _)) = pods.values().find(|(pod, site)| {
            node_of(site) == node && cmd == statements_in_node_command(NS, pod).as_slice()
        }) {
            let statements = env
                .iter()
                .find_map(|e| e.strip_prefix(&format!("{STATEMENTS_ENV}=")))
                .unwrap_or_default()
                .replace('\n', " | ");
            let password_env = env
                .iter()
                .any(|e| e.starts_with("BLOODRAVEN_CHAOS_ROOT_PASSWORD="));
            self.0.push(format!(
                "docker exec {node} (statements in {pod}, password in env: {password_env}): {statements}"
            ));
            let out = ExecOutput {
                exit_code: 0,
                stdout: String::new(),
                stderr: String::new(),
            };
            return Box::pin(async move { Ok(out) });
        }
        let (pod, _) = pods
            .values()
            .find(|(pod, site)| {
                node_of(site) == node && cmd == read_only_in_node_command(NS, pod).as_slice()
            })
            .cloned()
            .unwrap_or_else(|| panic!("unexpected docker exec in {node}: {cmd:?}"));
        self.0.push(format!(
            "docker exec {node} (read_only of {pod}) env={env:?}"
        ));
        let out = match self.0.flags.lock().unwrap().get(&pod) {
            Some((ro, sro)) => ExecOutput {
                exit_code: 0,
                stdout: format!("{}\t{}\n", u8::from(*ro), u8::from(*sro)),
                stderr: String::new(),
            },
            None => ExecOutput {
                exit_code: 1,
                stdout: String::new(),
                stderr: "ERROR 2002 (HY000): Can't connect to local MySQL server through socket\n"
                    .into(),
            },
        };
        Box::pin(async move { Ok(out) })
    }
}
struct NoNodes;
impl NodeApi for NoNodes {
    fn nodes_with_label<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NodeInfo>, ClusterError>> {
        panic!("no node call expected")
    }
    fn delete_pods<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterError>> {
        panic!("no node call expected")
    }
    fn set_unschedulable<'a>(
        &'a self,
        _: &'a str,
        _: bool,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        panic!("no node call expected")
    }
    fn pods_in_all_namespaces<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodRef>, ClusterError>> {
        panic!("no node call expected")
    }
    fn site_node_selector<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, ClusterError>> {
        panic!("no node call expected")
    }
    fn pod_nodes<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterError>> {
        panic!("no node call expected")
    }
    fn lease_holder<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>> {
        panic!("no node call expected")
    }
    fn pod_metrics<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u16,
    ) -> BoxFuture<'a, Result<String, ClusterError>> {
        panic!("no node call expected")
    }
    fn node_labels<'a>(
        &'a self,
    ) -> BoxFuture<'a, Result<BTreeMap<String, BTreeMap<String, String>>, ClusterError>> {
        panic!("no node call expected")
    }
    fn api_version(&self) -> BoxFuture<'_, Result<String, ClusterError>> {
        panic!("no node call expected")
    }
}

/// The playground: iad primary (writable), pdx replica (super_read_only).
fn live_backend() -> (K3dBackend, Arc<World>) {
    let world = Arc::new(World::default());
    world.place(PRIMARY, "mysql-iad-0", "iad");
    world.place(
        "shipstream.io/site=iad,app.kubernetes.io/name=mysql",
        "mysql-iad-0",
        "iad",
    );
    world.place(
        "shipstream.io/site=pdx,app.kubernetes.io/name=mysql",
        "mysql-pdx-0",
        "pdx",
    );
    world.place(DRAGONFLY, "dragonfly-iad-0", "iad");
    world.set_flags("mysql-iad-0", false, false);
    world.set_flags("mysql-pdx-0", true, true);
    let backend = K3dBackend::new(
        K3dConfig::default(),
        Arc::new(NodeDocker(world.clone())),
        Arc::new(NoNodes),
        Arc::new(support::FakeCluster::default()),
        Arc::new(support::TokioClock(tokio::time::Instant::now())),
    )
    .with_live(LiveParts {
        forwarder: Arc::new(Forwarder(world.clone())),
        groups: Arc::new(Groups(world.clone())),
        mysql: Arc::new(Mysql(world.clone())),
        dragonfly: Arc::new(
            bloodraven::production::dragonfly::RedisDragonflyConnector::new(
                DragonflyTimeouts::default(),
            ),
        ),
    });
    (backend, world)
}

/// Every site's writability, each site polled on its own as the runner does.
async fn poll_all(backend: &K3dBackend) -> BTreeMap<String, SiteWritability> {
    let sites = backend.writability_sites(NS).await.unwrap().unwrap();
    let mut polled = BTreeMap::new();
    for site in sites {
        let state = backend.site_writability(NS, &site).await;
        polled.insert(site, state);
    }
    polled
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v = strings(v);
    v.sort();
    v
}

fn upsert(key: &str) -> String {
    sql::counter_increment(key)[1].clone()
}

#[tokio::test]
async fn the_counter_writes_as_the_app_user_through_the_primary_and_follows_it() {
    let (backend, world) = live_backend();
    let counter = backend.counter(NS).expect("a live backend has a counter");
    let ack = counter.increment(1).await.unwrap();
    assert_eq!(
        ack,
        CounterAck {
            value: 1,
            site: "iad".into()
        }
    );
    counter.increment(2).await.unwrap();
    assert_eq!(
        world.take(),
        vec![
            format!(
                "kube GET endpointslices -n {NS} labelSelector=kubernetes.io/service-name=playground-mysql-primary (ready) -> mysql-iad-0"
            ),
            format!("kube POST /api/v1/namespaces/{NS}/pods/mysql-iad-0/portforward?ports=3306"),
            "mysql connect app@mysql-iad-0 password=app-pw".into(),
            format!("mysql-iad-0: {}", upsert("chaos-counter/1")),
            // The session stays open: no new resolve or forward.
            format!("mysql-iad-0: {}", upsert("chaos-counter/2")),
        ]
    );

    // Failover: iad fenced, the primary Service's ready endpoint moves to pdx.
    world.set_flags("mysql-iad-0", true, true);
    world.set_flags("mysql-pdx-0", false, false);
    world.place(PRIMARY, "mysql-pdx-0", "pdx");
    let err = counter.increment(3).await.unwrap_err().to_string();
    assert!(err.contains("ERROR 1290"), "{err}");
    let ack = counter.increment(4).await.unwrap();
    assert_eq!(
        ack,
        CounterAck {
            value: 1,
            site: "pdx".into()
        }
    );
    assert_eq!(
        world.take(),
        vec![
            format!("mysql-iad-0: {}", upsert("chaos-counter/3")),
            // The failed write dropped the session; reconnecting re-resolves the tunnel.
            format!(
                "kube GET endpointslices -n {NS} labelSelector=kubernetes.io/service-name=playground-mysql-primary (ready) -> mysql-pdx-0"
            ),
            format!("kube POST /api/v1/namespaces/{NS}/pods/mysql-pdx-0/portforward?ports=3306"),
            "mysql connect app@mysql-pdx-0 password=app-pw".into(),
            format!("mysql-pdx-0: {}", upsert("chaos-counter/4")),
        ]
    );
    // no-acknowledged-write-lost reads every attempted increment back on the final
    // primary (this fake does not replicate, so only #4 is there) — through the same
    // backend counter, which remembers what it attempted.
    let committed = backend.counter(NS).unwrap().committed().await.unwrap();
    assert_eq!(committed, BTreeSet::from([4]));
}

#[tokio::test]
async fn a_primary_that_cannot_be_resolved_is_a_failed_write_that_says_why() {
    let (backend, world) = live_backend();
    world.pods.lock().unwrap().remove(PRIMARY);
    let err = backend.counter(NS).unwrap().increment(1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "connecting to the primary: no ready endpoint for {NS}/service/playground-mysql-primary:3306"
        )
    );
}

#[tokio::test]
async fn cache_incr_goes_through_the_dragonfly_master_with_its_password() {
    let (backend, world) = live_backend();
    let counter = backend.counter(NS).unwrap();
    assert_eq!(counter.cache_incr().await.unwrap(), 1);
    assert_eq!(counter.cache_incr().await.unwrap(), 2);
    let calls = world.take();
    let forward =
        format!("kube POST /api/v1/namespaces/{NS}/pods/dragonfly-iad-0/portforward?ports=6379");
    assert_eq!(
        calls
            .iter()
            .filter(|c| !c.starts_with("kube GET"))
            .cloned()
            .collect::<Vec<_>>(),
        vec![
            forward.clone(),
            "dragonfly AUTH dfly-pw".into(),
            "dragonfly INCR chaos-counter".into(),
            forward,
            "dragonfly AUTH dfly-pw".into(),
            "dragonfly INCR chaos-counter".into(),
        ]
    );
    assert!(calls.contains(&format!(
        "kube GET pods -n {NS} labelSelector={DRAGONFLY} -> dragonfly-iad-0"
    )));
}

#[tokio::test]
async fn writability_polls_read_only_flags_of_both_sites_as_root() {
    let (backend, world) = live_backend();
    let sites = poll_all(&backend).await;
    assert_eq!(
        sites,
        BTreeMap::from([
            ("iad".to_owned(), SiteWritability::Writable),
            ("pdx".to_owned(), SiteWritability::ReadOnly)
        ])
    );
    let mut calls = world.take();
    calls.sort(); // the two sites are polled concurrently
    assert_eq!(
        calls,
        sorted(&[
            "kube GET pods -n bloodraven-playground labelSelector=shipstream.io/site=iad,app.kubernetes.io/name=mysql -> mysql-iad-0",
            "kube GET pods -n bloodraven-playground labelSelector=shipstream.io/site=pdx,app.kubernetes.io/name=mysql -> mysql-pdx-0",
            "kube POST /api/v1/namespaces/bloodraven-playground/pods/mysql-iad-0/portforward?ports=3306",
            "kube POST /api/v1/namespaces/bloodraven-playground/pods/mysql-pdx-0/portforward?ports=3306",
            &format!("mysql-iad-0: {}", sql::OBSERVE),
            &format!("mysql-pdx-0: {}", sql::OBSERVE),
            "mysql connect root@mysql-iad-0 password=r00t",
            "mysql connect root@mysql-pdx-0 password=r00t",
        ])
    );

    // Next tick: the sessions are reused; iad's mysqld dies, pdx is promoted. iad
    // cannot be read by any path: unknown, saying why, never "not writable".
    world.flags.lock().unwrap().remove("mysql-iad-0");
    world.set_flags("mysql-pdx-0", false, false);
    let sites = poll_all(&backend).await;
    assert_eq!(sites.get("pdx"), Some(&SiteWritability::Writable));
    match sites.get("iad") {
        Some(SiteWritability::Unknown(why)) => {
            assert!(why.contains("server went away"), "{why}");
            assert!(why.contains("ERROR 2002"), "{why}");
        }
        other => panic!("iad should be unknown, got {other:?}"),
    }
    let mut calls = world.take();
    calls.sort();
    assert!(
        calls.contains(&format!("mysql-pdx-0: {}", sql::OBSERVE)),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"docker exec k3d-bloodraven-agent-iad (read_only of mysql-iad-0) env=[\"BLOODRAVEN_CHAOS_ROOT_PASSWORD=r00t\"]".to_owned()),
        "{calls:?}"
    );

    // The site's pod is gone: unknown, and the next poll resolves it again.
    world
        .pods
        .lock()
        .unwrap()
        .remove("shipstream.io/site=iad,app.kubernetes.io/name=mysql");
    let sites = poll_all(&backend).await;
    assert!(matches!(
        sites.get("iad"),
        Some(SiteWritability::Unknown(_))
    ));
    assert!(world.take().contains(
        &"kube GET pods -n bloodraven-playground labelSelector=shipstream.io/site=iad,app.kubernetes.io/name=mysql -> none".to_owned()
    ));
}

#[tokio::test]
async fn a_partitioned_site_is_read_inside_its_node_not_guessed_read_only() {
    let (backend, world) = live_backend();
    // network-partition iad: the API server cannot port-forward to its pod, but the
    // old primary's mysqld still runs, writable, until its sidecar fences it.
    world.cut_off.lock().unwrap().insert("mysql-iad-0".into());
    let sites = poll_all(&backend).await;
    assert_eq!(sites.get("iad"), Some(&SiteWritability::Writable));
    assert_eq!(sites.get("pdx"), Some(&SiteWritability::ReadOnly));
    let calls = world.take();
    let password_in_argv = calls
        .iter()
        .any(|c| c.starts_with("docker exec") && c.contains("r00t") && !c.contains("env="));
    assert!(!password_in_argv, "{calls:?}");
    assert!(calls.contains(
        &"kube GET pods -n bloodraven-playground labelSelector=shipstream.io/site=iad,app.kubernetes.io/name=mysql (placement) -> mysql-iad-0".to_owned()
    ), "{calls:?}");

    // Fenced inside the partition: observed as such.
    world.set_flags("mysql-iad-0", true, true);
    let sites = poll_all(&backend).await;
    assert_eq!(sites.get("iad"), Some(&SiteWritability::ReadOnly));
}

#[test]
fn the_in_node_read_only_command_and_its_output() {
    let cmd = read_only_in_node_command(NS, "mysql-iad-0");
    assert_eq!(cmd[..2], ["sh".to_owned(), "-c".to_owned()]);
    let script = &cmd[2];
    for part in [
        "--label io.kubernetes.pod.namespace=bloodraven-playground",
        "--label io.kubernetes.pod.name=mysql-iad-0",
        "--name '^mysqld$'",
        "\"$BLOODRAVEN_CHAOS_ROOT_PASSWORD\"",
        "SELECT @@global.read_only, @@global.super_read_only",
    ] {
        assert!(script.contains(part), "{part} missing from {script}");
    }
    assert!(!script.contains("r00t"));
    assert_eq!(parse_read_only_flags("1\t0\n"), Some((true, false)));
    assert_eq!(parse_read_only_flags("0\t0\n"), Some((false, false)));
    assert_eq!(parse_read_only_flags("\n0\t1"), Some((false, true)));
    assert_eq!(parse_read_only_flags("ERROR"), None);
    assert_eq!(parse_read_only_flags("1\t0\t1"), None);
    assert_eq!(parse_read_only_flags(""), None);
}

/// Plans the fault, executes it, then its undo; returns (plan, apply calls, undo calls).
async fn fault_calls(fault: Fault) -> (serde_json::Value, Vec<String>, Vec<String>) {
    let (backend, world) = live_backend();
    let plan = backend.plan_fault(&fault, NS).await.unwrap();
    assert!(
        world.take().is_empty(),
        "planning changes and reads nothing"
    );
    backend.execute(&plan.apply).await.unwrap();
    let apply = world.take();
    backend.execute(&plan.undo).await.unwrap();
    let undo = world.take();
    let json = serde_json::json!({"apply": plan.apply, "undo": plan.undo});
    (json, apply, undo)
}

#[tokio::test]
async fn write_divergent_commits_forced_writes_as_root_and_has_no_undo() {
    let (plan, apply, undo) = fault_calls(Fault::WriteDivergent {
        site: "pdx".into(),
        transactions: 2,
    })
    .await;
    assert_eq!(
        plan,
        serde_json::json!({
            "apply": [{"op": "forced-writes", "namespace": NS, "site": "pdx", "transactions": 2}],
            "undo": []
        })
    );
    let mut want = strings(&[
        "kube GET pods -n bloodraven-playground labelSelector=shipstream.io/site=pdx,app.kubernetes.io/name=mysql -> mysql-pdx-0",
        "kube POST /api/v1/namespaces/bloodraven-playground/pods/mysql-pdx-0/portforward?ports=3306",
        "mysql connect root@mysql-pdx-0 password=r00t",
    ]);
    // pdx is fenced (super_read_only): each write lifts the fence and puts it back.
    for n in 1..=2 {
        for s in sql::forced_write(&format!("chaos-divergent/{n}"), n, true) {
            want.push(format!("mysql-pdx-0: {s}"));
        }
    }
    assert_eq!(apply, want);
    assert!(
        apply
            .iter()
            .any(|c| c.ends_with("SET GLOBAL super_read_only = OFF"))
    );
    assert!(undo.is_empty());
}

#[tokio::test]
async fn replication_delay_sets_source_delay_and_the_undo_resets_it() {
    let (plan, apply, undo) = fault_calls(Fault::ReplicationDelay {
        site: "pdx".into(),
        seconds: 30,
    })
    .await;
    assert_eq!(
        plan["undo"],
        serde_json::json!([{"op": "set-source-delay", "namespace": NS, "site": "pdx", "seconds": 0}])
    );
    let connect = strings(&[
        "kube GET pods -n bloodraven-playground labelSelector=shipstream.io/site=pdx,app.kubernetes.io/name=mysql -> mysql-pdx-0",
        "kube POST /api/v1/namespaces/bloodraven-playground/pods/mysql-pdx-0/portforward?ports=3306",
        "mysql connect root@mysql-pdx-0 password=r00t",
    ]);
    let session = |seconds: &str| {
        let mut calls = connect.clone();
        calls.push(format!("mysql-pdx-0: {}", sql::OBSERVE));
        calls.extend(strings(&[
            "mysql-pdx-0: STOP REPLICA",
            &format!("mysql-pdx-0: CHANGE REPLICATION SOURCE TO SOURCE_DELAY = {seconds}"),
            "mysql-pdx-0: START REPLICA",
        ]));
        calls
    };
    assert_eq!(apply, session("30"));
    assert_eq!(undo, session("0"));
}

#[tokio::test]
async fn the_replication_delay_undo_on_a_site_that_became_primary_changes_nothing() {
    let (backend, world) = live_backend();
    let plan = backend
        .plan_fault(
            &Fault::ReplicationDelay {
                site: "pdx".into(),
                seconds: 30,
            },
            NS,
        )
        .await
        .unwrap();
    backend.execute(&plan.apply).await.unwrap();
    // Failover: pdx was promoted (writable, replication reset) before the undo ran.
    world.set_flags("mysql-pdx-0", false, false);
    world.take();
    backend.execute(&plan.undo).await.unwrap();
    let undo = world.take();
    assert_eq!(
        undo.last().map(String::as_str),
        Some(format!("mysql-pdx-0: {}", sql::OBSERVE).as_str()),
        "observed, then neither STOP/START REPLICA nor CHANGE on the new primary: {undo:?}"
    );
    assert!(
        !undo
            .iter()
            .any(|c| c.contains("REPLICA") || c.contains("SOURCE_DELAY"))
    );
    // The fault itself on a site that does not replicate is an error naming it.
    let err = backend.execute(&plan.apply).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("site pdx has no replication channel"),
        "{err}"
    );
}

#[tokio::test]
async fn sql_faults_on_an_unreachable_site_fail_naming_it() {
    let (backend, world) = live_backend();
    world
        .pods
        .lock()
        .unwrap()
        .remove("shipstream.io/site=pdx,app.kubernetes.io/name=mysql");
    let plan = backend
        .plan_fault(
            &Fault::ReplicationDelay {
                site: "pdx".into(),
                seconds: 5,
            },
            NS,
        )
        .await
        .unwrap();
    let err = backend.execute(&plan.apply).await.unwrap_err();
    assert!(matches!(err, BackendError::Live { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "k3d backend: replication-delay pdx 5s: root session to the MySQL of site pdx: no Running pod for bloodraven-playground/[shipstream.io/site=pdx,app.kubernetes.io/name=mysql]:3306"
    );
}

/// Issue 12 item 10: a partitioned site's mysqld is still reached as a local client
/// would, inside its node (no port-forward reaches it): the isolated primary keeps
/// taking local writes. The fence is read once and put back as it was found.
#[tokio::test]
async fn sql_faults_on_a_partitioned_site_run_inside_its_node() {
    let (backend, world) = live_backend();
    world.cut_off.lock().unwrap().insert("mysql-iad-0".into());
    let plan = backend
        .plan_fault(
            &Fault::WriteDivergent {
                site: "iad".into(),
                transactions: 2,
            },
            NS,
        )
        .await
        .unwrap();
    backend.execute(&plan.apply).await.unwrap();
    let calls = world.take();
    let exec = calls
        .iter()
        .find(|c| c.starts_with("docker exec"))
        .unwrap_or_else(|| panic!("no docker exec in {calls:?}"));
    assert!(
        exec.contains("(statements in mysql-iad-0, password in env: true)"),
        "{exec}"
    );
    let mut want = vec!["SET @bloodraven_chaos_was_fenced = @@global.super_read_only;".to_owned()];
    for n in 1..=2 {
        for statement in sql::forced_write(&format!("chaos-divergent/{n}"), n, false) {
            want.push(format!("{statement};"));
        }
    }
    want.push("SET GLOBAL super_read_only = @bloodraven_chaos_was_fenced;".to_owned());
    assert!(exec.ends_with(&want.join(" | ")), "{exec}\nwant {want:?}");
    assert!(
        !exec.contains("r00t"),
        "the password is not in the command: {exec}"
    );

    let plan = backend
        .plan_fault(&Fault::ForceWritable("iad".into()), NS)
        .await
        .unwrap();
    backend.execute(&plan.apply).await.unwrap();
    let calls = world.take();
    assert!(
        calls.iter().any(|c| c.starts_with("docker exec")
            && c.contains("SET GLOBAL super_read_only = OFF")),
        "{calls:?}"
    );

    // The in-node command reads password and statements from its environment.
    let cmd = statements_in_node_command(NS, "mysql-iad-0");
    for part in [
        "--label io.kubernetes.pod.name=mysql-iad-0",
        "\"$BLOODRAVEN_CHAOS_ROOT_PASSWORD\" \"$BLOODRAVEN_CHAOS_STATEMENTS\"",
        "exec mysql -uroot -N -B",
    ] {
        assert!(cmd[2].contains(part), "{part} missing from {}", cmd[2]);
    }
    assert_eq!(
        in_node_batch(&["SELECT 1".into(), "SELECT 2".into()]),
        "SELECT 1;\nSELECT 2;"
    );
}

#[test]
fn clients_wait_longer_than_the_tunnel_so_they_report_its_reason() {
    let timeouts = bloodraven_chaos::backend::k3d_live::counter_timeouts();
    assert!(timeouts.connect > bloodraven_chaos::backend::tunnel::FORWARD_TIMEOUT);
}
