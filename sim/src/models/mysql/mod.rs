//! A model of one MySQL 8 server (mysqld in a pod), detailed enough that the operator's
//! failover logic meets the behaviours that make failover hard: GTID sets, asynchronous
//! and semi-synchronous replication with auto-position, relay logs lost on crash,
//! `read_only`/`super_read_only`, errant transactions, `CLONE`, killed connections.
//!
//! The server's committed state lives on the pod's data volume (survives crashes and pod
//! deletion); everything else (flags, replication threads, relay log, connections) is
//! rebuilt at every start. See docs/simulation.md, "MySQL model", for what is and is not
//! modelled and where each behaviour comes from.

pub mod dump;
mod frontend;
mod observer;
mod process;
pub mod protocol;
mod replication;
mod server;
mod session;

use std::collections::BTreeMap;
use std::time::Duration;

use bloodraven::production::mysql::MysqlProtocolConnector;
use bloodraven::seams::mysql::MysqlTimeouts;

use crate::models::s3::SimStorageDialer;
use crate::pod::{PodContext, PodProgram, ProgramFuture, SharedDialer, Volume};

/// The production MySQL connector, dialling through a pod's simulated network: the only
/// way the operator, the sidecar, the workload, the chaos faults and the tests reach the
/// model (there is no simulation-only client).
pub fn mysql_connector(dialer: SharedDialer, timeouts: MysqlTimeouts) -> MysqlProtocolConnector {
    MysqlProtocolConnector::new(std::sync::Arc::new(SimStorageDialer::new(dialer)), timeouts)
}

pub use observer::{MysqlObserver, ObservedServer};
pub use server::{CloneStatus, DataDir};

/// The port mysqld listens on.
pub const MYSQL_PORT: u16 = 3306;

/// `admin_port`'s default (MySQL 8.4 manual 7.1.8 "Server System Variables").
pub const MYSQL_ADMIN_PORT: u16 = 33062;

/// A database account. `super_user` accounts (root) hold every privilege: SUPER (write
/// while only `read_only` is ON, set global variables, kill), CLONE_ADMIN and so on.
/// Others are ordinary clients holding only the global `privileges` listed (MySQL's
/// names: `REPLICATION SLAVE`, `BACKUP_ADMIN`, ...).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    pub user: String,
    pub password: String,
    pub super_user: bool,
    #[serde(default)]
    pub privileges: Vec<String>,
    /// The one database the account holds every privilege on (the image's
    /// `MYSQL_DATABASE`), if any.
    #[serde(default)]
    pub database: Option<String>,
}

impl Account {
    /// Whether the account holds the global privilege `privilege`.
    pub fn has(&self, privilege: &str) -> bool {
        self.super_user || self.privileges.iter().any(|p| p == privilege)
    }

    /// Whether the account may read and write tables of `database`.
    pub fn may_use(&self, database: &str) -> bool {
        self.super_user || self.database.as_deref() == Some(database)
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .field("super_user", &self.super_user)
            .field("privileges", &self.privileges)
            .finish_non_exhaustive()
    }
}

