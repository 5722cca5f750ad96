//! Kubernetes Events for notable transitions (Scheduled, Pulled, Started, Killing,
//! BackOff, FailedScheduling, SuccessfulCreate ...), aggregated like client-go's
//! recorder: a repeat of the same reason and message bumps `count` and
//! `lastTimestamp` on the existing Event instead of creating a new one.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::object::{name, namespace, uid};
use bloodraven::seams::Clock;

use super::{ControllerApi, format_time, key_events};
use crate::clock::SimClock;

/// Repeats of an identical event within this window only bump the stored counter;
/// the Event object is rewritten at most once per window (client-go's spam filter
/// has the same effect).
const REPEAT_WRITE_WINDOW_SECONDS: i64 = 10;

struct Recorded {
    event_name: String,
    namespace: String,
    count: u64,
    last_written: i64,
    last_seen: jiff::Timestamp,
}

pub(crate) struct EventRecorder {
    api: ControllerApi,
    clock: SimClock,
    counter: u64,
    seen: BTreeMap<(String, String, String, String), Recorded>,
}

impl EventRecorder {
    pub(crate) fn new(api: ControllerApi, clock: SimClock) -> Self {
        Self {
            api,
            clock,
            counter: 0,
            seen: BTreeMap::new(),
        }
    }

    /// Records an event about `object` (a full object with apiVersion/kind/metadata).
    pub(crate) fn record(
        &mut self,
        component: &str,
        host: Option<&str>,
        object: &Value,
        kind: &str,
        reason: &str,
        message: &str,
    ) {
        self.api.note_effect();
        let now = self.clock.now();
        let key = (
            uid(object).to_string(),
            reason.to_string(),
            message.to_string(),
            component.to_string(),
        );
        let stamp = format_time(now);
        if let Some(recorded) = self.seen.get_mut(&key) {
            recorded.count += 1;
            recorded.last_seen = now;
            if now.as_second() - recorded.last_written < REPEAT_WRITE_WINDOW_SECONDS {
                return;
            }
            recorded.last_written = now.as_second();
            let patch = json!({"count": recorded.count, "lastTimestamp": stamp});
            let ns = recorded.namespace.clone();
            let event_name = recorded.event_name.clone();
            self.api
                .merge_patch(component, &key_events(), Some(&ns), &event_name, patch);
            return;
        }
        self.counter += 1;
        let ns = if namespace(object).is_empty() {
            "default".to_string()
        } else {
            namespace(object).to_string()
        };
        let event_name = format!("{}.{:016x}", name(object), self.counter);
        let mut involved = json!({
            "apiVersion": object.get("apiVersion").cloned().unwrap_or(Value::Null),
            "kind": object.get("kind").cloned().unwrap_or(Value::Null),
            "name": name(object),
            "uid": uid(object),
            "resourceVersion": object.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
        });
        if !namespace(object).is_empty() {
            involved["namespace"] = json!(namespace(object));
        }
        let mut source = json!({"component": component});
        if let Some(host) = host {
            source["host"] = json!(host);
        }
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": kind,
            "source": source,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "reportingComponent": component,
            "reportingInstance": host.unwrap_or(component),
        });
        self.api.create(component, &key_events(), Some(&ns), event);
        self.seen.insert(
            key,
            Recorded {
                event_name,
                namespace: ns,
                count: 1,
                last_written: now.as_second(),
                last_seen: now,
            },
        );
        // Forget aggregation state of long-quiet events so the map stays small.
        if self.seen.len() > 4096 {
            let cutoff = now.as_second() - 3600;
            self.seen.retain(|_, r| r.last_seen.as_second() >= cutoff);
        }
    }
}
