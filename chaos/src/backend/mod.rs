//! Where a scenario runs. A backend is a thin adapter: an API client for the steps
//! (`cluster`), fault planning and execution, a metrics scrape, the workload's
//! connection, site writability for single-writer, and the clock. Everything else —
//! steps, polling, the ledger, invariants, reports — is the runner's, shared by both.

pub mod k3d;
pub mod k3d_live;
pub mod sim;
pub mod tunnel;

use std::sync::Arc;

use bloodraven::seams::SharedClock;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::cluster::{ClusterError, SharedCluster};
use crate::scenario::{BackendKind, Fault, ObjectsCheck};
use crate::workload::{CounterTarget, WritabilitySample};

/// How to inject a fault and how to undo it, as backend operations (data, so that the
/// undo can be written to the ledger before the fault is applied and replayed by
/// `bloodraven-chaos recover` in another process).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    pub apply: Vec<Value>,
    pub undo: Vec<Value>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("{backend} backend cannot inject `{fault}`: {reason}")]
    UnsupportedFault {
        backend: BackendKind,
        fault: String,
        reason: String,
    },
    #[error("{backend} backend: site {site:?} has no node (looked for {selector})")]
    NoNodeForSite {
        backend: BackendKind,
        site: String,
        selector: String,
    },
    #[error(
        "{backend} backend: no pod labelled {selector} in namespace {namespace}: the fault would change nothing"
    )]
    NoPodsMatched {
        backend: BackendKind,
        namespace: String,
        selector: String,
    },
    #[error("{backend} backend: unknown ledger operation {op}: {message}")]
    BadOperation {
        backend: BackendKind,
        op: String,
        message: String,
    },
    /// A Kubernetes call a fault, its plan or the metrics scrape made.
    #[error("{backend} backend: {operation}: {source}")]
    Kube {
        backend: BackendKind,
        operation: String,
        source: Box<ClusterError>,
    },
    /// A Docker call on a node container.
    #[error("{backend} backend: {operation}: {source}")]
    Docker {
        backend: BackendKind,
        operation: String,
        source: Box<k3d::DockerError>,
    },
    /// A command run in a node container exited non-zero; its stderr says why.
    #[error(
        "{backend} backend: {operation}: `{command}` in {container} exited with {exit_code}: {stderr}"
    )]
    CommandFailed {
        backend: BackendKind,
        operation: String,
        container: String,
        command: String,
        exit_code: i64,
        stderr: String,
    },
    /// A data-plane call (tunnel, SQL session, the group's Secret).
    #[error("{backend} backend: {operation}: {source}")]
    Live {
        backend: BackendKind,
        operation: String,
        source: Box<k3d_live::LiveError>,
    },
    /// The operator runs several replicas and none holds the leader Lease.
    #[error("{backend} backend: operator pods {pods} and no Lease {lease} held by one of them")]
    NoOperatorLeader {
        backend: BackendKind,
        pods: String,
        lease: String,
    },
    /// The cluster is not fit for a live run (checked before anything changes).
    #[error("{backend} backend: cluster preflight: {source}")]
    Preflight {
        backend: BackendKind,
        source: Box<k3d::preflight::PreflightError>,
    },
    #[error("{backend} backend: {operation}: {message}")]
    Call {
        backend: BackendKind,
        operation: String,
        message: String,
    },
    #[error("{backend} backend is not available: {reason}")]
    Unavailable {
        backend: BackendKind,
        reason: String,
    },
}

/// Everything the runner asks of a backend. Fault planning and execution come from
/// [`LedgerFaults`], implemented once for every backend's [`FaultOps`].
pub trait Backend: LedgerFaults {
    fn kind(&self) -> BackendKind;
    /// A line for reports: which cluster, which context.
    fn describe(&self) -> String;
    /// The API operations scenario steps use.
    fn cluster(&self) -> SharedCluster;
    /// Wall time for timestamps (simulated time on sim).
    fn clock(&self) -> SharedClock;
    /// The operator's /metrics body.
    fn scrape_metrics(&self) -> BoxFuture<'_, Result<String, BackendError>>;
    /// The counter workload's connection to the group in `namespace` (the fixture's),
    /// when the backend has one.
    fn counter(&self, namespace: &str) -> Option<Arc<dyn CounterTarget>>;
    /// The sites of the group in `namespace` (the fixture's) whose writability
    /// [`Backend::site_writability`] reads; `None` when the backend cannot observe
    /// writability.
    fn writability_sites<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, BackendError>>;
    /// `site`'s writability now. The runner polls each site on its own and stamps each
    /// answer when it arrives, so a slow or cut-off site neither delays nor restamps
    /// the others. A site it could not observe this time is
    /// [`SiteWritability::Unknown`], never a guess.
    fn site_writability<'a>(
        &'a self,
        namespace: &'a str,
        site: &'a str,
    ) -> BoxFuture<'a, SiteWritability>;
    /// Writability changes the backend recorded itself since the last call, oldest
    /// first, when it can see every change as it happens (sim: sampled from the models
    /// after every simulated tick). `None`: it cannot, and the runner polls
    /// [`Backend::site_writability`] instead.
    fn writability_changes(&self) -> Option<Vec<WritabilitySample>> {
        None
    }
    /// Every tick since the start at which an app-facing Dragonfly Service selected two
    /// pods, one line each, when the backend can see every tick (sim). `None`: it
    /// cannot, and `single-cache-master` is reported as not checkable.
    fn cache_master_violations(&self) -> Option<Vec<String>> {
        None
    }
    /// The object keys under the check's bucket and prefix, listed with the production
    /// S3 client as a pod in `namespace` reaches the store. `Ok(None)`: this backend
    /// cannot list a store (the check is reported as not checkable).
    fn object_keys<'a>(
        &'a self,
        _namespace: &'a str,
        _check: &'a ObjectsCheck,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, BackendError>> {
        Box::pin(async { Ok(None) })
    }
}

