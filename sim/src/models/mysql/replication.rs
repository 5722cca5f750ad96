//! Replication in the MySQL model: the replica's IO thread (auto-position handshake,
//! relay log, reconnects, fatal errors), its SQL thread (apply with `SOURCE_DELAY`), the
//! source's binlog dump (purged-binlog and "replica has more GTIDs" checks, heartbeats,
//! semisync acks), and the donor fetch of `CLONE`.

use std::sync::Arc;
use std::time::Duration;

use bloodraven::gtid::GtidSet;
use bloodraven::production::mysql::client::{ClientError, Connection};
use bloodraven::production::mysql::wire::command;
use bloodraven::seams::mysql::{
    CloneDonor, IoThreadState, ReplicationError, ReplicationSource, error_codes,
};
use bloodraven::seams::object_storage::BoxedByteStream;

use super::protocol::{
    CloneSnapshot, DumpRequest, ReplicaAck, SourceEvent, StreamRead, StreamWrite, read_message,
    write_message,
};
use super::server::{Server, ServerError};

/// How a replication connection ended.
enum StreamEnd {
    /// Could not connect or authenticate: retry after `SOURCE_CONNECT_RETRY`.
    ConnectFailed(u16, String),
    /// The connection broke or went silent: reconnect.
    Lost,
    /// The source refused to continue (purged binlogs ...): the IO thread stops.
    Fatal(u16, String),
}

/// Logs in to the mysqld at `host:port` with the production protocol client, bounded
/// by `timeout`, as a replica's IO thread or a clone recipient does.
async fn connect(
    server: &Server,
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    timeout: Duration,
) -> Result<Connection<BoxedByteStream>, ServerError> {
    let unreachable = |detail: String| {
        (
            error_codes::SOURCE_CONNECT,
            format!("Can't connect to MySQL server on '{host}:{port}' ({detail})"),
        )
    };
    let stream = match tokio::time::timeout(timeout, server.dialer.dial(host, port)).await {
        Ok(Ok(stream)) => Box::new(stream) as BoxedByteStream,
        Ok(Err(error)) => return Err(unreachable(error.to_string())),
        Err(_) => return Err(unreachable("timed out".into())),
    };
    match tokio::time::timeout(timeout, Connection::handshake(stream, user, password)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(ClientError::Server(e))) => Err((e.code, e.message)),
        Ok(Err(_)) => Err(unreachable("Lost connection during handshake".into())),
        Err(_) => Err(unreachable("handshake timed out".into())),
    }
}

/// The replica IO thread: connects to the configured source, asks for everything it
/// lacks (auto-position), appends to the relay log, and reconnects when the link breaks.
pub(super) async fn io_thread(server: Arc<Server>) {
    let mut retries: u64 = 0;
    loop {
        let Some(source) = server.with_disk(|d| d.source.clone()).flatten() else {
            return;
        };
        server.state().replica.io_state = IoThreadState::Connecting;
        match stream_from_source(&server, &source).await {
            StreamEnd::Fatal(code, message) => {
                let mut state = server.state();
                state.replica.io_state = IoThreadState::Stopped;
                state.replica.io = None;
                state.replica.last_io_error = Some(ReplicationError {
                    number: u32::from(code),
                    message,
                });
                tracing::warn!(host = %server.host, "replica IO thread stopped with a fatal error");
                return;
            }
            StreamEnd::ConnectFailed(code, message) => {
                retries += 1;
                let retry = source.connect_retry_seconds.max(1);
                let number = if code == error_codes::ACCESS_DENIED {
                    code
                } else {
                    error_codes::SOURCE_CONNECT
                };
                server.state().replica.last_io_error = Some(ReplicationError {
                    number: u32::from(number),
                    message: format!(
                        "error connecting to source '{}@{}:{}' - retry-time: {retry} retries: {retries} message: {message}",
                        source.user, source.host, source.port
                    ),
                });
                // SOURCE_RETRY_COUNT reconnection attempts, then the IO thread stops
                // for good (0: no limit; 15.4.2.3).
                let limit = server.with_disk(|d| d.source_retry_count).unwrap_or(0);
                if limit != 0 && retries > limit {
                    let mut state = server.state();
                    state.replica.io_state = IoThreadState::Stopped;
                    state.replica.io = None;
                    tracing::warn!(host = %server.host, retries, "replica IO thread gave up reconnecting (SOURCE_RETRY_COUNT)");
                    return;
                }
                tokio::time::sleep(Duration::from_secs(u64::from(retry))).await;
            }
            StreamEnd::Lost => {
                // Reconnect at once, then at the retry cadence if that fails.
                retries = 0;
            }
        }
    }
}

