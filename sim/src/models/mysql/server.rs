//! The modelled mysqld's state and the commit path: durable state on the data volume,
//! per-run state in memory, and what a statement does to them (read-only checks, commit
//! latency, semisync waits). The process and its client connections live in
//! `process.rs`; replication threads in `replication.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bloodraven::gtid::GtidSet;
use bloodraven::seams::SharedClock;
use bloodraven::seams::mysql::{
    GtidWait, IoThreadState, MysqlStatus, ReplicaStatus, ReplicationError, ReplicationSource,
    SemisyncSourceStatus, error_codes,
};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::protocol::{CloneSnapshot, Transaction};
use super::{Account, MysqlConfig, replication};
use crate::pod::SharedDialer;

/// What survives a crash: the data directory (InnoDB data, binlog, `auto.cnf`, the
/// replication metadata tables). Created empty; initialised at first boot.
#[derive(Default)]
pub struct DataDir {
    inner: Mutex<Option<Durable>>,
}

impl DataDir {
    pub(super) fn lock(&self) -> MutexGuard<'_, Option<Durable>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The server UUID, once the server has booted on this data directory.
    pub fn server_uuid(&self) -> Option<String> {
        self.lock().as_ref().map(|d| d.server_uuid.clone())
    }

    /// `gtid_executed` as persisted, for tests and invariant checks.
    pub fn gtid_executed(&self) -> GtidSet {
        self.lock()
            .as_ref()
            .map(|d| d.gtid_executed.clone())
            .unwrap_or_default()
    }

    /// One row of the counter table as persisted (a point read: the table grows by 20
    /// rows a second under the counter workload, so copying it per read is quadratic).
    pub fn row(&self, key: &str) -> Option<i64> {
        self.lock().as_ref().and_then(|d| d.data.get(key).copied())
    }

    /// The counter table as persisted.
    pub fn rows(&self) -> BTreeMap<String, i64> {
        self.lock()
            .as_ref()
            .map(|d| d.data.clone())
            .unwrap_or_default()
    }
}

pub(super) struct Durable {
    pub server_uuid: String,
    pub data: BTreeMap<String, i64>,
    /// The binary log, oldest first; `binlog_first_seq` numbers its first entry.
    pub binlog: VecDeque<Transaction>,
    pub binlog_first_seq: u64,
    pub gtid_executed: GtidSet,
    pub gtid_purged: GtidSet,
    /// The replication channel (`mysql.slave_master_info`), crash-safe as in MySQL 8.
    pub source: Option<ReplicationSource>,
    /// Accounts created by statements (`mysql.user`), by user name. The image's own
    /// accounts (root, `MYSQL_USER`) are created at initialisation without binlogging
    /// and live in `Server::accounts`.
    pub accounts: BTreeMap<String, Account>,
    /// Plugins registered by `INSTALL PLUGIN` (`mysql.plugin`): loaded at every start.
    pub installed_plugins: std::collections::BTreeSet<String>,
    /// The last CLONE on this server as recipient (`performance_schema.clone_status`,
    /// kept in the data directory so that it survives the restart that ends a clone:
    /// 29.12.19.1 "The clone_status Table").
    pub clone_status: Option<CloneStatus>,
    /// `SOURCE_RETRY_COUNT` of the channel (0: no limit), kept with it in
    /// `mysql.slave_master_info`.
    pub source_retry_count: u64,
    /// `mysqld-auto.cnf`: the values `SET PERSIST` wrote, by variable name.
    pub persisted: BTreeMap<String, String>,
}

/// One row of `performance_schema.clone_status`: `STATE` (`In Progress`,
/// `Completed`, `Failed`), `ERROR_NO` and `ERROR_MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneStatus {
    pub state: &'static str,
    pub error_no: u16,
    pub error_message: String,
}

impl Durable {
    pub(super) fn binlog_end_seq(&self) -> u64 {
        self.binlog_first_seq + self.binlog.len() as u64
    }

    fn append(&mut self, transaction: Transaction) {
        for (key, value) in &transaction.changes {
            self.data.insert(key.clone(), *value);
        }
        if let Some(account) = &transaction.account {
            self.accounts.insert(account.user.clone(), account.clone());
        }
        self.gtid_executed
            .insert(&transaction.uuid, transaction.gno);
        self.binlog.push_back(transaction);
    }
}

