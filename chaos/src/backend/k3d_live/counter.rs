//! The live counter: the workload's writes through the primary Service's ready
//! endpoints as the app user, and its cache INCR through the Dragonfly master that
//! takes traffic, both over the data plane's tunnels.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bloodraven::api::{DRAGONFLY_ROLE_LABEL, DRAGONFLY_TRAFFIC_LABEL};
use bloodraven::children::names::mysql_primary_service;
use bloodraven::seams::DragonflyTarget;
use futures::future::BoxFuture;

use super::{APP_PASSWORD_KEY, CACHE_COUNTER_KEY, Live, LiveError};
use crate::backend::tunnel::{LastConnection, PodSource, TunnelTarget};
use crate::workload::{
    CounterAck, CounterError, CounterTarget, SessionSlot, increment_in, present_in,
};

/// The live counter: one row per increment (`chaos-counter/<seq>`) through whichever pod
/// is labelled `shipstream.io/role=primary`, as the app user; INCR `chaos-counter`
/// through the Dragonfly master that takes traffic.
pub struct K3dCounter {
    live: Arc<Live>,
    /// The fixture's namespace, whose group the counter writes to (`None`: the first
    /// group in the cluster, for a run without a fixture).
    namespace: Mutex<Option<String>>,
    session: tokio::sync::Mutex<SessionSlot>,
    attempted: Mutex<BTreeSet<u64>>,
}

impl K3dCounter {
    pub fn new(live: Arc<Live>) -> Self {
        Self {
            live,
            namespace: Mutex::default(),
            session: tokio::sync::Mutex::default(),
            attempted: Mutex::default(),
        }
    }

    /// Writes to the group of `namespace` from now on.
    pub fn use_namespace(&self, namespace: &str) {
        if let Ok(mut ns) = self.namespace.lock() {
            *ns = Some(namespace.to_owned());
        }
    }

    fn namespace(&self) -> Option<String> {
        self.namespace.lock().ok().and_then(|ns| ns.clone())
    }

    /// Opens a session to the current primary when none is open; returns the slot.
    async fn open(&self) -> Result<tokio::sync::MutexGuard<'_, SessionSlot>, CounterError> {
        let mut slot = self.session.lock().await;
        if slot.is_none() {
            let live = &self.live;
            let locate = |e: LiveError| CounterError::locate("the primary", e);
            let namespace = self.namespace();
            let group = live.group(namespace.as_deref()).await.map_err(locate)?;
            let password = live
                .password(&group, APP_PASSWORD_KEY)
                .await
                .map_err(locate)?;
            // Through the primary Service's ready endpoints, as the app reaches it: a
            // pod labelled primary but not (yet) ready takes no client's writes.
            let tunnel = live
                .tunnel(TunnelTarget {
                    namespace: group.namespace.clone(),
                    pods: PodSource::Service(mysql_primary_service(&group.name)),
                    port: group.mysql_port,
                })
                .await
                .map_err(locate)?;
            let (session, reached) = live
                .connect_mysql(
                    &tunnel,
                    &live.config.app_user,
                    password,
                    "connecting to the primary",
                )
                .await
                .map_err(|e| CounterError::Connect {
                    target: tunnel.target().to_string(),
                    message: e.to_string(),
                })?;
            // The counter is the primary tunnel's only client, so the tunnel's latest
            // connection is this session's: its pod's site committed what it acks.
            let site = match reached {
                Some(LastConnection::Forwarded(pod)) => pod
                    .labels
                    .get(&live.config.site_pod_label)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into()),
                _ => "unknown".into(),
            };
            *slot = Some((site, session));
        }
        Ok(slot)
    }
}

impl CounterTarget for K3dCounter {
    fn increment(&self, seq: u64) -> BoxFuture<'_, Result<CounterAck, CounterError>> {
        Box::pin(async move {
            if let Ok(mut a) = self.attempted.lock() {
                a.insert(seq);
            }
            let mut slot = self.open().await?;
            increment_in(&mut slot, seq).await
        })
    }

    fn cache_incr(&self) -> BoxFuture<'_, Result<u64, CounterError>> {
        Box::pin(async move {
            let live = &self.live;
            let namespace = self.namespace();
            let group = live
                .group(namespace.as_deref())
                .await
                .map_err(|e| CounterError::locate("the Dragonfly master", e))?;
            let selector =
                format!("{DRAGONFLY_ROLE_LABEL}=master,{DRAGONFLY_TRAFFIC_LABEL}=enabled");
            let password = live
                .groups
                .dragonfly_password(&group.namespace, &selector)
                .await
                .map_err(|e| CounterError::locate(format!("Dragonfly password ({selector})"), e))?;
            let tunnel = live
                .tunnel(TunnelTarget {
                    namespace: group.namespace.clone(),
                    pods: PodSource::Selector(selector),
                    port: live.config.dragonfly_port,
                })
                .await
                .map_err(|e| CounterError::locate("the Dragonfly master", e))?;
            let local = tunnel.local_addr();
            let target = DragonflyTarget {
                host: local.ip().to_string(),
                port: local.port(),
                password,
            };
            let mut conn =
                live.dragonfly
                    .connect(&target)
                    .await
                    .map_err(|e| CounterError::Connect {
                        target: tunnel.target().to_string(),
                        message: match tunnel.last_connection() {
                            Some(LastConnection::Failed(why)) => why.to_string(),
                            _ => format!("{e} (via {})", tunnel.target()),
                        },
                    })?;
            let value: i64 = redis::cmd("INCR")
                .arg(CACHE_COUNTER_KEY)
                .query_async(&mut conn)
                .await
                .map_err(|e| CounterError::Cache {
                    target: tunnel.target().to_string(),
                    message: e.to_string(),
                })?;
            Ok(u64::try_from(value).unwrap_or_default())
        })
    }

    fn committed(&self) -> BoxFuture<'_, Result<BTreeSet<u64>, CounterError>> {
        Box::pin(async move { present_in(|| self.open(), &self.attempted).await })
    }
}
