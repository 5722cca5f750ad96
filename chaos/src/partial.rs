//! PARTIAL matching of an expected fragment against an actual object, and the
//! human-readable explanation when it does not match.
//!
//! Semantics: a map matches when every listed key is present and matches (unlisted keys
//! are ignored); a list matches when every listed element matches some actual element
//! (order-free; two listed elements may match the same actual one); scalars compare
//! equal, with numbers compared by value (`1` matches `1.0`).

use serde_json::Value;

/// One reason the fragment did not match, at a JSON-ish path (`status.sites[name=iad].state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub path: String,
    pub expected: String,
    pub actual: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: expected {}, got {}",
            self.path, self.expected, self.actual
        )
    }
}

/// True when `actual` matches the `expected` fragment.
pub(crate) fn matches(expected: &Value, actual: &Value) -> bool {
    mismatches(expected, actual, "").is_empty()
}

/// Every reason `actual` does not match `expected`, rooted at `path`; empty when it matches.
pub(crate) fn mismatches(expected: &Value, actual: &Value, path: &str) -> Vec<Mismatch> {
    let mut out = Vec::new();
    collect(expected, Some(actual), path, &mut out);
    out
}

fn render(value: Option<&Value>) -> String {
    match value {
        None => "<absent>".to_owned(),
        Some(v) => serde_json::to_string(v).unwrap_or_else(|_| format!("{v:?}")),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn collect(expected: &Value, actual: Option<&Value>, path: &str, out: &mut Vec<Mismatch>) {
    match (expected, actual) {
        (Value::Object(want), Some(Value::Object(have))) => {
            for (key, want_value) in want {
                collect(want_value, have.get(key), &join(path, key), out);
            }
        }
        (Value::Array(want), Some(Value::Array(have))) => {
            for (i, want_item) in want.iter().enumerate() {
                if have.iter().any(|h| mismatches(want_item, h, "").is_empty()) {
                    continue;
                }
                // No element matches: explain against the closest one, so the reader sees
                // "sites[name=iad].state: expected writable, got read-only" rather than
                // only "no element matches".
                let label = element_label(want_item).unwrap_or_else(|| i.to_string());
                let item_path = format!("{path}[{label}]");
                // Compare against elements with the same name (or type, site...) when
                // there are any: "the pdx entry is read-only" beats "the iad entry is
                // named iad".
                let label_key = element_label_key(want_item);
                let same_label: Vec<&Value> = match label_key {
                    Some(k) => have
                        .iter()
                        .filter(|h| h.get(k) == want_item.get(k))
                        .collect(),
                    None => Vec::new(),
                };
                let candidates: Vec<&Value> = if same_label.is_empty() {
                    have.iter().collect()
                } else {
                    same_label
                };
                let closest = candidates
                    .into_iter()
                    .map(|h| (mismatches(want_item, h, &item_path), h))
                    .filter(|(m, _)| !m.is_empty())
                    .min_by_key(|(m, _)| m.len());
                match closest {
                    Some((m, _)) if want_item.is_object() && m.len() < count_leaves(want_item) => {
                        out.extend(m);
                    }
                    _ => out.push(Mismatch {
                        path: item_path,
                        expected: render(Some(want_item)),
                        actual: format!("no matching element among {}", have.len()),
                    }),
                }
            }
        }
        (want, Some(have)) if scalars_equal(want, have) => {}
        (want, have) => out.push(Mismatch {
            path: if path.is_empty() {
                ".".to_owned()
            } else {
                path.to_owned()
            },
            expected: render(Some(want)),
            actual: render(have),
        }),
    }
}

/// The key that identifies a list element (`name`, `type`, ...), if it has one.
fn element_label_key(item: &Value) -> Option<&'static str> {
    let map = item.as_object()?;
    ["name", "type", "site", "reason"]
        .into_iter()
        .find(|key| map.get(*key).is_some_and(Value::is_string))
}

/// `name=iad` for list elements that carry a name-like key, so paths stay readable.
fn element_label(item: &Value) -> Option<String> {
    let key = element_label_key(item)?;
    item.get(key)
        .and_then(Value::as_str)
        .map(|v| format!("{key}={v}"))
}

fn count_leaves(value: &Value) -> usize {
    match value {
        Value::Object(m) => m.values().map(count_leaves).sum::<usize>().max(1),
        Value::Array(a) => a.iter().map(count_leaves).sum::<usize>().max(1),
        _ => 1,
    }
}

fn scalars_equal(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        (a, b) => a == b,
    }
}

/// The part of `actual` that `expected` talks about: the same keys, and for lists the
/// best-matching element per listed element. Diffing expected against this projection
/// shows only what the scenario cares about.
pub(crate) fn project(expected: &Value, actual: &Value) -> Value {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            let mut out = serde_json::Map::new();
            for (key, want_value) in want {
                if let Some(have_value) = have.get(key) {
                    out.insert(key.clone(), project(want_value, have_value));
                }
            }
            Value::Object(out)
        }
        (Value::Array(want), Value::Array(have)) => Value::Array(
            want.iter()
                .filter_map(|w| {
                    have.iter()
                        .min_by_key(|h| mismatches(w, h, "").len())
                        .map(|h| project(w, h))
                })
                .collect(),
        ),
        (_, have) => have.clone(),
    }
}

/// Renders a value as YAML for failure messages (JSON when YAML rendering fails).
pub(crate) fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value)
        .unwrap_or_else(|_| serde_json::to_string_pretty(value).unwrap_or_default())
}

