//! The MysqlBackup controller: for every `MysqlBackup` in the caches, observe (its
//! group, its Job) -> `engine::backup::decide_backup` -> act (create the Job, write the
//! status, publish the Event, record the metrics); then per profile, retention
//! (`engine::backup::expired_backups`), which deletes each expired backup's object
//! before its `MysqlBackup`. Runs beside the group workers, only while this
//! replica holds the operator's leader lease, and never touches a group's MySQL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;

use super::leader_passes::{LeaderPasses, TICK, Written};
use crate::engine::backup_freshness::{ScheduleLimits, profile_freshness};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::Shared;
use crate::api::{BackupProfile, JobPhase, MysqlBackup, MysqlBackupStatus, MysqlFailoverGroup};
use crate::children::backup::{BackupJobSpec, backup_job};
use crate::children::names;
use crate::engine::backup::{
    BackupDecision, BackupJobState, BackupObservation, RetainedBackup, decide_backup,
    expired_backups, object_name_under_prefix,
};
use crate::engine::{EventIntent, EventReason};
use crate::rbac::ApiAccess;
use crate::storage::{ObjectStorage, S3Credentials, S3Target, StorageError, TransferTuning};

/// What this module calls (see `crate::rbac`). The per-group backup Role
/// (`children::backup::backup_role`) grants the Jobs some of these too: Kubernetes lets
/// the operator create a Role only with permissions it holds itself.
pub(crate) const API_ACCESS: &[ApiAccess] = &[
    ApiAccess::watched(
        "bloodraven.shipstream.io",
        "mysqlbackups/status",
        &["patch"],
        "each backup's phase, source site, timestamps and conditions",
    ),
    ApiAccess::watched(
        "bloodraven.shipstream.io",
        "mysqlbackups",
        &["get", "create", "delete"],
        "retention deletes expired backups; get and create are granted on to the backup Jobs' Role",
    ),
    ApiAccess::watched(
        "bloodraven.shipstream.io",
        "mysqlbackupverifications",
        &["create"],
        "granted on to the verification CronJob's Role (trigger-verification)",
    ),
    ApiAccess::watched(
        "bloodraven.shipstream.io",
        "mysqlfailovergroups",
        &["get"],
        "granted on to the backup Jobs' Role (they read their profile)",
    ),
    ApiAccess::watched(
        "batch",
        "jobs",
        &["create"],
        "the backup Job of each MysqlBackup",
    ),
    ApiAccess::watched(
        "",
        "secrets",
        &["get"],
        "the S3 keys in a backup profile's credentialsSecret: retention deletes expired backups' objects (never logged)",
    ),
];

/// What the backup controller keeps between passes while it leads.
#[derive(Default)]
pub(super) struct BackupController {
    written: Written<MysqlBackupStatus>,
    limits: ScheduleLimits,
}

impl LeaderPasses for BackupController {
    fn pass<'a>(&'a mut self, shared: &'a Shared) -> impl Future<Output = Duration> + Send + 'a {
        reconcile_all(shared, self)
    }
}

pub(super) fn job_state(job: &Job) -> BackupJobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let holds = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if holds("Complete").is_some() {
        BackupJobState::Complete
    } else if let Some(failed) = holds("Failed") {
        BackupJobState::Failed {
            reason: failed.reason.clone(),
        }
    } else {
        BackupJobState::Running
    }
}

fn regarding(backup: &MysqlBackup) -> ObjectReference {
    ObjectReference {
        api_version: Some(MysqlBackup::api_version(&()).to_string()),
        kind: Some(MysqlBackup::kind(&()).to_string()),
        name: Some(backup.name_any()),
        namespace: backup.namespace(),
        uid: backup.uid(),
        ..ObjectReference::default()
    }
}

