//! Production MySQL transport: the `MysqlConnector`/`MysqlSession` seam implemented with
//! mysql_async and MySQL 8 SQL. The statement text lives in [`sql`] as pure functions, so
//! it is unit-tested without a server; this module only sends it and parses replies.
//!
//! Not tested against a server here: Debian ships MariaDB, whose GTIDs differ (see
//! docs/simulation.md).

use std::time::Duration;

use futures::future::BoxFuture;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row};

use crate::gtid::GtidSet;
use crate::transport::mysql::{
    CloneDonor, GtidWait, IoThreadState, MysqlConnector, MysqlError, MysqlSession, MysqlStatus,
    MysqlTarget, MysqlTimeouts, ReadOnlyMode, ReplicaStatus, ReplicationAccount, ReplicationError,
    ReplicationSource, SemisyncSourceStatus,
};

/// MySQL 8 statements, built as text. Values are embedded as escaped string literals
/// because `CHANGE REPLICATION SOURCE` and `CLONE` cannot take placeholders.
pub mod sql {
    use std::time::Duration;

    use crate::gtid::GtidSet;
    use crate::transport::mysql::{
        CloneDonor, REPLICATION_PRIVILEGES, ReadOnlyMode, ReplicationAccount, ReplicationSource,
    };

    /// The counter app's database: the application account needs privileges on it
    /// (the Secret's `app-database`; see docs/install.md).
    pub const COUNTER_DATABASE: &str = "bloodraven_counter";

    /// The counter app's schema: one key/value table.
    pub const COUNTER_SCHEMA: [&str; 2] = [
        "CREATE DATABASE IF NOT EXISTS bloodraven_counter",
        "CREATE TABLE IF NOT EXISTS bloodraven_counter.counters \
         (name VARCHAR(191) NOT NULL PRIMARY KEY, value BIGINT NOT NULL)",
    ];

    pub const OBSERVE: &str = "SELECT @@global.server_uuid, @@global.read_only, \
        @@global.super_read_only, @@global.gtid_executed, @@global.gtid_purged";
    pub const SEMISYNC_ENABLED: &str = "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_source_enabled'";
    pub const SEMISYNC_STATUS: &str = "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_source_%'";
    pub const REPLICA_STATUS: &str = "SHOW REPLICA STATUS";
    pub const STOP_REPLICA: &str = "STOP REPLICA";
    pub const START_REPLICA: &str = "START REPLICA";
    pub const RESET_REPLICA_ALL: &str = "RESET REPLICA ALL";
    /// Client connections to kill when fencing: everything but this session, the server's
    /// own threads and the binlog dump threads that feed replicas.
    pub const KILL_CANDIDATES: &str = "SELECT ID FROM performance_schema.processlist \
        WHERE ID <> CONNECTION_ID() AND USER NOT IN ('system user', 'event_scheduler') \
        AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon')";

    /// A MySQL string literal: backslash, quotes, NUL, newlines and Ctrl-Z escaped.
    pub fn literal(value: &str) -> String {
        let mut out = String::with_capacity(value.len() + 2);
        out.push('\'');
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '"' => out.push_str("\\\""),
                '\0' => out.push_str("\\0"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\u{1a}' => out.push_str("\\Z"),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }

    /// Statements that put the server in `mode`. The order matters: MySQL couples the
    /// flags, so lifting goes super_read_only then read_only, fencing the reverse.
    pub fn set_read_only(mode: ReadOnlyMode) -> &'static [&'static str] {
        match mode {
            ReadOnlyMode::Writable => &[
                "SET GLOBAL super_read_only = OFF",
                "SET GLOBAL read_only = OFF",
            ],
            ReadOnlyMode::ReadOnly => &[
                "SET GLOBAL read_only = ON",
                "SET GLOBAL super_read_only = OFF",
            ],
            ReadOnlyMode::SuperReadOnly => &["SET GLOBAL super_read_only = ON"],
        }
    }

    pub fn change_source(source: &ReplicationSource) -> String {
        format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = {}, SOURCE_PORT = {}, SOURCE_USER = {}, \
             SOURCE_PASSWORD = {}, SOURCE_AUTO_POSITION = 1, SOURCE_DELAY = {}, \
             SOURCE_CONNECT_RETRY = {}, GET_SOURCE_PUBLIC_KEY = 1",
            literal(&source.host),
            source.port,
            literal(&source.user),
            literal(&source.password),
            source.delay_seconds,
            source.connect_retry_seconds.max(1),
        )
    }

    /// Changes only the delay of the existing channel (MySQL keeps every option not named).
    pub fn set_source_delay(seconds: u32) -> String {
        format!("CHANGE REPLICATION SOURCE TO SOURCE_DELAY = {seconds}")
    }

