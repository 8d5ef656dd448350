//! [`LockOptions`]: one builder, defaults as named constants.

use std::time::Duration;

/// Default acquire timeout: 60 s, the reference's default since its V2
/// (`OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Age past which a *live* holder is reported `too-old` (report only, never
/// removed): 30 min, the reference's `staleMs` default.
pub const DEFAULT_STALE: Duration = Duration::from_secs(30 * 60);
/// Default max hold before the watchdog force-releases: 5 min (reference).
pub const DEFAULT_MAX_HOLD: Duration = Duration::from_secs(5 * 60);
/// Empty or malformed lock files are reclaimed only once their mtime is
/// older than this: 5 s, the reference's target-version orphan grace.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(5);
/// Grace added to an acquire timeout by [`max_hold_from_timeout`]: 2 min.
pub const MAX_HOLD_GRACE: Duration = Duration::from_secs(2 * 60);
/// Upper bound of any max hold: 2 147 000 000 ms, the reference's cap
/// (just under Node's largest timer, 2^31 - 1 ms).
pub const MAX_HOLD_CAP: Duration = Duration::from_millis(2_147_000_000);

/// Derive a max hold from an acquire timeout the way the reference's
/// `resolveSessionLockMaxHoldFromTimeout` does: `clamp(max(min, timeout +
/// grace), ..= cap)`; an unbounded timeout (`None`) gives the cap.
///
/// ```
/// use session_lock::{max_hold_from_timeout, MAX_HOLD_CAP, MAX_HOLD_GRACE, DEFAULT_MAX_HOLD};
/// use std::time::Duration;
/// let ms = |v| Duration::from_millis(v);
/// assert_eq!(max_hold_from_timeout(Some(ms(600_000)), MAX_HOLD_GRACE, DEFAULT_MAX_HOLD), ms(720_000));
/// assert_eq!(max_hold_from_timeout(Some(ms(1_000)), MAX_HOLD_GRACE, ms(5_000)), ms(121_000));
/// assert_eq!(max_hold_from_timeout(None, MAX_HOLD_GRACE, DEFAULT_MAX_HOLD), MAX_HOLD_CAP);
/// ```
pub fn max_hold_from_timeout(
    timeout: Option<Duration>,
    grace: Duration,
    min: Duration,
) -> Duration {
    match timeout {
        None => MAX_HOLD_CAP,
        Some(t) => t.saturating_add(grace).max(min).min(MAX_HOLD_CAP),
    }
}

/// How to acquire a lock. Build with [`LockOptions::new`] and the setters.
///
/// ```
/// use session_lock::LockOptions;
/// use std::time::Duration;
/// let opts = LockOptions::new()
///     .timeout(Duration::from_secs(10))
///     .max_hold(Duration::from_secs(120))
///     .label("cron: nightly compaction");
/// assert_eq!(opts.get_timeout(), Some(Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) stale: Duration,
    pub(crate) max_hold: Duration,
    pub(crate) orphan_grace: Duration,
    pub(crate) label: Option<String>,
    pub(crate) fail_on_stale: bool,
    /// Where the lock lives (default: the lock file).
    pub(crate) backend: crate::Backend,
    /// Called once when a wait has lasted this long (see `on_wait`).
    pub(crate) on_wait: Option<WaitHook>,
    pub(crate) create_dirs: bool,
}

/// The contention hook of [`LockOptions::on_wait`].
#[derive(Clone)]
pub(crate) struct WaitHook {
    pub(crate) after: Duration,
    pub(crate) call: std::sync::Arc<dyn Fn(&crate::Owner) + Send + Sync>,
}

impl std::fmt::Debug for WaitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitHook")
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl PartialEq for WaitHook {
    fn eq(&self, other: &Self) -> bool {
        self.after == other.after && std::sync::Arc::ptr_eq(&self.call, &other.call)
    }
}

impl Eq for WaitHook {}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            timeout: Some(DEFAULT_TIMEOUT),
            stale: DEFAULT_STALE,
            max_hold: DEFAULT_MAX_HOLD,
            orphan_grace: DEFAULT_ORPHAN_GRACE,
            label: None,
            fail_on_stale: false,
            backend: crate::Backend::File,
            on_wait: None,
            create_dirs: false,
        }
    }
}

