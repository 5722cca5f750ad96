//! Loads a YAML stream into JSON values while remembering where each node was written,
//! so that a field error can point at `file:line:column`.
//!
//! Scalars resolve with YAML 1.2's core schema, as Kubernetes' YAML reader does:
//! `true`/`false`, integers, floats, `null`/`~`/empty are typed; quoted scalars are
//! always strings.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Number, Value};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, ScanError, Span};

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

/// Parses every document of `text`. Empty documents are skipped.
pub fn load_documents(text: &str) -> Result<Vec<Document>, YamlError> {
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
    anchors: HashMap<usize, Value>,
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
                    if let Some(Frame::Map {
                        pending_key, path, ..
                    }) = self.stack.last_mut()
                    {
                        let key_path = if path.is_empty() {
                            text.to_string()
                        } else {
                            format!("{path}.{text}")
                        };
                        self.key_locations.insert(key_path, here);
                        *pending_key = Some(text.into_owned());
                    }
                }
                Some(path) => {
                    self.locations.insert(path, here);
                    let value = resolve_scalar(&text, style);
                    if anchor != 0 {
                        self.anchors.insert(anchor, value.clone());
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
                    self.anchors.insert(anchor, value.clone());
                }
                self.finish(value);
            }
            Event::Alias(id) => {
                let value = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or(YamlError::UnknownAlias {
                        line: here.line,
                        column: here.column,
                    })?;
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
                        if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
                            *pending_key = Some(key);
                        }
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

    #[test]
    fn syntax_errors_name_the_line() {
        let err = load_documents("a: [1, 2\nb: 3\n").unwrap_err().to_string();
        assert!(err.starts_with(|c: char| c.is_ascii_digit()), "{err}");
    }
}