    /// A write as a SUPER user would make it through read-only: lift super_read_only
    /// (read_only stays ON, so ordinary clients remain refused), make sure the counter
    /// table exists, write, and restore the fence if it was up.
    pub fn forced_write(key: &str, value: i64, was_fenced: bool) -> Vec<String> {
        let mut statements = vec!["SET GLOBAL super_read_only = OFF".to_string()];
        statements.extend(COUNTER_SCHEMA.iter().map(|s| s.to_string()));
        statements.push(counter_set(key, value));
        if was_fenced {
            statements.push("SET GLOBAL super_read_only = ON".to_string());
        }
        statements
    }

    /// `WAIT_FOR_EXECUTED_GTID_SET` takes whole or fractional seconds.
    pub fn wait_for_executed_gtid_set(set: &GtidSet, timeout: Duration) -> String {
        format!(
            "SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {:.3})",
            literal(&set.one_line().to_string()),
            timeout.as_secs_f64()
        )
    }

    /// The donor must be listed in `clone_valid_donor_list` before `CLONE INSTANCE`.
    pub fn clone_instance(donor: &CloneDonor) -> [String; 2] {
        [
            format!(
                "SET GLOBAL clone_valid_donor_list = {}",
                literal(&format!("{}:{}", donor.host, donor.port))
            ),
            format!(
                "CLONE INSTANCE FROM {}@{}:{} IDENTIFIED BY {}",
                literal(&donor.user),
                literal(&donor.host),
                donor.port,
                literal(&donor.password)
            ),
        ]
    }

    /// `'user'@'%'`: the replication account logs in from any pod address (a site's
    /// pod IP changes with every restart).
    fn account_name(user: &str) -> String {
        format!("{}@'%'", literal(user))
    }

    /// Creates the replication account, (re)sets its password from the Secret (so a
    /// rotated password takes effect) and grants `REPLICATION_PRIVILEGES` on `*.*`.
    pub fn ensure_replication_account(account: &ReplicationAccount) -> [String; 3] {
        let name = account_name(&account.user);
        let password = literal(&account.password);
        [
            format!("CREATE USER IF NOT EXISTS {name} IDENTIFIED BY {password}"),
            format!("ALTER USER {name} IDENTIFIED BY {password}"),
            format!(
                "GRANT {} ON *.* TO {name}",
                REPLICATION_PRIVILEGES.join(", ")
            ),
        ]
    }

    pub fn kill(connection_id: u64) -> String {
        format!("KILL CONNECTION {connection_id}")
    }

    /// One transaction: increment (creating the row at 1) and read back under the row lock.
    pub fn counter_increment(key: &str) -> [String; 4] {
        [
            "START TRANSACTION".to_string(),
            format!(
                "INSERT INTO bloodraven_counter.counters (name, value) VALUES ({}, 1) \
                 ON DUPLICATE KEY UPDATE value = value + 1",
                literal(key)
            ),
            format!(
                "SELECT value FROM bloodraven_counter.counters WHERE name = {} FOR UPDATE",
                literal(key)
            ),
            "COMMIT".to_string(),
        ]
    }

    pub fn counter_read(key: &str) -> String {
        format!(
            "SELECT value FROM bloodraven_counter.counters WHERE name = {}",
            literal(key)
        )
    }

    pub fn counter_set(key: &str, value: i64) -> String {
        format!(
            "INSERT INTO bloodraven_counter.counters (name, value) VALUES ({}, {value}) \
             ON DUPLICATE KEY UPDATE value = {value}",
            literal(key)
        )
    }
}

/// Opens mysql_async connections with mandatory connect and request timeouts.
#[derive(Debug, Clone)]
pub struct MysqlAsyncConnector {
    timeouts: MysqlTimeouts,
}

impl MysqlAsyncConnector {
    pub fn new(timeouts: MysqlTimeouts) -> Self {
        Self { timeouts }
    }
}

impl MysqlConnector for MysqlAsyncConnector {
    fn connect<'a>(
        &'a self,
        target: &'a MysqlTarget,
    ) -> BoxFuture<'a, Result<Box<dyn MysqlSession>, MysqlError>> {
        Box::pin(async move {
            let address = target.address();
            let opts = OptsBuilder::default()
                .ip_or_hostname(target.host.clone())
                .tcp_port(target.port)
                .user(Some(target.user.clone()))
                .pass(Some(target.password.clone()))
                .prefer_socket(false);
            let conn = match tokio::time::timeout(self.timeouts.connect, Conn::new(opts)).await {
                Err(_) => {
                    return Err(MysqlError::Timeout {
                        address,
                        operation: "connect",
                        after: self.timeouts.connect,
                    });
                }
                Ok(Err(error)) => return Err(map_error(&address, "connect", error)),
                Ok(Ok(conn)) => conn,
            };
            Ok(Box::new(MysqlAsyncSession {
                conn,
                address,
                timeouts: self.timeouts,
            }) as Box<dyn MysqlSession>)
        })
    }
}

