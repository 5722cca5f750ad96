//! The data-plane seam to MySQL: "open a session to the mysqld at host H" and the
//! operations the operator, the sidecar, the chaos runner and the counter app perform on
//! it, at the level they think in (observe, fence, repoint, clone), not SQL.
//!
//! One implementation, `production::mysql`: MySQL 8 SQL over its own protocol client,
//! dialled through the byte-stream seam (`object_storage::StorageDialer`: TCP in
//! production, the simulated network against the MySQL model in the simulation). Every
//! implementation bounds connecting and every request by the [`MysqlTimeouts`] it was built
//! with: turmoil's TCP (like a real network partition) can stall a connection forever.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::gtid::{GtidParseError, GtidSet};

/// Where a session goes and as whom. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MysqlTarget {
    /// DNS name or address of the mysqld (a pod's stable DNS name in a cluster).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl MysqlTarget {
    /// `host:port`, for errors and logs.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for MysqlTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Bounds on connecting and on each request. Both are mandatory: there is no "wait
/// forever" setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MysqlTimeouts {
    pub connect: Duration,
    /// Applies to every operation; an operation that itself waits (a GTID wait, a clone)
    /// gets its own wait added on top.
    pub request: Duration,
}

impl Default for MysqlTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
        }
    }
}

/// The three read-only states a mysqld can be in (MySQL couples the two variables:
/// `super_read_only=ON` implies `read_only=ON`, `read_only=OFF` implies
/// `super_read_only=OFF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadOnlyMode {
    /// `read_only=OFF`, `super_read_only=OFF`: the primary.
    Writable,
    /// `read_only=ON`, `super_read_only=OFF`: ordinary clients refused, SUPER users may write.
    ReadOnly,
    /// `read_only=ON`, `super_read_only=ON`: every client refused (the fence; also boot state).
    SuperReadOnly,
}

impl ReadOnlyMode {
    pub fn from_flags(read_only: bool, super_read_only: bool) -> Self {
        match (read_only, super_read_only) {
            (_, true) => ReadOnlyMode::SuperReadOnly,
            (true, false) => ReadOnlyMode::ReadOnly,
            (false, false) => ReadOnlyMode::Writable,
        }
    }
}

/// State of the replica IO thread (`Replica_IO_Running`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IoThreadState {
    /// `Yes`: connected to the source and receiving.
    Running,
    /// `Connecting`: started but not connected (source unreachable, auth failure, ...).
    Connecting,
    /// `No`: stopped (by `STOP REPLICA` or a fatal error such as purged binlogs).
    Stopped,
}

/// An error recorded by a replication thread (`Last_IO_Errno`/`Last_IO_Error`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationError {
    pub number: u32,
    pub message: String,
}

/// What `SHOW REPLICA STATUS` says, for a server configured as a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub source_host: String,
    pub source_port: u16,
    pub io_thread: IoThreadState,
    pub sql_thread_running: bool,
    /// `Retrieved_Gtid_Set`: transactions received into the relay log.
    pub retrieved_gtid_set: GtidSet,
    /// `Seconds_Behind_Source`; `None` (NULL) when the SQL or IO thread is not running.
    pub seconds_behind_source: Option<u64>,
    pub last_io_error: Option<ReplicationError>,
    pub last_sql_error: Option<ReplicationError>,
    pub auto_position: bool,
    /// `SQL_Delay`: configured `SOURCE_DELAY` in seconds.
    pub sql_delay_seconds: u32,
}

/// Semi-synchronous replication on the source side
/// (`rpl_semi_sync_source_enabled` / `Rpl_semi_sync_source_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SemisyncSourceStatus {
    /// The plugin is enabled on this server as a source.
    pub enabled: bool,
    /// Semisync is currently in effect; `false` after a timeout fell back to async.
    pub active: bool,
    /// `Rpl_semi_sync_source_no_tx`: commits not acknowledged by a replica.
    pub no_ack_transactions: u64,
}

/// One observation of a mysqld, gathered in a single round of queries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MysqlStatus {
    pub server_uuid: String,
    pub read_only: bool,
    pub super_read_only: bool,
    pub gtid_executed: GtidSet,
    pub gtid_purged: GtidSet,
    /// `None` when no replication channel is configured (`SHOW REPLICA STATUS` is empty).
    pub replica: Option<ReplicaStatus>,
    pub semisync_source: SemisyncSourceStatus,
}

impl MysqlStatus {
    pub fn read_only_mode(&self) -> ReadOnlyMode {
        ReadOnlyMode::from_flags(self.read_only, self.super_read_only)
    }
}