/// Replica-side state that is rebuilt at every start (relay_log_recovery=ON: the relay
/// log is discarded at startup and fetched again through auto-position).
pub(super) struct ReplicaRuntime {
    pub io: Option<AbortHandle>,
    pub sql: Option<AbortHandle>,
    pub io_state: IoThreadState,
    pub relay: VecDeque<Transaction>,
    pub retrieved: GtidSet,
    pub last_io_error: Option<ReplicationError>,
    pub last_sql_error: Option<ReplicationError>,
}

impl Default for ReplicaRuntime {
    fn default() -> Self {
        Self {
            io: None,
            sql: None,
            io_state: IoThreadState::Stopped,
            relay: VecDeque::new(),
            retrieved: GtidSet::default(),
            last_io_error: None,
            last_sql_error: None,
        }
    }
}

pub(super) struct Runtime {
    pub read_only: bool,
    pub super_read_only: bool,
    pub next_connection_id: u64,
    /// Client connections by id, with the handle that kills them.
    pub connections: BTreeMap<u64, AbortHandle>,
    /// The ids among `connections` that came in on the administrative interface.
    pub admin_connections: std::collections::BTreeSet<u64>,
    /// Binlog dump threads by replica server UUID: a replica that reconnects replaces its
    /// old dump thread, as MySQL does.
    pub dumps: BTreeMap<String, AbortHandle>,
    pub replica: ReplicaRuntime,
    pub semisync_active: bool,
    pub semisync_no_tx: u64,
    /// `rpl_semi_sync_source_enabled`, `rpl_semi_sync_replica_enabled`,
    /// `rpl_semi_sync_source_timeout`: dynamic, from the config at boot.
    pub semisync_source_enabled: bool,
    pub semisync_replica_enabled: bool,
    pub semisync_timeout: Duration,
    /// Global variables the model stores without interpreting them (`SET GLOBAL x = v`).
    pub globals: BTreeMap<String, String>,
    /// Every task this run spawned, aborted together at shutdown (crash, clone restart).
    pub tasks: Vec<AbortHandle>,
}

/// One running mysqld.
pub(super) struct Server {
    pub config: MysqlConfig,
    pub accounts: Vec<Account>,
    pub host: String,
    pub clock: SharedClock,
    pub dialer: SharedDialer,
    pub disk: Arc<DataDir>,
    pub state: Mutex<Runtime>,
    /// Bumped on every commit (client, forced or replicated): wakes GTID waits and dumps.
    pub commits: watch::Sender<u64>,
    /// Transactions acknowledged by a semisync replica.
    pub acks: watch::Sender<GtidSet>,
    /// Wakes the SQL thread when the relay log grows.
    pub relay_grew: tokio::sync::Notify,
    /// Tells the main loop to restart (after CLONE).
    pub restart: tokio::sync::Notify,
    /// Row locks of the counter table by key: a transaction holds a row's lock from its
    /// first write or `FOR UPDATE` read of it to COMMIT/ROLLBACK (or until its connection
    /// dies), as InnoDB's exclusive record locks do.
    pub row_locks: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The global read lock that enabling `read_only` takes (MySQL 8.4 manual, 7.1.8
    /// "Server System Variables", `read_only`): every writing transaction and every
    /// `LOCK TABLES ... WRITE` holds it shared until it ends, so `SET GLOBAL
    /// read_only|super_read_only = ON` waits for them, up to the session's
    /// `lock_wait_timeout`. Tokio's lock is fair: while the SET waits, new writers queue
    /// behind it, as the manual says other clients' transactions and table locks do.
    pub global_read_lock: Arc<tokio::sync::RwLock<()>>,
}

pub(super) type ServerError = (u16, String);

/// `SOURCE_RETRY_COUNT`'s default in MySQL 8.4 (15.4.2.3).
pub(super) const DEFAULT_SOURCE_RETRY_COUNT: u64 = 10;

/// Plugin names as `INSTALL PLUGIN` and `information_schema.PLUGINS` spell them.
pub(super) const CLONE_PLUGIN: &str = "clone";
pub(super) const SEMISYNC_SOURCE_PLUGIN: &str = "rpl_semi_sync_source";
pub(super) const SEMISYNC_REPLICA_PLUGIN: &str = "rpl_semi_sync_replica";

pub(super) fn err(code: u16, message: impl Into<String>) -> ServerError {
    (code, message.into())
}

impl Server {
    pub(super) fn state(&self) -> MutexGuard<'_, Runtime> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the durable state. Lock order: `state` before `disk`, never the reverse.
    pub(super) fn with_disk<T>(&self, f: impl FnOnce(&mut Durable) -> T) -> Option<T> {
        self.disk.lock().as_mut().map(f)
    }

