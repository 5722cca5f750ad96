//! Models of the servers the operator manages, run as pod programs on simulated hosts:
//! MySQL 8 ([`mysql`]) and Dragonfly ([`dragonfly`]). Each follows its server's
//! documentation for the behaviour the operator depends on; docs/simulation.md lists what
//! each implements, what it leaves out, and the sources.

pub mod dragonfly;
pub mod mysql;
