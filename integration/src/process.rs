//! One server process under test: spawned with piped standard streams, its first stdout
//! line read as its "ready" announcement (within a deadline), its stderr kept for the
//! error message, and killed when dropped. Adding a server (redis-server, mariadbd) is a
//! command line plus a readiness line or probe.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("cannot start {program} ({source}); {install}")]
    Spawn {
        program: String,
        install: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{program} exited before it was ready ({status}); {install}\n--- its stderr ---\n{stderr}"
    )]
    Exited {
        program: String,
        status: String,
        install: String,
        stderr: String,
    },
    #[error("{program} did not become ready within {after:?}\n--- its stderr ---\n{stderr}")]
    NotReady {
        program: String,
        after: Duration,
        stderr: String,
    },
    #[error("{program} announced something unexpected: {line:?} ({reason})")]
    Announcement {
        program: String,
        line: String,
        reason: String,
    },
}

/// A running server; killed (and reaped) on drop.
#[derive(Debug)]
pub struct ServerProcess {
    program: String,
    child: Child,
}

impl ServerProcess {
    /// Spawns `command` and waits up to `ready_within` for its first stdout line, which
    /// it returns. `install` says how to get the program, for the error message.
    pub fn start_announcing(
        mut command: Command,
        install: &str,
        ready_within: Duration,
    ) -> Result<(Self, String), HarnessError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: program.clone(),
                install: install.to_string(),
                source,
            })?;
        let stderr = child.stderr.take();
        let stdout = child.stdout.take();
        let (lines, announced) = mpsc::channel();
        if let Some(stdout) = stdout {
            thread::spawn(move || {
                let mut line = String::new();
                let read = BufReader::new(stdout).read_line(&mut line);
                let _ = lines.send(read.map(|_| line));
            });
        }
        let stderr_text = drain_in_background(stderr);
        let mut server = Self { program, child };
        match announced.recv_timeout(ready_within) {
            Ok(Ok(line)) if !line.trim().is_empty() => Ok((server, line.trim().to_string())),
            Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = server
                    .child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|err| format!("unknown: {err}"));
                Err(HarnessError::Exited {
                    program: server.program.clone(),
                    status,
                    install: install.to_string(),
                    stderr: collect(stderr_text, Duration::from_secs(2)),
                })
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = server.child.kill();
                Err(HarnessError::NotReady {
                    program: server.program.clone(),
                    after: ready_within,
                    stderr: collect(stderr_text, Duration::from_secs(2)),
                })
            }
        }
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    /// The process id, for measurements from outside.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain_in_background(stderr: Option<ChildStderr>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut stderr) = stderr {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = tx.send(text);
        });
    }
    rx
}

/// What the process wrote to stderr (its last 4 KiB), waiting briefly for it to close.
fn collect(rx: mpsc::Receiver<String>, wait: Duration) -> String {
    let text = rx.recv_timeout(wait).unwrap_or_default();
    let start = text.len().saturating_sub(4096);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// A file shipped with this crate (server helpers under `servers/`).
pub fn crate_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}