/// One pass over every backup; returns how soon to look again.
async fn reconcile_all(shared: &Shared, controller: &mut BackupController) -> Duration {
    let written = &mut controller.written;
    let indexes = &shared.indexes;
    let now = shared.deps.clock.now();
    let mut wait = TICK;
    let backups = indexes.backups.state();
    for backup in &backups {
        if backup.meta().deletion_timestamp.is_some() {
            continue;
        }
        let namespace = backup.namespace().unwrap_or_default();
        let name = backup.name_any();
        let key = (namespace.clone(), name.clone());
        let status = written.view(&key, backup.status.clone().unwrap_or_default());
        let group = indexes
            .groups
            .get(&ObjectRef::new(&backup.spec.group).within(&namespace))
            .and_then(|o| o.group.clone().ok());
        let job = indexes
            .jobs
            .get(&ObjectRef::new(&names::backup_job(&name)).within(&namespace))
            .map(|job| job_state(&job));
        let decision = decide_backup(
            &BackupObservation {
                name: &name,
                spec: &backup.spec,
                status: &status,
                group: group.as_deref(),
                job,
                generation: backup.meta().generation,
            },
            now,
        );
        if let Some(requeue) = decision.requeue {
            wait = wait.min(requeue.max(Duration::from_millis(100)));
        }
        if let Err(err) = act(shared, backup, group.as_deref(), &decision, written).await {
            tracing::warn!(backup = %name, %namespace, %err, "backup reconcile failed; retrying");
            wait = wait.min(Duration::from_secs(1));
        }
    }
    retention(shared, &backups, now).await;
    export_freshness(shared, &backups, &mut controller.limits, now);
    wait
}

/// Exports every group's backup freshness ([`profile_freshness`]) from the backups
/// as they are now.
fn export_freshness(
    shared: &Shared,
    backups: &[Arc<MysqlBackup>],
    limits: &mut ScheduleLimits,
    now: jiff::Timestamp,
) {
    for object in shared.indexes.groups.state() {
        let Ok(group) = &object.group else {
            continue;
        };
        let namespace = group.namespace().unwrap_or_default();
        let name = group.name_any();
        let profiles = group
            .spec
            .backup
            .as_ref()
            .map(|b| b.profiles.as_slice())
            .unwrap_or_default();
        let of_group = backups
            .iter()
            .map(AsRef::as_ref)
            .filter(|b: &&MysqlBackup| {
                b.spec.group == name && b.namespace().as_deref() == Some(namespace.as_str())
            });
        let freshness = profile_freshness(profiles, of_group, limits, now);
        shared
            .deps
            .metrics
            .set_backup_freshness(&namespace, &name, &freshness);
    }
}

