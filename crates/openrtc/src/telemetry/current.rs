//! Which session this thread is running code for, so that log records can name it.
//!
//! The poll wrapper (`probe::Attributed`) and the runtime's session helpers run their work
//! inside [`scope`]; the log layer reads the session back with [`with_current`]. The cost on
//! the poll path is one thread-local read and two writes: no reference count, no lock.
//!
//! It is the fourth module allowed `unsafe` (with `os`, `alloc` and `stack::capture`): the
//! thread-local holds a plain pointer to the session's cell, valid because [`scope`] sets it
//! from a borrow, runs its closure, and restores the previous value before the borrow ends
//! (on unwind too). Nothing else writes it.
#![allow(unsafe_code)]

use std::cell::Cell;

use crate::session::SessionCell;

thread_local! {
    /// The cell of the session whose code runs on this thread now; null outside sessions.
    static CURRENT: Cell<*const SessionCell> = const { Cell::new(std::ptr::null()) };
}

/// Puts back the previous session when a scope ends, including when it unwinds.
struct Restore(*const SessionCell);

impl Drop for Restore {
    #[inline(always)]
    fn drop(&mut self) {
        CURRENT.set(self.0);
    }
}

/// Runs `work` as code of `cell`'s session: log records emitted inside carry its id, tenant
/// and agent. Scopes nest; the innermost wins, and the outer one is back when it returns.
#[inline(always)]
pub(crate) fn scope<R>(cell: &SessionCell, work: impl FnOnce() -> R) -> R {
    let _restore = Restore(CURRENT.replace(cell));
    work()
}

/// Calls `read` with the session this thread is running code for, if any.
#[inline]
pub(crate) fn with_current<R>(read: impl FnOnce(Option<&SessionCell>) -> R) -> R {
    let current = CURRENT.get();
    // SAFETY: `CURRENT` is either null or was set by `scope` from a `&SessionCell` that
    // outlives the running `scope` call on this thread (it is restored before `scope`
    // returns or unwinds, and `Restore` is private, so it cannot be leaked to skip that).
    // `with_current` runs on the same thread inside that call, and the reference it passes
    // cannot escape `read`: `R` is chosen before the borrow exists.
    let cell = unsafe { current.as_ref() };
    read(cell)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentPool, Session, agent_fn};

    fn test_pool() -> AgentPool {
        AgentPool::builder()
            .agent("idle", agent_fn(|_session: Session| async { Ok(()) }))
            .enable_introspection(false)
            .build()
            .expect("valid configuration")
    }

    #[test]
    fn outside_any_scope_there_is_no_session() {
        assert!(with_current(|cell| cell.is_none()));
    }

    #[test]
    fn scopes_nest_and_restore_on_return_and_on_unwind() {
        let pool = test_pool();
        let (outer, inner) = (
            pool.unregistered_cell(3, "t"),
            pool.unregistered_cell(4, "t"),
        );
        let key = || with_current(|cell| cell.map(SessionCell::key));
        scope(&outer, || {
            assert_eq!(key(), Some(3));
            scope(&inner, || assert_eq!(key(), Some(4)));
            assert_eq!(key(), Some(3));
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                scope(&inner, || panic!("inside the inner scope"));
            }));
            assert!(unwound.is_err());
            assert_eq!(key(), Some(3), "the outer session is back after an unwind");
        });
        assert_eq!(key(), None);
    }

    #[test]
    fn another_thread_sees_no_session() {
        let cell = test_pool().unregistered_cell(9, "t");
        scope(&cell, || {
            let elsewhere = std::thread::spawn(|| with_current(|cell| cell.is_none()))
                .join()
                .expect("the thread ran");
            assert!(elsewhere);
        });
    }
}
