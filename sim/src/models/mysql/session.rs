//! One client session of the MySQL model: executes the statements the front end parsed
//! against the server (privilege checks, read-only refusals, the counter table's
//! transactions, variables, replication control, CLONE, KILL) and shapes the reply as
//! MySQL would (OK, a text result set, or an error number). Protocol framing is the
//! caller's (`process.rs`); what each operation does to the server is `server.rs`'s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bloodraven::gtid::GtidSet;
use bloodraven::production::mysql::sql::COUNTER_DATABASE;
use bloodraven::production::mysql::wire;
use bloodraven::seams::mysql::{CloneDonor, IoThreadState, ReplicationSource, error_codes};
use tokio::sync::{OwnedMutexGuard, OwnedRwLockReadGuard};

use super::frontend::{self, Assignment, OnDuplicate, Scope, Statement, Value};
use super::server::{
    CLONE_PLUGIN, CloneStatus, SEMISYNC_REPLICA_PLUGIN, SEMISYNC_SOURCE_PLUGIN, Server,
    ServerError, denied, err,
};
use super::{Account, replication};

/// The counter workload's table, the only table the model has.
const COUNTER_TABLE: &str = "counters";

/// `innodb_lock_wait_timeout` (MySQL default 50 s): a row-lock wait longer than this
/// fails with ER_LOCK_WAIT_TIMEOUT.
const LOCK_WAIT_TIMEOUT: Duration = Duration::from_secs(50);

/// `lock_wait_timeout` (MySQL default 31536000 s, a year: 7.1.8 "Server System
/// Variables"): how long a statement waits for a metadata lock, the global read lock
/// that enabling `read_only` takes included.
const DEFAULT_METADATA_LOCK_WAIT: Duration = Duration::from_secs(31_536_000);

/// MySQL's limits on `SOURCE_USER` and `SOURCE_PASSWORD` (15.4.2.3 "CHANGE
/// REPLICATION SOURCE TO Statement"), and the errors past them
/// (`ER_WRONG_STRING_LENGTH`, `ER_CHANGE_MASTER_PASSWORD_LENGTH`).
const MAX_USER_NAME_CHARS: usize = 32;
const MAX_SOURCE_PASSWORD_CHARS: usize = 32;
const WRONG_STRING_LENGTH: u16 = 1470;
const CHANGE_SOURCE_PASSWORD_LENGTH: u16 = 3056;

/// `ER_PLUGIN_IS_NOT_LOADED`: CLONE without the clone plugin.
const PLUGIN_IS_NOT_LOADED: u16 = 1524;

/// `ER_LOCK_OR_ACTIVE_TRANSACTION`: `SET GLOBAL read_only = ON` from a session that
/// itself holds table locks or an open transaction.
const LOCK_OR_ACTIVE_TRANSACTION: u16 = 1192;

fn lock_wait_timeout_error() -> ServerError {
    err(
        bloodraven::seams::mysql::error_codes::LOCK_WAIT_TIMEOUT,
        "Lock wait timeout exceeded; try restarting transaction",
    )
}

/// What a statement answers.
pub(super) enum Reply {
    Ok {
        affected_rows: u64,
    },
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<Option<String>>>,
    },
    /// The connection ends without a reply (KILL of the session's own connection).
    Close,
    /// The server restarts (after a CLONE) once `error`, if any, is sent.
    Restart {
        error: Option<ServerError>,
    },
}

impl Reply {
    fn ok() -> Self {
        Reply::Ok { affected_rows: 0 }
    }

    fn rows(columns: &[&str], rows: Vec<Vec<Option<String>>>) -> Self {
        Reply::Rows {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
        }
    }

    pub(super) fn packets(self) -> Vec<Vec<u8>> {
        let status = 0x0002;
        match self {
            Reply::Ok { affected_rows } => vec![
                wire::OkPacket {
                    affected_rows,
                    status,
                    ..wire::OkPacket::default()
                }
                .encode(),
            ],
            Reply::Rows { columns, rows } => {
                let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
                wire::encode_result_set(&columns, &rows, status)
            }
            Reply::Close | Reply::Restart { .. } => Vec::new(),
        }
    }
}

/// An open transaction: the rows it wrote (visible to itself only) and the row locks it
/// holds.
#[derive(Default)]
struct Transaction {
    changes: BTreeMap<String, i64>,
    locks: BTreeMap<String, OwnedMutexGuard<()>>,
    /// The shared hold on the global read lock, from the first write to the end.
    write_intent: Option<OwnedRwLockReadGuard<()>>,
}

