//! The fault mailbox between a client host and the driver: a host cannot reach the
//! World, so it posts faults here and the driver applies them between two ticks, in
//! order, and answers each request.

use std::sync::{Arc, Mutex};

use crate::{Fault, World, WorldError};

/// Why requested faults were not applied.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("world mailbox poisoned")]
    Poisoned,
    #[error("the simulation driver stopped before applying the fault")]
    DriverStopped,
    #[error("{fault}: {source}")]
    Fault {
        fault: String,
        #[source]
        source: WorldError,
    },
}

type Reply = tokio::sync::oneshot::Sender<Result<(), MailboxError>>;

/// Faults to apply in order, and where to say how it went.
type WorldRequest = (Vec<Fault>, Reply);

/// World faults requested by client hosts, applied by the driver between ticks.
#[derive(Clone, Default)]
pub struct WorldMailbox(Arc<Mutex<Vec<WorldRequest>>>);

impl WorldMailbox {
    /// Posts `faults` and waits for the driver to apply them (stops at the first error).
    pub async fn apply(&self, faults: Vec<Fault>) -> Result<(), MailboxError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0
            .lock()
            .map_err(|_| MailboxError::Poisoned)?
            .push((faults, tx));
        rx.await.map_err(|_| MailboxError::DriverStopped)?
    }

    /// Applies every pending request in order and answers it.
    pub fn serve(&self, world: &mut World) {
        let pending = match self.0.lock() {
            Ok(mut queue) => std::mem::take(&mut *queue),
            Err(_) => return,
        };
        for (faults, reply) in pending {
            let mut result = Ok(());
            for fault in faults {
                if let Err(source) = world.apply(fault.clone()) {
                    result = Err(MailboxError::Fault {
                        fault: format!("{fault:?}"),
                        source,
                    });
                    break;
                }
            }
            let _ = reply.send(result);
        }
    }
}
