//! Acquire, reclaim and release: the protocol of `docs/protocol.md`.
//!
//! This module has the path normalisation ([`LockPaths`]), the acquire loop
//! shared by the blocking and async APIs (one step: publish, or inspect and
//! reclaim a dead owner's file race-free, or wait) and the public entry
//! points. Publishing is in `publish`, waiting in `wait`, holds, release and
//! the guard in `held`.

pub(crate) mod held;
pub(crate) mod publish;
pub(crate) mod queue;
pub(crate) mod slot;
pub(crate) mod wait;

use crate::error::{Error, Repr, Result};
use crate::inspect::{self, Inspection, Policy, Verdict};
use crate::options::LockOptions;
use crate::sys::{self, FileId};
use held::LockGuard;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The transcript path and its lock path, normalised: the parent directory
/// resolved with `realpath` (created if missing), the file name kept as
/// given, so a symlinked directory shares one lock and a symlinked file
/// does not (as in the reference).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockPaths {
    /// The normalised transcript path.
    pub target: PathBuf,
    /// `<target>.lock`.
    pub lock: PathBuf,
    /// The resolved parent directory.
    pub dir: PathBuf,
}

impl LockPaths {
    /// Normalise `target`, creating its parent directory if missing.
    ///
    /// # Errors
    /// `Io` if the path has no file name or the directory cannot be created.
    pub fn resolve(target: impl AsRef<Path>) -> Result<LockPaths> {
        Self::resolve_inner(target.as_ref(), true)
    }

    /// Normalise `target` without creating anything.
    ///
    /// # Errors
    /// `Io` if the path has no file name.
    pub fn resolve_existing(target: impl AsRef<Path>) -> Result<LockPaths> {
        Self::resolve_inner(target.as_ref(), false)
    }

    fn resolve_inner(target: &Path, create: bool) -> Result<LockPaths> {
        let abs = if target.is_absolute() {
            target.to_owned()
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io("resolve current directory for", target, e))?
                .join(target)
        };
        // "dir/" names a directory, not a transcript in it: its lock would
        // land beside the directory, outside it.
        let trailing_slash = target
            .as_os_str()
            .as_encoded_bytes()
            .last()
            .is_some_and(|&b| std::path::is_separator(char::from(b)));
        let name = match abs.file_name() {
            Some(n) if n != ".." && n != "." && !trailing_slash => n.to_owned(),
            _ => {
                return Err(Error::io(
                    "resolve",
                    target,
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "the transcript path must name a file",
                    ),
                ));
            }
        };
        let parent = abs.parent().unwrap_or(Path::new("/"));
        let dir = if create && canonical_dir_cache(parent, false) {
            // Known canonical (no symlink on the way): no mkdir, no realpath.
            // If it has vanished since, publishing recreates it.
            parent.to_owned()
        } else {
            if create {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io("create directory", parent, e))?;
            }
            // realpath only the directory; fall back to the absolute path.
            let dir = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_owned());
            if create && dir == parent {
                canonical_dir_cache(parent, true);
            }
            dir
        };
        let target = dir.join(&name);
        let mut lock_name = name;
        lock_name.push(".lock");
        Ok(LockPaths {
            lock: dir.join(lock_name),
            target,
            dir,
        })
    }
}

/// Directories seen to be their own realpath (absolute, no symlink, no
/// `.`/`..`). Looking one up is safe to skip `create_dir_all` and
/// `canonicalize` on every acquire: such a path can only change meaning if
/// a component is later replaced by a symlink, which cooperating processes
/// do not do. `insert` adds `dir`; otherwise answers whether it is known.
fn canonical_dir_cache(dir: &Path, insert: bool) -> bool {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<PathBuf>>> =
        std::sync::OnceLock::new();
    let mut set = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if insert {
        if set.len() >= 4096 {
            set.clear();
        }
        set.insert(dir.to_owned())
    } else {
        set.contains(dir)
    }
}

pub(crate) fn acquire_policy(opts: &LockOptions) -> Policy {
    Policy {
        stale: opts.stale,
        orphan_grace: opts.orphan_grace,
        respect_max_hold: true,
        reclaim_self_without_starttime: true,
    }
}

/// Outcome of a reclaim attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reclaim {
    /// We removed the stale file.
    Removed,
    /// The path no longer names the inspected file; nothing removed.
    Changed,
    /// Someone else holds the stale inode's lock right now (another
    /// reclaimer or an inspector); try again shortly.
    Busy,
    /// A live reclaim guard (`<lock>.reclaim`) of another reclaimer exists:
    /// nothing removed; look again after [`GUARD_RECHECK`].
    Guarded,
}

