//! Custom objects against their CRD version's structural schema, in the API server's
//! order: prune unknown fields (unless `x-kubernetes-preserve-unknown-fields`), apply
//! defaults, validate. Validation itself is `bloodraven::schema` (one implementation
//! shared with `bloodraven validate`); pruning lives here because only a server prunes.

use bloodraven::schema::{CrdSchema, FieldError, UnknownFields, validate_structure};
use serde_json::Value;

use super::error::StatusCause;

/// Prunes, defaults and validates `obj` in place; every failure is one cause.
/// `old` is the stored object on updates (for CEL transition rules).
pub(super) fn check(
    crd_schema: &CrdSchema,
    obj: &mut Value,
    old: Option<&Value>,
) -> Vec<StatusCause> {
    let schema = crd_schema.schema();
    // apiVersion, kind and metadata are the server's own, never pruned by the schema.
    if let Value::Object(map) = obj {
        let implicit: Vec<(String, Value)> = ["apiVersion", "kind", "metadata"]
            .iter()
            .filter_map(|k| map.remove(*k).map(|v| (k.to_string(), v)))
            .collect();
        let mut body = Value::Object(std::mem::take(map));
        prune(schema, &mut body);
        if let Value::Object(pruned) = body {
            *map = pruned;
        }
        map.extend(implicit);
    }
    *obj = crd_schema.with_defaults(obj);
    let mut body = obj.clone();
    if let Value::Object(map) = &mut body {
        for implicit in ["apiVersion", "kind", "metadata"] {
            map.remove(implicit);
        }
    }
    let mut errors = validate_structure(schema, &body, UnknownFields::Ignore);
    if errors.is_empty() {
        errors = crd_schema.validate_rules(obj, old);
    }
    errors.iter().map(to_cause).collect()
}

fn to_cause(error: &FieldError) -> StatusCause {
    // Kubernetes' cause message is the error without its "path: " prefix.
    let text = error.to_string();
    let prefix = format!("{}: ", error.path);
    let message = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
    StatusCause::new(error.kind.reason(), error.path.clone(), message)
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Drops every field the schema does not declare, recursively.
fn prune(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if let Some(additional) = additional {
                for child in map.values_mut() {
                    prune(additional, child);
                }
                return;
            }
            let embedded = schema
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true);
            if !preserves_unknown(schema) {
                map.retain(|k, _| {
                    properties.is_some_and(|p| p.contains_key(k))
                        || (embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                });
            }
            if let Some(properties) = properties {
                for (k, child) in map.iter_mut() {
                    if let Some(child_schema) = properties.get(k) {
                        prune(child_schema, child);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prune_keeps_declared_and_preserved_fields() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"x": {"type": "string"}}}},
            "list": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}}
        }});
        let mut value = json!({"a": "1", "b": 2, "free": {"anything": {"deep": 1}},
                               "map": {"k": {"x": "1", "y": "2"}}, "list": [{"n": "1", "m": "2"}]});
        prune(&schema, &mut value);
        assert_eq!(
            value,
            json!({"a": "1", "free": {"anything": {"deep": 1}}, "map": {"k": {"x": "1"}}, "list": [{"n": "1"}]})
        );
    }
}
