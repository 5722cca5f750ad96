//! bloodraven-chaos: runs numbered YAML scenarios against a cluster (the simulated one
//! or a live k3d playground), injects faults with a crash-safe undo ledger, asserts on
//! custom-resource status, Events and /metrics, checks safety invariants over the
//! counter workload's history, and reports to the terminal, JUnit and JSON.

#![warn(unreachable_pub)]

pub mod alerts;
pub mod backend;
pub(crate) mod cel_where;
pub mod cli;
pub mod cluster;
pub(crate) mod console;
pub mod duration;
pub mod invariants;
pub mod ledger;
pub mod metrics;
pub(crate) mod partial;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sweep;
pub mod template;
pub mod workload;