/// `CHANGE REPLICATION SOURCE TO ... SOURCE_AUTO_POSITION=1`: where to replicate from.
/// `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// `SOURCE_DELAY`: the replica applies a transaction no sooner than this many seconds
    /// after it committed on the source (how chaos scenarios produce lag on purpose).
    pub delay_seconds: u32,
    /// `SOURCE_CONNECT_RETRY`: seconds between reconnection attempts of the IO thread.
    pub connect_retry_seconds: u32,
}

impl fmt::Debug for ReplicationSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationSource")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("delay_seconds", &self.delay_seconds)
            .field("connect_retry_seconds", &self.connect_retry_seconds)
            .finish_non_exhaustive()
    }
}

/// `CLONE INSTANCE FROM user@host:port IDENTIFIED BY ...`. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneDonor {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl fmt::Debug for CloneDonor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloneDonor")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The account replicas and clone recipients log in to a source as: separate from the
/// operator's administrative account, so a replica holds no credential that can do more
/// than read the binlog and serve a clone. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationAccount {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for ReplicationAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationAccount")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What the replication account is granted, on `*.*` (global privileges, as MySQL
/// requires for these): `REPLICATION SLAVE` for a replica's IO thread to request the
/// binlog; `REPLICATION CLIENT` for `SHOW BINARY LOG STATUS`/`SHOW REPLICAS`, which
/// tools run as the same account; `BACKUP_ADMIN`, which `CLONE INSTANCE FROM` needs of
/// the donor-side user. `CLONE_ADMIN` is needed by the session that runs the CLONE on
/// the recipient, which is the operator's own account, so it is not granted here.
pub const REPLICATION_PRIVILEGES: [&str; 3] =
    ["REPLICATION SLAVE", "REPLICATION CLIENT", "BACKUP_ADMIN"];

/// Result of `WAIT_FOR_EXECUTED_GTID_SET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GtidWait {
    /// Every transaction of the set has been executed.
    Reached,
    /// The timeout elapsed first.
    TimedOut,
}

/// MySQL error numbers the callers branch on.
pub mod error_codes {
    /// `ER_OPTION_PREVENTS_STATEMENT`: "running with the --read-only / --super-read-only
    /// option so it cannot execute this statement".
    pub const OPTION_PREVENTS_STATEMENT: u16 = 1290;
    /// `ER_SOURCE_FATAL_ERROR_READING_BINLOG` (`Last_IO_Errno` when the source purged
    /// transactions the replica still needs).
    pub const SOURCE_FATAL_ERROR_READING_BINLOG: u16 = 13114;
    /// `CR_CONN_HOST_ERROR` (`Last_IO_Errno` while the source is unreachable: "error
    /// connecting to source ... Can't connect to MySQL server").
    pub const SOURCE_CONNECT: u16 = 2003;
    /// `ER_REPLICA_CHANNEL_IO_THREAD_MUST_STOP`: `CHANGE REPLICATION SOURCE` with the IO
    /// thread running.
    pub const IO_THREAD_MUST_STOP: u16 = 3021;
    /// `ER_REPLICA_CHANNEL_SQL_THREAD_MUST_STOP` (3085, MySQL 8.4 server error
    /// reference): `CHANGE REPLICATION SOURCE` (e.g. with `SOURCE_DELAY`) with the SQL
    /// thread running.
    pub const SQL_THREAD_MUST_STOP: u16 = 3085;
    /// `ER_LOCK_WAIT_TIMEOUT`: a statement waited `lock_wait_timeout` for a metadata or
    /// global read lock (the fence's `SET GLOBAL super_read_only = ON` behind a client's
    /// `LOCK TABLES ... WRITE` or open transaction).
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    /// `ER_RESTART_SERVER_FAILED`: "Restart server failed (mysqld is not managed by
    /// supervisor process)". What a successful `CLONE INSTANCE` returns on a server that
    /// runs without a supervisor (the official image): the data was cloned and the server
    /// shuts down; the container restart brings it back (manual 7.6.7.3 "Cloning Remote
    /// Data").
    pub const RESTART_SERVER_FAILED: u16 = 3707;
    /// `ER_UNKNOWN_SYSTEM_VARIABLE`: e.g. `clone_valid_donor_list` without the clone plugin.
    pub const UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;
    /// `ER_NO_SUCH_TABLE`: e.g. `performance_schema.clone_status` without the clone plugin.
    pub const NO_SUCH_TABLE: u16 = 1146;
    /// `ER_REPLICA_CHANNEL_MUST_STOP`: `RESET REPLICA` with replication threads running.
    pub const REPLICA_MUST_STOP: u16 = 3081;
    /// `ER_REPLICA_CONFIGURATION`: `START REPLICA` without a configured source.
    pub const REPLICA_NOT_CONFIGURED: u16 = 1200;
    /// `ER_CLONE_DONOR` family: the donor could not be used for `CLONE INSTANCE`.
    pub const CLONE_DONOR: u16 = 3862;
    /// `ER_ACCESS_DENIED_ERROR`: wrong user or password.
    pub const ACCESS_DENIED: u16 = 1045;
    /// `ER_DBACCESS_DENIED_ERROR`: the account has no privileges on the database.
    pub const DATABASE_ACCESS_DENIED: u16 = 1044;
    /// `ER_SPECIFIC_ACCESS_DENIED_ERROR`: the statement needs SUPER (or a dynamic privilege).
    pub const SPECIFIC_ACCESS_DENIED: u16 = 1227;
    /// `ER_WRONG_ARGUMENTS`-style refusal used for malformed requests.
    pub const WRONG_ARGUMENTS: u16 = 1210;
}

