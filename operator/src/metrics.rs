//! The operator's Prometheus metrics (`bloodraven_` prefix) and the HTTP router that
//! serves them with `/healthz` and `/readyz`. One [`Metrics`] value is created at start
//! and shared; the controllers call its small setters, never the registry directly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::Health;
use crate::engine::{FailoverKind, FailoverResult, MetricIntent};

mod labels;

pub use labels::ReconcileResult;
use labels::{
    DragonflyRoleLabels, DragonflyTakeoverLabels, FailoverKindLabels, FailoverLabels, GroupLabels,
    HealthLabel, HealthLabels, KindLabel, ProfileLabels, ProfileResultLabels, ReconcileLabels,
    ResultLabel, SiteLabels,
};

/// What the operator observed about one site, for the per-site gauges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteGauges {
    pub writable: bool,
    pub reachable: bool,
    pub replicating: bool,
    /// `None` when not replicating (MySQL reports NULL): the gauge is then removed
    /// rather than showing a misleading 0.
    pub lag_seconds: Option<f64>,
    pub divergent_transactions: u64,
}

type F64Gauge = Gauge<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

struct Inner {
    registry: Registry,
    group_health: Family<HealthLabels, Gauge>,
    active_site: Family<SiteLabels, Gauge>,
    site_writable: Family<SiteLabels, Gauge>,
    site_reachable: Family<SiteLabels, Gauge>,
    site_replicating: Family<SiteLabels, Gauge>,
    site_lag_seconds: Family<SiteLabels, F64Gauge>,
    divergent_transactions: Family<SiteLabels, Gauge>,
    split_brain: Family<GroupLabels, Gauge>,
    split_brain_detected: Family<GroupLabels, Counter>,
    failovers: Family<FailoverLabels, Counter>,
    failover_duration: HistogramFamily<FailoverKindLabels>,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: HistogramFamily<GroupLabels>,
    status_writes_dropped: Family<GroupLabels, Counter>,
    writer_lease_renewal_age: Family<GroupLabels, F64Gauge>,
    dns_site: Family<SiteLabels, Gauge>,
    leader: Gauge,
    backups: Family<ProfileResultLabels, Counter>,
    backup_last_success: Family<ProfileLabels, F64Gauge>,
    backup_duration: HistogramFamily<ProfileLabels>,
    backup_size: Family<ProfileLabels, Gauge>,
    dragonfly_role: Family<DragonflyRoleLabels, Gauge>,
    dragonfly_takeovers: Family<DragonflyTakeoverLabels, Counter>,
    dragonfly_sessions_preserved: Family<GroupLabels, Gauge>,
    dragonfly_ready: Family<GroupLabels, Gauge>,
    backup_max_age: Family<ProfileLabels, F64Gauge>,
    verifications: Family<ProfileResultLabels, Counter>,
    verification_last_success: Family<ProfileLabels, F64Gauge>,
    verification_duration: HistogramFamily<ProfileLabels>,
    probe_duration: HistogramFamily<GroupLabels>,
    /// Every site each group's per-site series were set for, keyed by (namespace,
    /// group): `forget_group` removes exactly those, whatever the spec says by then.
    group_sites: Mutex<BTreeMap<(String, String), BTreeSet<String>>>,
    /// Every backup profile each group's freshness series were set for, so that a
    /// removed profile's (and a deleted group's) series go with it.
    group_profiles: Mutex<BTreeMap<(String, String), BTreeSet<String>>>,
}

/// The operator's metrics. Cheap to clone; all clones share one registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

fn profile_labels(namespace: &str, group: &str, profile: &str) -> ProfileLabels {
    ProfileLabels {
        namespace: namespace.to_string(),
        group: group.to_string(),
        profile: profile.to_string(),
    }
}

/// One finished backup or verification run: its result counted, its duration observed
/// when it ran at all (a refusal has none).
fn count_run(
    results: &Family<ProfileResultLabels, Counter>,
    durations: &HistogramFamily<ProfileLabels>,
    labels: &ProfileLabels,
    succeeded: bool,
    duration: Option<Duration>,
) {
    results
        .get_or_create(&ProfileResultLabels {
            namespace: labels.namespace.clone(),
            group: labels.group.clone(),
            profile: labels.profile.clone(),
            result: if succeeded { "succeeded" } else { "failed" }.to_string(),
        })
        .inc();
    if let Some(duration) = duration {
        durations
            .get_or_create(labels)
            .observe(duration.as_secs_f64());
    }
}

/// Unix seconds of `at`, as Prometheus timestamps are written.
fn seconds(at: jiff::Timestamp) -> f64 {
    // Milliseconds to seconds; precision beyond f64's 53 bits is irrelevant here.
    #[allow(clippy::cast_precision_loss)]
    let millis = at.as_millisecond() as f64;
    millis / 1000.0
}

fn failover_buckets() -> Histogram {
    // Emergency failovers target <= 10 s, planned ones seconds: 0.25 s .. 64 s.
    Histogram::new([0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 16.0, 32.0, 64.0])
}

fn backup_buckets() -> Histogram {
    // A dump of the playground takes seconds; a large database hours.
    Histogram::new([1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0])
}

