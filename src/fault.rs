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
//! Points: `publish.before_rename` (temp file written and witnessed, not yet
//! visible), `reclaim.before_unlink` (identity checked, stale file not yet
//! removed), `release.before_unlink` (at the start of a release, before
//! its identity check), `release.after_check` (identity checked, our file
//! not yet renamed back to its slot or unlinked), `acquire.after_observe`
//! (lock inspected, verdict known).

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
pub use imp::{hit, set_hook};

/// No-op without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn hit(_point: &str) {}
