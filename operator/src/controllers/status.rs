//! Status: the conditions built from a decision's health (small builders, not ad hoc),
//! and the gauges a user sees on `/metrics`, both derived from the status the engine
//! returned. The status itself is written by one writer (`production::kube::patch_status`,
//! a merge patch on /status, only when something changed).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{DnsSpec, DnsStatus, Health, MysqlFailoverGroupStatus, SiteState};
use crate::engine::dragonfly::{ConfigVerdict, DRAGONFLY_CONFIG_WARNING, DRAGONFLY_READY};
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

/// Adds `DragonflyConfigWarning` and `DragonflyReady` (both absent without
/// `spec.dragonfly`).
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
    // `DragonflyReady` mirrors what the engine wrote in `status.dragonfly`.
    if let Some(cache) = status.dragonfly.clone() {
        status.conditions.push(condition(
            &previous.conditions,
            DRAGONFLY_READY,
            cache.ready == Some(true),
            cache.reason.as_deref().unwrap_or("Unknown"),
            cache.message.as_deref().unwrap_or_default(),
            generation,
            now,
        ));
    }
    status
}

/// `status.dns`: the record as the DNSEndpoint publishes it now (`published_site`, read
/// from the cache), or `None` without `spec.dns`. `lastUpdated` is kept while the site
/// stays the same and set to `now` when it changes.
pub(crate) fn dns_status(
    spec: Option<&DnsSpec>,
    published_site: Option<&str>,
    previous: Option<&DnsStatus>,
    now: jiff::Timestamp,
) -> Option<DnsStatus> {
    let spec = spec?;
    let site = published_site.map(str::to_string);
    let last_updated = match previous {
        Some(p) if p.site == site => p.last_updated.clone(),
        _ => site.as_ref().map(|_| Time(now)),
    };
    Some(DnsStatus {
        hostname: Some(spec.hostname.clone()),
        targets: site
            .as_ref()
            .and_then(|s| spec.targets.get(s))
            .cloned()
            .unwrap_or_default(),
        site,
        last_updated,
    })
}

/// The status this replica last wrote for a group, and the resourceVersion the API
/// server gave the object for that write: read-your-writes for the state machine.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WrittenStatus {
    pub resource_version: Option<String>,
    pub status: MysqlFailoverGroupStatus,
}

/// The status to decide from, and whether to keep remembering `written`.
///
/// The reflector cache may not have delivered our own last write yet; deciding from the
/// older status there would repeat a transition (a second `FailoverStarted`, a metric
/// counted twice). So the written status wins until the cache shows it: the cache holds
/// the same status, or a resourceVersion at or after the write's (resourceVersions are
/// etcd revisions; when one is not a number, only an equal status counts as caught up).
pub(crate) fn status_to_act_on(
    cached_version: Option<&str>,
    cached: Option<&MysqlFailoverGroupStatus>,
    written: Option<&WrittenStatus>,
) -> (Option<MysqlFailoverGroupStatus>, bool) {
    let Some(written) = written else {
        return (cached.cloned(), false);
    };
    let caught_up = cached == Some(&written.status)
        || matches!(
            (
                cached_version.and_then(|v| v.parse::<u64>().ok()),
                written
                    .resource_version
                    .as_deref()
                    .and_then(|v| v.parse::<u64>().ok()),
            ),
            (Some(cached), Some(ours)) if cached >= ours
        );
    if caught_up {
        (cached.cloned(), false)
    } else {
        (Some(written.status.clone()), true)
    }
}

/// The leader's status sets the group's gauges; without one (this replica is not
/// leading) they are removed, so that only the leader exports a group's state and a
/// replica that lost leadership stops serving stale values. Counters stay.
pub(crate) fn publish_gauges_if_leader(
    metrics: &Metrics,
    namespace: &str,
    group: &str,
    leader_status: Option<&MysqlFailoverGroupStatus>,
) {
    match leader_status {
        Some(status) => publish_gauges(metrics, namespace, group, status),
        None => metrics.forget_group(namespace, group),
    }
}

