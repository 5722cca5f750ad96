//! The identity the sidecars run as: a ServiceAccount with a Role that can read and
//! renew exactly one object, the group's writer Lease.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::{Owner, names};

const SIDECAR_APP: &str = "bloodraven-sidecar";

pub fn sidecar_service_account(owner: &Owner) -> ServiceAccount {
    ServiceAccount {
        metadata: owner.child_meta(
            names::sidecar_account(&owner.name),
            owner.labels(SIDECAR_APP),
        ),
        ..ServiceAccount::default()
    }
}

/// get/watch/update on the writer Lease only: a compromised sidecar can move the
/// group's lease at worst, never touch other objects.
pub fn sidecar_role(owner: &Owner) -> Role {
    Role {
        metadata: owner.child_meta(
            names::sidecar_account(&owner.name),
            owner.labels(SIDECAR_APP),
        ),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["coordination.k8s.io".to_string()]),
            resources: Some(vec!["leases".to_string()]),
            resource_names: Some(vec![names::writer_lease(&owner.name)]),
            verbs: ["get", "watch", "update"].map(String::from).to_vec(),
            ..PolicyRule::default()
        }]),
    }
}

pub fn sidecar_role_binding(owner: &Owner) -> RoleBinding {
    account_role_binding(owner, names::sidecar_account(&owner.name), SIDECAR_APP)
}

/// Binds the Role named `name` to the ServiceAccount of the same name (each of the
/// group's own accounts has a Role of its own name), labelled as `app`'s.
pub(crate) fn account_role_binding(owner: &Owner, name: String, app: &str) -> RoleBinding {
    RoleBinding {
        metadata: owner.child_meta(name.clone(), owner.labels(app)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name,
            namespace: Some(owner.namespace.clone()),
            ..Subject::default()
        }]),
    }
}