/// How a modelled mysqld behaves. The defaults are MySQL 8's defaults where MySQL has one;
/// container args in mysqld's own `--flag=value` form override them (see
/// [`MysqlConfig::apply_args`]).
#[derive(Debug, Clone)]
pub struct MysqlConfig {
    pub port: u16,
    /// Accounts besides those the official image creates from its environment
    /// (`MYSQL_ROOT_PASSWORD` -> root, `MYSQL_USER`/`MYSQL_PASSWORD` -> an ordinary user
    /// with every privilege on `MYSQL_DATABASE` when that is set).
    pub accounts: Vec<Account>,
    /// Name of the pod volume that holds the data directory. Without such a volume the
    /// data lives only as long as this program run (like a container without a PVC).
    pub data_volume: String,
    /// Time from process start to accepting connections (InnoDB recovery and so on).
    pub startup_time: Duration,
    /// Time a client write spends before it is durable (binlog fsync). A crash or a KILL
    /// inside this window loses the transaction, as it would on a real server.
    pub commit_latency: Duration,
    /// The semisync plugins loaded at boot (`--plugin-load-add=semisync_source.so`,
    /// `semisync_replica.so`; 19.4.10.2 "Installing Semisynchronous Replication"):
    /// their `rpl_semi_sync_*` variables exist only while they are loaded.
    pub semisync_source_plugin: bool,
    pub semisync_replica_plugin: bool,
    /// `rpl_semi_sync_source_enabled` (OFF by default, also with the plugin loaded).
    pub semisync_source_enabled: bool,
    /// `rpl_semi_sync_replica_enabled`.
    pub semisync_replica_enabled: bool,
    /// `rpl_semi_sync_source_timeout` (MySQL default 10 s).
    pub semisync_timeout: Duration,
    /// `replica_net_timeout` (MySQL default 60 s): a replica that hears nothing from its
    /// source for this long reconnects.
    pub replica_net_timeout: Duration,
    /// `SOURCE_HEARTBEAT_PERIOD` (MySQL default: half of `replica_net_timeout`).
    pub heartbeat_period: Duration,
    /// `skip_replica_start`: do not start the replication threads at boot.
    pub skip_replica_start: bool,
    /// `read_only` / `super_read_only` at boot. ON by default: every mysqld of the
    /// group boots fenced (docs/design.md "Safety assumptions"; via my.cnf); `--read-only=OFF` or
    /// `--super-read-only=OFF` on the command line override it, as they override
    /// my.cnf on a real server (for fixtures without the operator).
    pub boot_read_only: bool,
    pub boot_super_read_only: bool,
    /// `admin_address`: with it, mysqld also listens on the administrative interface
    /// (`admin_port`), whose connections `max_connections` does not count (7.1.12.1
    /// "Connection Interfaces", 7.1.12.2 "Administrative Connection Management").
    pub admin_address: Option<String>,
    /// `admin_port` (default 33062).
    pub admin_port: u16,
    /// `max_connections` (default 151): client connections on the main port beyond it
    /// are refused with 1040, except one more for an account with CONNECTION_ADMIN
    /// (7.1.12.1).
    pub max_connections: usize,
    /// The clone plugin loaded at boot (`--plugin-load-add=mysql_clone.so` or
    /// `--plugin-load=...`; 7.6.7.1 "Installing the Clone Plugin"). `INSTALL PLUGIN
    /// clone` loads it too, and for every later start (it is registered in
    /// `mysql.plugin` on the data volume).
    pub clone_plugin: bool,
    /// mysqld runs under a supervisor that restarts it in place (mysqld_safe or
    /// systemd, which set `MYSQLD_PARENT_PID` / `NOTIFY_SOCKET` in its environment).
    /// The official image runs mysqld as the container's process: unsupervised, so a
    /// CLONE ends with ER_RESTART_SERVER_FAILED (3707) and a shutdown (7.6.7.3
    /// "Cloning Remote Data"; 15.7.8.8 "RESTART Statement").
    pub supervised: bool,
    /// `persisted_globals_load` (default ON): apply `mysqld-auto.cnf` at start.
    pub persisted_globals_load: bool,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        Self {
            port: MYSQL_PORT,
            accounts: Vec::new(),
            data_volume: "data".to_string(),
            startup_time: Duration::from_millis(500),
            commit_latency: Duration::from_millis(2),
            semisync_source_plugin: false,
            semisync_replica_plugin: false,
            semisync_source_enabled: false,
            semisync_replica_enabled: false,
            semisync_timeout: Duration::from_secs(10),
            replica_net_timeout: Duration::from_secs(60),
            heartbeat_period: Duration::from_secs(30),
            skip_replica_start: false,
            boot_read_only: true,
            boot_super_read_only: true,
            admin_address: None,
            admin_port: MYSQL_ADMIN_PORT,
            max_connections: 151,
            clone_plugin: false,
            supervised: false,
            persisted_globals_load: true,
        }
    }
}

/// Why a container's args could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("mysqld argument {arg:?}: {problem}")]
pub struct MysqlArgError {
    pub arg: String,
    pub problem: String,
}

impl MysqlConfig {
    /// Whether the administrative interface accepts only connections from the server's
    /// own host: `admin_address` is a loopback address (in the simulation a pod dials
    /// `localhost` as its own host, so "loopback" means "from the same host").
    pub fn admin_loopback_only(&self) -> bool {
        matches!(
            self.admin_address.as_deref(),
            Some("127.0.0.1" | "::1" | "localhost")
        )
    }

