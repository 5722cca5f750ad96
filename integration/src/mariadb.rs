//! A real MariaDB server (Debian's `mariadb-server`), started by `servers/mariadb.py`
//! with a fresh data directory, an administrative account and an application account
//! (real passwords; never `--skip-grant-tables`). MariaDB is not MySQL 8.4 (no
//! `server_uuid`, `super_read_only`, MySQL GTIDs or `performance_schema.processlist`),
//! so the tier checks only what the two share; docs/testing.md lists which is which.

use std::process::Command;
use std::time::Duration;

use bloodraven::seams::mysql::MysqlTarget;

use crate::process::{HarnessError, ServerProcess, crate_file};

/// How to get the server, for error messages (and what `.ci/run` installs).
pub const MARIADB_INSTALL: &str =
    "install it with: apt-get install mariadb-server (mariadbd and mariadb-install-db on PATH)";
/// Creating the system tables and starting InnoDB on a busy 2-core machine.
const READY_WITHIN: Duration = Duration::from_secs(120);

#[derive(serde::Deserialize)]
struct Announcement {
    port: u16,
    admin_user: String,
    admin_password: String,
    app_user: String,
    app_password: String,
}

/// A running mariadbd on 127.0.0.1, stopped (and its data removed) on drop.
#[derive(Debug)]
pub struct MariaDb {
    pub port: u16,
    /// Holds every privilege (the operator's and sidecar's role).
    pub admin: MysqlTarget,
    /// Holds every privilege on the counter database only (the counter app's role).
    pub app: MysqlTarget,
    _process: ServerProcess,
}

impl MariaDb {
    pub fn start() -> Result<Self, HarnessError> {
        let python = std::env::var("BLOODRAVEN_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut command = Command::new(&python);
        command.arg(crate_file("servers/mariadb.py"));
        let (process, line) =
            ServerProcess::start_announcing(command, MARIADB_INSTALL, READY_WITHIN)?;
        let announced: Announcement =
            serde_json::from_str(&line).map_err(|err| HarnessError::Announcement {
                program: process.program().to_string(),
                line: line.clone(),
                reason: err.to_string(),
            })?;
        let target = |user: String, password: String| MysqlTarget {
            host: "127.0.0.1".into(),
            port: announced.port,
            user,
            password,
        };
        Ok(Self {
            port: announced.port,
            admin: target(announced.admin_user, announced.admin_password),
            app: target(announced.app_user, announced.app_password),
            _process: process,
        })
    }
}
