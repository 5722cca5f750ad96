//! Wall-clock time for everything the operator writes to the API (creationTimestamp,
//! lease renewTime, Event times, status timestamps).
//!
//! Monotonic time (deadlines, "how long since") is `tokio::time::Instant`, which the
//! simulation already virtualises; only *wall* time needs this seam, because
//! `SystemTime::now()` reads the machine's clock even inside the simulation.

use std::sync::Arc;

/// A source of wall-clock time. Never call `SystemTime::now`/`Timestamp::now` directly
/// in operator or sidecar code: take a `Clock`.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> jiff::Timestamp;
}

/// The clock handed around by the operator, the sidecar and the runner.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's clock, for production.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_after_2020() {
        let now = SystemClock.now();
        assert!(now.as_second() > 1_577_836_800, "{now}");
    }
}
