//! Component tests live in `tests/`; this library holds what they share: a small Helm
//! template renderer for the chart tests (`helm`) and the after-the-fact RBAC check of
//! the simulated API server's request log (`rbac_audit`).

pub mod helm;
pub mod rbac_audit;
