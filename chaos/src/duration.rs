//! Scenario durations: `90s`, `5m`, `1h30m`, `250ms`. One parser for every duration a
//! scenario can carry (timeout, within, hold, during, wait, workload limits), so that
//! they all accept and reject the same spellings.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written in a scenario. Displays in the same compact form it is parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ScenarioDuration(pub Duration);

impl ScenarioDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub const fn as_duration(self) -> Duration {
        self.0
    }
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad duration {input:?}: {reason} (write it like 250ms, 90s, 5m or 1h30m)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses `<number><unit>` groups with units `h`, `m`, `s`, `ms`, largest first, each at
/// most once (`1h30m`, `2m500ms`). A bare number is refused: `90` could mean seconds or
/// milliseconds, and a scenario should not make the reader guess.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(err("empty"));
    }
    let bytes = text.as_bytes();
    let mut total = Duration::ZERO;
    let mut pos = 0;
    // Rank of the previous unit: units must strictly decrease (h > m > s > ms).
    let mut last_rank = u8::MAX;
    while pos < bytes.len() {
        let digits_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == digits_start {
            return Err(err("expected a number"));
        }
        let number: u64 = text[digits_start..pos]
            .parse()
            .map_err(|_| err("number too large"))?;
        if bytes.get(pos) == Some(&b'.') {
            return Err(err("no fractions (write 1s500ms, not 1.5s)"));
        }
        let unit_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_alphabetic() {
            pos += 1;
        }
        let (rank, unit) = match &text[unit_start..pos] {
            "h" => (3, Duration::from_secs(3600)),
            "m" => (2, Duration::from_secs(60)),
            "s" => (1, Duration::from_secs(1)),
            "ms" => (0, Duration::from_millis(1)),
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        if rank >= last_rank {
            return Err(err("units must go from largest to smallest, each once"));
        }
        last_rank = rank;
        let part = u32::try_from(number)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(|| err("too large"))?;
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    Ok(total)
}

/// Renders a duration in the scenario spelling (`1h30m`, `1m500ms`, `0s`).
pub fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        let count = millis / size;
        if count > 0 {
            out.push_str(&format!("{count}{unit}"));
            millis -= count * size;
        }
    }
    out
}

impl fmt::Display for ScenarioDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for ScenarioDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ScenarioDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = ScenarioDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 90s, 5m or 1h30m")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_duration(v).map(ScenarioDuration).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "bad duration {v}: missing unit (write it like {v}s or {v}ms)"
                )))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "bad duration {v}: missing unit (write it like 90s)"
                )))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "bad duration {v}: write it like 1m30s or 1500ms"
                )))
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_spellings() {
        let cases = [
            ("90s", 90_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("2m500ms", 120_500),
            ("1h2m3s4ms", 3_723_004),
            ("0s", 0),
            (" 10s ", 10_000),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_ambiguous_or_malformed_spellings() {
        let cases = [
            ("", "empty"),
            ("90", "missing unit"),
            ("s", "expected a number"),
            ("5 m", "missing unit"),
            ("5min", "unknown unit"),
            ("30m1h", "units must go from largest to smallest, each once"),
            ("1m1m", "units must go from largest to smallest, each once"),
            ("1.5s", "no fractions (write 1s500ms, not 1.5s)"),
            ("-5s", "expected a number"),
            ("99999999999999999999s", "number too large"),
        ];
        for (text, reason) in cases {
            let err = parse_duration(text).unwrap_err();
            assert_eq!(err.reason, reason, "{text:?}");
        }
    }

    #[test]
    fn formats_back_to_the_scenario_spelling() {
        for text in ["90s", "5m", "1h30m", "250ms", "1m30s500ms", "0s"] {
            let parsed = parse_duration(text).unwrap();
            let normalised = format_duration(parsed);
            assert_eq!(parse_duration(&normalised).unwrap(), parsed);
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }
}
