//! A lock this process holds, the process registry of them, and the guard.
//!
//! Release, forced release (watchdog, [`release_all`]) and the losses a
//! guard detects (lock file removed or replaced) live here. Whether a hold
//! is still live is an atomic flag, cleared on release or loss, so that an
//! inspection in this process can ask "held by us?" without waiting for a
//! release or append in progress; a lost hold is never "held by us".

use crate::error::{Error, LostReason, Repr, Result};
use crate::file::slot;
use crate::guard::Hold;
use crate::hold_state::HoldState;
use crate::options::Caller;
use crate::paths::LockPaths;
use crate::record::OwnerRecord;
use crate::registry::Registry;
use crate::sys::{self, FileId};
use crate::transcript::{Takeover, TornTail, Transcript};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) struct HeldState {
    /// The witness: our open descriptor with the exclusive flock. `None`
    /// once released or lost.
    witness: Option<File>,
    /// A writable descriptor opened by name after publishing (see
    /// `sys::open_death_sentinel`); closed with the witness.
    sentinel: Option<File>,
    /// The witness was made inheritable (`share_with_children`): other
    /// processes may share its flock, so it is never parked for reuse.
    shared: bool,
    /// The torn tail this hold moved out of the transcript (copied from the
    /// writer, so that `takeover` never waits for an append in flight).
    torn: Option<TornTail>,
    /// The lock this hold replaced, when the acquire reclaimed it: the
    /// dead holder's record (if readable) and the reasons.
    reclaimed: Option<(Option<OwnerRecord>, Vec<crate::Reason>)>,
}

impl Held {
    /// In a child forked from the holder, how the hold looks there: as it
    /// had ended before the fork, or [`LostReason::Inherited`]. `None` in
    /// the holder's own process.
    fn forked_view(&self) -> Option<LostReason> {
        (std::process::id() != self.owner_pid).then(|| {
            self.ending.ended().unwrap_or(LostReason::Inherited {
                pid: self.owner_pid,
            })
        })
    }
}

/// One held lock. Shared by its guards, the registry and the watchdog.
pub(crate) struct Held {
    pub paths: LockPaths,
    pub id: FileId,
    /// Our witness slot's own name and the record's length, where the hold
    /// was published from a slot (see `slot`): release renames the file
    /// back there for the next hold.
    slot: Option<(std::path::PathBuf, u64)>,
    pub record: OwnerRecord,
    pub acquired: Instant,
    /// The process that published this hold. A forked child's copy of a
    /// guard is not a hold: its slot may be published again by the parent
    /// (same inode), so an identity check alone would pass.
    owner_pid: u32,
    pub max_hold: Duration,
    /// The max-hold deadline armed with the watchdog.
    max_hold_armed: crate::watchdog::MaxHold,
    /// See [`Held::is_live`].
    live: std::sync::atomic::AtomicBool,
    state: Mutex<HeldState>,
    /// Nested guards, the loss or release, and their waiters (shared with
    /// the etcd hold). Its lock is a leaf, taken inside `state` where both
    /// are needed: a loss is marked under `state`, so that a check of
    /// `state` and the loss are seen together.
    ending: HoldState,
    /// The transcript as this hold writes it. Locked only by an append that
    /// has entered the write gate (`writing`), never together with `state`
    /// except by `try_lock`: a write that blocks (a hung filesystem, a long
    /// `fdatasync`) holds this lock only, so releases, the watchdog and the
    /// signal path are never stuck behind it for more than [`APPEND_GRACE`].
    writer: Mutex<Transcript>,
    /// An append is in flight (the write gate). Release waits for it to
    /// finish, for at most [`APPEND_GRACE`], and keeps new ones out.
    writing: Mutex<bool>,
    write_idle: Condvar,
}

/// How long a release (normal, watchdog, signal) waits for an append in
/// flight before it releases anyway. An append that has passed its check
/// normally ends within microseconds to milliseconds (a `write` to a
/// regular file, an `fdatasync`, moving a torn line out); past this, the
/// write is taken to be stuck in the kernel (a hung network filesystem) and
/// the lock is released without it. Such a write may then land after the
/// next holder's first lines: O_APPEND puts it at the end, as one line
/// where the filesystem writes it whole (see `docs/protocol.md`, "Whole
/// lines").
pub const APPEND_GRACE: Duration = Duration::from_secs(5);

/// This process's file holds, by lock path (see `crate::registry`).
static REGISTRY: Registry<std::path::PathBuf, Held> = Registry::new(forget_inherited);

