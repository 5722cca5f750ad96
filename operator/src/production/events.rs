//! Kubernetes Events (events.k8s.io/v1) with timestamps from the injected `Clock`.
//!
//! Not kube's `Recorder`: it stamps `eventTime`, `series.lastObservedTime` and the
//! event name with `jiff::Timestamp::now()`, which is real wall time inside the
//! simulation and would make runs irreproducible. This publisher does the same job
//! (create, then aggregate repeats into `series.count` within six minutes, as
//! client-go's event broadcaster does) with the clock passed in.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::engine::{EventIntent, EventKind, EventReason};
use crate::seams::SharedClock;

/// Repeats of one event within this span are counted on the first Event object.
pub(crate) const SERIES_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_mins(6);

/// What the publisher calls (see `crate::rbac`): create an Event, patch its series.
pub(crate) const API_ACCESS: &[crate::rbac::ApiAccess] = &[crate::rbac::ApiAccess {
    group: "events.k8s.io",
    resource: "events",
    verbs: &["create", "patch"],
    scope: crate::rbac::Scope::Watched,
    why: "Events on the groups (FailoverStarted, SiteFenced, ...) and the backups (BackupFailed, ...)",
}];

/// The `action` field of an Event: what the operator did or tried, derived from the
/// reason so that the engine only has to say what happened.
pub(crate) fn action_for(reason: EventReason) -> &'static str {
    match reason {
        EventReason::FailoverStarted
        | EventReason::FailoverSucceeded
        | EventReason::FailoverFailed
        | EventReason::FailoverBlocked
        | EventReason::ForceFailoverRejected
        | EventReason::PlannedFailoverRejected => "Failover",
        EventReason::SiteFenced | EventReason::SplitBrainDetected => "Fence",
        EventReason::DivergenceDetected
        | EventReason::DragonflyDiscouragedArgs
        | EventReason::GroupUnreadable => "Observe",
        EventReason::RecloneRejected
        | EventReason::RecloneStarted
        | EventReason::RecloneSucceeded => "Reclone",
        EventReason::DNSUpdated => "UpdateDNS",
        EventReason::BackupStarted
        | EventReason::BackupSucceeded
        | EventReason::BackupFailed
        | EventReason::BackupExpired
        | EventReason::BackupExpiryFailed => "Backup",
        EventReason::RestoreStarted
        | EventReason::RestoreLoading
        | EventReason::RestoreLoaded
        | EventReason::RestoreRecloning
        | EventReason::RestoreSucceeded
        | EventReason::RestoreFailed => "Restore",
        EventReason::VerificationStarted
        | EventReason::VerificationSucceeded
        | EventReason::VerificationFailed => "VerifyBackup",
        EventReason::DragonflyMasterMoved | EventReason::DragonflyTakeoverFailed => {
            "MoveDragonflyMaster"
        }
        EventReason::DragonflyDegraded | EventReason::DragonflyStartupFailed => "Observe",
        EventReason::DragonflyRolloutStarted | EventReason::DragonflyRolloutCompleted => {
            "RollDragonfly"
        }
    }
}

