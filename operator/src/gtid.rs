//! MySQL GTID sets: parsing and printing MySQL's text form, and the set algebra the
//! failover engine reasons with (is the candidate's set a superset of the survivor's? which
//! transactions exist only on the returning site?). Shared with the simulated MySQL model,
//! so the operator and the model agree on every set by construction.
//!
//! Text form (as `SELECT @@GLOBAL.gtid_executed` prints it): `uuid:1-5:7-9,\nuuid2:1-3`.
//! [`GtidSet`]'s `Display` prints exactly that, MySQL's canonical form (UUIDs lower-case and
//! sorted, intervals sorted and merged, entries separated by `",\n"`), so a printed set is
//! byte-for-byte what the server prints. [`GtidSet::one_line`] prints the `", "`-separated
//! variant for status fields and log lines. The parser accepts both, plus upper-case UUIDs,
//! whitespace around every token, repeated UUIDs and overlapping or unsorted intervals.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

mod parse;

pub use parse::{GtidParseError, GtidProblem};

/// The largest GNO MySQL allows (`GNO_END - 1`, i.e. `i64::MAX`).
pub const MAX_GNO: u64 = i64::MAX as u64;

/// A closed interval of transaction numbers `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    pub start: u64,
    pub end: u64,
}

impl Interval {
    fn len(self) -> u64 {
        self.end - self.start + 1
    }
}

/// One transaction identifier, `uuid:gno`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gtid {
    /// Lower-case server UUID.
    pub uuid: String,
    pub gno: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uuid, self.gno)
    }
}

/// A set of GTIDs in normal form: per lower-case UUID, sorted, disjoint, non-adjacent
/// closed intervals; no UUID with an empty interval list. Equality is set equality.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GtidSet {
    sets: BTreeMap<String, Vec<Interval>>,
}

impl GtidSet {
    /// Parses MySQL's text form. The empty string (or only whitespace and commas, as
    /// MySQL also accepts) is the empty set.
    pub fn parse(text: &str) -> Result<GtidSet, GtidParseError> {
        parse::Parser::new(text).parse()
    }

