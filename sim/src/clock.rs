//! Simulated wall-clock time: the [`Clock`] every simulated component (API server,
//! controllers, pod programs, the operator under test) reads instead of the machine's
//! clock. Time is the pinned epoch plus turmoil's elapsed simulated time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bloodraven::seams::Clock;

/// The default pinned epoch: 2025-01-01T00:00:00Z. A fixed epoch makes every timestamp
/// (creationTimestamp, Event times, lease renewTime) part of the seed's replay.
pub(crate) const DEFAULT_EPOCH_SECONDS: u64 = 1_735_689_600;

/// Simulated wall time.
///
/// Inside a turmoil host it reads the host's own simulated time (millisecond
/// resolution within a step). Outside any host (the control plane between steps, the
/// serve-mode HTTP thread) it reads the time the world published after its last step,
/// which is why the value lives in a shared atomic rather than in turmoil's
/// thread-local world.
#[derive(Clone, Debug)]
pub struct SimClock {
    epoch: Duration,
    /// Simulated nanoseconds elapsed since `epoch`, published by the world after every step.
    elapsed_nanos: Arc<AtomicU64>,
}

impl SimClock {
    pub fn new(epoch: Duration) -> Self {
        Self {
            epoch,
            elapsed_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Called by the world after each step with turmoil's elapsed simulated time.
    pub(crate) fn publish(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_nanos.store(nanos, Ordering::Release);
    }

    /// Simulated time since the world started.
    pub fn elapsed(&self) -> Duration {
        match turmoil::since_epoch() {
            Some(since_epoch) => since_epoch.saturating_sub(self.epoch),
            None => Duration::from_nanos(self.elapsed_nanos.load(Ordering::Acquire)),
        }
    }

    /// The pinned epoch as a duration since the Unix epoch.
    pub fn epoch(&self) -> Duration {
        self.epoch
    }
}

impl Clock for SimClock {
    fn now(&self) -> jiff::Timestamp {
        let since_unix = self.epoch + self.elapsed();
        let nanos = i128::try_from(since_unix.as_nanos()).unwrap_or(i128::MAX);
        // Only out of range after the year 9999; saturate rather than fail a read.
        jiff::Timestamp::from_nanosecond(nanos).unwrap_or(jiff::Timestamp::MAX)
    }
}

/// A node's wall clock running `rate_ppm` parts per million fast (negative: slow)
/// relative to [`SimClock`]: the seam fault "clock drift" (`crate::seam_faults`). It
/// reads the epoch at the start and stays monotonic (rates are far above -10^6).
#[derive(Clone, Debug)]
pub(crate) struct DriftingClock {
    inner: SimClock,
    rate_ppm: i64,
}

impl DriftingClock {
    pub(crate) fn new(inner: SimClock, rate_ppm: i64) -> Self {
        Self { inner, rate_ppm }
    }

    /// The drifted time since the epoch, in nanoseconds.
    fn elapsed_nanos(&self) -> i128 {
        let elapsed = i128::try_from(self.inner.elapsed().as_nanos()).unwrap_or(i128::MAX);
        elapsed.saturating_add(elapsed.saturating_mul(i128::from(self.rate_ppm)) / 1_000_000)
    }
}

impl Clock for DriftingClock {
    fn now(&self) -> jiff::Timestamp {
        let epoch = i128::try_from(self.inner.epoch().as_nanos()).unwrap_or(i128::MAX);
        let nanos = epoch.saturating_add(self.elapsed_nanos().max(0));
        jiff::Timestamp::from_nanosecond(nanos).unwrap_or(jiff::Timestamp::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drifting_clock_runs_at_its_rate_from_the_epoch() {
        let clock = SimClock::new(Duration::from_secs(DEFAULT_EPOCH_SECONDS));
        let fast = DriftingClock::new(clock.clone(), 200);
        let slow = DriftingClock::new(clock.clone(), -200);
        assert_eq!(fast.now(), clock.now());
        clock.publish(Duration::from_secs(1_000));
        // 200 ppm of 1000 s is 200 ms.
        assert_eq!(fast.now().to_string(), "2025-01-01T00:16:40.2Z");
        assert_eq!(slow.now().to_string(), "2025-01-01T00:16:39.8Z");
        let later = {
            clock.publish(Duration::from_millis(1_000_001));
            slow.now()
        };
        assert!(later > jiff::Timestamp::from_second(1_735_690_599).unwrap_or_default());
    }

    #[test]
    fn outside_a_host_the_clock_reads_the_published_time() {
        let clock = SimClock::new(Duration::from_secs(DEFAULT_EPOCH_SECONDS));
        assert_eq!(clock.now().to_string(), "2025-01-01T00:00:00Z");
        clock.publish(Duration::from_millis(90_500));
        assert_eq!(clock.now().to_string(), "2025-01-01T00:01:30.5Z");
        assert_eq!(clock.elapsed(), Duration::from_millis(90_500));
    }
}
