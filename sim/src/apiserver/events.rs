//! core/v1 and events.k8s.io/v1 Events share one storage (core/v1 form), as in
//! Kubernetes, so that an Event the operator records through `kube::runtime::events`
//! (events.k8s.io/v1) shows in `kubectl get events` and `kubectl describe` (core/v1).
//! Field mapping from k8s.io/kubernetes/pkg/apis/events/v1/conversion.go.

use serde_json::{Map, Value};

/// (events.k8s.io/v1 field, core/v1 field)
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// events.k8s.io/v1 -> stored core/v1.
///
/// A deliberate difference from Kubernetes: an events.k8s.io Event that carries no
/// `deprecatedLastTimestamp` (kube-runtime's recorder never sets it) gets the core
/// `lastTimestamp`, `firstTimestamp` and `count` from `eventTime` and `series`. Without
/// them `kubectl get events --sort-by=.lastTimestamp` (the guide's command) puts every
/// operator Event before the cluster's, and the LAST SEEN column of a repeated Event
/// would not move.
pub(super) fn to_core(obj: Value) -> Value {
    let mut core = rename(obj, |(events, core)| (events, core), "v1");
    fill_legacy_timestamps(&mut core);
    core
}

fn fill_legacy_timestamps(core: &mut Value) {
    let Value::Object(map) = core else {
        return;
    };
    let event_time = map
        .get("eventTime")
        .and_then(Value::as_str)
        .map(whole_seconds);
    let Some(event_time) = event_time else {
        return;
    };
    let series = map.get("series");
    let series_last = series
        .and_then(|s| s.get("lastObservedTime"))
        .and_then(Value::as_str)
        .map(whole_seconds);
    let series_count = series.and_then(|s| s.get("count")).and_then(Value::as_u64);
    if map.get("firstTimestamp").is_none_or(Value::is_null) {
        map.insert("firstTimestamp".into(), Value::String(event_time.clone()));
    }
    // The series, when there is one, is the newer observation.
    if let Some(last) = series_last {
        map.insert("lastTimestamp".into(), Value::String(last));
    } else if map.get("lastTimestamp").is_none_or(Value::is_null) {
        map.insert("lastTimestamp".into(), Value::String(event_time));
    }
    if let Some(count) = series_count {
        map.insert("count".into(), Value::from(count));
    } else if map.get("count").is_none_or(Value::is_null) {
        map.insert("count".into(), Value::from(1));
    }
}

/// metav1.MicroTime (`...T00:00:01.250000Z`) -> metav1.Time (`...T00:00:01Z`).
fn whole_seconds(micro: &str) -> String {
    match micro.split_once('.') {
        Some((seconds, _)) => format!("{seconds}Z"),
        None => micro.to_string(),
    }
}

/// Stored core/v1 -> events.k8s.io/v1.
pub(super) fn from_core(obj: Value) -> Value {
    rename(obj, |(events, core)| (core, events), "events.k8s.io/v1")
}

fn rename(
    obj: Value,
    direction: fn((&'static str, &'static str)) -> (&'static str, &'static str),
    api_version: &str,
) -> Value {
    let Value::Object(mut map) = obj else {
        return obj;
    };
    let mut out = Map::new();
    for &pair in RENAMES {
        let (from, to) = direction(pair);
        if let Some(v) = map.remove(from) {
            out.insert(to.to_string(), v);
        } else {
            // A field that exists only under the target name is dropped (it would
            // shadow the renamed one on the way back).
            map.remove(to);
        }
    }
    for (k, v) in map {
        out.insert(k, v);
    }
    // core/v1 series is {count, lastObservedTime}; events.k8s.io/v1 the same names.
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_between_versions() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
                        "regarding": {"kind": "Pod", "name": "p"}, "note": "hello", "reason": "Started",
                        "reportingController": "bloodraven", "type": "Normal"});
        let core = to_core(v1.clone());
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hello");
        assert_eq!(core["reportingComponent"], "bloodraven");
        assert_eq!(core["apiVersion"], "v1");
        assert!(core.get("note").is_none());
        assert_eq!(from_core(core), v1);
    }

    #[test]
    fn events_without_legacy_timestamps_get_them_from_event_time_and_series() {
        let first = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
                           "eventTime": "2026-12-03T12:00:01.250000Z", "reason": "Promoted"});
        let core = to_core(first);
        assert_eq!(core["lastTimestamp"], "2026-12-03T12:00:01Z");
        assert_eq!(core["firstTimestamp"], "2026-12-03T12:00:01Z");
        assert_eq!(core["count"], 1);

        let repeated = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
                              "eventTime": "2026-12-03T12:00:01.250000Z", "reason": "Promoted",
                              "deprecatedLastTimestamp": "2026-12-03T12:00:01Z",
                              "series": {"count": 3, "lastObservedTime": "2026-12-03T12:05:00.000001Z"}});
        let core = to_core(repeated);
        assert_eq!(core["lastTimestamp"], "2026-12-03T12:05:00Z");
        assert_eq!(core["count"], 3);

        // An Event that already carries the legacy fields keeps them.
        let explicit = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
                              "eventTime": "2026-12-03T12:00:01.000000Z",
                              "deprecatedLastTimestamp": "2026-12-03T11:00:00Z", "deprecatedCount": 7});
        let core = to_core(explicit);
        assert_eq!(core["lastTimestamp"], "2026-12-03T11:00:00Z");
        assert_eq!(core["count"], 7);
    }
}
