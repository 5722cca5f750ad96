//! Jobs and CronJobs on simulated time.
//!
//! Jobs: pods up to `parallelism` until `completions` succeed (Complete) or more than
//! `backoffLimit` fail (Failed, BackoffLimitExceeded); a failed pod is replaced after
//! Kubernetes' exponential delay (10 s doubling). CronJobs: the standard 5-field
//! schedule in UTC; a due run creates `<cronjob>-<minutes since epoch>`; missed runs
//! collapse into the latest one (within `startingDeadlineSeconds`, if set);
//! concurrencyPolicy Allow/Forbid/Replace; `suspend`; history limits.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::workloads::random_suffix;
use super::{ControlPlane, Snapshot, format_time, key_cronjobs, key_jobs, key_pods};
use crate::object::{
    at, condition_status, controller_ref, controller_uid, i64_at, is_terminating, labels, name,
    namespace, str_at, uid,
};
use bloodraven::cron::CronSchedule;

const JOB_COMPONENT: &str = "job-controller";
const CRON_COMPONENT: &str = "cronjob-controller";
const JOB_BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const JOB_BACKOFF_MAX: Duration = Duration::from_secs(360);

#[derive(Default)]
pub(crate) struct CronJobState {
    /// CronJob uid -> schedule text already reported as invalid.
    invalid_reported: BTreeMap<String, String>,
    /// Job uid -> (failures seen, earliest time to create a replacement pod).
    job_backoff: BTreeMap<String, (i64, jiff::Timestamp)>,
}

fn job_finished(job: &Value) -> Option<&'static str> {
    if condition_status(job, "Complete") == Some("True") {
        Some("Complete")
    } else if condition_status(job, "Failed") == Some("True") {
        Some("Failed")
    } else {
        None
    }
}

pub(crate) fn reconcile_jobs(cp: &mut ControlPlane, snap: &Snapshot) {
    let live: Vec<String> = snap.jobs.iter().map(|j| uid(j).to_string()).collect();
    cp.cronjobs.job_backoff.retain(|k, _| live.contains(k));
    for job in snap.jobs.iter() {
        if !is_terminating(job) && job_finished(job).is_none() {
            reconcile_job(cp, snap, job);
        }
    }
}

fn reconcile_job(cp: &mut ControlPlane, snap: &Snapshot, job: &Value) {
    let now = cp.now();
    let stamp = format_time(now);
    let ns = namespace(job).to_string();
    let job_name = name(job).to_string();
    let pods: Vec<&Value> = snap
        .pods
        .iter()
        .filter(|p| namespace(p) == ns && controller_uid(p) == Some(uid(job)))
        .collect();
    let phase = |p: &Value| {
        str_at(p, &["status", "phase"])
            .unwrap_or("Pending")
            .to_string()
    };
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
    let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i64;
    let active: Vec<&Value> = pods
        .iter()
        .copied()
        .filter(|p| !is_terminating(p) && !matches!(phase(p).as_str(), "Succeeded" | "Failed"))
        .collect();
    let completions = i64_at(job, &["spec", "completions"]).unwrap_or(1);
    let parallelism = i64_at(job, &["spec", "parallelism"]).unwrap_or(1);
    let backoff_limit = i64_at(job, &["spec", "backoffLimit"]).unwrap_or(6);
    let start_time = str_at(job, &["status", "startTime"])
        .map(str::to_string)
        .unwrap_or_else(|| stamp.clone());

    let mut status = json!({
        "startTime": start_time,
        "active": active.len(),
        "succeeded": succeeded,
        "failed": failed,
        "ready": active.iter().filter(|p| crate::object::pod_is_ready(p)).count(),
    });
    if succeeded >= completions {
        status["completionTime"] = json!(stamp);
        status["conditions"] = json!([
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": stamp, "lastTransitionTime": stamp},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": stamp, "lastTransitionTime": stamp},
        ]);
        status["active"] = json!(0);
        cp.events.record(
            JOB_COMPONENT,
            None,
            job,
            "Normal",
            "Completed",
            "Job completed",
        );
    } else if failed > backoff_limit {
        status["conditions"] = json!([
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": stamp, "lastTransitionTime": stamp},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": stamp, "lastTransitionTime": stamp},
        ]);
        status["active"] = json!(0);
        for pod in &active {
            cp.api
                .delete(JOB_COMPONENT, &key_pods(), Some(&ns), name(pod));
        }
        cp.events.record(
            JOB_COMPONENT,
            None,
            job,
            "Warning",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        );
    } else {
        // A new failure delays the replacement: 10 s, 20 s, 40 s ... as the job controller does.
        let (seen, mut not_before) = cp
            .cronjobs
            .job_backoff
            .get(uid(job))
            .copied()
            .unwrap_or((0, now));
        if failed > seen {
            let exponent = u32::try_from(failed - 1).unwrap_or(u32::MAX).min(16);
            let delay = JOB_BACKOFF_INITIAL
                .saturating_mul(1 << exponent)
                .min(JOB_BACKOFF_MAX);
            not_before = now
                .checked_add(jiff::SignedDuration::try_from(delay).unwrap_or_default())
                .unwrap_or(now);
            cp.cronjobs
                .job_backoff
                .insert(uid(job).to_string(), (failed, not_before));
        }
        let wanted = parallelism.min(completions - succeeded) - active.len() as i64;
        if wanted > 0 && now >= not_before {
            let template = at(job, &["spec", "template"])
                .cloned()
                .unwrap_or_else(|| json!({}));
            for _ in 0..wanted {
                let pod_name = format!("{job_name}-{}", random_suffix(cp));
                let mut pod_labels = labels(
                    &json!({"metadata": template.get("metadata").cloned().unwrap_or(Value::Null)}),
                );
                for (k, v) in [
                    ("job-name", job_name.as_str()),
                    ("batch.kubernetes.io/job-name", job_name.as_str()),
                    ("controller-uid", uid(job)),
                    ("batch.kubernetes.io/controller-uid", uid(job)),
                ] {
                    pod_labels.insert(k.to_string(), v.to_string());
                }
                let pod = json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": pod_name, "namespace": ns, "labels": pod_labels, "ownerReferences": [controller_ref(job)]},
                    "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
                });
                if cp
                    .api
                    .create(JOB_COMPONENT, &key_pods(), Some(&ns), pod)
                    .is_some()
                {
                    cp.events.record(
                        JOB_COMPONENT,
                        None,
                        job,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {pod_name}"),
                    );
                }
            }
        }
    }
    let current = job.get("status").cloned().unwrap_or_else(|| json!({}));
    let changed = status.as_object().is_some_and(|f| {
        f.iter()
            .any(|(k, v)| k != "startTime" && current.get(k) != Some(v))
    }) || current.get("startTime").is_none();
    if changed {
        cp.api.merge_patch_status(
            JOB_COMPONENT,
            &key_jobs(),
            Some(&ns),
            &job_name,
            json!({"status": status}),
        );
    }
}

