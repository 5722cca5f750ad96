//! Status: the conditions built from a decision's health (small builders, not ad hoc),
//! and the gauges a user sees on `/metrics`, both derived from the status the engine
//! returned. The status itself is written by one writer (`adapters::kube::patch_status`,
//! a merge patch on /status, only when something changed).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{Health, MysqlFailoverGroupStatus, SiteState};
use crate::engine::dragonfly::{ConfigVerdict, DRAGONFLY_CONFIG_WARNING};
use crate::metrics::{Metrics, SiteGauges};

/// `Ready`: True while the group is Healthy; the reason is the health, the message the
/// engine's explanation.
pub(crate) const READY: &str = "Ready";
/// `Progressing`: True while an emergency or planned failover is running.
pub(crate) const PROGRESSING: &str = "Progressing";

/// A condition that keeps its `lastTransitionTime` unless its status flipped.
fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// The status to persist: the engine's, with conditions and observedGeneration.
pub(crate) fn with_conditions(
    mut status: MysqlFailoverGroupStatus,
    previous: &MysqlFailoverGroupStatus,
    health_reason: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> MysqlFailoverGroupStatus {
    let health = status.health;
    let ready_message = if health_reason.is_empty() {
        match health {
            Some(Health::Healthy) => "one writable site, the other replicating",
            _ => "",
        }
    } else {
        health_reason
    };
    let ready = condition(
        &previous.conditions,
        READY,
        health == Some(Health::Healthy),
        health.map_or("Unknown", Health::as_str),
        ready_message,
        generation,
        now,
    );
    let (progressing, reason, message) =
        match (&status.emergency_failover, status.planned_in_progress()) {
            (Some(f), _) => (
                true,
                "EmergencyFailover",
                format!("{} -> {}: {}", f.from, f.to, f.phase.as_str()),
            ),
            (None, Some(p)) => (
                true,
                "PlannedFailover",
                format!(
                    "{} -> {}: {}",
                    p.from.as_deref().unwrap_or("?"),
                    p.target,
                    p.phase.as_str()
                ),
            ),
            (None, None) => (false, "Idle", String::new()),
        };
    let progressing = condition(
        &previous.conditions,
        PROGRESSING,
        progressing,
        reason,
        &message,
        generation,
        now,
    );
    status.conditions = vec![ready, progressing];
    status.observed_generation = generation;
    status
}

/// Adds `DragonflyConfigWarning` (absent without `spec.dragonfly`).
pub(crate) fn with_dragonfly_config(
    mut status: MysqlFailoverGroupStatus,
    previous: &MysqlFailoverGroupStatus,
    verdict: Option<&ConfigVerdict>,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> MysqlFailoverGroupStatus {
    if let Some(verdict) = verdict {
        status.conditions.push(condition(
            &previous.conditions,
            DRAGONFLY_CONFIG_WARNING,
            verdict.warning,
            verdict.reason,
            &verdict.message,
            generation,
            now,
        ));
    }
    status
}

/// Sets the per-group and per-site gauges from the status.
pub(crate) fn publish_gauges(
    metrics: &Metrics,
    namespace: &str,
    group: &str,
    status: &MysqlFailoverGroupStatus,
) {
    if let Some(health) = status.health {
        metrics.set_health(namespace, group, health);
    }
    let sites: Vec<&str> = status.sites.iter().map(|s| s.name.as_str()).collect();
    metrics.set_active_site(namespace, group, &sites, status.active_site.as_deref());
    for site in &status.sites {
        metrics.set_site(
            namespace,
            group,
            &site.name,
            SiteGauges {
                writable: site.state == Some(SiteState::Writable),
                reachable: site.state.is_some_and(|s| s != SiteState::Unreachable),
                replicating: site.replicating == Some(true),
                lag_seconds: site.lag_seconds.map(|l| l as f64),
                divergent_transactions: site
                    .divergent_transaction_count
                    .and_then(|c| u64::try_from(c).ok())
                    .unwrap_or(0),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_750_000_000 + second).unwrap()
    }

    #[test]
    fn ready_follows_health_and_keeps_its_transition_time() {
        let healthy = MysqlFailoverGroupStatus {
            health: Some(Health::Healthy),
            ..Default::default()
        };
        let first = with_conditions(healthy.clone(), &Default::default(), "", Some(3), at(0));
        let ready = &first.conditions[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );
        assert_eq!(ready.reason, "Healthy");
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(first.observed_generation, Some(3));

        let again = with_conditions(healthy, &first, "", Some(3), at(60));
        assert_eq!(
            again.conditions, first.conditions,
            "no transition, no change"
        );

        let degraded = MysqlFailoverGroupStatus {
            health: Some(Health::Degraded),
            ..Default::default()
        };
        let later = with_conditions(degraded, &again, "pdx is unreachable", Some(3), at(90));
        let ready = &later.conditions[0];
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "Degraded");
        assert_eq!(ready.message, "pdx is unreachable");
        assert_eq!(ready.last_transition_time, Time(at(90)));
    }
}
