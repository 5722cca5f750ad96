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
pub(super) fn to_core(obj: Value) -> Value {
    rename(obj, |(events, core)| (events, core), "v1")
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
}
