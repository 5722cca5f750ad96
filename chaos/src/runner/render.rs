//! How objects, values and Events are printed in failure texts and the timeline.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The object as shown in failures: without managedFields, which only add noise.
pub(super) fn shown_object(object: &Value) -> Value {
    let mut shown = object.clone();
    if let Some(meta) = shown.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    shown
}

pub(super) fn last_ack_age(history: &History, now: Millis) -> String {
    match history.acknowledged().last() {
        Some(a) => format!("{} ms ago", now - a.completed_at),
        None => "never".into(),
    }
}

pub(super) fn leaf_changes(path: &str, before: &Value, after: &Value, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                leaf_changes(
                    &format!("{path}.{k}"),
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a == b => {}
        (Value::Null, Value::Object(b)) => {
            for (k, v) in b {
                leaf_changes(&format!("{path}.{k}"), &Value::Null, v, out);
            }
        }
        (a, b) => out.push(format!("{path}: {} -> {}", compact(a), compact(b))),
    }
}

pub(super) fn compact(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(s) => s.clone(),
        other => {
            let s = other.to_string();
            if s.len() > 60 {
                format!("{}...", &s[..57])
            } else {
                s
            }
        }
    }
}

pub(super) fn describe_event(ev: &Value) -> String {
    let f = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("");
    format!("{} {}: {}", f("type"), f("reason"), f("message"))
}

/// The latest time an Event says it happened, in Unix ms (0 when it says nothing).
pub(super) fn event_time_ms(ev: &Value) -> Millis {
    ["lastTimestamp", "eventTime", "firstTimestamp"]
        .iter()
        .filter_map(|k| ev.get(*k).and_then(Value::as_str))
        .chain(
            ev.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str),
        )
        .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
        .max()
        .unwrap_or(0)
}