impl LockOptions {
    /// Refuse what the lock cannot honour, before anything is touched:
    /// a max hold under 1 ms (the record and the watchdog count in
    /// milliseconds; zero would mean "lost at once"), and a stale threshold
    /// or orphan grace under 1 ms (a record of another host, or a lock file
    /// that another writer is still filling, would be taken over at once).
    /// A zero timeout is allowed: one attempt, as `try_acquire`.
    pub(crate) fn validate(&self, path: &std::path::Path) -> crate::Result<()> {
        let refuse = |what: String| {
            Err(crate::Error::from(crate::error::Repr::InvalidInput {
                path: path.to_owned(),
                what,
            }))
        };
        if self.max_hold < Duration::from_millis(1) {
            return refuse(format!(
                "max hold {:?} is refused: the watchdog counts in milliseconds and 0 would release the lock at once; give at least 1ms (up to {}ms)",
                self.max_hold,
                MAX_HOLD_CAP.as_millis()
            ));
        }
        // Both count in milliseconds (mtimes and `createdAt`); the effective
        // orphan grace is `min(stale, orphan_grace)`.
        if self.stale < Duration::from_millis(1) {
            return refuse(format!(
                "a stale threshold of {:?} is refused: another host's lock would be taken over at once; give at least 1ms",
                self.stale
            ));
        }
        if self.orphan_grace < Duration::from_millis(1) {
            return refuse(format!(
                "an orphan grace of {:?} is refused: a lock file another writer is still filling would be removed; give at least 1ms",
                self.orphan_grace
            ));
        }
        Ok(())
    }

