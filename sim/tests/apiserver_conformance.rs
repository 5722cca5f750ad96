#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Conformance of the simulated API server's in-process interface with Kubernetes
//! semantics: resourceVersion, generation, conflicts, patches, apply, status
//! subresource, finalizers, garbage collection, namespaces, watch and selectors.

use std::sync::{Arc, Mutex};

use bloodraven::seams::Clock;
use bloodraven_sim::apiserver::{
    ApiServer, Caller, DeleteOptions, ListQuery, Patch, Propagation, ResourceKey, ServerConfig,
    Subresource, WatchEvent,
};
use serde_json::{Value, json};

struct TestClock(Mutex<jiff::Timestamp>);

impl Clock for TestClock {
    fn now(&self) -> jiff::Timestamp {
        *self.0.lock().unwrap()
    }
}

fn clock() -> Arc<TestClock> {
    Arc::new(TestClock(Mutex::new(
        "2025-01-01T00:00:00Z".parse().unwrap(),
    )))
}

fn server() -> ApiServer {
    ApiServer::new(clock())
}

const ME: Caller<'static> = Caller {
    user_agent: "conformance/1.0",
};
const OTHER: Caller<'static> = Caller {
    user_agent: "other-controller/2.0",
};

fn pods() -> ResourceKey {
    ResourceKey::core("v1", "pods")
}
fn configmaps() -> ResourceKey {
    ResourceKey::core("v1", "configmaps")
}
fn deployments() -> ResourceKey {
    ResourceKey::new("apps", "v1", "deployments")
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "mysql"}},
           "spec": {"containers": [{"name": "mysql", "image": "mysql:8.4"}]}})
}

fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<WatchEvent>) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        out.push(event);
    }
    out
}

fn describe(events: &[WatchEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) => format!("ADDED {}", o["metadata"]["name"].as_str().unwrap()),
            WatchEvent::Modified(o) => {
                format!("MODIFIED {}", o["metadata"]["name"].as_str().unwrap())
            }
            WatchEvent::Deleted(o) => {
                format!("DELETED {}", o["metadata"]["name"].as_str().unwrap())
            }
            WatchEvent::Bookmark(rv) => format!("BOOKMARK {rv}"),
        })
        .collect()
}

#[test]
fn create_sets_server_fields_and_get_returns_them() {
    let api = server();
    let created = api
        .create(&pods(), Some("default"), pod("p1"), &ME)
        .unwrap();
    let meta = &created["metadata"];
    assert_eq!(meta["namespace"], "default");
    assert_eq!(meta["generation"], 1);
    assert_eq!(meta["creationTimestamp"], "2025-01-01T00:00:00Z");
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert_eq!(created["status"]["phase"], "Pending");
    assert_eq!(created["spec"]["restartPolicy"], "Always");
    assert_eq!(api.get(&pods(), Some("default"), "p1").unwrap(), created);

    let err = api
        .create(&pods(), Some("default"), pod("p1"), &ME)
        .unwrap_err();
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(err.message, "pods \"p1\" already exists");
    let err = api.get(&pods(), Some("default"), "nope").unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "pods \"nope\" not found")
    );
    let err = api
        .create(&pods(), Some("missing-ns"), pod("p2"), &ME)
        .unwrap_err();
    assert_eq!(err.code, 404, "{err}");
    let err = api
        .create(&pods(), Some("default"), pod("Bad_Name"), &ME)
        .unwrap_err();
    assert_eq!(err.code, 422);
    assert_eq!(err.causes[0].field, "metadata.name");
}

#[test]
fn generate_name_is_deterministic_per_seed() {
    let names = |seed| {
        let api = ApiServer::with_config(
            clock(),
            ServerConfig {
                seed,
                ..ServerConfig::default()
            },
        );
        let obj = json!({"metadata": {"generateName": "backup-"}, "data": {}});
        (0..3)
            .map(|_| {
                let created = api
                    .create(&configmaps(), Some("default"), obj.clone(), &ME)
                    .unwrap();
                created["metadata"]["name"].as_str().unwrap().to_string()
            })
            .collect::<Vec<_>>()
    };
    let a = names(1);
    assert_eq!(a, names(1));
    assert_ne!(a, names(2));
    assert!(
        a.iter()
            .all(|n| n.starts_with("backup-") && n.len() == "backup-".len() + 5)
    );
    assert_eq!(a.iter().collect::<std::collections::BTreeSet<_>>().len(), 3);
}

