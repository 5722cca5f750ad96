//! MySQL 8 statements, built as text. Values are embedded as escaped string literals
//! because `CHANGE REPLICATION SOURCE` and `CLONE` cannot take placeholders. Pure
//! functions, unit-tested without a server; `production::mysql` sends them.

use std::time::Duration;

use crate::gtid::GtidSet;
use crate::seams::mysql::{
    CloneDonor, REPLICATION_PRIVILEGES, ReadOnlyMode, ReplicationAccount, ReplicationSource,
};

/// The counter app's database: the application account needs privileges on it
/// (the Secret's `app-database`; see docs/install.md).
pub const COUNTER_DATABASE: &str = "bloodraven_counter";

/// The counter app's schema: one key/value table.
pub const COUNTER_SCHEMA: [&str; 2] = [
    "CREATE DATABASE IF NOT EXISTS bloodraven_counter",
    "CREATE TABLE IF NOT EXISTS bloodraven_counter.counters \
     (name VARCHAR(191) NOT NULL PRIMARY KEY, value BIGINT NOT NULL)",
];

pub const OBSERVE: &str = "SELECT @@global.server_uuid, @@global.read_only, \
    @@global.super_read_only, @@global.gtid_executed, @@global.gtid_purged";
pub const SEMISYNC_ENABLED: &str = "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_source_enabled'";
pub const SEMISYNC_STATUS: &str = "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_source_%'";
pub const REPLICA_STATUS: &str = "SHOW REPLICA STATUS";
pub const STOP_REPLICA: &str = "STOP REPLICA";
pub const START_REPLICA: &str = "START REPLICA";
pub const RESET_REPLICA_ALL: &str = "RESET REPLICA ALL";
/// Client connections to kill when fencing: everything but this session, the server's
/// own threads and the binlog dump threads that feed replicas.
pub const KILL_CANDIDATES: &str = "SELECT ID FROM performance_schema.processlist \
    WHERE ID <> CONNECTION_ID() AND USER NOT IN ('system user', 'event_scheduler') \
    AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon')";

/// A MySQL string literal: backslash, quotes, NUL, newlines and Ctrl-Z escaped.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Statements that put the server in `mode`. The order matters: MySQL couples the
/// flags, so lifting goes super_read_only then read_only, fencing the reverse.
pub fn set_read_only(mode: ReadOnlyMode) -> &'static [&'static str] {
    match mode {
        ReadOnlyMode::Writable => &[
            "SET GLOBAL super_read_only = OFF",
            "SET GLOBAL read_only = OFF",
        ],
        ReadOnlyMode::ReadOnly => &[
            "SET GLOBAL read_only = ON",
            "SET GLOBAL super_read_only = OFF",
        ],
        ReadOnlyMode::SuperReadOnly => &["SET GLOBAL super_read_only = ON"],
    }
}

pub fn change_source(source: &ReplicationSource) -> String {
    format!(
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST = {}, SOURCE_PORT = {}, SOURCE_USER = {}, \
         SOURCE_PASSWORD = {}, SOURCE_AUTO_POSITION = 1, SOURCE_DELAY = {}, \
         SOURCE_CONNECT_RETRY = {}, GET_SOURCE_PUBLIC_KEY = 1",
        literal(&source.host),
        source.port,
        literal(&source.user),
        literal(&source.password),
        source.delay_seconds,
        source.connect_retry_seconds.max(1),
    )
}

/// Changes only the delay of the existing channel (MySQL keeps every option not named).
pub fn set_source_delay(seconds: u32) -> String {
    format!("CHANGE REPLICATION SOURCE TO SOURCE_DELAY = {seconds}")
}

/// A write as a SUPER user would make it through read-only: lift super_read_only
/// (read_only stays ON, so ordinary clients remain refused), make sure the counter
/// table exists, write, and restore the fence if it was up.
pub fn forced_write(key: &str, value: i64, was_fenced: bool) -> Vec<String> {
    let mut statements = vec!["SET GLOBAL super_read_only = OFF".to_string()];
    statements.extend(COUNTER_SCHEMA.iter().map(|s| s.to_string()));
    statements.push(counter_set(key, value));
    if was_fenced {
        statements.push("SET GLOBAL super_read_only = ON".to_string());
    }
    statements
}