fn reconcile_buckets() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bloodraven");
        let inner = Inner {
            group_health: Family::default(),
            active_site: Family::default(),
            site_writable: Family::default(),
            site_reachable: Family::default(),
            site_replicating: Family::default(),
            site_lag_seconds: Family::default(),
            divergent_transactions: Family::default(),
            split_brain: Family::default(),
            split_brain_detected: Family::default(),
            failovers: Family::default(),
            failover_duration: Family::new_with_constructor(failover_buckets),
            reconciles: Family::default(),
            reconcile_duration: Family::new_with_constructor(reconcile_buckets),
            status_writes_dropped: Family::default(),
            writer_lease_renewal_age: Family::default(),
            dns_site: Family::default(),
            leader: Gauge::default(),
            backups: Family::default(),
            backup_last_success: Family::default(),
            backup_duration: Family::new_with_constructor(backup_buckets),
            backup_size: Family::default(),
            dragonfly_role: Family::default(),
            dragonfly_takeovers: Family::default(),
            dragonfly_sessions_preserved: Family::default(),
            dragonfly_ready: Family::default(),
            backup_max_age: Family::default(),
            verifications: Family::default(),
            verification_last_success: Family::default(),
            verification_duration: Family::new_with_constructor(backup_buckets),
            probe_duration: Family::new_with_constructor(reconcile_buckets),
            group_sites: Mutex::default(),
            group_profiles: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "group_health",
            "1 for the group's current health (Healthy, Degraded, SplitBrain, NoPrimary), 0 for the others",
            inner.group_health.clone(),
        );
        registry.register(
            "active_site",
            "1 for the site that holds the writer lease and accepts writes, 0 for the others",
            inner.active_site.clone(),
        );
        registry.register(
            "site_writable",
            "1 while the site's mysqld accepts writes (read_only=OFF)",
            inner.site_writable.clone(),
        );
        registry.register(
            "site_reachable",
            "1 while the operator's probes reach the site's mysqld within the detection window",
            inner.site_reachable.clone(),
        );
        registry.register(
            "site_replicating",
            "1 while the site's replica IO and SQL threads both run",
            inner.site_replicating.clone(),
        );
        registry.register(
            "site_replication_lag_seconds",
            "Seconds_Behind_Source of the site's replica; absent while not replicating",
            inner.site_lag_seconds.clone(),
        );
        registry.register(
            "divergent_transactions",
            "Transactions the site has and the primary lacks (RecoveryPending while > 0)",
            inner.divergent_transactions.clone(),
        );
        registry.register(
            "split_brain",
            "1 while two sites of the group accept writes",
            inner.split_brain.clone(),
        );
        registry.register(
            "split_brain_detected",
            "Times two writable sites were detected (and the one without the lease fenced)",
            inner.split_brain_detected.clone(),
        );
        registry.register(
            "failovers",
            "Failovers by kind (emergency, planned) and result (succeeded, failed)",
            inner.failovers.clone(),
        );
        registry.register(
            "failover_duration_seconds",
            "From detection (emergency) or the annotation (planned) to the new primary accepting writes",
            inner.failover_duration.clone(),
        );
        registry.register(
            "reconciles",
            "Reconcile passes by result (success, error)",
            inner.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Wall time of one reconcile pass",
            inner.reconcile_duration.clone(),
        );
        registry.register(
            "status_writes_dropped",
            "Status writes that failed and were dropped (the next pass writes the status again)",
            inner.status_writes_dropped.clone(),
        );
        registry.register(
            "writer_lease_renewal_age_seconds",
            "Seconds since the operator last saw the writer Lease renewed; absent while it has no holder",
            inner.writer_lease_renewal_age.clone(),
        );
        registry.register(
            "dns_site",
            "1 for the site the DNSEndpoint points at, 0 for the others; absent without spec.dns",
            inner.dns_site.clone(),
        );
        registry.register(
            "leader",
            "1 while this operator replica holds the leader lease and acts",
            inner.leader.clone(),
        );
        registry.register(
            "backups",
            "Finished backups by profile and result (succeeded, failed)",
            inner.backups.clone(),
        );
        registry.register(
            "backup_last_success_timestamp_seconds",
            "Unix time at which the profile's latest successful backup finished",
            inner.backup_last_success.clone(),
        );
        registry.register(
            "backup_duration_seconds",
            "From a backup's start to its end (succeeded or failed)",
            inner.backup_duration.clone(),
        );
        registry.register(
            "backup_size_bytes",
            "Size of the profile's latest successful backup object",
            inner.backup_size.clone(),
        );
        registry.register(
            "backup_verifications",
            "Finished backup verifications by profile and result (succeeded, failed)",
            inner.verifications.clone(),
        );
        registry.register(
            "backup_verification_last_success_timestamp_seconds",
            "Unix time at which the profile's latest successful backup verification finished",
            inner.verification_last_success.clone(),
        );
        registry.register(
            "backup_verification_duration_seconds",
            "From a verification's start to its end (succeeded or failed; refusals have none)",
            inner.verification_duration.clone(),
        );
        registry.register(
            "dragonfly_role",
            "1 for the role (master, replica) each site's Dragonfly reports, 0 for the other",
            inner.dragonfly_role.clone(),
        );
        registry.register(
            "dragonfly_takeovers",
            "Moves of the Dragonfly master by method (REPLTAKEOVER, REPLICAOF NO ONE, none) and result",
            inner.dragonfly_takeovers.clone(),
        );
        registry.register(
            "dragonfly_sessions_preserved",
            "1 when the last move of the Dragonfly master preserved every session (REPLTAKEOVER), else 0",
            inner.dragonfly_sessions_preserved.clone(),
        );
        registry.register(
            "dragonfly_ready",
            "1 while the Dragonfly master serves traffic and the other site is in stable sync (the DragonflyReady condition), else 0",
            inner.dragonfly_ready.clone(),
        );
        registry.register(
            "backup_max_age_seconds",
            "How old the profile's newest successful backup may get: twice the schedule's longest wait between runs",
            inner.backup_max_age.clone(),
        );
        registry.register(
            "probe_duration_seconds",
            "Time of one probe pass: every site of the group probed in turn",
            inner.probe_duration.clone(),
        );
        Self(Arc::new(Inner { registry, ..inner }))
    }

    fn group(namespace: &str, group: &str) -> GroupLabels {
        GroupLabels {
            namespace: namespace.to_string(),
            group: group.to_string(),
        }
    }

    fn site(namespace: &str, group: &str, site: &str) -> SiteLabels {
        SiteLabels {
            namespace: namespace.to_string(),
            group: group.to_string(),
            site: site.to_string(),
        }
    }

    /// Sets the health state set: 1 for `health`, 0 for the other three.
    pub fn set_health(&self, namespace: &str, group: &str, health: Health) {
        let current = HealthLabel::from(health);
        for label in [
            HealthLabel::Healthy,
            HealthLabel::Degraded,
            HealthLabel::SplitBrain,
            HealthLabel::NoPrimary,
        ] {
            let labels = HealthLabels {
                namespace: namespace.to_string(),
                group: group.to_string(),
                health: label,
            };
            self.0
                .group_health
                .get_or_create(&labels)
                .set(i64::from(label == current));
        }
        self.0
            .split_brain
            .get_or_create(&Self::group(namespace, group))
            .set(i64::from(health == Health::SplitBrain));
    }

    /// Marks `active` (if any) as the active site among `sites`.
    pub fn set_active_site(
        &self,
        namespace: &str,
        group: &str,
        sites: &[&str],
        active: Option<&str>,
    ) {
        for site in sites {
            self.remember_site(namespace, group, site);
            self.0
                .active_site
                .get_or_create(&Self::site(namespace, group, site))
                .set(i64::from(Some(*site) == active));
        }
    }

    fn remember_site(&self, namespace: &str, group: &str, site: &str) {
        self.0
            .group_sites
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((namespace.to_string(), group.to_string()))
            .or_default()
            .insert(site.to_string());
    }

    pub fn set_site(&self, namespace: &str, group: &str, site: &str, gauges: SiteGauges) {
        self.remember_site(namespace, group, site);
        let labels = Self::site(namespace, group, site);
        let inner = &self.0;
        inner
            .site_writable
            .get_or_create(&labels)
            .set(i64::from(gauges.writable));
        inner
            .site_reachable
            .get_or_create(&labels)
            .set(i64::from(gauges.reachable));
        inner
            .site_replicating
            .get_or_create(&labels)
            .set(i64::from(gauges.replicating));
        match gauges.lag_seconds {
            Some(lag) => {
                inner.site_lag_seconds.get_or_create(&labels).set(lag);
            }
            None => {
                inner.site_lag_seconds.remove(&labels);
            }
        }
        inner
            .divergent_transactions
            .get_or_create(&labels)
            .set(i64::try_from(gauges.divergent_transactions).unwrap_or(i64::MAX));
    }

    /// Counts a finished failover and records how long it took.
    pub fn failover(
        &self,
        namespace: &str,
        group: &str,
        kind: FailoverKind,
        result: FailoverResult,
        duration: Duration,
    ) {
        let kind = KindLabel::from(kind);
        self.0
            .failovers
            .get_or_create(&FailoverLabels {
                namespace: namespace.to_string(),
                group: group.to_string(),
                kind,
                result: result.into(),
            })
            .inc();
        self.0
            .failover_duration
            .get_or_create(&FailoverKindLabels {
                namespace: namespace.to_string(),
                group: group.to_string(),
                kind,
            })
            .observe(duration.as_secs_f64());
    }

    /// Creates a group's counters at 0 (every kind and result of failover, split-brain
    /// entries, dropped status writes, reconciles of either result), so that the first
    /// event is an increase from 0 that `increase()` and `rate()` see, not the first
    /// sample of a new series. Called at a group's first reconcile; idempotent.
    pub fn init_group_counters(&self, namespace: &str, group: &str) {
        let inner = &self.0;
        for kind in [FailoverKind::Emergency, FailoverKind::Planned] {
            for result in [FailoverResult::Succeeded, FailoverResult::Failed] {
                drop(inner.failovers.get_or_create(&FailoverLabels {
                    namespace: namespace.to_string(),
                    group: group.to_string(),
                    kind: KindLabel::from(kind),
                    result: result.into(),
                }));
            }
        }
        // Creating the series is the point; the returned read guards are dropped.
        drop(
            inner
                .split_brain_detected
                .get_or_create(&Self::group(namespace, group)),
        );
        drop(
            inner
                .status_writes_dropped
                .get_or_create(&Self::group(namespace, group)),
        );
        for result in [ReconcileResult::success, ReconcileResult::error] {
            drop(inner.reconciles.get_or_create(&ReconcileLabels {
                namespace: namespace.to_string(),
                group: group.to_string(),
                result,
            }));
        }
    }

    pub fn split_brain_detected(&self, namespace: &str, group: &str) {
        self.0
            .split_brain_detected
            .get_or_create(&Self::group(namespace, group))
            .inc();
    }

    /// Applies a counter the engine asked for.
    pub fn record(&self, namespace: &str, group: &str, intent: &MetricIntent) {
        match intent {
            MetricIntent::SplitBrainDetected => self.split_brain_detected(namespace, group),
            MetricIntent::FailoverFinished {
                kind,
                result,
                duration,
            } => self.failover(namespace, group, *kind, *result, *duration),
            MetricIntent::DragonflyTakeover { method, succeeded } => {
                self.0
                    .dragonfly_takeovers
                    .get_or_create(&DragonflyTakeoverLabels {
                        namespace: namespace.to_string(),
                        group: group.to_string(),
                        method: (*method).to_string(),
                        result: if *succeeded {
                            ResultLabel::succeeded
                        } else {
                            ResultLabel::failed
                        },
                    })
                    .inc();
            }
        }
    }

    /// The Dragonfly gauges: each site's reported role (`None`: not answering, both 0),
    /// and whether the last completed move preserved sessions (`None`: no move yet).
    /// `ready`: the `DragonflyReady` condition (`None` without `spec.dragonfly`, which
    /// removes the series).
    pub fn set_dragonfly(
        &self,
        namespace: &str,
        group: &str,
        roles: &[(&str, Option<&str>)],
        sessions_preserved: Option<bool>,
        ready: Option<bool>,
    ) {
        for (site, role) in roles {
            self.remember_site(namespace, group, site);
            for candidate in ["master", "replica"] {
                self.0
                    .dragonfly_role
                    .get_or_create(&DragonflyRoleLabels {
                        namespace: namespace.to_string(),
                        group: group.to_string(),
                        site: (*site).to_string(),
                        role: candidate.to_string(),
                    })
                    .set(i64::from(*role == Some(candidate)));
            }
        }
        let labels = Self::group(namespace, group);
        match ready {
            Some(ready) => {
                self.0
                    .dragonfly_ready
                    .get_or_create(&labels)
                    .set(i64::from(ready));
            }
            None => {
                self.0.dragonfly_ready.remove(&labels);
            }
        }
        match sessions_preserved {
            Some(kept) => {
                self.0
                    .dragonfly_sessions_preserved
                    .get_or_create(&labels)
                    .set(i64::from(kept));
            }
            None => {
                self.0.dragonfly_sessions_preserved.remove(&labels);
            }
        }
    }

    /// One probe pass of a group (its sites probed in turn) took `took`.
    pub fn probed(&self, namespace: &str, group: &str, took: Duration) {
        self.0
            .probe_duration
            .get_or_create(&Self::group(namespace, group))
            .observe(took.as_secs_f64());
    }

    pub fn reconciled(
        &self,
        namespace: &str,
        group: &str,
        result: ReconcileResult,
        took: Duration,
    ) {
        self.0
            .reconciles
            .get_or_create(&ReconcileLabels {
                namespace: namespace.to_string(),
                group: group.to_string(),
                result,
            })
            .inc();
        self.0
            .reconcile_duration
            .get_or_create(&Self::group(namespace, group))
            .observe(took.as_secs_f64());
    }

    pub fn status_write_dropped(&self, namespace: &str, group: &str) {
        self.0
            .status_writes_dropped
            .get_or_create(&Self::group(namespace, group))
            .inc();
    }

    /// A backup finished: counts it and observes its duration. The last success and
    /// its size come from [`Metrics::set_backup_freshness`].
    pub fn backup_finished(
        &self,
        namespace: &str,
        group: &str,
        profile: &str,
        succeeded: bool,
        duration: Option<Duration>,
    ) {
        let labels = profile_labels(namespace, group, profile);
        count_run(
            &self.0.backups,
            &self.0.backup_duration,
            &labels,
            succeeded,
            duration,
        );
    }

    /// Each profile's newest successful backup (time, size) and how old it may get,
    /// as the `MysqlBackup` objects say: every operator that leads exports the same
    /// figures, whether or not it saw the backup finish. Profiles of the group that
    /// are no longer listed lose their series.
    pub fn set_backup_freshness(
        &self,
        namespace: &str,
        group: &str,
        profiles: &[crate::engine::backup_freshness::ProfileFreshness],
    ) {
        let inner = &self.0;
        let listed: BTreeSet<String> = profiles.iter().map(|p| p.profile.clone()).collect();
        let before = inner
            .group_profiles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace.to_string(), group.to_string()), listed.clone())
            .unwrap_or_default();
        for gone in before.difference(&listed) {
            self.forget_profile(namespace, group, gone);
        }
        for freshness in profiles {
            let labels = profile_labels(namespace, group, &freshness.profile);
            match freshness.last_success {
                Some((at, size)) => {
                    inner
                        .backup_last_success
                        .get_or_create(&labels)
                        .set(seconds(at));
                    match size {
                        Some(size) => {
                            inner.backup_size.get_or_create(&labels).set(size);
                        }
                        None => {
                            inner.backup_size.remove(&labels);
                        }
                    }
                }
                None => {
                    inner.backup_last_success.remove(&labels);
                    inner.backup_size.remove(&labels);
                }
            }
            match freshness.max_age {
                Some(age) => {
                    inner
                        .backup_max_age
                        .get_or_create(&labels)
                        .set(age.as_secs_f64());
                }
                None => {
                    inner.backup_max_age.remove(&labels);
                }
            }
        }
    }

    fn forget_profile(&self, namespace: &str, group: &str, profile: &str) {
        let labels = profile_labels(namespace, group, profile);
        self.0.backup_last_success.remove(&labels);
        self.0.backup_size.remove(&labels);
        self.0.backup_max_age.remove(&labels);
    }

    /// A verification finished (or was refused): counts it, observes its duration when
    /// it ran, and for a success sets the last-success time. `at` is the wall time.
    pub fn verification_finished(
        &self,
        namespace: &str,
        group: &str,
        profile: &str,
        succeeded: bool,
        duration: Option<Duration>,
        at: jiff::Timestamp,
    ) {
        let labels = profile_labels(namespace, group, profile);
        count_run(
            &self.0.verifications,
            &self.0.verification_duration,
            &labels,
            succeeded,
            duration,
        );
        if succeeded {
            self.0
                .verification_last_success
                .get_or_create(&labels)
                .set(seconds(at));
        }
    }

    /// How long ago the operator last saw the writer Lease change (a renewal, a new
    /// holder); `None` while the Lease has no holder, which removes the series: nobody
    /// is expected to renew it then.
    pub fn set_writer_lease_renewal_age(
        &self,
        namespace: &str,
        group: &str,
        age: Option<Duration>,
    ) {
        let labels = Self::group(namespace, group);
        match age {
            Some(age) => {
                self.0
                    .writer_lease_renewal_age
                    .get_or_create(&labels)
                    .set(age.as_secs_f64());
            }
            None => {
                self.0.writer_lease_renewal_age.remove(&labels);
            }
        }
    }

    /// Marks the site the DNSEndpoint points at (`status.dns.site`) among `sites`: 1
    /// for it, 0 for the others, all 0 when it points at none of them. `None` (the
    /// group has no `spec.dns`) removes the series, so that no alert compares them.
    pub fn set_dns_site(
        &self,
        namespace: &str,
        group: &str,
        sites: &[&str],
        published: Option<Option<&str>>,
    ) {
        for site in sites {
            self.remember_site(namespace, group, site);
            let labels = Self::site(namespace, group, site);
            match published {
                Some(published) => {
                    self.0
                        .dns_site
                        .get_or_create(&labels)
                        .set(i64::from(published == Some(*site)));
                }
                None => {
                    self.0.dns_site.remove(&labels);
                }
            }
        }
    }

    pub fn set_leader(&self, leader: bool) {
        self.0.leader.set(i64::from(leader));
    }

    /// Drops every per-group series of a deleted group, so that dashboards do not show
    /// a ghost group forever. Counters and histograms are kept (they are history).
    pub fn forget_group(&self, namespace: &str, group: &str) {
        let inner = &self.0;
        let sites = inner
            .group_sites
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_string(), group.to_string()))
            .unwrap_or_default();
        for health in [
            HealthLabel::Healthy,
            HealthLabel::Degraded,
            HealthLabel::SplitBrain,
            HealthLabel::NoPrimary,
        ] {
            inner.group_health.remove(&HealthLabels {
                namespace: namespace.to_string(),
                group: group.to_string(),
                health,
            });
        }
        inner.split_brain.remove(&Self::group(namespace, group));
        inner
            .writer_lease_renewal_age
            .remove(&Self::group(namespace, group));
        for site in &sites {
            let labels = Self::site(namespace, group, site);
            for family in [
                &inner.active_site,
                &inner.site_writable,
                &inner.site_reachable,
                &inner.site_replicating,
                &inner.divergent_transactions,
                &inner.dns_site,
            ] {
                family.remove(&labels);
            }
            inner.site_lag_seconds.remove(&labels);
            for role in ["master", "replica"] {
                inner.dragonfly_role.remove(&DragonflyRoleLabels {
                    namespace: namespace.to_string(),
                    group: group.to_string(),
                    site: site.clone(),
                    role: role.to_string(),
                });
            }
        }
        inner
            .dragonfly_sessions_preserved
            .remove(&Self::group(namespace, group));
        inner.dragonfly_ready.remove(&Self::group(namespace, group));
        let profiles = inner
            .group_profiles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_string(), group.to_string()))
            .unwrap_or_default();
        for profile in &profiles {
            self.forget_profile(namespace, group, profile);
        }
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a
        // label type, which the tests exercise.
        if let Err(err) = encode(&mut out, &self.0.registry) {
            tracing::error!(%err, "encoding metrics failed");
        }
        out
    }
}

