//! Lease objects (coordination.k8s.io/v1) as the writer lease and the operator's leader
//! lease use them: pure transformations (renew, move, grant) with wall-clock times
//! passed in from the injected `Clock`, and the one write path, a replace guarded by
//! resourceVersion. A 409 re-reads and hands the latest object back to the caller to
//! decide again; nothing here ever overwrites a lease it has not just read.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use crate::engine::lease::LeaseRecord;

/// The operator's instruction that the writer lease's holder may be writable:
/// `<site>:<leaseTransitions>`. It names the term so that a grant written before the
/// lease moved away and back can never be honoured in a later term. The operator sets
/// it after promoting, removes it before fencing a holder itself (planned failover),
/// and every lease move drops it.
pub const WRITABLE_GRANT_ANNOTATION: &str = "bloodraven.shipstream.io/writable-grant";

/// A parsed writable grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritableGrant {
    pub site: String,
    pub term: i32,
}

impl WritableGrant {
    pub fn parse(value: &str) -> Option<Self> {
        let (site, term) = value.rsplit_once(':')?;
        Some(Self {
            site: site.to_string(),
            term: term.parse().ok()?,
        })
    }

    pub fn render(&self) -> String {
        format!("{}:{}", self.site, self.term)
    }
}

pub fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

/// `leaseTransitions`, the lease's term number (0 when never moved).
pub fn term(lease: &Lease) -> i32 {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0)
}

pub fn grant(lease: &Lease) -> Option<WritableGrant> {
    lease
        .annotations()
        .get(WRITABLE_GRANT_ANNOTATION)
        .and_then(|v| WritableGrant::parse(v))
}

/// Whether the operator has told `site`'s sidecar that it may be writable in the
/// lease's current term. Malformed or stale grants count as no grant.
pub fn grants_writable(lease: &Lease, site: &str) -> bool {
    holder(lease) == Some(site)
        && grant(lease).is_some_and(|g| g.site == site && g.term == term(lease))
}

/// What the engine needs to judge expiry. `renewTime` is kept as opaque text: it was
/// written by another machine's clock and is only ever compared for equality.
pub fn record(lease: &Lease) -> LeaseRecord {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseRecord {
        holder: holder(lease).map(String::from),
        renew_time: spec.renew_time.map(|t| t.0.to_string()),
        resource_version: lease.resource_version(),
        declared_duration: spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(std::time::Duration::from_secs),
        holder_granted: holder(lease).is_some_and(|h| grants_writable(lease, h)),
    }
}

/// The holder renews: only `renewTime` changes.
pub fn renewed(lease: &Lease, now: jiff::Timestamp) -> Lease {
    let mut out = lease.clone();
    let spec = out.spec.get_or_insert_with(LeaseSpec::default);
    spec.renew_time = Some(MicroTime(now));
    out
}

/// The lease moves to `new_holder` (or is taken by it, for leader election): a new term
/// when the holder changes, fresh acquire and renew times, and no writable grant (a
/// new holder is writable only after the operator promoted it and granted again).
pub fn moved_to(
    lease: &Lease,
    new_holder: &str,
    duration_seconds: i32,
    now: jiff::Timestamp,
) -> Lease {
    let mut out = lease.clone();
    let changed = holder(lease) != Some(new_holder);
    let previous_term = term(lease);
    let spec = out.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(new_holder.to_string());
    spec.lease_duration_seconds = Some(duration_seconds);
    spec.renew_time = Some(MicroTime(now));
    if changed {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(previous_term.saturating_add(1));
    }
    out.annotations_mut().remove(WRITABLE_GRANT_ANNOTATION);
    out
}

/// The holder gives the lease up (leader election, on shutdown, after it stopped
/// acting): no holder, so that a candidate may take it at once instead of waiting out
/// the term (`leader::next_step`).
pub fn released(lease: &Lease, now: jiff::Timestamp) -> Lease {
    let mut out = lease.clone();
    let spec = out.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.renew_time = Some(MicroTime(now));
    out.annotations_mut().remove(WRITABLE_GRANT_ANNOTATION);
    out
}

/// The operator grants the current holder the right to be writable in this term.
/// `None` when the lease has no holder (nothing to grant).
pub fn granted(lease: &Lease) -> Option<Lease> {
    let site = holder(lease)?.to_string();
    let mut out = lease.clone();
    let value = WritableGrant {
        site,
        term: term(lease),
    }
    .render();
    out.annotations_mut()
        .insert(WRITABLE_GRANT_ANNOTATION.to_string(), value);
    Some(out)
}

/// The operator withdraws the grant (before fencing the holder itself).
pub fn grant_revoked(lease: &Lease) -> Lease {
    let mut out = lease.clone();
    out.annotations_mut().remove(WRITABLE_GRANT_ANNOTATION);
    out
}

/// A guarded lease write that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LeaseWriteError {
    /// Someone wrote the lease since we read it; `latest` is a fresh read. Decide again
    /// from it: never retry the same write.
    #[error("Lease {namespace}/{name} changed since it was read (409); re-read it at resourceVersion {}", latest.resource_version().unwrap_or_default())]
    Conflict {
        namespace: String,
        name: String,
        latest: Box<Lease>,
    },
    #[error(
        "refusing to replace Lease {namespace}/{name} without a resourceVersion: that would overwrite blindly"
    )]
    Unguarded { namespace: String, name: String },
    #[error("writing Lease {namespace}/{name} failed: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

