//! The mysqld process: boot (and restart in place after a CLONE) on the data volume,
//! the accept loop, one task per client connection, and the dispatch of each request
//! to the server's commit path. A crash or pod deletion drops the program and with it
//! every connection.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bloodraven::gtid::GtidSet;
use bloodraven::seams::mysql::error_codes;
use tokio::io::BufReader;
use tokio::sync::watch;

use super::protocol::{Request, Response, SourceEvent, read_line, write_line};
use super::server::{
    DataDir, Durable, ReplicaRuntime, Runtime, Server, ServerError, denied, err,
    generate_server_uuid,
};
use super::{Account, MysqlConfig, replication};
use crate::pod::{PodContext, ProgramResult};
use bloodraven::production::mysql::sql::COUNTER_DATABASE;

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
            });
        }
    }
    loop {
        ctx.ready.set(false);
        tokio::time::sleep(config.startup_time).await;
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
                dumps: BTreeMap::new(),
                replica: ReplicaRuntime::default(),
                semisync_active: config.semisync_source_enabled,
                semisync_no_tx: 0,
                tasks: Vec::new(),
                restart_requested: false,
            }),
            commits: watch::channel(0).0,
            acks: watch::channel(GtidSet::default()).0,
            relay_grew: tokio::sync::Notify::new(),
            restart: tokio::sync::Notify::new(),
        });
        let _shutdown = ShutdownGuard(server.clone());
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", config.port)).await?;
        if !config.skip_replica_start && server.with_disk(|d| d.source.is_some()).unwrap_or(false) {
            // Errors here are impossible (the source is configured); ignore like mysqld would log.
            let _ = server.start_replica();
        }
        let _registration = observer
            .as_ref()
            .map(|o| o.register(&ctx.host, &ctx.namespace, &ctx.pod, &ctx.node, &server));
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
                    let handle = server.spawn(handle_connection(server.clone(), id, stream));
                    server.state().connections.insert(id, handle);
                }
                () = server.restart.notified() => break,
            }
        }
        tracing::info!(host = %ctx.host, "mysqld restarting after CLONE");
    }
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

