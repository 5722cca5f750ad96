//! The MySQL model's SQL front end: turns the text of a `COM_QUERY` into a [`Statement`]
//! the model executes. It parses exactly the statement shapes the operator, the sidecar,
//! the counter workload, the chaos faults and the tests send (production/mysql/sql.rs),
//! plus `SET` of any variable; anything else is ERROR 1064 naming the text, as MySQL's
//! parser would refuse it. Pure: no server state here (table-tested below).

use super::server::{ServerError, err};

/// ER_PARSE_ERROR.
pub(super) const PARSE_ERROR: u16 = 1064;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Text(String),
    Number(String),
    /// A bare word: ON, OFF, TRUE, DEFAULT, ...
    Word(String),
}

impl Value {
    pub(super) fn text(&self) -> &str {
        match self {
            Value::Text(t) | Value::Number(t) | Value::Word(t) => t,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    Global,
    Session,
    /// `SET PERSIST` / `PERSIST_ONLY`: global, and written to mysqld-auto.cnf.
    Persist,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Assignment {
    pub(super) scope: Scope,
    pub(super) name: String,
    pub(super) value: Value,
}

/// `ON DUPLICATE KEY UPDATE value = value + n` or `value = n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnDuplicate {
    Add(i64),
    Set(i64),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Statement {
    /// `SELECT @@global.a, @@b, ...`: (scope given, variable name, column label).
    SelectVariables(Vec<(Option<Scope>, String, String)>),
    SelectConnectionId,
    SelectLiteral(String),
    /// `SELECT WAIT_FOR_EXECUTED_GTID_SET('set'[, timeout])`.
    WaitForExecutedGtidSet {
        set: String,
        timeout_seconds: Option<f64>,
    },
    /// `SELECT value FROM db.table WHERE name = 'key' [FOR UPDATE]`.
    SelectCounter {
        table: (String, String),
        key: String,
        for_update: bool,
    },
    /// `SELECT ID FROM performance_schema.processlist WHERE ...`: the client connections
    /// other than the caller's.
    SelectKillCandidates,
    ShowVariables {
        pattern: String,
    },
    ShowStatus {
        pattern: String,
    },
    ShowReplicaStatus,
    Set(Vec<Assignment>),
    StopReplica,
    StartReplica,
    ResetReplicaAll,
    ChangeSource(Vec<(String, Value)>),
    Clone {
        user: String,
        host: String,
        port: u16,
        password: String,
    },
    CreateUser {
        if_not_exists: bool,
        user: String,
        password: String,
    },
    AlterUser {
        user: String,
        password: String,
    },
    Grant {
        privileges: Vec<String>,
        user: String,
    },
    Begin,
    Commit,
    Rollback,
    /// `INSERT INTO db.table VALUES ('key', n), ...`: mysqldump's form, as a loaded
    /// dump sends it. A key that exists is ERROR 1062.
    Insert {
        table: (String, String),
        rows: Vec<(String, i64)>,
    },
    /// `INSERT INTO db.table (name, value) VALUES ('key', n) ON DUPLICATE KEY UPDATE ...`.
    Upsert {
        table: (String, String),
        key: String,
        value: i64,
        on_duplicate: OnDuplicate,
    },
    CreateDatabase {
        name: String,
    },
    CreateTable {
        table: (String, String),
    },
    Kill {
        id: u64,
    },
    /// `PURGE BINARY LOGS BEFORE NOW()`: every binlog so far.
    PurgeBinaryLogs,
    InstallPlugin {
        name: String,
    },
    /// `SELECT STATE, ERROR_NO, ERROR_MESSAGE FROM performance_schema.clone_status`.
    SelectCloneStatus,
    /// `SELECT EVENT_SCHEMA, EVENT_NAME FROM information_schema.EVENTS WHERE ...`: what
    /// a promotion asks to re-enable replica-side disabled events.
    SelectEvents,
    /// `LOCK TABLES db.t [AS alias] READ|WRITE, ...`: (table, is a WRITE lock).
    LockTables(Vec<((String, String), bool)>),
    UnlockTables,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    /// `@@name` or `@@scope.name`, as written after `@@`.
    SystemVariable(String),
    Text(String),
    Number(String),
    Symbol(&'static str),
}

fn tokenize(sql: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    // Open `/*!NNNNN ... */` version comments: their text is SQL to this server (the
    // model is MySQL 8.x, so every version mysqldump writes applies).
    let mut version_comments = 0usize;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            if chars.get(i + 2) == Some(&'!') {
                i += 3;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
                version_comments += 1;
            } else {
                let end = chars[i + 2..]
                    .windows(2)
                    .position(|w| w == ['*', '/'])
                    .ok_or("unterminated comment")?;
                i += end + 4;
            }
        } else if c == '*' && chars.get(i + 1) == Some(&'/') && version_comments > 0 {
            version_comments -= 1;
            i += 2;
        } else if c == '\'' || c == '"' {
            let quote = c;
            let mut text = String::new();
            i += 1;
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err("unterminated string".into());
                };
                i += 1;
                if c == '\\' {
                    let Some(&e) = chars.get(i) else {
                        return Err("unterminated string".into());
                    };
                    i += 1;
                    text.push(match e {
                        '0' => '\0',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'Z' => '\u{1a}',
                        other => other,
                    });
                } else if c == quote {
                    if chars.get(i) == Some(&quote) {
                        text.push(quote);
                        i += 1;
                    } else {
                        break;
                    }
                } else {
                    text.push(c);
                }
            }
            // Adjacent string literals are one string, as in MySQL ('+' 'uuid:1-5').
            match tokens.last_mut() {
                Some(Token::Text(previous)) => previous.push_str(&text),
                _ => tokens.push(Token::Text(text)),
            }
        } else if c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|c| *c == '`')
                .ok_or("unterminated identifier")?;
            tokens.push(Token::Word(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if c.is_ascii_digit() {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                i += 1;
            }
            tokens.push(Token::Number(chars[start..i].iter().collect()));
        } else if c == '@' && chars.get(i + 1) == Some(&'@') {
            let start = i + 2;
            i = start;
            while chars
                .get(i)
                .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            {
                i += 1;
            }
            tokens.push(Token::SystemVariable(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
            {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let symbol = match (two.as_str(), c) {
                ("<>", _) => "<>",
                ("!=", _) => "<>",
                (_, ',') => ",",
                (_, '(') => "(",
                (_, ')') => ")",
                (_, '=') => "=",
                (_, '.') => ".",
                (_, '*') => "*",
                (_, '@') => "@",
                (_, ':') => ":",
                (_, ';') => ";",
                (_, '+') => "+",
                (_, '-') => "-",
                _ => return Err(format!("unexpected character {c:?}")),
            };
            i += symbol.len();
            tokens.push(Token::Symbol(symbol));
        }
    }
    // A trailing semicolon ends the statement.
    if tokens.last() == Some(&Token::Symbol(";")) {
        tokens.pop();
    }
    Ok(tokens)
}

struct Cursor {
    tokens: Vec<Token>,
    at: usize,
}

type Parsed<T> = Result<T, String>;

impl Cursor {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = self.is_word(word);
        if found {
            self.at += 1;
        }
        found
    }

    fn word(&mut self, word: &str) -> Parsed<()> {
        if self.eat_word(word) {
            Ok(())
        } else {
            Err(format!("expected {word}"))
        }
    }

    fn words(&mut self, words: &[&str]) -> Parsed<()> {
        words.iter().try_for_each(|w| self.word(w))
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol);
        if found {
            self.at += 1;
        }
        found
    }

    fn symbol(&mut self, symbol: &str) -> Parsed<()> {
        if self.eat_symbol(symbol) {
            Ok(())
        } else {
            Err(format!("expected '{symbol}'"))
        }
    }

    fn identifier(&mut self) -> Parsed<String> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w),
            _ => Err("expected a name".into()),
        }
    }

    fn text(&mut self) -> Parsed<String> {
        match self.next() {
            Some(Token::Text(t)) => Ok(t),
            _ => Err("expected a string literal".into()),
        }
    }

    fn number<T: std::str::FromStr>(&mut self) -> Parsed<T> {
        let negative = self.eat_symbol("-");
        match self.next() {
            Some(Token::Number(n)) => {
                let n = if negative { format!("-{n}") } else { n };
                n.parse().map_err(|_| format!("bad number {n}"))
            }
            _ => Err("expected a number".into()),
        }
    }

    fn value(&mut self) -> Parsed<Value> {
        let negative = self.eat_symbol("-");
        match self.next() {
            Some(Token::Text(t)) => Ok(Value::Text(t)),
            Some(Token::Number(n)) if negative => Ok(Value::Number(format!("-{n}"))),
            Some(Token::Number(n)) => Ok(Value::Number(n)),
            Some(Token::Word(w)) => Ok(Value::Word(w)),
            _ => Err("expected a value".into()),
        }
    }

    /// `db.table`.
    fn table(&mut self) -> Parsed<(String, String)> {
        let db = self.identifier()?;
        self.symbol(".")?;
        Ok((db, self.identifier()?))
    }

    /// `'user'@'host'` (host ignored: the model has one host pattern per user).
    fn account(&mut self) -> Parsed<String> {
        let user = match self.next() {
            Some(Token::Text(t) | Token::Word(t)) => t,
            _ => return Err("expected an account name".into()),
        };
        if self.eat_symbol("@") {
            match self.next() {
                Some(Token::Text(_) | Token::Word(_)) => {}
                _ => return Err("expected a host".into()),
            }
        }
        Ok(user)
    }

    fn end(&self) -> Parsed<()> {
        if self.at >= self.tokens.len() {
            Ok(())
        } else {
            Err("unexpected text after the statement".into())
        }
    }
}