#[test]
fn update_with_stale_resource_version_conflicts() {
    let api = server();
    let v1 = api
        .create(
            &configmaps(),
            Some("default"),
            cm("c", json!({"a": "1"})),
            &ME,
        )
        .unwrap();
    let mut v2 = v1.clone();
    v2["data"]["a"] = json!("2");
    let v2 = api.update(&configmaps(), Some("default"), v2, &ME).unwrap();
    assert!(rv(&v2) > rv(&v1));
    let mut stale = v1.clone();
    stale["data"]["a"] = json!("3");
    let err = api
        .update(&configmaps(), Some("default"), stale, &ME)
        .unwrap_err();
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );
    // Without a resourceVersion the update is unconditional.
    let mut blind = v1;
    blind["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    blind["data"]["a"] = json!("4");
    assert_eq!(
        api.update(&configmaps(), Some("default"), blind, &ME)
            .unwrap()["data"]["a"],
        "4"
    );
}

#[test]
fn no_op_update_keeps_resource_version() {
    let api = server();
    let v1 = api
        .create(
            &configmaps(),
            Some("default"),
            cm("c", json!({"a": "1"})),
            &ME,
        )
        .unwrap();
    let again = api
        .update(&configmaps(), Some("default"), v1.clone(), &ME)
        .unwrap();
    assert_eq!(rv(&again), rv(&v1));
}

#[test]
fn generation_bumps_only_on_spec_changes() {
    let api = server();
    let deploy =
        json!({"metadata": {"name": "d"}, "spec": {"replicas": 1, "selector": {}, "template": {}}});
    let v1 = api
        .create(&deployments(), Some("default"), deploy, &ME)
        .unwrap();
    let mut labelled = v1.clone();
    labelled["metadata"]["labels"] = json!({"x": "y"});
    let v2 = api
        .update(&deployments(), Some("default"), labelled, &ME)
        .unwrap();
    assert_eq!(v2["metadata"]["generation"], 1);
    let mut status = v2.clone();
    status["status"] = json!({"readyReplicas": 1});
    let v3 = api
        .update_status(&deployments(), Some("default"), status, &ME)
        .unwrap();
    assert_eq!(v3["metadata"]["generation"], 1);
    assert_eq!(v3["status"]["readyReplicas"], 1);
    let mut scaled = v3.clone();
    scaled["spec"]["replicas"] = json!(3);
    let v4 = api
        .update(&deployments(), Some("default"), scaled, &ME)
        .unwrap();
    assert_eq!(v4["metadata"]["generation"], 2);
}

#[test]
fn status_subresource_splits_spec_and_status() {
    let api = server();
    let deploy =
        json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {"replicas": 9}});
    let created = api
        .create(&deployments(), Some("default"), deploy, &ME)
        .unwrap();
    assert!(
        created.get("status").is_none(),
        "status is reset on create: {created}"
    );
    // Main resource: the status in the body is ignored.
    let mut body = created.clone();
    body["status"] = json!({"replicas": 5});
    body["spec"]["replicas"] = json!(2);
    let updated = api
        .update(&deployments(), Some("default"), body, &ME)
        .unwrap();
    assert_eq!(updated["spec"]["replicas"], 2);
    assert!(updated.get("status").is_none());
    // /status: the spec in the body is ignored.
    let mut body = updated.clone();
    body["status"] = json!({"replicas": 2});
    body["spec"]["replicas"] = json!(7);
    let updated = api
        .update_status(&deployments(), Some("default"), body, &ME)
        .unwrap();
    assert_eq!(updated["spec"]["replicas"], 2);
    assert_eq!(updated["status"]["replicas"], 2);
    // A merge patch on /status changes only the status.
    let patched = api
        .patch(
            &deployments(),
            Some("default"),
            "d",
            Patch::Merge(json!({"spec": {"replicas": 9}, "status": {"readyReplicas": 1}})),
            Subresource::Status,
            &ME,
        )
        .unwrap();
    assert_eq!(patched["spec"]["replicas"], 2);
    assert_eq!(patched["status"]["readyReplicas"], 1);
}

