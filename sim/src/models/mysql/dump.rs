//! The dump tool of the simulation: the [`DumpSource`] the simulated Bloodraven image
//! gives `bloodraven backup` in place of `mysqldump`. It logs in to the MySQL model as
//! a client would (the production protocol client), takes one consistent snapshot of its data (the model's
//! `CloneSnapshot`, which copies data and `gtid_executed` together, as
//! `--single-transaction` does), and writes it out in mysqldump's text form, with the
//! `SET @@GLOBAL.GTID_PURGED` line the production code reads the position from.
//!
//! A server that dies during the dump ends the stream with an error, as mysqldump
//! exiting non-zero does.

use std::io;

use bloodraven::production::mysql::client::ClientError;
use bloodraven::production::mysql::wire::command;
use bloodraven::seams::dump::{DumpSource, DumpStream, DumpTarget};
use bloodraven::seams::mysql::{MysqlTarget, MysqlTimeouts};
use futures::future::BoxFuture;

use super::protocol::CloneSnapshot;
use crate::pod::SharedDialer;

/// The database and table the model's rows live in (the counter workload's, and the
/// model's only table).
pub const DUMP_DATABASE: &str = bloodraven::production::mysql::sql::COUNTER_DATABASE;
pub const DUMP_TABLE: &str = "counters";

/// Rows per INSERT statement of the dump.
const ROWS_PER_INSERT: usize = 100;

#[derive(Clone)]
pub struct SimDumpSource {
    dialer: SharedDialer,
}

impl SimDumpSource {
    pub fn new(dialer: SharedDialer) -> Self {
        Self { dialer }
    }
}

/// The snapshot as mysqldump would print it, with one difference: table names are
/// qualified with their database instead of following a `USE`, because the model's
/// SQL front end knows only qualified names. Loading it into the model (a verification's
/// scratch mysqld) runs every statement through its front end.
pub fn render_dump(host: &str, snapshot: &CloneSnapshot) -> String {
    let mut out = format!(
        "-- Bloodraven simulated dump of {host}\n\
         SET @@SESSION.SQL_LOG_BIN= 0;\n\n\
         --\n-- GTID state at the beginning of the backup \n--\n\n\
         SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '{}';\n\n\
         CREATE DATABASE /*!32312 IF NOT EXISTS*/ `{DUMP_DATABASE}`;\n\
         CREATE TABLE /*!32312 IF NOT EXISTS*/ `{DUMP_DATABASE}`.`{DUMP_TABLE}` (\n  `name` varchar(255) NOT NULL,\n  `value` bigint NOT NULL,\n  PRIMARY KEY (`name`)\n) ENGINE=InnoDB;\n",
        snapshot.gtid_executed
    );
    // Extended inserts, as mysqldump writes them (--extended-insert is its default).
    for chunk in snapshot.data.chunks(ROWS_PER_INSERT) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|(name, value)| {
                let name = name.replace('\\', "\\\\").replace('\'', "\\'");
                format!("('{name}',{value})")
            })
            .collect();
        out.push_str(&format!(
            "INSERT INTO `{DUMP_DATABASE}`.`{DUMP_TABLE}` VALUES {};\n",
            rows.join(",")
        ));
    }
    out.push_str("-- Dump completed\n");
    out
}

impl DumpSource for SimDumpSource {
    fn dump(&self, target: &DumpTarget) -> BoxFuture<'static, io::Result<DumpStream>> {
        let connector = super::mysql_connector(self.dialer.clone(), MysqlTimeouts::default());
        let target = target.clone();
        Box::pin(async move {
            let fail = |what: String| io::Error::other(format!("mysqldump: {what}"));
            let session_target = MysqlTarget {
                host: target.host.clone(),
                port: target.port,
                user: target.user.clone(),
                password: target.password.clone(),
            };
            // Logs in over the MySQL protocol with the production client, as mysqldump
            // would; a refused login keeps MySQL's error text.
            let mut conn = connector
                .open(&session_target)
                .await
                .map_err(|e| fail(format!("Got error: {e}")))?;
            // The model's consistent snapshot is its CLONE payload (data and
            // gtid_executed together, as --single-transaction gives).
            let reply = async {
                conn.send_command(command::CLONE, &[]).await?;
                conn.read_reply().await
            }
            .await;
            let snapshot: CloneSnapshot = match reply {
                Ok(payload) => serde_json::from_slice(&payload)
                    .map_err(|e| fail(format!("unreadable snapshot: {e}")))?,
                Err(ClientError::Server(e)) => {
                    return Err(fail(format!("Got error: {}: {}", e.code, e.message)));
                }
                Err(_) => {
                    return Err(fail(
                        "Error 2013: Lost connection to MySQL server during query".to_string(),
                    ));
                }
            };
            let text = render_dump(&target.host, &snapshot);
            Ok(Box::pin(std::io::Cursor::new(text.into_bytes())) as DumpStream)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bloodraven::seams::dump::gtid_from_dump_head;

    #[test]
    fn the_rendered_dump_states_its_gtid_position_as_mysqldump_does() {
        let snapshot = CloneSnapshot {
            data: vec![("main".into(), 42), ("o'brien".into(), 7)],
            gtid_executed: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42".parse().unwrap(),
            source: None,
            accounts: Vec::new(),
        };
        let text = render_dump("h", &snapshot);
        assert_eq!(
            gtid_from_dump_head(&text).as_deref(),
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42")
        );
        assert!(
            text.contains(
                "INSERT INTO `bloodraven_counter`.`counters` VALUES ('main',42),('o\\'brien',7);"
            ),
            "{text}"
        );
    }
}