/// Deletes one of a CronJob's Jobs (replaced, or beyond the history limit) and records
/// the Event the real cronjob controller emits for it.
fn delete_job(cp: &mut ControlPlane, cronjob: &Value, ns: &str, job: &Value) {
    cp.api
        .delete(CRON_COMPONENT, &key_jobs(), Some(ns), name(job));
    cp.events.record(
        CRON_COMPONENT,
        None,
        cronjob,
        "Normal",
        "SuccessfulDelete",
        &format!("Deleted job {}", name(job)),
    );
}

pub(crate) fn reconcile_cronjobs(cp: &mut ControlPlane, snap: &Snapshot) {
    for cronjob in snap.cronjobs.iter() {
        if !is_terminating(cronjob) {
            reconcile_cronjob(cp, snap, cronjob);
        }
    }
}

fn parse_time(text: Option<&str>) -> Option<jiff::Timestamp> {
    text.and_then(|t| t.parse().ok())
}

fn reconcile_cronjob(cp: &mut ControlPlane, snap: &Snapshot, cronjob: &Value) {
    let now = cp.now();
    let ns = namespace(cronjob).to_string();
    let cron_name = name(cronjob).to_string();
    let schedule_text = str_at(cronjob, &["spec", "schedule"])
        .unwrap_or_default()
        .to_string();
    let schedule = match CronSchedule::parse(&schedule_text) {
        Ok(schedule) => schedule,
        Err(err) => {
            if cp.cronjobs.invalid_reported.get(uid(cronjob)) != Some(&schedule_text) {
                cp.events.record(
                    CRON_COMPONENT,
                    None,
                    cronjob,
                    "Warning",
                    "InvalidSchedule",
                    &err.to_string(),
                );
                cp.cronjobs
                    .invalid_reported
                    .insert(uid(cronjob).to_string(), schedule_text);
            }
            return;
        }
    };

    let mut jobs: Vec<&Value> = snap
        .jobs
        .iter()
        .filter(|j| namespace(j) == ns && controller_uid(j) == Some(uid(cronjob)))
        .collect();
    jobs.sort_by_key(|j| {
        (
            str_at(j, &["metadata", "creationTimestamp"])
                .unwrap_or_default()
                .to_string(),
            name(j).to_string(),
        )
    });
    let active: Vec<&Value> = jobs
        .iter()
        .copied()
        .filter(|j| job_finished(j).is_none() && !is_terminating(j))
        .collect();

    // Newly finished jobs are reported once, and the last success recorded.
    let mut last_successful =
        str_at(cronjob, &["status", "lastSuccessfulTime"]).map(str::to_string);
    let previously_active: Vec<String> = at(cronjob, &["status", "active"])
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| str_at(r, &["uid"]).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for job in jobs
        .iter()
        .filter(|j| previously_active.iter().any(|u| u == uid(j)))
    {
        if let Some(outcome) = job_finished(job) {
            cp.events.record(
                CRON_COMPONENT,
                None,
                cronjob,
                "Normal",
                "SawCompletedJob",
                &format!("Saw completed job: {}, condition: {outcome}", name(job)),
            );
            if outcome == "Complete" {
                last_successful = str_at(job, &["status", "completionTime"])
                    .map(str::to_string)
                    .or(last_successful);
            }
        }
    }

    let suspended = at(cronjob, &["spec", "suspend"])
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut last_schedule = str_at(cronjob, &["status", "lastScheduleTime"]).map(str::to_string);
    let mut created: Option<Value> = None;
    let since = parse_time(last_schedule.as_deref())
        .or_else(|| parse_time(str_at(cronjob, &["metadata", "creationTimestamp"])));
    if let (false, Some(since)) = (suspended, since) {
        // The latest due time (missed runs collapse into one, as the controller does).
        let mut due = None;
        let mut cursor = since;
        for _ in 0..10_000 {
            match schedule.next_after(cursor) {
                Some(next) if next <= now => {
                    due = Some(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        if let Some(due) = due {
            let deadline = i64_at(cronjob, &["spec", "startingDeadlineSeconds"]);
            let too_late = deadline.is_some_and(|d| now.as_second() - due.as_second() > d);
            let policy = str_at(cronjob, &["spec", "concurrencyPolicy"]).unwrap_or("Allow");
            if too_late {
                cp.events.record(
                    CRON_COMPONENT,
                    None,
                    cronjob,
                    "Warning",
                    "MissSchedule",
                    &format!("Missed scheduled time to start a job: {}", format_time(due)),
                );
                last_schedule = Some(format_time(due));
            } else if policy == "Forbid" && !active.is_empty() {
                // Skipped while the previous run is active; retried once it ends.
                tracing::trace!(cronjob = %cron_name, "run due but previous job active (Forbid)");
            } else {
                if policy == "Replace" {
                    for job in &active {
                        delete_job(cp, cronjob, &ns, job);
                    }
                }
                let job_name = format!("{cron_name}-{}", due.as_second() / 60);
                let template = at(cronjob, &["spec", "jobTemplate"])
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                let mut metadata = json!({
                    "name": job_name,
                    "namespace": ns,
                    "labels": at(&template, &["metadata", "labels"]).cloned().unwrap_or_else(|| json!({})),
                    "annotations": {"batch.kubernetes.io/cronjob-scheduled-timestamp": format_time(due)},
                    "ownerReferences": [controller_ref(cronjob)],
                });
                if let Some(extra) =
                    at(&template, &["metadata", "annotations"]).and_then(Value::as_object)
                {
                    for (k, v) in extra {
                        metadata["annotations"][k] = v.clone();
                    }
                }
                let job = json!({
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": metadata,
                    "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
                });
                if let Some(job) = cp.api.create(CRON_COMPONENT, &key_jobs(), Some(&ns), job) {
                    cp.events.record(
                        CRON_COMPONENT,
                        None,
                        cronjob,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created job {job_name}"),
                    );
                    created = Some(job);
                }
                last_schedule = Some(format_time(due));
            }
        }
    }

    // History limits: oldest finished jobs beyond the limits are deleted.
    let keep_succeeded = i64_at(cronjob, &["spec", "successfulJobsHistoryLimit"])
        .unwrap_or(3)
        .max(0) as usize;
    let keep_failed = i64_at(cronjob, &["spec", "failedJobsHistoryLimit"])
        .unwrap_or(1)
        .max(0) as usize;
    for (outcome, keep) in [("Complete", keep_succeeded), ("Failed", keep_failed)] {
        let done: Vec<&&Value> = jobs
            .iter()
            .filter(|j| job_finished(j) == Some(outcome) && !is_terminating(j))
            .collect();
        for job in done.iter().take(done.len().saturating_sub(keep)) {
            delete_job(cp, cronjob, &ns, job);
        }
    }

    let reference = |j: &Value| json!({"apiVersion": "batch/v1", "kind": "Job", "name": name(j), "namespace": ns, "uid": uid(j)});
    let mut active_refs: Vec<Value> = active.iter().map(|j| reference(j)).collect();
    if let Some(job) = &created {
        active_refs.push(reference(job));
    }
    let mut status = json!({"active": if active_refs.is_empty() { Value::Null } else { Value::Array(active_refs) }});
    if let Some(last) = last_schedule {
        status["lastScheduleTime"] = json!(last);
    }
    if let Some(last) = last_successful {
        status["lastSuccessfulTime"] = json!(last);
    }
    let current = cronjob.get("status").cloned().unwrap_or_else(|| json!({}));
    let changed = status.as_object().is_some_and(|f| {
        f.iter()
            .any(|(k, v)| current.get(k).unwrap_or(&Value::Null) != v)
    });
    if changed {
        cp.api.merge_patch_status(
            CRON_COMPONENT,
            &key_cronjobs(),
            Some(&ns),
            &cron_name,
            json!({"status": status}),
        );
    }
}
