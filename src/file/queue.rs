//! The lock's wait queue: the kernel's `flock` wait queue on a file next
//! to the lock file, `<lock>.queue`, that exists while blocking contenders
//! queue: the first that finds the lock held makes it, and it goes with
//! its last user ([`remove_if_idle`]; see `docs/protocol.md`, "The queue").
//!
//! The blocking contender next in line holds the queue file's exclusive
//! `flock` (a [`Ticket`]) while it waits for the lock file itself (inotify,
//! on its own thread, so the holder's release wakes it directly), and drops
//! it as soon as it has published its record. The other blocking
//! contenders wait for that `flock` in the kernel, which hands it to one
//! waiter at a time, as a rule in the order they asked (see
//! `docs/protocol.md`, "Order"): a release wakes one
//! contender instead of all of them, and the next one moves up during the
//! hold, not between a release and the next publish.
//!
//! The queue decides who tries next, never who holds: the lock is still
//! the lock file with its witnessed record, published without replacing
//! anything. A contender holding the ticket still publishes, inspects and
//! reclaims as before. Contenders outside the queue (software speaking only
//! the reference's protocol, a `try_acquire`, an async task) may publish
//! first; the one next in line then keeps its place and waits again. So
//! nothing the queue does, or fails to do, can let two holders in; at
//! worst it costs time, bounded by the safety re-check.
//!
//! A blocking `flock` cannot honour a timeout, so a waiting thread never
//! blocks in it itself: a helper thread (`session-lock-queue`, from a small
//! process-wide pool) blocks on the waiter's behalf and hands it the ticket
//! when the kernel grants it; the waiter sleeps on a condition variable
//! with its deadline. A waiter that gives up leaves its place in the queue
//! to the next waiter of the same lock in this process ("adoption"), or,
//! when it is granted with nobody left to take it, the helper drops the
//! `flock` at once.

use crate::sys;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Suffix of the queue file: `<transcript>.lock.queue`.
pub const QUEUE_SUFFIX: &str = ".queue";

/// Helper threads blocked in (or idle for) the queue at most, per process.
/// Waiters beyond that wait the old way (inotify on the lock file).
pub const MAX_QUEUE_THREADS: usize = 64;

/// An idle helper thread exits after this long without work.
const HELPER_IDLE: Duration = Duration::from_secs(10);

/// Spare queue descriptors kept per lock path, and in all: the process's
/// descriptor budget (README, "Descriptors") counts them as idle ones,
/// which `close_idle` gives back.
const SPARES_PER_PATH: usize = 4;
const MAX_SPARES: usize = 32;

/// `<lock>.queue`.
pub(crate) fn queue_path(lock: &Path) -> PathBuf {
    let mut s = lock.as_os_str().to_owned();
    s.push(QUEUE_SUFFIX);
    PathBuf::from(s)
}

fn lock_or_recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One open file description of a lock's queue file. Each waiter and
/// holder uses its own: `flock` locks belong to open file descriptions, so
/// two threads sharing one would both "hold" it.
pub(crate) struct QueueFd {
    file: File,
    lock: PathBuf,
    /// The process that opened it: a forked child's copy shares the
    /// parent's open file description, so its `flock` would be the
    /// parent's too; a child never uses it.
    pid: u32,
    /// The file's identity, to tell whether the queue's name still names
    /// it (see [`QueueFd::still_named`]).
    id: sys::FileId,
}

/// What opening a lock's queue file found.
enum Open {
    Fd(QueueFd),
    /// No queue file, and we were not to make one: nobody waits.
    Absent,
    /// Something we do not use as a queue (see [`usable`]), or an error.
    Unusable,
}

impl QueueFd {
    /// Open the queue file of `lock`; with `create`, make it if missing.
    fn open(lock: &Path, create: bool) -> Open {
        let path = queue_path(lock);
        let file = match sys::open_queue(&path, create) {
            Ok(file) => file,
            Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Open::Absent,
            Err(_) => return Open::Unusable,
        };
        let id = match usable(&file) {
            Ok(id) => id,
            Err(why) => {
                report_bypass(&path, &file, why);
                return Open::Unusable;
            }
        };
        Open::Fd(QueueFd {
            file,
            lock: lock.to_owned(),
            pid: std::process::id(),
            id,
        })
    }

