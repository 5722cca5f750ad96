//! Dragonfly decisions, pure: the configuration verdict (discouraged args -> condition
//! and Warning Event), and the cache itself — which site's Dragonfly is master (it
//! follows MySQL's active site), the moves between sites (`REPLTAKEOVER`, falling back
//! to `REPLICAOF NO ONE`), the pod labels the app-facing Service reads, the replica's
//! `REPLICAOF`, `status.dragonfly` and readiness. Flags are in `children::dragonfly`;
//! the commands are sent by `controllers::dragonfly`. Table tests: `dragonfly_tests`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::Ctx;
use super::decision::{EventIntent, EventReason, MetricIntent};
use super::dragonfly_rollout;
use super::memory::Mark;
use super::status::{as_i64, elapsed_ms};
use super::time::Millis;
use crate::api::{
    DragonflySiteStatus, DragonflySpec, DragonflyStatus, DragonflyTakeoverStatus,
    PlannedFailoverPhase,
};
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

// ---------------------------------------------------------------------------------------
// The cache: observation, actions, and the step `engine::decide` runs after MySQL's.
// ---------------------------------------------------------------------------------------

/// Condition type: the caches serve (one master with traffic, the other site in stable
/// sync). Absent without `spec.dragonfly`.
pub const DRAGONFLY_READY: &str = "DragonflyReady";

/// Dragonfly never holds anything up longer than this: a move of the master that has
/// not finished by then is given up (planned failover carries on without it).
pub const DRAGONFLY_BUDGET: Duration = Duration::from_secs(10);

/// `status...method` values.
pub const METHOD_TAKEOVER: &str = "REPLTAKEOVER";
pub const METHOD_NO_ONE: &str = "REPLICAOF NO ONE";
/// A move that ended without any command reaching its target (it never answered):
/// recorded so that a failed move always says how it was (not) made.
pub const METHOD_NONE: &str = "none";

/// One reconcile's view of the caches.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DragonflyObservation {
    /// One entry per spec site, in spec order.
    pub sites: Vec<CacheSiteObservation>,
    /// Cache actions handed over earlier are still being carried out (a `REPLTAKEOVER`
    /// can take seconds): decide none until they are done and observed.
    pub busy: bool,
    /// `spec.dragonfly.image`, recorded in the rollout's status.
    pub image: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheSiteObservation {
    pub name: String,
    /// The host a replica of this site names in `REPLICAOF` (and reports back in ROLE).
    pub host: String,
    pub pod: CachePod,
    pub probe: CacheProbe,
}

/// The Dragonfly pod as the pods index shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CachePod {
    pub exists: bool,
    pub ready: bool,
    pub deleting: bool,
    /// `shipstream.io/dragonfly-role`.
    pub role_label: Option<CacheRole>,
    /// `shipstream.io/dragonfly-traffic=enabled`.
    pub traffic: bool,
    /// The container keeps exiting (CrashLoopBackOff, or terminated with an error):
    /// its last termination message, else the kubelet's reason.
    pub start_failure: Option<String>,
    /// The pod runs an older template than its StatefulSet's update revision (the
    /// image or the snapshot configuration changed): the rollout replaces it.
    pub outdated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheRole {
    Master,
    Replica,
}

impl CacheRole {
    /// The value of the `shipstream.io/dragonfly-role` label.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheRole::Master => crate::children::dragonfly::DRAGONFLY_ROLE_MASTER,
            CacheRole::Replica => crate::children::dragonfly::DRAGONFLY_ROLE_REPLICA,
        }
    }
}

/// This cycle's probe (ROLE and INFO replication) of one site's Dragonfly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheProbe {
    Answered(CacheInfo),
    /// Not answering since `since` (on the operator's monotonic clock).
    Failing {
        since: Millis,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheInfo {
    /// `master_replid` identifies the process's data set: it changes when the process
    /// restarts (empty) and on `REPLICAOF NO ONE`.
    Master { replid: Option<String> },
    Replica {
        master_host: String,
        link: CacheLink,
    },
}

/// A replica's link to its master, as ROLE reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLink {
    Connecting,
    FullSync,
    StableSync,
}

