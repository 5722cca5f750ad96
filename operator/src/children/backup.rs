//! The backup children of a group, built by pure functions: per profile with a
//! schedule, a CronJob whose Job runs `bloodraven trigger-backup`; per profile with
//! verification, a CronJob running `bloodraven trigger-verification`; the identity
//! those Jobs run as; and the Job that takes one `MysqlBackup`.
//!
//! The CronJobs only create custom resources. What a backup or verification does is
//! decided by the controllers (`controllers::backup`), so a hand-made `MysqlBackup`
//! and a scheduled one take exactly the same path.

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, SecretKeySelector, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{BuildContext, COMPONENT_LABEL, Owner, ROOT_PASSWORD_KEY, names};
use crate::api::{BackupProfile, MysqlFailoverGroup};
use crate::storage::S3Credentials;

/// `app.kubernetes.io/name` of the backup CronJobs, Jobs and their identity.
pub const BACKUP_APP: &str = "bloodraven-backup";
/// The container of every backup and trigger Job.
pub const BACKUP_CONTAINER: &str = "backup";
/// Environment variables the backup Job reads its secrets from (never argv, which
/// `ps` and the pod spec would show).
pub const MYSQL_PASSWORD_ENV: &str = "BLOODRAVEN_MYSQL_PASSWORD";
pub const S3_ACCESS_KEY_ENV: &str = "BLOODRAVEN_S3_ACCESS_KEY_ID";
pub const S3_SECRET_KEY_ENV: &str = "BLOODRAVEN_S3_SECRET_ACCESS_KEY";
/// Label on backup Jobs naming the `MysqlBackup` they take.
pub const BACKUP_LABEL: &str = "bloodraven.shipstream.io/backup";
/// Label on the CRs the trigger Jobs create and on the CronJobs: the profile.
pub const PROFILE_LABEL: &str = "bloodraven.shipstream.io/profile";

/// A failing trigger is retried by the next schedule, not in a loop: it only creates a
/// CR, and a CR it could not create is reported by the Job's failure.
const TRIGGER_BACKOFF_LIMIT: i32 = 2;
/// A backup Job is not retried by Kubernetes: a second attempt would write a second
/// dump under the same key while the controller already decided from the first. The
/// controller reports the failure; the next scheduled backup is the retry.
const BACKUP_BACKOFF_LIMIT: i32 = 0;
const HISTORY_LIMIT: i32 = 3;

/// The backup children of one group; `None` without `spec.backup` or without
/// profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupChildren {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    /// Backup CronJobs, then verification CronJobs, each in profile order.
    pub cronjobs: Vec<CronJob>,
}

pub fn backup_children(
    owner: &Owner,
    group: &MysqlFailoverGroup,
    ctx: &BuildContext,
) -> Option<BackupChildren> {
    let profiles = &group.spec.backup.as_ref()?.profiles;
    if profiles.is_empty() {
        return None;
    }
    let backups = profiles.iter().filter_map(|profile| {
        let schedule = profile.schedule.as_ref()?;
        Some(trigger_cronjob(
            owner,
            profile,
            names::backup_cronjob(&owner.name, &profile.name),
            schedule,
            "trigger-backup",
            ctx,
        ))
    });
    let verifications = profiles.iter().filter_map(|profile| {
        let verification = profile.verification.as_ref()?;
        Some(trigger_cronjob(
            owner,
            profile,
            names::verify_cronjob(&owner.name, &profile.name),
            &verification.schedule,
            "trigger-verification",
            ctx,
        ))
    });
    Some(BackupChildren {
        service_account: backup_service_account(owner),
        role: backup_role(owner),
        role_binding: backup_role_binding(owner),
        cronjobs: backups.chain(verifications).collect(),
    })
}

fn backup_labels(owner: &Owner, component: &str) -> std::collections::BTreeMap<String, String> {
    let mut labels = owner.labels(BACKUP_APP);
    labels.insert(COMPONENT_LABEL.to_string(), component.to_string());
    labels
}

/// A CronJob whose Job runs `bloodraven <command> --group G --profile P`. Forbid: two
/// triggers of one profile at once would only create two CRs for the same instant.
fn trigger_cronjob(
    owner: &Owner,
    profile: &BackupProfile,
    name: String,
    schedule: &str,
    command: &str,
    ctx: &BuildContext,
) -> CronJob {
    let mut labels = backup_labels(owner, command);
    labels.insert(PROFILE_LABEL.to_string(), profile.name.clone());
    let container = Container {
        name: BACKUP_CONTAINER.to_string(),
        image: Some(ctx.sidecar_image.clone()),
        args: Some(
            [
                command,
                "--namespace",
                &owner.namespace,
                "--group",
                &owner.name,
                "--profile",
                &profile.name,
            ]
            .map(String::from)
            .to_vec(),
        ),
        ..Container::default()
    };
    CronJob {
        metadata: owner.child_meta(name, labels.clone()),
        spec: Some(CronJobSpec {
            schedule: schedule.to_string(),
            concurrency_policy: Some("Forbid".to_string()),
            successful_jobs_history_limit: Some(HISTORY_LIMIT),
            failed_jobs_history_limit: Some(HISTORY_LIMIT),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(TRIGGER_BACKOFF_LIMIT),
                    template: pod_template(owner, labels, container),
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        }),
        status: None,
    }
}