async fn handle_connection(server: Arc<Server>, id: u64, stream: turmoil::net::TcpStream) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let _deregister = Deregister(server.clone(), id);
    // Handshake.
    let account = match read_line::<_, Request>(&mut read).await {
        Ok(Some(Request::Hello { user, password })) => {
            match server.authenticate(&user, &password) {
                Ok(account) => account,
                Err((code, message)) => {
                    let _ = write_line(&mut write, &Response::Error { code, message }).await;
                    return;
                }
            }
        }
        _ => return,
    };
    let hello = Response::Hello {
        connection_id: id,
        server_uuid: server.server_uuid(),
    };
    if write_line(&mut write, &hello).await.is_err() {
        return;
    }
    loop {
        let request = match read_line::<_, Request>(&mut read).await {
            Ok(Some(request)) => request,
            _ => return,
        };
        match request {
            Request::BinlogDump {
                replica_uuid,
                gtid_set,
                semisync,
            } => {
                // A binlog dump needs REPLICATION SLAVE. MySQL refuses it with error
                // 1227 at COM_REGISTER_REPLICA/COM_BINLOG_DUMP_GTID and the IO thread
                // stops; the model reports it through the dump's error event, so the
                // replica shows it as a fatal IO error naming 1227.
                if !account.has("REPLICATION SLAVE") {
                    let (code, message) = denied("REPLICATION SLAVE");
                    let _ = write_line(&mut write, &SourceEvent::Error { code, message }).await;
                    return;
                }
                // The connection becomes a dump thread, not a client: KILL of client
                // connections leaves it alone.
                {
                    let mut state = server.state();
                    if let Some(own) = state.connections.remove(&id)
                        && let Some(previous) = state.dumps.insert(replica_uuid.clone(), own)
                    {
                        previous.abort();
                    }
                }
                replication::binlog_dump(
                    server.clone(),
                    read,
                    write,
                    replica_uuid,
                    gtid_set,
                    semisync,
                )
                .await;
                return;
            }
            Request::Clone { donor, timeout_ms } => {
                if !account.super_user {
                    let (code, message) = denied("CLONE_ADMIN");
                    let _ = write_line(&mut write, &Response::Error { code, message }).await;
                    continue;
                }
                match replication::fetch_clone(&server, &donor, Duration::from_millis(timeout_ms))
                    .await
                {
                    Ok(snapshot) => {
                        // The recipient restarts after installing the clone; the client's
                        // connection ends with it, without a reply.
                        server.install_snapshot(snapshot);
                        server.state().restart_requested = true;
                        server.restart.notify_one();
                        return;
                    }
                    Err((code, message)) => {
                        let _ = write_line(&mut write, &Response::Error { code, message }).await;
                        continue;
                    }
                }
            }
            other => {
                let response = match execute(&server, &account, id, other).await {
                    Ok(response) => response,
                    Err((code, message)) => Response::Error { code, message },
                };
                if write_line(&mut write, &response).await.is_err() {
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
        self.0.state().connections.remove(&self.1);
    }
}

async fn execute(
    server: &Arc<Server>,
    account: &Account,
    connection_id: u64,
    request: Request,
) -> Result<Response, ServerError> {
    let need_super = |what: &str| {
        if account.super_user {
            Ok(())
        } else {
            Err(denied(what))
        }
    };
    Ok(match request {
        Request::Observe => Response::Status {
            status: Box::new(server.observe()),
        },
        Request::SetReadOnly { mode } => {
            need_super("SUPER or SYSTEM_VARIABLES_ADMIN")?;
            server.set_read_only(mode);
            Response::Ok
        }
        Request::StopReplica => {
            need_super("SUPER or REPLICATION_SLAVE_ADMIN")?;
            server.stop_replica();
            Response::Ok
        }
        Request::StartReplica => {
            need_super("SUPER or REPLICATION_SLAVE_ADMIN")?;
            server.start_replica()?;
            Response::Ok
        }
        Request::ResetReplicaAll => {
            need_super("RELOAD")?;
            server.reset_replica_all()?;
            Response::Ok
        }
        Request::ChangeSource { source } => {
            need_super("SUPER or REPLICATION_SLAVE_ADMIN")?;
            server.change_source(source)?;
            Response::Ok
        }
        Request::SetSourceDelay { seconds } => {
            need_super("SUPER or REPLICATION_SLAVE_ADMIN")?;
            server.set_source_delay(seconds)?;
            Response::Ok
        }
        Request::WaitForExecutedGtidSet { set, timeout_ms } => Response::Wait {
            result: server
                .wait_for_gtids(&set, Duration::from_millis(timeout_ms))
                .await,
        },
        Request::KillClientConnections => {
            need_super("CONNECTION_ADMIN")?;
            Response::Count {
                count: server.kill_clients(connection_id),
            }
        }
        Request::CounterIncrement { .. } | Request::CounterRead { .. }
            if !account.may_use(COUNTER_DATABASE) =>
        {
            return Err(err(
                error_codes::DATABASE_ACCESS_DENIED,
                format!(
                    "Access denied for user '{}'@'%' to database '{COUNTER_DATABASE}'",
                    account.user
                ),
            ));
        }
        Request::CounterIncrement { key } => Response::Value {
            value: Some(server.commit_local(account, &key, None, false).await?),
        },
        Request::CounterRead { key } => Response::Value {
            value: server.disk.row(&key),
        },
        Request::ForcedWrite { key, value } => {
            need_super("SUPER")?;
            server
                .commit_local(account, &key, Some(value), true)
                .await?;
            Response::Ok
        }
        Request::EnsureAccount { account } => {
            need_super("CREATE USER")?;
            server.ensure_account(account)?;
            Response::Ok
        }
        Request::PurgeBinaryLogs => {
            need_super("BINLOG_ADMIN")?;
            server.purge_binary_logs();
            Response::Ok
        }
        Request::CloneSnapshot => {
            // The donor-side clone user needs BACKUP_ADMIN (MySQL manual, "Cloning
            // Remote Data").
            if !account.has("BACKUP_ADMIN") {
                return Err(denied("BACKUP_ADMIN"));
            }
            match server.clone_snapshot() {
                Some(snapshot) => Response::Snapshot {
                    snapshot: Box::new(snapshot),
                },
                None => {
                    return Err(err(
                        error_codes::CLONE_DONOR,
                        "Clone Donor Error: not initialised",
                    ));
                }
            }
        }
        Request::Hello { .. } | Request::BinlogDump { .. } | Request::Clone { .. } => {
            return Err(err(
                error_codes::WRONG_ARGUMENTS,
                "unexpected request on an established connection",
            ));
        }
    })
}
