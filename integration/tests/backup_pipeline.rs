//! The backup pipeline on real data, not only in the simulation: a real MariaDB holding
//! generated data is dumped by the production dump seam (`mariadb-dump` standing in for
//! `mysqldump`), streamed by `bloodraven::backup::dump_to_storage` with the production
//! S3 client to a real S3 server (moto), downloaded with its checksum checked, loaded
//! into a fresh scratch MariaDB, and checked with sanity queries. Run by `make
//! test-integration`; a server that cannot be started fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bloodraven::backup::{BackupError, dump_to_storage};
use bloodraven::seams::dump::{DumpCommand, DumpDialect, DumpTarget};
use bloodraven::storage::TransferTuning;
use bloodraven_integration::mariadb::MariaDb;
use bloodraven_integration::s3::{Auth, MotoS3};

const MIB: usize = 1024 * 1024;
const ROWS: u64 = 40_000;

fn mariadb_dump() -> DumpCommand {
    DumpCommand {
        program: "mariadb-dump".into(),
        dialect: DumpDialect::MariaDb,
    }
}

/// Generated data: ROWS rows of about 250 bytes (some 10 MiB of dump, so the upload is
/// multipart with 5 MiB parts), and a row the sanity check looks for.
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
                 INSERT INTO counter.counters VALUES ('main', 42, 'the counter app''s row');"
            )
            .as_bytes(),
        )
        .unwrap();
}

const SANITY: &str = "SELECT value FROM counter.counters WHERE name = 'main';
SELECT COUNT(*), SUM(value), SUM(CRC32(payload)) FROM counter.counters;";

#[tokio::test]
#[ignore = "integration tier: run by `make test-integration` (needs mariadb-server and moto)"]
async fn a_real_dump_goes_up_comes_down_and_loads_into_a_scratch_server() {
    let source = MariaDb::start("source").unwrap_or_else(|e| panic!("MariaDB did not start: {e}"));
    fill(&source);
    let expected = source.run_sql(SANITY.as_bytes()).unwrap();
    let gtid_now = source.run_sql(b"SELECT @@gtid_binlog_pos;").unwrap();
    let s3 = MotoS3::start("bloodraven-pipeline", Auth::Off)
        .unwrap_or_else(|e| panic!("the S3 server did not start: {e}"));
    let storage = s3
        .storage(
            "playground",
            TransferTuning {
                part_size: 5 * MIB,
                ..TransferTuning::default()
            },
        )
        .unwrap();
    storage.check_access().await.unwrap();

    let recorded = dump_to_storage(
        &mariadb_dump(),
        &source.dump_target(),
        &storage,
        "playground/real.sql",
    )
    .await
    .unwrap();
    assert_eq!(recorded.location, "playground/playground/real.sql");
    assert!(
        recorded.size_bytes > 8 * MIB as u64,
        "a multipart-sized dump: {recorded:?}"
    );
    // The position the dump is consistent with is the server's (nothing wrote since).
    assert_eq!(recorded.gtid_executed, gtid_now.trim(), "{recorded:?}");
    assert!(!recorded.gtid_executed.is_empty());

    let mut downloaded = Vec::new();
    storage
        .download(
            "playground/real.sql",
            &mut downloaded,
            Some(&recorded.checksum),
        )
        .await
        .unwrap();
    assert_eq!(downloaded.len() as u64, recorded.size_bytes);

    let scratch =
        MariaDb::start("scratch").unwrap_or_else(|e| panic!("MariaDB did not start: {e}"));
    scratch.run_sql(&downloaded).unwrap();
    let restored = scratch.run_sql(SANITY.as_bytes()).unwrap();
    assert_eq!(restored, expected, "the scratch server holds the same data");
    assert!(restored.starts_with("42\n"), "{restored}");
}

#[tokio::test]
#[ignore = "integration tier: run by `make test-integration` (needs mariadb-server and moto)"]
async fn a_dump_that_fails_leaves_no_object_and_says_why() {
    let s3 = MotoS3::start("bloodraven-pipeline-fail", Auth::Off)
        .unwrap_or_else(|e| panic!("the S3 server did not start: {e}"));
    let storage = s3.storage("playground", TransferTuning::default()).unwrap();
    let source = MariaDb::start("refused").unwrap_or_else(|e| panic!("MariaDB did not start: {e}"));
    // A wrong password: mariadb-dump exits non-zero before writing any data.
    let target = DumpTarget {
        password: "wrong".into(),
        ..source.dump_target()
    };
    let err = dump_to_storage(&mariadb_dump(), &target, &storage, "refused.sql")
        .await
        .unwrap_err();
    // The tool's exit status surfaces through the upload's source: the upload is
    // abandoned, and the message carries the tool's own words.
    assert!(matches!(err, BackupError::Storage(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("no object was created"), "{text}");
    assert!(text.contains("mariadb-dump failed"), "{text}");
    assert!(text.contains("Access denied"), "{text}");
    assert!(
        storage.list("").await.unwrap().is_empty(),
        "no object for a failed dump"
    );
}
