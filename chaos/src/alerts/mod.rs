//! Which of the chart's alerts would have fired during a run: the rules of
//! `charts/bloodraven/templates/prometheusrule.yaml` (compiled in, with the chart's
//! default values) evaluated over the runner's scrapes of the operator's /metrics, at
//! every scrape, with each rule's `for`. No Prometheus or promtool is needed at run time;
//! component-tests check the same rules with promtool.

pub mod promql;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::metrics::Sample;
use promql::{Expr, Labels, PromqlError, Scrape, Timeline};

/// The chart's rule template and values, as built into this binary.
const RULES_TEMPLATE: &str =
    include_str!("../../../charts/bloodraven/templates/prometheusrule.yaml");
const CHART_VALUES: &str = include_str!("../../../charts/bloodraven/values.yaml");

/// The `instance` label every scraped sample gets, as Prometheus adds its target's:
/// the rules join on it.
pub const INSTANCE: &str = "bloodraven-operator";

/// One alerting rule of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub severity: String,
    pub expr: Expr,
    pub for_ms: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    #[error("prometheusrule.yaml line {line}: {reason}")]
    Template { line: usize, reason: String },
    #[error("alert {alert}: {source}")]
    Expr {
        alert: String,
        #[source]
        source: PromqlError,
    },
    #[error("charts/bloodraven/values.yaml: {0}")]
    Values(String),
}

/// An alert that fired during the run: from when, and until when (`None`: still
/// firing at the last scrape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiredAlert {
    pub name: String,
    pub severity: String,
    pub labels: BTreeMap<String, String>,
    pub firing_from_ms: u64,
    pub resolved_at_ms: Option<u64>,
}

impl FiredAlert {
    /// `BloodravenEmergencyFailover{group="playground",namespace="bp"} (warning)`.
    pub fn describe(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "instance")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{}{{{}}} ({})", self.name, labels.join(","), self.severity)
    }
}

/// The chart's rules with its default values.
pub fn chart_rules() -> Result<Vec<Rule>, RulesError> {
    let values: serde_json::Value =
        serde_saphyr::from_str(CHART_VALUES).map_err(|e| RulesError::Values(e.to_string()))?;
    parse_rules(RULES_TEMPLATE, &values)
}

/// Reads the alerting rules out of the Helm template line by line: `- alert:`, the
/// block under `expr: |-`, `for:` and the `severity` label are all the evaluator needs
/// (annotations are for people). `{{ .Values.x.y }}` in an expression is replaced by
/// that value; any other template action there is an error naming the line.
pub fn parse_rules(template: &str, values: &serde_json::Value) -> Result<Vec<Rule>, RulesError> {
    let lines: Vec<&str> = template.lines().collect();
    let mut rules = Vec::new();
    let mut current: Option<PendingRule> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let number = i + 1;
        i += 1;
        if let Some(name) = trimmed.strip_prefix("- alert: ") {
            if let Some(done) = current.take() {
                rules.push(done.finish()?);
            }
            current = Some(PendingRule {
                name: name.trim().to_owned(),
                line: number,
                ..PendingRule::default()
            });
            continue;
        }
        if trimmed.starts_with("- name: ")
            && let Some(done) = current.take()
        {
            rules.push(done.finish()?);
        }
        let Some(rule) = current.as_mut() else {
            continue;
        };
        if trimmed == "expr: |-" {
            let mut block = Vec::new();
            while i < lines.len() {
                let next = lines[i];
                let next_indent = next.len() - next.trim_start().len();
                if !next.trim().is_empty() && next_indent <= indent {
                    break;
                }
                block.push(substitute(next.trim(), values, i + 1)?);
                i += 1;
            }
            rule.expr = Some(block.join("\n"));
        } else if let Some(text) = trimmed.strip_prefix("expr: ") {
            rule.expr = Some(substitute(text.trim(), values, number)?);
        } else if let Some(duration) = trimmed.strip_prefix("for: ") {
            let duration = duration.trim();
            let ms = bloodraven::api::duration::parse(duration)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .map_err(|e| RulesError::Template {
                    line: number,
                    reason: format!("for: {duration:?}: {e}"),
                })?;
            rule.for_ms = Some(ms);
        } else if let Some(severity) = trimmed.strip_prefix("severity: ") {
            rule.severity = Some(severity.trim().to_owned());
        }
    }
    if let Some(done) = current.take() {
        rules.push(done.finish()?);
    }
    Ok(rules)
}