/// For the writer-lease gauge: how long ago the operator saw the Lease change (every
/// renewal is a write, see `LeaseSighting::observe`), or `None` while it has no
/// holder, when nobody is expected to renew it.
pub(crate) fn writer_lease_renewal_age(
    lease: &crate::engine::LeaseSighting,
    now: crate::engine::Millis,
) -> Option<std::time::Duration> {
    lease
        .record
        .holder
        .as_ref()
        .map(|_| now.since(lease.seen_change_at))
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
    metrics.set_dns_site(
        namespace,
        group,
        &sites,
        status.dns.as_ref().map(|dns| dns.site.as_deref()),
    );
    if let Some(cache) = &status.dragonfly {
        let roles: Vec<(&str, Option<&str>)> = cache
            .sites
            .iter()
            .map(|s| (s.name.as_str(), s.role.as_deref()))
            .collect();
        let preserved = cache
            .takeover
            .as_ref()
            .filter(|t| t.completed_at.is_some())
            .and_then(|t| t.sessions_preserved);
        metrics.set_dragonfly(namespace, group, &roles, preserved, cache.ready);
    } else {
        metrics.set_dragonfly(namespace, group, &[], None, None);
    }
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
    fn writer_lease_renewal_age_counts_from_the_last_change_while_held() {
        use crate::engine::{LeaseRecord, LeaseSighting, Millis};
        let held = LeaseRecord {
            holder: Some("iad".into()),
            renew_time: Some("2025-01-01T00:00:00.000000Z".into()),
            resource_version: Some("7".into()),
            declared_duration: Some(std::time::Duration::from_secs(5)),
            holder_granted: true,
        };
        let seen = LeaseSighting::observe(None, held.clone(), Millis(1_000));
        // The same record read again later: no renewal seen since 1 s.
        let again = LeaseSighting::observe(Some(&seen), held.clone(), Millis(9_000));
        assert_eq!(
            writer_lease_renewal_age(&again, Millis(9_000)),
            Some(std::time::Duration::from_secs(8))
        );
        // A renewal (new resourceVersion) resets it.
        let renewed = LeaseSighting::observe(
            Some(&again),
            LeaseRecord {
                resource_version: Some("8".into()),
                ..held
            },
            Millis(9_500),
        );
        assert_eq!(
            writer_lease_renewal_age(&renewed, Millis(9_500)),
            Some(std::time::Duration::ZERO)
        );
        // No holder: nobody should renew it, no age.
        let free = LeaseSighting::observe(None, LeaseRecord::absent(), Millis(0));
        assert_eq!(writer_lease_renewal_age(&free, Millis(60_000)), None);
    }

    /// Issue 12: DnsStatus was defined but never written.
    #[test]
    fn dns_status_follows_the_published_site() {
        let spec: DnsSpec = serde_json::from_value(serde_json::json!({
            "hostname": "mysql.example",
            "targets": {"iad": ["a.example"], "pdx": ["b.example"]}
        }))
        .unwrap();
        assert_eq!(dns_status(None, Some("iad"), None, at(0)), None);
        let first = dns_status(Some(&spec), Some("iad"), None, at(0)).unwrap();
        assert_eq!(first.hostname.as_deref(), Some("mysql.example"));
        assert_eq!(first.site.as_deref(), Some("iad"));
        assert_eq!(first.targets, ["a.example"]);
        assert_eq!(first.last_updated, Some(Time(at(0))));
        let same = dns_status(Some(&spec), Some("iad"), Some(&first), at(60)).unwrap();
        assert_eq!(same, first, "no change, no new lastUpdated");
        let moved = dns_status(Some(&spec), Some("pdx"), Some(&same), at(90)).unwrap();
        assert_eq!(moved.targets, ["b.example"]);
        assert_eq!(moved.last_updated, Some(Time(at(90))));
        let unpublished = dns_status(Some(&spec), None, Some(&moved), at(95)).unwrap();
        assert_eq!((unpublished.site, unpublished.last_updated), (None, None));
    }

    /// Issue 12: a replica that loses leadership stops exporting the group's gauges.
    #[test]
    fn gauges_are_removed_when_not_leading() {
        let metrics = Metrics::new();
        let healthy = MysqlFailoverGroupStatus {
            health: Some(Health::Healthy),
            active_site: Some("iad".into()),
            sites: vec![crate::api::SiteStatus {
                name: "iad".into(),
                state: Some(SiteState::Writable),
                ..Default::default()
            }],
            ..Default::default()
        };
        publish_gauges_if_leader(&metrics, "bp", "g", Some(&healthy));
        assert!(
            metrics
                .render()
                .contains(r#"bloodraven_site_writable{namespace="bp",group="g",site="iad"} 1"#)
        );
        publish_gauges_if_leader(&metrics, "bp", "g", None);
        let text = metrics.render();
        for family in [
            "bloodraven_group_health{",
            "bloodraven_active_site{",
            "bloodraven_site_writable{",
        ] {
            assert!(!text.contains(family), "{family} still exported:\n{text}");
        }
    }

    fn status(active: &str) -> MysqlFailoverGroupStatus {
        MysqlFailoverGroupStatus {
            active_site: Some(active.into()),
            ..Default::default()
        }
    }

    /// Issue 12: a pass that runs before the watch delivered our own write decides from
    /// what we wrote, not from the older cached status.
    #[test]
    fn the_written_status_wins_until_the_cache_shows_it() {
        let written = WrittenStatus {
            resource_version: Some("120".into()),
            status: status("pdx"),
        };
        let old = status("iad");
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a MysqlFailoverGroupStatus>,
            Option<&'a WrittenStatus>,
            &'a str,
            bool,
        );
        let cases: [Case<'_>; 7] = [
            (
                "nothing written",
                Some("100"),
                Some(&old),
                None,
                "iad",
                false,
            ),
            (
                "cache older",
                Some("100"),
                Some(&old),
                Some(&written),
                "pdx",
                true,
            ),
            (
                "cache without status",
                Some("100"),
                None,
                Some(&written),
                "pdx",
                true,
            ),
            (
                "cache delivered the write",
                Some("120"),
                Some(&written.status),
                Some(&written),
                "pdx",
                false,
            ),
            (
                "a newer write by someone else",
                Some("130"),
                Some(&old),
                Some(&written),
                "iad",
                false,
            ),
            (
                "same status, other version",
                Some("999"),
                Some(&written.status),
                Some(&written),
                "pdx",
                false,
            ),
            (
                "opaque versions: only an equal status counts",
                Some("x9"),
                Some(&old),
                Some(&written),
                "pdx",
                true,
            ),
        ];
        for (name, version, cached, written, active, keep) in cases {
            let (chosen, kept) = status_to_act_on(version, cached, written);
            assert_eq!(
                chosen.and_then(|s| s.active_site).as_deref(),
                Some(active),
                "{name}"
            );
            assert_eq!(kept, keep, "{name}");
        }
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