#[test]
fn every_patch_type() {
    let api = server();
    api.create(&pods(), Some("default"), pod("p"), &ME).unwrap();
    let ns = Some("default");
    let merged = api
        .patch(
            &pods(),
            ns,
            "p",
            Patch::Merge(json!({"metadata": {"labels": {"tier": "db", "app": null}}})),
            Subresource::Main,
            &ME,
        )
        .unwrap();
    assert_eq!(merged["metadata"]["labels"], json!({"tier": "db"}));

    let json_patched = api
        .patch(
            &pods(),
            ns,
            "p",
            Patch::Json(json!([
                {"op": "test", "path": "/metadata/labels/tier", "value": "db"},
                {"op": "add", "path": "/metadata/annotations", "value": {"a": "1"}}
            ])),
            Subresource::Main,
            &ME,
        )
        .unwrap();
    assert_eq!(json_patched["metadata"]["annotations"]["a"], "1");
    let err = api
        .patch(
            &pods(),
            ns,
            "p",
            Patch::Json(json!([{"op": "test", "path": "/metadata/labels/tier", "value": "web"}])),
            Subresource::Main,
            &ME,
        )
        .unwrap_err();
    assert_eq!(err.code, 422);

    let smp = api
        .patch(
            &pods(),
            ns,
            "p",
            Patch::StrategicMerge(
                json!({"spec": {"containers": [{"name": "sidecar", "image": "sidecar:1"}]}}),
            ),
            Subresource::Main,
            &ME,
        )
        .unwrap();
    let names: Vec<&str> = smp["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mysql", "sidecar"]);

    // A patch carrying a stale resourceVersion is a conflict.
    let err = api
        .patch(
            &pods(),
            ns,
            "p",
            Patch::Merge(json!({"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}})),
            Subresource::Main,
            &ME,
        )
        .unwrap_err();
    assert_eq!(err.code, 409);
    let err = api
        .patch(
            &pods(),
            ns,
            "missing",
            Patch::Merge(json!({})),
            Subresource::Main,
            &ME,
        )
        .unwrap_err();
    assert_eq!(err.code, 404);
}

#[test]
fn server_side_apply_conflicts_force_and_field_removal() {
    let api = server();
    let ns = Some("default");
    let apply = |manager: &str, force: bool, data: Value| {
        api.patch(
            &configmaps(),
            ns,
            "c",
            Patch::Apply {
                field_manager: manager.into(),
                force,
                object: cm("c", data),
            },
            Subresource::Main,
            &ME,
        )
    };
    let created = apply("alice", false, json!({"a": "1", "b": "2"})).unwrap();
    assert_eq!(created["data"], json!({"a": "1", "b": "2"}));
    let managers: Vec<&str> = created["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["alice"]);
    assert_eq!(
        created["metadata"]["managedFields"][0]["operation"],
        "Apply"
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );

    // Bob applying a different value of alice's field conflicts.
    let err = apply("bob", false, json!({"a": "9", "c": "3"})).unwrap_err();
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(err.causes.len(), 1);
    assert_eq!(err.causes[0].reason, "FieldManagerConflict");
    assert_eq!(err.causes[0].field, ".data.a");
    assert!(
        err.message.contains("conflict with \"alice\""),
        "{}",
        err.message
    );
    // The same value is shared ownership, not a conflict.
    let shared = apply("bob", false, json!({"a": "1", "c": "3"})).unwrap();
    assert_eq!(shared["data"], json!({"a": "1", "b": "2", "c": "3"}));
    // Force takes the field over.
    let forced = apply("bob", true, json!({"a": "9", "c": "3"})).unwrap();
    assert_eq!(forced["data"]["a"], "9");
    // Alice stops applying b (which only she owns): it is removed. She no longer owns a.
    let after = apply("alice", false, json!({})).unwrap();
    assert_eq!(after["data"], json!({"a": "9", "c": "3"}));
    // An update by another client takes ownership of what it changed.
    let mut obj = after.clone();
    obj["data"]["c"] = json!("4");
    let updated = api.update(&configmaps(), ns, obj, &OTHER).unwrap();
    let err = apply("bob", false, json!({"a": "9", "c": "3"})).unwrap_err();
    assert!(
        err.message.contains("conflict with \"other-controller\""),
        "{}",
        err.message
    );
    assert!(
        updated["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["manager"] == "other-controller" && m["operation"] == "Update")
    );
}

#[test]
fn apply_merges_containers_by_name() {
    let api = server();
    let ns = Some("default");
    api.create(&pods(), ns, pod("p"), &ME).unwrap();
    let applied = api
        .patch(
            &pods(),
            ns,
            "p",
            Patch::Apply {
                field_manager: "sidecar-injector".into(),
                force: false,
                object: json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                               "spec": {"containers": [{"name": "fence", "image": "fence:1"}]}}),
            },
            Subresource::Main,
            &ME,
        )
        .unwrap();
    let names: Vec<&str> = applied["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mysql", "fence"]);
}

#[test]
fn finalizers_hold_deletion_until_removed() {
    let api = server();
    let ns = Some("default");
    let mut obj = cm("c", json!({}));
    obj["metadata"]["finalizers"] = json!(["bloodraven.shipstream.io/cleanup"]);
    api.create(&configmaps(), ns, obj, &ME).unwrap();
    let mut watch = api
        .watch(
            &configmaps(),
            ns,
            &ListQuery::default(),
            Some(api.resource_version()),
        )
        .unwrap();
    let terminating = api.delete(&configmaps(), ns, "c", &ME).unwrap();
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        api.get(&configmaps(), ns, "c").unwrap()["metadata"]["deletionTimestamp"],
        "2025-01-01T00:00:00Z"
    );
    // Deleting again changes nothing; adding a finalizer is refused.
    api.delete(&configmaps(), ns, "c", &ME).unwrap();
    let err = api
        .patch(
            &configmaps(),
            ns,
            "c",
            Patch::Merge(
                json!({"metadata": {"finalizers": ["a", "bloodraven.shipstream.io/cleanup"]}}),
            ),
            Subresource::Main,
            &ME,
        )
        .unwrap_err();
    assert_eq!(err.code, 403, "{err}");
    api.patch(
        &configmaps(),
        ns,
        "c",
        Patch::Merge(json!({"metadata": {"finalizers": null}})),
        Subresource::Main,
        &ME,
    )
    .unwrap();
    assert_eq!(api.get(&configmaps(), ns, "c").unwrap_err().code, 404);
    let events = drain(&mut watch);
    assert_eq!(describe(&events), ["MODIFIED c", "DELETED c"]);
    if let WatchEvent::Deleted(last) = &events[1] {
        assert!(last["metadata"].get("finalizers").is_none(), "{last}");
    }
}