/// Parses one statement; ERROR 1064 (42000) naming the text when it is not one the
/// model knows.
pub(super) fn parse(sql: &str) -> Result<Statement, ServerError> {
    let syntax = |why: String| {
        err(
            PARSE_ERROR,
            format!(
                "You have an error in your SQL syntax ({why}); check the manual that corresponds to your MySQL server version for the right syntax to use near '{}'",
                sql.chars().take(80).collect::<String>()
            ),
        )
    };
    let tokens = tokenize(sql).map_err(syntax)?;
    let mut c = Cursor { tokens, at: 0 };
    let statement = statement(&mut c).map_err(syntax)?;
    Ok(statement)
}

fn statement(c: &mut Cursor) -> Parsed<Statement> {
    let first = c.identifier().map_err(|_| "empty statement".to_string())?;
    let statement = match first.to_ascii_uppercase().as_str() {
        "SELECT" => return select(c),
        "SHOW" => show(c)?,
        "SET" => Statement::Set(assignments(c)?),
        "STOP" => {
            c.word("REPLICA")?;
            Statement::StopReplica
        }
        "START" if c.eat_word("TRANSACTION") => Statement::Begin,
        "START" => {
            c.word("REPLICA")?;
            Statement::StartReplica
        }
        "BEGIN" => Statement::Begin,
        "COMMIT" => Statement::Commit,
        "ROLLBACK" => Statement::Rollback,
        "RESET" => {
            c.words(&["REPLICA", "ALL"])?;
            Statement::ResetReplicaAll
        }
        "CHANGE" => {
            c.words(&["REPLICATION", "SOURCE", "TO"])?;
            let mut options = Vec::new();
            loop {
                let name = c.identifier()?.to_ascii_uppercase();
                c.symbol("=")?;
                options.push((name, c.value()?));
                if !c.eat_symbol(",") {
                    break;
                }
            }
            Statement::ChangeSource(options)
        }
        "CLONE" => {
            c.words(&["INSTANCE", "FROM"])?;
            let user = c.text()?;
            c.symbol("@")?;
            let host = c.text()?;
            c.symbol(":")?;
            let port = c.number()?;
            c.words(&["IDENTIFIED", "BY"])?;
            let password = c.text()?;
            if c.eat_word("REQUIRE") {
                c.eat_word("NO");
                c.word("SSL")?;
            }
            Statement::Clone {
                user,
                host,
                port,
                password,
            }
        }
        "CREATE" if c.eat_word("USER") => {
            let if_not_exists = if_not_exists(c)?;
            let user = c.account()?;
            c.words(&["IDENTIFIED", "BY"])?;
            Statement::CreateUser {
                if_not_exists,
                user,
                password: c.text()?,
            }
        }
        "CREATE" if c.eat_word("DATABASE") || c.eat_word("SCHEMA") => {
            if_not_exists(c)?;
            Statement::CreateDatabase {
                name: c.identifier()?,
            }
        }
        "CREATE" => {
            c.word("TABLE")?;
            if_not_exists(c)?;
            let table = c.table()?;
            // The column list is not interpreted: the model has one table shape.
            c.at = c.tokens.len();
            Statement::CreateTable { table }
        }
        "ALTER" => {
            c.word("USER")?;
            let user = c.account()?;
            c.words(&["IDENTIFIED", "BY"])?;
            Statement::AlterUser {
                user,
                password: c.text()?,
            }
        }
        "GRANT" => {
            let mut privileges = Vec::new();
            let mut current: Vec<String> = Vec::new();
            loop {
                match c.next() {
                    Some(Token::Word(w)) if w.eq_ignore_ascii_case("ON") => break,
                    Some(Token::Word(w)) => current.push(w.to_ascii_uppercase()),
                    Some(Token::Symbol(",")) => privileges.push(current.split_off(0).join(" ")),
                    _ => return Err("expected privileges".into()),
                }
            }
            privileges.push(current.join(" "));
            c.symbol("*")?;
            c.symbol(".")?;
            c.symbol("*")?;
            c.word("TO")?;
            Statement::Grant {
                privileges,
                user: c.account()?,
            }
        }
        "INSERT" => {
            c.word("INTO")?;
            let table = c.table()?;
            if c.eat_word("VALUES") {
                let mut rows = Vec::new();
                loop {
                    c.symbol("(")?;
                    let key = c.text()?;
                    c.symbol(",")?;
                    let value = c.number()?;
                    c.symbol(")")?;
                    rows.push((key, value));
                    if !c.eat_symbol(",") {
                        break;
                    }
                }
                c.end()?;
                return Ok(Statement::Insert { table, rows });
            }
            c.symbol("(")?;
            c.word("name")?;
            c.symbol(",")?;
            c.word("value")?;
            c.symbol(")")?;
            c.word("VALUES")?;
            c.symbol("(")?;
            let key = c.text()?;
            c.symbol(",")?;
            let value = c.number()?;
            c.symbol(")")?;
            c.words(&["ON", "DUPLICATE", "KEY", "UPDATE", "value"])?;
            c.symbol("=")?;
            let on_duplicate = if c.eat_word("value") {
                c.symbol("+")?;
                OnDuplicate::Add(c.number()?)
            } else {
                OnDuplicate::Set(c.number()?)
            };
            Statement::Upsert {
                table,
                key,
                value,
                on_duplicate,
            }
        }
        "KILL" => {
            c.eat_word("CONNECTION");
            Statement::Kill { id: c.number()? }
        }
        "PURGE" => {
            if !c.eat_word("BINARY") {
                c.eat_word("MASTER");
            }
            c.words(&["LOGS", "BEFORE", "NOW"])?;
            c.symbol("(")?;
            c.symbol(")")?;
            Statement::PurgeBinaryLogs
        }
        "INSTALL" => {
            c.word("PLUGIN")?;
            let name = c.identifier()?;
            c.word("SONAME")?;
            c.text()?;
            Statement::InstallPlugin { name }
        }
        "LOCK" => {
            if !c.eat_word("TABLES") {
                c.word("TABLE")?;
            }
            let mut tables = Vec::new();
            loop {
                let table = c.table()?;
                if c.eat_word("AS") {
                    c.identifier()?;
                }
                let write = if c.eat_word("WRITE") {
                    true
                } else {
                    c.word("READ")?;
                    c.eat_word("LOCAL");
                    false
                };
                tables.push((table, write));
                if !c.eat_symbol(",") {
                    break;
                }
            }
            Statement::LockTables(tables)
        }
        "UNLOCK" => {
            if !c.eat_word("TABLES") {
                c.word("TABLE")?;
            }
            Statement::UnlockTables
        }
        other => return Err(format!("unknown statement {other}")),
    };
    c.end()?;
    Ok(statement)
}

