//! Acquire, reclaim and release: the protocol of `docs/protocol.md`.
//!
//! This module has the path normalisation ([`LockPaths`]), the acquire loop
//! shared by the blocking and async APIs (one step: publish, or inspect and
//! reclaim a dead owner's file race-free, or wait) and the public entry
//! points. Publishing is in `publish`, waiting in `wait`, holds, release and
//! the guard in `held`.

#[cfg(feature = "tokio")]
pub(crate) mod asynchronous;
pub(crate) mod held;
pub(crate) use held::{close_idle, release_all};
pub(crate) mod inspect;
pub(crate) mod publish;
pub(crate) mod queue;
pub(crate) mod reclaim_guard;
pub(crate) mod slot;
pub mod sweep;
pub(crate) mod wait;

use crate::error::{Error, Repr, Result};
use crate::options::{Caller, LockOptions};
use crate::paths::LockPaths;
use crate::sys::{self, FileId};
use held::Held;
use inspect::{Inspection, Policy, Verdict};
pub(crate) use reclaim_guard::RECLAIM_GUARD_SUFFIX;
use reclaim_guard::take_reclaim_guard;
pub use reclaim_guard::{GuardProblem, GuardReport, RECLAIM_GUARD_ABANDONED, guard_report};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) fn acquire_policy(opts: &LockOptions) -> Policy {
    Policy {
        stale: opts.stale_threshold(),
        orphan_grace: opts.orphan_grace_set(),
        respect_max_hold: true,
        reclaim_self_without_starttime: true,
    }
}

/// Outcome of a reclaim attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reclaim {
    /// We removed the stale file.
    Removed,
    /// The path no longer names the inspected file; nothing removed.
    Changed,
    /// Someone else holds the stale inode's lock right now (another
    /// reclaimer or an inspector); try again shortly.
    Busy,
    /// A reclaim guard (`<lock>.reclaim`) is in the way: another
    /// reclaimer's live one, or one we may not remove (see
    /// [`GuardReport`]). Nothing removed; its removal wakes waiters (the
    /// lock's watch also accepts the guard's name), and a live one is
    /// looked at again when it would count as abandoned.
    Guarded(Box<GuardReport>),
}

/// Outcome of [`lock_for_removal`].
pub(crate) enum RemovalLock {
    /// We hold the inode's exclusive flock.
    Taken,
    /// Someone else holds a lock on it.
    Busy,
    /// The path no longer names that inode.
    Changed,
    /// This filesystem has no flock.
    Unsupported,
}

/// Try for the exclusive flock on the inode `file` was opened on (read-only,
/// by inspection) before removing `path`. NFS emulates flock with POSIX
/// locks, whose exclusive form needs a descriptor open for writing
/// (flock(2), NOTES): there the same inode is opened again for writing, into
/// `writable`, which the caller keeps until after its unlink (and reuses
/// across retries).
pub(crate) fn lock_for_removal(
    file: &std::fs::File,
    writable: &mut Option<std::fs::File>,
    path: &Path,
    id: FileId,
) -> RemovalLock {
    let outcome = match writable.as_ref() {
        Some(w) => sys::flock_try(w, true),
        None => sys::flock_try(file, true),
    };
    match outcome {
        Ok(true) => RemovalLock::Taken,
        Ok(false) => RemovalLock::Busy,
        Err(e) if sys::is_needs_writable_fd(&e) && writable.is_none() => {
            match sys::open_death_sentinel(path) {
                Ok(w) if w.metadata().is_ok_and(|m| sys::file_id(&m) == id) => {
                    *writable = Some(w);
                    lock_for_removal(file, writable, path, id)
                }
                _ => RemovalLock::Changed,
            }
        }
        Err(_) => RemovalLock::Unsupported,
    }
}