    /// Whether the queue's name still names this file. The queue file goes
    /// with its last user ([`remove_if_idle`]), so whoever takes a queue's
    /// `flock` checks this (one `lstat`) and, if the file was removed in
    /// between, queues again on the file now at the name.
    fn still_named(&self) -> bool {
        std::fs::symlink_metadata(queue_path(&self.lock))
            .is_ok_and(|m| m.file_type().is_file() && sys::file_id(&m) == self.id)
    }
}

/// How long the queue's `flock` may stay held while the lock itself is
/// free before a waiter takes its holder for a squatter (not one of our
/// waiters: ours publish within milliseconds of a release) and bypasses
/// the queue. Long enough for a loaded machine to schedule the legitimate
/// next in line; short against the safety re-check it replaces.
pub(crate) const STALL_BOUND: Duration = Duration::from_millis(250);

/// Whether an open queue file is one we could have made: a regular file
/// of our user, private, with one name and nothing in it (we never write
/// to it). Anything else (a hard link to another file, a planted file) is
/// never `flock`ed (nor removed) by us; waiters bypass it. `Ok`: its
/// identity.
fn usable(file: &File) -> Result<sys::FileId, &'static str> {
    let meta = file.metadata().map_err(|_| "cannot stat it")?;
    if !meta.file_type().is_file() {
        return Err("not a regular file");
    }
    if !sys::owner_uid(&meta).1 {
        return Err("owned by another user");
    }
    let (links, mode) = sys::links_and_mode(&meta);
    if links == 0 {
        return Err("removed");
    }
    if links != 1 {
        return Err("hard-linked (more than one name)");
    }
    if mode & 0o077 != 0 {
        return Err("readable or writable by others");
    }
    if meta.len() != 0 {
        return Err("not empty");
    }
    let id = sys::file_id(&meta);
    let mut bypassed = bypassed();
    let now = Instant::now();
    bypassed.retain(|_, b| now < b.until);
    if bypassed.contains_key(&id) {
        return Err("held by something that is not one of our waiters");
    }
    Ok(id)
}

/// A queue file this process bypasses, until when. The file is kept open
/// meanwhile: its inode then cannot be freed, so no later file can get
/// its inode number (ext4 hands a freed number out again at once) and be
/// taken for it. One descriptor per bypassed file, closed once
/// [`BYPASS_FOR`] has passed (at the next queue file opened or bypassed)
/// or by `close_idle`; bypassed files are rare (a squatter, a stopped
/// waiter).
struct Bypassed {
    until: Instant,
    _file: File,
}

/// A squatted queue file is bypassed this long, then tried again (a
/// stopped waiter of ours that held it may have moved on).
pub(crate) const BYPASS_FOR: Duration = Duration::from_secs(60);

/// Queue files this process bypasses, by identity.
fn bypassed() -> MutexGuard<'static, HashMap<sys::FileId, Bypassed>> {
    static BYPASSED: OnceLock<Mutex<HashMap<sys::FileId, Bypassed>>> = OnceLock::new();
    lock_or_recover(BYPASSED.get_or_init(Default::default))
}

/// Queue files already reported, by identity: one warning per file and
/// process.
fn report_bypass(path: &Path, file: &File, why: &str) {
    static REPORTED: OnceLock<Mutex<std::collections::HashSet<sys::FileId>>> = OnceLock::new();
    let Ok(meta) = file.metadata() else { return };
    let id = sys::file_id(&meta);
    if why == "removed" {
        return;
    }
    if lock_or_recover(REPORTED.get_or_init(Default::default)).insert(id) {
        tracing::warn!(
            queue = %path.display(),
            reason = why,
            "bypassing the lock's wait queue file (waiting on lock-file events instead); remove it if nothing uses it"
        );
    }
}

