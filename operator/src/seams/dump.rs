//! The seam a backup reads its logical dump through: "give me a consistent dump of this
//! mysqld as a byte stream". Production runs the real dump tool (`mysqldump`, or
//! MariaDB's `mariadb-dump`) as a child process and streams its stdout; the simulation
//! reads its MySQL model's data. The stream ends with an error, never a clean EOF, when
//! the dump did not finish, so the uploader aborts instead of storing a partial dump.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// A dump as a byte stream.
pub type DumpStream = Pin<Box<dyn AsyncRead + Send>>;

/// Which server to dump, as whom.
#[derive(Clone, PartialEq, Eq)]
pub struct DumpTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl fmt::Debug for DumpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DumpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Starts dumps. A failure to start is an error here; a failure during the dump is an
/// error from the stream.
pub trait DumpSource: Send + Sync + 'static {
    fn dump(&self, target: &DumpTarget) -> BoxFuture<'static, io::Result<DumpStream>>;
}

pub type SharedDumpSource = Arc<dyn DumpSource>;

/// The dump tool's command-line dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpDialect {
    /// `mysqldump` 8.x: `--set-gtid-purged=ON` writes `SET @@GLOBAL.GTID_PURGED=...`,
    /// the GTID set the dump is consistent with.
    Mysql,
    /// `mariadb-dump`: `--gtid --master-data=2` writes `-- SET GLOBAL gtid_slave_pos=...`
    /// (commented out, so loading the dump does not change the loader's replication).
    MariaDb,
}

/// Production: runs `program` and streams its stdout.
#[derive(Debug, Clone)]
pub struct DumpCommand {
    pub program: String,
    pub dialect: DumpDialect,
}

impl DumpCommand {
    /// The tool's arguments: every database, in one transaction (`--single-transaction`:
    /// a consistent InnoDB snapshot without locking writers), with routines, triggers
    /// and events, and the GTID position the snapshot is consistent with.
    pub fn args(&self, target: &DumpTarget) -> Vec<String> {
        let mut args = vec![
            format!("--host={}", target.host),
            format!("--port={}", target.port),
            format!("--user={}", target.user),
            "--protocol=TCP".to_string(),
            "--single-transaction".to_string(),
            "--quick".to_string(),
            "--all-databases".to_string(),
            "--routines".to_string(),
            "--triggers".to_string(),
            "--events".to_string(),
            "--hex-blob".to_string(),
        ];
        match self.dialect {
            DumpDialect::Mysql => args.push("--set-gtid-purged=ON".to_string()),
            DumpDialect::MariaDb => {
                args.push("--gtid".to_string());
                args.push("--master-data=2".to_string());
            }
        }
        args
    }
}

impl DumpSource for DumpCommand {
    fn dump(&self, target: &DumpTarget) -> BoxFuture<'static, io::Result<DumpStream>> {
        let mut command = Command::new(&self.program);
        command
            .args(self.args(target))
            // The password through the environment, never argv (`ps` shows argv).
            .env("MYSQL_PWD", &target.password)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let program = self.program.clone();
        Box::pin(async move {
            let mut child = command.spawn().map_err(|err| {
                io::Error::new(err.kind(), format!("cannot start {program}: {err}"))
            })?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other(format!("{program}: no stdout pipe")))?;
            let stderr = child.stderr.take();
            Ok(Box::pin(ChildOutput::new(program, child, stdout, stderr)) as DumpStream)
        })
    }
}

/// A child's stdout that, at EOF, waits for the child and turns a failed exit into an
/// error carrying the child's stderr: a dump tool that dies half-way closes its stdout
/// like one that finished, and only the exit status tells them apart.
struct ChildOutput {
    program: String,
    stdout: ChildStdout,
    finish: Option<BoxFuture<'static, io::Result<()>>>,
    child_and_stderr: Option<(Child, tokio::task::JoinHandle<String>)>,
}

impl ChildOutput {
    fn new(
        program: String,
        child: Child,
        stdout: ChildStdout,
        stderr: Option<ChildStderr>,
    ) -> Self {
        Self {
            program,
            stdout,
            finish: None,
            child_and_stderr: Some((child, drain_stderr(stderr))),
        }
    }
}

/// At most this much of the tool's stderr (its end) goes into the error.
const STDERR_LIMIT: usize = 4096;

/// Reads the tool's stderr as it comes, so that a chatty tool never blocks on a full
/// pipe, and keeps its last [`STDERR_LIMIT`] bytes.
fn drain_stderr(stderr: Option<ChildStderr>) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let Some(mut stderr) = stderr else {
            return String::new();
        };
        let mut kept: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&chunk[..n]);
            if kept.len() > 2 * STDERR_LIMIT {
                kept.drain(..kept.len() - STDERR_LIMIT);
            }
        }
        let from = kept.len().saturating_sub(STDERR_LIMIT);
        String::from_utf8_lossy(&kept[from..]).into_owned()
    })
}

async fn wait_for_exit(
    program: String,
    mut child: Child,
    stderr: tokio::task::JoinHandle<String>,
) -> io::Result<()> {
    let status = child.wait().await?;
    let text = stderr.await.unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{program} failed ({status}): {}",
            text.trim()
        )))
    }
}

