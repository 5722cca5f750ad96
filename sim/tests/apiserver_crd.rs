#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! CRDs registered at runtime: Established status, structural-schema validation with
//! Kubernetes-shaped 422 causes, pruning, defaults, status subresource, printer columns
//! and removal.

use std::sync::Arc;

use bloodraven::seams::Clock;
use bloodraven_sim::apiserver::{ApiServer, Caller, ListQuery, Patch, ResourceKey, Subresource};
use serde_json::{Value, json};

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> jiff::Timestamp {
        "2025-01-01T00:00:00Z".parse().unwrap()
    }
}

const ME: Caller<'static> = Caller {
    user_agent: "crd-test",
};

fn crds_key() -> ResourceKey {
    ResourceKey::new("apiextensions.k8s.io", "v1", "customresourcedefinitions")
}
fn groups() -> ResourceKey {
    ResourceKey::new(
        "bloodraven.shipstream.io",
        "v1alpha1",
        "mysqlfailovergroups",
    )
}

fn server_with_crds() -> ApiServer {
    let api = ApiServer::new(Arc::new(FixedClock));
    for crd in bloodraven::api::crds() {
        let created = api
            .create(&crds_key(), None, serde_json::to_value(&crd).unwrap(), &ME)
            .unwrap();
        let conditions = created["status"]["conditions"].as_array().unwrap();
        assert!(
            conditions
                .iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True"),
            "{created}"
        );
    }
    api
}

fn group(name: &str) -> Value {
    json!({
        "apiVersion": "bloodraven.shipstream.io/v1alpha1",
        "kind": "MysqlFailoverGroup",
        "metadata": {"name": name},
        "spec": {
            "sites": [
                {"name": "iad", "nodeSelector": {"topology.kubernetes.io/zone": "zone-iad"}},
                {"name": "pdx", "nodeSelector": {"topology.kubernetes.io/zone": "zone-pdx"}}
            ],
            "mysql": {"image": "mysql:8.4", "credentialsSecret": "creds"}
        }
    })
}

#[test]
fn crd_registers_a_resource_with_its_names() {
    let api = server_with_crds();
    let info = api.resource(&groups()).expect("registered");
    assert_eq!(info.kind, "MysqlFailoverGroup");
    assert!(info.namespaced);
    assert_eq!(info.short_names, ["mfg"]);
    assert!(info.status_subresource);
    assert!(
        info.printer_columns
            .iter()
            .any(|c| c.name == "Active" && c.json_path == ".status.activeSite")
    );
}

#[test]
fn valid_object_is_pruned_and_defaulted() {
    let api = server_with_crds();
    let mut obj = group("playground");
    obj["spec"]["bogus"] = json!("dropped");
    obj["spec"]["mysql"]["alsoBogus"] = json!(1);
    let created = api.create(&groups(), Some("default"), obj, &ME).unwrap();
    assert!(created["spec"].get("bogus").is_none(), "{created}");
    assert!(created["spec"]["mysql"].get("alsoBogus").is_none());
    // A schema default (the MySQL port) was applied.
    assert_eq!(
        created["spec"]["mysql"]["port"], 3306,
        "{}",
        created["spec"]["mysql"]
    );
    assert_eq!(created["apiVersion"], "bloodraven.shipstream.io/v1alpha1");
}

#[test]
fn invalid_object_is_422_with_field_causes() {
    let api = server_with_crds();
    let mut obj = group("broken");
    obj["spec"]["sites"][1]["name"] = json!("PDX!");
    obj["spec"]["mysql"]
        .as_object_mut()
        .unwrap()
        .remove("credentialsSecret");
    obj["spec"]["mysql"]["port"] = json!(70000);
    let err = api
        .create(&groups(), Some("default"), obj, &ME)
        .unwrap_err();
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let fields: Vec<(&str, &str)> = err
        .causes
        .iter()
        .map(|c| (c.field.as_str(), c.reason.as_str()))
        .collect();
    assert!(
        fields.contains(&("spec.sites[1].name", "FieldValueInvalid")),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("spec.mysql.credentialsSecret", "FieldValueRequired")),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("spec.mysql.port", "FieldValueInvalid")),
        "{fields:?}"
    );
    assert!(
        err.message
            .starts_with("MysqlFailoverGroup.bloodraven.shipstream.io \"broken\" is invalid: "),
        "{}",
        err.message
    );
    let status = err.to_status();
    assert_eq!(status["details"]["kind"], "MysqlFailoverGroup");
    assert_eq!(
        status["details"]["causes"].as_array().unwrap().len(),
        err.causes.len()
    );

    // An update is validated too.
    let created = api
        .create(&groups(), Some("default"), group("ok"), &ME)
        .unwrap();
    let mut bad = created.clone();
    bad["spec"]["sites"] = json!([]);
    let err = api
        .update(&groups(), Some("default"), bad, &ME)
        .unwrap_err();
    assert_eq!(err.code, 422);
    assert!(
        err.causes.iter().any(|c| c.field == "spec.sites"),
        "{:?}",
        err.causes
    );
}