/// The queue of `lock` stayed held for [`STALL_BOUND`] while the lock
/// was free: whoever holds it is not one of our waiters. This process
/// bypasses that queue file from now on (reported once).
pub(crate) fn bypass(lock: &Path) {
    let path = queue_path(lock);
    let Ok(file) = sys::open_for_inspection(&path) else {
        return;
    };
    spares().remove(lock);
    report_bypass(
        &path,
        &file,
        "its flock is held while the lock is free, by something that is not one of our waiters",
    );
    if let Ok(meta) = file.metadata() {
        let now = Instant::now();
        let mut bypassed = bypassed();
        bypassed.retain(|_, b| now < b.until);
        let until = now + BYPASS_FOR;
        bypassed.insert(sys::file_id(&meta), Bypassed { until, _file: file });
    }
}

/// Spare descriptors (no lock held on them), so that an acquire does not
/// pay an `open` and a `close` of the queue file.
fn spares() -> MutexGuard<'static, HashMap<PathBuf, Vec<QueueFd>>> {
    static SPARES: OnceLock<Mutex<HashMap<PathBuf, Vec<QueueFd>>>> = OnceLock::new();
    lock_or_recover(SPARES.get_or_init(Default::default))
}

fn take_fd(lock: &Path, create: bool) -> Open {
    let spare = spares().get_mut(lock).and_then(Vec::pop);
    // The queue file may have gone with its last user since this
    // descriptor was kept (one of the removed inode would queue alone), or
    // `clean` may have removed it, or someone may have linked it elsewhere
    // since: one `fstat`.
    match spare {
        Some(fd) if fd.pid == std::process::id() && usable(&fd.file).is_ok() => Open::Fd(fd),
        _ => QueueFd::open(lock, create),
    }
}

/// Keep an unlocked descriptor for a later acquire (or close it).
fn put_back(fd: QueueFd) {
    let mut spares = spares();
    if spares.values().map(Vec::len).sum::<usize>() >= MAX_SPARES {
        // Full: the least recently touched paths are not tracked; drop
        // the lot rather than let the cache grow with the paths touched.
        spares.clear();
    }
    let v = spares.entry(fd.lock.clone()).or_default();
    if v.len() < SPARES_PER_PATH {
        v.push(fd);
    }
}

/// Close every spare queue descriptor, and those kept open for bypassed
/// queue files (see `close_idle`; a bypass ends with them). Returns how
/// many.
pub(crate) fn close_spares() -> usize {
    let bypassed = std::mem::take(&mut *bypassed()).len();
    spares().drain().map(|(_, v)| v.len()).sum::<usize>() + bypassed
}

/// The queue's `flock`, held. Dropping it drops the `flock` (the kernel
/// wakes the next waiter) and keeps the descriptor as a spare.
pub(crate) struct Ticket {
    fd: Option<QueueFd>,
}

impl Ticket {
    fn new(fd: QueueFd) -> Ticket {
        Ticket { fd: Some(fd) }
    }

    /// Leave the queue without taking the lock (a waiter that gives up,
    /// a grant nobody wants): drop the `flock`, and remove the queue file
    /// if nobody else queues (see [`remove_if_idle`]). A ticket dropped
    /// after its holder published keeps the file for its release.
    pub(crate) fn give_up(mut self) {
        let Some(fd) = self.fd.take() else { return };
        let lock = fd.lock.clone();
        drop(fd);
        remove_if_idle(&lock);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take()
            && sys::flock_unlock(&fd.file).is_ok()
        {
            put_back(fd);
        }
    }
}

/// What [`try_queue`] found.
pub(crate) enum TryQueue {
    /// We hold the queue's `flock`.
    Taken(Ticket),
    /// Someone holds it: join the queue with this descriptor.
    Busy(QueueFd),
    /// No queue file, and we were not to make one: nobody is queued.
    Absent,
    /// No queue here (no `flock`, no permission, not a regular file).
    Unavailable,
}

/// How often [`try_queue`] opens again after finding that the file it
/// locked was removed meanwhile (each time, its last user left between
/// our `open` and our `flock`); then it gives the queue up.
const REOPENS: usize = 8;