pub(super) struct Session {
    server: Arc<Server>,
    pub(super) account: Account,
    id: u64,
    transaction: Option<Transaction>,
    variables: BTreeMap<String, String>,
    /// `LOCK TABLES ... WRITE` in force: the shared hold on the global read lock.
    table_write_lock: Option<OwnedRwLockReadGuard<()>>,
}

fn on_off(value: bool) -> String {
    if value { "ON" } else { "OFF" }.to_string()
}

fn flag(assignment: &Assignment) -> Result<bool, ServerError> {
    match assignment.value.text().to_ascii_uppercase().as_str() {
        "ON" | "1" | "TRUE" => Ok(true),
        "OFF" | "0" | "FALSE" => Ok(false),
        other => Err(err(
            1231,
            format!(
                "Variable '{}' can't be set to the value of '{other}'",
                assignment.name
            ),
        )),
    }
}

/// SQL `LIKE` with `%` and `_`, case-insensitive (variable names).
fn like(pattern: &str, text: &str) -> bool {
    fn matches(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| matches(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && matches(rest, &t[1..]),
            Some((c, rest)) => {
                t.first().is_some_and(|f| f.eq_ignore_ascii_case(c)) && matches(rest, &t[1..])
            }
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    matches(&p, &t)
}

impl Session {
    pub(super) fn new(server: Arc<Server>, account: Account, id: u64) -> Self {
        Self {
            server,
            account,
            id,
            transaction: None,
            variables: BTreeMap::new(),
            table_write_lock: None,
        }
    }

    /// The session's `lock_wait_timeout` (session value, else global, else MySQL's
    /// default of a year).
    fn lock_wait_timeout(&self) -> Duration {
        // MySQL clamps the value to [1, 31536000] seconds.
        let seconds = |text: &String| {
            text.parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .map(|d| d.clamp(Duration::from_secs(1), DEFAULT_METADATA_LOCK_WAIT))
        };
        self.variables
            .get("lock_wait_timeout")
            .and_then(seconds)
            .or_else(|| {
                self.server
                    .state()
                    .globals
                    .get("lock_wait_timeout")
                    .and_then(seconds)
            })
            .unwrap_or(DEFAULT_METADATA_LOCK_WAIT)
    }

    /// A shared hold on the global read lock, waiting at most `lock_wait_timeout`
    /// behind a `SET GLOBAL read_only = ON` that holds or waits for it.
    async fn write_intent(&self) -> Result<OwnedRwLockReadGuard<()>, ServerError> {
        let lock = self.server.global_read_lock.clone();
        tokio::time::timeout(self.lock_wait_timeout(), lock.read_owned())
            .await
            .map_err(|_| lock_wait_timeout_error())
    }

    /// Whether `assignment` turns `read_only` on (directly or through
    /// `super_read_only`) on a server where it is off: only that takes the global read
    /// lock (7.1.8, `read_only`: enabling it blocks while other clients hold explicit
    /// table locks or have pending transactions). `super_read_only = ON` on a server
    /// already `read_only` changes no client's rights to write tables and waits for
    /// nothing, as in MySQL.
    fn enables_read_only(&self, assignment: &Assignment) -> bool {
        assignment.scope != Scope::Session
            && matches!(assignment.name.as_str(), "read_only" | "super_read_only")
            && flag(assignment).unwrap_or(false)
            && !self.server.state().read_only
    }

    /// One `SET` assignment; enabling `read_only` first takes the global read lock
    /// exclusively (see [`Server::global_read_lock`]), waiting at most
    /// `lock_wait_timeout`, and holds it while the flag changes.
    async fn set_waiting_for_locks(&mut self, assignment: Assignment) -> Result<(), ServerError> {
        if !self.enables_read_only(&assignment) {
            return self.set(assignment);
        }
        self.need("SUPER or SYSTEM_VARIABLES_ADMIN")?;
        if self
            .transaction
            .as_ref()
            .is_some_and(|t| t.write_intent.is_some())
            || self.table_write_lock.is_some()
        {
            return Err(err(
                LOCK_OR_ACTIVE_TRANSACTION,
                "Can't execute the given command because you have active locked tables or an active transaction",
            ));
        }
        let lock = self.server.global_read_lock.clone();
        let _exclusive = tokio::time::timeout(self.lock_wait_timeout(), lock.write_owned())
            .await
            .map_err(|_| lock_wait_timeout_error())?;
        self.set(assignment)
    }

    fn need(&self, privilege: &str) -> Result<(), ServerError> {
        if self.account.super_user {
            Ok(())
        } else {
            Err(denied(privilege))
        }
    }

    fn counter_table(&self, (db, table): &(String, String)) -> Result<(), ServerError> {
        if !db.eq_ignore_ascii_case(COUNTER_DATABASE) || !table.eq_ignore_ascii_case(COUNTER_TABLE)
        {
            return Err(err(1146, format!("Table '{db}.{table}' doesn't exist")));
        }
        if !self.account.may_use(COUNTER_DATABASE) {
            return Err(err(
                error_codes::DATABASE_ACCESS_DENIED,
                format!(
                    "Access denied for user '{}'@'%' to database '{COUNTER_DATABASE}'",
                    self.account.user
                ),
            ));
        }
        Ok(())
    }

    /// Global variables as `SHOW GLOBAL VARIABLES` lists them.
    fn global_variables(&self) -> BTreeMap<String, String> {
        let status = self.server.observe();
        let state = self.server.state();
        let mut vars = state.globals.clone();
        vars.insert("server_uuid".into(), status.server_uuid);
        vars.insert("read_only".into(), on_off(state.read_only));
        vars.insert("super_read_only".into(), on_off(state.super_read_only));
        vars.insert("gtid_executed".into(), status.gtid_executed.to_string());
        vars.insert("gtid_purged".into(), status.gtid_purged.to_string());
        vars.insert("gtid_mode".into(), "ON".into());
        // A plugin's variables exist while it is loaded (19.4.10.2).
        if self.server.plugin_loaded(SEMISYNC_SOURCE_PLUGIN) {
            vars.insert(
                "rpl_semi_sync_source_enabled".into(),
                on_off(state.semisync_source_enabled),
            );
            vars.insert(
                "rpl_semi_sync_source_timeout".into(),
                state.semisync_timeout.as_millis().to_string(),
            );
        }
        if self.server.plugin_loaded(SEMISYNC_REPLICA_PLUGIN) {
            vars.insert(
                "rpl_semi_sync_replica_enabled".into(),
                on_off(state.semisync_replica_enabled),
            );
        }
        vars.insert("port".into(), self.server.config.port.to_string());
        vars
    }

    pub(super) async fn execute(&mut self, sql: &str) -> Result<Reply, ServerError> {
        let statement = frontend::parse(sql)?;
        let server = self.server.clone();
        Ok(match statement {
            Statement::SelectLiteral(n) => Reply::rows(&[n.as_str()], vec![vec![Some(n.clone())]]),
            Statement::SelectConnectionId => {
                Reply::rows(&["CONNECTION_ID()"], vec![vec![Some(self.id.to_string())]])
            }
            Statement::SelectVariables(variables) => {
                let globals = self.global_variables();
                let mut row = Vec::new();
                let mut columns = Vec::new();
                for (scope, name, label) in variables {
                    let session_value = (scope != Some(Scope::Global))
                        .then(|| self.variables.get(&name).cloned())
                        .flatten();
                    let value = session_value
                        .or_else(|| globals.get(&name).cloned())
                        .ok_or_else(|| err(1193, format!("Unknown system variable '{name}'")))?;
                    // SELECT shows booleans as integers.
                    let value = match value.as_str() {
                        "ON" => "1".to_string(),
                        "OFF" => "0".to_string(),
                        _ => value,
                    };
                    row.push(Some(value));
                    columns.push(label);
                }
                Reply::Rows {
                    columns,
                    rows: vec![row],
                }
            }
            Statement::ShowVariables { pattern } => {
                let rows = self
                    .global_variables()
                    .into_iter()
                    .filter(|(name, _)| like(&pattern, name))
                    .map(|(name, value)| vec![Some(name), Some(value)])
                    .collect();
                Reply::rows(&["Variable_name", "Value"], rows)
            }
            Statement::ShowStatus { pattern } => {
                let status = server.observe();
                let clients = server.client_connections().len();
                let mut all = vec![("Threads_connected", clients.to_string())];
                if server.plugin_loaded(SEMISYNC_SOURCE_PLUGIN) {
                    all.push((
                        "Rpl_semi_sync_source_status",
                        on_off(status.semisync_source.active),
                    ));
                    all.push((
                        "Rpl_semi_sync_source_no_tx",
                        status.semisync_source.no_ack_transactions.to_string(),
                    ));
                }
                let rows = all
                    .into_iter()
                    .filter(|(name, _)| like(&pattern, name))
                    .map(|(name, value)| vec![Some(name.to_string()), Some(value)])
                    .collect();
                Reply::rows(&["Variable_name", "Value"], rows)
            }
            Statement::ShowReplicaStatus => self.replica_status(),
            Statement::Set(assignments) => {
                for assignment in assignments {
                    self.set_waiting_for_locks(assignment).await?;
                }
                Reply::ok()
            }
            Statement::StopReplica => {
                self.need("SUPER or REPLICATION_SLAVE_ADMIN")?;
                server.stop_replica();
                Reply::ok()
            }
            Statement::StartReplica => {
                self.need("SUPER or REPLICATION_SLAVE_ADMIN")?;
                server.start_replica()?;
                Reply::ok()
            }
            Statement::ResetReplicaAll => {
                self.need("RELOAD")?;
                server.reset_replica_all()?;
                Reply::ok()
            }
            Statement::ChangeSource(options) => {
                self.need("SUPER or REPLICATION_SLAVE_ADMIN")?;
                self.change_source(options)?;
                Reply::ok()
            }
            Statement::WaitForExecutedGtidSet {
                set,
                timeout_seconds,
            } => {
                let set = GtidSet::parse(&set).map_err(|e| {
                    err(
                        1772,
                        format!("Malformed GTID set specification '{set}': {e}"),
                    )
                })?;
                // A timeout of 0 (or none) waits without a limit (MySQL 8.4 manual,
                // "Functions Used with Global Transaction Identifiers").
                let timeout = timeout_seconds
                    .filter(|s| *s > 0.0)
                    .map(Duration::from_secs_f64);
                let reached = server.wait_for_gtids(&set, timeout).await;
                let value = match reached {
                    bloodraven::seams::mysql::GtidWait::Reached => "0",
                    bloodraven::seams::mysql::GtidWait::TimedOut => "1",
                };
                Reply::rows(
                    &["WAIT_FOR_EXECUTED_GTID_SET"],
                    vec![vec![Some(value.to_string())]],
                )
            }
            Statement::SelectKillCandidates => {
                self.need("PROCESS")?;
                let rows = server
                    .client_connections()
                    .into_iter()
                    .filter(|id| *id != self.id)
                    .map(|id| vec![Some(id.to_string())])
                    .collect();
                Reply::rows(&["ID"], rows)
            }
            Statement::Kill { id } => {
                if id == self.id {
                    return Ok(Reply::Close);
                }
                self.need("CONNECTION_ADMIN")?;
                if !server.kill(id) {
                    return Err(err(1094, format!("Unknown thread id: {id}")));
                }
                Reply::ok()
            }
            Statement::Clone {
                user,
                host,
                port,
                password,
            } => {
                self.need("CLONE_ADMIN")?;
                // 7.6.7.1 "Installing the Clone Plugin": on donor and recipient.
                if !server.plugin_loaded(CLONE_PLUGIN) {
                    return Err(err(PLUGIN_IS_NOT_LOADED, "Plugin 'clone' is not loaded"));
                }
                let allowed = server
                    .state()
                    .globals
                    .get("clone_valid_donor_list")
                    .is_some_and(|list| {
                        list.split(',')
                            .any(|d| d.trim() == format!("{host}:{port}"))
                    });
                if !allowed {
                    return Err(err(
                        3869,
                        format!(
                            "Clone system configuration: {host}:{port} is not found in clone_valid_donor_list: "
                        ),
                    ));
                }
                let donor = CloneDonor {
                    host,
                    port,
                    user,
                    password,
                };
                server.set_clone_status(CloneStatus {
                    state: "In Progress",
                    error_no: 0,
                    error_message: String::new(),
                });
                let snapshot = match replication::fetch_clone(
                    &server,
                    &donor,
                    Duration::from_secs(3600),
                )
                .await
                {
                    Ok(snapshot) => snapshot,
                    Err((code, message)) => {
                        server.set_clone_status(CloneStatus {
                            state: "Failed",
                            error_no: code,
                            error_message: message.clone(),
                        });
                        return Err((code, message));
                    }
                };
                server.install_snapshot(snapshot);
                server.set_clone_status(CloneStatus {
                    state: "Completed",
                    error_no: 0,
                    error_message: String::new(),
                });
                // The recipient restarts on the cloned data (7.6.7.3 "Cloning Remote
                // Data"). Under a supervisor the client's connection just ends; without
                // one (the official image runs mysqld as the container's process) the
                // client gets ER_RESTART_SERVER_FAILED and the server shuts down.
                Reply::Restart {
                    error: (!server.config.supervised).then(|| {
                        err(
                            error_codes::RESTART_SERVER_FAILED,
                            "Restart server failed (mysqld is not managed by supervisor process).",
                        )
                    }),
                }
            }
            Statement::CreateUser {
                if_not_exists,
                user,
                password,
            } => {
                self.need("CREATE USER")?;
                if user.chars().count() > MAX_USER_NAME_CHARS {
                    return Err(err(
                        WRONG_STRING_LENGTH,
                        format!(
                            "String '{user}' is too long for user name (should be no longer than {MAX_USER_NAME_CHARS})"
                        ),
                    ));
                }
                match server.account(&user) {
                    Some(_) if if_not_exists => {}
                    Some(_) => {
                        return Err(err(
                            1396,
                            format!("Operation CREATE USER failed for '{user}'@'%'"),
                        ));
                    }
                    None => server.ensure_account(Account {
                        user,
                        password,
                        super_user: false,
                        privileges: Vec::new(),
                        database: None,
                    })?,
                }
                Reply::ok()
            }
            Statement::AlterUser { user, password } => {
                self.need("CREATE USER")?;
                let mut account = server.account(&user).ok_or_else(|| {
                    err(
                        1396,
                        format!("Operation ALTER USER failed for '{user}'@'%'"),
                    )
                })?;
                account.password = password;
                server.ensure_account(account)?;
                Reply::ok()
            }
            Statement::Grant { privileges, user } => {
                self.need("GRANT OPTION")?;
                let mut account = server
                    .account(&user)
                    .ok_or_else(|| err(1410, "You are not allowed to create a user with GRANT"))?;
                for privilege in privileges {
                    if !account.privileges.contains(&privilege) {
                        account.privileges.push(privilege);
                    }
                }
                server.ensure_account(account)?;
                Reply::ok()
            }
            Statement::Begin => {
                // BEGIN inside a transaction commits it first (implicit commit).
                self.commit().await?;
                self.transaction = Some(Transaction::default());
                Reply::ok()
            }
            Statement::Commit => {
                self.commit().await?;
                Reply::ok()
            }
            Statement::Rollback => {
                self.transaction = None;
                Reply::ok()
            }
            Statement::CreateDatabase { name } => {
                if !name.eq_ignore_ascii_case(COUNTER_DATABASE) {
                    return Err(err(
                        1044,
                        format!("the model has only database {COUNTER_DATABASE}, not {name}"),
                    ));
                }
                if let Some(refusal) = server.refuses_write(&self.account) {
                    return Err(refusal);
                }
                Reply::ok()
            }
            Statement::CreateTable { table } => {
                self.counter_table(&table)?;
                if let Some(refusal) = server.refuses_write(&self.account) {
                    return Err(refusal);
                }
                Reply::ok()
            }
            Statement::SelectCounter {
                table,
                key,
                for_update,
            } => {
                self.counter_table(&table)?;
                if for_update {
                    self.lock_row(&key).await?;
                }
                let value = self
                    .transaction
                    .as_ref()
                    .and_then(|t| t.changes.get(&key).copied())
                    .or_else(|| server.disk.row(&key));
                let rows = value
                    .map(|v| vec![vec![Some(v.to_string())]])
                    .unwrap_or_default();
                Reply::rows(&["value"], rows)
            }
            Statement::Upsert {
                table,
                key,
                value,
                on_duplicate,
            } => {
                self.counter_table(&table)?;
                if let Some(refusal) = server.refuses_write(&self.account) {
                    return Err(refusal);
                }
                let autocommit = self.transaction.is_none();
                if autocommit {
                    self.transaction = Some(Transaction::default());
                }
                if let Err(error) = self.lock_for_write(&key).await {
                    if autocommit {
                        self.transaction = None;
                    }
                    return Err(error);
                }
                let current = self
                    .transaction
                    .as_ref()
                    .and_then(|t| t.changes.get(&key).copied())
                    .or_else(|| server.disk.row(&key));
                let (new, affected_rows) = match (current, on_duplicate) {
                    (None, _) => (value, 1),
                    (Some(old), OnDuplicate::Add(n)) => (old + n, 2),
                    (Some(_), OnDuplicate::Set(n)) => (n, 2),
                };
                if let Some(transaction) = self.transaction.as_mut() {
                    transaction.changes.insert(key, new);
                }
                if autocommit {
                    self.commit().await?;
                }
                Reply::Ok { affected_rows }
            }
            Statement::Insert { table, rows } => {
                self.counter_table(&table)?;
                if let Some(refusal) = server.refuses_write(&self.account) {
                    return Err(refusal);
                }
                let autocommit = self.transaction.is_none();
                if autocommit {
                    self.transaction = Some(Transaction::default());
                }
                let inserted = self.insert_rows(&rows).await;
                if let Err(refusal) = inserted {
                    // A failed autocommit statement leaves nothing behind.
                    if autocommit {
                        self.transaction = None;
                    }
                    return Err(refusal);
                }
                if autocommit {
                    self.commit().await?;
                }
                Reply::Ok {
                    affected_rows: rows.len() as u64,
                }
            }
            Statement::PurgeBinaryLogs => {
                self.need("BINLOG_ADMIN")?;
                server.purge_binary_logs();
                Reply::ok()
            }
            Statement::LockTables(tables) => {
                // LOCK TABLES commits an open transaction and releases earlier table
                // locks (15.3.6 "LOCK TABLES and UNLOCK TABLES Statements").
                self.commit().await?;
                self.table_write_lock = None;
                for (table, _) in &tables {
                    self.counter_table(table)?;
                }
                if tables.iter().any(|(_, write)| *write) {
                    if let Some(refusal) = server.refuses_write(&self.account) {
                        return Err(refusal);
                    }
                    self.table_write_lock = Some(self.write_intent().await?);
                }
                Reply::ok()
            }
            Statement::UnlockTables => {
                self.table_write_lock = None;
                Reply::ok()
            }
            Statement::InstallPlugin { name } => {
                self.need("INSERT on mysql.plugin")?;
                // It writes mysql.plugin: refused under super_read_only (7.1.8,
                // `super_read_only`).
                if server.state().super_read_only {
                    return Err(err(
                        error_codes::OPTION_PREVENTS_STATEMENT,
                        "The MySQL server is running with the --super-read-only option so it cannot execute this statement",
                    ));
                }
                server.with_disk(|d| d.installed_plugins.insert(name.to_ascii_lowercase()));
                Reply::ok()
            }
            // No events exist in the model (docs/simulation.md): nothing to re-enable.
            Statement::SelectEvents => Reply::rows(&["EVENT_SCHEMA", "EVENT_NAME"], Vec::new()),
            Statement::SelectCloneStatus => {
                // The table exists only while the clone plugin is loaded (29.12.19.1).
                if !server.plugin_loaded(CLONE_PLUGIN) {
                    return Err(err(
                        error_codes::NO_SUCH_TABLE,
                        "Table 'performance_schema.clone_status' doesn't exist",
                    ));
                }
                let rows = server
                    .clone_status()
                    .map(|status| {
                        vec![
                            Some(status.state.to_string()),
                            Some(status.error_no.to_string()),
                            Some(status.error_message),
                        ]
                    })
                    .into_iter()
                    .collect();
                Reply::rows(&["STATE", "ERROR_NO", "ERROR_MESSAGE"], rows)
            }
        })
    }

    /// What a write of row `key` in the open transaction needs: the shared hold on the
    /// global read lock (unless `LOCK TABLES ... WRITE` already holds it), then the
    /// row's lock.
    async fn lock_for_write(&mut self, key: &str) -> Result<(), ServerError> {
        let needs_intent = self.table_write_lock.is_none()
            && self
                .transaction
                .as_ref()
                .is_some_and(|t| t.write_intent.is_none());
        if needs_intent {
            let intent = self.write_intent().await?;
            if let Some(transaction) = self.transaction.as_mut() {
                transaction.write_intent = Some(intent);
            }
        }
        self.lock_row(key).await
    }

    /// Takes row `key`'s lock for the open transaction (none outside a transaction),
    /// waiting at most `innodb_lock_wait_timeout`.
    async fn lock_row(&mut self, key: &str) -> Result<(), ServerError> {
        let Some(transaction) = self.transaction.as_mut() else {
            return Ok(());
        };
        if !transaction.locks.contains_key(key) {
            let lock = self.server.row_lock(key);
            let guard = tokio::time::timeout(LOCK_WAIT_TIMEOUT, lock.lock_owned())
                .await
                .map_err(|_| {
                    err(
                        1205,
                        "Lock wait timeout exceeded; try restarting transaction",
                    )
                })?;
            transaction.locks.insert(key.to_string(), guard);
        }
        Ok(())
    }

    /// Commits the open transaction, if any (read-only checked again at commit).
    async fn commit(&mut self) -> Result<(), ServerError> {
        let Some(transaction) = self.transaction.take() else {
            return Ok(());
        };
        if transaction.changes.is_empty() {
            return Ok(());
        }
        let changes = transaction.changes.into_iter().collect();
        // The write intent is held through the commit, semisync wait included: a
        // commit in progress blocks enabling read_only.
        let result = self.server.commit_local(&self.account, changes).await;
        drop(transaction.locks);
        drop(transaction.write_intent);
        result
    }

    /// Plain INSERT rows into the open transaction: a key that exists (committed or
    /// written by this transaction) is ERROR 1062, as the primary key makes it.
    async fn insert_rows(&mut self, rows: &[(String, i64)]) -> Result<(), ServerError> {
        for (key, value) in rows {
            self.lock_row(key).await?;
            let exists = self
                .transaction
                .as_ref()
                .is_some_and(|t| t.changes.contains_key(key))
                || self.server.disk.row(key).is_some();
            if exists {
                return Err(err(
                    1062,
                    format!("Duplicate entry '{key}' for key '{COUNTER_TABLE}.PRIMARY'"),
                ));
            }
            if let Some(transaction) = self.transaction.as_mut() {
                transaction.changes.insert(key.clone(), *value);
            }
        }
        Ok(())
    }

    fn set(&mut self, assignment: Assignment) -> Result<(), ServerError> {
        if assignment.scope == Scope::Session {
            self.variables
                .insert(assignment.name.clone(), assignment.value.text().to_string());
            return Ok(());
        }
        self.need("SUPER or SYSTEM_VARIABLES_ADMIN")?;
        let server = &self.server;
        // A plugin's variables exist only while it is loaded (7.6.7.1, 19.4.10.2).
        let plugin = if assignment.name.starts_with("clone_") {
            Some(CLONE_PLUGIN)
        } else if assignment.name.starts_with("rpl_semi_sync_source_")
            || assignment.name.starts_with("rpl_semi_sync_master_")
        {
            Some(SEMISYNC_SOURCE_PLUGIN)
        } else if assignment.name.starts_with("rpl_semi_sync_replica_")
            || assignment.name.starts_with("rpl_semi_sync_slave_")
        {
            Some(SEMISYNC_REPLICA_PLUGIN)
        } else {
            None
        };
        if plugin.is_some_and(|plugin| !server.plugin_loaded(plugin)) {
            return Err(err(
                error_codes::UNKNOWN_SYSTEM_VARIABLE,
                format!("Unknown system variable '{}'", assignment.name),
            ));
        }
        let mut state = server.state();
        match assignment.name.as_str() {
            // MySQL couples the two (MySQL 8.4 manual, "super_read_only"):
            // super_read_only=ON implies read_only=ON; read_only=OFF implies
            // super_read_only=OFF.
            "read_only" => {
                state.read_only = flag(&assignment)?;
                if !state.read_only {
                    state.super_read_only = false;
                }
            }
            "super_read_only" => {
                state.super_read_only = flag(&assignment)?;
                if state.super_read_only {
                    state.read_only = true;
                }
            }
            "rpl_semi_sync_source_enabled" | "rpl_semi_sync_master_enabled" => {
                state.semisync_source_enabled = flag(&assignment)?;
                state.semisync_active = state.semisync_source_enabled;
            }
            "rpl_semi_sync_replica_enabled" | "rpl_semi_sync_slave_enabled" => {
                state.semisync_replica_enabled = flag(&assignment)?;
            }
            "rpl_semi_sync_source_timeout" | "rpl_semi_sync_master_timeout" => {
                let ms: u64 = assignment.value.text().parse().map_err(|_| {
                    err(
                        1232,
                        format!("Incorrect argument type to variable '{}'", assignment.name),
                    )
                })?;
                state.semisync_timeout = Duration::from_millis(ms);
            }
            name => {
                state
                    .globals
                    .insert(name.to_string(), assignment.value.text().to_string());
            }
        }
        drop(state);
        if assignment.scope == Scope::Persist {
            // Written to mysqld-auto.cnf in the data directory: applied again at every
            // start (7.1.9.3 "Persisted System Variables"). The model treats
            // PERSIST_ONLY as PERSIST.
            server.with_disk(|d| {
                d.persisted
                    .insert(assignment.name.clone(), assignment.value.text().to_string())
            });
        }
        Ok(())
    }

    fn change_source(&mut self, options: Vec<(String, Value)>) -> Result<(), ServerError> {
        let server = &self.server;
        let number = |name: &str, value: &Value| -> Result<u32, ServerError> {
            value.text().parse().map_err(|_| {
                err(
                    frontend::PARSE_ERROR,
                    format!("{name} needs a number, not {}", value.text()),
                )
            })
        };
        if options.iter().all(|(name, _)| name == "SOURCE_DELAY") {
            let Some((name, value)) = options.last() else {
                return Ok(());
            };
            return server.set_source_delay(number(name, value)?);
        }
        let mut retry_count = None;
        let mut source =
            server
                .with_disk(|d| d.source.clone())
                .flatten()
                .unwrap_or(ReplicationSource {
                    host: String::new(),
                    port: 3306,
                    user: String::new(),
                    password: String::new(),
                    delay_seconds: 0,
                    connect_retry_seconds: 60,
                });
        for (name, value) in &options {
            match name.as_str() {
                "SOURCE_HOST" => source.host = value.text().to_string(),
                "SOURCE_PORT" => {
                    source.port = u16::try_from(number(name, value)?)
                        .map_err(|_| err(frontend::PARSE_ERROR, "SOURCE_PORT out of range"))?
                }
                "SOURCE_USER" => {
                    // 15.4.2.3: user names and passwords are limited to 32 characters.
                    let user = value.text();
                    if user.chars().count() > MAX_USER_NAME_CHARS {
                        return Err(err(
                            WRONG_STRING_LENGTH,
                            format!(
                                "String '{user}' is too long for user name (should be no longer than {MAX_USER_NAME_CHARS})"
                            ),
                        ));
                    }
                    source.user = user.to_string()
                }
                "SOURCE_PASSWORD" => {
                    if value.text().chars().count() > MAX_SOURCE_PASSWORD_CHARS {
                        return Err(err(
                            CHANGE_SOURCE_PASSWORD_LENGTH,
                            "The password provided for the replication user exceeds the maximum length of 32 characters",
                        ));
                    }
                    source.password = value.text().to_string()
                }
                // 0 retries without a limit; MySQL 8.4's default is 10 (15.4.2.3).
                "SOURCE_RETRY_COUNT" => {
                    retry_count = Some(u64::from(number(name, value)?));
                }
                "SOURCE_DELAY" => source.delay_seconds = number(name, value)?,
                "SOURCE_CONNECT_RETRY" => source.connect_retry_seconds = number(name, value)?,
                // Accepted, not modelled: the model always auto-positions, retries
                // without a limit, and has no TLS or RSA key exchange between servers.
                "SOURCE_AUTO_POSITION"
                | "GET_SOURCE_PUBLIC_KEY"
                | "SOURCE_HEARTBEAT_PERIOD"
                | "SOURCE_SSL" => {}
                other => {
                    return Err(err(
                        frontend::PARSE_ERROR,
                        format!(
                            "You have an error in your SQL syntax; unknown CHANGE REPLICATION SOURCE option {other}"
                        ),
                    ));
                }
            }
        }
        server.change_source(source, retry_count)
    }

    /// `SHOW REPLICA STATUS`: one row while a channel is configured, none otherwise. The
    /// columns are the subset of MySQL 8.4's that the model has values for.
    fn replica_status(&self) -> Reply {
        const COLUMNS: [&str; 16] = [
            "Source_Host",
            "Source_User",
            "Source_Port",
            "Connect_Retry",
            "Replica_IO_Running",
            "Replica_SQL_Running",
            "Last_Errno",
            "Seconds_Behind_Source",
            "Last_IO_Errno",
            "Last_IO_Error",
            "Last_SQL_Errno",
            "Last_SQL_Error",
            "SQL_Delay",
            "Retrieved_Gtid_Set",
            "Executed_Gtid_Set",
            "Auto_Position",
        ];
        let status = self.server.observe();
        let source = self.server.with_disk(|d| d.source.clone()).flatten();
        let (Some(replica), Some(source)) = (status.replica, source) else {
            return Reply::rows(&COLUMNS, Vec::new());
        };
        let io = match replica.io_thread {
            IoThreadState::Running => "Yes",
            IoThreadState::Connecting => "Connecting",
            IoThreadState::Stopped => "No",
        };
        let error = |e: &Option<bloodraven::seams::mysql::ReplicationError>| {
            (
                Some(e.as_ref().map(|e| e.number).unwrap_or(0).to_string()),
                Some(e.as_ref().map(|e| e.message.clone()).unwrap_or_default()),
            )
        };
        let (io_errno, io_error) = error(&replica.last_io_error);
        let (sql_errno, sql_error) = error(&replica.last_sql_error);
        let row = vec![
            Some(source.host),
            Some(source.user),
            Some(source.port.to_string()),
            Some(source.connect_retry_seconds.to_string()),
            Some(io.to_string()),
            Some(
                if replica.sql_thread_running {
                    "Yes"
                } else {
                    "No"
                }
                .to_string(),
            ),
            sql_errno.clone(),
            replica.seconds_behind_source.map(|s| s.to_string()),
            io_errno,
            io_error,
            sql_errno,
            sql_error,
            Some(replica.sql_delay_seconds.to_string()),
            Some(replica.retrieved_gtid_set.to_string()),
            Some(status.gtid_executed.to_string()),
            Some(if replica.auto_position { "1" } else { "0" }.to_string()),
        ];
        Reply::rows(&COLUMNS, vec![row])
    }
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_matches_mysql_wildcards_case_insensitively() {
        assert!(like(
            "Rpl_semi_sync_source_%",
            "rpl_semi_sync_source_status"
        ));
        assert!(like(
            "rpl_semi_sync_source_enabled",
            "rpl_semi_sync_source_enabled"
        ));
        assert!(!like(
            "rpl_semi_sync_source_enabled",
            "rpl_semi_sync_source_enabled_x"
        ));
        assert!(like("read_onl_", "read_only"));
        assert!(!like("read_only", "super_read_only"));
        assert!(like("%", ""));
    }
}
