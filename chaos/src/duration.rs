//! Scenario durations (`90s`, `5m`, `1h30m`, `250ms`, and `0s`): every duration a
//! scenario can carry (timeout, within, hold, during, wait, workload limits). The
//! grammar is the API's (`bloodraven::api::duration`), so a scenario and a manifest
//! accept and reject the same spellings; this module only adapts it to serde.

use std::fmt;
use std::time::Duration;

use bloodraven::api::duration::{format, parse};
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

impl fmt::Display for ScenarioDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
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
                parse(v).map(ScenarioDuration).map_err(E::custom)
            }

            // A YAML number is still a spelling error: say which value, as the parser does.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_yaml(text: &str) -> Result<ScenarioDuration, String> {
        serde_saphyr::from_str::<ScenarioDuration>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_the_api_grammar_and_zero() {
        let cases = [
            ("90s", 90_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("2m500ms", 120_500),
            ("0s", 0),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_yaml(text),
                Ok(ScenarioDuration(Duration::from_millis(millis))),
                "{text}"
            );
        }
    }

    #[test]
    fn errors_name_the_value() {
        for text in ["90", "ten seconds", "1h30", "5d", "1.5s", "-5s"] {
            let err = parse_yaml(text).unwrap_err();
            assert!(err.contains(&format!("{text:?}")), "{text:?} -> {err}");
        }
    }

    #[test]
    fn prints_what_it_reads_back() {
        for text in ["90s", "5m", "1h30m", "250ms", "1500ms", "0s"] {
            let parsed = parse_yaml(text).unwrap();
            assert_eq!(parse_yaml(&parsed.to_string()), Ok(parsed));
        }
        assert_eq!(ScenarioDuration::from_secs(90).to_string(), "1m30s");
    }
}
