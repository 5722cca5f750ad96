//! Dragonfly model tests, driven through the real `redis` crate over the simulated network
//! (the connector the operator uses in the simulation).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bloodraven::seams::dragonfly::{
    DragonflyConnectError, DragonflyConnector, DragonflyTarget, DragonflyTimeouts,
};
use bloodraven_sim::models::dragonfly::{DragonflyConfig, DragonflyProgram, SimDragonflyConnector};
use bloodraven_sim::pod::{PodProgram, Volume};
use redis::aio::MultiplexedConnection;
use support::{Faults, context, dialer, run, sim};

const PASSWORD: &str = "cache-secret";

fn dragonfly(
    sim: &mut turmoil::Sim<'_>,
    host: &str,
    config: DragonflyConfig,
    args: &'static [&'static str],
) {
    let program = DragonflyProgram::new(config);
    let name = host.to_string();
    sim.host(host, move || {
        let ctx = context(&name, &Volume::default(), &[], args);
        let program = program.clone();
        async move { program.run(ctx).await }
    });
}

const AUTH_ARGS: &[&str] = &["--requirepass=cache-secret", "--masterauth=cache-secret"];

fn target(host: &str, password: Option<&str>) -> DragonflyTarget {
    DragonflyTarget {
        host: host.into(),
        port: 6379,
        password: password.map(str::to_string),
    }
}