    /// Applies mysqld command-line options the model understands (`--name=value`, `-` and
    /// `_` interchangeable, booleans as ON/OFF/1/0/TRUE/FALSE); unknown options are ignored,
    /// as the model does not implement most of mysqld.
    pub fn apply_args(&mut self, args: &[String]) -> Result<(), MysqlArgError> {
        // Semisync options with the side (source?) whose plugin defines them: mysqld
        // refuses to start with an option no loaded plugin defines ("unknown
        // variable"), wherever the plugin-load option stands on the command line.
        let mut plugin_options: Vec<(String, bool)> = Vec::new();
        for arg in args {
            let Some(option) = arg.strip_prefix("--") else {
                continue;
            };
            let (name, value) = match option.split_once('=') {
                Some((name, value)) => (name.replace('_', "-"), Some(value)),
                None => (option.replace('_', "-"), None),
            };
            let bad = |problem: &str| MysqlArgError {
                arg: arg.clone(),
                problem: problem.into(),
            };
            let flag = |value: Option<&str>| -> Result<bool, MysqlArgError> {
                match value.map(str::to_ascii_uppercase).as_deref() {
                    None | Some("ON") | Some("1") | Some("TRUE") => Ok(true),
                    Some("OFF") | Some("0") | Some("FALSE") => Ok(false),
                    Some(_) => Err(bad("expected ON or OFF")),
                }
            };
            let seconds = |value: Option<&str>| -> Result<u64, MysqlArgError> {
                value
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("expected a number"))
            };
            match name.as_str() {
                "port" => {
                    self.port = value
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| bad("port"))?
                }
                "rpl-semi-sync-source-enabled" | "rpl-semi-sync-master-enabled" => {
                    plugin_options.push((arg.clone(), true));
                    self.semisync_source_enabled = flag(value)?
                }
                "rpl-semi-sync-replica-enabled" | "rpl-semi-sync-slave-enabled" => {
                    plugin_options.push((arg.clone(), false));
                    self.semisync_replica_enabled = flag(value)?
                }
                "rpl-semi-sync-source-timeout" | "rpl-semi-sync-master-timeout" => {
                    plugin_options.push((arg.clone(), true));
                    self.semisync_timeout = Duration::from_millis(seconds(value)?)
                }
                "replica-net-timeout" | "slave-net-timeout" => {
                    self.replica_net_timeout = Duration::from_secs(seconds(value)?);
                    self.heartbeat_period = self.replica_net_timeout / 2;
                }
                "skip-replica-start" | "skip-slave-start" => self.skip_replica_start = flag(value)?,
                "plugin-load-add" | "plugin-load" => {
                    // `name=library` or `library` entries, separated by `;`.
                    for entry in value.unwrap_or_default().split(';') {
                        let library = entry.rsplit('=').next().unwrap_or(entry).trim();
                        match library.trim_end_matches(".so") {
                            "mysql_clone" => self.clone_plugin = true,
                            "semisync_source" | "semisync_master" => {
                                self.semisync_source_plugin = true
                            }
                            "semisync_replica" | "semisync_slave" => {
                                self.semisync_replica_plugin = true
                            }
                            _ => {}
                        }
                    }
                }
                "persisted-globals-load" => self.persisted_globals_load = flag(value)?,
                "admin-address" => {
                    self.admin_address = Some(
                        value
                            .filter(|v| !v.is_empty())
                            .ok_or_else(|| bad("expected an address"))?
                            .to_string(),
                    )
                }
                "admin-port" => {
                    self.admin_port = value
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| bad("expected a port number"))?
                }
                "max-connections" => {
                    self.max_connections = value
                        .and_then(|v| v.parse().ok())
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad("expected a number of connections of at least 1"))?
                }
                // MySQL couples the two: read_only=OFF turns super_read_only OFF, and
                // super_read_only=ON turns read_only ON.
                "read-only" => {
                    self.boot_read_only = flag(value)?;
                    if !self.boot_read_only {
                        self.boot_super_read_only = false;
                    }
                }
                "super-read-only" => {
                    self.boot_super_read_only = flag(value)?;
                    if self.boot_super_read_only {
                        self.boot_read_only = true;
                    }
                }
                _ => {}
            }
        }
        for (arg, source_side) in plugin_options {
            let loaded = if source_side {
                self.semisync_source_plugin
            } else {
                self.semisync_replica_plugin
            };
            if !loaded {
                return Err(MysqlArgError {
                    arg,
                    problem: format!(
                        "unknown variable: the {} plugin is not loaded (--plugin-load-add={})",
                        if source_side {
                            "rpl_semi_sync_source"
                        } else {
                            "rpl_semi_sync_replica"
                        },
                        if source_side {
                            "semisync_source.so"
                        } else {
                            "semisync_replica.so"
                        },
                    ),
                });
            }
        }
        Ok(())
    }

    /// The accounts a server started with `env` has: the official image's environment
    /// contract plus [`MysqlConfig::accounts`].
    pub fn accounts_for(&self, env: &BTreeMap<String, String>) -> Vec<Account> {
        let mut accounts = self.accounts.clone();
        if let Some(password) = env.get("MYSQL_ROOT_PASSWORD") {
            accounts.push(Account {
                user: "root".into(),
                password: password.clone(),
                super_user: true,
                privileges: Vec::new(),
                database: None,
            });
        } else if env.contains_key("MYSQL_ALLOW_EMPTY_PASSWORD") {
            accounts.push(Account {
                user: "root".into(),
                password: String::new(),
                super_user: true,
                privileges: Vec::new(),
                database: None,
            });
        }
        if let (Some(user), Some(password)) = (env.get("MYSQL_USER"), env.get("MYSQL_PASSWORD")) {
            accounts.push(Account {
                user: user.clone(),
                password: password.clone(),
                super_user: false,
                privileges: Vec::new(),
                // The image grants ALL on MYSQL_DATABASE (and creates it); without it
                // the account may log in and use no database at all.
                database: env.get("MYSQL_DATABASE").filter(|d| !d.is_empty()).cloned(),
            });
        }
        accounts
    }
}