/// `WAIT_FOR_EXECUTED_GTID_SET` takes whole or fractional seconds.
pub fn wait_for_executed_gtid_set(set: &GtidSet, timeout: Duration) -> String {
    format!(
        "SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {:.3})",
        literal(&set.one_line().to_string()),
        timeout.as_secs_f64()
    )
}

/// The donor must be listed in `clone_valid_donor_list` before `CLONE INSTANCE`.
pub fn clone_instance(donor: &CloneDonor) -> [String; 2] {
    [
        format!(
            "SET GLOBAL clone_valid_donor_list = {}",
            literal(&format!("{}:{}", donor.host, donor.port))
        ),
        format!(
            "CLONE INSTANCE FROM {}@{}:{} IDENTIFIED BY {}",
            literal(&donor.user),
            literal(&donor.host),
            donor.port,
            literal(&donor.password)
        ),
    ]
}

/// `'user'@'%'`: the replication account logs in from any pod address (a site's
/// pod IP changes with every restart).
fn account_name(user: &str) -> String {
    format!("{}@'%'", literal(user))
}

/// Creates the replication account, (re)sets its password from the Secret (so a
/// rotated password takes effect) and grants `REPLICATION_PRIVILEGES` on `*.*`.
pub fn ensure_replication_account(account: &ReplicationAccount) -> [String; 3] {
    let name = account_name(&account.user);
    let password = literal(&account.password);
    [
        format!("CREATE USER IF NOT EXISTS {name} IDENTIFIED BY {password}"),
        format!("ALTER USER {name} IDENTIFIED BY {password}"),
        format!(
            "GRANT {} ON *.* TO {name}",
            REPLICATION_PRIVILEGES.join(", ")
        ),
    ]
}

pub fn kill(connection_id: u64) -> String {
    format!("KILL CONNECTION {connection_id}")
}

/// One transaction: increment (creating the row at 1) and read back under the row lock.
pub fn counter_increment(key: &str) -> [String; 4] {
    [
        "START TRANSACTION".to_string(),
        format!(
            "INSERT INTO bloodraven_counter.counters (name, value) VALUES ({}, 1) \
             ON DUPLICATE KEY UPDATE value = value + 1",
            literal(key)
        ),
        format!(
            "SELECT value FROM bloodraven_counter.counters WHERE name = {} FOR UPDATE",
            literal(key)
        ),
        "COMMIT".to_string(),
    ]
}

pub fn counter_read(key: &str) -> String {
    format!(
        "SELECT value FROM bloodraven_counter.counters WHERE name = {}",
        literal(key)
    )
}