impl CacheLink {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheLink::Connecting => "connecting",
            CacheLink::FullSync => "full_sync",
            CacheLink::StableSync => "stable_sync",
        }
    }
}

/// One Dragonfly command or label write. Carried out in order by the group's cache
/// worker, stopping at the first failure (a promotion is only safe after the shed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheAction {
    /// Merge-patch the site's pod labels `dragonfly-role` and `dragonfly-traffic`. A
    /// missing pod is not an error when `traffic` is false (a new pod has no labels).
    Label {
        site: String,
        role: CacheRole,
        traffic: bool,
    },
    /// `REPLICAOF <master's host> 6379` on `site`.
    ReplicaOf { site: String, master: String },
    /// `REPLICAOF NO ONE` on `site`: it keeps its data and becomes master.
    PromoteInPlace { site: String },
    /// `REPLTAKEOVER` on `site`, a replica in stable sync: its master hands over every
    /// write, then shuts down.
    Takeover { site: String },
    /// Delete the site's Dragonfly pod: its StatefulSet (`OnDelete`) recreates it on
    /// the current template. Only for a pod that is not the master (the rollout).
    DeletePod { site: String },
}

impl CacheSiteObservation {
    fn info(&self) -> Option<&CacheInfo> {
        match &self.probe {
            CacheProbe::Answered(info) => Some(info),
            CacheProbe::Failing { .. } => None,
        }
    }

    pub(super) fn answers(&self) -> bool {
        self.info().is_some()
    }

    pub(super) fn is_master(&self) -> bool {
        matches!(self.info(), Some(CacheInfo::Master { .. }))
    }

    fn replid(&self) -> Option<&str> {
        match self.info() {
            Some(CacheInfo::Master { replid }) => replid.as_deref(),
            _ => None,
        }
    }

    fn replicates_from(&self, master: &CacheSiteObservation) -> bool {
        matches!(self.info(), Some(CacheInfo::Replica { master_host, .. }) if *master_host == master.host)
    }

    pub(super) fn in_stable_sync_with(&self, master: &CacheSiteObservation) -> bool {
        matches!(self.info(), Some(CacheInfo::Replica { master_host, link: CacheLink::StableSync })
            if *master_host == master.host)
    }

    /// Gone for good as far as the cache is concerned: no pod, a pod being deleted, or
    /// no answer for a whole detection window.
    fn lost(&self, window: Duration, now: Millis) -> bool {
        if !self.pod.exists || self.pod.deleting {
            return true;
        }
        match self.probe {
            CacheProbe::Answered(_) => false,
            CacheProbe::Failing { since } => now >= since.plus(window),
        }
    }
}

impl DragonflyObservation {
    pub(super) fn site(&self, name: &str) -> Option<&CacheSiteObservation> {
        self.sites.iter().find(|s| s.name == name)
    }

    pub(super) fn other(&self, name: &str) -> Option<&CacheSiteObservation> {
        self.sites.iter().find(|s| s.name != name)
    }
}

/// The site whose Dragonfly should be master: MySQL's active site, except that a
/// planned failover hands the cache over first (from `PromotingDragonfly` on), and an
/// emergency failover already points at its target (the cache is not moved back to the
/// site MySQL is leaving).
fn desired_master(ctx: &Ctx<'_>, cache: &DragonflyStatus) -> Option<String> {
    if let Some(emergency) = &ctx.status.emergency_failover {
        return Some(emergency.to.clone());
    }
    if let Some(plan) = ctx.status.planned_in_progress()
        && matches!(
            plan.phase,
            PlannedFailoverPhase::PromotingDragonfly
                | PlannedFailoverPhase::Promoting
                | PlannedFailoverPhase::Resuming
        )
    {
        return Some(plan.target.clone());
    }
    if let Some(obs) = ctx.snap.dragonfly.as_ref()
        && let Some(site) = dragonfly_rollout::temporary_master(cache.rollout.as_ref(), obs)
    {
        return Some(site);
    }
    ctx.status.active_site.clone()
}

/// A planned failover is in `PromotingDragonfly`: a failed takeover falls back to
/// `REPLICAOF NO ONE` rather than keeping the master where it is.
fn planned_move(ctx: &Ctx<'_>) -> bool {
    ctx.status
        .planned_in_progress()
        .is_some_and(|p| p.phase == PlannedFailoverPhase::PromotingDragonfly)
}

