//! The guard: what the caller holds, whichever backend made the hold.
//!
//! A backend's hold is one crate-private trait, [`Hold`], implemented by
//! the file backend's `file::held::Held` and the etcd backend's
//! `etcd::EtcdHold`; a [`LockGuard`] is an `Arc<dyn Hold>` and a flag. No
//! backend names the other, and no method here knows which one it talks
//! to (see `docs/architecture.md`, "The held lock").

use crate::error::{Error, LostReason, Repr, Result};
use crate::record::OwnerRecord;
use crate::transcript::{Takeover, TornTail};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// One hold of a lock, as a backend keeps it. Shared by its guards (nested
/// guards count references: only the last release ends the hold).
/// Crate-private, so no other crate can implement it (sealed).
pub(crate) trait Hold: Send + Sync {
    /// The transcript this lock guards.
    fn target(&self) -> &Path;
    /// The lock file; with etcd, the lock's key prefix.
    fn lock_path(&self) -> &Path;
    /// The owner record this hold published.
    fn record(&self) -> &OwnerRecord;
    /// How long the lock has been held.
    fn held_for(&self) -> Duration;
    /// The max hold the watchdog enforces.
    fn max_hold(&self) -> Duration;
    /// The fencing token, where the backend has one (etcd).
    fn fencing_token(&self) -> Option<i64> {
        None
    }
    /// `Ok` while held; `LockLost` with the reason otherwise.
    fn check(&self) -> Result<()>;
    /// Why the hold was lost, without touching the backend.
    fn lost_reason(&self) -> Option<LostReason>;
    /// Block until the hold ends or `timeout` passes.
    fn wait_lost(&self, timeout: Option<Duration>) -> Option<LostReason>;
    /// The `lost()` future's poll.
    fn poll_lost(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<LostReason>;
    /// Let processes spawned from now on inherit the hold (or not).
    fn set_inheritable(&self, inherit: bool) -> Result<()>;
    /// One more guard shares the hold.
    fn add_ref(&self) -> Result<()>;
    /// One guard is done; the last one releases.
    fn release_ref(&self) -> Result<()>;
    /// Append whole lines (validated: no newline inside) under the hold.
    fn append(&self, lines: &[&[u8]], sync: bool) -> Result<()>;
    /// Move a torn last line out of the transcript now.
    fn repair_torn_tail(&self) -> Result<Option<TornTail>>;
    /// What this hold took over (see [`LockGuard::takeover`]).
    fn takeover(&self) -> Option<Takeover>;
    /// `Debug` for the guard.
    fn describe(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result;
}

/// Proof that this process holds a session lock. Dropping it releases the
/// lock (errors are logged through `tracing`, never panics); use
/// [`LockGuard::release`] to see them.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    hold: Arc<dyn Hold>,
    done: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.hold.describe(f)
    }
}

impl LockGuard {
    /// The guard of a hold a backend made (the front door's one way in).
    pub(crate) fn new(hold: Arc<dyn Hold>) -> LockGuard {
        LockGuard { hold, done: false }
    }

    /// The fencing token of this acquisition: with the etcd backend, the
    /// create revision of our key (larger for every later holder; see
    /// `docs/distributed.md`); `None` with the file backend.
    pub fn fencing_token(&self) -> Option<i64> {
        self.hold.fencing_token()
    }

    /// The transcript this lock guards.
    pub fn target(&self) -> &Path {
        self.hold.target()
    }

    /// The lock file (`<target>.lock`); with etcd, the lock's key prefix.
    pub fn lock_path(&self) -> &Path {
        self.hold.lock_path()
    }

    /// The owner record this guard published.
    pub fn record(&self) -> &OwnerRecord {
        self.hold.record()
    }

    /// How long the lock has been held.
    pub fn held_for(&self) -> Duration {
        self.hold.held_for()
    }

    /// The max hold the watchdog enforces for this lock.
    pub fn max_hold(&self) -> Duration {
        self.hold.max_hold()
    }

    /// Whether this guard still holds the lock: not force-released, and the
    /// lock path still names the file it created.
    pub fn is_held(&self) -> bool {
        self.check().is_ok()
    }

    /// `Ok(())` while the lock is held.
    ///
    /// # Errors
    /// [`crate::ErrorKind::LockLost`] saying why (max hold exceeded, lock
    /// file removed or replaced by someone else, `release_all`).
    pub fn check(&self) -> Result<()> {
        self.hold.check()
    }