impl AsyncRead for ChildOutput {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.finish.is_none() {
            let before = buf.filled().len();
            match Pin::new(&mut this.stdout).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() == before => {
                    // EOF: the answer is the exit status.
                    let Some((child, stderr)) = this.child_and_stderr.take() else {
                        return Poll::Ready(Ok(()));
                    };
                    this.finish =
                        Some(Box::pin(wait_for_exit(this.program.clone(), child, stderr)));
                }
                other => return other,
            }
        }
        let Some(finish) = this.finish.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match finish.as_mut().poll(cx) {
            Poll::Ready(result) => {
                // Done: later reads see EOF again, never the finished future (polling a
                // completed future panics). An error is reported once, then EOF.
                this.finish = None;
                Poll::Ready(result)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Reads the GTID set a dump is consistent with from its head, as the two dump tools
/// write it:
///
/// - mysqldump: `SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ 'uuid:1-5,\nuuid2:1-3';`
///   (the set may span lines);
/// - mariadb-dump: `-- SET GLOBAL gtid_slave_pos='0-1-5';`.
///
/// `None` when the head holds neither (the dump does not say; the backup then fails
/// rather than record a backup of unknown position).
pub fn gtid_from_dump_head(head: &str) -> Option<String> {
    if let Some(at) = head.find("SET @@GLOBAL.GTID_PURGED=") {
        let rest = &head[at..];
        let end = rest.find(';')?;
        let statement = &rest[..end];
        // The set is the last quoted string ('+' is the MySQL 8 "append" marker).
        let close = statement.rfind('\'')?;
        let open = statement[..close].rfind('\'')?;
        let set: String = statement[open + 1..close]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        return Some(set);
    }
    if let Some(at) = head.find("gtid_slave_pos='") {
        let rest = &head[at + "gtid_slave_pos='".len()..];
        let end = rest.find('\'')?;
        return Some(rest[..end].to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gtid_set_is_read_as_each_tool_writes_it() {
        let cases = [
            (
                "-- MySQL dump 10.13\nSET @@SESSION.SQL_LOG_BIN= 0;\n\n--\n-- GTID state at the beginning of the backup \n--\n\nSET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42';\n",
                Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42"),
            ),
            // Long sets wrap across lines.
            (
                "SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42,\n8a94f357-aab4-11df-86ab-c80aa9429562:1-7';",
                Some(
                    "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42,8a94f357-aab4-11df-86ab-c80aa9429562:1-7",
                ),
            ),
            // MySQL 5.7 form, no append marker.
            (
                "SET @@GLOBAL.GTID_PURGED='aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa:1-3';",
                Some("aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa:1-3"),
            ),
            // An empty set is a position too (a server with no transactions).
            ("SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '';", Some("")),
            (
                "-- MariaDB dump 10.19\n-- SET GLOBAL gtid_slave_pos='0-1-17';\n",
                Some("0-1-17"),
            ),
            ("-- MySQL dump 10.13\nCREATE TABLE t (a int);\n", None),
            // Cut off mid-statement: not a position.
            ("SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '3e11fa47", None),
        ];
        for (head, expected) in cases {
            assert_eq!(gtid_from_dump_head(head).as_deref(), expected, "{head}");
        }
    }

    #[test]
    fn the_dump_is_consistent_and_names_its_gtid_position_in_both_dialects() {
        let target = DumpTarget {
            host: "db".into(),
            port: 3306,
            user: "root".into(),
            password: "secret".into(),
        };
        let mysql = DumpCommand {
            program: "mysqldump".into(),
            dialect: DumpDialect::Mysql,
        }
        .args(&target);
        assert!(mysql.contains(&"--single-transaction".to_string()));
        assert!(mysql.contains(&"--set-gtid-purged=ON".to_string()));
        assert!(!mysql.iter().any(|a| a.contains("secret")), "{mysql:?}");
        let mariadb = DumpCommand {
            program: "mariadb-dump".into(),
            dialect: DumpDialect::MariaDb,
        }
        .args(&target);
        assert!(mariadb.contains(&"--master-data=2".to_string()));
        assert!(!format!("{target:?}").contains("secret"));
    }

    async fn read_all(command: DumpCommand) -> io::Result<Vec<u8>> {
        let target = DumpTarget {
            host: "h".into(),
            port: 1,
            user: "u".into(),
            password: "p".into(),
        };
        let mut stream = command.dump(&target).await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        // Reading past the end stays at the end (the uploader may read again).
        let mut more = [0u8; 16];
        assert_eq!(stream.read(&mut more).await?, 0);
        assert_eq!(stream.read(&mut more).await?, 0);
        Ok(out)
    }

    /// `sh -c` stands in for the dump tool: what matters is stdout plus exit status.
    #[tokio::test]
    async fn a_tool_that_dies_half_way_is_an_error_not_a_short_dump() {
        let script = |body: &str| {
            let path = std::env::temp_dir().join(format!(
                "bloodraven-dump-{}-{}.sh",
                std::process::id(),
                body.len()
            ));
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path.to_string_lossy().to_string()
        };
        let ok = script("echo 'CREATE TABLE t (a int);'");
        let out = read_all(DumpCommand {
            program: ok,
            dialect: DumpDialect::Mysql,
        })
        .await
        .unwrap();
        assert_eq!(out, b"CREATE TABLE t (a int);\n");

        let dies = script("echo 'INSERT INTO t VALUES'; echo 'Lost connection' >&2; exit 2");
        let err = read_all(DumpCommand {
            program: dies.clone(),
            dialect: DumpDialect::Mysql,
        })
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Lost connection"), "{text}");
        assert!(text.contains(&dies), "{text}");

        let missing = read_all(DumpCommand {
            program: "/nonexistent/mysqldump".into(),
            dialect: DumpDialect::Mysql,
        })
        .await
        .unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("cannot start /nonexistent/mysqldump"),
            "{missing}"
        );
    }
}
