//! The two counters and their connections. Each backend keeps at most one open
//! connection; any error drops it, so the next request reconnects through the Service
//! and reaches whichever pod is behind it now (the new primary after a failover).
//! Reads are retried once on a fresh connection when a reused one failed (a stale
//! connection to the old primary is the normal case after a failover); writes are never
//! retried, because a write whose reply was lost may have committed.

use bloodraven::seams::dragonfly::{DragonflyTarget, SharedDragonflyConnector};
use bloodraven::seams::mysql::{MysqlSession, MysqlTarget, SharedMysqlConnector};
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use tokio::sync::Mutex;

/// One counter's value as last read or written, or why it could not be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reading {
    /// `None` when the backend could not be reached; a counter never written reads 0.
    pub value: Option<i64>,
    /// Where the counter lives (`host:port` of the Service), for the page.
    pub target: String,
    pub error: Option<String>,
}

impl Reading {
    fn of(target: String, result: Result<i64, String>) -> Self {
        match result {
            Ok(value) => Self {
                value: Some(value),
                target,
                error: None,
            },
            Err(error) => Self {
                value: None,
                target,
                error: Some(error),
            },
        }
    }
}

/// What `GET /api/counter` and `POST /api/increment` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterReading {
    pub name: String,
    pub mysql: Reading,
    /// `None` when the app runs without a Dragonfly Service.
    pub cache: Option<Reading>,
}

/// Whether a failed request may be repeated on a fresh connection: only a read, and
/// only when the connection that failed was an old one (a fresh connection that fails
/// has told us the truth about the backend now).
pub fn retry_on_fresh_connection(request: Request, connection: Connection) -> bool {
    request == Request::Read && connection == Connection::Reused
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Fresh,
    Reused,
}

/// The counter app's state: connectors, targets and the open connections.
pub struct CounterApp {
    mysql: SharedMysqlConnector,
    mysql_target: MysqlTarget,
    dragonfly: SharedDragonflyConnector,
    dragonfly_target: Option<DragonflyTarget>,
    name: String,
    session: Mutex<Option<Box<dyn MysqlSession>>>,
    cache: Mutex<Option<MultiplexedConnection>>,
}

impl CounterApp {
    pub fn new(
        mysql: SharedMysqlConnector,
        mysql_target: MysqlTarget,
        dragonfly: SharedDragonflyConnector,
        dragonfly_target: Option<DragonflyTarget>,
        name: String,
    ) -> Self {
        Self {
            mysql,
            mysql_target,
            dragonfly,
            dragonfly_target,
            name,
            session: Mutex::new(None),
            cache: Mutex::new(None),
        }
    }

    fn cache_key(&self) -> String {
        format!("counter:{}", self.name)
    }

    /// Both counters as they are now.
    pub async fn read(&self) -> CounterReading {
        let mysql = self.mysql_request(Request::Read).await;
        let cache = self.cache_request(Request::Read).await;
        self.reading(mysql, cache)
    }

    /// Increments both counters (independently: a cache outage does not stop the
    /// durable counter, nor the other way round) and returns their new values.
    pub async fn increment(&self) -> CounterReading {
        let mysql = self.mysql_request(Request::Write).await;
        if let Err(error) = &mysql {
            tracing::warn!(target = %self.mysql_target.address(), %error, "MySQL increment failed");
        }
        let cache = self.cache_request(Request::Write).await;
        self.reading(mysql, cache)
    }

    fn reading(
        &self,
        mysql: Result<i64, String>,
        cache: Option<Result<i64, String>>,
    ) -> CounterReading {
        CounterReading {
            name: self.name.clone(),
            mysql: Reading::of(self.mysql_target.address(), mysql),
            cache: cache.map(|result| {
                Reading::of(
                    self.dragonfly_target
                        .as_ref()
                        .map(DragonflyTarget::address)
                        .unwrap_or_default(),
                    result,
                )
            }),
        }
    }

    async fn mysql_request(&self, request: Request) -> Result<i64, String> {
        let mut slot = self.session.lock().await;
        loop {
            let connection = if slot.is_some() {
                Connection::Reused
            } else {
                Connection::Fresh
            };
            let session = match slot.as_mut() {
                Some(session) => session,
                None => {
                    let session = self
                        .mysql
                        .connect(&self.mysql_target)
                        .await
                        .map_err(|e| e.to_string())?;
                    tracing::info!(target = %self.mysql_target.address(), "connected to MySQL");
                    slot.insert(session)
                }
            };
            let result = match request {
                Request::Read => session
                    .counter_read(&self.name)
                    .await
                    .map(|v| v.unwrap_or(0)),
                Request::Write => session.counter_increment(&self.name).await,
            };
            match result {
                Ok(value) => return Ok(value),
                Err(error) => {
                    // The session may be broken or talk to a fenced old primary: drop it.
                    *slot = None;
                    if !retry_on_fresh_connection(request, connection) {
                        return Err(error.to_string());
                    }
                }
            }
        }
    }

    /// `None` when no Dragonfly Service is configured.
    async fn cache_request(&self, request: Request) -> Option<Result<i64, String>> {
        let target = self.dragonfly_target.as_ref()?;
        let mut slot = self.cache.lock().await;
        loop {
            let connection = if slot.is_some() {
                Connection::Reused
            } else {
                Connection::Fresh
            };
            let conn = match slot.as_mut() {
                Some(conn) => conn,
                None => match self.dragonfly.connect(target).await {
                    Ok(conn) => slot.insert(conn),
                    Err(error) => return Some(Err(error.to_string())),
                },
            };
            let key = self.cache_key();
            let result: redis::RedisResult<i64> = match request {
                Request::Read => redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<i64>>(conn)
                    .await
                    .map(|v| v.unwrap_or(0)),
                Request::Write => redis::cmd("INCR").arg(&key).query_async(conn).await,
            };
            match result {
                Ok(value) => return Some(Ok(value)),
                Err(error) => {
                    *slot = None;
                    if !retry_on_fresh_connection(request, connection) {
                        return Some(Err(format!(
                            "{} on {}: {error}",
                            match request {
                                Request::Read => "GET",
                                Request::Write => "INCR",
                            },
                            target.address()
                        )));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_on_a_reused_connection_are_retried() {
        let table = [
            (Request::Read, Connection::Reused, true),
            // A fresh connection's failure is the backend's answer now.
            (Request::Read, Connection::Fresh, false),
            // A write whose reply was lost may have committed: never repeated.
            (Request::Write, Connection::Reused, false),
            (Request::Write, Connection::Fresh, false),
        ];
        for (request, connection, retry) in table {
            assert_eq!(
                retry_on_fresh_connection(request, connection),
                retry,
                "{request:?} on a {connection:?} connection"
            );
        }
    }
}
