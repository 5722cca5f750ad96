//! Server-side apply and `metadata.managedFields`.
//!
//! A field set is the set of leaf paths an object sets, in the `fieldsV1` vocabulary of
//! sigs.k8s.io/structured-merge-diff: `f:<field>`, `k:<json of merge keys>` for an item
//! of a keyed list, `v:<json>` for an item of a set, and `.` for "the item itself".
//! Apply merges the applied configuration into the live object, reports a 409 for every
//! field another manager owns with a different value (unless forced, which takes the
//! field over), and removes fields this manager applied before but no longer applies
//! and nobody else owns. Every other write records the fields it changed under its
//! manager with operation `Update`, taking them from whoever owned them.
//!
//! Kept whole (about 690 lines before its tests): field sets, the apply merge and the
//! managedFields bookkeeping are one algorithm over one vocabulary; split apart, each
//! half would need the other's internals.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::error::{ApiError, StatusCause};
use super::patch::{ListType, builtin_list_type};

type FieldPath = Vec<String>;
type FieldSet = BTreeSet<FieldPath>;

/// Where list types come from: the built-in kinds' table or a CRD's schema.
#[derive(Clone, Debug)]
pub(super) enum ListTypes<'a> {
    BuiltIn,
    /// The openAPIV3Schema (x-kubernetes-list-type / x-kubernetes-list-map-keys).
    Schema(&'a Value),
}

impl ListTypes<'_> {
    /// `path` holds the field names from the root to the object containing `name`.
    pub(super) fn list_type(&self, path: &[String], name: &str) -> ListType {
        let schema = match self {
            ListTypes::Schema(schema) if path.first().is_none_or(|p| p != "metadata") => *schema,
            _ => return builtin_list_type(path, name),
        };
        let mut node = schema;
        for segment in path.iter().map(String::as_str).chain(std::iter::once(name)) {
            node = match node.get("properties").and_then(|p| p.get(segment)) {
                Some(next) => next,
                None => match node.get("additionalProperties") {
                    Some(next) if next.is_object() => next,
                    _ => return ListType::Atomic,
                },
            };
            if segment != name && node.get("type").and_then(Value::as_str) == Some("array") {
                node = node.get("items").unwrap_or(&Value::Null);
            }
        }
        match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => ListType::Map(
                node.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|keys| {
                        keys.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            Some("set") => ListType::Set,
            _ => ListType::Atomic,
        }
    }
}

/// Metadata the server owns: never part of a field set.
const UNTRACKED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The leaf paths `obj` sets.
pub(super) fn field_set(obj: &Value, types: &ListTypes<'_>) -> FieldSet {
    let mut out = FieldSet::new();
    let Value::Object(map) = obj else { return out };
    let mut prefix = Vec::new();
    let mut names = Vec::new();
    for (key, child) in map {
        if key == "apiVersion" || key == "kind" {
            continue;
        }
        if key == "metadata" {
            let Value::Object(meta) = child else { continue };
            prefix.push("f:metadata".to_string());
            names.push("metadata".to_string());
            for (mk, mv) in meta {
                if UNTRACKED_META.contains(&mk.as_str()) {
                    continue;
                }
                walk_field(mk, mv, &mut prefix, &mut names, types, &mut out);
            }
            prefix.pop();
            names.pop();
            continue;
        }
        walk_field(key, child, &mut prefix, &mut names, types, &mut out);
    }
    out
}

fn walk_field(
    key: &str,
    value: &Value,
    prefix: &mut FieldPath,
    names: &mut Vec<String>,
    types: &ListTypes<'_>,
    out: &mut FieldSet,
) {
    prefix.push(format!("f:{key}"));
    match value {
        Value::Object(map) if !map.is_empty() => {
            names.push(key.to_string());
            for (k, v) in map {
                walk_field(k, v, prefix, names, types, out);
            }
            names.pop();
        }
        Value::Array(items) if !items.is_empty() => match types.list_type(names, key) {
            ListType::Map(keys) if items.iter().all(|i| i.is_object()) => {
                names.push(key.to_string());
                for item in items {
                    prefix.push(item_key(item, &keys));
                    out.insert(with(prefix, "."));
                    if let Value::Object(fields) = item {
                        for (k, v) in fields {
                            walk_field(k, v, prefix, names, types, out);
                        }
                    }
                    prefix.pop();
                }
                names.pop();
            }
            ListType::Set => {
                for item in items {
                    out.insert(with(prefix, &format!("v:{item}")));
                }
            }
            _ => {
                out.insert(prefix.clone());
            }
        },
        _ => {
            out.insert(prefix.clone());
        }
    }
    prefix.pop();
}

