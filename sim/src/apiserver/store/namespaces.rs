//! Namespace lifecycle: the system namespaces every cluster starts with, no new content
//! in a terminating namespace, and a terminating namespace emptied and removed once it
//! holds nothing.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::State;
use crate::apiserver::error::ApiError;
use crate::apiserver::registry::StorageKey;
use crate::apiserver::{Caller, DeleteOptions, ResourceKey, meta};

const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Where Namespace objects are stored.
pub(super) fn namespaces_storage() -> StorageKey {
    StorageKey {
        group: String::new(),
        resource: "namespaces".into(),
    }
}

impl State {
    /// Creates the namespaces a new cluster has.
    pub(super) fn create_system_namespaces(&mut self, now: &str) {
        let key = ResourceKey::core("v1", "namespaces");
        let system = Caller {
            user_agent: "kube-apiserver",
        };
        for ns in SYSTEM_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            // Creating a fresh namespace in an empty store cannot fail; ignore to keep
            // construction infallible.
            let _ = self.create(&key, None, obj, &system, "kube-apiserver", now);
        }
    }

    pub(super) fn check_namespace_open(&self, ns: &str) -> Result<(), ApiError> {
        let storage = namespaces_storage();
        match self.stored(&storage, "", ns) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(obj) if meta::is_deleting(obj) => Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Deletes every namespaced object in a terminating namespace (in storage, then
    /// name order).
    pub(super) fn empty_namespace(&mut self, ns: &str, now: &str) {
        let namespaced: BTreeSet<StorageKey> = self
            .registry
            .all()
            .filter(|info| info.namespaced)
            .map(|info| info.storage.clone())
            .collect();
        for storage in namespaced {
            let names: Vec<String> = self
                .objects
                .get(&storage)
                .map(|objects| {
                    objects
                        .keys()
                        .filter(|(o_ns, _)| o_ns == ns)
                        .map(|(_, n)| n.clone())
                        .collect()
                })
                .unwrap_or_default();
            for name in names {
                let _ = self.delete_object(&storage, ns, &name, &DeleteOptions::default(), now);
            }
        }
    }

    /// Removes a terminating namespace once it holds nothing.
    pub(super) fn finish_namespace(&mut self, ns: &str, now: &str) -> (Value, bool) {
        let ns_storage = namespaces_storage();
        let Some(obj) = self.stored(&ns_storage, "", ns).cloned() else {
            return (Value::Null, true);
        };
        let occupied = self.objects.iter().any(|(storage, objects)| {
            storage != &ns_storage && objects.keys().any(|(o_ns, _)| o_ns == ns)
        });
        if occupied || !meta::finalizers(&obj).is_empty() {
            return ((*obj).clone(), false);
        }
        match self.remove(&ns_storage, "", ns, now) {
            Some(removed) => (removed, true),
            None => ((*obj).clone(), false),
        }
    }
}
