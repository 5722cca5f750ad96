//! Standard 5-field cron schedules (minute hour day-of-month month day-of-week) as the
//! CronJob controller reads them: `*`, `*/n`, `a-b`, `a-b/n`, lists, month and weekday
//! names, `?` for `*`, Sunday as 0 or 7, and the `@hourly`-style macros. As in Vixie
//! cron, when both day-of-month and day-of-week are restricted a day matching either
//! fires. Times are UTC (`spec.timeZone` is not modelled).
//!
//! One parser for the whole repository: `bloodraven validate` refuses a profile
//! schedule the CronJob controller would refuse, the operator derives how old a
//! profile's newest backup may get, and the simulation's CronJob controller fires by it.

use jiff::civil::{Date, DateTime, Time};
use jiff::{Timestamp, ToSpan, tz::TimeZone};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "cron schedule {schedule:?}: expected 5 fields (minute hour day-of-month month day-of-week), found {found}"
    )]
    FieldCount { schedule: String, found: usize },
    #[error("cron schedule {schedule:?}: {field} field {value:?} is invalid: {why}")]
    Field {
        schedule: String,
        field: &'static str,
        value: String,
        why: String,
    },
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    dom_restricted: bool,
    dow_restricted: bool,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
// 7 is accepted as Sunday and folded onto 0 after parsing.
const DOW: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

impl CronSchedule {
    pub fn parse(schedule: &str) -> Result<Self, CronError> {
        let trimmed = schedule.trim();
        let expanded = match trimmed {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(CronError::FieldCount {
                schedule: schedule.to_string(),
                found: fields.len(),
            });
        };
        let mut days_of_week = parse_field(schedule, dow, &DOW)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(Self {
            minutes: parse_field(schedule, minute, &MINUTE)?,
            hours: parse_field(schedule, hour, &HOUR)?,
            days_of_month: parse_field(schedule, dom, &DOM)?,
            months: parse_field(schedule, month, &MONTH)?,
            days_of_week,
            dom_restricted: !matches!(dom, "*" | "?"),
            dow_restricted: !matches!(dow, "*" | "?"),
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        match (self.dom_restricted, self.dow_restricted) {
            (true, true) => dom || dow,
            _ => dom && dow,
        }
    }

    /// The first firing strictly after `after`, or `None` if there is none within
    /// five years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let utc = TimeZone::UTC;
        let start = after.to_zoned(utc.clone()).datetime();
        let mut t = DateTime::from_parts(
            start.date(),
            Time::new(start.hour(), start.minute(), 0, 0).ok()?,
        )
        .checked_add(1.minute())
        .ok()?;
        let limit = start.date().checked_add(5.years()).ok()?;
        while t.date() <= limit {
            if self.months & (1 << t.month()) == 0 {
                let first = t.date().first_of_month().checked_add(1.month()).ok()?;
                t = first.to_datetime(Time::midnight());
            } else if !self.day_matches(t.date()) {
                t = t
                    .date()
                    .checked_add(1.day())
                    .ok()?
                    .to_datetime(Time::midnight());
            } else if self.hours & (1 << t.hour()) == 0 {
                t = DateTime::from_parts(t.date(), Time::new(t.hour(), 0, 0, 0).ok()?)
                    .checked_add(1.hour())
                    .ok()?;
            } else if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
            } else {
                return t.to_zoned(utc).ok().map(|z| z.timestamp());
            }
        }
        None
    }
}

impl CronSchedule {
    /// The longest wait between two consecutive firings in the `window` after
    /// `from` (a weekday-only schedule waits three days over a weekend): how long a
    /// profile may go without a new backup while its schedule is running as written.
    /// `None` if the schedule fires fewer than twice in the window.
    pub fn longest_gap(
        &self,
        from: Timestamp,
        window: jiff::SignedDuration,
    ) -> Option<jiff::SignedDuration> {
        let end = from.checked_add(window).ok()?;
        let mut previous = self.next_after(from)?;
        let mut longest: Option<jiff::SignedDuration> = None;
        // Every firing is at least a minute after the last, so a window bounds the loop.
        while let Some(next) = self.next_after(previous) {
            if next > end {
                break;
            }
            let gap = next.duration_since(previous);
            longest = Some(longest.map_or(gap, |l| l.max(gap)));
            previous = next;
        }
        longest
    }
}

