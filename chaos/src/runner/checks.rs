//! Checks: one look at a resource, Events, a metric or the workload ([`Probe`]), and
//! the step forms built on it — `assert` (until it holds, or holds for `hold`),
//! `refute` (never, during a window or until the steps end) — plus the invariants over
//! the workload history at the end of a run.

use super::render::{describe_event, event_time_ms, last_ack_age, leaf_changes, shown_object};
#[allow(clippy::wildcard_imports)]
use super::*;

/// The result of one look at a check.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The condition holds; the text is what was seen.
    Holds(String),
    /// It does not (yet); the text explains why: mismatches, diff, actual.
    NotYet(String),
    /// Looking failed (API error, scrape error...); transient while polling.
    Error(String),
}

impl Run<'_> {
    pub(super) async fn assert(&self, a: &Assertion) -> Result<(), Failure> {
        let polling = self.assert_by_polling(a);
        let Check::Resource(r) = &a.check else {
            return polling.await;
        };
        // Polls and watches at once: whichever sees the object satisfy the check first.
        // `biased` keeps the select from drawing a random number (determinism on sim).
        tokio::select! {
            biased;
            result = polling => result,
            () = self.watch_until_holds(r) => match a.hold {
                None => Ok(()),
                Some(hold) => self.hold(&a.check, hold.as_duration()).await,
            },
        }
    }

    pub(super) async fn assert_by_polling(&self, a: &Assertion) -> Result<(), Failure> {
        let deadline = Instant::now() + a.within.as_duration();
        let mut last_explanation = String::from("(never looked)");
        let mut last_error = None;
        loop {
            match self.probe(&a.check).await {
                Probe::Holds(_) => match a.hold {
                    None => return Ok(()),
                    Some(hold) => return self.hold(&a.check, hold.as_duration()).await,
                },
                Probe::NotYet(why) => last_explanation = why,
                Probe::Error(e) => last_error = Some(e),
            }
            if Instant::now() >= deadline {
                return Err(Failure::new(
                    "",
                    format!("{} did not hold within {}", a.check.summary(), a.within),
                )
                .with_detail(last_explanation)
                .with_last_error(last_error));
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    pub(super) async fn hold(&self, check: &Check, hold: Duration) -> Result<(), Failure> {
        let start = Instant::now();
        let mut last_error = None;
        while start.elapsed() < hold {
            tokio::time::sleep(self.config.poll_interval).await;
            match self.probe(check).await {
                Probe::Holds(_) => {}
                Probe::Error(e) => last_error = Some(e),
                Probe::NotYet(why) => {
                    return Err(Failure::new(
                        "",
                        format!(
                            "{} held for {} but not for the required {}",
                            check.summary(),
                            format_duration(start.elapsed()),
                            format_duration(hold)
                        ),
                    )
                    .with_detail(why)
                    .with_last_error(last_error));
                }
            }
        }
        Ok(())
    }

    pub(super) async fn refute(&self, r: &Refutation) -> Result<(), Failure> {
        let during = r.during.map(|d| d.as_duration()).unwrap_or_default();
        let start = Instant::now();
        loop {
            if let Probe::Holds(seen) = self.probe(&r.check).await {
                return Err(Failure::new(
                    "",
                    format!(
                        "refuted condition became true after {}: {}",
                        format_duration(start.elapsed()),
                        r.check.summary()
                    ),
                )
                .with_detail(seen));
            }
            if start.elapsed() >= during {
                return Ok(());
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// One look at a check.
    pub(crate) async fn probe(&self, check: &Check) -> Probe {
        match check {
            Check::Resource(r) => self.probe_resource(r).await,
            Check::Events(e) => {
                let events = match self.cluster.events(&e.for_object, &self.namespace).await {
                    Ok(ev) => ev,
                    Err(err) => return Probe::Error(err.to_string()),
                };
                let new: Vec<&Value> = events
                    .iter()
                    .filter(|ev| event_time_ms(ev) >= self.started_wall_ms - 1000)
                    .collect();
                for ev in &new {
                    let key = ev
                        .pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned();
                    let count = ev.get("count").and_then(Value::as_i64).unwrap_or(1);
                    let first = self
                        .seen_events
                        .lock()
                        .map(|mut s| s.insert(key, count) != Some(count))
                        .unwrap_or(false);
                    if first {
                        self.note(TimelineKind::Event, describe_event(ev));
                    }
                }
                let regex = e.message.as_deref().map(regex::Regex::new).transpose();
                let regex = match regex {
                    Ok(r) => r,
                    Err(err) => return Probe::Error(format!("bad message regex: {err}")),
                };
                let matching = new.iter().find(|ev| {
                    let field = |k: &str| ev.get(k).and_then(Value::as_str);
                    e.reason
                        .as_deref()
                        .is_none_or(|r| field("reason") == Some(r))
                        && e.event_type
                            .as_deref()
                            .is_none_or(|t| field("type") == Some(t))
                        && regex
                            .as_ref()
                            .is_none_or(|re| re.is_match(field("message").unwrap_or("")))
                });
                match matching {
                    Some(ev) => Probe::Holds(format!("event: {}", describe_event(ev))),
                    None => {
                        let wanted = serde_json::to_value(e)
                            .map(|v| partial::to_yaml(&v))
                            .unwrap_or_default();
                        let seen: String = if new.is_empty() {
                            "    (no events since the scenario started)\n".into()
                        } else {
                            new.iter()
                                .map(|ev| format!("    {}\n", describe_event(ev)))
                                .collect()
                        };
                        Probe::NotYet(format!(
                            "expected an event:\n{}events seen for {}:\n{seen}",
                            partial::indent(&wanted),
                            e.for_object
                        ))
                    }
                }
            }
            Check::Metric(m) => {
                let body = match self.backend.scrape_metrics().await {
                    Ok(b) => b,
                    Err(e) => return Probe::Error(e.to_string()),
                };
                let samples = match metrics::parse(&body) {
                    Ok(s) => s,
                    Err(e) => return Probe::Error(e.to_string()),
                };
                let (ok, reading) = metrics::holds(&samples, m);
                let labels = m
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(",");
                let seen = match reading.value {
                    Some(v) => format!(
                        "{}{{{labels}}} = {v} (sum of {} series)",
                        m.name, reading.series
                    ),
                    None => format!("{}{{{labels}}}: no such series", m.name),
                };
                self.note(TimelineKind::Metric, seen.clone());
                if ok {
                    Probe::Holds(seen)
                } else {
                    Probe::NotYet(format!("want {} {} {}, got {seen}", m.name, m.op, m.value))
                }
            }
            Check::Workload(w) => self.probe_workload(w).await,
            Check::Objects(o) => match self.backend.object_keys(&self.namespace, o).await {
                Ok(None) => Probe::Error(format!(
                    "cannot be checked: the {} backend cannot list an S3 store",
                    self.backend.kind()
                )),
                Ok(Some(keys)) => {
                    let seen = format!(
                        "{} object(s) under s3://{}/{}: {}",
                        keys.len(),
                        o.bucket,
                        o.prefix.as_deref().unwrap_or(""),
                        keys.join(", ")
                    );
                    if keys.len() >= o.min_count {
                        Probe::Holds(seen)
                    } else {
                        Probe::NotYet(format!("want at least {}, got {seen}", o.min_count))
                    }
                }
                // The store may not answer yet (its pod restarting): try again.
                Err(e) => Probe::NotYet(e.to_string()),
            },
        }
    }

    pub(super) async fn probe_resource(&self, r: &ResourceCheck) -> Probe {
        let object = match self.cluster.get(&r.resource, &self.namespace).await {
            Ok(Some(o)) => o,
            Ok(None) => return Probe::NotYet(format!("{} does not exist", r.resource)),
            Err(e) => return Probe::Error(e.to_string()),
        };
        self.record_status_change(&r.resource, &object);
        self.judge_resource(r, &object)
    }

    /// Watches the object and returns once a version of it satisfies the check. A
    /// state that lasts less than a poll interval (a split brain the operator ends in
    /// the reconcile after the one that saw it) is visible only this way. Never
    /// returns when the cluster cannot watch; a watch that fails is reopened.
    pub(super) async fn watch_until_holds(&self, r: &ResourceCheck) {
        use futures::StreamExt;
        let mut from = String::from("0");
        loop {
            match self
                .cluster
                .watch(&r.resource, &self.namespace, &from)
                .await
            {
                None => return std::future::pending().await,
                Some(Err(_)) => from = String::from("0"),
                Some(Ok(mut versions)) => {
                    while let Some(version) = versions.next().await {
                        let Ok(object) = version else {
                            // An expired resourceVersion, say: start again from now.
                            from = String::from("0");
                            break;
                        };
                        if let Some(rv) = object
                            .pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                        {
                            from = rv.to_owned();
                        }
                        self.record_status_change(&r.resource, &object);
                        if let Probe::Holds(_) = self.judge_resource(r, &object) {
                            return;
                        }
                    }
                }
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// Whether `object` satisfies the resource check, and if not, why.
    pub(super) fn judge_resource(&self, r: &ResourceCheck, object: &Value) -> Probe {
        let captured = self.captured.lock().map(|c| c.clone()).unwrap_or_default();
        let mut why = String::new();
        for (field, expected) in &r.partial {
            let expected = &match template::render_strings(expected, &captured) {
                Ok(rendered) => rendered,
                Err(e) => return Probe::Error(format!("{field}: {e}")),
            };
            let actual = object.get(field);
            let ok = actual.is_some_and(|a| partial::matches(expected, a));
            if !ok {
                why.push_str(&format!(
                    "expected {field} (PARTIAL):\n{}",
                    partial::indent(&partial::to_yaml(expected))
                ));
                why.push_str(&partial::explain(field, expected, actual));
            }
        }
        for expr in &r.where_ {
            match cel_where::evaluate(expr, object) {
                WhereOutcome::True => {}
                WhereOutcome::False => why.push_str(&format!("where `{expr}` is false\n")),
                WhereOutcome::Error(e) => why.push_str(&format!("where `{expr}`: {e}\n")),
            }
        }
        let shown = shown_object(object);
        if why.is_empty() {
            Probe::Holds(format!(
                "{} matched; actual object:\n{}",
                r.resource,
                partial::indent(&partial::to_yaml(&shown))
            ))
        } else {
            why.push_str(&format!(
                "actual {}:\n{}",
                r.resource,
                partial::indent(&partial::to_yaml(&shown))
            ));
            Probe::NotYet(why)
        }
    }

    pub(super) fn record_status_change(&self, object: &ObjectRef, value: &Value) {
        let status = value.get("status").cloned().unwrap_or(Value::Null);
        let key = object.to_string();
        let previous = self
            .last_status
            .lock()
            .ok()
            .and_then(|mut m| m.insert(key.clone(), status.clone()));
        if previous.as_ref() == Some(&status) {
            return;
        }
        let mut changes = Vec::new();
        leaf_changes(
            "status",
            previous.as_ref().unwrap_or(&Value::Null),
            &status,
            &mut changes,
        );
        let text = if changes.len() > 6 {
            format!(
                "{key}: {} status fields changed ({}, ...)",
                changes.len(),
                changes[..6].join(", ")
            )
        } else {
            format!("{key}: {}", changes.join(", "))
        };
        self.note(TimelineKind::Status, text);
    }

    pub(super) async fn probe_workload(&self, w: &WorkloadCheck) -> Probe {
        let snapshot = self.history.lock().map(|h| h.clone()).unwrap_or_default();
        let now = self.now_ms();
        let mut why = Vec::new();
        let acked = snapshot.acknowledged().count() as u64;
        if let Some(want) = w.progressing {
            let recent = snapshot
                .acknowledged()
                .any(|a| a.completed_at >= now - 5_000);
            if recent != want {
                why.push(format!(
                    "progressing: want {want}, last ack {}",
                    last_ack_age(&snapshot, now)
                ));
            }
        }
        if let Some(min) = w.min_acknowledged
            && acked < min
        {
            why.push(format!("minAcknowledged: want >= {min}, got {acked}"));
        }
        if let Some(max) = w.max_write_unavailable {
            let windows = invariants::unavailability_windows(&snapshot.writes, now);
            if let Some(longest) = invariants::longest_unavailability(&windows)
                && longest.duration_ms()
                    > i64::try_from(max.as_duration().as_millis()).unwrap_or(i64::MAX)
            {
                why.push(format!(
                    "maxWriteUnavailable: want <= {max}, longest window {} ms",
                    longest.duration_ms()
                ));
            }
        }
        if let Some(want) = w.failovers {
            let got = invariants::failovers(&snapshot.writes).len() as u64;
            if got != want {
                why.push(format!("failovers: want {want}, got {got}"));
            }
        }
        if let Some(want) = w.cache_progressing {
            let recent = snapshot
                .cache
                .iter()
                .any(|c| c.result.is_ok() && c.at >= now - 5_000);
            if recent != want {
                why.push(format!(
                    "cacheProgressing: want {want}; last cache results {:?}",
                    snapshot.cache.iter().rev().take(3).collect::<Vec<_>>()
                ));
            }
        }
        if let Some(want) = w.cache_resets {
            let got = invariants::cache_resets(&snapshot.cache);
            if got != want {
                why.push(format!("cacheResets: want {want}, got {got}"));
            }
        }
        if let Some(want) = w.acknowledged_writes_lost {
            let Some(target) = self.workload_target.clone() else {
                return Probe::Error("this scenario runs no counter workload".into());
            };
            match target.committed().await {
                Ok(committed) => {
                    let lost = invariants::acknowledged_writes_lost(&snapshot, &committed);
                    if lost.len() as u64 != want {
                        why.push(format!(
                            "acknowledgedWritesLost: want {want}, got {} ({:?})",
                            lost.len(),
                            lost
                        ));
                    }
                }
                Err(e) => return Probe::Error(format!("reading committed increments: {e}")),
            }
        }
        let seen = format!("{} attempts, {acked} acknowledged", snapshot.writes.len());
        if why.is_empty() {
            Probe::Holds(seen)
        } else {
            Probe::NotYet(format!("{}\n({seen})", why.join("\n")))
        }
    }

    pub(super) async fn check_invariants(
        &self,
        target: Option<Arc<dyn workload::CounterTarget>>,
        failures: &mut Vec<Failure>,
    ) -> Option<WorkloadSummary> {
        let history = self.history.lock().map(|h| h.clone()).unwrap_or_default();
        let end = self.now_ms();
        let invariant_failure = |inv: Invariant, message: String, detail: String| {
            Failure::new(format!("invariant {inv}"), message).with_detail(detail)
        };
        let mut summary = None;
        if target.is_some() || !history.writes.is_empty() {
            let windows = invariants::unavailability_windows(&history.writes, end);
            summary = Some(WorkloadSummary {
                attempts: history.writes.len() as u64,
                acknowledged: history.acknowledged().count() as u64,
                longest_unavailability_ms: invariants::longest_unavailability(&windows)
                    .map(|w| w.duration_ms()),
                unavailability_windows: windows,
                failovers: invariants::failovers(&history.writes),
                acknowledged_writes_lost: None,
            });
        }
        for inv in &self.scenario.invariants {
            match inv {
                Invariant::SingleWriter => {
                    if history.writability.is_empty() {
                        failures.push(invariant_failure(
                            *inv,
                            format!(
                                "cannot be checked: the {} backend reported no site writability",
                                self.backend.kind()
                            ),
                            String::new(),
                        ));
                        continue;
                    }
                    let blind = invariants::blind_fault_windows(&history, end);
                    if !blind.is_empty() {
                        failures.push(invariant_failure(
                            *inv,
                            format!(
                                "cannot be checked: {} site(s) unobserved through a whole fault window",
                                blind.len()
                            ),
                            blind.iter().map(|b| format!("  {b}\n")).collect(),
                        ));
                    }
                    let violations = invariants::single_writer(&history, end);
                    if !violations.is_empty() {
                        failures.push(invariant_failure(
                            *inv,
                            format!(
                                "{} violation(s): two sites writable at once",
                                violations.len()
                            ),
                            violations.iter().map(|v| format!("  {v}\n")).collect(),
                        ));
                    }
                }
                Invariant::NoAcknowledgedWriteLost => {
                    let Some(target) = &target else {
                        failures.push(invariant_failure(
                            *inv,
                            "cannot be checked: no counter workload ran".into(),
                            String::new(),
                        ));
                        continue;
                    };
                    match target.committed().await {
                        Ok(committed) => {
                            let lost = invariants::acknowledged_writes_lost(&history, &committed);
                            if !lost.is_empty() {
                                failures.push(invariant_failure(
                                    *inv,
                                    format!(
                                        "{} acknowledged increment(s) missing on the final primary",
                                        lost.len()
                                    ),
                                    format!("  missing: {}\n", invariants::as_ranges(&lost)),
                                ));
                            }
                            if let Some(s) = summary.as_mut() {
                                s.acknowledged_writes_lost = Some(lost);
                            }
                        }
                        Err(e) => failures.push(invariant_failure(
                            *inv,
                            format!("cannot read the final primary: {e}"),
                            String::new(),
                        )),
                    }
                }
                Invariant::SingleCacheMaster => match self.backend.cache_master_violations() {
                    None => failures.push(invariant_failure(
                        *inv,
                        format!(
                            "cannot be checked: the {} backend does not sample every tick",
                            self.backend.kind()
                        ),
                        String::new(),
                    )),
                    Some(violations) if !violations.is_empty() => {
                        failures.push(invariant_failure(
                            *inv,
                            format!(
                                "{} violation(s): two pods behind the app-facing Dragonfly Service",
                                violations.len()
                            ),
                            violations.iter().map(|v| format!("  {v}\n")).collect(),
                        ));
                    }
                    Some(_) => {}
                },
            }
        }
        summary
    }
}
