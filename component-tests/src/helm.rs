//! A deliberately small Helm template renderer, so that the chart is tested where helm
//! is not installed. It implements only what charts/bloodraven/templates use, and
//! refuses everything else with an error naming the file and line, so a template that
//! starts using more fails its test instead of rendering wrongly.
//!
//! Supported: text; comments `{{/* */}}`; the trim markers `{{-` and `-}}`; `if` /
//! `else` / `end` and `with` / `end` on a pipeline (Go's truthiness: false, 0, "",
//! null, empty list or map are false); pipelines of terms (`.`, `.A.b.c`, `"string"`,
//! `` `raw string` ``, integers) and the functions `quote`, `default`, `toYaml`,
//! `nindent` and `indent`. A `}}` inside a string does not end the action, so
//! Prometheus and Grafana templates pass through as {{`{{ $labels.site }}`}}.
//! Not supported: `define`/`include`/`template`, `range`, variables, `else if`, any
//! other function, `.Files`, `.Capabilities`. Stricter than Helm on purpose: a missing
//! value printed by `{{ }}` is an error (Helm prints an empty string), because in these
//! templates it is always a typo.

use std::path::Path;

use serde_json::{Value, json};

/// Why a template did not render: the file, the line and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct RenderError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    /// A path from the current dot: `[]` is `.`.
    Path(Vec<String>),
    Str(String),
    Int(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Command {
    /// A function name, or `None` when the command is a single term.
    function: Option<String>,
    args: Vec<Term>,
}

type Pipeline = Vec<Command>;

#[derive(Debug)]
enum Node {
    Text(String),
    Output(Pipeline, usize),
    If(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>),
}

enum Action {
    Comment,
    Output(Pipeline),
    If(Pipeline),
    With(Pipeline),
    Else,
    End,
}

/// A text piece and the action after it (with its line), if any.
type Token = (String, Option<(Action, usize)>);

/// A block's nodes and what ended it: `(is_else, line)`, `None` at the end of input.
type Block = (Vec<Node>, Option<(bool, usize)>);

struct Parser<'a> {
    file: &'a str,
}

