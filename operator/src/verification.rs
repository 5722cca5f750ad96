//! `bloodraven verify-backup`: the verification Job's program. It waits for the scratch
//! mysqld beside it, streams the backup's object from S3 (SHA-256 checked) into it
//! statement by statement with the production MySQL client, runs the sanity query and
//! records the verdict on the `MysqlBackupVerification`'s status. Whether that verdict
//! makes the verification Succeeded is the controller's decision
//! (`engine::verification`).

use std::time::Duration;

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::api::{MysqlBackupVerification, SanityCheck, VerificationResult};
use crate::children::backup::{MYSQL_PASSWORD_ENV, S3_ACCESS_KEY_ENV, S3_SECRET_KEY_ENV};
use crate::production::mysql::client::ClientError;
use crate::production::mysql::{Conn, MysqlProtocolConnector};
use crate::seams::mysql::{MysqlError, MysqlTarget};
use crate::seams::object_storage::SharedStorageDialer;
use crate::storage::{ObjectStorage, S3Credentials, S3Target, StorageError, TransferTuning};

/// `bloodraven verify-backup`: arguments from the Job the controller built; secrets from
/// the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    #[arg(long)]
    pub namespace: String,
    #[arg(long)]
    pub group: String,
    #[arg(long)]
    pub profile: String,
    /// The `MysqlBackupVerification` whose status receives the verdict.
    #[arg(long)]
    pub verification: String,
    /// The `MysqlBackup` being verified (for messages).
    #[arg(long)]
    pub backup: String,
    /// The backup's object name under the profile's prefix.
    #[arg(long)]
    pub object: String,
    /// The SHA-256 the backup recorded; the download must match it.
    #[arg(long)]
    pub checksum: String,
    /// The scratch mysqld (the container beside this one).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 3306)]
    pub port: u16,
    #[arg(long, default_value = "root")]
    pub mysql_user: String,
    #[arg(long, env = MYSQL_PASSWORD_ENV, hide_env_values = true)]
    pub mysql_password: String,
    #[arg(long, env = S3_ACCESS_KEY_ENV, hide_env_values = true)]
    pub s3_access_key_id: String,
    #[arg(long, env = S3_SECRET_KEY_ENV, hide_env_values = true)]
    pub s3_secret_access_key: String,
    /// How long to wait for the scratch mysqld to accept a login (it initialises its
    /// data directory first).
    #[arg(long, default_value_t = 600)]
    pub ready_timeout_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("the scratch mysqld at {address} did not accept a login within {waited:?}: {last}")]
    ScratchNotReady {
        address: String,
        waited: Duration,
        last: String,
    },
    #[error("loading the dump failed at statement {number} ({statement}): {message}")]
    Load {
        number: u64,
        statement: String,
        message: String,
    },
    #[error("reading the dump: {0}")]
    Read(std::io::Error),
    #[error("the sanity check {query:?} failed: {message}")]
    SanityQuery { query: String, message: String },
    #[error("the sanity check {query:?} returned {rows} row(s), expected at least {expected}")]
    TooFewRows {
        query: String,
        rows: i64,
        expected: i64,
    },
    #[error("reading MysqlBackupVerification {namespace}/{verification}: {source}")]
    ReadVerification {
        namespace: String,
        verification: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("recording the result on MysqlBackupVerification {namespace}/{verification}: {source}")]
    Record {
        namespace: String,
        verification: String,
        #[source]
        source: Box<kube::Error>,
    },
}

impl VerifyError {
    /// Rows the sanity query returned before the verdict, if it ran.
    fn rows(&self) -> Option<i64> {
        match self {
            VerifyError::TooFewRows { rows, .. } => Some(*rows),
            _ => None,
        }
    }
}

/// What the verification Job needs beyond its arguments.
#[derive(Clone)]
pub struct VerifyDeps {
    pub client: Client,
    /// Logs in to the scratch mysqld.
    pub mysql: MysqlProtocolConnector,
    pub storage: SharedStorageDialer,
}