    /// The empty set.
    pub fn new() -> GtidSet {
        GtidSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Number of transactions in the set (saturating at `u64::MAX`).
    pub fn count(&self) -> u64 {
        self.sets
            .values()
            .flat_map(|intervals| intervals.iter())
            .fold(0u64, |sum, iv| sum.saturating_add(iv.len()))
    }

    /// The server UUIDs that have at least one transaction in the set, sorted; tagged
    /// transactions appear under `uuid:tag` (MySQL 8.4 tagged GTIDs).
    pub fn uuids(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }

    /// The intervals of one server UUID (any case), sorted and merged.
    pub fn intervals(&self, uuid: &str) -> &[Interval] {
        self.sets
            .get(&uuid.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether the transaction `uuid:gno` is in the set. `uuid` may be in any case.
    pub fn contains(&self, uuid: &str, gno: u64) -> bool {
        self.intervals(uuid)
            .iter()
            .any(|iv| iv.start <= gno && gno <= iv.end)
    }

    /// Whether the single transaction is in the set.
    pub fn contains_gtid(&self, gtid: &Gtid) -> bool {
        self.contains(&gtid.uuid, gtid.gno)
    }

    /// The set without any transaction that originated on `uuid`, tagged or not.
    pub fn excluding_uuid(&self, uuid: &str) -> GtidSet {
        let uuid = uuid.to_ascii_lowercase();
        let tagged = format!("{uuid}:");
        GtidSet {
            sets: self
                .sets
                .iter()
                .filter(|(key, _)| **key != uuid && !key.starts_with(&tagged))
                .map(|(key, intervals)| (key.clone(), intervals.clone()))
                .collect(),
        }
    }

    /// Adds `uuid:start-end` (inclusive). Ignores `gno == 0` and reversed intervals, which
    /// the parser refuses and no caller should build.
    pub fn add_interval(&mut self, uuid: &str, start: u64, end: u64) {
        if start == 0 || end < start {
            return;
        }
        let uuid = uuid.to_ascii_lowercase();
        let intervals = self.sets.entry(uuid).or_default();
        intervals.push(Interval { start, end });
        normalise(intervals);
    }

    /// Adds one transaction.
    pub fn insert(&mut self, uuid: &str, gno: u64) {
        self.add_interval(uuid, gno, gno);
    }

    /// The GNO MySQL would assign to the next transaction originating on `uuid`: the
    /// smallest number not yet in the set (MySQL fills gaps first).
    pub fn next_gno(&self, uuid: &str) -> u64 {
        let mut candidate = 1;
        for iv in self.intervals(uuid) {
            if candidate < iv.start {
                return candidate;
            }
            candidate = iv.end.saturating_add(1);
        }
        candidate
    }

    /// Every transaction in the set, in order. Meant for small sets (tests, the model's
    /// bookkeeping); the number of items is [`GtidSet::count`].
    pub fn iter(&self) -> impl Iterator<Item = Gtid> + '_ {
        self.sets.iter().flat_map(|(uuid, intervals)| {
            intervals
                .iter()
                .flat_map(|iv| iv.start..=iv.end)
                .map(move |gno| Gtid {
                    uuid: uuid.clone(),
                    gno,
                })
        })
    }

    /// `self ∪ other`.
    pub fn union(&self, other: &GtidSet) -> GtidSet {
        let mut out = self.clone();
        for (uuid, intervals) in &other.sets {
            let mine = out.sets.entry(uuid.clone()).or_default();
            mine.extend_from_slice(intervals);
            normalise(mine);
        }
        out
    }

    /// `self \ other`: the transactions in `self` that are not in `other` (MySQL's
    /// `GTID_SUBTRACT(self, other)`).
    pub fn subtract(&self, other: &GtidSet) -> GtidSet {
        let mut out = GtidSet::default();
        for (uuid, intervals) in &self.sets {
            let remaining = match other.sets.get(uuid) {
                Some(removed) => subtract_intervals(intervals, removed),
                None => intervals.clone(),
            };
            if !remaining.is_empty() {
                out.sets.insert(uuid.clone(), remaining);
            }
        }
        out
    }

    /// `self ∩ other`.
    pub fn intersect(&self, other: &GtidSet) -> GtidSet {
        let mut out = GtidSet::default();
        for (uuid, mine) in &self.sets {
            if let Some(theirs) = other.sets.get(uuid) {
                let common = intersect_intervals(mine, theirs);
                if !common.is_empty() {
                    out.sets.insert(uuid.clone(), common);
                }
            }
        }
        out
    }

    /// Whether every transaction of `self` is in `other` (MySQL's `GTID_SUBSET(self, other)`).
    pub fn is_subset(&self, other: &GtidSet) -> bool {
        self.subtract(other).is_empty()
    }

    /// The set printed on one line with `", "` between UUIDs (for status fields and logs).
    pub fn one_line(&self) -> OneLine<'_> {
        OneLine(self)
    }

    fn write_with(&self, f: &mut fmt::Formatter<'_>, separator: &str) -> fmt::Result {
        let mut previous_uuid: Option<&str> = None;
        for (index, (key, intervals)) in self.sets.iter().enumerate() {
            // Tagged entries (`uuid:tag`) continue their UUID's entry, as MySQL prints
            // them: `uuid:1-5:tag:1-3`.
            let (uuid, tag) = match key.split_once(':') {
                Some((uuid, tag)) => (uuid, Some(tag)),
                None => (key.as_str(), None),
            };
            if previous_uuid == Some(uuid) {
                if let Some(tag) = tag {
                    write!(f, ":{tag}")?;
                }
            } else {
                if index > 0 {
                    f.write_str(separator)?;
                }
                f.write_str(key)?;
            }
            previous_uuid = Some(uuid);
            for iv in intervals {
                if iv.start == iv.end {
                    write!(f, ":{}", iv.start)?;
                } else {
                    write!(f, ":{}-{}", iv.start, iv.end)?;
                }
            }
        }
        Ok(())
    }
}

/// The first segment of a server UUID: the token a person types to confirm a destructive
/// reclone (`61553741` for `61553741-443a-11f1-...`). A string without `-` is its own token.
pub fn reclone_token(uuid: &str) -> &str {
    uuid.split('-').next().unwrap_or(uuid)
}

/// MySQL's canonical multi-line form (`",\n"` between UUIDs), as the server prints it.
impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_with(f, ",\n")
    }
}