/// Take the queue's `flock` without blocking; with `create`, make the
/// queue file if missing (a contender that found the lock held), else
/// report it [`TryQueue::Absent`] (a first look: nobody to queue behind).
pub(crate) fn try_queue(lock: &Path, create: bool) -> TryQueue {
    for _ in 0..REOPENS {
        let fd = match take_fd(lock, create) {
            Open::Fd(fd) => fd,
            Open::Absent => return TryQueue::Absent,
            Open::Unusable => return TryQueue::Unavailable,
        };
        match sys::flock_try(&fd.file, true) {
            Ok(true) if fd.still_named() => return TryQueue::Taken(Ticket::new(fd)),
            // Removed by its last user between our open and our flock:
            // closing drops the flock; open the file at the name now.
            Ok(true) => drop(fd),
            Ok(false) => return TryQueue::Busy(fd),
            Err(_) => return TryQueue::Unavailable,
        }
    }
    TryQueue::Unavailable
}

/// The queue file goes with its last user: when a hold ends or a waiter
/// gives up, the queue's `flock` taken at once means that nobody is next
/// in line and nobody waits for it in the kernel (a waiter there would
/// have been granted it). Then the name is removed, if it still names the
/// file we locked; the `flock` is held across the check and the unlink,
/// so no other remover can be in between. A contender that opened the
/// file just before takes its `flock` later, finds the name gone or naming
/// another file ([`QueueFd::still_named`]) and opens again. Only a file
/// [`usable`] as our queue is ever removed.
pub(crate) fn remove_if_idle(lock: &Path) {
    let fd = match take_fd(lock, false) {
        Open::Fd(fd) => fd,
        Open::Absent | Open::Unusable => return,
    };
    if !matches!(sys::flock_try(&fd.file, true), Ok(true)) {
        put_back(fd);
        return;
    }
    if fd.still_named()
        && let Err(e) = std::fs::remove_file(queue_path(lock))
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::debug!(lock_path = %lock.display(), error = %e, "could not remove the idle lock queue file");
    }
    // Spare descriptors of the removed file are of no use any more;
    // closing ours drops the flock.
    spares().remove(lock);
    drop(fd);
}

/// Take the queue's `flock` if it is free; never joins the queue.
#[cfg(test)]
fn try_take(lock: &Path) -> Option<Ticket> {
    match try_queue(lock, true) {
        TryQueue::Taken(t) => Some(t),
        TryQueue::Busy(fd) => {
            put_back(fd);
            None
        }
        TryQueue::Absent | TryQueue::Unavailable => None,
    }
}

/// Hand a descriptor that was not used back.
pub(crate) fn release_fd(fd: QueueFd) {
    put_back(fd);
}

// ---------------------------------------------------------------------------
// Waiting in the queue
// ---------------------------------------------------------------------------

#[derive(Default)]
struct PlaceState {
    /// Granted: the descriptor whose `flock` the kernel gave us.
    granted: Option<QueueFd>,
    /// The helper's `flock` failed: wait without the queue.
    failed: bool,
    /// The waiter left; the place may be adopted by another waiter.
    abandoned: bool,
    /// Finished: the ticket was taken, or dropped by the helper.
    done: bool,
}

/// One place in the kernel's queue, waited for by a helper thread.
#[derive(Default)]
struct Place {
    st: Mutex<PlaceState>,
    cv: Condvar,
}

/// Abandoned places still waiting in the kernel, by lock path.
fn abandoned() -> MutexGuard<'static, HashMap<PathBuf, Vec<Arc<Place>>>> {
    static ABANDONED: OnceLock<Mutex<HashMap<PathBuf, Vec<Arc<Place>>>>> = OnceLock::new();
    lock_or_recover(ABANDONED.get_or_init(Default::default))
}

fn forget_abandoned(lock: &Path, place: &Arc<Place>) {
    let mut map = abandoned();
    if let Some(v) = map.get_mut(lock) {
        v.retain(|s| !Arc::ptr_eq(s, place));
        if v.is_empty() {
            map.remove(lock);
        }
    }
}

/// Take over an abandoned place of this lock, if one is still waiting.
fn adopt(lock: &Path) -> Option<Arc<Place>> {
    let mut map = abandoned();
    let v = map.get_mut(lock)?;
    let mut found = None;
    while let Some(place) = v.pop() {
        let mut st = lock_or_recover(&place.st);
        if !st.done && !st.failed {
            st.abandoned = false;
            drop(st);
            found = Some(place);
            break;
        }
    }
    if v.is_empty() {
        map.remove(lock);
    }
    found
}