fn if_not_exists(c: &mut Cursor) -> Parsed<bool> {
    if c.eat_word("IF") {
        c.words(&["NOT", "EXISTS"])?;
        Ok(true)
    } else {
        Ok(false)
    }
}

fn scope_of(word: &str) -> Option<Scope> {
    match word.to_ascii_uppercase().as_str() {
        "GLOBAL" => Some(Scope::Global),
        "SESSION" | "LOCAL" => Some(Scope::Session),
        "PERSIST" | "PERSIST_ONLY" => Some(Scope::Persist),
        _ => None,
    }
}

/// `@@global.name` -> (Some(Global), name); `@@name` -> (None, name).
fn split_system_variable(text: &str) -> (Option<Scope>, String) {
    match text.split_once('.') {
        Some((scope, name)) if scope_of(scope).is_some() => (scope_of(scope), name.to_string()),
        _ => (None, text.to_string()),
    }
}

fn assignments(c: &mut Cursor) -> Parsed<Vec<Assignment>> {
    let mut list = Vec::new();
    loop {
        let (scope, name) = match c.next() {
            Some(Token::SystemVariable(v)) => {
                let (scope, name) = split_system_variable(&v);
                (scope.unwrap_or(Scope::Session), name)
            }
            Some(Token::Word(w)) => match scope_of(&w) {
                Some(scope) => (scope, c.identifier()?),
                None => (Scope::Session, w),
            },
            _ => return Err("expected a variable".into()),
        };
        c.symbol("=")?;
        list.push(Assignment {
            scope,
            name: name.to_ascii_lowercase(),
            value: c.value()?,
        });
        if !c.eat_symbol(",") {
            return Ok(list);
        }
    }
}

