//! The loop shared by the leader-only controllers of backups and verifications: a pass
//! whenever this replica leads and a backup-related object changed (or the pass asked
//! to look again sooner), and the memory of the statuses a pass wrote until the cache
//! shows them. A follower keeps no memory: another leader may write meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Shared;
use crate::api::{JobPhase, JobStatus, MysqlBackupStatus, MysqlBackupVerificationStatus};

/// How often a leader-only controller looks without being woken.
pub(super) const TICK: Duration = Duration::from_secs(5);

/// A controller whose passes run only on the leader.
pub(super) trait LeaderPasses: Default + Send {
    /// One pass over every object; returns how soon to look again.
    fn pass<'a>(&'a mut self, shared: &'a Shared) -> impl Future<Output = Duration> + Send + 'a;
}

/// Runs `C`'s passes until `stop` turns true.
pub(super) async fn run<C: LeaderPasses>(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut controller = C::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let mut wait = TICK;
        if shared.elector.is_leader() {
            wait = wait.min(controller.pass(&shared).await);
        } else {
            controller = C::default();
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = shared.indexes.backups_changed.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// A status a controller writes in part, the rest being written by its Job.
pub(super) trait JobWrittenStatus: Clone {
    fn job(&self) -> &JobStatus;
    /// `self` (what the controller wrote) with the Job's own fields from `cached`.
    fn with_job_fields_from(&self, cached: &Self) -> Self;
}

impl JobWrittenStatus for MysqlBackupStatus {
    fn job(&self) -> &JobStatus {
        &self.job
    }

    fn with_job_fields_from(&self, cached: &Self) -> Self {
        MysqlBackupStatus {
            location: cached.location.clone(),
            size_bytes: cached.size_bytes,
            checksum: cached.checksum.clone(),
            gtid_executed: cached.gtid_executed.clone(),
            ..self.clone()
        }
    }
}

impl JobWrittenStatus for MysqlBackupVerificationStatus {
    fn job(&self) -> &JobStatus {
        &self.job
    }

    fn with_job_fields_from(&self, cached: &Self) -> Self {
        MysqlBackupVerificationStatus {
            result: cached.result,
            rows_returned: cached.rows_returned,
            ..self.clone()
        }
    }
}

fn rank(phase: Option<JobPhase>) -> u8 {
    match phase {
        None | Some(JobPhase::Pending) => 0,
        Some(JobPhase::Running) => 1,
        Some(JobPhase::Succeeded | JobPhase::Failed) => 2,
    }
}

/// The status a controller last wrote per object, (namespace, name), until the cache
/// shows it: a pass woken by the Job's creation must not decide from the status before
/// that write.
pub(super) struct Written<S>(BTreeMap<(String, String), S>);

impl<S> Default for Written<S> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<S: JobWrittenStatus> Written<S> {
    /// The status to decide from: ours while the cache is behind it (with the Job's own
    /// fields from the cache), else the cache's.
    pub(super) fn view(&mut self, key: &(String, String), cached: S) -> S {
        match self.0.get(key) {
            Some(ours) if rank(ours.job().phase) > rank(cached.job().phase) => {
                ours.with_job_fields_from(&cached)
            }
            _ => {
                self.0.remove(key);
                cached
            }
        }
    }

    pub(super) fn remember(&mut self, key: (String, String), status: S) {
        self.0.insert(key, status);
    }
}
