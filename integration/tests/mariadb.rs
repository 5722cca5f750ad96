//! The production MySQL client and adapter (`production::mysql`) against a real MariaDB
//! server, over real TCP: login and wrong passwords, connect and request timeouts, the
//! counter workload's SQL and result parsing, read-only refusal mapping (1290), KILL,
//! and `LOCK TABLES ... WRITE` blocking the read-only switch. Only what MariaDB shares
//! with MySQL 8.4; the rest is checked against the simulation's model (docs/testing.md).
//! Run by `make test-integration`; a server that cannot be started fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bloodraven::production::mysql::{MysqlProtocolConnector, sql};
use bloodraven::seams::mysql::{MysqlError, MysqlSession, MysqlTarget, MysqlTimeouts, error_codes};
use bloodraven_integration::mariadb::MariaDb;

fn mariadb() -> MariaDb {
    MariaDb::start("client").unwrap_or_else(|err| panic!("MariaDB did not start: {err}"))
}

fn connector(request: Duration) -> MysqlProtocolConnector {
    MysqlProtocolConnector::tcp(MysqlTimeouts {
        connect: Duration::from_secs(5),
        request,
    })
}

async fn session(target: &MysqlTarget, request: Duration) -> Box<dyn MysqlSession> {
    let connector = connector(request);
    let conn = connector.open(target).await.unwrap();
    Box::new(connector.session(conn, target.address()))
}

#[tokio::test]
#[ignore = "integration tier: needs mariadb-server (make test-integration)"]
async fn logs_in_with_the_password_and_refuses_a_wrong_one_with_1045() {
    let db = mariadb();
    let mut conn = connector(Duration::from_secs(5))
        .open(&db.admin)
        .await
        .unwrap();
    assert!(
        conn.server_version().contains("MariaDB"),
        "{}",
        conn.server_version()
    );
    let result = conn
        .query("SELECT 1 AS one, NULL AS nothing")
        .await
        .unwrap();
    assert_eq!(result.columns, ["one", "nothing"]);
    assert_eq!(result.rows, [vec![Some("1".to_string()), None]]);
    let id = conn.query("SELECT CONNECTION_ID()").await.unwrap();
    assert_eq!(id.scalar(), Some(conn.connection_id().to_string().as_str()));
    let mut wrong = db.app.clone();
    wrong.password = "not-the-password".into();
    let error = connector(Duration::from_secs(5))
        .open(&wrong)
        .await
        .err()
        .unwrap();
    assert_eq!(
        error.server_code(),
        Some(error_codes::ACCESS_DENIED),
        "{error}"
    );
    // A statement the server does not know keeps the connection usable.
    let error = conn.query("SELEKT 1").await.unwrap_err();
    assert!(error.to_string().contains("1064"), "{error}");
    assert_eq!(conn.query("SELECT 2").await.unwrap().scalar(), Some("2"));
    conn.quit().await.unwrap();
}

