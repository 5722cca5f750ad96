//! Label selectors (equality- and set-based) and field selectors, parsed from their
//! query-string syntax as `k8s.io/apimachinery/pkg/labels` and `.../fields` accept it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::ApiError;

#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelOp {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct LabelRequirement {
    key: String,
    op: LabelOp,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (f,g),h notin (i),j,!k`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|req| {
            let value = labels.get(&req.key);
            match &req.op {
                LabelOp::Equals(v) => value == Some(v),
                LabelOp::NotEquals(v) => value != Some(v),
                LabelOp::In(vs) => value.is_some_and(|x| vs.contains(x)),
                LabelOp::NotIn(vs) => value.is_none_or(|x| !vs.contains(x)),
                LabelOp::Exists => value.is_some(),
                LabelOp::DoesNotExist => value.is_none(),
            }
        })
    }

    /// Matches an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        self.matches(&labels_of(obj))
    }
}

/// An object's labels as a sorted map.
pub(super) fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<LabelRequirement, ApiError> {
    let invalid =
        |why: &str| ApiError::bad_request(format!("unable to parse requirement: {part:?}: {why}"));
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        validate_label_key(key).map_err(|e| invalid(&e))?;
        return Ok(LabelRequirement {
            key: key.into(),
            op: LabelOp::DoesNotExist,
        });
    }
    for (token, set_op) in [(" notin ", true), (" in ", false)] {
        if let Some(idx) = part.find(token) {
            let key = part[..idx].trim();
            let rest = part[idx + token.len()..].trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| invalid("expected a parenthesised value list"))?;
            let values: Vec<String> = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            validate_label_key(key).map_err(|e| invalid(&e))?;
            let op = if set_op {
                LabelOp::NotIn(values)
            } else {
                LabelOp::In(values)
            };
            return Ok(LabelRequirement {
                key: key.into(),
                op,
            });
        }
    }
    for (token, negate) in [("!=", true), ("==", false), ("=", false)] {
        if let Some(idx) = part.find(token) {
            let key = part[..idx].trim();
            let value = part[idx + token.len()..].trim().to_string();
            validate_label_key(key).map_err(|e| invalid(&e))?;
            let op = if negate {
                LabelOp::NotEquals(value)
            } else {
                LabelOp::Equals(value)
            };
            return Ok(LabelRequirement {
                key: key.into(),
                op,
            });
        }
    }
    validate_label_key(part).map_err(|e| invalid(&e))?;
    Ok(LabelRequirement {
        key: part.into(),
        op: LabelOp::Exists,
    })
}

fn validate_label_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

/// A parsed field selector: `a=b,c!=d` over a per-kind set of supported fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses and checks every field against `supported` (which the caller derives
    /// from the kind); an unsupported field is a 400 as in Kubernetes.
    pub fn parse(
        text: &str,
        kind: &str,
        supported: &dyn Fn(&str) -> bool,
    ) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_unescaped_commas(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, negate, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, false, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !supported(field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field} (for kind {kind})"
                )));
            }
            let value = unescape_field_value(value.trim()).map_err(|why| {
                ApiError::bad_request(format!("invalid field selector value in '{part}': {why}"))
            })?;
            requirements.push((field.to_string(), negate, value));
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|(field, negate, value)| {
            let actual = field_value(obj, field);
            (actual == *value) != *negate
        })
    }
}

/// Splits a field selector into terms at the commas that are not escaped (`\,` is a
/// comma inside a value), as Kubernetes does.
fn split_unescaped_commas(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

/// A field selector value as Kubernetes reads it: `\\`, `\,` and `\=` are the
/// escaped characters; any other escape, a trailing `\`, or an unescaped `=` or `,` is
/// an error naming the value.
fn unescape_field_value(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ ('\\' | ',' | '=')) => out.push(next),
                Some(next) => {
                    return Err(format!("invalid escape sequence \\{next} in {value:?}"));
                }
                None => return Err(format!("unterminated escape sequence in {value:?}")),
            },
            '=' | ',' => return Err(format!("unescaped {c:?} in {value:?}")),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// The string value of a dotted field path; missing fields read as "" (as Kubernetes'
/// field sets do), booleans as "true"/"false".
pub(super) fn field_value(obj: &Value, path: &str) -> String {
    let mut current = obj;
    for segment in path.split('.') {
        match current.get(segment) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The fields Kubernetes supports in field selectors for a kind (plus metadata.name
/// and metadata.namespace everywhere).
pub(super) fn field_supported(group: &str, kind: &str, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match (group, kind) {
        ("", "Pod") => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        ("", "Event") => matches!(
            field,
            "involvedObject.kind"
                | "involvedObject.namespace"
                | "involvedObject.name"
                | "involvedObject.uid"
                | "involvedObject.apiVersion"
                | "involvedObject.resourceVersion"
                | "involvedObject.fieldPath"
                | "reason"
                | "reportingComponent"
                | "source"
                | "type"
        ),
        ("events.k8s.io", "Event") => matches!(
            field,
            "regarding.kind"
                | "regarding.namespace"
                | "regarding.name"
                | "regarding.uid"
                | "regarding.apiVersion"
                | "regarding.resourceVersion"
                | "regarding.fieldPath"
                | "reason"
                | "reportingController"
                | "type"
        ),
        ("", "Node") => field == "spec.unschedulable",
        ("", "Namespace") => field == "status.phase",
        ("", "Secret") => field == "type",
        ("batch", "Job") => field == "status.successful",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_table() {
        let l = labels(&[("app", "mysql"), ("site", "iad"), ("tier", "db")]);
        let cases = [
            ("", true),
            ("app=mysql", true),
            ("app==mysql", true),
            ("app=redis", false),
            ("app!=redis", true),
            ("missing!=x", true),
            ("site in (iad, pdx)", true),
            ("site in (pdx)", false),
            ("site notin (pdx)", true),
            ("missing notin (pdx)", true),
            ("site notin (iad,pdx)", false),
            ("tier", true),
            ("missing", false),
            ("!missing", true),
            ("!tier", false),
            ("app=mysql,site in (iad),!canary", true),
            ("app=mysql,site in (pdx)", false),
        ];
        for (text, want) in cases {
            assert_eq!(
                LabelSelector::parse(text).unwrap().matches(&l),
                want,
                "{text}"
            );
        }
    }

    #[test]
    fn bad_label_selectors_are_400() {
        for text in ["a in b", "a b=c", "!"] {
            let err = LabelSelector::parse(text).unwrap_err();
            assert_eq!(err.code, 400, "{text}");
        }
    }

    /// Issue 12: malformed field selectors were accepted (a value with an unescaped
    /// `=`, bad escapes); each is a 400 naming the value, as Kubernetes answers.
    #[test]
    fn malformed_field_selectors_are_400_naming_the_value() {
        let supported = |f: &str| field_supported("", "Pod", f);
        for (text, named) in [
            ("spec.nodeName=a=b", "\"a=b\""),
            ("spec.nodeName==a=b", "\"a=b\""),
            ("spec.nodeName=n1\\", "\"n1\\\\\""),
            ("spec.nodeName=n\\x", "\\x"),
            ("spec.nodeName", "'spec.nodeName'"),
            ("spec.nodeName=n1,status.phase", "'status.phase'"),
        ] {
            let err = FieldSelector::parse(text, "Pod", &supported).unwrap_err();
            assert_eq!(err.code, 400, "{text}");
            assert!(err.message.contains(named), "{text}: {}", err.message);
        }
        // Escaped characters are part of the value, and an escaped comma does not split.
        let pod = serde_json::json!({"metadata": {"name": "a,b=c"}});
        let sel = FieldSelector::parse("metadata.name=a\\,b\\=c", "Pod", &supported).unwrap();
        assert!(sel.matches(&pod));
    }

    #[test]
    fn field_selector_checks_support_and_matches() {
        let pod = serde_json::json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let supported = |f: &str| field_supported("", "Pod", f);
        let sel = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed", "Pod", &supported)
            .unwrap();
        assert!(sel.matches(&pod));
        let sel = FieldSelector::parse("spec.nodeName=", "Pod", &supported).unwrap();
        assert!(!sel.matches(&pod));
        let err = FieldSelector::parse("spec.image=x", "Pod", &supported).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message
                .contains("field label not supported: spec.image"),
            "{}",
            err.message
        );
    }
}
