//! The Job of one `MysqlBackupVerification`, built by a pure function: a pod with a
//! scratch mysqld (the group's MySQL image, on an ephemeral PVC) and the `verify`
//! container running `bloodraven verify-backup`, which loads the backup into it and
//! runs the sanity check. What the controller does with it is `controllers::verification`.
//!
//! The scratch mysqld is an ordinary container, not a sidecar that stops with the
//! check: on a failed check it keeps running so that `kubectl exec -c mysqld` can look
//! at what was loaded. The PVC is a generic ephemeral volume, so it belongs to the Pod
//! and goes with it (the Job with the verification, by ownerReferences).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EphemeralVolumeSource, ExecAction, PersistentVolumeClaimSpec,
    PersistentVolumeClaimTemplate, PodSpec, PodTemplateSpec, Probe, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::backup::{
    BACKUP_APP, MYSQL_PASSWORD_ENV, PROFILE_LABEL, S3_ACCESS_KEY_ENV, S3_SECRET_KEY_ENV,
};
use super::mysql::{DATA_DIR, MYSQL_CONTAINER, ROOT_PASSWORD_KEY, secret_env};
use super::{BuildContext, COMPONENT_LABEL, names};
use crate::api::{BackupProfile, MysqlFailoverGroup};
use crate::storage::S3Credentials;

/// The container that runs `bloodraven verify-backup`.
pub const VERIFY_CONTAINER: &str = "verify";
/// Label on verification Jobs naming the `MysqlBackupVerification` they run.
pub const VERIFICATION_LABEL: &str = "bloodraven.shipstream.io/verification";
/// The scratch volume's name, the same as a site's data volume (the PVC is
/// `<pod>-data`).
pub const SCRATCH_VOLUME: &str = names::DATA_VOLUME;
/// The scratch PVC holds the loaded data, its indexes and InnoDB's files: a few times
/// the dump's size, and never less than this.
const MIN_SCRATCH_BYTES: i64 = 1 << 30;
const SCRATCH_FACTOR: i64 = 3;
/// Not retried by Kubernetes: a second pod would load into a fresh scratch server while
/// the first one's result may already be recorded.
const VERIFY_BACKOFF_LIMIT: i32 = 0;

/// What the verification Job of one `MysqlBackupVerification` needs to know.
#[derive(Debug, Clone)]
pub struct VerificationJobSpec<'a> {
    pub verification: &'a str,
    pub namespace: &'a str,
    /// The verification's controller reference: the Job goes when the CR is deleted.
    pub owner: OwnerReference,
    pub group: &'a MysqlFailoverGroup,
    pub profile: &'a BackupProfile,
    pub backup: &'a str,
    /// The object name under the profile's prefix, and its SHA-256.
    pub object: &'a str,
    pub checksum: &'a str,
    pub size_bytes: Option<i64>,
}

/// The scratch PVC's size: `SCRATCH_FACTOR` times the dump, at least 1 GiB, in whole
/// GiB; the group's own volume size when the backup's size is unknown.
pub fn scratch_size(size_bytes: Option<i64>, group: &MysqlFailoverGroup) -> String {
    match size_bytes {
        Some(size) => {
            let bytes = size.saturating_mul(SCRATCH_FACTOR).max(MIN_SCRATCH_BYTES);
            let gib = bytes.saturating_add((1 << 30) - 1) >> 30;
            format!("{gib}Gi")
        }
        None => group.spec.mysql.storage.size.clone(),
    }
}

/// The scratch mysqld's arguments: writable (every site's mysqld boots fenced; this one
/// must take the load), GTIDs on so that the dump's `SET @@GLOBAL.GTID_PURGED` applies,
/// no binlog (nothing replicates from it) and never a replica.
pub fn scratch_mysqld_args(port: i32) -> Vec<String> {
    vec![
        "--server-id=1".to_string(),
        format!("--port={port}"),
        "--read-only=OFF".to_string(),
        "--super-read-only=OFF".to_string(),
        "--gtid-mode=ON".to_string(),
        "--enforce-gtid-consistency=ON".to_string(),
        "--skip-log-bin".to_string(),
        "--skip-replica-start=ON".to_string(),
    ]
}

