//! The counter app's command line, shared by the real binary and the simulation's pod
//! program (which parses the container's args with it, as the binary would).

use std::net::SocketAddr;
use std::time::Duration;

use bloodraven::seams::dragonfly::{DragonflyTarget, DragonflyTimeouts};
use bloodraven::seams::mysql::{MysqlTarget, MysqlTimeouts};
use clap::Parser;

/// The port the guide port-forwards to (`svc/counter-app 8090:8090`).
pub const COUNTER_APP_PORT: u16 = 8090;

/// Environment variables holding the passwords (from the group's credentials Secret).
pub const MYSQL_PASSWORD_ENV: &str = "MYSQL_PASSWORD";
pub const DRAGONFLY_PASSWORD_ENV: &str = "DRAGONFLY_PASSWORD";

/// A MySQL counter and a Dragonfly cache counter that survive failovers.
///
/// Every increment writes the MySQL counter through the group's primary Service and
/// INCRs the cache counter through the Dragonfly Service; connections are reopened
/// after an error, so the app follows the primary across failovers.
#[derive(Parser, Debug, Clone)]
// Later flags win (the simulation turns env into flags placed before the args).
#[command(name = "counter-app", version, args_override_self = true)]
pub struct Args {
    /// Address of the page and the JSON API.
    #[arg(long, env = "COUNTER_APP_LISTEN", default_value = "0.0.0.0:8090")]
    pub listen: SocketAddr,
    /// The group's primary Service (`<group>-mysql-primary`).
    #[arg(long, env = "MYSQL_HOST", default_value = "playground-mysql-primary")]
    pub mysql_host: String,
    #[arg(long, env = "MYSQL_PORT", default_value_t = 3306)]
    pub mysql_port: u16,
    /// The application account the operator creates (`app`).
    #[arg(long, env = "MYSQL_USER", default_value = "app")]
    pub mysql_user: String,
    #[arg(long, env = MYSQL_PASSWORD_ENV, default_value = "", hide_env_values = true)]
    pub mysql_password: String,
    /// The app-facing Dragonfly Service (`<group>-dragonfly`); empty disables the cache.
    #[arg(long, env = "DRAGONFLY_HOST", default_value = "playground-dragonfly")]
    pub dragonfly_host: String,
    #[arg(long, env = "DRAGONFLY_PORT", default_value_t = 6379)]
    pub dragonfly_port: u16,
    #[arg(long, env = DRAGONFLY_PASSWORD_ENV, hide_env_values = true)]
    pub dragonfly_password: Option<String>,
    /// The counter's row in `bloodraven_counter.counters` (the cache key is
    /// `counter:<name>`).
    #[arg(long, env = "COUNTER_NAME", default_value = "main")]
    pub counter_name: String,
    /// Bound on connecting and on each statement or command, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

impl Args {
    pub fn mysql_target(&self) -> MysqlTarget {
        MysqlTarget {
            host: self.mysql_host.clone(),
            port: self.mysql_port,
            user: self.mysql_user.clone(),
            password: self.mysql_password.clone(),
        }
    }

    pub fn dragonfly_target(&self) -> Option<DragonflyTarget> {
        (!self.dragonfly_host.is_empty()).then(|| DragonflyTarget {
            host: self.dragonfly_host.clone(),
            port: self.dragonfly_port,
            password: self.dragonfly_password.clone().filter(|p| !p.is_empty()),
        })
    }

    pub fn mysql_timeouts(&self) -> MysqlTimeouts {
        let bound = Duration::from_millis(self.timeout_ms);
        MysqlTimeouts {
            connect: bound,
            request: bound,
        }
    }

    pub fn dragonfly_timeouts(&self) -> DragonflyTimeouts {
        let bound = Duration::from_millis(self.timeout_ms);
        DragonflyTimeouts {
            connect: bound,
            response: bound,
        }
    }
}
