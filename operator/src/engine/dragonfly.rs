//! Dragonfly decisions that are pure functions of the spec and the previous status.
//! This module holds the configuration verdict (discouraged args -> condition and
//! Warning Event); the cache's replication and labels are decided beside it as that
//! work lands. Flags themselves are catalogued in `children::dragonfly`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::decision::{EventIntent, EventReason};
use crate::api::DragonflySpec;
use crate::children::dragonfly::discouraged_args;

/// Condition type: True while `spec.dragonfly.args` holds flags the guide discourages.
pub const DRAGONFLY_CONFIG_WARNING: &str = "DragonflyConfigWarning";

/// What the `DragonflyConfigWarning` condition should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigVerdict {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// `None` without `spec.dragonfly` (the condition is then absent).
pub fn config_verdict(spec: Option<&DragonflySpec>) -> Option<ConfigVerdict> {
    let spec = spec?;
    let found = discouraged_args(&spec.args);
    if found.is_empty() {
        return Some(ConfigVerdict {
            warning: false,
            reason: "NoDiscouragedArgs",
            message: String::new(),
        });
    }
    let message = found
        .iter()
        .map(|d| format!("{}: {}", d.arg, d.tradeoff))
        .collect::<Vec<_>>()
        .join("; ");
    Some(ConfigVerdict {
        warning: true,
        reason: "DiscouragedArgs",
        message: format!("spec.dragonfly.args: {message}"),
    })
}

/// The Warning Event for a verdict, once: only when the previous status did not already
/// carry the same warning (the reconcile runs every probe interval; the Event must not).
pub fn config_warning_event(
    verdict: &ConfigVerdict,
    previous: &[Condition],
) -> Option<EventIntent> {
    if !verdict.warning {
        return None;
    }
    let already = previous.iter().any(|c| {
        c.type_ == DRAGONFLY_CONFIG_WARNING && c.status == "True" && c.message == verdict.message
    });
    (!already).then(|| {
        EventIntent::warning(
            EventReason::DragonflyDiscouragedArgs,
            verdict.message.clone(),
        )
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn spec(args: &[&str]) -> DragonflySpec {
        serde_json::from_value(serde_json::json!({ "args": args })).unwrap()
    }

    fn condition(status: &str, message: &str) -> Condition {
        Condition {
            type_: DRAGONFLY_CONFIG_WARNING.into(),
            status: status.into(),
            reason: "DiscouragedArgs".into(),
            message: message.into(),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }
    }

    #[test]
    fn no_dragonfly_no_condition() {
        assert_eq!(config_verdict(None), None);
    }

    #[test]
    fn clean_args_give_a_false_condition_and_no_event() {
        let verdict = config_verdict(Some(&spec(&["--cache_mode=true"]))).unwrap();
        assert!(!verdict.warning);
        assert_eq!(verdict.reason, "NoDiscouragedArgs");
        assert_eq!(config_warning_event(&verdict, &[]), None);
    }

    #[test]
    fn discouraged_args_warn_naming_flag_and_tradeoff_once() {
        let verdict = config_verdict(Some(&spec(&["--aclfile=/etc/acl"]))).unwrap();
        assert!(verdict.warning);
        assert!(
            verdict
                .message
                .starts_with("spec.dragonfly.args: --aclfile=/etc/acl: ACL file:"),
            "{}",
            verdict.message
        );
        let event = config_warning_event(&verdict, &[]).unwrap();
        assert_eq!(event.reason, EventReason::DragonflyDiscouragedArgs);
        assert_eq!(event.message, verdict.message);
        // Already reported with the same message: no second Event.
        let previous = [condition("True", &verdict.message)];
        assert_eq!(config_warning_event(&verdict, &previous), None);
        // A changed message (another flag added) is reported again.
        let other = [condition("True", "spec.dragonfly.args: --dir=/x: ...")];
        assert!(config_warning_event(&verdict, &other).is_some());
        // So is a warning that returns after being cleared.
        let cleared = [condition("False", "")];
        assert!(config_warning_event(&verdict, &cleared).is_some());
    }
}