#[tokio::test]
#[ignore = "integration tier: needs mariadb-server (make test-integration)"]
async fn a_server_that_never_greets_is_a_connect_timeout() {
    // Accepts TCP (the kernel does) but never sends the handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = MysqlTarget {
        host: "127.0.0.1".into(),
        port: silent.local_addr().unwrap().port(),
        user: "root".into(),
        password: "x".into(),
    };
    let connector = MysqlProtocolConnector::tcp(MysqlTimeouts {
        connect: Duration::from_millis(300),
        request: Duration::from_secs(1),
    });
    let started = std::time::Instant::now();
    match connector.open(&target).await {
        Err(MysqlError::Timeout { operation, .. }) => assert_eq!(operation, "connect"),
        other => panic!("expected a connect timeout, got {:?}", other.map(|_| ())),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // Nothing listening: refused at once, as a connect error.
    drop(silent);
    match connector.open(&target).await {
        Err(MysqlError::Connect { .. }) => {}
        other => panic!("expected a connect error, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
#[ignore = "integration tier: needs mariadb-server (make test-integration)"]
async fn the_counter_workload_runs_and_read_only_refuses_it_with_1290() {
    let db = mariadb();
    let mut app = session(&db.app, Duration::from_secs(5)).await;
    // The first increment finds no schema, creates it and retries.
    assert_eq!(app.counter_increment("hits'").await.unwrap(), 1);
    assert_eq!(app.counter_increment("hits'").await.unwrap(), 2);
    assert_eq!(app.counter_read("hits'").await.unwrap(), Some(2));
    assert_eq!(app.counter_read("never").await.unwrap(), None);

    let mut admin = connector(Duration::from_secs(5))
        .open(&db.admin)
        .await
        .unwrap();
    admin.query_drop("SET GLOBAL read_only = ON").await.unwrap();
    let refused = app.counter_increment("hits'").await.unwrap_err();
    assert!(refused.is_read_only_refusal(), "{refused}");
    assert_eq!(
        refused.server_code(),
        Some(error_codes::OPTION_PREVENTS_STATEMENT)
    );
    // The refusal rolled the transaction back; the session stays usable.
    assert_eq!(app.counter_read("hits'").await.unwrap(), Some(2));
    admin
        .query_drop("SET GLOBAL read_only = OFF")
        .await
        .unwrap();
    assert_eq!(app.counter_increment("hits'").await.unwrap(), 3);
}

#[tokio::test]
#[ignore = "integration tier: needs mariadb-server (make test-integration)"]
async fn kill_ends_another_connection_and_its_session_reports_it_lost() {
    let db = mariadb();
    let connector = connector(Duration::from_secs(5));
    let victim = connector.open(&db.app).await.unwrap();
    let victim_id = u64::from(victim.connection_id());
    let mut victim = connector.session(victim, db.app.address());
    assert_eq!(victim.counter_increment("k").await.unwrap(), 1);
    let mut admin = connector.open(&db.admin).await.unwrap();
    admin.query_drop(sql::kill(victim_id)).await.unwrap();
    let lost = victim.counter_read("k").await.unwrap_err();
    assert!(
        matches!(lost, MysqlError::ConnectionLost { .. })
            || lost.server_code().is_some_and(|c| c == 1927 || c == 2013),
        "{lost:?}"
    );
    // The session does not reuse a broken connection.
    assert!(victim.counter_read("k").await.is_err());
    // ER_NO_SUCH_THREAD for an id that does not exist (a killed thread may linger for
    // a moment, so not the victim's).
    let error = admin
        .query_drop(sql::kill(victim_id + 1_000_000))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("1094"), "{error}");
}

#[tokio::test]
#[ignore = "integration tier: needs mariadb-server (make test-integration)"]
async fn lock_tables_write_blocks_the_read_only_switch_until_the_holder_is_killed() {
    let db = mariadb();
    let connector = connector(Duration::from_secs(5));
    let mut app = session(&db.app, Duration::from_secs(5)).await;
    app.counter_increment("k").await.unwrap();
    let mut locker = connector.open(&db.app).await.unwrap();
    let locker_id = u64::from(locker.connection_id());
    locker
        .query_drop("LOCK TABLES bloodraven_counter.counters WRITE")
        .await
        .unwrap();

    // A writer waits for the table lock: the session's request bound ends the wait.
    let mut blocked = session(&db.app, Duration::from_millis(800)).await;
    match blocked.counter_increment("k").await {
        Err(MysqlError::Timeout { operation, .. }) => assert_eq!(operation, "counter increment"),
        other => panic!("expected a request timeout, got {other:?}"),
    }
    assert!(matches!(
        blocked.counter_read("k").await,
        Err(MysqlError::ConnectionLost { .. })
    ));

    // SET GLOBAL read_only waits for the global read lock behind LOCK TABLES ... WRITE;
    // a short session lock_wait_timeout turns the wait into ER_LOCK_WAIT_TIMEOUT.
    let mut admin = connector.open(&db.admin).await.unwrap();
    admin
        .query_drop("SET SESSION lock_wait_timeout = 1")
        .await
        .unwrap();
    let waited = admin
        .query_drop("SET GLOBAL read_only = ON")
        .await
        .unwrap_err();
    assert!(waited.to_string().contains("1205"), "{waited}");
    let read_only = admin.query("SELECT @@global.read_only").await.unwrap();
    assert_eq!(read_only.scalar(), Some("0"), "the switch did not happen");

    // Killing the holder (from a second connection) releases the lock; the switch holds.
    admin.query_drop(sql::kill(locker_id)).await.unwrap();
    admin.query_drop("SET GLOBAL read_only = ON").await.unwrap();
    let refused = app.counter_increment("k").await.unwrap_err();
    assert!(refused.is_read_only_refusal(), "{refused}");
    admin
        .query_drop("SET GLOBAL read_only = OFF")
        .await
        .unwrap();
}