/// How a wait in the queue ended.
pub(crate) enum Outcome {
    /// The kernel granted the queue's `flock`: we are next.
    Granted(Ticket),
    /// The kernel granted the `flock` of a queue file its last user had
    /// removed meanwhile (see [`remove_if_idle`]): queue again, on the
    /// file now at the name.
    Moved,
    /// Still waiting at `until`.
    Pending,
    /// The queue failed (the helper's `flock` returned an error).
    Failed,
}

/// A waiter's place in the queue. Dropping it gives the place up.
pub(crate) struct Waiting {
    place: Arc<Place>,
    lock: PathBuf,
}

impl Waiting {
    /// Join the queue with `fd` (whose `flock` was busy), or adopt a place
    /// a waiter of this process gave up. `None`: no helper thread could be
    /// had (see [`MAX_QUEUE_THREADS`]); wait without the queue.
    pub(crate) fn join(fd: QueueFd) -> Option<Waiting> {
        let lock = fd.lock.clone();
        if let Some(place) = adopt(&lock) {
            put_back(fd);
            return Some(Waiting { place, lock });
        }
        let place = Arc::new(Place::default());
        match pool().submit(fd, place.clone()) {
            Ok(()) => Some(Waiting { place, lock }),
            Err(fd) => {
                put_back(fd);
                None
            }
        }
    }

    /// Sleep until the kernel grants our place, the queue fails, or `until`.
    pub(crate) fn wait(&self, until: Instant) -> Outcome {
        let mut st = lock_or_recover(&self.place.st);
        loop {
            if let Some(fd) = st.granted.take() {
                st.done = true;
                if !fd.still_named() {
                    return Outcome::Moved;
                }
                return Outcome::Granted(Ticket::new(fd));
            }
            if st.failed {
                return Outcome::Failed;
            }
            let now = Instant::now();
            if now >= until {
                return Outcome::Pending;
            }
            st = self
                .place
                .cv
                .wait_timeout(st, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // Same order as `adopt`: the map, then the place.
        let mut map = abandoned();
        let mut st = lock_or_recover(&self.place.st);
        if st.done || st.failed {
            return;
        }
        if let Some(fd) = st.granted.take() {
            // Granted after our last look: pass it on at once.
            st.done = true;
            drop(st);
            drop(map);
            Ticket::new(fd).give_up();
            return;
        }
        st.abandoned = true;
        drop(st);
        map.entry(self.lock.clone())
            .or_default()
            .push(self.place.clone());
    }
}

/// The helper's side: the kernel answered our place's `flock`.
fn deliver(fd: QueueFd, place: &Arc<Place>, result: io::Result<()>) {
    let mut st = lock_or_recover(&place.st);
    let lock = fd.lock.clone();
    let abandoned = st.abandoned;
    match result {
        Ok(()) if !abandoned => {
            st.granted = Some(fd);
            place.cv.notify_all();
            return;
        }
        Ok(()) => {
            // Nobody wants it any more: hand it on to the next in the kernel.
            st.done = true;
            drop(st);
            Ticket::new(fd).give_up();
        }
        Err(e) => {
            tracing::debug!(lock_path = %lock.display(), error = %e, "waiting in the lock queue failed; waiting without it");
            st.failed = true;
            place.cv.notify_all();
            drop(st);
        }
    }
    if abandoned {
        forget_abandoned(&lock, place);
    }
}

// ---------------------------------------------------------------------------
// Helper threads
// ---------------------------------------------------------------------------

type Job = (QueueFd, Arc<Place>);

#[derive(Default)]
struct PoolState {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
    /// The process these counts are of: a child forked from it has none of
    /// its helper threads (fork copies only the calling thread), so its
    /// first job starts the pool afresh.
    pid: u32,
}

#[derive(Default)]
struct Pool {
    st: Mutex<PoolState>,
    cv: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::default)
}

impl Pool {
    /// Give the job to an idle helper, or start one. `Err`: the limit.
    fn submit(&'static self, fd: QueueFd, place: Arc<Place>) -> Result<(), QueueFd> {
        let mut st = lock_or_recover(&self.st);
        let pid = std::process::id();
        if st.pid != pid {
            // The parent's jobs are its waiters'; dropping our copies of
            // their descriptors leaves their flocks alone.
            *st = PoolState {
                pid,
                ..PoolState::default()
            };
        }
        if st.idle > st.jobs.len() {
            st.jobs.push_back((fd, place));
            drop(st);
            self.cv.notify_one();
            return Ok(());
        }
        if st.threads >= MAX_QUEUE_THREADS {
            return Err(fd);
        }
        st.threads += 1;
        drop(st);
        // The job travels with the thread; if the spawn fails it comes back.
        let job = Arc::new(Mutex::new(Some((fd, place))));
        let theirs = job.clone();
        let spawned = std::thread::Builder::new()
            .name("session-lock-queue".into())
            .spawn(move || {
                if let Some(job) = lock_or_recover(&theirs).take() {
                    run(job);
                }
                self.helper_loop();
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "could not start a lock queue thread");
                lock_or_recover(&self.st).threads -= 1;
                match lock_or_recover(&job).take() {
                    Some((fd, _)) => Err(fd),
                    None => Ok(()),
                }
            }
        }
    }

