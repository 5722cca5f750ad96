//! Safety invariants and availability figures, as pure functions over a recorded
//! `History`: single-writer, no-acknowledged-write-lost, write-unavailability windows
//! and the RTO of each failover. No I/O here: the runner gathers, these decide.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::workload::{History, Millis, WritabilitySample, WriteOutcome, WriteRecord};

/// A span during which a site accepted writes, `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WritableInterval {
    pub site: String,
    pub from: Millis,
    pub to: Millis,
    /// Where the interval comes from: `observed` (models or read_only polling) or
    /// `ack #seq` (a write the site acknowledged between `from` and `to`).
    pub evidence: String,
}

/// Turns writability samples into intervals: a site is writable from a sample that says
/// so until its next sample that does not (or `end` if none does).
pub fn writable_intervals(samples: &[WritabilitySample], end: Millis) -> Vec<WritableInterval> {
    let mut sorted: Vec<&WritabilitySample> = samples.iter().collect();
    sorted.sort_by(|a, b| (a.at, &a.site).cmp(&(b.at, &b.site)));
    let mut open: std::collections::BTreeMap<&str, Millis> = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for s in sorted {
        match (s.writable, open.get(s.site.as_str()).copied()) {
            (true, None) => {
                open.insert(&s.site, s.at);
            }
            (false, Some(from)) => {
                open.remove(s.site.as_str());
                out.push(WritableInterval {
                    site: s.site.clone(),
                    from,
                    to: s.at,
                    evidence: "observed".into(),
                });
            }
            _ => {}
        }
    }
    for (site, from) in open {
        out.push(WritableInterval {
            site: site.to_owned(),
            from,
            to: end,
            evidence: "observed".into(),
        });
    }
    out.sort_by(|a, b| (a.from, &a.site).cmp(&(b.from, &b.site)));
    out
}

/// The observed writable intervals of `history`: an observation gap ends a site's
/// writable interval at the gap's start (what the site did while unobserved is not
/// evidence either way; [`blind_fault_windows`] is what refuses a run that saw nothing).
pub fn observed_writable_intervals(history: &History, end: Millis) -> Vec<WritableInterval> {
    let mut samples = history.writability.clone();
    samples.extend(history.observation_gaps.iter().map(|g| WritabilitySample {
        at: g.from,
        site: g.site.clone(),
        writable: false,
    }));
    writable_intervals(&samples, end)
}

/// A site the runner could not observe for the whole of a fault's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlindFault {
    pub site: String,
    pub fault_seq: u64,
    pub fault: String,
    pub from: Millis,
    pub to: Millis,
    pub reason: String,
}

impl std::fmt::Display for BlindFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "site {} unobserved through fault #{} {} [{}, {}): {}",
            self.site, self.fault_seq, self.fault, self.from, self.to, self.reason
        )
    }
}

/// single-writer's evidence check: each (site, fault window) where one observation gap
/// covers the whole window, so that single-writer cannot have seen that site's
/// writability while the fault was in effect. Windows still open end at `end`.
pub fn blind_fault_windows(history: &History, end: Millis) -> Vec<BlindFault> {
    let mut blind = Vec::new();
    for w in &history.faults {
        let to = w.to.unwrap_or(end);
        for g in &history.observation_gaps {
            let gap_to = g.to.unwrap_or(end);
            if g.from <= w.from && to <= gap_to {
                blind.push(BlindFault {
                    site: g.site.clone(),
                    fault_seq: w.seq,
                    fault: w.fault.clone(),
                    from: w.from,
                    to,
                    reason: g.reason.clone(),
                });
            }
        }
    }
    blind
}

/// Two sites accepting writes at the same instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SingleWriterViolation {
    pub first: WritableInterval,
    pub second: WritableInterval,
    pub overlap_from: Millis,
    pub overlap_to: Millis,
}

impl std::fmt::Display for SingleWriterViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) and {} ({}) both writable during [{}, {}) ({} ms)",
            self.first.site,
            self.first.evidence,
            self.second.site,
            self.second.evidence,
            self.overlap_from,
            self.overlap_to,
            self.overlap_to - self.overlap_from
        )
    }
}

