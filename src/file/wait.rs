//! Waiting without polling: inotify directory watches filtered by lock file
//! name, so that waiters on other lock files in the same directory are not
//! woken.
//!
//! A waiter registers interest in its lock file (a watch on the directory,
//! filtered by name) *before* it looks at the lock, and after finding the
//! lock held sleeps until an event on that name (the lock file unlinked or
//! renamed away, or a descriptor open for writing on it closed while it is
//! still linked, which is what the kernel does when a holder dies) or its
//! deadline passes. A lock file appearing (`IN_CREATE`, `IN_MOVED_TO`) wakes
//! nobody. Because the registration comes before the look, an event between
//! the look and the sleep is never lost. The kernel side (inotify on Linux)
//! is `sys::DirEvents`; a platform without it answers `Unsupported` there
//! and its waiters use the fallback below.
//!
//! Two ways in:
//!
//! * Blocking waiters on up to `MAX_LOCAL_INSTANCES` (8) threads per
//!   process use an inotify instance of their own thread, kept across waits
//!   in a thread-local until the thread exits and polled by the waiting
//!   thread itself (`ppoll`), so the kernel wakes the waiter directly (one
//!   thread hop less on every handoff). They drain the queue before each
//!   look. The thread's watch on the lock's directory is removed while it
//!   waits in the lock's queue (`unwatch_while_queued`) and made again
//!   before its first look once it is next in line.
//! * Async waiters, and blocking ones on further threads (or when a
//!   thread-local instance cannot be had), share one process-wide hub: one
//!   instance read by one thread, with a generation counter per lock file
//!   name that a waiter reads before it looks and sleeps until it moves.
//!   The default `fs.inotify.max_user_instances` is 128 per user, so an
//!   instance per waiter would fail at 200 concurrent waiters. Hub watches
//!   stay open after their last waiter leaves (up to [`MAX_IDLE_WATCHES`]
//!   directories) so a busy lock does not pay `inotify_add_watch` per wait.
//!
//! With inotify, every wait still ends after [`SAFETY_RECHECK`] at the
//! latest (filesystems without events for remote changes, such as NFS;
//! owners whose death closes no writable descriptor of the lock name). The
//! acquire loop shortens it to a few milliseconds while a holder seems to
//! be exiting (see `Acquirer::settle_delay`). Where inotify is unavailable
//! (another OS, or neither a thread-local instance nor the hub's instance
//! and watch can be had), waiters fall back to a short exponential backoff:
//! 1 ms doubling to 100 ms.

use crate::sys::{DirEvent, DirEvents};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
#[cfg(feature = "tokio")]
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Even with inotify, re-check this often: filesystems that deliver no
/// events for remote changes (NFS, SMB, FUSE) and foreign owners that die
/// without their lock file open are still noticed.
pub const SAFETY_RECHECK: Duration = Duration::from_secs(2);

/// Directories whose watch stays open with no waiter.
pub const MAX_IDLE_WATCHES: usize = 32;

/// Waiters on one lock file name.
struct Name {
    generation: u64,
    users: usize,
    cv: Arc<Condvar>,
    wakers: Vec<(u64, Waker)>,
}

impl Name {
    fn bump(&mut self, wake: &mut Vec<Waker>, cvs: &mut Vec<Arc<Condvar>>) {
        self.generation += 1;
        wake.extend(self.wakers.drain(..).map(|(_, w)| w));
        cvs.push(self.cv.clone());
    }
}

struct Dir {
    wd: i32,
    names: HashMap<OsString, Name>,
    last_used: Instant,
}

#[derive(Default)]
struct Inner {
    dirs: HashMap<PathBuf, Dir>,
    by_wd: HashMap<i32, PathBuf>,
    #[cfg(feature = "tokio")]
    next_waker_id: u64,
}

pub(crate) struct Hub {
    events: DirEvents,
    inner: Mutex<Inner>,
}