    /// The lock of the counter row `key`.
    pub(super) fn row_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.row_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    pub(super) fn server_uuid(&self) -> String {
        self.disk.server_uuid().unwrap_or_default()
    }

    pub(super) fn now_us(&self) -> i64 {
        self.clock.now().as_microsecond()
    }

    pub(super) fn spawn<F>(self: &Arc<Self>, future: F) -> AbortHandle
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(future).abort_handle();
        self.state().tasks.push(handle.clone());
        handle
    }

    /// The account `user` logs in as: the image's accounts first, then those created by
    /// statements (which replicate).
    pub(super) fn account(&self, user: &str) -> Option<Account> {
        let created = self
            .with_disk(|disk| disk.accounts.get(user).cloned())
            .flatten();
        self.accounts
            .iter()
            .find(|a| a.user == user)
            .cloned()
            .or(created)
    }

    /// Whether plugin `name` is loaded: from the command line, or registered by an
    /// earlier `INSTALL PLUGIN` (either of its names).
    pub(super) fn plugin_loaded(&self, name: &str) -> bool {
        let (at_boot, other_name) = match name {
            CLONE_PLUGIN => (self.config.clone_plugin, CLONE_PLUGIN),
            SEMISYNC_SOURCE_PLUGIN => (self.config.semisync_source_plugin, "rpl_semi_sync_master"),
            SEMISYNC_REPLICA_PLUGIN => (self.config.semisync_replica_plugin, "rpl_semi_sync_slave"),
            _ => (false, name),
        };
        at_boot
            || self
                .with_disk(|d| {
                    d.installed_plugins.contains(name) || d.installed_plugins.contains(other_name)
                })
                .unwrap_or(false)
    }

    pub(super) fn set_clone_status(&self, status: CloneStatus) {
        self.with_disk(|d| d.clone_status = Some(status));
    }

    /// The clone status row, if a clone ever ran here.
    pub(super) fn clone_status(&self) -> Option<CloneStatus> {
        self.with_disk(|d| d.clone_status.clone()).flatten()
    }

    /// The read-only refusal for a write by `account`, if the server refuses it
    /// (MySQL 8.4 manual, "read_only" and "super_read_only" system variables).
    pub(super) fn refuses_write(&self, account: &Account) -> Option<ServerError> {
        let state = self.state();
        if state.super_read_only {
            Some(read_only_error("--super-read-only"))
        } else if state.read_only && !account.super_user {
            Some(read_only_error("--read-only"))
        } else {
            None
        }
    }

    fn bump_commits(&self) {
        self.commits.send_modify(|n| *n += 1);
    }

    /// Commits a transaction originating here: the commit latency (a KILL or crash
    /// inside it loses the transaction), the read-only checks, the durable append, then
    /// the semisync wait.
    pub(super) async fn commit_local(
        self: &Arc<Self>,
        account: &Account,
        changes: Vec<(String, i64)>,
    ) -> Result<(), ServerError> {
        tokio::time::sleep(self.config.commit_latency).await;
        let transaction = {
            if let Some(refusal) = self.refuses_write(account) {
                return Err(refusal);
            }
            let _state = self.state();
            let now = self.now_us();
            self.with_disk(|disk| {
                let uuid = disk.server_uuid.clone();
                let gno = disk.gtid_executed.next_gno(&uuid);
                let transaction = Transaction {
                    uuid,
                    gno,
                    changes,
                    original_commit_us: now,
                    account: None,
                };
                disk.append(transaction.clone());
                transaction
            })
            .ok_or_else(|| err(2013, "server is not initialised"))?
        };
        self.bump_commits();
        self.semisync_wait(&transaction).await;
        Ok(())
    }