/// The MySQL model as a pod program (image `mysql:*`).
#[derive(Debug, Clone, Default)]
pub struct MysqlProgram {
    config: MysqlConfig,
    observer: Option<MysqlObserver>,
}

impl MysqlProgram {
    pub fn new(config: MysqlConfig) -> Self {
        Self {
            config,
            observer: None,
        }
    }

    /// Registers every server this program runs with `observer` (read-only side channel).
    pub fn with_observer(mut self, observer: MysqlObserver) -> Self {
        self.observer = Some(observer);
        self
    }
}

impl PodProgram for MysqlProgram {
    fn run(&self, ctx: PodContext) -> ProgramFuture {
        let mut config = self.config.clone();
        let observer = self.observer.clone();
        Box::pin(async move {
            config.apply_args(&ctx.args)?;
            config.supervised |= ["MYSQLD_PARENT_PID", "NOTIFY_SOCKET"]
                .iter()
                .any(|name| ctx.env.contains_key(*name));
            let accounts = config.accounts_for(&ctx.env);
            if accounts.is_empty() {
                // What the official image says when it has no credentials to initialise with.
                return Err(
                    "Database is uninitialized and password option is not specified".into(),
                );
            }
            let volume = ctx
                .volumes
                .get(&config.data_volume)
                .cloned()
                .unwrap_or_default();
            process::run(config, accounts, ctx, data_dir(&volume), observer).await
        })
    }
}

/// The data directory kept on `volume`.
pub fn data_dir(volume: &Volume) -> std::sync::Arc<DataDir> {
    volume.get_or_init(DataDir::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot_flags(args: &[&str]) -> (bool, bool) {
        let mut config = MysqlConfig::default();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        config.apply_args(&args).unwrap();
        (config.boot_read_only, config.boot_super_read_only)
    }

    #[test]
    fn the_clone_plugin_is_loaded_only_when_asked_for() {
        let loaded = |args: &[&str]| {
            let mut config = MysqlConfig::default();
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            config.apply_args(&args).unwrap();
            config.clone_plugin
        };
        assert!(!loaded(&[]), "not loaded by default");
        assert!(loaded(&["--plugin-load-add=mysql_clone.so"]));
        assert!(loaded(&[
            "--plugin_load=semisync_source.so;clone=mysql_clone.so"
        ]));
        assert!(!loaded(&["--plugin-load-add=semisync_source.so"]));
    }

    #[test]
    fn semisync_options_need_their_plugins() {
        let apply = |args: &[&str]| {
            let mut config = MysqlConfig::default();
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            config.apply_args(&args).map(|()| config)
        };
        let config = apply(&["--plugin-load-add=semisync_source.so"]).unwrap();
        assert!(config.semisync_source_plugin && !config.semisync_source_enabled);
        let error = apply(&["--rpl-semi-sync-source-enabled=ON"]).err().unwrap();
        assert!(error.to_string().contains("semisync_source.so"), "{error}");
        assert!(
            apply(&[
                "--rpl-semi-sync-replica-enabled=ON",
                "--plugin-load-add=semisync_source.so"
            ])
            .is_err()
        );
        let config = apply(&[
            "--rpl-semi-sync-replica-enabled=ON",
            "--plugin-load-add=semisync_replica.so",
        ])
        .unwrap();
        assert!(config.semisync_replica_enabled);
    }

    #[test]
    fn boot_read_only_flags_follow_mysqls_coupling() {
        assert_eq!(boot_flags(&[]), (true, true), "boots fenced by default");
        assert_eq!(boot_flags(&["--read-only=OFF"]), (false, false));
        assert_eq!(boot_flags(&["--super-read-only=OFF"]), (true, false));
        assert_eq!(
            boot_flags(&["--read-only=OFF", "--super_read_only=ON"]),
            (true, true)
        );
    }
}
