//! The write pipelines behind create, update (PUT and every patch), patch (merge, JSON,
//! strategic merge and server-side apply) and delete: validation, optimistic
//! concurrency, the status subresource, finalizers and managed fields.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::watch::Filter;
use super::{ObjectKey, State, absorb, check_type, list_types, present, sub_name};
use crate::apiserver::apply;
use crate::apiserver::error::{ApiError, StatusCause};
use crate::apiserver::registry::{ResourceInfo, StorageKey};
use crate::apiserver::{
    Caller, DeleteOptions, ListQuery, Patch, Propagation, ResourceKey, Subresource, crd, meta,
    patch,
};

impl State {
    pub(in crate::apiserver) fn create(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        obj: Value,
        who: &Caller,
        manager: &str,
        now: &str,
    ) -> Result<Value, ApiError> {
        let info = self.info(key)?;
        self.count("create", &info, None, who);
        self.create_object(&info, ns, obj, manager, now, false)
    }

    fn create_object(
        &mut self,
        info: &Arc<ResourceInfo>,
        ns: Option<&str>,
        obj: Value,
        manager: &str,
        now: &str,
        applied: bool,
    ) -> Result<Value, ApiError> {
        check_type(info, &obj)?;
        let body_ns = meta::namespace(&obj).to_string();
        let ns = match (info.namespaced, ns, body_ns.is_empty()) {
            (true, Some(ns), false) if ns != body_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (true, None, false) => Some(body_ns.as_str()),
            (_, ns, _) => ns,
        };
        let ns = Self::object_namespace(info, ns)?;
        let mut obj = absorb(info, obj);
        if info.namespaced {
            self.check_namespace_open(&ns)?;
        }
        {
            let metadata = meta::metadata_mut(&mut obj);
            for field in [
                "uid",
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                metadata.remove(field);
            }
            if info.namespaced {
                metadata.insert("namespace".into(), Value::String(ns.clone()));
            } else {
                metadata.remove("namespace");
            }
        }
        let mut name = meta::name(&obj).to_string();
        if name.is_empty() {
            let prefix = obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &info.key.group,
                    &info.kind,
                    "",
                    vec![
                        StatusCause::required("metadata.name")
                            .with_message("name or generateName is required"),
                    ],
                ));
            }
            // Retry on the (unlikely) collision, as the real server's caller would.
            for attempt in 0..16u64 {
                let candidate = format!(
                    "{prefix}{}",
                    meta::name_suffix(meta::mix(self.seed ^ self.rv ^ (attempt << 48)))
                );
                if self.stored(&info.storage, &ns, &candidate).is_none() {
                    name = candidate;
                    break;
                }
            }
            meta::set_meta(&mut obj, "name", Value::String(name.clone()));
        }
        let label_only = matches!(info.kind.as_str(), "Namespace" | "Service") && !info.custom;
        meta::validate_name(&name, label_only)
            .map_err(|cause| ApiError::invalid(&info.key.group, &info.kind, &name, vec![cause]))?;
        if self.stored(&info.storage, &ns, &name).is_some() {
            return Err(ApiError::already_exists(
                &info.key.group,
                &info.key.resource,
                &name,
            ));
        }
        self.prepare_create(info, &mut obj);
        if info.custom {
            crd::validate_custom(info, &mut obj, None)?;
        }
        if info.storage.resource == "customresourcedefinitions" && !info.custom {
            crd::validate_definition(&obj)?;
            crd::mark_established(&mut obj);
        }
        let uid = self.next_uid();
        {
            let metadata = meta::metadata_mut(&mut obj);
            metadata.insert("uid".into(), Value::String(uid));
            metadata.insert("creationTimestamp".into(), Value::String(now.to_string()));
            metadata.insert("generation".into(), json!(1));
        }
        let list_types = list_types(info);
        if !applied {
            apply::record_update(
                None,
                &mut obj,
                manager,
                &info.api_version(),
                now,
                &list_types,
                None,
            );
        }
        let stored = self.put(&info.storage.clone(), obj, None);
        if info.storage.resource == "customresourcedefinitions" && !info.custom {
            self.register_crd(&stored);
        }
        Ok(present(info, &stored))
    }

    #[allow(clippy::too_many_arguments)]
    pub(in crate::apiserver) fn update(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        obj: Value,
        sub: Subresource,
        who: &Caller,
        manager: &str,
        now: &str,
    ) -> Result<Value, ApiError> {
        let info = self.info(key)?;
        self.count("update", &info, sub_name(sub), who);
        self.update_object(&info, ns, obj, sub, manager, now, false)
    }

    /// The update pipeline shared by PUT and every patch.
    #[allow(clippy::too_many_arguments)]
    fn update_object(
        &mut self,
        info: &Arc<ResourceInfo>,
        ns: Option<&str>,
        obj: Value,
        sub: Subresource,
        manager: &str,
        now: &str,
        applied: bool,
    ) -> Result<Value, ApiError> {
        check_type(info, &obj)?;
        let ns = Self::object_namespace(info, ns)?;
        let name = meta::name(&obj).to_string();
        if name.is_empty() {
            return Err(ApiError::invalid(
                &info.key.group,
                &info.kind,
                "",
                vec![StatusCause::required("metadata.name")],
            ));
        }
        let body_ns = meta::namespace(&obj);
        if info.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let old = self
            .stored(&info.storage, &ns, &name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&info.key.group, &info.key.resource, &name))?;
        if let Some(rv) = meta::resource_version(&obj)
            && Some(rv) != meta::resource_version(&old)
        {
            return Err(ApiError::stale(&info.key.group, &info.key.resource, &name));
        }
        let body_uid = meta::uid(&obj);
        if !body_uid.is_empty() && body_uid != meta::uid(&old) {
            return Err(ApiError::conflict(
                &info.key.group,
                &info.key.resource,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {body_uid}, UID in object meta: {}",
                    meta::uid(&old)
                ),
            ));
        }
        let incoming = absorb(info, obj);
        let mut new = match sub {
            Subresource::Status => {
                // /status changes only the status.
                let mut new = (*old).clone();
                if applied && let Some(fields) = incoming.pointer("/metadata/managedFields") {
                    meta::set_meta(&mut new, "managedFields", fields.clone());
                }
                match incoming.get("status") {
                    Some(status) => new["status"] = status.clone(),
                    None => {
                        if let Value::Object(map) = &mut new {
                            map.remove("status");
                        }
                    }
                }
                new
            }
            Subresource::Main => {
                let mut new = incoming;
                if info.status_subresource {
                    match old.get("status") {
                        Some(status) => new["status"] = status.clone(),
                        None => {
                            if let Value::Object(map) = &mut new {
                                map.remove("status");
                            }
                        }
                    }
                }
                // Fields the server owns.
                let old_meta = old.get("metadata").cloned().unwrap_or(Value::Null);
                let metadata = meta::metadata_mut(&mut new);
                let owned: &[&str] = if applied {
                    &[
                        "uid",
                        "creationTimestamp",
                        "deletionTimestamp",
                        "deletionGracePeriodSeconds",
                        "generation",
                        "namespace",
                    ]
                } else {
                    &[
                        "uid",
                        "creationTimestamp",
                        "deletionTimestamp",
                        "deletionGracePeriodSeconds",
                        "generation",
                        "namespace",
                        "managedFields",
                    ]
                };
                for &field in owned {
                    match old_meta.get(field) {
                        Some(v) => metadata.insert(field.into(), v.clone()),
                        None => metadata.remove(field),
                    };
                }
                new
            }
        };
        if meta::is_deleting(&old) {
            // A terminating object may lose finalizers but gain none.
            let before: BTreeSet<String> = meta::finalizers(&old).into_iter().collect();
            let added: Vec<String> = meta::finalizers(&new)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::forbidden(format!(
                    "{} \"{name}\" is being deleted: no new finalizers can be added ({})",
                    info.qualified_resource(),
                    added.join(", ")
                )));
            }
        }
        if info.custom {
            crd::validate_custom(info, &mut new, Some(&old))?;
        }
        if info.storage.resource == "customresourcedefinitions"
            && !info.custom
            && sub == Subresource::Main
        {
            crd::validate_definition(&new)?;
            crd::mark_established(&mut new);
        }
        if meta::spec_part(&new) != meta::spec_part(&old) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            meta::set_meta(&mut new, "generation", json!(generation));
        }
        let list_types = list_types(info);
        if !applied {
            apply::record_update(
                Some(&old),
                &mut new,
                manager,
                &info.api_version(),
                now,
                &list_types,
                sub_name(sub),
            );
        }
        if meta::without_bookkeeping(&new) == meta::without_bookkeeping(&old)
            && new.pointer("/metadata/managedFields") == old.pointer("/metadata/managedFields")
        {
            // No-op writes do not bump the resourceVersion (nor wake watchers).
            return Ok(present(info, &old));
        }
        if meta::is_deleting(&new) && meta::finalizers(&new).is_empty() {
            let removed = self
                .remove_final(&info.storage.clone(), &ns, &name, Some(new), now)
                .unwrap_or_default();
            return Ok(present(info, &removed));
        }
        let stored = self.put(&info.storage.clone(), new, Some(old));
        if info.storage.resource == "customresourcedefinitions" && !info.custom {
            self.register_crd(&stored);
        }
        Ok(present(info, &stored))
    }

    #[allow(clippy::too_many_arguments)]
    pub(in crate::apiserver) fn patch(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        patch: Patch,
        sub: Subresource,
        who: &Caller,
        manager: &str,
        now: &str,
    ) -> Result<Value, ApiError> {
        let info = self.info(key)?;
        self.count("patch", &info, sub_name(sub), who);
        let obj_ns = Self::object_namespace(&info, ns)?;
        let existing = self
            .stored(&info.storage, &obj_ns, name)
            .map(|obj| present(&info, obj));
        match patch {
            Patch::Apply {
                field_manager,
                force,
                object,
            } => {
                if field_manager.is_empty() {
                    return Err(ApiError::bad_request(
                        "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
                    ));
                }
                check_type(&info, &object)?;
                let applied_name = meta::name(&object);
                if applied_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({applied_name}) does not match the name on the URL ({name})"
                    )));
                }
                let list_types = list_types(&info);
                let ignore_status = info.status_subresource && sub == Subresource::Main;
                let api_version = info.api_version();
                let merged = apply::apply(
                    existing.as_ref(),
                    &object,
                    &field_manager,
                    force,
                    &list_types,
                    ignore_status,
                    &api_version,
                    now,
                    sub_name(sub),
                )?;
                match existing {
                    None => self.create_object(&info, ns, merged, manager, now, true),
                    Some(_) => self.update_object(&info, ns, merged, sub, manager, now, true),
                }
            }
            other => {
                let mut target = existing.ok_or_else(|| {
                    ApiError::not_found(&info.key.group, &info.key.resource, name)
                })?;
                let live_rv = meta::resource_version(&target).map(str::to_string);
                match &other {
                    Patch::Merge(p) => patch::merge_patch(&mut target, p)?,
                    Patch::Json(p) => patch::json_patch(&mut target, p)?,
                    Patch::StrategicMerge(p) => {
                        if info.custom {
                            return Err(ApiError::unsupported_media_type(
                                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                            ));
                        }
                        patch::strategic_merge_patch(&mut target, p)?
                    }
                    Patch::Apply { .. } => {}
                }
                if meta::name(&target) != name {
                    return Err(ApiError::bad_request("a patch cannot change metadata.name"));
                }
                // A patch that sets no resourceVersion applies to the live object.
                if meta::resource_version(&target).is_none()
                    && let Some(rv) = live_rv
                {
                    meta::set_meta(&mut target, "resourceVersion", Value::String(rv));
                }
                self.update_object(&info, ns, target, sub, manager, now, false)
            }
        }
    }

    pub(in crate::apiserver) fn delete(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        who: &Caller,
        now: &str,
    ) -> Result<(Value, bool), ApiError> {
        let info = self.info(key)?;
        self.count("delete", &info, None, who);
        let ns = Self::object_namespace(&info, ns)?;
        let (obj, gone) = self
            .delete_object(&info.storage, &ns, name, opts, now)
            .ok_or_else(|| ApiError::not_found(&info.key.group, &info.key.resource, name))??;
        Ok((present(&info, &obj), gone))
    }

    pub(in crate::apiserver) fn delete_collection(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        q: &ListQuery,
        who: &Caller,
        now: &str,
    ) -> Result<Vec<Value>, ApiError> {
        let info = self.info(key)?;
        self.count("deletecollection", &info, None, who);
        let filter = Filter::new(&info, ns, q)?;
        let targets: Vec<ObjectKey> = self
            .objects
            .get(&info.storage)
            .map(|objects| {
                objects
                    .iter()
                    .filter(|((obj_ns, _), obj)| {
                        filter.namespace.as_ref().is_none_or(|w| w == obj_ns)
                            && filter.matches(&present(&info, obj))
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut deleted = Vec::new();
        for (obj_ns, name) in targets {
            if let Some(Ok((obj, _))) = self.delete_object(
                &info.storage,
                &obj_ns,
                &name,
                &DeleteOptions::default(),
                now,
            ) {
                deleted.push(present(&info, &obj));
            }
        }
        Ok(deleted)
    }

    /// None: not found. Some(Ok((object, gone))).
    pub(super) fn delete_object(
        &mut self,
        storage: &StorageKey,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
        now: &str,
    ) -> Option<Result<(Value, bool), ApiError>> {
        let old = self.stored(storage, ns, name)?.clone();
        let group = &storage.group;
        if let Some(uid) = &opts.uid
            && uid != meta::uid(&old)
        {
            return Some(Err(ApiError::conflict(
                group,
                &storage.resource,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(&old)
                ),
            )));
        }
        if let Some(rv) = &opts.resource_version
            && Some(rv.as_str()) != meta::resource_version(&old)
        {
            return Some(Err(ApiError::stale(group, &storage.resource, name)));
        }
        let is_namespace = storage.group.is_empty() && storage.resource == "namespaces";
        let mut finalizers = meta::finalizers(&old);
        match opts.propagation {
            Propagation::Orphan => self.orphan_dependents(meta::uid(&old), now),
            Propagation::Foreground
                if !meta::is_deleting(&old) && self.has_dependents(meta::uid(&old)) =>
            {
                finalizers.push("foregroundDeletion".into());
            }
            _ => {}
        }
        if finalizers.is_empty() && !is_namespace {
            let removed = self.remove(storage, ns, name, now)?;
            return Some(Ok((removed, true)));
        }
        if meta::is_deleting(&old) && !is_namespace {
            return Some(Ok(((*old).clone(), false)));
        }
        let mut new = (*old).clone();
        {
            let metadata = meta::metadata_mut(&mut new);
            metadata.insert("deletionTimestamp".into(), Value::String(now.to_string()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            metadata.insert("finalizers".into(), json!(finalizers));
            let generation = metadata
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            metadata.insert("generation".into(), json!(generation));
        }
        if is_namespace {
            if meta::is_deleting(&old) {
                return Some(Ok(((*old).clone(), false)));
            }
            new["status"] = json!({"phase": "Terminating"});
            self.put(storage, new, Some(old));
            self.empty_namespace(name, now);
            return Some(Ok(self.finish_namespace(name, now)));
        }
        let stored = self.put(storage, new, Some(old.clone()));
        if opts.propagation == Propagation::Foreground {
            self.delete_dependents(meta::uid(&old), now);
            self.finish_foreground(storage, ns, name, now);
            return match self.stored(storage, ns, name) {
                Some(obj) => Some(Ok(((**obj).clone(), false))),
                None => Some(Ok((stored, true))),
            };
        }
        Some(Ok((stored, false)))
    }
}

impl StatusCause {
    fn with_message(mut self, message: &str) -> Self {
        self.message = message.to_string();
        self
    }
}
