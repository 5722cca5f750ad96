//! `${name}` references in annotate values: a value a `capture` step read from an
//! object's status, written back into the cluster the way a person would paste it.
//! Syntax is checked when the scenario is parsed; values are filled in when the step runs.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// One piece of a template: literal text or a reference to a captured value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Reference(String),
}

/// A string that may contain `${name}` references; `$${` writes a literal `${`, and
/// any other `$` is literal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Template {
    text: String,
    #[serde(skip)]
    segments: Vec<Segment>,
}

/// A capture name: what `${...}` may hold and `capture.as` must be.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Why a name is not a capture name, in the words the parser reports.
pub fn name_rule() -> &'static str {
    "a name is a letter or `_` followed by letters, digits, `_` or `-`"
}

/// A template that does not parse, or a reference with no captured value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unterminated `${{` in {text:?} (write `$${{` for a literal `${{`)")]
    Unterminated { text: String },
    #[error("`${{{name}}}` in {text:?} is not a reference: {}", name_rule())]
    BadName { text: String, name: String },
    #[error("`${{{name}}}` has no value: the step that captures it did not run")]
    NotCaptured { name: String },
}

impl Template {
    /// Parses `text`, refusing an unterminated `${` or a reference that is not a name.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(idx) = rest.find('$') {
            literal.push_str(&rest[..idx]);
            let after = &rest[idx + 1..];
            if let Some(escaped) = after.strip_prefix("${") {
                literal.push_str("${");
                rest = escaped;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    return Err(TemplateError::Unterminated {
                        text: text.to_owned(),
                    });
                };
                let name = &body[..end];
                if !valid_name(name) {
                    return Err(TemplateError::BadName {
                        text: text.to_owned(),
                        name: name.to_owned(),
                    });
                }
                if !literal.is_empty() {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                }
                segments.push(Segment::Reference(name.to_owned()));
                rest = &body[end + 1..];
            } else {
                literal.push('$');
                rest = after;
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The names referenced, in order of appearance.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Reference(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The text with every reference replaced by its captured value.
    pub fn render(&self, captured: &BTreeMap<String, String>) -> Result<String, TemplateError> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Reference(name) => match captured.get(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(TemplateError::NotCaptured { name: name.clone() });
                    }
                },
            }
        }
        Ok(out)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Every string in `value` (a PARTIAL fragment) parsed as a template: the first
/// syntax error, if any.
pub fn parse_strings(value: &serde_json::Value) -> Result<Vec<Template>, TemplateError> {
    let mut out = Vec::new();
    collect(value, &mut out)?;
    Ok(out)
}

fn collect(value: &serde_json::Value, out: &mut Vec<Template>) -> Result<(), TemplateError> {
    match value {
        serde_json::Value::String(s) if s.contains('$') => out.push(Template::parse(s)?),
        serde_json::Value::Array(items) => {
            for item in items {
                collect(item, out)?;
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values() {
                collect(item, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `value` with every string rendered against `captured` (map keys are left as written).
pub fn render_strings(
    value: &serde_json::Value,
    captured: &BTreeMap<String, String>,
) -> Result<serde_json::Value, TemplateError> {
    Ok(match value {
        serde_json::Value::String(s) if s.contains('$') => {
            serde_json::Value::String(Template::parse(s)?.render(captured)?)
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|i| render_strings(i, captured))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_strings(v, captured)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("token".to_owned(), "3e11fa47".to_owned()),
            ("site".to_owned(), "iad".to_owned()),
        ])
    }

    #[test]
    fn renders_references_escapes_and_plain_dollars() {
        let cases = [
            ("pdx", "pdx"),
            ("iad:${token}", "iad:3e11fa47"),
            ("${site}:${token}", "iad:3e11fa47"),
            ("${token}${token}", "3e11fa473e11fa47"),
            ("$${token}", "${token}"),
            ("cost $5 and $", "cost $5 and $"),
            ("", ""),
        ];
        for (text, want) in cases {
            let t = Template::parse(text).unwrap();
            assert_eq!(t.render(&vars()).unwrap(), want, "{text}");
            assert_eq!(t.as_str(), text);
        }
    }

    #[test]
    fn lists_references_in_order() {
        let t = Template::parse("${site}:${token}:$${x}").unwrap();
        assert_eq!(t.references().collect::<Vec<_>>(), ["site", "token"]);
    }

    #[test]
    fn syntax_errors_name_the_problem() {
        let unterminated = Template::parse("iad:${token").unwrap_err().to_string();
        assert!(unterminated.contains("unterminated `${`"), "{unterminated}");
        let empty = Template::parse("iad:${}").unwrap_err().to_string();
        assert!(
            empty.contains("`${}`") && empty.contains("not a reference"),
            "{empty}"
        );
        let bad = Template::parse("${1st}").unwrap_err().to_string();
        assert!(bad.contains("`${1st}`"), "{bad}");
    }

    #[test]
    fn a_missing_value_is_an_error_not_an_empty_string() {
        let t = Template::parse("iad:${nope}").unwrap();
        let err = t.render(&vars()).unwrap_err().to_string();
        assert!(err.contains("`${nope}` has no value"), "{err}");
    }

    #[test]
    fn fragments_render_every_string_leaf() {
        let fragment = serde_json::json!({
            "sites": [{"name": "iad", "divergentGtid": "${token}-x:1-3", "count": 3}],
            "price": "$5",
        });
        let refs: Vec<String> = parse_strings(&fragment)
            .unwrap()
            .iter()
            .flat_map(|t| t.references().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        assert_eq!(refs, ["token"]);
        let rendered = render_strings(&fragment, &vars()).unwrap();
        assert_eq!(
            rendered,
            serde_json::json!({
                "sites": [{"name": "iad", "divergentGtid": "3e11fa47-x:1-3", "count": 3}],
                "price": "$5",
            })
        );
        let bad = serde_json::json!({"a": ["${"]});
        assert!(parse_strings(&bad).is_err());
        assert!(render_strings(&serde_json::json!("${nope}"), &vars()).is_err());
    }

    #[test]
    fn names() {
        for ok in ["token", "_x", "reclone-token", "a1_b"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "1a", "-a", "a b", "a.b", "a}"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