/// The cache's step of a decision: finish or advance a move, choose the master, start
/// a move when MySQL's active site moved, converge labels and replication, and write
/// `status.dragonfly`.
pub(super) fn step(ctx: &mut Ctx<'_>) {
    let Some(obs) = ctx.snap.dragonfly.as_ref() else {
        ctx.status.dragonfly = None;
        return;
    };
    let mut cache = ctx.status.dragonfly.clone().unwrap_or_default();
    let was_ready = cache.ready == Some(true);
    let mut actions = Vec::new();
    if !obs.busy {
        let moving = cache
            .takeover
            .as_ref()
            .is_some_and(|t| t.completed_at.is_none());
        let rollout = (!moving).then(|| roll(ctx, obs, &mut cache));
        let hold = if moving {
            advance_move(ctx, obs, &mut cache, &mut actions);
            false
        } else {
            let hold = choose_master(ctx, obs, &mut cache, &mut actions);
            if actions.is_empty() && !hold {
                realign(ctx, obs, &mut cache, &mut actions);
            }
            hold
        };
        let moving = cache
            .takeover
            .as_ref()
            .is_some_and(|t| t.completed_at.is_none());
        if actions.is_empty() && !moving && !hold {
            converge(obs, &cache, &mut actions);
        }
        // A pod is replaced only when nothing else is under way: labels right, the
        // replica pointed at the master, no move.
        if actions.is_empty()
            && !moving
            && !hold
            && let Some(site) = rollout.flatten()
        {
            actions.push(CacheAction::DeletePod { site });
        }
    } else {
        // Nothing observed since the last actions (or since the operator started): the
        // status stays as it was, so that no readiness flips on a stale view.
        ctx.note("waiting for Dragonfly commands to finish");
        if let Some(t) = cache.takeover.as_ref().filter(|t| t.completed_at.is_none()) {
            ctx.phase_started(move_mark(t));
        }
        ctx.status.dragonfly = Some(cache);
        return;
    }
    if !actions.is_empty() {
        ctx.requeue_soon();
    }
    ctx.cache_actions = actions;
    cache.sites = obs.sites.iter().map(|s| site_status(obs, s)).collect();
    let (ready, reason, message) = readiness(obs, &cache);
    if was_ready && !ready {
        ctx.event(EventIntent::warning(
            EventReason::DragonflyDegraded,
            format!("Dragonfly is degraded ({reason}): {message}"),
        ));
    }
    // Once per episode (not every reconcile): a crash-looping container is otherwise
    // only visible in the pod's status.
    if reason == REASON_STARTUP_FAILING && cache.reason.as_deref() != Some(REASON_STARTUP_FAILING) {
        ctx.event(EventIntent::warning(
            EventReason::DragonflyStartupFailed,
            message.clone(),
        ));
    }
    cache.ready = Some(ready);
    cache.reason = Some(reason.to_string());
    cache.message = Some(message);
    ctx.status.dragonfly = Some(cache);
}

/// The rollout's step (`engine::dragonfly_rollout`): updates `cache.rollout`, emits its
/// Event; the site whose pod should be replaced now, if any.
fn roll(
    ctx: &mut Ctx<'_>,
    obs: &DragonflyObservation,
    cache: &mut DragonflyStatus,
) -> Option<String> {
    let failover =
        ctx.status.emergency_failover.is_some() || ctx.status.planned_in_progress().is_some();
    let decision = dragonfly_rollout::decide(&dragonfly_rollout::RolloutInput {
        obs,
        image: &obs.image,
        master: cache.master_site.as_deref(),
        home: ctx.status.active_site.as_deref(),
        failover,
        previous: cache.rollout.as_ref(),
        now: ctx.now.wall,
    });
    cache.rollout = decision.status;
    if let Some(event) = decision.event {
        ctx.event(event);
    }
    if let Some(note) = decision.note {
        ctx.note(note);
    }
    decision.delete_pod
}

/// `DragonflyReady` reason while a site's Dragonfly keeps exiting at start-up.
pub const REASON_STARTUP_FAILING: &str = "StartupFailing";

