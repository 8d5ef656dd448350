//! The async front door (feature `tokio`): the same protocol, names and
//! rules as the blocking API.
//!
//! * Before every synchronous inspection of the lock file (a handful of
//!   syscalls, about 10 us) the task yields to the runtime, so contention
//!   never starves other tasks (the reference added exactly this yield, its
//!   issue #84903).
//! * Waiting parks no runtime worker and holds no blocking-pool thread: a
//!   waiter sleeps on the process-wide inotify hub's wake-up and a tokio
//!   timer. Hundreds of waiters on one path cost one inotify watch.
//! * Dropping an acquire future at any await point leaves nothing behind:
//!   each attempt runs to completion inside one poll, so the lock is either
//!   not taken or returned in that same poll; the wake-up registration is
//!   removed by the future's destructor.
//! * The returned [`LockGuard`] is the blocking API's guard: dropping it
//!   inside the runtime releases with two or three non-blocking syscalls.
//!
//! This module is called `tokio`, like the crate it runs on. Import it
//! under a name of its own next to the `tokio` crate, and avoid
//! `use session_lock::*`, which would shadow the crate with this module:
//!
//! ```
//! use session_lock::tokio as lock_async;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), session_lock::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let guard = lock_async::acquire(dir.path().join("s.jsonl")).await?;
//! tokio::task::yield_now().await; // the tokio crate, still reachable
//! guard.release()?;
//! # Ok(()) }
//! ```

use crate::error::Result;
use crate::guard::{Hold, LockGuard};
use crate::options::{Attempt, LockOptions};
use std::path::Path;
use std::sync::Arc;

/// Validate the options for the backend, then let the backend take the
/// lock for this task: the async API's one decision (the blocking API's
/// is in `front`).
async fn hold(target: &Path, opts: &LockOptions, attempt: Attempt) -> Result<Arc<dyn Hold>> {
    opts.validate(target)?;
    Ok(match &opts.backend {
        crate::Backend::File => crate::file::asynchronous::acquire(target, opts, attempt).await?,
        #[cfg(feature = "etcd")]
        crate::Backend::Etcd(cfg) => crate::etcd::acquire_async(target, cfg, opts, attempt).await?,
    })
}

/// Acquire with the default options (timeout 60 s).
///
/// # Errors
/// As [`crate::acquire`]: tasks of one process wait for each other like any
/// contenders.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), session_lock::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let guard = session_lock::tokio::acquire(dir.path().join("s.jsonl")).await?;
/// guard.append_line("{}")?;
/// drop(guard);
/// # Ok(()) }
/// ```
pub async fn acquire(target: impl AsRef<Path>) -> Result<LockGuard> {
    acquire_with(target, &LockOptions::default()).await
}

/// Acquire with options.
///
/// # Errors
/// As [`acquire`].
pub async fn acquire_with(target: impl AsRef<Path>, opts: &LockOptions) -> Result<LockGuard> {
    hold(target.as_ref(), opts, Attempt::Wait)
        .await
        .map(LockGuard::new)
}

/// Try once with the default options, without waiting (yields once first).
///
/// # Errors
/// `Busy` with the owner if someone holds it; anything else is a real failure.
pub async fn try_acquire(target: impl AsRef<Path>) -> Result<LockGuard> {
    try_acquire_with(target, &LockOptions::default()).await
}

/// Try once with options, without waiting (yields once first).
///
/// # Errors
/// As [`try_acquire`].
pub async fn try_acquire_with(target: impl AsRef<Path>, opts: &LockOptions) -> Result<LockGuard> {
    hold(target.as_ref(), opts, Attempt::Once)
        .await
        .map(LockGuard::new)
}