#[test]
fn custom_status_subresource_and_patch_types() {
    let api = server_with_crds();
    let ns = Some("default");
    let mut obj = group("g");
    obj["status"] = json!({"activeSite": "iad"});
    let created = api.create(&groups(), ns, obj, &ME).unwrap();
    assert!(created.get("status").is_none());
    let status = api
        .patch(
            &groups(),
            ns,
            "g",
            Patch::Merge(json!({"status": {"activeSite": "iad", "health": "Healthy"}})),
            Subresource::Status,
            &ME,
        )
        .unwrap();
    assert_eq!(status["status"]["health"], "Healthy");
    assert_eq!(status["metadata"]["generation"], 1);
    let invalid_status = api
        .patch(
            &groups(),
            ns,
            "g",
            Patch::Merge(json!({"status": {"health": "Confused"}})),
            Subresource::Status,
            &ME,
        )
        .unwrap_err();
    assert_eq!(invalid_status.code, 422, "{invalid_status}");
    let err = api
        .patch(
            &groups(),
            ns,
            "g",
            Patch::StrategicMerge(json!({"spec": {}})),
            Subresource::Main,
            &ME,
        )
        .unwrap_err();
    assert_eq!(err.code, 415);
    let annotated = api
        .patch(&groups(), ns, "g", Patch::Merge(json!({"metadata": {"annotations": {"bloodraven.shipstream.io/planned-failover": "pdx"}}})), Subresource::Main, &ME)
        .unwrap();
    assert_eq!(annotated["metadata"]["generation"], 1);
    assert_eq!(annotated["status"]["health"], "Healthy");
}

#[test]
fn apply_on_custom_resource_uses_schema_list_keys() {
    let api = server_with_crds();
    let ns = Some("default");
    api.create(&groups(), ns, group("g"), &ME).unwrap();
    let applied = api
        .patch(
            &groups(),
            ns,
            "g",
            Patch::Apply {
                field_manager: "tuner".into(),
                force: false,
                object: json!({"apiVersion": "bloodraven.shipstream.io/v1alpha1", "kind": "MysqlFailoverGroup",
                               "metadata": {"name": "g"},
                               "spec": {"sites": [{"name": "pdx", "nodeSelector": {"extra": "label"}}]}}),
            },
            Subresource::Main,
            &ME,
        )
        .unwrap();
    // sites is a list-map keyed by name: pdx is merged, iad kept.
    let sites = applied["spec"]["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 2);
    assert_eq!(sites[1]["nodeSelector"]["extra"], "label");
    assert_eq!(
        sites[1]["nodeSelector"]["topology.kubernetes.io/zone"],
        "zone-pdx"
    );
}

#[test]
fn deleting_the_crd_removes_its_objects_and_resource() {
    let api = server_with_crds();
    api.create(&groups(), Some("default"), group("g"), &ME)
        .unwrap();
    api.delete(
        &crds_key(),
        None,
        "mysqlfailovergroups.bloodraven.shipstream.io",
        &ME,
    )
    .unwrap();
    assert!(api.resource(&groups()).is_none());
    assert_eq!(
        api.list(&groups(), None, &ListQuery::default())
            .unwrap_err()
            .code,
        404
    );
}

#[test]
fn invalid_definition_is_rejected() {
    let api = ApiServer::new(Arc::new(FixedClock));
    let err = api
        .create(&crds_key(), None, json!({"metadata": {"name": "things.example.com"}, "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"}, "scope": "Everywhere", "versions": []}}), &ME)
        .unwrap_err();
    assert_eq!(err.code, 422);
    let fields: Vec<&str> = err.causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["metadata.name", "spec.scope", "spec.versions"]);
}
