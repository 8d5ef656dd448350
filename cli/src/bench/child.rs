//! The child side: line protocol on stdin/stdout.

use super::check::{SharedCounter, cycle_line};
use super::raw::{
    flock, flock_path, funlock, open_append, open_rw, polling_acquire, polling_record,
};
use super::stats::mono_ns;
use super::{ACQUIRE_TIMEOUT, BenchArgs, ChildRole, err_str, opts};
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

/// One line to the parent.
fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| err_str("write to parent", e))
}

/// The next line from the parent; `None` at EOF.
fn hear() -> Result<Option<String>, String> {
    let mut s = String::new();
    match std::io::stdin().lock().read_line(&mut s) {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(s.trim_end().to_owned())),
        Err(e) => Err(err_str("read from parent", e)),
    }
}

fn lib(what: &str) -> impl FnOnce(session_lock::Error) -> String + '_ {
    move |e| err_str(what, e)
}

pub(super) fn run(role: ChildRole, args: &BenchArgs) -> i32 {
    let Some(target) = args.target.as_deref() else {
        eprintln!("session-lock bench: --child needs --target");
        return 2;
    };
    let result = match role {
        ChildRole::HandoffOurs
        | ChildRole::HandoffFlock
        | ChildRole::HandoffPolling
        | ChildRole::HandoffInotify => handoff(role, target),
        ChildRole::Hold => hold(target),
        ChildRole::CyclesOurs | ChildRole::CyclesFlock => cycles(role, target, args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            // The parent reads this as the child's failure.
            let _ = say(&format!("error {e}"));
            1
        }
    }
}

/// B of a handoff: on `go`, say `ready`, block in acquire, timestamp,
/// release, send the timestamp.
fn handoff(role: ChildRole, target: &Path) -> Result<(), String> {
    let opts = opts();
    let flock_file = match role {
        ChildRole::HandoffFlock => Some(open_rw(target)?),
        _ => None,
    };
    let record = polling_record();
    let watch = match role {
        ChildRole::HandoffInotify => Some(InotifyWait::new(target)?),
        _ => None,
    };
    while let Some(line) = hear()? {
        if line != "go" {
            return Err(format!("unexpected message {line:?}"));
        }
        if let Some(w) = &watch {
            w.drain();
        }
        say("ready")?;
        let t = match (role, &flock_file) {
            (ChildRole::HandoffInotify, _) => {
                watch.as_ref().expect("set above").wait()?;
                mono_ns()
            }
            (ChildRole::HandoffFlock, Some(f)) => {
                flock(f, target)?;
                let t = mono_ns();
                funlock(f, target)?;
                t
            }
            (ChildRole::HandoffPolling, _) => {
                let t = polling_acquire(target, &record)?;
                std::fs::remove_file(target).map_err(|e| err_str("polling unlink", e))?;
                t
            }
            _ => {
                let g = session_lock::acquire_with(target, &opts).map_err(lib("acquire"))?;
                let t = mono_ns();
                g.release().map_err(lib("release"))?;
                t
            }
        };
        say(&t.to_string())?;
    }
    Ok(())
}

/// A raw inotify wait for `target`'s removal: one instance watching its
/// directory, polled with a timeout (what a waiter that must honour a
/// deadline can do; a blocking `flock` cannot time out).
struct InotifyWait {
    fd: rustix::fd::OwnedFd,
    name: std::ffi::OsString,
}

impl InotifyWait {
    fn new(target: &Path) -> Result<InotifyWait, String> {
        use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .map_err(|e| err_str("inotify_init", e))?;
        let dir = target.parent().ok_or("no directory")?;
        inotify::add_watch(&fd, dir, WatchFlags::DELETE | WatchFlags::MOVED_FROM)
            .map_err(|e| err_str("inotify_add_watch", e))?;
        let name = target.file_name().ok_or("no file name")?.to_owned();
        Ok(InotifyWait { fd, name })
    }

    /// Read what is queued; true if it names our file.
    fn read(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = rustix::fs::inotify::Reader::new(&self.fd, &mut buf);
        let mut ours = false;
        while let Ok(ev) = reader.next() {
            ours |= ev
                .file_name()
                .is_some_and(|n| n.to_bytes() == self.name.as_bytes());
        }
        ours
    }

    fn drain(&self) {
        while self.read() {}
    }

    fn wait(&self) -> Result<(), String> {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let ts = Timespec {
            tv_sec: ACQUIRE_TIMEOUT.as_secs() as i64,
            tv_nsec: 0,
        };
        loop {
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(0) => return Err("inotify wait timed out".into()),
                Ok(_) if self.read() => return Ok(()),
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(err_str("poll", e)),
            }
        }
    }
}

/// Hold the lock until stdin closes.
fn hold(target: &Path) -> Result<(), String> {
    let g = session_lock::acquire_with(target, &opts()).map_err(lib("acquire"))?;
    say("ready")?;
    while hear()?.is_some() {}
    g.release().map_err(lib("release"))
}

/// A throughput worker: `ready`, wait for `go`, cycle for the duration,
/// then `done <cycles> <max wait ns> <overlaps>`.
fn cycles(role: ChildRole, target: &Path, args: &BenchArgs) -> Result<(), String> {
    let shm = args.shm.as_deref().ok_or("--shm is required")?;
    let counter = SharedCounter::map(shm)?;
    let opts = opts();
    let pause = Duration::from_micros(args.pause_us);
    let raw = match role {
        ChildRole::CyclesFlock => {
            let lock = flock_path(target);
            Some((open_rw(&lock)?, lock, open_append(target)?))
        }
        _ => None,
    };
    say("ready")?;
    match hear()? {
        Some(l) if l == "go" => {}
        other => return Err(format!("expected go, got {other:?}")),
    }
    let end = mono_ns() + args.duration_ms * 1_000_000;
    let (mut seq, mut max_wait, mut overlaps) = (0u64, 0u64, 0u64);
    while mono_ns() < end {
        let mut line = cycle_line(args.id, seq);
        let t0 = mono_ns();
        match &raw {
            Some((lock_file, lock, out)) => {
                line.push('\n');
                flock(lock_file, lock)?;
                max_wait = max_wait.max(mono_ns() - t0);
                overlaps += u64::from(counter.enter());
                let written = (&*out).write_all(line.as_bytes());
                counter.leave();
                funlock(lock_file, lock)?;
                written.map_err(|e| err_str("append", e))?;
            }
            None => {
                let g = session_lock::acquire_with(target, &opts).map_err(lib("acquire"))?;
                max_wait = max_wait.max(mono_ns() - t0);
                overlaps += u64::from(counter.enter());
                let written = g.append_line(&line);
                counter.leave();
                g.release().map_err(lib("release"))?;
                written.map_err(lib("append"))?;
            }
        }
        seq += 1;
        std::thread::sleep(pause);
    }
    // Wake-ups of this process's acquire loop (the kernel's queue grant,
    // an inotify event, the safety re-check), counted by the library
    // (`session_lock::wait_wakeups`; this worker waits on one thread).
    let woken = session_lock::wait_wakeups();
    let wakeups = if raw.is_some() {
        0
    } else {
        woken.by_event + woken.by_recheck
    };
    say(&format!("done {seq} {max_wait} {overlaps} {wakeups}"))
}
