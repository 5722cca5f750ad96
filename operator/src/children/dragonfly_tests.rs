//! Dragonfly builder tests: the desired objects compared whole.

use serde_json::{Value, json};

use super::*;
use crate::api::DragonflySpec;
use crate::children::tests::{ctx, playground};
use crate::children::{Children, build};

fn with_dragonfly(spec: Value) -> MysqlFailoverGroup {
    let mut group = playground();
    group.spec.dragonfly = Some(serde_json::from_value::<DragonflySpec>(spec).unwrap());
    group
}

fn built(group: &MysqlFailoverGroup) -> Children {
    build(group, Some("iad"), &ctx()).unwrap()
}

fn to_json<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap()
}

fn owner_refs() -> Value {
    json!([{
        "apiVersion": "bloodraven.shipstream.io/v1alpha1",
        "kind": "MysqlFailoverGroup",
        "name": "playground",
        "uid": "uid-1",
        "controller": true,
        "blockOwnerDeletion": true
    }])
}

fn labels(site: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "dragonfly",
        "app.kubernetes.io/instance": "playground",
        "app.kubernetes.io/managed-by": "bloodraven",
        "shipstream.io/site": site
    })
}

fn selector(site: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "dragonfly",
        "app.kubernetes.io/instance": "playground",
        "shipstream.io/site": site
    })
}

#[test]
fn statefulset_per_site_runs_dragonfly_on_ephemeral_storage_with_owned_flags() {
    let group = with_dragonfly(json!({
        "image": "docker.dragonflydb.io/dragonflydb/dragonfly:v1.38.0",
        "args": ["--cache_mode=true"],
        "resources": {"limits": {"memory": "1Gi", "cpu": "1500m"}}
    }));
    let children = built(&group);
    let dragonfly = children.dragonfly.expect("spec.dragonfly set");
    assert_eq!(dragonfly.sites.len(), 2);
    let pdx = &dragonfly.sites[1];
    assert_eq!(pdx.site, "pdx");
    assert_eq!(
        to_json(&pdx.statefulset),
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": "playground-dragonfly-pdx",
                "namespace": "bp",
                "labels": labels("pdx"),
                "ownerReferences": owner_refs()
            },
            "spec": {
                "replicas": 1,
                "serviceName": "playground-dragonfly-pdx-headless",
                "updateStrategy": {"type": "OnDelete"},
                "selector": {"matchLabels": selector("pdx")},
                "template": {
                    "metadata": {"labels": labels("pdx")},
                    "spec": {
                        "nodeSelector": {"topology.kubernetes.io/zone": "zone-pdx"},
                        "terminationGracePeriodSeconds": 10,
                        "containers": [{
                            "name": "dragonfly",
                            "image": "docker.dragonflydb.io/dragonflydb/dragonfly:v1.38.0",
                            "args": [
                                "--port=6379",
                                "--admin_port=9999",
                                "--break_replication_on_master_restart=true",
                                // 80 % of 1 GiB; 1.5 cores round up to 2 threads.
                                "--maxmemory=858993459",
                                "--proactor_threads=2",
                                "--cache_mode=true"
                            ],
                            "env": [
                                {"name": "DFLY_requirepass", "valueFrom": {"secretKeyRef": {
                                    "name": "playground-mysql", "key": "dragonfly-password",
                                    "optional": false}}},
                                {"name": "DFLY_masterauth", "valueFrom": {"secretKeyRef": {
                                    "name": "playground-mysql", "key": "dragonfly-password",
                                    "optional": false}}}
                            ],
                            "ports": [
                                {"name": "redis", "containerPort": 6379, "protocol": "TCP"},
                                {"name": "admin", "containerPort": 9999, "protocol": "TCP"}
                            ],
                            "readinessProbe": {"tcpSocket": {"port": "redis"},
                                "initialDelaySeconds": 0, "periodSeconds": 2,
                                "timeoutSeconds": 1, "failureThreshold": 2},
                            "livenessProbe": {"tcpSocket": {"port": "redis"},
                                "initialDelaySeconds": 10, "periodSeconds": 10,
                                "timeoutSeconds": 1, "failureThreshold": 6},
                            "resources": {"limits": {"memory": "1Gi", "cpu": "1500m"}},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                        }],
                        "volumes": [{"name": "data", "emptyDir": {}}]
                    }
                }
            }
        })
    );
    // Ephemeral: no claim outlives the pod.
    assert!(
        pdx.statefulset
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .is_none()
    );
}

#[test]
fn no_dragonfly_password_is_ever_inlined() {
    let group = with_dragonfly(json!({}));
    let sites = built(&group).dragonfly.unwrap().sites;
    let statefulsets: Vec<_> = sites.iter().map(|s| &s.statefulset).collect();
    let text = serde_json::to_string(&statefulsets).unwrap();
    assert!(!text.contains("requirepass="), "{text}");
    assert!(!text.contains("masterauth="), "{text}");
}