fn with(prefix: &FieldPath, last: &str) -> FieldPath {
    let mut path = prefix.clone();
    path.push(last.to_string());
    path
}

/// `k:{"name":"mysql"}` (keys in sorted order, as structured-merge-diff writes them).
fn item_key(item: &Value, keys: &[String]) -> String {
    let mut map = Map::new();
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    for k in sorted {
        map.insert(k.clone(), item.get(k).cloned().unwrap_or(Value::Null));
    }
    format!("k:{}", Value::Object(map))
}

/// The value a field path points at.
fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = obj;
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            node = node.get(field)?;
        } else if let Some(keys) = element.strip_prefix("k:") {
            let keys: Value = serde_json::from_str(keys).ok()?;
            let keys = keys.as_object()?;
            node = node.as_array()?.iter().find(|item| {
                keys.iter()
                    .all(|(k, v)| item.get(k).unwrap_or(&Value::Null) == v)
            })?;
        } else if let Some(literal) = element.strip_prefix("v:") {
            let literal: Value = serde_json::from_str(literal).ok()?;
            node = node.as_array()?.iter().find(|item| **item == literal)?;
        } else if element != "." {
            return None;
        }
    }
    Some(node)
}

/// Removes the field (or list item, for a path ending in `.` or `v:`) at `path`.
fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    if last == "." {
        if let Some((item, list_path)) = parent_path.split_last() {
            remove_item(obj, list_path, item);
        }
        return;
    }
    if last.starts_with("v:") {
        remove_item(obj, parent_path, last);
        return;
    }
    let Some(field) = last.strip_prefix("f:") else {
        return;
    };
    if let Some(Value::Object(map)) = value_at_mut(obj, parent_path) {
        map.remove(field);
    }
}

fn remove_item(obj: &mut Value, list_path: &[String], item: &str) {
    let Some(list) = value_at_mut(obj, list_path) else {
        return;
    };
    let Some(items) = list.as_array_mut() else {
        return;
    };
    let probe = Value::Array(items.clone());
    let Some(target) = value_at(&probe, &[item.to_string()]).cloned() else {
        return;
    };
    if let Some(i) = items.iter().position(|x| *x == target) {
        items.remove(i);
    }
}

fn value_at_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut node = obj;
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            node = node.get_mut(field)?;
        } else if let Some(keys) = element.strip_prefix("k:") {
            let keys: Value = serde_json::from_str(keys).ok()?;
            let keys = keys.as_object()?.clone();
            node = node.as_array_mut()?.iter_mut().find(|item| {
                keys.iter()
                    .all(|(k, v)| item.get(k).unwrap_or(&Value::Null) == v)
            })?;
        } else if let Some(literal) = element.strip_prefix("v:") {
            let literal: Value = serde_json::from_str(literal).ok()?;
            node = node
                .as_array_mut()?
                .iter_mut()
                .find(|item| **item == literal)?;
        } else if element != "." {
            return None;
        }
    }
    Some(node)
}

/// The `fieldsV1` tree of a field set.
fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for element in path {
            let entry = node
                .entry(element.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            node = match entry {
                Value::Object(map) => map,
                _ => break,
            };
        }
    }
    Value::Object(root)
}

fn from_fields_v1(tree: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, prefix: &mut FieldPath, out: &mut FieldSet) {
        for (k, child) in node {
            prefix.push(k.clone());
            match child {
                Value::Object(map) if !map.is_empty() => walk(map, prefix, out),
                _ => {
                    out.insert(prefix.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = FieldSet::new();
    if let Value::Object(map) = tree {
        walk(map, &mut Vec::new(), &mut out);
    }
    out
}

/// One `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn same_slot(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(&self.fields),
        });
        if let Some(sub) = &self.subresource {
            entry["subresource"] = json!(sub);
        }
        entry
    }
}

