//! The desired children of a `MysqlFailoverGroup`, built from its spec by pure functions
//! (no I/O, no clock): the controller applies what these return and tests compare the
//! objects. Every name a person might type is built by [`names`], in one place.
//!
//! Dragonfly's children are built in [`dragonfly`], beside `mysql`, and are present in
//! [`Children`] only while `spec.dragonfly` is set.

pub mod backup;
mod dns;
pub mod dragonfly;
mod lease;
mod mysql;
pub mod names;
pub mod prune;
mod rbac;
pub mod verification;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::{DNSEndpoint, MysqlFailoverGroup, SITE_LABEL};

pub use backup::{BackupChildren, backup_children};
pub use dns::dns_endpoint;
pub use dragonfly::{
    DRAGONFLY_CONTAINER, DragonflyChildren, DragonflySiteChildren, dragonfly_children,
};
pub use lease::writer_lease;
pub use mysql::{
    ADMIN_PORT, APP_DATABASE_KEY, APP_PASSWORD_KEY, APP_USER, CLONE_PLUGIN_LIBRARY,
    DEFAULT_REPLICATION_USER, MAX_REPLICATION_PASSWORD_CHARS, MYSQL_CONTAINER,
    MYSQL_INIT_CONTAINER, MYSQL_INIT_SCRIPT, REPLICATION_PASSWORD_KEY, REPLICATION_USER_KEY,
    ROLE_PRIMARY, ROLE_REPLICA, ROOT_PASSWORD_KEY, SIDECAR_CONTAINER, SIDECAR_PASSWORD_ENV,
    headless_service, mysqld_args, pod_disruption_budget, primary_service,
    replication_password_too_long, server_id, sidecar_args, site_service, statefulset,
};
pub use rbac::{sidecar_role, sidecar_role_binding, sidecar_service_account};

/// `app.kubernetes.io/name` of every MySQL pod and MySQL child.
pub const MYSQL_APP_NAME: &str = "mysql";
/// Standard Kubernetes labels the children carry.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The field manager every server-side apply of the operator uses.
pub const FIELD_MANAGER: &str = "bloodraven";

/// The TCP port the sidecar serves `/healthz` and `/status` on.
pub const SIDECAR_HTTP_PORT: i32 = 8081;

/// What the builders need beyond the group itself: settings of the operator's own
/// deployment, not of any group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildContext {
    /// Image that runs `bloodraven sidecar` (the operator's own image by default).
    pub sidecar_image: String,
}

/// A group that cannot be turned into children.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error(
        "MysqlFailoverGroup {name}: {field} is not set; the API server sets it, so was the object read from the cluster?"
    )]
    MissingMetadata { name: String, field: &'static str },
    #[error(
        "MysqlFailoverGroup {group}: sites {first:?} and {second:?} map to the same MySQL server-id {id}; rename one site"
    )]
    ServerIdCollision {
        group: String,
        first: String,
        second: String,
        id: u32,
    },
    #[error(
        "MysqlFailoverGroup {group}: status.activeSite {site:?} has no entry in spec.dns.targets"
    )]
    NoDnsTarget { group: String, site: String },
}

/// Every child of one group, in apply order (the RBAC and the Lease before the pods
/// that use them). Sites keep spec order.
#[derive(Debug, Clone)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub writer_lease: Lease,
    pub sites: Vec<SiteChildren>,
    pub primary_service: Service,
    /// `None` without `spec.dns`, and before any site is active: a record pointing
    /// nowhere is worse than no record.
    pub dns_endpoint: Option<DNSEndpoint>,
    /// `None` without `spec.dragonfly`.
    pub dragonfly: Option<DragonflyChildren>,
    /// `None` without backup profiles.
    pub backup: Option<BackupChildren>,
}

/// The MySQL children of one site.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteChildren {
    pub site: String,
    pub headless_service: Service,
    pub service: Service,
    pub statefulset: StatefulSet,
    pub pod_disruption_budget: PodDisruptionBudget,
}

/// Builds every desired child of `group`. `active_site` is the site that holds the
/// writer lease according to status (the DNS record follows it).
pub fn build(
    group: &MysqlFailoverGroup,
    active_site: Option<&str>,
    ctx: &BuildContext,
) -> Result<Children, BuildError> {
    let owner = Owner::of(group)?;
    check_server_ids(group)?;
    let sites = group
        .spec
        .sites
        .iter()
        .map(|site| SiteChildren {
            site: site.name.clone(),
            headless_service: headless_service(&owner, group, &site.name),
            service: site_service(&owner, group, &site.name),
            statefulset: statefulset(&owner, group, site, ctx),
            pod_disruption_budget: pod_disruption_budget(&owner, group, &site.name),
        })
        .collect();
    Ok(Children {
        service_account: sidecar_service_account(&owner),
        role: sidecar_role(&owner),
        role_binding: sidecar_role_binding(&owner),
        writer_lease: writer_lease(&owner, group),
        sites,
        primary_service: primary_service(&owner, group),
        dns_endpoint: dns_endpoint(&owner, group, active_site)?,
        dragonfly: dragonfly_children(&owner, group),
        backup: backup_children(&owner, group, ctx),
    })
}

/// The group's identity as every child needs it: name, namespace and the controller
/// ownerReference that makes the children garbage-collected with the group.
#[derive(Debug, Clone, PartialEq)]
pub struct Owner {
    pub name: String,
    pub namespace: String,
    pub reference: OwnerReference,
}

