//! Builder tests: the desired objects compared whole, as the API server would see them.

use serde_json::{Value, json};

use super::*;
use crate::api::MysqlFailoverGroup;

/// The playground group as an API server would return it (namespace and uid set).
pub(crate) fn playground() -> MysqlFailoverGroup {
    serde_json::from_value(json!({
        "apiVersion": "bloodraven.shipstream.io/v1alpha1",
        "kind": "MysqlFailoverGroup",
        "metadata": {"name": "playground", "namespace": "bp", "uid": "uid-1", "generation": 1},
        "spec": {
            "sites": [
                {"name": "iad", "nodeSelector": {"topology.kubernetes.io/zone": "zone-iad"}},
                {"name": "pdx", "nodeSelector": {"topology.kubernetes.io/zone": "zone-pdx"}}
            ],
            "mysql": {"image": "mysql:8.4", "credentialsSecret": "playground-mysql",
                      "storage": {"size": "1Gi"}},
            "dns": {"hostname": "mysql.playground.internal", "ttl": 30, "recordType": "CNAME",
                    "targets": {"iad": ["playground-mysql-iad.bp.svc"],
                                "pdx": ["playground-mysql-pdx.bp.svc"]}}
        }
    }))
    .unwrap()
}

pub(crate) fn ctx() -> BuildContext {
    BuildContext {
        sidecar_image: "ghcr.io/shipstream/bloodraven:test".into(),
    }
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

fn site_labels(site: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "mysql",
        "app.kubernetes.io/instance": "playground",
        "app.kubernetes.io/managed-by": "bloodraven",
        "shipstream.io/site": site
    })
}

fn site_selector(site: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "mysql",
        "app.kubernetes.io/instance": "playground",
        "shipstream.io/site": site
    })
}

fn to_json<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap()
}

fn built() -> Children {
    build(&playground(), Some("iad"), &ctx()).unwrap()
}

#[test]
fn statefulset_runs_a_fenced_mysqld_and_the_sidecar_on_the_site_nodes() {
    let children = built();
    let iad = &children.sites[0];
    assert_eq!(iad.site, "iad");
    let secret_key = |env: &str, key: &str| {
        json!({"name": env, "valueFrom": {"secretKeyRef":
            {"name": "playground-mysql", "key": key, "optional": false}}})
    };
    let secret = |env: &str| secret_key(env, "root-password");
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "playground-mysql-iad",
            "namespace": "bp",
            "labels": site_labels("iad"),
            "ownerReferences": owner_refs()
        },
        "spec": {
            "replicas": 1,
            "serviceName": "playground-mysql-iad-headless",
            "selector": {"matchLabels": site_selector("iad")},
            "template": {
                "metadata": {"labels": site_labels("iad")},
                "spec": {
                    "nodeSelector": {"topology.kubernetes.io/zone": "zone-iad"},
                    "serviceAccountName": "playground-sidecar",
                    "terminationGracePeriodSeconds": 30,
                    "initContainers": [{
                        "name": "mysql-init",
                        "image": "mysql:8.4",
                        "command": ["bash", "-c", MYSQL_INIT_SCRIPT],
                        "env": [secret("MYSQL_ROOT_PASSWORD"),
                                {"name": "MYSQL_USER", "value": "app"},
                                secret_key("MYSQL_PASSWORD", "app-password"),
                                {"name": "MYSQL_DATABASE", "valueFrom": {"secretKeyRef": {
                                    "name": "playground-mysql", "key": "app-database",
                                    "optional": true}}}],
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql"}]
                    }],
                    "containers": [
                        {
                            "name": "mysqld",
                            "image": "mysql:8.4",
                            "args": [
                                format!("--server-id={}", server_id("iad")),
                                "--port=3306",
                                "--read-only=ON",
                                "--super-read-only=ON",
                                "--persisted-globals-load=OFF",
                                "--admin-address=127.0.0.1",
                                "--admin-port=33062",
                                "--plugin-load-add=mysql_clone.so",
                                "--gtid-mode=ON",
                                "--enforce-gtid-consistency=ON",
                                "--log-bin=mysql-bin",
                                "--binlog-format=ROW",
                                "--log-replica-updates=ON",
                                "--skip-replica-start=ON",
                                "--relay-log-recovery=ON",
                                "--replica-net-timeout=5",
                                "--report-host=playground-mysql-iad-0.playground-mysql-iad-headless.bp.svc"
                            ],
                            "env": [secret("MYSQL_ROOT_PASSWORD"),
                                    {"name": "MYSQL_USER", "value": "app"},
                                    secret_key("MYSQL_PASSWORD", "app-password"),
                                    {"name": "MYSQL_DATABASE", "valueFrom": {"secretKeyRef": {
                                        "name": "playground-mysql", "key": "app-database",
                                        "optional": true}}}],
                            "ports": [{"name": "mysql", "containerPort": 3306, "protocol": "TCP"}],
                            "readinessProbe": {
                                "exec": {"command": ["mysqladmin", "ping", "--host=127.0.0.1",
                                                     "--port=3306", "--silent"]},
                                "periodSeconds": 2, "timeoutSeconds": 1, "failureThreshold": 2
                            },
                            "livenessProbe": {
                                "tcpSocket": {"port": "mysql"},
                                "initialDelaySeconds": 30, "periodSeconds": 10,
                                "timeoutSeconds": 5, "failureThreshold": 6
                            },
                            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql"}]
                        },
                        {
                            "name": "sidecar",
                            "image": "ghcr.io/shipstream/bloodraven:test",
                            "args": ["sidecar", "--group=playground", "--site=iad",
                                     "--mysql-port=33062", "--lease-duration=5s",
                                     "--lease-renew-interval=1s", "--lease-safety-margin=1s",
                                     "--listen=0.0.0.0:8081"],
                            "env": [
                                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                secret("BLOODRAVEN_MYSQL_PASSWORD")
                            ],
                            "ports": [{"name": "sidecar-http", "containerPort": 8081, "protocol": "TCP"}],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "sidecar-http"},
                                               "periodSeconds": 5, "timeoutSeconds": 1},
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "sidecar-http"},
                                              "periodSeconds": 10, "timeoutSeconds": 1}
                        }
                    ]
                }
            },
            "volumeClaimTemplates": [{
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "labels": site_labels("iad")},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    });
    assert_eq!(to_json(&iad.statefulset), expected);
}