#[test]
fn garbage_collection_cascades_in_background_and_respects_other_owners() {
    let api = server();
    let ns = Some("default");
    let owner = api
        .create(&configmaps(), ns, cm("owner", json!({})), &ME)
        .unwrap();
    let other = api
        .create(&configmaps(), ns, cm("other", json!({})), &ME)
        .unwrap();
    let owner_ref = |o: &Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]});
    let mut child = pod("child");
    child["metadata"]["ownerReferences"] = json!([owner_ref(&owner)]);
    let child = api.create(&pods(), ns, child, &ME).unwrap();
    let mut grandchild = cm("grandchild", json!({}));
    grandchild["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Pod", "name": "child", "uid": child["metadata"]["uid"]}]);
    api.create(&configmaps(), ns, grandchild, &ME).unwrap();
    let mut shared = cm("shared", json!({}));
    shared["metadata"]["ownerReferences"] = json!([owner_ref(&owner), owner_ref(&other)]);
    api.create(&configmaps(), ns, shared, &ME).unwrap();

    api.delete(&configmaps(), ns, "owner", &ME).unwrap();
    assert_eq!(api.get(&pods(), ns, "child").unwrap_err().code, 404);
    assert_eq!(
        api.get(&configmaps(), ns, "grandchild").unwrap_err().code,
        404
    );
    let shared = api.get(&configmaps(), ns, "shared").unwrap();
    assert_eq!(
        shared["metadata"]["ownerReferences"],
        json!([owner_ref(&other)])
    );

    // Orphan leaves the dependent without the reference.
    let mut orphan = cm("orphan", json!({}));
    orphan["metadata"]["ownerReferences"] = json!([owner_ref(&other)]);
    api.create(&configmaps(), ns, orphan, &ME).unwrap();
    let opts = DeleteOptions {
        propagation: Propagation::Orphan,
        ..DeleteOptions::default()
    };
    let (_, gone) = api
        .delete_with(&configmaps(), ns, "other", &opts, &ME)
        .unwrap();
    assert!(gone);
    assert!(
        api.get(&configmaps(), ns, "orphan").unwrap()["metadata"]
            .get("ownerReferences")
            .is_none()
    );
}

