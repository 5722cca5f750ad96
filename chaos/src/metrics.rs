//! The Prometheus text exposition format (version 0.0.4, as prometheus-client writes it),
//! parsed just far enough to evaluate `metric` checks: sample lines with labels and a
//! value. `# HELP`/`# TYPE` lines and timestamps are read and ignored.

use std::collections::BTreeMap;

use crate::scenario::MetricCheck;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("/metrics line {line}: {reason}: {text:?}")]
pub struct MetricsParseError {
    pub line: usize,
    pub reason: &'static str,
    pub text: String,
}

/// Parses a whole /metrics body.
pub fn parse(body: &str) -> Result<Vec<Sample>, MetricsParseError> {
    let mut samples = Vec::new();
    for (idx, raw) in body.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason| MetricsParseError {
            line: idx + 1,
            reason,
            text: raw.to_owned(),
        };
        samples.push(parse_sample(line).map_err(err)?);
    }
    Ok(samples)
}

fn parse_sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err("bad metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after_brace)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_whitespace();
    let value_text = fields.next().ok_or("no value")?;
    let value = parse_value(value_text).ok_or("bad value")?;
    // An optional timestamp may follow; anything after it is an error.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| "bad timestamp")?;
    }
    if fields.next().is_some() {
        return Err("trailing text");
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Parses `a="x",b="y\"z"}` and returns the labels and the text after `}`.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), &'static str> {
    let mut labels = BTreeMap::new();
    let mut chars = text.char_indices().peekable();
    loop {
        while chars
            .next_if(|(_, c)| c.is_whitespace() || *c == ',')
            .is_some()
        {}
        match chars.peek() {
            Some((i, '}')) => return Ok((labels, &text[i + 1..])),
            None => return Err("unterminated labels"),
            _ => {}
        }
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| c.is_ascii_alphanumeric() || *c == '_') {
            key.push(c);
        }
        if key.is_empty() {
            return Err("bad label name");
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next().map(|(_, c)| c) != Some('=') {
            return Err("expected = after label name");
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err("label value must be quoted");
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some((_, '"')) => break,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    _ => return Err("bad escape in label value"),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value"),
            }
        }
        labels.insert(key, value);
    }
}

/// What a metric check saw: the summed value of the matching series, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricReading {
    pub value: Option<f64>,
    pub series: usize,
}

/// Sums every series named `check.name` whose labels include `check.labels`.
pub fn read(samples: &[Sample], check: &MetricCheck) -> MetricReading {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == check.name)
        .filter(|s| check.labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .collect();
    let value = (!matching.is_empty()).then(|| matching.iter().map(|s| s.value).sum());
    MetricReading {
        value,
        series: matching.len(),
    }
}

/// True when the matching series exist and their sum satisfies `op value`. A metric
/// with no matching series satisfies nothing (so `refute` of it holds).
pub fn holds(samples: &[Sample], check: &MetricCheck) -> (bool, MetricReading) {
    let reading = read(samples, check);
    let ok = reading
        .value
        .is_some_and(|v| check.op.holds(v, check.value));
    (ok, reading)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::CompareOp;

    const BODY: &str = r#"# HELP bloodraven_failovers_total Failovers performed.
# TYPE bloodraven_failovers_total counter
bloodraven_failovers_total{group="playground",kind="emergency",from="iad",to="pdx"} 1
bloodraven_failovers_total{group="playground",kind="planned",from="pdx",to="iad"} 2
# TYPE bloodraven_site_writable gauge
bloodraven_site_writable{site="iad"} 0
bloodraven_site_writable{site="pdx"} 1 1700000000000
bloodraven_lag_seconds{site="iad",note="a \"quoted\" \\ value\nnext"} 0.25
bloodraven_up 1
bloodraven_weird{le="+Inf"} +Inf
bloodraven_nan NaN
# EOF
"#;

    fn check(name: &str, labels: &[(&str, &str)], op: CompareOp, value: f64) -> MetricCheck {
        MetricCheck {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            op,
            value,
        }
    }

    #[test]
    fn parses_labels_escapes_values_and_timestamps() {
        let samples = parse(BODY).unwrap();
        assert_eq!(samples.len(), 8);
        assert_eq!(samples[0].labels["kind"], "emergency");
        assert_eq!(samples[3].value, 1.0);
        assert_eq!(samples[4].labels["note"], "a \"quoted\" \\ value\nnext");
        assert_eq!(samples[4].value, 0.25);
        assert!(samples[5].labels.is_empty());
        assert_eq!(samples[6].value, f64::INFINITY);
        assert!(samples[7].value.is_nan());
    }

    #[test]
    fn label_subset_and_ops_table() {
        let samples = parse(BODY).unwrap();
        use CompareOp::*;
        let cases = [
            (
                check(
                    "bloodraven_failovers_total",
                    &[("kind", "emergency")],
                    Eq,
                    1.0,
                ),
                true,
            ),
            (
                check(
                    "bloodraven_failovers_total",
                    &[("kind", "emergency")],
                    Ne,
                    1.0,
                ),
                false,
            ),
            (check("bloodraven_failovers_total", &[], Eq, 3.0), true),
            (
                check(
                    "bloodraven_failovers_total",
                    &[("group", "playground")],
                    Ge,
                    3.0,
                ),
                true,
            ),
            (
                check(
                    "bloodraven_failovers_total",
                    &[("group", "playground")],
                    Gt,
                    3.0,
                ),
                false,
            ),
            (
                check(
                    "bloodraven_failovers_total",
                    &[("kind", "planned")],
                    Lt,
                    3.0,
                ),
                true,
            ),
            (
                check(
                    "bloodraven_failovers_total",
                    &[("kind", "planned")],
                    Le,
                    2.0,
                ),
                true,
            ),
            (
                check("bloodraven_failovers_total", &[("kind", "other")], Eq, 0.0),
                false,
            ),
            (
                check("bloodraven_site_writable", &[("site", "pdx")], Eq, 1.0),
                true,
            ),
            (check("bloodraven_missing", &[], Ge, 0.0), false),
        ];
        for (c, want) in cases {
            assert_eq!(holds(&samples, &c).0, want, "{c:?}");
        }
        assert_eq!(
            read(&samples, &check("bloodraven_missing", &[], Eq, 0.0)).value,
            None
        );
        assert_eq!(
            read(&samples, &check("bloodraven_failovers_total", &[], Eq, 0.0)).series,
            2
        );
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let cases = [
            ("up", "no value"),
            ("up{a=\"1\"", "unterminated labels"),
            ("up{a=1} 1", "label value must be quoted"),
            ("up abc", "bad value"),
            ("up 1 2 3", "trailing text"),
            ("9up 1", "bad metric name"),
            ("up{a=\"\\x\"} 1", "bad escape in label value"),
        ];
        for (text, reason) in cases {
            let body = format!("# HELP x\nok 1\n{text}\n");
            let err = parse(&body).unwrap_err();
            assert_eq!((err.line, err.reason), (3, reason), "{text}");
        }
    }
}
