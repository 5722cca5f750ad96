//! Bloodraven: a Kubernetes operator that keeps a MySQL service writable across two
//! sites, with writer-lease fencing, emergency and planned failover, divergence
//! detection, DNS steering and a co-managed Dragonfly cache.
//!
//! Architecture (see DESIGN.md): `api` holds the CRD types; `engine` is the pure
//! decision logic; `adapters` talk to MySQL, Dragonfly and Kubernetes; `controllers`
//! run observe -> decide -> act; `transport` is the seam the simulation plugs into.

// What other crates use is `pub`; everything else says `pub(crate)`.
#![warn(unreachable_pub)]

pub mod adapters;
pub mod api;
pub mod children;
pub mod cli;
pub mod controllers;
pub mod deploy;
pub mod engine;
pub mod gtid;
pub mod hash;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod schema;
pub mod sidecar;
pub mod transport;
pub mod validate;
