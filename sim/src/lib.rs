//! bloodraven-sim: a deterministic, seeded simulation of a whole Kubernetes cluster in
//! one process (API server, nodes, kubelet, network, MySQL and Dragonfly models), on
//! which the real operator, sidecar and chaos runner run unchanged.

pub mod models;
pub mod pod;
