//! The mysqld process: boot (and restart in place after a CLONE) on the data volume,
//! the accept loop, one task per client connection, and the dispatch of each request
//! to the server's commit path. A crash or pod deletion drops the program and with it
//! every connection.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use bloodraven::gtid::GtidSet;
use bloodraven::production::mysql::wire::{self, capability, command};
use bloodraven::seams::mysql::error_codes;
use bloodraven::seams::object_storage::BoxedByteStream;
use tokio::sync::watch;

use super::frontend;
use super::protocol::{DumpRequest, SourceEvent, write_message};
use super::server::{
    DataDir, Durable, ReplicaRuntime, Runtime, Server, ServerError, denied, err,
    generate_server_uuid,
};
use super::session::{Reply, Session};
use super::{Account, MysqlConfig, replication};
use crate::pod::{PodContext, ProgramResult};

/// Runs mysqld until the program is dropped (crash, pod deletion); restarts in place after
/// a CLONE, as mysqld does under a supervisor.
pub(super) async fn run(
    config: MysqlConfig,
    accounts: Vec<Account>,
    ctx: PodContext,
    disk: Arc<DataDir>,
    observer: Option<super::MysqlObserver>,
) -> ProgramResult {
    {
        let mut durable = disk.lock();
        if durable.is_none() {
            *durable = Some(Durable {
                server_uuid: generate_server_uuid(&ctx.pod, &ctx.host),
                data: BTreeMap::new(),
                binlog: VecDeque::new(),
                binlog_first_seq: 0,
                gtid_executed: GtidSet::default(),
                gtid_purged: GtidSet::default(),
                source: None,
                accounts: BTreeMap::new(),
                installed_plugins: Default::default(),
                clone_status: None,
                persisted: BTreeMap::new(),
                source_retry_count: super::server::DEFAULT_SOURCE_RETRY_COUNT,
            });
        }
    }
    let command_line = config;
    loop {
        ctx.ready.set(false);
        tokio::time::sleep(command_line.startup_time).await;
        // mysqld-auto.cnf is read at every start, after the command line: persisted
        // values win (7.1.9.3 "Persisted System Variables"), unless
        // --persisted-globals-load=OFF.
        let persisted = if command_line.persisted_globals_load {
            disk.lock()
                .as_ref()
                .map(|d| d.persisted.clone())
                .unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        let mut config = command_line.clone();
        config.apply_args(
            &persisted
                .iter()
                .map(|(name, value)| format!("--{name}={value}"))
                .collect::<Vec<_>>(),
        )?;
        let server = Arc::new(Server {
            config: config.clone(),
            accounts: accounts.clone(),
            host: ctx.host.clone(),
            clock: ctx.clock.clone(),
            dialer: ctx.dialer.clone(),
            disk: disk.clone(),
            state: Mutex::new(Runtime {
                // Every mysqld boots fenced (docs/design.md "Safety assumptions"): super_read_only=ON in my.cnf,
                // unless the command line overrides it.
                read_only: config.boot_read_only,
                super_read_only: config.boot_super_read_only,
                next_connection_id: 1,
                connections: BTreeMap::new(),
                admin_connections: std::collections::BTreeSet::new(),
                dumps: BTreeMap::new(),
                replica: ReplicaRuntime::default(),
                semisync_active: config.semisync_source_enabled,
                semisync_no_tx: 0,
                semisync_source_enabled: config.semisync_source_enabled,
                semisync_replica_enabled: config.semisync_replica_enabled,
                semisync_timeout: config.semisync_timeout,
                globals: persisted,
                tasks: Vec::new(),
            }),
            commits: watch::channel(0).0,
            acks: watch::channel(GtidSet::default()).0,
            relay_grew: tokio::sync::Notify::new(),
            restart: tokio::sync::Notify::new(),
            row_locks: Mutex::new(BTreeMap::new()),
            global_read_lock: Arc::new(tokio::sync::RwLock::new(())),
        });
        let _shutdown = ShutdownGuard(server.clone());
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", config.port)).await?;
        let admin_listener = match &config.admin_address {
            Some(_) => Some(turmoil::net::TcpListener::bind(("0.0.0.0", config.admin_port)).await?),
            None => None,
        };
        if !config.skip_replica_start && server.with_disk(|d| d.source.is_some()).unwrap_or(false) {
            // Errors here are impossible (the source is configured); ignore like mysqld would log.
            let _ = server.start_replica();
        }
        let _registration = observer.as_ref().map(|o| {
            o.register(
                &ctx.host,
                &ctx.namespace,
                &ctx.pod,
                &ctx.node,
                &ctx.labels,
                &server,
            )
        });
        ctx.ready.set(true);
        tracing::info!(host = %ctx.host, uuid = %server.server_uuid(), "mysqld ready for connections");
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _peer)) = accepted else { continue };
                    let id = {
                        let mut state = server.state();
                        let id = state.next_connection_id;
                        state.next_connection_id += 1;
                        id
                    };
                    let handle = server.spawn(handle_connection(server.clone(), id, stream, Interface::Main));
                    server.state().connections.insert(id, handle);
                }
                accepted = admin_accept(admin_listener.as_ref()) => {
                    let Ok((stream, peer)) = accepted else { continue };
                    // A loopback admin_address is reachable from the host itself only
                    // (live, other hosts' connections would be refused).
                    let from_own_host = stream.local_addr().is_ok_and(|own| own.ip() == peer.ip());
                    if config.admin_loopback_only() && !from_own_host {
                        continue;
                    }
                    let id = {
                        let mut state = server.state();
                        let id = state.next_connection_id;
                        state.next_connection_id += 1;
                        state.admin_connections.insert(id);
                        id
                    };
                    let handle = server.spawn(handle_connection(server.clone(), id, stream, Interface::Admin));
                    server.state().connections.insert(id, handle);
                }
                () = server.restart.notified() => break,
            }
        }
        if !config.supervised {
            // Nobody restarts mysqld in place: the process ends, and the container
            // with it (the kubelet restarts it per the pod's restartPolicy).
            tracing::info!(host = %ctx.host, "mysqld shutting down after CLONE (no supervisor)");
            return Ok(());
        }
        tracing::info!(host = %ctx.host, "mysqld restarting after CLONE");
    }
}