/// A rule while its lines are being read.
#[derive(Default)]
struct PendingRule {
    name: String,
    line: usize,
    expr: Option<String>,
    for_ms: Option<u64>,
    severity: Option<String>,
}

impl PendingRule {
    fn finish(self) -> Result<Rule, RulesError> {
        let missing = |what: &str| RulesError::Template {
            line: self.line,
            reason: format!("alert {} has no {what}", self.name),
        };
        let text = self.expr.clone().ok_or_else(|| missing("expr"))?;
        let severity = self
            .severity
            .clone()
            .ok_or_else(|| missing("severity label"))?;
        let expr = promql::parse(&text).map_err(|source| RulesError::Expr {
            alert: self.name.clone(),
            source,
        })?;
        Ok(Rule {
            name: self.name,
            severity,
            expr,
            for_ms: self.for_ms.unwrap_or(0),
        })
    }
}

/// Replaces `{{ .Values.a.b }}` in one expression line by the value.
fn substitute(line: &str, values: &serde_json::Value, number: usize) -> Result<String, RulesError> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(RulesError::Template {
                line: number,
                reason: format!("unclosed template action in {line:?}"),
            });
        };
        let action = after[..end].trim();
        let Some(path) = action.strip_prefix(".Values.") else {
            return Err(RulesError::Template {
                line: number,
                reason: format!(
                    "only {{{{ .Values.x }}}} is supported in an expression, not {action:?}"
                ),
            });
        };
        let pointer = format!("/{}", path.replace('.', "/"));
        let value = match values.pointer(&pointer) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            other => {
                return Err(RulesError::Template {
                    line: number,
                    reason: format!("values.yaml has no scalar at {path}: {other:?}"),
                });
            }
        };
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One scrape as the evaluator reads it: the metric name in `__name__` and the
/// operator's target in `instance`.
pub fn scrape(at_ms: u64, samples: &[Sample]) -> Scrape {
    Scrape {
        at_ms,
        samples: samples
            .iter()
            .map(|sample| {
                let mut labels: Labels = sample.labels.clone();
                labels.insert("__name__".into(), sample.name.clone());
                labels.insert("instance".into(), INSTANCE.into());
                (labels, sample.value)
            })
            .collect(),
    }
}

