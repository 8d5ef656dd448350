//! The front door: the one place that decides which backend takes a lock
//! (one `match` on [`crate::Backend`] for the blocking API here, one for
//! the async API in `crate::tokio`). Below it the two backends,
//! `crate::file` and `crate::etcd`, never name each other; each returns
//! its hold as a [`Hold`], which becomes a [`LockGuard`] here.

use crate::error::Result;
use crate::guard::{Hold, LockGuard};
use crate::options::{Attempt, LockOptions};
use std::path::Path;
use std::sync::Arc;

/// Validate the options for the backend, then let the backend take the
/// lock: the blocking API's one decision.
fn hold(target: &Path, opts: &LockOptions, attempt: Attempt) -> Result<Arc<dyn Hold>> {
    opts.validate(target)?;
    Ok(match &opts.backend {
        crate::Backend::File => match attempt {
            Attempt::Wait => crate::file::acquire_blocking(target, opts)?,
            Attempt::Once => crate::file::try_blocking(target, opts)?,
        },
        #[cfg(feature = "etcd")]
        crate::Backend::Etcd(cfg) => crate::etcd::acquire_blocking(target, cfg, opts, attempt)?,
    })
}

/// Acquire the lock on `target` with the default options (timeout 60 s).
///
/// # Errors
/// `Timeout` (naming the owner) if the lock stayed held (also when this
/// thread still holds it itself: see "Hazards" in the crate docs),
/// `NotAFile` if something other than a regular file sits at the lock
/// path, `Io`/`PermissionDenied` otherwise.
///
/// # Examples
/// ```
/// let dir = tempfile::tempdir()?;
/// let transcript = dir.path().join("session.jsonl");
/// let guard = session_lock::acquire(&transcript)?;
/// guard.append_line(r#"{"role":"user","text":"hi"}"#)?;
/// guard.release()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn acquire(target: impl AsRef<Path>) -> Result<LockGuard> {
    acquire_with(target, &LockOptions::default())
}

/// Acquire with options. Waits for the holder's release or death (inotify,
/// with a safety re-check every 2 s), reclaiming dead owners'
/// locks at once.
///
/// # Errors
/// As [`acquire`]; `Stale` when [`LockOptions::with_fail_on_stale`] is set and
/// the live holder is past its stale threshold or max hold.
///
/// # Examples
/// ```
/// use session_lock::{acquire_with, LockOptions};
/// use std::time::Duration;
/// let dir = tempfile::tempdir()?;
/// let opts = LockOptions::new().with_timeout(Duration::from_secs(5)).with_label("example");
/// let guard = acquire_with(dir.path().join("s.jsonl"), &opts)?;
/// assert_eq!(guard.record().label.as_deref(), Some("example"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn acquire_with(target: impl AsRef<Path>, opts: &LockOptions) -> Result<LockGuard> {
    hold(target.as_ref(), opts, Attempt::Wait).map(LockGuard::new)
}

/// Try once with the default options, never blocking.
///
/// # Errors
/// `Busy` (with the owner and any report-only reasons) if someone holds the
/// lock; every other kind is a real failure, never contention.
///
/// # Examples
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("s.jsonl");
/// let first = session_lock::try_acquire(&path)?;
/// // Another thread finds it busy and learns who holds it.
/// let p = path.clone();
/// let err = std::thread::spawn(move || session_lock::try_acquire(&p).unwrap_err())
///     .join().unwrap();
/// assert_eq!(err.kind(), session_lock::ErrorKind::Busy);
/// assert_eq!(err.owner().and_then(|o| o.pid), Some(std::process::id()));
/// drop(first);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn try_acquire(target: impl AsRef<Path>) -> Result<LockGuard> {
    try_acquire_with(target, &LockOptions::default())
}

/// Try once with options, never blocking.
///
/// # Errors
/// As [`try_acquire`]; `Stale` when [`LockOptions::with_fail_on_stale`] is set
/// and the live holder is past its stale threshold or max hold.
pub fn try_acquire_with(target: impl AsRef<Path>, opts: &LockOptions) -> Result<LockGuard> {
    hold(target.as_ref(), opts, Attempt::Once).map(LockGuard::new)
}

/// Force-release every lock this process holds (for shutdown paths). Each
/// guard learns it lost the lock ([`crate::LostReason::ReleasedAll`]). Returns how
/// many locks were released. Also removes this process's parked witness
/// slots, as [`crate::close_idle`] does.
pub fn release_all() -> usize {
    let released = crate::file::release_all();
    crate::file::close_idle();
    #[cfg(feature = "etcd")]
    let released = released + crate::etcd::release_all();
    released
}
