//! The MySQL model's wire protocol: newline-delimited JSON, one request and one response
//! per line, on the model's simulated port. A connection starts with `Hello` (user and
//! password); `BinlogDump` and `CloneSnapshot` are the server-to-server requests a replica
//! and a clone recipient send, after which the connection carries [`SourceEvent`]s.
//!
//! The operator never sees this protocol: it talks to the model through
//! `MysqlSession` (see `client.rs`), exactly as it talks to a real mysqld through SQL.

use bloodraven::gtid::GtidSet;
use bloodraven::seams::mysql::{
    CloneDonor, GtidWait, MysqlStatus, ReadOnlyMode, ReplicationSource,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// One committed transaction as it travels in the binlog: its GTID, its row changes on the
/// counter table, and when it originally committed (for `Seconds_Behind_Source` and
/// `SOURCE_DELAY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub uuid: String,
    pub gno: u64,
    /// `(key, new value)` row images.
    pub changes: Vec<(String, i64)>,
    /// `original_commit_timestamp` in microseconds since the Unix epoch.
    pub original_commit_us: i64,
    /// An account created or changed by this transaction (`CREATE USER`, `ALTER
    /// USER`, `GRANT` write `mysql.user`, which replicates like any table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<super::Account>,
}

/// A consistent copy of a donor's data, as `CLONE` transfers it (no binlog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneSnapshot {
    pub data: Vec<(String, i64)>,
    pub gtid_executed: GtidSet,
    /// The donor's replication channel configuration (MySQL 8.0.19+ clones the
    /// replication metadata repositories along with the data).
    pub source: Option<ReplicationSource>,
    /// The donor's `mysql.user` accounts (created by statements, not by the image).
    #[serde(default)]
    pub accounts: Vec<super::Account>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Hello {
        user: String,
        password: String,
    },
    Observe,
    SetReadOnly {
        mode: ReadOnlyMode,
    },
    StopReplica,
    StartReplica,
    ResetReplicaAll,
    ChangeSource {
        source: ReplicationSource,
    },
    /// `CHANGE REPLICATION SOURCE TO SOURCE_DELAY = n` alone: MySQL keeps every option a
    /// CHANGE statement does not name, so this changes the delay and nothing else.
    SetSourceDelay {
        seconds: u32,
    },
    WaitForExecutedGtidSet {
        set: GtidSet,
        timeout_ms: u64,
    },
    Clone {
        donor: CloneDonor,
        timeout_ms: u64,
    },
    KillClientConnections,
    CounterIncrement {
        key: String,
    },
    CounterRead {
        key: String,
    },
    ForcedWrite {
        key: String,
        value: i64,
    },
    /// `PURGE BINARY LOGS`: drop the whole binlog (its GTIDs move to `gtid_purged`).
    PurgeBinaryLogs,
    /// `CREATE USER IF NOT EXISTS` + `ALTER USER` + `GRANT` of the replication account.
    EnsureAccount {
        account: super::Account,
    },
    /// Replica IO thread: stream every transaction not in `gtid_set` (auto-position), then
    /// follow new commits. `semisync` asks the source to wait for this replica's acks.
    BinlogDump {
        replica_uuid: String,
        gtid_set: GtidSet,
        semisync: bool,
    },
    /// Clone recipient: send a snapshot of the data.
    CloneSnapshot,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Hello {
        connection_id: u64,
        server_uuid: String,
    },
    Status {
        status: Box<MysqlStatus>,
    },
    Wait {
        result: GtidWait,
    },
    Value {
        value: Option<i64>,
    },
    Count {
        count: u64,
    },
    Snapshot {
        snapshot: Box<CloneSnapshot>,
    },
    Error {
        code: u16,
        message: String,
    },
}

/// What a source sends on a `BinlogDump` connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SourceEvent {
    Transaction {
        transaction: Transaction,
    },
    /// Sent every heartbeat period when idle, so the replica can tell a quiet source from
    /// a dead connection.
    Heartbeat,
    /// Fatal: the dump cannot continue (e.g. purged binlogs); the IO thread stops.
    Error {
        code: u16,
        message: String,
    },
}

/// What a semisync replica sends back on a `BinlogDump` connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaAck {
    pub uuid: String,
    pub gno: u64,
}

/// Longest line either side accepts: a clone snapshot of a large counter table is the
/// biggest message; anything longer is a protocol error, not an allocation.
pub const MAX_LINE: usize = 8 * 1024 * 1024;

/// Writes one JSON line.
pub async fn write_line<W, T>(writer: &mut W, message: &T) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
    T: Serialize,
{
    let mut bytes = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes).await?;
    writer.flush().await
}

/// Reads one JSON line; `Ok(None)` at a clean end of stream.
pub async fn read_line<R, T>(reader: &mut R) -> std::io::Result<Option<T>>
where
    R: tokio::io::AsyncBufRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if line.len() > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long",
        ));
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