fn pod_template(
    owner: &Owner,
    labels: std::collections::BTreeMap<String, String>,
    container: Container,
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(names::backup_account(&owner.name)),
            restart_policy: Some("Never".to_string()),
            containers: vec![container],
            ..PodSpec::default()
        }),
    }
}

/// What the backup Job of one `MysqlBackup` needs to know.
#[derive(Debug, Clone)]
pub struct BackupJobSpec<'a> {
    /// The `MysqlBackup` (name, namespace, and its controller reference: the Job goes
    /// when the CR is deleted).
    pub backup: &'a str,
    pub namespace: &'a str,
    pub backup_owner: OwnerReference,
    pub group: &'a MysqlFailoverGroup,
    pub profile: &'a BackupProfile,
    /// The site the dump is read from.
    pub site: &'a str,
    /// The object name under the profile's prefix.
    pub object: &'a str,
}

/// The Job that dumps `site` and streams the dump to the profile's storage. Secrets come
/// in as environment variables from the group's MySQL Secret and the profile's storage
/// Secret.
pub fn backup_job(spec: &BackupJobSpec<'_>, ctx: &BuildContext) -> Job {
    let group_name = spec.group.metadata.name.clone().unwrap_or_default();
    let mut labels = std::collections::BTreeMap::from([
        (super::NAME_LABEL.to_string(), BACKUP_APP.to_string()),
        (super::INSTANCE_LABEL.to_string(), group_name.clone()),
        (
            super::MANAGED_BY_LABEL.to_string(),
            super::FIELD_MANAGER.to_string(),
        ),
        (COMPONENT_LABEL.to_string(), "backup".to_string()),
        (BACKUP_LABEL.to_string(), spec.backup.to_string()),
    ]);
    labels.insert(PROFILE_LABEL.to_string(), spec.profile.name.clone());
    let secret_env = |env: &str, secret: &str, key: &str| EnvVar {
        name: env.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let mut env = vec![secret_env(
        MYSQL_PASSWORD_ENV,
        &spec.group.spec.mysql.credentials_secret,
        ROOT_PASSWORD_KEY,
    )];
    if let Some(s3) = &spec.profile.storage.s3 {
        env.push(secret_env(
            S3_ACCESS_KEY_ENV,
            &s3.credentials_secret,
            S3Credentials::ACCESS_KEY_ID,
        ));
        env.push(secret_env(
            S3_SECRET_KEY_ENV,
            &s3.credentials_secret,
            S3Credentials::SECRET_ACCESS_KEY,
        ));
    }
    let host = names::mysql_pod_host(&group_name, spec.site, spec.namespace);
    let port = spec.group.spec.mysql.port.to_string();
    let container = Container {
        name: BACKUP_CONTAINER.to_string(),
        image: Some(ctx.sidecar_image.clone()),
        args: Some(
            [
                "backup",
                "--namespace",
                spec.namespace,
                "--group",
                &group_name,
                "--profile",
                &spec.profile.name,
                "--backup",
                spec.backup,
                "--site",
                spec.site,
                "--host",
                &host,
                "--port",
                &port,
                "--object",
                spec.object,
            ]
            .map(String::from)
            .to_vec(),
        ),
        env: Some(env),
        ..Container::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(names::backup_job(spec.backup)),
            namespace: Some(spec.namespace.to_string()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![spec.backup_owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(BACKUP_BACKOFF_LIMIT),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names::backup_account(&group_name)),
                    restart_policy: Some("Never".to_string()),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

pub fn backup_service_account(owner: &Owner) -> ServiceAccount {
    ServiceAccount {
        metadata: owner.child_meta(names::backup_account(&owner.name), owner.labels(BACKUP_APP)),
        ..ServiceAccount::default()
    }
}

/// What the trigger, backup and verification Jobs may do: read groups (the profile),
/// create the CRs the triggers make, record a finished dump on its `MysqlBackup`'s
/// status, read a verification's sanity check and record its verdict. No Secrets:
/// those come in through the pod's environment.
pub fn backup_role(owner: &Owner) -> Role {
    let rule = |resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec!["bloodraven.shipstream.io".to_string()]),
        resources: Some(vec![resource.to_string()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    };
    Role {
        metadata: owner.child_meta(names::backup_account(&owner.name), owner.labels(BACKUP_APP)),
        rules: Some(vec![
            rule("mysqlfailovergroups", &["get"]),
            rule("mysqlbackups", &["get", "list", "create"]),
            rule("mysqlbackups/status", &["patch"]),
            rule("mysqlbackupverifications", &["get", "create"]),
            rule("mysqlbackupverifications/status", &["patch"]),
        ]),
    }
}

pub fn backup_role_binding(owner: &Owner) -> RoleBinding {
    super::rbac::account_role_binding(owner, names::backup_account(&owner.name), BACKUP_APP)
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
