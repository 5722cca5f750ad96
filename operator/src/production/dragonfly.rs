//! Production Dragonfly adapter: the connector (the `redis` crate's own TCP connection,
//! bounded by `DragonflyTimeouts`) and the session the operator sends its commands on
//! (ROLE, INFO replication, REPLICAOF, REPLTAKEOVER), with the reply parsing. The same
//! session runs over the simulation's connector.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::engine::dragonfly::{CacheInfo, CacheLink};

use crate::seams::dragonfly::{
    DragonflyConnectError, DragonflyConnector, DragonflyTarget, DragonflyTimeouts,
};

#[derive(Debug, Clone)]
pub struct RedisDragonflyConnector {
    timeouts: DragonflyTimeouts,
}

impl RedisDragonflyConnector {
    pub fn new(timeouts: DragonflyTimeouts) -> Self {
        Self { timeouts }
    }
}

impl DragonflyConnector for RedisDragonflyConnector {
    fn connect<'a>(
        &'a self,
        target: &'a DragonflyTarget,
    ) -> BoxFuture<'a, Result<redis::aio::MultiplexedConnection, DragonflyConnectError>> {
        Box::pin(async move {
            let address = target.address();
            let handshake = |source| DragonflyConnectError::Handshake {
                address: address.clone(),
                source,
            };
            let info =
                redis::IntoConnectionInfo::into_connection_info((target.host.clone(), target.port))
                    .map_err(handshake)?
                    .set_redis_settings(target.redis_info());
            let client = redis::Client::open(info).map_err(handshake)?;
            let config = self.timeouts.redis_config();
            let connect = client.get_multiplexed_async_connection_with_config(&config);
            // The redis crate applies the connection timeout itself; this outer bound also
            // covers the AUTH handshake.
            match tokio::time::timeout(self.timeouts.connect * 2, connect).await {
                Err(_) => Err(DragonflyConnectError::Timeout {
                    address,
                    after: self.timeouts.connect,
                }),
                Ok(Err(source)) if source.is_timeout() => Err(DragonflyConnectError::Timeout {
                    address,
                    after: self.timeouts.connect,
                }),
                Ok(Err(source)) => Err(DragonflyConnectError::Handshake { address, source }),
                Ok(Ok(connection)) => Ok(connection),
            }
        })
    }
}

/// Why a Dragonfly command failed.
#[derive(Debug, thiserror::Error)]
pub enum DragonflyCommandError {
    #[error(transparent)]
    Connect(#[from] DragonflyConnectError),
    #[error("{command} on Dragonfly at {address} failed: {source}")]
    Command {
        command: &'static str,
        address: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("{command} on Dragonfly at {address} timed out after {after:?}")]
    Timeout {
        command: &'static str,
        address: String,
        after: Duration,
    },
    #[error("{command} on Dragonfly at {address}: unexpected reply {reply}")]
    Reply {
        command: &'static str,
        address: String,
        reply: String,
    },
}

/// One open connection to a Dragonfly (or Redis: everything here but `REPLTAKEOVER`
/// is shared) with the commands the operator sends, each bounded by `timeout`.
pub struct DragonflySession {
    connection: redis::aio::MultiplexedConnection,
    address: String,
    timeout: Duration,
}

/// `INFO replication`, the fields the operator reads (Dragonfly's and Redis's layouts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicationInfo {
    /// `master`, or `replica` (Dragonfly) / `slave` (Redis).
    pub role: String,
    pub master_host: Option<String>,
    pub master_port: Option<u16>,
    /// `master_link_status:up`.
    pub link_up: Option<bool>,
    /// `master_sync_in_progress:1`.
    pub sync_in_progress: Option<bool>,
    pub master_replid: Option<String>,
    /// `connected_slaves`.
    pub connected_replicas: Option<u32>,
}

/// `ROLE`, in Dragonfly's layout (`[master, [[ip, port, state]...]]`,
/// `[replica, host, port, state]`) or Redis's (`[master, offset, [...]]`,
/// `[slave, host, port, state, offset]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleReply {
    Master,
    Replica {
        host: String,
        port: u16,
        /// The link state word as printed (`stable_sync`, `connected`, ...).
        state: String,
    },
}

impl RoleReply {
    /// The replica's link, from the state word of either server.
    pub fn link(state: &str) -> CacheLink {
        match state {
            "stable_sync" | "online" | "connected" => CacheLink::StableSync,
            "full_sync" | "sync" => CacheLink::FullSync,
            _ => CacheLink::Connecting,
        }
    }
}