async fn connect(host: &str) -> MultiplexedConnection {
    let connector = SimDragonflyConnector::new(dialer(), DragonflyTimeouts::default());
    for _ in 0..50 {
        if let Ok(connection) = connector.connect(&target(host, Some(PASSWORD))).await {
            return connection;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not connect to {host}");
}

async fn info(connection: &mut MultiplexedConnection) -> String {
    redis::cmd("INFO")
        .arg("replication")
        .query_async(connection)
        .await
        .unwrap()
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
}

async fn replicaof(connection: &mut MultiplexedConnection, host: &str) {
    let _: () = redis::cmd("REPLICAOF")
        .arg(host)
        .arg(6379)
        .query_async(connection)
        .await
        .unwrap();
}

async fn wait_for_stable_sync(replica: &mut MultiplexedConnection) {
    for _ in 0..100 {
        if field(&info(replica).await, "master_link_status") == Some("up") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("replica never reached stable sync");
}

#[test]
fn replica_follows_the_master_and_refuses_writes() {
    let mut sim = sim(11);
    dragonfly(&mut sim, "m", DragonflyConfig::default(), AUTH_ARGS);
    dragonfly(&mut sim, "r", DragonflyConfig::default(), AUTH_ARGS);
    sim.client("test", async {
        let mut m = connect("m").await;
        let mut r = connect("r").await;
        let _: () = redis::cmd("SET")
            .arg("before")
            .arg("1")
            .query_async(&mut m)
            .await
            .unwrap();
        replicaof(&mut r, "m").await;
        wait_for_stable_sync(&mut r).await;
        let _: () = redis::cmd("SET")
            .arg("session:1")
            .arg("alice")
            .query_async(&mut m)
            .await
            .unwrap();
        let n: i64 = redis::cmd("INCR")
            .arg("hits")
            .query_async(&mut m)
            .await
            .unwrap();
        assert_eq!(n, 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let session: Option<String> = redis::cmd("GET")
            .arg("session:1")
            .query_async(&mut r)
            .await
            .unwrap();
        assert_eq!(session.as_deref(), Some("alice"));
        let before: Option<String> = redis::cmd("GET")
            .arg("before")
            .query_async(&mut r)
            .await
            .unwrap();
        assert_eq!(
            before.as_deref(),
            Some("1"),
            "full sync copies existing data"
        );
        let size: i64 = redis::cmd("DBSIZE").query_async(&mut r).await.unwrap();
        assert_eq!(size, 3);
        let error = redis::cmd("SET")
            .arg("x")
            .arg("y")
            .query_async::<()>(&mut r)
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("You can't write against a read only replica"),
            "{error}"
        );
        let deleted: i64 = redis::cmd("DEL")
            .arg("before")
            .query_async(&mut m)
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let gone: Option<String> = redis::cmd("GET")
            .arg("before")
            .query_async(&mut r)
            .await
            .unwrap();
        assert_eq!(gone, None);
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn info_replication_prints_dragonflys_fields() {
    let mut sim = sim(12);
    dragonfly(&mut sim, "m", DragonflyConfig::default(), AUTH_ARGS);
    dragonfly(&mut sim, "r", DragonflyConfig::default(), AUTH_ARGS);
    sim.client("test", async {
        let mut m = connect("m").await;
        let mut r = connect("r").await;
        let master = info(&mut m).await;
        assert!(master.starts_with("# Replication\r\n"), "{master:?}");
        assert_eq!(field(&master, "role"), Some("master"));
        assert_eq!(field(&master, "connected_slaves"), Some("0"));
        let replid = field(&master, "master_replid").unwrap();
        assert_eq!(replid.len(), 40);
        assert!(replid.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            field(&master, "master_repl_offset"),
            None,
            "Dragonfly prints no master_repl_offset"
        );

        replicaof(&mut r, "m").await;
        let replica = info(&mut r).await;
        assert_eq!(field(&replica, "role"), Some("slave"));
        assert_eq!(field(&replica, "master_host"), Some("m"));
        assert_eq!(field(&replica, "master_port"), Some("6379"));
        wait_for_stable_sync(&mut r).await;
        let replica = info(&mut r).await;
        assert_eq!(field(&replica, "master_link_status"), Some("up"));
        assert_eq!(field(&replica, "master_sync_in_progress"), Some("0"));
        assert_eq!(field(&replica, "slave_repl_offset"), Some("0"));
        let ago: i64 = field(&replica, "master_last_io_seconds_ago")
            .unwrap()
            .parse()
            .unwrap();
        assert!((0..=1).contains(&ago), "{ago}");
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut m)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(field(&info(&mut r).await, "slave_repl_offset"), Some("1"));

        let master = info(&mut m).await;
        assert_eq!(field(&master, "connected_slaves"), Some("1"));
        let slave0 = field(&master, "slave0").unwrap();
        assert!(
            slave0.starts_with("ip=") && slave0.contains(",port=6379,state=online,lag=0"),
            "{slave0}"
        );
        let role: redis::Value = redis::cmd("ROLE").query_async(&mut m).await.unwrap();
        assert!(format!("{role:?}").contains("online"), "{role:?}");
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn full_sync_shows_in_progress_and_takeover_is_refused_until_stable() {
    let mut sim = sim(13);
    let slow = DragonflyConfig {
        full_sync_time: Duration::from_secs(3),
        ..DragonflyConfig::default()
    };
    dragonfly(&mut sim, "m", slow, AUTH_ARGS);
    dragonfly(&mut sim, "r", DragonflyConfig::default(), AUTH_ARGS);
    sim.client("test", async {
        let mut r = connect("r").await;
        let _m = connect("m").await;
        replicaof(&mut r, "m").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let replica = info(&mut r).await;
        assert_eq!(field(&replica, "master_sync_in_progress"), Some("1"));
        assert_eq!(field(&replica, "master_link_status"), Some("down"));
        assert_eq!(
            field(&replica, "slave_repl_offset"),
            None,
            "only after a full sync"
        );
        let error = redis::cmd("REPLTAKEOVER")
            .arg(5)
            .query_async::<()>(&mut r)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("not in stable sync"), "{error}");
        wait_for_stable_sync(&mut r).await;
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn repltakeover_promotes_the_replica_and_stops_the_old_master() {
    let mut sim = sim(14);
    dragonfly(&mut sim, "m", DragonflyConfig::default(), AUTH_ARGS);
    dragonfly(&mut sim, "r", DragonflyConfig::default(), AUTH_ARGS);
    sim.client("test", async {
        let mut m = connect("m").await;
        let mut r = connect("r").await;
        replicaof(&mut r, "m").await;
        wait_for_stable_sync(&mut r).await;
        for i in 0..5 {
            let _: () = redis::cmd("SET")
                .arg(format!("s{i}"))
                .arg(i)
                .query_async(&mut m)
                .await
                .unwrap();
        }
        let _: () = redis::cmd("REPLTAKEOVER")
            .arg(10)
            .query_async(&mut r)
            .await
            .unwrap();
        assert_eq!(field(&info(&mut r).await, "role"), Some("master"));
        let size: i64 = redis::cmd("DBSIZE").query_async(&mut r).await.unwrap();
        assert_eq!(size, 5, "sessions preserved");
        let _: () = redis::cmd("SET")
            .arg("after")
            .arg("1")
            .query_async(&mut r)
            .await
            .unwrap();
        // The old master shut down.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            redis::cmd("PING")
                .query_async::<String>(&mut m)
                .await
                .is_err()
        );
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn repltakeover_without_time_to_catch_up_fails_and_the_master_resumes() {
    let mut sim = sim(15);
    dragonfly(&mut sim, "m", DragonflyConfig::default(), AUTH_ARGS);
    dragonfly(&mut sim, "r", DragonflyConfig::default(), AUTH_ARGS);
    sim.client("test", async {
        let mut m = connect("m").await;
        let mut r = connect("r").await;
        replicaof(&mut r, "m").await;
        wait_for_stable_sync(&mut r).await;
        let error = redis::cmd("REPLTAKEOVER")
            .arg(0)
            .query_async::<()>(&mut r)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("Takeover failed!"), "{error}");
        assert_eq!(field(&info(&mut r).await, "role"), Some("slave"));
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut m)
            .await
            .unwrap();

        // A master the takeover request cannot reach: the replica gives up after its timeout.
        turmoil::partition("m", "r");
        let error = redis::cmd("REPLTAKEOVER")
            .arg(1)
            .query_async::<()>(&mut r)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("Takeover failed!"), "{error}");
        turmoil::repair("m", "r");
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn replicaof_no_one_promotes_and_keeps_the_data() {
    let mut sim = sim(16);
    dragonfly(&mut sim, "m", DragonflyConfig::default(), AUTH_ARGS);
    dragonfly(&mut sim, "r", DragonflyConfig::default(), AUTH_ARGS);
    sim.client("test", async {
        let mut m = connect("m").await;
        let mut r = connect("r").await;
        replicaof(&mut r, "m").await;
        wait_for_stable_sync(&mut r).await;
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut m)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let old_replid = field(&info(&mut m).await, "master_replid")
            .unwrap()
            .to_string();
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query_async(&mut r)
            .await
            .unwrap();
        let promoted = info(&mut r).await;
        assert_eq!(field(&promoted, "role"), Some("master"));
        assert_ne!(field(&promoted, "master_replid"), Some(old_replid.as_str()));
        let value: Option<String> = redis::cmd("GET")
            .arg("k")
            .query_async(&mut r)
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some("v"));
        let _: () = redis::cmd("SET")
            .arg("k2")
            .arg("v2")
            .query_async(&mut r)
            .await
            .unwrap();
        // Two masters now: nothing in Dragonfly prevents it (the operator's traffic label must).
        assert_eq!(field(&info(&mut m).await, "role"), Some("master"));
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn auth_failures_are_reported() {
    let mut sim = sim(17);
    dragonfly(&mut sim, "m", DragonflyConfig::default(), AUTH_ARGS);
    sim.client("test", async {
        let _ready = connect("m").await;
        let connector = SimDragonflyConnector::new(dialer(), DragonflyTimeouts::default());
        let error = connector
            .connect(&target("m", Some("wrong")))
            .await
            .unwrap_err();
        match &error {
            DragonflyConnectError::Handshake { source, .. } => {
                assert_eq!(
                    source.kind(),
                    redis::ErrorKind::AuthenticationFailed,
                    "{source}"
                )
            }
            other => panic!("expected a handshake error, got {other}"),
        }
        // Without a password the connection opens but every command is refused.
        let mut anonymous = connector.connect(&target("m", None)).await.unwrap();
        let error = redis::cmd("GET")
            .arg("k")
            .query_async::<Option<String>>(&mut anonymous)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("NOAUTH"), "{error}");
        // Connecting to a host that is not there fails within the connect timeout.
        let error = connector
            .connect(&target("nowhere", Some(PASSWORD)))
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                DragonflyConnectError::Io { .. } | DragonflyConnectError::Timeout { .. }
            ),
            "{error}"
        );
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn master_restart_wipes_replicas_unless_replication_breaks() {
    for (break_on_restart, expect_kept) in [(false, false), (true, true)] {
        let mut sim = sim(18);
        dragonfly(&mut sim, "m", DragonflyConfig::default(), AUTH_ARGS);
        let replica_config = DragonflyConfig {
            break_replication_on_master_restart: break_on_restart,
            replication_timeout: Duration::from_secs(3),
            ..DragonflyConfig::default()
        };
        dragonfly(&mut sim, "r", replica_config, AUTH_ARGS);
        let faults = Faults::default();
        let script = faults.clone();
        sim.client("test", async move {
            let mut m = connect("m").await;
            let mut r = connect("r").await;
            replicaof(&mut r, "m").await;
            wait_for_stable_sync(&mut r).await;
            let _: () = redis::cmd("SET")
                .arg("k")
                .arg("v")
                .query_async(&mut m)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            script.crash("m");
            tokio::time::sleep(Duration::from_millis(100)).await;
            script.bounce("m");
            tokio::time::sleep(Duration::from_secs(8)).await;
            let value: Option<String> = redis::cmd("GET")
                .arg("k")
                .query_async(&mut r)
                .await
                .unwrap();
            let role = info(&mut r).await;
            if expect_kept {
                assert_eq!(value.as_deref(), Some("v"));
                assert_eq!(
                    field(&role, "role"),
                    Some("master"),
                    "replication broken, data kept"
                );
            } else {
                assert_eq!(value, None, "full sync from the restarted, empty master");
                assert_eq!(field(&role, "role"), Some("slave"));
            }
            let mut m = connect("m").await;
            let size: i64 = redis::cmd("DBSIZE").query_async(&mut m).await.unwrap();
            assert_eq!(size, 0, "Dragonfly data is lost on restart");
            Ok(())
        });
        run(&mut sim, &faults);
    }
}

/// The operator passes both passwords as `DFLY_requirepass` / `DFLY_masterauth` from the
/// group Secret: a replica must authenticate to its master with the latter.
#[test]
fn passwords_from_the_environment_protect_clients_and_authenticate_the_replica() {
    let mut sim = sim(17);
    for host in ["m", "r"] {
        let program = DragonflyProgram::new(DragonflyConfig::default());
        let name = host.to_string();
        sim.host(host, move || {
            let ctx = context(
                &name,
                &Volume::default(),
                &[
                    ("DFLY_requirepass", PASSWORD),
                    ("DFLY_masterauth", PASSWORD),
                ],
                &[],
            );
            let program = program.clone();
            async move { program.run(ctx).await }
        });
    }
    sim.client("test", async {
        let connector = SimDragonflyConnector::new(dialer(), DragonflyTimeouts::default());
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Without the password: refused.
        let refused = connector.connect(&target("m", None)).await;
        if let Ok(mut c) = refused {
            let get: Result<Option<String>, _> =
                redis::cmd("GET").arg("k").query_async(&mut c).await;
            assert!(get.is_err(), "a client without the password was served");
        }
        let mut m = connect("m").await;
        let mut r = connect("r").await;
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut m)
            .await
            .unwrap();
        replicaof(&mut r, "m").await;
        wait_for_stable_sync(&mut r).await;
        let copied: Option<String> = redis::cmd("GET")
            .arg("k")
            .query_async(&mut r)
            .await
            .unwrap();
        assert_eq!(copied.as_deref(), Some("v"));
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// Without `DFLY_masterauth` the replica cannot authenticate and never syncs.
#[test]
fn a_replica_without_masterauth_never_reaches_stable_sync() {
    let mut sim = sim(18);
    for (host, env) in [
        ("m", &[("DFLY_requirepass", PASSWORD)][..]),
        ("r", &[("DFLY_requirepass", PASSWORD)][..]),
    ] {
        let program = DragonflyProgram::new(DragonflyConfig::default());
        let name = host.to_string();
        let env: Vec<(&'static str, &'static str)> = env.to_vec();
        sim.host(host, move || {
            let ctx = context(&name, &Volume::default(), &env, &[]);
            let program = program.clone();
            async move { program.run(ctx).await }
        });
    }
    sim.client("test", async {
        let mut r = connect("r").await;
        replicaof(&mut r, "m").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            field(&info(&mut r).await, "master_link_status"),
            Some("down")
        );
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// The S3 model on host `minio`, with the bucket `cache-snapshots`.
fn minio(sim: &mut turmoil::Sim<'_>) {
    use bloodraven_sim::models::s3::{Buckets, ObjectStoreModel, S3ServerCredentials, serve};
    let state = std::sync::Arc::new(std::sync::Mutex::new(Buckets::default()));
    sim.host("minio", move || {
        let model = ObjectStoreModel::new(state.clone(), support::clock());
        async move {
            model.ensure_bucket("cache-snapshots");
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", 9000)).await?;
            serve(
                listener,
                model,
                S3ServerCredentials {
                    access_key_id: "snap".into(),
                    secret_access_key: "snap-secret".into(),
                },
            )
            .await?;
            Ok(())
        }
    });
}

const S3_CREDENTIALS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "snap"),
    ("AWS_SECRET_ACCESS_KEY", "snap-secret"),
];

fn snapshot_args(bucket: &str) -> Vec<String> {
    [
        "--requirepass=cache-secret".to_string(),
        format!("--dir=s3://{bucket}/playground"),
        "--dbfilename=playground-iad".to_string(),
        "--s3_endpoint=minio:9000".to_string(),
        "--s3_use_https=false".to_string(),
    ]
    .to_vec()
}

/// Runs a Dragonfly with `args` and `env` on the calling host until it exits.
async fn run_dragonfly(host: &str, env: &[(&str, &str)], args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ctx = context(host, &Volume::default(), env, &args);
    match DragonflyProgram::new(DragonflyConfig::default())
        .run(ctx)
        .await
    {
        Ok(()) => "exited cleanly".to_string(),
        Err(err) => err.to_string(),
    }
}

#[test]
fn an_unusable_s3_snapshot_dir_ends_the_process_at_start_up() {
    let mut sim = sim(31);
    minio(&mut sim);
    sim.client("nobucket", async {
        let exit =
            run_dragonfly("nobucket", S3_CREDENTIALS, &snapshot_args("missing-bucket")).await;
        assert!(exit.contains("s3://missing-bucket"), "{exit}");
        Ok(())
    });
    sim.client("nocreds", async {
        let exit = run_dragonfly("nocreds", &[], &snapshot_args("cache-snapshots")).await;
        assert!(exit.contains("no S3 credentials"), "{exit}");
        Ok(())
    });
    sim.client("badcreds", async {
        let env = [
            ("AWS_ACCESS_KEY_ID", "snap"),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ];
        let exit = run_dragonfly("badcreds", &env, &snapshot_args("cache-snapshots")).await;
        assert!(exit.contains("s3://cache-snapshots"), "{exit}");
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn save_writes_the_snapshot_to_s3_and_a_restarted_process_loads_it() {
    let mut sim = sim(32);
    minio(&mut sim);
    let faults = Faults::default();
    sim.host("df", move || {
        let args = snapshot_args("cache-snapshots");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ctx = context("df", &Volume::default(), S3_CREDENTIALS, &args);
        async move {
            DragonflyProgram::new(DragonflyConfig::default())
                .run(ctx)
                .await
        }
    });
    let restart = faults.clone();
    sim.client("test", async move {
        let mut df = connect("df").await;
        for _ in 0..42 {
            let _: i64 = redis::cmd("INCR")
                .arg("counter")
                .query_async(&mut df)
                .await
                .unwrap();
        }
        let _: () = redis::cmd("SAVE").query_async(&mut df).await.unwrap();
        // The object is in the bucket, read back through the production S3 client.
        let storage = bloodraven::storage::ObjectStorage::new(
            &bloodraven::storage::S3Target {
                endpoint: Some("http://minio:9000".into()),
                region: None,
                bucket: "cache-snapshots".into(),
                prefix: Some("playground".into()),
                credentials: bloodraven::storage::S3Credentials {
                    access_key_id: "snap".into(),
                    secret_access_key: "snap-secret".into(),
                },
            },
            std::sync::Arc::new(bloodraven_sim::models::s3::SimStorageDialer::new(dialer())),
            bloodraven::storage::TransferTuning::default(),
        )
        .unwrap();
        let keys: Vec<String> = storage
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["playground/playground-iad.rdb"]);
        // A write after the SAVE is not in the snapshot: the restarted process has the
        // saved state, not the last one.
        let _: i64 = redis::cmd("INCR")
            .arg("counter")
            .query_async(&mut df)
            .await
            .unwrap();
        restart.bounce("df");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut df = connect("df").await;
        let loaded: Option<i64> = redis::cmd("GET")
            .arg("counter")
            .query_async(&mut df)
            .await
            .unwrap();
        assert_eq!(loaded, Some(42));
        Ok(())
    });
    run(&mut sim, &faults);
}