/// Display adapter returned by [`GtidSet::one_line`].
pub struct OneLine<'a>(&'a GtidSet);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_with(f, ", ")
    }
}

impl FromStr for GtidSet {
    type Err = GtidParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        GtidSet::parse(text)
    }
}

impl serde::Serialize for GtidSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.one_line())
    }
}

impl<'de> serde::Deserialize<'de> for GtidSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        GtidSet::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Sorts and merges overlapping or adjacent intervals in place.
fn normalise(intervals: &mut Vec<Interval>) {
    intervals.sort_unstable();
    let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
    for iv in intervals.drain(..) {
        match merged.last_mut() {
            Some(last) if iv.start <= last.end.saturating_add(1) => {
                last.end = last.end.max(iv.end);
            }
            _ => merged.push(iv),
        }
    }
    *intervals = merged;
}

/// `a \ b` for normalised interval lists.
fn subtract_intervals(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut j = 0;
    for &iv in a {
        let mut start = iv.start;
        // Skip removals entirely before this interval.
        while j < b.len() && b[j].end < start {
            j += 1;
        }
        let mut k = j;
        let mut covered = false;
        while k < b.len() && b[k].start <= iv.end {
            if b[k].start > start {
                out.push(Interval {
                    start,
                    end: b[k].start - 1,
                });
            }
            if b[k].end >= iv.end {
                covered = true;
                break;
            }
            start = b[k].end + 1;
            k += 1;
        }
        if !covered {
            out.push(Interval { start, end: iv.end });
        }
    }
    out
}

