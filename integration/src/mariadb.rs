//! A real MariaDB server (Debian's `mariadb-server`) for the integration tier: a fresh
//! data directory in a temporary directory, mariadbd on a free port of 127.0.0.1 with
//! binary logging and GTIDs, an administrative account with every privilege and an
//! application account limited to the counter database (real passwords; never
//! `--skip-grant-tables`). Used by the backup pipeline's real-data check and by the
//! production MySQL client's tests. MariaDB is not MySQL 8.4 (no `server_uuid`,
//! `super_read_only`, MySQL GTIDs or `performance_schema.processlist`), so the tier
//! checks only what the two share; docs/testing.md lists which is which. Started by
//! `servers/mariadb.py`, stopped (and its directory removed) when the handle drops.
//! MariaDB's tools stand in for MySQL's: `mariadb-dump` for `mysqldump`, `mariadb` for
//! `mysql` (Debian ships no MySQL server).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bloodraven::seams::dump::DumpTarget;
use bloodraven::seams::mysql::MysqlTarget;

use crate::process::{HarnessError, ServerProcess, crate_file};

const MARIADB_INSTALL: &str =
    "install MariaDB: apt-get install mariadb-server mariadb-client (and python3)";
const READY_WITHIN: Duration = Duration::from_secs(90);

#[derive(serde::Deserialize)]
struct Announcement {
    host: String,
    port: u16,
    user: String,
    password: String,
    app_user: String,
    app_password: String,
}

/// A running MariaDB; stopped when dropped.
#[derive(Debug)]
pub struct MariaDb {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The administrative account as a MySQL session target (the operator's role).
    pub admin: MysqlTarget,
    /// The application account: every privilege on the counter database only.
    pub app: MysqlTarget,
    // Dropped first: the server stops before its directory goes.
    process: ServerProcess,
    dir: TempDir,
}

/// A directory removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a SQL statement run through the `mariadb` client failed with.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("cannot run the mariadb client: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("mariadb client failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
}

impl MariaDb {
    /// Starts a fresh server named `name` (the name only labels its directory).
    pub fn start(name: &str) -> Result<Self, HarnessError> {
        let dir = std::env::temp_dir().join(format!(
            "bloodraven-mariadb-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let _ = std::fs::create_dir_all(&dir);
        let dir = TempDir(dir);
        let python = std::env::var("BLOODRAVEN_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut command = Command::new(&python);
        command
            .arg(crate_file("servers/mariadb.py"))
            .arg(&dir.0)
            .arg("bloodraven")
            .arg("integration-secret");
        let (process, line) =
            ServerProcess::start_announcing(command, MARIADB_INSTALL, READY_WITHIN)?;
        let announced: Announcement =
            serde_json::from_str(&line).map_err(|err| HarnessError::Announcement {
                program: process.program().to_string(),
                line: line.clone(),
                reason: err.to_string(),
            })?;
        let target = |user: &str, password: &str| MysqlTarget {
            host: announced.host.clone(),
            port: announced.port,
            user: user.to_owned(),
            password: password.to_owned(),
        };
        Ok(Self {
            admin: target(&announced.user, &announced.password),
            app: target(&announced.app_user, &announced.app_password),
            host: announced.host,
            port: announced.port,
            user: announced.user,
            password: announced.password,
            process,
            dir,
        })
    }

    /// The dump target for this server, as a backup Job would have it.
    pub fn dump_target(&self) -> DumpTarget {
        DumpTarget {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: self.password.clone(),
        }
    }

    fn client(&self) -> Command {
        let mut command = Command::new("mariadb");
        command
            .arg("--no-defaults")
            .arg("--protocol=TCP")
            .arg(format!("--host={}", self.host))
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={}", self.user))
            .arg("--batch")
            .arg("--skip-column-names")
            .env("MYSQL_PWD", &self.password);
        command
    }

    /// Runs `input` (SQL text, any size) through the `mariadb` client; returns its
    /// output (tab-separated rows, no header).
    pub fn run_sql(&self, input: &[u8]) -> Result<String, SqlError> {
        let mut child = self
            .client()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin pipe"))?;
        // Written from a thread: a large input would otherwise dead-lock against a
        // client whose stdout pipe is full.
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let output = child.wait_with_output()?;
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("writer thread panicked")));
        if !output.status.success() {
            return Err(SqlError::Failed {
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        written?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The server's data directory's parent (for messages).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir.0
    }
}
