//! Seam faults: what production API servers and networks do to the product's traffic,
//! injected by the simulated transports (the API server's HTTP layer and watch
//! streams), never by operator code. All zero, the default, is off: scenarios run so
//! and assert deterministically; the sweep draws each seed's rates (swarm testing).
//! Each decision is a hash of the seed and a counter, so a seed replays exactly.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rng::{SimRng, Stream, mix};

/// The most any per-request rate may be: above it the product spends its time retrying
/// and a run says nothing about safety.
pub const MAX_PERCENT: f64 = 20.0;
/// The most a watch event may be delayed (a lagging watch cache).
pub const MAX_WATCH_DELAY_MS: u64 = 5_000;
/// The most a node's wall clock may run fast or slow, in parts per million: a free-running
/// quartz oscillator is within about ±100 ppm, NTP-disciplined far less; 200 leaves room
/// (about 0.2 s apart after a 15-minute run between two nodes drifting opposite ways).
pub const MAX_CLOCK_DRIFT_PPM: u64 = 200;

/// Per-seed seam-fault rates. Percentages apply per request (API) or per watch event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SeamFaults {
    /// A `PUT` or a (non-apply) `PATCH` answered `409 Conflict` without committing, as
    /// when another writer changed the object first.
    pub api_conflict_percent: f64,
    /// A request answered `429 Too Many Requests` (`Retry-After: 1`), as under API
    /// priority and fairness, without being served.
    pub api_throttle_percent: f64,
    /// A request answered `500` or `503` without being served (an apiserver restarting,
    /// etcd leader change).
    pub api_unavailable_percent: f64,
    /// A request that is served (a write commits) but whose response is lost: the
    /// connection is cut after the headers, so the client sees a transport error.
    pub api_lost_response_percent: f64,
    /// Each watch event is sent up to this many milliseconds late (order kept).
    pub watch_delay_max_ms: u64,
    /// Per watch event: the stream stalls instead (sends nothing more and ends when the
    /// client gives up on it); the client must re-watch from its last resourceVersion.
    pub watch_stall_percent: f64,
    /// Each node's wall clock (the `Clock` its pods read) runs fast or slow by a rate
    /// drawn per node within ±this many parts per million. Rate only: every clock starts
    /// at the epoch and stays monotonic. Timers (tokio's time, shared by all hosts under
    /// turmoil) do not drift.
    pub clock_drift_max_ppm: u64,
}

/// Which requests a fault hits: only the product's own clients (operator, sidecar,
/// backup), identified by their User-Agent. The chaos runner, kubectl and the
/// simulated control plane see a perfect API server.
pub fn faults_apply_to(user_agent: &str) -> bool {
    use crate::bloodraven_image::{BACKUP_USER_AGENT, OPERATOR_USER_AGENT, SIDECAR_USER_AGENT};
    [OPERATOR_USER_AGENT, SIDECAR_USER_AGENT, BACKUP_USER_AGENT]
        .iter()
        .any(|agent| user_agent.starts_with(agent))
}

/// What the API server does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiFault {
    /// Serve it normally.
    None,
    Conflict,
    Throttle,
    /// `500` or `503`.
    Unavailable(u16),
    /// Serve it, then cut the connection instead of sending the body.
    LostResponse,
}

/// Why seam-fault rates are refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeamFaultsError {
    #[error("seamFaults.{field}: {value} is not a percentage in 0..={MAX_PERCENT}")]
    Percent { field: &'static str, value: f64 },
    #[error("seamFaults.watchDelayMaxMs: {0} is above the bound {MAX_WATCH_DELAY_MS}")]
    WatchDelay(u64),
    #[error("seamFaults.clockDriftMaxPpm: {0} is above the bound {MAX_CLOCK_DRIFT_PPM}")]
    ClockDrift(u64),
}

impl SeamFaults {
    /// Off: a perfect API server.
    pub fn off() -> Self {
        Self::default()
    }

    pub fn is_off(&self) -> bool {
        *self == Self::default()
    }