#[test]
fn foreground_deletion_waits_for_dependents() {
    let api = server();
    let ns = Some("default");
    let owner = api
        .create(&configmaps(), ns, cm("owner", json!({})), &ME)
        .unwrap();
    let mut child = cm("child", json!({}));
    child["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}]);
    child["metadata"]["finalizers"] = json!(["hold"]);
    api.create(&configmaps(), ns, child, &ME).unwrap();
    let opts = DeleteOptions {
        propagation: Propagation::Foreground,
        ..DeleteOptions::default()
    };
    let (obj, gone) = api
        .delete_with(&configmaps(), ns, "owner", &opts, &ME)
        .unwrap();
    assert!(!gone);
    assert_eq!(obj["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    assert!(
        api.get(&configmaps(), ns, "child").unwrap()["metadata"]["deletionTimestamp"].is_string()
    );
    api.patch(
        &configmaps(),
        ns,
        "child",
        Patch::Merge(json!({"metadata": {"finalizers": null}})),
        Subresource::Main,
        &ME,
    )
    .unwrap();
    assert_eq!(api.get(&configmaps(), ns, "owner").unwrap_err().code, 404);
}

#[test]
fn namespace_deletion_empties_and_removes_it() {
    let api = server();
    let namespaces = ResourceKey::core("v1", "namespaces");
    api.create(
        &namespaces,
        None,
        json!({"metadata": {"name": "team"}}),
        &ME,
    )
    .unwrap();
    api.create(&pods(), Some("team"), pod("a"), &ME).unwrap();
    let mut held = cm("held", json!({}));
    held["metadata"]["finalizers"] = json!(["hold"]);
    api.create(&configmaps(), Some("team"), held, &ME).unwrap();
    let (ns_obj, gone) = api
        .delete_with(&namespaces, None, "team", &DeleteOptions::default(), &ME)
        .unwrap();
    assert!(!gone);
    assert_eq!(ns_obj["status"]["phase"], "Terminating");
    assert_eq!(api.get(&pods(), Some("team"), "a").unwrap_err().code, 404);
    let err = api
        .create(&pods(), Some("team"), pod("b"), &ME)
        .unwrap_err();
    assert_eq!(err.code, 403);
    api.patch(
        &configmaps(),
        Some("team"),
        "held",
        Patch::Merge(json!({"metadata": {"finalizers": null}})),
        Subresource::Main,
        &ME,
    )
    .unwrap();
    assert_eq!(api.get(&namespaces, None, "team").unwrap_err().code, 404);
}

#[test]
fn watch_replays_history_and_410_after_compaction() {
    let api = ApiServer::with_config(
        clock(),
        ServerConfig {
            history_limit: 5,
            ..ServerConfig::default()
        },
    );
    let ns = Some("default");
    let start = api.resource_version();
    let mut live = api
        .watch(&configmaps(), ns, &ListQuery::default(), Some(start))
        .unwrap();
    api.create(&configmaps(), ns, cm("a", json!({})), &ME)
        .unwrap();
    api.create(&configmaps(), ns, cm("b", json!({})), &ME)
        .unwrap();
    api.patch(
        &configmaps(),
        ns,
        "a",
        Patch::Merge(json!({"data": {"x": "1"}})),
        Subresource::Main,
        &ME,
    )
    .unwrap();
    api.delete(&configmaps(), ns, "b", &ME).unwrap();
    assert_eq!(
        describe(&drain(&mut live)),
        ["ADDED a", "ADDED b", "MODIFIED a", "DELETED b"]
    );
    // Replay from the start: the same four events.
    let mut replay = api
        .watch(&configmaps(), ns, &ListQuery::default(), Some(start))
        .unwrap();
    assert_eq!(
        describe(&drain(&mut replay)),
        ["ADDED a", "ADDED b", "MODIFIED a", "DELETED b"]
    );
    // No rv: the current state as ADDED.
    let mut fresh = api
        .watch(&configmaps(), ns, &ListQuery::default(), None)
        .unwrap();
    assert_eq!(describe(&drain(&mut fresh)), ["ADDED a"]);
    // Push the start out of the 5-entry window.
    for i in 0..5 {
        api.create(&configmaps(), ns, cm(&format!("n{i}"), json!({})), &ME)
            .unwrap();
    }
    let err = api
        .watch(&configmaps(), ns, &ListQuery::default(), Some(start))
        .unwrap_err();
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
    // Re-list and watch from the list's rv.
    let list = api.list(&configmaps(), ns, &ListQuery::default()).unwrap();
    assert_eq!(list.items.len(), 6);
    let mut rewatch = api
        .watch(
            &configmaps(),
            ns,
            &ListQuery::default(),
            Some(list.resource_version),
        )
        .unwrap();
    api.create(&configmaps(), ns, cm("z", json!({})), &ME)
        .unwrap();
    assert_eq!(describe(&drain(&mut rewatch)), ["ADDED z"]);
    api.compact();
    assert_eq!(
        api.watch(
            &configmaps(),
            ns,
            &ListQuery::default(),
            Some(list.resource_version)
        )
        .unwrap_err()
        .code,
        410
    );
}

#[test]
fn watch_with_selector_sees_objects_enter_and_leave() {
    let api = server();
    let ns = Some("default");
    let q = ListQuery {
        label_selector: Some("role=primary".into()),
        field_selector: None,
    };
    let mut watch = api
        .watch(&pods(), ns, &q, Some(api.resource_version()))
        .unwrap();
    api.create(&pods(), ns, pod("p"), &ME).unwrap();
    api.patch(
        &pods(),
        ns,
        "p",
        Patch::Merge(json!({"metadata": {"labels": {"role": "primary"}}})),
        Subresource::Main,
        &ME,
    )
    .unwrap();
    api.patch(
        &pods(),
        ns,
        "p",
        Patch::Merge(json!({"metadata": {"annotations": {"x": "1"}}})),
        Subresource::Main,
        &ME,
    )
    .unwrap();
    api.patch(
        &pods(),
        ns,
        "p",
        Patch::Merge(json!({"metadata": {"labels": {"role": "replica"}}})),
        Subresource::Main,
        &ME,
    )
    .unwrap();
    assert_eq!(
        describe(&drain(&mut watch)),
        ["ADDED p", "MODIFIED p", "DELETED p"]
    );
}

#[test]
fn bookmarks_are_ordered_after_queued_events() {
    let api = server();
    let ns = Some("default");
    let watch = api
        .watch_with(
            &configmaps(),
            ns,
            &ListQuery::default(),
            Some(api.resource_version()),
            &ME,
        )
        .unwrap();
    let mut events = watch.events;
    let created = api
        .create(&configmaps(), ns, cm("a", json!({})), &ME)
        .unwrap();
    api.send_bookmark(watch.id);
    let got = drain(&mut events);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], WatchEvent::Bookmark(rv(&created)));
}

