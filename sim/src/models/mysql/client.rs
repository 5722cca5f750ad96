//! The simulation's implementation of the operator's MySQL transport: a [`MysqlConnector`]
//! that dials the MySQL model over the simulated network and a [`MysqlSession`] speaking
//! the model's protocol. Every connect and request is bounded by [`MysqlTimeouts`].

use std::time::Duration;

use bloodraven::gtid::GtidSet;
use bloodraven::seams::mysql::{
    CloneDonor, CloneState, GtidWait, MysqlConnector, MysqlError, MysqlSession, MysqlStatus,
    MysqlTarget, MysqlTimeouts, REPLICATION_PRIVILEGES, ReadOnlyMode, ReplicationAccount,
    ReplicationSource,
};
use futures::future::BoxFuture;
use tokio::io::BufReader;
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::protocol::{Request, Response, read_line, write_line};
use crate::pod::SharedDialer;

/// Opens sessions to MySQL models through a [`crate::pod::Dialer`].
#[derive(Clone)]
pub struct SimMysqlConnector {
    dialer: SharedDialer,
    timeouts: MysqlTimeouts,
}

impl SimMysqlConnector {
    pub fn new(dialer: SharedDialer, timeouts: MysqlTimeouts) -> Self {
        Self { dialer, timeouts }
    }
}

impl MysqlConnector for SimMysqlConnector {
    fn connect<'a>(
        &'a self,
        target: &'a MysqlTarget,
    ) -> BoxFuture<'a, Result<Box<dyn MysqlSession>, MysqlError>> {
        Box::pin(async move {
            let session = SimMysqlSession::connect(&self.dialer, target, self.timeouts).await?;
            Ok(Box::new(session) as Box<dyn MysqlSession>)
        })
    }
}

/// One connection to a MySQL model.
pub struct SimMysqlSession {
    address: String,
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    timeouts: MysqlTimeouts,
    connection_id: u64,
    /// Set after a timeout or I/O error: the stream may hold a late reply, so the session
    /// refuses further requests rather than pairing a request with the wrong answer.
    broken: bool,
}

impl SimMysqlSession {
    /// Dials `target` and authenticates, within `timeouts.connect`.
    pub async fn connect(
        dialer: &SharedDialer,
        target: &MysqlTarget,
        timeouts: MysqlTimeouts,
    ) -> Result<SimMysqlSession, MysqlError> {
        let address = target.address();
        let connect_error = |message: String| MysqlError::Connect {
            address: address.clone(),
            message,
        };
        let handshake = async {
            let stream = dialer
                .dial(&target.host, target.port)
                .await
                .map_err(|e| connect_error(e.to_string()))?;
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let hello = Request::Hello {
                user: target.user.clone(),
                password: target.password.clone(),
            };
            write_line(&mut write, &hello)
                .await
                .map_err(|e| connect_error(e.to_string()))?;
            match read_line::<_, Response>(&mut read).await {
                Ok(Some(Response::Hello { connection_id, .. })) => Ok((read, write, connection_id)),
                Ok(Some(Response::Error { code, message })) => Err(MysqlError::Server {
                    address: address.clone(),
                    operation: "connect",
                    code,
                    message,
                }),
                Ok(other) => Err(connect_error(format!(
                    "unexpected handshake reply {other:?}"
                ))),
                Err(e) => Err(connect_error(e.to_string())),
            }
        };
        let (read, write, connection_id) = tokio::time::timeout(timeouts.connect, handshake)
            .await
            .map_err(|_| MysqlError::Timeout {
                address: address.clone(),
                operation: "connect",
                after: timeouts.connect,
            })??;
        Ok(SimMysqlSession {
            address,
            read,
            write,
            timeouts,
            connection_id,
            broken: false,
        })
    }

    /// The server's id for this connection.
    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// `PURGE BINARY LOGS` up to now: a model-only control for tests of purged-binlog errors.
    pub async fn purge_binary_logs(&mut self) -> Result<(), MysqlError> {
        self.expect_ok(
            "PURGE BINARY LOGS",
            Request::PurgeBinaryLogs,
            Duration::ZERO,
        )
        .await
    }