fn value_text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) => Some(text.clone()),
        redis::Value::Int(n) => Some(n.to_string()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// Parses a `ROLE` reply; `None` when it has neither server's shape.
pub fn parse_role(value: &redis::Value) -> Option<RoleReply> {
    let redis::Value::Array(items) = value else {
        return None;
    };
    let role = value_text(items.first()?)?.to_ascii_lowercase();
    match role.as_str() {
        "master" => Some(RoleReply::Master),
        "replica" | "slave" => Some(RoleReply::Replica {
            host: value_text(items.get(1)?)?,
            port: value_text(items.get(2)?)?.parse().ok()?,
            state: value_text(items.get(3)?)?.to_ascii_lowercase(),
        }),
        _ => None,
    }
}

/// Parses `INFO replication` text (`key:value` lines; `#` headers and blank lines
/// skipped). Unknown keys are ignored; an absent `role` is an empty string.
pub fn parse_replication_info(text: &str) -> ReplicationInfo {
    let mut info = ReplicationInfo::default();
    for line in text.lines() {
        let line = line.trim();
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "role" => info.role = value.to_string(),
            "master_host" => info.master_host = Some(value.to_string()),
            "master_port" => info.master_port = value.parse().ok(),
            "master_link_status" => info.link_up = Some(value == "up"),
            "master_sync_in_progress" => info.sync_in_progress = Some(value == "1"),
            "master_replid" => info.master_replid = Some(value.to_string()),
            "connected_slaves" => info.connected_replicas = value.parse().ok(),
            _ => {}
        }
    }
    info
}

/// What the engine reads from one site: ROLE for the role and the replica's state,
/// INFO replication for the master's replid and the replica's link. A replica whose
/// link INFO reports down is `Connecting` whatever ROLE's state word says.
pub fn cache_info(role: &RoleReply, info: &ReplicationInfo) -> CacheInfo {
    match role {
        RoleReply::Master => CacheInfo::Master {
            replid: info.master_replid.clone(),
        },
        RoleReply::Replica { host, state, .. } => {
            let mut link = RoleReply::link(state);
            if info.link_up == Some(false) {
                link = CacheLink::Connecting;
            }
            CacheInfo::Replica {
                master_host: host.clone(),
                link,
            }
        }
    }
}

