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

/// How long a statement of ours waits for a metadata or global read lock
/// (`lock_wait_timeout`, whole seconds, default one year). The fence's
/// `SET GLOBAL super_read_only = ON` waits for the global read lock behind any client
/// holding `LOCK TABLES ... WRITE`, a long transaction or a commit waiting for a semisync
/// ack (MySQL 8.4 manual, 7.1.8 "Server System Variables", `super_read_only` and
/// `lock_wait_timeout`): it must give up quickly so that the sidecar can kill those
/// clients and try again, rather than be cut off by the request timeout.
pub const LOCK_WAIT_SECONDS: u64 = 1;

/// The SQL mode of every session the operator opens: MySQL 8.4's default mode, spelled
/// out so that a server configured with `NO_BACKSLASH_ESCAPES` cannot change how
/// [`literal`]'s backslash escapes are read (manual 7.1.11 "Server SQL Modes").
pub const SESSION_SQL_MODE: &str = "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,\
    NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";

/// Statements run once on every new connection, before any other.
pub fn session_setup() -> [String; 2] {
    [
        format!("SET SESSION sql_mode = '{SESSION_SQL_MODE}'"),
        format!("SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}"),
    ]
}

/// A MySQL string literal: backslash, quotes, NUL, newlines and Ctrl-Z escaped. Correct
/// only without `NO_BACKSLASH_ESCAPES`, which [`session_setup`] guarantees.
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

