//! Waiting without polling: one inotify instance per process, one reader
//! thread, and a generation counter per watched directory.
//!
//! A waiter registers interest in the lock's directory *before* it looks at
//! the lock, remembers the generation, and after finding the lock held sleeps
//! until the generation moves (an event on a `*.lock` name: unlink, rename,
//! or the last writer closing it, which is what the kernel does when a
//! holder dies) or its deadline passes. Because the generation is read
//! before the look, an event between the look and the sleep is never lost.
//!
//! One instance for the whole process matters: the default
//! `fs.inotify.max_user_instances` is 128, so an instance per waiter would
//! fail at 200 concurrent waiters. Watches stay open after their last waiter
//! leaves (up to [`MAX_IDLE_WATCHES`] directories) so a busy lock does not
//! pay `inotify_add_watch` per wait.
//!
//! Where inotify is unavailable (another OS, the instance limit reached, a
//! filesystem without events such as NFS for remote changes), waiters fall
//! back to a slow re-check: [`SAFETY_RECHECK`] with inotify, a short
//! exponential backoff without it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Even with inotify, re-check this often: filesystems that deliver no
/// events for remote changes (NFS, SMB, FUSE) and foreign owners that die
/// without their lock file open are still noticed.
pub const SAFETY_RECHECK: Duration = Duration::from_secs(2);

/// Directories whose watch stays open with no waiter.
pub const MAX_IDLE_WATCHES: usize = 32;

struct Dir {
    wd: i32,
    users: usize,
    generation: u64,
    wakers: Vec<(u64, Waker)>,
    last_used: Instant,
}

#[derive(Default)]
struct Inner {
    dirs: HashMap<PathBuf, Dir>,
    by_wd: HashMap<i32, PathBuf>,
    next_waker_id: u64,
}

pub(crate) struct Hub {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
    inner: Mutex<Inner>,
    cv: Condvar,
}

fn hub() -> Option<&'static Hub> {
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

    #[cfg(target_os = "linux")]
    fn create() -> Option<Hub> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "inotify unavailable; lock waits fall back to re-checking"
            );
            return None;
        }
        Some(Hub {
            // SAFETY: fd is a fresh descriptor we own.
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
            inner: Mutex::new(Inner::default()),
            cv: Condvar::new(),
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn create() -> Option<Hub> {
        None
    }

    #[cfg(target_os = "linux")]
    fn read_loop(&self) {
        use std::os::fd::AsRawFd;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: buf is valid for buf.len() bytes; blocking read on our fd.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                tracing::warn!(error = %err, "inotify read failed; lock waits fall back to re-checking");
                return;
            }
            let n = n as usize;
            let mut events: Vec<(i32, bool)> = Vec::new();
            let mut all = false;
            let mut off = 0;
            let header = std::mem::size_of::<libc::inotify_event>();
            while off + header <= n {
                // SAFETY: the kernel writes whole events; read_unaligned copes
                // with the byte buffer's alignment.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast()) };
                let name_len = ev.len as usize;
                let name = &buf[(off + header).min(n)..(off + header + name_len).min(n)];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                off += header + name_len;
                let ignored = ev.mask & libc::IN_IGNORED != 0;
                if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                    all = true;
                } else if ignored || name.ends_with(b".lock") {
                    events.push((ev.wd, ignored));
                }
            }
            if !all && events.is_empty() {
                continue;
            }
            let mut inner = self.lock();
            let Inner { dirs, by_wd, .. } = &mut *inner;
            let mut wake = Vec::new();
            let mut bump = |d: &mut Dir| {
                d.generation += 1;
                wake.extend(d.wakers.drain(..).map(|(_, w)| w));
            };
            if all {
                dirs.values_mut().for_each(&mut bump);
            }
            for (wd, ignored) in events {
                let path = if ignored {
                    by_wd.remove(&wd)
                } else {
                    by_wd.get(&wd).cloned()
                };
                if let Some(d) = path.and_then(|p| dirs.get_mut(&p)) {
                    if ignored {
                        // The directory went away: waiters re-check and
                        // re-watch if they still need to.
                        d.wd = -1;
                    }
                    if !all {
                        bump(d);
                    }
                }
            }
            drop(inner);
            self.cv.notify_all();
            for w in wake {
                w.wake();
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn add_watch(&self, dir: &Path) -> Option<i32> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // What ends a hold: the lock file unlinked or renamed away (release,
        // reclaim), or closed by its last writer while still linked (the
        // kernel closing a dead holder's descriptor). A lock file appearing
        // (IN_MOVED_TO, IN_CREATE) means someone else got it: no wake-up.
        // IN_EXCL_UNLINK drops the holder's own close after its unlink.
        let mask = libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_CLOSE_WRITE
            | libc::IN_ONLYDIR
            | libc::IN_EXCL_UNLINK;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        (wd >= 0).then_some(wd)
    }

    #[cfg(not(target_os = "linux"))]
    fn add_watch(&self, _dir: &Path) -> Option<i32> {
        None
    }

    #[cfg(target_os = "linux")]
    fn rm_watch(&self, wd: i32) {
        use std::os::fd::AsRawFd;
        // SAFETY: valid fd; a stale wd only yields EINVAL, which we ignore
        // because the watch is gone either way.
        unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
    }

    #[cfg(not(target_os = "linux"))]
    fn rm_watch(&self, _wd: i32) {}
}