    fn helper_loop(&self) {
        loop {
            let mut st = lock_or_recover(&self.st);
            st.idle += 1;
            let job = loop {
                if let Some(job) = st.jobs.pop_front() {
                    break Some(job);
                }
                let (next, timeout) = self
                    .cv
                    .wait_timeout(st, HELPER_IDLE)
                    .unwrap_or_else(|p| p.into_inner());
                st = next;
                if timeout.timed_out() && st.jobs.is_empty() {
                    break None;
                }
            };
            st.idle -= 1;
            let Some(job) = job else {
                st.threads -= 1;
                return;
            };
            drop(st);
            run(job);
        }
    }
}

fn run((fd, place): Job) {
    let result = sys::flock_blocking(&fd.file);
    deliver(fd, &place, result);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_in(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("s.jsonl.lock")
    }

    /// A squatted queue file is bypassed for a while; once it is gone, a
    /// new queue file is a new file, even where the filesystem would hand
    /// out the freed inode number again at once (ext4; this test pins the
    /// bug only on such a filesystem, as CI's `/tmp` is): the bypass
    /// keeps the bypassed file open, so its number is not free, and
    /// contenders queue on the new file. (Seen in CI: a queue bypassed by
    /// one test made a fresh queue of another test, on the same inode
    /// number, unusable; its waiter never queued.)
    #[test]
    fn a_new_queue_file_after_a_bypassed_one_is_not_bypassed() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let squatted = dir.path().join("a.jsonl.lock");
        let TryQueue::Taken(t) = try_queue(&squatted, true) else {
            panic!("a fresh queue is free");
        };
        drop(t);
        bypass(&squatted);
        assert!(
            matches!(try_queue(&squatted, false), TryQueue::Unavailable),
            "the squatted file is bypassed"
        );
        let ino = std::fs::metadata(queue_path(&squatted)).unwrap().ino();
        std::fs::remove_file(queue_path(&squatted)).unwrap();
        // Without the open file, the first of these reuses the number.
        for i in 0..16 {
            let lock = dir.path().join(format!("b{i}.jsonl.lock"));
            let tried = try_queue(&lock, true);
            let new = std::fs::metadata(queue_path(&lock)).unwrap().ino();
            assert!(
                matches!(tried, TryQueue::Taken(_)),
                "new queue file {i} (inode {new}, the bypassed one's was {ino}) is bypassed"
            );
            assert_ne!(new, ino, "the bypassed file's inode number was freed");
            drop(tried);
            std::fs::remove_file(queue_path(&lock)).unwrap();
        }
    }

    #[test]
    fn the_queue_file_is_made_only_when_asked_private_and_goes_when_idle() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_in(&dir);
        assert!(matches!(try_queue(&lock, false), TryQueue::Absent));
        assert!(!queue_path(&lock).exists(), "made without `create`");
        let TryQueue::Taken(t) = try_queue(&lock, true) else {
            panic!("a fresh queue is free");
        };
        let meta = std::fs::metadata(queue_path(&lock)).unwrap();
        assert!(meta.is_file());
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
        // Held by a ticket: kept.
        remove_if_idle(&lock);
        assert!(queue_path(&lock).exists(), "removed while someone queues");
        // A ticket dropped after a publish keeps it for the release.
        drop(t);
        assert!(queue_path(&lock).exists(), "removed when its ticket ended");
        remove_if_idle(&lock);
        assert!(!queue_path(&lock).exists(), "kept with nobody queued");
        // A ticket given up removes it.
        let TryQueue::Taken(t) = try_queue(&lock, true) else {
            panic!("a fresh queue is free");
        };
        t.give_up();
        assert!(!queue_path(&lock).exists(), "kept after the last gave up");
    }

    #[test]
    fn a_waiter_granted_a_removed_queue_file_is_told_to_queue_again() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_in(&dir);
        let TryQueue::Taken(first) = try_queue(&lock, true) else {
            panic!("a fresh queue is free");
        };
        let TryQueue::Busy(fd) = try_queue(&lock, true) else {
            panic!("held by `first`");
        };
        let waiting = Waiting::join(fd).expect("a helper thread");
        // Its last user (here: by hand) removes it while `first` holds it.
        std::fs::remove_file(queue_path(&lock)).unwrap();
        drop(first);
        match waiting.wait(Instant::now() + Duration::from_secs(10)) {
            Outcome::Moved => {}
            Outcome::Granted(_) => panic!("granted a queue file nobody else can find"),
            Outcome::Pending => panic!("not answered within 10 s of the release"),
            Outcome::Failed => panic!("the queue failed"),
        }
        // The file at the name now is a new one, free.
        assert!(try_take(&lock).is_some());
    }

    #[test]
    fn a_held_queue_is_busy_and_granted_after_the_drop() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_in(&dir);
        let TryQueue::Taken(first) = try_queue(&lock, true) else {
            panic!("a fresh queue is free");
        };
        assert!(try_take(&lock).is_none(), "held by `first`");
        let TryQueue::Busy(fd) = try_queue(&lock, true) else {
            panic!("held by `first`");
        };
        let waiting = Waiting::join(fd).expect("a helper thread");
        assert!(matches!(
            waiting.wait(Instant::now() + Duration::from_millis(1)),
            Outcome::Pending
        ));
        drop(first);
        match waiting.wait(Instant::now() + Duration::from_secs(10)) {
            Outcome::Granted(t) => drop(t),
            Outcome::Pending => panic!("not granted within 10 s of the release"),
            Outcome::Failed | Outcome::Moved => panic!("the queue failed"),
        }
        assert!(try_take(&lock).is_some(), "the ticket was dropped");
    }

    #[test]
    fn an_abandoned_place_is_adopted_or_passed_on() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_in(&dir);
        let TryQueue::Taken(first) = try_queue(&lock, true) else {
            panic!("a fresh queue is free");
        };
        let TryQueue::Busy(fd) = try_queue(&lock, true) else {
            panic!("held by `first`");
        };
        let gave_up = Waiting::join(fd).expect("a helper thread");
        let place = gave_up.place.clone();
        drop(gave_up);
        // The next waiter of this process takes the abandoned place.
        let TryQueue::Busy(fd) = try_queue(&lock, true) else {
            panic!("held by `first`");
        };
        let adopter = Waiting::join(fd).expect("adopted");
        assert!(
            Arc::ptr_eq(&adopter.place, &place),
            "the abandoned place was not adopted"
        );
        drop(place);
        drop(first);
        match adopter.wait(Instant::now() + Duration::from_secs(10)) {
            Outcome::Granted(t) => drop(t),
            _ => panic!("the adopted place was not granted within 10 s"),
        }
        // Abandoned with nobody to adopt it: the helper passes it on.
        let TryQueue::Taken(second) = try_queue(&lock, true) else {
            panic!("free again");
        };
        let TryQueue::Busy(fd) = try_queue(&lock, true) else {
            panic!("held by `second`");
        };
        drop(Waiting::join(fd).expect("a helper thread"));
        drop(second);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(t) = try_take(&lock) {
                drop(t);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "an abandoned grant still holds the queue after 10 s"
            );
            std::thread::yield_now();
        }
    }
}
