//! Release held locks on SIGINT, SIGTERM, SIGQUIT and SIGHUP (feature
//! `signals`).
//!
//! **This is tidiness, not safety.** The kernel witness already makes a
//! dead holder's lock reclaimable the instant the process dies, whatever
//! killed it (SIGKILL and the OOM killer included). Cleaning up on signals
//! only means the lock file is gone instead of reclaimable, which keeps
//! `session-lock status` quiet and helps software that does not understand
//! the witness (the reference implementation judges by pid).
//!
//! How it works: [`install`] puts a minimal async-signal-safe handler on the
//! four signals that only writes the signal number to a socket. A dedicated
//! thread reads it and calls [`crate::release_all`] (every guard learns
//! [`crate::LostReason::ReleasedAll`]). What happens to the signal next
//! depends on who else listens for it:
//!
//! * **Nobody installed a handler after `install`** (a plain program): the
//!   thread puts back the disposition that was there before and raises the
//!   signal again, so its default effect (terminate, or core dump for
//!   SIGQUIT; the exit status says "killed by the signal") or a handler
//!   installed *before* `install` runs as if we had not been there.
//! * **A handler was installed after `install`**, for instance tokio's
//!   `signal::ctrl_c` or anything else built on `signal-hook`: that handler
//!   saved ours and calls it, so the locks are still released, and the
//!   signal is then left to it. The process is not terminated and the
//!   listener receives the signal: the application decides what a Ctrl-C
//!   means. (Like the reference, which hands the signal on only when its
//!   handler is the sole listener.)
//!
//! Signals that were ignored when `install` ran (`nohup`, `SIG_IGN`) are
//! left alone. After a signal was handed on to a handler installed before
//! `install`, that handler is the disposition again: later signals reach
//! it directly, without the cleanup. A call to `install` while a signal is
//! being handled returns once the handling is done.
//!
//! On platforms without an implementation, [`install`] fails with
//! [`std::io::ErrorKind::Unsupported`].

use std::io;

/// The signals handled.
pub const SIGNALS: [std::ffi::c_int; 4] = crate::sys::signals::SIGNALS;

/// Install the handlers (idempotent).
///
/// # Errors
/// The OS error if the socket, the thread or a `sigaction` call fails;
/// [`std::io::ErrorKind::Unsupported`] where signals are not implemented.
pub fn install() -> io::Result<()> {
    crate::sys::signals::install(cleanup)
}

fn cleanup(sig: i32) {
    let released = crate::release_all();
    tracing::info!(
        signal = sig,
        released,
        "released held session locks on signal"
    );
}