/// Suffix of the reclaim guard, the directory the reference's lock engine
/// creates with `mkdir` next to the lock file while it re-checks and deletes
/// a stale lock (see `docs/reclaim.md`, "Next to the reference").
pub(crate) const RECLAIM_GUARD_SUFFIX: &str = ".reclaim";

/// A reclaim guard whose mtime is older than this is abandoned (its
/// reclaimer died between `mkdir` and `rmdir`) and may be removed. A live
/// guard lives for a re-read, a policy callback and an unlink: milliseconds
/// (the reference's slowest callback, a PowerShell argv read on Windows,
/// takes about a second). 30 s leaves a wide margin for a paused event loop
/// and still unwedges the directory without a human.
pub const RECLAIM_GUARD_ABANDONED: Duration = Duration::from_secs(30);

/// While another reclaimer's guard is live, look again this often (guards
/// live for milliseconds; an abandoned one for [`RECLAIM_GUARD_ABANDONED`]).
pub(crate) const GUARD_RECHECK: Duration = Duration::from_millis(10);

/// `<lock>.reclaim`.
pub(crate) fn reclaim_guard_path(lock: &Path) -> PathBuf {
    let mut s = lock.as_os_str().to_owned();
    s.push(RECLAIM_GUARD_SUFFIX);
    PathBuf::from(s)
}

/// A reclaim guard we created; dropping it removes it if the path still
/// names the directory we made.
struct ReclaimGuard {
    path: PathBuf,
    id: FileId,
}

impl Drop for ReclaimGuard {
    fn drop(&mut self) {
        crate::fault::hit("reclaim.before_guard_rmdir");
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| sys::file_id(&m) == self.id)
            && let Err(e) = std::fs::remove_dir(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(guard = %self.path.display(), error = %e, "could not remove our reclaim guard");
        }
    }
}

