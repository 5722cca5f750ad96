//! Test doubles shared by the integration tests: an in-memory cluster (objects, Events)
//! and a backend that records the operations it is asked to execute. They stand in for
//! the simulated cluster until bloodraven-sim's World exists; they are not a backend
//! the CLI can select.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bloodraven::seams::{Clock, SharedClock};
use bloodraven_chaos::backend::{Backend, BackendError, FaultOps, SiteWritability, TypedPlan};
use bloodraven_chaos::cluster::{Cluster, ClusterError, SharedCluster};
use bloodraven_chaos::scenario::{BackendKind, Fault, ObjectRef};
use bloodraven_chaos::workload::CounterTarget;
use futures::future::BoxFuture;
use serde_json::{Value, json};

/// Wall time that follows tokio's (paused) clock from a fixed epoch.
pub struct TokioClock(pub tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> jiff::Timestamp {
        let ms = self.0.elapsed().as_millis() as i64;
        jiff::Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap()
    }
}

fn key(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

/// Objects by kind/name (namespaces ignored), plus Events; a hook can change objects
/// as time passes, to play the operator's part.
#[derive(Default)]
pub struct FakeCluster {
    pub objects: Mutex<BTreeMap<String, Value>>,
    pub events: Mutex<Vec<Value>>,
    pub calls: Mutex<Vec<String>>,
    /// Fails this many `get` calls with a transient error before answering.
    pub flaky_gets: Mutex<u32>,
    /// `None`: the cluster cannot watch. `Some(versions)`: the first watch delivers
    /// these versions (which `get` never shows: a state shorter than a poll), then
    /// stays open with nothing more.
    pub watch_versions: Mutex<Option<Vec<Value>>>,
}

impl FakeCluster {
    pub fn put(&self, object: Value) {
        let k = key(
            object["kind"].as_str().unwrap(),
            object["metadata"]["name"].as_str().unwrap(),
        );
        self.objects.lock().unwrap().insert(k, object);
    }

    pub fn set_status(&self, kind: &str, name: &str, status: Value) {
        let mut objects = self.objects.lock().unwrap();
        objects.get_mut(&key(kind, name)).unwrap()["status"] = status;
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl Cluster for FakeCluster {
    fn watch<'a>(
        &'a self,
        _object: &'a ObjectRef,
        _ns: &'a str,
        _resource_version: &'a str,
    ) -> BoxFuture<'a, Option<Result<bloodraven_chaos::cluster::ObjectVersions, ClusterError>>>
    {
        use futures::StreamExt;
        Box::pin(async move {
            let versions = self
                .watch_versions
                .lock()
                .unwrap()
                .as_mut()
                .map(std::mem::take)?;
            let stream = futures::stream::iter(versions.into_iter().map(Ok))
                .chain(futures::stream::pending());
            Some(Ok(stream.boxed()))
        })
    }

    fn apply<'a>(
        &'a self,
        manifest: &'a Value,
        _ns: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push(format!("apply {}", manifest["metadata"]["name"]));
            self.put(manifest.clone());
            Ok(())
        })
    }

    fn get<'a>(
        &'a self,
        object: &'a ObjectRef,
        _ns: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, ClusterError>> {
        Box::pin(async move {
            let mut flaky = self.flaky_gets.lock().unwrap();
            if *flaky > 0 {
                *flaky -= 1;
                return Err(ClusterError::Api {
                    verb: "get",
                    object: object.to_string(),
                    message: "connection reset by peer".into(),
                });
            }
            Ok(self
                .objects
                .lock()
                .unwrap()
                .get(&key(&object.kind, &object.name))
                .cloned())
        })
    }

    fn merge_patch<'a>(
        &'a self,
        object: &'a ObjectRef,
        _ns: &'a str,
        patch: &'a Value,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push(format!("patch {object} {patch}"));
            let mut objects = self.objects.lock().unwrap();
            let target = objects
                .get_mut(&key(&object.kind, &object.name))
                .ok_or_else(|| ClusterError::Api {
                    verb: "patch",
                    object: object.to_string(),
                    message: "not found".into(),
                })?;
            merge(target, patch);
            Ok(())
        })
    }

    fn delete<'a>(
        &'a self,
        object: &'a ObjectRef,
        _ns: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(format!("delete {object}"));
            self.objects
                .lock()
                .unwrap()
                .remove(&key(&object.kind, &object.name));
            Ok(())
        })
    }

    fn events<'a>(
        &'a self,
        object: &'a ObjectRef,
        _ns: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Value>, ClusterError>> {
        Box::pin(async move {
            Ok(self
                .events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e["involvedObject"]["name"] == object.name.as_str())
                .cloned()
                .collect())
        })
    }
}

