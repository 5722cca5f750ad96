//! A small PromQL evaluator for exactly the subset the chart's alert rules use:
//! selectors with `=`/`!=` matchers, a range and `offset`; `rate`, `increase` and
//! `absent`; `time()`; `sum`/`max`/`min`/`count` with `by (...)`; comparisons; `/` and
//! `-`; and the set
//! operators `and`, `unless`, `or` with `on (...)`. Anything else is a parse error that
//! names it, so a rule the runner cannot read is never silently skipped. Evaluation
//! reads the runner's scrapes (see [`Timeline`]); the semantics it simplifies are
//! written at each place.

use std::collections::{BTreeMap, BTreeSet};

/// Labels of one series; `__name__` holds the metric name of a selected series.
pub type Labels = BTreeMap<String, String>;

const NAME: &str = "__name__";
/// How far back an instant selector looks for a sample (Prometheus's default).
const LOOKBACK_MS: u64 = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromqlError {
    #[error("PromQL {expr:?}: at byte {at}: {reason}")]
    Parse {
        expr: String,
        at: usize,
        reason: String,
    },
    #[error("PromQL: {0}")]
    Eval(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub label: String,
    pub equal: bool,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Rate,
    Increase,
    Absent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Max,
    Min,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Unless,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Div,
    Sub,
}

impl BinOp {
    fn compares(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            BinOp::Eq => a == b,
            BinOp::Ne => a != b,
            BinOp::Gt => a > b,
            BinOp::Lt => a < b,
            BinOp::Ge => a >= b,
            BinOp::Le => a <= b,
            _ => false,
        }
    }

    /// The value of an arithmetic operator; `None` for the others.
    fn arithmetic(self, a: f64, b: f64) -> Option<f64> {
        match self {
            BinOp::Div => Some(a / b),
            BinOp::Sub => Some(a - b),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Selector {
        name: String,
        matchers: Vec<Matcher>,
        range_ms: Option<u64>,
        offset_ms: u64,
    },
    Call {
        func: Func,
        arg: Box<Expr>,
    },
    /// `time()`: the evaluation instant in Unix seconds.
    Time,
    Aggregate {
        op: AggOp,
        by: Vec<String>,
        arg: Box<Expr>,
    },
    Binary {
        op: BinOp,
        on: Option<Vec<String>>,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
}

// ---------------------------------------------------------------------------------------
// Lexer and parser
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Number(f64),
    Duration(u64),
    Str(String),
    Sym(&'static str),
}

const SYMBOLS: [&str; 15] = [
    "==", "!=", ">=", "<=", ">", "<", "=", "/", "-", "(", ")", "{", "}", "[", "]",
];

fn lex(text: &str) -> Result<Vec<(usize, Token)>, (usize, String)> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c == b',' {
            tokens.push((start, Token::Sym(",")));
            i += 1;
        } else if c.is_ascii_digit() || c == b'.' {
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let number = &text[start..i];
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &text[unit_start..i];
            if unit.is_empty() {
                let value = number
                    .parse::<f64>()
                    .map_err(|_| (start, format!("bad number {number:?}")))?;
                tokens.push((start, Token::Number(value)));
            } else {
                let n: u64 = number
                    .parse()
                    .map_err(|_| (start, format!("bad duration {:?}", &text[start..i])))?;
                let unit_ms = match unit {
                    "ms" => 1,
                    "s" => 1_000,
                    "m" => 60_000,
                    "h" => 3_600_000,
                    "d" => 86_400_000,
                    _ => return Err((unit_start, format!("unknown duration unit {unit:?}"))),
                };
                tokens.push((start, Token::Duration(n.saturating_mul(unit_ms))));
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
            {
                i += 1;
            }
            tokens.push((start, Token::Ident(text[start..i].to_owned())));
        } else if c == b'"' {
            i += 1;
            let mut value = String::new();
            loop {
                match bytes.get(i) {
                    None => return Err((start, "unterminated string".into())),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        let escaped = text[i + 1..].chars().next();
                        match escaped {
                            Some(e) => {
                                value.push(e);
                                i += 1 + e.len_utf8();
                            }
                            None => return Err((i, "unterminated escape".into())),
                        }
                    }
                    Some(_) => {
                        let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
                        value.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            i += 1;
            tokens.push((start, Token::Str(value)));
        } else {
            let Some(symbol) = SYMBOLS.iter().find(|s| text[i..].starts_with(**s)) else {
                return Err((start, format!("unexpected {:?}", char::from(c))));
            };
            tokens.push((start, Token::Sym(symbol)));
            i += symbol.len();
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(usize, Token)>,
    pos: usize,
}

/// Parses one expression of the subset.
pub fn parse(text: &str) -> Result<Expr, PromqlError> {
    let tokens = lex(text).map_err(|(at, reason)| PromqlError::Parse {
        expr: text.to_owned(),
        at,
        reason,
    })?;
    let mut parser = Parser {
        text,
        tokens,
        pos: 0,
    };
    let expr = parser.or()?;
    if parser.pos < parser.tokens.len() {
        return Err(parser.error("unexpected trailing input"));
    }
    Ok(expr)
}

impl Parser<'_> {
    fn error(&self, reason: impl Into<String>) -> PromqlError {
        let at = self
            .tokens
            .get(self.pos)
            .map_or(self.text.len(), |(at, _)| *at);
        let found = self
            .tokens
            .get(self.pos)
            .map_or("the end".to_owned(), |(_, t)| format!("{t:?}"));
        PromqlError::Parse {
            expr: self.text.to_owned(),
            at,
            reason: format!("{} (found {found})", reason.into()),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        token
    }

    fn eat_sym(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Some(Token::Sym(s)) if *s == symbol) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, symbol: &str) -> Result<(), PromqlError> {
        if self.eat_sym(symbol) {
            Ok(())
        } else {
            Err(self.error(format!("expected {symbol:?}")))
        }
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn label_list(&mut self) -> Result<Vec<String>, PromqlError> {
        self.expect_sym("(")?;
        let mut labels = Vec::new();
        if self.eat_sym(")") {
            return Ok(labels);
        }
        loop {
            match self.next() {
                Some(Token::Ident(label)) => labels.push(label),
                _ => {
                    self.pos -= 1;
                    return Err(self.error("expected a label name"));
                }
            }
            if self.eat_sym(")") {
                return Ok(labels);
            }
            self.expect_sym(",")?;
        }
    }

    fn matching(&mut self) -> Result<Option<Vec<String>>, PromqlError> {
        if self.eat_keyword("on") {
            return self.label_list().map(Some);
        }
        if matches!(self.peek(), Some(Token::Ident(w)) if w == "ignoring" || w == "group_left" || w == "group_right" || w == "bool")
        {
            return Err(self.error("not in the supported PromQL subset"));
        }
        Ok(None)
    }

    fn binary(
        &mut self,
        ops: &[(&str, BinOp)],
        operand: fn(&mut Self) -> Result<Expr, PromqlError>,
    ) -> Result<Expr, PromqlError> {
        let mut lhs = operand(self)?;
        'outer: loop {
            for (word, op) in ops {
                let matched = match self.peek() {
                    Some(Token::Ident(w)) => w == word,
                    Some(Token::Sym(s)) => s == word,
                    _ => false,
                };
                if matched {
                    self.pos += 1;
                    let on = self.matching()?;
                    let rhs = operand(self)?;
                    lhs = Expr::Binary {
                        op: *op,
                        on,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    };
                    continue 'outer;
                }
            }
            return Ok(lhs);
        }
    }

    fn or(&mut self) -> Result<Expr, PromqlError> {
        self.binary(&[("or", BinOp::Or)], Self::and)
    }

    fn and(&mut self) -> Result<Expr, PromqlError> {
        self.binary(
            &[("and", BinOp::And), ("unless", BinOp::Unless)],
            Self::comparison,
        )
    }

    fn comparison(&mut self) -> Result<Expr, PromqlError> {
        self.binary(
            &[
                ("==", BinOp::Eq),
                ("!=", BinOp::Ne),
                (">=", BinOp::Ge),
                ("<=", BinOp::Le),
                (">", BinOp::Gt),
                ("<", BinOp::Lt),
            ],
            Self::subtraction,
        )
    }

    fn subtraction(&mut self) -> Result<Expr, PromqlError> {
        self.binary(&[("-", BinOp::Sub)], Self::division)
    }

    fn division(&mut self) -> Result<Expr, PromqlError> {
        self.binary(&[("/", BinOp::Div)], Self::primary)
    }

    fn primary(&mut self) -> Result<Expr, PromqlError> {
        match self.next() {
            Some(Token::Number(n)) => Ok(Expr::Number(n)),
            Some(Token::Sym("(")) => {
                let inner = self.or()?;
                self.expect_sym(")")?;
                Ok(inner)
            }
            Some(Token::Ident(word)) => {
                let aggregate = match word.as_str() {
                    "sum" => Some(AggOp::Sum),
                    "max" => Some(AggOp::Max),
                    "min" => Some(AggOp::Min),
                    "count" => Some(AggOp::Count),
                    _ => None,
                };
                if let Some(op) = aggregate {
                    let mut by = Vec::new();
                    if self.eat_keyword("by") {
                        by = self.label_list()?;
                    }
                    self.expect_sym("(")?;
                    let arg = self.or()?;
                    self.expect_sym(")")?;
                    if by.is_empty() && self.eat_keyword("by") {
                        by = self.label_list()?;
                    }
                    return Ok(Expr::Aggregate {
                        op,
                        by,
                        arg: Box::new(arg),
                    });
                }
                if word == "time" && self.eat_sym("(") {
                    self.expect_sym(")")?;
                    return Ok(Expr::Time);
                }
                let func = match word.as_str() {
                    "rate" => Some(Func::Rate),
                    "increase" => Some(Func::Increase),
                    "absent" => Some(Func::Absent),
                    _ => None,
                };
                if let Some(func) = func {
                    self.expect_sym("(")?;
                    let arg = self.or()?;
                    self.expect_sym(")")?;
                    let ranged = matches!(
                        arg,
                        Expr::Selector {
                            range_ms: Some(_),
                            ..
                        }
                    );
                    if (func == Func::Absent) == ranged {
                        self.pos -= 1;
                        return Err(self.error(if ranged {
                            "absent() takes an instant selector"
                        } else {
                            "rate() and increase() take a range selector"
                        }));
                    }
                    return Ok(Expr::Call {
                        func,
                        arg: Box::new(arg),
                    });
                }
                if self.eat_sym("(") {
                    self.pos -= 2;
                    return Err(self.error(format!(
                        "function {word}() is not in the supported PromQL subset"
                    )));
                }
                self.selector(word)
            }
            _ => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.error("expected a number, a selector, a function or \"(\""))
            }
        }
    }

    fn selector(&mut self, name: String) -> Result<Expr, PromqlError> {
        let mut matchers = Vec::new();
        if self.eat_sym("{") {
            while !self.eat_sym("}") {
                let Some(Token::Ident(label)) = self.next() else {
                    self.pos -= 1;
                    return Err(self.error("expected a label name"));
                };
                let equal = if self.eat_sym("=") {
                    true
                } else if self.eat_sym("!=") {
                    false
                } else {
                    return Err(self.error("expected = or != (regex matchers are not supported)"));
                };
                let Some(Token::Str(value)) = self.next() else {
                    self.pos -= 1;
                    return Err(self.error("expected a quoted label value"));
                };
                matchers.push(Matcher {
                    label,
                    equal,
                    value,
                });
                if !self.eat_sym(",") && !matches!(self.peek(), Some(Token::Sym("}"))) {
                    return Err(self.error("expected \",\" or \"}\""));
                }
            }
        }
        let mut range_ms = None;
        if self.eat_sym("[") {
            let Some(Token::Duration(ms)) = self.next() else {
                self.pos -= 1;
                return Err(self.error("expected a duration"));
            };
            self.expect_sym("]")?;
            range_ms = Some(ms);
        }
        let mut offset_ms = 0;
        if self.eat_keyword("offset") {
            let Some(Token::Duration(ms)) = self.next() else {
                self.pos -= 1;
                return Err(self.error("expected a duration after offset"));
            };
            offset_ms = ms;
        }
        Ok(Expr::Selector {
            name,
            matchers,
            range_ms,
            offset_ms,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// One scrape of /metrics: when (ms since the run started) and every sample, each with
/// its metric name in `__name__`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    pub at_ms: u64,
    pub samples: Vec<(Labels, f64)>,
}

/// The scrapes of a run, oldest first: what a Prometheus scraping the operator would
/// hold. A series missing from a scrape is stale from then on (as Prometheus marks a
/// series that disappears from its target).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub scrapes: Vec<Scrape>,
    /// The Unix time, in ms, of `at_ms == 0`: what `time()` counts from. The cluster's
    /// wall clock at the start of the run (simulated time in the simulation).
    pub unix_ms_at_start: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
}

fn matches(labels: &Labels, name: &str, matchers: &[Matcher]) -> bool {
    labels.get(NAME).map(String::as_str) == Some(name)
        && matchers.iter().all(|m| {
            let actual = labels.get(&m.label).map_or("", String::as_str);
            (actual == m.value) == m.equal
        })
}

fn without_name(labels: &Labels) -> Labels {
    let mut labels = labels.clone();
    labels.remove(NAME);
    labels
}

fn signature(labels: &Labels, on: Option<&Vec<String>>) -> Labels {
    match on {
        Some(on) => labels
            .iter()
            .filter(|(k, _)| on.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => without_name(labels),
    }
}

impl Timeline {
    /// The newest scrape at or before `at_ms`, if within the lookback.
    fn scrape_at(&self, at_ms: u64) -> Option<&Scrape> {
        self.scrapes
            .iter()
            .rev()
            .find(|s| s.at_ms <= at_ms)
            .filter(|s| at_ms - s.at_ms <= LOOKBACK_MS)
    }

    /// Evaluates `expr` at `at_ms`.
    pub fn eval(&self, expr: &Expr, at_ms: u64) -> Result<Value, PromqlError> {
        Ok(match expr {
            Expr::Number(n) => Value::Scalar(*n),
            Expr::Selector {
                name,
                matchers,
                range_ms: None,
                offset_ms,
            } => {
                // Before the first scrape (an offset reaching back before the run) the
                // Prometheus had no data: an empty vector.
                let samples = at_ms
                    .checked_sub(*offset_ms)
                    .and_then(|t| self.scrape_at(t))
                    .map(|s| {
                        s.samples
                            .iter()
                            .filter(|(labels, _)| matches(labels, name, matchers))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                Value::Vector(samples)
            }
            Expr::Selector { name, .. } => {
                return Err(PromqlError::Eval(format!(
                    "range selector {name}[...] outside rate() or increase()"
                )));
            }
            Expr::Call { func, arg } => self.call(*func, arg, at_ms)?,
            Expr::Time => {
                let at = i64::try_from(at_ms).unwrap_or(i64::MAX);
                // Unix milliseconds to seconds; f64 holds them exactly for millennia.
                #[allow(clippy::cast_precision_loss)]
                let seconds = self.unix_ms_at_start.saturating_add(at) as f64 / 1000.0;
                Value::Scalar(seconds)
            }
            Expr::Aggregate { op, by, arg } => {
                let Value::Vector(samples) = self.eval(arg, at_ms)? else {
                    return Err(PromqlError::Eval("aggregation over a number".into()));
                };
                let mut groups: BTreeMap<Labels, (f64, usize)> = BTreeMap::new();
                for (labels, value) in samples {
                    let key = signature(&labels, Some(by));
                    let entry = groups.entry(key).or_insert((value, 0));
                    entry.0 = match (op, entry.1) {
                        (_, 0) => value,
                        (AggOp::Sum, _) => entry.0 + value,
                        (AggOp::Max, _) => entry.0.max(value),
                        (AggOp::Min, _) => entry.0.min(value),
                        (AggOp::Count, _) => 0.0,
                    };
                    entry.1 += 1;
                }
                Value::Vector(
                    groups
                        .into_iter()
                        .map(|(labels, (value, count))| {
                            let value = if *op == AggOp::Count {
                                count as f64
                            } else {
                                value
                            };
                            (labels, value)
                        })
                        .collect(),
                )
            }
            Expr::Binary { op, on, lhs, rhs } => {
                let lhs = self.eval(lhs, at_ms)?;
                let rhs = self.eval(rhs, at_ms)?;
                binary(*op, on.as_ref(), lhs, rhs)?
            }
        })
    }

    fn call(&self, func: Func, arg: &Expr, at_ms: u64) -> Result<Value, PromqlError> {
        let Expr::Selector {
            name,
            matchers,
            range_ms,
            offset_ms,
        } = arg
        else {
            return Err(PromqlError::Eval(format!(
                "{func:?} takes a selector in the supported subset"
            )));
        };
        match (func, range_ms) {
            (Func::Absent, None) => {
                let Value::Vector(found) = self.eval(arg, at_ms)? else {
                    return Ok(Value::Vector(Vec::new()));
                };
                if !found.is_empty() {
                    return Ok(Value::Vector(Vec::new()));
                }
                // As Prometheus: the labels of the selector's equality matchers.
                let labels = matchers
                    .iter()
                    .filter(|m| m.equal)
                    .map(|m| (m.label.clone(), m.value.clone()))
                    .collect();
                Ok(Value::Vector(vec![(labels, 1.0)]))
            }
            (Func::Rate | Func::Increase, Some(range)) => {
                let Some(end) = at_ms.checked_sub(*offset_ms) else {
                    return Ok(Value::Vector(Vec::new()));
                };
                let start = end.saturating_sub(*range);
                let mut series: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
                for scrape in &self.scrapes {
                    if (scrape.at_ms <= start && *range <= end) || scrape.at_ms > end {
                        continue;
                    }
                    for (labels, value) in &scrape.samples {
                        if matches(labels, name, matchers) {
                            series.entry(without_name(labels)).or_default().push(*value);
                        }
                    }
                }
                // The increase between the first and the last sample in the window,
                // with counter resets counted as a restart from 0; not extrapolated to
                // the window's edges as Prometheus does, which changes the size of an
                // increase but never whether there was one.
                let out = series
                    .into_iter()
                    .filter(|(_, values)| values.len() >= 2)
                    .map(|(labels, values)| {
                        let increase: f64 = values
                            .windows(2)
                            .map(|w| if w[1] >= w[0] { w[1] - w[0] } else { w[1] })
                            .sum();
                        let value = if func == Func::Rate {
                            increase / (*range as f64 / 1000.0)
                        } else {
                            increase
                        };
                        (labels, value)
                    })
                    .collect();
                Ok(Value::Vector(out))
            }
            _ => Err(PromqlError::Eval(format!(
                "{func:?} of {name} with the wrong kind of selector"
            ))),
        }
    }
}

fn binary(
    op: BinOp,
    on: Option<&Vec<String>>,
    lhs: Value,
    rhs: Value,
) -> Result<Value, PromqlError> {
    Ok(match (lhs, rhs) {
        (Value::Scalar(a), Value::Scalar(b)) => match op.arithmetic(a, b) {
            Some(value) => Value::Scalar(value),
            None if op.compares() => Value::Scalar(f64::from(u8::from(op.holds(a, b)))),
            None => {
                return Err(PromqlError::Eval(format!("{op:?} between two numbers")));
            }
        },
        (Value::Vector(v), Value::Scalar(b)) => {
            if op.arithmetic(0.0, 0.0).is_some() {
                Value::Vector(
                    v.into_iter()
                        .filter_map(|(l, a)| Some((without_name(&l), op.arithmetic(a, b)?)))
                        .collect(),
                )
            } else if op.compares() {
                Value::Vector(v.into_iter().filter(|(_, a)| op.holds(*a, b)).collect())
            } else {
                return Err(PromqlError::Eval(format!("{op:?} with a number")));
            }
        }
        (Value::Scalar(a), Value::Vector(v)) => {
            if op.arithmetic(0.0, 0.0).is_some() {
                Value::Vector(
                    v.into_iter()
                        .filter_map(|(l, b)| Some((without_name(&l), op.arithmetic(a, b)?)))
                        .collect(),
                )
            } else if op.compares() {
                Value::Vector(v.into_iter().filter(|(_, b)| op.holds(a, *b)).collect())
            } else {
                return Err(PromqlError::Eval(format!("{op:?} with a number")));
            }
        }
        (Value::Vector(l), Value::Vector(r)) => match op {
            BinOp::And | BinOp::Unless => {
                let right: BTreeSet<Labels> = r.iter().map(|(s, _)| signature(s, on)).collect();
                let keep = op == BinOp::And;
                Value::Vector(
                    l.into_iter()
                        .filter(|(s, _)| right.contains(&signature(s, on)) == keep)
                        .collect(),
                )
            }
            BinOp::Or => {
                let left: BTreeSet<Labels> = l.iter().map(|(s, _)| signature(s, on)).collect();
                let mut out = l;
                out.extend(
                    r.into_iter()
                        .filter(|(s, _)| !left.contains(&signature(s, on))),
                );
                Value::Vector(out)
            }
            _ => {
                // One-to-one matching; a duplicate signature on either side is the
                // many-to-many error Prometheus reports.
                let mut right: BTreeMap<Labels, f64> = BTreeMap::new();
                for (labels, value) in r {
                    if right.insert(signature(&labels, on), value).is_some() {
                        return Err(PromqlError::Eval(format!(
                            "{op:?}: several series on the right for {labels:?}"
                        )));
                    }
                }
                let mut seen = BTreeSet::new();
                let mut out = Vec::new();
                for (labels, a) in l {
                    let sig = signature(&labels, on);
                    if !seen.insert(sig.clone()) {
                        return Err(PromqlError::Eval(format!(
                            "{op:?}: several series on the left for {labels:?}"
                        )));
                    }
                    let Some(b) = right.get(&sig) else { continue };
                    if let Some(value) = op.arithmetic(a, *b) {
                        let result_labels = if on.is_some() {
                            sig
                        } else {
                            without_name(&labels)
                        };
                        out.push((result_labels, value));
                    } else if op.holds(a, *b) {
                        out.push((labels, a));
                    }
                }
                Value::Vector(out)
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, labels: &[(&str, &str)]) -> Labels {
        let mut l: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert(NAME.into(), name.into());
        l
    }

    /// A series written by hand: name, labels, one value per minute (NaN: absent).
    type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [f64]);

    /// One scrape a minute of `rows`.
    fn timeline(rows: &[Row<'_>]) -> Timeline {
        let len = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
        Timeline {
            unix_ms_at_start: 0,
            scrapes: (0..len)
                .map(|i| Scrape {
                    at_ms: i as u64 * 60_000,
                    samples: rows
                        .iter()
                        .filter_map(|(name, labels, values)| {
                            let v = *values.get(i)?;
                            (!v.is_nan()).then(|| (series(name, labels), v))
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn vector(t: &Timeline, expr: &str, at_min: u64) -> Vec<(Labels, f64)> {
        match t.eval(&parse(expr).unwrap(), at_min * 60_000).unwrap() {
            Value::Vector(v) => v,
            Value::Scalar(s) => panic!("scalar {s}"),
        }
    }

    fn eval_scalar(t: &Timeline, expr: &str) -> f64 {
        match t.eval(&parse(expr).unwrap(), 0).unwrap() {
            Value::Scalar(s) => s,
            Value::Vector(v) => panic!("vector {v:?}"),
        }
    }

    #[test]
    fn selectors_matchers_offset_and_staleness() {
        let t = timeline(&[
            ("up", &[("site", "iad")], &[1.0, 1.0, f64::NAN]),
            ("up", &[("site", "pdx")], &[0.0, 1.0, 1.0]),
        ]);
        assert_eq!(vector(&t, "up", 1).len(), 2);
        assert_eq!(vector(&t, r#"up{site!="iad"}"#, 1).len(), 1);
        // Gone from the newest scrape: stale at once.
        assert_eq!(vector(&t, r#"up{site="iad"}"#, 2).len(), 0);
        assert_eq!(vector(&t, "up offset 1m", 2).len(), 2);
        // Before the first scrape there is nothing.
        assert!(vector(&t, "up offset 5m", 2).is_empty());
        assert_eq!(vector(&t, "up == 1", 0).len(), 1);
    }

    #[test]
    fn aggregations_set_operators_and_division() {
        let t = timeline(&[
            ("lead", &[("instance", "a")], &[1.0]),
            ("lead", &[("instance", "b")], &[0.0]),
            ("g", &[("instance", "a"), ("site", "iad")], &[1.0]),
            ("g", &[("instance", "b"), ("site", "iad")], &[5.0]),
            ("g", &[("instance", "a"), ("site", "pdx")], &[3.0]),
        ]);
        let led = vector(&t, "max by (site) (g and on (instance) (lead == 1))", 0);
        let site = |s: &str| without_name(&series("g", &[("site", s)]));
        assert_eq!(led, vec![(site("iad"), 1.0), (site("pdx"), 3.0)]);
        assert_eq!(vector(&t, "sum(g)", 0)[0].1, 9.0);
        assert_eq!(vector(&t, "count(lead)", 0)[0].1, 2.0);
        assert!(vector(&t, "g unless on (instance) (lead == 1)", 0).len() == 1);
        assert_eq!(vector(&t, "g or lead", 0).len(), 5);
        let ratio = vector(&t, "sum by (site) (g) / sum by (site) (g)", 0);
        assert!(ratio.iter().all(|(_, v)| *v == 1.0));
        assert!(vector(&t, "lead and on () count(g offset 5m)", 0).is_empty());
        assert_eq!(
            vector(&t, "absent(missing{a=\"b\"})", 0)[0]
                .0
                .get("a")
                .unwrap(),
            "b"
        );
        assert!(vector(&t, "absent(lead)", 0).is_empty());
    }

    #[test]
    fn time_and_subtraction_judge_an_age_against_a_limit() {
        let mut t = timeline(&[
            ("last", &[("p", "old")], &[100.0, 100.0, 100.0]),
            ("last", &[("p", "new")], &[100.0, 160.0, 220.0]),
            ("limit", &[("p", "old")], &[90.0, 90.0, 90.0]),
            ("limit", &[("p", "new")], &[90.0, 90.0, 90.0]),
        ]);
        t.unix_ms_at_start = 100_000;
        // At minute 2 the clock reads 100 + 120 s: "old" is 120 s old, "new" 0 s.
        let over = vector(&t, "time() - last > limit", 2);
        assert_eq!(
            over,
            vec![(without_name(&series("last", &[("p", "old")])), 120.0)]
        );
        // At minute 0 both are 0 s old.
        assert!(vector(&t, "time() - last > limit", 0).is_empty());
        // Left-associative: 10 - 3 - 2 is 5, and binds tighter than a comparison.
        assert_eq!(eval_scalar(&t, "10 - 3 - 2"), 5.0);
        assert_eq!(eval_scalar(&t, "10 - 6 / 2"), 7.0);
        assert_eq!(eval_scalar(&t, "time()"), 100.0);
    }

    #[test]
    fn increase_and_rate_over_a_window_count_resets() {
        let t = timeline(&[("c_total", &[], &[0.0, 0.0, 1.0, 1.0, 0.0, 2.0])]);
        assert!(vector(&t, "increase(c_total[1m]) > 0", 1).is_empty());
        assert_eq!(vector(&t, "increase(c_total[2m])", 2)[0].1, 1.0);
        // 1 -> 0 is a restart: 0 + 2 after it.
        assert_eq!(vector(&t, "increase(c_total[3m])", 5)[0].1, 2.0);
        assert_eq!(vector(&t, "increase(c_total[30m])", 5)[0].1, 3.0);
        assert_eq!(vector(&t, "rate(c_total[2m])", 2)[0].1, 1.0 / 120.0);
    }

    #[test]
    fn what_the_subset_lacks_is_a_parse_error_naming_it() {
        for (expr, named) in [
            ("histogram_quantile(0.9, x)", "histogram_quantile"),
            (r#"x{a=~"b"}"#, "'~'"),
            ("x and ignoring (a) y", "subset"),
            ("rate(x)", "range selector"),
            ("x[5m]", ""),
            ("sum(x", "\")\""),
        ] {
            match parse(expr) {
                Err(e) => assert!(e.to_string().contains(named), "{expr}: {e}"),
                Ok(parsed) => {
                    let t = Timeline::default();
                    assert!(t.eval(&parsed, 0).is_err(), "{expr} evaluated");
                }
            }
        }
    }
}
