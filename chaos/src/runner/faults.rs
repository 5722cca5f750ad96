//! Fault injection and recovery: plan through the backend, write the undo to the
//! ledger before applying, and undo in reverse order at the end of a run (or of a
//! `recover` step); leftovers of a crashed earlier run are undone before a fixture.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::backend::BackendError;
use crate::ledger::LedgerError;

/// Why a fault was not injected, or not every fault undone.
#[derive(Debug, thiserror::Error)]
pub(super) enum FaultError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the fault ledger's lock is poisoned")]
    LedgerPoisoned,
    /// One text per ledger entry that was not undone (or not marked undone), naming it.
    #[error("{}", .0.join("; "))]
    NotUndone(Vec<String>),
}

impl Run<'_> {
    pub(super) async fn inject(&self, step: &Step, fault: &Fault) -> Result<(), FaultError> {
        if let Fault::Recover(_) = fault {
            return self.recover_all().await;
        }
        let plan = self.backend.plan_fault(fault, &self.namespace).await?;
        let at = self.backend.clock().now().to_string();
        let seq = self
            .ledger
            .lock()
            .map_err(|_| FaultError::LedgerPoisoned)?
            .record_fault(&step.label(), fault, plan.undo.clone(), at)?;
        self.note(
            TimelineKind::Fault,
            format!("#{seq} {fault}: {}", ops_summary(&plan.apply)),
        );
        Ok(self.backend.execute(&plan.apply).await?)
    }

    /// Undoes every fault still in effect, newest first.
    pub(super) async fn recover_all(&self) -> Result<(), FaultError> {
        let pending = self
            .ledger
            .lock()
            .map(|l| l.pending_newest_first())
            .unwrap_or_default();
        let mut errors = Vec::new();
        for entry in pending {
            match self.backend.execute(&entry.undo).await {
                Ok(()) => {
                    let at = self.backend.clock().now().to_string();
                    if let Ok(mut l) = self.ledger.lock()
                        && let Err(e) = l.mark_undone(entry.seq, at)
                    {
                        errors.push(format!("marking #{} undone: {e}", entry.seq));
                    }
                    self.note(
                        TimelineKind::Undo,
                        format!(
                            "#{} {}: {}",
                            entry.seq,
                            entry.fault,
                            ops_summary(&entry.undo)
                        ),
                    );
                }
                Err(e) => errors.push(format!("undo #{} {}: {e}", entry.seq, entry.fault)),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(FaultError::NotUndone(errors))
        }
    }

    pub(super) async fn recover_leftovers(&self, failures: &mut Vec<Failure>) {
        let left = self
            .ledger
            .lock()
            .map(|l| l.pending_newest_first().len())
            .unwrap_or(0);
        if left == 0 {
            return;
        }
        self.note(
            TimelineKind::Note,
            format!("{left} fault(s) still in effect after the run; undoing them"),
        );
        if let Err(e) = self.recover_all().await {
            failures.push(Failure::new("recover", format!("could not undo every fault: {e}")).with_detail(format!(
                    "the ledger {} still lists them; run `bloodraven-chaos recover --ledger {}`",
                    self.config.ledger_path.display(),
                    self.config.ledger_path.display()
                )));
        }
    }
}

pub(super) fn ops_summary(ops: &[Value]) -> String {
    if ops.is_empty() {
        return "(no operations)".into();
    }
    ops.iter()
        .map(|op| op.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