    async fn request(
        &mut self,
        operation: &'static str,
        request: Request,
        extra_wait: Duration,
    ) -> Result<Response, MysqlError> {
        if self.broken {
            return Err(MysqlError::ConnectionLost {
                address: self.address.clone(),
                operation,
                message: "session broken by an earlier failure".into(),
            });
        }
        let limit = self.timeouts.request + extra_wait;
        let exchange = async {
            write_line(&mut self.write, &request).await?;
            read_line::<_, Response>(&mut self.read).await
        };
        let result = tokio::time::timeout(limit, exchange).await;
        let address = self.address.clone();
        match result {
            Err(_) => {
                self.broken = true;
                Err(MysqlError::Timeout {
                    address,
                    operation,
                    after: limit,
                })
            }
            Ok(Err(error)) => {
                self.broken = true;
                Err(MysqlError::ConnectionLost {
                    address,
                    operation,
                    message: error.to_string(),
                })
            }
            Ok(Ok(None)) => {
                self.broken = true;
                Err(MysqlError::ConnectionLost {
                    address,
                    operation,
                    message: "server closed the connection".into(),
                })
            }
            Ok(Ok(Some(Response::Error { code, message }))) => Err(MysqlError::Server {
                address,
                operation,
                code,
                message,
            }),
            Ok(Ok(Some(response))) => Ok(response),
        }
    }

    async fn expect_ok(
        &mut self,
        operation: &'static str,
        request: Request,
        extra_wait: Duration,
    ) -> Result<(), MysqlError> {
        match self.request(operation, request, extra_wait).await? {
            Response::Ok => Ok(()),
            other => Err(self.unexpected(operation, &other)),
        }
    }

    fn unexpected(&self, operation: &'static str, response: &Response) -> MysqlError {
        MysqlError::Protocol {
            address: self.address.clone(),
            operation,
            message: format!("unexpected reply {response:?}"),
        }
    }
}

impl MysqlSession for SimMysqlSession {
    fn address(&self) -> &str {
        &self.address
    }

