//! The engine reads and writes the API's own status types (`crate::api`'s
//! `MysqlFailoverGroupStatus` family): the persisted half of every decision, from which
//! a restarted operator resumes. This module only holds what the engine adds on top:
//! conversions between its integer milliseconds and the API's fields.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::time::Millis;

/// Milliseconds from a phase start to now: from the monotonic mark when this process
/// saw the start, else (after a restart) from the persisted wall timestamps. Only ever
/// reported, never used to decide anything.
pub fn elapsed_ms(
    mono_start: Option<Millis>,
    mono_now: Millis,
    wall_start: Option<&Time>,
    wall_now: Timestamp,
) -> u64 {
    match (mono_start, wall_start) {
        (Some(start), _) => super::time::duration_ms(mono_now.since(start)),
        (None, Some(start)) => u64::try_from(
            wall_now
                .as_millisecond()
                .saturating_sub(start.0.as_millisecond()),
        )
        .unwrap_or(0),
        (None, None) => 0,
    }
}

/// A count for an `int64` status field (saturating; no count comes near it).
pub fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
