//! Names of everything the operator creates for a group, in one place so that docs,
//! runbooks, the sidecar and the controller agree. All are derived from the group name
//! and the site name only, so a person can guess them.

/// Per-site MySQL StatefulSet (its pod is `<group>-mysql-<site>-0`) and the per-site
/// ClusterIP Service of the same name.
pub fn mysql_statefulset(group: &str, site: &str) -> String {
    format!("{group}-mysql-{site}")
}

/// The per-site ClusterIP Service (same name as the StatefulSet: one site, one name).
pub fn mysql_site_service(group: &str, site: &str) -> String {
    mysql_statefulset(group, site)
}

/// The per-site headless Service that gives the pod its stable DNS name.
pub fn mysql_headless_service(group: &str, site: &str) -> String {
    format!("{group}-mysql-{site}-headless")
}

/// The single pod of a site's StatefulSet.
pub fn mysql_pod(group: &str, site: &str) -> String {
    format!("{}-0", mysql_statefulset(group, site))
}

/// The stable DNS name of a site's mysqld, through its headless Service.
pub fn mysql_pod_host(group: &str, site: &str, namespace: &str) -> String {
    format!(
        "{}.{}.{namespace}.svc",
        mysql_pod(group, site),
        mysql_headless_service(group, site)
    )
}

/// The app-facing Service that follows the primary (`shipstream.io/role=primary`).
pub fn mysql_primary_service(group: &str) -> String {
    format!("{group}-mysql-primary")
}

/// The per-site PodDisruptionBudget.
pub fn mysql_pdb(group: &str, site: &str) -> String {
    mysql_statefulset(group, site)
}

/// The writer Lease whose holder is the writable site (docs/design.md "Safety assumptions").
pub fn writer_lease(group: &str) -> String {
    format!("{group}-writer")
}

/// The external-dns DNSEndpoint for the group hostname.
pub fn dns_endpoint(group: &str) -> String {
    group.to_string()
}

/// ServiceAccount, Role and RoleBinding the sidecars run as.
pub fn sidecar_account(group: &str) -> String {
    format!("{group}-sidecar")
}

/// Per-site Dragonfly StatefulSet (its pod is `<group>-dragonfly-<site>-0`).
pub fn dragonfly_statefulset(group: &str, site: &str) -> String {
    format!("{group}-dragonfly-{site}")
}

/// The per-site headless Service that gives a site's Dragonfly pod its stable DNS name
/// (the other site's Dragonfly replicates from that name).
pub fn dragonfly_headless_service(group: &str, site: &str) -> String {
    format!("{group}-dragonfly-{site}-headless")
}

/// The single Dragonfly pod of a site.
pub fn dragonfly_pod(group: &str, site: &str) -> String {
    format!("{}-0", dragonfly_statefulset(group, site))
}

/// The stable DNS name of a site's Dragonfly, through its headless Service.
pub fn dragonfly_pod_host(group: &str, site: &str, namespace: &str) -> String {
    format!(
        "{}.{}.{namespace}.svc",
        dragonfly_pod(group, site),
        dragonfly_headless_service(group, site)
    )
}

/// The app-facing Dragonfly Service: the pod labelled master with traffic enabled.
pub fn dragonfly_service(group: &str) -> String {
    format!("{group}-dragonfly")
}

/// The per-site Dragonfly PodDisruptionBudget.
pub fn dragonfly_pdb(group: &str, site: &str) -> String {
    dragonfly_statefulset(group, site)
}

/// The CronJob that takes a profile's scheduled backups (it creates a `MysqlBackup`).
pub fn backup_cronjob(group: &str, profile: &str) -> String {
    format!("mysql-{group}-backup-{profile}")
}

/// The CronJob that verifies a profile's latest backup (named in the playground guide).
pub fn verify_cronjob(group: &str, profile: &str) -> String {
    format!("mysql-{group}-verify-{profile}")
}

/// ServiceAccount, Role and RoleBinding the backup and verification Jobs run as.
pub fn backup_account(group: &str) -> String {
    format!("{group}-backup")
}

/// The Job that takes one `MysqlBackup` (the dump and its upload).
pub fn backup_job(backup: &str) -> String {
    format!("{backup}-dump")
}

/// The Job that loads one `MysqlRestore`'s backup into the active site.
pub fn restore_job(restore: &str) -> String {
    format!("{restore}-restore")
}

/// The Job that verifies one `MysqlBackupVerification` (scratch mysqld, load, check).
pub fn verification_job(verification: &str) -> String {
    format!("{verification}-load")
}

/// The volumeClaimTemplate name; the PVC is `data-<group>-mysql-<site>-0`.
pub const DATA_VOLUME: &str = "data";

/// The PersistentVolumeClaim that holds a site's data (outlives its pod).
pub fn mysql_data_pvc(group: &str, site: &str) -> String {
    format!("{DATA_VOLUME}-{}", mysql_pod(group, site))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_person_can_guess() {
        assert_eq!(
            mysql_statefulset("playground", "iad"),
            "playground-mysql-iad"
        );
        assert_eq!(mysql_pod("playground", "iad"), "playground-mysql-iad-0");
        assert_eq!(
            mysql_headless_service("playground", "pdx"),
            "playground-mysql-pdx-headless"
        );
        assert_eq!(
            mysql_pod_host("playground", "pdx", "ns"),
            "playground-mysql-pdx-0.playground-mysql-pdx-headless.ns.svc"
        );
        assert_eq!(
            mysql_primary_service("playground"),
            "playground-mysql-primary"
        );
        assert_eq!(writer_lease("playground"), "playground-writer");
        assert_eq!(dns_endpoint("playground"), "playground");
        assert_eq!(sidecar_account("playground"), "playground-sidecar");
        assert_eq!(
            mysql_data_pvc("playground", "iad"),
            "data-playground-mysql-iad-0"
        );
        assert_eq!(
            dragonfly_statefulset("playground", "iad"),
            "playground-dragonfly-iad"
        );
        assert_eq!(
            dragonfly_pod("playground", "pdx"),
            "playground-dragonfly-pdx-0"
        );
        assert_eq!(
            dragonfly_pod_host("playground", "pdx", "ns"),
            "playground-dragonfly-pdx-0.playground-dragonfly-pdx-headless.ns.svc"
        );
        assert_eq!(dragonfly_service("playground"), "playground-dragonfly");
        assert_eq!(
            verify_cronjob("playground", "minio"),
            "mysql-playground-verify-minio"
        );
        assert_eq!(
            backup_cronjob("playground", "minio"),
            "mysql-playground-backup-minio"
        );
        assert_eq!(backup_account("playground"), "playground-backup");
        assert_eq!(backup_job("nightly"), "nightly-dump");
        assert_eq!(restore_job("before-migration"), "before-migration-restore");
        assert_eq!(
            dragonfly_pdb("playground", "iad"),
            "playground-dragonfly-iad"
        );
    }
}
