//! The writer Lease `<group>-writer` as a child: only its identity and declared
//! duration. Holder, renewTime and the writable grant are never applied here: the
//! sidecar renews and the operator moves the lease with resourceVersion-guarded
//! replaces (`production::kube::WriterLeaseApi`), and an apply must not fight them.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};

use super::{Owner, names};
use crate::api::MysqlFailoverGroup;

/// `app.kubernetes.io/name` of the writer lease.
pub(super) const WRITER_LEASE_APP: &str = "bloodraven-writer-lease";

pub fn writer_lease(owner: &Owner, group: &MysqlFailoverGroup) -> Lease {
    // Whole seconds, rounded up: a reader that trusts the declared value waits at
    // least as long as the configured duration.
    let millis = group.spec.failover.lease_duration.as_millis();
    let seconds = i32::try_from(millis.div_ceil(1_000)).unwrap_or(i32::MAX);
    Lease {
        metadata: owner.child_meta(
            names::writer_lease(&owner.name),
            owner.labels(WRITER_LEASE_APP),
        ),
        spec: Some(LeaseSpec {
            lease_duration_seconds: Some(seconds),
            ..LeaseSpec::default()
        }),
    }
}