/// A registration of interest in one directory. Dropping it releases the
/// registration (the watch itself may stay open, idle).
pub(crate) struct Watch {
    hub: Option<&'static Hub>,
    dir: PathBuf,
    backoff: Duration,
}

impl Watch {
    /// Register interest in `dir`. Never fails: without inotify the watch
    /// degrades to timed re-checks.
    pub(crate) fn new(dir: &Path) -> Watch {
        let mut hub = hub();
        if let Some(h) = hub {
            let mut inner = h.lock();
            let has_watch = inner.dirs.get(dir).is_some_and(|d| d.wd >= 0);
            if !has_watch {
                match h.add_watch(dir) {
                    Some(wd) => {
                        inner.by_wd.insert(wd, dir.to_owned());
                        let d = inner.dirs.entry(dir.to_owned()).or_insert(Dir {
                            wd,
                            users: 0,
                            generation: 0,
                            wakers: Vec::new(),
                            last_used: Instant::now(),
                        });
                        d.wd = wd;
                    }
                    None => hub = None,
                }
            }
            if hub.is_some()
                && let Some(d) = inner.dirs.get_mut(dir)
            {
                d.users += 1;
                d.last_used = Instant::now();
            }
            if hub.is_some() {
                prune_idle(h, &mut inner);
            }
        }
        Watch {
            hub,
            dir: dir.to_owned(),
            backoff: Duration::from_millis(1),
        }
    }

    /// The current generation (take it *before* looking at the lock).
    pub(crate) fn generation(&self) -> u64 {
        match self.hub {
            Some(h) => h.lock().dirs.get(&self.dir).map_or(0, |d| d.generation),
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
        let Some(h) = self.hub else {
            let now = Instant::now();
            if until > now {
                std::thread::sleep(until - now);
            }
            return false;
        };
        let mut inner = h.lock();
        loop {
            let generation = inner.dirs.get(&self.dir).map_or(0, |d| d.generation);
            if generation != seen {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            inner =
                h.cv.wait_timeout(inner, until - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
        }
    }

    /// Async: ready when the generation differs from `seen`. `slot` keeps
    /// this waiter's registration id so it can be removed on drop.
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
                let id = inner.next_waker_id;
                *slot = Some(id);
                id
            }
        };
        let Some(d) = inner.dirs.get_mut(&self.dir) else {
            return Poll::Ready(());
        };
        if d.generation != seen {
            d.wakers.retain(|(i, _)| *i != id);
            return Poll::Ready(());
        }
        match d.wakers.iter_mut().find(|(i, _)| *i == id) {
            Some((_, w)) => w.clone_from(cx.waker()),
            None => d.wakers.push((id, cx.waker().clone())),
        }
        Poll::Pending
    }

    /// Forget an async registration (on future drop).
    pub(crate) fn forget_waker(&self, id: u64) {
        if let Some(h) = self.hub
            && let Some(d) = h.lock().dirs.get_mut(&self.dir)
        {
            d.wakers.retain(|(i, _)| *i != id);
        }
    }
}

fn prune_idle(h: &Hub, inner: &mut Inner) {
    let idle: Vec<(Instant, PathBuf)> = inner
        .dirs
        .iter()
        .filter(|(_, d)| d.users == 0)
        .map(|(p, d)| (d.last_used, p.clone()))
        .collect();
    if idle.len() <= MAX_IDLE_WATCHES {
        return;
    }
    let mut idle = idle;
    idle.sort();
    for (_, path) in idle
        .into_iter()
        .take(inner.dirs.len().saturating_sub(MAX_IDLE_WATCHES))
    {
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
        if let Some(h) = self.hub
            && let Some(d) = h.lock().dirs.get_mut(&self.dir)
        {
            d.users = d.users.saturating_sub(1);
            d.last_used = Instant::now();
        }
    }
}
