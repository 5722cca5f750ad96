//! The `single-cache-master` check, sampled by the driver after every tick: no app-facing
//! Dragonfly Service (a Service labelled `app.kubernetes.io/name=dragonfly` whose
//! selector names `shipstream.io/dragonfly-role`) may select two pods at once. Label
//! matching, as the endpoints controller does it, read from the in-memory API server;
//! only ticks after a write to pods or Services are looked at.

use std::collections::BTreeMap;

use bloodraven::api::DRAGONFLY_ROLE_LABEL;
use bloodraven::seams::Clock;
use serde::Serialize;
use serde_json::Value;

use crate::SimClock;
use crate::apiserver::{ApiServer, ListQuery, ResourceKey};

use super::writability::Millis;

/// A tick at which an app-facing Dragonfly Service selected more than one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheMasterViolation {
    pub at: Millis,
    pub namespace: String,
    pub service: String,
    /// The matching pods, sorted.
    pub pods: Vec<String>,
}

impl std::fmt::Display for CacheMasterViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at {} ms Service {}/{} selected {} pods: {}",
            self.at,
            self.namespace,
            self.service,
            self.pods.len(),
            self.pods.join(", ")
        )
    }
}

/// Remembers what it saw last, so that a state lasting many ticks is reported once
/// (when it starts or its pod set changes) and unchanged storage is not re-read.
#[derive(Debug, Default)]
pub struct CacheMasterSampler {
    versions: Option<(u64, u64)>,
    last: BTreeMap<(String, String), Vec<String>>,
}

fn services_key() -> ResourceKey {
    ResourceKey::core("v1", "services")
}

fn pods_key() -> ResourceKey {
    ResourceKey::core("v1", "pods")
}

fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl CacheMasterSampler {
    /// The violations that started (or changed pods) at this tick.
    pub fn sample(&mut self, clock: &SimClock, api: &ApiServer) -> Vec<CacheMasterViolation> {
        let versions = (
            api.storage_version(&pods_key()).unwrap_or_default(),
            api.storage_version(&services_key()).unwrap_or_default(),
        );
        if self.versions == Some(versions) {
            return Vec::new();
        }
        self.versions = Some(versions);
        let now = clock.now().as_millisecond();
        let query = ListQuery {
            label_selector: Some("app.kubernetes.io/name=dragonfly".into()),
            field_selector: None,
        };
        let Ok(services) = api.list(&services_key(), None, &query) else {
            return Vec::new();
        };
        let mut current = BTreeMap::new();
        for service in &services.items {
            let Some(selector) = service.pointer("/spec/selector").and_then(Value::as_object)
            else {
                continue;
            };
            if !selector.contains_key(DRAGONFLY_ROLE_LABEL) {
                continue; // a per-site headless Service, not the app-facing one
            }
            let namespace = text(service, "/metadata/namespace");
            let labels: Vec<String> = selector
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect();
            let query = ListQuery {
                label_selector: Some(labels.join(",")),
                field_selector: None,
            };
            let Ok(pods) = api.list(&pods_key(), Some(&namespace), &query) else {
                continue;
            };
            let matched: Vec<String> = pods
                .items
                .iter()
                .map(|pod| text(pod, "/metadata/name"))
                .collect();
            if matched.len() > 1 {
                current.insert((namespace, text(service, "/metadata/name")), matched);
            }
        }
        let started = current
            .iter()
            .filter(|(key, pods)| self.last.get(*key) != Some(*pods))
            .map(|((namespace, service), pods)| CacheMasterViolation {
                at: now,
                namespace: namespace.clone(),
                service: service.clone(),
                pods: pods.clone(),
            })
            .collect();
        self.last = current;
        started
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::Caller;

    fn pod(name: &str, role: &str, traffic: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "bp", "labels": {
                   "app.kubernetes.io/name": "dragonfly",
                   "app.kubernetes.io/instance": "playground",
                   "shipstream.io/dragonfly-role": role,
                   "shipstream.io/dragonfly-traffic": traffic}},
               "spec": {"containers": [{"name": "dragonfly", "image": "x"}]}})
    }

    fn service() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "playground-dragonfly", "namespace": "bp",
                            "labels": {"app.kubernetes.io/name": "dragonfly"}},
               "spec": {"selector": {
                   "app.kubernetes.io/name": "dragonfly",
                   "app.kubernetes.io/instance": "playground",
                   "shipstream.io/dragonfly-role": "master",
                   "shipstream.io/dragonfly-traffic": "enabled"},
                   "ports": [{"port": 6379}]}})
    }

    #[test]
    fn two_pods_behind_the_app_facing_service_are_reported_once() {
        let clock = SimClock::new(std::time::Duration::from_secs(1_700_000_000));
        let api = ApiServer::new(std::sync::Arc::new(clock.clone()));
        let who = &Caller::IN_PROCESS;
        api.create(
            &ResourceKey::core("v1", "namespaces"),
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bp"}}),
            who,
        )
        .unwrap();
        api.create(&services_key(), Some("bp"), service(), who)
            .unwrap();
        api.create(
            &pods_key(),
            Some("bp"),
            pod("df-iad-0", "master", "enabled"),
            who,
        )
        .unwrap();
        // A master with traffic shed does not match: the AND-gate at work.
        api.create(
            &pods_key(),
            Some("bp"),
            pod("df-pdx-0", "master", "disabled"),
            who,
        )
        .unwrap();
        let mut sampler = CacheMasterSampler::default();
        assert_eq!(sampler.sample(&clock, &api), vec![]);

        api.create(
            &pods_key(),
            Some("bp"),
            pod("df-x-0", "master", "enabled"),
            who,
        )
        .unwrap();
        let violations = sampler.sample(&clock, &api);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].service, "playground-dragonfly");
        assert_eq!(violations[0].pods, ["df-iad-0", "df-x-0"]);
        assert_eq!(violations[0].at, 1_700_000_000_000);
        // Unchanged: not reported again.
        assert_eq!(sampler.sample(&clock, &api), vec![]);
    }
}
