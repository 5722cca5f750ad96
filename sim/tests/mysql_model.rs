//! MySQL model tests: the model runs on turmoil hosts and is driven through the operator's
//! own `MysqlSession` trait over the simulated network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bloodraven::gtid::{GtidSet, reclone_token};
use bloodraven::production::mysql::sql;
use bloodraven::seams::mysql::{
    CloneDonor, CloneState, GtidWait, IoThreadState, MysqlConnector, MysqlSession, MysqlTarget,
    MysqlTimeouts, ReadOnlyMode, ReplicationAccount, ReplicationSource, error_codes,
};
use bloodraven_sim::models::mysql::{MysqlConfig, MysqlProgram, mysql_connector};
use bloodraven_sim::pod::{PodProgram, Volume};
use support::{Faults, context, dialer, run, sim};

const ROOT_PASSWORD: &str = "root-secret";
const ENV: &[(&str, &str)] = &[
    ("MYSQL_ROOT_PASSWORD", ROOT_PASSWORD),
    ("MYSQL_USER", "app"),
    ("MYSQL_PASSWORD", "app-secret"),
    ("MYSQL_DATABASE", "bloodraven_counter"),
];

fn root(host: &str) -> MysqlTarget {
    MysqlTarget {
        host: host.into(),
        port: 3306,
        user: "root".into(),
        password: ROOT_PASSWORD.into(),
    }
}

fn app(host: &str) -> MysqlTarget {
    MysqlTarget {
        host: host.into(),
        port: 3306,
        user: "app".into(),
        password: "app-secret".into(),
    }
}

fn source(host: &str) -> ReplicationSource {
    ReplicationSource {
        host: host.into(),
        port: 3306,
        user: "root".into(),
        password: ROOT_PASSWORD.into(),
        delay_seconds: 0,
        connect_retry_seconds: 1,
    }
}

