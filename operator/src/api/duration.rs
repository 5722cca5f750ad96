//! Durations as users write them in manifests (`500ms`, `5s`, `1m30s`, `1h`), and the
//! one grammar for them: the chaos runner's scenarios use [`parse`] and [`format`] too
//! (they also admit `0s`, which a manifest's [`Duration`] refuses).
//!
//! Kubernetes has no duration type of its own in CRDs; Go-style strings are what SREs
//! expect (`kubectl explain` shows them as strings with a pattern). The schema pattern
//! only admits positive durations so that the API server rejects `0s` as well.

use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One or more `<digits><unit>` terms of at most seven digits, at least one of them
/// non-zero. The digit bound keeps every value the pattern admits far from overflow in
/// any parser (ours, CEL's, Go's); [`MAX_DURATION`] bounds the value itself.
pub const POSITIVE_DURATION_PATTERN: &str =
    r"^([0-9]{1,7}(ms|s|m|h))*0*[1-9][0-9]{0,6}(ms|s|m|h)([0-9]{1,7}(ms|s|m|h))*$";

/// The longest duration a manifest may give (ten years): longer values are typos, and
/// an unbounded one once made a group unreadable to the operator (issue 12).
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(87_600 * 3_600);
/// [`MAX_DURATION`] as written in the schema's CEL rule and in messages.
pub const MAX_DURATION_TEXT: &str = "87600h";
/// The longest duration string the schema admits.
pub const MAX_DURATION_LENGTH: u64 = 32;

/// A positive duration, written like `5s`, `1m30s` or `250ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration {0:?} is empty; write it like 5s, 1m30s or 250ms")]
    Empty(String),
    #[error(
        "duration {input:?}: expected digits at character {position}; write it like 5s, 1m30s or 250ms"
    )]
    ExpectedDigits { input: String, position: usize },
    #[error(
        "duration {input:?}: unknown or missing unit at character {position}; use ms, s, m or h"
    )]
    BadUnit { input: String, position: usize },
    #[error("duration {0:?} is too large")]
    Overflow(String),
    #[error("duration {0:?} must be greater than zero")]
    NotPositive(String),
    #[error("duration {0:?} is longer than the maximum of 87600h (ten years)")]
    OverMaximum(String),
    #[error("duration {0:?} is longer than 32 characters")]
    TooLong(String),
}

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    pub const fn as_std(&self) -> std::time::Duration {
        self.0
    }

    pub fn as_millis(&self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

/// Parses one or more `<digits><unit>` terms (units `ms`, `s`, `m`, `h`, summed) into a
/// duration that may be zero; every error names the input.
pub fn parse(input: &str) -> Result<std::time::Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty(input.to_string()));
    }
    let bytes = input.as_bytes();
    let mut total_ms: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digits_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits_start {
            return Err(DurationError::ExpectedDigits {
                input: input.to_string(),
                position: i + 1,
            });
        }
        let value: u64 = input[digits_start..i]
            .parse()
            .map_err(|_| DurationError::Overflow(input.to_string()))?;
        let unit_ms: u64 = if input[i..].starts_with("ms") {
            i += 2;
            1
        } else if input[i..].starts_with('s') {
            i += 1;
            1_000
        } else if input[i..].starts_with('m') {
            i += 1;
            60_000
        } else if input[i..].starts_with('h') {
            i += 1;
            3_600_000
        } else {
            return Err(DurationError::BadUnit {
                input: input.to_string(),
                position: i + 1,
            });
        };
        total_ms = value
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| DurationError::Overflow(input.to_string()))?;
    }
    Ok(std::time::Duration::from_millis(total_ms))
}

/// The shortest exact spelling [`parse`] reads back: `90s` prints as `1m30s`, `1500ms`
/// as `1500ms`, zero as `0s`.
pub fn format(duration: std::time::Duration) -> String {
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if !ms.is_multiple_of(1_000) {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1_000;
    let hours = secs / 3_600;
    secs %= 3_600;
    let minutes = secs / 60;
    secs %= 60;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if secs > 0 || (hours == 0 && minutes == 0) {
        out.push_str(&format!("{secs}s"));
    }
    out
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.len() > MAX_DURATION_LENGTH as usize {
            return Err(DurationError::TooLong(input.to_string()));
        }
        let duration = parse(input)?;
        if duration.is_zero() {
            return Err(DurationError::NotPositive(input.to_string()));
        }
        if duration > MAX_DURATION {
            return Err(DurationError::OverMaximum(input.to_string()));
        }
        Ok(Self(duration))
    }
}

impl fmt::Display for Duration {
    /// Prints the shortest exact form: `90s` prints as `1m30s`, `1500ms` as `1500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": POSITIVE_DURATION_PATTERN,
            "maxLength": MAX_DURATION_LENGTH,
            "x-kubernetes-validations": [{
                "rule": format!("duration(self) <= duration('{MAX_DURATION_TEXT}')"),
                "message": format!("must be at most {MAX_DURATION_TEXT} (ten years)")
            }],
            "description": "A positive duration such as 500ms, 5s, 1m30s or 1h (at most 87600h)."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        let cases = [
            ("500ms", 500),
            ("5s", 5_000),
            ("90s", 90_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1m30s", 90_000),
            ("0m5s", 5_000),
        ];
        for (text, ms) in cases {
            assert_eq!(text.parse::<Duration>().unwrap().as_millis(), ms, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_positive_duration() {
        let cases = [
            ("", "empty"),
            ("0s", "greater than zero"),
            ("0m0s", "greater than zero"),
            ("5", "unit"),
            ("5d", "unit"),
            ("s", "digits"),
            ("-5s", "digits"),
            ("1.5s", "unit"),
            ("99999999999999999999h", "too large"),
            ("18446744073709551615h", "too large"),
            ("87601h", "maximum of 87600h"),
            ("87600h1ms", "maximum of 87600h"),
            ("1s1s1s1s1s1s1s1s1s1s1s1s1s1s1s1s1s", "32 characters"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<Duration>().unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} -> {err}");
        }
    }

    #[test]
    fn the_schema_pattern_agrees_with_the_parser() {
        let pattern = regex::Regex::new(POSITIVE_DURATION_PATTERN).unwrap();
        for text in ["500ms", "5s", "1h30m", "0m5s", "1m0s"] {
            assert!(pattern.is_match(text), "{text}");
            assert!(text.parse::<Duration>().is_ok(), "{text}");
        }
        assert!("87600h".parse::<Duration>().is_ok());
        for text in [
            "0s",
            "0m0s",
            "",
            "5",
            "5d",
            "1.5s",
            "s",
            "18446744073709551615h",
            "99999999h",
        ] {
            assert!(!pattern.is_match(text), "{text}");
            assert!(text.parse::<Duration>().is_err(), "{text}");
        }
    }

    #[test]
    fn prints_the_shortest_exact_form_and_round_trips() {
        for (ms, text) in [
            (500, "500ms"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
            (1_500, "1500ms"),
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(d.to_string(), text);
            assert_eq!(text.parse::<Duration>().unwrap(), d);
        }
    }

    #[test]
    fn the_grammar_admits_zero_where_a_manifest_duration_does_not() {
        assert_eq!(parse("0s"), Ok(std::time::Duration::ZERO));
        assert_eq!(parse("0m0s"), Ok(std::time::Duration::ZERO));
        assert_eq!(format(std::time::Duration::ZERO), "0s");
        assert!(matches!(
            "0s".parse::<Duration>(),
            Err(DurationError::NotPositive(_))
        ));
        let err = parse("5min").unwrap_err().to_string();
        assert!(err.contains("\"5min\""), "{err}");
    }
}