impl LeaseWriteError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// Replaces the lease, guarded by the resourceVersion it carries (the one it was read
/// at). On 409 the lease is read again and returned in [`LeaseWriteError::Conflict`].
pub async fn replace_guarded(api: &Api<Lease>, updated: &Lease) -> Result<Lease, LeaseWriteError> {
    let namespace = updated.namespace().unwrap_or_default();
    let name = updated.name_any();
    if updated.resource_version().is_none_or(|rv| rv.is_empty()) {
        return Err(LeaseWriteError::Unguarded { namespace, name });
    }
    let api_error = |source| LeaseWriteError::Api {
        namespace: namespace.clone(),
        name: name.clone(),
        source: Box::new(source),
    };
    match api.replace(&name, &PostParams::default(), updated).await {
        Ok(lease) => Ok(lease),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let latest = api.get(&name).await.map_err(api_error)?;
            Err(LeaseWriteError::Conflict {
                namespace,
                name,
                latest: Box::new(latest),
            })
        }
        Err(err) => Err(api_error(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::production::fake_api::{FakeApi, conflict};
    use serde_json::json;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn lease(holder: Option<&str>, transitions: i32, grant: Option<&str>) -> Lease {
        let mut annotations = serde_json::Map::new();
        if let Some(g) = grant {
            annotations.insert(WRITABLE_GRANT_ANNOTATION.into(), json!(g));
        }
        serde_json::from_value(json!({
            "metadata": {"name": "g-writer", "namespace": "bp", "resourceVersion": "5",
                         "annotations": annotations},
            "spec": {"holderIdentity": holder, "leaseTransitions": transitions,
                     "leaseDurationSeconds": 5, "renewTime": "2026-01-01T00:00:00Z"}
        }))
        .unwrap()
    }

    #[test]
    fn a_grant_counts_only_for_the_holder_in_the_current_term() {
        assert!(grants_writable(
            &lease(Some("iad"), 3, Some("iad:3")),
            "iad"
        ));
        assert!(!grants_writable(
            &lease(Some("iad"), 3, Some("iad:3")),
            "pdx"
        ));
        assert!(
            !grants_writable(&lease(Some("iad"), 4, Some("iad:3")), "iad"),
            "stale term"
        );
        assert!(
            !grants_writable(&lease(Some("pdx"), 3, Some("iad:3")), "iad"),
            "not holder"
        );
        assert!(
            !grants_writable(&lease(Some("iad"), 3, Some("iad")), "iad"),
            "malformed"
        );
        assert!(!grants_writable(&lease(Some("iad"), 3, None), "iad"));
    }

    #[test]
    fn moving_starts_a_term_and_drops_the_grant() {
        let now = ts("2026-01-01T00:00:09Z");
        let moved = moved_to(&lease(Some("iad"), 3, Some("iad:3")), "pdx", 5, now);
        let spec = moved.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("pdx"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(now)));
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
        assert_eq!(grant(&moved), None);
        assert_eq!(moved.resource_version().as_deref(), Some("5"), "guard kept");
        // Re-taking a lease one already holds is a renewal, not a new term.
        let same = moved_to(&moved, "pdx", 5, ts("2026-01-01T00:00:10Z"));
        assert_eq!(same.spec.unwrap().lease_transitions, Some(4));
        let granted = granted(&moved).unwrap();
        assert!(grants_writable(&granted, "pdx"));
        assert!(!grants_writable(&grant_revoked(&granted), "pdx"));
    }

    #[test]
    fn renewal_changes_only_the_renew_time_from_the_given_clock() {
        let before = lease(Some("iad"), 1, Some("iad:1"));
        let after = renewed(&before, ts("2030-05-05T05:05:05Z"));
        assert_eq!(
            after.spec.as_ref().unwrap().renew_time,
            Some(MicroTime(ts("2030-05-05T05:05:05Z")))
        );
        let mut back = after.clone();
        back.spec.as_mut().unwrap().renew_time = before.spec.as_ref().unwrap().renew_time.clone();
        assert_eq!(back, before);
        assert_eq!(record(&after).holder.as_deref(), Some("iad"));
        assert_eq!(
            record(&after).declared_duration,
            Some(std::time::Duration::from_secs(5))
        );
    }

    #[tokio::test]
    async fn a_409_rereads_and_returns_the_latest_lease_instead_of_overwriting() {
        let latest = serde_json::to_value(lease(Some("pdx"), 4, None)).unwrap();
        let api = FakeApi::with(move |req| match req.method.as_str() {
            "PUT" => (409, conflict()),
            _ => (200, latest.clone()),
        });
        let leases: Api<Lease> = Api::namespaced(api.client(), "bp");
        let err = replace_guarded(
            &leases,
            &renewed(&lease(Some("iad"), 3, None), ts("2026-01-01T00:00:01Z")),
        )
        .await
        .unwrap_err();
        let LeaseWriteError::Conflict { latest, .. } = err else {
            panic!("expected a conflict, got {err}");
        };
        assert_eq!(holder(&latest), Some("pdx"));
        let methods: Vec<String> = api.requests().into_iter().map(|r| r.method).collect();
        assert_eq!(
            methods,
            ["PUT", "GET"],
            "one guarded write, one re-read, no retry"
        );
        assert_eq!(api.requests()[0].body["metadata"]["resourceVersion"], "5");
    }

    #[tokio::test]
    async fn a_lease_without_resource_version_is_never_written() {
        let api = FakeApi::with(|req| panic!("unexpected {req:?}"));
        let leases: Api<Lease> = Api::namespaced(api.client(), "bp");
        let mut unguarded = lease(Some("iad"), 1, None);
        unguarded.metadata.resource_version = None;
        let err = replace_guarded(&leases, &unguarded).await.unwrap_err();
        assert!(matches!(err, LeaseWriteError::Unguarded { .. }), "{err}");
    }
}