/// Adds a mysqld host with its own volume; returns the volume.
fn mysqld(sim: &mut turmoil::Sim<'_>, host: &str, args: &'static [&'static str]) -> Volume {
    let volume = Volume::default();
    let program = MysqlProgram::new(MysqlConfig::default());
    let name = host.to_string();
    let vol = volume.clone();
    sim.host(host, move || {
        let ctx = context(&name, &vol, ENV, args);
        let program = program.clone();
        async move { program.run(ctx).await }
    });
    volume
}

/// A session through the production connector over the simulated network.
type SimMysqlSession = Box<dyn MysqlSession>;

async fn connect(
    target: &MysqlTarget,
) -> Result<SimMysqlSession, bloodraven::seams::mysql::MysqlError> {
    mysql_connector(dialer(), MysqlTimeouts::default())
        .connect(target)
        .await
}

/// Runs one statement the session trait has no operation for (model-only controls).
async fn execute(target: &MysqlTarget, statement: &str) {
    let mut conn = mysql_connector(dialer(), MysqlTimeouts::default())
        .open(target)
        .await
        .unwrap();
    conn.query_drop(statement).await.unwrap();
}

async fn session(target: MysqlTarget) -> SimMysqlSession {
    // Retry while the server boots.
    for _ in 0..50 {
        if let Ok(session) = connect(&target).await {
            return session;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not connect to {}", target.address());
}

async fn make_primary(session: &mut SimMysqlSession) {
    session.set_read_only(ReadOnlyMode::Writable).await.unwrap();
}

async fn make_replica(session: &mut SimMysqlSession, of: ReplicationSource) {
    session.stop_replica().await.unwrap();
    session.change_source(&of).await.unwrap();
    session.start_replica().await.unwrap();
}

async fn gtids(session: &mut SimMysqlSession) -> GtidSet {
    session.observe().await.unwrap().gtid_executed
}

#[test]
fn replica_catches_up_through_auto_position() {
    let mut sim = sim(1);
    mysqld(&mut sim, "a", &[]);
    mysqld(&mut sim, "b", &[]);
    sim.client("test", async {
        let mut a = session(root("a")).await;
        let mut b = session(root("b")).await;
        make_primary(&mut a).await;
        // Written before the replica exists: auto-position must fetch them too.
        for _ in 0..3 {
            a.counter_increment("hits").await.unwrap();
        }
        make_replica(&mut b, source("a")).await;
        for _ in 0..2 {
            a.counter_increment("hits").await.unwrap();
        }
        let primary = gtids(&mut a).await;
        assert_eq!(primary.count(), 5);
        let wait = b
            .wait_for_executed_gtid_set(&primary, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(wait, GtidWait::Reached);
        let status = b.observe().await.unwrap();
        assert_eq!(status.gtid_executed, primary);
        let replica = status.replica.unwrap();
        assert_eq!(replica.io_thread, IoThreadState::Running);
        assert!(replica.sql_thread_running);
        assert_eq!(replica.seconds_behind_source, Some(0));
        assert_eq!(replica.retrieved_gtid_set, primary);
        assert_eq!(replica.source_host, "a");
        assert_eq!(b.counter_read("hits").await.unwrap(), Some(5));
        // A set the replica will never reach times out rather than hanging.
        let mut beyond = primary.clone();
        beyond.insert(&status.server_uuid, 1);
        let wait = b
            .wait_for_executed_gtid_set(&beyond, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(wait, GtidWait::TimedOut);
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn source_delay_produces_lag_on_purpose() {
    let mut sim = sim(2);
    mysqld(&mut sim, "a", &[]);
    mysqld(&mut sim, "b", &[]);
    sim.client("test", async {
        let mut a = session(root("a")).await;
        let mut b = session(root("b")).await;
        make_primary(&mut a).await;
        make_replica(
            &mut b,
            ReplicationSource {
                delay_seconds: 30,
                ..source("a")
            },
        )
        .await;
        a.counter_increment("k").await.unwrap();
        let primary = gtids(&mut a).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let status = b.observe().await.unwrap();
        let replica = status.replica.unwrap();
        assert_eq!(replica.sql_delay_seconds, 30);
        assert_eq!(
            replica.retrieved_gtid_set, primary,
            "received but not applied"
        );
        assert!(!primary.is_subset(&status.gtid_executed));
        let lag = replica.seconds_behind_source.unwrap();
        assert!((10..=11).contains(&lag), "lag {lag}");
        let wait = b
            .wait_for_executed_gtid_set(&primary, Duration::from_secs(25))
            .await
            .unwrap();
        assert_eq!(wait, GtidWait::Reached);
        assert_eq!(
            b.observe()
                .await
                .unwrap()
                .replica
                .unwrap()
                .seconds_behind_source,
            Some(0)
        );
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn io_thread_reports_unreachable_source_and_recovers() {
    let mut sim = sim(3);
    mysqld(&mut sim, "a", &[]);
    mysqld(&mut sim, "b", &["--replica-net-timeout=4"]);
    sim.client("test", async {
        let mut a = session(root("a")).await;
        let mut b = session(root("b")).await;
        make_primary(&mut a).await;
        make_replica(&mut b, source("a")).await;
        a.counter_increment("k").await.unwrap();
        b.wait_for_executed_gtid_set(&gtids(&mut a).await, Duration::from_secs(5))
            .await
            .unwrap();

        turmoil::partition("a", "b");
        // Silence for replica_net_timeout (4 s), then reconnect attempts fail.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let replica = b.observe().await.unwrap().replica.unwrap();
        assert_eq!(replica.io_thread, IoThreadState::Connecting);
        assert!(replica.sql_thread_running);
        assert_eq!(
            replica.seconds_behind_source, None,
            "NULL while the IO thread is down"
        );
        let error = replica.last_io_error.unwrap();
        assert_eq!(error.number, u32::from(error_codes::SOURCE_CONNECT));
        assert!(
            error
                .message
                .contains("error connecting to source 'root@a:3306'"),
            "{}",
            error.message
        );

        turmoil::repair("a", "b");
        a.counter_increment("k").await.unwrap();
        let primary = gtids(&mut a).await;
        let wait = b
            .wait_for_executed_gtid_set(&primary, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(wait, GtidWait::Reached);
        let replica = b.observe().await.unwrap().replica.unwrap();
        assert_eq!(replica.io_thread, IoThreadState::Running);
        assert_eq!(replica.last_io_error, None);
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn io_thread_stops_when_the_source_purged_needed_transactions() {
    let mut sim = sim(4);
    mysqld(&mut sim, "a", &[]);
    mysqld(&mut sim, "b", &[]);
    sim.client("test", async {
        let mut a = session(root("a")).await;
        let mut b = session(root("b")).await;
        make_primary(&mut a).await;
        a.counter_increment("k").await.unwrap();
        execute(&root("a"), "PURGE BINARY LOGS BEFORE NOW()").await;
        make_replica(&mut b, source("a")).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let replica = b.observe().await.unwrap().replica.unwrap();
        assert_eq!(replica.io_thread, IoThreadState::Stopped);
        let error = replica.last_io_error.unwrap();
        assert_eq!(
            error.number,
            u32::from(error_codes::SOURCE_FATAL_ERROR_READING_BINLOG)
        );
        assert!(
            error.message.contains("purged required binary logs"),
            "{}",
            error.message
        );
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn writes_are_refused_while_read_only() {
    let mut sim = sim(5);
    mysqld(&mut sim, "a", &[]);
    sim.client("test", async {
        let mut admin = session(root("a")).await;
        let mut client = session(app("a")).await;
        // Boots with super_read_only=ON: nobody writes.
        let status = admin.observe().await.unwrap();
        assert!(status.read_only && status.super_read_only);
        for session in [&mut admin, &mut client] {
            let error = session.counter_increment("k").await.unwrap_err();
            assert!(error.is_read_only_refusal(), "{error}");
            assert!(error.to_string().contains("--super-read-only"), "{error}");
        }
        // read_only without super_read_only: SUPER may write, ordinary clients may not.
        admin.set_read_only(ReadOnlyMode::ReadOnly).await.unwrap();
        let error = client.counter_increment("k").await.unwrap_err();
        assert!(
            error.is_read_only_refusal() && error.to_string().contains("--read-only"),
            "{error}"
        );
        assert_eq!(admin.counter_increment("k").await.unwrap(), 1);
        // Ordinary users cannot lift read-only themselves.
        let error = client
            .set_read_only(ReadOnlyMode::Writable)
            .await
            .unwrap_err();
        assert_eq!(
            error.server_code(),
            Some(error_codes::SPECIFIC_ACCESS_DENIED)
        );
        admin.set_read_only(ReadOnlyMode::Writable).await.unwrap();
        assert_eq!(client.counter_increment("k").await.unwrap(), 2);
        // The fence again: nothing gets through, and every refused write left no GTID.
        admin
            .set_read_only(ReadOnlyMode::SuperReadOnly)
            .await
            .unwrap();
        assert!(
            client
                .counter_increment("k")
                .await
                .unwrap_err()
                .is_read_only_refusal()
        );
        assert_eq!(admin.observe().await.unwrap().gtid_executed.count(), 2);
        // Wrong password.
        let mut wrong = app("a");
        wrong.password = "nope".into();
        let error = connect(&wrong).await.err().unwrap();
        assert_eq!(error.server_code(), Some(error_codes::ACCESS_DENIED));
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn semisync_waits_for_an_ack_then_falls_back_to_async_on_timeout() {
    let mut sim = sim(6);
    mysqld(
        &mut sim,
        "a",
        &[
            "--plugin-load-add=semisync_source.so",
            "--rpl-semi-sync-source-enabled=ON",
            "--rpl_semi_sync_source_timeout=2000",
        ],
    );
    mysqld(
        &mut sim,
        "b",
        &[
            "--plugin-load-add=semisync_replica.so",
            "--rpl-semi-sync-replica-enabled=ON",
        ],
    );
    sim.client("test", async {
        let mut a = session(root("a")).await;
        let mut b = session(root("b")).await;
        make_primary(&mut a).await;
        make_replica(&mut b, source("a")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;

        let started = tokio::time::Instant::now();
        a.counter_increment("k").await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "acked write took {:?}",
            started.elapsed()
        );
        let status = a.observe().await.unwrap();
        assert!(status.semisync_source.enabled && status.semisync_source.active);
        assert_eq!(status.semisync_source.no_ack_transactions, 0);
        // The acked transaction is already in the replica's relay log.
        let relay = b
            .observe()
            .await
            .unwrap()
            .replica
            .unwrap()
            .retrieved_gtid_set;
        assert!(status.gtid_executed.is_subset(&relay));

        // No replica: the commit waits out the timeout, then semisync switches off.
        b.stop_replica().await.unwrap();
        let started = tokio::time::Instant::now();
        a.counter_increment("k").await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(2000) && waited < Duration::from_millis(2500),
            "{waited:?}"
        );
        let status = a.observe().await.unwrap();
        assert!(!status.semisync_source.active);
        assert_eq!(status.semisync_source.no_ack_transactions, 1);
        // Asynchronous now: the next commit does not wait.
        let started = tokio::time::Instant::now();
        a.counter_increment("k").await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(500));

        // The replica catches up and semisync switches back on.
        b.start_replica().await.unwrap();
        b.wait_for_executed_gtid_set(&gtids(&mut a).await, Duration::from_secs(5))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(a.observe().await.unwrap().semisync_source.active);
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn crash_keeps_committed_transactions_and_loses_in_flight_ones() {
    let mut sim = sim(7);
    let volume = Volume::default();
    let vol = volume.clone();
    let program = MysqlProgram::new(MysqlConfig {
        commit_latency: Duration::from_millis(100),
        ..MysqlConfig::default()
    });
    sim.host("a", move || {
        let ctx = context("a", &vol, ENV, &[]);
        let program = program.clone();
        async move { program.run(ctx).await }
    });
    let faults = Faults::default();
    let script_faults = faults.clone();
    sim.client("test", async move {
        let mut a = session(root("a")).await;
        make_primary(&mut a).await;
        for _ in 0..3 {
            a.counter_increment("k").await.unwrap();
        }
        let before = a.observe().await.unwrap();
        // A fourth write is in its commit window when the host crashes.
        let in_flight = tokio::spawn(async {
            let mut writer = session(root("a")).await;
            writer.counter_increment("k").await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        script_faults.crash("a");
        tokio::time::sleep(Duration::from_millis(10)).await;
        script_faults.bounce("a");
        assert!(
            in_flight.await.unwrap().is_err(),
            "the in-flight write was never acknowledged"
        );

        let mut a = session(root("a")).await;
        let after = a.observe().await.unwrap();
        assert_eq!(after.server_uuid, before.server_uuid, "auto.cnf survives");
        assert_eq!(
            after.gtid_executed, before.gtid_executed,
            "committed kept, in-flight lost"
        );
        assert!(after.super_read_only, "restarts fenced");
        assert_eq!(a.counter_read("k").await.unwrap(), Some(3));
        Ok(())
    });
    run(&mut sim, &faults);
    assert_eq!(volume_rows(&volume), Some(3));
}

fn volume_rows(volume: &Volume) -> Option<i64> {
    bloodraven_sim::models::mysql::data_dir(volume)
        .rows()
        .get("k")
        .copied()
}

/// The production pod's plugin argument (7.6.7.1 "Installing the Clone Plugin").
const CLONE_PLUGIN: &[&str] = &["--plugin-load-add=mysql_clone.so"];

/// A CLONE on the official image's unsupervised mysqld: the data is replaced, the
/// client gets 3707 and the server shuts down; once restarted (the kubelet, here a
/// bounce) it runs on the cloned data and `performance_schema.clone_status` says
/// `Completed` (7.6.7.3 "Cloning Remote Data", 29.12.19.1).
#[test]
fn clone_replaces_data_and_gtids_and_restarts() {
    let mut sim = sim(8);
    mysqld(&mut sim, "a", CLONE_PLUGIN);
    mysqld(&mut sim, "b", CLONE_PLUGIN);
    let faults = Faults::default();
    let bounce = faults.clone();
    sim.client("test", async move {
        let mut a = session(root("a")).await;
        let mut b = session(root("b")).await;
        make_primary(&mut a).await;
        for _ in 0..4 {
            a.counter_increment("k").await.unwrap();
        }
        // b has its own, diverged history.
        b.forced_write("k", 99).await.unwrap();
        b.forced_write("other", 1).await.unwrap();
        let b_uuid = b.observe().await.unwrap().server_uuid;

        let donor = CloneDonor {
            host: "a".into(),
            port: 3306,
            user: "root".into(),
            password: ROOT_PASSWORD.into(),
        };
        assert_eq!(b.clone_state().await.unwrap(), None, "no clone ran yet");
        let mut raw = mysql_connector(dialer(), MysqlTimeouts::default())
            .open(&root("b"))
            .await
            .unwrap();
        for statement in &sql::clone_instance(&donor)[..2] {
            raw.query_drop(statement).await.unwrap();
        }
        assert_eq!(
            raw_code(raw.query_drop(&sql::clone_instance(&donor)[2]).await),
            Some(error_codes::RESTART_SERVER_FAILED),
            "the official image's mysqld has no supervisor to restart it"
        );
        // The server shut down: nothing answers until it is started again.
        assert!(b.observe().await.is_err());
        assert!(connect(&root("b")).await.is_err());
        bounce.bounce("b");

        let mut b = session(root("b")).await;
        assert_eq!(
            b.clone_state().await.unwrap(),
            Some(CloneState::Completed),
            "clone_status survives the restart"
        );
        let status = b.observe().await.unwrap();
        let primary = gtids(&mut a).await;
        assert_eq!(status.gtid_executed, primary);
        assert_eq!(status.gtid_purged, primary, "no binlog is cloned");
        assert_eq!(
            status.server_uuid, b_uuid,
            "the recipient keeps its server UUID"
        );
        assert!(status.super_read_only);
        assert_eq!(
            status.replica, None,
            "a primary donor has no replication channel to clone"
        );
        assert_eq!(b.counter_read("k").await.unwrap(), Some(4));
        assert_eq!(b.counter_read("other").await.unwrap(), None);

        // It can now replicate from the donor with auto-position.
        make_replica(&mut b, source("a")).await;
        a.counter_increment("k").await.unwrap();
        let wait = b
            .wait_for_executed_gtid_set(&gtids(&mut a).await, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(wait, GtidWait::Reached);

        // A donor with the wrong password is refused with a clone error, data untouched.
        let bad = CloneDonor {
            password: "nope".into(),
            ..donor
        };
        let error = b
            .clone_from(&bad, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            error.server_code(),
            Some(error_codes::CLONE_DONOR),
            "{error}"
        );
        match b.clone_state().await.unwrap() {
            Some(CloneState::Failed { error, message }) => {
                assert_eq!(error, error_codes::CLONE_DONOR as u32, "{message}");
            }
            other => panic!("expected a failed clone, got {other:?}"),
        }
        Ok(())
    });
    run(&mut sim, &faults);
}

/// Without the clone plugin (MySQL's default) its variables do not exist (1193),
/// CLONE fails with 1524 and `performance_schema.clone_status` does not exist
/// (1146, which the production adapter reads as "no clone"); `INSTALL PLUGIN` loads
/// it, for later starts too (7.6.7.1).
#[test]
fn clone_needs_the_clone_plugin() {
    let mut sim = sim(14);
    mysqld(&mut sim, "a", &["--read-only=OFF"]);
    let faults = Faults::default();
    let crash = faults.clone();
    sim.client("test", async move {
        let mut a = session(root("a")).await;
        let donor = CloneDonor {
            host: "a".into(),
            port: 3306,
            user: "root".into(),
            password: ROOT_PASSWORD.into(),
        };
        let error = a
            .clone_from(&donor, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            error.server_code(),
            Some(error_codes::UNKNOWN_SYSTEM_VARIABLE),
            "{error}"
        );
        assert_eq!(a.clone_state().await.unwrap(), None);
        let mut raw = mysql_connector(dialer(), MysqlTimeouts::default())
            .open(&root("a"))
            .await
            .unwrap();
        assert_eq!(
            raw_code(raw.query_drop(&sql::clone_instance(&donor)[2]).await),
            Some(1524)
        );
        raw.query_drop("INSTALL PLUGIN clone SONAME 'mysql_clone.so'")
            .await
            .unwrap();
        raw.query_drop(&sql::clone_instance(&donor)[0])
            .await
            .unwrap();
        // Registered in mysql.plugin: loaded again after a restart.
        crash.bounce("a");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut raw = loop {
            if let Ok(conn) = mysql_connector(dialer(), MysqlTimeouts::default())
                .open(&root("a"))
                .await
            {
                break conn;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        raw.query_drop(&sql::clone_instance(&donor)[0])
            .await
            .unwrap();
        Ok(())
    });
    run(&mut sim, &faults);
}

#[test]
fn forced_write_then_failover_leaves_an_errant_gtid() {
    let mut sim = sim(9);
    mysqld(&mut sim, "a", &[]);
    mysqld(&mut sim, "b", &[]);
    sim.client("test", async {
        let mut a = session(root("a")).await;
        let mut b = session(root("b")).await;
        make_primary(&mut a).await;
        make_replica(&mut b, source("a")).await;
        for _ in 0..3 {
            a.counter_increment("k").await.unwrap();
        }
        b.wait_for_executed_gtid_set(&gtids(&mut a).await, Duration::from_secs(5))
            .await
            .unwrap();

        // Failover: the old primary is fenced and b is promoted.
        a.set_read_only(ReadOnlyMode::SuperReadOnly).await.unwrap();
        b.stop_replica().await.unwrap();
        b.reset_replica_all().await.unwrap();
        b.set_read_only(ReadOnlyMode::Writable).await.unwrap();
        assert_eq!(b.observe().await.unwrap().replica, None);
        b.counter_increment("k").await.unwrap();
        let b_status = b.observe().await.unwrap();

        // Then a SUPER user writes on the fenced old primary anyway.
        a.forced_write("k", 1000).await.unwrap();
        let a_status = a.observe().await.unwrap();

        // The old primary holds a transaction the new primary does not: errant.
        let errant = a_status.gtid_executed.subtract(&b_status.gtid_executed);
        assert_eq!(errant.count(), 1);
        assert_eq!(
            errant.uuids().collect::<Vec<_>>(),
            vec![a_status.server_uuid.as_str()]
        );
        assert!(!a_status.gtid_executed.is_subset(&b_status.gtid_executed));
        assert_eq!(reclone_token(&a_status.server_uuid).len(), 8);

        // MySQL does not stop it from rejoining: replication runs, the errant GTID stays.
        make_replica(&mut a, source("b")).await;
        let wait = a
            .wait_for_executed_gtid_set(&b_status.gtid_executed, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(wait, GtidWait::Reached);
        let rejoined = a.observe().await.unwrap();
        assert_eq!(rejoined.replica.unwrap().io_thread, IoThreadState::Running);
        assert_eq!(
            rejoined.gtid_executed.subtract(&b_status.gtid_executed),
            errant
        );
        // And the diverged row is silently overwritten by the new primary's row image.
        assert_eq!(a.counter_read("k").await.unwrap(), Some(4));
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

fn repl_account() -> ReplicationAccount {
    ReplicationAccount {
        user: "repl".into(),
        password: "repl-secret".into(),
    }
}

fn repl_source(host: &str, password: &str) -> ReplicationSource {
    ReplicationSource {
        user: "repl".into(),
        password: password.into(),
        ..source(host)
    }
}

#[test]
fn the_replication_account_is_created_on_the_primary_replicates_and_is_all_a_replica_needs() {
    let mut sim = sim(21);
    mysqld(&mut sim, "a", CLONE_PLUGIN);
    mysqld(&mut sim, "b", CLONE_PLUGIN);
    mysqld(&mut sim, "c", CLONE_PLUGIN);
    let faults = Faults::default();
    let restart = faults.clone();
    sim.client("test", async move {
        let mut a = session(root("a")).await;
        let mut b = session(root("b")).await;
        // Under super_read_only even root cannot create it (every mysqld boots fenced).
        let refused = a.ensure_replication_account(&repl_account()).await;
        assert!(refused.unwrap_err().is_read_only_refusal());
        // An ordinary account may not create accounts.
        make_primary(&mut a).await;
        let mut as_app = session(app("a")).await;
        let denied = as_app
            .ensure_replication_account(&repl_account())
            .await
            .unwrap_err();
        assert_eq!(
            denied.server_code(),
            Some(error_codes::SPECIFIC_ACCESS_DENIED)
        );

        // Before the account exists a replica cannot log in: Access denied, retrying.
        make_replica(&mut b, repl_source("a", "repl-secret")).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let replica = b.observe().await.unwrap().replica.unwrap();
        assert_eq!(replica.io_thread, IoThreadState::Connecting);
        let error = replica.last_io_error.unwrap();
        assert_eq!(error.number, u32::from(error_codes::ACCESS_DENIED));
        assert!(error.message.contains("'repl@a:3306'"), "{}", error.message);
        assert!(!error.message.contains("repl-secret"), "{}", error.message);

        // Created on the primary (CREATE USER and GRANT are one transaction each; the
        // ALTER USER that sets the same password changes nothing in the model), the
        // replica connects on its next retry.
        let before = gtids(&mut a).await.count();
        a.ensure_replication_account(&repl_account()).await.unwrap();
        assert_eq!(gtids(&mut a).await.count(), before + 2);
        // Idempotent: ensuring it again changes nothing.
        a.ensure_replication_account(&repl_account()).await.unwrap();
        assert_eq!(gtids(&mut a).await.count(), before + 2);
        // A retry can land between CREATE USER and GRANT: it logs in without
        // REPLICATION SLAVE, its binlog dump is refused (1227) and the IO thread stops
        // (13114), as on MySQL. The operator's replication repair then restarts the
        // channel (START REPLICA on a stopped IO thread), which this stands for.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if b.observe().await.unwrap().replica.unwrap().io_thread == IoThreadState::Stopped {
            b.start_replica().await.unwrap();
        }
        a.counter_increment("k").await.unwrap();
        let primary = gtids(&mut a).await;
        let wait = b
            .wait_for_executed_gtid_set(&primary, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(wait, GtidWait::Reached);
        assert_eq!(
            b.observe().await.unwrap().replica.unwrap().io_thread,
            IoThreadState::Running
        );

        // It replicated: after a failover, a may replicate from b as the same account.
        b.stop_replica().await.unwrap();
        make_primary(&mut b).await;
        a.set_read_only(ReadOnlyMode::SuperReadOnly).await.unwrap();
        make_replica(&mut a, repl_source("b", "repl-secret")).await;
        b.counter_increment("k").await.unwrap();
        let wait = a
            .wait_for_executed_gtid_set(&gtids(&mut b).await, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(wait, GtidWait::Reached);

        // A wrong password is refused.
        let mut c = session(root("c")).await;
        make_replica(&mut c, repl_source("b", "wrong")).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let replica = c.observe().await.unwrap().replica.unwrap();
        assert_eq!(replica.io_thread, IoThreadState::Connecting);
        assert_eq!(
            replica.last_io_error.unwrap().number,
            u32::from(error_codes::ACCESS_DENIED)
        );
        assert!(c.observe().await.unwrap().gtid_executed.is_empty());

        // The account is a clone donor (BACKUP_ADMIN); the clone carries it along, so
        // c can then replicate as repl from b.
        c.stop_replica().await.unwrap();
        let donor = CloneDonor {
            host: "b".into(),
            port: 3306,
            user: "repl".into(),
            password: "repl-secret".into(),
        };
        c.clone_from(&donor, Duration::from_secs(10)).await.unwrap();
        // The unsupervised mysqld shut down after the clone; the kubelet would start it.
        restart.bounce("c");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = session(root("c")).await;
        assert_eq!(gtids(&mut c).await, gtids(&mut b).await);
        make_replica(&mut c, repl_source("a", "repl-secret")).await;
        let wait = c
            .wait_for_executed_gtid_set(&gtids(&mut b).await, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(wait, GtidWait::Reached);
        Ok(())
    });
    run(&mut sim, &faults);
}

#[test]
fn accounts_without_the_privileges_cannot_replicate_or_donate_a_clone() {
    let mut sim = sim(22);
    mysqld(&mut sim, "a", CLONE_PLUGIN);
    mysqld(&mut sim, "b", CLONE_PLUGIN);
    sim.client("test", async {
        let mut a = session(root("a")).await;
        let mut b = session(root("b")).await;
        make_primary(&mut a).await;
        a.counter_increment("k").await.unwrap();
        // `app` logs in fine but holds neither REPLICATION SLAVE nor BACKUP_ADMIN.
        let as_app = ReplicationSource {
            user: "app".into(),
            password: "app-secret".into(),
            ..source("a")
        };
        make_replica(&mut b, as_app).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let replica = b.observe().await.unwrap().replica.unwrap();
        assert_eq!(replica.io_thread, IoThreadState::Stopped);
        let error = replica.last_io_error.unwrap();
        assert!(
            error.message.contains("REPLICATION SLAVE"),
            "{}",
            error.message
        );
        assert!(b.observe().await.unwrap().gtid_executed.is_empty());
        let donor = CloneDonor {
            host: "a".into(),
            port: 3306,
            user: "app".into(),
            password: "app-secret".into(),
        };
        let error = b
            .clone_from(&donor, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("BACKUP_ADMIN"), "{error}");
        assert!(b.observe().await.unwrap().gtid_executed.is_empty());
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn the_app_account_may_use_only_the_database_the_image_granted_it() {
    const NO_DATABASE: &[(&str, &str)] = &[
        ("MYSQL_ROOT_PASSWORD", ROOT_PASSWORD),
        ("MYSQL_USER", "app"),
        ("MYSQL_PASSWORD", "app-secret"),
    ];
    let mut sim = sim(23);
    let program = MysqlProgram::new(MysqlConfig::default());
    let volume = Volume::default();
    sim.host("a", move || {
        let ctx = context("a", &volume, NO_DATABASE, &[]);
        let program = program.clone();
        async move { program.run(ctx).await }
    });
    sim.client("test", async {
        let mut a = session(root("a")).await;
        make_primary(&mut a).await;
        // Without MYSQL_DATABASE the image creates the account with no privileges.
        let mut as_app = session(app("a")).await;
        let error = as_app.counter_increment("k").await.unwrap_err();
        assert_eq!(
            error.server_code(),
            Some(error_codes::DATABASE_ACCESS_DENIED),
            "{error}"
        );
        assert!(error.to_string().contains("bloodraven_counter"), "{error}");
        assert!(as_app.counter_read("k").await.is_err());
        assert!(gtids(&mut a).await.is_empty());
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// The server error code a raw connection's statement ended with, if any.
fn raw_code(result: Result<(), bloodraven::production::mysql::client::ClientError>) -> Option<u16> {
    match result {
        Err(bloodraven::production::mysql::client::ClientError::Server(e)) => Some(e.code),
        _ => None,
    }
}

/// Enabling `read_only` (here through `super_read_only`) takes the global read lock
/// (MySQL 8.4 manual 7.1.8, `read_only`): it waits for open write transactions and
/// `LOCK TABLES ... WRITE`, at most `lock_wait_timeout` (1 s in the production
/// session, a year by default), and writers arriving meanwhile queue behind it.
#[test]
fn enabling_read_only_waits_for_the_global_read_lock() {
    let mut sim = sim(11);
    mysqld(&mut sim, "a", &["--read-only=OFF"]);
    sim.client("test", async {
        let mut admin = session(root("a")).await;
        let connector = mysql_connector(dialer(), MysqlTimeouts::default());
        let mut holder = connector.open(&app("a")).await.unwrap();
        let increment = sql::counter_increment("k");

        // An open transaction that wrote: the fence gives up after lock_wait_timeout.
        holder.query_drop(&increment[0]).await.unwrap();
        holder.query_drop(&increment[1]).await.unwrap();
        let started = tokio::time::Instant::now();
        let error = admin
            .set_read_only(ReadOnlyMode::SuperReadOnly)
            .await
            .unwrap_err();
        assert_eq!(
            error.server_code(),
            Some(error_codes::LOCK_WAIT_TIMEOUT),
            "{error}"
        );
        assert!(started.elapsed() >= Duration::from_secs(1));
        let status = admin.observe().await.unwrap();
        assert!(!status.read_only && !status.super_read_only, "{status:?}");
        // Once it commits, the fence gets the lock at once.
        holder.query_drop("COMMIT").await.unwrap();
        admin
            .set_read_only(ReadOnlyMode::SuperReadOnly)
            .await
            .unwrap();
        assert!(admin.observe().await.unwrap().super_read_only);

        // LOCK TABLES ... WRITE holds it too, until UNLOCK TABLES; READ does not.
        admin.set_read_only(ReadOnlyMode::Writable).await.unwrap();
        holder
            .query_drop("LOCK TABLES bloodraven_counter.counters WRITE")
            .await
            .unwrap();
        let error = admin
            .set_read_only(ReadOnlyMode::SuperReadOnly)
            .await
            .unwrap_err();
        assert_eq!(error.server_code(), Some(error_codes::LOCK_WAIT_TIMEOUT));
        holder
            .query_drop("LOCK TABLES bloodraven_counter.counters READ")
            .await
            .unwrap();
        admin
            .set_read_only(ReadOnlyMode::SuperReadOnly)
            .await
            .unwrap();
        holder.query_drop("UNLOCK TABLES").await.unwrap();
        // Already read_only: super_read_only = ON waits for nothing.
        admin.set_read_only(ReadOnlyMode::ReadOnly).await.unwrap();
        holder
            .query_drop("LOCK TABLES bloodraven_counter.counters WRITE")
            .await
            .expect_err("LOCK TABLES WRITE under read_only is refused to an ordinary user");
        let mut root_holder = connector.open(&root("a")).await.unwrap();
        root_holder.query_drop(&increment[0]).await.unwrap();
        root_holder.query_drop(&increment[1]).await.unwrap();
        admin
            .set_read_only(ReadOnlyMode::SuperReadOnly)
            .await
            .unwrap();
        root_holder.query_drop("ROLLBACK").await.unwrap();

        // With MySQL's default lock_wait_timeout the SET waits for the holder as long
        // as it takes; a write that arrives meanwhile queues behind the SET and is
        // refused once the fence is up.
        admin.set_read_only(ReadOnlyMode::Writable).await.unwrap();
        holder.query_drop(&increment[0]).await.unwrap();
        holder.query_drop(&increment[1]).await.unwrap();
        let mut fencer = connector.open(&root("a")).await.unwrap();
        let waiting = tokio::spawn(async move {
            fencer
                .query_drop("SET GLOBAL super_read_only = ON")
                .await
                .map(|_| tokio::time::Instant::now())
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            !waiting.is_finished(),
            "the SET waits while the holder's transaction is open"
        );
        let mut late = connector.open(&root("a")).await.unwrap();
        let late_write = tokio::spawn(async move {
            raw_code(
                late.query_drop(sql::counter_set("late", 1))
                    .await
                    .map(|_| ()),
            )
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !late_write.is_finished(),
            "a new writer queues behind the waiting SET"
        );
        let committed_at = tokio::time::Instant::now();
        holder.query_drop("COMMIT").await.unwrap();
        let fenced_at = waiting.await.unwrap().unwrap();
        assert!(fenced_at >= committed_at);
        assert_eq!(
            late_write.await.unwrap(),
            Some(error_codes::OPTION_PREVENTS_STATEMENT)
        );
        assert_eq!(admin.counter_read("k").await.unwrap(), Some(2));
        assert_eq!(admin.counter_read("late").await.unwrap(), None);
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// The sidecar's fence (issue 13 part 1, defect 4) against the modelled lock wait: its
/// SET gives up after the session's lock_wait_timeout, it kills the lock holders from a
/// second connection and the fence holds; the holders' uncommitted writes are gone.
#[test]
fn the_sidecar_fence_kills_the_lock_holders_and_holds() {
    let mut sim = sim(12);
    mysqld(&mut sim, "a", &["--read-only=OFF"]);
    sim.client("test", async {
        let connector = mysql_connector(dialer(), MysqlTimeouts::default());
        let increment = sql::counter_increment("k");
        for hold in [
            vec![increment[0].clone(), increment[1].clone()],
            vec!["LOCK TABLES bloodraven_counter.counters WRITE".to_string()],
        ] {
            session(root("a"))
                .await
                .set_read_only(ReadOnlyMode::Writable)
                .await
                .unwrap();
            let mut holder = connector.open(&app("a")).await.unwrap();
            for statement in &hold {
                holder.query_drop(statement).await.unwrap();
            }
            let started = tokio::time::Instant::now();
            let mut fence_session = None;
            bloodraven::sidecar::fence(&connector, &root("a"), &mut fence_session)
                .await
                .unwrap();
            assert!(
                started.elapsed() >= Duration::from_secs(1),
                "the first SET waited out lock_wait_timeout: {hold:?}"
            );
            // The fence killed every client connection but its own.
            let mut admin = session(root("a")).await;
            let status = admin.observe().await.unwrap();
            assert!(status.super_read_only, "{hold:?}");
            assert!(
                holder.query_drop("COMMIT").await.is_err(),
                "the holder was killed: {hold:?}"
            );
            assert_eq!(admin.counter_read("k").await.unwrap(), None);
        }
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// `max_connections` client connections on the main port, one more for an account
/// with CONNECTION_ADMIN, then 1040 for everyone; the administrative interface
/// (`--admin-address`, port 33062) is not counted, and a loopback admin address takes
/// connections from the server's own host only (MySQL 8.4 manual 7.1.12.1, 7.1.12.2).
#[test]
fn the_admin_interface_is_not_counted_against_max_connections() {
    let mut sim = sim(13);
    mysqld(&mut sim, "a", &["--max-connections=2", "--admin-address=a"]);
    mysqld(&mut sim, "b", &["--admin-address=127.0.0.1"]);
    sim.client("test", async {
        let connector = mysql_connector(dialer(), MysqlTimeouts::default());
        let too_many = |result: Result<_, bloodraven::seams::mysql::MysqlError>| match result {
            Err(error) => error.server_code() == Some(1040),
            Ok(_) => false,
        };
        let _first = session(app("a")).await;
        let second = connector.open(&app("a")).await.unwrap();
        // The last slot is CONNECTION_ADMIN's.
        assert!(too_many(connector.open(&app("a")).await));
        let extra = connector.open(&root("a")).await.unwrap();
        assert!(too_many(connector.open(&root("a")).await));
        // The admin interface takes root regardless, and an ordinary account not at all.
        let admin_port = |mut target: MysqlTarget| {
            target.port = 33062;
            target
        };
        let mut admin = connect(&admin_port(root("a"))).await.unwrap();
        assert!(!admin.observe().await.unwrap().server_uuid.is_empty());
        let _more_admin = connector.open(&admin_port(root("a"))).await.unwrap();
        let error = connector.open(&admin_port(app("a"))).await.err().unwrap();
        assert_eq!(
            error.server_code(),
            Some(error_codes::SPECIFIC_ACCESS_DENIED),
            "{error}"
        );
        // Closing main-port connections frees their slots (the admin ones count not).
        drop(second);
        drop(extra);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _again = connector.open(&app("a")).await.unwrap();
        // b's admin interface is on loopback: not reachable from another host.
        let _b = session(root("b")).await;
        assert!(connector.open(&admin_port(root("b"))).await.is_err());
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// `SET PERSIST` writes mysqld-auto.cnf on the data volume and wins over the command
/// line at the next start: a `SET PERSIST read_only = OFF` makes a server that the
/// command line fences boot writable (issue 13 defect 10). `SET GLOBAL` is forgotten
/// at restart, and `--persisted-globals-load=OFF` (the production pod's argument)
/// ignores the file (7.1.9.3 "Persisted System Variables").
#[test]
fn persisted_globals_override_the_command_line_unless_loading_is_off() {
    let mut sim = sim(15);
    mysqld(
        &mut sim,
        "a",
        &[
            "--super-read-only=ON",
            "--plugin-load-add=semisync_source.so",
        ],
    );
    mysqld(
        &mut sim,
        "b",
        &[
            "--super-read-only=ON",
            "--persisted-globals-load=OFF",
            "--plugin-load-add=semisync_source.so",
        ],
    );
    let faults = Faults::default();
    let bounce = faults.clone();
    sim.client("test", async move {
        for host in ["a", "b"] {
            session(root(host)).await; // booted
            execute(&root(host), "SET PERSIST read_only = OFF").await;
            execute(
                &root(host),
                "SET GLOBAL rpl_semi_sync_source_timeout = 1234",
            )
            .await;
            bounce.bounce(host);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut a = session(root("a")).await;
        let status = a.observe().await.unwrap();
        assert!(
            !status.read_only && !status.super_read_only,
            "the persisted value beat --super-read-only=ON: {status:?}"
        );
        let mut b = session(root("b")).await;
        let status = b.observe().await.unwrap();
        assert!(status.read_only && status.super_read_only, "{status:?}");
        for host in ["a", "b"] {
            let timeout: Option<i64> = mysql_connector(dialer(), MysqlTimeouts::default())
                .open(&root(host))
                .await
                .unwrap()
                .query_first("SELECT @@global.rpl_semi_sync_source_timeout")
                .await
                .unwrap();
            assert_eq!(timeout, Some(10_000), "SET GLOBAL does not survive");
        }
        Ok(())
    });
    run(&mut sim, &faults);
}

/// Semisync is two plugins whose variables exist only once loaded (1193 before), and
/// both `rpl_semi_sync_*_enabled` are OFF after loading: loading the plugins alone
/// changes nothing (19.4.10.2 "Installing Semisynchronous Replication"; issue 13
/// defect 2).
#[test]
fn semisync_is_off_until_its_plugins_are_loaded_and_enabled() {
    let mut sim = sim(16);
    mysqld(&mut sim, "a", &["--read-only=OFF"]);
    sim.client("test", async {
        let mut a = session(root("a")).await;
        let connector = mysql_connector(dialer(), MysqlTimeouts::default());
        let mut raw = connector.open(&root("a")).await.unwrap();
        assert_eq!(
            raw_code(
                raw.query_drop("SET GLOBAL rpl_semi_sync_source_enabled = ON")
                    .await
            ),
            Some(error_codes::UNKNOWN_SYSTEM_VARIABLE)
        );
        assert!(!a.observe().await.unwrap().semisync_source.enabled);
        raw.query_drop("INSTALL PLUGIN rpl_semi_sync_source SONAME 'semisync_source.so'")
            .await
            .unwrap();
        let status = a.observe().await.unwrap();
        assert!(
            !status.semisync_source.enabled && !status.semisync_source.active,
            "loaded but not enabled: {:?}",
            status.semisync_source
        );
        raw.query_drop("SET GLOBAL rpl_semi_sync_source_enabled = ON")
            .await
            .unwrap();
        assert!(a.observe().await.unwrap().semisync_source.enabled);
        // The replica side is another plugin.
        assert_eq!(
            raw_code(
                raw.query_drop("SET GLOBAL rpl_semi_sync_replica_enabled = ON")
                    .await
            ),
            Some(error_codes::UNKNOWN_SYSTEM_VARIABLE)
        );
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// `SOURCE_RETRY_COUNT` (MySQL 8.4 default 10) bounds the IO thread's reconnection
/// attempts: past it the thread stops for good. The production CHANGE sets 0 (no
/// limit), so its replica is still trying, and recovers, after the same outage
/// (15.4.2.3; issue 13 defect 7).
#[test]
fn the_io_thread_gives_up_after_source_retry_count_unless_it_is_zero() {
    let mut sim = sim(17);
    mysqld(&mut sim, "a", &["--read-only=OFF"]);
    mysqld(&mut sim, "b", &["--replica-net-timeout=2"]);
    mysqld(&mut sim, "c", &["--replica-net-timeout=2"]);
    sim.client("test", async {
        let mut a = session(root("a")).await;
        // b: a CHANGE without SOURCE_RETRY_COUNT keeps MySQL's default of 10.
        execute(
            &root("b"),
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'a', SOURCE_PORT = 3306, \
             SOURCE_USER = 'root', SOURCE_PASSWORD = 'root-secret', \
             SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 1",
        )
        .await;
        execute(&root("b"), "START REPLICA").await;
        // c: the production statement (SOURCE_RETRY_COUNT = 0).
        let mut c = session(root("c")).await;
        make_replica(&mut c, source("a")).await;
        a.counter_increment("k").await.unwrap();
        let mut b = session(root("b")).await;
        for replica in [&mut b, &mut c] {
            replica
                .wait_for_executed_gtid_set(&gtids(&mut a).await, Duration::from_secs(5))
                .await
                .unwrap();
        }

        turmoil::partition("a", "b");
        turmoil::partition("a", "c");
        tokio::time::sleep(Duration::from_secs(60)).await;
        let gave_up = b.observe().await.unwrap().replica.unwrap();
        assert_eq!(gave_up.io_thread, IoThreadState::Stopped, "{gave_up:?}");
        let error = gave_up.last_io_error.unwrap();
        assert!(error.message.contains("retries: 11"), "{}", error.message);
        let trying = c.observe().await.unwrap().replica.unwrap();
        assert_eq!(trying.io_thread, IoThreadState::Connecting);

        turmoil::repair("a", "b");
        turmoil::repair("a", "c");
        a.counter_increment("k").await.unwrap();
        let primary = gtids(&mut a).await;
        assert_eq!(
            c.wait_for_executed_gtid_set(&primary, Duration::from_secs(10))
                .await
                .unwrap(),
            GtidWait::Reached
        );
        assert_eq!(
            b.wait_for_executed_gtid_set(&primary, Duration::from_secs(10))
                .await
                .unwrap(),
            GtidWait::TimedOut,
            "stopped for good until START REPLICA"
        );
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// Replication user names and passwords longer than 32 characters: `CREATE USER`
/// refuses the name (1470) but takes the password; `CHANGE REPLICATION SOURCE`
/// refuses the password with 3056 (15.4.2.3; issue 13 defect 8).
#[test]
fn replication_credentials_are_limited_to_32_characters() {
    let mut sim = sim(18);
    mysqld(&mut sim, "a", &["--read-only=OFF"]);
    sim.client("test", async {
        let mut a = session(root("a")).await;
        let long = "p".repeat(33);
        a.ensure_replication_account(&ReplicationAccount {
            user: "repl".into(),
            password: long.clone(),
        })
        .await
        .unwrap();
        let error = a
            .ensure_replication_account(&ReplicationAccount {
                user: "u".repeat(33),
                password: "x".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(error.server_code(), Some(1470), "{error}");
        let mut too_long = source("a");
        too_long.password = long;
        let error = a.change_source(&too_long).await.unwrap_err();
        assert_eq!(error.server_code(), Some(3056), "{error}");
        let mut just_fits = source("a");
        just_fits.password = "p".repeat(32);
        a.change_source(&just_fits).await.unwrap();
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// MySQL 8.4 GTID sets may carry tags (`uuid:tag:n`, 19.1.3.1): the model reads them
/// with the shared `GtidSet`, so a tagged set is a valid argument (never 1772) and a
/// tagged transaction is not the untagged one with the same number.
#[test]
fn tagged_gtid_sets_are_valid_and_distinct_from_untagged_ones() {
    let mut sim = sim(19);
    mysqld(&mut sim, "a", &["--read-only=OFF"]);
    sim.client("test", async {
        let mut a = session(root("a")).await;
        a.counter_increment("k").await.unwrap();
        let uuid = a.observe().await.unwrap().server_uuid;
        let untagged = GtidSet::parse(&format!("{uuid}:1")).unwrap();
        let tagged = GtidSet::parse(&format!("{uuid}:ops:1")).unwrap();
        assert_eq!(
            a.wait_for_executed_gtid_set(&untagged, Duration::from_millis(100))
                .await
                .unwrap(),
            GtidWait::Reached
        );
        assert_eq!(
            a.wait_for_executed_gtid_set(&tagged, Duration::from_millis(100))
                .await
                .unwrap(),
            GtidWait::TimedOut
        );
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// `CHANGE REPLICATION SOURCE` with both threads stopped deletes the relay log
/// (15.4.2.3): received but unapplied transactions are gone until fetched again, while
/// `STOP REPLICA` / `START REPLICA` alone keeps them (issue 13 defect 6: the operator's
/// repair only starts a channel that already names the primary).
#[test]
fn change_source_deletes_the_relay_log_and_start_replica_keeps_it() {
    let mut sim = sim(20);
    mysqld(&mut sim, "a", &["--read-only=OFF"]);
    mysqld(&mut sim, "b", &[]);
    sim.client("test", async {
        let mut a = session(root("a")).await;
        let mut b = session(root("b")).await;
        let delayed = ReplicationSource {
            delay_seconds: 3600,
            ..source("a")
        };
        make_replica(&mut b, delayed.clone()).await;
        a.counter_increment("k").await.unwrap();
        let primary = gtids(&mut a).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            b.observe()
                .await
                .unwrap()
                .replica
                .unwrap()
                .retrieved_gtid_set,
            primary
        );
        // STOP and START keep the relay log.
        b.stop_replica().await.unwrap();
        assert_eq!(
            b.observe()
                .await
                .unwrap()
                .replica
                .unwrap()
                .retrieved_gtid_set,
            primary
        );
        b.start_replica().await.unwrap();
        assert_eq!(
            b.observe()
                .await
                .unwrap()
                .replica
                .unwrap()
                .retrieved_gtid_set,
            primary
        );
        // CHANGE deletes it.
        b.stop_replica().await.unwrap();
        b.change_source(&delayed).await.unwrap();
        assert!(
            b.observe()
                .await
                .unwrap()
                .replica
                .unwrap()
                .retrieved_gtid_set
                .is_empty()
        );
        Ok(())
    });
    run(&mut sim, &Faults::default());
}