/// A line diff (`-` expected, `+` actual, two spaces common) of two texts, by longest
/// common subsequence; inputs here are a few dozen lines, so quadratic is fine.
pub(crate) fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
    }
    out
}

/// The full explanation of a failed PARTIAL match under `field` (`status`, `spec`...):
/// mismatches, then a diff of the expected fragment against the matching part of the
/// actual object.
pub(crate) fn explain(field: &str, expected: &Value, actual: Option<&Value>) -> String {
    let mut out = String::new();
    let Some(actual) = actual else {
        out.push_str(&format!("{field}: absent on the object\n"));
        out.push_str(&format!(
            "expected {field}:\n{}",
            indent(&to_yaml(expected))
        ));
        return out;
    };
    for m in mismatches(expected, actual, field) {
        out.push_str(&format!("  {m}\n"));
    }
    let projected = project(expected, actual);
    out.push_str(&format!("diff of {field} (- expected, + actual):\n"));
    out.push_str(&indent(&line_diff(
        &to_yaml(expected),
        &to_yaml(&projected),
    )));
    out
}

pub(crate) fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn actual() -> Value {
        json!({
            "activeSite": "pdx",
            "health": "Healthy",
            "sites": [
                {"name": "iad", "state": "read-only", "replicating": true, "lagSeconds": 0},
                {"name": "pdx", "state": "writable", "lagSeconds": 0.0}
            ],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ok"}],
            "observedGeneration": 3
        })
    }

    #[test]
    fn matcher_semantics_table() {
        let cases: &[(&str, Value, bool)] = &[
            ("empty map matches anything", json!({}), true),
            ("listed key equal", json!({"health": "Healthy"}), true),
            ("listed key differs", json!({"health": "Degraded"}), false),
            ("unlisted keys ignored", json!({"activeSite": "pdx"}), true),
            (
                "missing key fails",
                json!({"recoveryState": "RecoveryPending"}),
                false,
            ),
            (
                "null does not match absent",
                json!({"recoveryState": null}),
                false,
            ),
            (
                "list order-free",
                json!({"sites": [{"name": "pdx"}, {"name": "iad"}]}),
                true,
            ),
            (
                "list element partial",
                json!({"sites": [{"name": "iad", "state": "read-only"}]}),
                true,
            ),
            (
                "list element wrong field",
                json!({"sites": [{"name": "iad", "state": "writable"}]}),
                false,
            ),
            (
                "two listed may match one actual",
                json!({"sites": [{"lagSeconds": 0}, {"lagSeconds": 0}]}),
                true,
            ),
            (
                "listed list longer than actual fails only if unmatched",
                json!({"sites": [{"name": "sfo"}]}),
                false,
            ),
            ("empty list matches any list", json!({"sites": []}), true),
            (
                "number by value 0 == 0.0",
                json!({"sites": [{"name": "pdx", "lagSeconds": 0}]}),
                true,
            ),
            (
                "int vs string differ",
                json!({"observedGeneration": "3"}),
                false,
            ),
            ("scalar vs map differ", json!({"sites": "iad"}), false),
            ("map vs scalar differ", json!({"health": {"x": 1}}), false),
            (
                "bool equal",
                json!({"sites": [{"replicating": true}]}),
                true,
            ),
            (
                "nested list in list",
                json!({"conditions": [{"type": "Ready", "status": "True"}]}),
                true,
            ),
        ];
        for (name, expected, want) in cases {
            assert_eq!(matches(expected, &actual()), *want, "{name}: {expected}");
        }
    }

    #[test]
    fn scalar_lists_are_sets_of_required_members() {
        let have = json!(["a", "b", "c"]);
        assert!(matches(&json!(["c", "a"]), &have));
        assert!(!matches(&json!(["d"]), &have));
    }

    #[test]
    fn mismatch_paths_name_the_element_and_field() {
        let expected =
            json!({"sites": [{"name": "iad", "state": "writable"}], "health": "Degraded"});
        let m = mismatches(&expected, &actual(), "status");
        let lines: Vec<String> = m.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "status.health: expected \"Degraded\", got \"Healthy\"",
                "status.sites[name=iad].state: expected \"writable\", got \"read-only\"",
            ]
        );
    }

    #[test]
    fn an_element_with_nothing_in_common_is_reported_whole() {
        let m = mismatches(&json!({"sites": [{"name": "sfo"}]}), &actual(), "status");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].path, "status.sites[name=sfo]");
        assert_eq!(m[0].actual, "no matching element among 2");
    }

    #[test]
    fn explanation_has_mismatches_and_a_focused_diff() {
        let expected = json!({"activeSite": "iad", "health": "Healthy"});
        let text = explain("status", &expected, Some(&actual()));
        assert!(
            text.contains("status.activeSite: expected \"iad\", got \"pdx\""),
            "{text}"
        );
        assert!(text.contains("- activeSite: iad"), "{text}");
        assert!(text.contains("+ activeSite: pdx"), "{text}");
        assert!(text.contains("  health: Healthy"), "{text}");
        // The diff is focused on the listed keys; unlisted ones stay out of it.
        assert!(!text.contains("observedGeneration"), "{text}");
    }

    #[test]
    fn line_diff_marks_changes() {
        assert_eq!(line_diff("a\nb\nc", "a\nx\nc"), "  a\n- b\n+ x\n  c\n");
        assert_eq!(line_diff("", "a"), "+ a\n");
    }
}
