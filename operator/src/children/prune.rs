//! Which existing children the spec no longer asks for (removing `spec.dragonfly` or
//! `spec.dns`, renaming a site). Pure: the controller lists what its caches hold, this
//! decides, the adapter deletes with the object's uid as a precondition.
//!
//! Only objects whose *controller* ownerReference is this group are ever candidates,
//! and only kinds that a spec change can make unwanted. The RBAC, the writer Lease and
//! PVCs are never deleted here.

use kube::core::ApiResource;

use super::DesiredObject;
use crate::api::MysqlFailoverGroup;

/// Kinds a spec change can make unwanted.
pub const PRUNABLE_KINDS: &[&str] = &[
    "StatefulSet",
    "Service",
    "PodDisruptionBudget",
    "DNSEndpoint",
    "CronJob",
];

/// A child as the caches hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingChild {
    pub resource: ApiResource,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The uid of the controller ownerReference, if any.
    pub controller_uid: Option<String>,
}

impl ExistingChild {
    /// `Kind namespace/name`, for errors, logs and Events.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.resource.kind, self.namespace, self.name)
    }
}

/// The children to delete: owned by `group` (controller ownerReference with its uid),
/// of a prunable kind, and not among `desired`. A DNSEndpoint is kept while `spec.dns`
/// is set even when not desired: the builder leaves it out only because no site is
/// active yet, and deleting the record then would take the hostname away.
pub fn unwanted<'a>(
    group: &MysqlFailoverGroup,
    existing: &'a [ExistingChild],
    desired: &[DesiredObject],
) -> Vec<&'a ExistingChild> {
    let Some(group_uid) = group.metadata.uid.as_deref() else {
        // A group never stored owns nothing we could recognise.
        return Vec::new();
    };
    let namespace = group.metadata.namespace.as_deref().unwrap_or_default();
    existing
        .iter()
        .filter(|child| child.controller_uid.as_deref() == Some(group_uid))
        .filter(|child| child.namespace == namespace)
        .filter(|child| PRUNABLE_KINDS.contains(&child.resource.kind.as_str()))
        .filter(|child| !(child.resource.kind == "DNSEndpoint" && group.spec.dns.is_some()))
        .filter(|child| {
            !desired.iter().any(|want| {
                want.resource.kind == child.resource.kind
                    && want.namespace == child.namespace
                    && want.name == child.name
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::Service;
    use kube::Resource;

    use super::*;
    use crate::api::DNSEndpoint;
    use crate::children::build;
    use crate::children::tests::{ctx, playground};

    fn child<K: Resource<DynamicType = ()>>(name: &str, owner: Option<&str>) -> ExistingChild {
        ExistingChild {
            resource: ApiResource::erase::<K>(&()),
            namespace: "bp".into(),
            name: name.into(),
            uid: format!("uid-of-{name}"),
            controller_uid: owner.map(String::from),
        }
    }

    fn names(children: Vec<&ExistingChild>) -> Vec<String> {
        children.into_iter().map(ExistingChild::describe).collect()
    }

    fn with_dragonfly() -> MysqlFailoverGroup {
        let mut group = playground();
        group.spec.dragonfly = Some(serde_json::from_value(serde_json::json!({})).unwrap());
        group
    }

    /// What the caches would hold after the group with Dragonfly and DNS was applied.
    fn existing_after_full_apply() -> Vec<ExistingChild> {
        let group = with_dragonfly();
        build(&group, Some("iad"), &ctx())
            .unwrap()
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
            .collect()
    }

    #[test]
    fn nothing_is_deleted_while_the_spec_still_asks_for_everything() {
        let group = with_dragonfly();
        let desired = build(&group, Some("iad"), &ctx())
            .unwrap()
            .objects()
            .unwrap();
        assert!(unwanted(&group, &existing_after_full_apply(), &desired).is_empty());
    }

    #[test]
    fn removing_spec_dragonfly_deletes_every_dragonfly_child_and_nothing_else() {
        let group = playground();
        let desired = build(&group, Some("iad"), &ctx())
            .unwrap()
            .objects()
            .unwrap();
        let existing = existing_after_full_apply();
        assert_eq!(
            names(unwanted(&group, &existing, &desired)),
            [
                "Service bp/playground-dragonfly-iad-headless",
                "StatefulSet bp/playground-dragonfly-iad",
                "PodDisruptionBudget bp/playground-dragonfly-iad",
                "Service bp/playground-dragonfly-pdx-headless",
                "StatefulSet bp/playground-dragonfly-pdx",
                "PodDisruptionBudget bp/playground-dragonfly-pdx",
                "Service bp/playground-dragonfly",
            ]
        );
    }

    #[test]
    fn removing_spec_dns_deletes_the_dns_endpoint() {
        let mut group = with_dragonfly();
        group.spec.dns = None;
        let desired = build(&group, Some("iad"), &ctx())
            .unwrap()
            .objects()
            .unwrap();
        assert_eq!(
            names(unwanted(&group, &existing_after_full_apply(), &desired)),
            ["DNSEndpoint bp/playground"]
        );
    }

    #[test]
    fn a_dns_endpoint_is_kept_while_no_site_is_active_yet() {
        // Unsafe case: the builder omits the record before an active site is known
        // (operator restart with empty status); deleting it would drop the hostname.
        let group = with_dragonfly();
        let desired = build(&group, None, &ctx()).unwrap().objects().unwrap();
        assert!(desired.iter().all(|o| o.resource.kind != "DNSEndpoint"));
        assert!(unwanted(&group, &existing_after_full_apply(), &desired).is_empty());
    }

    #[test]
    fn objects_owned_by_someone_else_or_nobody_are_never_deleted() {
        let group = playground();
        let desired = build(&group, Some("iad"), &ctx())
            .unwrap()
            .objects()
            .unwrap();
        let existing = vec![
            // Same name the group would use, but another group's (or a person's).
            child::<Service>(
                &crate::children::names::dragonfly_service("playground"),
                Some("uid-2"),
            ),
            child::<StatefulSet>("playground-dragonfly-iad", None),
            child::<DNSEndpoint>("someone-elses", Some("uid-9")),
        ];
        assert!(unwanted(&group, &existing, &desired).is_empty());
    }

    #[test]
    fn other_namespaces_and_kinds_that_are_not_prunable_are_left_alone() {
        let group = playground();
        let desired = build(&group, Some("iad"), &ctx())
            .unwrap()
            .objects()
            .unwrap();
        let mut elsewhere = child::<Service>("playground-dragonfly", Some("uid-1"));
        elsewhere.namespace = "other".into();
        let lease = ExistingChild {
            resource: ApiResource::erase::<k8s_openapi::api::coordination::v1::Lease>(&()),
            ..child::<Service>("old-lease", Some("uid-1"))
        };
        assert!(unwanted(&group, &[elsewhere, lease], &desired).is_empty());
    }

    #[test]
    fn a_group_without_uid_prunes_nothing() {
        let mut group = playground();
        group.metadata.uid = None;
        let existing = vec![child::<Service>(
            &crate::children::names::dragonfly_service("playground"),
            Some("uid-1"),
        )];
        assert!(unwanted(&group, &existing, &[]).is_empty());
    }
}
