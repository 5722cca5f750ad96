//! The MysqlBackupVerification controller: for every verification in the caches,
//! observe (its group, its backup, its Job) -> `engine::verification::decide_verification`
//! -> act (create or delete the Job, write the status, publish the Event, record the
//! metrics). Runs beside the backup controller, only while this replica holds the
//! leader lease; it never talks to MySQL or S3 itself (the Job does).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::Shared;
use super::backup::job_state;
use super::leader_passes::{LeaderPasses, TICK, Written};
use crate::api::{
    MysqlBackup, MysqlBackupVerification, MysqlBackupVerificationStatus, MysqlFailoverGroup,
};
use crate::children::names;
use crate::children::verification::{VerificationJobSpec, verification_job};
use crate::engine::verification::{
    PitrState, VerificationDecision, VerificationObservation, decide_verification,
};
use crate::rbac::ApiAccess;

/// What this module calls (see `crate::rbac`). The Jobs' Role
/// (`children::backup::backup_role`) is granted `get` and `patch` on the status too.
pub(crate) const API_ACCESS: &[ApiAccess] = &[
    ApiAccess::watched(
        "bloodraven.shipstream.io",
        "mysqlbackupverifications/status",
        &["patch"],
        "each verification's phase, backup, timestamps and conditions; granted on to the verification Jobs' Role (they record the verdict)",
    ),
    ApiAccess::watched(
        "bloodraven.shipstream.io",
        "mysqlbackupverifications",
        &["get"],
        "granted on to the verification Jobs' Role (they read the sanity check)",
    ),
    ApiAccess::watched(
        "batch",
        "jobs",
        &["create", "delete"],
        "the verification Job of each MysqlBackupVerification, deleted once it passed",
    ),
];

/// What the verification controller keeps between passes while it leads.
#[derive(Default)]
pub(super) struct VerificationController {
    written: Written<MysqlBackupVerificationStatus>,
}

impl LeaderPasses for VerificationController {
    fn pass<'a>(&'a mut self, shared: &'a Shared) -> impl Future<Output = Duration> + Send + 'a {
        reconcile_all(shared, &mut self.written)
    }
}

fn regarding(verification: &MysqlBackupVerification) -> ObjectReference {
    ObjectReference {
        api_version: Some(MysqlBackupVerification::api_version(&()).to_string()),
        kind: Some(MysqlBackupVerification::kind(&()).to_string()),
        name: Some(verification.name_any()),
        namespace: verification.namespace(),
        uid: verification.uid(),
        ..ObjectReference::default()
    }
}

/// PITR as far as the operator knows it. No binlog archiver records anything on the
/// group yet (issue 15 part 4), so a group is never archiving: a pointInTime is always
/// refused, with a message saying which of the two is missing.
fn pitr_state(group: Option<&MysqlFailoverGroup>) -> PitrState {
    PitrState {
        enabled: group
            .and_then(|g| g.spec.backup.as_ref())
            .and_then(|b| b.pitr.as_ref())
            .is_some_and(|p| p.enabled),
        archiving: false,
    }
}

/// One pass over every verification; returns how soon to look again.
async fn reconcile_all(
    shared: &Shared,
    written: &mut Written<MysqlBackupVerificationStatus>,
) -> Duration {
    let indexes = &shared.indexes;
    let now = shared.deps.clock.now();
    let mut wait = TICK;
    let backups: Vec<MysqlBackup> = indexes
        .backups
        .state()
        .iter()
        .map(|b| b.as_ref().clone())
        .collect();
    for verification in indexes.verifications.state() {
        let namespace = verification.namespace().unwrap_or_default();
        let name = verification.name_any();
        let key = (namespace.clone(), name.clone());
        let status = written.view(&key, verification.status.clone().unwrap_or_default());
        let group = indexes
            .groups
            .get(&ObjectRef::new(&verification.spec.group).within(&namespace))
            .and_then(|o| o.group.clone().ok());
        let in_namespace: Vec<MysqlBackup> = backups
            .iter()
            .filter(|b| b.namespace().as_deref() == Some(namespace.as_str()))
            .cloned()
            .collect();
        // Once running, the backup recorded on the status is the one; before, the named
        // one or the profile's latest Succeeded.
        let wanted = status
            .backup
            .clone()
            .or_else(|| verification.spec.backup.clone());
        let backup = match &wanted {
            Some(wanted) => in_namespace.iter().find(|b| b.name_any() == *wanted),
            None => crate::backup::latest_succeeded(
                &in_namespace,
                &verification.spec.group,
                &verification.spec.profile,
            ),
        };
        let job = indexes
            .jobs
            .get(&ObjectRef::new(&names::verification_job(&name)).within(&namespace))
            .map(|job| job_state(&job));
        let decision = decide_verification(
            &VerificationObservation {
                name: &name,
                spec: &verification.spec,
                status: &status,
                group: group.as_deref(),
                backup,
                pitr: pitr_state(group.as_deref()),
                job,
                generation: verification.meta().generation,
                deleting: verification.meta().deletion_timestamp.is_some(),
            },
            now,
        );
        if let Some(requeue) = decision.requeue {
            wait = wait.min(requeue.max(Duration::from_millis(100)));
        }
        if let Err(err) = act(shared, &verification, group.as_deref(), &decision, written).await {
            tracing::warn!(verification = %name, %namespace, %err, "verification reconcile failed; retrying");
            wait = wait.min(Duration::from_secs(1));
        }
    }
    wait
}

