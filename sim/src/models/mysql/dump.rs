//! The dump tool of the simulation: the [`DumpSource`] the simulated Bloodraven image
//! gives `bloodraven backup` in place of `mysqldump`. It connects to the MySQL model as
//! a client would, takes one consistent snapshot of its data (the model's
//! `CloneSnapshot`, which copies data and `gtid_executed` together, as
//! `--single-transaction` does), and writes it out in mysqldump's text form, with the
//! `SET @@GLOBAL.GTID_PURGED` line the production code reads the position from.
//!
//! A server that dies during the dump ends the stream with an error, as mysqldump
//! exiting non-zero does.

use std::io;

use bloodraven::seams::dump::{DumpSource, DumpStream, DumpTarget};
use futures::future::BoxFuture;
use tokio::io::BufReader;

use super::protocol::{CloneSnapshot, Request, Response, read_line, write_line};
use crate::pod::SharedDialer;

/// The database and table the model's rows live in (the counter workload's).
pub const DUMP_DATABASE: &str = "counter";
pub const DUMP_TABLE: &str = "counters";

#[derive(Clone)]
pub struct SimDumpSource {
    dialer: SharedDialer,
}

impl SimDumpSource {
    pub fn new(dialer: SharedDialer) -> Self {
        Self { dialer }
    }
}

/// The snapshot as mysqldump would print it.
pub fn render_dump(host: &str, snapshot: &CloneSnapshot) -> String {
    let mut out = format!(
        "-- Bloodraven simulated dump of {host}\n\
         SET @@SESSION.SQL_LOG_BIN= 0;\n\n\
         --\n-- GTID state at the beginning of the backup \n--\n\n\
         SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '{}';\n\n\
         CREATE DATABASE /*!32312 IF NOT EXISTS*/ `{DUMP_DATABASE}`;\n\
         USE `{DUMP_DATABASE}`;\n\
         DROP TABLE IF EXISTS `{DUMP_TABLE}`;\n\
         CREATE TABLE `{DUMP_TABLE}` (\n  `name` varchar(255) NOT NULL,\n  `value` bigint NOT NULL,\n  PRIMARY KEY (`name`)\n) ENGINE=InnoDB;\n",
        snapshot.gtid_executed
    );
    for (name, value) in &snapshot.data {
        let name = name.replace('\\', "\\\\").replace('\'', "\\'");
        out.push_str(&format!(
            "INSERT INTO `{DUMP_TABLE}` VALUES ('{name}',{value});\n"
        ));
    }
    out.push_str("-- Dump completed\n");
    out
}

impl DumpSource for SimDumpSource {
    fn dump(&self, target: &DumpTarget) -> BoxFuture<'static, io::Result<DumpStream>> {
        let dialer = self.dialer.clone();
        let target = target.clone();
        Box::pin(async move {
            let fail = |what: String| io::Error::other(format!("mysqldump: {what}"));
            let stream = dialer.dial(&target.host, target.port).await.map_err(|e| {
                fail(format!(
                    "Got error: 2003: Can't connect to MySQL server on '{}:{}' ({e})",
                    target.host, target.port
                ))
            })?;
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            write_line(
                &mut write,
                &Request::Hello {
                    user: target.user.clone(),
                    password: target.password.clone(),
                },
            )
            .await?;
            match read_line::<_, Response>(&mut read).await? {
                Some(Response::Hello { .. }) => {}
                Some(Response::Error { code, message }) => {
                    return Err(fail(format!("Got error: {code}: {message}")));
                }
                other => return Err(fail(format!("unexpected handshake reply {other:?}"))),
            }
            write_line(&mut write, &Request::CloneSnapshot).await?;
            let snapshot = match read_line::<_, Response>(&mut read).await? {
                Some(Response::Snapshot { snapshot }) => *snapshot,
                Some(Response::Error { code, message }) => {
                    return Err(fail(format!("Got error: {code}: {message}")));
                }
                None => {
                    return Err(fail(
                        "Error 2013: Lost connection to MySQL server during query".to_string(),
                    ));
                }
                other => return Err(fail(format!("unexpected reply {other:?}"))),
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
        assert!(text.contains("INSERT INTO `counters` VALUES ('main',42);"));
        assert!(text.contains("('o\\'brien',7)"), "{text}");
    }
}