/// In a child forked from a holder (seen at its first use of the registry):
/// the parent's holds are not ours. Close our copies of their descriptors,
/// so that the parent's death frees its locks even while we live (a copy of
/// the witness descriptor would keep the witness held). The child's copies
/// of the parent's guards report `Inherited`.
fn forget_inherited(h: &Held) {
    // try_lock: a parent's thread may have held these at the fork, and no
    // thread of ours will ever release them.
    if let Ok(mut st) = h.state.try_lock() {
        st.witness = None;
        st.sentinel = None;
    }
    h.close_transcript();
}

/// Whether this process holds the lock file with identity `id`.
pub(crate) fn held_by_us(id: FileId) -> bool {
    // Only live holds: a lost one's inode number may be reused by a later
    // lock file that is not ours. (After fork(2) the registry answers the
    // child with its own holds only.)
    REGISTRY.any(|h| h.id == id && h.is_live())
}

/// The holder of `lock_path` in this process, if any (never one inherited
/// across fork).
pub(crate) fn holder(lock_path: &Path) -> Option<Arc<Held>> {
    REGISTRY.get(&lock_path.to_path_buf())
}

/// Every lock this process holds (not those inherited across fork).
pub(crate) fn all_held() -> Vec<Arc<Held>> {
    REGISTRY.all()
}

impl crate::watchdog::Expire for Held {
    fn name(&self) -> String {
        self.paths.lock.display().to_string()
    }

    fn held_since(&self) -> (Instant, Duration) {
        (self.acquired, self.max_hold)
    }

    /// Max hold reached: force-release (the watchdog warns).
    fn expire(self: Arc<Self>, reason: LostReason) -> bool {
        if std::process::id() != self.owner_pid {
            // A parent's hold, seen by a forked child's watchdog: not ours
            // to release.
            return false;
        }
        self.force_release(reason)
    }
}