fn type_str(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Normal => "Normal",
        EventKind::Warning => "Warning",
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum EventError {
    #[error("publishing Event {reason} for {kind} {namespace}/{name} failed: {source}")]
    Publish {
        reason: String,
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// Which earlier Event a new one repeats. The note is part of the key (kube's Recorder
/// leaves it out): scenarios and people match on the message, and a different message
/// must not be hidden under the count of an older one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct EventKey {
    regarding: (String, String, String, String),
    type_: &'static str,
    reason: &'static str,
    note: String,
}

#[derive(Debug, Clone)]
struct Published {
    namespace: String,
    name: String,
    count: i32,
    last_observed: jiff::Timestamp,
}

pub(crate) struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
    clock: SharedClock,
    published: Mutex<BTreeMap<EventKey, Published>>,
    sequence: AtomicU64,
}

impl EventPublisher {
    /// `controller` is `reportingController` (`bloodraven.shipstream.io/operator`),
    /// `instance` the replica's pod name.
    pub(crate) fn new(
        client: Client,
        controller: &str,
        instance: &str,
        clock: SharedClock,
    ) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            clock,
            published: Mutex::default(),
            sequence: AtomicU64::new(0),
        }
    }

    /// Publishes `intent` about `regarding`: a new Event, or a series update of the
    /// identical Event published within [`SERIES_WINDOW`].
    pub(crate) async fn publish(
        &self,
        intent: &EventIntent,
        regarding: &ObjectReference,
    ) -> Result<(), EventError> {
        let now = self.clock.now();
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = EventKey {
            regarding: (
                regarding.kind.clone().unwrap_or_default(),
                namespace.clone(),
                regarding.name.clone().unwrap_or_default(),
                regarding.uid.clone().unwrap_or_default(),
            ),
            type_: type_str(intent.kind),
            reason: intent.reason.as_str(),
            note: intent.message.clone(),
        };
        let previous = {
            let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
            published.retain(|_, p| p.last_observed + SERIES_WINDOW > now);
            published.get(&key).cloned()
        };
        let error = |source| EventError::Publish {
            reason: intent.reason.as_str().to_string(),
            kind: key.regarding.0.clone(),
            namespace: namespace.clone(),
            name: key.regarding.2.clone(),
            source: Box::new(source),
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let record = match previous {
            Some(mut repeat) => {
                repeat.count += 1;
                repeat.last_observed = now;
                let series = EventSeries {
                    count: repeat.count,
                    last_observed_time: MicroTime(now),
                };
                api.patch(
                    &repeat.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "series": series })),
                )
                .await
                .map_err(error)?;
                repeat
            }
            None => {
                let event = self.new_event(intent, regarding, &namespace, now);
                let name = event.metadata.name.clone().unwrap_or_default();
                api.create(&PostParams::default(), &event)
                    .await
                    .map_err(error)?;
                Published {
                    namespace: namespace.clone(),
                    name,
                    count: 1,
                    last_observed: now,
                }
            }
        };
        tracing::debug!(event = %record.name, namespace = %record.namespace, count = record.count, reason = intent.reason.as_str(), "event published");
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, record);
        Ok(())
    }

    fn new_event(
        &self,
        intent: &EventIntent,
        regarding: &ObjectReference,
        namespace: &str,
        now: jiff::Timestamp,
    ) -> Event {
        // Unique per publisher even when the clock has not moved (simulated time can
        // stand still between two publishes).
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let base = regarding
            .name
            .clone()
            .unwrap_or_else(|| self.controller.clone());
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{base}.{:x}.{sequence}", now.as_nanosecond())),
                namespace: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(type_str(intent.kind).to_string()),
            reason: Some(intent.reason.as_str().to_string()),
            note: Some(intent.message.clone()),
            action: Some(action_for(intent.reason).to_string()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::production::fake_api::FakeApi;
    use crate::seams::Clock;

    /// A clock the test moves by hand.
    struct ManualClock(Mutex<jiff::Timestamp>);
    impl Clock for ManualClock {
        fn now(&self) -> jiff::Timestamp {
            *self.0.lock().unwrap()
        }
    }

    fn regarding() -> ObjectReference {
        ObjectReference {
            api_version: Some("bloodraven.shipstream.io/v1alpha1".into()),
            kind: Some("MysqlFailoverGroup".into()),
            name: Some("playground".into()),
            namespace: Some("bp".into()),
            uid: Some("uid-1".into()),
            ..ObjectReference::default()
        }
    }

    fn rejected(note: &str) -> EventIntent {
        EventIntent::warning(EventReason::RecloneRejected, note)
    }

    #[tokio::test]
    async fn events_carry_the_injected_time_and_repeats_become_a_series() {
        let clock = Arc::new(ManualClock(Mutex::new(
            "2030-01-01T00:00:00Z".parse().unwrap(),
        )));
        let api = FakeApi::echo();
        let publisher = EventPublisher::new(
            api.client(),
            "bloodraven.shipstream.io/operator",
            "op-0",
            clock.clone(),
        );
        let note = "expected pdx:61553741, got pdx:deadbeef";
        publisher
            .publish(&rejected(note), &regarding())
            .await
            .unwrap();
        *clock.0.lock().unwrap() = "2030-01-01T00:00:30Z".parse().unwrap();
        publisher
            .publish(&rejected(note), &regarding())
            .await
            .unwrap();
        publisher
            .publish(&rejected("another message"), &regarding())
            .await
            .unwrap();

        let requests = api.requests();
        let methods: Vec<&str> = requests.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, ["POST", "PATCH", "POST"]);
        let created = &requests[0];
        assert_eq!(created.path, "/apis/events.k8s.io/v1/namespaces/bp/events");
        assert_eq!(created.body["eventTime"], "2030-01-01T00:00:00.000000Z");
        assert_eq!(created.body["type"], "Warning");
        assert_eq!(created.body["reason"], "RecloneRejected");
        assert_eq!(created.body["action"], "Reclone");
        assert_eq!(created.body["note"], note);
        assert_eq!(created.body["regarding"]["name"], "playground");
        assert_eq!(
            created.body["reportingController"],
            "bloodraven.shipstream.io/operator"
        );
        assert_eq!(created.body["reportingInstance"], "op-0");
        let name = created.body["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("playground."), "{name}");
        assert_eq!(
            requests[1].path,
            format!("/apis/events.k8s.io/v1/namespaces/bp/events/{name}")
        );
        assert_eq!(
            requests[1].body,
            json!({"series": {"count": 2, "lastObservedTime": "2030-01-01T00:00:30.000000Z"}})
        );
        assert_ne!(
            requests[2].body["metadata"]["name"],
            created.body["metadata"]["name"]
        );
    }

    #[tokio::test]
    async fn a_repeat_after_the_series_window_is_a_new_event() {
        let clock = Arc::new(ManualClock(Mutex::new(
            "2030-01-01T00:00:00Z".parse().unwrap(),
        )));
        let api = FakeApi::echo();
        let publisher = EventPublisher::new(api.client(), "c", "i", clock.clone());
        publisher
            .publish(&rejected("x"), &regarding())
            .await
            .unwrap();
        *clock.0.lock().unwrap() = "2030-01-01T00:06:00Z".parse().unwrap();
        publisher
            .publish(&rejected("x"), &regarding())
            .await
            .unwrap();
        let methods: Vec<String> = api.requests().into_iter().map(|r| r.method).collect();
        assert_eq!(methods, ["POST", "POST"]);
    }
}
