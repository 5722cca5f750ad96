//! The health summary and per-site status a user reads: `Healthy`, `Degraded` (a site
//! unreachable, not replicating, lagging or diverged), `SplitBrain` (two writable
//! sites), `NoPrimary`; with a message that says why.

use super::Ctx;
use super::status::{Health, SiteState, SiteStatus};

pub fn summarise(ctx: &mut Ctx<'_>) {
    let snap = ctx.snap;
    let active = ctx.status.active_site.clone();
    let sites: Vec<SiteStatus> = snap
        .sites
        .iter()
        .map(|site| {
            let previous = ctx.status.site(&site.name);
            let recovery = previous.and_then(|p| p.recovery.clone());
            match site.mysql() {
                Some(mysql) => SiteStatus {
                    name: site.name.clone(),
                    state: if mysql.writable() {
                        SiteState::Writable
                    } else {
                        SiteState::ReadOnly
                    },
                    gtid_executed: Some(mysql.gtid_executed.one_line().to_string()),
                    server_uuid: Some(mysql.server_uuid.clone()),
                    replicating: mysql
                        .replication
                        .as_ref()
                        .is_some_and(|r| r.io_running && r.sql_running),
                    lag_seconds: mysql.replication.as_ref().and_then(|r| r.lag_seconds),
                    recovery,
                },
                // Unreachable: keep the last known GTID set and UUID, they still say
                // what the site had.
                None => SiteStatus {
                    name: site.name.clone(),
                    state: SiteState::Unreachable,
                    gtid_executed: previous.and_then(|p| p.gtid_executed.clone()),
                    server_uuid: previous.and_then(|p| p.server_uuid.clone()),
                    replicating: false,
                    lag_seconds: None,
                    recovery,
                },
            }
        })
        .collect();

    let writable: Vec<&str> = snap
        .sites
        .iter()
        .filter(|s| s.writable())
        .map(|s| s.name.as_str())
        .collect();
    let mut reasons = Vec::new();
    let health = if writable.len() > 1 {
        reasons.push(format!("sites {} are all writable", writable.join(", ")));
        Health::SplitBrain
    } else if writable.is_empty() {
        reasons.push(match (&ctx.status.failover, &active) {
            (Some(f), _) => format!(
                "emergency failover from {} to {}: {} ({})",
                f.from,
                f.to,
                f.phase.as_str(),
                f.message
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
            if let Some(recovery) = ctx.status.recovery(name) {
                reasons.push(format!("{name} is {}", recovery.state.as_str()));
                continue;
            }
            if is_active {
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
    ctx.status.health_message = reasons.join("; ");
}
