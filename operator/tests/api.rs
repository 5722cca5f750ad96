//! The API types against their generated CRDs: the committed chart CRDs are current,
//! the example manifest validates and round-trips, and defaults agree everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bloodraven::api::*;
use bloodraven::schema::{CrdSchema, UnknownFields, bloodraven_schemas, yaml};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn example_documents() -> Vec<yaml::Document> {
    let text = std::fs::read_to_string(format!("{WORKSPACE}/examples/playground.yaml")).unwrap();
    yaml::load_documents(&text).unwrap()
}

fn group_schema() -> CrdSchema {
    bloodraven_schemas()
        .unwrap()
        .into_iter()
        .find(|s| s.kind == "MysqlFailoverGroup")
        .unwrap()
}

#[test]
fn the_committed_chart_crds_are_current() {
    let committed = std::fs::read_to_string(format!(
        "{WORKSPACE}/charts/bloodraven/crds/bloodraven-crds.yaml"
    ))
    .expect("charts/bloodraven/crds/bloodraven-crds.yaml is missing: run `make generate`");
    assert!(
        committed == crds_yaml().unwrap(),
        "charts/bloodraven/crds/bloodraven-crds.yaml is stale: run `make generate`"
    );
}

#[test]
fn the_crd_stream_parses_back_into_the_same_crds() {
    let parsed: Vec<CustomResourceDefinition> =
        serde_saphyr::from_multiple(&crds_yaml().unwrap()).unwrap();
    assert_eq!(parsed, crds());
    let names: Vec<_> = parsed
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "mysqlfailovergroups.bloodraven.shipstream.io",
            "mysqlbackups.bloodraven.shipstream.io",
            "mysqlbackupverifications.bloodraven.shipstream.io",
            "mysqlrestores.bloodraven.shipstream.io",
            "dnsendpoints.externaldns.k8s.io",
        ]
    );
}

#[test]
fn the_group_crd_has_status_short_name_and_printer_columns() {
    let crd = serde_json::to_value(MysqlFailoverGroup::crd_for_tests()).unwrap();
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["mfg"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<(String, i64)> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let default_columns: Vec<_> = columns
        .iter()
        .filter(|c| c.1 == 0)
        .map(|c| c.0.as_str())
        .collect();
    assert_eq!(default_columns, ["Active", "Health", "Planned", "Age"]);
    let wide: Vec<_> = columns
        .iter()
        .filter(|c| c.1 == 1)
        .map(|c| c.0.as_str())
        .collect();
    assert_eq!(wide, ["Site-1", "State-1", "Site-2", "State-2"]);
}

trait CrdForTests {
    fn crd_for_tests() -> CustomResourceDefinition;
}
impl<T: kube::CustomResourceExt> CrdForTests for T {
    fn crd_for_tests() -> CustomResourceDefinition {
        T::crd()
    }
}

#[test]
fn the_playground_example_validates() {
    let schemas = bloodraven_schemas().unwrap();
    let path = format!("{WORKSPACE}/examples/playground.yaml");
    let report = bloodraven::validate::validate_file(&path, &schemas).unwrap();
    assert_eq!(report.problem_count(), 0, "{report}");
    assert_eq!(report.documents.len(), 3);
}

#[test]
fn the_playground_example_round_trips_through_the_rust_types() {
    let docs = example_documents();
    let group_doc = docs
        .iter()
        .find(|d| d.value["kind"] == "MysqlFailoverGroup")
        .unwrap();
    let group: MysqlFailoverGroup = serde_json::from_value(group_doc.value.clone()).unwrap();
    assert_eq!(
        group.metadata.namespace.as_deref(),
        Some("bloodraven-playground")
    );
    assert_eq!(group.metadata.name.as_deref(), Some("playground"));
    let sites: Vec<_> = group
        .spec
        .sites
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.node_selector["topology.kubernetes.io/zone"].as_str(),
            )
        })
        .collect();
    assert_eq!(sites, [("iad", "zone-iad"), ("pdx", "zone-pdx")]);
    assert_eq!(group.spec.failover.lease_duration, "5s".parse().unwrap());

    // Rust -> JSON -> Rust is lossless, and the serialised form still validates.
    let back = serde_json::to_value(&group).unwrap();
    let again: MysqlFailoverGroup = serde_json::from_value(back.clone()).unwrap();
    assert_eq!(again.spec, group.spec);
    assert_eq!(again.metadata, group.metadata);
    assert_eq!(
        group_schema().validate(&back, UnknownFields::Reject),
        vec![]
    );
}