#[test]
fn label_and_field_selectors_on_list() {
    let api = server();
    for (name, node, site) in [("a", "n1", "iad"), ("b", "n2", "pdx"), ("c", "n1", "pdx")] {
        let mut p = pod(name);
        p["spec"]["nodeName"] = json!(node);
        p["metadata"]["labels"]["site"] = json!(site);
        api.create(&pods(), Some("default"), p, &ME).unwrap();
    }
    let names = |label: Option<&str>, field: Option<&str>| -> Vec<String> {
        let q = ListQuery {
            label_selector: label.map(Into::into),
            field_selector: field.map(Into::into),
        };
        api.list(&pods(), None, &q)
            .unwrap()
            .items
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(Some("site in (pdx)"), None), ["b", "c"]);
    assert_eq!(names(Some("site notin (pdx)"), None), ["a"]);
    assert_eq!(
        names(Some("site,!canary"), Some("spec.nodeName=n1")),
        ["a", "c"]
    );
    assert_eq!(
        names(None, Some("metadata.name!=a,spec.nodeName=n1")),
        ["c"]
    );
    let err = api
        .list(
            &pods(),
            None,
            &ListQuery {
                label_selector: None,
                field_selector: Some("spec.image=x".into()),
            },
        )
        .unwrap_err();
    assert_eq!(err.code, 400);
}