/// Remove a stale lock file without races: hold the stale inode's flock
/// exclusively, check the path still names that inode, unlink, close. Two
/// reclaimers serialise on the inode; the loser finds the path changed.
pub(crate) fn reclaim(observed: inspect::Observed) -> Result<Reclaim> {
    let inspect::Observed { inspection, file } = observed;
    let path = &inspection.lock_path;
    let Some(file) = file else {
        // Never opened (unreadable): nothing we may judge or remove.
        return Ok(Reclaim::Busy);
    };
    // Inspectors hold their probe for microseconds and another reclaimer
    // holds it only until its unlink: a short bounded retry almost always
    // gets through, so contenders do not all give up at once.
    let mut attempts = 0;
    // Held until after the unlink when NFS needed one (see `lock_for_removal`).
    let mut writable = None;
    loop {
        match lock_for_removal(&file, &mut writable, path, inspection.id) {
            // No flock on this filesystem: identity check only (documented window).
            RemovalLock::Taken | RemovalLock::Unsupported => break,
            RemovalLock::Busy if attempts < RECLAIM_LOCK_ATTEMPTS => {
                attempts += 1;
                std::thread::sleep(Duration::from_micros(50));
            }
            RemovalLock::Busy => return Ok(Reclaim::Busy),
            RemovalLock::Changed => return Ok(Reclaim::Changed),
        }
    }
    // The reference's reclaimer holds `<lock>.reclaim` from its last re-read
    // to its delete by path: publishing while it is there would let it delete
    // our fresh lock. Take the same guard (so it waits for us), or wait for
    // its guard to go.
    let guard = match take_reclaim_guard(path)? {
        Ok(g) => g,
        Err(report) => return Ok(Reclaim::Guarded(report)),
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() && sys::file_id(&meta) == inspection.id => {}
        Ok(_) => return Ok(Reclaim::Changed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Reclaim::Changed),
        Err(e) => return Err(Error::io("stat lock file", path, e)),
    }
    crate::fault::hit("reclaim.before_unlink");
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(
                lock_path = %path.display(),
                reasons = ?inspection.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                owner = %inspection.owner(),
                "reclaimed stale session lock"
            );
            drop(guard);
            drop(file);
            Ok(Reclaim::Removed)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Reclaim::Changed),
        Err(e) => Err(Error::io("remove stale lock file", path, e)),
    }
}

/// One step of the acquire loop, shared by the blocking and async APIs.
pub(crate) enum Step {
    Acquired(Arc<Held>),
    /// Something changed (vanished, reclaimed): try again at once.
    Retry,
    /// Another reclaimer is busy on the stale inode: try again shortly.
    Backoff,
    /// Held by someone else ([`Acquirer::last_inspection`]): wait for a change.
    Wait,
    /// The lock is held and the queue's `flock` too (by the contender
    /// next in line): wait in the queue ([`Acquirer::join_queue`]).
    Queue,
}

/// How an acquire call uses the lock's queue (see `queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueUse {
    /// Blocking acquire: when the lock is taken, wait in the kernel's
    /// queue to be next in line, then for the lock file itself.
    Wait,
    /// `try_acquire`, the async API, `fail_on_stale`, or no queue here (no
    /// `flock`, no permission, no helper thread): never queue.
    Off,
}

/// Tries (50 us apart) for the stale inode's exclusive lock before a
/// reclaim reports [`Reclaim::Busy`].
const RECLAIM_LOCK_ATTEMPTS: u32 = 40;

/// Backoff after [`Step::Backoff`]: a reclaimer or inspector holds the
/// stale inode for microseconds.
pub(crate) const RECLAIM_BACKOFF: Duration = Duration::from_millis(1);

/// Steps taken by acquire loops in this process (tests count them to prove
/// that waiting does not poll).
#[cfg(feature = "fault-injection")]
pub(crate) static STEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Short re-checks after a close event on a still-held lock (1+2+...+128 ms).
const SETTLE_TRIES: u32 = 8;

thread_local! {
    /// Waits ended by an event, and by the safety re-check timer, on this
    /// thread (settling re-checks and deadlines are not counted as timer
    /// wake-ups); tests use them to prove that a wake-up was the kernel's.
    pub(crate) static WAKES: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// Count how a wait ended: `by_event`, or by the safety re-check (`recheck`).
pub(crate) fn count_wake(by_event: bool, recheck: bool) {
    use std::sync::atomic::Ordering::Relaxed;
    // Two relaxed additions per wait that ended: next to the system calls
    // of the wake-up itself, free (and a gateway may export them).
    WAKES_ALL[0].fetch_add(u64::from(by_event), Relaxed);
    WAKES_ALL[1].fetch_add(u64::from(!by_event && recheck), Relaxed);
    #[cfg(feature = "fault-injection")]
    WAKES.with(|w| {
        let (e, t) = w.get();
        w.set((e + u64::from(by_event), t + u64::from(!by_event && recheck)));
    });
}

/// [`WAKES`] of every thread of the process: an async waiter's wake-ups
/// are counted on whichever runtime worker polled it.
pub(crate) static WAKES_ALL: [std::sync::atomic::AtomicU64; 2] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 2];

