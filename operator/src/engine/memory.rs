//! The engine's memory between decisions: monotonic marks that only matter within one
//! operator process (when a phase was entered, when the old primary was fenced, which
//! sites were asked to clone). Marks are a typed `Mark`, never text, so a misspelt key
//! cannot silently restart a bound. Plain data shared by `snapshot` and `decision`.

use std::collections::BTreeMap;

use super::time::Millis;
use crate::api::{EmergencyFailoverPhase, PlannedFailoverPhase};

/// Something the engine times or says once, within one failover or request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    /// The emergency failover from `from` to `to` started: its duration counts from here.
    EmergencyStarted { from: String, to: String },
    /// The emergency failover from `from` to `to` entered `phase` (bounds the drain).
    EmergencyPhase {
        from: String,
        to: String,
        phase: EmergencyFailoverPhase,
    },
    /// A failover from `from` was held back because `candidate` lacks `missing`
    /// transactions: said once per distinct gap.
    EmergencyBlocked {
        from: String,
        candidate: String,
        missing: u64,
    },
    /// The planned failover to `target` was accepted: its duration counts from here.
    PlannedStarted { target: String },
    /// The planned failover to `target` entered `phase` (each phase is bounded).
    PlannedPhase {
        target: String,
        phase: PlannedFailoverPhase,
    },
    /// The move of the Dragonfly master to `to` that started at wall-clock `started_ms`
    /// (its identity, from the status) is timed against the Dragonfly budget.
    DragonflyMove { to: String, started_ms: i64 },
    /// The Dragonfly master at `site` was seen restarted (new `replid`): its replica
    /// gets one detection window to break away with the cache.
    DragonflyRestarted { site: String, replid: String },
}

/// What one decision hands to the next. Lost on restart, which only makes the next
/// bound start later: conservative.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EngineMemory {
    /// When this process first saw each mark.
    marks: BTreeMap<Mark, Millis>,
    /// When this process issued the planned failover's fence of the old primary.
    planned_fenced_at: Option<Millis>,
    /// Sites this process has already asked to CLONE from the primary.
    clone_requested: BTreeMap<String, Millis>,
}

/// The previous decision's memory and the memory this decision builds. Only what is
/// touched again is carried over, so memory does not outlive the phases it times.
#[derive(Debug)]
pub(crate) struct Recall<'a> {
    old: &'a EngineMemory,
    new: EngineMemory,
}

impl<'a> Recall<'a> {
    pub(crate) fn new(old: &'a EngineMemory) -> Self {
        Self {
            old,
            new: EngineMemory::default(),
        }
    }

    /// When this process first saw `mark`: `now` if this is the first time (including
    /// after a restart). The mark is kept.
    pub(crate) fn entered(&mut self, mark: Mark, now: Millis) -> Millis {
        let at = self.old.marks.get(&mark).copied().unwrap_or(now);
        self.new.marks.insert(mark, at);
        at
    }

    /// True the first time this process sees `mark` (it is kept while touched in every
    /// decision): for things said once per occurrence, not once per cycle.
    pub(crate) fn first_time(&mut self, mark: Mark, now: Millis) -> bool {
        let first = !self.old.marks.contains_key(&mark);
        self.entered(mark, now);
        first
    }

    pub(crate) fn planned_fenced_at(&self) -> Option<Millis> {
        self.new.planned_fenced_at.or(self.old.planned_fenced_at)
    }

    /// Keeps the planned fence's instant, or records `now` as that instant.
    pub(crate) fn keep_planned_fenced_at(&mut self, now: Millis) {
        self.new.planned_fenced_at = Some(self.old.planned_fenced_at.unwrap_or(now));
    }

    /// Whether this process already asked `site` to clone (and keeps the mark).
    pub(crate) fn clone_requested(&mut self, site: &str) -> bool {
        match self.old.clone_requested.get(site) {
            Some(at) => {
                self.new.clone_requested.insert(site.to_string(), *at);
                true
            }
            None => false,
        }
    }

    /// When this process asked `site` to clone, if it did; unlike
    /// [`Recall::clone_requested`] the mark is not kept: a caller that wants it again
    /// marks it again.
    pub(crate) fn clone_requested_at(&self, site: &str) -> Option<Millis> {
        self.old.clone_requested.get(site).copied()
    }