/// `a ∩ b` for normalised interval lists.
fn intersect_intervals(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let start = a[i].start.max(b[j].start);
        let end = a[i].end.min(b[j].end);
        if start <= end {
            out.push(Interval { start, end });
        }
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "61553741-443a-11f1-8f2e-0242ac120002";

    fn set(text: &str) -> GtidSet {
        GtidSet::parse(text).unwrap()
    }

    #[test]
    fn algebra_examples() {
        let primary = set(&format!("{A}:1-10, {B}:1-3"));
        let returning = set(&format!("{A}:1-8:12, {B}:1-3"));
        let errant = returning.subtract(&primary);
        assert_eq!(errant.to_string(), format!("{A}:12"));
        assert!(!returning.is_subset(&primary));
        assert!(set(&format!("{A}:1-8")).is_subset(&primary));
        assert_eq!(
            primary.intersect(&returning).one_line().to_string(),
            format!("{A}:1-8, {B}:1-3")
        );
        assert_eq!(
            primary.union(&returning).one_line().to_string(),
            format!("{A}:1-10:12, {B}:1-3")
        );
    }

    #[test]
    fn next_gno_fills_gaps_first() {
        assert_eq!(GtidSet::default().next_gno(A), 1);
        assert_eq!(set(&format!("{A}:1-3")).next_gno(A), 4);
        assert_eq!(set(&format!("{A}:2-3")).next_gno(A), 1);
        assert_eq!(set(&format!("{A}:1-3:5")).next_gno(A), 4);
    }

    #[test]
    fn reclone_token_is_the_first_uuid_segment() {
        assert_eq!(reclone_token(B), "61553741");
        assert_eq!(reclone_token("nodash"), "nodash");
        assert_eq!(reclone_token(""), "");
    }

    #[test]
    fn serde_round_trip_uses_one_line_form() {
        let parsed = set(&format!("{A}:1-5,\n{B}:7"));
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(json, format!("\"{A}:1-5, {B}:7\""));
        assert_eq!(serde_json::from_str::<GtidSet>(&json).unwrap(), parsed);
        assert!(serde_json::from_str::<GtidSet>("\"nope\"").is_err());
    }

    // ---- properties: GtidSet against a model of explicit (uuid, gno) pairs ----

    const POOL: [&str; 3] = [A, B, "ffffffff-0000-4000-8000-000000000001"];

    fn arb_set() -> impl Strategy<Value = (GtidSet, BTreeSet<(usize, u64)>)> {
        prop::collection::vec((0..POOL.len(), 1u64..40, 0u64..6), 0..8).prop_map(|parts| {
            let mut gtids = GtidSet::default();
            let mut model = BTreeSet::new();
            for (uuid, start, len) in parts {
                gtids.add_interval(POOL[uuid], start, start + len);
                model.extend((start..=start + len).map(|gno| (uuid, gno)));
            }
            (gtids, model)
        })
    }

    fn as_model(set: &GtidSet) -> BTreeSet<(usize, u64)> {
        set.iter()
            .map(|g| (POOL.iter().position(|u| *u == g.uuid).unwrap(), g.gno))
            .collect()
    }

    proptest! {
        #[test]
        fn print_then_parse_is_identity((a, _) in arb_set()) {
            prop_assert_eq!(GtidSet::parse(&a.to_string()).unwrap(), a.clone());
            prop_assert_eq!(GtidSet::parse(&a.one_line().to_string()).unwrap(), a.clone());
            prop_assert_eq!(GtidSet::parse(&a.to_string().to_uppercase()).unwrap(), a);
        }

        #[test]
        fn algebra_matches_the_model((a, ma) in arb_set(), (b, mb) in arb_set()) {
            prop_assert_eq!(as_model(&a), ma.clone());
            prop_assert_eq!(as_model(&a.union(&b)), ma.union(&mb).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(as_model(&a.subtract(&b)), ma.difference(&mb).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(as_model(&a.intersect(&b)), ma.intersection(&mb).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(a.is_subset(&b), ma.is_subset(&mb));
            prop_assert_eq!(a.count(), ma.len() as u64);
            prop_assert_eq!(a.is_empty(), ma.is_empty());
            for (index, uuid) in POOL.iter().enumerate() {
                for gno in 0..48 {
                    prop_assert_eq!(a.contains(uuid, gno), ma.contains(&(index, gno)));
                }
            }
        }

        #[test]
        fn algebra_laws((a, _) in arb_set(), (b, _) in arb_set(), (c, _) in arb_set()) {
            prop_assert_eq!(a.union(&b), b.union(&a));
            prop_assert_eq!(a.intersect(&b), b.intersect(&a));
            prop_assert_eq!(a.union(&b).union(&c), a.union(&b.union(&c)));
            prop_assert_eq!(a.subtract(&b).union(&a.intersect(&b)), a.clone());
            prop_assert!(a.subtract(&b).intersect(&b).is_empty());
            prop_assert!(a.intersect(&b).is_subset(&a));
            prop_assert!(a.is_subset(&a.union(&b)));
            // The errant-transaction question the engine asks: a site may rejoin exactly when
            // it has nothing the other lacks.
            prop_assert_eq!(a.is_subset(&b), a.subtract(&b).is_empty());
        }

        /// The parser never panics on arbitrary input, and what it accepts prints to a
        /// canonical form that parses back to the same set. (The `fuzz/` target runs the
        /// same property under libFuzzer on nightly; this keeps it exercised in CI.)
        #[test]
        fn parser_total_on_random_text(text in "\\PC{0,80}") {
            check_parser_round_trip(&text);
        }

        #[test]
        fn parser_total_on_gtid_like_text(text in "[0-9a-fA-F:, \n-]{0,120}") {
            check_parser_round_trip(&text);
        }

        #[test]
        fn parser_total_on_mutated_sets((a, _) in arb_set(), cut in 0usize..200, insert in "[0-9a-z:,\\- ]{0,3}") {
            let mut text = a.to_string();
            let cut = cut.min(text.len());
            text.insert_str(cut, &insert);
            check_parser_round_trip(&text);
        }
    }

    fn check_parser_round_trip(text: &str) {
        match GtidSet::parse(text) {
            Ok(parsed) => {
                let printed = parsed.to_string();
                assert_eq!(GtidSet::parse(&printed).unwrap(), parsed, "{text:?}");
            }
            Err(error) => assert!(error.position <= text.chars().count(), "{error:?}"),
        }
    }
}
