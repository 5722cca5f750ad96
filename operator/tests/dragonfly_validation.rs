//! `spec.dragonfly` validation through the CRD's own rules: what `bloodraven validate`
//! reports is what the API server (real or simulated) refuses, because both run the
//! same schema and CEL rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bloodraven::children::dragonfly::OWNED_FLAGS;
use bloodraven::schema::bloodraven_schemas;
use bloodraven::validate::validate_text;

const GROUP: &str = "\
apiVersion: bloodraven.shipstream.io/v1alpha1
kind: MysqlFailoverGroup
metadata:
  name: orders
spec:
  sites:
    - name: iad
      nodeSelector: {topology.kubernetes.io/zone: zone-iad}
    - name: pdx
      nodeSelector: {topology.kubernetes.io/zone: zone-pdx}
  mysql:
    credentialsSecret: orders-mysql
  dragonfly:
";

fn report(dragonfly: &str) -> (usize, String) {
    let text = format!("{GROUP}{dragonfly}");
    let report = validate_text("m.yaml", &text, &bloodraven_schemas().unwrap()).unwrap();
    (report.problem_count(), report.to_string())
}

#[test]
fn every_owned_flag_is_refused_naming_it_in_every_spelling() {
    for flag in OWNED_FLAGS {
        let dashed = flag.replace('_', "-");
        for arg in [
            format!("--{flag}=1"),
            format!("-{flag}=1"),
            format!("--{flag}"),
            format!("--{flag} 7000"),
            format!("--{dashed}=1"),
        ] {
            // The pattern accepts dashes only where absl flag names could be typed with
            // them; the plain ones have no underscore to replace.
            let (problems, text) = report(&format!("    args: [\"{arg}\"]\n"));
            assert_eq!(problems, 1, "{arg}: {text}");
            assert!(
                text.contains(&format!("args must not set --{flag}:")),
                "{arg}: {text}"
            );
            assert!(text.contains("m.yaml:"), "{arg}: {text}");
        }
    }
}

#[test]
fn negated_boolean_owned_flag_is_refused() {
    let (problems, text) = report("    args: [\"--nobreak_replication_on_master_restart\"]\n");
    assert_eq!(problems, 1, "{text}");
}

#[test]
fn flags_that_merely_share_a_prefix_are_allowed() {
    for arg in [
        "--cache_mode=true",
        "--portable=1",
        "--maxmemory_policy=x",
        "--admin_nopass=false",
        "--dbnum=4",
    ] {
        let (problems, text) = report(&format!("    args: [\"{arg}\"]\n"));
        assert_eq!(problems, 0, "{arg}: {text}");
    }
}

#[test]
fn images_older_than_v1_38_are_refused_and_digests_accepted() {
    let digest = format!(
        "docker.dragonflydb.io/dragonflydb/dragonfly@sha256:{}",
        "ab".repeat(32)
    );
    let accepted = [
        "docker.dragonflydb.io/dragonflydb/dragonfly:v1.38.0".to_string(),
        "docker.dragonflydb.io/dragonflydb/dragonfly:v1.38.2".to_string(),
        "docker.dragonflydb.io/dragonflydb/dragonfly:1.40.1".to_string(),
        "docker.dragonflydb.io/dragonflydb/dragonfly:v1.100.0".to_string(),
        "docker.dragonflydb.io/dragonflydb/dragonfly:v2.0.0-rc1".to_string(),
        "registry.local:5000/dragonfly:v1.38.0".to_string(),
        digest.clone(),
        // A digest pins the image whatever the tag says.
        format!(
            "docker.dragonflydb.io/dragonflydb/dragonfly:v1.20.0@sha256:{}",
            "0".repeat(64)
        ),
    ];
    for image in &accepted {
        let (problems, text) = report(&format!("    image: \"{image}\"\n"));
        assert_eq!(problems, 0, "{image}: {text}");
    }
    let refused = [
        "docker.dragonflydb.io/dragonflydb/dragonfly:v1.37.9",
        "docker.dragonflydb.io/dragonflydb/dragonfly:v1.3.0",
        "docker.dragonflydb.io/dragonflydb/dragonfly:v0.99.0",
        "docker.dragonflydb.io/dragonflydb/dragonfly:latest",
        "docker.dragonflydb.io/dragonflydb/dragonfly",
        "registry.local:5000/dragonfly",
        "docker.dragonflydb.io/dragonflydb/dragonfly@sha256:short",
    ];
    for image in refused {
        let (problems, text) = report(&format!("    image: \"{image}\"\n"));
        assert_eq!(problems, 1, "{image}: {text}");
        assert!(
            text.contains("image must be Dragonfly v1.38.0 or newer"),
            "{image}: {text}"
        );
    }
}

#[test]
fn the_default_block_is_valid() {
    let (problems, text) =
        report("    image: docker.dragonflydb.io/dragonflydb/dragonfly:v1.38.0\n");
    assert_eq!(problems, 0, "{text}");
}

const SNAPSHOT: &str = "    snapshot:\n      bucket: cache-snapshots\n      endpoint: http://rustfs.storage.svc:9000\n      credentialsSecret: cache-s3\n";

#[test]
fn with_snapshots_the_snapshot_flags_belong_to_the_operator() {
    let (problems, text) = report(SNAPSHOT);
    assert_eq!(problems, 0, "{text}");
    for arg in [
        "--dir=/data",
        "--dbfilename=dump",
        "--s3_endpoint=elsewhere:9000",
        "--s3-use-https=true",
        "-dir /tmp",
    ] {
        let (problems, text) = report(&format!("{SNAPSHOT}    args: [\"{arg}\"]\n"));
        assert_eq!(problems, 1, "{arg}: {text}");
        assert!(text.contains("while snapshot is set"), "{arg}: {text}");
    }
    // Without snapshots --dir stays allowed (a discouraged arg, reported by a Warning).
    let (problems, text) = report("    args: [\"--dir=/data\"]\n");
    assert_eq!(problems, 0, "{text}");
    // Flags that only share a prefix are not snapshot flags.
    let (problems, text) = report(&format!("{SNAPSHOT}    args: [\"--dirty_ok=1\"]\n"));
    assert_eq!(problems, 0, "{text}");
}

#[test]
fn a_snapshot_endpoint_is_a_bare_http_url_and_the_bucket_and_secret_are_required() {
    for endpoint in ["rustfs:9000", "http://rustfs:9000/path", "ftp://rustfs"] {
        let block = SNAPSHOT.replace("http://rustfs.storage.svc:9000", endpoint);
        let (problems, text) = report(&block);
        assert_eq!(problems, 1, "{endpoint}: {text}");
        assert!(text.contains("endpoint must be http(s)://"), "{text}");
    }
    let (problems, text) = report("    snapshot:\n      bucket: cache-snapshots\n");
    assert!(
        problems >= 1 && text.contains("credentialsSecret"),
        "{text}"
    );
}