#[derive(Debug, thiserror::Error)]
enum BackupActError {
    #[error("creating Job {namespace}/{job} for MysqlBackup {backup}: {source}")]
    CreateJob {
        namespace: String,
        job: String,
        backup: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("writing the status of MysqlBackup {namespace}/{backup}: {source}")]
    Status {
        namespace: String,
        backup: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("MysqlBackup {0} has no uid; was it read from the cluster?")]
    NoUid(String),
    #[error("serializing the status of MysqlBackup {backup}: {source}")]
    Serialize {
        backup: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Carries out one decision: the Job first (a status saying Running without a Job
/// would fail as JobMissing), then the status, then the Event and the metrics.
async fn act(
    shared: &Shared,
    backup: &MysqlBackup,
    group: Option<&MysqlFailoverGroup>,
    decision: &BackupDecision,
    written: &mut Written<MysqlBackupStatus>,
) -> Result<(), BackupActError> {
    let namespace = backup.namespace().unwrap_or_default();
    let name = backup.name_any();
    let client = &shared.deps.client;
    if let (Some(start), Some(group)) = (&decision.start_job, group) {
        let profile = group
            .spec
            .backup
            .iter()
            .flat_map(|b| b.profiles.iter())
            .find(|p| p.name == backup.spec.profile);
        let owner = backup
            .controller_owner_ref(&())
            .ok_or_else(|| BackupActError::NoUid(name.clone()))?;
        if let Some(profile) = profile {
            let job = backup_job(
                &BackupJobSpec {
                    backup: &name,
                    namespace: &namespace,
                    backup_owner: owner,
                    group,
                    profile,
                    site: &start.site,
                    object: &start.object,
                },
                &shared.settings.build,
            );
            match Api::<Job>::namespaced(client.clone(), &namespace)
                .create(&PostParams::default(), &job)
                .await
            {
                Ok(_) => {}
                // Created by an earlier pass whose status write did not land.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(source) => {
                    return Err(BackupActError::CreateJob {
                        namespace,
                        job: names::backup_job(&name),
                        backup: name,
                        source: Box::new(source),
                    });
                }
            }
        }
    }
    if let Some(status) = &decision.status {
        let body = serde_json::to_value(status).map_err(|source| BackupActError::Serialize {
            backup: name.clone(),
            source,
        })?;
        Api::<MysqlBackup>::namespaced(client.clone(), &namespace)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": body })),
            )
            .await
            .map_err(|source| BackupActError::Status {
                namespace: namespace.clone(),
                backup: name.clone(),
                source: Box::new(source),
            })?;
        written.remember((namespace.clone(), name.clone()), status.clone());
    }
    if let Some(event) = &decision.event {
        publish(shared, event, backup).await;
    }
    if let Some(finished) = &decision.finished {
        shared.deps.metrics.backup_finished(
            &namespace,
            &backup.spec.group,
            &backup.spec.profile,
            finished.succeeded,
            finished.duration,
        );
    }
    Ok(())
}

async fn publish(shared: &Shared, event: &EventIntent, backup: &MysqlBackup) {
    if let Err(err) = shared.events.publish(event, &regarding(backup)).await {
        tracing::warn!(%err, "publishing an Event failed");
    }
}

/// (namespace, group, profile).
type ProfileKey = (String, String, String);

/// Why retention could not delete an expired backup's object; the backup stays and is
/// tried again on the next pass.
#[derive(Debug, thiserror::Error)]
enum ExpiryError {
    #[error("backup profile {profile:?} uses pvc storage; only s3 objects are deleted")]
    NotS3 { profile: String },
    #[error(
        "reading Secret {namespace}/{secret} (the profile's storage.s3.credentialsSecret): {source}"
    )]
    Secret {
        namespace: String,
        secret: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("the backup recorded no location, so its object cannot be found")]
    NoLocation,
    #[error(
        "its object {location} is not under the profile's prefix {prefix:?} (the prefix changed since the backup); delete the object by hand, then the MysqlBackup"
    )]
    OutsidePrefix {
        location: String,
        prefix: Option<String>,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Deletes the object of one expired backup through the profile's storage, with the
/// profile's credentials; returns its key. A missing object counts as deleted.
async fn delete_backup_object(
    shared: &Shared,
    namespace: &str,
    profile: &BackupProfile,
    backup: &MysqlBackup,
) -> Result<String, ExpiryError> {
    let s3 = profile
        .storage
        .s3
        .as_ref()
        .ok_or_else(|| ExpiryError::NotS3 {
            profile: profile.name.clone(),
        })?;
    let location = backup
        .status
        .as_ref()
        .and_then(|s| s.location.clone())
        .ok_or(ExpiryError::NoLocation)?;
    let name = object_name_under_prefix(&location, s3.prefix.as_deref()).ok_or_else(|| {
        ExpiryError::OutsidePrefix {
            location: location.clone(),
            prefix: s3.prefix.clone(),
        }
    })?;
    let secret = Api::<Secret>::namespaced(shared.deps.client.clone(), namespace)
        .get(&s3.credentials_secret)
        .await
        .map_err(|source| ExpiryError::Secret {
            namespace: namespace.to_string(),
            secret: s3.credentials_secret.clone(),
            source: Box::new(source),
        })?;
    let data: BTreeMap<String, String> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .chain(secret.string_data.unwrap_or_default())
        .collect();
    let credentials = S3Credentials::from_secret_data(&s3.credentials_secret, &data)?;
    let storage = ObjectStorage::new(
        &S3Target::from_spec(s3, credentials),
        shared.deps.storage.clone(),
        TransferTuning::default(),
    )?;
    storage.delete(&name).await?;
    Ok(location)
}

/// Applies each profile's retention to its Succeeded backups: deletes each expired
/// backup's object from the bucket, then the `MysqlBackup` (uid-guarded). When the
/// object cannot be deleted the `MysqlBackup` stays (a Warning Event says why), so that
/// no object is ever left in the bucket without a backup that names it.
async fn retention(shared: &Shared, backups: &[Arc<MysqlBackup>], now: jiff::Timestamp) {
    // (namespace, backup) of every backup a Succeeded verification names.
    let verified: std::collections::BTreeSet<(String, String)> = shared
        .indexes
        .verifications
        .state()
        .iter()
        .filter_map(|v| {
            let status = v.status.as_ref()?;
            (status.job.phase == Some(JobPhase::Succeeded))
                .then(|| Some((v.namespace().unwrap_or_default(), status.backup.clone()?)))
                .flatten()
        })
        .collect();
    // (namespace, group, profile) -> Succeeded backups.
    let mut by_profile: BTreeMap<ProfileKey, Vec<(RetainedBackup, &MysqlBackup)>> = BTreeMap::new();
    for backup in backups {
        let Some(status) = &backup.status else {
            continue;
        };
        if status.job.phase != Some(JobPhase::Succeeded) {
            continue;
        }
        let Some(completed) = &status.job.completed_at else {
            continue;
        };
        let namespace = backup.namespace().unwrap_or_default();
        let name = backup.name_any();
        let is_verified = verified.contains(&(namespace.clone(), name.clone()));
        by_profile
            .entry((
                namespace,
                backup.spec.group.clone(),
                backup.spec.profile.clone(),
            ))
            .or_default()
            .push((
                RetainedBackup {
                    verified: is_verified,
                    name,
                    completed_at: completed.0,
                },
                backup,
            ));
    }
    for ((namespace, group_name, profile_name), list) in by_profile {
        let Some(group) = shared
            .indexes
            .groups
            .get(&ObjectRef::new(&group_name).within(&namespace))
            .and_then(|o| o.group.clone().ok())
        else {
            continue;
        };
        let Some(profile) = group
            .spec
            .backup
            .iter()
            .flat_map(|b| b.profiles.iter())
            .find(|p| p.name == profile_name)
        else {
            continue;
        };
        let retained: Vec<RetainedBackup> = list.iter().map(|(r, _)| r.clone()).collect();
        for expired in expired_backups(&retained, profile.retention.as_ref(), now) {
            let Some((_, backup)) = list.iter().find(|(r, _)| r.name == expired) else {
                continue;
            };
            let key = match delete_backup_object(shared, &namespace, profile, backup).await {
                Ok(key) => key,
                Err(err) => {
                    tracing::warn!(backup = %expired, %namespace, %err, "retention could not delete an expired backup's object");
                    let event = EventIntent::warning(
                        EventReason::BackupExpiryFailed,
                        format!(
                            "backup {expired} of profile {profile_name} expired, but its object could not be deleted, so the backup stays: {err}"
                        ),
                    );
                    publish(shared, &event, backup).await;
                    continue;
                }
            };
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: backup.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match Api::<MysqlBackup>::namespaced(shared.deps.client.clone(), &namespace)
                .delete(&expired, &params)
                .await
            {
                Ok(_) => {
                    tracing::info!(backup = %expired, %namespace, profile = %profile_name, "retention deleted an expired backup");
                    let event = EventIntent::normal(
                        EventReason::BackupExpired,
                        format!(
                            "backup {expired} of profile {profile_name} expired under the profile's retention and was deleted, with its object {key}"
                        ),
                    );
                    publish(shared, &event, backup).await;
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => {
                    tracing::warn!(backup = %expired, %namespace, %err, "retention could not delete an expired backup");
                }
            }
        }
    }
}
