//! `where:` expressions: CEL over the object as `self`, the same convention Kubernetes
//! uses for CRD validation rules, so an expression reads the same in both places.

use serde_json::Value;

/// Checks that an expression parses; used by the scenario parser so that a typo is a
/// parse error with a line number, not a failure minutes into a run.
pub fn compile(expression: &str) -> Result<cel::Program, String> {
    cel::Program::compile(expression).map_err(|e| format!("bad CEL expression: {e}"))
}

/// The outcome of one `where` expression against an object.
#[derive(Debug, Clone, PartialEq)]
pub enum WhereOutcome {
    True,
    False,
    /// The expression did not evaluate to a boolean, or failed (e.g. a missing field).
    Error(String),
}

/// Evaluates `expression` with `self` bound to `object`.
pub fn evaluate(expression: &str, object: &Value) -> WhereOutcome {
    let program = match compile(expression) {
        Ok(p) => p,
        Err(e) => return WhereOutcome::Error(e),
    };
    let mut context = cel::Context::default();
    if let Err(e) = context.add_variable("self", object) {
        return WhereOutcome::Error(format!("cannot expose the object to CEL: {e}"));
    }
    match program.execute(&context) {
        Ok(cel::Value::Bool(true)) => WhereOutcome::True,
        Ok(cel::Value::Bool(false)) => WhereOutcome::False,
        Ok(other) => WhereOutcome::Error(format!("evaluated to {other:?}, not a boolean")),
        Err(e) => WhereOutcome::Error(format!("evaluation failed: {e}")),
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
    fn syntax_errors_are_reported_at_compile_time() {
        assert!(compile("self.status.(").is_err());
        assert!(compile("self.status.health == 'Healthy'").is_ok());
    }
}
