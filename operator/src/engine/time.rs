//! Monotonic time as the engine sees it: milliseconds since an origin the caller picks
//! (the controller uses the `tokio::time::Instant` at which it started). A plain
//! integer so that decision tables can say "at 12_000 ms" without a runtime.

use std::fmt;
use std::time::Duration;

/// A point on one process's monotonic clock, in milliseconds since that process's
/// origin. Two `Millis` values are only comparable when they come from the same
/// process: the engine never compares one machine's clock with another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// This instant moved forward by `span` (saturating: the far future stays the far
    /// future rather than wrapping into the past).
    pub fn plus(self, span: Duration) -> Millis {
        Millis(self.0.saturating_add(duration_ms(span)))
    }

    /// This instant moved back by `span`, stopping at the origin.
    pub fn minus(self, span: Duration) -> Millis {
        Millis(self.0.saturating_sub(duration_ms(span)))
    }

    /// How long after `earlier` this instant is; zero when `earlier` is later.
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Maps a `tokio::time::Instant` onto the engine's scale, given the controller's
    /// origin. Instants before the origin map to the origin.
    pub fn from_instant(origin: tokio::time::Instant, instant: tokio::time::Instant) -> Millis {
        Millis(duration_ms(instant.saturating_duration_since(origin)))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A duration in whole milliseconds, saturating at `u64::MAX` (585 million years).
pub fn duration_ms(span: Duration) -> u64 {
    u64::try_from(span.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(Millis(10).minus(Duration::from_millis(20)), Millis(0));
        assert_eq!(
            Millis(u64::MAX).plus(Duration::from_secs(1)),
            Millis(u64::MAX)
        );
        assert_eq!(Millis(5).since(Millis(9)), Duration::ZERO);
        assert_eq!(Millis(1_500).since(Millis(500)), Duration::from_secs(1));
    }

    #[test]
    fn instants_map_relative_to_the_origin() {
        let origin = tokio::time::Instant::now();
        let later = origin + Duration::from_millis(2_345);
        assert_eq!(Millis::from_instant(origin, later), Millis(2_345));
        assert_eq!(Millis::from_instant(later, origin), Millis(0));
    }
}