    /// `seed`'s rates (swarm testing): each fault is on for about half the seeds, at a
    /// rate drawn log-uniformly between 0.1 % and 5 % (watch delays 100 ms to 2 s), so
    /// that some seeds hammer one seam and leave the others alone.
    pub fn draw(seed: u64) -> Self {
        let mut rng = SimRng::new(seed, Stream::SeamFaultRates);
        // Every draw is made whether or not the fault is on, so turning one fault off
        // in a later version does not change the others' rates.
        let percent = |rng: &mut SimRng| {
            let on = rng.chance(0.5);
            // 0.1 % .. 5 %: 10^(-1 .. log10 5).
            let exponent = -1.0 + rng.unit() * (1.0 + 5f64.log10());
            let rate = (10f64.powf(exponent) * 100.0).round() / 100.0;
            if on { rate } else { 0.0 }
        };
        let api_conflict_percent = percent(&mut rng);
        let api_throttle_percent = percent(&mut rng);
        let api_unavailable_percent = percent(&mut rng);
        let api_lost_response_percent = percent(&mut rng);
        let watch_stall_percent = percent(&mut rng) / 10.0;
        let delay_on = rng.chance(0.5);
        let delay = rng.range(100, 2_000);
        let drift_on = rng.chance(0.5);
        let drift = rng.range(10, MAX_CLOCK_DRIFT_PPM);
        Self {
            api_conflict_percent,
            api_throttle_percent,
            api_unavailable_percent,
            api_lost_response_percent,
            watch_delay_max_ms: if delay_on { delay } else { 0 },
            watch_stall_percent: (watch_stall_percent * 1000.0).round() / 1000.0,
            clock_drift_max_ppm: if drift_on { drift } else { 0 },
        }
    }

    /// Refuses rates outside the documented bounds.
    pub fn validate(&self) -> Result<(), SeamFaultsError> {
        for (field, value) in [
            ("apiConflictPercent", self.api_conflict_percent),
            ("apiThrottlePercent", self.api_throttle_percent),
            ("apiUnavailablePercent", self.api_unavailable_percent),
            ("apiLostResponsePercent", self.api_lost_response_percent),
            ("watchStallPercent", self.watch_stall_percent),
        ] {
            if !(0.0..=MAX_PERCENT).contains(&value) {
                return Err(SeamFaultsError::Percent { field, value });
            }
        }
        if self.watch_delay_max_ms > MAX_WATCH_DELAY_MS {
            return Err(SeamFaultsError::WatchDelay(self.watch_delay_max_ms));
        }
        if self.clock_drift_max_ppm > MAX_CLOCK_DRIFT_PPM {
            return Err(SeamFaultsError::ClockDrift(self.clock_drift_max_ppm));
        }
        Ok(())
    }

    pub fn watch_delay_max(&self) -> Duration {
        Duration::from_millis(self.watch_delay_max_ms)
    }

    /// The fault for the `index`-th faultable request of the run (`write`: a PUT or a
    /// non-apply PATCH, the only requests a 409 is plausible for). A pure function of
    /// the seed and the index.
    pub fn api_fault(&self, seed: u64, index: u64, write: bool) -> ApiFault {
        let draw = unit(mix(seed ^ 0x4150_4946_4c54_0000 ^ mix(index)));
        let mut threshold = 0.0;
        let mut within = |percent: f64| {
            threshold += percent / 100.0;
            draw < threshold
        };
        if write && within(self.api_conflict_percent) {
            return ApiFault::Conflict;
        }
        if within(self.api_throttle_percent) {
            return ApiFault::Throttle;
        }
        if within(self.api_unavailable_percent) {
            let code = if mix(index).is_multiple_of(2) {
                500
            } else {
                503
            };
            return ApiFault::Unavailable(code);
        }
        if within(self.api_lost_response_percent) {
            return ApiFault::LostResponse;
        }
        ApiFault::None
    }

    /// The rate, in parts per million (negative: slow), at which `node`'s clock runs:
    /// uniform in ±`clock_drift_max_ppm`, a pure function of the seed and the node name.
    pub fn clock_rate_ppm(&self, seed: u64, node: &str) -> i64 {
        let max = i64::try_from(self.clock_drift_max_ppm.min(MAX_CLOCK_DRIFT_PPM)).unwrap_or(0);
        if max == 0 {
            return 0;
        }
        let name = node
            .bytes()
            .fold(0xc10c_0000_0000_0000_u64, |h, b| mix(h ^ u64::from(b)));
        let span = u64::try_from(2 * max + 1).unwrap_or(1);
        i64::try_from(mix(seed ^ name) % span).unwrap_or(0) - max
    }

