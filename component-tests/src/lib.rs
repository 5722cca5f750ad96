//! Component tests live in `tests/`; this library holds what they share: a small Helm
//! template renderer for the chart tests (`helm`), the after-the-fact RBAC check of
//! the simulated API server's request log (`rbac_audit`), and the metric names of PromQL
//! expressions and of the operator's registry for the alert tests (`promql`), and
//! running promtool for them (`promtool`).

pub mod helm;
pub mod markdown;
pub mod promql;
pub mod promtool;
pub mod rbac_audit;