/// Whether the process is ready to serve (its caches have synced). Shared between the
/// controller, which sets it, and `/readyz`.
#[derive(Clone, Default, Debug)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `/metrics`, `/healthz` (the process runs) and `/readyz` (caches synced).
pub fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, OPENMETRICS)], metrics.render()) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    if readiness.is_ready() {
                        (StatusCode::OK, "ready").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced").into_response()
                    }
                }
            }),
        )
}

/// Every metric family the operator registers, by registered name (without the
/// `bloodraven_` prefix) and type. A test holds it to the `registry.register` calls of
/// [`Metrics::new`]; the scenario parser checks `metric:` names against the samples.
pub const FAMILIES: &[(&str, MetricType)] = &[
    ("group_health", MetricType::Gauge),
    ("active_site", MetricType::Gauge),
    ("site_writable", MetricType::Gauge),
    ("site_reachable", MetricType::Gauge),
    ("site_replicating", MetricType::Gauge),
    ("site_replication_lag_seconds", MetricType::Gauge),
    ("divergent_transactions", MetricType::Gauge),
    ("split_brain", MetricType::Gauge),
    ("split_brain_detected", MetricType::Counter),
    ("failovers", MetricType::Counter),
    ("failover_duration_seconds", MetricType::Histogram),
    ("reconciles", MetricType::Counter),
    ("reconcile_duration_seconds", MetricType::Histogram),
    ("status_writes_dropped", MetricType::Counter),
    ("writer_lease_renewal_age_seconds", MetricType::Gauge),
    ("dns_site", MetricType::Gauge),
    ("leader", MetricType::Gauge),
    ("backups", MetricType::Counter),
    ("backup_last_success_timestamp_seconds", MetricType::Gauge),
    ("backup_duration_seconds", MetricType::Histogram),
    ("backup_size_bytes", MetricType::Gauge),
    ("dragonfly_role", MetricType::Gauge),
    ("dragonfly_takeovers", MetricType::Counter),
    ("dragonfly_sessions_preserved", MetricType::Gauge),
    ("dragonfly_ready", MetricType::Gauge),
    ("backup_max_age_seconds", MetricType::Gauge),
    ("backup_verifications", MetricType::Counter),
    (
        "backup_verification_last_success_timestamp_seconds",
        MetricType::Gauge,
    ),
    (
        "backup_verification_duration_seconds",
        MetricType::Histogram,
    ),
    ("probe_duration_seconds", MetricType::Histogram),
];