impl Held {
    // The descriptors of one hold (witness, sentinel, slot) and its record:
    // each is needed, and a struct for one caller adds nothing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        paths: LockPaths,
        witness: File,
        sentinel: Option<File>,
        slot: Option<(std::path::PathBuf, u64)>,
        id: FileId,
        record: OwnerRecord,
        max_hold: Duration,
        caller: Caller,
    ) -> Arc<Held> {
        let held = Arc::new(Held {
            paths,
            id,
            slot,
            record,
            acquired: Instant::now(),
            owner_pid: std::process::id(),
            max_hold,
            max_hold_armed: crate::watchdog::MaxHold::default(),
            live: std::sync::atomic::AtomicBool::new(true),
            state: Mutex::new(HeldState {
                witness: Some(witness),
                sentinel,
                shared: false,
                torn: None,
                reclaimed: None,
            }),
            ending: HoldState::new(),
            writer: Mutex::new(Transcript::default()),
            writing: Mutex::new(false),
            write_idle: Condvar::new(),
        });
        REGISTRY.insert(
            held.paths.lock.clone(),
            held.clone(),
            caller == Caller::Thread,
        );
        let weak: std::sync::Weak<dyn crate::watchdog::Expire> = Arc::downgrade(&held) as _;
        held.max_hold_armed.arm(held.acquired, held.max_hold, weak);
        held
    }

    /// For a blocking contender in this process: sleep until this hold
    /// ends (release, loss) or `until`. True if it ended.
    pub(crate) fn wait_end(&self, until: Instant) -> bool {
        self.ending.wait_until(Some(until)).is_some()
    }

    /// Warn when the thread about to wait for this hold is the one that
    /// acquired it (see `Registry::warn_if_same_thread`).
    pub(crate) fn warn_if_same_thread(&self) {
        REGISTRY.warn_if_same_thread(&self.paths.lock, &self.paths.lock);
    }

    /// Record the lock this hold replaced (see `LockGuard::takeover`).
    pub(crate) fn set_reclaimed(&self, previous: Option<OwnerRecord>, reasons: Vec<crate::Reason>) {
        self.state().reclaimed = Some((previous, reasons));
    }

    fn state(&self) -> MutexGuard<'_, HeldState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Held and not lost. Lock-free on purpose: inspections in this process
    /// ask it while the hold's state may be locked by a release or an
    /// append in progress, and must not wait for those.
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(std::sync::atomic::Ordering::Acquire)
    }

    fn set_dead(&self) {
        self.live.store(false, std::sync::atomic::Ordering::Release);
    }

    /// Does the lock path still name our file? Err(reason) if not.
    fn verify_path(&self) -> std::result::Result<(), LostReason> {
        if std::process::id() != self.owner_pid {
            return Err(LostReason::Inherited {
                pid: self.owner_pid,
            });
        }
        match std::fs::symlink_metadata(&self.paths.lock) {
            Ok(meta) if sys::file_id(&meta) == self.id => Ok(()),
            Ok(_) => Err(LostReason::Replaced),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(LostReason::Removed),
            // Cannot tell (EACCES on the directory, EIO): keep holding; the
            // witness is still ours and a write is still exclusive among
            // cooperating processes.
            Err(_) => Ok(()),
        }
    }

    /// Free the lock path if it still names our file (rename it back to
    /// our slot, or unlink it), then close or park the witness. Caller
    /// holds the state lock.
    fn remove_file(&self, st: &mut HeldState) -> Result<()> {
        let Some(witness) = st.witness.take() else {
            return Ok(());
        };
        crate::fault::hit("release.before_unlink");
        let mut parked = None;
        let outcome = match self.verify_path() {
            Ok(()) => {
                crate::fault::hit("release.after_check");
                let back = match &self.slot {
                    Some((name, _)) if !st.shared => {
                        slot::unpublish(&self.paths.lock, name, self.id)
                    }
                    _ => slot::Unpublished::No,
                };
                match back {
                    slot::Unpublished::Parked => {
                        parked = self.slot.clone();
                        Ok(())
                    }
                    slot::Unpublished::Foreign => Err(Error::from(Repr::LockLost {
                        lock_path: self.paths.lock.clone(),
                        reason: LostReason::Replaced,
                    })),
                    slot::Unpublished::No => match std::fs::remove_file(&self.paths.lock) {
                        Ok(()) => Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                        Err(e) => Err(Error::io("remove lock file", &self.paths.lock, e)),
                    },
                }
            }
            Err(reason) => Err(Error::from(Repr::LockLost {
                lock_path: self.paths.lock.clone(),
                reason,
            })),
        };
        match parked {
            // Back at its slot name, flock still held: kept for our next
            // hold of this lock.
            Some((path, len)) => slot::park(
                self.paths.lock.clone(),
                slot::Slot {
                    file: witness,
                    path,
                    id: self.id,
                    len,
                },
            ),
            // Closing drops the flock only now, after the unlink: a
            // contender can never see our path with the witness free while
            // we hold it.
            None => drop(witness),
        }
        self.set_dead();
        st.sentinel = None;
        self.close_transcript();
        outcome
    }

    /// Close the transcript's descriptor unless an append (stuck past
    /// [`APPEND_GRACE`]) still uses it; that one is closed with the hold.
    fn close_transcript(&self) {
        match self.writer.try_lock() {
            Ok(mut w) => w.close(),
            // A panic inside an append (a caller's `AsRef`) poisoned it:
            // nobody writes there any more.
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().close(),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
    }

    /// `Err` with [`LostReason::Inherited`] in a child forked from the
    /// holder: its copy of the hold must not write, wait or release.
    fn ours(&self) -> Result<()> {
        if std::process::id() == self.owner_pid {
            return Ok(());
        }
        Err(Error::from(Repr::LockLost {
            lock_path: self.paths.lock.clone(),
            reason: LostReason::Inherited {
                pid: self.owner_pid,
            },
        }))
    }

    /// Enter the write gate: wait for an append in flight on another
    /// thread (nested guards) to finish. `None` once the hold is no longer
    /// live (a release went ahead of a stuck append): the caller reports
    /// the loss.
    fn enter_write(&self) -> Option<WriteTurn<'_>> {
        let mut busy = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            if !self.is_live() {
                return None;
            }
            busy = self
                .write_idle
                .wait(busy)
                .unwrap_or_else(|p| p.into_inner());
        }
        *busy = true;
        Some(WriteTurn(self))
    }

    /// Run `f` on the transcript writer while the lock is held: enter the
    /// write gate (a release now waits for us, within the grace), check the
    /// hold (lost flag, lock path identity), then write without the state
    /// lock.
    fn with_writer<T>(&self, f: impl FnOnce(&mut Transcript) -> Result<T>) -> Result<T> {
        let lost = || {
            Error::from(Repr::LockLost {
                lock_path: self.paths.lock.clone(),
                reason: self.ending.lost().unwrap_or(LostReason::ReleasedAll),
            })
        };
        // A forked child's copy may have inherited a write in flight (the
        // gate closed for good): refused before the gate.
        self.ours()?;
        let Some(_turn) = self.enter_write() else {
            return Err(lost());
        };
        {
            let mut st = self.state();
            self.check_locked(&mut st)?;
        }
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        crate::fault::hit("append.before_write");
        let out = f(&mut w);
        if w.torn.is_some() {
            let torn = w.torn.clone();
            drop(w);
            self.state().torn = torn;
        }
        out
    }

    /// Before releasing: wait for an append in flight, for at most
    /// [`APPEND_GRACE`]. The returned guard keeps new appends from entering
    /// until the release is done (they then find the hold released).
    fn quiesce(&self) -> MutexGuard<'_, bool> {
        let deadline = Instant::now() + APPEND_GRACE;
        let mut busy = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    lock_path = %self.paths.lock.display(),
                    grace_ms = APPEND_GRACE.as_millis() as u64,
                    "an append has been stuck in a write for longer than the grace; releasing the lock without waiting for it"
                );
                break;
            }
            busy = self
                .write_idle
                .wait_timeout(busy, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        busy
    }

    fn unregister(&self) {
        REGISTRY.remove(&self.paths.lock, self);
        self.max_hold_armed.disarm();
    }

    /// Mark every guard lost and wake their waiters. Called with the
    /// state lock held (`_st`), so that a check under it and the loss are
    /// seen together.
    fn mark_lost(&self, _st: &mut HeldState, reason: LostReason) {
        self.set_dead();
        self.ending.mark_lost(reason);
        // Appends queued behind a stuck one give up now.
        self.write_idle.notify_all();
    }

    /// Forced release (watchdog, `release_all`): remove the file if it is
    /// still ours, drop the witness, mark every guard lost. Returns false if
    /// the lock was already released or lost.
    pub(crate) fn force_release(self: &Arc<Held>, reason: LostReason) -> bool {
        let gate = self.quiesce();
        let mut st = self.state();
        if st.witness.is_none() || self.ending.lost().is_some() {
            return false;
        }
        if let Err(e) = self.remove_file(&mut st) {
            tracing::warn!(lock_path = %self.paths.lock.display(), error = %e, "forced release could not remove the lock file");
        }
        self.mark_lost(&mut st, reason);
        drop(st);
        drop(gate);
        self.ended_here();
        true
    }

    /// After this process ended the hold (released it or forced it off)
    /// and let go of its state and write gate: appends waiting behind a
    /// stuck one find the hold gone, the registry forgets it, and the
    /// queue file goes if nobody queues (see `queue::remove_if_idle`).
    fn ended_here(&self) {
        self.write_idle.notify_all();
        self.unregister();
        crate::file::queue::remove_if_idle(&self.paths.lock);
    }

    fn add_guard(&self) -> Result<()> {
        self.ending.add_ref().map_err(|reason| {
            Error::from(Repr::LockLost {
                lock_path: self.paths.lock.clone(),
                reason,
            })
        })
    }

    /// Drop one guard's reference; the last one releases the file.
    fn release_guard(&self) -> Result<()> {
        // Never wait on a forked copy's gate or touch the parent's files.
        self.ours()?;
        if !self.ending.release_ref() {
            return Ok(());
        }
        // The last guard: let an append in flight (a nested guard's, on
        // another thread) finish first, within the grace.
        let gate = self.quiesce();
        let mut st = self.state();
        let gate_held = gate;
        if let Some(reason) = self.ending.lost() {
            drop(st);
            self.unregister();
            return Err(Error::from(Repr::LockLost {
                lock_path: self.paths.lock.clone(),
                reason,
            }));
        }
        let outcome = self.remove_file(&mut st);
        match outcome.as_ref().err().and_then(Error::lost_reason) {
            Some(reason) => self.mark_lost(&mut st, reason.clone()),
            // Ended normally: loss watchers end too.
            // (Any loss is marked under the state lock, held here: none
            // can come in between.)
            None => {
                self.ending.mark_released();
            }
        }
        drop(st);
        drop(gate_held);
        self.ended_here();
        outcome
    }

    fn check_locked(&self, st: &mut HeldState) -> Result<()> {
        self.ours()?;
        if let Some(reason) = self.ending.lost() {
            return Err(Error::from(Repr::LockLost {
                lock_path: self.paths.lock.clone(),
                reason,
            }));
        }
        if st.witness.is_none() {
            return Err(Error::from(Repr::LockLost {
                lock_path: self.paths.lock.clone(),
                reason: LostReason::ReleasedAll,
            }));
        }
        if let Err(reason) = self.verify_path() {
            // Someone removed or replaced our file: we no longer hold it.
            // Close the witness (never unlink: the path is not ours).
            st.witness = None;
            st.sentinel = None;
            self.close_transcript();
            self.mark_lost(st, reason.clone());
            return Err(Error::from(Repr::LockLost {
                lock_path: self.paths.lock.clone(),
                reason,
            }));
        }
        Ok(())
    }
}