/// How the waits of this process for a file lock have ended since it
/// started, all threads and tasks together.
///
/// A waiter sleeps until it is woken: by the kernel (a grant of the wait
/// queue's `flock`, an inotify event on the lock's directory: the holder
/// released, or died) or, for a hold of this same process, by that hold's
/// end. A timer ends a wait otherwise: the safety re-check every 2 s,
/// which covers what inotify cannot see (a directory on some network
/// filesystems, a lost event queue), or an earlier time the waiter asked
/// for (an `on_wait` hook's time, a reclaim guard that may count as
/// abandoned, the queue's short bound when the lock is free but the queue
/// still held). Settling re-checks shortly after a release and deadlines
/// are not counted. On a local filesystem without hooks or squatters,
/// `by_recheck` stays at 0 while `by_event` grows by about one per
/// contended handoff; a gateway that sees `by_recheck` grow has waiters
/// that events do not reach.
///
/// ```
/// let before = session_lock::wait_wakeups();
/// // ... contended work ...
/// let after = session_lock::wait_wakeups();
/// assert!(after.by_event >= before.by_event);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitWakeups {
    /// Waits ended by an event: a queue grant, an inotify event, or the
    /// end of a hold of this process.
    pub by_event: u64,
    /// Waits ended by a timer: the 2 s safety re-check, or an earlier
    /// time the waiter asked for (see above).
    pub by_recheck: u64,
}

/// This process's [`WaitWakeups`] so far (file backend; the etcd backend
/// is woken by its watch stream and not counted here).
pub fn wait_wakeups() -> WaitWakeups {
    use std::sync::atomic::Ordering::Relaxed;
    WaitWakeups {
        by_event: WAKES_ALL[0].load(Relaxed),
        by_recheck: WAKES_ALL[1].load(Relaxed),
    }
}

/// The state of one acquire call across its attempts.
pub(crate) struct Acquirer<'a> {
    paths: &'a LockPaths,
    opts: &'a LockOptions,
    /// A thread (the blocking API) or a task (the async API).
    caller: Caller,
    /// Our witnessed record, kept between attempts (see `publish`).
    prepared: Option<publish::Prepared>,
    /// Look (lstat) before trying to publish.
    look_first: bool,
    /// The lock file last judged held: its identity and the judgement.
    last: Option<(FileId, Box<Inspection>)>,
    /// The last wait ended with an event (not a timer).
    pub(crate) woken_by_event: bool,
    /// The last look found a newly published lock (see `lock_exists`).
    rewaited: bool,
    /// Short re-checks left after a close event on a still-held lock.
    settle: u32,
    /// The last step found a reclaimable lock under a reclaim guard (the
    /// lock as judged then, and the guard).
    guarded: Option<(Box<Inspection>, Box<GuardReport>)>,
    /// When this acquire began (for `LockOptions::on_wait`).
    started: Instant,
    /// The `on_wait` hook has run.
    hooked: bool,
    /// See [`QueueUse`].
    queue_use: QueueUse,
    /// The queue's `flock`, held: we are next in line.
    ticket: Option<queue::Ticket>,
    /// A descriptor of the busy queue, to join it with.
    busy: Option<queue::QueueFd>,
    /// Our place in the queue while we wait in it.
    queued: Option<queue::Waiting>,
    /// A publish found the lock held: the queue file may be made (until
    /// then a missing one means nobody is queued, and none is made: an
    /// uncontended hold leaves no queue file behind).
    contended: bool,
    /// The lock we reclaimed in the last step, for the guard's takeover
    /// report if our next publish wins.
    reclaimed: Option<Box<Inspection>>,
}

/// An acquire that ends without the lock (timeout, error, a dropped
/// future) while next in line gives its place up, and takes the queue
/// file with it if nobody else queues (see `queue::remove_if_idle`).
impl Drop for Acquirer<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            ticket.give_up();
        }
    }
}

