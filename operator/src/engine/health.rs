//! The health summary and per-site status a user reads: `Healthy`, `Degraded` (a site
//! unreachable, not replicating, lagging or diverged), `SplitBrain` (two writable
//! sites), `NoPrimary`; with a message that says why.

use super::Ctx;
use super::status::as_i64;
use crate::api::{Health, SiteState, SiteStatus};

/// With `durability: semisync`, why the writable primary `site` is not waiting for
/// acknowledgements, if it is not: semisync was never enabled, or a wait ran into
/// `semisyncTimeout` and the server fell back to asynchronous replication until a
/// replica catches up (MySQL 8.4 manual, 19.4.10.3 "Semisynchronous Replication
/// Monitoring", `Rpl_semi_sync_source_status`). Meanwhile a failover can lose
/// committed transactions: the promise `durability: semisync` makes does not hold.
fn semisync_gap(
    semisync: bool,
    site: &str,
    mysql: Option<&super::snapshot::MysqlObservation>,
) -> Option<String> {
    let mysql = mysql?;
    (semisync && !mysql.semisync_source_active).then(|| {
        format!(
            "semisync is not in effect on the primary {site} (Rpl_semi_sync_source_status OFF): \
             commits do not wait for the replica, so a failover now may lose them"
        )
    })
}

pub(super) fn summarise(ctx: &mut Ctx<'_>) {
    let snap = ctx.snap;
    let active = ctx.status.active_site.clone();
    let sites: Vec<SiteStatus> = snap
        .sites
        .iter()
        .map(|site| {
            let previous = ctx.status.site(&site.name);
            // The recovery fields are owned by `recovery` and only carried here.
            let mut entry = SiteStatus {
                name: site.name.clone(),
                recovery_state: previous.and_then(|p| p.recovery_state),
                divergent_gtid: previous.and_then(|p| p.divergent_gtid.clone()),
                divergent_transaction_count: previous.and_then(|p| p.divergent_transaction_count),
                ..SiteStatus::default()
            };
            match site.mysql() {
                Some(mysql) => {
                    let replication = mysql.replication.as_ref();
                    entry.state = Some(if mysql.writable() {
                        SiteState::Writable
                    } else {
                        SiteState::ReadOnly
                    });
                    entry.gtid_executed = Some(mysql.gtid_executed.one_line().to_string());
                    entry.server_uuid = Some(mysql.server_uuid.clone());
                    entry.replicating =
                        Some(replication.is_some_and(|r| r.io_running && r.sql_running));
                    entry.lag_seconds = replication.and_then(|r| r.lag_seconds).map(as_i64);
                    entry.message = replication
                        .and_then(|r| r.last_io_error.clone().or_else(|| r.last_sql_error.clone()));
                }
                // Unreachable: keep the last known GTID set and UUID, they still say
                // what the site had.
                None => {
                    entry.state = Some(SiteState::Unreachable);
                    entry.gtid_executed = site.last_seen.to_status();
                    entry.server_uuid = previous.and_then(|p| p.server_uuid.clone());
                    entry.replicating = Some(false);
                    entry.message = Some(site.outage_detail());
                }
            }
            entry
        })
        .collect();

    let writable = snap.writable_sites();
    let mut reasons = Vec::new();
    let health = if writable.len() > 1 {
        reasons.push(format!("sites {} are all writable", writable.join(", ")));
        Health::SplitBrain
    } else if writable.is_empty() {
        reasons.push(match (&ctx.status.emergency_failover, &active) {
            (Some(f), _) => format!(
                "emergency failover from {} to {}: {} ({})",
                f.from,
                f.to,
                f.phase.as_str(),
                f.message.as_deref().unwrap_or_default()
            ),
            (None, Some(a)) => format!("no site is writable (active site {a})"),
            (None, None) => "no site is writable and no active site is elected yet".to_string(),
        });
        Health::NoPrimary
    } else {
        for site in &snap.sites {
            let name = site.name.as_str();
            let is_active = active.as_deref() == Some(name);
            if !site.reachable() {
                reasons.push(format!("{name} is unreachable"));
                continue;
            }
            if let Some(recovery) = ctx.status.recovery_state(name) {
                reasons.push(format!("{name} is {}", recovery.as_str()));
                continue;
            }
            if is_active {
                if let Some(reason) = semisync_gap(snap.knobs.semisync, name, site.mysql()) {
                    reasons.push(reason);
                }
                continue;
            }
            let Some(primary) = active.as_deref() else {
                continue;
            };
            match site.replication() {
                Some(r) if r.replicates_from(primary) => {
                    if let Some(lag) = r.lag_seconds.filter(|l| *l > snap.knobs.max_lag_seconds) {
                        reasons.push(format!(
                            "{name} lags {lag}s, over the limit of {}s",
                            snap.knobs.max_lag_seconds
                        ));
                    }
                }
                _ => reasons.push(format!("{name} is not replicating from {primary}")),
            }
        }
        if reasons.is_empty() {
            Health::Healthy
        } else {
            Health::Degraded
        }
    };
    reasons.append(&mut ctx.notes);
    ctx.status.sites = sites;
    ctx.status.health = Some(health);
    ctx.health_reason = reasons.join("; ");
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{healthy_pair, knobs, mysql_mut, run, status};
    use crate::api::Health;

    #[test]
    fn a_semisync_group_whose_primary_fell_back_to_async_is_degraded() {
        let mut snap = healthy_pair();
        // Asynchronous durability: the variable says nothing about health.
        assert_eq!(status(&run(&snap, 12_000)).health, Some(Health::Healthy));
        snap.knobs = super::super::snapshot::Knobs {
            semisync: true,
            ..knobs()
        };
        let d = run(&snap, 12_000);
        assert_eq!(status(&d).health, Some(Health::Degraded));
        assert!(
            d.health_reason
                .contains("semisync is not in effect on the primary iad"),
            "{}",
            d.health_reason
        );
        mysql_mut(&mut snap, "iad").semisync_source_active = true;
        let d = run(&snap, 12_000);
        assert_eq!(
            status(&d).health,
            Some(Health::Healthy),
            "{}",
            d.health_reason
        );
    }
}