pub fn counter_set(key: &str, value: i64) -> String {
    format!(
        "INSERT INTO bloodraven_counter.counters (name, value) VALUES ({}, {value}) \
         ON DUPLICATE KEY UPDATE value = {value}",
        literal(key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_everything_that_could_end_the_string() {
        assert_eq!(literal("plain"), "'plain'");
        assert_eq!(literal("it's"), "'it\\'s'");
        assert_eq!(literal("a\\b"), "'a\\\\b'");
        assert_eq!(literal("x'; DROP TABLE t; --"), "'x\\'; DROP TABLE t; --'");
        assert_eq!(
            literal("nul\0nl\ncr\r\u{1a}\""),
            "'nul\\0nl\\ncr\\r\\Z\\\"'"
        );
    }

    #[test]
    fn change_source_uses_auto_position_and_escapes_credentials() {
        let source = ReplicationSource {
            host: "mysql-0.mysql.iad.svc".into(),
            port: 3306,
            user: "repl".into(),
            password: "p'w\\d".into(),
            delay_seconds: 30,
            connect_retry_seconds: 0,
        };
        assert_eq!(
            change_source(&source),
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'mysql-0.mysql.iad.svc', SOURCE_PORT = 3306, \
             SOURCE_USER = 'repl', SOURCE_PASSWORD = 'p\\'w\\\\d', SOURCE_AUTO_POSITION = 1, \
             SOURCE_DELAY = 30, SOURCE_CONNECT_RETRY = 1, GET_SOURCE_PUBLIC_KEY = 1"
        );
    }

    #[test]
    fn read_only_statements_respect_mysqls_flag_coupling() {
        assert_eq!(
            set_read_only(ReadOnlyMode::Writable),
            [
                "SET GLOBAL super_read_only = OFF",
                "SET GLOBAL read_only = OFF"
            ]
        );
        assert_eq!(
            set_read_only(ReadOnlyMode::SuperReadOnly),
            ["SET GLOBAL super_read_only = ON"]
        );
        assert_eq!(
            set_read_only(ReadOnlyMode::ReadOnly),
            [
                "SET GLOBAL read_only = ON",
                "SET GLOBAL super_read_only = OFF"
            ]
        );
    }

    #[test]
    fn wait_clone_kill_and_counter_statements() {
        let set = GtidSet::parse(
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n61553741-443a-11f1-8f2e-0242ac120002:3",
        )
        .unwrap();
        assert_eq!(
            wait_for_executed_gtid_set(&set, Duration::from_millis(2500)),
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5, \
             61553741-443a-11f1-8f2e-0242ac120002:3', 2.500)"
        );
        let donor = CloneDonor {
            host: "mysql-0".into(),
            port: 3306,
            user: "clone".into(),
            password: "s'".into(),
        };
        assert_eq!(
            clone_instance(&donor),
            [
                "SET GLOBAL clone_valid_donor_list = 'mysql-0:3306'".to_string(),
                "CLONE INSTANCE FROM 'clone'@'mysql-0':3306 IDENTIFIED BY 's\\''".to_string(),
            ]
        );
        assert_eq!(kill(42), "KILL CONNECTION 42");
        let increment = counter_increment("hits'");
        assert_eq!(increment[0], "START TRANSACTION");
        assert!(
            increment[1]
                .contains("VALUES ('hits\\'', 1) ON DUPLICATE KEY UPDATE value = value + 1")
        );
        assert!(increment[2].ends_with("WHERE name = 'hits\\'' FOR UPDATE"));
        assert_eq!(increment[3], "COMMIT");
        assert_eq!(
            counter_read("k"),
            "SELECT value FROM bloodraven_counter.counters WHERE name = 'k'"
        );
        assert!(KILL_CANDIDATES.contains("'Binlog Dump GTID'"));
        for statement in COUNTER_SCHEMA.iter().chain([&counter_read("k").as_str()]) {
            assert!(statement.contains(COUNTER_DATABASE), "{statement}");
        }
    }

    #[test]
    fn the_replication_account_gets_exactly_its_privileges_with_an_escaped_password() {
        let account = ReplicationAccount {
            user: "repl".into(),
            password: "p'w\\".into(),
        };
        assert_eq!(
            ensure_replication_account(&account),
            [
                "CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'p\\'w\\\\'".to_string(),
                "ALTER USER 'repl'@'%' IDENTIFIED BY 'p\\'w\\\\'".to_string(),
                "GRANT REPLICATION SLAVE, REPLICATION CLIENT, BACKUP_ADMIN ON *.* TO 'repl'@'%'"
                    .to_string(),
            ]
        );
        // A user name cannot break out of its literal either.
        let hostile = ReplicationAccount {
            user: "x'@'%' WITH GRANT OPTION; --".into(),
            password: "p".into(),
        };
        assert!(
            ensure_replication_account(&hostile)[2]
                .ends_with("TO 'x\\'@\\'%\\' WITH GRANT OPTION; --'@'%'")
        );
    }

    #[test]
    fn chaos_statements_change_only_the_delay_and_restore_the_fence() {
        assert_eq!(
            set_source_delay(30),
            "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 30"
        );
        let fenced = forced_write("chaos-divergent/1", 1, true);
        assert_eq!(fenced.first().unwrap(), "SET GLOBAL super_read_only = OFF");
        assert!(
            fenced
                .iter()
                .any(|s| s.contains("CREATE TABLE IF NOT EXISTS"))
        );
        assert!(fenced[fenced.len() - 2].contains("VALUES ('chaos-divergent/1', 1)"));
        assert_eq!(fenced.last().unwrap(), "SET GLOBAL super_read_only = ON");
        let open = forced_write("k", 2, false);
        assert!(open.last().unwrap().contains("VALUES ('k', 2)"));
    }
}
