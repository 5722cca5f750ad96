//! Bloodraven: a Kubernetes operator that keeps a MySQL service writable across two
//! sites, with writer-lease fencing, emergency and planned failover, divergence
//! detection, DNS steering and a co-managed Dragonfly cache.
//!
//! Architecture (see docs/design.md): `api` holds the CRD types; `engine` is the pure
//! decision logic; `production` talk to MySQL, Dragonfly and Kubernetes; `controllers`
//! run observe -> decide -> act; `seams` are where the simulation plugs in.

// What other crates use is `pub`; everything else says `pub(crate)`.
#![warn(unreachable_pub)]

pub mod api;
pub mod backup;
pub mod children;
pub mod cli;
pub mod controllers;
pub mod cron;
pub mod deploy;
pub mod engine;
pub mod gtid;
pub mod hash;
pub mod leader;
pub mod metrics;
pub mod production;
pub mod rbac;
pub mod schema;
pub mod seams;
pub mod sidecar;
pub mod state_feed;
pub mod storage;
pub mod validate;
pub mod verification;