#[test]
fn no_password_is_ever_inlined() {
    // Credentials reach the pods only as secretKeyRefs: the literal password (which
    // the builders never see) cannot appear, and no env var but the account name
    // (`MYSQL_USER`, not a secret) carries a plain value.
    let children = built();
    for site in &children.sites {
        let spec = site.statefulset.spec.as_ref().unwrap();
        let pod = spec.template.spec.as_ref().unwrap();
        for container in &pod.containers {
            for env in container.env.as_deref().unwrap_or_default() {
                if env.name != "MYSQL_USER" {
                    assert!(env.value.is_none(), "{} has an inline value", env.name);
                }
            }
            for arg in container.args.as_deref().unwrap_or_default() {
                assert!(!arg.to_lowercase().contains("password"), "{arg}");
            }
        }
    }
}

#[test]
fn semisync_loads_the_plugins_and_storage_class_reaches_the_claim() {
    let mut group = playground();
    group.spec.mysql.durability = crate::api::Durability::Semisync;
    group.spec.mysql.storage.storage_class_name = Some("fast".into());
    let children = build(&group, None, &ctx()).unwrap();
    let sts = to_json(&children.sites[1].statefulset);
    let args = &sts["spec"]["template"]["spec"]["containers"][0]["args"];
    let args: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    // Loading the plugins alone changes nothing: both sides are OFF by default.
    assert!(args.ends_with(&[
        "--plugin-load-add=semisync_source.so",
        "--plugin-load-add=semisync_replica.so",
        "--rpl-semi-sync-source-enabled=ON",
        "--rpl-semi-sync-replica-enabled=ON",
        "--rpl-semi-sync-source-timeout=1000",
    ]));
    group.spec.mysql.semisync_timeout = "2500ms".parse().unwrap();
    let children = build(&group, None, &ctx()).unwrap();
    let sts = to_json(&children.sites[0].statefulset);
    let args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .clone();
    assert!(args.contains(&json!("--rpl-semi-sync-source-timeout=2500")));
    // Asynchronous groups enable nothing.
    let async_args = mysqld_args(&playground(), "iad", "bp");
    assert!(
        !async_args.iter().any(|a| a.contains("semi-sync")),
        "{async_args:?}"
    );
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"],
        "fast"
    );
}

