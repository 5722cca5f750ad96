//! Production implementations of the transport seams: MySQL over mysql_async. (The
//! Dragonfly seam already hands out a `redis` connection; the production Dragonfly
//! connector lives beside it.)

pub mod dragonfly;
pub mod mysql;