/// Why a MySQL operation failed. Every variant names the server it was talking to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MysqlError {
    #[error("connecting to MySQL at {address} failed: {message}")]
    Connect { address: String, message: String },
    #[error("{operation} on MySQL at {address} timed out after {after:?}")]
    Timeout {
        address: String,
        operation: &'static str,
        after: Duration,
    },
    #[error("MySQL at {address} refused {operation}: ERROR {code}: {message}")]
    Server {
        address: String,
        operation: &'static str,
        code: u16,
        message: String,
    },
    #[error("connection to MySQL at {address} lost during {operation}: {message}")]
    ConnectionLost {
        address: String,
        operation: &'static str,
        message: String,
    },
    #[error("unexpected reply from MySQL at {address} to {operation}: {message}")]
    Protocol {
        address: String,
        operation: &'static str,
        message: String,
    },
    #[error("MySQL at {address} reported an unparsable GTID set in {field}: {source}")]
    InvalidGtidSet {
        address: String,
        field: &'static str,
        #[source]
        source: GtidParseError,
    },
}

impl MysqlError {
    /// The server's error number, if the server answered with an error.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            MysqlError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether a write was refused because the server is read-only.
    pub fn is_read_only_refusal(&self) -> bool {
        self.server_code() == Some(error_codes::OPTION_PREVENTS_STATEMENT)
    }
}

/// An open session to one mysqld. Each call is one bounded request; a session whose
/// connection broke keeps returning errors and should be dropped and reopened.
pub trait MysqlSession: Send {
    /// The server this session talks to (`host:port`), for errors and logs.
    fn address(&self) -> &str;

    /// Reads flags, GTID sets, replica status and semisync state.
    fn observe(&mut self) -> BoxFuture<'_, Result<MysqlStatus, MysqlError>>;

    /// Sets `read_only`/`super_read_only` (`SET GLOBAL ...`).
    fn set_read_only(&mut self, mode: ReadOnlyMode) -> BoxFuture<'_, Result<(), MysqlError>>;

    /// `STOP REPLICA`.
    fn stop_replica(&mut self) -> BoxFuture<'_, Result<(), MysqlError>>;

    /// `START REPLICA`.
    fn start_replica(&mut self) -> BoxFuture<'_, Result<(), MysqlError>>;

    /// `RESET REPLICA ALL`: forget the source entirely (on promotion). The replica threads
    /// must be stopped first.
    fn reset_replica_all(&mut self) -> BoxFuture<'_, Result<(), MysqlError>>;