impl<'a> Acquirer<'a> {
    pub(crate) fn new(paths: &'a LockPaths, opts: &'a LockOptions, caller: Caller) -> Self {
        Acquirer {
            paths,
            opts,
            caller,
            prepared: None,
            // The blocking API publishes at once: if that fails, the record
            // is kept for the attempt after the wake-up, so nothing is
            // wasted. The async API looks first (`look_first`), see there.
            look_first: false,
            last: None,
            woken_by_event: false,
            rewaited: false,
            settle: 0,
            guarded: None,
            started: Instant::now(),
            hooked: false,
            queue_use: if opts.fail_on_stale || caller == Caller::Task {
                QueueUse::Off
            } else {
                QueueUse::Wait
            },
            ticket: None,
            busy: None,
            queued: None,
            contended: false,
            reclaimed: None,
        }
    }

    /// Never wait in the queue (`try_acquire`).
    pub(crate) fn opportunistic(mut self) -> Self {
        self.queue_use = QueueUse::Off;
        self
    }

    /// After [`Step::Queue`]: join the queue (or keep our place). False if
    /// the queue cannot be used; the caller then just steps again and
    /// waits the old way.
    pub(crate) fn join_queue(&mut self) -> bool {
        if self.queued.is_some() {
            return true;
        }
        self.queued = self.busy.take().and_then(queue::Waiting::join);
        if self.queued.is_none() {
            self.queue_use = QueueUse::Off;
        }
        self.queued.is_some()
    }

    /// The queue stayed held while the lock was free (see
    /// [`queue::STALL_BOUND`]): give our place up, stop using the queue,
    /// and have this process bypass that queue file (reported once).
    pub(crate) fn bypass_queue(&mut self) {
        self.queued = None;
        if let Some(fd) = self.busy.take() {
            queue::release_fd(fd);
        }
        self.queue_use = QueueUse::Off;
        queue::bypass(&self.paths.lock);
    }

    /// Whether we have a place in the queue (a wait goes there).
    pub(crate) fn in_queue(&self) -> bool {
        self.queued.is_some()
    }

    /// Sleep in the queue until granted or `until`. True if granted (the
    /// kernel handed us the queue's `flock`: a wake-up by an event).
    pub(crate) fn wait_in_queue(&mut self, until: Instant) -> bool {
        let Some(w) = self.queued.as_ref() else {
            return false;
        };
        match w.wait(until) {
            queue::Outcome::Granted(ticket) => {
                self.queued = None;
                self.ticket = Some(ticket);
                self.woken_by_event = true;
                true
            }
            // Woken by the remover's release: queue again (next step).
            queue::Outcome::Moved => {
                self.queued = None;
                self.woken_by_event = true;
                true
            }
            queue::Outcome::Pending => false,
            queue::Outcome::Failed => {
                self.queued = None;
                self.queue_use = QueueUse::Off;
                false
            }
        }
    }

    /// The `Timeout` error, naming the holder: a waiter that only waited
    /// in the queue has not looked at the lock file yet, and looks now.
    pub(crate) fn timeout(&mut self) -> Error {
        self.look_if_never_looked();
        timeout_error(
            self.paths,
            self.opts,
            self.last_inspection(),
            self.blocking_guard(),
        )
    }

    /// A waiter that only waited in the queue has not looked at the lock
    /// file: look now (one inspection, read only: it publishes nothing, so
    /// it never overtakes the contender next in line).
    fn look_if_never_looked(&mut self) {
        if self.last_inspection().is_none() {
            let policy = acquire_policy(self.opts);
            if let Ok(Some(o)) = inspect::observe(&self.paths.lock, &policy, &held::held_by_us) {
                self.last = Some((o.inspection.id, Box::new(o.inspection)));
            }
        }
    }

    /// Look (one lstat) before the first publish attempt: a crowd of tasks
    /// arriving at a held lock then goes straight to waiting instead of
    /// each preparing a record it cannot publish yet.
    #[cfg(feature = "tokio")]
    pub(crate) fn look_first(mut self) -> Self {
        self.look_first = true;
        self
    }

    /// The inspection behind the last [`Step::Wait`] (or the reclaimable
    /// lock another reclaimer's guard kept us from removing).
    pub(crate) fn last_inspection(&self) -> Option<&Inspection> {
        self.guarded
            .as_ref()
            .map(|(i, _)| &**i)
            .or(self.last.as_ref().map(|(_, i)| &**i))
    }

    /// The reclaim guard that kept the last step from reclaiming.
    pub(crate) fn blocking_guard(&self) -> Option<&GuardReport> {
        self.guarded.as_ref().map(|(_, g)| &**g)
    }