pub type SharedBackend = Arc<dyn Backend>;

/// One site's writability as one poll saw it. `Unknown` is its own state: a site the
/// poll could not read is not evidence of "not writable" (single-writer would pass
/// while observing nothing), so the runner records it as a gap in the observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteWritability {
    Writable,
    ReadOnly,
    /// Why the site could not be read.
    Unknown(String),
}

impl SiteWritability {
    /// From an observed `read_only` / `super_read_only` pair: an ordinary client's
    /// commit needs both off.
    pub fn from_flags(read_only: bool, super_read_only: bool) -> Self {
        if read_only || super_read_only {
            Self::ReadOnly
        } else {
            Self::Writable
        }
    }

    /// `Some(writable)` when observed, `None` when unknown.
    pub fn observed(&self) -> Option<bool> {
        match self {
            Self::Writable => Some(true),
            Self::ReadOnly => Some(false),
            Self::Unknown(_) => None,
        }
    }
}

/// A backend's typed operations for one fault: `(apply, undo)`.
pub type TypedPlan<Op> = (Vec<Op>, Vec<Op>);

/// A backend's own fault operations, typed: what [`LedgerFaults::plan_fault`] decides and
/// [`LedgerFaults::execute`] runs. JSON appears only at the ledger, through the one
/// [`LedgerFaults`] implementation for every backend.
pub trait FaultOps: Sync {
    /// One concrete operation (serialized into the ledger, so that `recover` can replay
    /// it after the runner itself crashed).
    type Op: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync;
    const KIND: BackendKind;

    /// The operations that inject `fault` and those that undo it, without changing
    /// anything (it may read, e.g. to find a site's nodes).
    fn plan_ops<'a>(
        &'a self,
        fault: &'a Fault,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<TypedPlan<Self::Op>, BackendError>>;

    /// Runs one operation.
    fn run_op<'a>(&'a self, op: &'a Self::Op) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// Fault injection as the runner and the ledger see it: operations as JSON, so that the
/// undo can be written to the ledger before the fault is applied and replayed by
/// `bloodraven-chaos recover` in another process.
pub trait LedgerFaults: Send + Sync {
    /// Decides the operations that inject `fault` and those that undo it, without
    /// changing anything (it may read, e.g. to find a site's nodes).
    fn plan_fault<'a>(
        &'a self,
        fault: &'a Fault,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<FaultPlan, BackendError>>;
    /// Runs planned operations, in order; a foreign or corrupt entry is an error that
    /// names it, and nothing after it runs.
    fn execute<'a>(&'a self, ops: &'a [Value]) -> BoxFuture<'a, Result<(), BackendError>>;
}

impl<B: FaultOps + Send> LedgerFaults for B {
    fn plan_fault<'a>(
        &'a self,
        fault: &'a Fault,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<FaultPlan, BackendError>> {
        Box::pin(async move {
            let (apply, undo) = self.plan_ops(fault, namespace).await?;
            Ok(FaultPlan {
                apply: encode_ops(B::KIND, apply)?,
                undo: encode_ops(B::KIND, undo)?,
            })
        })
    }

    fn execute<'a>(&'a self, ops: &'a [Value]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            for value in ops {
                let op: B::Op = serde_json::from_value(value.clone()).map_err(|e| {
                    BackendError::BadOperation {
                        backend: B::KIND,
                        op: value.to_string(),
                        message: e.to_string(),
                    }
                })?;
                self.run_op(&op).await?;
            }
            Ok(())
        })
    }
}

/// Encodes a backend's fault operations for the ledger.
fn encode_ops<T: serde::Serialize + std::fmt::Debug>(
    backend: BackendKind,
    ops: Vec<T>,
) -> Result<Vec<Value>, BackendError> {
    ops.into_iter()
        .map(|op| {
            serde_json::to_value(&op).map_err(|e| BackendError::BadOperation {
                backend,
                op: format!("{op:?}"),
                message: e.to_string(),
            })
        })
        .collect()
}
