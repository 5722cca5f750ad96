//! The sim backend's counter workload client: one row per increment
//! (`chaos-counter/<seq>`) through the primary Service as an ordinary client, and INCR
//! through the app-facing Dragonfly Service, both over the simulated network.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use bloodraven::seams::mysql::{MysqlConnector, MysqlTarget, MysqlTimeouts};
use bloodraven::seams::{DragonflyConnector, DragonflyTarget, DragonflyTimeouts};
use bloodraven_sim::apiserver::ResourceKey;
use bloodraven_sim::harness::WorldHandle;
use bloodraven_sim::models::dragonfly::SimDragonflyConnector;
use bloodraven_sim::models::mysql::{MYSQL_PORT, mysql_connector};
use bloodraven_sim::pod::SharedDialer;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use serde_json::Value;

use super::pods;
use crate::scenario::Component;
use crate::workload::{
    CounterAck, CounterError, CounterTarget, SessionSlot, increment_in, present_in,
};

/// Pod selector of the primary Service and of the app-facing Dragonfly Service
/// (docs/operator.md "Children": pod labels): the counter finds its Services by what they select.
const PRIMARY_SELECTOR: (&str, &str) = ("shipstream.io/role", "primary");
const DRAGONFLY_SELECTOR: (&str, &str) = ("shipstream.io/dragonfly-role", "master");
/// The key the counter INCRs in Dragonfly.
const CACHE_COUNTER_KEY: &str = "chaos-counter";

/// The counter client: one row per increment (`chaos-counter/<seq>`) through the primary
/// Service, so that no-acknowledged-write-lost can check each acknowledged increment on
/// the final primary; INCR `chaos-counter` through the Dragonfly Service.
pub(super) struct SimCounter {
    client: kube::Client,
    world: WorldHandle,
    host: String,
    session: tokio::sync::Mutex<SessionSlot>,
    attempted: Mutex<BTreeSet<u64>>,
}

/// Where the counter connects: the Service (by DNS name) and the account.
struct Endpoint {
    namespace: String,
    service: String,
    port: u16,
    user: String,
    password: Option<String>,
}

impl SimCounter {
    pub(super) fn new(client: kube::Client, world: WorldHandle, host: &str) -> Self {
        Self {
            client,
            world,
            host: host.to_owned(),
            session: tokio::sync::Mutex::new(None),
            attempted: Mutex::new(BTreeSet::new()),
        }
    }

    /// The Service selecting `label=value` pods, in any namespace (first by namespace
    /// and name), and the env of one of the pods it selects.
    async fn find_service(
        &self,
        selector: (&str, &str),
    ) -> Result<(Service, Option<Pod>), CounterError> {
        let services: Api<Service> = Api::all(self.client.clone());
        let mut list = services
            .list(&ListParams::default())
            .await
            .map_err(|e| CounterError::locate("listing Services", e))?
            .items;
        list.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
        let service = list
            .into_iter()
            .find(|s| {
                s.spec
                    .as_ref()
                    .and_then(|spec| spec.selector.as_ref())
                    .and_then(|sel| sel.get(selector.0))
                    .is_some_and(|v| v == selector.1)
            })
            .ok_or_else(|| {
                CounterError::locate(
                    format!("no Service selects {}={}", selector.0, selector.1),
                    "no primary to write to",
                )
            })?;
        let ns = service.metadata.namespace.clone().unwrap_or_default();
        let labels = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let pod = pods
            .list(&ListParams::default().labels(&labels))
            .await
            .map_err(|e| CounterError::locate(format!("listing pods {labels}"), e))?
            .items
            .into_iter()
            .next();
        Ok((service, pod))
    }

    async fn mysql_endpoint(&self) -> Result<Endpoint, CounterError> {
        let (service, pod) = self.find_service(PRIMARY_SELECTOR).await?;
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let what = format!("the pods behind Service {namespace}/{name}");
        let pod = pod.ok_or_else(|| CounterError::locate(&what, "the Service selects no pod"))?;
        let container = pods::container_of(&pod, Component::Mysql)
            .ok_or_else(|| CounterError::locate(&what, "no mysql container"))?;
        let env = pods::container_env(&self.client, &namespace, container)
            .await
            .map_err(|e| CounterError::locate(&what, e))?;
        let (user, password) = match (env.get("MYSQL_USER"), env.get("MYSQL_PASSWORD")) {
            (Some(u), Some(p)) => (u.clone(), p.clone()),
            _ => {
                return Err(CounterError::locate(
                    what,
                    "no MYSQL_USER/MYSQL_PASSWORD defined: the counter writes as an ordinary client, never as root",
                ));
            }
        };
        Ok(Endpoint {
            port: pods::service_port(&service).unwrap_or(MYSQL_PORT),
            namespace,
            service: name,
            user,
            password: Some(password),
        })
    }