/// The next connection on the administrative interface; never, without one.
async fn admin_accept(
    listener: Option<&turmoil::net::TcpListener>,
) -> std::io::Result<(turmoil::net::TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Which of mysqld's interfaces a client connected to (7.1.12.1 "Connection
/// Interfaces").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interface {
    /// `port`: counted against `max_connections`, plus one slot for CONNECTION_ADMIN.
    Main,
    /// `admin_port`: not counted; only for SERVICE_CONNECTION_ADMIN.
    Admin,
}

/// `ER_CON_COUNT_ERROR`.
const TOO_MANY_CONNECTIONS: u16 = 1040;

fn too_many_connections() -> ServerError {
    err(TOO_MANY_CONNECTIONS, "Too many connections")
}

/// Client connections on the main interface other than `id`.
fn other_main_connections(server: &Server, id: u64) -> usize {
    let state = server.state();
    state
        .connections
        .keys()
        .filter(|c| **c != id && !state.admin_connections.contains(c))
        .count()
}

/// Aborts every task of a server run when the run ends (restart, crash, pod deletion).
struct ShutdownGuard(Arc<Server>);

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        let tasks = std::mem::take(&mut self.0.state().tasks);
        for task in tasks {
            task.abort();
        }
    }
}

/// The greeting's server version: MySQL 8.4, marked as the model.
const SERVER_VERSION: &str = "8.4.3-bloodraven-model";

/// What the model's greeting offers (no TLS, no compression, no DEPRECATE_EOF).
const SERVER_CAPABILITIES: u32 = capability::LONG_PASSWORD
    | capability::FOUND_ROWS
    | capability::LONG_FLAG
    | capability::CONNECT_WITH_DB
    | capability::PROTOCOL_41
    | capability::TRANSACTIONS
    | capability::SECURE_CONNECTION
    | capability::MULTI_RESULTS
    | capability::PLUGIN_AUTH
    | capability::PLUGIN_AUTH_LENENC_CLIENT_DATA;

/// `SERVER_STATUS_AUTOCOMMIT`.
const STATUS_AUTOCOMMIT: u16 = 0x0002;

