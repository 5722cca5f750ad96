//! The verification Job's data path on real servers: a real MariaDB's dump
//! (`mariadb-dump` standing in for `mysqldump`) is stored on a real S3 server (moto) by
//! `bloodraven::backup::dump_to_storage`, then `bloodraven::verification::load_and_check`
//! (what `bloodraven verify-backup` runs) streams it back, SHA-256 checked, splits it
//! into statements and loads it with the operator's own MySQL client into a fresh
//! scratch MariaDB, and runs the sanity check. Unlike backup_pipeline.rs, which loads
//! with the `mariadb` command-line client, this is the verification's own loader. Run by
//! `make test-integration`; a server that cannot be started fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bloodraven::api::SanityCheck;
use bloodraven::backup::dump_to_storage;
use bloodraven::production::mysql::MysqlProtocolConnector;
use bloodraven::seams::dump::{DumpCommand, DumpDialect};
use bloodraven::seams::mysql::MysqlTimeouts;
use bloodraven::storage::TransferTuning;
use bloodraven::verification::{VerifyError, load_and_check, wait_for_login};
use bloodraven_integration::mariadb::MariaDb;
use bloodraven_integration::s3::{Auth, MotoS3};

const ROWS: u64 = 20_000;

/// Generated data, a routine and a trigger (so that the dump has `DELIMITER` blocks),
/// quotes, semicolons and comment markers inside values, and the playground's row.
fn fill(source: &MariaDb) {
    source
        .run_sql(
            format!(
                "CREATE DATABASE counter;
                 USE counter;
                 CREATE TABLE counter.counters (name varchar(64) PRIMARY KEY, value bigint NOT NULL,
                                                payload varchar(255) NOT NULL) ENGINE=InnoDB;
                 INSERT INTO counter.counters
                   SELECT concat('row-', seq), seq * 7, repeat(char(65 + seq % 26), 200)
                   FROM seq_1_to_{ROWS};
                 INSERT INTO counter.counters VALUES ('main', 42, 'the counter app''s row; -- not a comment /* nor this */ # nor this');
                 INSERT INTO counter.counters VALUES ('quo\\\\te\"s', 1, 'back\\\\slash; \\'quoted\\'');
                 CREATE TABLE counter.audit (n int NOT NULL);
                 DELIMITER //
                 CREATE TRIGGER counter.count_insert AFTER INSERT ON counter.counters
                   FOR EACH ROW BEGIN INSERT INTO counter.audit VALUES (1); INSERT INTO counter.audit VALUES (2); END //
                 CREATE PROCEDURE counter.total() BEGIN SELECT SUM(value) FROM counter.counters; END //
                 DELIMITER ;"
            )
            .as_bytes(),
        )
        .unwrap();
}

const SANITY: &str = "SELECT value FROM counter.counters WHERE name = 'main';
SELECT COUNT(*), SUM(value), SUM(CRC32(payload)), SUM(CRC32(name)) FROM counter.counters;
SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = 'counter';
SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = 'counter';";

fn connector() -> MysqlProtocolConnector {
    MysqlProtocolConnector::tcp(MysqlTimeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(120),
    })
}

#[tokio::test]
#[ignore = "integration tier: run by `make test-integration` (needs mariadb-server and moto)"]
async fn a_real_dump_loads_with_the_verifications_own_loader_and_passes_its_check() {
    let source = MariaDb::start("vsource").unwrap_or_else(|e| panic!("MariaDB did not start: {e}"));
    fill(&source);
    let expected = source.run_sql(SANITY.as_bytes()).unwrap();
    let s3 = MotoS3::start("bloodraven-verify", Auth::Off)
        .unwrap_or_else(|e| panic!("the S3 server did not start: {e}"));
    let storage = s3.storage("playground", TransferTuning::default()).unwrap();
    let dump = DumpCommand {
        program: "mariadb-dump".into(),
        dialect: DumpDialect::MariaDb,
    };
    let recorded = dump_to_storage(&dump, &source.dump_target(), &storage, "p/real.sql")
        .await
        .unwrap();

    let scratch =
        MariaDb::start("vscratch").unwrap_or_else(|e| panic!("MariaDB did not start: {e}"));
    let mut conn = wait_for_login(&connector(), &scratch.admin, Duration::from_secs(30))
        .await
        .unwrap();
    let check = SanityCheck {
        query: "SELECT value FROM counter.counters WHERE name = 'main'".into(),
        expect_rows: Some(1),
    };
    let verified = load_and_check(
        &storage,
        "p/real.sql",
        &recorded.checksum,
        &mut conn,
        Some(&check),
    )
    .await
    .unwrap();
    assert_eq!(verified.rows_returned, Some(1));
    assert_eq!(verified.bytes, recorded.size_bytes);
    assert!(verified.statements > 10, "{verified:?}");
    let restored = scratch.run_sql(SANITY.as_bytes()).unwrap();
    assert_eq!(
        restored, expected,
        "the scratch server holds the same rows, trigger and routine"
    );
    assert!(restored.starts_with("42\n"), "{restored}");

    // A second scratch server: a check expecting more rows than there are fails, saying
    // how many it got.
    let strict = MariaDb::start("vstrict").unwrap_or_else(|e| panic!("MariaDB did not start: {e}"));
    let mut conn = wait_for_login(&connector(), &strict.admin, Duration::from_secs(30))
        .await
        .unwrap();
    let err = load_and_check(
        &storage,
        "p/real.sql",
        &recorded.checksum,
        &mut conn,
        Some(&SanityCheck {
            expect_rows: Some(2),
            ..check
        }),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::TooFewRows {
                rows: 1,
                expected: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "integration tier: run by `make test-integration` (needs mariadb-server and moto)"]
async fn a_dump_that_does_not_match_its_checksum_fails_the_verification() {
    let source = MariaDb::start("vsum").unwrap_or_else(|e| panic!("MariaDB did not start: {e}"));
    let s3 = MotoS3::start("bloodraven-verify-sum", Auth::Off)
        .unwrap_or_else(|e| panic!("the S3 server did not start: {e}"));
    let storage = s3.storage("playground", TransferTuning::default()).unwrap();
    let dump = DumpCommand {
        program: "mariadb-dump".into(),
        dialect: DumpDialect::MariaDb,
    };
    dump_to_storage(&dump, &source.dump_target(), &storage, "p/sum.sql")
        .await
        .unwrap();
    let scratch =
        MariaDb::start("vsumscratch").unwrap_or_else(|e| panic!("MariaDB did not start: {e}"));
    let mut conn = wait_for_login(&connector(), &scratch.admin, Duration::from_secs(30))
        .await
        .unwrap();
    let err = load_and_check(&storage, "p/sum.sql", &"0".repeat(64), &mut conn, None)
        .await
        .unwrap_err();
    assert!(matches!(err, VerifyError::Storage(_)), "{err}");
}