/// Evaluates every rule at every scrape of `timeline` and returns the alerts that
/// reached firing (held for the rule's `for`), ordered by when they started firing.
pub fn evaluate(rules: &[Rule], timeline: &Timeline) -> Result<Vec<FiredAlert>, PromqlError> {
    let mut fired: Vec<FiredAlert> = Vec::new();
    for rule in rules {
        // Active instances by labels: since when the expression held, and whether
        // (since when) it is firing.
        let mut active: BTreeMap<Labels, (u64, Option<usize>)> = BTreeMap::new();
        for scrape in &timeline.scrapes {
            let at = scrape.at_ms;
            let promql::Value::Vector(now) = timeline.eval(&rule.expr, at)? else {
                return Err(PromqlError::Eval(format!(
                    "alert {} evaluates to a number",
                    rule.name
                )));
            };
            let mut present = Vec::new();
            for (labels, _) in now {
                let mut labels = labels;
                labels.remove("__name__");
                labels.insert("alertname".into(), rule.name.clone());
                labels.insert("severity".into(), rule.severity.clone());
                present.push(labels);
            }
            active.retain(|labels, (_, firing)| {
                let still = present.contains(labels);
                if !still
                    && let Some(index) = firing
                    && let Some(alert) = fired.get_mut(*index)
                {
                    alert.resolved_at_ms = Some(at);
                }
                still
            });
            for labels in present {
                let entry = active.entry(labels.clone()).or_insert((at, None));
                if entry.1.is_none() && at - entry.0 >= rule.for_ms {
                    let mut shown = labels;
                    shown.remove("alertname");
                    shown.remove("severity");
                    fired.push(FiredAlert {
                        name: rule.name.clone(),
                        severity: rule.severity.clone(),
                        labels: shown,
                        firing_from_ms: at,
                        resolved_at_ms: None,
                    });
                    entry.1 = Some(fired.len() - 1);
                }
            }
        }
    }
    fired.sort_by(|a, b| (a.firing_from_ms, &a.name).cmp(&(b.firing_from_ms, &b.name)));
    Ok(fired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chart_rule_is_read_and_parses() {
        let rules = chart_rules().unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        for expected in [
            "BloodravenNoPrimary",
            "BloodravenSplitBrain",
            "BloodravenEmergencyFailover",
            "BloodravenReplicationLagHigh",
            "BloodravenOperatorDown",
            "BloodravenDNSNotFollowingActiveSite",
            "BloodravenWriterLeaseRenewalsFailing",
        ] {
            assert!(names.contains(&expected), "{expected} not in {names:?}");
        }
        assert_eq!(
            RULES_TEMPLATE.matches("- alert: ").count(),
            rules.len(),
            "a rule was skipped"
        );
        let no_primary = rules
            .iter()
            .find(|r| r.name == "BloodravenNoPrimary")
            .unwrap();
        assert_eq!(no_primary.for_ms, 120_000);
        assert_eq!(no_primary.severity, "critical");
    }

    #[test]
    fn template_values_are_substituted_and_other_actions_refused() {
        let values = serde_json::json!({"prometheusRule": {"lag": 30}});
        let template = "    - name: g\n      rules:\n        - alert: A\n          expr: |-\n            x > {{ .Values.prometheusRule.lag }}\n          for: 1m\n          labels:\n            severity: warning\n";
        let rules = parse_rules(template, &values).unwrap();
        assert_eq!(rules[0].expr, promql::parse("x > 30").unwrap());
        assert_eq!(rules[0].for_ms, 60_000);
        let bad = template.replace(".Values.prometheusRule.lag", ".Release.Name");
        let err = parse_rules(&bad, &values).unwrap_err();
        assert!(err.to_string().contains("line 5"), "{err}");
    }

    /// A sample written by hand: name, labels, value.
    type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

    fn samples(rows: &[Row<'_>]) -> Vec<Sample> {
        rows.iter()
            .map(|(name, labels, value)| Sample {
                name: name.to_string(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                value: *value,
            })
            .collect()
    }

    #[test]
    fn an_alert_fires_after_its_for_and_resolves() {
        let rules = chart_rules().unwrap();
        let group = [("namespace", "bp"), ("group", "g")];
        let no_primary = |on: bool| {
            samples(&[
                ("bloodraven_leader", &[], 1.0),
                (
                    "bloodraven_group_health",
                    &[group[0], group[1], ("health", "NoPrimary")],
                    f64::from(u8::from(on)),
                ),
                (
                    "bloodraven_site_reachable",
                    &[group[0], group[1], ("site", "iad")],
                    0.0,
                ),
            ])
        };
        // Every 15 s: 1 min healthy, 3 min without a primary, 1 min healthy.
        let mut timeline = Timeline::default();
        for i in 0..20u64 {
            let on = (4..16).contains(&i);
            timeline.scrapes.push(scrape(i * 15_000, &no_primary(on)));
        }
        let fired = evaluate(&rules, &timeline).unwrap();
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].name, "BloodravenNoPrimary");
        // Held from 60 s; `for: 2m` -> firing at 180 s; gone at 240 s.
        assert_eq!(fired[0].firing_from_ms, 180_000);
        assert_eq!(fired[0].resolved_at_ms, Some(240_000));
        assert_eq!(fired[0].labels.get("group").map(String::as_str), Some("g"));
        assert!(fired[0].describe().starts_with("BloodravenNoPrimary{"));
    }
}
