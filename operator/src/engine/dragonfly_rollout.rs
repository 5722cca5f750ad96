//! The Dragonfly rollout, pure: when the pod template changed (image or snapshot
//! configuration; the StatefulSets use `OnDelete`), which pod to replace next and where
//! the cache master should be meanwhile. Moves and labels stay in `engine::dragonfly`;
//! the pod deletion is carried out by `controllers::dragonfly`.
//!
//! Order: the replica site's pod first (wait for it to be back in stable sync), then
//! the master moves to it by `REPLTAKEOVER` (the planned-failover move), then the old
//! master's pod is replaced, then the master is handed back to MySQL's active site.

use jiff::Timestamp;

use super::decision::{EventIntent, EventReason};
use super::dragonfly::DragonflyObservation;
use crate::api::DragonflyRolloutStatus;

pub const PHASE_ROLLING_REPLICA: &str = "RollingReplica";
pub const PHASE_MOVING_MASTER: &str = "MovingMaster";
pub const PHASE_ROLLING_OLD_MASTER: &str = "RollingOldMaster";
pub const PHASE_HANDING_BACK: &str = "HandingBack";
pub const PHASE_COMPLETED: &str = "Completed";

/// What the rollout sees in one decision.
#[derive(Debug, Clone)]
pub struct RolloutInput<'a> {
    pub obs: &'a DragonflyObservation,
    /// `spec.dragonfly.image`.
    pub image: &'a str,
    /// `status.dragonfly.masterSite`.
    pub master: Option<&'a str>,
    /// MySQL's active site: where the master returns at the end.
    pub home: Option<&'a str>,
    /// A planned or emergency MySQL failover is in progress: the rollout pauses.
    pub failover: bool,
    pub previous: Option<&'a DragonflyRolloutStatus>,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RolloutDecision {
    pub status: Option<DragonflyRolloutStatus>,
    /// Delete this site's Dragonfly pod (its StatefulSet recreates it on the new
    /// template).
    pub delete_pod: Option<String>,
    pub event: Option<EventIntent>,
    pub note: Option<String>,
}

/// The site the cache master should be at while the rollout has moved it away from
/// MySQL's active site (`MovingMaster`, `RollingOldMaster`); `None` otherwise.
pub fn temporary_master(
    rollout: Option<&DragonflyRolloutStatus>,
    obs: &DragonflyObservation,
) -> Option<String> {
    let r = rollout?;
    let site = r.site.as_deref()?;
    match r.phase.as_str() {
        PHASE_MOVING_MASTER => Some(site.to_string()),
        PHASE_ROLLING_OLD_MASTER => obs.other(site).map(|o| o.name.clone()),
        _ => None,
    }
}

fn in_progress(r: Option<&DragonflyRolloutStatus>) -> Option<&DragonflyRolloutStatus> {
    r.filter(|r| r.phase != PHASE_COMPLETED)
}

/// The caches serve with the replica site in stable sync: the only state a rollout
/// starts from, or moves the master in.
fn settled_pair(input: &RolloutInput<'_>) -> Option<(String, String)> {
    let master = input.obs.site(input.master?)?;
    let replica = input.obs.other(&master.name)?;
    let serving = master.is_master() && master.pod.traffic && !master.pod.deleting;
    (serving && replica.in_stable_sync_with(master))
        .then(|| (master.name.clone(), replica.name.clone()))
}

/// Whether deleting `site`'s pod now can lose no cache write and never leaves the
/// Service without its master: it is not the master (recorded, by ROLE or by label),
/// and the recorded master serves.
fn safe_to_delete(input: &RolloutInput<'_>, site: &str) -> bool {
    let Some(s) = input.obs.site(site) else {
        return false;
    };
    let Some(master) = input.master.and_then(|m| input.obs.site(m)) else {
        return false;
    };
    master.name != site
        && master.is_master()
        && master.pod.traffic
        && !s.is_master()
        && !s.pod.traffic
        && s.pod.role_label != Some(super::dragonfly::CacheRole::Master)
        && s.pod.exists
        && !s.pod.deleting
}

/// Back on the new template and a full copy of the master: the pod is current, Ready,
/// and in stable sync with the master.
fn rolled_and_synced(input: &RolloutInput<'_>, site: &str) -> bool {
    let (Some(s), Some(master)) = (
        input.obs.site(site),
        input.master.and_then(|m| input.obs.site(m)),
    ) else {
        return false;
    };
    s.pod.exists
        && !s.pod.outdated
        && !s.pod.deleting
        && s.pod.ready
        && s.in_stable_sync_with(master)
}

