//! Small accessors over Kubernetes objects held as `serde_json::Value`, shared by the
//! simulated controllers and the cluster DNS (the API server's in-process interface
//! speaks `Value`). A leaf: it imports nothing from the rest of the crate.

use std::collections::BTreeMap;

use bloodraven::hash::fnv1a64;
use serde_json::{Value, json};

pub(crate) fn str_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(obj, path).and_then(Value::as_str)
}

pub(crate) fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |value, key| value.get(key))
}

pub(crate) fn i64_at(obj: &Value, path: &[&str]) -> Option<i64> {
    at(obj, path).and_then(Value::as_i64)
}

pub(crate) fn name(obj: &Value) -> &str {
    str_at(obj, &["metadata", "name"]).unwrap_or_default()
}

pub(crate) fn namespace(obj: &Value) -> &str {
    str_at(obj, &["metadata", "namespace"]).unwrap_or_default()
}

pub(crate) fn uid(obj: &Value) -> &str {
    str_at(obj, &["metadata", "uid"]).unwrap_or_default()
}

pub(crate) fn is_terminating(obj: &Value) -> bool {
    at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|ts| !ts.is_null())
}

pub(crate) fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(at(obj, &["metadata", "labels"]))
}

/// The uid of the object's controlling owner, if any.
pub(crate) fn controller_uid(obj: &Value) -> Option<&str> {
    at(obj, &["metadata", "ownerReferences"])?
        .as_array()?
        .iter()
        .find(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|owner| owner.get("uid"))
        .and_then(Value::as_str)
}

/// An ownerReference making `owner` the controller of a child object.
pub(crate) fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Does a `matchLabels`-only map selector (Service, nodeSelector) match?
pub(crate) fn map_selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Does a metav1.LabelSelector (matchLabels + matchExpressions) match? An empty
/// selector matches everything, as in Kubernetes.
pub(crate) fn label_selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = string_map(selector.get("matchLabels"));
    if !map_selector_matches(&match_labels, labels) {
        return false;
    }
    let expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    expressions
        .iter()
        .all(|expr| expression_matches(expr, |key| labels.get(key).map(String::as_str)))
}

/// One `matchExpressions` entry (label selectors and node-affinity terms share the
/// operators; Gt/Lt only occur in node affinity).
pub(crate) fn expression_matches<'a>(
    expr: &Value,
    lookup: impl Fn(&str) -> Option<&'a str>,
) -> bool {
    let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
    let operator = expr
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let values: Vec<&str> = expr
        .get("values")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let actual = lookup(key);
    match operator {
        "In" => actual.is_some_and(|a| values.contains(&a)),
        "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        "Gt" | "Lt" => {
            let parsed = actual.and_then(|a| a.parse::<i64>().ok());
            let bound = values.first().and_then(|b| b.parse::<i64>().ok());
            match (parsed, bound) {
                (Some(a), Some(b)) if operator == "Gt" => a > b,
                (Some(a), Some(b)) => a < b,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Stable short hash of a JSON value (FNV-1a over its canonical text; serde_json
/// objects are ordered maps here, so equal values give equal text).
pub(crate) fn stable_hash(value: &Value) -> String {
    let hash = fnv1a64(value.to_string().as_bytes());
    // Kubernetes' revision hashes use a safe alphabet; 10 hex digits is enough here.
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

/// A Kubernetes condition list entry, keeping `lastTransitionTime` when the status did
/// not change.
pub(crate) fn upsert_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
    now: &str,
) {
    let previous = conditions
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some(kind));
    let transition = match previous.and_then(|i| conditions.get(i)) {
        Some(old) if old.get("status").and_then(Value::as_str) == Some(status) => old
            .get("lastTransitionTime")
            .cloned()
            .unwrap_or_else(|| json!(now)),
        _ => json!(now),
    };
    let mut condition = json!({"type": kind, "status": status, "lastTransitionTime": transition, "lastProbeTime": null});
    if let Some(reason) = reason {
        condition["reason"] = json!(reason);
    }
    if let Some(message) = message {
        condition["message"] = json!(message);
    }
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

pub(crate) fn condition_status<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    at(obj, &["status", "conditions"])?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
}

/// Pod is Running with Ready=True.
pub(crate) fn pod_is_ready(pod: &Value) -> bool {
    str_at(pod, &["status", "phase"]) == Some("Running")
        && condition_status(pod, "Ready") == Some("True")
}

/// Ordinal of a StatefulSet pod name `<set>-<n>`.
pub(crate) fn ordinal_of(set: &str, pod: &str) -> Option<u32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let pod = labels_of(&[("app", "mysql"), ("site", "iad")]);
        assert!(label_selector_matches(&json!({}), &pod));
        assert!(label_selector_matches(
            &json!({"matchLabels": {"app": "mysql"}}),
            &pod
        ));
        assert!(!label_selector_matches(
            &json!({"matchLabels": {"app": "redis"}}),
            &pod
        ));
        let set_based = json!({"matchExpressions": [
            {"key": "site", "operator": "In", "values": ["iad", "pdx"]},
            {"key": "tier", "operator": "DoesNotExist"}
        ]});
        assert!(label_selector_matches(&set_based, &pod));
        let not_in =
            json!({"matchExpressions": [{"key": "site", "operator": "NotIn", "values": ["iad"]}]});
        assert!(!label_selector_matches(&not_in, &pod));
        let gt = json!({"key": "cpu", "operator": "Gt", "values": ["4"]});
        assert!(expression_matches(&gt, |_| Some("8")));
        assert!(!expression_matches(&gt, |_| Some("2")));
        assert!(!expression_matches(&gt, |_| None));
    }

    #[test]
    fn conditions_keep_transition_time_while_unchanged() {
        let mut conditions = Vec::new();
        upsert_condition(&mut conditions, "Ready", "False", None, None, "t1");
        upsert_condition(&mut conditions, "Ready", "False", Some("Why"), None, "t2");
        assert_eq!(conditions[0]["lastTransitionTime"], "t1");
        upsert_condition(&mut conditions, "Ready", "True", None, None, "t3");
        assert_eq!(conditions[0]["lastTransitionTime"], "t3");
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn stable_hash_and_ordinals() {
        assert_eq!(stable_hash(&json!({"a": 1})), stable_hash(&json!({"a": 1})));
        assert_ne!(stable_hash(&json!({"a": 1})), stable_hash(&json!({"a": 2})));
        assert_eq!(ordinal_of("mysql-iad", "mysql-iad-2"), Some(2));
        assert_eq!(ordinal_of("mysql", "mysql-iad-2"), None);
    }
}
