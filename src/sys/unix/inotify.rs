//! Directory events through inotify (Linux): the kernel side of
//! `lock::wait`. Everything here is safe `rustix`.

use super::super::DirEvent;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// What ends a hold: the lock file unlinked or renamed away (release,
/// reclaim), or closed by its last writer while still linked (the kernel
/// closing a dead holder's descriptors). A lock file appearing (IN_MOVED_TO,
/// IN_CREATE) means someone else got it: no event. IN_EXCL_UNLINK drops
/// the holder's own close after its unlink.
const WATCH_MASK: WatchFlags = WatchFlags::DELETE
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::EXCL_UNLINK);

/// An inotify instance.
pub(crate) struct DirEvents {
    fd: OwnedFd,
}

impl DirEvents {
    /// A new instance; `blocking: false` makes [`DirEvents::read`] return
    /// at once when nothing is queued.
    pub(crate) fn new(blocking: bool) -> io::Result<DirEvents> {
        let flags = if blocking {
            CreateFlags::CLOEXEC
        } else {
            CreateFlags::CLOEXEC | CreateFlags::NONBLOCK
        };
        Ok(DirEvents {
            fd: inotify::init(flags)?,
        })
    }

    /// Watch the directory `dir` for the events that end a hold (see
    /// `WATCH_MASK`); returns the watch descriptor.
    pub(crate) fn add_watch(&self, dir: &Path) -> io::Result<i32> {
        Ok(inotify::add_watch(&self.fd, dir, WATCH_MASK)?)
    }

    /// Remove a watch. A stale descriptor only yields EINVAL, ignored
    /// because the watch is gone either way.
    pub(crate) fn remove_watch(&self, wd: i32) {
        let _ = inotify::remove_watch(&self.fd, wd);
    }

    /// One read(2) of the queue: calls `f` with each event read. Blocks on
    /// a blocking instance until something is queued; `Ok(false)` when a
    /// non-blocking instance has nothing queued.
    pub(crate) fn read(
        &self,
        buf: &mut [MaybeUninit<u8>],
        mut f: impl FnMut(DirEvent<'_>),
    ) -> io::Result<bool> {
        let mut reader = inotify::Reader::new(&self.fd, buf);
        loop {
            match reader.next() {
                Ok(ev) => {
                    let flags = ev.events();
                    if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                        f(DirEvent::Overflow);
                    } else if flags.contains(ReadFlags::IGNORED) {
                        f(DirEvent::WatchGone(ev.wd()));
                    } else if let Some(name) = ev.file_name() {
                        f(DirEvent::Entry(ev.wd(), OsStr::from_bytes(name.to_bytes())));
                    }
                }
                // Only possible before anything was read.
                Err(Errno::INTR) => continue,
                Err(Errno::WOULDBLOCK) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
            if reader.is_buffer_empty() {
                return Ok(true);
            }
        }
    }

    /// Sleep until something is queued (true) or `timeout` passes, or a
    /// signal interrupts the sleep (false). Nanosecond timeout (ppoll).
    pub(crate) fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let ts = Timespec {
            tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: timeout.subsec_nanos().into(),
        };
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) => Ok(n > 0),
            Err(Errno::INTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything queued now, as (kind, name) pairs.
    fn drain(events: &DirEvents) -> Vec<(&'static str, String)> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut seen = Vec::new();
        while events
            .read(&mut buf, |ev| {
                seen.push(match ev {
                    DirEvent::Overflow => ("overflow", String::new()),
                    DirEvent::WatchGone(_) => ("gone", String::new()),
                    DirEvent::Entry(_, name) => ("entry", name.to_string_lossy().into_owned()),
                })
            })
            .unwrap()
        {}
        seen
    }

    #[test]
    fn reports_the_events_that_end_a_hold_and_a_vanished_directory() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("sessions");
        std::fs::create_dir(&watched).unwrap();
        let events = DirEvents::new(false).unwrap();
        events.add_watch(&watched).unwrap();
        assert!(!events.wait_readable(Duration::ZERO).unwrap());
        assert_eq!(drain(&events), []);

        // Appearing is no event; closing after a write, renaming away and
        // unlinking are.
        let a = watched.join("a.lock");
        std::fs::write(&a, b"x").unwrap();
        assert!(events.wait_readable(Duration::from_secs(10)).unwrap());
        assert_eq!(drain(&events), [("entry", "a.lock".to_owned())]);
        std::fs::rename(&a, watched.join("b.lock")).unwrap();
        std::fs::remove_file(watched.join("b.lock")).unwrap();
        assert_eq!(
            drain(&events),
            [
                ("entry", "a.lock".to_owned()),
                ("entry", "b.lock".to_owned())
            ]
        );

        std::fs::remove_dir(&watched).unwrap();
        assert_eq!(drain(&events), [("gone", String::new())]);
    }
}
