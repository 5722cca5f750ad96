//! The non-apply patch types: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! Kubernetes strategic merge patch, with the list merge keys of the built-in kinds.
//!
//! Strategic merge follows `k8s.io/apimachinery/pkg/util/strategicpatch`: maps merge
//! recursively, `null` deletes, lists with a merge key merge item by item, primitive
//! lists with strategy `merge` (finalizers) are unions, every other list is replaced.
//! Directives: `$patch: replace|delete|merge`, `$deleteFromPrimitiveList/<f>`,
//! `$setElementOrder/<f>` and `$retainKeys`.

use serde_json::{Map, Value};

use super::error::ApiError;

/// How a list field merges, for strategic merge patch and server-side apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// A set of primitives (union on merge).
    Set,
    /// A list of objects identified by these key fields.
    Map(Vec<String>),
}

/// The list type of field `name` inside an object reached by `path` (field names from
/// the root, e.g. `["spec", "template", "spec", "containers"]`), for built-in kinds.
pub(super) fn builtin_list_type(path: &[String], name: &str) -> ListType {
    let in_container = path.last().is_some_and(|p| {
        matches!(
            p.as_str(),
            "containers" | "initContainers" | "ephemeralContainers"
        )
    });
    let keys = |ks: &[&str]| ListType::Map(ks.iter().map(|k| k.to_string()).collect());
    match name {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "env"
        | "containerStatuses"
        | "initContainerStatuses" => keys(&["name"]),
        "volumeMounts" => keys(&["mountPath"]),
        "volumeDevices" => keys(&["devicePath"]),
        "ports" if in_container => keys(&["containerPort"]),
        "ports" => keys(&["port"]),
        "conditions" | "addresses" => keys(&["type"]),
        "hostAliases" => keys(&["ip"]),
        "topologySpreadConstraints" => keys(&["topologyKey"]),
        "ownerReferences" => keys(&["uid"]),
        "finalizers" if path.last().is_some_and(|p| p == "metadata") => ListType::Set,
        _ => ListType::Atomic,
    }
}

/// RFC 7386 JSON merge patch.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    if !patch.is_object() {
        return Err(ApiError::bad_request("merge patch must be a JSON object"));
    }
    json_patch::merge(target, patch);
    Ok(())
}

/// RFC 6902 JSON patch; a failing operation (including `test`) is 422.
pub(super) fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops.0).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the JSON patch could not be applied: {e}"),
        )
    })
}

/// Kubernetes strategic merge patch with the built-in kinds' merge keys.
pub(super) fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Value::Object(patch_map) = patch else {
        return Err(ApiError::bad_request(
            "strategic merge patch must be a JSON object",
        ));
    };
    let result = merge_map(target.take(), patch_map, &mut Vec::new())?;
    *target = result;
    Ok(())
}

fn merge_map(
    original: Value,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let mut original = match original {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            return Ok(Value::Object(strip_directives(replaced)));
        }
        Some("delete") => return Ok(Value::Null),
        Some("merge") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch directive $patch: {other}"
            )));
        }
    }
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: Vec<&Value> = value
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            if let Some(Value::Array(items)) = original.get_mut(field) {
                items.retain(|item| !remove.contains(&item));
            }
            continue;
        }
        if value.is_null() {
            original.remove(key);
            continue;
        }
        let current = original.remove(key).unwrap_or(Value::Null);
        path.push(key.clone());
        let merged = match value {
            Value::Object(child) => merge_map(current, child, path)?,
            Value::Array(items) => {
                path.pop();
                let list_type = builtin_list_type(path, key);
                path.push(key.clone());
                merge_list(current, items, &list_type, path)?
            }
            scalar => scalar.clone(),
        };
        path.pop();
        if !merged.is_null() {
            original.insert(key.clone(), merged);
        }
        if let Some(order) = patch
            .get(&format!("$setElementOrder/{key}"))
            .and_then(Value::as_array)
            && let (Some(Value::Array(items)), ListType::Map(keys)) =
                (original.get_mut(key), builtin_list_type(path, key))
        {
            reorder(items, order, &keys);
        }
    }
    Ok(Value::Object(original))
}

fn merge_list(
    original: Value,
    patch: &[Value],
    list_type: &ListType,
    path: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let replace_all = patch
        .iter()
        .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"));
    match list_type {
        ListType::Atomic => Ok(Value::Array(patch.iter().map(clean).collect())),
        ListType::Set if !replace_all => {
            let mut items = match original {
                Value::Array(items) => items,
                _ => Vec::new(),
            };
            for item in patch {
                if !items.contains(item) {
                    items.push(item.clone());
                }
            }
            Ok(Value::Array(items))
        }
        ListType::Set => Ok(Value::Array(
            patch
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect(),
        )),
        ListType::Map(keys) => {
            let mut items = match original {
                Value::Array(items) if !replace_all => items,
                _ => Vec::new(),
            };
            for patch_item in patch {
                let Value::Object(patch_obj) = patch_item else {
                    return Err(ApiError::bad_request(format!(
                        "list {} with merge key {:?} must contain objects, got {patch_item}",
                        path.join("."),
                        keys
                    )));
                };
                if patch_obj.get("$patch").and_then(Value::as_str) == Some("replace") {
                    continue;
                }
                let position = items
                    .iter()
                    .position(|item| same_key(item, patch_item, keys));
                let directive = patch_obj.get("$patch").and_then(Value::as_str);
                match (position, directive) {
                    (Some(i), Some("delete")) => {
                        items.remove(i);
                    }
                    (None, Some("delete")) => {}
                    (Some(i), _) => {
                        let current = items[i].take();
                        items[i] = merge_map(current, patch_obj, path)?;
                    }
                    (None, _) => items.push(merge_map(Value::Null, patch_obj, path)?),
                }
            }
            Ok(Value::Array(items))
        }
    }
}

