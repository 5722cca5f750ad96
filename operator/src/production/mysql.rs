//! Production MySQL transport: the `MysqlConnector`/`MysqlSession` seam implemented with
//! our own MySQL protocol client ([`client`], over [`wire`]) and MySQL 8 SQL. The
//! statement text lives in [`sql`] as pure functions, unit-tested without a server; this
//! module dials through the injected [`StorageDialer`] byte-stream seam (TCP in
//! production, the simulated network in the simulation), sends the SQL and parses replies.
//!
//! Checked against a real server by the integration tier (MariaDB, for what it shares
//! with MySQL) and against the simulation's MySQL model in every scenario.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::gtid::GtidSet;
use crate::seams::mysql::error_codes;
use crate::seams::mysql::{
    CloneDonor, CloneState, GtidWait, IoThreadState, MysqlConnector, MysqlError, MysqlSession,
    MysqlStatus, MysqlTarget, MysqlTimeouts, ReadOnlyMode, ReplicaStatus, ReplicationAccount,
    ReplicationError, ReplicationSource, SemisyncSourceStatus,
};
use crate::seams::object_storage::{BoxedByteStream, SharedStorageDialer};

pub mod client;
pub mod sql;
pub mod wire;

use client::{ClientError, Connection, QueryResult};

/// One protocol connection over whatever stream the dialer returned.
pub type Conn = Connection<DialledStream>;

/// The dialled stream under a [`Conn`]. A named type rather than `Box<dyn ...>` so that
/// closures over `&mut Conn` have no trait-object lifetime to be generic over.
pub struct DialledStream(BoxedByteStream);

impl tokio::io::AsyncRead for DialledStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for DialledStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Opens protocol connections through a dialer, with mandatory connect and request
/// timeouts. MySQL sessions share the object-storage byte-stream dialer seam: both are
/// "open a stream to host:port", and the simulation injects its network there once.
#[derive(Clone)]
pub struct MysqlProtocolConnector {
    dialer: SharedStorageDialer,
    timeouts: MysqlTimeouts,
}

impl MysqlProtocolConnector {
    pub fn new(dialer: SharedStorageDialer, timeouts: MysqlTimeouts) -> Self {
        Self { dialer, timeouts }
    }

    /// Production: plain TCP through the system resolver.
    pub fn tcp(timeouts: MysqlTimeouts) -> Self {
        Self::new(
            std::sync::Arc::new(crate::seams::object_storage::TcpDialer),
            timeouts,
        )
    }

    /// Dials and logs in within the connect timeout; the raw connection, for callers
    /// that speak more than the session's operations (tests, the simulation's replicas).
    pub async fn open(&self, target: &MysqlTarget) -> Result<Conn, MysqlError> {
        let address = target.address();
        let login = async {
            let stream = self
                .dialer
                .dial(&target.host, target.port)
                .await
                .map_err(ClientError::Io)?;
            Connection::handshake(DialledStream(stream), &target.user, &target.password).await
        };
        match tokio::time::timeout(self.timeouts.connect, login).await {
            Err(_) => Err(MysqlError::Timeout {
                address,
                operation: "connect",
                after: self.timeouts.connect,
            }),
            Ok(Err(error)) => Err(map_error(&address, "connect", error)),
            Ok(Ok(conn)) => Ok(conn),
        }
    }

    /// A session over an already opened connection.
    pub fn session(&self, conn: Conn, address: String) -> MysqlProtocolSession {
        MysqlProtocolSession {
            conn: Some(conn),
            address,
            timeouts: self.timeouts,
        }
    }
}

impl MysqlConnector for MysqlProtocolConnector {
    fn connect<'a>(
        &'a self,
        target: &'a MysqlTarget,
    ) -> BoxFuture<'a, Result<Box<dyn MysqlSession>, MysqlError>> {
        Box::pin(async move {
            let conn = self.open(target).await?;
            let mut session = self.session(conn, target.address());
            // Before any statement of ours: literals need backslash escapes, and a lock
            // wait must end in seconds (see `sql::session_setup`).
            session
                .execute_all("session setup", sql::session_setup().to_vec())
                .await?;
            Ok(Box::new(session) as Box<dyn MysqlSession>)
        })
    }
}

