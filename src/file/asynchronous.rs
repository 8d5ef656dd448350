//! The file backend's async acquire (feature `tokio`): the acquire loop
//! of `file` driven by a task instead of a thread. Waiting parks no
//! runtime worker and holds no blocking-pool thread: a waiter sleeps on
//! the process-wide inotify hub's wake-up and a tokio timer, and yields to
//! the runtime before every synchronous inspection.

use crate::error::Result;
use crate::file::held::Held;
use crate::file::wait::Watch;
use crate::file::{self, Acquirer, Step};
use crate::options::{Attempt, Caller, LockOptions};
use crate::paths::LockPaths;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
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

/// Take the lock on `target` for a task: wait (`Attempt::Wait`) or try
/// once, yielding first.
pub(crate) async fn acquire(
    target: &Path,
    opts: &LockOptions,
    attempt: Attempt,
) -> Result<Arc<Held>> {
    if attempt == Attempt::Once {
        tokio::task::yield_now().await;
        let paths = LockPaths::resolve_with(target, opts)?;
        return file::try_once(&paths, opts, Caller::Task);
    }
    tokio::task::yield_now().await;
    let paths = LockPaths::resolve_with(target, opts)?;
    let deadline = opts.timeout.and_then(|t| Instant::now().checked_add(t));
    let mut acq = Acquirer::new(&paths, opts, Caller::Task).look_first();
    let name = paths.lock.file_name().unwrap_or_default();
    let mut watch: Option<Watch> = None;
    loop {
        let seen = watch.as_ref().map(Watch::generation);
        match acq.step()? {
            Step::Acquired(held) => return Ok(held),
            Step::Retry | Step::Backoff if deadline.is_some_and(|d| Instant::now() >= d) => {
                return Err(file::timeout_error(
                    &paths,
                    opts,
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