    /// When to look again at the lock kept by a live reclaim guard: once
    /// the guard counts as abandoned (at least 1 ms from `now`). Its
    /// removal wakes the waiter before that (see `wait`).
    pub(crate) fn guard_recheck(&self, now: Instant) -> Option<Instant> {
        let left = self.blocking_guard()?.abandoned_in()?;
        now.checked_add(left.max(Duration::from_millis(1)))
    }

    /// How long to sleep after [`Step::Backoff`]: another reclaimer of ours
    /// needs microseconds. (A reclaim guard in the way is a [`Step::Wait`].)
    pub(crate) fn backoff_delay(&self) -> Duration {
        RECLAIM_BACKOFF
    }

    /// Before a blocking contender looks at the lock: if it is neither
    /// next in line nor queued yet, it takes the queue's `flock` if that is
    /// free (it is then next in line: it publishes, or waits for the lock
    /// file itself), or else queues up behind the contender next in line
    /// without looking further ([`Step::Queue`]).
    fn queue_up(&mut self) -> Option<Step> {
        if self.queue_use != QueueUse::Wait || self.ticket.is_some() || self.queued.is_some() {
            return None;
        }
        match queue::try_queue(&self.paths.lock, self.contended) {
            queue::TryQueue::Taken(ticket) => {
                self.ticket = Some(ticket);
                None
            }
            // Nobody queued, and we have not found the lock held yet.
            queue::TryQueue::Absent => None,
            queue::TryQueue::Busy(fd) => {
                if let Some(old) = self.busy.replace(fd) {
                    queue::release_fd(old);
                }
                Some(Step::Queue)
            }
            queue::TryQueue::Unavailable => {
                self.queue_use = QueueUse::Off;
                None
            }
        }
    }

    pub(crate) fn step(&mut self) -> Result<Step> {
        #[cfg(feature = "fault-injection")]
        STEPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.guarded = None;
        // Only a publish in the step right after the reclaim takes over
        // what was reclaimed; anything in between (a wait, a queue, someone
        // else's publish) means someone else held it since.
        let reclaimed = self.reclaimed.take();
        let woken = std::mem::take(&mut self.woken_by_event);
        // Someone is next in line already: queue up behind them without
        // looking (no barging past a waiter: the longest wait stays
        // bounded by the queue's order, see docs/performance.md).
        if let Some(step) = self.queue_up() {
            return Ok(step);
        }
        if !self.look_first || !self.lock_exists(woken)? {
            match publish::publish(self.paths, self.opts, self.caller, self.prepared.take())? {
                publish::Published::Held(held) => {
                    if let Some(insp) = reclaimed {
                        let Inspection {
                            record, reasons, ..
                        } = *insp;
                        held.set_reclaimed(record, reasons);
                    }
                    // Next in line no more: the kernel hands the queue on
                    // now, and the next contender watches the lock while we
                    // hold it.
                    self.ticket = None;
                    return Ok(Step::Acquired(held));
                }
                publish::Published::Exists(prepared) => {
                    self.prepared = prepared;
                    if !self.contended {
                        // Held: from now on we queue (making the file).
                        self.contended = true;
                        if let Some(step) = self.queue_up() {
                            return Ok(step);
                        }
                    }
                    // Lost the race after a wake-up: same cheap check.
                    if woken && self.lock_exists(true)? && self.rewaited {
                        return Ok(Step::Wait);
                    }
                }
            }
        } else if self.rewaited {
            return Ok(Step::Wait);
        }
        let policy = acquire_policy(self.opts);
        let Some(observed) = inspect::observe(&self.paths.lock, &policy, &held::held_by_us)? else {
            self.look_first = false;
            return Ok(Step::Retry);
        };
        crate::fault::hit("acquire.after_observe");
        match observed.inspection.verdict {
            Verdict::Reclaimable => {
                self.look_first = false;
                let judged = observed.inspection.clone();
                Ok(match reclaim(observed)? {
                    Reclaim::Removed => {
                        self.reclaimed = Some(Box::new(judged));
                        Step::Retry
                    }
                    Reclaim::Changed => Step::Retry,
                    Reclaim::Busy => Step::Backoff,
                    Reclaim::Guarded(guard) => {
                        // Wait for the guard's removal (an event on its
                        // name) or for it to count as abandoned.
                        self.guarded = Some((Box::new(judged), guard));
                        Step::Wait
                    }
                })
            }
            Verdict::Held | Verdict::Stale => {
                // Next in line (the queue's `flock` is ours): after the
                // wake-up, publish straight away. It fails only if someone
                // outside the queue got in first, and then costs one
                // rename more than a look; when it succeeds, which is
                // nearly always, the look would have cost one system call
                // on the handoff's critical path.
                self.look_first = self.ticket.is_none();
                let insp = observed.inspection;
                let same = self.last.as_ref().is_some_and(|(id, _)| *id == insp.id);
                // A close-write event on the file we saw held, and it is still
                // held: most likely its owner is exiting right now (the
                // kernel reports the close before it drops the flock, and may
                // close the sentinel before the witness). Look again a few
                // times soon instead of at the safety re-check.
                self.settle = match (same, woken, self.settle) {
                    (true, true, _) => 1,
                    (true, false, n) if (1..SETTLE_TRIES).contains(&n) => n + 1,
                    _ => 0,
                };
                self.last = Some((insp.id, Box::new(insp)));
                Ok(Step::Wait)
            }
        }
    }

