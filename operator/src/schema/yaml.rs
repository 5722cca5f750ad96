//! Loads a YAML stream into JSON values while remembering where each node was written,
//! so that a field error can point at `file:line:column`.
//!
//! Scalars resolve with YAML 1.2's core schema, as Kubernetes' YAML reader does:
//! `true`/`false`, integers, floats, `null`/`~`/empty are typed; quoted scalars are
//! always strings.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Number, Value};
use serde_saphyr::budget::{Budget, EnforcingPolicy, check_yaml_budget};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, ScanError, Span};
use serde_saphyr::options::AliasLimits;

/// A 1-based line and column in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// One document of a YAML stream.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    /// Where each node starts, by field path (`spec.sites[1].name`; `""` is the root).
    pub locations: BTreeMap<String, Location>,
    /// Where each mapping key was written, by the path of its value.
    pub key_locations: BTreeMap<String, Location>,
}

impl Document {
    /// Where the key of `path` was written (for "unknown field"), else [`Self::locate`].
    pub fn locate_key(&self, path: &str) -> Location {
        self.key_locations
            .get(path)
            .copied()
            .unwrap_or_else(|| self.locate(path))
    }

    /// Where `path` was written; a missing field falls back to its nearest parent, which
    /// is where a user must add it.
    pub fn locate(&self, path: &str) -> Location {
        let mut candidate = path;
        loop {
            if let Some(location) = self.locations.get(candidate) {
                return *location;
            }
            match candidate.rfind(['.', '[']) {
                Some(i) => candidate = &candidate[..i],
                None => {
                    return self
                        .locations
                        .get("")
                        .copied()
                        .unwrap_or(Location { line: 1, column: 1 });
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("{line}:{column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{line}:{column}: mapping keys must be scalars")]
    ComplexKey { line: usize, column: usize },
    #[error("{line}:{column}: alias refers to an unknown anchor")]
    UnknownAlias { line: usize, column: usize },
    #[error("{line}:{column}: duplicate key {key:?} (first written at line {first_line})")]
    DuplicateKey {
        line: usize,
        column: usize,
        key: String,
        first_line: usize,
    },
    /// One of serde-saphyr's default [`Budget`] limits (events, depth, aliases,
    /// anchors, documents, scalar bytes...), the scenario parser's limits too.
    #[error("1:1: the YAML exceeds a parsing limit ({breach}); refusing to load it")]
    Budget { breach: String },
    #[error(
        "{line}:{column}: aliases expand past {limit} nodes (an alias bomb?); refusing to load it"
    )]
    AliasExpansion {
        line: usize,
        column: usize,
        limit: usize,
    },
}

/// How many events alias expansion may add to a stream: serde-saphyr's default
/// `AliasLimits::max_total_replayed_events`, what the scenario parser allows.
fn alias_expansion_limit() -> usize {
    AliasLimits::default().max_total_replayed_events
}

/// The number of parser events `value` stands for (a scalar is one; a sequence or
/// mapping is its start, its end and its children's).
fn event_count(value: &Value) -> usize {
    match value {
        Value::Array(items) => 2 + items.iter().map(event_count).sum::<usize>(),
        Value::Object(fields) => 2 + fields.values().map(|v| 1 + event_count(v)).sum::<usize>(),
        _ => 1,
    }
}

fn location(span: &Span) -> Location {
    Location {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

impl From<ScanError> for YamlError {
    fn from(e: ScanError) -> Self {
        let marker = e.marker();
        Self::Syntax {
            line: marker.line(),
            column: marker.col() + 1,
            message: e.info().to_string(),
        }
    }
}

/// Parses every document of `text`. Empty documents are skipped. The stream must stay
/// within serde-saphyr's default budget and alias expansion within its default replay
/// limit: the same bounds as the scenario parser, so a few hundred bytes of nested
/// aliases cannot take gigabytes.
pub fn load_documents(text: &str) -> Result<Vec<Document>, YamlError> {
    let report = check_yaml_budget(text, Budget::default(), EnforcingPolicy::AllContent)?;
    if let Some(breach) = report.breached {
        return Err(YamlError::Budget {
            breach: format!("{breach:?}"),
        });
    }
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event?;
        builder.event(event, span)?;
    }
    Ok(builder.documents)
}

enum Frame {
    Seq {
        items: Vec<Value>,
        path: String,
        anchor: usize,
    },
    Map {
        fields: Map<String, Value>,
        path: String,
        anchor: usize,
        pending_key: Option<String>,
    },
}

#[derive(Default)]
struct Builder {
    documents: Vec<Document>,
    stack: Vec<Frame>,
    locations: BTreeMap<String, Location>,
    key_locations: BTreeMap<String, Location>,
    /// Each anchored node and its [`event_count`].
    anchors: HashMap<usize, (Value, usize)>,
    /// Events added so far by expanding aliases (bounded by [`alias_expansion_limit`]).
    expanded: usize,
}

impl Builder {
    /// The path the next node will have, or `None` when the next scalar is a map key.
    fn next_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { items, path, .. }) => Some(format!("{path}[{}]", items.len())),
            Some(Frame::Map {
                pending_key: None, ..
            }) => None,
            Some(Frame::Map {
                pending_key: Some(key),
                path,
                ..
            }) => Some(if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            }),
        }
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        let here = location(&span);
        match event {
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(..)
            | Event::Anchor(..) => {}
            Event::DocumentEnd => {
                self.stack.clear();
                self.anchors.clear();
                self.locations.clear();
                self.key_locations.clear();
            }
            Event::Scalar(text, style, anchor, _tag) => match self.next_path() {
                None => {
                    self.set_key(text.into_owned(), here)?;
                }
                Some(path) => {
                    self.locations.insert(path, here);
                    let value = resolve_scalar(&text, style);
                    if anchor != 0 {
                        self.anchors.insert(anchor, (value.clone(), 1));
                    }
                    self.finish(value);
                }
            },
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                let Some(path) = self.next_path() else {
                    return Err(YamlError::ComplexKey {
                        line: here.line,
                        column: here.column,
                    });
                };
                self.locations.insert(path.clone(), here);
                let frame = if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        items: Vec::new(),
                        path,
                        anchor,
                    }
                } else {
                    Frame::Map {
                        fields: Map::new(),
                        path,
                        anchor,
                        pending_key: None,
                    }
                };
                self.stack.push(frame);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { items, anchor, .. }) => (Value::Array(items), anchor),
                    Some(Frame::Map { fields, anchor, .. }) => (Value::Object(fields), anchor),
                    None => return Ok(()),
                };
                if anchor != 0 {
                    let size = event_count(&value);
                    self.anchors.insert(anchor, (value.clone(), size));
                }
                self.finish(value);
            }
            Event::Alias(id) => {
                let (value, size) = self.anchors.get(&id).ok_or(YamlError::UnknownAlias {
                    line: here.line,
                    column: here.column,
                })?;
                // Charge the expansion before cloning: the clone is what a bomb multiplies.
                self.expanded = self.expanded.saturating_add(*size);
                if self.expanded > alias_expansion_limit() {
                    return Err(YamlError::AliasExpansion {
                        line: here.line,
                        column: here.column,
                        limit: alias_expansion_limit(),
                    });
                }
                let value = value.clone();
                match self.next_path() {
                    None => {
                        let key =
                            value
                                .as_str()
                                .map(str::to_string)
                                .ok_or(YamlError::ComplexKey {
                                    line: here.line,
                                    column: here.column,
                                })?;
                        self.set_key(key, here)?;
                    }
                    Some(path) => {
                        self.locations.insert(path, here);
                        self.finish(value);
                    }
                }
            }
            Event::UnresolvedAlias(_) => {
                return Err(YamlError::UnknownAlias {
                    line: here.line,
                    column: here.column,
                });
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
        Ok(())
    }

    /// Records `key` as the pending key of the open mapping; a key the mapping already
    /// has is an error (Kubernetes' strict decoding refuses duplicates too).
    fn set_key(&mut self, key: String, here: Location) -> Result<(), YamlError> {
        let Some(Frame::Map {
            fields,
            pending_key,
            path,
            ..
        }) = self.stack.last_mut()
        else {
            return Ok(());
        };
        let key_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let first = self.key_locations.insert(key_path, here);
        if fields.contains_key(&key) {
            return Err(YamlError::DuplicateKey {
                line: here.line,
                column: here.column,
                key,
                first_line: first.map_or(here.line, |l| l.line),
            });
        }
        *pending_key = Some(key);
        Ok(())
    }

    /// Attaches a finished node to its parent, or closes the document.
    fn finish(&mut self, value: Value) {
        match self.stack.last_mut() {
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map {
                fields,
                pending_key,
                ..
            }) => {
                if let Some(key) = pending_key.take() {
                    fields.insert(key, value);
                }
            }
            None => {
                if !value.is_null() {
                    let locations = std::mem::take(&mut self.locations);
                    let key_locations = std::mem::take(&mut self.key_locations);
                    self.documents.push(Document {
                        value,
                        locations,
                        key_locations,
                    });
                }
            }
        }
    }
}