    /// AFTER_SYNC semisync: the transaction is already durable in the binlog; the client's
    /// OK waits for one replica ack or the timeout, after which the source falls back to
    /// asynchronous replication (`Rpl_semi_sync_source_status=OFF`) until a replica catches up.
    async fn semisync_wait(&self, transaction: &Transaction) {
        let timeout = {
            let state = self.state();
            if !state.semisync_source_enabled || !state.semisync_active {
                return;
            }
            state.semisync_timeout
        };
        let mut acks = self.acks.subscribe();
        let acked = tokio::time::timeout(timeout, async {
            loop {
                if acks
                    .borrow_and_update()
                    .contains(&transaction.uuid, transaction.gno)
                {
                    return;
                }
                if acks.changed().await.is_err() {
                    // No more acks can come; wait out the timeout like MySQL does.
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        if acked.is_err() {
            let mut state = self.state();
            if state.semisync_active {
                tracing::warn!(host = %self.host, "semisync timeout: switching to asynchronous replication");
            }
            state.semisync_active = false;
            state.semisync_no_tx += 1;
        }
    }

    /// A semisync replica acknowledged `uuid:gno`; an ack of the newest binlog transaction
    /// means the replica caught up, and semisync switches back on.
    pub(super) fn record_ack(&self, uuid: &str, gno: u64) {
        self.acks.send_modify(|acked| acked.insert(uuid, gno));
        let caught_up = self
            .with_disk(|disk| {
                disk.binlog
                    .back()
                    .is_some_and(|t| t.uuid == uuid && t.gno == gno)
            })
            .unwrap_or(false);
        let mut state = self.state();
        if caught_up && state.semisync_source_enabled {
            state.semisync_active = true;
        }
    }

    /// Applies a replicated transaction (SQL thread). Already-executed GTIDs are skipped,
    /// as MySQL's auto-skip does. Replication threads are not subject to read-only.
    pub(super) fn apply_replicated(&self, transaction: &Transaction) {
        let applied = self
            .with_disk(|disk| {
                if disk
                    .gtid_executed
                    .contains(&transaction.uuid, transaction.gno)
                {
                    false
                } else {
                    disk.append(transaction.clone());
                    true
                }
            })
            .unwrap_or(false);
        if applied {
            self.bump_commits();
        }
    }

    pub(super) fn observe(&self) -> MysqlStatus {
        let state = self.state();
        let now = self.now_us();
        let (uuid, executed, purged, source) = self
            .with_disk(|d| {
                (
                    d.server_uuid.clone(),
                    d.gtid_executed.clone(),
                    d.gtid_purged.clone(),
                    d.source.clone(),
                )
            })
            .unwrap_or_default();
        let replica = source.map(|source| {
            let r = &state.replica;
            let sql_running = r.sql.is_some();
            let lag =
                if !sql_running || (r.relay.is_empty() && r.io_state != IoThreadState::Running) {
                    None
                } else {
                    Some(match r.relay.front() {
                        None => 0,
                        Some(head) => {
                            u64::try_from((now - head.original_commit_us) / 1_000_000).unwrap_or(0)
                        }
                    })
                };
            ReplicaStatus {
                source_host: source.host.clone(),
                source_port: source.port,
                io_thread: r.io_state,
                sql_thread_running: sql_running,
                retrieved_gtid_set: r.retrieved.clone(),
                seconds_behind_source: lag,
                last_io_error: r.last_io_error.clone(),
                last_sql_error: r.last_sql_error.clone(),
                auto_position: true,
                sql_delay_seconds: source.delay_seconds,
            }
        });
        MysqlStatus {
            server_uuid: uuid,
            read_only: state.read_only,
            super_read_only: state.super_read_only,
            gtid_executed: executed,
            gtid_purged: purged,
            replica,
            semisync_source: SemisyncSourceStatus {
                enabled: state.semisync_source_enabled,
                active: state.semisync_source_enabled && state.semisync_active,
                no_ack_transactions: state.semisync_no_tx,
            },
        }
    }

    /// `CHANGE REPLICATION SOURCE` with receiver options; `retry_count` is
    /// `SOURCE_RETRY_COUNT` when given (kept otherwise, 10 for a new channel).
    pub(super) fn change_source(
        self: &Arc<Self>,
        source: ReplicationSource,
        retry_count: Option<u64>,
    ) -> Result<(), ServerError> {
        let mut state = self.state();
        if state.replica.io.is_some() {
            return Err(err(
                error_codes::IO_THREAD_MUST_STOP,
                "This operation cannot be performed with a running replica io thread; run STOP REPLICA IO_THREAD FOR CHANNEL '' first.",
            ));
        }
        if state.replica.sql.is_some() {
            return Err(err(
                error_codes::SQL_THREAD_MUST_STOP,
                "This operation cannot be performed with a running replica sql thread; run STOP REPLICA SQL_THREAD FOR CHANNEL '' first.",
            ));
        }
        // CHANGE REPLICATION SOURCE deletes the relay logs.
        state.replica.relay.clear();
        state.replica.retrieved = GtidSet::default();
        self.with_disk(|disk| {
            if disk.source.is_none() {
                disk.source_retry_count = DEFAULT_SOURCE_RETRY_COUNT;
            }
            if let Some(count) = retry_count {
                disk.source_retry_count = count;
            }
            disk.source = Some(source)
        });
        Ok(())
    }

    /// `CHANGE REPLICATION SOURCE TO SOURCE_DELAY = n`: needs a configured channel and a
    /// stopped SQL thread (MySQL refuses with ER_REPLICA_CHANNEL_SQL_THREAD_MUST_STOP).
    pub(super) fn set_source_delay(&self, seconds: u32) -> Result<(), ServerError> {
        let state = self.state();
        if state.replica.sql.is_some() {
            return Err(err(
                error_codes::SQL_THREAD_MUST_STOP,
                "This operation cannot be performed with a running replica sql thread; run STOP REPLICA SQL_THREAD FOR CHANNEL '' first.",
            ));
        }
        let configured = self
            .with_disk(|disk| match disk.source.as_mut() {
                Some(source) => {
                    source.delay_seconds = seconds;
                    true
                }
                None => false,
            })
            .unwrap_or(false);
        drop(state);
        if configured {
            Ok(())
        } else {
            Err(err(
                error_codes::REPLICA_NOT_CONFIGURED,
                "The server is not configured as replica; fix in config file or with CHANGE REPLICATION SOURCE TO",
            ))
        }
    }

    pub(super) fn reset_replica_all(&self) -> Result<(), ServerError> {
        let mut state = self.state();
        if state.replica.io.is_some() || state.replica.sql.is_some() {
            return Err(err(
                error_codes::REPLICA_MUST_STOP,
                "This operation cannot be performed with running replication threads; run STOP REPLICA FOR ALL CHANNELS first",
            ));
        }
        state.replica = ReplicaRuntime::default();
        self.with_disk(|disk| disk.source = None);
        Ok(())
    }

    pub(super) fn start_replica(self: &Arc<Self>) -> Result<(), ServerError> {
        let configured = self
            .with_disk(|disk| disk.source.is_some())
            .unwrap_or(false);
        if !configured {
            return Err(err(
                error_codes::REPLICA_NOT_CONFIGURED,
                "The server is not configured as replica; fix in config file or with CHANGE REPLICATION SOURCE TO",
            ));
        }
        let (start_io, start_sql) = {
            let mut state = self.state();
            state.replica.last_io_error = None;
            state.replica.last_sql_error = None;
            (state.replica.io.is_none(), state.replica.sql.is_none())
        };
        if start_io {
            let handle = self.spawn(replication::io_thread(self.clone()));
            let mut state = self.state();
            state.replica.io = Some(handle);
            state.replica.io_state = IoThreadState::Connecting;
        }
        if start_sql {
            let handle = self.spawn(replication::sql_thread(self.clone()));
            self.state().replica.sql = Some(handle);
        }
        Ok(())
    }

    pub(super) fn stop_replica(&self) {
        let mut state = self.state();
        if let Some(io) = state.replica.io.take() {
            io.abort();
        }
        if let Some(sql) = state.replica.sql.take() {
            sql.abort();
        }
        state.replica.io_state = IoThreadState::Stopped;
    }

    /// Ends client connection `id` (`KILL CONNECTION`); false if there is none.
    pub(super) fn kill(&self, id: u64) -> bool {
        match self.state().connections.remove(&id) {
            Some(handle) => {
                handle.abort();
                true
            }
            None => false,
        }
    }

    /// The ids of the client connections (not dump threads), in order.
    pub(super) fn client_connections(&self) -> Vec<u64> {
        self.state().connections.keys().copied().collect()
    }

    /// `WAIT_FOR_EXECUTED_GTID_SET`; `None` waits without a limit, as a timeout of 0 does
    /// in MySQL.
    pub(super) async fn wait_for_gtids(
        &self,
        set: &GtidSet,
        timeout: Option<Duration>,
    ) -> GtidWait {
        let mut commits = self.commits.subscribe();
        let timeout = timeout.unwrap_or(Duration::MAX);
        let reached = tokio::time::timeout(timeout, async {
            loop {
                commits.borrow_and_update();
                if set.is_subset(&self.disk.gtid_executed()) {
                    return;
                }
                if commits.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        if reached.is_ok() {
            GtidWait::Reached
        } else {
            GtidWait::TimedOut
        }
    }

    pub(super) fn clone_snapshot(&self) -> Option<CloneSnapshot> {
        self.with_disk(|disk| CloneSnapshot {
            data: disk.data.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            gtid_executed: disk.gtid_executed.clone(),
            source: disk.source.clone(),
            accounts: disk.accounts.values().cloned().collect(),
        })
    }

    /// Replaces the data directory's contents with a donor snapshot. The server UUID
    /// (`auto.cnf`) is not cloned; the binlog is not cloned, so everything cloned is
    /// purged from this server's point of view.
    pub(super) fn install_snapshot(&self, snapshot: CloneSnapshot) {
        self.with_disk(|disk| {
            disk.data = snapshot.data.into_iter().collect();
            disk.gtid_executed = snapshot.gtid_executed.clone();
            disk.gtid_purged = snapshot.gtid_executed;
            disk.binlog_first_seq = disk.binlog_end_seq();
            disk.binlog.clear();
            disk.source = snapshot.source;
            disk.accounts = snapshot
                .accounts
                .into_iter()
                .map(|a| (a.user.clone(), a))
                .collect();
        });
    }

    /// `CREATE USER IF NOT EXISTS`, `ALTER USER ... IDENTIFIED BY`, `GRANT`: one
    /// binlogged transaction per statement in MySQL; the model commits the end state as
    /// one transaction (what a replica ends up with is the same). Refused under
    /// `super_read_only`, allowed to a SUPER user under `read_only`, as MySQL does.
    pub(super) fn ensure_account(&self, account: Account) -> Result<(), ServerError> {
        {
            let state = self.state();
            if state.super_read_only {
                return Err(read_only_error("--super-read-only"));
            }
        }
        let unchanged = self
            .with_disk(|disk| disk.accounts.get(&account.user) == Some(&account))
            .unwrap_or(false);
        if unchanged {
            // IF NOT EXISTS with nothing to change still binlogs in MySQL; the model
            // skips it so that repeated checks do not grow gtid_executed.
            return Ok(());
        }
        let now = self.now_us();
        self.with_disk(|disk| {
            let uuid = disk.server_uuid.clone();
            let gno = disk.gtid_executed.next_gno(&uuid);
            disk.append(Transaction {
                uuid,
                gno,
                changes: Vec::new(),
                original_commit_us: now,
                account: Some(account),
            });
        })
        .ok_or_else(|| err(2013, "server is not initialised"))?;
        self.bump_commits();
        Ok(())
    }

    pub(super) fn purge_binary_logs(&self) {
        self.with_disk(|disk| {
            disk.gtid_purged = disk.gtid_executed.clone();
            disk.binlog_first_seq = disk.binlog_end_seq();
            disk.binlog.clear();
        });
    }
}

fn read_only_error(option: &str) -> ServerError {
    err(
        error_codes::OPTION_PREVENTS_STATEMENT,
        format!(
            "The MySQL server is running with the {option} option so it cannot execute this statement"
        ),
    )
}

pub(super) fn denied(privilege: &str) -> ServerError {
    err(
        error_codes::SPECIFIC_ACCESS_DENIED,
        format!(
            "Access denied; you need (at least one of) the {privilege} privilege(s) for this operation"
        ),
    )
}

/// A server UUID derived from the pod, the host and the simulated time of first boot:
/// deterministic for a seed, different for a re-provisioned volume.
pub(super) fn generate_server_uuid(pod: &str, host: &str) -> String {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default().as_nanos();
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for byte in pod
        .bytes()
        .chain([0])
        .chain(host.bytes())
        .chain(elapsed.to_le_bytes())
    {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let hex = format!("{hash:032x}");
    // Shape it as a version-1-like UUID, as MySQL generates.
    format!(
        "{}-{}-1{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}
