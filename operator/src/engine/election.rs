//! Choosing which site to promote: the most advanced GTID set wins, spec order breaks
//! ties. Used by bootstrap (executed sets) and emergency failover (executed plus
//! relay log, since the candidate drains its relay log before promotion).

use crate::gtid::GtidSet;

/// The most advanced of `candidates` (given in spec order). A site whose set is a
/// strict subset of another candidate's never wins; among the rest the larger
/// transaction count wins, and the earlier spec position breaks a tie.
pub(super) fn most_advanced<'a>(candidates: &[(&'a str, GtidSet)]) -> Option<&'a str> {
    let dominated = |set: &GtidSet| {
        candidates
            .iter()
            .any(|(_, other)| set != other && set.is_subset(other))
    };
    candidates
        .iter()
        .enumerate()
        .filter(|(_, (_, set))| !dominated(set))
        // max_by_key returns the last maximum: rank by (count, reversed position).
        .max_by_key(|(index, (_, set))| (set.count(), std::cmp::Reverse(*index)))
        .map(|(_, (name, _))| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> GtidSet {
        GtidSet::parse(text).unwrap()
    }

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "61553741-443a-11f1-8f55-0242ac120002";

    type Case<'a> = (&'a str, Vec<(&'a str, GtidSet)>, Option<&'a str>);

    #[test]
    fn table() {
        let cases: Vec<Case<'_>> = vec![
            ("no candidates", vec![], None),
            (
                "empty sets: spec order",
                vec![("iad", set("")), ("pdx", set(""))],
                Some("iad"),
            ),
            (
                "superset wins",
                vec![
                    ("iad", set(&format!("{A}:1-5"))),
                    ("pdx", set(&format!("{A}:1-9"))),
                ],
                Some("pdx"),
            ),
            (
                "equal sets: spec order",
                vec![
                    ("iad", set(&format!("{A}:1-9"))),
                    ("pdx", set(&format!("{A}:1-9"))),
                ],
                Some("iad"),
            ),
            (
                "incomparable: more transactions wins",
                vec![
                    ("iad", set(&format!("{A}:1-5,{B}:1"))),
                    ("pdx", set(&format!("{A}:1-9"))),
                ],
                Some("pdx"),
            ),
            (
                "incomparable, same count: spec order",
                vec![
                    ("iad", set(&format!("{A}:1-5"))),
                    ("pdx", set(&format!("{B}:1-5"))),
                ],
                Some("iad"),
            ),
        ];
        for (name, candidates, expected) in cases {
            assert_eq!(most_advanced(&candidates), expected, "{name}");
        }
    }

    #[test]
    fn a_strict_subset_never_wins_even_with_a_larger_count_elsewhere() {
        // ord: strict subset of lax (excluded); lax and far are incomparable.
        let candidates = vec![
            ("ord", set(&format!("{A}:1-3"))),
            ("lax", set(&format!("{A}:1-4"))),
            ("far", set(&format!("{B}:1-2"))),
        ];
        assert_eq!(most_advanced(&candidates), Some("lax"));
    }
}
