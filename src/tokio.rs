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
use crate::file::wait::Watch;
use crate::file::{self, Acquirer, Step};
use crate::paths::LockPaths;
use crate::{LockGuard, LockOptions};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Instant;

struct Changed<'a> {
    watch: &'a Watch,
    seen: u64,
    slot: Option<u64>,
}

impl Future for Changed<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        this.watch.poll_changed(this.seen, &mut this.slot, cx)
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.slot {
            self.watch.forget_waker(id);
        }
    }
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
    opts.validate(target.as_ref())?;
    let mut opts = opts.clone();
    opts.from_async = true;
    #[cfg(feature = "etcd")]
    if let crate::Backend::Etcd(cfg) = &opts.backend {
        return crate::etcd::acquire_async(target.as_ref(), cfg, &opts, false).await;
    }
    tokio::task::yield_now().await;
    let paths = LockPaths::resolve_with(target, &opts)?;
    let deadline = opts.timeout.and_then(|t| Instant::now().checked_add(t));
    let mut acq = Acquirer::new(&paths, &opts).look_first();
    let name = paths.lock.file_name().unwrap_or_default();
    let mut watch: Option<Watch> = None;
    loop {
        let seen = watch.as_ref().map(Watch::generation);
        match acq.step()? {
            Step::Acquired(guard) => return Ok(guard),
            Step::Retry | Step::Backoff if deadline.is_some_and(|d| Instant::now() >= d) => {
                return Err(file::timeout_error(
                    &paths,
                    &opts,
                    acq.last_inspection(),
                    acq.blocking_guard(),
                ));
            }
            Step::Retry => {}
            Step::Backoff => tokio::time::sleep(acq.backoff_delay()).await,
            // Async waiters never wait in the queue (see `queue`): they
            // take its flock only when the lock path is free.
            Step::Wait | Step::Queue => {
                let now = Instant::now();
                acq.check_wait(deadline.map(Instant::into_std), now.into_std())?;
                match (watch.as_mut(), seen) {
                    (Some(w), Some(seen)) => {
                        // No `acq.prepare()` here, unlike the blocking loop:
                        // with a hundred waiting tasks, preparing a record
                        // per task made the runtime's work between timer
                        // checks several times longer (bench: max ticker
                        // lateness ~6.5 ms instead of ~1.7 ms), while a
                        // task's handoff gains only the ~15 us of creating
                        // the record after its wake-up.
                        let recheck =
                            now + acq.settle_delay().unwrap_or_else(|| w.recheck_interval());
                        let recheck = acq
                            .guard_recheck(now.into_std())
                            .map_or(recheck, |g| recheck.min(g.into()));
                        let recheck = acq
                            .wait_hook(now.into_std())
                            .map_or(recheck, |h| recheck.min(h.into()));
                        let until = deadline.map_or(recheck, |d| d.min(recheck));
                        acq.woken_by_event = tokio::select! {
                            // The timer first: a wait that ran out is a
                            // timer wake-up even if the generation moved
                            // meanwhile (a wake-up lost on the way is then
                            // counted as what it was, see `count_wake`).
                            biased;
                            _ = tokio::time::sleep_until(until) => false,
                            _ = Changed { watch: w, seen, slot: None } => true,
                        };
                        file::count_wake(
                            acq.woken_by_event,
                            acq.settle_delay().is_none() && deadline.is_none_or(|d| recheck < d),
                        );
                    }
                    _ => watch = Some(Watch::new(&paths.dir, name)),
                }
            }
        }
        // Yield before the next synchronous inspection.
        tokio::task::yield_now().await;
    }
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
    opts.validate(target.as_ref())?;
    tokio::task::yield_now().await;
    let mut opts = opts.clone();
    opts.from_async = true;
    #[cfg(feature = "etcd")]
    if let crate::Backend::Etcd(cfg) = &opts.backend {
        return crate::etcd::acquire_async(target.as_ref(), cfg, &opts, true).await;
    }
    let paths = LockPaths::resolve_with(target, &opts)?;
    file::try_once(&paths, &opts)
}