    /// Whether the lock path exists. After an event woke us (`woken`), a
    /// lock file with another identity than the one we last judged held is
    /// one that someone else just won and published, witnessed (ours always
    /// are): `rewaited` is set and the caller waits again without opening
    /// it; a later event on it, or the safety re-check, inspects it in full.
    fn lock_exists(&mut self, woken: bool) -> Result<bool> {
        self.rewaited = false;
        match std::fs::symlink_metadata(&self.paths.lock) {
            Ok(meta) => {
                let id = sys::file_id(&meta);
                if woken
                    && meta.file_type().is_file()
                    && let Some((last_id, _)) = self.last.as_mut()
                    && *last_id != id
                {
                    *last_id = id;
                    self.rewaited = true;
                    // A new holder: no settling left over from the old one.
                    self.settle = 0;
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            // Anything else (a symlink loop, EACCES): let publish/inspect
            // report it with the right words.
            Err(_) => Ok(false),
        }
    }

    /// How soon to look again while a holder seems to be exiting (see
    /// `settle`): 1, 2, 4 ... ms, about 0.25 s in all; `None` otherwise.
    pub(crate) fn settle_delay(&self) -> Option<Duration> {
        (self.settle > 0).then(|| Duration::from_millis(1 << (self.settle - 1)))
    }

    /// Before sleeping: prepare our witnessed record now, so that the
    /// attempt after a wake-up only has to link it (see `publish`).
    pub(crate) fn prepare(&mut self) -> Result<()> {
        if self.prepared.is_none() {
            self.prepared = Some(publish::Prepared::create(self.paths, self.opts)?);
        }
        Ok(())
    }

    /// Run the `on_wait` hook once the wait has lasted long enough; until
    /// then, the instant at which the caller must wake up to run it. A
    /// waiter queued behind another has not looked at the lock yet: it
    /// looks now, to name the holder (a hook left for its next look would
    /// wait for the safety re-check).
    pub(crate) fn wait_hook(&mut self, now: Instant) -> Option<Instant> {
        let hook = self.opts.on_wait.as_ref().filter(|_| !self.hooked)?;
        let at = self.started.checked_add(hook.after)?;
        if now < at {
            return Some(at);
        }
        self.look_if_never_looked();
        if let Some(insp) = self.last_inspection() {
            (hook.call)(&insp.owner());
            self.hooked = true;
        }
        None
    }

    /// The error for a `Wait` that may not wait: `Stale` with
    /// `fail_on_stale`, `Timeout` past the deadline.
    pub(crate) fn check_wait(&self, deadline: Option<Instant>, now: Instant) -> Result<()> {
        if let Some(insp) = self.last_inspection()
            && self.opts.fail_on_stale
            && insp.verdict == Verdict::Stale
        {
            return Err(stale_error(self.paths, insp));
        }
        if deadline.is_some_and(|d| now >= d) {
            return Err(timeout_error(
                self.paths,
                self.opts,
                self.last_inspection(),
                self.blocking_guard(),
            ));
        }
        Ok(())
    }
}

pub(crate) fn timeout_error(
    paths: &LockPaths,
    opts: &LockOptions,
    last: Option<&Inspection>,
    guard: Option<&GuardReport>,
) -> Error {
    Error::from(Repr::Timeout {
        lock_path: paths.lock.clone(),
        timeout: opts.timeout.unwrap_or(Duration::MAX),
        owner: Box::new(last.map(Inspection::owner).unwrap_or_default()),
        reasons: last.map(|i| i.reasons.clone()).unwrap_or_default(),
        guard: guard.map(ToString::to_string),
    })
}

pub(crate) fn stale_error(paths: &LockPaths, insp: &Inspection) -> Error {
    Error::from(Repr::Stale {
        lock_path: paths.lock.clone(),
        owner: Box::new(insp.owner()),
        reasons: insp.reasons.clone(),
    })
}

/// The file backend's blocking acquire (see [`crate::acquire_with`]):
/// waits for the holder's release or death (inotify, with a safety
/// re-check every 2 s), reclaiming dead owners' locks at once.
pub(crate) fn acquire_blocking(target: &Path, opts: &LockOptions) -> Result<Arc<Held>> {
    let paths = LockPaths::resolve_with(target, opts)?;
    let deadline = opts.timeout.and_then(|t| Instant::now().checked_add(t));
    let mut acq = Acquirer::new(&paths, opts, Caller::Thread);
    let mut warned = false;
    let mut watch: Option<wait::BlockingWatch> = None;
    loop {
        if let Some(w) = watch.as_mut() {
            // Before the look, so that no event after it is missed.
            w.arm();
        }
        match acq.step()? {
            Step::Acquired(held) => return Ok(held),
            Step::Retry | Step::Backoff if deadline.is_some_and(|d| Instant::now() >= d) => {
                // Someone keeps changing the lock under us: still bounded.
                return Err(acq.timeout());
            }
            Step::Retry => {}
            Step::Backoff => std::thread::sleep(acq.backoff_delay()),
            Step::Queue => wait_in_queue(&mut acq, &mut watch, &paths, deadline)?,
            // A safety re-check while in the queue found the lock held.
            Step::Wait if acq.in_queue() => wait_in_queue(&mut acq, &mut watch, &paths, deadline)?,
            Step::Wait => {
                let now = Instant::now();
                acq.check_wait(deadline, now)?;
                let Some(w) = watch.as_mut() else {
                    // First contention: register, then look again so that a
                    // release between our look and the registration is seen.
                    watch = Some(wait::BlockingWatch::new(&paths));
                    continue;
                };
                acq.prepare()?;
                let recheck = now + acq.settle_delay().unwrap_or_else(|| w.recheck_interval());
                let recheck = acq.guard_recheck(now).map_or(recheck, |g| g.min(recheck));
                let hooked = acq.hooked;
                let recheck = acq.wait_hook(now).map_or(recheck, |h| h.min(recheck));
                if acq.hooked && !hooked {
                    // The hook ran on this thread and may have waited for a
                    // lock itself, moving or removing this thread's watch
                    // and reading its events: arm and look again first.
                    continue;
                }
                let until = deadline.map_or(recheck, |d| d.min(recheck));
                acq.woken_by_event = match held::holder(&paths.lock) {
                    // Held by another guard of this process: woken
                    // in-process when that hold ends, no kernel round trip.
                    Some(h) if h.is_live() => {
                        if !warned {
                            warned = true;
                            h.warn_if_same_thread();
                        }
                        h.wait_end(until)
                    }
                    _ => w.wait(until),
                };
                count_wake(
                    acq.woken_by_event,
                    acq.settle_delay().is_none() && deadline.is_none_or(|d| recheck < d),
                );
            }
        }
    }
}

/// The blocking API's wait in the lock's queue: the kernel grants the
/// queue's `flock` to one waiter per release, in order. Every
/// [`wait::SAFETY_RECHECK`] the waiter looks at the lock itself, keeping
/// its place, so a queue stuck on someone who neither holds the lock nor
/// moves (a stopped process) delays a free lock by that much at most.
///
/// No watch on the lock's directory is kept while waiting in the queue
/// (the kernel would queue every event there for us meanwhile); once
/// granted, the watch is made before the first look, so that look is
/// covered and need not be repeated.
fn wait_in_queue(
    acq: &mut Acquirer<'_>,
    watch: &mut Option<wait::BlockingWatch>,
    paths: &LockPaths,
    deadline: Option<Instant>,
) -> Result<()> {
    *watch = None;
    wait::unwatch_while_queued();
    let now = Instant::now();
    if deadline.is_some_and(|d| now >= d) {
        return Err(acq.timeout());
    }
    // Looked at before joining, so that a holder seen then was there
    // while we queued. The lock free but the queue held: the next in line
    // is about to publish, or the queue's holder is not one of ours. Wait
    // only a short bound in the queue then (see `queue::STALL_BOUND`).
    let free = lock_absent(paths);
    if !acq.join_queue() {
        // No queue after all: the next step waits the old way.
        return Ok(());
    }
    // The attempt after the grant only has to link it.
    acq.prepare()?;
    let recheck = now
        + if free {
            queue::STALL_BOUND
        } else {
            wait::SAFETY_RECHECK
        };
    // Waking for the `on_wait` hook makes the next step look at the lock,
    // so the hook then has the holder to show.
    let recheck = acq.wait_hook(now).map_or(recheck, |h| h.min(recheck));
    let until = deadline.map_or(recheck, |d| d.min(recheck));
    let mut granted = acq.wait_in_queue(until);
    count_wake(granted, deadline.is_none_or(|d| recheck < d));
    if !granted && acq.in_queue() && lock_absent(paths) {
        // Free now and still not granted: if it was free all along, or
        // stays free for one more short bound, the queue is squatted.
        crate::fault::hit("queue.free_not_granted");
        if !free {
            let bound = Instant::now() + queue::STALL_BOUND;
            granted = acq.wait_in_queue(deadline.map_or(bound, |d| d.min(bound)));
        }
        if !granted && acq.in_queue() && lock_absent(paths) {
            acq.bypass_queue();
        }
    }
    if granted {
        *watch = Some(wait::BlockingWatch::new(paths));
    }
    Ok(())
}

/// Whether nothing is at the lock path (one `lstat`).
fn lock_absent(paths: &LockPaths) -> bool {
    matches!(std::fs::symlink_metadata(&paths.lock), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// The file backend's `try_acquire` (see [`crate::try_acquire_with`]).
pub(crate) fn try_blocking(target: &Path, opts: &LockOptions) -> Result<Arc<Held>> {
    let paths = LockPaths::resolve_with(target, opts)?;
    try_once(&paths, opts, Caller::Thread)
}

/// The body of `try_acquire`, for threads and tasks.
pub(crate) fn try_once(paths: &LockPaths, opts: &LockOptions, caller: Caller) -> Result<Arc<Held>> {
    // A few immediate retries cover "vanished" and "reclaimed" races; each
    // one means someone made progress.
    let mut acq = Acquirer::new(paths, opts, caller).opportunistic();
    for _ in 0..16 {
        match acq.step()? {
            Step::Acquired(held) => return Ok(held),
            Step::Retry => continue,
            // Another reclaimer is on the stale inode; it needs microseconds.
            Step::Backoff => std::thread::sleep(Duration::from_micros(100)),
            Step::Wait | Step::Queue => break,
        }
    }
    if let Some(insp) = acq.last_inspection()
        && opts.fail_on_stale
        && insp.verdict == Verdict::Stale
    {
        return Err(stale_error(paths, insp));
    }
    let last = acq.last_inspection();
    Err(Error::from(Repr::Busy {
        lock_path: paths.lock.clone(),
        owner: Box::new(last.map(Inspection::owner).unwrap_or_default()),
        reasons: last.map(|i| i.reasons.clone()).unwrap_or_default(),
        guard: acq.blocking_guard().map(ToString::to_string),
    }))
}

/// Inspect the lock of `target` (or a lock file path ending in `.lock`)
/// without changing anything.
///
/// # Errors
/// `NotAFile` for a non-regular file at the lock path; `Io` otherwise.
/// `Ok(None)` when there is no lock file.
pub fn inspect(target_or_lock: impl AsRef<Path>, opts: &LockOptions) -> Result<Option<Inspection>> {
    let p = target_or_lock.as_ref();
    let lock = if p.extension().is_some_and(|e| e == "lock") {
        p.to_owned()
    } else {
        LockPaths::resolve_existing(p)?.lock
    };
    let policy = acquire_policy(opts);
    Ok(inspect::observe(&lock, &policy, &held::held_by_us)?.map(|o| o.inspection))
}