/// `SOURCE_RETRY_COUNT = 0` means "retry forever": MySQL's default of 10 attempts,
/// `SOURCE_CONNECT_RETRY` seconds apart, makes the IO thread stop for good after a
/// short outage of the source (manual 15.4.2.3 "CHANGE REPLICATION SOURCE TO
/// Statement"; the count is also the `--replica-net-timeout`-driven reconnects).
pub fn change_source(source: &ReplicationSource) -> String {
    format!(
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST = {}, SOURCE_PORT = {}, SOURCE_USER = {}, \
         SOURCE_PASSWORD = {}, SOURCE_AUTO_POSITION = 1, SOURCE_DELAY = {}, \
         SOURCE_CONNECT_RETRY = {}, SOURCE_RETRY_COUNT = 0, GET_SOURCE_PUBLIC_KEY = 1",
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
/// table exists, write, and restore the fence if it was up. Exactly one transaction is
/// binlogged: `CREATE ... IF NOT EXISTS` is written to the binary log (and gets a GTID)
/// even when the object exists, so the schema statements run with `sql_log_bin = 0`.
pub fn forced_write(key: &str, value: i64, was_fenced: bool) -> Vec<String> {
    let mut statements = vec![
        "SET GLOBAL super_read_only = OFF".to_string(),
        "SET SESSION sql_log_bin = 0".to_string(),
    ];
    statements.extend(COUNTER_SCHEMA.iter().map(|s| s.to_string()));
    statements.push("SET SESSION sql_log_bin = 1".to_string());
    statements.push(counter_set(key, value));
    if was_fenced {
        statements.push("SET GLOBAL super_read_only = ON".to_string());
    }
    statements
}

/// `WAIT_FOR_EXECUTED_GTID_SET` takes whole or fractional seconds, and a timeout of 0
/// means "wait indefinitely" (manual 14.18.2 "Functions Used with Global Transaction
/// Identifiers"): the timeout is rounded up to whole milliseconds and never below one,
/// so that a sub-millisecond or zero budget cannot turn into an endless wait.
pub fn wait_for_executed_gtid_set(set: &GtidSet, timeout: Duration) -> String {
    let millis = timeout.as_nanos().div_ceil(1_000_000).max(1);
    format!(
        "SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {}.{:03})",
        literal(&set.one_line().to_string()),
        millis / 1_000,
        millis % 1_000
    )
}

/// `CLONE INSTANCE` on the recipient (manual 7.6.7.3 "Cloning Remote Data"): the donor
/// must be listed in `clone_valid_donor_list` (a variable of the clone plugin, which
/// `children::mysqld_args` loads at boot: 1193 without it), and the recipient must not be `super_read_only`, so the fence is
/// lowered to `read_only` for the clone (ordinary clients stay refused; the sidecar
/// leaves a server alone while `performance_schema.clone_status` says `In Progress`).
/// After a successful clone the server restarts and boots fenced again from its
/// command line.
pub fn clone_instance(donor: &CloneDonor) -> [String; 3] {
    [
        format!(
            "SET GLOBAL clone_valid_donor_list = {}",
            literal(&format!("{}:{}", donor.host, donor.port))
        ),
        "SET GLOBAL super_read_only = OFF".to_string(),
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

/// The state of the last CLONE on this server (recipient side). The table exists only
/// while the clone plugin is loaded (manual 29.12.19.1 "The clone_status Table").
pub const CLONE_STATUS: &str =
    "SELECT STATE, ERROR_NO, ERROR_MESSAGE FROM performance_schema.clone_status";

/// Only the two flags the fence is about: read even when the rest of the observation
/// (GTID sets, replica status) cannot be read or parsed.
pub const READ_ONLY_FLAGS: &str = "SELECT @@global.read_only, @@global.super_read_only";

/// Events created on a source arrive on a replica with status `REPLICA_SIDE_DISABLED`
/// (`SLAVESIDE_DISABLED` before 8.0.22) and stay so after that replica is promoted
/// (manual 19.5.1.16 "Replication of Invoked Features").
pub const REPLICA_SIDE_DISABLED_EVENTS: &str = "SELECT EVENT_SCHEMA, EVENT_NAME \
    FROM information_schema.EVENTS WHERE STATUS IN ('REPLICA_SIDE_DISABLED', 'SLAVESIDE_DISABLED')";

/// A MySQL identifier in backquotes, a backquote doubled (manual 11.2 "Schema Object
/// Names").
pub fn identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Re-enables one event on a newly promoted primary.
pub fn enable_event(schema: &str, name: &str) -> String {
    format!(
        "ALTER EVENT {}.{} ENABLE",
        identifier(schema),
        identifier(name)
    )
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
             SOURCE_DELAY = 30, SOURCE_CONNECT_RETRY = 1, SOURCE_RETRY_COUNT = 0, \
             GET_SOURCE_PUBLIC_KEY = 1"
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
                "SET GLOBAL super_read_only = OFF".to_string(),
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

    /// Which statements of a sequence are binlogged (get a GTID): everything but SETs,
    /// while `sql_log_bin` is on.
    fn binlogged(statements: &[String]) -> Vec<&String> {
        let mut log_bin = true;
        statements
            .iter()
            .filter(|s| match s.as_str() {
                "SET SESSION sql_log_bin = 0" => {
                    log_bin = false;
                    false
                }
                "SET SESSION sql_log_bin = 1" => {
                    log_bin = true;
                    false
                }
                s => log_bin && !s.starts_with("SET "),
            })
            .collect()
    }

    #[test]
    fn a_forced_write_makes_exactly_one_errant_transaction() {
        for was_fenced in [true, false] {
            let statements = forced_write("chaos-divergent/1", 1, was_fenced);
            let logged = binlogged(&statements);
            assert_eq!(logged.len(), 1, "{statements:#?}");
            assert!(logged[0].starts_with("INSERT INTO bloodraven_counter.counters"));
        }
    }

    #[test]
    fn a_gtid_wait_never_asks_for_an_endless_wait() {
        // WAIT_FOR_EXECUTED_GTID_SET(set, 0) waits indefinitely.
        let set = GtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1").unwrap();
        for (timeout, expected) in [
            (Duration::ZERO, "0.001"),
            (Duration::from_micros(400), "0.001"),
            (Duration::from_micros(1_200), "0.002"),
            (Duration::from_secs(3), "3.000"),
            (Duration::from_millis(61_005), "61.005"),
        ] {
            let statement = wait_for_executed_gtid_set(&set, timeout);
            assert!(
                statement.ends_with(&format!(", {expected})")),
                "{timeout:?}: {statement}"
            );
        }
    }

    #[test]
    fn every_session_reads_backslash_escapes_and_waits_for_locks_briefly() {
        let [mode, lock_wait] = session_setup();
        assert!(mode.starts_with("SET SESSION sql_mode = '"), "{mode}");
        assert!(!mode.contains("NO_BACKSLASH_ESCAPES"), "{mode}");
        assert!(
            mode.contains("STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE"),
            "{mode}"
        );
        assert_eq!(lock_wait, "SET SESSION lock_wait_timeout = 1");
    }

    #[test]
    fn events_are_re_enabled_by_quoted_name() {
        assert_eq!(
            enable_event("shop", "nightly`x"),
            "ALTER EVENT `shop`.`nightly``x` ENABLE"
        );
        assert!(REPLICA_SIDE_DISABLED_EVENTS.contains("'REPLICA_SIDE_DISABLED'"));
        assert!(CLONE_STATUS.contains("performance_schema.clone_status"));
    }
}
