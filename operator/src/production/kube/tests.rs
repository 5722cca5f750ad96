use serde_json::json;

use super::*;
use crate::children::tests::{ctx, playground};
use crate::children::{self};
use crate::production::fake_api::FakeApi;

/// What an API server returns after applying `body`: our fields plus defaults, status,
/// managedFields and a resourceVersion.
fn as_stored(mut body: Value) -> Value {
    body["metadata"]["resourceVersion"] = json!("17");
    body["metadata"]["uid"] = json!("child-uid");
    body["metadata"]["managedFields"] = json!([{"manager": "bloodraven", "operation": "Apply"}]);
    body["status"] = json!({"observedGeneration": 1});
    if body["kind"] == "StatefulSet" {
        body["spec"]["podManagementPolicy"] = json!("OrderedReady");
        body["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        body["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
            json!("/dev/termination-log");
    }
    if body["kind"] == "Service" {
        body["spec"]["sessionAffinity"] = json!("None");
    }
    body
}

fn objects(group: &MysqlFailoverGroup) -> Vec<DesiredObject> {
    children::build(group, Some("iad"), &ctx())
        .unwrap()
        .objects()
        .unwrap()
}

#[tokio::test]
async fn an_unchanged_group_makes_zero_api_writes() {
    // First pass against an empty cache: one server-side apply per child.
    let api = FakeApi::echo();
    let desired = objects(&playground());
    let report = apply_children(&api.client(), &desired, &MapCache::default())
        .await
        .unwrap();
    assert_eq!(report.applied.len(), desired.len());
    let first = api.requests();
    assert_eq!(first.len(), desired.len());
    for request in &first {
        assert_eq!(request.method, "PATCH");
        assert!(
            request.query.contains("fieldManager=bloodraven")
                && request.query.contains("force=true"),
            "{}",
            request.query
        );
    }
    assert_eq!(
        first[6].path,
        "/apis/apps/v1/namespaces/bp/statefulsets/playground-mysql-iad"
    );

    // The cache now holds what the server stored: the same group makes no request.
    let mut cache = MapCache::default();
    for request in &first {
        cache.insert(as_stored(request.body.clone()));
    }
    let quiet = FakeApi::with(|req| panic!("unexpected API request {req:?}"));
    let report = apply_children(&quiet.client(), &objects(&playground()), &cache)
        .await
        .unwrap();
    assert_eq!(
        report,
        ApplyReport {
            applied: vec![],
            unchanged: desired.len()
        }
    );
    assert!(quiet.requests().is_empty());

    // A new image rewrites exactly the two StatefulSets.
    let mut group = playground();
    group.spec.mysql.image = "mysql:8.4.3".into();
    let api = FakeApi::echo();
    let report = apply_children(&api.client(), &objects(&group), &cache)
        .await
        .unwrap();
    assert_eq!(
        report.applied,
        vec![
            "StatefulSet bp/playground-mysql-iad".to_string(),
            "StatefulSet bp/playground-mysql-pdx".to_string()
        ]
    );
}

#[test]
fn a_field_we_stopped_setting_triggers_a_write_through_the_hash() {
    // The cache still holds the old field (server-side apply would remove it), so only
    // the hash tells the two apart.
    let mut group = playground();
    group.spec.mysql.storage.storage_class_name = Some("fast".into());
    let before = objects(&group);
    let sts = before
        .iter()
        .find(|o| o.resource.kind == "StatefulSet")
        .unwrap();
    let stored = as_stored(with_desired_hash(sts));
    let after = objects(&playground());
    let sts_after = after
        .iter()
        .find(|o| o.resource.kind == "StatefulSet")
        .unwrap();
    assert!(
        is_subset(&sts_after.body, &stored),
        "the plain fields still match"
    );
    assert!(apply_needed(sts_after, Some(&stored)).is_some());
    assert!(apply_needed(sts, Some(&stored)).is_none());
}

#[test]
fn a_manual_edit_of_a_managed_field_is_taken_back() {
    let desired = objects(&playground());
    let svc = &desired[desired.len() - 2];
    assert_eq!(svc.name, "playground-mysql-primary");
    let mut stored = as_stored(with_desired_hash(svc));
    stored["spec"]["selector"]["shipstream.io/role"] = json!("replica");
    assert!(apply_needed(svc, Some(&stored)).is_some());
}

#[test]
fn subset_ignores_server_fields_but_not_list_changes() {
    assert!(is_subset(&json!({"a": 1}), &json!({"a": 1.0, "b": 2})));
    assert!(!is_subset(&json!({"a": [1, 2]}), &json!({"a": [1]})));
    assert!(!is_subset(&json!({"a": [1]}), &json!({"a": [1, 2]})));
    assert!(is_subset(
        &json!({"a": [{"x": 1}]}),
        &json!({"a": [{"x": 1, "y": 2}]})
    ));
    assert!(!is_subset(&json!({"a": "x"}), &json!({})));
}

#[test]
fn merge_patch_sets_changes_and_nulls_removed_fields() {
    let old = json!({"activeSite": "iad", "health": "Healthy",
                     "plannedFailover": {"target": "pdx", "phase": "Succeeded"}});
    let new = json!({"activeSite": "pdx", "health": "Healthy"});
    assert_eq!(
        merge_patch(&old, &new),
        json!({"activeSite": "pdx", "plannedFailover": null})
    );
    assert_eq!(merge_patch(&new, &new), json!({}));
    assert_eq!(
        merge_patch(&json!({"a": {"b": 1, "c": 2}}), &json!({"a": {"b": 1}})),
        json!({"a": {"c": null}})
    );
}

#[tokio::test]
async fn status_is_written_only_when_it_changed_and_a_failed_write_is_counted() {
    let metrics = Metrics::new();
    let mut group = playground();
    let status = MysqlFailoverGroupStatus {
        active_site: Some("iad".into()),
        ..Default::default()
    };
    let stored = serde_json::to_value(playground()).unwrap();
    let api = FakeApi::with(move |_| (200, stored.clone()));
    assert!(
        patch_status(&api.client(), &group, &status, &metrics)
            .await
            .unwrap()
            .is_some()
    );
    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "PATCH");
    assert_eq!(
        requests[0].path,
        "/apis/bloodraven.shipstream.io/v1alpha1/namespaces/bp/mysqlfailovergroups/playground/status"
    );
    assert_eq!(requests[0].body, json!({"status": {"activeSite": "iad"}}));

    group.status = Some(status.clone());
    let quiet = FakeApi::with(|req| panic!("unexpected API request {req:?}"));
    assert!(
        patch_status(&quiet.client(), &group, &status, &metrics)
            .await
            .unwrap()
            .is_none()
    );

    let failing = FakeApi::with(|_| (409, crate::production::fake_api::conflict()));
    let err = patch_status(
        &failing.client(),
        &group,
        &MysqlFailoverGroupStatus::default(),
        &metrics,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("bp/playground"), "{err}");
    assert!(
        metrics.render().contains(
            "bloodraven_status_writes_dropped_total{namespace=\"bp\",group=\"playground\"} 1"
        ),
        "{}",
        metrics.render()
    );
}

#[tokio::test]
async fn pod_role_is_set_by_merge_patch_only_when_it_differs() {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "playground-mysql-iad-0", "namespace": "bp",
                     "labels": {"shipstream.io/role": "replica"}}
    }))
    .unwrap();
    assert_eq!(role_label_patch(&pod, "replica"), None);
    let api = FakeApi::echo();
    assert!(set_pod_role(&api.client(), &pod, "primary").await.unwrap());
    let requests = api.requests();
    assert_eq!(
        requests[0].path,
        "/api/v1/namespaces/bp/pods/playground-mysql-iad-0"
    );
    assert_eq!(
        requests[0].body,
        json!({"metadata": {"labels": {"shipstream.io/role": "primary"}}})
    );
}