/// single-writer: no two different sites' writable intervals overlap.
///
/// Observed intervals overlap when they share any instant. An acknowledged write is
/// weaker evidence (the commit happened somewhere inside `[invoked, completed]`), so an
/// ack counts as a violation only when its whole window lies inside another site's
/// observed writable interval.
pub fn single_writer(history: &History, end: Millis) -> Vec<SingleWriterViolation> {
    let observed = observed_writable_intervals(history, end);
    let mut violations = Vec::new();
    for (i, a) in observed.iter().enumerate() {
        for b in &observed[i + 1..] {
            if a.site != b.site && a.from < b.to && b.from < a.to {
                violations.push(SingleWriterViolation {
                    first: a.clone(),
                    second: b.clone(),
                    overlap_from: a.from.max(b.from),
                    overlap_to: a.to.min(b.to),
                });
            }
        }
    }
    for w in &history.writes {
        let Some(site) = w.acked_site() else { continue };
        for b in &observed {
            if b.site != site && b.from <= w.invoked_at && w.completed_at < b.to {
                violations.push(SingleWriterViolation {
                    first: WritableInterval {
                        site: site.to_owned(),
                        from: w.invoked_at,
                        to: w.completed_at,
                        evidence: format!("ack #{}", w.seq),
                    },
                    second: b.clone(),
                    overlap_from: w.invoked_at,
                    overlap_to: w.completed_at,
                });
            }
        }
    }
    violations
}

/// no-acknowledged-write-lost: the acknowledged increments missing from `committed`
/// (the increment numbers present on the final primary), in order.
pub fn acknowledged_writes_lost(history: &History, committed: &BTreeSet<u64>) -> Vec<u64> {
    history
        .acknowledged()
        .map(|w| w.seq)
        .filter(|seq| !committed.contains(seq))
        .collect()
}

/// Increment numbers as sorted, merged ranges ("1-5, 9, 12-40"): a lost run of a
/// thousand increments reads as one range, not a thousand numbers.
pub fn as_ranges(numbers: &[u64]) -> String {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for n in sorted {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => ranges.push((n, n)),
        }
    }
    ranges
        .iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A period in which the client could not write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnavailabilityWindow {
    /// When the first failed attempt after an ack was made.
    pub from: Millis,
    /// When the next ack completed (or the end of the run if none did).
    pub to: Millis,
    pub failed_attempts: u64,
    /// True when writes never came back before the run ended.
    pub open: bool,
}

impl UnavailabilityWindow {
    pub fn duration_ms(&self) -> Millis {
        self.to - self.from
    }
}

/// Write-unavailability windows: each maximal run of failed attempts, from the first
/// failure's invocation to the completion of the next acknowledged write.
pub fn unavailability_windows(writes: &[WriteRecord], end: Millis) -> Vec<UnavailabilityWindow> {
    let mut out = Vec::new();
    let mut current: Option<UnavailabilityWindow> = None;
    for w in writes {
        match (&w.outcome, current.as_mut()) {
            (WriteOutcome::Failed { .. }, Some(win)) => win.failed_attempts += 1,
            (WriteOutcome::Failed { .. }, None) => {
                current = Some(UnavailabilityWindow {
                    from: w.invoked_at,
                    to: w.invoked_at,
                    failed_attempts: 1,
                    open: true,
                });
            }
            (WriteOutcome::Acked { .. }, Some(_)) => {
                if let Some(mut win) = current.take() {
                    win.to = w.completed_at;
                    win.open = false;
                    out.push(win);
                }
            }
            (WriteOutcome::Acked { .. }, None) => {}
        }
    }
    if let Some(mut win) = current {
        win.to = end.max(win.from);
        out.push(win);
    }
    out
}

/// The longest window, if there was any.
pub fn longest_unavailability(windows: &[UnavailabilityWindow]) -> Option<&UnavailabilityWindow> {
    windows.iter().max_by_key(|w| (w.duration_ms(), -w.from))
}

/// A change of the site acknowledging writes, and how long writes were down for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failover {
    pub from_site: String,
    pub to_site: String,
    /// The last ack from the old site completed here.
    pub last_old_ack: Millis,
    /// The first ack from the new site completed here.
    pub first_new_ack: Millis,
    /// Recovery time: from the first failed write after the last old-site ack (or the
    /// last old-site ack when nothing failed, as in a clean planned failover) to the
    /// first new-site ack.
    pub rto_ms: Millis,
}