#[test]
fn snapshot_sets_the_s3_flags_per_site_and_credentials_from_the_secret() {
    let group = with_dragonfly(json!({
        "args": ["--cache_mode=true"],
        "snapshot": {
            "bucket": "cache-snapshots",
            "prefix": "/playground/",
            "endpoint": "http://rustfs.storage.svc:9000/",
            "credentialsSecret": "rustfs-credentials"
        }
    }));
    let sites = built(&group).dragonfly.unwrap().sites;
    let container = |i: usize| {
        to_json(&sites[i].statefulset)["spec"]["template"]["spec"]["containers"][0].clone()
    };
    assert_eq!(
        container(0)["args"],
        json!([
            "--port=6379",
            "--admin_port=9999",
            "--break_replication_on_master_restart=true",
            "--dir=s3://cache-snapshots/playground",
            "--dbfilename=playground-iad",
            "--s3_endpoint=rustfs.storage.svc:9000",
            "--s3_use_https=false",
            "--cache_mode=true"
        ])
    );
    // Each site has its own snapshot object.
    assert!(
        container(1)["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--dbfilename=playground-pdx"))
    );
    let secret_ref = |name: &str, key: &str| {
        json!({"name": name, "valueFrom": {"secretKeyRef": {
            "name": "rustfs-credentials", "key": key, "optional": false}}})
    };
    let env = container(0)["env"].clone();
    let env = env.as_array().unwrap();
    assert_eq!(
        env[2..],
        [
            secret_ref("AWS_ACCESS_KEY_ID", "access-key-id"),
            secret_ref("AWS_SECRET_ACCESS_KEY", "secret-access-key"),
            json!({"name": "AWS_REGION", "value": "us-east-1"}),
        ]
    );
}

#[test]
fn snapshot_flags_follow_the_endpoint_scheme_and_its_absence() {
    let snapshot =
        |v: Value| serde_json::from_value::<crate::api::DragonflySnapshotSpec>(v).unwrap();
    assert_eq!(
        snapshot_args(
            &snapshot(
                json!({"bucket": "b-1", "endpoint": "https://s3.example.net",
                "credentialsSecret": "s"})
            ),
            "g",
            "iad"
        ),
        vec![
            "--dir=s3://b-1",
            "--dbfilename=g-iad",
            "--s3_endpoint=s3.example.net",
            "--s3_use_https=true"
        ]
    );
    // AWS S3: no endpoint flags; Dragonfly derives the endpoint from the region.
    assert_eq!(
        snapshot_args(
            &snapshot(json!({"bucket": "b-1", "prefix": "", "credentialsSecret": "s"})),
            "g",
            "pdx"
        ),
        vec!["--dir=s3://b-1", "--dbfilename=g-pdx"]
    );
    // Without snapshots nothing of this appears.
    let plain = with_dragonfly(json!({}));
    let statefulsets: Vec<_> = built(&plain)
        .dragonfly
        .unwrap()
        .sites
        .into_iter()
        .map(|s| s.statefulset)
        .collect();
    let text = serde_json::to_string(&statefulsets).unwrap();
    assert!(!text.contains("--dir=") && !text.contains("AWS_"), "{text}");
}

#[test]
fn app_service_requires_master_and_traffic_and_exposes_no_admin_port() {
    let group = with_dragonfly(json!({}));
    let dragonfly = built(&group).dragonfly.unwrap();
    assert_eq!(
        to_json(&dragonfly.service),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "playground-dragonfly",
                "namespace": "bp",
                "labels": {
                    "app.kubernetes.io/name": "dragonfly",
                    "app.kubernetes.io/instance": "playground",
                    "app.kubernetes.io/managed-by": "bloodraven"
                },
                "ownerReferences": owner_refs()
            },
            "spec": {
                "type": "ClusterIP",
                "selector": {
                    "app.kubernetes.io/name": "dragonfly",
                    "app.kubernetes.io/instance": "playground",
                    "shipstream.io/dragonfly-role": "master",
                    "shipstream.io/dragonfly-traffic": "enabled"
                },
                "ports": [{"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}]
            }
        })
    );
    let headless = to_json(&dragonfly.sites[0].headless_service);
    assert_eq!(
        headless["metadata"]["name"],
        "playground-dragonfly-iad-headless"
    );
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(headless["spec"]["selector"], selector("iad"));
}