/// Maps a protocol failure of `operation` to the seam's error. A server error during the
/// login (access denied, too many connections) stays a server error with its code.
pub fn map_error(address: &str, operation: &'static str, error: ClientError) -> MysqlError {
    let address = address.to_string();
    match error {
        ClientError::Server(server) => MysqlError::Server {
            address,
            operation,
            code: server.code,
            message: server.message,
        },
        ClientError::Io(io) if operation == "connect" => MysqlError::Connect {
            address,
            message: io.to_string(),
        },
        ClientError::Io(io) => MysqlError::ConnectionLost {
            address,
            operation,
            message: io.to_string(),
        },
        ClientError::Protocol(message) if operation == "connect" => {
            MysqlError::Connect { address, message }
        }
        ClientError::Protocol(message) => MysqlError::Protocol {
            address,
            operation,
            message,
        },
    }
}

/// One row of a text result, with its column names.
#[derive(Debug, Clone)]
pub struct Row {
    columns: std::sync::Arc<[String]>,
    values: Vec<Option<String>>,
}

impl Row {
    pub fn get(&self, name: &str) -> Option<String> {
        let index = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))?;
        self.values.get(index).cloned().flatten()
    }
}

/// Conversion of a text row into what a caller asked for (mysql_async's `FromRow`,
/// reduced to the shapes the session uses).
pub trait FromRow: Sized {
    fn from_row(row: Row) -> Result<Self, ClientError>;
}

fn cell<T: std::str::FromStr>(row: &Row, index: usize) -> Result<T, ClientError> {
    let text = row
        .values
        .get(index)
        .cloned()
        .flatten()
        .ok_or_else(|| ClientError::Protocol(format!("column {index} is missing or NULL")))?;
    text.parse()
        .map_err(|_| ClientError::Protocol(format!("column {index}: cannot convert {text:?}")))
}

impl FromRow for Row {
    fn from_row(row: Row) -> Result<Self, ClientError> {
        Ok(row)
    }
}

impl FromRow for i64 {
    fn from_row(row: Row) -> Result<Self, ClientError> {
        cell(&row, 0)
    }
}

impl FromRow for u64 {
    fn from_row(row: Row) -> Result<Self, ClientError> {
        cell(&row, 0)
    }
}

impl FromRow for (String, String) {
    fn from_row(row: Row) -> Result<Self, ClientError> {
        Ok((cell(&row, 0)?, cell(&row, 1)?))
    }
}

/// A cell that may be NULL (`None`), else converted as [`cell`] converts.
fn nullable_cell<T: std::str::FromStr>(row: &Row, index: usize) -> Result<Option<T>, ClientError> {
    match row.values.get(index).cloned().flatten() {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| ClientError::Protocol(format!("column {index}: cannot convert {text:?}"))),
    }
}

/// `performance_schema.clone_status`'s STATE, ERROR_NO, ERROR_MESSAGE: any may be NULL.
impl FromRow for (Option<String>, Option<u32>, Option<String>) {
    fn from_row(row: Row) -> Result<Self, ClientError> {
        Ok((
            nullable_cell(&row, 0)?,
            nullable_cell(&row, 1)?,
            nullable_cell(&row, 2)?,
        ))
    }
}

impl FromRow for (String, String, String, String, String) {
    fn from_row(row: Row) -> Result<Self, ClientError> {
        Ok((
            cell(&row, 0)?,
            cell(&row, 1)?,
            cell(&row, 2)?,
            cell(&row, 3)?,
            cell(&row, 4)?,
        ))
    }
}