    fn dialer(&self, namespace: &str) -> SharedDialer {
        super::dialer(&self.world, namespace, &self.host)
    }

    /// The session to the primary Service (opened if none is open) and the site it
    /// reached. A caller whose request fails sets the slot back to `None`, so the next
    /// attempt reconnects (the primary may have moved).
    async fn open_session(&self) -> Result<tokio::sync::MutexGuard<'_, SessionSlot>, CounterError> {
        let mut guard = self.session.lock().await;
        if guard.is_none() {
            let endpoint = self.mysql_endpoint().await?;
            let target = MysqlTarget {
                host: format!("{}.{}", endpoint.service, endpoint.namespace),
                port: endpoint.port,
                user: endpoint.user,
                password: endpoint.password.unwrap_or_default(),
            };
            let dialer = self.dialer(&endpoint.namespace);
            let connector = mysql_connector(dialer, counter_timeouts());
            let session = connector.connect(&target).await?;
            // Which site answered: the pod the Service resolves to right now.
            let site = self.site_of_service(&endpoint.namespace, &endpoint.service);
            *guard = Some((site, session));
        }
        Ok(guard)
    }

    /// The site (node's `shipstream.io/site` label) of the pod a Service resolves to.
    fn site_of_service(&self, namespace: &str, service: &str) -> String {
        let endpoints = self
            .world
            .api()
            .get(
                &ResourceKey::core("v1", "endpoints"),
                Some(namespace),
                service,
            )
            .ok();
        let node = endpoints
            .as_ref()
            .and_then(|e| e.pointer("/subsets/0/addresses/0/nodeName"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let site = node.and_then(|n| {
            self.world
                .api()
                .get(&ResourceKey::core("v1", "nodes"), None, &n)
                .ok()
                .and_then(|node| {
                    node.pointer("/metadata/labels/shipstream.io~1site")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
        });
        site.unwrap_or_else(|| "unknown".into())
    }
}

fn counter_timeouts() -> MysqlTimeouts {
    MysqlTimeouts {
        connect: Duration::from_secs(1),
        request: Duration::from_secs(2),
    }
}

impl CounterTarget for SimCounter {
    fn increment(&self, seq: u64) -> BoxFuture<'_, Result<CounterAck, CounterError>> {
        Box::pin(async move {
            if let Ok(mut a) = self.attempted.lock() {
                a.insert(seq);
            }
            let mut slot = self.open_session().await?;
            increment_in(&mut slot, seq).await
        })
    }

    fn cache_incr(&self) -> BoxFuture<'_, Result<u64, CounterError>> {
        Box::pin(async move {
            let (service, pod) = self.find_service(DRAGONFLY_SELECTOR).await?;
            let ns = service.metadata.namespace.clone().unwrap_or_default();
            let name = service.metadata.name.clone().unwrap_or_default();
            let mut password = None;
            if let Some(container) = pod
                .as_ref()
                .and_then(|p| pods::container_of(p, Component::Dragonfly))
            {
                let env = pods::container_env(&self.client, &ns, container)
                    .await
                    .map_err(|e| {
                        CounterError::locate(format!("Dragonfly behind {ns}/{name}"), e)
                    })?;
                password = env.get("DFLY_requirepass").cloned().or_else(|| {
                    container
                        .args
                        .iter()
                        .flatten()
                        .find_map(|a| a.strip_prefix("--requirepass=").map(str::to_owned))
                });
            }
            let target = DragonflyTarget {
                host: format!("{name}.{ns}"),
                port: pods::service_port(&service).unwrap_or(6379),
                password,
            };
            let connector =
                SimDragonflyConnector::new(self.dialer(&ns), DragonflyTimeouts::default());
            let mut conn = connector.connect(&target).await?;
            let value: i64 = redis::cmd("INCR")
                .arg(CACHE_COUNTER_KEY)
                .query_async(&mut conn)
                .await
                .map_err(|e| CounterError::Cache {
                    target: target.address(),
                    message: e.to_string(),
                })?;
            Ok(u64::try_from(value).unwrap_or_default())
        })
    }

    fn committed(&self) -> BoxFuture<'_, Result<BTreeSet<u64>, CounterError>> {
        Box::pin(async move { present_in(|| self.open_session(), &self.attempted).await })
    }
}
