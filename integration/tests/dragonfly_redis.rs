//! The production Dragonfly adapter (`production::dragonfly`: the redis-crate connector
//! and `DragonflySession`) against a real `redis-server`, over real TCP: AUTH, PING, ROLE
//! and INFO replication parsing, REPLICAOF and REPLICAOF NO ONE — what Redis shares
//! with Dragonfly. REPLTAKEOVER is Dragonfly-only: not tested here. Run by `make
//! test-integration`; a server that cannot be started fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bloodraven::engine::dragonfly::{CacheInfo, CacheLink};
use bloodraven::production::dragonfly::{
    DragonflyCommandError, DragonflySession, RedisDragonflyConnector, RoleReply,
};
use bloodraven::seams::{DragonflyConnectError, DragonflyTarget, DragonflyTimeouts};
use bloodraven_integration::redis::RedisServer;

const PASSWORD: &str = "integration-cache";
const TIMEOUT: Duration = Duration::from_secs(5);

fn server() -> RedisServer {
    RedisServer::start(PASSWORD).unwrap_or_else(|err| panic!("redis-server did not start: {err}"))
}

fn target(server: &RedisServer, password: Option<&str>) -> DragonflyTarget {
    DragonflyTarget {
        host: "127.0.0.1".into(),
        port: server.port,
        password: password.map(str::to_string),
    }
}

fn connector() -> RedisDragonflyConnector {
    RedisDragonflyConnector::new(DragonflyTimeouts::default())
}

async fn session(server: &RedisServer) -> DragonflySession {
    DragonflySession::open(&connector(), &target(server, Some(PASSWORD)), TIMEOUT)
        .await
        .unwrap()
}

async fn redis_client(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}/", server.port);
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
#[ignore = "integration tier: run by `make test-integration` (needs redis-server)"]
async fn auth_is_required_and_a_wrong_password_is_refused_at_connect() {
    let server = server();
    let mut ok = session(&server).await;
    ok.ping().await.unwrap();

    let wrong = DragonflySession::open(&connector(), &target(&server, Some("nope")), TIMEOUT).await;
    assert!(
        matches!(
            wrong,
            Err(DragonflyCommandError::Connect(
                DragonflyConnectError::Handshake { .. }
            ))
        ),
        "{:?}",
        wrong.err()
    );

    // Without a password the connection opens but every command is refused (NOAUTH).
    let mut anonymous = DragonflySession::open(&connector(), &target(&server, None), TIMEOUT)
        .await
        .unwrap();
    let refused = anonymous.role().await;
    match refused {
        Err(DragonflyCommandError::Command {
            command, source, ..
        }) => {
            assert_eq!(command, "ROLE");
            assert!(source.to_string().contains("NOAUTH"), "{source}");
        }
        other => panic!("ROLE without AUTH: {other:?}"),
    }
}

#[tokio::test]
#[ignore = "integration tier: run by `make test-integration` (needs redis-server)"]
async fn a_fresh_server_is_a_master_with_a_replication_id() {
    let server = server();
    let mut s = session(&server).await;
    assert_eq!(s.role().await.unwrap(), RoleReply::Master);
    let info = s.replication_info().await.unwrap();
    assert_eq!(info.role, "master");
    assert_eq!(info.connected_replicas, Some(0));
    let replid = info.master_replid.clone().unwrap();
    assert_eq!(replid.len(), 40, "{replid}");
    assert_eq!(
        s.observe().await.unwrap(),
        CacheInfo::Master {
            replid: Some(replid)
        }
    );
}

#[tokio::test]
#[ignore = "integration tier: run by `make test-integration` (needs redis-server)"]
async fn replicaof_reaches_stable_sync_and_replicaof_no_one_promotes_keeping_the_data() {
    let master = server();
    let replica = server();
    let mut writer = redis_client(&master).await;
    let _: () = redis::cmd("SET")
        .arg("session:1")
        .arg("alice")
        .query_async(&mut writer)
        .await
        .unwrap();

    let mut r = session(&replica).await;
    r.replicaof("127.0.0.1", master.port).await.unwrap();
    let mut synced = None;
    for _ in 0..100 {
        let observed = r.observe().await.unwrap();
        if matches!(
            observed,
            CacheInfo::Replica {
                link: CacheLink::StableSync,
                ..
            }
        ) {
            synced = Some(observed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        synced,
        Some(CacheInfo::Replica {
            master_host: "127.0.0.1".into(),
            link: CacheLink::StableSync
        }),
        "the replica never reached stable sync (masterauth)"
    );
    let role = r.role().await.unwrap();
    assert!(
        matches!(&role, RoleReply::Replica { port, state, .. } if *port == master.port && state == "connected"),
        "{role:?}"
    );
    let info = r.replication_info().await.unwrap();
    assert_eq!(info.role, "slave");
    assert_eq!(info.link_up, Some(true));
    assert_eq!(info.master_port, Some(master.port));
    let mut m = session(&master).await;
    assert_eq!(
        m.replication_info().await.unwrap().connected_replicas,
        Some(1)
    );

    // A write on the master arrives on the replica.
    let _: () = redis::cmd("SET")
        .arg("session:2")
        .arg("bob")
        .query_async(&mut writer)
        .await
        .unwrap();
    let mut reader = redis_client(&replica).await;
    let mut copied: Option<String> = None;
    for _ in 0..50 {
        copied = redis::cmd("GET")
            .arg("session:2")
            .query_async(&mut reader)
            .await
            .unwrap();
        if copied.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(copied.as_deref(), Some("bob"));

    // Promoted in place: a master again, with the data it had.
    r.replicaof_no_one().await.unwrap();
    assert!(matches!(
        r.observe().await.unwrap(),
        CacheInfo::Master { replid: Some(_) }
    ));
    let kept: Option<String> = redis::cmd("GET")
        .arg("session:1")
        .query_async(&mut reader)
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("alice"));
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query_async(&mut reader)
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "integration tier: run by `make test-integration` (needs redis-server)"]
async fn a_replica_of_a_dead_master_reports_its_link_down() {
    let master = server();
    let replica = server();
    let mut r = session(&replica).await;
    r.replicaof("127.0.0.1", master.port).await.unwrap();
    for _ in 0..100 {
        if matches!(
            r.observe().await.unwrap(),
            CacheInfo::Replica {
                link: CacheLink::StableSync,
                ..
            }
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(master);
    let mut down = None;
    for _ in 0..100 {
        let observed = r.observe().await.unwrap();
        if matches!(
            observed,
            CacheInfo::Replica {
                link: CacheLink::Connecting,
                ..
            }
        ) {
            down = Some(observed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(down.is_some(), "the replica never reported its link down");
}