async fn stream_from_source(server: &Arc<Server>, source: &ReplicationSource) -> StreamEnd {
    let net_timeout = server.config.replica_net_timeout;
    let conn = match connect(
        server,
        &source.host,
        source.port,
        &source.user,
        &source.password,
        net_timeout,
    )
    .await
    {
        Ok(connection) => connection,
        Err((code, message)) => return StreamEnd::ConnectFailed(code, message),
    };
    let (replica_uuid, gtid_set) = {
        let state = server.state();
        let executed = server.disk.gtid_executed();
        (
            server.server_uuid(),
            executed.union(&state.replica.retrieved),
        )
    };
    let semisync = server.state().semisync_replica_enabled;
    let dump = DumpRequest {
        replica_uuid,
        gtid_set,
        semisync,
    };
    let Ok(payload) = serde_json::to_vec(&dump) else {
        return StreamEnd::Lost;
    };
    let mut conn = conn;
    if conn
        .send_command(command::BINLOG_DUMP_GTID, &payload)
        .await
        .is_err()
    {
        return StreamEnd::Lost;
    }
    let (mut read, mut write) = tokio::io::split(conn.into_stream());
    {
        let mut state = server.state();
        state.replica.io_state = IoThreadState::Running;
        state.replica.last_io_error = None;
    }
    loop {
        let event = match tokio::time::timeout(
            net_timeout,
            read_message::<_, SourceEvent>(&mut read),
        )
        .await
        {
            Ok(Ok(Some(event))) => event,
            // Silence for replica_net_timeout, a reset or EOF: the link is gone.
            _ => return StreamEnd::Lost,
        };
        match event {
            SourceEvent::Heartbeat => {}
            SourceEvent::Error { code, message } => {
                return StreamEnd::Fatal(
                    error_codes::SOURCE_FATAL_ERROR_READING_BINLOG,
                    format!(
                        "Got fatal error {code} from source when reading data from binary log: '{message}'"
                    ),
                );
            }
            SourceEvent::Transaction { transaction } => {
                let ack = ReplicaAck {
                    uuid: transaction.uuid.clone(),
                    gno: transaction.gno,
                };
                {
                    let mut state = server.state();
                    let known = state
                        .replica
                        .retrieved
                        .contains(&transaction.uuid, transaction.gno)
                        || server
                            .disk
                            .gtid_executed()
                            .contains(&transaction.uuid, transaction.gno);
                    if !known {
                        state
                            .replica
                            .retrieved
                            .insert(&transaction.uuid, transaction.gno);
                        state.replica.relay.push_back(transaction);
                    }
                }
                server.relay_grew.notify_one();
                // The ack follows the relay-log write, as in MySQL's semisync replica.
                if semisync && write_message(&mut write, &ack).await.is_err() {
                    return StreamEnd::Lost;
                }
            }
        }
    }
}

/// The replica SQL thread: applies the relay log in order, no sooner than `SOURCE_DELAY`
/// seconds after each transaction's original commit.
pub(super) async fn sql_thread(server: Arc<Server>) {
    loop {
        let grew = server.relay_grew.notified();
        let head = server.state().replica.relay.front().cloned();
        let Some(transaction) = head else {
            grew.await;
            continue;
        };
        let delay_s = server
            .with_disk(|d| d.source.as_ref().map(|s| s.delay_seconds))
            .flatten()
            .unwrap_or(0);
        let due = transaction.original_commit_us + i64::from(delay_s) * 1_000_000;
        let now = server.now_us();
        if due > now {
            let wait = u64::try_from(due - now).unwrap_or(0);
            tokio::time::sleep(Duration::from_micros(wait)).await;
            continue;
        }
        server.apply_replicated(&transaction);
        server.state().replica.relay.pop_front();
    }
}

/// Ends a binlog dump with ER_SOURCE_FATAL_ERROR_READING_BINLOG (1236), the error a
/// real source sends before closing the dump; the replica's IO thread stops with it.
async fn refuse_dump(write: &mut StreamWrite, message: String) {
    let _ = write_message(
        write,
        &SourceEvent::Error {
            code: 1236,
            message,
        },
    )
    .await;
}