fn show(c: &mut Cursor) -> Parsed<Statement> {
    if c.eat_word("REPLICA") || c.eat_word("SLAVE") {
        c.word("STATUS")?;
        return Ok(Statement::ShowReplicaStatus);
    }
    if !c.eat_word("GLOBAL") {
        c.eat_word("SESSION");
    }
    let variables = if c.eat_word("VARIABLES") {
        true
    } else {
        c.word("STATUS")?;
        false
    };
    let pattern = if c.eat_word("LIKE") {
        c.text()?
    } else {
        "%".into()
    };
    Ok(if variables {
        Statement::ShowVariables { pattern }
    } else {
        Statement::ShowStatus { pattern }
    })
}

fn select(c: &mut Cursor) -> Parsed<Statement> {
    let statement = match c.peek().cloned() {
        Some(Token::SystemVariable(_)) => {
            let mut variables = Vec::new();
            loop {
                let Some(Token::SystemVariable(v)) = c.next() else {
                    return Err("expected @@variable".into());
                };
                let (scope, name) = split_system_variable(&v);
                variables.push((scope, name.to_ascii_lowercase(), format!("@@{v}")));
                if !c.eat_symbol(",") {
                    break;
                }
            }
            Statement::SelectVariables(variables)
        }
        Some(Token::Number(n)) => {
            c.next();
            Statement::SelectLiteral(n)
        }
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("CONNECTION_ID") => {
            c.next();
            c.symbol("(")?;
            c.symbol(")")?;
            Statement::SelectConnectionId
        }
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("WAIT_FOR_EXECUTED_GTID_SET") => {
            c.next();
            c.symbol("(")?;
            let set = c.text()?;
            let timeout_seconds = if c.eat_symbol(",") {
                Some(c.number::<f64>()?)
            } else {
                None
            };
            c.symbol(")")?;
            Statement::WaitForExecutedGtidSet {
                set,
                timeout_seconds,
            }
        }
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("ID") => {
            c.next();
            c.word("FROM")?;
            let table = c.table()?;
            if !table.0.eq_ignore_ascii_case("performance_schema")
                || !table.1.eq_ignore_ascii_case("processlist")
            {
                return Err(format!("unknown table {}.{}", table.0, table.1));
            }
            // The WHERE clause production sends excludes the caller, system threads and
            // binlog dumps; the model's client list holds exactly the rest.
            c.at = c.tokens.len();
            Statement::SelectKillCandidates
        }
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("STATE") => {
            c.next();
            for column in ["ERROR_NO", "ERROR_MESSAGE"] {
                c.symbol(",")?;
                c.word(column)?;
            }
            c.word("FROM")?;
            let table = c.table()?;
            if !table.0.eq_ignore_ascii_case("performance_schema")
                || !table.1.eq_ignore_ascii_case("clone_status")
            {
                return Err(format!("unknown table {}.{}", table.0, table.1));
            }
            Statement::SelectCloneStatus
        }
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("EVENT_SCHEMA") => {
            c.next();
            c.symbol(",")?;
            c.word("EVENT_NAME")?;
            c.word("FROM")?;
            let table = c.table()?;
            if !table.0.eq_ignore_ascii_case("information_schema")
                || !table.1.eq_ignore_ascii_case("EVENTS")
            {
                return Err(format!("unknown table {}.{}", table.0, table.1));
            }
            // The model has no event scheduler objects: whatever the WHERE clause
            // selects, the answer is no rows.
            c.at = c.tokens.len();
            Statement::SelectEvents
        }
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("value") => {
            c.next();
            c.word("FROM")?;
            let table = c.table()?;
            c.word("WHERE")?;
            c.word("name")?;
            c.symbol("=")?;
            let key = c.text()?;
            let for_update = c.eat_word("FOR");
            if for_update {
                c.word("UPDATE")?;
            }
            Statement::SelectCounter {
                table,
                key,
                for_update,
            }
        }
        _ => return Err("unsupported SELECT".into()),
    };
    c.end()?;
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bloodraven::gtid::GtidSet;
    use bloodraven::production::mysql::sql;
    use bloodraven::seams::mysql::{
        CloneDonor, ReadOnlyMode, ReplicationAccount, ReplicationSource,
    };
    use std::time::Duration;

    #[test]
    fn every_statement_production_sends_parses() {
        let source = ReplicationSource {
            host: "mysql-0.mysql.iad.svc".into(),
            port: 3306,
            user: "repl".into(),
            password: "p'w\\d".into(),
            delay_seconds: 30,
            connect_retry_seconds: 2,
        };
        let donor = CloneDonor {
            host: "h".into(),
            port: 3306,
            user: "u".into(),
            password: "s'".into(),
        };
        let account = ReplicationAccount {
            user: "repl".into(),
            password: "x".into(),
        };
        let set = GtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5").unwrap();
        let mut statements: Vec<String> = vec![
            sql::OBSERVE.into(),
            sql::SEMISYNC_ENABLED.into(),
            sql::SEMISYNC_STATUS.into(),
            sql::REPLICA_STATUS.into(),
            sql::STOP_REPLICA.into(),
            sql::START_REPLICA.into(),
            sql::RESET_REPLICA_ALL.into(),
            sql::KILL_CANDIDATES.into(),
            sql::CLONE_STATUS.into(),
            sql::READ_ONLY_FLAGS.into(),
            sql::REPLICA_SIDE_DISABLED_EVENTS.into(),
            sql::change_source(&source),
            sql::set_source_delay(5),
            sql::wait_for_executed_gtid_set(&set, Duration::from_millis(1500)),
            sql::kill(9),
            sql::counter_read("k"),
            sql::counter_set("k", 3),
            "ROLLBACK".into(),
        ];
        statements.extend(sql::COUNTER_SCHEMA.iter().map(|s| s.to_string()));
        statements.extend(sql::clone_instance(&donor));
        statements.extend(sql::ensure_replication_account(&account));
        statements.extend(sql::counter_increment("k'"));
        statements.extend(sql::forced_write("k", 1, true));
        for mode in [
            ReadOnlyMode::Writable,
            ReadOnlyMode::ReadOnly,
            ReadOnlyMode::SuperReadOnly,
        ] {
            statements.extend(sql::set_read_only(mode).iter().map(|s| s.to_string()));
        }
        for statement in statements {
            assert!(
                parse(&statement).is_ok(),
                "{statement}: {:?}",
                parse(&statement)
            );
        }
    }

    #[test]
    fn statements_mean_what_they_say() {
        assert_eq!(
            parse(&sql::change_source(&ReplicationSource {
                host: "h".into(),
                port: 1,
                user: "u".into(),
                password: "it's".into(),
                delay_seconds: 3,
                connect_retry_seconds: 4,
            }))
            .unwrap(),
            Statement::ChangeSource(vec![
                ("SOURCE_HOST".into(), Value::Text("h".into())),
                ("SOURCE_PORT".into(), Value::Number("1".into())),
                ("SOURCE_USER".into(), Value::Text("u".into())),
                ("SOURCE_PASSWORD".into(), Value::Text("it's".into())),
                ("SOURCE_AUTO_POSITION".into(), Value::Number("1".into())),
                ("SOURCE_DELAY".into(), Value::Number("3".into())),
                ("SOURCE_CONNECT_RETRY".into(), Value::Number("4".into())),
                ("SOURCE_RETRY_COUNT".into(), Value::Number("0".into())),
                ("GET_SOURCE_PUBLIC_KEY".into(), Value::Number("1".into())),
            ])
        );
        assert_eq!(
            parse(&sql::counter_increment("a'b")[1]).unwrap(),
            Statement::Upsert {
                table: ("bloodraven_counter".into(), "counters".into()),
                key: "a'b".into(),
                value: 1,
                on_duplicate: OnDuplicate::Add(1),
            }
        );
        assert_eq!(
            parse("SET GLOBAL super_read_only = ON, SESSION lock_wait_timeout = 2, @@global.rpl_semi_sync_source_enabled = 1, sql_mode = ''").unwrap(),
            Statement::Set(vec![
                Assignment { scope: Scope::Global, name: "super_read_only".into(), value: Value::Word("ON".into()) },
                Assignment { scope: Scope::Session, name: "lock_wait_timeout".into(), value: Value::Number("2".into()) },
                Assignment { scope: Scope::Global, name: "rpl_semi_sync_source_enabled".into(), value: Value::Number("1".into()) },
                Assignment { scope: Scope::Session, name: "sql_mode".into(), value: Value::Text(String::new()) },
            ])
        );
        assert_eq!(
            parse(sql::OBSERVE).unwrap(),
            Statement::SelectVariables(
                [
                    "server_uuid",
                    "read_only",
                    "super_read_only",
                    "gtid_executed",
                    "gtid_purged"
                ]
                .iter()
                .map(|n| (Some(Scope::Global), n.to_string(), format!("@@global.{n}")))
                .collect()
            )
        );
        assert_eq!(
            parse(
                &sql::ensure_replication_account(&ReplicationAccount {
                    user: "repl".into(),
                    password: "x".into()
                })[2]
            )
            .unwrap(),
            Statement::Grant {
                privileges: vec![
                    "REPLICATION SLAVE".into(),
                    "REPLICATION CLIENT".into(),
                    "BACKUP_ADMIN".into()
                ],
                user: "repl".into(),
            }
        );
        assert_eq!(parse("KILL 7;").unwrap(), Statement::Kill { id: 7 });
        assert_eq!(
            parse("LOCK TABLES bloodraven_counter.counters AS c WRITE, a.b READ LOCAL").unwrap(),
            Statement::LockTables(vec![
                (("bloodraven_counter".into(), "counters".into()), true),
                (("a".into(), "b".into()), false),
            ])
        );
        assert_eq!(parse("unlock table").unwrap(), Statement::UnlockTables);
        assert_eq!(
            parse("SELECT WAIT_FOR_EXECUTED_GTID_SET('x')").unwrap(),
            Statement::WaitForExecutedGtidSet {
                set: "x".into(),
                timeout_seconds: None
            }
        );
    }

    #[test]
    fn a_loaded_dump_parses_with_its_version_comments_and_extended_inserts() {
        assert_eq!(
            parse("CREATE DATABASE /*!32312 IF NOT EXISTS*/ `bloodraven_counter`").unwrap(),
            Statement::CreateDatabase {
                name: "bloodraven_counter".into()
            }
        );
        assert_eq!(
            parse("CREATE TABLE /*!32312 IF NOT EXISTS*/ `bloodraven_counter`.`counters` (\n  `name` varchar(255) NOT NULL /* the key */,\n  PRIMARY KEY (`name`)\n) ENGINE=InnoDB").unwrap(),
            Statement::CreateTable {
                table: ("bloodraven_counter".into(), "counters".into())
            }
        );
        // Adjacent literals are one string, as mysqldump's GTID line relies on.
        assert_eq!(
            parse("SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ 'u:1-3'").unwrap(),
            Statement::Set(vec![Assignment {
                scope: Scope::Global,
                name: "gtid_purged".into(),
                value: Value::Text("+u:1-3".into()),
            }])
        );
        assert_eq!(
            parse("INSERT INTO `bloodraven_counter`.`counters` VALUES ('a',1),('o\\'b',-2)")
                .unwrap(),
            Statement::Insert {
                table: ("bloodraven_counter".into(), "counters".into()),
                rows: vec![("a".into(), 1), ("o'b".into(), -2)],
            }
        );
        let (code, _) = parse("SELECT 1 /* unterminated").unwrap_err();
        assert_eq!(code, PARSE_ERROR);
    }

    #[test]
    fn anything_else_is_a_1064_naming_the_text() {
        for bad in [
            "",
            "DROP DATABASE bloodraven_counter",
            "SELECT * FROM t",
            "SET GLOBAL read_only",
            "STOP REPLICA now",
            "INSERT INTO t VALUES (1)",
            "SELECT 'unterminated",
        ] {
            let (code, message) = parse(bad).unwrap_err();
            assert_eq!(code, PARSE_ERROR, "{bad}");
            assert!(
                message.contains(&bad.chars().take(20).collect::<String>()),
                "{message}"
            );
        }
    }
}
