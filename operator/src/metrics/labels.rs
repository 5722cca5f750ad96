//! The label sets of the operator's metrics and the label values users write in PromQL
//! (`health="SplitBrain"`, `kind="planned"`, `result="failed"`), mapped from the API's
//! enums. The metric families that use them are in `metrics`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};

use crate::api::{FailoverKind, FailoverResult, Health};

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(super) struct GroupLabels {
    pub namespace: String,
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct HealthLabels {
    pub namespace: String,
    pub group: String,
    pub health: HealthLabel,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are written as users see them in status
pub(super) enum HealthLabel {
    Healthy,
    Degraded,
    SplitBrain,
    NoPrimary,
}

impl From<Health> for HealthLabel {
    fn from(health: Health) -> Self {
        match health {
            Health::Healthy => Self::Healthy,
            Health::Degraded => Self::Degraded,
            Health::SplitBrain => Self::SplitBrain,
            Health::NoPrimary => Self::NoPrimary,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SiteLabels {
    pub namespace: String,
    pub group: String,
    pub site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FailoverLabels {
    pub namespace: String,
    pub group: String,
    pub kind: KindLabel,
    pub result: ResultLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FailoverKindLabels {
    pub namespace: String,
    pub group: String,
    pub kind: KindLabel,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // lower-case label values, as PromQL users write them
pub(super) enum KindLabel {
    emergency,
    planned,
}

impl From<FailoverKind> for KindLabel {
    fn from(kind: FailoverKind) -> Self {
        match kind {
            FailoverKind::Emergency => Self::emergency,
            FailoverKind::Planned => Self::planned,
        }
    }
}

/// How a failover ended: `succeeded`, or `failed` (started, then undone).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(super) enum ResultLabel {
    succeeded,
    failed,
}

impl From<FailoverResult> for ResultLabel {
    fn from(result: FailoverResult) -> Self {
        match result {
            FailoverResult::Succeeded => Self::succeeded,
            FailoverResult::Failed => Self::failed,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReconcileLabels {
    pub namespace: String,
    pub group: String,
    pub result: ReconcileResult,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReconcileResult {
    success,
    error,
}

/// One backup profile of one group.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(super) struct ProfileLabels {
    pub namespace: String,
    pub group: String,
    pub profile: String,
}

/// A backup or verification result: `succeeded` or `failed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(super) struct ProfileResultLabels {
    pub namespace: String,
    pub group: String,
    pub profile: String,
    pub result: String,
}

/// `bloodraven_dragonfly_role{site,role}`: `role` is `master` or `replica`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DragonflyRoleLabels {
    pub namespace: String,
    pub group: String,
    pub site: String,
    pub role: String,
}

/// `bloodraven_dragonfly_takeovers_total{method,result}`: `method` is `REPLTAKEOVER`,
/// `REPLICAOF NO ONE` or `none`; `result` `succeeded` or `failed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DragonflyTakeoverLabels {
    pub namespace: String,
    pub group: String,
    pub method: String,
    pub result: ResultLabel,
}
