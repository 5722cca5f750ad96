//! MySQL model tests: the model runs on turmoil hosts and is driven through the operator's
//! own `MysqlSession` trait over the simulated network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bloodraven::gtid::{GtidSet, reclone_token};
use bloodraven::seams::mysql::{
    CloneDonor, GtidWait, IoThreadState, MysqlConnector, MysqlSession, MysqlTarget, MysqlTimeouts,
    ReadOnlyMode, ReplicationAccount, ReplicationSource, error_codes,
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
            "--rpl-semi-sync-source-enabled=ON",
            "--rpl_semi_sync_source_timeout=2000",
        ],
    );
    mysqld(&mut sim, "b", &["--rpl-semi-sync-replica-enabled=ON"]);
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

#[test]
fn clone_replaces_data_and_gtids_and_restarts() {
    let mut sim = sim(8);
    mysqld(&mut sim, "a", &[]);
    mysqld(&mut sim, "b", &[]);
    sim.client("test", async {
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
        b.clone_from(&donor, Duration::from_secs(10)).await.unwrap();
        // The old session ended with the restart.
        assert!(b.observe().await.is_err());

        let mut b = session(root("b")).await;
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
        Ok(())
    });
    run(&mut sim, &Faults::default());
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
    mysqld(&mut sim, "a", &[]);
    mysqld(&mut sim, "b", &[]);
    mysqld(&mut sim, "c", &[]);
    sim.client("test", async {
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
    run(&mut sim, &Faults::default());
}

#[test]
fn accounts_without_the_privileges_cannot_replicate_or_donate_a_clone() {
    let mut sim = sim(22);
    mysqld(&mut sim, "a", &[]);
    mysqld(&mut sim, "b", &[]);
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