/// A 20-byte nonce for connection `id`: deterministic for a seed (drawn from the
/// simulation's time and the server UUID), printable and NUL-free as MySQL's are.
fn nonce(server: &Server, id: u64) -> Vec<u8> {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default().as_nanos();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in server
        .server_uuid()
        .bytes()
        .chain(id.to_le_bytes())
        .chain(elapsed.to_le_bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (0..20)
        .map(|i| {
            hash = hash.rotate_left(7).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i;
            b'!' + (hash % 90) as u8
        })
        .collect()
}

async fn send(stream: &mut BoxedByteStream, sequence: &mut u8, payload: &[u8]) -> bool {
    wire::write_packet(stream, sequence, payload).await.is_ok()
}

fn error_packet((code, message): ServerError) -> Vec<u8> {
    wire::ServerError {
        code,
        state: sqlstate(code).to_string(),
        message,
    }
    .encode()
}

/// The SQLSTATE MySQL reports with each error number the model raises.
pub(super) fn sqlstate(code: u16) -> &'static str {
    match code {
        error_codes::ACCESS_DENIED => "28000",
        error_codes::DATABASE_ACCESS_DENIED
        | error_codes::SPECIFIC_ACCESS_DENIED
        | frontend::PARSE_ERROR
        | 1231 => "42000",
        1146 => "42S02",
        TOO_MANY_CONNECTIONS => "08004",
        2013 => "HY000",
        _ => "HY000",
    }
}

/// The connection phase: greeting, login, caching_sha2_password's fast path (the model's
/// cache is always warm). Returns the account, or None after refusing the login.
async fn login(
    server: &Server,
    id: u64,
    interface: Interface,
    stream: &mut BoxedByteStream,
) -> Option<Account> {
    // max_connections + 1 connections on the main interface at most: beyond that the
    // server answers with 1040 instead of a greeting (7.1.12.1).
    if interface == Interface::Main
        && other_main_connections(server, id) > server.config.max_connections
    {
        send(stream, &mut 0, &error_packet(too_many_connections())).await;
        return None;
    }
    let nonce = nonce(server, id);
    let greeting = wire::Handshake {
        server_version: SERVER_VERSION.to_string(),
        connection_id: u32::try_from(id).unwrap_or(u32::MAX),
        nonce: nonce.clone(),
        capabilities: SERVER_CAPABILITIES,
        collation: wire::UTF8MB4_GENERAL_CI,
        status: STATUS_AUTOCOMMIT,
        auth_plugin: wire::CACHING_SHA2_PASSWORD.to_string(),
    };
    let mut sequence = 0;
    if !send(stream, &mut sequence, &greeting.encode()).await {
        return None;
    }
    let packet = wire::read_packet(stream).await.ok()?;
    let response = wire::HandshakeResponse::decode(&packet.payload).ok()?;
    let mut sequence = packet.sequence.wrapping_add(1);
    let mut answer = response.auth_response.clone();
    if response.auth_plugin.as_deref() != Some(wire::CACHING_SHA2_PASSWORD) {
        // AuthSwitchRequest to the server's default plugin.
        let mut switch = vec![0xfe];
        switch.extend_from_slice(wire::CACHING_SHA2_PASSWORD.as_bytes());
        switch.push(0);
        switch.extend_from_slice(&nonce);
        switch.push(0);
        if !send(stream, &mut sequence, &switch).await {
            return None;
        }
        let reply = wire::read_packet(stream).await.ok()?;
        sequence = reply.sequence.wrapping_add(1);
        answer = reply.payload;
    }
    let account = server.account(&response.user).filter(|account| {
        wire::scramble(wire::CACHING_SHA2_PASSWORD, &nonce, &account.password).as_ref()
            == Some(&answer)
    });
    let Some(account) = account else {
        let using = if answer.is_empty() { "NO" } else { "YES" };
        let refusal = err(
            error_codes::ACCESS_DENIED,
            format!(
                "Access denied for user '{}'@'%' (using password: {using})",
                response.user
            ),
        );
        send(stream, &mut sequence, &error_packet(refusal)).await;
        return None;
    };
    let refusal = match interface {
        // The last slot on the main interface is kept for CONNECTION_ADMIN.
        Interface::Main
            if other_main_connections(server, id) >= server.config.max_connections
                && !account.has("CONNECTION_ADMIN") =>
        {
            Some(too_many_connections())
        }
        Interface::Admin if !account.has("SERVICE_CONNECTION_ADMIN") => {
            Some(denied("SERVICE_CONNECTION_ADMIN"))
        }
        _ => None,
    };
    if let Some(refusal) = refusal {
        send(stream, &mut sequence, &error_packet(refusal)).await;
        return None;
    }
    if !answer.is_empty()
        && !send(
            stream,
            &mut sequence,
            &[0x01, wire::caching_sha2::FAST_AUTH_SUCCESS],
        )
        .await
    {
        return None;
    }
    let ok = wire::OkPacket {
        status: STATUS_AUTOCOMMIT,
        ..wire::OkPacket::default()
    };
    send(stream, &mut sequence, &ok.encode())
        .await
        .then_some(account)
}