/// The source side of replication for one replica connection.
pub(super) async fn binlog_dump(
    server: Arc<Server>,
    read: StreamRead,
    mut write: StreamWrite,
    replica_uuid: String,
    replica_set: GtidSet,
    semisync: bool,
) {
    let own_uuid = server.server_uuid();
    let (executed, purged, mut next_seq) = server
        .with_disk(|d| {
            (
                d.gtid_executed.clone(),
                d.gtid_purged.clone(),
                d.binlog_first_seq,
            )
        })
        .unwrap_or_default();
    let mut ours = GtidSet::default();
    for iv in replica_set.intervals(&own_uuid) {
        ours.add_interval(&own_uuid, iv.start, iv.end);
    }
    if !ours.is_subset(&executed) {
        let message = format!(
            "Replica {replica_uuid} has more GTIDs than the source has, using the source's SERVER_UUID. \
             This may indicate that the end of the binary log was truncated or that the last binary log \
             file was lost, e.g., after a power or disk failure when sync_binlog != 1. The source may or \
             may not have rolled back transactions that were already replicated to the replica. Suggest \
             to replicate any transactions that source has rolled back from replica to source, and/or \
             commit empty transactions on source to account for transactions that have been committed \
             on source but are not included in GTID_EXECUTED."
        );
        refuse_dump(&mut write, message).await;
        return;
    }
    let missing = executed.subtract(&replica_set);
    let missing_purged = missing.intersect(&purged);
    if !missing_purged.is_empty() {
        let message = format!(
            "Cannot replicate because the source purged required binary logs. Replicate the missing \
             transactions from elsewhere, or provision a new replica from backup. Consider increasing \
             the source's binary log expiration period. The GTID set sent by the replica is '{}', and \
             the missing transactions are '{}'",
            replica_set.one_line(),
            missing_purged.one_line()
        );
        refuse_dump(&mut write, message).await;
        return;
    }
    let acks = if semisync {
        Some(server.spawn(read_acks(server.clone(), read)))
    } else {
        None
    };
    let _stop_acks = AbortOnDrop(acks);
    let mut commits = server.commits.subscribe();
    loop {
        commits.borrow_and_update();
        let batch = server.with_disk(|d| {
            if next_seq < d.binlog_first_seq {
                return Err(d.binlog_first_seq);
            }
            let skip = usize::try_from(next_seq - d.binlog_first_seq).unwrap_or(usize::MAX);
            let batch: Vec<_> = d
                .binlog
                .iter()
                .skip(skip)
                .filter(|t| !replica_set.contains(&t.uuid, t.gno))
                .cloned()
                .collect();
            next_seq = d.binlog_end_seq();
            Ok(batch)
        });
        let batch = match batch {
            Some(Ok(batch)) => batch,
            Some(Err(_)) | None => {
                let message =
                    "Cannot replicate because the source purged required binary logs.".to_string();
                refuse_dump(&mut write, message).await;
                return;
            }
        };
        for transaction in batch {
            if write_message(&mut write, &SourceEvent::Transaction { transaction })
                .await
                .is_err()
            {
                return;
            }
        }
        match tokio::time::timeout(server.config.heartbeat_period, commits.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                if write_message(&mut write, &SourceEvent::Heartbeat)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn read_acks(server: Arc<Server>, mut read: StreamRead) {
    while let Ok(Some(ack)) = read_message::<_, ReplicaAck>(&mut read).await {
        server.record_ack(&ack.uuid, ack.gno);
    }
}

struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// The recipient side of `CLONE INSTANCE FROM donor`: fetches a consistent snapshot.
pub(super) async fn fetch_clone(
    server: &Server,
    donor: &CloneDonor,
    timeout: Duration,
) -> Result<CloneSnapshot, ServerError> {
    let donor_error = |detail: String| {
        (
            error_codes::CLONE_DONOR,
            format!("Clone Donor Error: {detail}"),
        )
    };
    let connect_timeout = timeout.min(server.config.replica_net_timeout);
    let mut conn = connect(
        server,
        &donor.host,
        donor.port,
        &donor.user,
        &donor.password,
        connect_timeout,
    )
    .await
    .map_err(|(code, message)| donor_error(format!("Connect failed: {code} : {message}")))?;
    let reply = tokio::time::timeout(timeout, async {
        conn.send_command(command::CLONE, &[]).await?;
        conn.read_reply().await
    })
    .await;
    match reply {
        Ok(Ok(payload)) => serde_json::from_slice(&payload)
            .map_err(|e| donor_error(format!("unreadable snapshot: {e}"))),
        Ok(Err(ClientError::Server(e))) => Err(donor_error(format!("{} : {}", e.code, e.message))),
        Ok(Err(_)) => Err(donor_error(
            "connection to the donor lost during the clone".into(),
        )),
        Err(_) => Err(donor_error(format!(
            "clone did not finish within {timeout:?}"
        ))),
    }
}