    /// `CHANGE REPLICATION SOURCE TO ... SOURCE_AUTO_POSITION=1` (threads must be stopped).
    fn change_source<'a>(
        &'a mut self,
        source: &'a ReplicationSource,
    ) -> BoxFuture<'a, Result<(), MysqlError>>;

    /// `CHANGE REPLICATION SOURCE TO SOURCE_DELAY = seconds`, keeping every other channel
    /// option (the chaos runner's replication-delay fault; the SQL thread must be stopped).
    fn set_source_delay(&mut self, seconds: u32) -> BoxFuture<'_, Result<(), MysqlError>>;

    /// `WAIT_FOR_EXECUTED_GTID_SET(set, timeout)`.
    fn wait_for_executed_gtid_set<'a>(
        &'a mut self,
        set: &'a GtidSet,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<GtidWait, MysqlError>>;

    /// `CLONE INSTANCE FROM donor`: replaces this server's data and GTID state with the
    /// donor's, then the server restarts (this session's connection ends). `Ok` means the
    /// CLONE statement ran to its end and the server is restarting (or, supervised, has
    /// restarted): whether the clone succeeded is read from [`MysqlSession::clone_state`]
    /// after the restart. A failure before the CLONE statement ran is an error, even a
    /// lost connection.
    fn clone_from<'a>(
        &'a mut self,
        donor: &'a CloneDonor,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), MysqlError>>;

    /// Creates the replication account if it does not exist, sets its password and
    /// grants it [`REPLICATION_PRIVILEGES`]. Idempotent; each statement is a
    /// transaction in the binlog, so on a primary it replicates to the replica (and a
    /// CLONE carries it along with the data). Refused while the server is read-only.
    fn ensure_replication_account<'a>(
        &'a mut self,
        account: &'a ReplicationAccount,
    ) -> BoxFuture<'a, Result<(), MysqlError>>;

    /// Kills every client connection except this session's own and the server's internal
    /// threads (replication); returns how many were killed. Used right after fencing so
    /// that no open transaction commits after the fence.
    fn kill_client_connections(&mut self) -> BoxFuture<'_, Result<u64, MysqlError>>;

    /// The counter app's write: increments `key` in the counter table in one transaction
    /// and returns the new value. Refused while the server is read-only.
    fn counter_increment<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<i64, MysqlError>>;

    /// The counter app's read: the value of `key`, `None` if never written.
    fn counter_read<'a>(
        &'a mut self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, MysqlError>>;

    /// Writes `key = value` even while the server is read-only, as a SUPER user who lifts
    /// `super_read_only` for one transaction would. Produces a transaction with this
    /// server's own UUID: exactly the errant GTID that divergence scenarios need.
    fn forced_write<'a>(
        &'a mut self,
        key: &'a str,
        value: i64,
    ) -> BoxFuture<'a, Result<(), MysqlError>>;

    /// Only `read_only`/`super_read_only`: what the sidecar's fence decision needs, read
    /// even when the full [`MysqlSession::observe`] fails (an unparsable GTID set must
    /// never disable the fence).
    fn read_only_mode(&mut self) -> BoxFuture<'_, Result<ReadOnlyMode, MysqlError>>;

    /// The last CLONE on this server as `performance_schema.clone_status` reports it;
    /// `None` when no clone ever ran (empty table, or the clone plugin is not loaded).
    fn clone_state(&mut self) -> BoxFuture<'_, Result<Option<CloneState>, MysqlError>>;

    /// `ALTER EVENT ... ENABLE` for every event replication left `REPLICA_SIDE_DISABLED`;
    /// returns how many. Run on a newly promoted, writable primary.
    fn enable_replica_side_disabled_events(&mut self) -> BoxFuture<'_, Result<u64, MysqlError>>;
}

/// `performance_schema.clone_status.STATE` of the last CLONE run on a recipient (the
/// table survives the restart that ends a successful clone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloneState {
    NotStarted,
    InProgress,
    Completed,
    Failed { error: u32, message: String },
}

/// Opens [`MysqlSession`]s. Built once with its timeouts and shared.
pub trait MysqlConnector: Send + Sync + 'static {
    fn connect<'a>(
        &'a self,
        target: &'a MysqlTarget,
    ) -> BoxFuture<'a, Result<Box<dyn MysqlSession>, MysqlError>>;
}

pub type SharedMysqlConnector = Arc<dyn MysqlConnector>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_modes_follow_mysqls_coupling() {
        assert_eq!(
            ReadOnlyMode::from_flags(false, false),
            ReadOnlyMode::Writable
        );
        assert_eq!(
            ReadOnlyMode::from_flags(true, false),
            ReadOnlyMode::ReadOnly
        );
        assert_eq!(
            ReadOnlyMode::from_flags(true, true),
            ReadOnlyMode::SuperReadOnly
        );
        // Not a state MySQL can be in, but if reported it must read as fenced, never writable.
        assert_eq!(
            ReadOnlyMode::from_flags(false, true),
            ReadOnlyMode::SuperReadOnly
        );
    }

    #[test]
    fn debug_never_prints_passwords() {
        let target = MysqlTarget {
            host: "mysql-0".into(),
            port: 3306,
            user: "root".into(),
            password: "hunter2".into(),
        };
        let source = ReplicationSource {
            host: "h".into(),
            port: 1,
            user: "repl".into(),
            password: "hunter2".into(),
            delay_seconds: 0,
            connect_retry_seconds: 1,
        };
        let donor = CloneDonor {
            host: "h".into(),
            port: 1,
            user: "u".into(),
            password: "hunter2".into(),
        };
        let account = ReplicationAccount {
            user: "repl".into(),
            password: "hunter2".into(),
        };
        for printed in [
            format!("{target:?}"),
            format!("{source:?}"),
            format!("{donor:?}"),
            format!("{account:?}"),
        ] {
            assert!(!printed.contains("hunter2"), "{printed}");
        }
    }
}