pub fn verification_job(spec: &VerificationJobSpec<'_>, ctx: &BuildContext) -> Job {
    let group_name = spec.group.metadata.name.clone().unwrap_or_default();
    let labels = BTreeMap::from([
        (super::NAME_LABEL.to_string(), BACKUP_APP.to_string()),
        (super::INSTANCE_LABEL.to_string(), group_name.clone()),
        (
            super::MANAGED_BY_LABEL.to_string(),
            super::FIELD_MANAGER.to_string(),
        ),
        (COMPONENT_LABEL.to_string(), "verification".to_string()),
        (
            VERIFICATION_LABEL.to_string(),
            spec.verification.to_string(),
        ),
        (PROFILE_LABEL.to_string(), spec.profile.name.clone()),
    ]);
    let mysql = &spec.group.spec.mysql;
    let password = secret_env(
        MYSQL_PASSWORD_ENV,
        &mysql.credentials_secret,
        ROOT_PASSWORD_KEY,
    );
    let mysqld = Container {
        name: MYSQL_CONTAINER.to_string(),
        image: Some(mysql.image.clone()),
        args: Some(scratch_mysqld_args(mysql.port)),
        // The scratch server's root gets the group's root password, which the verify
        // container already holds: no second Secret to manage.
        env: Some(vec![secret_env(
            "MYSQL_ROOT_PASSWORD",
            &mysql.credentials_secret,
            ROOT_PASSWORD_KEY,
        )]),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec![
                    "mysqladmin".to_string(),
                    "ping".to_string(),
                    "--host=127.0.0.1".to_string(),
                    format!("--port={}", mysql.port),
                    "--silent".to_string(),
                ]),
            }),
            period_seconds: Some(2),
            timeout_seconds: Some(1),
            ..Probe::default()
        }),
        resources: mysql.resources.clone(),
        volume_mounts: Some(vec![VolumeMount {
            name: SCRATCH_VOLUME.to_string(),
            mount_path: DATA_DIR.to_string(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let mut env: Vec<EnvVar> = vec![password];
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
    let port = mysql.port.to_string();
    let verify = Container {
        name: VERIFY_CONTAINER.to_string(),
        image: Some(ctx.sidecar_image.clone()),
        args: Some(
            [
                "verify-backup",
                "--namespace",
                spec.namespace,
                "--group",
                &group_name,
                "--profile",
                &spec.profile.name,
                "--verification",
                spec.verification,
                "--backup",
                spec.backup,
                "--object",
                spec.object,
                "--checksum",
                spec.checksum,
                "--host",
                "127.0.0.1",
                "--port",
                &port,
            ]
            .map(String::from)
            .to_vec(),
        ),
        env: Some(env),
        ..Container::default()
    };
    let scratch = Volume {
        name: SCRATCH_VOLUME.to_string(),
        ephemeral: Some(EphemeralVolumeSource {
            volume_claim_template: Some(PersistentVolumeClaimTemplate {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_string()]),
                    storage_class_name: mysql.storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity(scratch_size(spec.size_bytes, spec.group)),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                },
            }),
        }),
        ..Volume::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(names::verification_job(spec.verification)),
            namespace: Some(spec.namespace.to_string()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![spec.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(VERIFY_BACKOFF_LIMIT),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names::backup_account(&group_name)),
                    restart_policy: Some("Never".to_string()),
                    containers: vec![mysqld, verify],
                    volumes: Some(vec![scratch]),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group() -> MysqlFailoverGroup {
        serde_json::from_value(json!({
            "apiVersion": "bloodraven.shipstream.io/v1alpha1",
            "kind": "MysqlFailoverGroup",
            "metadata": {"name": "playground", "namespace": "bp", "uid": "uid-1"},
            "spec": {
                "sites": [{"name": "iad", "nodeSelector": {}}, {"name": "pdx", "nodeSelector": {}}],
                "mysql": {"credentialsSecret": "playground-mysql",
                          "storage": {"size": "5Gi", "storageClassName": "fast"}},
                "backup": {"profiles": [
                    {"name": "minio", "storage": {"s3": {"bucket": "b", "credentialsSecret": "m"}}}
                ]}
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_scratch_volume_is_a_few_times_the_dump_and_never_below_one_gib() {
        let g = group();
        let cases = [
            (Some(0), "1Gi"),
            (Some(100 << 20), "1Gi"),
            (Some(400 << 20), "2Gi"),
            (Some(10 << 30), "30Gi"),
            (Some(i64::MAX), "8589934591Gi"),
            (None, "5Gi"),
        ];
        for (size, expected) in cases {
            assert_eq!(scratch_size(size, &g), expected, "{size:?}");
        }
    }

    #[test]
    fn the_job_runs_a_scratch_mysqld_on_an_ephemeral_pvc_beside_verify_backup() {
        let g = group();
        let profile = g.spec.backup.as_ref().unwrap().profiles[0].clone();
        let owner = OwnerReference {
            api_version: "bloodraven.shipstream.io/v1alpha1".into(),
            kind: "MysqlBackupVerification".into(),
            name: "v1".into(),
            uid: "uid-v".into(),
            controller: Some(true),
            ..OwnerReference::default()
        };
        let job = verification_job(
            &VerificationJobSpec {
                verification: "v1",
                namespace: "bp",
                owner: owner.clone(),
                group: &g,
                profile: &profile,
                backup: "nightly",
                object: "playground/nightly.sql",
                checksum: "abc",
                size_bytes: Some(1 << 20),
            },
            &BuildContext {
                sidecar_image: "ghcr.io/shipstream/bloodraven:dev".into(),
            },
        );
        let wire = serde_json::to_value(&job).unwrap();
        assert_eq!(wire["metadata"]["name"], "v1-load");
        assert_eq!(wire["metadata"]["ownerReferences"][0]["uid"], "uid-v");
        assert_eq!(wire["spec"]["backoffLimit"], 0);
        let pod = &wire["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["serviceAccountName"], "playground-backup");
        let claim = &pod["volumes"][0]["ephemeral"]["volumeClaimTemplate"]["spec"];
        assert_eq!(claim["storageClassName"], "fast");
        assert_eq!(claim["resources"]["requests"]["storage"], "1Gi");
        let mysqld = &pod["containers"][0];
        assert_eq!(mysqld["name"], "mysqld");
        assert_eq!(mysqld["image"], "mysql:8.4");
        assert_eq!(mysqld["volumeMounts"][0]["mountPath"], "/var/lib/mysql");
        assert!(
            mysqld["args"]
                .as_array()
                .unwrap()
                .contains(&json!("--super-read-only=OFF"))
        );
        let verify = &pod["containers"][1];
        let args: Vec<&str> = verify["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "verify-backup",
                "--namespace",
                "bp",
                "--group",
                "playground",
                "--profile",
                "minio",
                "--verification",
                "v1",
                "--backup",
                "nightly",
                "--object",
                "playground/nightly.sql",
                "--checksum",
                "abc",
                "--host",
                "127.0.0.1",
                "--port",
                "3306"
            ]
        );
        // Secrets only by reference, never as values or arguments.
        let env = serde_json::to_string(&verify["env"]).unwrap();
        assert!(env.contains("\"secretKeyRef\""), "{env}");
        assert!(!env.contains("\"value\""), "{env}");
    }
}
