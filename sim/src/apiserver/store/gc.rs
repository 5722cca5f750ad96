//! Garbage collection by owner references: background cascade (a dependent whose
//! owners are all gone is deleted), orphaning, and foreground deletion (the owner keeps
//! its `foregroundDeletion` finalizer until its dependents are gone).

use serde_json::{Value, json};

use super::namespaces::namespaces_storage;
use super::{ObjectKey, State};
use crate::apiserver::apply::{self, ListTypes};
use crate::apiserver::registry::StorageKey;
use crate::apiserver::{DeleteOptions, meta};

const GC_MANAGER: &str = "generic-garbage-collector";

impl State {
    /// Every stored object, in deterministic order, whose ownerReferences name `uid`.
    fn dependents_of(&self, uid: &str) -> Vec<(StorageKey, ObjectKey)> {
        if uid.is_empty() {
            return Vec::new();
        }
        let mut found = Vec::new();
        for (storage, objects) in &self.objects {
            for (key, obj) in objects {
                let owned = obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                    });
                if owned {
                    found.push((storage.clone(), key.clone()));
                }
            }
        }
        found
    }

    pub(super) fn has_dependents(&self, uid: &str) -> bool {
        !self.dependents_of(uid).is_empty()
    }

    fn uid_exists(&self, uid: &str) -> bool {
        self.objects
            .values()
            .any(|objects| objects.values().any(|obj| meta::uid(obj) == uid))
    }

    /// Called after an object is gone: background-cascade to its dependents, finish a
    /// foreground owner or a terminating namespace waiting for it, unregister a CRD.
    pub(super) fn after_removal(
        &mut self,
        storage: &StorageKey,
        removed: &Value,
        uid: &str,
        now: &str,
    ) {
        if storage.group == "apiextensions.k8s.io"
            && storage.resource == "customresourcedefinitions"
        {
            self.unregister_crd(removed, now);
        }
        self.delete_dependents(uid, now);
        // Owners in foreground deletion that were waiting for this object.
        if let Some(refs) = removed
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
        {
            for owner_ref in refs {
                let Some(owner_uid) = owner_ref.get("uid").and_then(Value::as_str) else {
                    continue;
                };
                if let Some((owner_storage, (owner_ns, owner_name))) = self.find_by_uid(owner_uid) {
                    self.finish_foreground(&owner_storage, &owner_ns, &owner_name, now);
                }
            }
        }
        let ns = meta::namespace(removed).to_string();
        if !ns.is_empty()
            && self
                .stored(&namespaces_storage(), "", &ns)
                .is_some_and(|n| meta::is_deleting(n))
        {
            self.finish_namespace(&ns, now);
        }
    }

    fn find_by_uid(&self, uid: &str) -> Option<(StorageKey, ObjectKey)> {
        for (storage, objects) in &self.objects {
            for (key, obj) in objects {
                if meta::uid(obj) == uid {
                    return Some((storage.clone(), key.clone()));
                }
            }
        }
        None
    }

    /// Background cascade: a dependent whose owners are all gone is deleted; one with
    /// a surviving owner only loses the dangling reference.
    pub(super) fn delete_dependents(&mut self, uid: &str, now: &str) {
        for (storage, (ns, name)) in self.dependents_of(uid) {
            let Some(obj) = self.stored(&storage, &ns, &name).cloned() else {
                continue;
            };
            let refs = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let surviving: Vec<Value> = refs
                .iter()
                .filter(|r| {
                    let other = r.get("uid").and_then(Value::as_str).unwrap_or_default();
                    other != uid && self.uid_exists(other)
                })
                .cloned()
                .collect();
            if surviving.is_empty() {
                let _ = self.delete_object(&storage, &ns, &name, &DeleteOptions::default(), now);
            } else {
                let mut new = (*obj).clone();
                meta::set_meta(&mut new, "ownerReferences", Value::Array(surviving));
                apply::record_update(
                    Some(&obj),
                    &mut new,
                    GC_MANAGER,
                    obj["apiVersion"].as_str().unwrap_or_default(),
                    now,
                    &ListTypes::BuiltIn,
                    None,
                );
                self.put(&storage, new, Some(obj));
            }
        }
    }

    pub(super) fn orphan_dependents(&mut self, uid: &str, now: &str) {
        for (storage, (ns, name)) in self.dependents_of(uid) {
            let Some(obj) = self.stored(&storage, &ns, &name).cloned() else {
                continue;
            };
            let mut new = (*obj).clone();
            let refs: Vec<Value> = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .map(|refs| {
                    refs.iter()
                        .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if refs.is_empty() {
                meta::metadata_mut(&mut new).remove("ownerReferences");
            } else {
                meta::set_meta(&mut new, "ownerReferences", Value::Array(refs));
            }
            apply::record_update(
                Some(&obj),
                &mut new,
                GC_MANAGER,
                obj["apiVersion"].as_str().unwrap_or_default(),
                now,
                &ListTypes::BuiltIn,
                None,
            );
            self.put(&storage, new, Some(obj));
        }
    }

    /// Removes the `foregroundDeletion` finalizer once no dependents remain.
    pub(super) fn finish_foreground(
        &mut self,
        storage: &StorageKey,
        ns: &str,
        name: &str,
        now: &str,
    ) {
        let Some(obj) = self.stored(storage, ns, name).cloned() else {
            return;
        };
        let finalizers = meta::finalizers(&obj);
        if !meta::is_deleting(&obj) || !finalizers.iter().any(|f| f == "foregroundDeletion") {
            return;
        }
        if self.has_dependents(meta::uid(&obj)) {
            return;
        }
        let rest: Vec<String> = finalizers
            .into_iter()
            .filter(|f| f != "foregroundDeletion")
            .collect();
        if rest.is_empty() {
            self.remove(storage, ns, name, now);
        } else {
            let mut new = (*obj).clone();
            meta::set_meta(&mut new, "finalizers", json!(rest));
            self.put(storage, new, Some(obj));
        }
    }
}