fn map_error(address: &str, operation: &'static str, error: mysql_async::Error) -> MysqlError {
    let address = address.to_string();
    match error {
        mysql_async::Error::Server(server) => MysqlError::Server {
            address,
            operation,
            code: server.code,
            message: server.message,
        },
        mysql_async::Error::Io(io) => MysqlError::ConnectionLost {
            address,
            operation,
            message: io.to_string(),
        },
        other if operation == "connect" => MysqlError::Connect {
            address,
            message: other.to_string(),
        },
        other => MysqlError::Protocol {
            address,
            operation,
            message: other.to_string(),
        },
    }
}

/// One mysql_async connection.
pub struct MysqlAsyncSession {
    conn: Conn,
    address: String,
    timeouts: MysqlTimeouts,
}

/// MySQL error numbers for a missing counter schema (`ER_NO_SUCH_TABLE`, `ER_BAD_DB_ERROR`).
const MISSING_SCHEMA: [u16; 2] = [1146, 1049];

impl MysqlAsyncSession {
    async fn bounded<T>(
        &mut self,
        operation: &'static str,
        extra: Duration,
        work: impl AsyncFnOnce(&mut Conn) -> Result<T, mysql_async::Error>,
    ) -> Result<T, MysqlError> {
        let limit = self.timeouts.request + extra;
        match tokio::time::timeout(limit, work(&mut self.conn)).await {
            Err(_) => Err(MysqlError::Timeout {
                address: self.address.clone(),
                operation,
                after: limit,
            }),
            Ok(result) => result.map_err(|e| map_error(&self.address, operation, e)),
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
    row.get::<Option<String>, &str>(name).flatten()
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

impl MysqlSession for MysqlAsyncSession {
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
                    let enabled: Vec<(String, String)> = conn.query(sql::SEMISYNC_ENABLED).await?;
                    let status: Vec<(String, String)> = conn.query(sql::SEMISYNC_STATUS).await?;
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
        let statements = sql::set_read_only(mode)
            .iter()
            .map(|s| s.to_string())
            .collect();
        Box::pin(self.execute_all("SET GLOBAL read_only", statements))
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
            let statements = sql::clone_instance(donor).to_vec();
            let result = self
                .bounded("CLONE INSTANCE", timeout, async move |conn| {
                    for statement in statements {
                        conn.query_drop(statement).await?;
                    }
                    Ok(())
                })
                .await;
            match result {
                // The recipient restarts after a successful clone and drops the session.
                Err(MysqlError::ConnectionLost { .. }) | Ok(()) => Ok(()),
                Err(error) => Err(error),
            }
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
                let ids: Vec<u64> = conn.query(sql::KILL_CANDIDATES).await?;
                let mut killed = 0;
                for id in ids {
                    match conn.query_drop(sql::kill(id)).await {
                        Ok(()) => killed += 1,
                        // ER_NO_SUCH_THREAD: it ended by itself meanwhile.
                        Err(mysql_async::Error::Server(e)) if e.code == 1094 => {}
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
                            Ok::<_, mysql_async::Error>(value)
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
}

#[cfg(test)]
mod tests {
    use super::sql::*;
    use super::*;

    #[test]
    fn literals_escape_everything_that_could_end_the_string() {
        assert_eq!(literal("plain"), "'plain'");
        assert_eq!(literal("it's"), "'it\\'s'");
        assert_eq!(literal("a\\b"), "'a\\\\b'");
        assert_eq!(literal("x'; DROP TABLE t; --"), "'x\\'; DROP TABLE t; --'");
        assert_eq!(
            literal("nul\0nl\ncr\r\u{1a}\""),
            "'nul\\0nl\\ncr\\r\\Z\\\"'"
        );
    }

    #[test]
    fn change_source_uses_auto_position_and_escapes_credentials() {
        let source = ReplicationSource {
            host: "mysql-0.mysql.iad.svc".into(),
            port: 3306,
            user: "repl".into(),
            password: "p'w\\d".into(),
            delay_seconds: 30,
            connect_retry_seconds: 0,
        };
        assert_eq!(
            change_source(&source),
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'mysql-0.mysql.iad.svc', SOURCE_PORT = 3306, \
             SOURCE_USER = 'repl', SOURCE_PASSWORD = 'p\\'w\\\\d', SOURCE_AUTO_POSITION = 1, \
             SOURCE_DELAY = 30, SOURCE_CONNECT_RETRY = 1, GET_SOURCE_PUBLIC_KEY = 1"
        );
    }

    #[test]
    fn read_only_statements_respect_mysqls_flag_coupling() {
        assert_eq!(
            set_read_only(ReadOnlyMode::Writable),
            [
                "SET GLOBAL super_read_only = OFF",
                "SET GLOBAL read_only = OFF"
            ]
        );
        assert_eq!(
            set_read_only(ReadOnlyMode::SuperReadOnly),
            ["SET GLOBAL super_read_only = ON"]
        );
        assert_eq!(
            set_read_only(ReadOnlyMode::ReadOnly),
            [
                "SET GLOBAL read_only = ON",
                "SET GLOBAL super_read_only = OFF"
            ]
        );
    }

    #[test]
    fn wait_clone_kill_and_counter_statements() {
        let set = GtidSet::parse(
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n61553741-443a-11f1-8f2e-0242ac120002:3",
        )
        .unwrap();
        assert_eq!(
            wait_for_executed_gtid_set(&set, Duration::from_millis(2500)),
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5, \
             61553741-443a-11f1-8f2e-0242ac120002:3', 2.500)"
        );
        let donor = CloneDonor {
            host: "mysql-0".into(),
            port: 3306,
            user: "clone".into(),
            password: "s'".into(),
        };
        assert_eq!(
            clone_instance(&donor),
            [
                "SET GLOBAL clone_valid_donor_list = 'mysql-0:3306'".to_string(),
                "CLONE INSTANCE FROM 'clone'@'mysql-0':3306 IDENTIFIED BY 's\\''".to_string(),
            ]
        );
        assert_eq!(kill(42), "KILL CONNECTION 42");
        let increment = counter_increment("hits'");
        assert_eq!(increment[0], "START TRANSACTION");
        assert!(
            increment[1]
                .contains("VALUES ('hits\\'', 1) ON DUPLICATE KEY UPDATE value = value + 1")
        );
        assert!(increment[2].ends_with("WHERE name = 'hits\\'' FOR UPDATE"));
        assert_eq!(increment[3], "COMMIT");
        assert_eq!(
            counter_read("k"),
            "SELECT value FROM bloodraven_counter.counters WHERE name = 'k'"
        );
        assert!(KILL_CANDIDATES.contains("'Binlog Dump GTID'"));
        for statement in COUNTER_SCHEMA.iter().chain([&counter_read("k").as_str()]) {
            assert!(statement.contains(COUNTER_DATABASE), "{statement}");
        }
    }

    #[test]
    fn the_replication_account_gets_exactly_its_privileges_with_an_escaped_password() {
        let account = ReplicationAccount {
            user: "repl".into(),
            password: "p'w\\".into(),
        };
        assert_eq!(
            ensure_replication_account(&account),
            [
                "CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'p\\'w\\\\'".to_string(),
                "ALTER USER 'repl'@'%' IDENTIFIED BY 'p\\'w\\\\'".to_string(),
                "GRANT REPLICATION SLAVE, REPLICATION CLIENT, BACKUP_ADMIN ON *.* TO 'repl'@'%'"
                    .to_string(),
            ]
        );
        // A user name cannot break out of its literal either.
        let hostile = ReplicationAccount {
            user: "x'@'%' WITH GRANT OPTION; --".into(),
            password: "p".into(),
        };
        assert!(
            ensure_replication_account(&hostile)[2]
                .ends_with("TO 'x\\'@\\'%\\' WITH GRANT OPTION; --'@'%'")
        );
    }

    #[test]
    fn chaos_statements_change_only_the_delay_and_restore_the_fence() {
        assert_eq!(
            set_source_delay(30),
            "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 30"
        );
        let fenced = forced_write("chaos-divergent/1", 1, true);
        assert_eq!(fenced.first().unwrap(), "SET GLOBAL super_read_only = OFF");
        assert!(
            fenced
                .iter()
                .any(|s| s.contains("CREATE TABLE IF NOT EXISTS"))
        );
        assert!(fenced[fenced.len() - 2].contains("VALUES ('chaos-divergent/1', 1)"));
        assert_eq!(fenced.last().unwrap(), "SET GLOBAL super_read_only = ON");
        let open = forced_write("k", 2, false);
        assert!(open.last().unwrap().contains("VALUES ('k', 2)"));
    }

    #[test]
    fn server_errors_keep_their_code() {
        let error = map_error(
            "db:3306",
            "counter increment",
            mysql_async::Error::Server(mysql_async::ServerError {
                code: 1290,
                message: "The MySQL server is running with the --super-read-only option".into(),
                state: "HY000".into(),
            }),
        );
        assert!(error.is_read_only_refusal());
        assert!(error.to_string().contains("db:3306"), "{error}");
    }
}