impl Parser<'_> {
    fn error(&self, line: usize, message: impl Into<String>) -> RenderError {
        RenderError {
            file: self.file.to_string(),
            line,
            message: message.into(),
        }
    }

    /// Splits the text into text pieces and actions, applying the trim markers.
    fn lex(&self, text: &str) -> Result<Vec<Token>, RenderError> {
        let mut out: Vec<Token> = Vec::new();
        let mut rest = text;
        let mut consumed = 0;
        let mut trim_next = false;
        loop {
            let line = text[..consumed].matches('\n').count() + 1;
            let Some(start) = rest.find("{{") else {
                let piece = if trim_next { rest.trim_start() } else { rest };
                out.push((piece.to_string(), None));
                return Ok(out);
            };
            let mut piece = &rest[..start];
            if trim_next {
                piece = piece.trim_start();
            }
            let after_open = &rest[start + 2..];
            let trim_before = after_open.starts_with("- ") || after_open.starts_with("-\n");
            if trim_before {
                piece = piece.trim_end();
            }
            let line = line + rest[..start].matches('\n').count();
            let Some(end) = action_end(after_open) else {
                return Err(self.error(line, "unclosed {{"));
            };
            let mut inner = &after_open[..end];
            if trim_before {
                inner = &inner[1..];
            }
            trim_next = inner.ends_with(" -") || inner.ends_with("\n-");
            if trim_next {
                inner = &inner[..inner.len() - 1];
            }
            out.push((
                piece.to_string(),
                Some((self.action(inner.trim(), line)?, line)),
            ));
            let advance = start + 2 + end + 2;
            consumed += advance;
            rest = &rest[advance..];
        }
    }

    fn action(&self, inner: &str, line: usize) -> Result<Action, RenderError> {
        if inner.starts_with("/*") {
            return if inner.ends_with("*/") {
                Ok(Action::Comment)
            } else {
                Err(self.error(line, "a comment must end with */ right before }}"))
            };
        }
        let (keyword, rest) = inner.split_once(char::is_whitespace).unwrap_or((inner, ""));
        match keyword {
            "if" => Ok(Action::If(self.pipeline(rest, line)?)),
            "with" => Ok(Action::With(self.pipeline(rest, line)?)),
            "else" if rest.trim().is_empty() => Ok(Action::Else),
            "end" => Ok(Action::End),
            "else" | "range" | "define" | "include" | "template" | "block" => Err(self.error(
                line,
                format!(
                    "`{inner}` is not supported by this renderer (see component-tests/src/helm.rs)"
                ),
            )),
            _ => Ok(Action::Output(self.pipeline(inner, line)?)),
        }
    }

    fn words(&self, text: &str, line: usize) -> Result<Vec<String>, RenderError> {
        let mut words = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
            } else if c == '"' {
                chars.next();
                let mut word = String::from("\"");
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => word.push('\n'),
                            Some(other) => word.push(other),
                            None => return Err(self.error(line, "unterminated string")),
                        },
                        Some(other) => word.push(other),
                        None => return Err(self.error(line, "unterminated string")),
                    }
                }
                words.push(word);
            } else if c == '`' {
                // A raw string: no escapes, ends at the next backquote.
                chars.next();
                let mut word = String::from("\"");
                loop {
                    match chars.next() {
                        Some('`') => break,
                        Some(other) => word.push(other),
                        None => return Err(self.error(line, "unterminated raw string")),
                    }
                }
                words.push(word);
            } else if c == '|' {
                chars.next();
                words.push("|".into());
            } else {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '|' {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                words.push(word);
            }
        }
        Ok(words)
    }

    fn term(&self, word: &str, line: usize) -> Result<Term, RenderError> {
        if let Some(text) = word.strip_prefix('"') {
            return Ok(Term::Str(text.to_string()));
        }
        if word == "." {
            return Ok(Term::Path(Vec::new()));
        }
        if let Some(path) = word.strip_prefix('.') {
            return Ok(Term::Path(path.split('.').map(String::from).collect()));
        }
        word.parse()
            .map(Term::Int)
            .map_err(|_| self.error(line, format!("unsupported term `{word}`")))
    }

    fn pipeline(&self, text: &str, line: usize) -> Result<Pipeline, RenderError> {
        let words = self.words(text, line)?;
        if words.is_empty() {
            return Err(self.error(line, "empty pipeline"));
        }
        let mut pipeline = Vec::new();
        for command in words.split(|w| w == "|") {
            let Some((first, args)) = command.split_first() else {
                return Err(self.error(line, "empty command in a pipeline"));
            };
            let is_term =
                first.starts_with('.') || first.starts_with('"') || first.parse::<i64>().is_ok();
            let (function, args) = if is_term {
                if !args.is_empty() {
                    return Err(self.error(line, format!("`{first}` is not a function")));
                }
                (None, command)
            } else {
                if !["quote", "default", "toYaml", "nindent", "indent"].contains(&first.as_str()) {
                    return Err(self.error(
                        line,
                        format!("function `{first}` is not supported by this renderer"),
                    ));
                }
                (Some(first.clone()), args)
            };
            pipeline.push(Command {
                function,
                args: args
                    .iter()
                    .map(|a| self.term(a, line))
                    .collect::<Result<_, _>>()?,
            });
        }
        Ok(pipeline)
    }

    /// Builds the tree; stops at `else`/`end` and says which one ended the block.
    fn tree(
        &self,
        tokens: &mut std::vec::IntoIter<Token>,
        opened_at: Option<usize>,
    ) -> Result<Block, RenderError> {
        let mut nodes = Vec::new();
        while let Some((text, action)) = tokens.next() {
            if !text.is_empty() {
                nodes.push(Node::Text(text));
            }
            let Some((action, line)) = action else {
                continue;
            };
            match action {
                Action::Comment => {}
                Action::Output(pipeline) => nodes.push(Node::Output(pipeline, line)),
                Action::If(pipeline) => {
                    let (then, ended) = self.tree(tokens, Some(line))?;
                    let otherwise = match ended {
                        Some((true, else_line)) => match self.tree(tokens, Some(else_line))? {
                            (nodes, Some((false, _))) => nodes,
                            _ => return Err(self.error(else_line, "`else` without `end`")),
                        },
                        _ => Vec::new(),
                    };
                    nodes.push(Node::If(pipeline, then, otherwise));
                }
                Action::With(pipeline) => match self.tree(tokens, Some(line))? {
                    (body, Some((false, _))) => nodes.push(Node::With(pipeline, body)),
                    _ => return Err(self.error(line, "`with ... else` is not supported")),
                },
                Action::Else => return Ok((nodes, Some((true, line)))),
                Action::End => return Ok((nodes, Some((false, line)))),
            }
        }
        match opened_at {
            Some(line) => Err(self.error(line, "block is never closed with {{ end }}")),
            None => Ok((nodes, None)),
        }
    }
}

