//! Backup builder tests: CronJobs per profile, the Jobs' identity, the backup Job.

use serde_json::json;

use super::*;
use crate::children::prune::{ExistingChild, unwanted};
use crate::children::tests::{ctx, playground};
use crate::children::{DesiredObject, build};

/// The playground with the guide's `minio` profile and a second, on-demand profile.
fn with_profiles() -> MysqlFailoverGroup {
    let mut group = playground();
    group.spec.backup = Some(
        serde_json::from_value(json!({
            "profiles": [
                {"name": "minio",
                 "storage": {"s3": {"bucket": "bloodraven-backups", "prefix": "playground",
                                    "endpoint": "http://minio:9000",
                                    "credentialsSecret": "playground-minio"}},
                 "schedule": "0 * * * *",
                 "verification": {"schedule": "*/30 * * * *",
                                  "sanityCheck": {"query": "SELECT 1", "expectRows": 1}}},
                {"name": "adhoc",
                 "storage": {"s3": {"bucket": "other", "credentialsSecret": "s"}}}
            ]
        }))
        .unwrap(),
    );
    group
}

fn owner() -> Owner {
    Owner::of(&with_profiles()).unwrap()
}

#[test]
fn a_cronjob_per_scheduled_profile_and_per_verification_named_as_in_the_guide() {
    let children = backup_children(&owner(), &with_profiles(), &ctx()).unwrap();
    let names: Vec<_> = children
        .cronjobs
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    // `adhoc` has neither a schedule nor verification: it is on demand only.
    assert_eq!(
        names,
        [
            "mysql-playground-backup-minio",
            "mysql-playground-verify-minio"
        ]
    );
    let verify = serde_json::to_value(&children.cronjobs[1]).unwrap();
    assert_eq!(verify["spec"]["schedule"], "*/30 * * * *");
    assert_eq!(verify["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &verify["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "playground-backup");
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(
        pod["containers"][0]["args"],
        json!([
            "trigger-verification",
            "--namespace",
            "bp",
            "--group",
            "playground",
            "--profile",
            "minio"
        ])
    );
    assert_eq!(
        pod["containers"][0]["image"],
        "ghcr.io/shipstream/bloodraven:test"
    );
    let backup = serde_json::to_value(&children.cronjobs[0]).unwrap();
    assert_eq!(backup["spec"]["schedule"], "0 * * * *");
    assert_eq!(
        backup["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "trigger-backup"
    );
    assert_eq!(
        backup["metadata"]["ownerReferences"][0]["uid"], "uid-1",
        "the CronJobs go with the group"
    );
    assert_eq!(
        backup["metadata"]["labels"][PROFILE_LABEL], "minio",
        "{backup}"
    );
}

#[test]
fn no_backup_spec_or_no_profiles_means_no_backup_children() {
    let group = playground();
    assert_eq!(backup_children(&owner(), &group, &ctx()), None);
    let mut empty = playground();
    empty.spec.backup = Some(serde_json::from_value(json!({"profiles": []})).unwrap());
    assert_eq!(backup_children(&owner(), &empty, &ctx()), None);
    let built = build(&group, Some("iad"), &ctx()).unwrap();
    assert!(
        !built
            .objects()
            .unwrap()
            .iter()
            .any(|o| o.resource.kind == "CronJob")
    );
}

#[test]
fn the_jobs_role_grants_only_the_triggers_and_the_result_writes() {
    let role = serde_json::to_value(backup_role(&owner())).unwrap();
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": ["bloodraven.shipstream.io"], "resources": ["mysqlfailovergroups"], "verbs": ["get"]},
            {"apiGroups": ["bloodraven.shipstream.io"], "resources": ["mysqlbackups"], "verbs": ["get", "list", "create"]},
            {"apiGroups": ["bloodraven.shipstream.io"], "resources": ["mysqlbackups/status"], "verbs": ["patch"]},
            {"apiGroups": ["bloodraven.shipstream.io"], "resources": ["mysqlbackupverifications"], "verbs": ["get", "create"]},
            {"apiGroups": ["bloodraven.shipstream.io"], "resources": ["mysqlbackupverifications/status"], "verbs": ["patch"]}
        ])
    );
    let binding = serde_json::to_value(backup_role_binding(&owner())).unwrap();
    assert_eq!(binding["subjects"][0]["name"], "playground-backup");
    assert_eq!(binding["roleRef"]["name"], "playground-backup");
}