async fn handle_connection(
    server: Arc<Server>,
    id: u64,
    stream: turmoil::net::TcpStream,
    interface: Interface,
) {
    let mut stream: BoxedByteStream = Box::new(stream);
    let _deregister = Deregister(server.clone(), id);
    let Some(account) = login(&server, id, interface, &mut stream).await else {
        return;
    };
    let mut session = Session::new(server.clone(), account, id);
    loop {
        let Ok(packet) = wire::read_packet(&mut stream).await else {
            return;
        };
        let mut sequence = packet.sequence.wrapping_add(1);
        let Some((&command, body)) = packet.payload.split_first() else {
            return;
        };
        match command {
            command::QUIT => return,
            command::PING => {
                if !send(
                    &mut stream,
                    &mut sequence,
                    &wire::OkPacket::default().encode(),
                )
                .await
                {
                    return;
                }
            }
            command::QUERY => {
                let sql = String::from_utf8_lossy(body).into_owned();
                let reply = match session.execute(&sql).await {
                    Ok(Reply::Close) => return,
                    Ok(Reply::Restart { error }) => {
                        if let Some(error) = error {
                            send(&mut stream, &mut sequence, &error_packet(error)).await;
                        }
                        server.restart.notify_one();
                        return;
                    }
                    Ok(reply) => reply.packets(),
                    Err(error) => vec![error_packet(error)],
                };
                for payload in reply {
                    if !send(&mut stream, &mut sequence, &payload).await {
                        return;
                    }
                }
            }
            command::BINLOG_DUMP_GTID => {
                let Ok(dump) = serde_json::from_slice::<DumpRequest>(body) else {
                    return;
                };
                let (read, mut write) = tokio::io::split(stream);
                // A binlog dump needs REPLICATION SLAVE. MySQL refuses it with error
                // 1227 and the IO thread stops; the model reports it through the dump's
                // error event, so the replica shows it as a fatal IO error naming 1227.
                if !session.account.has("REPLICATION SLAVE") {
                    let (code, message) = denied("REPLICATION SLAVE");
                    let _ = write_message(&mut write, &SourceEvent::Error { code, message }).await;
                    return;
                }
                // The connection becomes a dump thread, not a client: KILL of client
                // connections leaves it alone.
                {
                    let mut state = server.state();
                    if let Some(own) = state.connections.remove(&id)
                        && let Some(previous) = state.dumps.insert(dump.replica_uuid.clone(), own)
                    {
                        previous.abort();
                    }
                }
                replication::binlog_dump(
                    server.clone(),
                    read,
                    write,
                    dump.replica_uuid,
                    dump.gtid_set,
                    dump.semisync,
                )
                .await;
                return;
            }
            command::CLONE => {
                // The donor-side clone user needs BACKUP_ADMIN (MySQL manual, "Cloning
                // Remote Data").
                let reply = if !session.account.has("BACKUP_ADMIN") {
                    error_packet(denied("BACKUP_ADMIN"))
                } else {
                    match server.clone_snapshot().map(|s| serde_json::to_vec(&s)) {
                        Some(Ok(json)) => json,
                        _ => error_packet(err(
                            error_codes::CLONE_DONOR,
                            "Clone Donor Error: not initialised",
                        )),
                    }
                };
                if !send(&mut stream, &mut sequence, &reply).await {
                    return;
                }
            }
            other => {
                let refusal = err(1047, format!("Unknown command {other:#04x}"));
                if !send(&mut stream, &mut sequence, &error_packet(refusal)).await {
                    return;
                }
            }
        }
    }
}

/// Removes a connection from the registry when its task ends.
struct Deregister(Arc<Server>, u64);

impl Drop for Deregister {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.connections.remove(&self.1);
        state.admin_connections.remove(&self.1);
    }
}
