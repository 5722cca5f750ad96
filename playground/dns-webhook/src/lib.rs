//! An in-memory external-dns webhook provider for the Bloodraven playground: external-dns
//! (or the simulation's stand-in) pushes the records of DNSEndpoint objects here, and the
//! dashboard reads them back. Records live only as long as the process.

pub mod cli;
pub mod http;
pub mod records;
