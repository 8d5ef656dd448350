//! Fault-injection points. With the `fault-injection` feature off (the
//! default) [`hit`] is an empty inline function and costs nothing.
//!
//! With the feature on, two mechanisms force dangerous interleavings
//! deterministically instead of hoping for them:
//!
//! * in-process: `set_hook` installs a callback run at every point (tests
//!   use it to park a thread on a barrier);
//! * cross-process: with `SESSION_LOCK_FAULT_PAUSE=<point>` and
//!   `SESSION_LOCK_FAULT_DIR=<dir>` in the environment, a process reaching
//!   `<point>` creates `<dir>/<point>.<pid>.reached` and waits (up to 60 s)
//!   until `<dir>/<point>.<pid>.go` exists.
//!
//! A third mechanism makes appends fail part way: with
//! `set_short_write(Some(n))` in-process, or `SESSION_LOCK_FAULT_SHORT_WRITE=<n>`
//! in a child's environment, transcript writes may write `n` bytes in all;
//! the one that would go past that stops there and fails with an
//! `ENOSPC`-like `StorageFull` (see [`short_write`]).
//!
//! Points: `publish.before_rename` (temp file written and witnessed, not yet
//! visible), `reclaim.before_unlink` (identity checked, stale file not yet
//! removed), `release.before_unlink` (at the start of a release, before
//! its identity check), `release.after_check` (identity checked, our file
//! not yet renamed back to its slot or unlinked), `acquire.after_observe`
//! (lock inspected, verdict known), `queue.free_not_granted` (a wait in the
//! lock's queue ended with the lock free and the queue not granted; the
//! waiter has not yet decided whether the queue is squatted).

#[cfg(feature = "fault-injection")]
mod imp {
    use std::sync::{Arc, RwLock};
    use std::time::{Duration, Instant};

    type Hook = Arc<dyn Fn(&str) + Send + Sync>;
    static HOOK: RwLock<Option<Hook>> = RwLock::new(None);

    /// Install (or with `None`, remove) the in-process hook.
    pub fn set_hook(hook: Option<Hook>) {
        *HOOK.write().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    /// Bytes transcript writes may still write before one stops short
    /// (`usize::MAX`: no limit). Read from the environment on first use.
    static BUDGET: std::sync::OnceLock<std::sync::atomic::AtomicUsize> = std::sync::OnceLock::new();

    fn budget() -> &'static std::sync::atomic::AtomicUsize {
        BUDGET.get_or_init(|| {
            let n = std::env::var("SESSION_LOCK_FAULT_SHORT_WRITE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(usize::MAX);
            std::sync::atomic::AtomicUsize::new(n)
        })
    }

    /// Let transcript writes in this process write `n` more bytes in all;
    /// the write that would go past them writes up to the limit and fails,
    /// as on ENOSPC (`None`: no limit).
    pub fn set_short_write(n: Option<usize>) {
        budget().store(n.unwrap_or(usize::MAX), std::sync::atomic::Ordering::SeqCst);
    }

    /// For a write of `len` bytes: `Some(k)` if it must stop after `k < len`
    /// bytes and fail (see [`set_short_write`]); takes its bytes from the
    /// budget.
    pub fn short_write(len: usize) -> Option<usize> {
        let b = budget();
        let left = b.load(std::sync::atomic::Ordering::SeqCst);
        if left == usize::MAX {
            return None;
        }
        let k = left.min(len);
        b.store(left - k, std::sync::atomic::Ordering::SeqCst);
        (k < len).then_some(k)
    }

    /// Run the hooks for `point`.
    pub fn hit(point: &str) {
        let hook = HOOK.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(hook) = hook {
            hook(point);
        }
        if std::env::var("SESSION_LOCK_FAULT_PAUSE").as_deref() == Ok(point)
            && let Ok(dir) = std::env::var("SESSION_LOCK_FAULT_DIR")
        {
            let pid = std::process::id();
            let dir = std::path::Path::new(&dir);
            // Best effort: a test that cannot create the marker fails on its
            // own timeout, which names the point.
            let _ = std::fs::write(dir.join(format!("{point}.{pid}.reached")), b"");
            let go = dir.join(format!("{point}.{pid}.go"));
            let start = Instant::now();
            while !go.exists() && start.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use imp::{hit, set_hook, set_short_write, short_write};

/// No-op without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn hit(_point: &str) {}