/// A backend over `FakeCluster` whose faults are recorded, not performed: plan_fault
/// turns `fault` into `{"do": "<fault>"}` with undo `{"undo": "<fault>"}`.
pub struct FakeBackend {
    pub cluster: Arc<FakeCluster>,
    pub clock: SharedClock,
    pub executed: Mutex<Vec<Value>>,
    pub metrics: Mutex<String>,
    pub counter: Option<Arc<dyn CounterTarget>>,
    pub writability: Mutex<Option<BTreeMap<String, SiteWritability>>>,
}

impl FakeBackend {
    pub fn new(cluster: Arc<FakeCluster>) -> Self {
        Self {
            cluster,
            clock: Arc::new(TokioClock(tokio::time::Instant::now())),
            executed: Mutex::new(Vec::new()),
            metrics: Mutex::new(String::new()),
            counter: None,
            writability: Mutex::new(None),
        }
    }

    pub fn executed(&self) -> Vec<Value> {
        self.executed.lock().unwrap().clone()
    }
}

/// Each fault is one opaque operation: `{"do": "<fault>"}`, undone by `{"undo": ...}`.
impl FaultOps for FakeBackend {
    type Op = Value;
    const KIND: BackendKind = BackendKind::Sim;

    fn plan_ops<'a>(
        &'a self,
        fault: &'a Fault,
        _ns: &'a str,
    ) -> BoxFuture<'a, Result<TypedPlan<Value>, BackendError>> {
        Box::pin(async move {
            Ok((
                vec![json!({"do": fault.to_string()})],
                vec![json!({"undo": fault.to_string()})],
            ))
        })
    }

    fn run_op<'a>(&'a self, op: &'a Value) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.executed.lock().unwrap().push(op.clone());
            Ok(())
        })
    }
}

impl Backend for FakeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sim
    }
    fn describe(&self) -> String {
        "fake (test double)".into()
    }
    fn cluster(&self) -> SharedCluster {
        self.cluster.clone()
    }
    fn clock(&self) -> SharedClock {
        self.clock.clone()
    }
    fn scrape_metrics(&self) -> BoxFuture<'_, Result<String, BackendError>> {
        Box::pin(async move { Ok(self.metrics.lock().unwrap().clone()) })
    }
    fn counter(&self, _namespace: &str) -> Option<Arc<dyn CounterTarget>> {
        self.counter.clone()
    }
    fn writability_sites<'a>(
        &'a self,
        _namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, BackendError>> {
        let sites = self
            .writability
            .lock()
            .unwrap()
            .as_ref()
            .map(|w| w.keys().cloned().collect());
        Box::pin(async move { Ok(sites) })
    }
    fn site_writability<'a>(
        &'a self,
        _namespace: &'a str,
        site: &'a str,
    ) -> BoxFuture<'a, SiteWritability> {
        let state = self
            .writability
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|w| w.get(site).cloned())
            .unwrap_or_else(|| SiteWritability::Unknown(format!("no site {site}")));
        Box::pin(async move { state })
    }
}

pub fn group(active: &str, health: &str) -> Value {
    let other = if active == "iad" { "pdx" } else { "iad" };
    json!({
        "apiVersion": "bloodraven.shipstream.io/v1alpha1",
        "kind": "MysqlFailoverGroup",
        "metadata": {"name": "playground", "namespace": "bloodraven-playground", "managedFields": [{"manager": "x"}]},
        "spec": {"sites": [{"name": "iad"}, {"name": "pdx"}]},
        "status": {
            "activeSite": active,
            "health": health,
            "sites": [
                {"name": active, "state": "writable"},
                {"name": other, "state": "read-only", "replicating": true}
            ]
        }
    })
}
