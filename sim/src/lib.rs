//! bloodraven-sim: a deterministic, seeded simulation of a whole Kubernetes cluster in
//! one process (API server, nodes, kubelet, network, MySQL and Dragonfly models), on
//! which the real operator, sidecar and chaos runner run unchanged.

#![warn(unreachable_pub)]

pub mod apiserver;
pub mod bloodraven_image;
pub(crate) mod clock;
pub mod cluster;
pub mod dialer;
pub mod expose;
pub mod external_dns;
pub mod harness;
pub mod hosts;
pub mod images;
pub mod logs;
pub mod models;
pub(crate) mod network;
pub(crate) mod object;
pub mod playground;
pub mod playground_apps;
pub mod pod;
pub mod programs;
pub mod rng;
pub mod seam_faults;
pub mod serve;
pub mod transport;
pub mod world;

pub use clock::SimClock;
pub use images::{ImageRegistry, StartupProfile};
pub use network::Placement;
pub use world::{Fault, Site, World, WorldBuilder, WorldError};