    fn observe(&mut self) -> BoxFuture<'_, Result<MysqlStatus, MysqlError>> {
        Box::pin(async move {
            match self
                .request("observe", Request::Observe, Duration::ZERO)
                .await?
            {
                Response::Status { status } => Ok(*status),
                other => Err(self.unexpected("observe", &other)),
            }
        })
    }

    fn set_read_only(&mut self, mode: ReadOnlyMode) -> BoxFuture<'_, Result<(), MysqlError>> {
        Box::pin(self.expect_ok(
            "SET GLOBAL read_only",
            Request::SetReadOnly { mode },
            Duration::ZERO,
        ))
    }

    fn stop_replica(&mut self) -> BoxFuture<'_, Result<(), MysqlError>> {
        Box::pin(self.expect_ok("STOP REPLICA", Request::StopReplica, Duration::ZERO))
    }

    fn start_replica(&mut self) -> BoxFuture<'_, Result<(), MysqlError>> {
        Box::pin(self.expect_ok("START REPLICA", Request::StartReplica, Duration::ZERO))
    }

    fn reset_replica_all(&mut self) -> BoxFuture<'_, Result<(), MysqlError>> {
        Box::pin(self.expect_ok(
            "RESET REPLICA ALL",
            Request::ResetReplicaAll,
            Duration::ZERO,
        ))
    }

    fn ensure_replication_account<'a>(
        &'a mut self,
        account: &'a ReplicationAccount,
    ) -> BoxFuture<'a, Result<(), MysqlError>> {
        let request = Request::EnsureAccount {
            account: super::Account {
                user: account.user.clone(),
                password: account.password.clone(),
                super_user: false,
                privileges: REPLICATION_PRIVILEGES.map(String::from).to_vec(),
                database: None,
            },
        };
        Box::pin(self.expect_ok("CREATE USER (replication account)", request, Duration::ZERO))
    }

    fn set_source_delay(&mut self, seconds: u32) -> BoxFuture<'_, Result<(), MysqlError>> {
        Box::pin(self.expect_ok(
            "CHANGE REPLICATION SOURCE TO SOURCE_DELAY",
            Request::SetSourceDelay { seconds },
            Duration::ZERO,
        ))
    }

    fn change_source<'a>(
        &'a mut self,
        source: &'a ReplicationSource,
    ) -> BoxFuture<'a, Result<(), MysqlError>> {
        let request = Request::ChangeSource {
            source: source.clone(),
        };
        Box::pin(self.expect_ok("CHANGE REPLICATION SOURCE", request, Duration::ZERO))
    }

    fn wait_for_executed_gtid_set<'a>(
        &'a mut self,
        set: &'a GtidSet,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<GtidWait, MysqlError>> {
        Box::pin(async move {
            let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            let request = Request::WaitForExecutedGtidSet {
                set: set.clone(),
                timeout_ms,
            };
            match self
                .request("WAIT_FOR_EXECUTED_GTID_SET", request, timeout)
                .await?
            {
                Response::Wait { result } => Ok(result),
                other => Err(self.unexpected("WAIT_FOR_EXECUTED_GTID_SET", &other)),
            }
        })
    }

    fn clone_from<'a>(
        &'a mut self,
        donor: &'a CloneDonor,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), MysqlError>> {
        Box::pin(async move {
            let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            let request = Request::Clone {
                donor: donor.clone(),
                timeout_ms,
            };
            match self.request("CLONE INSTANCE", request, timeout).await {
                // The recipient restarts when the clone is installed and drops this
                // connection without a reply, as mysqld under a supervisor does.
                Err(MysqlError::ConnectionLost { .. }) => Ok(()),
                Err(error) => Err(error),
                Ok(Response::Ok) => Ok(()),
                Ok(other) => Err(self.unexpected("CLONE INSTANCE", &other)),
            }
        })
    }

    fn kill_client_connections(&mut self) -> BoxFuture<'_, Result<u64, MysqlError>> {
        Box::pin(async move {
            match self
                .request("KILL", Request::KillClientConnections, Duration::ZERO)
                .await?
            {
                Response::Count { count } => Ok(count),
                other => Err(self.unexpected("KILL", &other)),
            }
        })
    }

    fn counter_increment<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<i64, MysqlError>> {
        Box::pin(async move {
            let request = Request::CounterIncrement {
                key: key.to_string(),
            };
            match self
                .request("counter increment", request, Duration::ZERO)
                .await?
            {
                Response::Value { value: Some(value) } => Ok(value),
                other => Err(self.unexpected("counter increment", &other)),
            }
        })
    }

    fn counter_read<'a>(
        &'a mut self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, MysqlError>> {
        Box::pin(async move {
            let request = Request::CounterRead {
                key: key.to_string(),
            };
            match self
                .request("counter read", request, Duration::ZERO)
                .await?
            {
                Response::Value { value } => Ok(value),
                other => Err(self.unexpected("counter read", &other)),
            }
        })
    }

    fn forced_write<'a>(
        &'a mut self,
        key: &'a str,
        value: i64,
    ) -> BoxFuture<'a, Result<(), MysqlError>> {
        let request = Request::ForcedWrite {
            key: key.to_string(),
            value,
        };
        Box::pin(self.expect_ok("forced write", request, Duration::ZERO))
    }

    // Minimal implementations of the seam methods added for issue 13 part 1; this
    // connector is replaced by the production adapter over the MySQL wire protocol.

    fn read_only_mode(&mut self) -> BoxFuture<'_, Result<ReadOnlyMode, MysqlError>> {
        Box::pin(async move { Ok(self.observe().await?.read_only_mode()) })
    }

    /// The JSON model keeps no `clone_status`: its CLONE completes before the reply.
    fn clone_state(&mut self) -> BoxFuture<'_, Result<Option<CloneState>, MysqlError>> {
        Box::pin(async { Ok(None) })
    }

    /// The JSON model has no events.
    fn enable_replica_side_disabled_events(&mut self) -> BoxFuture<'_, Result<u64, MysqlError>> {
        Box::pin(async { Ok(0) })
    }
}