fn entries_of(obj: Option<&Value>) -> Vec<Entry> {
    obj.and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| Entry {
                    manager: e
                        .get("manager")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    operation: e
                        .get("operation")
                        .and_then(Value::as_str)
                        .unwrap_or("Update")
                        .to_string(),
                    api_version: e
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    time: e
                        .get("time")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    subresource: e
                        .get("subresource")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_entries(obj: &mut Value, entries: Vec<Entry>) {
    let entries: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_json)
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// Records a non-apply write (create, update, patch) by `manager`: it takes over every
/// field whose value it changed; fields that no longer exist leave every set.
pub(super) fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
    types: &ListTypes<'_>,
    subresource: Option<&str>,
) {
    let new_set = field_set(new, types);
    let old_set = old.map(|o| field_set(o, types)).unwrap_or_default();
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| !old_set.contains(*p) || old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .cloned()
        .collect();
    let mut entries = entries_of(old);
    let vanished: Vec<FieldPath> = old_set.difference(&new_set).cloned().collect();
    for entry in &mut entries {
        for path in &vanished {
            entry.fields.remove(path);
        }
        if !entry.same_slot(manager, "Update", subresource) {
            for path in &changed {
                entry.fields.remove(path);
            }
        }
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.same_slot(manager, "Update", subresource))
        {
            Some(entry) => {
                entry.fields.extend(changed);
                entry.time = now.to_string();
                entry.api_version = api_version.to_string();
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: subresource.map(str::to_string),
                fields: changed,
            }),
        }
    }
    write_entries(new, entries);
}

/// Server-side apply of `applied` by `manager` onto `live` (None: the object is new).
/// Returns the merged object with its managedFields already updated.
#[allow(clippy::too_many_arguments)]
pub(super) fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    types: &ListTypes<'_>,
    ignore_status: bool,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) -> Result<Value, ApiError> {
    let mut config = applied.clone();
    if let Value::Object(map) = &mut config {
        if ignore_status {
            map.remove("status");
        }
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for field in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
                "deletionTimestamp",
            ] {
                meta.remove(field);
            }
        }
    }
    let applied_set = field_set(&config, types);
    let mut entries = entries_of(live);
    let merged = match live {
        None => config.clone(),
        Some(live) => {
            let mut conflicts: Vec<(String, FieldPath)> = Vec::new();
            for entry in &entries {
                if entry.manager == manager {
                    continue;
                }
                for path in entry.fields.intersection(&applied_set) {
                    if path.last().is_some_and(|l| l == ".") {
                        continue;
                    }
                    if value_at(live, path) != value_at(&config, path) {
                        conflicts.push((entry.manager.clone(), path.clone()));
                    }
                }
            }
            if !conflicts.is_empty() && !force {
                return Err(conflict_error(live, &conflicts, api_version));
            }
            for (other, path) in &conflicts {
                for entry in entries.iter_mut().filter(|e| &e.manager == other) {
                    entry.fields.remove(path);
                }
            }
            let mut merged = merge_applied(live.clone(), &config, &mut Vec::new(), types);
            // Fields this manager applied before, applies no longer and nobody else owns.
            let previous = entries
                .iter()
                .find(|e| e.same_slot(manager, "Apply", subresource))
                .map(|e| e.fields.clone())
                .unwrap_or_default();
            let mut dropped: Vec<FieldPath> = previous
                .difference(&applied_set)
                .filter(|p| {
                    !entries
                        .iter()
                        .any(|e| e.manager != manager && owns_under(&e.fields, p))
                })
                .cloned()
                .collect();
            // Deepest first, so an item is removed after its fields.
            dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for path in &dropped {
                remove_at(&mut merged, path);
            }
            merged
        }
    };
    entries.retain(|e| !e.same_slot(manager, "Apply", subresource));
    entries.push(Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time: now.to_string(),
        subresource: subresource.map(str::to_string),
        fields: applied_set,
    });
    let mut merged = merged;
    if !merged.get("metadata").is_some_and(Value::is_object) {
        merged["metadata"] = json!({});
    }
    write_entries(&mut merged, entries);
    Ok(merged)
}

/// Whether `set` holds `path` or anything below it (for item paths ending in `.`,
/// anything below the item).
fn owns_under(set: &FieldSet, path: &FieldPath) -> bool {
    let base: &[String] = match path.last() {
        Some(last) if last == "." => &path[..path.len() - 1],
        _ => path,
    };
    set.iter().any(|p| p.starts_with(base))
}