/// What a passed verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub bytes: u64,
    pub statements: u64,
    /// `None` without a sanity check.
    pub rows_returned: Option<i64>,
}

/// Runs one verification and records its verdict: `result`, `rowsReturned` and, when it
/// failed, `message`. The verdict is recorded in both cases; the error is returned too
/// so that the container exits non-zero.
pub async fn run_verification(
    args: &VerifyArgs,
    deps: &VerifyDeps,
) -> Result<Verified, VerifyError> {
    let api = Api::<MysqlBackupVerification>::namespaced(deps.client.clone(), &args.namespace);
    let result = async {
        let verification =
            api.get(&args.verification)
                .await
                .map_err(|source| VerifyError::ReadVerification {
                    namespace: args.namespace.clone(),
                    verification: args.verification.clone(),
                    source: Box::new(source),
                })?;
        verify(args, deps, verification.spec.sanity_check.as_ref()).await
    }
    .await;
    let patch = match &result {
        Ok(verified) => json!({"status": {
            "result": VerificationResult::Passed,
            "rowsReturned": verified.rows_returned,
        }}),
        Err(err) => json!({"status": {
            "result": VerificationResult::Failed,
            "rowsReturned": err.rows(),
            "message": err.to_string(),
        }}),
    };
    let written = api
        .patch_status(
            &args.verification,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| VerifyError::Record {
            namespace: args.namespace.clone(),
            verification: args.verification.clone(),
            source: Box::new(source),
        });
    let verified = result?;
    written?;
    Ok(verified)
}

async fn verify(
    args: &VerifyArgs,
    deps: &VerifyDeps,
    sanity: Option<&SanityCheck>,
) -> Result<Verified, VerifyError> {
    let group = crate::backup::read_group(&deps.client, &args.namespace, &args.group).await?;
    let profile = crate::backup::find_profile(&group, &args.namespace, &args.profile)?;
    let s3 = profile
        .storage
        .s3
        .as_ref()
        .ok_or_else(|| crate::backup::BackupError::NotS3 {
            group: args.group.clone(),
            profile: args.profile.clone(),
        })?;
    let storage = ObjectStorage::new(
        &S3Target::from_spec(
            s3,
            S3Credentials {
                access_key_id: args.s3_access_key_id.clone(),
                secret_access_key: args.s3_secret_access_key.clone(),
            },
        ),
        deps.storage.clone(),
        TransferTuning::default(),
    )?;
    let target = MysqlTarget {
        host: args.host.clone(),
        port: args.port,
        user: args.mysql_user.clone(),
        password: args.mysql_password.clone(),
    };
    let mut conn = wait_for_login(
        &deps.mysql,
        &target,
        Duration::from_secs(args.ready_timeout_seconds),
    )
    .await?;
    load_and_check(&storage, &args.object, &args.checksum, &mut conn, sanity).await
}

/// Logs in to the scratch mysqld, once a second until `within` has passed: the official
/// image initialises its data directory (and restarts once) before it takes logins.
pub async fn wait_for_login(
    connector: &MysqlProtocolConnector,
    target: &MysqlTarget,
    within: Duration,
) -> Result<Conn, VerifyError> {
    let interval = Duration::from_secs(1);
    let mut waited = Duration::ZERO;
    loop {
        match connector.open(target).await {
            Ok(conn) => return Ok(conn),
            Err(err) if waited >= within => {
                return Err(VerifyError::ScratchNotReady {
                    address: target.address(),
                    waited,
                    last: err.to_string(),
                });
            }
            Err(MysqlError::Server { code, message, .. }) if code == 1045 => {
                // Wrong password: waiting will not fix it.
                return Err(VerifyError::ScratchNotReady {
                    address: target.address(),
                    waited,
                    last: format!("ERROR {code}: {message}"),
                });
            }
            Err(_) => {
                tokio::time::sleep(interval).await;
                waited += interval;
            }
        }
    }
}