/// Where an action's closing `}}` is in `text` (which starts right after its `{{`): the
/// first one outside a quoted ("...") or raw (`...`) string, so that `{{ "}}" }}` and
/// {{`{{ $labels.site }}`}} print braces as Go templates do. A comment ends at `*/}}`.
fn action_end(text: &str) -> Option<usize> {
    let body = text.strip_prefix('-').unwrap_or(text).trim_start();
    if body.starts_with("/*") {
        let close = text.find("*/")?;
        return text[close..].find("}}").map(|end| close + end);
    }
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match quote {
            Some(b'"') if byte == b'\\' => i += 1,
            Some(open) if byte == open => quote = None,
            Some(_) => {}
            None if byte == b'"' || byte == b'`' => quote = Some(byte),
            None if byte == b'}' && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn to_yaml(value: &Value) -> Result<String, String> {
    let text = serde_saphyr::to_string(value).map_err(|e| e.to_string())?;
    // Helm's toYaml drops the trailing newline.
    Ok(text.trim_end_matches('\n').to_string())
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct Renderer<'a> {
    file: &'a str,
}

impl Renderer<'_> {
    fn error(&self, line: usize, message: impl Into<String>) -> RenderError {
        RenderError {
            file: self.file.to_string(),
            line,
            message: message.into(),
        }
    }

    /// The value of a term: `None` for a path that leads nowhere.
    fn term(&self, term: &Term, dot: &Value) -> Option<Value> {
        match term {
            Term::Str(s) => Some(Value::String(s.clone())),
            Term::Int(i) => Some(Value::from(*i)),
            Term::Path(path) => path.iter().try_fold(dot, |v, key| v.get(key)).cloned(),
        }
    }

    fn int(&self, value: Option<Value>, line: usize) -> Result<usize, RenderError> {
        value
            .as_ref()
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.error(line, format!("expected a number, got {value:?}")))
    }

    fn pipeline(
        &self,
        pipeline: &Pipeline,
        dot: &Value,
        line: usize,
    ) -> Result<Option<Value>, RenderError> {
        let mut piped: Option<Option<Value>> = None;
        for command in pipeline {
            let mut args: Vec<Option<Value>> =
                command.args.iter().map(|t| self.term(t, dot)).collect();
            if let Some(previous) = piped.take() {
                args.push(previous);
            }
            let result = match command.function.as_deref() {
                None => args.pop().flatten(),
                Some("quote") => {
                    let [value] = args.as_slice() else {
                        return Err(self.error(line, "quote takes one argument"));
                    };
                    // Go's %q and JSON agree for the printable text these values hold.
                    let text = value.as_ref().map(scalar).unwrap_or_default();
                    Some(Value::String(
                        serde_json::to_string(&text)
                            .map_err(|e| self.error(line, e.to_string()))?,
                    ))
                }
                Some("default") => {
                    let [fallback, value] = args.as_slice() else {
                        return Err(self.error(line, "default takes two arguments"));
                    };
                    match value {
                        Some(v) if truthy(v) => Some(v.clone()),
                        _ => fallback.clone(),
                    }
                }
                Some("toYaml") => {
                    let [value] = args.as_slice() else {
                        return Err(self.error(line, "toYaml takes one argument"));
                    };
                    let value = value.clone().unwrap_or(Value::Null);
                    Some(Value::String(
                        to_yaml(&value).map_err(|e| self.error(line, e))?,
                    ))
                }
                Some(f @ ("nindent" | "indent")) => {
                    let [by, value] = args.as_slice() else {
                        return Err(self.error(line, format!("{f} takes two arguments")));
                    };
                    let by = self.int(by.clone(), line)?;
                    let text = value.as_ref().map(scalar).unwrap_or_default();
                    let indented = indent(&text, by);
                    Some(Value::String(if f == "nindent" {
                        format!("\n{indented}")
                    } else {
                        indented
                    }))
                }
                Some(other) => return Err(self.error(line, format!("unknown function {other}"))),
            };
            piped = Some(result);
        }
        Ok(piped.flatten())
    }

    fn nodes(&self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), RenderError> {
        for node in nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Output(pipeline, line) => {
                    let value = self
                        .pipeline(pipeline, dot, *line)?
                        .ok_or_else(|| self.error(*line, format!("no value for {pipeline:?}")))?;
                    match &value {
                        Value::Array(_) | Value::Object(_) => {
                            return Err(
                                self.error(*line, "a list or map is printed only through toYaml")
                            );
                        }
                        Value::Null => {
                            return Err(self.error(*line, format!("null value for {pipeline:?}")));
                        }
                        _ => {}
                    }
                    out.push_str(&scalar(&value));
                }
                Node::If(pipeline, then, otherwise) => {
                    let value = self.pipeline(pipeline, dot, 0)?;
                    let branch = if value.as_ref().is_some_and(truthy) {
                        then
                    } else {
                        otherwise
                    };
                    self.nodes(branch, dot, out)?;
                }
                Node::With(pipeline, body) => {
                    if let Some(value) = self.pipeline(pipeline, dot, 0)?
                        && truthy(&value)
                    {
                        self.nodes(body, &value, out)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// How Go's template prints a scalar.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Renders one template. `context` holds `Values`, `Release` and `Chart`.
pub fn render(file: &str, template: &str, context: &Value) -> Result<String, RenderError> {
    let parser = Parser { file };
    let mut tokens = parser.lex(template)?.into_iter();
    let (nodes, ended) = parser.tree(&mut tokens, None)?;
    if let Some((is_else, line)) = ended {
        let what = if is_else { "else" } else { "end" };
        return Err(parser.error(line, format!("`{what}` without an open block")));
    }
    let mut out = String::new();
    Renderer { file }.nodes(&nodes, context, &mut out)?;
    Ok(out)
}

/// Why a chart did not render: a file that cannot be read or parsed, or a template.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML: {message}")]
    Yaml { path: String, message: String },
    #[error(transparent)]
    Render(#[from] RenderError),
}

fn read(path: &Path) -> Result<String, ChartError> {
    std::fs::read_to_string(path).map_err(|source| ChartError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn yaml_file(path: &Path) -> Result<Value, ChartError> {
    serde_saphyr::from_str(&read(path)?).map_err(|e| ChartError::Yaml {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Renders every template of the chart in `chart_dir` as `helm template` would with
/// `--set`-style `overrides` over values.yaml: `(templates/<file>, text)` in file-name
/// order (NOTES.txt included).
pub fn render_chart(
    chart_dir: &Path,
    overrides: &Value,
    release: &str,
    namespace: &str,
) -> Result<Vec<(String, String)>, ChartError> {
    let chart = yaml_file(&chart_dir.join("Chart.yaml"))?;
    let mut values = yaml_file(&chart_dir.join("values.yaml"))?;
    merge_values(&mut values, overrides);
    let context = json!({
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
    });
    let templates = chart_dir.join("templates");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&templates)
        .map_err(|source| ChartError::Read {
            path: templates.display().to_string(),
            source,
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = format!(
            "templates/{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        let rendered = render(&name, &read(&path)?, &context)?;
        out.push((name, rendered));
    }
    Ok(out)
}

/// Merges `overrides` into `base` as Helm merges `--set`/`-f` values: maps key by key,
/// anything else replaced.
pub fn merge_values(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                merge_values(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (base, overrides) => *base = overrides.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({"Values": {"name": "x", "n": 2, "empty": "", "on": true, "off": false,
                          "map": {"a": "b"}, "list": [{"k": "v"}]},
               "Release": {"Name": "rel", "Namespace": "ns"}})
    }

    fn ok(template: &str) -> String {
        render("t.yaml", template, &ctx()).unwrap()
    }

    fn fails(template: &str) -> String {
        render("t.yaml", template, &ctx()).unwrap_err().to_string()
    }

    #[test]
    fn substitutes_values_and_release() {
        assert_eq!(ok("a: {{ .Values.name }}-{{ .Release.Name }}"), "a: x-rel");
        assert_eq!(ok("n: {{ .Values.n }}"), "n: 2");
        assert_eq!(ok("q: {{ .Values.name | quote }}"), "q: \"x\"");
        assert_eq!(ok("q: {{ .Values.n | quote }}"), "q: \"2\"");
        assert_eq!(ok("d: {{ .Values.empty | default \"z\" }}"), "d: z");
        assert_eq!(ok("d: {{ .Values.name | default \"z\" }}"), "d: x");
    }

    #[test]
    fn trims_and_branches_like_go_templates() {
        assert_eq!(ok("a\n{{- if .Values.on }}\nb\n{{- end }}\nc"), "a\nb\nc");
        assert_eq!(
            ok("a\n{{- if .Values.off }}\nb\n{{- else }}\nx\n{{- end }}\nc"),
            "a\nx\nc"
        );
        assert_eq!(ok("a\n{{- if .Values.missing }}\nb\n{{- end }}\nc"), "a\nc");
        assert_eq!(ok("a {{- /* note */}} b"), "a b");
        assert_eq!(ok("a {{ .Values.name -}}   b"), "a xb");
    }

    #[test]
    fn with_sets_dot_and_to_yaml_indents() {
        assert_eq!(
            ok(
                "s:\n  {{- with .Values.map }}\n  m:\n    {{- toYaml . | nindent 4 }}\n  {{- end }}"
            ),
            "s:\n  m:\n    a: b"
        );
        assert_eq!(
            ok("s:\n  {{- with .Values.nothing }}\n  m: 1\n  {{- end }}"),
            "s:"
        );
        let list = ok("l:\n{{- toYaml .Values.list | nindent 2 }}");
        let parsed: Value = serde_saphyr::from_str(&list).unwrap();
        assert_eq!(parsed, json!({"l": [{"k": "v"}]}));
    }

    #[test]
    fn refuses_what_it_does_not_implement_naming_the_line() {
        assert!(fails("a\n{{ include \"x\" . }}").starts_with("t.yaml:2: "));
        assert!(fails("{{ range .Values.list }}{{ end }}").contains("not supported"));
        assert!(fails("{{ .Values.name | upper }}").contains("`upper` is not supported"));
        assert!(fails("x\n\n{{ .Values.typo }}").starts_with("t.yaml:3: no value"));
        assert!(fails("{{ .Values.map }}").contains("only through toYaml"));
        assert!(fails("{{ if .Values.on }}x").contains("never closed"));
        assert!(fails("x{{ end }}").contains("without an open block"));
        assert!(fails("{{ else if .Values.on }}").contains("not supported"));
    }

    #[test]
    fn braces_inside_strings_pass_through_as_in_go_templates() {
        assert_eq!(
            ok("d: {{`{{ $labels.site }}`}} on {{ .Values.name }}"),
            "d: {{ $labels.site }} on x"
        );
        assert_eq!(ok(r#"l: {{ "{{" }}site{{ "}}" }}"#), "l: {{site}}");
        assert_eq!(ok(r#"q: {{ "a}}b" | quote }}"#), r#"q: "a}}b""#);
        assert_eq!(ok("a {{- /* {{ not an action }} */}} b"), "a b");
        assert!(fails("{{ `open }}").contains("unclosed"));
    }

    #[test]
    fn merges_values_like_helm() {
        let mut base = json!({"a": {"b": 1, "c": 2}, "l": [1]});
        merge_values(&mut base, &json!({"a": {"c": 3}, "l": [2], "n": "x"}));
        assert_eq!(base, json!({"a": {"b": 1, "c": 3}, "l": [2], "n": "x"}));
    }
}