#[test]
fn services_per_site_and_the_primary_service() {
    let children = built();
    let pdx = &children.sites[1];
    let port = json!([{"name": "mysql", "port": 3306, "targetPort": "mysql", "protocol": "TCP"}]);
    assert_eq!(
        to_json(&pdx.headless_service),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "playground-mysql-pdx-headless", "namespace": "bp",
                         "labels": site_labels("pdx"), "ownerReferences": owner_refs()},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
                     "selector": site_selector("pdx"), "ports": port}
        })
    );
    assert_eq!(
        to_json(&pdx.service),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "playground-mysql-pdx", "namespace": "bp",
                         "labels": site_labels("pdx"), "ownerReferences": owner_refs()},
            "spec": {"type": "ClusterIP", "selector": site_selector("pdx"), "ports": port}
        })
    );
    assert_eq!(
        to_json(&children.primary_service),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "playground-mysql-primary", "namespace": "bp",
                         "labels": {"app.kubernetes.io/name": "mysql",
                                    "app.kubernetes.io/instance": "playground",
                                    "app.kubernetes.io/managed-by": "bloodraven"},
                         "ownerReferences": owner_refs()},
            "spec": {"type": "ClusterIP",
                     "selector": {"app.kubernetes.io/name": "mysql",
                                  "app.kubernetes.io/instance": "playground",
                                  "shipstream.io/role": "primary"},
                     "ports": port}
        })
    );
}

#[test]
fn pdb_protects_only_the_primary_pod() {
    let children = built();
    let mut selector = site_selector("iad");
    selector["shipstream.io/role"] = json!("primary");
    assert_eq!(
        to_json(&children.sites[0].pod_disruption_budget),
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "playground-mysql-iad", "namespace": "bp",
                         "labels": site_labels("iad"), "ownerReferences": owner_refs()},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": selector}}
        })
    );
}

#[test]
fn writer_lease_declares_its_duration_and_nothing_else() {
    let mut group = playground();
    group.spec.failover.lease_duration = crate::api::Duration::from_millis(4_500);
    let children = build(&group, None, &ctx()).unwrap();
    assert_eq!(
        to_json(&children.writer_lease),
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "playground-writer", "namespace": "bp",
                         "labels": {"app.kubernetes.io/name": "bloodraven-writer-lease",
                                    "app.kubernetes.io/instance": "playground",
                                    "app.kubernetes.io/managed-by": "bloodraven"},
                         "ownerReferences": owner_refs()},
            "spec": {"leaseDurationSeconds": 5}
        })
    );
}

#[test]
fn dns_endpoint_follows_the_active_site() {
    let for_site = |site| {
        to_json(
            &build(&playground(), Some(site), &ctx())
                .unwrap()
                .dns_endpoint
                .unwrap(),
        )
    };
    assert_eq!(
        for_site("pdx"),
        json!({
            "apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
            "metadata": {"name": "playground", "namespace": "bp",
                         "labels": {"app.kubernetes.io/name": "mysql",
                                    "app.kubernetes.io/instance": "playground",
                                    "app.kubernetes.io/managed-by": "bloodraven"},
                         "ownerReferences": owner_refs()},
            "spec": {"endpoints": [{
                "dnsName": "mysql.playground.internal",
                "targets": ["playground-mysql-pdx.bp.svc"],
                "recordType": "CNAME",
                "setIdentifier": "playground",
                "recordTTL": 30
            }]}
        })
    );
    assert_eq!(
        for_site("iad")["spec"]["endpoints"][0]["targets"],
        json!(["playground-mysql-iad.bp.svc"])
    );
}

#[test]
fn no_dns_endpoint_before_an_active_site_or_without_dns() {
    assert!(
        build(&playground(), None, &ctx())
            .unwrap()
            .dns_endpoint
            .is_none()
    );
    let mut group = playground();
    group.spec.dns = None;
    assert!(
        build(&group, Some("iad"), &ctx())
            .unwrap()
            .dns_endpoint
            .is_none()
    );
}

#[test]
fn an_active_site_without_a_target_is_an_error_naming_it() {
    let err = build(&playground(), Some("sfo"), &ctx()).unwrap_err();
    assert_eq!(
        err,
        BuildError::NoDnsTarget {
            group: "playground".into(),
            site: "sfo".into()
        }
    );
}