/// The first site whose Dragonfly keeps exiting, and what to check.
fn startup_failure(obs: &DragonflyObservation) -> Option<String> {
    obs.sites.iter().find_map(|s| {
        let failure = s.pod.start_failure.as_deref()?;
        Some(format!(
            "{}'s Dragonfly keeps exiting at start-up: {failure}; with spec.dragonfly.snapshot set, Dragonfly exits when the bucket does not exist or the credentials Secret's keys are missing or refused",
            s.name
        ))
    })
}

fn site_status(obs: &DragonflyObservation, s: &CacheSiteObservation) -> DragonflySiteStatus {
    let (role, link, replica_of) = match s.info() {
        None => (None, None, None),
        Some(CacheInfo::Master { .. }) => (Some("master"), None, None),
        Some(CacheInfo::Replica { master_host, link }) => (
            Some("replica"),
            Some(link.as_str().to_string()),
            obs.sites
                .iter()
                .find(|m| m.host == *master_host)
                .map(|m| m.name.clone())
                .or_else(|| Some(master_host.clone())),
        ),
    };
    DragonflySiteStatus {
        name: s.name.clone(),
        role: role.map(str::to_string),
        reachable: Some(s.answers()),
        ready: Some(s.pod.ready),
        link_status: link,
        replica_of,
        traffic: Some(s.pod.traffic),
    }
}

/// Whether the caches serve, why not, in a sentence.
fn readiness(obs: &DragonflyObservation, cache: &DragonflyStatus) -> (bool, &'static str, String) {
    if let Some(message) = startup_failure(obs) {
        return (false, REASON_STARTUP_FAILING, message);
    }
    if let Some(t) = cache.takeover.as_ref().filter(|t| t.completed_at.is_none()) {
        return (
            false,
            "TakeoverInProgress",
            format!(
                "moving the Dragonfly master from {} to {}",
                t.from.as_deref().unwrap_or("-"),
                t.to
            ),
        );
    }
    let Some(master) = cache.master_site.as_deref().and_then(|m| obs.site(m)) else {
        return (
            false,
            "NoMaster",
            "no site's Dragonfly is master yet".into(),
        );
    };
    if !master.is_master() {
        return (
            false,
            "MasterUnavailable",
            format!(
                "the Dragonfly master at {} does not answer as master",
                master.name
            ),
        );
    }
    if master.pod.role_label != Some(CacheRole::Master) || !master.pod.traffic {
        return (
            false,
            "TrafficNotRouted",
            format!(
                "{}'s pod is not labelled master with traffic yet",
                master.name
            ),
        );
    }
    let Some(replica) = obs.other(&master.name) else {
        return (
            true,
            "Ready",
            format!("{} is the Dragonfly master", master.name),
        );
    };
    if !replica.answers() {
        return (
            false,
            "ReplicaUnavailable",
            format!(
                "{} is the Dragonfly master; {}'s Dragonfly does not answer",
                master.name, replica.name
            ),
        );
    }
    if !replica.in_stable_sync_with(master) {
        return (
            false,
            "ReplicaNotInSync",
            format!(
                "{} is the Dragonfly master; {}'s Dragonfly is not in stable sync with it",
                master.name, replica.name
            ),
        );
    }
    (
        true,
        "Ready",
        format!(
            "{} is the Dragonfly master; {} replicates in stable sync",
            master.name, replica.name
        ),
    )
}

/// Makes `site` the recorded master (with the data set it reports now).
fn confirm_master(cache: &mut DragonflyStatus, site: &CacheSiteObservation) {
    cache.master_site = Some(site.name.clone());
    cache.master_replid = site.replid().map(str::to_string);
}

