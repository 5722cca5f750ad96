//! A real Redis server (Debian package `redis-server`) for the production Dragonfly
//! adapter: everything the operator sends that Redis shares with Dragonfly (AUTH, PING,
//! ROLE, INFO replication, REPLICAOF, REPLICAOF NO ONE). `REPLTAKEOVER` is
//! Dragonfly-only and is not covered here (docs/testing.md).

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{HarnessError, ServerProcess};

/// How to get the server, for error messages (and what `.ci/run` installs).
pub const REDIS_INSTALL: &str = "install it with: apt-get install redis-server";
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running `redis-server` on 127.0.0.1 with `requirepass` and `masterauth` set to
/// the same password (as the operator configures Dragonfly), no persistence.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    pub password: String,
    process: ServerProcess,
}

fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| HarnessError::Spawn {
        program: "redis-server".into(),
        install: "no free TCP port on 127.0.0.1".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| HarnessError::Spawn {
            program: "redis-server".into(),
            install: "no free TCP port on 127.0.0.1".into(),
            source,
        })
}

impl RedisServer {
    /// Starts the server and waits until it accepts TCP connections.
    pub fn start(password: &str) -> Result<Self, HarnessError> {
        let program =
            std::env::var("BLOODRAVEN_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let port = free_port()?;
        // The harness stops reading stdout after the announcement, so redis-server must
        // not log there (a write to the closed pipe would kill it): it logs to a file,
        // the shell announces the start, and the port proves readiness.
        let logfile = std::env::temp_dir().join(format!("bloodraven-redis-{port}.log"));
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("echo starting; exec \"$0\" \"$@\"")
            .arg(&program)
            .arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--requirepass")
            .arg(password)
            .arg("--masterauth")
            .arg(password)
            .arg("--loglevel")
            .arg("warning")
            .arg("--logfile")
            .arg(&logfile);
        let (process, _announced) =
            ServerProcess::start_announcing(command, REDIS_INSTALL, READY_WITHIN)?;
        let deadline = Instant::now() + READY_WITHIN;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    program,
                    after: READY_WITHIN,
                    stderr: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            port,
            password: password.to_string(),
            process,
        })
    }

    /// The process id, for measurements from outside.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}