fn conflict_error(live: &Value, conflicts: &[(String, FieldPath)], api_version: &str) -> ApiError {
    let describe = |path: &FieldPath| -> String {
        path.iter()
            .map(|e| match e.strip_prefix("f:") {
                Some(f) => format!(".{f}"),
                None => match e.strip_prefix("k:") {
                    Some(k) => format!("[{k}]"),
                    None => e
                        .strip_prefix("v:")
                        .map(|v| format!("[={v}]"))
                        .unwrap_or_default(),
                },
            })
            .collect()
    };
    let causes: Vec<StatusCause> = conflicts
        .iter()
        .map(|(manager, path)| {
            StatusCause::new(
                "FieldManagerConflict",
                describe(path),
                format!("conflict with \"{manager}\""),
            )
        })
        .collect();
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(manager, path)| {
            format!(
                "conflict with \"{manager}\" using {api_version}: {}",
                describe(path)
            )
        })
        .collect();
    let noun = if conflicts.len() == 1 {
        "conflict"
    } else {
        "conflicts"
    };
    let message = format!(
        "Apply failed with {} {noun}: {}",
        conflicts.len(),
        lines.join("\n")
    );
    let name = live
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = live
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_lowercase();
    let mut error = ApiError::new(409, "Conflict", message).with_subject("", &kind, name);
    error.causes = causes;
    error
}

/// Structured merge: maps recursively, keyed lists item by item, sets as unions,
/// atomic lists and scalars replaced.
fn merge_applied(
    live: Value,
    applied: &Value,
    path: &mut Vec<String>,
    types: &ListTypes<'_>,
) -> Value {
    match (live, applied) {
        (Value::Object(mut live), Value::Object(applied)) => {
            for (key, value) in applied {
                let current = live.remove(key).unwrap_or(Value::Null);
                let merged = match value {
                    Value::Object(_) => {
                        path.push(key.clone());
                        let merged = merge_applied(current, value, path, types);
                        path.pop();
                        merged
                    }
                    Value::Array(items) => merge_applied_list(
                        current,
                        items,
                        types.list_type(path, key),
                        path,
                        key,
                        types,
                    ),
                    scalar => scalar.clone(),
                };
                live.insert(key.clone(), merged);
            }
            Value::Object(live)
        }
        (_, applied) => applied.clone(),
    }
}

fn merge_applied_list(
    current: Value,
    applied: &[Value],
    list_type: ListType,
    path: &mut Vec<String>,
    key: &str,
    types: &ListTypes<'_>,
) -> Value {
    let mut items = match current {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    match list_type {
        ListType::Atomic => Value::Array(applied.to_vec()),
        ListType::Set => {
            for item in applied {
                if !items.contains(item) {
                    items.push(item.clone());
                }
            }
            Value::Array(items)
        }
        ListType::Map(keys) => {
            path.push(key.to_string());
            for item in applied {
                match items
                    .iter()
                    .position(|live| keys.iter().all(|k| live.get(k) == item.get(k)))
                {
                    Some(i) => {
                        let live = items[i].take();
                        items[i] = merge_applied(live, item, path, types);
                    }
                    None => items.push(item.clone()),
                }
            }
            path.pop();
            Value::Array(items)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn field_set_uses_fields_v1_vocabulary() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x"]},
                         "spec": {"containers": [{"name": "c", "image": "i"}], "args": ["1"]}});
        let set = field_set(&obj, &ListTypes::BuiltIn);
        let tree = to_fields_v1(&set);
        assert_eq!(
            tree,
            json!({
                "f:metadata": {"f:labels": {"f:a": {}}, "f:finalizers": {"v:\"x\"": {}}},
                "f:spec": {"f:args": {}, "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}
            })
        );
        assert_eq!(from_fields_v1(&tree), set);
    }

    #[test]
    fn schema_list_types_are_read_from_the_crd_schema() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "sites": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "properties": {"tags": {"type": "array", "x-kubernetes-list-type": "set"}}}}}}}});
        let types = ListTypes::Schema(&schema);
        assert_eq!(
            types.list_type(&["spec".into()], "sites"),
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(
            types.list_type(&["spec".into(), "sites".into()], "tags"),
            ListType::Set
        );
        assert_eq!(types.list_type(&["spec".into()], "other"), ListType::Atomic);
        assert_eq!(
            types.list_type(&["metadata".into()], "finalizers"),
            ListType::Set
        );
    }
}
