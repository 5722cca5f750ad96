//! The fault ledger: an append-only JSON-lines file where every fault is written, with
//! the backend operations that undo it, and fsynced BEFORE the fault is applied. If the
//! runner itself dies mid-scenario, `bloodraven-chaos recover --ledger PATH` reads the
//! file and undoes whatever was not yet undone, newest first.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scenario::{BackendKind, Fault};

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Record {
    /// First line: which run this is.
    Run {
        backend: BackendKind,
        scenario: String,
        seed: Option<u64>,
        started_at: String,
    },
    /// A fault about to be applied, and how to undo it.
    Fault(FaultEntry),
    /// The fault `seq` has been undone.
    Undone { seq: u64, at: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultEntry {
    pub seq: u64,
    pub step: String,
    pub fault: Fault,
    /// Backend operations that undo the fault, to run in order.
    pub undo: Vec<Value>,
    pub at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ledger {}: line {line}: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("ledger {}: empty or has no run header", path.display())]
    NoHeader { path: PathBuf },
    #[error(
        "ledger {}: {pending} fault(s) of an earlier {backend} run are not undone; run `bloodraven-chaos recover --ledger {}` first (starting a new run would erase their undo)",
        path.display(),
        path.display()
    )]
    PendingUndos {
        path: PathBuf,
        backend: BackendKind,
        pending: usize,
    },
    #[error("ledger {}: written for the {found} backend, not {wanted}", path.display())]
    OtherBackend {
        path: PathBuf,
        found: BackendKind,
        wanted: BackendKind,
    },
}

/// An open ledger for the current run; tracks which faults are still in effect.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: File,
    next_seq: u64,
    pending: Vec<FaultEntry>,
}