fn resolve_scalar(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Number(i.into());
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::Number(i.into());
    }
    let looks_numeric = text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if looks_numeric
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_locations_of_a_stream() {
        let text = "\
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
spec:
  sites:
    - name: iad
      port: 3306
    - name: \"pdx\"
      enabled: true
  ratio: 0.5
  nothing: ~
";
        let docs = load_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0].value,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
        );
        assert_eq!(
            docs[1].value,
            json!({"spec": {"sites": [{"name": "iad", "port": 3306}, {"name": "pdx", "enabled": true}], "ratio": 0.5, "nothing": null}})
        );
        assert_eq!(
            docs[0].locate("metadata.name"),
            Location { line: 4, column: 9 }
        );
        assert_eq!(
            docs[1].locate("spec.sites[1].name"),
            Location {
                line: 10,
                column: 13
            }
        );
        assert_eq!(
            docs[1].locate("spec.sites[0].port"),
            Location {
                line: 9,
                column: 13
            }
        );
        // A missing field points at its parent, where it has to be added.
        assert_eq!(
            docs[1].locate("spec.sites[1].nodeSelector"),
            docs[1].locate("spec.sites[1]")
        );
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let docs = load_documents("a: \"1\"\nb: '2'\nc: 3\nd: yes\n").unwrap();
        assert_eq!(
            docs[0].value,
            json!({"a": "1", "b": "2", "c": 3, "d": "yes"})
        );
    }

    #[test]
    fn anchors_and_aliases_are_expanded() {
        let docs = load_documents("base: &b {x: 1}\ncopy: *b\n").unwrap();
        assert_eq!(docs[0].value, json!({"base": {"x": 1}, "copy": {"x": 1}}));
    }

    /// Nine levels of nine aliases each: 9^9 (387 million) leaves from ~600 bytes.
    fn alias_bomb() -> String {
        let mut text = String::from("a0: &a0 [\"lol\"]\n");
        for level in 1..=9 {
            let refs = vec![format!("*a{}", level - 1); 9].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_before_it_expands() {
        let bomb = alias_bomb();
        assert!(bomb.len() < 700, "{} bytes", bomb.len());
        let started = std::time::Instant::now();
        let err = load_documents(&bomb).unwrap_err();
        assert!(matches!(err, YamlError::AliasExpansion { .. }), "{err:?}");
        assert!(err.to_string().contains("alias bomb"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn ordinary_aliases_stay_within_the_budget() {
        let text = "base: &b {x: 1, y: [1, 2, 3]}\n".to_string()
            + &(0..90).map(|i| format!("c{i}: *b\n")).collect::<String>();
        let docs = load_documents(&text).unwrap();
        assert_eq!(docs[0].value["c89"], json!({"x": 1, "y": [1, 2, 3]}));
        // serde-saphyr's ratio heuristic, as in the scenario parser: 100+ aliases of a
        // single anchor look like a bomb.
        let many = "base: &b {x: 1}\n".to_string()
            + &(0..200).map(|i| format!("c{i}: *b\n")).collect::<String>();
        assert!(matches!(
            load_documents(&many),
            Err(YamlError::Budget { .. })
        ));
    }

    #[test]
    fn a_stream_past_the_parsing_budget_is_refused() {
        let deep = "[".repeat(300) + &"]".repeat(300);
        let err = load_documents(&deep).unwrap_err();
        assert!(
            matches!(err, YamlError::Budget { .. } | YamlError::Syntax { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn duplicate_keys_are_errors_naming_both_lines() {
        let err = load_documents("metadata:\n  name: a\n  labels: {}\n  name: b\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "4:3: duplicate key \"name\" (first written at line 2)");
        let err = load_documents("a: {x: 1, x: 2}\n").unwrap_err();
        assert!(
            matches!(err, YamlError::DuplicateKey { ref key, .. } if key == "x"),
            "{err:?}"
        );
        // The same key in different mappings is not a duplicate.
        load_documents("a: {x: 1}\nb: {x: 1}\nc: [{x: 1}, {x: 2}]\n").unwrap();
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = load_documents("a: [1, 2\nb: 3\n").unwrap_err().to_string();
        assert!(err.starts_with(|c: char| c.is_ascii_digit()), "{err}");
    }
}