fn same_key(a: &Value, b: &Value, keys: &[String]) -> bool {
    keys.iter().all(|k| a.get(k) == b.get(k))
}

fn reorder(items: &mut Vec<Value>, order: &[Value], keys: &[String]) {
    let mut ordered = Vec::with_capacity(items.len());
    for wanted in order {
        if let Some(i) = items.iter().position(|item| same_key(item, wanted, keys)) {
            ordered.push(items.remove(i));
        }
    }
    ordered.append(items);
    *items = ordered;
}

fn clean(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(strip_directives(map.clone())),
        other => other.clone(),
    }
}

fn strip_directives(mut map: Map<String, Value>) -> Map<String, Value> {
    map.retain(|k, _| !k.starts_with('$'));
    for value in map.values_mut() {
        *value = clean(value);
    }
    map
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_by_name_and_env_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "mysql", "image": "mysql:8.0", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "sidecar:1"}
        ]}});
        let patch = json!({"spec": {"containers": [
            {"name": "mysql", "image": "mysql:8.4", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}
        ]}});
        strategic_merge_patch(&mut pod, &patch).unwrap();
        assert_eq!(
            pod,
            json!({"spec": {"containers": [
                {"name": "mysql", "image": "mysql:8.4", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]},
                {"name": "sidecar", "image": "sidecar:1"}
            ]}})
        );
    }

    #[test]
    fn strategic_merge_keys_for_ports_conditions_volumes_and_mounts() {
        let mut obj = json!({
            "spec": {
                "ports": [{"port": 80, "name": "http"}],
                "containers": [{"name": "c", "ports": [{"containerPort": 3306, "name": "mysql"}],
                                 "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql"}]}],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "tolerations": [{"key": "a"}]
            },
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Scheduled", "status": "True"}]}
        });
        let patch = json!({
            "spec": {
                "ports": [{"port": 443, "name": "https"}],
                "containers": [{"name": "c", "ports": [{"containerPort": 33060, "name": "x"}],
                                 "volumeMounts": [{"name": "conf", "mountPath": "/etc/mysql"}]}],
                "volumes": [{"name": "conf", "configMap": {"name": "cm"}}],
                "tolerations": [{"key": "b"}]
            },
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        });
        strategic_merge_patch(&mut obj, &patch).unwrap();
        assert_eq!(obj["spec"]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(
            obj["spec"]["containers"][0]["ports"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            obj["spec"]["containers"][0]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(obj["spec"]["volumes"].as_array().unwrap().len(), 2);
        // tolerations have no merge key: replaced.
        assert_eq!(obj["spec"]["tolerations"], json!([{"key": "b"}]));
        assert_eq!(
            obj["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "Scheduled", "status": "True"}])
        );
    }

    #[test]
    fn strategic_merge_directives() {
        let mut obj = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}},
                             "spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({
            "metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"], "labels": {"x": null}},
            "spec": {"containers": [{"name": "b", "$patch": "delete"}],
                     "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}
        });
        strategic_merge_patch(&mut obj, &patch).unwrap();
        assert_eq!(obj["metadata"]["finalizers"], json!(["b", "c"]));
        assert_eq!(obj["metadata"]["labels"], json!({"y": "2"}));
        assert_eq!(
            obj["spec"]["containers"],
            json!([{"name": "c"}, {"name": "a"}])
        );

        let mut obj = json!({"spec": {"template": {"a": 1, "b": 2}}});
        strategic_merge_patch(
            &mut obj,
            &json!({"spec": {"template": {"$patch": "replace", "c": 3}}}),
        )
        .unwrap();
        assert_eq!(obj, json!({"spec": {"template": {"c": 3}}}));
    }

    #[test]
    fn json_patch_test_failure_is_422() {
        let mut obj = json!({"a": 1});
        let err =
            json_patch(&mut obj, &json!([{"op": "test", "path": "/a", "value": 2}])).unwrap_err();
        assert_eq!(err.code, 422);
        json_patch(
            &mut obj,
            &json!([{"op": "replace", "path": "/a", "value": 3}]),
        )
        .unwrap();
        assert_eq!(obj, json!({"a": 3}));
    }
}