/// Every failover visible in the client history, in order.
pub fn failovers(writes: &[WriteRecord]) -> Vec<Failover> {
    let mut out = Vec::new();
    let mut last_ack: Option<(&str, Millis)> = None;
    let mut first_failure_since_ack: Option<Millis> = None;
    for w in writes {
        match &w.outcome {
            WriteOutcome::Failed { .. } => {
                first_failure_since_ack.get_or_insert(w.invoked_at);
            }
            WriteOutcome::Acked { site, .. } => {
                if let Some((old_site, old_at)) = last_ack
                    && old_site != site
                {
                    let start = first_failure_since_ack.unwrap_or(old_at);
                    out.push(Failover {
                        from_site: old_site.to_owned(),
                        to_site: site.clone(),
                        last_old_ack: old_at,
                        first_new_ack: w.completed_at,
                        rto_ms: w.completed_at - start,
                    });
                }
                last_ack = Some((site, w.completed_at));
                first_failure_since_ack = None;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(seq: u64, at: Millis, site: &str) -> WriteRecord {
        WriteRecord {
            seq,
            invoked_at: at,
            completed_at: at + 2,
            outcome: WriteOutcome::Acked {
                value: seq,
                site: site.into(),
            },
        }
    }
    fn fail(seq: u64, at: Millis) -> WriteRecord {
        WriteRecord {
            seq,
            invoked_at: at,
            completed_at: at + 1,
            outcome: WriteOutcome::Failed {
                error: "refused".into(),
            },
        }
    }
    fn sample(at: Millis, site: &str, writable: bool) -> WritabilitySample {
        WritabilitySample {
            at,
            site: site.into(),
            writable,
        }
    }
    fn history(writability: Vec<WritabilitySample>, writes: Vec<WriteRecord>) -> History {
        History {
            writes,
            cache: vec![],
            writability,
            ..History::default()
        }
    }

    /// Polls as the runner records them: (at, site, Some(writable) | None = unknown).
    fn polled(
        polls: &[(Millis, &str, Option<bool>)],
        faults: &[(Millis, Option<Millis>)],
    ) -> History {
        let mut h = History::default();
        for (at, site, state) in polls {
            h.record_poll(*at, site, *state, "tunnel refused");
        }
        for (i, (from, to)) in faults.iter().enumerate() {
            h.faults.push(crate::workload::FaultWindow {
                seq: i as u64 + 1,
                fault: "network-partition iad".into(),
                from: *from,
                to: *to,
            });
        }
        h
    }

    #[test]
    fn unknown_is_not_recorded_as_not_writable_and_blind_fault_windows_fail() {
        // (name, polls, fault windows, end, expected blind (site, seq), violations)
        type Case = (
            &'static str,
            Vec<(Millis, &'static str, Option<bool>)>,
            Vec<(Millis, Option<Millis>)>,
            Vec<(&'static str, u64)>,
            usize,
        );
        let cases: Vec<Case> = vec![
            (
                "iad unknown through the whole partition: blind",
                vec![
                    (0, "iad", Some(true)),
                    (0, "pdx", Some(false)),
                    (100, "iad", None),
                    (400, "pdx", Some(true)),
                    (900, "iad", Some(false)),
                ],
                vec![(200, Some(800))],
                vec![("iad", 1)],
                0,
            ),
            (
                "a fault window still open at the end, site unknown to the end: blind",
                vec![(0, "iad", Some(true)), (100, "iad", None)],
                vec![(200, None)],
                vec![("iad", 1)],
                0,
            ),
            (
                "observed once inside the window: not blind",
                vec![
                    (0, "iad", Some(true)),
                    (100, "iad", None),
                    (500, "iad", Some(false)),
                    (600, "iad", None),
                ],
                vec![(200, Some(800))],
                vec![],
                0,
            ),
            (
                "unknown outside any fault window: not blind",
                vec![
                    (0, "iad", Some(false)),
                    (10, "iad", None),
                    (50, "iad", Some(false)),
                ],
                vec![(200, Some(800))],
                vec![],
                0,
            ),
            (
                "back from a gap still writable while pdx is writable: a violation",
                vec![
                    (0, "iad", Some(true)),
                    (100, "iad", None),
                    (300, "pdx", Some(true)),
                    (500, "iad", Some(true)),
                ],
                vec![],
                vec![],
                1,
            ),
            (
                "writable before a gap, pdx writable only inside it: no observed overlap",
                vec![
                    (0, "iad", Some(true)),
                    (100, "iad", None),
                    (300, "pdx", Some(true)),
                    (500, "iad", Some(false)),
                ],
                vec![],
                vec![],
                0,
            ),
        ];
        for (name, polls, faults, blind, violations) in cases {
            let h = polled(&polls, &faults);
            let got: Vec<(String, u64)> = blind_fault_windows(&h, 1000)
                .into_iter()
                .map(|b| (b.site, b.fault_seq))
                .collect();
            let want: Vec<(String, u64)> =
                blind.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect();
            assert_eq!(got, want, "{name}");
            assert_eq!(single_writer(&h, 1000).len(), violations, "{name}");
            assert!(
                h.writability.iter().all(|s| polls
                    .iter()
                    .any(|(at, site, w)| *at == s.at && *site == s.site && *w == Some(s.writable))),
                "{name}: every sample is an observed poll, none invented for unknown"
            );
        }
    }

    #[test]
    fn single_writer_table() {
        let cases: Vec<(&str, History, usize)> = vec![
            (
                "clean handover: iad fenced at 100, pdx writable at 150",
                history(
                    vec![
                        sample(0, "iad", true),
                        sample(100, "iad", false),
                        sample(150, "pdx", true),
                    ],
                    vec![],
                ),
                0,
            ),
            (
                "handover at the same instant is not an overlap (half-open)",
                history(
                    vec![
                        sample(0, "iad", true),
                        sample(100, "iad", false),
                        sample(100, "pdx", true),
                    ],
                    vec![],
                ),
                0,
            ),
            (
                "SPLIT BRAIN: pdx promoted at 90 while iad writable until 100",
                history(
                    vec![
                        sample(0, "iad", true),
                        sample(90, "pdx", true),
                        sample(100, "iad", false),
                    ],
                    vec![],
                ),
                1,
            ),
            (
                "SPLIT BRAIN: both writable to the end of the run",
                history(
                    vec![sample(0, "iad", true), sample(500, "pdx", true)],
                    vec![],
                ),
                1,
            ),
            (
                "repeated writable samples of one site are one interval",
                history(
                    vec![
                        sample(0, "iad", true),
                        sample(10, "iad", true),
                        sample(20, "iad", false),
                    ],
                    vec![],
                ),
                0,
            ),
            (
                "SPLIT BRAIN by ack: iad acked a write entirely inside pdx's writable interval",
                history(vec![sample(0, "pdx", true)], vec![ack(1, 50, "iad")]),
                1,
            ),
            (
                "ack straddling the handover is not proof",
                history(vec![sample(51, "pdx", true)], vec![ack(1, 50, "iad")]),
                0,
            ),
            (
                "acks from the writable site itself are fine",
                history(vec![sample(0, "pdx", true)], vec![ack(1, 50, "pdx")]),
                0,
            ),
        ];
        for (name, h, want) in cases {
            let v = single_writer(&h, 1000);
            assert_eq!(v.len(), want, "{name}: {v:?}");
        }
    }

    #[test]
    fn split_brain_violation_names_sites_and_overlap() {
        let h = history(
            vec![
                sample(0, "iad", true),
                sample(90, "pdx", true),
                sample(100, "iad", false),
            ],
            vec![],
        );
        let v = single_writer(&h, 1000);
        assert_eq!((v[0].overlap_from, v[0].overlap_to), (90, 100));
        assert_eq!(
            v[0].to_string(),
            "iad (observed) and pdx (observed) both writable during [90, 100) (10 ms)"
        );
    }

    #[test]
    fn ranges_merge_runs_and_keep_singletons() {
        assert_eq!(as_ranges(&[]), "");
        assert_eq!(as_ranges(&[7]), "7");
        assert_eq!(as_ranges(&[3, 1, 2, 9, 12, 11, 13, 9]), "1-3, 9, 11-13");
    }

    #[test]
    fn acknowledged_writes_lost_table() {
        let h = history(
            vec![],
            vec![
                ack(1, 0, "iad"),
                fail(2, 10),
                ack(3, 20, "iad"),
                ack(4, 30, "pdx"),
            ],
        );
        let cases: Vec<(&str, Vec<u64>, Vec<u64>)> = vec![
            ("all present", vec![1, 3, 4], vec![]),
            ("failed write absent is fine", vec![1, 3, 4], vec![]),
            (
                "failed write present is fine (indeterminate)",
                vec![1, 2, 3, 4],
                vec![],
            ),
            ("LOST: acked 3 missing after failover", vec![1, 4], vec![3]),
            ("LOST: everything", vec![], vec![1, 3, 4]),
        ];
        for (name, committed, want) in cases {
            let committed: BTreeSet<u64> = committed.into_iter().collect();
            assert_eq!(acknowledged_writes_lost(&h, &committed), want, "{name}");
        }
    }

    #[test]
    fn unavailability_windows_and_longest() {
        let writes = vec![
            ack(1, 0, "iad"),
            fail(2, 100),
            fail(3, 200),
            ack(4, 300, "pdx"),
            ack(5, 400, "pdx"),
            fail(6, 500),
            ack(7, 600, "pdx"),
            fail(8, 700),
        ];
        let w = unavailability_windows(&writes, 1000);
        assert_eq!(w.len(), 3);
        assert_eq!(
            (w[0].from, w[0].to, w[0].failed_attempts, w[0].open),
            (100, 302, 2, false)
        );
        assert_eq!((w[1].from, w[1].to, w[1].duration_ms()), (500, 602, 102));
        assert_eq!((w[2].from, w[2].to, w[2].open), (700, 1000, true));
        assert_eq!(longest_unavailability(&w).unwrap().from, 700);
        assert!(unavailability_windows(&[ack(1, 0, "iad")], 10).is_empty());
        assert!(longest_unavailability(&[]).is_none());
    }

    #[test]
    fn failovers_and_rto() {
        let emergency = vec![
            ack(1, 0, "iad"),
            fail(2, 100),
            fail(3, 200),
            ack(4, 300, "pdx"),
        ];
        let f = failovers(&emergency);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].from_site.as_str(), f[0].to_site.as_str()),
            ("iad", "pdx")
        );
        assert_eq!(
            f[0].rto_ms, 202,
            "from the first failure at 100 to the pdx ack at 302"
        );

        let planned_clean = vec![ack(1, 0, "iad"), ack(2, 100, "pdx")];
        assert_eq!(
            failovers(&planned_clean)[0].rto_ms,
            100,
            "last iad ack at 2 -> pdx ack at 102"
        );

        let same_site_recovery = vec![ack(1, 0, "iad"), fail(2, 100), ack(3, 200, "iad")];
        assert!(failovers(&same_site_recovery).is_empty());

        let back_and_forth = vec![
            ack(1, 0, "iad"),
            ack(2, 10, "pdx"),
            fail(3, 20),
            ack(4, 30, "iad"),
        ];
        let f = failovers(&back_and_forth);
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].rto_ms, 12);
    }
}