impl Ledger {
    /// Creates (truncates) the ledger and writes the run header. Refuses to truncate a
    /// live backend's ledger that still lists faults not undone, or that cannot be read
    /// to tell (their undo would be lost with it); a sim ledger's faults ended with its
    /// simulated cluster.
    pub fn create(
        path: &Path,
        backend: BackendKind,
        scenario: &str,
        seed: Option<u64>,
        started_at: String,
    ) -> Result<Self, LedgerError> {
        let io = |source| LedgerError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        match read_for_recovery(path) {
            Ok(earlier) if earlier.backend != BackendKind::Sim && !earlier.pending.is_empty() => {
                return Err(LedgerError::PendingUndos {
                    path: path.to_owned(),
                    backend: earlier.backend,
                    pending: earlier.pending.len(),
                });
            }
            Ok(_) | Err(LedgerError::NoHeader { .. }) => {}
            Err(LedgerError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(io)?;
        let mut ledger = Ledger {
            path: path.to_owned(),
            file,
            next_seq: 1,
            pending: Vec::new(),
        };
        ledger.append(&Record::Run {
            backend,
            scenario: scenario.to_owned(),
            seed,
            started_at,
        })?;
        Ok(ledger)
    }

    /// Opens a ledger to add faults to it, keeping the faults it already lists (the
    /// playground's `chaos.sh` adds one fault per call, and one `recover` undoes them
    /// all). A missing or empty file is created with a run header; a file written by
    /// another backend is refused, since its undo operations could not run here.
    pub fn open_append(
        path: &Path,
        backend: BackendKind,
        scenario: &str,
        started_at: String,
    ) -> Result<Self, LedgerError> {
        let io = |source| LedgerError::Io {
            path: path.to_owned(),
            source,
        };
        let existing = match read_for_recovery(path) {
            Ok(recovery) => recovery,
            Err(LedgerError::NoHeader { .. }) => {
                return Self::create(path, backend, scenario, None, started_at);
            }
            Err(LedgerError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Self::create(path, backend, scenario, None, started_at);
            }
            Err(e) => return Err(e),
        };
        if existing.backend != backend {
            return Err(LedgerError::OtherBackend {
                path: path.to_owned(),
                found: existing.backend,
                wanted: backend,
            });
        }
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        let highest = highest_seq(path)?;
        Ok(Ledger {
            path: path.to_owned(),
            file,
            next_seq: highest + 1,
            // read_for_recovery lists them newest first; the ledger keeps oldest first.
            pending: existing.pending.into_iter().rev().collect(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes and fsyncs the fault and its undo. Call this before applying the fault:
    /// a crash between the two leaves an undo for a fault that never happened, which is
    /// harmless (undo operations are idempotent), while the reverse order could leave a
    /// fault nobody knows how to undo.
    pub fn record_fault(
        &mut self,
        step: &str,
        fault: &Fault,
        undo: Vec<Value>,
        at: String,
    ) -> Result<u64, LedgerError> {
        let entry = FaultEntry {
            seq: self.next_seq,
            step: step.to_owned(),
            fault: fault.clone(),
            undo,
            at,
        };
        self.append(&Record::Fault(entry.clone()))?;
        self.next_seq += 1;
        let seq = entry.seq;
        self.pending.push(entry);
        Ok(seq)
    }

    /// Faults still in effect, newest first: the order to undo them in.
    pub fn pending_newest_first(&self) -> Vec<FaultEntry> {
        self.pending.iter().rev().cloned().collect()
    }

    pub fn mark_undone(&mut self, seq: u64, at: String) -> Result<(), LedgerError> {
        self.append(&Record::Undone { seq, at })?;
        self.pending.retain(|e| e.seq != seq);
        Ok(())
    }

    fn append(&mut self, record: &Record) -> Result<(), LedgerError> {
        let io = |source| LedgerError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(record).map_err(|e| io(std::io::Error::other(e)))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_all().map_err(io)
    }
}

/// What a ledger file says is still to be undone.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    pub backend: BackendKind,
    pub scenario: String,
    pub seed: Option<u64>,
    /// Faults not marked undone, newest first.
    pub pending: Vec<FaultEntry>,
}

/// Reads a ledger after a crash. A torn final line (the crash hit mid-write, before the
/// fsync returned, so its fault was never applied) is ignored; corruption anywhere else
/// is an error, since guessing could leave a fault in place.
pub fn read_for_recovery(path: &Path) -> Result<Recovery, LedgerError> {
    let io = |source| LedgerError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(io)?;
    let mut header = None;
    let mut pending: Vec<FaultEntry> = Vec::new();
    let last = lines.len();
    for (idx, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(_) if idx + 1 == last => break,
            Err(e) => {
                return Err(LedgerError::Corrupt {
                    path: path.to_owned(),
                    line: idx + 1,
                    message: e.to_string(),
                });
            }
        };
        match record {
            Record::Run {
                backend,
                scenario,
                seed,
                ..
            } => header = Some((backend, scenario, seed)),
            Record::Fault(entry) => pending.push(entry),
            Record::Undone { seq, .. } => pending.retain(|e| e.seq != seq),
        }
    }
    let (backend, scenario, seed) = header.ok_or_else(|| LedgerError::NoHeader {
        path: path.to_owned(),
    })?;
    pending.reverse();
    Ok(Recovery {
        backend,
        scenario,
        seed,
        pending,
    })
}

/// The highest fault sequence number a ledger has used (0 for none), undone or not.
fn highest_seq(path: &Path) -> Result<u64, LedgerError> {
    let text = std::fs::read_to_string(path).map_err(|source| LedgerError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<Record>(line).ok())
        .map(|record| match record {
            Record::Fault(entry) => entry.seq,
            Record::Undone { seq, .. } => seq,
            Record::Run { .. } => 0,
        })
        .max()
        .unwrap_or(0))
}

/// Appends an `undone` record to an existing ledger (used by `recover` after a crash).
pub fn append_undone(path: &Path, seq: u64, at: String) -> Result<(), LedgerError> {
    let io = |source| LedgerError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new().append(true).open(path).map_err(io)?;
    let mut line = serde_json::to_string(&Record::Undone { seq, at })
        .map_err(|e| io(std::io::Error::other(e)))?;
    line.push('\n');
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_and_undoes_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ledger");
        let mut ledger =
            Ledger::create(&path, BackendKind::K3d, "02-x", Some(7), "t0".into()).unwrap();
        let a = ledger
            .record_fault(
                "steps[0]",
                &Fault::NodeCrash("iad".into()),
                vec![json!({"start": "n1"})],
                "t1".into(),
            )
            .unwrap();
        let b = ledger
            .record_fault(
                "steps[1]",
                &Fault::Cordon("pdx".into()),
                vec![json!({"uncordon": "n2"})],
                "t2".into(),
            )
            .unwrap();
        assert_eq!((a, b), (1, 2));
        let order: Vec<u64> = ledger
            .pending_newest_first()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(order, vec![2, 1]);
        ledger.mark_undone(2, "t3".into()).unwrap();
        let r = read_for_recovery(&path).unwrap();
        assert_eq!(r.pending.len(), 1);
        assert_eq!(r.pending[0].fault, Fault::NodeCrash("iad".into()));
        assert_eq!(
            (r.backend, r.scenario.as_str(), r.seed),
            (BackendKind::K3d, "02-x", Some(7))
        );
    }

    #[test]
    fn open_append_keeps_earlier_faults_and_numbers_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("playground.ledger");
        let mut first =
            Ledger::open_append(&path, BackendKind::K3d, "playground", "t0".into()).unwrap();
        first
            .record_fault(
                "a",
                &Fault::Cordon("iad".into()),
                vec![json!({"u": 1})],
                "t1".into(),
            )
            .unwrap();
        let undone = first
            .record_fault("b", &Fault::KillSite("pdx".into()), vec![], "t2".into())
            .unwrap();
        first.mark_undone(undone, "t3".into()).unwrap();
        drop(first);
        let mut second =
            Ledger::open_append(&path, BackendKind::K3d, "playground", "t4".into()).unwrap();
        assert_eq!(second.pending_newest_first().len(), 1, "the cordon is kept");
        let seq = second
            .record_fault(
                "c",
                &Fault::NetworkPartition("iad".into()),
                vec![],
                "t5".into(),
            )
            .unwrap();
        assert_eq!(seq, 3, "numbers never repeat");
        let pending: Vec<u64> = read_for_recovery(&path)
            .unwrap()
            .pending
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(pending, vec![3, 1]);
        let err =
            Ledger::open_append(&path, BackendKind::Sim, "playground", "t6".into()).unwrap_err();
        assert!(matches!(err, LedgerError::OtherBackend { .. }), "{err}");
    }

    #[test]
    fn a_ledger_with_pending_undos_is_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ledger");
        let mut ledger = Ledger::create(&path, BackendKind::K3d, "x", None, "t0".into()).unwrap();
        let seq = ledger
            .record_fault(
                "s",
                &Fault::NodeCrash("iad".into()),
                vec![json!({"op": "start-container", "container": "n1"})],
                "t1".into(),
            )
            .unwrap();
        drop(ledger);
        let err = Ledger::create(&path, BackendKind::K3d, "x", None, "t2".into()).unwrap_err();
        assert!(
            matches!(err, LedgerError::PendingUndos { pending: 1, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("bloodraven-chaos recover --ledger"),
            "{err}"
        );
        assert_eq!(read_for_recovery(&path).unwrap().pending.len(), 1, "kept");
        // Once recovered, the next run may start over.
        append_undone(&path, seq, "t3".into()).unwrap();
        Ledger::create(&path, BackendKind::K3d, "x", None, "t4".into()).unwrap();
        assert!(read_for_recovery(&path).unwrap().pending.is_empty());
        // A sim ledger's faults ended with the simulated cluster: truncated.
        let sim = dir.path().join("sim.ledger");
        let mut ledger = Ledger::create(&sim, BackendKind::Sim, "x", None, "t0".into()).unwrap();
        ledger
            .record_fault("s", &Fault::KillSite("iad".into()), vec![], "t1".into())
            .unwrap();
        drop(ledger);
        Ledger::create(&sim, BackendKind::Sim, "x", None, "t2".into()).unwrap();
    }

    #[test]
    fn torn_last_line_is_ignored_but_corruption_elsewhere_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ledger");
        let mut ledger = Ledger::create(&path, BackendKind::K3d, "x", None, "t0".into()).unwrap();
        ledger
            .record_fault("s", &Fault::KillSite("iad".into()), vec![], "t1".into())
            .unwrap();
        drop(ledger);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"record\":\"fault\",\"seq\":2,\"st");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_for_recovery(&path).unwrap().pending.len(), 1);

        let corrupt = text.replacen("{\"record\":\"fault\"", "garbage", 1);
        std::fs::write(&path, corrupt).unwrap();
        let err = read_for_recovery(&path).unwrap_err();
        assert!(matches!(err, LedgerError::Corrupt { line: 2, .. }), "{err}");
    }
}