/// Decides which site is master now when no move is in progress; starts a move when
/// the master was lost. True: hold still this decision (no labels, no REPLICAOF).
fn choose_master(
    ctx: &mut Ctx<'_>,
    obs: &DragonflyObservation,
    cache: &mut DragonflyStatus,
    actions: &mut Vec<CacheAction>,
) -> bool {
    let window = ctx.snap.knobs.detection_window;
    let now = ctx.now.mono;
    let Some(current) = cache
        .master_site
        .clone()
        .and_then(|m| obs.site(&m).cloned())
    else {
        // No master yet (a new group, or the status was lost): adopt a master that the
        // other site already replicates from, else make the desired site master.
        if let Some(m) = obs
            .sites
            .iter()
            .find(|m| m.is_master() && obs.other(&m.name).is_some_and(|o| o.replicates_from(m)))
        {
            confirm_master(cache, m);
            return false;
        }
        let Some(pick) = desired_master(ctx, cache).and_then(|d| obs.site(&d).cloned()) else {
            ctx.note("the Dragonfly master waits for MySQL's active site");
            return false;
        };
        match pick.info() {
            Some(CacheInfo::Master { .. }) => {
                confirm_master(cache, &pick);
                ctx.event(EventIntent::normal(
                    EventReason::DragonflyMasterMoved,
                    format!("{}'s Dragonfly is the cache master", pick.name),
                ));
            }
            Some(CacheInfo::Replica { .. }) => actions.push(CacheAction::PromoteInPlace {
                site: pick.name.clone(),
            }),
            None => ctx.note(format!("waiting for {}'s Dragonfly to answer", pick.name)),
        }
        return false;
    };
    match current.info() {
        Some(CacheInfo::Master { replid }) => {
            if cache.master_replid.is_none() || cache.master_replid == *replid {
                cache.master_replid.clone_from(replid);
                return false;
            }
            // Restarted: its data is gone. A replica that broke replication
            // (`--break_replication_on_master_restart`) kept the copy: it takes over.
            match obs.other(&current.name).filter(|o| o.is_master()) {
                Some(keeper) => {
                    let keeper = keeper.clone();
                    start_move(ctx, cache, &current.name, &keeper.name);
                    ctx.event(EventIntent::warning(
                        EventReason::DragonflyTakeoverFailed,
                        format!(
                            "the Dragonfly master at {} restarted empty; {} kept the cache and becomes master",
                            current.name, keeper.name
                        ),
                    ));
                    advance_move(ctx, obs, cache, actions);
                }
                None => {
                    // The replica may not have noticed yet: it breaks away when it
                    // reconnects. Repointing it now would wipe its copy; wait for it
                    // (one detection window), touching nothing.
                    let reconnecting = obs.other(&current.name).is_some_and(|o| {
                        matches!(
                            o.info(),
                            Some(CacheInfo::Replica {
                                link: CacheLink::Connecting,
                                ..
                            })
                        ) && o.replicates_from(&current)
                    });
                    let mark = Mark::DragonflyRestarted {
                        site: current.name.clone(),
                        replid: replid.clone().unwrap_or_default(),
                    };
                    if reconnecting && !ctx.phase_exceeded(mark, ctx.snap.knobs.detection_window) {
                        ctx.note(format!(
                            "the Dragonfly master at {} restarted; waiting for its replica to keep the cache",
                            current.name
                        ));
                        return true;
                    }
                    ctx.event(EventIntent::warning(
                        EventReason::DragonflyDegraded,
                        format!(
                            "the Dragonfly master at {} restarted and lost the cache; no replica kept a copy",
                            current.name
                        ),
                    ));
                    confirm_master(cache, &current);
                }
            }
        }
        Some(CacheInfo::Replica { .. }) => {
            // Made a replica behind our back (or by a move whose record was lost).
            match obs.other(&current.name) {
                Some(o) if o.is_master() && current.replicates_from(o) => {
                    let o = o.clone();
                    confirm_master(cache, &o);
                }
                _ => actions.push(CacheAction::PromoteInPlace {
                    site: current.name.clone(),
                }),
            }
        }
        None if current.lost(window, now) => match obs.other(&current.name) {
            Some(o) if o.answers() => {
                let o = o.name.clone();
                start_move(ctx, cache, &current.name, &o);
                advance_move(ctx, obs, cache, actions);
            }
            _ => ctx.note(format!(
                "the Dragonfly master at {} is lost and no other site's Dragonfly answers",
                current.name
            )),
        },
        None => {
            if let CacheProbe::Failing { since } = current.probe {
                ctx.deadline(since.plus(window));
            }
            ctx.note(format!(
                "the Dragonfly master at {} does not answer; waiting for the detection window",
                current.name
            ));
        }
    }
    false
}