fn rows<T: FromRow>(result: QueryResult) -> Result<Vec<T>, ClientError> {
    let columns: std::sync::Arc<[String]> = result.columns.into();
    result
        .rows
        .into_iter()
        .map(|values| {
            T::from_row(Row {
                columns: columns.clone(),
                values,
            })
        })
        .collect()
}

impl Conn {
    /// Runs a statement and discards its result.
    pub async fn query_drop(&mut self, statement: impl AsRef<str>) -> Result<(), ClientError> {
        self.query(statement.as_ref()).await.map(|_| ())
    }

    /// The first row of a statement's result, converted.
    pub async fn query_first<T: FromRow>(
        &mut self,
        statement: impl AsRef<str>,
    ) -> Result<Option<T>, ClientError> {
        let result = self.query(statement.as_ref()).await?;
        Ok(rows(result)?.into_iter().next())
    }

    /// Every row of a statement's result, converted.
    pub async fn query_rows<T: FromRow>(
        &mut self,
        statement: impl AsRef<str>,
    ) -> Result<Vec<T>, ClientError> {
        let result = self.query(statement.as_ref()).await?;
        rows(result)
    }
}

/// One protocol connection to a mysqld. After a timeout or a broken connection the
/// stream may still hold a late reply, so the session refuses further requests (the
/// caller reconnects) instead of pairing a request with the wrong answer.
pub struct MysqlProtocolSession {
    conn: Option<Conn>,
    address: String,
    timeouts: MysqlTimeouts,
}

/// MySQL error numbers for a missing counter schema (`ER_NO_SUCH_TABLE`, `ER_BAD_DB_ERROR`).
const MISSING_SCHEMA: [u16; 2] = [error_codes::NO_SUCH_TABLE, 1049];

