//! The counter workload: one increment per tick through the primary Service (and an
//! INCR through the Dragonfly Service when `cache: true`), with every attempt, ack,
//! error and value recorded against the clock seam. The history is what the invariant
//! checkers (`invariants`) and `workload` assertions read; this module only records.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bloodraven::seams::SharedClock;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::scenario::CounterSpec;

/// Unix time in milliseconds, as read from the clock seam.
pub use bloodraven_sim::harness::Millis;

pub fn now_ms(clock: &SharedClock) -> Millis {
    clock.now().as_millisecond()
}

/// What a successful increment reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterAck {
    /// The counter's value after this increment.
    pub value: u64,
    /// The site whose mysqld committed it.
    pub site: String,
}

/// Each increment writes its own row `chaos-counter/<seq>`, so that the
/// no-acknowledged-write-lost check can look up every acknowledged write by number.
pub const COUNTER_KEY_PREFIX: &str = "chaos-counter/";

/// Why an increment, an INCR or a lookup of committed increments failed. The history
/// records its text (a failed write's `error`).
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("no session to the primary")]
    NoSession,
    /// The statement itself failed on the session (the session is dropped).
    #[error(transparent)]
    Mysql(#[from] bloodraven::seams::MysqlError),
    /// Finding where to connect failed: the Service, its pods, the credentials, a
    /// tunnel; `what` says which.
    #[error("{what}: {message}")]
    Locate { what: String, message: String },
    #[error(transparent)]
    DragonflyConnect(#[from] bloodraven::seams::DragonflyConnectError),
    /// Connecting to `target` failed where the cause is only known as text (a
    /// tunnel's last error); `message` says what was being connected and why.
    #[error("{message}")]
    Connect { target: String, message: String },
    #[error("INCR on {target}: {message}")]
    Cache { target: String, message: String },
}

impl CounterError {
    pub fn locate(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Locate {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

/// A counter client's session to the current primary, with the site it belongs to;
/// `None` until (re)connected.
pub type SessionSlot = Option<(String, Box<dyn bloodraven::seams::MysqlSession>)>;

/// One increment through `slot` (which the backend has connected to the primary). On an
/// error the session is dropped so the next write reconnects and finds the primary again
/// (it may have moved).
pub async fn increment_in(slot: &mut SessionSlot, seq: u64) -> Result<CounterAck, CounterError> {
    let key = format!("{COUNTER_KEY_PREFIX}{seq}");
    let Some((site, session)) = slot.as_mut() else {
        return Err(CounterError::NoSession);
    };
    match session.counter_increment(&key).await {
        Ok(value) => Ok(CounterAck {
            value: u64::try_from(value).unwrap_or_default(),
            site: site.clone(),
        }),
        Err(e) => {
            *slot = None;
            Err(e.into())
        }
    }
}

/// Which of the increment numbers `attempted` are present on the primary (for
/// no-acknowledged-write-lost). `open` yields the backend's connected session slot; it
/// is taken per lookup so that the counter's own writes interleave with a long check.
/// On an error the session is dropped, as in [`increment_in`].
pub async fn present_in<Guard, Opening>(
    mut open: impl FnMut() -> Opening,
    attempted: &std::sync::Mutex<BTreeSet<u64>>,
) -> Result<BTreeSet<u64>, CounterError>
where
    Opening: std::future::Future<Output = Result<Guard, CounterError>>,
    Guard: std::ops::DerefMut<Target = SessionSlot>,
{
    let attempted: Vec<u64> = attempted
        .lock()
        .map(|a| a.iter().copied().collect())
        .unwrap_or_default();
    let mut present = BTreeSet::new();
    for seq in attempted {
        let key = format!("{COUNTER_KEY_PREFIX}{seq}");
        let mut slot = open().await?;
        let Some((_, session)) = slot.as_mut() else {
            return Err(CounterError::NoSession);
        };
        match session.counter_read(&key).await {
            Ok(Some(_)) => {
                present.insert(seq);
            }
            Ok(None) => {}
            Err(e) => {
                *slot = None;
                return Err(e.into());
            }
        }
    }
    Ok(present)
}

/// The workload's connection to the system under test, provided by the backend.
pub trait CounterTarget: Send + Sync {
    /// Commits increment number `seq` through the primary Service.
    fn increment(&self, seq: u64) -> BoxFuture<'_, Result<CounterAck, CounterError>>;
    /// INCR through the Dragonfly Service; returns the cache counter's value.
    fn cache_incr(&self) -> BoxFuture<'_, Result<u64, CounterError>>;
    /// The increment numbers present on the current primary, for no-acknowledged-write-lost.
    fn committed(&self) -> BoxFuture<'_, Result<BTreeSet<u64>, CounterError>>;
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum WriteOutcome {
    Acked { value: u64, site: String },
    Failed { error: String },
}

/// One increment attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteRecord {
    pub seq: u64,
    pub invoked_at: Millis,
    pub completed_at: Millis,
    #[serde(flatten)]
    pub outcome: WriteOutcome,
}

impl WriteRecord {
    pub fn acked_site(&self) -> Option<&str> {
        match &self.outcome {
            WriteOutcome::Acked { site, .. } => Some(site),
            WriteOutcome::Failed { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheRecord {
    pub at: Millis,
    pub result: Result<u64, String>,
}

/// A site's writability as observed at an instant (sim: sampled by the driver from
/// the MySQL models; live: from polling `read_only` on each site). One type for both:
/// the simulation's driver records it.
pub use bloodraven_sim::harness::WritabilitySample;

/// A span during which the runner could not observe a site's writability, `[from,
/// to)` (`to: None`: still unobserved at the end of the run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservationGap {
    pub site: String,
    pub from: Millis,
    pub to: Option<Millis>,
    /// Why the first poll of the gap failed.
    pub reason: String,
}

/// A fault in effect, `[from, to)` (`to: None`: not undone before the run ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultWindow {
    /// The fault's ledger sequence number.
    pub seq: u64,
    pub fault: String,
    pub from: Millis,
    pub to: Option<Millis>,
}

/// Everything the workload saw during one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct History {
    pub writes: Vec<WriteRecord>,
    pub cache: Vec<CacheRecord>,
    pub writability: Vec<WritabilitySample>,
    /// Where the writability poll saw nothing (live backends only).
    pub observation_gaps: Vec<ObservationGap>,
    pub faults: Vec<FaultWindow>,
}

impl History {
    /// Records one poll of one site: a known state closes the site's open gap (and is a
    /// sample when it changed), an unknown one opens a gap unless one is open.
    pub fn record_poll(&mut self, at: Millis, site: &str, writable: Option<bool>, reason: &str) {
        let open_gap = self
            .observation_gaps
            .iter_mut()
            .rev()
            .find(|g| g.site == site && g.to.is_none());
        match (writable, open_gap) {
            (None, Some(_)) => {}
            (None, None) => self.observation_gaps.push(ObservationGap {
                site: site.to_owned(),
                from: at,
                to: None,
                reason: reason.to_owned(),
            }),
            (Some(writable), gap) => {
                let reopened = gap.is_some();
                if let Some(g) = gap {
                    g.to = Some(at);
                }
                let last = self
                    .writability
                    .iter()
                    .rev()
                    .find(|s| s.site == site)
                    .map(|s| s.writable);
                // After a gap the state is sampled again even if unchanged: the gap
                // closed any writable interval.
                if reopened || last != Some(writable) {
                    self.writability.push(WritabilitySample {
                        at,
                        site: site.to_owned(),
                        writable,
                    });
                }
            }
        }
    }

    pub fn acknowledged(&self) -> impl Iterator<Item = &WriteRecord> {
        self.writes
            .iter()
            .filter(|w| matches!(w.outcome, WriteOutcome::Acked { .. }))
    }
}

pub type SharedHistory = Arc<Mutex<History>>;

/// Runs the counter until `stop` flips to true: one increment per tick, waiting for
/// each to finish before the next (a single sequential client, so that acks are
/// totally ordered and write-unavailability windows are well defined).
pub async fn run_counter(
    target: Arc<dyn CounterTarget>,
    spec: CounterSpec,
    clock: SharedClock,
    history: SharedHistory,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let per_second = u64::from(spec.writes_per_second.max(1));
    let tick = Duration::from_millis(1000 / per_second);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        seq += 1;
        let invoked_at = now_ms(&clock);
        let outcome = match target.increment(seq).await {
            Ok(ack) => WriteOutcome::Acked {
                value: ack.value,
                site: ack.site,
            },
            Err(error) => WriteOutcome::Failed {
                error: error.to_string(),
            },
        };
        let completed_at = now_ms(&clock);
        let cache = if spec.cache {
            let result = target.cache_incr().await.map_err(|e| e.to_string());
            Some(CacheRecord {
                at: now_ms(&clock),
                result,
            })
        } else {
            None
        };
        if let Ok(mut h) = history.lock() {
            h.writes.push(WriteRecord {
                seq,
                invoked_at,
                completed_at,
                outcome,
            });
            h.cache.extend(cache);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bloodraven::seams::Clock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock that follows tokio's (paused) time, so the test is instant and exact.
    struct TokioClock(tokio::time::Instant);
    impl Clock for TokioClock {
        fn now(&self) -> jiff::Timestamp {
            let ms = self.0.elapsed().as_millis() as i64;
            jiff::Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap()
        }
    }

    /// Fails every third increment; acks the rest from "iad".
    struct Flaky(AtomicU64);
    impl CounterTarget for Flaky {
        fn increment(&self, seq: u64) -> BoxFuture<'_, Result<CounterAck, CounterError>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if seq.is_multiple_of(3) {
                    return Err(CounterError::Connect {
                        target: "primary".into(),
                        message: "connection refused".into(),
                    });
                }
                let value = self.0.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(CounterAck {
                    value,
                    site: "iad".into(),
                })
            })
        }
        fn cache_incr(&self) -> BoxFuture<'_, Result<u64, CounterError>> {
            Box::pin(async { Ok(7) })
        }
        fn committed(&self) -> BoxFuture<'_, Result<BTreeSet<u64>, CounterError>> {
            Box::pin(async { Ok(BTreeSet::new()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn records_attempts_acks_errors_and_cache_values_on_the_clock() {
        let clock: SharedClock = Arc::new(TokioClock(tokio::time::Instant::now()));
        let history = SharedHistory::default();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let spec = CounterSpec {
            writes_per_second: 10,
            cache: true,
        };
        let task = tokio::spawn(run_counter(
            Arc::new(Flaky(AtomicU64::new(0))),
            spec,
            clock,
            history.clone(),
            stop_rx,
        ));
        tokio::time::sleep(Duration::from_millis(950)).await;
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        let h = history.lock().unwrap();
        assert_eq!(h.writes.len(), 10, "{:?}", h.writes);
        assert_eq!(
            h.writes.iter().map(|w| w.seq).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(h.acknowledged().count(), 7);
        let third = &h.writes[2];
        assert_eq!(
            third.outcome,
            WriteOutcome::Failed {
                error: "connection refused".into()
            }
        );
        // Ticks every 100ms from t=0, each write takes 5ms of (virtual) time.
        assert_eq!(h.writes[1].invoked_at - h.writes[0].invoked_at, 100);
        assert_eq!(h.writes[0].completed_at - h.writes[0].invoked_at, 5);
        assert_eq!(h.cache.len(), 10);
        assert_eq!(h.cache[0].result, Ok(7));
    }
}