    /// Whether the `index`-th event of watch `watch_id` stalls its stream.
    pub fn watch_stalls(&self, seed: u64, watch_id: u64, index: u64) -> bool {
        if self.watch_stall_percent <= 0.0 {
            return false;
        }
        let draw = unit(mix(seed
            ^ 0x5354_414c_4c00_0000
            ^ mix(watch_id ^ mix(index))));
        draw < self.watch_stall_percent / 100.0
    }
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl fmt::Display for SeamFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_off() {
            return f.write_str("seam faults off");
        }
        write!(
            f,
            "seam faults: api 409 {}% 429 {}% 5xx {}% lost-response {}%, watch delay <= {} ms, watch stall {}%, clock drift <= {} ppm",
            self.api_conflict_percent,
            self.api_throttle_percent,
            self.api_unavailable_percent,
            self.api_lost_response_percent,
            self.watch_delay_max_ms,
            self.watch_stall_percent,
            self.clock_drift_max_ppm
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_never_faults() {
        let off = SeamFaults::off();
        assert!(off.is_off());
        for index in 0..10_000 {
            assert_eq!(off.api_fault(1, index, true), ApiFault::None);
            assert!(!off.watch_stalls(1, 3, index));
        }
    }

    #[test]
    fn rates_are_honoured_and_replay() {
        let faults = SeamFaults {
            api_conflict_percent: 5.0,
            api_throttle_percent: 5.0,
            api_unavailable_percent: 5.0,
            api_lost_response_percent: 5.0,
            watch_delay_max_ms: 0,
            watch_stall_percent: 1.0,
            clock_drift_max_ppm: 0,
        };
        let n = 100_000;
        let mut counts = [0u64; 4];
        for index in 0..n {
            match faults.api_fault(9, index, true) {
                ApiFault::Conflict => counts[0] += 1,
                ApiFault::Throttle => counts[1] += 1,
                ApiFault::Unavailable(code) => {
                    assert!(code == 500 || code == 503);
                    counts[2] += 1
                }
                ApiFault::LostResponse => counts[3] += 1,
                ApiFault::None => {}
            }
            assert_eq!(
                faults.api_fault(9, index, true),
                faults.api_fault(9, index, true)
            );
            // A read is never answered 409.
            assert_ne!(faults.api_fault(9, index, false), ApiFault::Conflict);
        }
        for count in counts {
            assert!((4_500..=5_500).contains(&count), "{counts:?}");
        }
        let stalls = (0..n).filter(|i| faults.watch_stalls(9, 2, *i)).count();
        assert!((800..=1_200).contains(&stalls), "{stalls}");
    }

    #[test]
    fn drawn_rates_replay_stay_in_bounds_and_vary() {
        assert_eq!(SeamFaults::draw(5), SeamFaults::draw(5));
        let drawn: Vec<SeamFaults> = (0..200).map(SeamFaults::draw).collect();
        for faults in &drawn {
            faults
                .validate()
                .unwrap_or_else(|e| panic!("{faults}: {e}"));
        }
        // Swarm testing: some seeds have a fault off, some on, some all off.
        assert!(drawn.iter().any(|f| f.api_lost_response_percent > 0.0));
        assert!(drawn.iter().any(|f| f.api_lost_response_percent == 0.0));
        assert!(drawn.iter().any(|f| f.watch_delay_max_ms > 0));
        assert!(drawn.iter().any(|f| f.watch_stall_percent > 0.0));
        assert!(drawn.iter().any(|f| f.clock_drift_max_ppm > 0));
        // All seven off is one seed in 128.
        assert!((0..2_000).map(SeamFaults::draw).any(|f| f.is_off()));
    }

    #[test]
    fn out_of_bounds_rates_are_refused_by_name() {
        let faults = SeamFaults {
            api_throttle_percent: 50.0,
            ..SeamFaults::off()
        };
        let err = faults.validate().unwrap_err().to_string();
        assert!(
            err.contains("apiThrottlePercent") && err.contains("50"),
            "{err}"
        );
        let faults = SeamFaults {
            watch_delay_max_ms: 60_000,
            ..SeamFaults::off()
        };
        assert!(faults.validate().is_err());
        let faults = SeamFaults {
            clock_drift_max_ppm: 1_000,
            ..SeamFaults::off()
        };
        assert!(faults.validate().is_err());
    }

    #[test]
    fn clock_rates_stay_within_the_bound_per_node_and_replay() {
        let faults = SeamFaults {
            clock_drift_max_ppm: 150,
            ..SeamFaults::off()
        };
        let rates: Vec<i64> = (0..500)
            .map(|i| faults.clock_rate_ppm(3, &format!("node-{i}")))
            .collect();
        assert!(rates.iter().all(|r| (-150..=150).contains(r)), "{rates:?}");
        assert!(rates.iter().any(|r| *r > 100) && rates.iter().any(|r| *r < -100));
        assert_eq!(
            faults.clock_rate_ppm(3, "bloodraven-iad"),
            faults.clock_rate_ppm(3, "bloodraven-iad")
        );
        assert_eq!(SeamFaults::off().clock_rate_ppm(3, "bloodraven-iad"), 0);
    }
}