/// Take the reclaim guard of `lock` the way the reference does (`mkdir`),
/// removing an abandoned one first. `Ok(None)`: another reclaimer's guard
/// is live. Callers hold the stale inode's exclusive flock, so our own
/// reclaimers never break each other's guards; a guard is broken only when
/// older than [`RECLAIM_GUARD_ABANDONED`].
fn take_reclaim_guard(lock: &Path) -> Result<Option<ReclaimGuard>> {
    let path = reclaim_guard_path(lock);
    for _ in 0..3 {
        match std::fs::DirBuilder::new().mode_private().create(&path) {
            Ok(()) => {
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|e| Error::io("stat reclaim guard", &path, e))?;
                return Ok(Some(ReclaimGuard {
                    id: sys::file_id(&meta),
                    path,
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create reclaim guard", &path, e)),
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("stat reclaim guard", &path, e)),
        };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .unwrap_or_default();
        if age < RECLAIM_GUARD_ABANDONED {
            return Ok(None);
        }
        // Abandoned. A directory is removed only if empty; a file or
        // symlink there (not the reference's, but no one else's guard
        // either) is unlinked without being followed.
        let removed = if meta.is_dir() {
            std::fs::remove_dir(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => tracing::warn!(
                guard = %path.display(),
                age_s = age.as_secs(),
                "removed an abandoned reclaim guard"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Not empty, or not ours to remove: treat it as live.
            Err(_) => return Ok(None),
        }
    }
    Ok(None)
}

/// `DirBuilder` with mode 0700 where the platform has modes.
trait PrivateDir {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateDir for std::fs::DirBuilder {
    fn mode_private(&mut self) -> &mut Self {
        sys::dir_builder_private(self);
        self
    }
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
    let Some(guard) = take_reclaim_guard(path)? else {
        return Ok(Reclaim::Guarded);
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
    Acquired(LockGuard),
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
    // Counted only for the tests: no counters on the production path.
    if !cfg!(feature = "fault-injection") {
        return;
    }
    WAKES.with(|w| {
        let (e, t) = w.get();
        w.set((e + u64::from(by_event), t + u64::from(!by_event && recheck)));
    });
    #[cfg(feature = "fault-injection")]
    {
        use std::sync::atomic::Ordering::Relaxed;
        WAKES_ALL[0].fetch_add(u64::from(by_event), Relaxed);
        WAKES_ALL[1].fetch_add(u64::from(!by_event && recheck), Relaxed);
    }
}

/// [`WAKES`] of every thread of the process: an async waiter's wake-ups
/// are counted on whichever runtime worker polled it.
#[cfg(feature = "fault-injection")]
pub(crate) static WAKES_ALL: [std::sync::atomic::AtomicU64; 2] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 2];

/// The state of one acquire call across its attempts.
pub(crate) struct Acquirer<'a> {
    paths: &'a LockPaths,
    opts: &'a LockOptions,
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
    /// The last step found a reclaimable lock under another reclaimer's
    /// live guard (the lock as judged then).
    guarded: Option<Box<Inspection>>,
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
}

impl<'a> Acquirer<'a> {
    pub(crate) fn new(paths: &'a LockPaths, opts: &'a LockOptions) -> Self {
        Acquirer {
            paths,
            opts,
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
            queue_use: if opts.fail_on_stale || opts.from_async {
                QueueUse::Off
            } else {
                QueueUse::Wait
            },
            ticket: None,
            busy: None,
            queued: None,
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
        if self.last_inspection().is_none() {
            let policy = acquire_policy(self.opts);
            if let Ok(Some(o)) = inspect::observe(&self.paths.lock, &policy, &held::held_by_us) {
                self.last = Some((o.inspection.id, Box::new(o.inspection)));
            }
        }
        timeout_error(self.paths, self.opts, self.last_inspection())
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
        self.last
            .as_ref()
            .map(|(_, i)| &**i)
            .or(self.guarded.as_deref())
    }

    /// How long to sleep after [`Step::Backoff`]: another reclaimer of ours
    /// needs microseconds; a live reclaim guard (see [`Reclaim::Guarded`])
    /// is looked at again every [`GUARD_RECHECK`].
    pub(crate) fn backoff_delay(&self) -> Duration {
        if self.guarded.is_some() {
            GUARD_RECHECK
        } else {
            RECLAIM_BACKOFF
        }
    }

    /// The last step backed off because of another reclaimer's guard.
    pub(crate) fn guarded(&self) -> bool {
        self.guarded.is_some()
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
        match queue::try_queue(&self.paths.lock) {
            queue::TryQueue::Taken(ticket) => {
                self.ticket = Some(ticket);
                None
            }
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
        let woken = std::mem::take(&mut self.woken_by_event);
        // Someone is next in line already: queue up behind them without
        // looking (no barging past a waiter: the longest wait stays
        // bounded by the queue's order, see docs/performance.md).
        if let Some(step) = self.queue_up() {
            return Ok(step);
        }
        if !self.look_first || !self.lock_exists(woken)? {
            match publish::publish(self.paths, self.opts, self.prepared.take())? {
                publish::Published::Held(held) => {
                    // Next in line no more: the kernel hands the queue on
                    // now, and the next contender watches the lock while we
                    // hold it.
                    self.ticket = None;
                    return Ok(Step::Acquired(LockGuard::new(held)));
                }
                publish::Published::Exists(prepared) => {
                    self.prepared = prepared;
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
                    Reclaim::Removed | Reclaim::Changed => Step::Retry,
                    Reclaim::Busy => Step::Backoff,
                    Reclaim::Guarded => {
                        self.guarded = Some(Box::new(judged));
                        Step::Backoff
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
    /// then, the instant at which the caller must wake up to run it.
    pub(crate) fn wait_hook(&mut self, now: Instant) -> Option<Instant> {
        let hook = self.opts.on_wait.as_ref().filter(|_| !self.hooked)?;
        let at = self.started.checked_add(hook.after)?;
        if now < at {
            return Some(at);
        }
        if let Some(insp) = self.last_inspection() {
            (hook.call)(insp);
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
            return Err(timeout_error(self.paths, self.opts, self.last_inspection()));
        }
        Ok(())
    }
}

pub(crate) fn timeout_error(
    paths: &LockPaths,
    opts: &LockOptions,
    last: Option<&Inspection>,
) -> Error {
    Error::from(Repr::Timeout {
        lock_path: paths.lock.clone(),
        timeout: opts.timeout.unwrap_or(Duration::MAX),
        owner: Box::new(last.map(Inspection::owner).unwrap_or_default()),
        reasons: last.map(|i| i.reasons.clone()).unwrap_or_default(),
    })
}

pub(crate) fn stale_error(paths: &LockPaths, insp: &Inspection) -> Error {
    Error::from(Repr::Stale {
        lock_path: paths.lock.clone(),
        owner: Box::new(insp.owner()),
        reasons: insp.reasons.clone(),
    })
}

/// Acquire the lock on `target` with the default options (timeout 60 s).
///
/// # Errors
/// `Timeout` (naming the owner) if the lock stayed held, `WouldDeadlock`
/// if this thread already holds it, `NotAFile` if something other than a
/// regular file sits at the lock path, `Io`/`PermissionDenied` otherwise.
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
/// As [`acquire`]; `Stale` when [`LockOptions::fail_on_stale`] is set and
/// the live holder is past its stale threshold or max hold.
///
/// # Examples
/// ```
/// use session_lock::{acquire_with, LockOptions};
/// use std::time::Duration;
/// let dir = tempfile::tempdir()?;
/// let opts = LockOptions::new().timeout(Duration::from_secs(5)).label("example");
/// let guard = acquire_with(dir.path().join("s.jsonl"), &opts)?;
/// assert_eq!(guard.record().label.as_deref(), Some("example"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn acquire_with(target: impl AsRef<Path>, opts: &LockOptions) -> Result<LockGuard> {
    #[cfg(feature = "etcd")]
    if let crate::Backend::Etcd(cfg) = &opts.backend {
        return crate::etcd::acquire_blocking(target.as_ref(), cfg, opts, false);
    }
    let paths = LockPaths::resolve(target)?;
    held::check_deadlock(&paths)?;
    let deadline = opts.timeout.and_then(|t| Instant::now().checked_add(t));
    let mut acq = Acquirer::new(&paths, opts);
    let mut watch: Option<wait::BlockingWatch> = None;
    loop {
        if let Some(w) = watch.as_mut() {
            // Before the look, so that no event after it is missed.
            w.arm();
        }
        match acq.step()? {
            Step::Acquired(guard) => return Ok(guard),
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
                let hooked = acq.hooked;
                let recheck = acq.wait_hook(now).map_or(recheck, |h| h.min(recheck));
                if acq.hooked && !hooked {
                    // The hook ran on this thread and may have waited for a
                    // lock itself, moving or removing this thread's watch
                    // and reading its events: arm and look again first.
                    continue;
                }
                let until = deadline.map_or(recheck, |d| d.min(recheck));
                acq.woken_by_event = w.wait(until);
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
    if !acq.join_queue() {
        // No queue after all: the next step waits the old way.
        return Ok(());
    }
    // The attempt after the grant only has to link it.
    acq.prepare()?;
    let recheck = now + wait::SAFETY_RECHECK;
    // Waking for the `on_wait` hook makes the next step look at the lock,
    // so the hook then has the holder to show.
    let recheck = acq.wait_hook(now).map_or(recheck, |h| h.min(recheck));
    let until = deadline.map_or(recheck, |d| d.min(recheck));
    let granted = acq.wait_in_queue(until);
    count_wake(granted, deadline.is_none_or(|d| recheck < d));
    if granted {
        *watch = Some(wait::BlockingWatch::new(paths));
    }
    Ok(())
}

/// Try once, never blocking.
///
/// # Errors
/// `Busy` (with the owner and any report-only reasons) if someone holds the
/// lock; every other kind is a real failure, never contention.
///
/// # Examples
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("s.jsonl");
/// let first = session_lock::try_acquire(&path, &Default::default())?;
/// // Another thread finds it busy and learns who holds it.
/// let p = path.clone();
/// let err = std::thread::spawn(move || session_lock::try_acquire(&p, &Default::default()).unwrap_err())
///     .join().unwrap();
/// assert_eq!(err.kind(), session_lock::ErrorKind::Busy);
/// assert_eq!(err.owner().and_then(|o| o.pid), Some(std::process::id()));
/// drop(first);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn try_acquire(target: impl AsRef<Path>, opts: &LockOptions) -> Result<LockGuard> {
    #[cfg(feature = "etcd")]
    if let crate::Backend::Etcd(cfg) = &opts.backend {
        return crate::etcd::acquire_blocking(target.as_ref(), cfg, opts, true);
    }
    let paths = LockPaths::resolve(target)?;
    held::check_deadlock(&paths)?;
    try_once(&paths, opts)
}

/// The body of `try_acquire`, shared with the async front door.
pub(crate) fn try_once(paths: &LockPaths, opts: &LockOptions) -> Result<LockGuard> {
    // A few immediate retries cover "vanished" and "reclaimed" races; each
    // one means someone made progress.
    let mut acq = Acquirer::new(paths, opts).opportunistic();
    for _ in 0..16 {
        match acq.step()? {
            Step::Acquired(guard) => return Ok(guard),
            Step::Retry => continue,
            // Another reclaimer's guard: someone is reclaiming right now.
            Step::Backoff if acq.guarded() => break,
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