#[test]
fn pdb_protects_only_the_dragonfly_master_of_its_site() {
    let group = with_dragonfly(json!({}));
    let dragonfly = built(&group).dragonfly.unwrap();
    let mut want = selector("iad");
    want["shipstream.io/dragonfly-role"] = json!("master");
    let pdb = to_json(&dragonfly.sites[0].pod_disruption_budget);
    assert_eq!(pdb["metadata"]["name"], "playground-dragonfly-iad");
    assert_eq!(
        pdb["spec"],
        json!({"maxUnavailable": 0, "selector": {"matchLabels": want}})
    );
}

#[test]
fn without_spec_dragonfly_there_are_no_dragonfly_children() {
    let children = built(&playground());
    assert!(children.dragonfly.is_none());
    let objects = children.objects().unwrap();
    assert!(
        objects.iter().all(|o| !o.name.contains("dragonfly")),
        "{:?}",
        objects.iter().map(|o| o.describe()).collect::<Vec<_>>()
    );
}

#[test]
fn dragonfly_objects_are_applied_after_mysql_and_before_dns() {
    let group = with_dragonfly(json!({}));
    let objects = built(&group).objects().unwrap();
    let names: Vec<String> = objects.iter().map(|o| o.describe()).collect();
    let tail: Vec<&str> = names
        .iter()
        .rev()
        .take(8)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "Service bp/playground-dragonfly-iad-headless",
            "StatefulSet bp/playground-dragonfly-iad",
            "PodDisruptionBudget bp/playground-dragonfly-iad",
            "Service bp/playground-dragonfly-pdx-headless",
            "StatefulSet bp/playground-dragonfly-pdx",
            "PodDisruptionBudget bp/playground-dragonfly-pdx",
            "Service bp/playground-dragonfly",
            "DNSEndpoint bp/playground",
        ]
    );
}

#[test]
fn sizing_prefers_limits_then_requests_and_skips_what_does_not_parse() {
    let resources = |v: Value| serde_json::from_value::<ResourceRequirements>(v).unwrap();
    let cases = [
        (json!({}), vec![]),
        (
            json!({"requests": {"memory": "512Mi", "cpu": "250m"}}),
            vec!["--maxmemory=429496729", "--proactor_threads=1"],
        ),
        (
            json!({"requests": {"memory": "512Mi"}, "limits": {"memory": "1G"}}),
            vec!["--maxmemory=800000000"],
        ),
        (
            json!({"limits": {"cpu": "4"}}),
            vec!["--proactor_threads=4"],
        ),
        (json!({"limits": {"memory": "lots", "cpu": "-1"}}), vec![]),
    ];
    for (input, want) in cases {
        assert_eq!(
            sizing_args(Some(&resources(input.clone()))),
            want,
            "{input}"
        );
    }
    assert!(sizing_args(None).is_empty());
}

#[test]
fn quantities_parse_as_kubernetes_writes_them() {
    assert_eq!(memory_bytes("1Gi"), Some(1 << 30));
    assert_eq!(memory_bytes("1.5Gi"), Some(3 << 29));
    assert_eq!(memory_bytes("2G"), Some(2_000_000_000));
    assert_eq!(memory_bytes("1048576"), Some(1_048_576));
    assert_eq!(memory_bytes("1e9"), Some(1_000_000_000));
    assert_eq!(memory_bytes("0"), None);
    assert_eq!(memory_bytes("Gi"), None);
    assert_eq!(memory_bytes("-1Gi"), None);
    assert_eq!(cpu_threads("500m"), Some(1));
    assert_eq!(cpu_threads("2"), Some(2));
    assert_eq!(cpu_threads("2.5"), Some(3));
    assert_eq!(cpu_threads("0"), None);
    assert_eq!(cpu_threads("many"), None);
}

#[test]
fn discouraged_args_are_named_with_their_tradeoff_and_others_pass() {
    let args: Vec<String> = [
        "--cache_mode=true",
        "--tiered_prefix=/data/tiered",
        "--aclfile=/etc/acl",
        "--default_lua_flags=allow-undeclared-keys",
        "--tls-replication",
        "--snapshot_cron=*/5 * * * *",
        "--dbfilename=dump",
        "--dir=/data",
        "--directory_listing=1",
        "-dbnum=2",
        "not-a-flag",
    ]
    .map(String::from)
    .to_vec();
    let found = discouraged_args(&args);
    let flagged: Vec<&str> = found.iter().map(|d| d.arg.as_str()).collect();
    assert_eq!(
        flagged,
        [
            "--tiered_prefix=/data/tiered",
            "--aclfile=/etc/acl",
            "--default_lua_flags=allow-undeclared-keys",
            "--tls-replication",
            "--snapshot_cron=*/5 * * * *",
            "--dbfilename=dump",
            "--dir=/data",
        ]
    );
    assert!(found[0].tradeoff.starts_with("tiered storage"));
    assert!(found[3].tradeoff.starts_with("TLS replication"));
    assert!(discouraged_args(&[]).is_empty());
}
