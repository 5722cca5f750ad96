//! Container output for `kubectl logs`. Each run of a simulated container gets a bounded
//! buffer; the kubelet runs the program inside a [`CONTAINER_SPAN`] span, and
//! [`ContainerLogLayer`] (installed by serve mode's tracing subscriber) appends every
//! tracing event emitted in it to that run's buffer, stamped with simulated time. Events
//! from tasks the program spawned (which do not inherit the span) go to the first live
//! run on the same pod host runtime. The API server reads the buffers; nothing else does.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Name of the span the kubelet runs a container's program in.
pub const CONTAINER_SPAN: &str = "sim_container";
/// Lines kept per container run (older ones are dropped, as log rotation would).
const MAX_LINES: usize = 5_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One line of container output.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub time: jiff::Timestamp,
    pub text: String,
}

/// The output of one container run.
#[derive(Debug)]
pub struct LogBuffer {
    lines: Mutex<VecDeque<LogLine>>,
    /// (lines ever written, run ended); followers wait on it.
    progress: tokio::sync::watch::Sender<(u64, bool)>,
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self {
            lines: Mutex::new(VecDeque::new()),
            progress: tokio::sync::watch::channel((0, false)).0,
        }
    }
}

impl LogBuffer {
    pub fn push(&self, time: jiff::Timestamp, text: String) {
        let mut lines = lock(&self.lines);
        if lines.len() == MAX_LINES {
            lines.pop_front();
        }
        lines.push_back(LogLine { time, text });
        self.progress.send_modify(|(written, _)| *written += 1);
    }

    /// Marks the run as over: followers finish once they have read everything.
    pub fn close(&self) {
        self.progress.send_modify(|(_, ended)| *ended = true);
    }

    /// Lines written after the first `seen` ever written (those still kept), and the
    /// new total.
    pub fn since(&self, seen: u64) -> (Vec<LogLine>, u64) {
        let lines = lock(&self.lines);
        let total = self.progress.borrow().0;
        let first_kept = total - lines.len() as u64;
        let skip = seen.saturating_sub(first_kept) as usize;
        (lines.iter().skip(skip).cloned().collect(), total)
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<(u64, bool)> {
        self.progress.subscribe()
    }
}

#[derive(Default)]
struct Runs {
    current: Option<Arc<LogBuffer>>,
    previous: Option<Arc<LogBuffer>>,
}

/// The buffers of every container, by (namespace, pod, container): the current run and
/// the one before it (`kubectl logs --previous`).
#[derive(Clone, Default)]
pub struct ContainerLogs(Arc<Mutex<RunsByContainer>>);

/// (namespace, pod, container) -> its runs.
type RunsByContainer = BTreeMap<(String, String, String), Runs>;

impl std::fmt::Debug for ContainerLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerLogs").finish_non_exhaustive()
    }
}

impl ContainerLogs {
    /// A new run of a container: its buffer becomes the current one.
    pub fn start_run(&self, namespace: &str, pod: &str, container: &str) -> Arc<LogBuffer> {
        let buffer = Arc::new(LogBuffer::default());
        let mut all = lock(&self.0);
        let runs = all
            .entry((namespace.into(), pod.into(), container.into()))
            .or_default();
        if let Some(old) = runs.current.take() {
            old.close();
            runs.previous = Some(old);
        }
        runs.current = Some(buffer.clone());
        buffer
    }