fn hub() -> Option<&'static Hub> {
    if testing::no_inotify() {
        return None;
    }
    static HUB: OnceLock<Option<Hub>> = OnceLock::new();
    static READER: std::sync::Once = std::sync::Once::new();
    let h: &'static Hub = HUB.get_or_init(Hub::create).as_ref()?;
    READER.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("session-lock-inotify".into())
            .spawn(move || h.read_loop());
        if let Err(e) = spawned {
            // Without the reader, waits still end at SAFETY_RECHECK.
            tracing::warn!(error = %e, "could not start the inotify reader thread");
        }
    });
    Some(h)
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn create() -> Option<Hub> {
        match DirEvents::new(true) {
            Ok(events) => Some(Hub {
                events,
                inner: Mutex::new(Inner::default()),
            }),
            Err(e) => {
                tracing::debug!(
                    error = %e,
                    "inotify unavailable; lock waits fall back to re-checking"
                );
                None
            }
        }
    }

    fn read_loop(&self) {
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        loop {
            let mut events: Vec<(i32, Option<OsString>)> = Vec::new();
            let mut all = false;
            let read = self.events.read(&mut buf, |ev| match ev {
                DirEvent::Overflow => all = true,
                // The directory (or its watch) went away: everyone there re-checks.
                DirEvent::WatchGone(wd) => events.push((wd, None)),
                DirEvent::Entry(wd, name) if name.as_encoded_bytes().ends_with(b".lock") => {
                    events.push((wd, Some(name.to_owned())));
                }
                // A lock's reclaim guard going away wakes that lock's
                // waiters (a reclaim it blocked may go ahead now).
                DirEvent::Entry(wd, name) => {
                    if let Some(lock) = guard_of(name) {
                        events.push((wd, Some(lock)));
                    }
                }
            });
            if let Err(e) = read {
                tracing::warn!(error = %e, "inotify read failed; lock waits fall back to re-checking");
                return;
            }
            all |= testing::take_overflow();
            if !all && events.is_empty() {
                continue;
            }
            let mut wake = Vec::new();
            let mut cvs = Vec::new();
            let mut inner = self.lock();
            let Inner { dirs, by_wd, .. } = &mut *inner;
            if all {
                for d in dirs.values_mut() {
                    d.names
                        .values_mut()
                        .for_each(|n| n.bump(&mut wake, &mut cvs));
                }
            }
            for (wd, name) in events {
                let path = if name.is_none() {
                    by_wd.remove(&wd)
                } else {
                    by_wd.get(&wd).cloned()
                };
                let Some(d) = path.and_then(|p| dirs.get_mut(&p)) else {
                    continue;
                };
                match name {
                    None => {
                        d.wd = -1;
                        if !all {
                            d.names
                                .values_mut()
                                .for_each(|n| n.bump(&mut wake, &mut cvs));
                        }
                    }
                    Some(name) if !all => {
                        if let Some(n) = d.names.get_mut(&name) {
                            n.bump(&mut wake, &mut cvs);
                        }
                    }
                    Some(_) => {}
                }
            }
            drop(inner);
            for cv in cvs {
                cv.notify_all();
            }
            for w in wake {
                w.wake();
            }
        }
    }

    fn add_watch(&self, dir: &Path) -> Option<i32> {
        self.events.add_watch(dir).ok()
    }

    fn rm_watch(&self, wd: i32) {
        self.events.remove_watch(wd);
    }
}

/// A registration of interest in one lock file. Dropping it releases the
/// registration (the directory watch itself may stay open, idle).
pub(crate) struct Watch {
    hub: Option<&'static Hub>,
    dir: PathBuf,
    name: OsString,
    cv: Option<Arc<Condvar>>,
    backoff: Duration,
}

impl Watch {
    /// Register interest in the lock file `dir/name`. Never fails: without
    /// inotify the watch degrades to timed re-checks.
    pub(crate) fn new(dir: &Path, name: &OsStr) -> Watch {
        let mut watch = Watch {
            hub: None,
            dir: dir.to_owned(),
            name: name.to_owned(),
            cv: None,
            backoff: Duration::from_millis(1),
        };
        let Some(h) = hub() else {
            return watch;
        };
        let mut inner = h.lock();
        let has_watch = inner.dirs.get(dir).is_some_and(|d| d.wd >= 0);
        if !has_watch {
            let Some(wd) = h.add_watch(dir) else {
                return watch;
            };
            inner.by_wd.insert(wd, dir.to_owned());
            let d = inner.dirs.entry(dir.to_owned()).or_insert_with(|| Dir {
                wd,
                names: HashMap::new(),
                last_used: Instant::now(),
            });
            d.wd = wd;
        }
        let Some(d) = inner.dirs.get_mut(dir) else {
            return watch;
        };
        d.last_used = Instant::now();
        let n = d.names.entry(name.to_owned()).or_insert_with(|| Name {
            generation: 0,
            users: 0,
            cv: Arc::new(Condvar::new()),
            wakers: Vec::new(),
        });
        n.users += 1;
        watch.cv = Some(n.cv.clone());
        watch.hub = Some(h);
        prune_idle(h, &mut inner);
        watch
    }