/// The data path of a verification, without Kubernetes: stream `object` (its SHA-256
/// checked against `checksum`) into the server behind `conn`, then run the sanity
/// check. The integration tier runs exactly this against a real server and S3 store.
pub async fn load_and_check(
    storage: &ObjectStorage,
    object: &str,
    checksum: &str,
    conn: &mut Conn,
    sanity: Option<&SanityCheck>,
) -> Result<Verified, VerifyError> {
    // The download writes into a bounded pipe that the loader drains: the dump is
    // never held whole in memory. Whichever side fails first ends both.
    let (mut writer, reader) = tokio::io::duplex(PIPE_BYTES);
    let download = async move {
        let stored = storage.download(object, &mut writer, Some(checksum)).await;
        drop(writer);
        stored.map_err(VerifyError::Storage)
    };
    let (stored, statements) = tokio::try_join!(download, load_dump(reader, conn))?;
    let rows_returned = match sanity {
        None => None,
        Some(check) => Some(sanity_check(conn, check).await?),
    };
    Ok(Verified {
        bytes: stored.size,
        statements,
        rows_returned,
    })
}

const PIPE_BYTES: usize = 1 << 20;
/// How much of a failing statement an error message quotes.
const QUOTED_STATEMENT_CHARS: usize = 160;

/// Executes every statement of a dump read from `reader`; returns how many ran.
pub async fn load_dump<R: AsyncRead + Unpin>(
    mut reader: R,
    conn: &mut Conn,
) -> Result<u64, VerifyError> {
    let mut splitter = StatementSplitter::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut number = 0u64;
    loop {
        let n = reader.read(&mut buf).await.map_err(VerifyError::Read)?;
        let statements = if n == 0 {
            splitter.finish()
        } else {
            splitter.push(&buf[..n])
        };
        for statement in statements {
            number += 1;
            conn.query(&statement)
                .await
                .map_err(|err| load_error(number, &statement, &err))?;
        }
        if n == 0 {
            return Ok(number);
        }
    }
}

fn load_error(number: u64, statement: &str, err: &ClientError) -> VerifyError {
    let mut quoted: String = statement.chars().take(QUOTED_STATEMENT_CHARS).collect();
    if quoted.len() < statement.len() {
        quoted.push_str("...");
    }
    VerifyError::Load {
        number,
        statement: quoted,
        message: err.to_string(),
    }
}

/// Runs the sanity query; fails when it errors or returns fewer than `expectRows` rows.
pub async fn sanity_check(conn: &mut Conn, check: &SanityCheck) -> Result<i64, VerifyError> {
    let result = conn
        .query(&check.query)
        .await
        .map_err(|err| VerifyError::SanityQuery {
            query: check.query.clone(),
            message: err.to_string(),
        })?;
    let rows = i64::try_from(result.rows.len()).unwrap_or(i64::MAX);
    match check.expect_rows {
        Some(expected) if rows < expected => Err(VerifyError::TooFewRows {
            query: check.query.clone(),
            rows,
            expected,
        }),
        _ => Ok(rows),
    }
}

/// Splits a dump into statements as the `mysql` client does: at the current delimiter
/// (`;`, or what a `DELIMITER` line sets, as mysqldump does around triggers and
/// routines), never inside quotes, backticks or comments. `--` and `#` comments and
/// plain `/* */` comments are dropped; `/*! ... */` version comments are kept, because
/// the server executes them. Fed in chunks of any size.
#[derive(Debug)]
pub struct StatementSplitter {
    current: Vec<u8>,
    state: SplitState,
    delimiter: Vec<u8>,
    /// The byte before this one, inside comments (to find `*/`).
    previous: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SplitState {
    Code,
    /// Inside a quote of this byte; `escaped` after a backslash.
    Quoted {
        quote: u8,
        escaped: bool,
    },
    LineComment,
    /// `/* */`; `keep` for `/*! */`, whose text the server runs.
    BlockComment {
        keep: bool,
    },
    /// A `DELIMITER` line, up to its end.
    DelimiterLine,
}

impl Default for StatementSplitter {
    fn default() -> Self {
        Self {
            current: Vec::new(),
            state: SplitState::Code,
            delimiter: b";".to_vec(),
            previous: 0,
        }
    }
}

impl StatementSplitter {
    /// Feeds bytes; returns the statements they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut done = Vec::new();
        for &byte in bytes {
            self.step(byte, &mut done);
        }
        done
    }