/// What one statement of `CLONE INSTANCE`'s sequence ([`sql::clone_instance`]) means
/// for the clone. Before the CLONE statement itself ran, every failure is a failure, a
/// lost connection included (nothing was cloned). The CLONE statement ends with the
/// server restarting: `ER_RESTART_SERVER_FAILED` (3707) where mysqld runs without a
/// supervisor (the official image: the clone succeeded and the server shuts down), or
/// a lost connection where it restarts itself; both are `Ok` here, and whether the
/// clone succeeded is read from `performance_schema.clone_status` after the restart.
pub(crate) fn clone_outcome(
    ran_clone_statement: bool,
    result: Result<(), MysqlError>,
) -> Result<(), MysqlError> {
    match result {
        Err(MysqlError::ConnectionLost { .. }) if ran_clone_statement => Ok(()),
        Err(error)
            if ran_clone_statement
                && error.server_code() == Some(error_codes::RESTART_SERVER_FAILED) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// `STATE, ERROR_NO, ERROR_MESSAGE` of `performance_schema.clone_status`.
type CloneStatusRow = (Option<String>, Option<u32>, Option<String>);

/// A row of `performance_schema.clone_status`; `None` for an unknown state (a newer
/// server's) is read as "no clone".
pub(crate) fn clone_state(
    state: Option<&str>,
    error: Option<u32>,
    message: Option<String>,
) -> Option<CloneState> {
    match state? {
        "Not Started" => Some(CloneState::NotStarted),
        "In Progress" => Some(CloneState::InProgress),
        "Completed" => Some(CloneState::Completed),
        "Failed" => Some(CloneState::Failed {
            error: error.unwrap_or(0),
            message: message.unwrap_or_default(),
        }),
        _ => None,
    }
}

impl MysqlProtocolSession {
    async fn bounded<T>(
        &mut self,
        operation: &'static str,
        extra: Duration,
        work: impl AsyncFnOnce(&mut Conn) -> Result<T, ClientError>,
    ) -> Result<T, MysqlError> {
        let limit = self.timeouts.request + extra;
        let Some(conn) = self.conn.as_mut() else {
            return Err(MysqlError::ConnectionLost {
                address: self.address.clone(),
                operation,
                message: "session broken by an earlier failure".into(),
            });
        };
        match tokio::time::timeout(limit, work(conn)).await {
            Err(_) => {
                self.conn = None;
                Err(MysqlError::Timeout {
                    address: self.address.clone(),
                    operation,
                    after: limit,
                })
            }
            Ok(Err(error)) => {
                if !matches!(error, ClientError::Server(_)) {
                    self.conn = None;
                }
                Err(map_error(&self.address, operation, error))
            }
            Ok(Ok(value)) => Ok(value),
        }
    }

    async fn execute_all(
        &mut self,
        operation: &'static str,
        statements: Vec<String>,
    ) -> Result<(), MysqlError> {
        self.bounded(operation, Duration::ZERO, async move |conn| {
            for statement in statements {
                conn.query_drop(statement).await?;
            }
            Ok(())
        })
        .await
    }
}

fn column(row: &Row, name: &str) -> Option<String> {
    row.get(name)
}

fn flag(value: Option<String>) -> bool {
    matches!(value.as_deref(), Some("1") | Some("ON") | Some("Yes"))
}

fn parse_gtids(address: &str, field: &'static str, text: &str) -> Result<GtidSet, MysqlError> {
    GtidSet::parse(text).map_err(|source| MysqlError::InvalidGtidSet {
        address: address.to_string(),
        field,
        source,
    })
}

fn replica_error(number: Option<String>, message: Option<String>) -> Option<ReplicationError> {
    let number: u32 = number?.parse().ok()?;
    (number != 0).then(|| ReplicationError {
        number,
        message: message.unwrap_or_default(),
    })
}

fn parse_replica_status(address: &str, row: &Row) -> Result<ReplicaStatus, MysqlError> {
    let io_thread = match column(row, "Replica_IO_Running").as_deref() {
        Some("Yes") => IoThreadState::Running,
        Some("Connecting") => IoThreadState::Connecting,
        _ => IoThreadState::Stopped,
    };
    Ok(ReplicaStatus {
        source_host: column(row, "Source_Host").unwrap_or_default(),
        source_port: column(row, "Source_Port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
        io_thread,
        sql_thread_running: column(row, "Replica_SQL_Running").as_deref() == Some("Yes"),
        retrieved_gtid_set: parse_gtids(
            address,
            "Retrieved_Gtid_Set",
            &column(row, "Retrieved_Gtid_Set").unwrap_or_default(),
        )?,
        seconds_behind_source: column(row, "Seconds_Behind_Source").and_then(|s| s.parse().ok()),
        last_io_error: replica_error(column(row, "Last_IO_Errno"), column(row, "Last_IO_Error")),
        last_sql_error: replica_error(column(row, "Last_SQL_Errno"), column(row, "Last_SQL_Error")),
        auto_position: flag(column(row, "Auto_Position")),
        sql_delay_seconds: column(row, "SQL_Delay")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    })
}

impl MysqlSession for MysqlProtocolSession {
    fn address(&self) -> &str {
        &self.address
    }

    fn observe(&mut self) -> BoxFuture<'_, Result<MysqlStatus, MysqlError>> {
        Box::pin(async move {
            let (basics, replica, enabled, status) = self
                .bounded("observe", Duration::ZERO, async |conn| {
                    let basics: Option<(String, String, String, String, String)> =
                        conn.query_first(sql::OBSERVE).await?;
                    let replica: Option<Row> = conn.query_first(sql::REPLICA_STATUS).await?;
                    let enabled: Vec<(String, String)> =
                        conn.query_rows(sql::SEMISYNC_ENABLED).await?;
                    let status: Vec<(String, String)> =
                        conn.query_rows(sql::SEMISYNC_STATUS).await?;
                    Ok((basics, replica, enabled, status))
                })
                .await?;
            let Some((uuid, read_only, super_read_only, executed, purged)) = basics else {
                return Err(MysqlError::Protocol {
                    address: self.address.clone(),
                    operation: "observe",
                    message: "no row from SELECT @@global...".into(),
                });
            };
            let status_value = |name: &str| {
                status
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            Ok(MysqlStatus {
                server_uuid: uuid,
                read_only: flag(Some(read_only)),
                super_read_only: flag(Some(super_read_only)),
                gtid_executed: parse_gtids(&self.address, "gtid_executed", &executed)?,
                gtid_purged: parse_gtids(&self.address, "gtid_purged", &purged)?,
                replica: replica
                    .map(|row| parse_replica_status(&self.address, &row))
                    .transpose()?,
                semisync_source: SemisyncSourceStatus {
                    enabled: flag(enabled.first().map(|(_, v)| v.clone())),
                    active: flag(status_value("Rpl_semi_sync_source_status")),
                    no_ack_transactions: status_value("Rpl_semi_sync_source_no_tx")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                },
            })
        })
    }

    fn set_read_only(&mut self, mode: ReadOnlyMode) -> BoxFuture<'_, Result<(), MysqlError>> {
        Box::pin(async move {
            // Each SET may wait up to the session's lock_wait_timeout for the global read
            // lock; it must end with ER_LOCK_WAIT_TIMEOUT (so that the caller can kill
            // the lock holders), not be cut off by the request timeout.
            let lock_wait = Duration::from_secs(sql::LOCK_WAIT_SECONDS);
            self.bounded("SET GLOBAL read_only", lock_wait * 2, async move |conn| {
                for statement in sql::set_read_only(mode) {
                    conn.query_drop(*statement).await?;
                }
                Ok(())
            })
            .await
        })
    }

    fn stop_replica(&mut self) -> BoxFuture<'_, Result<(), MysqlError>> {
        Box::pin(self.execute_all("STOP REPLICA", vec![sql::STOP_REPLICA.into()]))
    }

    fn start_replica(&mut self) -> BoxFuture<'_, Result<(), MysqlError>> {
        Box::pin(self.execute_all("START REPLICA", vec![sql::START_REPLICA.into()]))
    }

    fn reset_replica_all(&mut self) -> BoxFuture<'_, Result<(), MysqlError>> {
        Box::pin(self.execute_all("RESET REPLICA ALL", vec![sql::RESET_REPLICA_ALL.into()]))
    }

    fn change_source<'a>(
        &'a mut self,
        source: &'a ReplicationSource,
    ) -> BoxFuture<'a, Result<(), MysqlError>> {
        Box::pin(self.execute_all(
            "CHANGE REPLICATION SOURCE",
            vec![sql::change_source(source)],
        ))
    }

    fn set_source_delay(&mut self, seconds: u32) -> BoxFuture<'_, Result<(), MysqlError>> {
        Box::pin(self.execute_all(
            "CHANGE REPLICATION SOURCE TO SOURCE_DELAY",
            vec![sql::set_source_delay(seconds)],
        ))
    }

    fn wait_for_executed_gtid_set<'a>(
        &'a mut self,
        set: &'a GtidSet,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<GtidWait, MysqlError>> {
        Box::pin(async move {
            let statement = sql::wait_for_executed_gtid_set(set, timeout);
            let result: Option<i64> = self
                .bounded("WAIT_FOR_EXECUTED_GTID_SET", timeout, async move |conn| {
                    conn.query_first(statement).await
                })
                .await?;
            Ok(if result == Some(0) {
                GtidWait::Reached
            } else {
                GtidWait::TimedOut
            })
        })
    }

    fn clone_from<'a>(
        &'a mut self,
        donor: &'a CloneDonor,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), MysqlError>> {
        Box::pin(async move {
            let statements = sql::clone_instance(donor);
            let last = statements.len() - 1;
            for (step, statement) in statements.into_iter().enumerate() {
                let ran_clone_statement = step == last;
                let extra = if ran_clone_statement {
                    timeout
                } else {
                    Duration::ZERO
                };
                let result = self
                    .bounded("CLONE INSTANCE", extra, async move |conn| {
                        conn.query_drop(statement).await
                    })
                    .await;
                clone_outcome(ran_clone_statement, result)?;
            }
            Ok(())
        })
    }

    fn ensure_replication_account<'a>(
        &'a mut self,
        account: &'a ReplicationAccount,
    ) -> BoxFuture<'a, Result<(), MysqlError>> {
        Box::pin(self.execute_all(
            "CREATE USER (replication account)",
            sql::ensure_replication_account(account).to_vec(),
        ))
    }

    fn kill_client_connections(&mut self) -> BoxFuture<'_, Result<u64, MysqlError>> {
        Box::pin(async move {
            self.bounded("KILL", Duration::ZERO, async |conn| {
                let ids: Vec<u64> = conn.query_rows(sql::KILL_CANDIDATES).await?;
                let mut killed = 0;
                for id in ids {
                    match conn.query_drop(sql::kill(id)).await {
                        Ok(()) => killed += 1,
                        // ER_NO_SUCH_THREAD: it ended by itself meanwhile.
                        Err(ClientError::Server(e)) if e.code == 1094 => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(killed)
            })
            .await
        })
    }

    fn counter_increment<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<i64, MysqlError>> {
        Box::pin(async move {
            for attempt in 0..2 {
                let statements = sql::counter_increment(key);
                let result = self
                    .bounded("counter increment", Duration::ZERO, async move |conn| {
                        let [begin, upsert, select, commit] = statements;
                        conn.query_drop(begin).await?;
                        let outcome = async {
                            conn.query_drop(upsert).await?;
                            let value: Option<i64> = conn.query_first(select).await?;
                            conn.query_drop(commit).await?;
                            Ok::<_, ClientError>(value)
                        }
                        .await;
                        if outcome.is_err() {
                            let _ = conn.query_drop("ROLLBACK").await;
                        }
                        outcome
                    })
                    .await;
                match result {
                    Err(e)
                        if attempt == 0
                            && e.server_code().is_some_and(|c| MISSING_SCHEMA.contains(&c)) =>
                    {
                        let schema = sql::COUNTER_SCHEMA.iter().map(|s| s.to_string()).collect();
                        self.execute_all("create counter schema", schema).await?;
                    }
                    Err(e) => return Err(e),
                    Ok(Some(value)) => return Ok(value),
                    Ok(None) => break,
                }
            }
            Err(MysqlError::Protocol {
                address: self.address.clone(),
                operation: "counter increment",
                message: "the incremented row was not found".into(),
            })
        })
    }

    fn counter_read<'a>(
        &'a mut self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, MysqlError>> {
        Box::pin(async move {
            let statement = sql::counter_read(key);
            let result = self
                .bounded("counter read", Duration::ZERO, async move |conn| {
                    conn.query_first(statement).await
                })
                .await;
            match result {
                Err(e) if e.server_code().is_some_and(|c| MISSING_SCHEMA.contains(&c)) => Ok(None),
                other => other,
            }
        })
    }

    fn forced_write<'a>(
        &'a mut self,
        key: &'a str,
        value: i64,
    ) -> BoxFuture<'a, Result<(), MysqlError>> {
        Box::pin(async move {
            let was_fenced = self.observe().await?.super_read_only;
            let statements = sql::forced_write(key, value, was_fenced);
            self.execute_all("forced write", statements).await
        })
    }

    fn read_only_mode(&mut self) -> BoxFuture<'_, Result<ReadOnlyMode, MysqlError>> {
        Box::pin(async move {
            let flags: Option<(String, String)> = self
                .bounded("SELECT @@global.read_only", Duration::ZERO, async |conn| {
                    conn.query_first(sql::READ_ONLY_FLAGS).await
                })
                .await?;
            let (read_only, super_read_only) = flags.ok_or_else(|| MysqlError::Protocol {
                address: self.address.clone(),
                operation: "SELECT @@global.read_only",
                message: "no row".into(),
            })?;
            Ok(ReadOnlyMode::from_flags(
                flag(Some(read_only)),
                flag(Some(super_read_only)),
            ))
        })
    }

    fn clone_state(&mut self) -> BoxFuture<'_, Result<Option<CloneState>, MysqlError>> {
        Box::pin(async move {
            let row: Result<Option<CloneStatusRow>, _> = self
                .bounded("clone_status", Duration::ZERO, async |conn| {
                    conn.query_first(sql::CLONE_STATUS).await
                })
                .await;
            match row {
                // Without the clone plugin the table does not exist: no clone ever ran.
                Err(e) if e.server_code() == Some(error_codes::NO_SUCH_TABLE) => Ok(None),
                Err(e) => Err(e),
                Ok(None) => Ok(None),
                Ok(Some((state, error, message))) => {
                    Ok(clone_state(state.as_deref(), error, message))
                }
            }
        })
    }

    fn enable_replica_side_disabled_events(&mut self) -> BoxFuture<'_, Result<u64, MysqlError>> {
        Box::pin(async move {
            self.bounded("ALTER EVENT ... ENABLE", Duration::ZERO, async |conn| {
                let events: Vec<(String, String)> =
                    conn.query_rows(sql::REPLICA_SIDE_DISABLED_EVENTS).await?;
                let mut enabled = 0;
                for (schema, name) in events {
                    conn.query_drop(sql::enable_event(&schema, &name)).await?;
                    enabled += 1;
                }
                Ok(enabled)
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_keep_their_code() {
        let error = map_error(
            "db:3306",
            "counter increment",
            ClientError::Server(wire::ServerError {
                code: 1290,
                message: "The MySQL server is running with the --super-read-only option".into(),
                state: "HY000".into(),
            }),
        );
        assert!(error.is_read_only_refusal());
        assert!(error.to_string().contains("db:3306"), "{error}");
    }

    fn server(code: u16) -> MysqlError {
        MysqlError::Server {
            address: "db:3306".into(),
            operation: "CLONE INSTANCE",
            code,
            message: String::new(),
        }
    }

    fn lost() -> MysqlError {
        MysqlError::ConnectionLost {
            address: "db:3306".into(),
            operation: "CLONE INSTANCE",
            message: "reset".into(),
        }
    }

    #[test]
    fn clone_outcomes() {
        type Case = (
            &'static str,
            bool,
            Result<(), MysqlError>,
            Result<(), MysqlError>,
        );
        #[rustfmt::skip]
        let table: Vec<Case> = vec![
            ("CLONE returned: restarted by a supervisor", true, Ok(()), Ok(())),
            ("3707 after CLONE: cloned, unsupervised server shutting down", true, Err(server(3707)), Ok(())),
            ("connection lost during CLONE: restarting", true, Err(lost()), Ok(())),
            ("donor refused", true, Err(server(3862)), Err(server(3862))),
            ("connection lost before CLONE ran: nothing was cloned", false, Err(lost()), Err(lost())),
            ("3707 on a preparatory statement is a plain error", false, Err(server(3707)), Err(server(3707))),
            ("clone plugin missing (1193 on clone_valid_donor_list)", false, Err(server(1193)), Err(server(1193))),
            ("preparatory statement done", false, Ok(()), Ok(())),
        ];
        for (case, ran_clone, result, expected) in table {
            assert_eq!(clone_outcome(ran_clone, result), expected, "{case}");
        }
    }

    #[test]
    fn clone_status_rows() {
        assert_eq!(clone_state(None, None, None), None);
        assert_eq!(
            clone_state(Some("In Progress"), Some(0), None),
            Some(CloneState::InProgress)
        );
        assert_eq!(
            clone_state(Some("Completed"), Some(0), Some(String::new())),
            Some(CloneState::Completed)
        );
        assert_eq!(
            clone_state(Some("Failed"), Some(3862), Some("donor".into())),
            Some(CloneState::Failed {
                error: 3862,
                message: "donor".into()
            })
        );
        assert_eq!(
            clone_state(Some("Not Started"), None, None),
            Some(CloneState::NotStarted)
        );
    }
}
