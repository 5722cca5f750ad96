//! Groups the operator cannot read (their stored object does not deserialize into
//! `MysqlFailoverGroup`): each gets one Warning Event per resourceVersion and, when the
//! API server accepts it, a `Ready=False` condition saying why. Nothing else is done
//! for them; every other group keeps being reconciled.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::api::MysqlFailoverGroup;
use crate::engine::{EventIntent, EventReason};
use crate::production::events::EventPublisher;

use super::indexes::GroupObject;
use super::status::READY;

/// Condition reason (and Event reason) of an unreadable group.
pub(crate) const UNREADABLE_REASON: &str = "GroupUnreadable";

/// The message users see: what could not be read, and that nothing is done.
pub(crate) fn message(error: &str) -> String {
    format!(
        "the operator cannot read this MysqlFailoverGroup ({error}); it is not reconciled until the object is fixed"
    )
}

/// Which versions of which groups were already reported, keyed by (namespace, name).
#[derive(Debug, Default)]
pub(crate) struct UnreadableGroups {
    reported: BTreeMap<(String, String), String>,
}

impl UnreadableGroups {
    /// Whether this version of the group still needs a report (and marks it reported).
    pub(crate) fn needs_report(&mut self, object: &GroupObject) -> bool {
        let key = (object.namespace().unwrap_or_default(), object.name_any());
        let version = object.resource_version().unwrap_or_default();
        if self.reported.get(&key) == Some(&version) {
            return false;
        }
        self.reported.insert(key, version);
        true
    }

    /// Forgets the groups not in `present` (deleted or readable again).
    pub(crate) fn retain(&mut self, present: &[(String, String)]) {
        self.reported.retain(|key, _| present.contains(key));
    }
}

/// Publishes the Warning and writes the condition; failures are logged only: the
/// next version of the object is reported again.
pub(crate) async fn report(
    client: &Client,
    events: &EventPublisher,
    object: &GroupObject,
    error: &str,
    now: jiff::Timestamp,
    leader: bool,
) {
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let text = message(error);
    tracing::warn!(group = %name, %namespace, %error, "cannot read MysqlFailoverGroup");
    if !leader {
        return;
    }
    let regarding = ObjectReference {
        api_version: Some(MysqlFailoverGroup::api_version(&()).to_string()),
        kind: Some(MysqlFailoverGroup::kind(&()).to_string()),
        name: Some(name.clone()),
        namespace: Some(namespace.clone()),
        uid: object.uid(),
        ..ObjectReference::default()
    };
    let intent = EventIntent::warning(EventReason::GroupUnreadable, text.clone());
    if let Err(err) = events.publish(&intent, &regarding).await {
        tracing::warn!(%err, "publishing an Event failed");
    }
    // A dynamic object: the typed API would fail to read the answer for the same reason.
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace,
        &ApiResource::erase::<MysqlFailoverGroup>(&()),
    );
    let patch = json!({"status": {"conditions": [{
        "type": READY,
        "status": "False",
        "reason": UNREADABLE_REASON,
        "message": text,
        "lastTransitionTime": now.to_string(),
        "observedGeneration": object.meta().generation,
    }]}});
    if let Err(err) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::warn!(%err, group = %name, %namespace, "writing the unreadable condition failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(detection_window: &str, version: &str) -> GroupObject {
        GroupObject::from_value(json!({
            "apiVersion": "bloodraven.shipstream.io/v1alpha1",
            "kind": "MysqlFailoverGroup",
            "metadata": {"name": "orders", "namespace": "shop", "resourceVersion": version},
            "spec": {
                "sites": [{"name": "iad", "nodeSelector": {"zone": "a"}},
                          {"name": "pdx", "nodeSelector": {"zone": "b"}}],
                "mysql": {"image": "mysql:8.4", "credentialsSecret": "s"},
                "failover": {"detectionWindow": detection_window}
            }
        }))
        .unwrap()
    }

    #[test]
    fn an_unreadable_group_keeps_its_metadata_and_says_which_field() {
        let bad = object("18446744073709551615h", "7");
        assert_eq!(bad.name_any(), "orders");
        let err = bad.group.unwrap_err();
        assert!(err.starts_with("spec.failover.detectionWindow: "), "{err}");
        assert!(err.contains("too large"), "{err}");
        assert!(object("3s", "7").group.is_ok());
    }

    #[test]
    fn a_list_with_one_unreadable_group_still_reads_the_others() {
        let list: Vec<GroupObject> = serde_json::from_value(json!([
            serde_json::to_value(object("3s", "1").group.unwrap().as_ref()).unwrap(),
            {"apiVersion": "bloodraven.shipstream.io/v1alpha1", "kind": "MysqlFailoverGroup",
             "metadata": {"name": "bad", "namespace": "shop"},
             "spec": {"failover": {"detectionWindow": "18446744073709551615h"}}},
        ]))
        .unwrap();
        assert!(list[0].group.is_ok());
        assert!(list[1].group.is_err());
        // The typed list, as the reflector read it before, fails as a whole.
        let typed: Result<Vec<MysqlFailoverGroup>, _> = serde_json::from_value(json!([
            serde_json::to_value(object("3s", "1").group.unwrap().as_ref()).unwrap(),
            {"apiVersion": "bloodraven.shipstream.io/v1alpha1", "kind": "MysqlFailoverGroup",
             "metadata": {"name": "bad", "namespace": "shop"},
             "spec": {"failover": {"detectionWindow": "18446744073709551615h"}}},
        ]));
        assert!(typed.is_err());
    }

    #[test]
    fn each_version_is_reported_once() {
        let mut reported = UnreadableGroups::default();
        assert!(reported.needs_report(&object("1h", "7")));
        assert!(!reported.needs_report(&object("1h", "7")));
        assert!(reported.needs_report(&object("1h", "8")));
        reported.retain(&[]);
        assert!(reported.needs_report(&object("1h", "8")));
    }
}