/// Moves the master to MySQL's active site when it is elsewhere: by `REPLTAKEOVER` once
/// that site's replica is in stable sync (no session is lost), or at once in a planned
/// failover's `PromotingDragonfly`.
fn realign(
    ctx: &mut Ctx<'_>,
    obs: &DragonflyObservation,
    cache: &mut DragonflyStatus,
    actions: &mut Vec<CacheAction>,
) {
    let (Some(master), Some(desired)) = (cache.master_site.clone(), desired_master(ctx, cache))
    else {
        return;
    };
    if master == desired {
        return;
    }
    let (Some(m), Some(d)) = (obs.site(&master), obs.site(&desired)) else {
        return;
    };
    if !m.is_master() {
        return;
    }
    if planned_move(ctx) {
        start_move(ctx, cache, &master, &desired);
        return advance_move(ctx, obs, cache, actions);
    }
    // A realignment only starts from a settled master (its traffic back after a failed
    // attempt), and not again within the budget of a failed attempt to the same site.
    let settled = m.pod.role_label == Some(CacheRole::Master) && m.pod.traffic;
    let retry_at = cache
        .takeover
        .as_ref()
        .filter(|t| t.to == desired && t.result.as_deref() == Some("Failed"))
        .and_then(|t| t.completed_at.as_ref())
        .map(|at| at.0 + DRAGONFLY_BUDGET);
    if let Some(at) = retry_at
        && ctx.now.wall < at
    {
        ctx.note(format!(
            "the Dragonfly master stays at {master}; moving it to {desired} is retried later"
        ));
        return;
    }
    if settled && d.in_stable_sync_with(m) {
        start_move(ctx, cache, &master, &desired);
        advance_move(ctx, obs, cache, actions);
    } else {
        ctx.note(format!(
            "the Dragonfly master stays at {master} until {desired}'s replica is in stable sync"
        ));
    }
}

/// The memory mark that times one move (a new move to the same site is a new mark).
fn move_mark(mv: &DragonflyTakeoverStatus) -> Mark {
    Mark::DragonflyMove {
        to: mv.to.clone(),
        started_ms: mv.started_at.as_ref().map_or(0, |t| t.0.as_millisecond()),
    }
}

fn start_move(ctx: &mut Ctx<'_>, cache: &mut DragonflyStatus, from: &str, to: &str) {
    cache.takeover = Some(DragonflyTakeoverStatus {
        from: Some(from.to_string()),
        to: to.to_string(),
        started_at: Some(ctx.now.wall.into()),
        ..Default::default()
    });
}