    pub(crate) fn mark_clone_requested(&mut self, site: &str, now: Millis) {
        self.new.clone_requested.insert(site.to_string(), now);
    }

    pub(crate) fn into_memory(self) -> EngineMemory {
        self.new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(from: &str, to: &str) -> Mark {
        Mark::EmergencyPhase {
            from: from.into(),
            to: to.into(),
            phase: EmergencyFailoverPhase::DrainingRelayLog,
        }
    }

    /// One decision at `now` that touches `marks`, given the previous memory.
    fn decide(old: &EngineMemory, now: u64, marks: &[Mark]) -> (Vec<Millis>, EngineMemory) {
        let mut recall = Recall::new(old);
        let at = marks
            .iter()
            .map(|m| recall.entered(m.clone(), Millis(now)))
            .collect();
        (at, recall.into_memory())
    }

    #[test]
    fn a_mark_keeps_its_first_instant_while_touched_and_is_forgotten_when_not() {
        let (at, memory) = decide(&EngineMemory::default(), 1_000, &[drain("iad", "pdx")]);
        assert_eq!(at, [Millis(1_000)]);
        let (at, memory) = decide(&memory, 5_000, &[drain("iad", "pdx")]);
        assert_eq!(at, [Millis(1_000)], "kept while touched");
        let (_, memory) = decide(&memory, 6_000, &[]);
        let (at, _) = decide(&memory, 7_000, &[drain("iad", "pdx")]);
        assert_eq!(at, [Millis(7_000)], "untouched for a decision: forgotten");
    }

    #[test]
    fn marks_differing_in_any_field_are_distinct() {
        let (_, memory) = decide(&EngineMemory::default(), 1_000, &[drain("iad", "pdx")]);
        let others = [
            drain("pdx", "iad"),
            drain("iad", "sfo"),
            Mark::EmergencyPhase {
                from: "iad".into(),
                to: "pdx".into(),
                phase: EmergencyFailoverPhase::Fencing,
            },
            Mark::EmergencyStarted {
                from: "iad".into(),
                to: "pdx".into(),
            },
            Mark::PlannedPhase {
                target: "pdx".into(),
                phase: PlannedFailoverPhase::Promoting,
            },
        ];
        for other in others {
            let (at, _) = decide(&memory, 2_000, std::slice::from_ref(&other));
            assert_eq!(at, [Millis(2_000)], "{other:?} is a mark of its own");
        }
    }

    #[test]
    fn first_time_is_true_once_per_occurrence() {
        let blocked = |missing| Mark::EmergencyBlocked {
            from: "iad".into(),
            candidate: "pdx".into(),
            missing,
        };
        let empty = EngineMemory::default();
        let mut recall = Recall::new(&empty);
        assert!(recall.first_time(blocked(5), Millis(1)));
        let memory = recall.into_memory();
        let mut recall = Recall::new(&memory);
        assert!(!recall.first_time(blocked(5), Millis(2)));
        assert!(
            recall.first_time(blocked(6), Millis(2)),
            "a new gap is said again"
        );
    }

    #[test]
    fn the_planned_fence_instant_and_clone_requests_carry_over_only_when_kept() {
        let empty = EngineMemory::default();
        let mut recall = Recall::new(&empty);
        assert_eq!(recall.planned_fenced_at(), None);
        recall.keep_planned_fenced_at(Millis(10));
        assert!(!recall.clone_requested("iad"));
        recall.mark_clone_requested("iad", Millis(10));
        let memory = recall.into_memory();

        let mut recall = Recall::new(&memory);
        assert_eq!(recall.planned_fenced_at(), Some(Millis(10)));
        recall.keep_planned_fenced_at(Millis(20));
        assert_eq!(
            recall.planned_fenced_at(),
            Some(Millis(10)),
            "the first fence"
        );
        assert!(recall.clone_requested("iad"));
        let memory = recall.into_memory();

        let recall = Recall::new(&memory);
        let memory = recall.into_memory();
        let mut recall = Recall::new(&memory);
        assert_eq!(recall.planned_fenced_at(), None, "not kept: forgotten");
        assert!(!recall.clone_requested("iad"));
    }
}
