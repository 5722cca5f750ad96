//! The data-plane seam to Dragonfly: "open a Redis-protocol connection to host H".
//!
//! It hands out a real `redis::aio::MultiplexedConnection`, so the operator's Dragonfly
//! adapter (`production::dragonfly`) is the same code in production (a TCP socket) and in
//! the simulation (a simulated TCP stream to the Dragonfly model). Connecting and every
//! response are bounded by [`DragonflyTimeouts`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

/// Where to connect. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DragonflyTarget {
    pub host: String,
    pub port: u16,
    /// `requirepass`, sent with `AUTH` on connect when set.
    pub password: Option<String>,
}

impl DragonflyTarget {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The `redis` crate's connection settings for this target (RESP2, database 0).
    pub fn redis_info(&self) -> redis::RedisConnectionInfo {
        let info = redis::RedisConnectionInfo::default();
        match &self.password {
            Some(password) => info.set_password(password),
            None => info,
        }
    }
}

impl fmt::Debug for DragonflyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DragonflyTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Bounds on connecting (TCP plus the AUTH handshake) and on each response. Mandatory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DragonflyTimeouts {
    pub connect: Duration,
    pub response: Duration,
}

impl Default for DragonflyTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            response: Duration::from_secs(3),
        }
    }
}

impl DragonflyTimeouts {
    /// The `redis` crate's per-connection settings carrying these bounds.
    pub fn redis_config(&self) -> redis::AsyncConnectionConfig {
        redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect))
            .set_response_timeout(Some(self.response))
    }
}

/// Why a Dragonfly connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DragonflyConnectError {
    #[error("connecting to Dragonfly at {address} failed: {source}")]
    Io {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to Dragonfly at {address} timed out after {after:?}")]
    Timeout { address: String, after: Duration },
    /// The handshake failed: most often `AUTH` refused (wrong or missing password).
    #[error("Dragonfly at {address} refused the connection handshake: {source}")]
    Handshake {
        address: String,
        #[source]
        source: redis::RedisError,
    },
}

/// Opens Redis-protocol connections to Dragonfly.
pub trait DragonflyConnector: Send + Sync + 'static {
    fn connect<'a>(
        &'a self,
        target: &'a DragonflyTarget,
    ) -> BoxFuture<'a, Result<redis::aio::MultiplexedConnection, DragonflyConnectError>>;
}

pub type SharedDragonflyConnector = Arc<dyn DragonflyConnector>;