/// Advances the move in `cache.takeover`: completes it once the target answers as
/// master; otherwise sends the next command (shed, then `REPLTAKEOVER`; after a failed
/// takeover `REPLICAOF NO ONE` when the old master is gone or a planned failover
/// needs the move); gives up after the budget, leaving the master where it was.
fn advance_move(
    ctx: &mut Ctx<'_>,
    obs: &DragonflyObservation,
    cache: &mut DragonflyStatus,
    actions: &mut Vec<CacheAction>,
) {
    let Some(mut mv) = cache.takeover.clone() else {
        return;
    };
    let from = mv.from.clone().unwrap_or_default();
    let mark = move_mark(&mv);
    let started = ctx.phase_started(mark.clone());
    let Some(to) = obs.site(&mv.to).cloned() else {
        return finish_move(
            ctx,
            cache,
            mv,
            started,
            false,
            "the target site is not in the spec",
        );
    };
    if to.is_master() {
        let preserved = mv.method.as_deref() == Some(METHOD_TAKEOVER);
        mv.sessions_preserved = Some(preserved);
        confirm_master(cache, &to);
        let how = mv
            .method
            .clone()
            .unwrap_or_else(|| "its replica having stopped replicating".into());
        mv.message = Some(format!(
            "{} is the Dragonfly master (by {how}); sessions {}",
            mv.to,
            if preserved {
                "preserved"
            } else {
                "not guaranteed"
            }
        ));
        return finish_move(ctx, cache, mv, started, true, "");
    }
    if ctx.phase_exceeded(mark, DRAGONFLY_BUDGET) {
        return finish_move(
            ctx,
            cache,
            mv,
            started,
            false,
            &format!(
                "{} did not become master within {DRAGONFLY_BUDGET:?}",
                to.name
            ),
        );
    }
    let old = obs.site(&from);
    let old_intact = old.is_some_and(|o| {
        o.is_master()
            && (cache.master_replid.is_none() || o.replid() == cache.master_replid.as_deref())
    });
    let shed = CacheAction::Label {
        site: from.clone(),
        role: CacheRole::Master,
        traffic: false,
    };
    let forced = planned_move(ctx) || !old_intact;
    match mv.method.as_deref() {
        None if old_intact && old.is_some_and(|o| to.in_stable_sync_with(o)) => {
            mv.method = Some(METHOD_TAKEOVER.into());
            mv.message = Some(format!(
                "REPLTAKEOVER on {} after shedding {from}'s traffic",
                to.name
            ));
            actions.push(shed);
            actions.push(CacheAction::Takeover {
                site: to.name.clone(),
            });
        }
        None | Some(METHOD_TAKEOVER) | Some(METHOD_NO_ONE) if forced && to.answers() => {
            if mv.method.as_deref() == Some(METHOD_TAKEOVER) {
                ctx.event(EventIntent::warning(
                    EventReason::DragonflyTakeoverFailed,
                    format!(
                        "REPLTAKEOVER from {from} to {} failed; falling back to REPLICAOF NO ONE (sessions not preserved)",
                        to.name
                    ),
                ));
            }
            mv.method = Some(METHOD_NO_ONE.into());
            mv.message = Some(format!(
                "REPLICAOF NO ONE on {} after shedding {from}'s traffic",
                to.name
            ));
            if old.is_some_and(|o| o.pod.exists) {
                actions.push(shed);
            }
            actions.push(CacheAction::PromoteInPlace {
                site: to.name.clone(),
            });
        }
        Some(METHOD_TAKEOVER) if !forced => {
            // A realignment with the old master intact: keep it, try again later.
            return finish_move(
                ctx,
                cache,
                mv,
                started,
                false,
                &format!(
                    "REPLTAKEOVER on {} failed; the master stays at {from}",
                    to.name
                ),
            );
        }
        _ => {
            mv.message = Some(format!("waiting for {}'s Dragonfly to answer", to.name));
        }
    }
    cache.takeover = Some(mv);
}

fn finish_move(
    ctx: &mut Ctx<'_>,
    cache: &mut DragonflyStatus,
    mut mv: DragonflyTakeoverStatus,
    started: Millis,
    succeeded: bool,
    why: &str,
) {
    let duration = elapsed_ms(
        Some(started),
        ctx.now.mono,
        mv.started_at.as_ref(),
        ctx.now.wall,
    );
    mv.completed_at = Some(ctx.now.wall.into());
    mv.duration_ms = Some(as_i64(duration));
    mv.result = Some(if succeeded { "Succeeded" } else { "Failed" }.into());
    let from = mv.from.clone().unwrap_or_default();
    if succeeded {
        ctx.event(EventIntent::normal(
            EventReason::DragonflyMasterMoved,
            format!(
                "Dragonfly master moved from {from} to {} by {} in {duration}ms; sessions {}",
                mv.to,
                mv.method.as_deref().unwrap_or("none"),
                if mv.sessions_preserved == Some(true) {
                    "preserved"
                } else {
                    "not preserved"
                }
            ),
        ));
    } else {
        mv.sessions_preserved = Some(false);
        mv.method.get_or_insert_with(|| METHOD_NONE.to_string());
        mv.message = Some(why.to_string());
        ctx.event(EventIntent::warning(
            EventReason::DragonflyTakeoverFailed,
            format!(
                "moving the Dragonfly master from {from} to {} failed: {why}",
                mv.to
            ),
        ));
    }
    ctx.metrics.push(MetricIntent::DragonflyTakeover {
        method: match mv.method.as_deref() {
            Some(METHOD_TAKEOVER) => METHOD_TAKEOVER,
            Some(METHOD_NO_ONE) => METHOD_NO_ONE,
            _ => METHOD_NONE,
        },
        succeeded,
    });
    cache.takeover = Some(mv);
}

