//! Notices panics inside a simulated run. Tokio catches a panicking task and turmoil can
//! swallow a host's, so a run could "pass" with a backtrace on stderr. A process-wide
//! hook (installed once, chaining to the previous one so the message still prints)
//! records each thread's panics; a run fails when its thread saw any.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

static HOOK: Once = Once::new();

fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            // try_*: the hook may run while this thread's locals are being torn down.
            let _ = PANICS.try_with(|p| {
                if let Ok(mut p) = p.try_borrow_mut() {
                    p.push(info.to_string());
                }
            });
            previous(info);
        }));
    });
}

/// What a watched closure did: its result (`None` if it panicked out) and every panic
/// on this thread while it ran, caught or not.
pub(crate) struct Watched<T> {
    pub(crate) result: Option<T>,
    pub(crate) panics: Vec<String>,
}

/// Runs `body` on this thread, catching a panic that escapes it and recording those
/// that something inside caught (a tokio task's).
pub(crate) fn watch<T>(body: impl FnOnce() -> T) -> Watched<T> {
    install_hook();
    let _ = PANICS.try_with(|p| p.borrow_mut().clear());
    let result = panic::catch_unwind(AssertUnwindSafe(body)).ok();
    let panics = PANICS
        .try_with(|p| std::mem::take(&mut *p.borrow_mut()))
        .unwrap_or_default();
    Watched { result, panics }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;

    #[test]
    fn a_quiet_body_has_no_panics() {
        let w = watch(|| 7);
        assert_eq!(w.result, Some(7));
        assert!(w.panics.is_empty());
    }

    #[test]
    fn a_panic_escaping_the_body_is_caught_and_recorded() {
        let w = watch(|| -> u32 { panic!("the world fell over") });
        assert!(w.result.is_none());
        assert_eq!(w.panics.len(), 1);
        assert!(
            w.panics[0].contains("the world fell over"),
            "{:?}",
            w.panics
        );
    }

    #[test]
    fn a_panic_a_runtime_caught_is_still_recorded() {
        let w = watch(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let task = tokio::task::spawn(async { panic!("inside a task") });
                task.await.is_err()
            })
        });
        assert_eq!(w.result, Some(true), "the runtime caught the task's panic");
        assert_eq!(w.panics.len(), 1, "{:?}", w.panics);
        assert!(w.panics[0].contains("inside a task"));
    }

    #[test]
    fn panics_of_other_threads_are_not_this_runs() {
        let w = watch(|| {
            let _ = std::thread::spawn(|| panic!("elsewhere")).join();
        });
        assert!(w.result.is_some());
        assert!(w.panics.is_empty(), "{:?}", w.panics);
    }
}
