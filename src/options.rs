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
///     .with_timeout(Duration::from_secs(10))
///     .with_max_hold(Duration::from_secs(120))
///     .with_label("cron: nightly compaction");
/// assert_eq!(opts.timeout(), Some(Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOptions {
    pub(crate) timeout: Option<Duration>,
    /// `None`: the default ([`DEFAULT_STALE`]); set only by [`LockOptions::with_stale`].
    pub(crate) stale: Option<Duration>,
    pub(crate) max_hold: Duration,
    /// `None`: the default ([`DEFAULT_ORPHAN_GRACE`]).
    pub(crate) orphan_grace: Option<Duration>,
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
            stale: None,
            max_hold: DEFAULT_MAX_HOLD,
            orphan_grace: None,
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
        if let Some(stale) = self.stale
            && stale < Duration::from_millis(1)
        {
            return refuse(format!(
                "a stale threshold of {stale:?} is refused: another host's lock would be taken over at once; give at least 1ms",
            ));
        }
        if let Some(grace) = self.orphan_grace
            && grace < Duration::from_millis(1)
        {
            return refuse(format!(
                "an orphan grace of {grace:?} is refused: a lock file another writer is still filling would be removed; give at least 1ms",
            ));
        }
        if let Some(option) = self.unsupported_by_backend() {
            return refuse(format!(
                "LockOptions::{option} has no meaning with the {} backend: {}; leave it unset there",
                self.backend.name(),
                self.backend.liveness()
            ));
        }
        Ok(())
    }

    /// The first option set that the configured backend cannot honour.
    /// The file backend honours every option; with etcd a holder is
    /// judged by its lease alone, so the file backend's judgement of
    /// records (`stale`, `orphan_grace`, `fail_on_stale`) has nothing to
    /// judge.
    fn unsupported_by_backend(&self) -> Option<&'static str> {
        if matches!(self.backend, crate::Backend::File) {
            return None;
        }
        [
            ("with_stale", self.stale.is_some()),
            ("with_orphan_grace", self.orphan_grace.is_some()),
            ("with_fail_on_stale", self.fail_on_stale),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name))
    }

    /// The stale threshold in force ([`DEFAULT_STALE`] unless set).
    pub(crate) fn stale_threshold(&self) -> Duration {
        self.stale.unwrap_or(DEFAULT_STALE)
    }

    /// The orphan grace as set ([`DEFAULT_ORPHAN_GRACE`] unless set).
    pub(crate) fn orphan_grace_set(&self) -> Duration {
        self.orphan_grace.unwrap_or(DEFAULT_ORPHAN_GRACE)
    }

    /// The defaults: timeout 60 s, stale 30 min, max hold 5 min, orphan grace 5 s.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// How long `acquire` waits in total (`Duration::ZERO`: one attempt).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Wait without a time limit.
    #[must_use]
    pub fn without_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }
    /// Age past which a live holder is reported `too-old` (never removed for
    /// it; a record of another host without a working witness is judged by
    /// this age alone). Zero is refused by acquire.
    #[must_use]
    pub fn with_stale(mut self, stale: Duration) -> Self {
        self.stale = Some(stale);
        self
    }
    /// How long the lock may be held before the watchdog force-releases it.
    /// Capped at [`MAX_HOLD_CAP`]; under 1 ms is refused by acquire
    /// ([`crate::ErrorKind::InvalidInput`]).
    #[must_use]
    pub fn with_max_hold(mut self, max_hold: Duration) -> Self {
        self.max_hold = max_hold.min(MAX_HOLD_CAP);
        self
    }
    /// Grace for empty or malformed lock files (judged by mtime); the
    /// effective grace is `min(stale, orphan_grace)`, as in the reference.
    /// Zero is refused by acquire.
    #[must_use]
    pub fn with_orphan_grace(mut self, grace: Duration) -> Self {
        self.orphan_grace = Some(grace);
        self
    }
    /// Free text stored in the owner record (who and why), at most 1 KiB.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(crate::record::clip_label(&label.into()));
        self
    }
    /// Fail at once with [`crate::ErrorKind::Stale`] when the holder is alive
    /// but past the stale threshold or its own max hold, instead of waiting
    /// (the reference's behaviour). Default: wait.
    #[must_use]
    pub fn with_fail_on_stale(mut self, yes: bool) -> Self {
        self.fail_on_stale = yes;
        self
    }
    /// Create the transcript's missing parent directories when acquiring,
    /// each mode `0700` whatever the umask (the owner's only: a session
    /// directory shared with others is a hazard, see
    /// `docs/threat-model.md`). Default: off, as in `flock(1)`: a missing
    /// directory is an error naming it, and nothing is created.
    #[must_use]
    pub fn with_create_dirs(mut self, yes: bool) -> Self {
        self.create_dirs = yes;
        self
    }
    /// Where the lock lives: [`crate::Backend::File`] (the default) or,
    /// with the `etcd` feature, an etcd cluster (see `docs/distributed.md`).
    #[must_use]
    pub fn with_backend(mut self, backend: crate::Backend) -> Self {
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
    pub fn backend(&self) -> &crate::Backend {
        &self.backend
    }
    /// The configured timeout (`None`: unbounded).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// The configured max hold.
    pub fn max_hold(&self) -> Duration {
        self.max_hold
    }
    /// The configured stale threshold ([`DEFAULT_STALE`] unless set).
    pub fn stale(&self) -> Duration {
        self.stale_threshold()
    }
    /// The configured label, as stored (clipped to 1 KiB).
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }
    /// Whether a live holder past its limits fails the acquire at once.
    pub fn fail_on_stale(&self) -> bool {
        self.fail_on_stale
    }
    /// Whether missing parent directories are created.
    pub fn create_dirs(&self) -> bool {
        self.create_dirs
    }
    /// The effective orphan grace: `min(stale, orphan_grace)`.
    pub fn effective_orphan_grace(&self) -> Duration {
        self.orphan_grace_set().min(self.stale_threshold())
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
        let o = LockOptions::new().with_stale(Duration::from_secs(2));
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