#[test]
fn schema_defaults_and_serde_defaults_agree() {
    let minimal = json!({
        "apiVersion": "bloodraven.shipstream.io/v1alpha1", "kind": "MysqlFailoverGroup",
        "metadata": {"name": "g"},
        "spec": {
            "sites": [{"name": "a", "nodeSelector": {"z": "a"}}, {"name": "b", "nodeSelector": {"z": "b"}}],
            "mysql": {"credentialsSecret": "s"},
            "failover": {}
        }
    });
    // What the API server stores (schema defaults) must deserialise to what the operator
    // assumes when a field is absent (serde defaults).
    let by_schema: MysqlFailoverGroup =
        serde_json::from_value(group_schema().with_defaults(&minimal)).unwrap();
    let by_serde: MysqlFailoverGroup = serde_json::from_value(minimal).unwrap();
    assert_eq!(by_schema.spec, by_serde.spec);
    let f = &by_serde.spec.failover;
    assert_eq!(f, &FailoverSpec::default());
    assert!(f.automatic);
    assert_eq!(
        [
            f.probe_interval,
            f.detection_window,
            f.lease_duration,
            f.lease_renew_interval,
            f.lease_safety_margin,
            f.relay_log_drain_timeout,
            f.max_lag_for_planned_failover
        ]
        .map(|d| d.to_string()),
        ["1s", "3s", "5s", "1s", "1s", "10s", "5s"]
    );
    assert_eq!(by_serde.spec.mysql.durability, Durability::Async);
    assert_eq!(by_serde.spec.mysql.flavor, MysqlFlavor::Mysql);
    assert_eq!(by_serde.spec.mysql.port, 3306);
}

#[test]
fn partial_status_patches_deserialise() {
    let status: MysqlFailoverGroupStatus =
        serde_json::from_value(json!({"activeSite": "iad"})).unwrap();
    assert_eq!(status.active_site.as_deref(), Some("iad"));
    let status: MysqlFailoverGroupStatus = serde_json::from_value(json!({})).unwrap();
    assert_eq!(status, MysqlFailoverGroupStatus::default());
    let site: SiteStatus = serde_json::from_value(json!({"name": "pdx", "state": "read-only", "recoveryState": "RecoveryPending",
        "divergentGtid": "61553741-443a-11f1-9b2c-0242ac120002:1-3", "divergentTransactionCount": 3})).unwrap();
    assert_eq!(site.state, Some(SiteState::ReadOnly));
    assert_eq!(site.recovery_state, Some(RecoveryState::RecoveryPending));
    assert_eq!(serde_json::to_value(&site).unwrap()["state"], "read-only");
}

#[test]
fn a_restore_needs_the_group_name_as_confirmation() {
    let schema = bloodraven_schemas()
        .unwrap()
        .into_iter()
        .find(|s| s.kind == "MysqlRestore")
        .unwrap();
    let restore = |confirm: &str| {
        json!({"apiVersion": "bloodraven.shipstream.io/v1alpha1", "kind": "MysqlRestore",
        "metadata": {"name": "r"}, "spec": {"group": "orders", "backup": "b1", "confirm": confirm}})
    };
    assert_eq!(
        schema.validate(&restore("orders"), UnknownFields::Reject),
        vec![]
    );
    let errors = schema.validate(&restore("yes"), UnknownFields::Reject);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .to_string()
            .contains("set spec.confirm to the group's name"),
        "{}",
        errors[0]
    );
}

#[test]
fn dns_endpoint_uses_external_dns_field_names() {
    let endpoint = DNSEndpoint::new(
        "playground",
        DNSEndpointSpec {
            endpoints: vec![Endpoint {
                dns_name: "mysql.example.internal".into(),
                targets: vec!["iad.example.internal".into()],
                record_type: Some("CNAME".into()),
                record_ttl: Some(30),
                set_identifier: Some("playground".into()),
                provider_specific: vec![ProviderSpecificProperty {
                    name: "alias".into(),
                    value: "false".into(),
                }],
                ..Default::default()
            }],
        },
    );
    let v: Value = serde_json::to_value(&endpoint).unwrap();
    assert_eq!(v["apiVersion"], "externaldns.k8s.io/v1alpha1");
    let e = &v["spec"]["endpoints"][0];
    for key in [
        "dnsName",
        "targets",
        "recordType",
        "recordTTL",
        "setIdentifier",
        "providerSpecific",
    ] {
        assert!(e.get(key).is_some(), "missing {key} in {e}");
    }
}