#[derive(Debug, thiserror::Error)]
enum VerificationActError {
    #[error("creating Job {namespace}/{job} for MysqlBackupVerification {verification}: {source}")]
    CreateJob {
        namespace: String,
        job: String,
        verification: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "deleting Job {namespace}/{job} of the passed MysqlBackupVerification {verification}: {source}"
    )]
    DeleteJob {
        namespace: String,
        job: String,
        verification: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("writing the status of MysqlBackupVerification {namespace}/{verification}: {source}")]
    Status {
        namespace: String,
        verification: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("MysqlBackupVerification {0} has no uid; was it read from the cluster?")]
    NoUid(String),
    #[error("serializing the status of MysqlBackupVerification {verification}: {source}")]
    Serialize {
        verification: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Carries out one decision: the Job first (a status saying Running without a Job
/// would fail as JobMissing), then the status, the cleanup, the Event and the metrics.
async fn act(
    shared: &Shared,
    verification: &MysqlBackupVerification,
    group: Option<&MysqlFailoverGroup>,
    decision: &VerificationDecision,
    written: &mut Written<MysqlBackupVerificationStatus>,
) -> Result<(), VerificationActError> {
    let namespace = verification.namespace().unwrap_or_default();
    let name = verification.name_any();
    let client = &shared.deps.client;
    let jobs = Api::<Job>::namespaced(client.clone(), &namespace);
    if let (Some(start), Some(group)) = (&decision.start_job, group) {
        let profile = group
            .spec
            .backup
            .iter()
            .flat_map(|b| b.profiles.iter())
            .find(|p| p.name == verification.spec.profile);
        let owner = verification
            .controller_owner_ref(&())
            .ok_or_else(|| VerificationActError::NoUid(name.clone()))?;
        if let Some(profile) = profile {
            let job = verification_job(
                &VerificationJobSpec {
                    verification: &name,
                    namespace: &namespace,
                    owner,
                    group,
                    profile,
                    backup: &start.backup,
                    object: &start.object,
                    checksum: &start.checksum,
                    size_bytes: start.size_bytes,
                },
                &shared.settings.build,
            );
            match jobs.create(&PostParams::default(), &job).await {
                Ok(_) => {}
                // Created by an earlier pass whose status write did not land.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(source) => {
                    return Err(VerificationActError::CreateJob {
                        namespace,
                        job: names::verification_job(&name),
                        verification: name,
                        source: Box::new(source),
                    });
                }
            }
        }
    }
    if let Some(status) = &decision.status {
        let body =
            serde_json::to_value(status).map_err(|source| VerificationActError::Serialize {
                verification: name.clone(),
                source,
            })?;
        Api::<MysqlBackupVerification>::namespaced(client.clone(), &namespace)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": body })),
            )
            .await
            .map_err(|source| VerificationActError::Status {
                namespace: namespace.clone(),
                verification: name.clone(),
                source: Box::new(source),
            })?;
        written.remember((namespace.clone(), name.clone()), status.clone());
    }
    if decision.delete_job {
        // Background: the Job goes at once, its Pod (and with it the ephemeral PVC)
        // right after, by the garbage collector.
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match jobs.delete(&names::verification_job(&name), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(VerificationActError::DeleteJob {
                    namespace,
                    job: names::verification_job(&name),
                    verification: name,
                    source: Box::new(source),
                });
            }
        }
    }
    if let Some(event) = &decision.event
        && let Err(err) = shared.events.publish(event, &regarding(verification)).await
    {
        tracing::warn!(%err, "publishing an Event failed");
    }
    if let Some(finished) = &decision.finished {
        shared.deps.metrics.verification_finished(
            &namespace,
            &verification.spec.group,
            &verification.spec.profile,
            finished.succeeded,
            finished.duration,
            shared.deps.clock.now(),
        );
    }
    Ok(())
}