fn parse_field(schedule: &str, text: &str, spec: &FieldSpec) -> Result<u64, CronError> {
    let err = |why: String| CronError::Field {
        schedule: schedule.to_string(),
        field: spec.name,
        value: text.to_string(),
        why,
    };
    let mut bits = 0_u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| err(format!("step {step:?} is not a number")))?;
                if step == 0 {
                    return Err(err("step must be at least 1".to_string()));
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (low, high) = if range == "*" || range == "?" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, spec).map_err(&err)?, value(b, spec).map_err(&err)?)
        } else {
            let v = value(range, spec).map_err(&err)?;
            // `5/15` means "from 5 to the end, every 15", as in Vixie cron.
            (v, if part.contains('/') { spec.max } else { v })
        };
        if low > high {
            return Err(err(format!("range {low}-{high} is backwards")));
        }
        let mut v = low;
        while v <= high {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(index) = spec.names.iter().position(|n| *n == upper) {
        let index = u32::try_from(index).map_err(|e| e.to_string())?;
        return Ok(index + if spec.min == 1 { 1 } else { 0 });
    }
    let v: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number or name"))?;
    if v < spec.min || v > spec.max {
        return Err(format!("{v} is outside {}-{}", spec.min, spec.max));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn next(schedule: &str, after: &str) -> String {
        CronSchedule::parse(schedule)
            .unwrap()
            .next_after(ts(after))
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_longest_gap_covers_weekends_and_needs_two_firings() {
        let gap = |schedule: &str, days: i64| {
            CronSchedule::parse(schedule)
                .unwrap()
                .longest_gap(
                    ts("2025-01-01T00:00:00Z"),
                    jiff::SignedDuration::from_hours(24 * days),
                )
                .map(|d| d.as_secs())
        };
        assert_eq!(gap("*/30 * * * *", 1), Some(30 * 60));
        assert_eq!(gap("0 2 * * *", 8), Some(24 * 3600));
        // Monday to Friday at 02:00: Friday to Monday is the longest wait.
        assert_eq!(gap("0 2 * * 1-5", 15), Some(3 * 24 * 3600));
        // A list whose firings are uneven: 01:00 and 23:00 leave a 22-hour gap.
        assert_eq!(gap("0 1,23 * * *", 3), Some(22 * 3600));
        // Once a month fires once in a week: no gap to speak of.
        assert_eq!(gap("0 0 1 * *", 7), None);
        assert_eq!(gap("0 0 30 2 *", 400), None);
    }

    #[test]
    fn next_firings_follow_cron_semantics() {
        assert_eq!(
            next("*/30 * * * *", "2025-01-01T00:00:00Z"),
            "2025-01-01T00:30:00Z"
        );
        assert_eq!(
            next("*/30 * * * *", "2025-01-01T00:29:59Z"),
            "2025-01-01T00:30:00Z"
        );
        assert_eq!(
            next("*/30 * * * *", "2025-01-01T00:30:00Z"),
            "2025-01-01T01:00:00Z"
        );
        assert_eq!(
            next("0 3 * * *", "2025-01-01T04:00:00Z"),
            "2025-01-02T03:00:00Z"
        );
        assert_eq!(
            next("@hourly", "2025-01-01T04:10:00Z"),
            "2025-01-01T05:00:00Z"
        );
        // 2025-01-01 is a Wednesday: the next Monday is the 6th.
        assert_eq!(
            next("15 10 * * MON", "2025-01-01T00:00:00Z"),
            "2025-01-06T10:15:00Z"
        );
        assert_eq!(
            next("0 0 * * 7", "2025-01-01T00:00:00Z"),
            "2025-01-05T00:00:00Z"
        );
        assert_eq!(
            next("0 0 1 FEB *", "2025-01-01T00:00:00Z"),
            "2025-02-01T00:00:00Z"
        );
        // Both day fields restricted: either matches (the 10th, or any Friday).
        assert_eq!(
            next("0 0 10 * FRI", "2025-01-01T00:00:00Z"),
            "2025-01-03T00:00:00Z"
        );
        assert_eq!(
            next("5-10/5 1 * * *", "2025-01-01T01:06:00Z"),
            "2025-01-01T01:10:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2025-01-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert!(
            CronSchedule::parse("0 0 30 2 *")
                .unwrap()
                .next_after(ts("2025-01-01T00:00:00Z"))
                .is_none()
        );
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let err = CronSchedule::parse("* * *").unwrap_err();
        assert!(err.to_string().contains("expected 5 fields"), "{err}");
        let err = CronSchedule::parse("61 * * * *").unwrap_err();
        assert!(err.to_string().contains("minute field \"61\""), "{err}");
        let err = CronSchedule::parse("* * * FOO *").unwrap_err();
        assert!(err.to_string().contains("month field"), "{err}");
        let err = CronSchedule::parse("*/0 * * * *").unwrap_err();
        assert!(err.to_string().contains("step must be at least 1"), "{err}");
    }
}