impl Owner {
    pub fn of(group: &MysqlFailoverGroup) -> Result<Self, BuildError> {
        let name = group.name_any();
        let missing = |field| BuildError::MissingMetadata {
            name: name.clone(),
            field,
        };
        let namespace = group
            .namespace()
            .ok_or_else(|| missing("metadata.namespace"))?;
        // controller_owner_ref sets controller=true and blockOwnerDeletion=true; it is
        // None only when the object has no uid (never stored by an API server).
        let mut reference = group
            .controller_owner_ref(&())
            .ok_or_else(|| missing("metadata.uid"))?;
        // Foreground deletion of the group then waits for its children.
        reference.block_owner_deletion = Some(true);
        Ok(Self {
            name,
            namespace,
            reference,
        })
    }

    /// Metadata for a child: name, namespace, the group's labels and the owner.
    pub fn child_meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// Labels every child of the group carries.
    pub fn labels(&self, app: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (NAME_LABEL.to_string(), app.to_string()),
            (INSTANCE_LABEL.to_string(), self.name.clone()),
            (MANAGED_BY_LABEL.to_string(), FIELD_MANAGER.to_string()),
        ])
    }

    /// Labels of one site's MySQL children and pods.
    pub fn site_labels(&self, site: &str) -> BTreeMap<String, String> {
        self.app_site_labels(MYSQL_APP_NAME, site)
    }

    /// The selector of one site's MySQL pods. Deliberately without `managed-by` (a
    /// selector should name what a pod is, not who made it) and without the role.
    pub fn site_selector(&self, site: &str) -> BTreeMap<String, String> {
        self.app_site_selector(MYSQL_APP_NAME, site)
    }

    /// Labels of one site's children and pods of `app` (`mysql` or `dragonfly`).
    pub fn app_site_labels(&self, app: &str, site: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels(app);
        labels.insert(SITE_LABEL.to_string(), site.to_string());
        labels
    }

    /// The selector of one site's pods of `app`.
    pub fn app_site_selector(&self, app: &str, site: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (NAME_LABEL.to_string(), app.to_string()),
            (INSTANCE_LABEL.to_string(), self.name.clone()),
            (SITE_LABEL.to_string(), site.to_string()),
        ])
    }
}

/// Two sites with one server-id would break replication silently (a server ignores
/// events carrying its own id), so a collision is an error, not a retry.
fn check_server_ids(group: &MysqlFailoverGroup) -> Result<(), BuildError> {
    let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
    for site in &group.spec.sites {
        let id = server_id(&site.name);
        if let Some(first) = seen.insert(id, &site.name) {
            return Err(BuildError::ServerIdCollision {
                group: group.name_any(),
                first: first.to_string(),
                second: site.name.clone(),
                id,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;

/// One desired child, type-erased for the applier: its API resource (for the URL) and
/// its body as JSON (the server-side apply patch).
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    pub resource: kube::core::ApiResource,
    pub namespace: String,
    pub name: String,
    pub body: serde_json::Value,
}

impl DesiredObject {
    pub fn of<K>(object: &K) -> Result<Self, serde_json::Error>
    where
        K: Resource<DynamicType = ()> + serde::Serialize,
    {
        Ok(Self {
            resource: kube::core::ApiResource::erase::<K>(&()),
            namespace: object.meta().namespace.clone().unwrap_or_default(),
            name: object.meta().name.clone().unwrap_or_default(),
            body: serde_json::to_value(object)?,
        })
    }

    /// `Kind namespace/name`, for errors and logs.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.resource.kind, self.namespace, self.name)
    }
}

impl Children {
    /// Every child in apply order: RBAC, the writer Lease, per site the Services, the
    /// StatefulSet and the PDB, then the primary Service, the Dragonfly children (per
    /// site, then the app-facing Service), the DNSEndpoint, then the backup identity and
    /// CronJobs.
    pub fn objects(&self) -> Result<Vec<DesiredObject>, serde_json::Error> {
        let mut out = vec![
            DesiredObject::of(&self.service_account)?,
            DesiredObject::of(&self.role)?,
            DesiredObject::of(&self.role_binding)?,
            DesiredObject::of(&self.writer_lease)?,
        ];
        for site in &self.sites {
            out.push(DesiredObject::of(&site.headless_service)?);
            out.push(DesiredObject::of(&site.service)?);
            out.push(DesiredObject::of(&site.statefulset)?);
            out.push(DesiredObject::of(&site.pod_disruption_budget)?);
        }
        out.push(DesiredObject::of(&self.primary_service)?);
        if let Some(dragonfly) = &self.dragonfly {
            for site in &dragonfly.sites {
                out.push(DesiredObject::of(&site.headless_service)?);
                out.push(DesiredObject::of(&site.statefulset)?);
                out.push(DesiredObject::of(&site.pod_disruption_budget)?);
            }
            out.push(DesiredObject::of(&dragonfly.service)?);
        }
        if let Some(dns) = &self.dns_endpoint {
            out.push(DesiredObject::of(dns)?);
        }
        if let Some(backup) = &self.backup {
            out.push(DesiredObject::of(&backup.service_account)?);
            out.push(DesiredObject::of(&backup.role)?);
            out.push(DesiredObject::of(&backup.role_binding)?);
            for cronjob in &backup.cronjobs {
                out.push(DesiredObject::of(cronjob)?);
            }
        }
        Ok(out)
    }
}
