//! Dragonfly's replication link, both sides: the replica connects, full-syncs a
//! snapshot, then applies and acks the master's journal stream; the master serves each
//! replica's session, pings it, and drains for a `REPLTAKEOVER` (the replica is
//! promoted, the old master shuts down). `REPLICAOF NO ONE` promotes in place.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::resp::{Reply, read_frame, write_command, write_reply};
use super::{JournalOp, Server, new_replid, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    Connecting,
    FullSync,
    StableSync,
}

pub(super) enum Role {
    Master,
    Replica {
        host: String,
        port: u16,
        link: Link,
        task: AbortHandle,
        control: mpsc::UnboundedSender<TakeoverRequest>,
        last_io: Option<Instant>,
        /// Applied offset; `None` until the first full sync finished.
        synced_offset: Option<u64>,
    },
}

pub(super) struct TakeoverRequest {
    timeout_sec: u64,
    reply: oneshot::Sender<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionState {
    Preparation,
    FullSync,
    StableSync,
}

pub(super) struct ReplicaSession {
    pub(super) ip: String,
    pub(super) port: u16,
    pub(super) state: SessionState,
    pub(super) acked: u64,
}
/// `REPLICAOF NO ONE` (also the end of a successful takeover and of a broken replication
/// under `--break_replication_on_master_restart`): keep the data, become a master.
/// On a master it changes nothing (as in Redis and Dragonfly: the data set, and so the
/// replication id, stay the same).
pub(super) fn promote(server: &Server) {
    let mut state = server.state();
    let Role::Replica { task, .. } = &state.role else {
        return;
    };
    task.abort();
    state.role = Role::Master;
    state.replid = new_replid(&server.host);
}

/// `REPLICAOF host port`: (re)start replication; the data is replaced at full sync.
pub(super) fn replicate(server: &Arc<Server>, host: String, port: u16) {
    let (control, requests) = mpsc::unbounded_channel();
    let task = server.spawn(replica_loop(server.clone(), host.clone(), port, requests));
    let mut state = server.state();
    if let Role::Replica { task, .. } = &state.role {
        task.abort();
    }
    state.sessions.clear();
    state.role = Role::Replica {
        host,
        port,
        link: Link::Connecting,
        task,
        control,
        last_io: None,
        synced_offset: None,
    };
}

pub(super) async fn takeover(server: &Arc<Server>, timeout_sec: u64) -> Reply {
    let (reply, answer) = oneshot::channel();
    {
        let state = server.state();
        let Role::Replica { link, control, .. } = &state.role else {
            return Reply::error("ERR Already a master instance");
        };
        if *link != Link::StableSync {
            return Reply::error("ERR Replica is not in stable sync");
        }
        if control
            .send(TakeoverRequest { timeout_sec, reply })
            .is_err()
        {
            return Reply::error("ERR Takeover failed!");
        }
    }
    // The master answers within its timeout; allow one extra second for the round trip.
    let limit = Duration::from_secs(timeout_sec) + Duration::from_secs(1);
    match tokio::time::timeout(limit, answer).await {
        Ok(Ok(true)) => {
            promote(server);
            Reply::ok()
        }
        _ => Reply::error("ERR Takeover failed!"),
    }
}

fn set_link(server: &Server, new_link: Link) {
    if let Role::Replica { link, .. } = &mut server.state().role {
        *link = new_link;
    }
}

fn touch(server: &Server, offset: Option<u64>) {
    if let Role::Replica {
        last_io,
        synced_offset,
        ..
    } = &mut server.state().role
    {
        *last_io = Some(Instant::now());
        if offset.is_some() {
            *synced_offset = offset;
        }
    }
}

/// Forwards frames read from a replication socket into a channel (reads are not
/// cancel-safe, so they run in their own task).
fn frames(
    server: &Server,
    mut read: BufReader<OwnedReadHalf>,
) -> (mpsc::UnboundedReceiver<Reply>, AbortOnDrop) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = server.spawn(async move {
        while let Ok(Some(frame)) = read_frame(&mut read).await {
            if tx.send(frame).is_err() {
                return;
            }
        }
    });
    (rx, AbortOnDrop(handle))
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn bulk_text(reply: Option<&Reply>) -> Option<String> {
    match reply {
        Some(Reply::Bulk(Some(bytes))) => Some(text(bytes)),
        _ => None,
    }
}

/// The replica side: connect, full sync, then apply the journal stream and ack it.
async fn replica_loop(
    server: Arc<Server>,
    host: String,
    port: u16,
    mut takeovers: mpsc::UnboundedReceiver<TakeoverRequest>,
) {
    loop {
        set_link(&server, Link::Connecting);
        if replicate_once(&server, &host, port, &mut takeovers).await == Some(true) {
            return;
        }
        tokio::time::sleep(server.config.reconnect_interval).await;
    }
}

/// One replication connection; `Some(true)` when this replica became master and the loop
/// must end.
async fn replicate_once(
    server: &Arc<Server>,
    host: &str,
    port: u16,
    takeovers: &mut mpsc::UnboundedReceiver<TakeoverRequest>,
) -> Option<bool> {
    let timeout = server.config.replication_timeout;
    let stream = tokio::time::timeout(Duration::from_secs(2), server.dialer.dial(host, port))
        .await
        .ok()?
        .ok()?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    if let Some(password) = &server.config.masterauth {
        write_command(&mut write, &[b"AUTH", password.as_bytes()])
            .await
            .ok()?;
        match tokio::time::timeout(timeout, read_frame(&mut read)).await {
            Ok(Ok(Some(Reply::Simple(_)))) => {}
            _ => return None,
        }
    }
    let my_port = server.config.port.to_string();
    write_command(&mut write, &[b"DFLYMODEL", b"SYNC", my_port.as_bytes()])
        .await
        .ok()?;
    set_link(server, Link::FullSync);
    let (mut incoming, _reader) = frames(server, read);
    // Full sync: ["FULLSYNC", replid, offset, k1, v1, ...].
    let first = tokio::time::timeout(timeout, incoming.recv())
        .await
        .ok()??;
    let Reply::Array(items) = first else {
        return None;
    };
    if bulk_text(items.first()).as_deref() != Some("FULLSYNC") {
        return None;
    }
    let master_replid = bulk_text(items.get(1))?;
    let mut offset: u64 = bulk_text(items.get(2))?.parse().ok()?;
    {
        let mut state = server.state();
        let restarted = state
            .master_replid
            .as_ref()
            .is_some_and(|known| *known != master_replid);
        if restarted && server.config.break_replication_on_master_restart {
            drop(state);
            tracing::warn!(host = %server.host, "master restarted: breaking replication to keep data");
            promote(server);
            return Some(true);
        }
        state.data.clear();
        for pair in items[3..].chunks(2) {
            if let [Reply::Bulk(Some(key)), Reply::Bulk(Some(value))] = pair {
                state.data.insert(key.clone(), value.clone());
            }
        }
        state.master_replid = Some(master_replid);
    }
    touch(server, Some(offset));
    set_link(server, Link::StableSync);
    write_command(&mut write, &[b"ACK", offset.to_string().as_bytes()])
        .await
        .ok()?;
    let mut pending: Option<oneshot::Sender<bool>> = None;
    loop {
        tokio::select! {
            frame = tokio::time::timeout(timeout, incoming.recv()) => {
                let Reply::Array(items) = frame.ok()?? else { return None };
                match bulk_text(items.first()).as_deref() {
                    Some("J") => {
                        offset = bulk_text(items.get(1))?.parse().ok()?;
                        let op = bulk_text(items.get(2))?;
                        let key = match items.get(3) { Some(Reply::Bulk(Some(k))) => k.clone(), _ => return None };
                        {
                            let mut state = server.state();
                            if op == "SET" {
                                let value = match items.get(4) { Some(Reply::Bulk(Some(v))) => v.clone(), _ => return None };
                                state.data.insert(key, value);
                            } else {
                                state.data.remove(&key);
                            }
                        }
                        touch(server, Some(offset));
                        write_command(&mut write, &[b"ACK", offset.to_string().as_bytes()]).await.ok()?;
                    }
                    Some("PING") => {
                        touch(server, None);
                        write_command(&mut write, &[b"ACK", offset.to_string().as_bytes()]).await.ok()?;
                    }
                    Some("TAKEOVER_OK") => {
                        if let Some(reply) = pending.take() {
                            let _ = reply.send(true);
                        }
                        // The caller promotes this node; the old master shuts down.
                        return Some(true);
                    }
                    Some("TAKEOVER_FAILED") => {
                        if let Some(reply) = pending.take() {
                            let _ = reply.send(false);
                        }
                    }
                    _ => return None,
                }
            }
            request = takeovers.recv() => {
                let request = request?;
                write_command(&mut write, &[b"TAKEOVER", request.timeout_sec.to_string().as_bytes()]).await.ok()?;
                pending = Some(request.reply);
            }
        }
    }
}

/// The master side of one replica's session.
pub(super) async fn serve_replica(
    server: Arc<Server>,
    id: u64,
    read: BufReader<OwnedReadHalf>,
    mut write: OwnedWriteHalf,
    ip: String,
    port: u16,
) {
    server.state().sessions.insert(
        id,
        ReplicaSession {
            ip,
            port,
            state: SessionState::Preparation,
            acked: 0,
        },
    );
    let _session = EndSession(server.clone(), id);
    let (mut incoming, _reader) = frames(&server, read);
    if let Some(session) = server.state().sessions.get_mut(&id) {
        session.state = SessionState::FullSync;
    }
    tokio::time::sleep(server.config.full_sync_time).await;
    let (snapshot, mut sent) = {
        let state = server.state();
        let mut items = vec![
            Reply::bulk("FULLSYNC"),
            Reply::bulk(state.replid.clone()),
            Reply::bulk(state.offset.to_string()),
        ];
        for (key, value) in &state.data {
            items.push(Reply::bulk(key.clone()));
            items.push(Reply::bulk(value.clone()));
        }
        (Reply::Array(items), state.offset)
    };
    if write_reply(&mut write, &snapshot).await.is_err() {
        return;
    }
    if let Some(session) = server.state().sessions.get_mut(&id) {
        session.state = SessionState::StableSync;
    }
    let mut changed = server.changed.subscribe();
    let mut ping = tokio::time::interval(server.config.ping_interval);
    loop {
        changed.borrow_and_update();
        let entries: Vec<(u64, JournalOp)> = server
            .state()
            .journal
            .iter()
            .filter(|(o, _)| *o > sent)
            .cloned()
            .collect();
        for (offset, op) in entries {
            let offset_text = offset.to_string();
            let result = match &op {
                JournalOp::Set(key, value) => {
                    write_command(
                        &mut write,
                        &[b"J", offset_text.as_bytes(), b"SET", key, value],
                    )
                    .await
                }
                JournalOp::Del(key) => {
                    write_command(&mut write, &[b"J", offset_text.as_bytes(), b"DEL", key]).await
                }
            };
            if result.is_err() {
                return;
            }
            sent = offset;
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = ping.tick() => {
                if write_command(&mut write, &[b"PING"]).await.is_err() {
                    return;
                }
            }
            frame = tokio::time::timeout(server.config.replication_timeout, incoming.recv()) => {
                let Ok(Some(Reply::Array(items))) = frame else { return };
                match bulk_text(items.first()).as_deref() {
                    Some("ACK") => {
                        let acked = bulk_text(items.get(1)).and_then(|o| o.parse().ok()).unwrap_or(0);
                        if let Some(session) = server.state().sessions.get_mut(&id) {
                            session.acked = acked;
                        }
                        server.bump();
                    }
                    Some("TAKEOVER") => {
                        let timeout_sec = bulk_text(items.get(1)).and_then(|t| t.parse().ok()).unwrap_or(0);
                        let ok = drain_for_takeover(&server, id, &mut write, &mut incoming, timeout_sec).await;
                        let answer: &[u8] = if ok { b"TAKEOVER_OK" } else { b"TAKEOVER_FAILED" };
                        let _ = write_command(&mut write, &[answer]).await;
                        if ok {
                            server.shutdown.notify_one();
                            return;
                        }
                    }
                    _ => return,
                }
            }
        }
    }
}

/// The master's half of a takeover: stop serving clients, wait (bounded) for the replica
/// to ack the current offset.
async fn drain_for_takeover(
    server: &Arc<Server>,
    id: u64,
    write: &mut OwnedWriteHalf,
    incoming: &mut mpsc::UnboundedReceiver<Reply>,
    timeout_sec: u64,
) -> bool {
    let target = {
        let mut state = server.state();
        if state.sessions.get(&id).map(|s| s.state) != Some(SessionState::StableSync)
            || state.taken_over
        {
            return false;
        }
        state.taken_over = true;
        state.offset
    };
    let deadline = Instant::now() + Duration::from_secs(timeout_sec);
    // Force an ack now rather than at the next ping.
    if write_command(write, &[b"PING"]).await.is_err() {
        server.state().taken_over = false;
        return false;
    }
    // Only an ack that answers the PING counts: with no time to receive one (timeout 0)
    // the takeover fails, as Dragonfly documents.
    let caught_up = loop {
        match tokio::time::timeout_at(deadline, incoming.recv()).await {
            Ok(Some(Reply::Array(items))) if bulk_text(items.first()).as_deref() == Some("ACK") => {
                let acked = bulk_text(items.get(1))
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(0);
                if let Some(session) = server.state().sessions.get_mut(&id) {
                    session.acked = acked;
                }
                if acked >= target {
                    break true;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break false,
        }
    };
    if !caught_up {
        server.state().taken_over = false;
    }
    caught_up
}

struct EndSession(Arc<Server>, u64);

impl Drop for EndSession {
    fn drop(&mut self) {
        self.0.state().sessions.remove(&self.1);
    }
}
