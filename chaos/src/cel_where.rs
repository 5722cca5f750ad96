//! `where:` expressions: CEL over the object as `self`, the same convention Kubernetes
//! uses for CRD validation rules, so an expression reads the same in both places.
//! `capture:` steps use the same binding for an expression that yields a value.
//! Besides the cel crate's functions there is `split`, from the CEL strings extension
//! Kubernetes enables: `'a-b'.split('-') == ['a', 'b']`.

use std::sync::Arc;

use serde_json::Value;

/// Why an expression gave no usable value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum CelError {
    #[error("bad CEL expression: {0}")]
    Compile(String),
    #[error("cannot expose the object to CEL: {0}")]
    Bind(String),
    #[error("evaluation failed: {0}")]
    Evaluate(String),
    #[error("evaluated to {value}, not {wanted}")]
    WrongType { value: String, wanted: &'static str },
}

/// Checks that an expression parses; used by the scenario parser so that a typo is a
/// parse error with a line number, not a failure minutes into a run.
pub(crate) fn compile(expression: &str) -> Result<cel::Program, CelError> {
    cel::Program::compile(expression).map_err(|e| CelError::Compile(e.to_string()))
}

/// The outcome of one `where` expression against an object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WhereOutcome {
    True,
    False,
    /// The expression did not evaluate to a boolean, or failed (e.g. a missing field).
    Error(String),
}

/// `'a-b-c'.split('-')`: the CEL strings extension's split (every occurrence).
fn split(
    cel::extractors::This(this): cel::extractors::This<Arc<String>>,
    separator: Arc<String>,
) -> Result<cel::Value, cel::ExecutionError> {
    let parts: Vec<cel::Value> = this
        .split(separator.as_str())
        .map(|part| cel::Value::String(Arc::new(part.to_owned())))
        .collect();
    Ok(cel::Value::List(Arc::new(parts)))
}

/// Runs `expression` with `self` bound to `object`.
fn execute(expression: &str, object: &Value) -> Result<cel::Value, CelError> {
    let program = compile(expression)?;
    let mut context = cel::Context::default();
    context.add_function("split", split);
    context
        .add_variable("self", object)
        .map_err(|e| CelError::Bind(e.to_string()))?;
    program
        .execute(&context)
        .map_err(|e| CelError::Evaluate(e.to_string()))
}

/// Evaluates `expression` with `self` bound to `object`.
pub(crate) fn evaluate(expression: &str, object: &Value) -> WhereOutcome {
    match execute(expression, object) {
        Ok(cel::Value::Bool(true)) => WhereOutcome::True,
        Ok(cel::Value::Bool(false)) => WhereOutcome::False,
        Ok(other) => WhereOutcome::Error(
            CelError::WrongType {
                value: format!("{other:?}"),
                wanted: "a boolean",
            }
            .to_string(),
        ),
        Err(e) => WhereOutcome::Error(e.to_string()),
    }
}

/// Evaluates a `capture` expression: a string, or a number (written in decimal).
/// Anything else (a list, a map, null, a boolean) is an error naming what it was.
pub(crate) fn evaluate_value(expression: &str, object: &Value) -> Result<String, CelError> {
    match execute(expression, object)? {
        cel::Value::String(s) => Ok(s.to_string()),
        cel::Value::Int(n) => Ok(n.to_string()),
        cel::Value::UInt(n) => Ok(n.to_string()),
        cel::Value::Float(n) => Ok(n.to_string()),
        other => Err(CelError::WrongType {
            value: format!("{other:?}"),
            wanted: "a string or a number",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group() -> Value {
        json!({
            "metadata": {"name": "playground", "annotations": {"a": "b"}},
            "status": {
                "activeSite": "pdx",
                "health": "Healthy",
                "sites": [
                    {"name": "iad", "state": "read-only", "lagSeconds": 0, "replicating": true},
                    {"name": "pdx", "state": "writable", "lagSeconds": 0}
                ],
                "lastFailover": {"durationMs": 4200}
            }
        })
    }

    #[test]
    fn expressions_over_self() {
        let cases = [
            ("self.status.activeSite == 'pdx'", WhereOutcome::True),
            ("self.status.activeSite == 'iad'", WhereOutcome::False),
            (
                "self.status.sites.all(s, s.state != 'unreachable')",
                WhereOutcome::True,
            ),
            (
                "self.status.sites.exists(s, s.name == 'iad' && s.replicating)",
                WhereOutcome::True,
            ),
            (
                "self.status.sites.filter(s, s.state == 'writable').size() == 1",
                WhereOutcome::True,
            ),
            (
                "self.status.lastFailover.durationMs < 30000",
                WhereOutcome::True,
            ),
            (
                "self.status.lastFailover.durationMs > 30000",
                WhereOutcome::False,
            ),
            ("has(self.status.plannedFailover)", WhereOutcome::False),
            ("has(self.status.lastFailover)", WhereOutcome::True),
        ];
        for (expr, expected) in cases {
            assert_eq!(evaluate(expr, &group()), expected, "{expr}");
        }
    }

    #[test]
    fn missing_fields_and_non_booleans_are_errors_not_false() {
        let missing = evaluate("self.status.nope == 1", &group());
        assert!(matches!(missing, WhereOutcome::Error(_)), "{missing:?}");
        let not_bool = evaluate("self.status.activeSite", &group());
        assert!(
            matches!(not_bool, WhereOutcome::Error(ref m) if m.contains("not a boolean")),
            "{not_bool:?}"
        );
    }

    #[test]
    fn values_for_capture() {
        let divergent = json!({"status": {"sites": [
            {"name": "pdx", "state": "writable"},
            {"name": "iad", "divergentGtid": "3e11fa47-71ca-11e1-9e33-c80aa9429562:11-13", "divergentTransactionCount": 3}
        ]}});
        let token = "self.status.sites.filter(s, s.name == 'iad')[0].divergentGtid.split('-')[0]";
        assert_eq!(evaluate_value(token, &divergent).unwrap(), "3e11fa47");
        let count = "self.status.sites.filter(s, s.name == 'iad')[0].divergentTransactionCount";
        assert_eq!(evaluate_value(count, &divergent).unwrap(), "3");
        let list = evaluate_value("'a-b'.split('-')", &divergent)
            .unwrap_err()
            .to_string();
        assert!(list.contains("not a string or a number"), "{list}");
        let boolean = evaluate_value("true", &divergent).unwrap_err().to_string();
        assert!(boolean.contains("not a string or a number"), "{boolean}");
        let missing = evaluate_value("self.status.nope", &divergent)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("evaluation failed"), "{missing}");
        // split keeps empty parts, as the CEL strings extension does.
        assert_eq!(
            evaluate("'a--b'.split('-') == ['a', '', 'b']", &divergent),
            WhereOutcome::True
        );
    }

    #[test]
    fn syntax_errors_are_reported_at_compile_time() {
        assert!(compile("self.status.(").is_err());
        assert!(compile("self.status.health == 'Healthy'").is_ok());
    }
}