/// How many times the cache counter went backwards: a successful INCR through the
/// Dragonfly Service that answered less than the previous successful one (the cache
/// master changed and the new one lacked increments: sessions were lost).
pub fn cache_resets(cache: &[crate::workload::CacheRecord]) -> u64 {
    let mut last: Option<u64> = None;
    let mut resets = 0;
    for record in cache {
        if let Ok(value) = record.result {
            if last.is_some_and(|previous| value < previous) {
                resets += 1;
            }
            last = Some(value);
        }
    }
    resets
}

#[cfg(test)]
mod cache_reset_tests {
    use super::*;
    use crate::workload::CacheRecord;

    #[test]
    fn a_counter_that_goes_backwards_counts_as_a_reset_and_errors_do_not() {
        let record = |at: i64, result: Result<u64, &str>| CacheRecord {
            at,
            result: result.map_err(str::to_string),
        };
        assert_eq!(cache_resets(&[]), 0);
        let steady = [record(1, Ok(1)), record(2, Err("down")), record(3, Ok(2))];
        assert_eq!(cache_resets(&steady), 0);
        let lost = [
            record(1, Ok(5)),
            record(2, Ok(6)),
            record(3, Ok(1)),
            record(4, Ok(2)),
        ];
        assert_eq!(cache_resets(&lost), 1);
    }
}