#[test]
fn events_are_shared_between_core_and_events_k8s_io() {
    let api = server();
    let events_v1 = ResourceKey::new("events.k8s.io", "v1", "events");
    let core = ResourceKey::core("v1", "events");
    api.create(
        &events_v1,
        Some("default"),
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
               "regarding": {"kind": "MysqlFailoverGroup", "name": "playground", "namespace": "default"},
               "reason": "FailoverStarted", "note": "site iad unreachable", "type": "Warning",
               "eventTime": "2025-01-01T00:00:00.000000Z", "reportingController": "bloodraven", "reportingInstance": "op-0", "action": "Failover"}),
        &ME,
    )
    .unwrap();
    let q = ListQuery {
        label_selector: None,
        field_selector: Some("involvedObject.name=playground,reason=FailoverStarted".into()),
    };
    let listed = api.list(&core, Some("default"), &q).unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0]["message"], "site iad unreachable");
    assert_eq!(listed.items[0]["apiVersion"], "v1");
    let v1 = api.get(&events_v1, Some("default"), "e1").unwrap();
    assert_eq!(v1["note"], "site iad unreachable");
    assert_eq!(v1["regarding"]["name"], "playground");
}

#[test]
fn request_counts_by_verb_resource_and_user_agent() {
    let api = server();
    api.create(&configmaps(), Some("default"), cm("c", json!({})), &ME)
        .unwrap();
    api.get_as(&configmaps(), Some("default"), "c", &ME)
        .unwrap();
    api.get_as(&configmaps(), Some("default"), "c", &ME)
        .unwrap();
    api.patch(
        &deployments(),
        Some("default"),
        "x",
        Patch::Merge(json!({})),
        Subresource::Status,
        &OTHER,
    )
    .unwrap_err();
    let counts = api.request_counts();
    let get = |verb: &str, resource: &str, ua: &str| {
        counts
            .iter()
            .find(|(k, _)| k.verb == verb && k.resource == resource && k.user_agent == ua)
            .map(|(_, v)| *v)
    };
    assert_eq!(get("create", "configmaps", "conformance/1.0"), Some(1));
    assert_eq!(get("get", "configmaps", "conformance/1.0"), Some(2));
    assert_eq!(
        get("patch", "deployments.apps/status", "other-controller/2.0"),
        Some(1)
    );
}

#[test]
fn secret_string_data_is_folded_into_data() {
    let api = server();
    let secrets = ResourceKey::core("v1", "secrets");
    let created = api
        .create(&secrets, Some("default"), json!({"metadata": {"name": "s"}, "stringData": {"root-password": "playground-root"}, "data": {"x": "eA=="}}), &ME)
        .unwrap();
    assert_eq!(
        created["data"],
        json!({"root-password": "cGxheWdyb3VuZC1yb290", "x": "eA=="})
    );
    assert!(created.get("stringData").is_none());
}

#[test]
fn storage_version_moves_only_with_writes_to_that_kind() {
    let api = server();
    assert_eq!(api.storage_version(&configmaps()).unwrap(), 0);
    let created = api
        .create(&configmaps(), Some("default"), cm("c", json!({})), &ME)
        .unwrap();
    let after_create = api.storage_version(&configmaps()).unwrap();
    assert_eq!(
        after_create.to_string(),
        created["metadata"]["resourceVersion"].as_str().unwrap()
    );
    // A write to another kind moves the store's resourceVersion, not this kind's.
    api.create(
        &ResourceKey::core("v1", "secrets"),
        Some("default"),
        json!({"metadata": {"name": "s"}}),
        &ME,
    )
    .unwrap();
    assert!(api.resource_version() > after_create);
    assert_eq!(api.storage_version(&configmaps()).unwrap(), after_create);
    // A no-op patch is no write.
    api.patch(
        &configmaps(),
        Some("default"),
        "c",
        Patch::Merge(json!({})),
        Subresource::Main,
        &ME,
    )
    .unwrap();
    assert_eq!(api.storage_version(&configmaps()).unwrap(), after_create);
    api.delete(&configmaps(), Some("default"), "c", &ME)
        .unwrap();
    assert!(api.storage_version(&configmaps()).unwrap() > after_create);
    assert!(
        api.storage_version(&ResourceKey::core("v1", "nothings"))
            .is_err()
    );
}