    /// The end of the dump: the last statement, if it had no delimiter.
    pub fn finish(&mut self) -> Vec<String> {
        let mut done = Vec::new();
        if self.state == SplitState::DelimiterLine {
            self.step(b'\n', &mut done);
        }
        self.emit(self.current.len(), &mut done);
        done
    }

    fn emit(&mut self, end: usize, done: &mut Vec<String>) {
        let text = String::from_utf8_lossy(&self.current[..end])
            .trim()
            .to_string();
        if !text.is_empty() {
            done.push(text);
        }
        self.current.clear();
    }

    fn step(&mut self, byte: u8, done: &mut Vec<String>) {
        match self.state {
            SplitState::Quoted { quote, escaped } => {
                self.current.push(byte);
                self.state = if escaped {
                    SplitState::Quoted {
                        quote,
                        escaped: false,
                    }
                } else if byte == b'\\' && quote != b'`' {
                    SplitState::Quoted {
                        quote,
                        escaped: true,
                    }
                } else if byte == quote {
                    SplitState::Code
                } else {
                    self.state
                };
            }
            SplitState::LineComment => {
                if byte == b'\n' {
                    self.state = SplitState::Code;
                    self.current.push(b'\n');
                }
            }
            SplitState::BlockComment { keep } => {
                if keep {
                    self.current.push(byte);
                }
                if self.previous == b'*' && byte == b'/' {
                    self.state = SplitState::Code;
                    if !keep {
                        self.current.push(b' ');
                    }
                    self.previous = 0;
                } else {
                    self.previous = byte;
                }
            }
            SplitState::DelimiterLine => {
                if byte == b'\n' {
                    let line = String::from_utf8_lossy(&self.current).to_string();
                    // The line starts with the word DELIMITER (`starts_delimiter_line`).
                    let new = line
                        .trim()
                        .get("DELIMITER".len()..)
                        .unwrap_or_default()
                        .trim()
                        .as_bytes()
                        .to_vec();
                    if !new.is_empty() {
                        self.delimiter = new;
                    }
                    self.current.clear();
                    self.state = SplitState::Code;
                } else {
                    self.current.push(byte);
                }
            }
            SplitState::Code => self.code(byte, done),
        }
    }

    fn code(&mut self, byte: u8, done: &mut Vec<String>) {
        self.current.push(byte);
        let len = self.current.len();
        // A comment opener is decided one byte late: `--` needs whitespace after it,
        // `/*` a `!` for a version comment.
        if len >= 3 && self.current[len - 3..len - 1] == *b"--" && byte.is_ascii_whitespace() {
            self.current.truncate(len - 3);
            self.state = SplitState::LineComment;
            if byte == b'\n' {
                self.state = SplitState::Code;
            }
            return;
        }
        if len >= 3 && self.current[len - 3..len - 1] == *b"/*" {
            let keep = byte == b'!';
            if !keep {
                self.current.truncate(len - 3);
            }
            self.previous = byte;
            self.state = SplitState::BlockComment { keep };
            return;
        }
        match byte {
            b'\'' | b'"' | b'`' => {
                self.state = SplitState::Quoted {
                    quote: byte,
                    escaped: false,
                };
                return;
            }
            b'#' => {
                self.current.pop();
                self.state = SplitState::LineComment;
                return;
            }
            _ => {}
        }
        if byte.is_ascii_whitespace() && self.starts_delimiter_line() {
            self.state = SplitState::DelimiterLine;
            if byte == b'\n' {
                self.step(b'\n', done);
            }
            return;
        }
        if self.current.ends_with(&self.delimiter) {
            let end = self.current.len() - self.delimiter.len();
            self.emit(end, done);
        }
    }