impl DragonflySession {
    /// Connects (AUTH included) through `connector`.
    pub async fn open(
        connector: &dyn DragonflyConnector,
        target: &DragonflyTarget,
        timeout: Duration,
    ) -> Result<Self, DragonflyCommandError> {
        let address = target.address();
        let connection = match tokio::time::timeout(timeout, connector.connect(target)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(DragonflyConnectError::Timeout {
                    address,
                    after: timeout,
                }
                .into());
            }
        };
        Ok(Self {
            connection,
            address,
            timeout,
        })
    }

    async fn query<T: redis::FromRedisValue>(
        &mut self,
        command: &'static str,
        cmd: redis::Cmd,
        timeout: Duration,
    ) -> Result<T, DragonflyCommandError> {
        match tokio::time::timeout(timeout, cmd.query_async::<T>(&mut self.connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(DragonflyCommandError::Command {
                command,
                address: self.address.clone(),
                source,
            }),
            Err(_) => Err(DragonflyCommandError::Timeout {
                command,
                address: self.address.clone(),
                after: timeout,
            }),
        }
    }

    pub async fn ping(&mut self) -> Result<(), DragonflyCommandError> {
        let reply: String = self.query("PING", redis::cmd("PING"), self.timeout).await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(DragonflyCommandError::Reply {
                command: "PING",
                address: self.address.clone(),
                reply,
            })
        }
    }

    pub async fn role(&mut self) -> Result<RoleReply, DragonflyCommandError> {
        let value: redis::Value = self.query("ROLE", redis::cmd("ROLE"), self.timeout).await?;
        parse_role(&value).ok_or_else(|| DragonflyCommandError::Reply {
            command: "ROLE",
            address: self.address.clone(),
            reply: format!("{value:?}"),
        })
    }

    pub async fn replication_info(&mut self) -> Result<ReplicationInfo, DragonflyCommandError> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("replication");
        let text: String = self.query("INFO replication", cmd, self.timeout).await?;
        Ok(parse_replication_info(&text))
    }

    /// ROLE and INFO replication, as the engine reads them.
    pub async fn observe(&mut self) -> Result<CacheInfo, DragonflyCommandError> {
        let role = self.role().await?;
        let info = self.replication_info().await?;
        Ok(cache_info(&role, &info))
    }

    /// `REPLICAOF host port`.
    pub async fn replicaof(&mut self, host: &str, port: u16) -> Result<(), DragonflyCommandError> {
        let mut cmd = redis::cmd("REPLICAOF");
        cmd.arg(host).arg(port);
        self.query::<redis::Value>("REPLICAOF", cmd, self.timeout)
            .await
            .map(|_| ())
    }

    /// `REPLICAOF NO ONE`: keep the data, become master.
    pub async fn replicaof_no_one(&mut self) -> Result<(), DragonflyCommandError> {
        let mut cmd = redis::cmd("REPLICAOF");
        cmd.arg("NO").arg("ONE");
        self.query::<redis::Value>("REPLICAOF NO ONE", cmd, self.timeout)
            .await
            .map(|_| ())
    }

    /// `REPLTAKEOVER <seconds>` (Dragonfly only): the replica asks its master to stop
    /// accepting writes, waits until it applied all of them, and becomes master; the old
    /// master shuts down. Bounded by `seconds` plus this session's timeout.
    pub async fn repltakeover(&mut self, seconds: u64) -> Result<(), DragonflyCommandError> {
        let mut cmd = redis::cmd("REPLTAKEOVER");
        cmd.arg(seconds);
        let bound = Duration::from_secs(seconds) + self.timeout;
        self.query::<redis::Value>("REPLTAKEOVER", cmd, bound)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> redis::Value {
        redis::Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn role_parses_dragonfly_and_redis_layouts() {
        use redis::Value::{Array, Int};
        let cases = [
            (
                Array(vec![bulk("master"), Array(vec![])]),
                Some(RoleReply::Master),
            ),
            (
                Array(vec![bulk("master"), Int(42), Array(vec![])]),
                Some(RoleReply::Master),
            ),
            (
                Array(vec![
                    bulk("replica"),
                    bulk("df-iad"),
                    bulk("6379"),
                    bulk("stable_sync"),
                ]),
                Some(RoleReply::Replica {
                    host: "df-iad".into(),
                    port: 6379,
                    state: "stable_sync".into(),
                }),
            ),
            (
                Array(vec![
                    bulk("slave"),
                    bulk("127.0.0.1"),
                    Int(6380),
                    bulk("connected"),
                    Int(9),
                ]),
                Some(RoleReply::Replica {
                    host: "127.0.0.1".into(),
                    port: 6380,
                    state: "connected".into(),
                }),
            ),
            (Array(vec![bulk("sentinel")]), None),
            (Array(vec![bulk("replica"), bulk("h")]), None),
            (bulk("master"), None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_role(&value), expected, "{value:?}");
        }
    }

    #[test]
    fn link_states_of_both_servers_map_to_three_links() {
        for (word, link) in [
            ("stable_sync", CacheLink::StableSync),
            ("online", CacheLink::StableSync),
            ("connected", CacheLink::StableSync),
            ("full_sync", CacheLink::FullSync),
            ("sync", CacheLink::FullSync),
            ("connecting", CacheLink::Connecting),
            ("connect", CacheLink::Connecting),
            ("preparation", CacheLink::Connecting),
        ] {
            assert_eq!(RoleReply::link(word), link, "{word}");
        }
    }

    #[test]
    fn replication_info_reads_both_layouts() {
        let dragonfly = "# Replication\r\nrole:replica\r\nmaster_host:df-iad\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:0\r\nmaster_sync_in_progress:0\r\nslave_read_only:1\r\n";
        let info = parse_replication_info(dragonfly);
        assert_eq!(info.role, "replica");
        assert_eq!(info.master_host.as_deref(), Some("df-iad"));
        assert_eq!(info.master_port, Some(6379));
        assert_eq!(info.link_up, Some(true));
        assert_eq!(info.sync_in_progress, Some(false));
        let master = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=10.0.0.2,port=6379,state=stable_sync,lag=0\r\nmaster_replid:abc\r\n";
        let info = parse_replication_info(master);
        assert_eq!(info.role, "master");
        assert_eq!(info.master_replid.as_deref(), Some("abc"));
        assert_eq!(info.connected_replicas, Some(1));
        assert_eq!(parse_replication_info("").role, "");
    }

    #[test]
    fn a_replica_whose_link_is_down_is_connecting_whatever_role_says() {
        let role = RoleReply::Replica {
            host: "h".into(),
            port: 6379,
            state: "stable_sync".into(),
        };
        let down = ReplicationInfo {
            link_up: Some(false),
            ..Default::default()
        };
        assert_eq!(
            cache_info(&role, &down),
            CacheInfo::Replica {
                master_host: "h".into(),
                link: CacheLink::Connecting
            }
        );
        let up = ReplicationInfo {
            link_up: Some(true),
            ..Default::default()
        };
        assert_eq!(
            cache_info(&role, &up),
            CacheInfo::Replica {
                master_host: "h".into(),
                link: CacheLink::StableSync
            }
        );
        let master = ReplicationInfo {
            master_replid: Some("r1".into()),
            ..Default::default()
        };
        assert_eq!(
            cache_info(&RoleReply::Master, &master),
            CacheInfo::Master {
                replid: Some("r1".into())
            }
        );
    }
}