    /// The defaults: timeout 60 s, stale 30 min, max hold 5 min, orphan grace 5 s.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// How long `acquire` waits in total (`Duration::ZERO`: one attempt).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Wait without a time limit.
    #[must_use]
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }
    /// Age past which a live holder is reported `too-old` (never removed for
    /// it; a record of another host without a working witness is judged by
    /// this age alone). Zero is refused by acquire.
    #[must_use]
    pub fn stale(mut self, stale: Duration) -> Self {
        self.stale = stale;
        self
    }
    /// How long the lock may be held before the watchdog force-releases it.
    /// Capped at [`MAX_HOLD_CAP`]; under 1 ms is refused by acquire
    /// ([`crate::ErrorKind::InvalidInput`]).
    #[must_use]
    pub fn max_hold(mut self, max_hold: Duration) -> Self {
        self.max_hold = max_hold.min(MAX_HOLD_CAP);
        self
    }
    /// Grace for empty or malformed lock files (judged by mtime); the
    /// effective grace is `min(stale, orphan_grace)`, as in the reference.
    /// Zero is refused by acquire.
    #[must_use]
    pub fn orphan_grace(mut self, grace: Duration) -> Self {
        self.orphan_grace = grace;
        self
    }
    /// Free text stored in the owner record (who and why), at most 1 KiB.
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(crate::record::clip_label(&label.into()));
        self
    }
    /// Fail at once with [`crate::ErrorKind::Stale`] when the holder is alive
    /// but past the stale threshold or its own max hold, instead of waiting
    /// (the reference's behaviour). Default: wait.
    #[must_use]
    pub fn fail_on_stale(mut self, yes: bool) -> Self {
        self.fail_on_stale = yes;
        self
    }
    /// Create the transcript's missing parent directories when acquiring,
    /// each mode `0700` whatever the umask (the owner's only: a session
    /// directory shared with others is a hazard, see
    /// `docs/threat-model.md`). Default: off, as in `flock(1)`: a missing
    /// directory is an error naming it, and nothing is created.
    #[must_use]
    pub fn create_dirs(mut self, yes: bool) -> Self {
        self.create_dirs = yes;
        self
    }
    /// Where the lock lives: [`crate::Backend::File`] (the default) or,
    /// with the `etcd` feature, an etcd cluster (see `docs/distributed.md`).
    #[must_use]
    pub fn backend(mut self, backend: crate::Backend) -> Self {
        self.backend = backend;
        self
    }
    /// Call `hook` once, with the holder's inspection, when `acquire` (blocking
    /// or async) has waited `after` for the lock; it runs on the waiting
    /// thread or task, so it should be quick (print a line, bump a metric).
    /// The command line prints its "waiting for the lock held by ..." line
    /// this way (cargo does the same for its own lock).
    ///
    /// With the etcd backend the hook runs once this acquire is queued
    /// behind a holder (never while connecting: a cluster that was never
    /// reached gets no call), on the process's etcd thread, so it must not
    /// block.
    ///
    /// The hook receives the holder as both backends know it, an
    /// [`crate::Owner`] from its owner record: pid, host, label, age, and
    /// whether the pid is alive where that can be told (a file lock of this
    /// host; `None` for another host's, and for etcd, whose witness is the
    /// lease, not the pid).
    ///
    /// ```
    /// use session_lock::LockOptions;
    /// use std::time::Duration;
    /// let opts = LockOptions::new().on_wait(Duration::from_secs(1), |holder| {
    ///     eprintln!("waiting for the lock held by {holder}");
    /// });
    /// # let _ = opts;
    /// ```
    #[must_use]
    pub fn on_wait(
        mut self,
        after: Duration,
        hook: impl Fn(&crate::Owner) + Send + Sync + 'static,
    ) -> Self {
        self.on_wait = Some(WaitHook {
            after,
            call: std::sync::Arc::new(hook),
        });
        self
    }
    /// The configured backend.
    pub fn get_backend(&self) -> &crate::Backend {
        &self.backend
    }
    /// The configured timeout (`None`: unbounded).
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// The configured max hold.
    pub fn get_max_hold(&self) -> Duration {
        self.max_hold
    }
    /// The configured stale threshold.
    pub fn get_stale(&self) -> Duration {
        self.stale
    }
    /// The effective orphan grace: `min(stale, orphan_grace)`.
    pub fn effective_orphan_grace(&self) -> Duration {
        self.orphan_grace.min(self.stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_hold_derivation_table() {
        let ms = Duration::from_millis;
        let cases = [
            (
                Some(ms(600_000)),
                MAX_HOLD_GRACE,
                DEFAULT_MAX_HOLD,
                ms(720_000),
            ),
            (Some(ms(1_000)), MAX_HOLD_GRACE, ms(5_000), ms(121_000)),
            (None, MAX_HOLD_GRACE, DEFAULT_MAX_HOLD, MAX_HOLD_CAP),
            (
                Some(ms(0)),
                MAX_HOLD_GRACE,
                DEFAULT_MAX_HOLD,
                DEFAULT_MAX_HOLD,
            ),
            (
                Some(MAX_HOLD_CAP),
                MAX_HOLD_GRACE,
                DEFAULT_MAX_HOLD,
                MAX_HOLD_CAP,
            ),
            (
                Some(Duration::MAX),
                MAX_HOLD_GRACE,
                DEFAULT_MAX_HOLD,
                MAX_HOLD_CAP,
            ),
            (
                Some(ms(900_000)),
                MAX_HOLD_GRACE,
                DEFAULT_MAX_HOLD,
                ms(1_020_000),
            ),
        ];
        for (timeout, grace, min, want) in cases {
            assert_eq!(
                max_hold_from_timeout(timeout, grace, min),
                want,
                "{timeout:?}"
            );
        }
    }

    #[test]
    fn orphan_grace_is_capped_by_stale() {
        let o = LockOptions::new().stale(Duration::from_secs(2));
        assert_eq!(o.effective_orphan_grace(), Duration::from_secs(2));
        assert_eq!(
            LockOptions::new().effective_orphan_grace(),
            DEFAULT_ORPHAN_GRACE
        );
    }
}

/// Who takes a lock: a thread (the blocking API) or a task (the async
/// API, whose hold belongs to no thread: no same-thread warning, no wait
/// in the kernel's queue). The front door's fact, passed to a backend;
/// never an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    Thread,
    Task,
}

/// Whether an acquire waits for the lock or tries once (`try_acquire`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    Wait,
    Once,
}