#[test]
fn removing_a_profile_prunes_its_cronjobs_and_keeps_the_others() {
    let before = build(&with_profiles(), Some("iad"), &ctx()).unwrap();
    let existing: Vec<ExistingChild> = before
        .objects()
        .unwrap()
        .into_iter()
        .map(|o| ExistingChild {
            uid: format!("uid-of-{}", o.name),
            controller_uid: Some("uid-1".into()),
            resource: o.resource,
            namespace: o.namespace,
            name: o.name,
        })
        .collect();
    let mut after = with_profiles();
    if let Some(backup) = after.spec.backup.as_mut() {
        backup.profiles[0].verification = None;
    }
    let desired: Vec<DesiredObject> = build(&after, Some("iad"), &ctx())
        .unwrap()
        .objects()
        .unwrap();
    let gone: Vec<_> = unwanted(&after, &existing, &desired)
        .into_iter()
        .map(ExistingChild::describe)
        .collect();
    assert_eq!(gone, ["CronJob bp/mysql-playground-verify-minio"]);

    after.spec.backup = None;
    let desired = build(&after, Some("iad"), &ctx())
        .unwrap()
        .objects()
        .unwrap();
    let gone: Vec<_> = unwanted(&after, &existing, &desired)
        .into_iter()
        .map(ExistingChild::describe)
        .collect();
    // The identity (ServiceAccount, Role, RoleBinding) is never pruned, like the
    // sidecars': a Job still running may need it.
    assert_eq!(
        gone,
        [
            "CronJob bp/mysql-playground-backup-minio",
            "CronJob bp/mysql-playground-verify-minio"
        ]
    );
}

#[test]
fn the_backup_job_reads_secrets_from_the_environment_and_names_its_source() {
    let group = with_profiles();
    let profile = &group.spec.backup.as_ref().unwrap().profiles[0];
    let reference = OwnerReference {
        api_version: "bloodraven.shipstream.io/v1alpha1".into(),
        kind: "MysqlBackup".into(),
        name: "nightly".into(),
        uid: "uid-b".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let job = backup_job(
        &BackupJobSpec {
            backup: "nightly",
            namespace: "bp",
            backup_owner: reference,
            group: &group,
            profile,
            site: "pdx",
            object: "nightly.sql",
        },
        &ctx(),
    );
    let job = serde_json::to_value(&job).unwrap();
    assert_eq!(job["metadata"]["name"], "nightly-dump");
    assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "uid-b");
    assert_eq!(job["metadata"]["labels"][BACKUP_LABEL], "nightly");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["args"],
        json!([
            "backup",
            "--namespace",
            "bp",
            "--group",
            "playground",
            "--profile",
            "minio",
            "--backup",
            "nightly",
            "--site",
            "pdx",
            "--host",
            "playground-mysql-pdx-0.playground-mysql-pdx-headless.bp.svc",
            "--port",
            "3306",
            "--object",
            "nightly.sql"
        ])
    );
    let env = &container["env"];
    assert_eq!(env[0]["name"], MYSQL_PASSWORD_ENV);
    assert_eq!(
        env[0]["valueFrom"]["secretKeyRef"],
        json!({"name": "playground-mysql", "key": "root-password"})
    );
    assert_eq!(
        env[1]["valueFrom"]["secretKeyRef"],
        json!({"name": "playground-minio", "key": "access-key-id"})
    );
    assert_eq!(
        env[2]["valueFrom"]["secretKeyRef"],
        json!({"name": "playground-minio", "key": "secret-access-key"})
    );
    assert!(
        !job.to_string().contains("password\":\""),
        "no secret value in the Job"
    );
}