    /// Why the lock was lost, if it was (does not touch the filesystem).
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.hold.lost_reason()
    }

    /// Block until the hold ends or `timeout` passes (`None`: forever).
    /// Returns the reason, or `None` on timeout: a loss (forced release, or
    /// one seen by [`LockGuard::check`] or an append), or
    /// [`LostReason::Released`] once the hold's last guard was released
    /// (possible while this guard waits only through a nested guard, or a
    /// forked child's view of it: [`LostReason::Inherited`] is reported at
    /// once there).
    pub fn wait_lost(&self, timeout: Option<Duration>) -> Option<LostReason> {
        self.hold.wait_lost(timeout)
    }

    /// Covers only this process's death: if this process dies while child
    /// processes spawned from now on still run, the lock stays held until
    /// the last of them exits (they inherit the witness descriptor, and the
    /// kernel keeps the witness held while any of them has it open, as with
    /// `flock(1)`). It does **not** keep the lock past a release: releasing
    /// or dropping this guard frees the lock at once, whatever the children
    /// still do, so a holder that lets children write must wait for them
    /// before it releases (`session-lock exec` does). The descriptor is
    /// inherited by *every* process spawned afterwards from any thread; call
    /// [`LockGuard::keep_from_children`] to stop that.
    ///
    /// # Errors
    /// [`crate::ErrorKind::LockLost`] if the lock is no longer held; `Io` if
    /// the descriptor flags cannot be changed.
    ///
    /// With the etcd backend this is a no-op (after checking the hold):
    /// there is no descriptor to share; the process holding the guard keeps
    /// the lease alive, and if it is killed the lock frees itself when the
    /// lease expires, whatever its children still do.
    pub fn share_with_children(&self) -> Result<()> {
        self.set_inheritable(true)
    }

    /// Undo [`LockGuard::share_with_children`] for processes spawned later.
    ///
    /// # Errors
    /// As for [`LockGuard::share_with_children`].
    pub fn keep_from_children(&self) -> Result<()> {
        self.set_inheritable(false)
    }

    fn set_inheritable(&self, inherit: bool) -> Result<()> {
        self.hold.set_inheritable(inherit)
    }

    /// A future that resolves when the hold ends, with the reason: a loss,
    /// or [`LostReason::Released`] after a normal release, so a task that
    /// watches it always ends (usable from any async runtime; it needs no
    /// timer).
    pub fn lost(&self) -> Lost {
        Lost {
            hold: self.hold.clone(),
        }
    }

    /// Another guard for the same hold (explicit re-entrancy). The lock file
    /// is removed only when the last guard is released.
    ///
    /// # Errors
    /// [`crate::ErrorKind::LockLost`] if the lock was already lost.
    pub fn nested(&self) -> Result<LockGuard> {
        self.hold.add_ref()?;
        Ok(LockGuard::new(self.hold.clone()))
    }

    /// Append one whole line to the guarded transcript: ownership is checked
    /// first (lost flag and lock path identity), then the line plus `\n` goes
    /// out in a single `write` on an `O_APPEND` descriptor, while the check
    /// still holds (a release, forced or not, waits for an append in flight,
    /// for at most [`APPEND_GRACE`], and an append after it is refused).
    ///
    /// Whole lines only: before the first write of a hold, a torn last line
    /// left by a writer that died mid-line is moved to a sidecar file (see
    /// [`LockGuard::takeover`]); a write of ours that fails part way
    /// (ENOSPC, EIO) is cut back off before the error is returned.
    ///
    /// # Errors
    /// [`crate::ErrorKind::LockLost`] when the lock is no longer held (the
    /// line is not written); [`crate::ErrorKind::InvalidInput`] for a line
    /// containing `\n` (nothing is written); `Io` for a write error
    /// (nothing of that line is left in the transcript).
    pub fn append_line(&self, line: impl AsRef<[u8]>) -> Result<()> {
        self.append(std::iter::once(line), false)
    }

    /// Like [`LockGuard::append_line`] for several lines (one `write` each).
    ///
    /// # Errors
    /// As [`LockGuard::append_line`]; lines before a failing one are written,
    /// the failing one is rolled back.
    pub fn append_lines<I, L>(&self, lines: I) -> Result<()>
    where
        I: IntoIterator<Item = L>,
        L: AsRef<[u8]>,
    {
        self.append(lines, false)
    }

    /// Like [`LockGuard::append_lines`], then `fdatasync` of the transcript
    /// before returning (still under the lock): the lines are on disk when
    /// the next holder reads them.
    ///
    /// # Errors
    /// As [`LockGuard::append_lines`]; `Io` if the sync fails. All or
    /// nothing: on any error (a failed line or a failed sync) the transcript
    /// is cut back to its length before the call.
    pub fn append_lines_durable<I, L>(&self, lines: I) -> Result<()>
    where
        I: IntoIterator<Item = L>,
        L: AsRef<[u8]>,
    {
        self.append(lines, true)
    }

    /// Append `value` as one JSON line (compact `serde_json`, which never
    /// writes a raw newline), as [`LockGuard::append_line`] does.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] if `value` cannot be serialised
    /// (nothing is written); otherwise as [`LockGuard::append_line`].
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let t = dir.path().join("s.jsonl");
    /// let guard = session_lock::acquire(&t)?;
    /// guard.append_json(&serde_json::json!({"role": "user", "text": "two\nlines"}))?;
    /// guard.release()?;
    /// assert_eq!(std::fs::read_to_string(&t)?, "{\"role\":\"user\",\"text\":\"two\\nlines\"}\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.append_json_lines(std::iter::once(value))
    }

    /// Append each of `values` as one JSON line, as
    /// [`LockGuard::append_lines`] does. All are serialised before the first
    /// is written.
    ///
    /// # Errors
    /// As [`LockGuard::append_json`] and [`LockGuard::append_lines`].
    pub fn append_json_lines<'a, T, I>(&self, values: I) -> Result<()>
    where
        T: serde::Serialize + ?Sized + 'a,
        I: IntoIterator<Item = &'a T>,
    {
        let lines = values
            .into_iter()
            .map(serde_json::to_vec)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::from(Repr::InvalidInput {
                    path: self.target().to_owned(),
                    what: format!("cannot append a value that does not serialise as JSON ({e})"),
                })
            })?;
        self.append(lines, false)
    }

    fn append<I, L>(&self, lines: I, sync: bool) -> Result<()>
    where
        I: IntoIterator<Item = L>,
        L: AsRef<[u8]>,
    {
        // Validated (and any lazy iterator run) before the hold is touched.
        let lines = crate::transcript::validate_lines(self.target(), lines)?;
        let lines: Vec<&[u8]> = lines.iter().map(AsRef::as_ref).collect();
        self.hold.append(&lines, sync)
    }

    /// What this guard took over, if the writer before it did not finish
    /// normally: the dead or reclaimed holder's record and the reasons it
    /// was reclaimed, and the torn last line moved out of the transcript
    /// (see [`Takeover`]). `None` after a normal handoff with a whole-line
    /// transcript.
    ///
    /// The reclaim part is known once the lock is acquired; the torn-line
    /// part once the tail has been checked, which happens before this
    /// guard's first append, or at once with
    /// [`LockGuard::repair_torn_tail`].
    ///
    /// With the etcd backend a lease that expired cannot be told from a
    /// release (etcd deletes the key the same way), so only the torn-line
    /// part is reported there.
    ///
    /// # Examples
    /// ```
    /// use session_lock::{acquire, LockOptions};
    /// let dir = tempfile::tempdir()?;
    /// let transcript = dir.path().join("s.jsonl");
    /// // A writer died in the middle of its second line.
    /// std::fs::write(&transcript, "{\"turn\":1}\n{\"turn\":2,\"te")?;
    /// let guard = acquire(&transcript)?;
    /// guard.append_line(r#"{"turn":3}"#)?;
    /// let takeover = guard.takeover().expect("a torn line was found");
    /// let torn = takeover.torn_tail().unwrap();
    /// assert_eq!(torn.bytes(), 13);
    /// assert_eq!(std::fs::read_to_string(torn.saved_to())?, "{\"turn\":2,\"te");
    /// assert_eq!(std::fs::read_to_string(&transcript)?, "{\"turn\":1}\n{\"turn\":3}\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn takeover(&self) -> Option<Takeover> {
        self.hold.takeover()
    }

    /// Check now (instead of before the first append) that the transcript
    /// ends with a whole line, and move a torn last line out of it if not
    /// (see [`Takeover`]): for holders that let another program write the
    /// transcript, as `session-lock exec` does. Done once per hold; later
    /// calls return the first answer.
    ///
    /// # Errors
    /// [`crate::ErrorKind::LockLost`] if the lock is no longer held; `Io` if
    /// the transcript cannot be opened, read, copied or truncated.
    pub fn repair_torn_tail(&self) -> Result<Option<TornTail>> {
        self.hold.repair_torn_tail()
    }

    /// Release the lock: remove the lock file if it still names ours, then
    /// drop the witness. With nested guards, only the last release removes it.
    ///
    /// # Errors
    /// [`crate::ErrorKind::LockLost`] if the lock had been lost (nothing was
    /// removed), or an I/O error from removing the file.
    pub fn release(mut self) -> Result<()> {
        self.done = true;
        self.release_ref()
    }

    fn release_ref(&self) -> Result<()> {
        self.hold.release_ref()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match self.release_ref() {
            Ok(()) => {}
            Err(e) if e.kind() == crate::ErrorKind::LockLost => {
                // Already reported when it happened (watchdog warning or a
                // failed check); nothing of ours is left to remove.
            }
            Err(e) => tracing::warn!(error = %e, "releasing session lock on drop failed"),
        }
    }
}

/// Future returned by [`LockGuard::lost`].
pub struct Lost {
    hold: Arc<dyn Hold>,
}

impl std::future::Future for Lost {
    type Output = LostReason;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<LostReason> {
        self.hold.poll_lost(cx)
    }
}