/// Labels and replication around a settled master: the other site is shed and labelled
/// replica first, then the master gets role and traffic (so that no instant has two
/// pods matching the Service); the other site replicates from the master.
fn converge(obs: &DragonflyObservation, cache: &DragonflyStatus, actions: &mut Vec<CacheAction>) {
    let Some(master) = cache.master_site.as_deref().and_then(|m| obs.site(m)) else {
        // No master: still never two pods with traffic.
        shed_all_but_one(obs, actions);
        return;
    };
    if !master.is_master() {
        shed_all_but_one(obs, actions);
        return;
    }
    let other = obs.other(&master.name);
    let master_labelled = master.pod.role_label == Some(CacheRole::Master) && master.pod.traffic;
    if let Some(o) = other
        && o.pod.exists
        && (!master_labelled || o.pod.traffic || o.pod.role_label != Some(CacheRole::Replica))
    {
        actions.push(CacheAction::Label {
            site: o.name.clone(),
            role: CacheRole::Replica,
            traffic: false,
        });
    }
    if !master_labelled && master.pod.exists {
        actions.push(CacheAction::Label {
            site: master.name.clone(),
            role: CacheRole::Master,
            traffic: true,
        });
    }
    if let Some(o) = other
        && o.answers()
        && !o.replicates_from(master)
    {
        actions.push(CacheAction::ReplicaOf {
            site: o.name.clone(),
            master: master.name.clone(),
        });
    }
}

/// Two pods with traffic and no settled master: shed all but the first.
fn shed_all_but_one(obs: &DragonflyObservation, actions: &mut Vec<CacheAction>) {
    for s in obs.sites.iter().filter(|s| s.pod.traffic).skip(1) {
        actions.push(CacheAction::Label {
            site: s.name.clone(),
            role: s.pod.role_label.unwrap_or(CacheRole::Replica),
            traffic: false,
        });
    }
}

/// Whether `target`'s Dragonfly is ready to take over from the current master (for the
/// planned failover's `WaitingForDragonflySync`): `Ok` when it is in stable sync with
/// the master or is the master already; `Err` says what it waits for.
pub(super) fn sync_for_takeover(ctx: &Ctx<'_>, target: &str) -> Option<Result<(), String>> {
    let obs = ctx.snap.dragonfly.as_ref()?;
    let cache = ctx.status.dragonfly.as_ref();
    let master = cache.and_then(|c| c.master_site.as_deref());
    if master == Some(target) {
        return Some(Ok(()));
    }
    let Some(m) = master.and_then(|m| obs.site(m)) else {
        return Some(Err("a Dragonfly master".to_string()));
    };
    let Some(t) = obs.site(target) else {
        return Some(Err(format!("{target}'s Dragonfly")));
    };
    if t.in_stable_sync_with(m) {
        Some(Ok(()))
    } else {
        Some(Err(format!(
            "{target}'s Dragonfly to reach stable sync with {}",
            m.name
        )))
    }
}

/// The planned failover's view of the move to `target` (`PromotingDragonfly`): `None`
/// while it is in progress, else how the target became master (method, sessions
/// preserved) or why it did not.
pub(super) fn planned_move_outcome(
    ctx: &Ctx<'_>,
    target: &str,
    since: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
) -> Option<crate::api::PlannedFailoverDragonfly> {
    let cache = ctx.status.dragonfly.as_ref()?;
    // Only a move started by this failover counts (not one to the same site before).
    let mv = cache.takeover.as_ref().filter(|t| {
        t.to == target
            && match (&t.started_at, since) {
                (Some(at), Some(since)) => at.0 >= since.0,
                _ => true,
            }
    });
    match mv {
        Some(t) if t.completed_at.is_none() => None,
        Some(t) if cache.master_site.as_deref() == Some(target) || t.result.is_some() => {
            Some(crate::api::PlannedFailoverDragonfly {
                sessions_preserved: t.sessions_preserved,
                method: t.method.clone(),
            })
        }
        _ if cache.master_site.as_deref() == Some(target) => {
            Some(crate::api::PlannedFailoverDragonfly {
                sessions_preserved: Some(true),
                method: None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "dragonfly_tests.rs"]
mod cache_tests;

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