    fn with_name<T>(&self, inner: &mut Inner, f: impl FnOnce(&mut Name) -> T) -> Option<T> {
        inner
            .dirs
            .get_mut(&self.dir)
            .and_then(|d| d.names.get_mut(&self.name))
            .map(f)
    }

    /// The current generation (take it *before* looking at the lock).
    /// A directory whose watch the kernel removed (`IN_IGNORED`: it was
    /// deleted, and may have been made again since) is watched again first,
    /// so the waiter sleeps on events again, not on the safety re-check.
    pub(crate) fn generation(&self) -> u64 {
        match self.hub {
            Some(h) => {
                let mut inner = h.lock();
                rewatch(h, &mut inner, &self.dir);
                self.with_name(&mut inner, |n| n.generation).unwrap_or(0)
            }
            None => 0,
        }
    }

    /// How long to sleep at most before the next re-check.
    pub(crate) fn recheck_interval(&mut self) -> Duration {
        if self.hub.is_some() {
            SAFETY_RECHECK
        } else {
            let b = self.backoff;
            self.backoff = (self.backoff * 2).min(Duration::from_millis(100));
            b
        }
    }

    /// Block until the generation differs from `seen` or `until` passes.
    /// Returns true if woken by an event.
    pub(crate) fn wait_blocking(&self, seen: u64, until: Instant) -> bool {
        let (Some(h), Some(cv)) = (self.hub, self.cv.as_ref()) else {
            let now = Instant::now();
            if until > now {
                std::thread::sleep(until - now);
            }
            return false;
        };
        let mut inner = h.lock();
        loop {
            let generation = self.with_name(&mut inner, |n| n.generation).unwrap_or(0);
            if generation != seen {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            inner = cv
                .wait_timeout(inner, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Async: ready when the generation differs from `seen`. `slot` keeps
    /// this waiter's registration id so it can be removed on drop.
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_changed(
        &self,
        seen: u64,
        slot: &mut Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let Some(h) = self.hub else {
            return Poll::Pending;
        };
        let mut inner = h.lock();
        let id = match slot {
            Some(id) => *id,
            None => {
                inner.next_waker_id += 1;
                *slot = Some(inner.next_waker_id);
                inner.next_waker_id
            }
        };
        self.with_name(&mut inner, |n| {
            if n.generation != seen {
                n.wakers.retain(|(i, _)| *i != id);
                return Poll::Ready(());
            }
            match n.wakers.iter_mut().find(|(i, _)| *i == id) {
                Some((_, w)) => w.clone_from(cx.waker()),
                None => n.wakers.push((id, cx.waker().clone())),
            }
            Poll::Pending
        })
        .unwrap_or(Poll::Ready(()))
    }

    /// Forget an async registration (on future drop).
    #[cfg(feature = "tokio")]
    pub(crate) fn forget_waker(&self, id: u64) {
        if let Some(h) = self.hub {
            self.with_name(&mut h.lock(), |n| n.wakers.retain(|(i, _)| *i != id));
        }
    }
}

/// Watch `dir` again if its watch is gone (see [`Watch::generation`]).
fn rewatch(h: &Hub, inner: &mut Inner, dir: &Path) {
    if let Some(d) = inner.dirs.get_mut(dir)
        && d.wd < 0
        && let Some(wd) = h.add_watch(dir)
    {
        d.wd = wd;
        inner.by_wd.insert(wd, dir.to_owned());
    }
}

fn prune_idle(h: &Hub, inner: &mut Inner) {
    let mut idle: Vec<(Instant, PathBuf)> = inner
        .dirs
        .iter()
        .filter(|(_, d)| d.names.is_empty())
        .map(|(p, d)| (d.last_used, p.clone()))
        .collect();
    if idle.len() <= MAX_IDLE_WATCHES {
        return;
    }
    idle.sort();
    let excess = idle.len() - MAX_IDLE_WATCHES;
    for (_, path) in idle.into_iter().take(excess) {
        if let Some(d) = inner.dirs.remove(&path)
            && d.wd >= 0
        {
            inner.by_wd.remove(&d.wd);
            h.rm_watch(d.wd);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let Some(h) = self.hub else {
            return;
        };
        let mut inner = h.lock();
        if let Some(d) = inner.dirs.get_mut(&self.dir) {
            d.last_used = Instant::now();
            if let Some(n) = d.names.get_mut(&self.name) {
                n.users = n.users.saturating_sub(1);
                if n.users == 0 {
                    d.names.remove(&self.name);
                }
            }
        }
    }
}

/// The lock name whose reclaim guard (`<lock>.reclaim`, see
/// `lock::reclaim_guard_path`) `name` is, if it is one: its removal
/// concerns that lock's waiters. (Names that are not UTF-8 are left to the
/// safety re-check here; the thread-local waits compare bytes.)
fn guard_of(name: &OsStr) -> Option<OsString> {
    let lock = name
        .to_str()?
        .strip_suffix(crate::file::RECLAIM_GUARD_SUFFIX)?;
    lock.ends_with(".lock").then(|| OsString::from(lock))
}

/// Whether `name` is the reclaim guard of the lock named `lock`.
fn is_guard_of(name: &OsStr, lock: &OsStr) -> bool {
    name.as_encoded_bytes()
        .strip_suffix(crate::file::RECLAIM_GUARD_SUFFIX.as_bytes())
        == Some(lock.as_encoded_bytes())
}

/// Stop this thread's own inotify instance from watching any directory
/// while the thread waits in a lock's queue (see `local::unwatch`); the
/// watch is made again before the next look.
pub(crate) fn unwatch_while_queued() {
    local::unwatch();
}

/// The blocking API's wait: the calling thread's own inotify instance
/// (kept open across waits in a thread-local, so only the first wait of a
/// thread pays for `inotify_init1`), polled by the waiting thread itself,
/// so the kernel wakes the waiter directly, with no hop through the hub's
/// reader thread. Falls back to the shared hub where a thread-local
/// instance cannot be had (instance limit, no inotify).
pub(crate) enum BlockingWatch {
    Local(local::LocalWatch),
    Hub(Watch, u64),
}

impl BlockingWatch {
    pub(crate) fn new(paths: &crate::paths::LockPaths) -> BlockingWatch {
        let name = paths.lock.file_name().unwrap_or_default();
        if let Some(w) = local::LocalWatch::new(&paths.dir, name) {
            return BlockingWatch::Local(w);
        }
        BlockingWatch::Hub(Watch::new(&paths.dir, name), 0)
    }

    /// Call before each look at the lock.
    pub(crate) fn arm(&mut self) {
        match self {
            BlockingWatch::Local(w) => w.drain(),
            BlockingWatch::Hub(w, seen) => *seen = w.generation(),
        }
    }

    pub(crate) fn recheck_interval(&mut self) -> Duration {
        match self {
            BlockingWatch::Local(_) => SAFETY_RECHECK,
            BlockingWatch::Hub(w, _) => w.recheck_interval(),
        }
    }

    /// Sleep until an event on the lock file (true) or `until` (false).
    pub(crate) fn wait(&mut self, until: Instant) -> bool {
        match self {
            BlockingWatch::Local(w) => w.wait(until),
            BlockingWatch::Hub(w, seen) => w.wait_blocking(*seen, until),
        }
    }
}

mod local {
    use crate::sys::{DirEvent, DirEvents};
    use std::cell::RefCell;
    use std::ffi::{OsStr, OsString};
    use std::mem::MaybeUninit;
    use std::path::{Path, PathBuf};
    use std::rc::Rc;
    use std::time::Instant;

    struct Local {
        events: Rc<DirEvents>,
        watched: Option<(PathBuf, i32)>,
        /// The process that made the instance: a child forked from this
        /// thread inherits it (the same kernel instance), and must neither
        /// wait on it nor remove the parent's watches from it.
        pid: u32,
    }

    /// This thread's instance, if it was made by this process; an
    /// inherited one (see [`Local::pid`]) is forgotten (the child's copy of
    /// the descriptor closed, the parent's instance untouched).
    fn own(slot: &mut Option<Local>) -> Option<&mut Local> {
        if slot.as_ref().is_some_and(|l| l.pid != std::process::id()) {
            *slot = None;
        }
        slot.as_mut()
    }

    /// Threads of this process that own an instance. `fs.inotify.
    /// max_user_instances` (default 128) is shared by all of a user's
    /// processes, so a process takes at most [`MAX_LOCAL_INSTANCES`]; other
    /// threads wait through the shared hub.
    pub(super) static INSTANCES: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);

    /// See [`INSTANCES`].
    pub(crate) const MAX_LOCAL_INSTANCES: usize = 8;

    impl Drop for Local {
        fn drop(&mut self) {
            INSTANCES.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    thread_local! {
        static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
    }

    /// A wait on one lock name through this thread's inotify instance.
    /// Not `Send` (it holds an `Rc`): it belongs to the thread whose
    /// instance it uses.
    pub(crate) struct LocalWatch {
        name: OsString,
        events: Rc<DirEvents>,
        /// The watched directory.
        dir: PathBuf,
        /// `wait` just read up to the event that woke us: the look that
        /// follows needs no `drain` first.
        drained: std::cell::Cell<bool>,
        /// The last `drain` could not add the watch again.
        unwatched: std::cell::Cell<bool>,
    }

    /// How soon a waiter whose watch could not be added again looks again.
    const UNWATCHED_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

    /// Remove this thread's watch, if it has one: while the
    /// thread waits in a lock's queue the kernel would otherwise queue
    /// every event of the directory for it, which costs every rename and
    /// close there an event for this thread, and its next wait a long
    /// read. The next `LocalWatch::new` or `drain` adds it again.
    pub(crate) fn unwatch() {
        let _ = LOCAL.try_with(|cell| {
            if let Ok(mut slot) = cell.try_borrow_mut()
                && let Some(local) = own(&mut slot)
                && let Some((_, wd)) = local.watched.take()
            {
                local.events.remove_watch(wd);
            }
        });
    }

    /// Make this thread's instance watch `dir` (and nothing else): true if
    /// it does. A watch that the kernel removed (`IN_IGNORED` read, see
    /// `read_events`) or that was taken away (`unwatch`, or a wait on
    /// another directory inside an `on_wait` hook) is added again.
    fn ensure_watch(local: &mut Local, dir: &Path) -> bool {
        if local.watched.as_ref().is_some_and(|(d, _)| d == dir) {
            return true;
        }
        if let Some((_, wd)) = local.watched.take() {
            local.events.remove_watch(wd);
        }
        match local.events.add_watch(dir) {
            Ok(wd) => {
                local.watched = Some((dir.to_owned(), wd));
                true
            }
            Err(_) => false,
        }
    }

    impl LocalWatch {
        pub(crate) fn new(dir: &Path, name: &OsStr) -> Option<LocalWatch> {
            if super::testing::no_inotify() {
                return None;
            }
            LOCAL.with(|cell| {
                let mut slot = cell.borrow_mut();
                if own(&mut slot).is_none() {
                    use std::sync::atomic::Ordering::Relaxed;
                    if INSTANCES.fetch_add(1, Relaxed) >= MAX_LOCAL_INSTANCES {
                        INSTANCES.fetch_sub(1, Relaxed);
                        return None;
                    }
                    let Ok(events) = DirEvents::new(false) else {
                        INSTANCES.fetch_sub(1, Relaxed);
                        return None;
                    };
                    super::testing::count_instance_made();
                    *slot = Some(Local {
                        events: Rc::new(events),
                        watched: None,
                        pid: std::process::id(),
                    });
                }
                let local = slot.as_mut()?;
                if !ensure_watch(local, dir) {
                    return None;
                }
                Some(LocalWatch {
                    name: name.to_owned(),
                    dir: dir.to_owned(),
                    events: local.events.clone(),
                    drained: std::cell::Cell::new(false),
                    unwatched: std::cell::Cell::new(false),
                })
            })
        }

        /// Read what is queued; true if any event concerns our name (or
        /// the watch itself: overflow, directory gone). Reads until the
        /// queue is empty, or with `stop_when_relevant` until a read
        /// returned a relevant event (one read, not two, on a handoff's
        /// critical path; what may be left is at worst one early wake-up
        /// later, after which the waiter looks again).
        fn read_events(&self, stop_when_relevant: bool) -> bool {
            let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
            let mut relevant = false;
            loop {
                let read = self.events.read(&mut buf, |ev| match ev {
                    DirEvent::Overflow => relevant = true,
                    DirEvent::WatchGone(wd) => {
                        // Only the current watch matters: the IN_IGNORED
                        // of one removed earlier (see `unwatch`) is old news.
                        let current = LOCAL.with(|c| {
                            let mut l = c.borrow_mut();
                            let l = l.as_mut()?;
                            let current = l.watched.as_ref().is_some_and(|(_, w)| *w == wd);
                            if current {
                                l.watched = None;
                            }
                            Some(current)
                        });
                        relevant |= current.unwrap_or(true);
                    }
                    DirEvent::Entry(_, name) => {
                        relevant |= name == self.name || super::is_guard_of(name, &self.name);
                    }
                });
                if !matches!(read, Ok(true)) || (relevant && stop_when_relevant) {
                    return relevant;
                }
            }
        }

        /// Forget what is queued and make sure the directory is watched
        /// (call before looking at the lock).
        pub(crate) fn drain(&self) {
            if !self.drained.replace(false) {
                let _ = self.read_events(false);
            }
            let watched = LOCAL.with(|c| {
                c.borrow_mut()
                    .as_mut()
                    .is_some_and(|l| ensure_watch(l, &self.dir))
            });
            self.unwatched.set(!watched);
        }

        pub(crate) fn wait(&self, until: Instant) -> bool {
            if self.unwatched.get() {
                // The watch could not be added again (the directory is
                // gone, say): no event will come; look again soon.
                let nap = until.saturating_duration_since(Instant::now());
                std::thread::sleep(nap.min(UNWATCHED_RECHECK));
                return false;
            }
            loop {
                let now = Instant::now();
                if now >= until {
                    return false;
                }
                match self.events.wait_readable(until - now) {
                    Ok(true) if self.read_events(true) => {
                        // Read up to our event: the look that follows is
                        // after it, so no drain is needed before it.
                        self.drained.set(true);
                        return true;
                    }
                    Ok(_) => {}
                    // Not expected from poll on one valid descriptor; sleep
                    // out the wait rather than spin.
                    Err(_) => {
                        std::thread::sleep(until.saturating_duration_since(Instant::now()));
                        return false;
                    }
                }
            }
        }
    }
}

/// Seams for the tests (feature `fault-injection`, reached through
/// `__private`): the paths the kernel takes only on a bad day.
pub(crate) mod testing {
    #[cfg(feature = "fault-injection")]
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

    #[cfg(feature = "fault-injection")]
    static NO_INOTIFY: AtomicBool = AtomicBool::new(false);
    #[cfg(feature = "fault-injection")]
    static OVERFLOW: AtomicBool = AtomicBool::new(false);
    #[cfg(feature = "fault-injection")]
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    /// Waits from now on behave as where inotify is unavailable (neither a
    /// thread-local instance nor the hub): the back-off fallback.
    #[cfg(feature = "fault-injection")]
    pub fn force_no_inotify(on: bool) {
        NO_INOTIFY.store(on, Relaxed);
    }

    /// The hub's reader takes the next read it wakes up for as an event
    /// queue overflow (`IN_Q_OVERFLOW`), as if the events were lost.
    #[cfg(feature = "fault-injection")]
    pub fn inject_overflow() {
        OVERFLOW.store(true, Relaxed);
    }

    /// Threads of this process that own an inotify instance now.
    #[cfg(feature = "fault-injection")]
    pub fn local_instances() -> usize {
        super::local::INSTANCES.load(Relaxed)
    }

    /// Thread-local instances made so far in this process (one per
    /// thread, not one per wait).
    #[cfg(feature = "fault-injection")]
    pub fn local_instances_made() -> u64 {
        MADE.load(Relaxed)
    }

    pub(super) fn count_instance_made() {
        #[cfg(feature = "fault-injection")]
        MADE.fetch_add(1, Relaxed);
    }

    pub(super) fn no_inotify() -> bool {
        #[cfg(feature = "fault-injection")]
        return NO_INOTIFY.load(Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    pub(super) fn take_overflow() -> bool {
        #[cfg(feature = "fault-injection")]
        return OVERFLOW.swap(false, Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registration that found no inotify (no hub).
    fn without_inotify() -> Watch {
        Watch {
            hub: None,
            dir: PathBuf::from("/nonexistent"),
            name: OsString::from("s.jsonl.lock"),
            cv: None,
            backoff: Duration::from_millis(1),
        }
    }

    #[test]
    fn without_inotify_the_recheck_backs_off_from_1ms_doubling_to_100ms() {
        let mut w = without_inotify();
        let got: Vec<u128> = (0..10).map(|_| w.recheck_interval().as_millis()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 64, 100, 100, 100]);
    }

    #[test]
    fn without_inotify_a_blocking_wait_sleeps_until_its_deadline() {
        let w = without_inotify();
        let until = Instant::now() + Duration::from_millis(20);
        assert!(!w.wait_blocking(0, until), "no event without inotify");
        assert!(Instant::now() >= until, "returned before its deadline");
    }
}
