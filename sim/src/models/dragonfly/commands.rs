//! The client protocol: one task per connection reads commands, checks AUTH, and
//! answers the data commands (GET/SET/INCR/DEL), ROLE, INFO replication, REPLICAOF and
//! REPLTAKEOVER; a `DFLYMODEL SYNC` turns the connection into a replication session.

use std::sync::Arc;

use tokio::io::BufReader;

use super::replication::{Link, Role, SessionState, promote, replicate, serve_replica, takeover};
use super::resp::{Reply, read_command, write_reply};
use super::{DRAGONFLY_PORT, DragonflyConfig, JournalOp, Server, text};

fn wrong_args(command: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{}' command",
        command.to_ascii_lowercase()
    ))
}

pub(super) async fn handle_client(
    server: Arc<Server>,
    id: u64,
    stream: turmoil::net::TcpStream,
    peer_ip: String,
) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut authenticated = server.config.requirepass.is_none();
    while let Ok(Some(args)) = read_command(&mut read).await {
        let Some(name) = args.first().map(|a| text(a).to_ascii_uppercase()) else {
            continue;
        };
        if name == "DFLYMODEL" {
            // A replica's sync request: this connection becomes its replication session.
            if !authenticated {
                let _ =
                    write_reply(&mut write, &Reply::error("NOAUTH Authentication required.")).await;
                return;
            }
            let port = args
                .get(2)
                .and_then(|p| text(p).parse().ok())
                .unwrap_or(DRAGONFLY_PORT);
            serve_replica(server, id, read, write, peer_ip, port).await;
            return;
        }
        let reply = if name == "AUTH" {
            let password = match args.len() {
                2 => Some(&args[1]),
                3 => Some(&args[2]),
                _ => None,
            };
            match (password, &server.config.requirepass) {
                (None, _) => wrong_args("auth"),
                (Some(_), None) => Reply::error(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ),
                (Some(given), Some(expected)) if given.as_slice() == expected.as_bytes() => {
                    authenticated = true;
                    Reply::ok()
                }
                (Some(_), Some(_)) => {
                    Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
                }
            }
        } else if !authenticated {
            Reply::error("NOAUTH Authentication required.")
        } else {
            execute(&server, &name, &args).await
        };
        if write_reply(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

async fn execute(server: &Arc<Server>, name: &str, args: &[Vec<u8>]) -> Reply {
    let admin = matches!(
        name,
        "PING" | "INFO" | "ROLE" | "REPLICAOF" | "SLAVEOF" | "CLIENT" | "CONFIG"
    );
    let (is_replica, taken_over) = {
        let state = server.state();
        (matches!(state.role, Role::Replica { .. }), state.taken_over)
    };
    if taken_over && !admin {
        // The master stopped serving regular clients for a takeover (hostile reading:
        // refused with an error, not queued).
        return Reply::error("ERR Can not execute during takeover");
    }
    let is_write = matches!(name, "SET" | "INCR" | "DEL");
    if is_write && is_replica {
        return Reply::error("READONLY You can't write against a read only replica.");
    }
    match name {
        "PING" => match args.get(1) {
            Some(message) => Reply::bulk(message.clone()),
            None => Reply::Simple("PONG".into()),
        },
        "GET" if args.len() == 2 => Reply::Bulk(server.state().data.get(&args[1]).cloned()),
        "SET" if args.len() >= 3 => {
            // Options such as EX/PX are accepted and ignored: the model has no expiry.
            server.write(JournalOp::Set(args[1].clone(), args[2].clone()));
            Reply::ok()
        }
        "INCR" if args.len() == 2 => {
            let current = server.state().data.get(&args[1]).cloned();
            let value = match current {
                None => 0,
                Some(bytes) => match text(&bytes).parse::<i64>() {
                    Ok(v) => v,
                    Err(_) => return Reply::error("ERR value is not an integer or out of range"),
                },
            };
            let Some(next) = value.checked_add(1) else {
                return Reply::error("ERR increment or decrement would overflow");
            };
            server.write(JournalOp::Set(
                args[1].clone(),
                next.to_string().into_bytes(),
            ));
            Reply::Integer(next)
        }
        "DEL" if args.len() >= 2 => {
            let mut removed = 0;
            for key in &args[1..] {
                if server.state().data.contains_key(key) {
                    server.write(JournalOp::Del(key.clone()));
                    removed += 1;
                }
            }
            Reply::Integer(removed)
        }
        "SAVE" if server.snapshots.is_none() => {
            // Real Dragonfly would write to its local --dir; the model keeps no files.
            Reply::error("ERR the model saves snapshots only to an S3 --dir")
        }
        "SAVE" => match server.save_snapshot().await {
            Ok(()) => Reply::ok(),
            Err(err) => Reply::error(format!("ERR {err}")),
        },
        "DBSIZE" => Reply::Integer(i64::try_from(server.state().data.len()).unwrap_or(i64::MAX)),
        "SELECT" => Reply::ok(),
        "CLIENT" => Reply::ok(),
        "ROLE" => role(server),
        "INFO" => {
            let section = args.get(1).map(|s| text(s).to_ascii_lowercase());
            match section.as_deref() {
                None | Some("replication") | Some("all") | Some("everything") => {
                    Reply::bulk(info_replication(server).into_bytes())
                }
                Some(_) => Reply::bulk(Vec::new()),
            }
        }
        "REPLICAOF" | "SLAVEOF" if args.len() == 3 => {
            let (host, port) = (text(&args[1]), text(&args[2]));
            if host.eq_ignore_ascii_case("no") && port.eq_ignore_ascii_case("one") {
                promote(server);
                return Reply::ok();
            }
            let Ok(port) = port.parse::<u16>() else {
                return Reply::error("ERR value is not an integer or out of range");
            };
            replicate(server, host, port);
            Reply::ok()
        }
        "REPLTAKEOVER" if args.len() == 2 || args.len() == 3 => {
            let Ok(timeout_sec) = text(&args[1]).parse::<u64>() else {
                return Reply::error("ERR value is not an integer or out of range");
            };
            takeover(server, timeout_sec).await
        }
        "GET" | "SET" | "INCR" | "DEL" | "REPLICAOF" | "SLAVEOF" | "REPLTAKEOVER" => {
            wrong_args(name)
        }
        _ => Reply::error(format!("ERR unknown command '{}'", text(&args[0]))),
    }
}

fn state_name(config: &DragonflyConfig, stable: bool, full_sync: bool) -> &'static str {
    match (stable, full_sync) {
        (true, _) if config.valkey_compatible => "online",
        (true, _) => "stable_sync",
        (false, true) => "full_sync",
        (false, false) => "preparation",
    }
}

fn role(server: &Server) -> Reply {
    let state = server.state();
    match &state.role {
        Role::Master => Reply::Array(vec![
            Reply::bulk("master"),
            Reply::Array(
                state
                    .sessions
                    .values()
                    .map(|s| {
                        let name = state_name(
                            &server.config,
                            s.state == SessionState::StableSync,
                            s.state == SessionState::FullSync,
                        );
                        Reply::Array(vec![
                            Reply::bulk(s.ip.clone()),
                            Reply::bulk(s.port.to_string()),
                            Reply::bulk(name),
                        ])
                    })
                    .collect(),
            ),
        ]),
        Role::Replica {
            host, port, link, ..
        } => {
            let link_name = match link {
                Link::Connecting => "connecting",
                Link::FullSync => "full_sync",
                Link::StableSync => state_name(&server.config, true, false),
            };
            Reply::Array(vec![
                Reply::bulk(if server.config.valkey_compatible {
                    "slave"
                } else {
                    "replica"
                }),
                Reply::bulk(host.clone()),
                Reply::bulk(port.to_string()),
                Reply::bulk(link_name),
            ])
        }
    }
}

/// `INFO replication` in Dragonfly's layout (no `master_repl_offset` line, unlike Redis).
fn info_replication(server: &Server) -> String {
    let state = server.state();
    let mut out = String::from("# Replication\r\n");
    match &state.role {
        Role::Master => {
            out.push_str("role:master\r\n");
            out.push_str(&format!("connected_slaves:{}\r\n", state.sessions.len()));
            for (index, session) in state.sessions.values().enumerate() {
                let name = state_name(
                    &server.config,
                    session.state == SessionState::StableSync,
                    session.state == SessionState::FullSync,
                );
                let lag = if session.state == SessionState::StableSync {
                    state.offset.saturating_sub(session.acked)
                } else {
                    0
                };
                out.push_str(&format!(
                    "slave{index}:ip={},port={},state={name},lag={lag}\r\n",
                    session.ip, session.port
                ));
            }
            out.push_str(&format!("master_replid:{}\r\n", state.replid));
        }
        Role::Replica {
            host,
            port,
            link,
            last_io,
            synced_offset,
            ..
        } => {
            let role = if server.config.valkey_compatible {
                "slave"
            } else {
                "replica"
            };
            out.push_str(&format!("role:{role}\r\n"));
            out.push_str(&format!("master_host:{host}\r\nmaster_port:{port}\r\n"));
            let up = *link == Link::StableSync;
            out.push_str(&format!(
                "master_link_status:{}\r\n",
                if up { "up" } else { "down" }
            ));
            let ago = last_io
                .map(|t| i64::try_from(t.elapsed().as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(-1);
            out.push_str(&format!("master_last_io_seconds_ago:{ago}\r\n"));
            out.push_str(&format!(
                "master_sync_in_progress:{}\r\n",
                u8::from(*link == Link::FullSync)
            ));
            if let Some(offset) = synced_offset {
                out.push_str(&format!("slave_repl_offset:{offset}\r\n"));
            }
            out.push_str("slave_read_only:1\r\n");
        }
    }
    out
}
