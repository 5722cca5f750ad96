//! The seams: every connection and every clock read the operator, the sidecar
//! or the chaos runner makes goes through one of these. Production builds them from the
//! real network and the machine's clock; the simulation builds them over its simulated
//! network and simulated time. Nothing in the operator asks which one it has.

mod clock;
pub mod dragonfly;
pub mod dump;
pub mod mysql;
pub mod object_storage;

pub use clock::{Clock, SharedClock, SystemClock};
pub use dragonfly::{
    DragonflyConnectError, DragonflyConnector, DragonflyTarget, DragonflyTimeouts,
    SharedDragonflyConnector,
};
pub use mysql::{
    CloneDonor, CloneState, GtidWait, IoThreadState, MysqlConnector, MysqlError, MysqlSession,
    MysqlStatus, MysqlTarget, MysqlTimeouts, REPLICATION_PRIVILEGES, ReadOnlyMode, ReplicaStatus,
    ReplicationAccount, ReplicationError, ReplicationSource, SemisyncSourceStatus,
    SharedMysqlConnector,
};