/// The OpenMetrics type of a family: it decides the names of its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
    Histogram,
}

/// Every sample name the operator's /metrics can expose (`bloodraven_failovers_total`,
/// `bloodraven_failover_duration_seconds_bucket`, `bloodraven_leader`, ...).
pub fn exposed_sample_names() -> Vec<String> {
    FAMILIES
        .iter()
        .flat_map(|(family, kind)| {
            let suffixes: &[&str] = match kind {
                MetricType::Gauge => &[""],
                MetricType::Counter => &["_total"],
                MetricType::Histogram => &["_bucket", "_sum", "_count"],
            };
            suffixes
                .iter()
                .map(move |suffix| format!("bloodraven_{family}{suffix}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_exactly_what_new_registers() {
        let source = include_str!("metrics.rs");
        // Built at run time, so this test's own text does not count as a registration.
        let call = ["registry", ".register("].concat();
        let registered = source.matches(&call).count();
        assert_eq!(
            registered,
            FAMILIES.len(),
            "FAMILIES is out of step with Metrics::new"
        );
        for (family, _) in FAMILIES {
            assert!(
                source.contains(&format!("{call}\n            \"{family}\",")),
                "{family} is not registered"
            );
        }
        // Every sample a populated registry writes has one of the exposed names.
        let names = exposed_sample_names();
        let m = Metrics::new();
        m.set_health("ns", "g", Health::Healthy);
        m.set_leader(true);
        m.record(
            "ns",
            "g",
            &MetricIntent::FailoverFinished {
                kind: FailoverKind::Emergency,
                result: FailoverResult::Succeeded,
                duration: Duration::from_secs(1),
            },
        );
        let rendered = m.render();
        let samples: Vec<&str> = rendered
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        assert!(
            samples.contains(&"bloodraven_failovers_total"),
            "{rendered}"
        );
        for sample in samples {
            assert!(
                names.iter().any(|n| n == sample),
                "{sample} not in {names:?}"
            );
        }
    }

    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn lines(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(String::from)
            .collect()
    }

    #[test]
    fn health_is_a_state_set_and_split_brain_follows_it() {
        let m = Metrics::new();
        m.set_health("bp", "playground", Health::SplitBrain);
        let text = m.render();
        let mut health = lines(&text, "bloodraven_group_health{");
        health.sort();
        assert_eq!(
            health,
            vec![
                r#"bloodraven_group_health{namespace="bp",group="playground",health="Degraded"} 0"#,
                r#"bloodraven_group_health{namespace="bp",group="playground",health="Healthy"} 0"#,
                r#"bloodraven_group_health{namespace="bp",group="playground",health="NoPrimary"} 0"#,
                r#"bloodraven_group_health{namespace="bp",group="playground",health="SplitBrain"} 1"#,
            ]
        );
        assert!(
            text.contains("# TYPE bloodraven_group_health gauge"),
            "{text}"
        );
        assert!(text.contains(r#"bloodraven_split_brain{namespace="bp",group="playground"} 1"#));
        m.set_health("bp", "playground", Health::Healthy);
        assert!(
            m.render()
                .contains(r#"bloodraven_split_brain{namespace="bp",group="playground"} 0"#)
        );
    }

    #[test]
    fn per_site_gauges_and_active_site() {
        let m = Metrics::new();
        m.set_active_site("bp", "g", &["iad", "pdx"], Some("pdx"));
        m.set_site(
            "bp",
            "g",
            "iad",
            SiteGauges {
                writable: false,
                reachable: true,
                replicating: true,
                lag_seconds: Some(2.5),
                divergent_transactions: 0,
            },
        );
        m.set_site(
            "bp",
            "g",
            "pdx",
            SiteGauges {
                writable: true,
                reachable: true,
                replicating: false,
                lag_seconds: None,
                divergent_transactions: 3,
            },
        );
        let text = m.render();
        for expected in [
            r#"bloodraven_active_site{namespace="bp",group="g",site="pdx"} 1"#,
            r#"bloodraven_active_site{namespace="bp",group="g",site="iad"} 0"#,
            r#"bloodraven_site_writable{namespace="bp",group="g",site="pdx"} 1"#,
            r#"bloodraven_site_reachable{namespace="bp",group="g",site="iad"} 1"#,
            r#"bloodraven_site_replicating{namespace="bp",group="g",site="iad"} 1"#,
            r#"bloodraven_site_replication_lag_seconds{namespace="bp",group="g",site="iad"} 2.5"#,
            r#"bloodraven_divergent_transactions{namespace="bp",group="g",site="pdx"} 3"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        assert!(!text.contains(
            r#"bloodraven_site_replication_lag_seconds{namespace="bp",group="g",site="pdx"}"#
        ));
        // Issue 12: the controller knows only the group's name once it is deleted; the
        // per-site series must go too.
        m.forget_group("bp", "g");
        assert!(!m.render().contains(r#"group="g""#), "{}", m.render());
    }

    /// Issue 17: the two gauges the DNS and writer-lease alerts compare.
    #[test]
    fn dns_site_and_writer_lease_age_are_set_and_removed() {
        let m = Metrics::new();
        m.set_dns_site("bp", "g", &["iad", "pdx"], Some(Some("iad")));
        m.set_writer_lease_renewal_age("bp", "g", Some(Duration::from_millis(1500)));
        let text = m.render();
        for expected in [
            r#"bloodraven_dns_site{namespace="bp",group="g",site="iad"} 1"#,
            r#"bloodraven_dns_site{namespace="bp",group="g",site="pdx"} 0"#,
            r#"bloodraven_writer_lease_renewal_age_seconds{namespace="bp",group="g"} 1.5"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        // The record points at no site of the group: every site reads 0.
        m.set_dns_site("bp", "g", &["iad", "pdx"], Some(None));
        assert!(
            m.render()
                .contains(r#"bloodraven_dns_site{namespace="bp",group="g",site="iad"} 0"#)
        );
        // No spec.dns, no holder: no series, so no alert compares them.
        m.set_dns_site("bp", "g", &["iad", "pdx"], None);
        m.set_writer_lease_renewal_age("bp", "g", None);
        let text = m.render();
        assert!(!text.contains("bloodraven_dns_site{"), "{text}");
        assert!(
            !text.contains("bloodraven_writer_lease_renewal_age_seconds{"),
            "{text}"
        );
        m.set_dns_site("bp", "g", &["iad"], Some(Some("iad")));
        m.set_writer_lease_renewal_age("bp", "g", Some(Duration::ZERO));
        m.forget_group("bp", "g");
        assert!(!m.render().contains(r#"group="g""#), "{}", m.render());
    }

    /// Issue 12: a counter born at its first event is invisible to `increase()`; the
    /// group's counters exist at 0 from its first reconcile.
    #[test]
    fn backup_freshness_follows_the_profiles_listed_and_goes_with_the_group() {
        use crate::engine::backup_freshness::ProfileFreshness;
        let m = Metrics::new();
        let at: jiff::Timestamp = "2026-01-10T02:00:00Z".parse().unwrap();
        let minio = |last_success| ProfileFreshness {
            profile: "minio".into(),
            last_success,
            max_age: Some(jiff::SignedDuration::from_hours(48)),
        };
        m.set_backup_freshness("bp", "g", &[minio(Some((at, Some(2048))))]);
        let text = m.render();
        for expected in [
            r#"bloodraven_backup_last_success_timestamp_seconds{namespace="bp",group="g",profile="minio"} 1768010400.0"#,
            r#"bloodraven_backup_size_bytes{namespace="bp",group="g",profile="minio"} 2048"#,
            r#"bloodraven_backup_max_age_seconds{namespace="bp",group="g",profile="minio"} 172800.0"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        // The newest backup went (retention, deletion): no last success, the limit stays.
        m.set_backup_freshness("bp", "g", &[minio(None)]);
        let text = m.render();
        assert!(
            !text.contains("bloodraven_backup_last_success_timestamp_seconds{"),
            "{text}"
        );
        assert!(
            text.contains("bloodraven_backup_max_age_seconds{"),
            "{text}"
        );
        // The profile is removed from the spec: its series go.
        m.set_backup_freshness("bp", "g", &[]);
        assert!(!m.render().contains("bloodraven_backup_max_age_seconds{"));
        m.set_backup_freshness("bp", "g", &[minio(Some((at, None)))]);
        m.forget_group("bp", "g");
        assert!(!m.render().contains(r#"profile="minio""#), "{}", m.render());
    }

    #[test]
    fn dragonfly_ready_mirrors_the_condition_and_goes_without_spec_dragonfly() {
        let m = Metrics::new();
        m.set_dragonfly("bp", "g", &[("iad", Some("master"))], None, Some(false));
        assert!(
            m.render()
                .contains(r#"bloodraven_dragonfly_ready{namespace="bp",group="g"} 0"#)
        );
        m.set_dragonfly("bp", "g", &[("iad", Some("master"))], None, Some(true));
        assert!(
            m.render()
                .contains(r#"bloodraven_dragonfly_ready{namespace="bp",group="g"} 1"#)
        );
        m.set_dragonfly("bp", "g", &[], None, None);
        assert!(!m.render().contains("bloodraven_dragonfly_ready{"));
    }

    #[test]
    fn a_groups_counters_exist_at_zero_before_the_first_event() {
        let m = Metrics::new();
        m.init_group_counters("bp", "g");
        m.init_group_counters("bp", "g");
        let text = m.render();
        for expected in [
            r#"bloodraven_failovers_total{namespace="bp",group="g",kind="emergency",result="succeeded"} 0"#,
            r#"bloodraven_failovers_total{namespace="bp",group="g",kind="emergency",result="failed"} 0"#,
            r#"bloodraven_failovers_total{namespace="bp",group="g",kind="planned",result="succeeded"} 0"#,
            r#"bloodraven_failovers_total{namespace="bp",group="g",kind="planned",result="failed"} 0"#,
            r#"bloodraven_split_brain_detected_total{namespace="bp",group="g"} 0"#,
            r#"bloodraven_status_writes_dropped_total{namespace="bp",group="g"} 0"#,
            r#"bloodraven_reconciles_total{namespace="bp",group="g",result="error"} 0"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }

    #[test]
    fn failovers_count_by_kind_and_result_with_a_duration_histogram() {
        let m = Metrics::new();
        m.record(
            "bp",
            "g",
            &MetricIntent::FailoverFinished {
                kind: FailoverKind::Emergency,
                result: FailoverResult::Succeeded,
                duration: Duration::from_millis(7_300),
            },
        );
        m.failover(
            "bp",
            "g",
            FailoverKind::Planned,
            FailoverResult::Failed,
            Duration::from_secs(30),
        );
        m.record("bp", "g", &MetricIntent::SplitBrainDetected);
        let text = m.render();
        for expected in [
            "# TYPE bloodraven_failovers counter",
            r#"bloodraven_failovers_total{namespace="bp",group="g",kind="emergency",result="succeeded"} 1"#,
            r#"bloodraven_failovers_total{namespace="bp",group="g",kind="planned",result="failed"} 1"#,
            "# TYPE bloodraven_failover_duration_seconds histogram",
            r#"bloodraven_failover_duration_seconds_bucket{le="4.0",namespace="bp",group="g",kind="emergency"} 0"#,
            r#"bloodraven_failover_duration_seconds_bucket{le="8.0",namespace="bp",group="g",kind="emergency"} 1"#,
            r#"bloodraven_failover_duration_seconds_sum{namespace="bp",group="g",kind="emergency"} 7.3"#,
            r#"bloodraven_failover_duration_seconds_count{namespace="bp",group="g",kind="planned"} 1"#,
            r#"bloodraven_split_brain_detected_total{namespace="bp",group="g"} 1"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }

    #[test]
    fn reconciles_dropped_writes_and_leadership() {
        let m = Metrics::new();
        m.reconciled(
            "bp",
            "g",
            ReconcileResult::success,
            Duration::from_millis(3),
        );
        m.reconciled("bp", "g", ReconcileResult::error, Duration::from_millis(30));
        m.status_write_dropped("bp", "g");
        m.probed("bp", "g", Duration::from_millis(2));
        m.set_leader(true);
        let text = m.render();
        for expected in [
            r#"bloodraven_reconciles_total{namespace="bp",group="g",result="success"} 1"#,
            r#"bloodraven_reconciles_total{namespace="bp",group="g",result="error"} 1"#,
            r#"bloodraven_reconcile_duration_seconds_count{namespace="bp",group="g"} 2"#,
            r#"bloodraven_probe_duration_seconds_count{namespace="bp",group="g"} 1"#,
            r#"bloodraven_status_writes_dropped_total{namespace="bp",group="g"} 1"#,
            "bloodraven_leader 1",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn router_serves_metrics_health_and_readiness() {
        let metrics = Metrics::new();
        metrics.set_leader(true);
        let readiness = Readiness::default();
        let app = router(metrics, readiness.clone());
        let get = |path: &'static str| {
            let app = app.clone();
            async move {
                let response = app
                    .oneshot(Request::get(path).body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        assert_eq!(get("/healthz").await, (StatusCode::OK, "ok".into()));
        assert_eq!(get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        readiness.set(true);
        assert_eq!(get("/readyz").await.0, StatusCode::OK);
        let (status, text) = get("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("bloodraven_leader 1"), "{text}");
    }
}
