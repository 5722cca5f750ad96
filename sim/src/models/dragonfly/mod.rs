//! A model of a Dragonfly server (the per-site cache/session store): a RESP server with
//! the commands the operator and the counter app use, Dragonfly's master/replica
//! replication (full sync then stable sync, INFO replication as Dragonfly prints it),
//! `REPLTAKEOVER` and `REPLICAOF NO ONE` promotion, and `--break_replication_on_master_restart`.
//! Data is in memory only: a restart loses it. See docs/simulation.md, "Dragonfly model".

mod connector;
pub mod resp;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub use connector::SimDragonflyConnector;
use resp::{Reply, read_command, read_frame, write_command, write_reply};

use crate::pod::{PodContext, PodProgram, ProgramFuture, SharedDialer};

/// The port Dragonfly listens on.
pub const DRAGONFLY_PORT: u16 = 6379;

/// How a modelled Dragonfly behaves; container args (`--flag=value`) override.
#[derive(Debug, Clone)]
pub struct DragonflyConfig {
    pub port: u16,
    /// `--requirepass`.
    pub requirepass: Option<String>,
    /// `--masterauth`: the password a replica sends to its master.
    pub masterauth: Option<String>,
    /// `--break_replication_on_master_restart` (Dragonfly default false: a replica whose
    /// master restarted empty full-syncs from it and loses its data).
    pub break_replication_on_master_restart: bool,
    /// `--info_replication_valkey_compatible` (default true: `role:slave`, state `online`).
    pub valkey_compatible: bool,
    /// Time from start to accepting connections.
    pub startup_time: Duration,
    /// How long a full sync takes (snapshot transfer) before stable sync.
    pub full_sync_time: Duration,
    /// `--master_reconnect_timeout_ms` (default 1 s).
    pub reconnect_interval: Duration,
    /// `--replication_timeout` (default 30 s): a link silent this long is dropped.
    pub replication_timeout: Duration,
    /// Interval of the master's pings on the replication link.
    pub ping_interval: Duration,
}

impl Default for DragonflyConfig {
    fn default() -> Self {
        Self {
            port: DRAGONFLY_PORT,
            requirepass: None,
            masterauth: None,
            break_replication_on_master_restart: false,
            valkey_compatible: true,
            startup_time: Duration::from_millis(200),
            full_sync_time: Duration::from_millis(200),
            reconnect_interval: Duration::from_secs(1),
            replication_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(1),
        }
    }
}

impl DragonflyConfig {
    /// Applies Dragonfly's command-line flags (`--name=value` or `--name value`).
    pub fn apply_args(&mut self, args: &[String]) {
        let mut iter = args.iter().peekable();
        while let Some(arg) = iter.next() {
            let Some(option) = arg.strip_prefix("--") else {
                continue;
            };
            let (name, inline) = match option.split_once('=') {
                Some((name, value)) => (name.replace('-', "_"), Some(value.to_string())),
                None => (option.replace('-', "_"), None),
            };
            let takes_value = matches!(name.as_str(), "requirepass" | "masterauth" | "port");
            let value = match inline {
                Some(value) => Some(value),
                None if takes_value => iter.next().cloned(),
                None => None,
            };
            let flag = || !matches!(value.as_deref(), Some("false") | Some("0"));
            match name.as_str() {
                "requirepass" => self.requirepass = value.clone().filter(|v| !v.is_empty()),
                "masterauth" => self.masterauth = value.clone().filter(|v| !v.is_empty()),
                "port" => {
                    if let Some(port) = value.as_deref().and_then(|v| v.parse().ok()) {
                        self.port = port;
                    }
                }
                "break_replication_on_master_restart" => {
                    self.break_replication_on_master_restart = flag()
                }
                "info_replication_valkey_compatible" => self.valkey_compatible = flag(),
                _ => {}
            }
        }
    }
}

/// The Dragonfly model as a pod program (image `docker.dragonflydb.io/dragonflydb/dragonfly:*`).
#[derive(Debug, Clone, Default)]
pub struct DragonflyProgram {
    config: DragonflyConfig,
}

impl DragonflyProgram {
    pub fn new(config: DragonflyConfig) -> Self {
        Self { config }
    }
}