fn with_phase(prev: &DragonflyRolloutStatus, phase: &str, site: &str) -> DragonflyRolloutStatus {
    DragonflyRolloutStatus {
        phase: phase.to_string(),
        site: Some(site.to_string()),
        ..prev.clone()
    }
}

/// One step of the rollout. Called only when no move of the master is in progress and
/// the cache worker is idle.
pub fn decide(input: &RolloutInput<'_>) -> RolloutDecision {
    let mut out = RolloutDecision {
        status: input.previous.cloned(),
        ..Default::default()
    };
    let Some(current) = in_progress(input.previous) else {
        let outdated: Vec<&str> = input
            .obs
            .sites
            .iter()
            .filter(|s| s.pod.exists && s.pod.outdated)
            .map(|s| s.name.as_str())
            .collect();
        if outdated.is_empty() {
            return out;
        }
        if input.failover {
            out.note = Some("the Dragonfly rollout waits for the MySQL failover".into());
            return out;
        }
        let Some((master, replica)) = settled_pair(input) else {
            out.note = Some(
                "the Dragonfly rollout waits for a serving master and a replica in stable sync"
                    .into(),
            );
            return out;
        };
        out.status = Some(DragonflyRolloutStatus {
            phase: PHASE_ROLLING_REPLICA.into(),
            image: Some(input.image.to_string()),
            site: Some(replica.clone()),
            started_at: Some(input.now.into()),
            completed_at: None,
        });
        out.event = Some(EventIntent::normal(
            EventReason::DragonflyRolloutStarted,
            format!(
                "rolling Dragonfly to {}: {replica} first, then the master moves there by REPLTAKEOVER, then {master}",
                input.image
            ),
        ));
        return out;
    };
    if input.failover {
        out.note = Some("the Dragonfly rollout pauses during the MySQL failover".into());
        return out;
    }
    let Some(site) = current.site.clone() else {
        // A status without its site cannot be resumed safely: start over.
        out.status = None;
        return out;
    };
    match current.phase.as_str() {
        PHASE_ROLLING_REPLICA | PHASE_ROLLING_OLD_MASTER => {
            let pod_outdated = input.obs.site(&site).is_some_and(|s| s.pod.outdated);
            if pod_outdated {
                if safe_to_delete(input, &site) {
                    out.delete_pod = Some(site.clone());
                    out.note = Some(format!("replacing {site}'s Dragonfly pod"));
                } else {
                    out.note = Some(format!(
                        "{site}'s Dragonfly pod is replaced once it is not the master and the master serves"
                    ));
                }
                return out;
            }
            if !rolled_and_synced(input, &site) {
                out.note = Some(format!(
                    "waiting for {site}'s new Dragonfly pod to be Ready and in stable sync"
                ));
                return out;
            }
            if current.phase == PHASE_ROLLING_OLD_MASTER {
                out.status = Some(with_phase(current, PHASE_HANDING_BACK, &site));
                return out;
            }
            let master_outdated = input
                .master
                .and_then(|m| input.obs.site(m))
                .is_some_and(|m| m.pod.outdated);
            out.status = Some(if master_outdated {
                with_phase(current, PHASE_MOVING_MASTER, &site)
            } else {
                with_phase(current, PHASE_HANDING_BACK, &site)
            });
        }
        PHASE_MOVING_MASTER => {
            if input.master == Some(site.as_str()) {
                match input.obs.other(&site) {
                    Some(old) => {
                        out.status = Some(with_phase(current, PHASE_ROLLING_OLD_MASTER, &old.name))
                    }
                    None => out.status = Some(with_phase(current, PHASE_HANDING_BACK, &site)),
                }
            } else {
                out.note = Some(format!(
                    "the Dragonfly master moves to {site} for the rollout"
                ));
            }
        }
        PHASE_HANDING_BACK => {
            if input.home.is_none() || input.master == input.home {
                let mut done = with_phase(current, PHASE_COMPLETED, &site);
                done.completed_at = Some(input.now.into());
                out.status = Some(done);
                out.event = Some(EventIntent::normal(
                    EventReason::DragonflyRolloutCompleted,
                    format!(
                        "every Dragonfly pod runs the new template ({}); the master is at {}",
                        current.image.as_deref().unwrap_or("-"),
                        input.master.unwrap_or("-")
                    ),
                ));
            } else {
                out.note = Some("the Dragonfly master returns to MySQL's active site".into());
            }
        }
        _ => out.status = None,
    }
    out
}

#[cfg(test)]
#[path = "dragonfly_rollout_tests.rs"]
mod tests;
