//! The MySQL model's server-to-server messages. Clients (the operator, the sidecar, the
//! workload) speak the MySQL protocol to the model; replication between model servers
//! logs in the same way and then sends `COM_BINLOG_DUMP_GTID` with a [`DumpRequest`] (or
//! `COM_CLONE`), after which the connection carries these messages as JSON in MySQL
//! packets, not MySQL's binlog event format.

use bloodraven::gtid::GtidSet;
use bloodraven::production::mysql::wire;
use bloodraven::seams::mysql::ReplicationSource;
use bloodraven::seams::object_storage::BoxedByteStream;
use serde::{Deserialize, Serialize};

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

/// The payload of `COM_BINLOG_DUMP_GTID` from a replica IO thread: stream every
/// transaction not in `gtid_set` (auto-position), then follow new commits. `semisync`
/// asks the source to wait for this replica's acks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DumpRequest {
    pub replica_uuid: String,
    pub gtid_set: GtidSet,
    pub semisync: bool,
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

/// The two halves of a connection after a dump or clone command took it over.
pub type StreamRead = tokio::io::ReadHalf<BoxedByteStream>;
pub type StreamWrite = tokio::io::WriteHalf<BoxedByteStream>;

/// Writes one message as one MySQL packet (JSON payload).
pub async fn write_message<W, T>(writer: &mut W, message: &T) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    let mut sequence = 0;
    wire::write_packet(writer, &mut sequence, &bytes)
        .await
        .map_err(into_io)
}

/// Reads one message; `Ok(None)` at a clean end of stream.
pub async fn read_message<R, T>(reader: &mut R) -> std::io::Result<Option<T>>
where
    R: tokio::io::AsyncRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    match wire::read_packet(reader).await {
        Ok(packet) => serde_json::from_slice(&packet.payload)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(wire::WireError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(into_io(e)),
    }
}

fn into_io(error: wire::WireError) -> std::io::Error {
    match error {
        wire::WireError::Io(io) => io,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
    }
}
