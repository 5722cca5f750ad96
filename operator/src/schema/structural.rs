//! The structural part of OpenAPI v3 validation as Kubernetes applies it to custom
//! resources. Paths and messages follow the API server's field errors
//! (`spec.sites[1].name: Duplicate value: ...`) so that users recognise them.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// What to do with fields the schema does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownFields {
    /// Report each as an error (kubectl's default `--validate=strict`; catches typos).
    Reject,
    /// Ignore them (the caller prunes them, as the API server does by default).
    Ignore,
}

/// The kind of a field error, with the API server's cause reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    TypeInvalid,
    NotSupported,
    Duplicate,
    TooLong,
    TooMany,
    Invalid,
    Unknown,
}

impl FieldErrorKind {
    /// The `details.causes[].reason` Kubernetes uses for this kind.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Invalid => "FieldValueInvalid",
            Self::Unknown => "FieldValueUnknown",
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Dotted path with list indexes: `spec.sites[1].name`.
    pub path: String,
    pub kind: FieldErrorKind,
    /// The offending value, when there is one.
    pub value: Option<Value>,
    /// What was expected.
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value.as_ref().map(render_value);
        match (self.kind, value) {
            (FieldErrorKind::Required, _) => write!(f, "{}: Required value", self.path)?,
            (FieldErrorKind::Unknown, _) => write!(f, "{}: unknown field", self.path)?,
            (FieldErrorKind::TypeInvalid, Some(v)) => {
                write!(f, "{}: Invalid value: {v}", self.path)?
            }
            (FieldErrorKind::NotSupported, Some(v)) => {
                write!(f, "{}: Unsupported value: {v}", self.path)?
            }
            (FieldErrorKind::Duplicate, Some(v)) => {
                write!(f, "{}: Duplicate value: {v}", self.path)?
            }
            (FieldErrorKind::TooLong, _) => write!(f, "{}: Too long", self.path)?,
            (FieldErrorKind::TooMany, _) => write!(f, "{}: Too many", self.path)?,
            (_, Some(v)) => write!(f, "{}: Invalid value: {v}", self.path)?,
            (_, None) => write!(f, "{}: Invalid value", self.path)?,
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

fn render_value(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 80 {
        format!("{}...", &text[..77])
    } else {
        text
    }
}

/// Validates `value` against `schema` (an `openAPIV3Schema`), returning every problem
/// in document order.
pub fn validate_structure(
    schema: &Value,
    value: &Value,
    unknown: UnknownFields,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    Walker {
        unknown,
        errors: &mut errors,
    }
    .node(schema, value, "");
    errors
}

struct Walker<'a> {
    unknown: UnknownFields,
    errors: &'a mut Vec<FieldError>,
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `pattern` compiled, once per thread: the simulated API server validates every
/// write of a custom object, and compiling the schema's patterns each time dominated
/// that. The patterns come from CRD schemas, so the cache stays small.
fn compiled_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    thread_local! {
        static PATTERNS: RefCell<BTreeMap<String, Result<regex::Regex, regex::Error>>> =
            const { RefCell::new(BTreeMap::new()) };
    }
    PATTERNS.with(|patterns| {
        if let Some(compiled) = patterns.borrow().get(pattern) {
            return compiled.clone();
        }
        let compiled = regex::Regex::new(pattern);
        patterns
            .borrow_mut()
            .insert(pattern.to_string(), compiled.clone());
        compiled
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Walker<'_> {
    fn push(&mut self, path: &str, kind: FieldErrorKind, value: Option<&Value>, detail: String) {
        self.errors.push(FieldError {
            path: path.to_string(),
            kind,
            value: value.cloned(),
            detail,
        });
    }

    fn node(&mut self, schema: &Value, value: &Value, path: &str) {
        let Some(schema) = schema.as_object() else {
            return;
        };
        if value.is_null() {
            // An explicit null is allowed where the schema says nullable; elsewhere the
            // API server drops it like an absent field.
            return;
        }
        if schema
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            == Some(true)
        {
            if !(value.is_string() || value.is_i64() || value.is_u64()) {
                self.push(
                    path,
                    FieldErrorKind::TypeInvalid,
                    Some(value),
                    format!("must be an integer or a string, not {}", type_name(value)),
                );
            }
            return;
        }
        if let Some(expected) = schema.get("type").and_then(Value::as_str)
            && !self.type_matches(expected, schema, value, path)
        {
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            let list = allowed
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            self.push(
                path,
                FieldErrorKind::NotSupported,
                Some(value),
                format!("supported values: {list}"),
            );
        }
        match value {
            Value::String(s) => self.string(schema, s, value, path),
            Value::Number(_) => self.number(schema, value, path),
            Value::Array(items) => self.array(schema, items, value, path),
            Value::Object(fields) => self.object(schema, fields, path),
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// Reports a type mismatch; returns whether the walk may descend.
    fn type_matches(
        &mut self,
        expected: &str,
        schema: &Map<String, Value>,
        value: &Value,
        path: &str,
    ) -> bool {
        let actual = type_name(value);
        let ok = match expected {
            "number" => value.is_number(),
            "integer" => value.is_i64() || value.is_u64(),
            other => other == actual,
        };
        if !ok {
            let format = schema
                .get("format")
                .and_then(Value::as_str)
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            self.push(
                path,
                FieldErrorKind::TypeInvalid,
                Some(value),
                format!("must be of type {expected}{format}, not {actual}"),
            );
        }
        ok
    }

    fn string(&mut self, schema: &Map<String, Value>, s: &str, value: &Value, path: &str) {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            self.push(
                path,
                FieldErrorKind::TooLong,
                Some(value),
                format!("may not be more than {max} characters"),
            );
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            let detail = if min == 1 {
                "may not be empty".to_string()
            } else {
                format!("must be at least {min} characters")
            };
            self.push(path, FieldErrorKind::Invalid, Some(value), detail);
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match compiled_pattern(pattern) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => self.push(
                    path,
                    FieldErrorKind::Invalid,
                    Some(value),
                    format!("must match the pattern {pattern}"),
                ),
                Err(e) => self.push(
                    path,
                    FieldErrorKind::Invalid,
                    Some(value),
                    format!("the schema's pattern {pattern} does not compile: {e}"),
                ),
            }
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && s.parse::<jiff::Timestamp>().is_err()
        {
            self.push(
                path,
                FieldErrorKind::Invalid,
                Some(value),
                "must be an RFC 3339 date-time such as 2026-01-02T15:04:05Z".to_string(),
            );
        }
    }

    fn number(&mut self, schema: &Map<String, Value>, value: &Value, path: &str) {
        let Some(n) = value.as_f64() else { return };
        let exclusive_min = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
        let exclusive_max = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && (n < min || (exclusive_min && n == min))
        {
            let op = if exclusive_min {
                "greater than"
            } else {
                "greater than or equal to"
            };
            self.push(
                path,
                FieldErrorKind::Invalid,
                Some(value),
                format!("must be {op} {}", Value::from(min)),
            );
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && (n > max || (exclusive_max && n == max))
        {
            let op = if exclusive_max {
                "less than"
            } else {
                "less than or equal to"
            };
            self.push(
                path,
                FieldErrorKind::Invalid,
                Some(value),
                format!("must be {op} {}", Value::from(max)),
            );
        }
    }

    fn array(&mut self, schema: &Map<String, Value>, items: &[Value], value: &Value, path: &str) {
        let n = items.len() as u64;
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && n > max
        {
            self.push(
                path,
                FieldErrorKind::TooMany,
                Some(&Value::from(n)),
                format!("must have at most {max} items"),
            );
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && n < min
        {
            self.push(
                path,
                FieldErrorKind::Invalid,
                Some(&Value::from(n)),
                format!("must have at least {min} items"),
            );
        }
        let _ = value;
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.node(item_schema, item, &format!("{path}[{i}]"));
            }
        }
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => self.list_map_keys(schema, items, path),
            Some("set") => {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        self.push(
                            &format!("{path}[{i}]"),
                            FieldErrorKind::Duplicate,
                            Some(item),
                            String::new(),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// `x-kubernetes-list-type: map`: the key fields identify an element, so two
    /// elements with the same keys are duplicates (e.g. two sites named `iad`).
    fn list_map_keys(&mut self, schema: &Map<String, Value>, items: &[Value], path: &str) {
        let keys: Vec<&str> = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| k.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let identity: Vec<Value> = keys
                .iter()
                .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                .collect();
            let rendered = Value::Array(identity.clone()).to_string();
            if !seen.insert(rendered) {
                let shown = if identity.len() == 1 {
                    identity[0].clone()
                } else {
                    Value::Array(identity)
                };
                let key_names = keys.join(", ");
                self.push(
                    &format!("{path}[{i}]"),
                    FieldErrorKind::Duplicate,
                    Some(&shown),
                    format!("{key_names} must be unique"),
                );
            }
        }
    }

    fn object(&mut self, schema: &Map<String, Value>, fields: &Map<String, Value>, path: &str) {
        let n = fields.len() as u64;
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && n > max
        {
            self.push(
                path,
                FieldErrorKind::TooMany,
                Some(&Value::from(n)),
                format!("must have at most {max} properties"),
            );
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
            && n < min
        {
            self.push(
                path,
                FieldErrorKind::Invalid,
                Some(&Value::from(n)),
                format!("must have at least {min} properties"),
            );
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if fields.get(name).is_none_or(Value::is_null) {
                    self.push(
                        &child_path(path, name),
                        FieldErrorKind::Required,
                        None,
                        String::new(),
                    );
                }
            }
        }
        let preserve_unknown = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
        let additional = schema.get("additionalProperties");
        for (name, field_value) in fields {
            let field_path = child_path(path, name);
            if let Some(field_schema) = properties.and_then(|p| p.get(name)) {
                self.node(field_schema, field_value, &field_path);
            } else if let Some(additional) = additional.filter(|a| a.is_object()) {
                self.node(additional, field_value, &field_path);
            } else if !preserve_unknown
                && additional != Some(&Value::Bool(true))
                && self.unknown == UnknownFields::Reject
            {
                // Embedded ObjectMeta is declared as a bare `type: object`; its fields
                // are the API server's business, not the CRD schema's.
                if properties.is_some() {
                    let known = properties
                        .map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "))
                        .unwrap_or_default();
                    self.push(
                        &field_path,
                        FieldErrorKind::Unknown,
                        None,
                        format!("known fields here: {known}"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "sites": {
                    "type": "array", "minItems": 2, "maxItems": 2,
                    "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5}
                    }}
                },
                "durability": {"type": "string", "enum": ["async", "semisync"]},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            },
            "required": ["sites"]
        })
    }

    fn errors(value: Value) -> Vec<String> {
        validate_structure(&schema(), &value, UnknownFields::Reject)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_valid_object_has_no_errors() {
        let value = json!({"sites": [{"name": "iad"}, {"name": "pdx"}], "durability": "async", "port": 3306,
            "labels": {"a": "b"}, "free": {"anything": [1, 2]}});
        assert_eq!(errors(value), Vec::<String>::new());
    }

    #[test]
    fn each_rule_names_the_field_and_value() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({}), "sites: Required value"),
            (
                json!({"sites": [{"name": "iad"}]}),
                "sites: Invalid value: 1: must have at least 2 items",
            ),
            (
                json!({"sites": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
                "sites: Too many: must have at most 2 items",
            ),
            (
                json!({"sites": [{"name": "iad"}, {"name": "iad"}]}),
                "sites[1]: Duplicate value: \"iad\": name must be unique",
            ),
            (
                json!({"sites": [{"name": "iad"}, {"name": "PDX"}]}),
                "sites[1].name: Invalid value: \"PDX\": must match the pattern ^[a-z]+$",
            ),
            (
                json!({"sites": [{"name": "iad"}, {"name": "toolong"}]}),
                "sites[1].name: Too long: may not be more than 5 characters",
            ),
            (
                json!({"sites": [{"name": "iad"}, {}]}),
                "sites[1].name: Required value",
            ),
            (
                json!({"sites": [{"name": "a"}, {"name": "b"}], "durability": "sync"}),
                "durability: Unsupported value: \"sync\": supported values: \"async\", \"semisync\"",
            ),
            (
                json!({"sites": [{"name": "a"}, {"name": "b"}], "port": 0}),
                "port: Invalid value: 0: must be greater than or equal to 1",
            ),
            (
                json!({"sites": [{"name": "a"}, {"name": "b"}], "port": "3306"}),
                "port: Invalid value: \"3306\": must be of type integer, not string",
            ),
            (
                json!({"sites": [{"name": "a"}, {"name": "b"}], "labels": {"x": 1}}),
                "labels.x: Invalid value: 1: must be of type string, not integer",
            ),
            (
                json!({"sites": [{"name": "a"}, {"name": "b"}], "durabilty": "async"}),
                "durabilty: unknown field",
            ),
        ];
        for (value, expected) in cases {
            let got = errors(value.clone());
            assert!(
                got.iter().any(|e| e.starts_with(expected)),
                "{value}: expected {expected:?}, got {got:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_can_be_ignored_for_pruning_callers() {
        let value = json!({"sites": [{"name": "a"}, {"name": "b"}], "durabilty": "async"});
        assert!(validate_structure(&schema(), &value, UnknownFields::Ignore).is_empty());
    }

    #[test]
    fn reasons_match_kubernetes_cause_types() {
        assert_eq!(FieldErrorKind::Required.reason(), "FieldValueRequired");
        assert_eq!(FieldErrorKind::Duplicate.reason(), "FieldValueDuplicate");
        assert_eq!(
            FieldErrorKind::NotSupported.reason(),
            "FieldValueNotSupported"
        );
    }
}