impl PodProgram for DragonflyProgram {
    fn run(&self, ctx: PodContext) -> ProgramFuture {
        let mut config = self.config.clone();
        Box::pin(async move {
            config.apply_args(&ctx.args);
            if config.requirepass.is_none()
                && let Some(password) = ctx.env.get("DFLY_requirepass")
            {
                config.requirepass = Some(password.clone());
            }
            run(config, ctx).await
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Connecting,
    FullSync,
    StableSync,
}

enum Role {
    Master,
    Replica {
        host: String,
        port: u16,
        link: Link,
        task: AbortHandle,
        control: mpsc::UnboundedSender<TakeoverRequest>,
        last_io: Option<Instant>,
        /// Applied offset; `None` until the first full sync finished.
        synced_offset: Option<u64>,
    },
}

struct TakeoverRequest {
    timeout_sec: u64,
    reply: oneshot::Sender<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionState {
    Preparation,
    FullSync,
    StableSync,
}

struct ReplicaSession {
    ip: String,
    port: u16,
    state: SessionState,
    acked: u64,
}

#[derive(Clone)]
enum JournalOp {
    Set(Vec<u8>, Vec<u8>),
    Del(Vec<u8>),
}

struct State {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Journal: every write since this process started, with its offset (LSN).
    journal: Vec<(u64, JournalOp)>,
    offset: u64,
    replid: String,
    /// The replid of the master this node last fully synced from.
    master_replid: Option<String>,
    role: Role,
    /// Set while a REPLTAKEOVER drains this master: regular clients are refused.
    taken_over: bool,
    sessions: BTreeMap<u64, ReplicaSession>,
    next_id: u64,
    tasks: Vec<AbortHandle>,
}

struct Server {
    config: DragonflyConfig,
    host: String,
    dialer: SharedDialer,
    state: Mutex<State>,
    /// Bumped on every journal write and every ack.
    changed: watch::Sender<u64>,
    /// Ends the process after a successful takeover.
    shutdown: tokio::sync::Notify,
}

impl Server {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn spawn<F>(&self, future: F) -> AbortHandle
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(future).abort_handle();
        self.state().tasks.push(handle.clone());
        handle
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn write(&self, op: JournalOp) {
        {
            let mut state = self.state();
            match &op {
                JournalOp::Set(key, value) => {
                    state.data.insert(key.clone(), value.clone());
                }
                JournalOp::Del(key) => {
                    state.data.remove(key);
                }
            }
            state.offset += 1;
            let offset = state.offset;
            state.journal.push((offset, op));
        }
        self.bump();
    }
}

/// A fresh 40-hex-digit replication id, deterministic per host and simulated time.
fn new_replid(host: &str) -> String {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default().as_nanos();
    let mut hash: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    for byte in host.bytes().chain(elapsed.to_le_bytes()) {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    format!("{hash:032x}{:08x}", (hash >> 64) as u32)
}

async fn run(config: DragonflyConfig, ctx: PodContext) -> crate::pod::ProgramResult {
    ctx.ready.set(false);
    tokio::time::sleep(config.startup_time).await;
    let server = Arc::new(Server {
        host: ctx.host.clone(),
        dialer: ctx.dialer.clone(),
        state: Mutex::new(State {
            data: BTreeMap::new(),
            journal: Vec::new(),
            offset: 0,
            replid: new_replid(&ctx.host),
            master_replid: None,
            role: Role::Master,
            taken_over: false,
            sessions: BTreeMap::new(),
            next_id: 1,
            tasks: Vec::new(),
        }),
        changed: watch::channel(0).0,
        shutdown: tokio::sync::Notify::new(),
        config,
    });
    let _guard = AbortAll(server.clone());
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", server.config.port)).await?;
    ctx.ready.set(true);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let id = { let mut s = server.state(); s.next_id += 1; s.next_id };
                server.spawn(handle_client(server.clone(), id, stream, peer.ip().to_string()));
            }
            () = server.shutdown.notified() => {
                tracing::info!(host = %ctx.host, "dragonfly shutting down after takeover");
                ctx.ready.set(false);
                return Ok(());
            }
        }
    }
}

struct AbortAll(Arc<Server>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        let tasks = std::mem::take(&mut self.0.state().tasks);
        for task in tasks {
            task.abort();
        }
        if let Role::Replica { task, .. } = &self.0.state().role {
            task.abort();
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn wrong_args(command: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{}' command",
        command.to_ascii_lowercase()
    ))
}

async fn handle_client(
    server: Arc<Server>,
    id: u64,
    stream: turmoil::net::TcpStream,
    peer_ip: String,
) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut authenticated = server.config.requirepass.is_none();
    while let Ok(Some(args)) = read_command(&mut read).await {
        let Some(name) = args.first().map(|a| text(a).to_ascii_uppercase()) else {
            continue;
        };
        if name == "DFLYMODEL" {
            // A replica's sync request: this connection becomes its replication session.
            if !authenticated {
                let _ =
                    write_reply(&mut write, &Reply::error("NOAUTH Authentication required.")).await;
                return;
            }
            let port = args
                .get(2)
                .and_then(|p| text(p).parse().ok())
                .unwrap_or(DRAGONFLY_PORT);
            serve_replica(server, id, read, write, peer_ip, port).await;
            return;
        }
        let reply = if name == "AUTH" {
            let password = match args.len() {
                2 => Some(&args[1]),
                3 => Some(&args[2]),
                _ => None,
            };
            match (password, &server.config.requirepass) {
                (None, _) => wrong_args("auth"),
                (Some(_), None) => Reply::error(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ),
                (Some(given), Some(expected)) if given.as_slice() == expected.as_bytes() => {
                    authenticated = true;
                    Reply::ok()
                }
                (Some(_), Some(_)) => {
                    Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
                }
            }
        } else if !authenticated {
            Reply::error("NOAUTH Authentication required.")
        } else {
            execute(&server, &name, &args).await
        };
        if write_reply(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

async fn execute(server: &Arc<Server>, name: &str, args: &[Vec<u8>]) -> Reply {
    let admin = matches!(
        name,
        "PING" | "INFO" | "ROLE" | "REPLICAOF" | "SLAVEOF" | "CLIENT" | "CONFIG"
    );
    let (is_replica, taken_over) = {
        let state = server.state();
        (matches!(state.role, Role::Replica { .. }), state.taken_over)
    };
    if taken_over && !admin {
        // The master stopped serving regular clients for a takeover (hostile reading:
        // refused with an error, not queued).
        return Reply::error("ERR Can not execute during takeover");
    }
    let is_write = matches!(name, "SET" | "INCR" | "DEL");
    if is_write && is_replica {
        return Reply::error("READONLY You can't write against a read only replica.");
    }
    match name {
        "PING" => match args.get(1) {
            Some(message) => Reply::bulk(message.clone()),
            None => Reply::Simple("PONG".into()),
        },
        "GET" if args.len() == 2 => Reply::Bulk(server.state().data.get(&args[1]).cloned()),
        "SET" if args.len() >= 3 => {
            // Options such as EX/PX are accepted and ignored: the model has no expiry.
            server.write(JournalOp::Set(args[1].clone(), args[2].clone()));
            Reply::ok()
        }
        "INCR" if args.len() == 2 => {
            let current = server.state().data.get(&args[1]).cloned();
            let value = match current {
                None => 0,
                Some(bytes) => match text(&bytes).parse::<i64>() {
                    Ok(v) => v,
                    Err(_) => return Reply::error("ERR value is not an integer or out of range"),
                },
            };
            let Some(next) = value.checked_add(1) else {
                return Reply::error("ERR increment or decrement would overflow");
            };
            server.write(JournalOp::Set(
                args[1].clone(),
                next.to_string().into_bytes(),
            ));
            Reply::Integer(next)
        }
        "DEL" if args.len() >= 2 => {
            let mut removed = 0;
            for key in &args[1..] {
                if server.state().data.contains_key(key) {
                    server.write(JournalOp::Del(key.clone()));
                    removed += 1;
                }
            }
            Reply::Integer(removed)
        }
        "DBSIZE" => Reply::Integer(i64::try_from(server.state().data.len()).unwrap_or(i64::MAX)),
        "SELECT" => Reply::ok(),
        "CLIENT" => Reply::ok(),
        "ROLE" => role(server),
        "INFO" => {
            let section = args.get(1).map(|s| text(s).to_ascii_lowercase());
            match section.as_deref() {
                None | Some("replication") | Some("all") | Some("everything") => {
                    Reply::bulk(info_replication(server).into_bytes())
                }
                Some(_) => Reply::bulk(Vec::new()),
            }
        }
        "REPLICAOF" | "SLAVEOF" if args.len() == 3 => {
            let (host, port) = (text(&args[1]), text(&args[2]));
            if host.eq_ignore_ascii_case("no") && port.eq_ignore_ascii_case("one") {
                promote(server);
                return Reply::ok();
            }
            let Ok(port) = port.parse::<u16>() else {
                return Reply::error("ERR value is not an integer or out of range");
            };
            replicate(server, host, port);
            Reply::ok()
        }
        "REPLTAKEOVER" if args.len() == 2 || args.len() == 3 => {
            let Ok(timeout_sec) = text(&args[1]).parse::<u64>() else {
                return Reply::error("ERR value is not an integer or out of range");
            };
            takeover(server, timeout_sec).await
        }
        "GET" | "SET" | "INCR" | "DEL" | "REPLICAOF" | "SLAVEOF" | "REPLTAKEOVER" => {
            wrong_args(name)
        }
        _ => Reply::error(format!("ERR unknown command '{}'", text(&args[0]))),
    }
}

fn state_name(config: &DragonflyConfig, stable: bool, full_sync: bool) -> &'static str {
    match (stable, full_sync) {
        (true, _) if config.valkey_compatible => "online",
        (true, _) => "stable_sync",
        (false, true) => "full_sync",
        (false, false) => "preparation",
    }
}

fn role(server: &Server) -> Reply {
    let state = server.state();
    match &state.role {
        Role::Master => Reply::Array(vec![
            Reply::bulk("master"),
            Reply::Array(
                state
                    .sessions
                    .values()
                    .map(|s| {
                        let name = state_name(
                            &server.config,
                            s.state == SessionState::StableSync,
                            s.state == SessionState::FullSync,
                        );
                        Reply::Array(vec![
                            Reply::bulk(s.ip.clone()),
                            Reply::bulk(s.port.to_string()),
                            Reply::bulk(name),
                        ])
                    })
                    .collect(),
            ),
        ]),
        Role::Replica {
            host, port, link, ..
        } => {
            let link_name = match link {
                Link::Connecting => "connecting",
                Link::FullSync => "full_sync",
                Link::StableSync => state_name(&server.config, true, false),
            };
            Reply::Array(vec![
                Reply::bulk(if server.config.valkey_compatible {
                    "slave"
                } else {
                    "replica"
                }),
                Reply::bulk(host.clone()),
                Reply::bulk(port.to_string()),
                Reply::bulk(link_name),
            ])
        }
    }
}

/// `INFO replication` in Dragonfly's layout (no `master_repl_offset` line, unlike Redis).
fn info_replication(server: &Server) -> String {
    let state = server.state();
    let mut out = String::from("# Replication\r\n");
    match &state.role {
        Role::Master => {
            out.push_str("role:master\r\n");
            out.push_str(&format!("connected_slaves:{}\r\n", state.sessions.len()));
            for (index, session) in state.sessions.values().enumerate() {
                let name = state_name(
                    &server.config,
                    session.state == SessionState::StableSync,
                    session.state == SessionState::FullSync,
                );
                let lag = if session.state == SessionState::StableSync {
                    state.offset.saturating_sub(session.acked)
                } else {
                    0
                };
                out.push_str(&format!(
                    "slave{index}:ip={},port={},state={name},lag={lag}\r\n",
                    session.ip, session.port
                ));
            }
            out.push_str(&format!("master_replid:{}\r\n", state.replid));
        }
        Role::Replica {
            host,
            port,
            link,
            last_io,
            synced_offset,
            ..
        } => {
            let role = if server.config.valkey_compatible {
                "slave"
            } else {
                "replica"
            };
            out.push_str(&format!("role:{role}\r\n"));
            out.push_str(&format!("master_host:{host}\r\nmaster_port:{port}\r\n"));
            let up = *link == Link::StableSync;
            out.push_str(&format!(
                "master_link_status:{}\r\n",
                if up { "up" } else { "down" }
            ));
            let ago = last_io
                .map(|t| i64::try_from(t.elapsed().as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(-1);
            out.push_str(&format!("master_last_io_seconds_ago:{ago}\r\n"));
            out.push_str(&format!(
                "master_sync_in_progress:{}\r\n",
                u8::from(*link == Link::FullSync)
            ));
            if let Some(offset) = synced_offset {
                out.push_str(&format!("slave_repl_offset:{offset}\r\n"));
            }
            out.push_str("slave_read_only:1\r\n");
        }
    }
    out
}

/// `REPLICAOF NO ONE` (also the end of a successful takeover and of a broken replication
/// under `--break_replication_on_master_restart`): keep the data, become a master.
fn promote(server: &Server) {
    let mut state = server.state();
    if let Role::Replica { task, .. } = &state.role {
        task.abort();
    }
    state.role = Role::Master;
    state.replid = new_replid(&server.host);
}

/// `REPLICAOF host port`: (re)start replication; the data is replaced at full sync.
fn replicate(server: &Arc<Server>, host: String, port: u16) {
    let (control, requests) = mpsc::unbounded_channel();
    let task = server.spawn(replica_loop(server.clone(), host.clone(), port, requests));
    let mut state = server.state();
    if let Role::Replica { task, .. } = &state.role {
        task.abort();
    }
    state.sessions.clear();
    state.role = Role::Replica {
        host,
        port,
        link: Link::Connecting,
        task,
        control,
        last_io: None,
        synced_offset: None,
    };
}

async fn takeover(server: &Arc<Server>, timeout_sec: u64) -> Reply {
    let (reply, answer) = oneshot::channel();
    {
        let state = server.state();
        let Role::Replica { link, control, .. } = &state.role else {
            return Reply::error("ERR Already a master instance");
        };
        if *link != Link::StableSync {
            return Reply::error("ERR Replica is not in stable sync");
        }
        if control
            .send(TakeoverRequest { timeout_sec, reply })
            .is_err()
        {
            return Reply::error("ERR Takeover failed!");
        }
    }
    // The master answers within its timeout; allow one extra second for the round trip.
    let limit = Duration::from_secs(timeout_sec) + Duration::from_secs(1);
    match tokio::time::timeout(limit, answer).await {
        Ok(Ok(true)) => {
            promote(server);
            Reply::ok()
        }
        _ => Reply::error("ERR Takeover failed!"),
    }
}

fn set_link(server: &Server, new_link: Link) {
    if let Role::Replica { link, .. } = &mut server.state().role {
        *link = new_link;
    }
}

fn touch(server: &Server, offset: Option<u64>) {
    if let Role::Replica {
        last_io,
        synced_offset,
        ..
    } = &mut server.state().role
    {
        *last_io = Some(Instant::now());
        if offset.is_some() {
            *synced_offset = offset;
        }
    }
}

/// Forwards frames read from a replication socket into a channel (reads are not
/// cancel-safe, so they run in their own task).
fn frames(
    server: &Server,
    mut read: BufReader<OwnedReadHalf>,
) -> (mpsc::UnboundedReceiver<Reply>, AbortOnDrop) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = server.spawn(async move {
        while let Ok(Some(frame)) = read_frame(&mut read).await {
            if tx.send(frame).is_err() {
                return;
            }
        }
    });
    (rx, AbortOnDrop(handle))
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn bulk_text(reply: Option<&Reply>) -> Option<String> {
    match reply {
        Some(Reply::Bulk(Some(bytes))) => Some(text(bytes)),
        _ => None,
    }
}

/// The replica side: connect, full sync, then apply the journal stream and ack it.
async fn replica_loop(
    server: Arc<Server>,
    host: String,
    port: u16,
    mut takeovers: mpsc::UnboundedReceiver<TakeoverRequest>,
) {
    loop {
        set_link(&server, Link::Connecting);
        if replicate_once(&server, &host, port, &mut takeovers).await == Some(true) {
            return;
        }
        tokio::time::sleep(server.config.reconnect_interval).await;
    }
}

/// One replication connection; `Some(true)` when this replica became master and the loop
/// must end.
async fn replicate_once(
    server: &Arc<Server>,
    host: &str,
    port: u16,
    takeovers: &mut mpsc::UnboundedReceiver<TakeoverRequest>,
) -> Option<bool> {
    let timeout = server.config.replication_timeout;
    let stream = tokio::time::timeout(Duration::from_secs(2), server.dialer.dial(host, port))
        .await
        .ok()?
        .ok()?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    if let Some(password) = &server.config.masterauth {
        write_command(&mut write, &[b"AUTH", password.as_bytes()])
            .await
            .ok()?;
        match tokio::time::timeout(timeout, read_frame(&mut read)).await {
            Ok(Ok(Some(Reply::Simple(_)))) => {}
            _ => return None,
        }
    }
    let my_port = server.config.port.to_string();
    write_command(&mut write, &[b"DFLYMODEL", b"SYNC", my_port.as_bytes()])
        .await
        .ok()?;
    set_link(server, Link::FullSync);
    let (mut incoming, _reader) = frames(server, read);
    // Full sync: ["FULLSYNC", replid, offset, k1, v1, ...].
    let first = tokio::time::timeout(timeout, incoming.recv())
        .await
        .ok()??;
    let Reply::Array(items) = first else {
        return None;
    };
    if bulk_text(items.first()).as_deref() != Some("FULLSYNC") {
        return None;
    }
    let master_replid = bulk_text(items.get(1))?;
    let mut offset: u64 = bulk_text(items.get(2))?.parse().ok()?;
    {
        let mut state = server.state();
        let restarted = state
            .master_replid
            .as_ref()
            .is_some_and(|known| *known != master_replid);
        if restarted && server.config.break_replication_on_master_restart {
            drop(state);
            tracing::warn!(host = %server.host, "master restarted: breaking replication to keep data");
            promote(server);
            return Some(true);
        }
        state.data.clear();
        for pair in items[3..].chunks(2) {
            if let [Reply::Bulk(Some(key)), Reply::Bulk(Some(value))] = pair {
                state.data.insert(key.clone(), value.clone());
            }
        }
        state.master_replid = Some(master_replid);
    }
    touch(server, Some(offset));
    set_link(server, Link::StableSync);
    write_command(&mut write, &[b"ACK", offset.to_string().as_bytes()])
        .await
        .ok()?;
    let mut pending: Option<oneshot::Sender<bool>> = None;
    loop {
        tokio::select! {
            frame = tokio::time::timeout(timeout, incoming.recv()) => {
                let Reply::Array(items) = frame.ok()?? else { return None };
                match bulk_text(items.first()).as_deref() {
                    Some("J") => {
                        offset = bulk_text(items.get(1))?.parse().ok()?;
                        let op = bulk_text(items.get(2))?;
                        let key = match items.get(3) { Some(Reply::Bulk(Some(k))) => k.clone(), _ => return None };
                        {
                            let mut state = server.state();
                            if op == "SET" {
                                let value = match items.get(4) { Some(Reply::Bulk(Some(v))) => v.clone(), _ => return None };
                                state.data.insert(key, value);
                            } else {
                                state.data.remove(&key);
                            }
                        }
                        touch(server, Some(offset));
                        write_command(&mut write, &[b"ACK", offset.to_string().as_bytes()]).await.ok()?;
                    }
                    Some("PING") => {
                        touch(server, None);
                        write_command(&mut write, &[b"ACK", offset.to_string().as_bytes()]).await.ok()?;
                    }
                    Some("TAKEOVER_OK") => {
                        if let Some(reply) = pending.take() {
                            let _ = reply.send(true);
                        }
                        // The caller promotes this node; the old master shuts down.
                        return Some(true);
                    }
                    Some("TAKEOVER_FAILED") => {
                        if let Some(reply) = pending.take() {
                            let _ = reply.send(false);
                        }
                    }
                    _ => return None,
                }
            }
            request = takeovers.recv() => {
                let request = request?;
                write_command(&mut write, &[b"TAKEOVER", request.timeout_sec.to_string().as_bytes()]).await.ok()?;
                pending = Some(request.reply);
            }
        }
    }
}

/// The master side of one replica's session.
async fn serve_replica(
    server: Arc<Server>,
    id: u64,
    read: BufReader<OwnedReadHalf>,
    mut write: OwnedWriteHalf,
    ip: String,
    port: u16,
) {
    server.state().sessions.insert(
        id,
        ReplicaSession {
            ip,
            port,
            state: SessionState::Preparation,
            acked: 0,
        },
    );
    let _session = EndSession(server.clone(), id);
    let (mut incoming, _reader) = frames(&server, read);
    if let Some(session) = server.state().sessions.get_mut(&id) {
        session.state = SessionState::FullSync;
    }
    tokio::time::sleep(server.config.full_sync_time).await;
    let (snapshot, mut sent) = {
        let state = server.state();
        let mut items = vec![
            Reply::bulk("FULLSYNC"),
            Reply::bulk(state.replid.clone()),
            Reply::bulk(state.offset.to_string()),
        ];
        for (key, value) in &state.data {
            items.push(Reply::bulk(key.clone()));
            items.push(Reply::bulk(value.clone()));
        }
        (Reply::Array(items), state.offset)
    };
    if write_reply(&mut write, &snapshot).await.is_err() {
        return;
    }
    if let Some(session) = server.state().sessions.get_mut(&id) {
        session.state = SessionState::StableSync;
    }
    let mut changed = server.changed.subscribe();
    let mut ping = tokio::time::interval(server.config.ping_interval);
    loop {
        changed.borrow_and_update();
        let entries: Vec<(u64, JournalOp)> = server
            .state()
            .journal
            .iter()
            .filter(|(o, _)| *o > sent)
            .cloned()
            .collect();
        for (offset, op) in entries {
            let offset_text = offset.to_string();
            let result = match &op {
                JournalOp::Set(key, value) => {
                    write_command(
                        &mut write,
                        &[b"J", offset_text.as_bytes(), b"SET", key, value],
                    )
                    .await
                }
                JournalOp::Del(key) => {
                    write_command(&mut write, &[b"J", offset_text.as_bytes(), b"DEL", key]).await
                }
            };
            if result.is_err() {
                return;
            }
            sent = offset;
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = ping.tick() => {
                if write_command(&mut write, &[b"PING"]).await.is_err() {
                    return;
                }
            }
            frame = tokio::time::timeout(server.config.replication_timeout, incoming.recv()) => {
                let Ok(Some(Reply::Array(items))) = frame else { return };
                match bulk_text(items.first()).as_deref() {
                    Some("ACK") => {
                        let acked = bulk_text(items.get(1)).and_then(|o| o.parse().ok()).unwrap_or(0);
                        if let Some(session) = server.state().sessions.get_mut(&id) {
                            session.acked = acked;
                        }
                        server.bump();
                    }
                    Some("TAKEOVER") => {
                        let timeout_sec = bulk_text(items.get(1)).and_then(|t| t.parse().ok()).unwrap_or(0);
                        let ok = drain_for_takeover(&server, id, &mut write, &mut incoming, timeout_sec).await;
                        let answer: &[u8] = if ok { b"TAKEOVER_OK" } else { b"TAKEOVER_FAILED" };
                        let _ = write_command(&mut write, &[answer]).await;
                        if ok {
                            server.shutdown.notify_one();
                            return;
                        }
                    }
                    _ => return,
                }
            }
        }
    }
}

/// The master's half of a takeover: stop serving clients, wait (bounded) for the replica
/// to ack the current offset.
async fn drain_for_takeover(
    server: &Arc<Server>,
    id: u64,
    write: &mut OwnedWriteHalf,
    incoming: &mut mpsc::UnboundedReceiver<Reply>,
    timeout_sec: u64,
) -> bool {
    let target = {
        let mut state = server.state();
        if state.sessions.get(&id).map(|s| s.state) != Some(SessionState::StableSync)
            || state.taken_over
        {
            return false;
        }
        state.taken_over = true;
        state.offset
    };
    let deadline = Instant::now() + Duration::from_secs(timeout_sec);
    // Force an ack now rather than at the next ping.
    if write_command(write, &[b"PING"]).await.is_err() {
        server.state().taken_over = false;
        return false;
    }
    // Only an ack that answers the PING counts: with no time to receive one (timeout 0)
    // the takeover fails, as Dragonfly documents.
    let caught_up = loop {
        match tokio::time::timeout_at(deadline, incoming.recv()).await {
            Ok(Some(Reply::Array(items))) if bulk_text(items.first()).as_deref() == Some("ACK") => {
                let acked = bulk_text(items.get(1))
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(0);
                if let Some(session) = server.state().sessions.get_mut(&id) {
                    session.acked = acked;
                }
                if acked >= target {
                    break true;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break false,
        }
    };
    if !caught_up {
        server.state().taken_over = false;
    }
    caught_up
}

struct EndSession(Arc<Server>, u64);

impl Drop for EndSession {
    fn drop(&mut self) {
        self.0.state().sessions.remove(&self.1);
    }
}
