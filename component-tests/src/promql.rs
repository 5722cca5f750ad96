//! The metric names a PromQL expression reads, and the series names the operator's own
//! registry exports, so that tests can check alert rules and dashboards against what
//! `/metrics` really serves. Whether an expression parses is promtool's job (the alerts
//! test runs `promtool check rules`); this module only finds names, with a small lexer.

use std::collections::BTreeSet;

/// Words that are PromQL syntax, not metric names, when not followed by `(`: the
/// aggregation operators (`max by (x) (...)` puts `by` before the parenthesis) and the
/// other keywords.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
];

/// Keywords whose parenthesised argument is a list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Why names could not be read from an expression.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("PromQL `{expr}` at byte {at}: {problem}")]
pub struct NameError {
    pub expr: String,
    pub at: usize,
    pub problem: String,
}

/// The metric names `expr` selects: bare names (`up`, `foo{a="b"}`) and
/// `{__name__="foo"}` matchers. Function, aggregation and keyword names, label names
/// (in matchers and in `by`/`on`/... lists), strings, numbers and durations are not
/// metric names. A `__name__` matched by a regular expression is refused: which
/// metrics it names cannot be checked.
pub fn metric_names(expr: &str) -> Result<BTreeSet<String>, NameError> {
    let error = |at: usize, problem: &str| NameError {
        expr: expr.to_string(),
        at,
        problem: problem.to_string(),
    };
    let bytes = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i = skip_string(bytes, i).ok_or_else(|| error(i, "unterminated string"))?
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                let end = closing(bytes, i, b'{', b'}').ok_or_else(|| error(i, "unclosed {"))?;
                if let Some(name) = name_matcher(&expr[i + 1..end]).map_err(|p| error(i, &p))? {
                    names.insert(name);
                }
                i = end + 1;
            }
            b'[' => i = closing(bytes, i, b'[', b']').ok_or_else(|| error(i, "unclosed ["))? + 1,
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
            }
            b'.' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut next = i;
                while next < bytes.len() && bytes[next].is_ascii_whitespace() {
                    next += 1;
                }
                let lower = word.to_ascii_lowercase();
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if bytes.get(next) == Some(&b'(') {
                        i = closing(bytes, next, b'(', b')')
                            .ok_or_else(|| error(next, "unclosed ("))?
                            + 1;
                    }
                } else if KEYWORDS.contains(&lower.as_str()) || bytes.get(next) == Some(&b'(') {
                    // A keyword, or a function or aggregation being called.
                } else {
                    names.insert(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    Ok(names)
}

/// The index just past the string starting at `start` (its quote), or `None`.
fn skip_string(bytes: &[u8], start: usize) -> Option<usize> {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// The index of the bracket closing the one at `start`, strings skipped.
fn closing(bytes: &[u8], start: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(bytes, i)?;
                continue;
            }
            b if b == open => depth += 1,
            b if b == close => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The metric named by a `__name__` matcher inside `{...}`, if there is one.
fn name_matcher(matchers: &str) -> Result<Option<String>, String> {
    let Some(at) = matchers.find("__name__") else {
        return Ok(None);
    };
    let rest = matchers[at + "__name__".len()..].trim_start();
    let (operator, rest) = if let Some(rest) = rest.strip_prefix("=~") {
        ("=~", rest)
    } else if let Some(rest) = rest.strip_prefix("!=") {
        ("!=", rest)
    } else if let Some(rest) = rest.strip_prefix("!~") {
        ("!~", rest)
    } else if let Some(rest) = rest.strip_prefix('=') {
        ("=", rest)
    } else {
        return Err("a __name__ matcher without an operator".into());
    };
    if operator != "=" {
        return Err(format!(
            "__name__{operator} names metrics by pattern; name them exactly"
        ));
    }
    let rest = rest.trim_start();
    let quote = rest.chars().next().ok_or("__name__= without a value")?;
    let value = rest[1..]
        .split(quote)
        .next()
        .ok_or("__name__= with an unterminated value")?;
    Ok(Some(value.to_string()))
}

/// The series names an OpenMetrics exposition exports, from its `# TYPE` lines (so a
/// registry that holds no sample yet still lists every family): a gauge or unknown
/// family exports its own name, a counter `<name>_total`, a histogram `<name>_bucket`,
/// `_sum` and `_count`, and so on as the OpenMetrics specification says.
pub fn exported_series(exposition: &str) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(family), Some(kind)) = (words.next(), words.next()) else {
            return Err(format!("a TYPE line without a family and a type: {line}"));
        };
        let suffixes: &[&str] = match kind {
            "gauge" | "unknown" | "stateset" | "info" => &[""],
            // No `_created`: prometheus-client writes it only for metrics created with a
            // timestamp, which the operator's are not.
            "counter" => &["_total"],
            "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            other => return Err(format!("unknown metric type {other} in: {line}")),
        };
        out.extend(suffixes.iter().map(|s| format!("{family}{s}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).unwrap().into_iter().collect()
    }

    #[test]
    fn finds_selected_metrics_and_nothing_else() {
        assert_eq!(names("up"), ["up"]);
        assert_eq!(names(r#"foo{a="b", c=~"d|e"} > 3"#), ["foo"]);
        assert_eq!(
            names(
                r#"max by (namespace, group) ((a{health="NoPrimary"} == 1) and on (instance) (b == 1))
                   unless on (namespace, group) max by (namespace, group) (c)"#
            ),
            ["a", "b", "c"]
        );
        assert_eq!(
            names("histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))"),
            ["x_bucket"]
        );
        assert_eq!(names("sum(rate(x[5m] offset 1h)) by (job)"), ["x"]);
        assert_eq!(names("x unless x offset 30m"), ["x"]);
        assert_eq!(names("absent(x)"), ["x"]);
        assert_eq!(
            names(r#"label_replace(x, "dst", "$1", "src", "(.*)") * on (a) group_left (b) y"#),
            ["x", "y"]
        );
        assert_eq!(names(r#"{__name__="x", job="j"}"#), ["x"]);
        assert_eq!(names("1e3 + .5 + 0x1f + Inf + NaN"), Vec::<String>::new());
        assert_eq!(
            names("count_values(\"v\", x) # a comment naming y\n"),
            ["x"]
        );
        assert_eq!(names("a:recorded:rate5m / b"), ["a:recorded:rate5m", "b"]);
        assert_eq!(names("sum without (x) (y)"), ["y"]);
        assert_eq!(names("rate(x[5m:1m])"), ["x"]);
    }

    #[test]
    fn refuses_what_it_cannot_name_and_broken_text() {
        assert!(
            metric_names(r#"{__name__=~"bloodraven_.*"}"#)
                .unwrap_err()
                .problem
                .contains("by pattern")
        );
        assert!(metric_names(r#"x{a="b"#).is_err());
        assert!(metric_names("sum by (a").is_err());
        assert!(metric_names("rate(x[5m)").is_err());
    }

    #[test]
    fn exported_series_follow_the_openmetrics_suffixes() {
        let text = "# HELP a_gauge g\n# TYPE a_gauge gauge\n# TYPE c counter\n\
                    c_total 1\n# TYPE h histogram\n# EOF\n";
        let series: Vec<String> = exported_series(text).unwrap().into_iter().collect();
        assert_eq!(
            series,
            ["a_gauge", "c_total", "h_bucket", "h_count", "h_sum"]
        );
        assert!(exported_series("# TYPE x sometype\n").is_err());
        assert!(exported_series("# TYPE x\n").is_err());
    }
}