    /// The statement so far is the word DELIMITER (a client command, not SQL).
    fn starts_delimiter_line(&self) -> bool {
        let text = String::from_utf8_lossy(&self.current);
        let trimmed = text.trim();
        trimmed.eq_ignore_ascii_case("DELIMITER")
    }
}

/// Production wiring: the in-cluster client, TCP to the scratch mysqld and to S3.
pub fn production_deps(client: Client) -> VerifyDeps {
    VerifyDeps {
        client,
        mysql: MysqlProtocolConnector::tcp(crate::seams::mysql::MysqlTimeouts {
            connect: Duration::from_secs(5),
            // One statement of a dump (an extended INSERT, an index build) can take long.
            request: Duration::from_secs(3600),
        }),
        storage: std::sync::Arc::new(crate::seams::object_storage::TcpDialer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str, chunk: usize) -> Vec<String> {
        let mut splitter = StatementSplitter::default();
        let mut out = Vec::new();
        for part in text.as_bytes().chunks(chunk.max(1)) {
            out.extend(splitter.push(part));
        }
        out.extend(splitter.finish());
        out
    }

    #[test]
    fn dumps_split_into_the_statements_the_mysql_client_would_send() {
        let cases: Vec<(&str, &str, Vec<&str>)> = vec![
            (
                "plain",
                "SELECT 1;SELECT 2;\n",
                vec!["SELECT 1", "SELECT 2"],
            ),
            (
                "no final delimiter",
                "SELECT 1;\nSELECT 2",
                vec!["SELECT 1", "SELECT 2"],
            ),
            (
                "delimiters inside quotes, with escapes and doubled quotes",
                "INSERT INTO t VALUES ('a;b','it\\'s;','x'';y',\"q;\\\"\",`c;d`);",
                vec!["INSERT INTO t VALUES ('a;b','it\\'s;','x'';y',\"q;\\\"\",`c;d`)"],
            ),
            (
                "comments are dropped, version comments kept",
                "-- MySQL dump 10.13\n# note; here\n/* plain; comment */SELECT 1;\n/*!40101 SET NAMES utf8mb4 */;\nSET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ 'u:1-3';\n",
                vec![
                    "SELECT 1",
                    "/*!40101 SET NAMES utf8mb4 */",
                    "SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ 'u:1-3'",
                ],
            ),
            (
                "a double dash without a space is an operator",
                "SELECT 1--1;",
                vec!["SELECT 1--1"],
            ),
            (
                "DELIMITER lines around a trigger",
                "DELIMITER ;;\nCREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW BEGIN SET NEW.a = 1; SET NEW.b = 2; END ;;\nDELIMITER ;\nSELECT 3;\n",
                vec![
                    "CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW BEGIN SET NEW.a = 1; SET NEW.b = 2; END",
                    "SELECT 3",
                ],
            ),
            ("only comments", "-- a\n/* b */\n", vec![]),
            (
                "the simulation's dump",
                "-- Bloodraven simulated dump of h\nSET @@SESSION.SQL_LOG_BIN= 0;\n\n--\n-- GTID state at the beginning of the backup \n--\n\nCREATE DATABASE /*!32312 IF NOT EXISTS*/ `counter`;\nINSERT INTO `counters` VALUES ('o\\'brien',7);\n-- Dump completed\n",
                vec![
                    "SET @@SESSION.SQL_LOG_BIN= 0",
                    "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `counter`",
                    "INSERT INTO `counters` VALUES ('o\\'brien',7)",
                ],
            ),
        ];
        for (name, text, expected) in cases {
            // Every chunk size, so that quotes, comments and delimiters split across reads.
            for chunk in [1, 2, 3, 7, 64, 1 << 16] {
                assert_eq!(split(text, chunk), expected, "{name}, chunk {chunk}");
            }
        }
    }
}