    pub fn get(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<Arc<LogBuffer>> {
        let all = lock(&self.0);
        let runs = all.get(&(namespace.into(), pod.into(), container.into()))?;
        if previous {
            runs.previous.clone()
        } else {
            runs.current.clone()
        }
    }

    /// Forgets a deleted pod's output.
    pub fn forget_pod(&self, namespace: &str, pod: &str) {
        lock(&self.0).retain(|(ns, p, _), _| !(ns == namespace && p == pod));
    }
}

static NEXT_ROUTE: AtomicU64 = AtomicU64::new(1);
/// Route id (recorded on the container span) -> buffer.
static ROUTES: Mutex<BTreeMap<u64, Weak<LogBuffer>>> = Mutex::new(BTreeMap::new());
/// Pod host runtime -> its runs' routes, for events from spawned tasks.
static RUNTIMES: Mutex<BTreeMap<String, Vec<u64>>> = Mutex::new(BTreeMap::new());

/// Registers `buffer` for events in a span created with the returned route id
/// (`tracing::info_span!(CONTAINER_SPAN, log_route = id)`). Call it on the pod's host.
pub fn route(buffer: &Arc<LogBuffer>) -> u64 {
    let id = NEXT_ROUTE.fetch_add(1, Ordering::Relaxed);
    let mut routes = lock(&ROUTES);
    routes.retain(|_, weak| weak.strong_count() > 0);
    routes.insert(id, Arc::downgrade(buffer));
    drop(routes);
    if let Some(runtime) = current_runtime() {
        let mut runtimes = lock(&RUNTIMES);
        runtimes.entry(runtime).or_default().push(id);
    }
    id
}

fn current_runtime() -> Option<String> {
    tokio::runtime::Handle::try_current()
        .ok()
        .map(|h| h.id().to_string())
}

fn buffer_of(route: u64) -> Option<Arc<LogBuffer>> {
    lock(&ROUTES).get(&route).and_then(Weak::upgrade)
}

/// The first live run on the current runtime (a pod host), for events outside any
/// container span.
fn runtime_buffer() -> Option<Arc<LogBuffer>> {
    let runtime = current_runtime()?;
    let routes: Vec<u64> = lock(&RUNTIMES).get(&runtime).cloned().unwrap_or_default();
    routes
        .into_iter()
        .find_map(|route| buffer_of(route).filter(|b| !b.progress.borrow().1))
}

struct Route(u64);

/// Sends tracing events emitted by simulated containers to their [`ContainerLogs`]
/// buffers, formatted like `tracing_subscriber::fmt` (`LEVEL target: message k=v`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ContainerLogLayer;

impl<S> Layer<S> for ContainerLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != CONTAINER_SPAN {
            return;
        }
        let mut visitor = RouteVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(route), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(Route(route));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let from_span = ctx.event_scope(event).and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<Route>().map(|r| r.0))
        });
        let Some(buffer) = from_span.and_then(buffer_of).or_else(runtime_buffer) else {
            return;
        };
        let meta = event.metadata();
        let mut text = format!("{} {}:", meta.level().as_str(), meta.target());
        event.record(&mut LineVisitor(&mut text));
        buffer.push(now(), text);
    }
}

/// Simulated time on a host (the pinned epoch is part of turmoil's clock).
fn now() -> jiff::Timestamp {
    turmoil::since_epoch()
        .and_then(|d| jiff::Timestamp::from_nanosecond(d.as_nanos() as i128).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

struct RouteVisitor(Option<u64>);

impl Visit for RouteVisitor {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "log_route" {
            self.0 = Some(value);
        }
    }
    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

struct LineVisitor<'a>(&'a mut String);

impl Visit for LineVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn events_in_a_container_span_land_in_that_runs_buffer() {
        let logs = ContainerLogs::default();
        let first = logs.start_run("ns", "web-0", "main");
        let other = logs.start_run("ns", "web-1", "main");
        let subscriber = tracing_subscriber::registry().with(ContainerLogLayer);
        tracing::subscriber::with_default(subscriber, || {
            let route = route(&first);
            let span = tracing::info_span!(CONTAINER_SPAN, log_route = route);
            span.in_scope(|| tracing::info!(port = 7000, "listening"));
            tracing::info!("outside any container");
        });
        let (lines, total) = first.since(0);
        assert_eq!(total, 1);
        assert_eq!(
            texts(&lines),
            ["INFO bloodraven_sim::logs::tests: listening port=7000"]
        );
        assert_eq!(other.since(0).1, 0);
    }

    #[test]
    fn a_restart_keeps_the_previous_run_and_closes_it() {
        let logs = ContainerLogs::default();
        let first = logs.start_run("ns", "db-0", "mysqld");
        first.push(jiff::Timestamp::UNIX_EPOCH, "first run".into());
        let second = logs.start_run("ns", "db-0", "mysqld");
        second.push(jiff::Timestamp::UNIX_EPOCH, "second run".into());
        assert!(first.subscribe().borrow().1, "the old run is over");
        let previous = logs.get("ns", "db-0", "mysqld", true).unwrap();
        assert_eq!(texts(&previous.since(0).0), ["first run"]);
        let current = logs.get("ns", "db-0", "mysqld", false).unwrap();
        assert_eq!(texts(&current.since(0).0), ["second run"]);
        logs.forget_pod("ns", "db-0");
        assert!(logs.get("ns", "db-0", "mysqld", false).is_none());
    }

    #[test]
    fn since_skips_what_was_read_and_survives_rotation() {
        let buffer = LogBuffer::default();
        for i in 0..(MAX_LINES + 10) {
            buffer.push(jiff::Timestamp::UNIX_EPOCH, format!("line {i}"));
        }
        let (all, total) = buffer.since(0);
        assert_eq!(total, (MAX_LINES + 10) as u64);
        assert_eq!(all.len(), MAX_LINES);
        assert_eq!(all[0].text, "line 10");
        let (tail, _) = buffer.since(total - 2);
        assert_eq!(
            texts(&tail),
            [
                format!("line {}", MAX_LINES + 8),
                format!("line {}", MAX_LINES + 9)
            ]
        );
    }
}
