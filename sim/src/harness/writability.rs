//! Site writability as the driver samples it after every tick: a site accepts writes
//! when any MySQL model of a site on its node does (not a verification scratch mysqld). Only changes are recorded, so that a
//! single-writer check sees every flip, however short, at simulated-millisecond time.

use std::collections::BTreeMap;

use bloodraven::seams::Clock;
use serde::Serialize;

use crate::SimClock;
use crate::models::mysql::MysqlObserver;

/// Milliseconds since the Unix epoch (simulated time in the simulation).
pub type Millis = i64;

/// A site's writability as observed at an instant (sim: from the MySQL models; live:
/// from polling `read_only` on each site).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WritabilitySample {
    pub at: Millis,
    pub site: String,
    pub writable: bool,
}

/// Remembers each site's last writability, to report only changes.
#[derive(Debug, Default)]
pub struct WritabilitySampler {
    last: BTreeMap<String, bool>,
}

impl WritabilitySampler {
    /// The sites (site -> node) whose writability changed since the last call.
    pub fn sample(
        &mut self,
        clock: &SimClock,
        sites: &BTreeMap<String, String>,
        observer: &MysqlObserver,
    ) -> Vec<WritabilitySample> {
        // Runs after every tick: compare in place, allocate only on a change.
        let now = clock.now().as_millisecond();
        let mut changes = Vec::new();
        for (site, node) in sites {
            let writable = observer.accepts_writes_on(node);
            if self.last.get(site) != Some(&writable) {
                changes.push(WritabilitySample {
                    at: now,
                    site: site.clone(),
                    writable,
                });
                self.last.insert(site.clone(), writable);
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_site_once_then_only_changes() {
        let clock = SimClock::new(std::time::Duration::from_secs(1_700_000_000));
        let sites = BTreeMap::from([
            ("iad".to_owned(), "bloodraven-iad".to_owned()),
            ("pdx".to_owned(), "bloodraven-pdx".to_owned()),
        ]);
        // No MySQL model runs anywhere: no site accepts writes.
        let observer = MysqlObserver::default();
        let mut sampler = WritabilitySampler::default();
        let first = sampler.sample(&clock, &sites, &observer);
        assert_eq!(
            first,
            vec![
                WritabilitySample {
                    at: 1_700_000_000_000,
                    site: "iad".into(),
                    writable: false
                },
                WritabilitySample {
                    at: 1_700_000_000_000,
                    site: "pdx".into(),
                    writable: false
                },
            ]
        );
        assert_eq!(sampler.sample(&clock, &sites, &observer), vec![]);
    }
}