/// An append's turn at the transcript (see [`Held::enter_write`]); ends
/// when dropped.
struct WriteTurn<'a>(&'a Held);

impl Drop for WriteTurn<'_> {
    fn drop(&mut self) {
        *self.0.writing.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.0.write_idle.notify_all();
    }
}

/// The file backend's side of [`crate::LockGuard`].
impl Hold for Held {
    fn target(&self) -> &Path {
        &self.paths.target
    }

    fn lock_path(&self) -> &Path {
        &self.paths.lock
    }

    fn record(&self) -> &OwnerRecord {
        &self.record
    }

    fn held_for(&self) -> Duration {
        self.acquired.elapsed()
    }

    fn max_hold(&self) -> Duration {
        self.max_hold
    }

    fn check(&self) -> Result<()> {
        let mut st = self.state();
        self.check_locked(&mut st)
    }

    fn lost_reason(&self) -> Option<LostReason> {
        let lost = self.ending.lost();
        lost.or_else(|| self.ours().err().and_then(|e| e.lost_reason().cloned()))
    }

    fn wait_lost(&self, timeout: Option<Duration>) -> Option<LostReason> {
        self.forked_view()
            .or_else(|| self.ending.wait_lost(timeout))
    }

    fn poll_lost(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<LostReason> {
        match self.forked_view() {
            Some(r) => std::task::Poll::Ready(r),
            None => self.ending.poll_lost(cx),
        }
    }

    fn set_inheritable(&self, inherit: bool) -> Result<()> {
        let mut st = self.state();
        self.check_locked(&mut st)?;
        let Some(witness) = st.witness.as_ref() else {
            return Err(Error::from(Repr::LockLost {
                lock_path: self.paths.lock.clone(),
                reason: LostReason::ReleasedAll,
            }));
        };
        sys::set_inheritable(witness, inherit)
            .map_err(|e| Error::io("set witness inheritance", &self.paths.lock, e))?;
        // An unnamed witness's last close is no event under the lock name;
        // the death sentinel's is, so it goes with the witness.
        if let Some(sentinel) = st.sentinel.as_ref() {
            sys::set_inheritable(sentinel, inherit)
                .map_err(|e| Error::io("set witness inheritance", &self.paths.lock, e))?;
        }
        st.shared |= inherit;
        Ok(())
    }

    fn add_ref(&self) -> Result<()> {
        self.add_guard()
    }

    fn release_ref(&self) -> Result<()> {
        self.release_guard()
    }

    fn append(&self, lines: &[&[u8]], sync: bool) -> Result<()> {
        self.with_writer(|w| w.append(&self.paths.target, lines, sync, &|| self.is_live()))
    }

    fn repair_torn_tail(&self) -> Result<Option<TornTail>> {
        self.with_writer(|w| w.repair_tail(&self.paths.target, &|| self.is_live()))
    }

    fn takeover(&self) -> Option<Takeover> {
        let st = self.state();
        let (reclaimed, torn) = (st.reclaimed.clone(), st.torn.clone());
        drop(st);
        Takeover::from_parts(reclaimed, torn)
    }

    fn describe(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock_path", &self.paths.lock)
            .field("token", &self.record.token)
            .finish()
    }
}

/// Force-release every file lock this process holds (see
/// [`crate::release_all`]). Returns how many.
pub(crate) fn release_all() -> usize {
    all_held()
        .into_iter()
        .filter(|h| h.force_release(LostReason::ReleasedAll))
        .count()
}

/// Remove this process's parked witness slots: the hidden
/// `.<lock name>.w<N>.tmp` files that a released lock leaves next to its
/// lock file so that the next hold by this process reuses the inode (see
/// `docs/protocol.md`, "Witness slots"). Locks held now are not touched;
/// the next acquire simply claims a slot again. Call it before a
/// short-lived process exits to leave no such file behind (a slot left by
/// an exited process is taken over by the next process that needs one, and
/// removed by `clean` once older than the orphan grace). Also closes the
/// spare queue descriptors the process keeps for later acquires, and
/// those it keeps for queue files it bypasses as squatted, which ends
/// those bypasses: the next wait tries those queues again. (A released
/// hold's transcript descriptor is closed by the release itself; see the
/// README, "Descriptors".) Returns how many slots were removed.
pub fn close_idle() -> usize {
    let slots = slot::close_all();
    crate::file::queue::close_spares();
    slots
}