#[test]
fn a_group_never_stored_has_no_owner_reference_and_is_refused() {
    let mut group = playground();
    group.metadata.uid = None;
    let err = build(&group, None, &ctx()).unwrap_err();
    assert!(err.to_string().contains("metadata.uid"), "{err}");
}

#[test]
fn sidecar_rbac_reaches_only_the_writer_lease() {
    let children = built();
    assert_eq!(
        to_json(&children.role)["rules"],
        json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                "resourceNames": ["playground-writer"], "verbs": ["get", "watch", "update"]}])
    );
    assert_eq!(
        to_json(&children.role_binding)["subjects"],
        json!([{"kind": "ServiceAccount", "name": "playground-sidecar", "namespace": "bp"}])
    );
}

#[test]
fn server_ids_are_stable_distinct_and_never_zero() {
    assert_eq!(server_id("iad"), server_id("iad"));
    assert_ne!(server_id("iad"), server_id("pdx"));
    for site in ["a", "iad", "pdx", "zone-with-a-long-name"] {
        assert_ne!(server_id(site), 0);
    }
    // Reordering the sites keeps every site's id.
    let mut group = playground();
    group.spec.sites.reverse();
    let reversed = build(&group, None, &ctx()).unwrap();
    assert_eq!(reversed.sites[1].site, "iad");
    assert_eq!(reversed.sites[1].statefulset, built().sites[0].statefulset);
}

/// The pod's containers by name, as JSON.
fn pod_container(sts: &Value, list: &str, name: &str) -> Value {
    sts["spec"]["template"]["spec"][list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {list} entry {name}"))
}

#[test]
fn the_first_start_initialises_without_the_fence_and_without_the_binary_log() {
    let children = built();
    let sts = to_json(&children.sites[0].statefulset);
    let init = pod_container(&sts, "initContainers", "mysql-init");
    let mysqld = pod_container(&sts, "containers", "mysqld");
    // Same image, environment (the image's init contract) and data volume as mysqld.
    for field in ["image", "env", "volumeMounts"] {
        assert_eq!(init[field], mysqld[field], "{field}");
    }
    let script = init["command"][2].as_str().unwrap();
    assert_eq!(init["command"][0], "bash");
    // The init server: binary log off, and none of the fenced server's arguments.
    assert!(
        script.contains("set -- mysqld --skip-log-bin\n"),
        "{script}"
    );
    for arg in mysqld["args"].as_array().unwrap() {
        assert!(
            !script.contains(arg.as_str().unwrap()),
            "{arg} in the init script"
        );
    }
    for forbidden in ["read-only", "read_only", "log-bin=", "gtid"] {
        assert!(
            !script.contains(forbidden),
            "{forbidden} in the init script"
        );
    }
    // It does the entrypoint's first-start work and nothing when data exists.
    for step in [
        "docker_init_database_dir",
        "docker_temp_server_start",
        "docker_setup_db",
        "docker_temp_server_stop",
        "DATABASE_ALREADY_EXISTS",
    ] {
        assert!(script.contains(step), "{step}");
    }
    // mysqld itself still boots fenced.
    let args = mysqld["args"].as_array().unwrap();
    assert!(args.contains(&json!("--super-read-only=ON")));
    assert!(args.contains(&json!("--log-bin=mysql-bin")));
}

#[test]
fn persisted_globals_cannot_make_a_restarted_server_writable() {
    let args = mysqld_args(&playground(), "iad", "bp");
    assert!(
        args.contains(&"--persisted-globals-load=OFF".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--plugin-load-add=mysql_clone.so".to_string()),
        "{args:?}"
    );
}

#[test]
fn mysqld_offers_an_administrative_interface_on_loopback_only() {
    let children = built();
    let sts = to_json(&children.sites[0].statefulset);
    let mysqld = pod_container(&sts, "containers", "mysqld");
    let mysqld_args = mysqld["args"].as_array().unwrap();
    assert!(mysqld_args.contains(&json!("--admin-address=127.0.0.1")));
    assert!(mysqld_args.contains(&json!(format!("--admin-port={ADMIN_PORT}"))));
    // Not published: the port is for the pod's own sidecar, which connects there.
    assert_eq!(mysqld["ports"].as_array().unwrap().len(), 1);
    let sidecar = pod_container(&sts, "containers", SIDECAR_CONTAINER);
    assert!(
        sidecar["args"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("--mysql-port={ADMIN_PORT}"))),
        "{sidecar}"
    );
}
