//! Backups, backup verification and restores of a `MysqlFailoverGroup`.
//!
//! A backup is taken from one site into one of the group's backup profiles; a
//! verification restores a backup into a scratch mysqld and runs a sanity check; a
//! restore replaces the group's data and therefore needs an explicit confirmation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::failover_group::SanityCheck;

/// Lifecycle of a backup, verification or restore.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum JobPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

// Flattened into each of the three statuses, so that the wire shape is `status.phase`,
// `status.startedAt`, ... for all of them; one type so that one builder can set phases
// and conditions for any of them.
/// The progress of a backup, verification or restore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Which site a backup reads from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupSource {
    /// The replica, so the primary carries no extra load (falls back to the primary
    /// when no replica is healthy).
    #[default]
    Replica,
    Primary,
}

/// One backup of a failover group into one of its profiles.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bloodraven.shipstream.io",
    version = "v1alpha1",
    kind = "MysqlBackup",
    plural = "mysqlbackups",
    shortname = "mbk",
    category = "bloodraven",
    namespaced,
    status = "MysqlBackupStatus",
    printcolumn = r#"{"name":"Group","type":"string","jsonPath":".spec.group"}"#,
    printcolumn = r#"{"name":"Profile","type":"string","jsonPath":".spec.profile"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Site","type":"string","jsonPath":".status.site"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MysqlBackupSpec {
    /// The `MysqlFailoverGroup` (same namespace) to back up.
    #[schemars(length(min = 1))]
    pub group: String,
    /// The group's backup profile to write to.
    #[schemars(length(min = 1))]
    pub profile: String,
    #[serde(default)]
    pub source: BackupSource,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MysqlBackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Where the backup was written (object key or path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// SHA-256 of the stored object, lowercase hex (what `sha256sum` prints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// gtid_executed of the source at the backup's consistent point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_executed: Option<String>,
    /// Phase, timestamps, message and conditions, shared by the three job kinds.
    #[serde(flatten)]
    pub job: JobStatus,
}

/// Restores a backup into a scratch mysqld and checks it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bloodraven.shipstream.io",
    version = "v1alpha1",
    kind = "MysqlBackupVerification",
    plural = "mysqlbackupverifications",
    shortname = "mbv",
    category = "bloodraven",
    namespaced,
    status = "MysqlBackupVerificationStatus",
    printcolumn = r#"{"name":"Group","type":"string","jsonPath":".spec.group"}"#,
    printcolumn = r#"{"name":"Backup","type":"string","jsonPath":".status.backup"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MysqlBackupVerificationSpec {
    #[schemars(length(min = 1))]
    pub group: String,
    #[schemars(length(min = 1))]
    pub profile: String,
    /// The `MysqlBackup` to verify; default: the latest Succeeded backup of the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanity_check: Option<SanityCheck>,
    /// Verify a point-in-time restore to this instant (needs `backup.pitr.enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<Time>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MysqlBackupVerificationStatus {
    /// The backup that was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_returned: Option<i64>,
    /// What the verification Job found, written by the Job when it is done (the
    /// controller turns it into the phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<VerificationResult>,
    /// Phase, timestamps, message and conditions, shared by the three job kinds.
    #[serde(flatten)]
    pub job: JobStatus,
}

/// The verdict of a verification Job: the dump loaded and the sanity check (if any)
/// held, or not (`status.message` says what failed).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum VerificationResult {
    Passed,
    Failed,
}

/// Replaces a failover group's data with a backup. Destructive: `spec.confirm` must
/// repeat the group's name.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bloodraven.shipstream.io",
    version = "v1alpha1",
    kind = "MysqlRestore",
    plural = "mysqlrestores",
    shortname = "mrs",
    category = "bloodraven",
    namespaced,
    status = "MysqlRestoreStatus",
    printcolumn = r#"{"name":"Group","type":"string","jsonPath":".spec.group"}"#,
    printcolumn = r#"{"name":"Backup","type":"string","jsonPath":".spec.backup"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.confirm == self.group", "message": "a restore replaces all data of the group: set spec.confirm to the group's name to confirm", "fieldPath": ".confirm"}
]))]
pub struct MysqlRestoreSpec {
    #[schemars(length(min = 1))]
    pub group: String,
    /// The `MysqlBackup` to restore.
    #[schemars(length(min = 1))]
    pub backup: String,
    /// Replay archived binlogs up to this instant (needs `backup.pitr.enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<Time>,
    /// Must equal `group`: the restore overwrites both sites.
    pub confirm: String,
}

/// Where a Running restore is (see `engine::restore`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RestoreStep {
    /// Waiting for the group to show automatic failover paused for this restore.
    PausingFailover,
    /// The restore Job loads the backup into the active site.
    Loading,
    /// The other site is rebuilt from the restored one by a confirmed reclone.
    Recloning,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MysqlRestoreStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<RestoreStep>,
    /// The site the backup is loaded into (the active site when the restore started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The restored site's gtid_executed (from the group's status) when loading began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_before: Option<String>,
    /// The restored site's gtid_executed right after the load (written by the Job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_gtid_executed: Option<String>,
    /// The reclone confirmation (`<site>:<token>`) this restore set on the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclone_requested: Option<String>,
    /// Phase, timestamps, message and conditions, shared by the three job kinds.
    #[serde(flatten)]
    pub job: JobStatus,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job() -> JobStatus {
        JobStatus {
            phase: Some(JobPhase::Failed),
            message: Some("disk full".into()),
            ..JobStatus::default()
        }
    }

    #[test]
    fn the_shared_job_status_is_flat_on_the_wire_for_all_three_kinds() {
        let backup = MysqlBackupStatus {
            site: Some("iad".into()),
            job: job(),
            ..MysqlBackupStatus::default()
        };
        let verification = MysqlBackupVerificationStatus {
            backup: Some("nightly".into()),
            job: job(),
            ..MysqlBackupVerificationStatus::default()
        };
        let restore = MysqlRestoreStatus {
            job: job(),
            ..MysqlRestoreStatus::default()
        };
        let cases = [
            (
                serde_json::to_value(&backup).unwrap(),
                json!({"site": "iad", "phase": "Failed", "message": "disk full"}),
            ),
            (
                serde_json::to_value(&verification).unwrap(),
                json!({"backup": "nightly", "phase": "Failed", "message": "disk full"}),
            ),
            (
                serde_json::to_value(&restore).unwrap(),
                json!({"phase": "Failed", "message": "disk full"}),
            ),
        ];
        for (wire, expected) in cases {
            assert_eq!(wire, expected);
        }
        let back: MysqlBackupStatus = serde_json::from_value(
            json!({"site": "iad", "phase": "Failed", "message": "disk full"}),
        )
        .unwrap();
        assert_eq!(back, backup);
        let empty: MysqlRestoreStatus = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, MysqlRestoreStatus::default());
    }

    #[test]
    fn the_crd_schemas_list_the_shared_fields_beside_each_kinds_own() {
        use kube::CustomResourceExt;
        let crds = [
            (MysqlBackup::crd(), "site"),
            (MysqlBackupVerification::crd(), "backup"),
            (MysqlRestore::crd(), "phase"),
        ];
        for (crd, own) in crds {
            let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
            let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
            for field in [
                "phase",
                "startedAt",
                "completedAt",
                "message",
                "conditions",
                own,
            ] {
                assert!(
                    status.get(field).is_some(),
                    "{}: {field} in {status}",
                    crd.spec.names.kind
                );
            }
        }
    }
}
