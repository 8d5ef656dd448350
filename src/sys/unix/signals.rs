//! Signal dispositions for the `signals` feature: the library's only
//! `unsafe` code (three blocks: building a `sigaction`, calling
//! `sigaction(2)`, and turning the raw descriptor of our notification
//! socket into a borrowed one inside the handler).
//!
//! Why not `signal-hook`: the cleanup must end the process with the
//! signal's default effect when nothing else listens for the signal, and
//! must leave it alive when something registered after us does (tokio's
//! `signal::ctrl_c`, which goes through `signal-hook-registry`). The
//! registry dispatches every signal to all of its actions and offers no way
//! to learn whether any action besides ours exists, and unregistering the
//! last action does not bring the default back. A handler of our own,
//! installed with `sigaction(2)`, can tell: whoever installs a handler after
//! us replaces our disposition (the registry and most libraries then chain
//! to ours), so "our handler is still the disposition" means "we are the
//! only listener". No safe crate exposes `sigaction(2)`.

#![allow(unsafe_code)]

use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The signals handled.
pub(crate) const SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT, libc::SIGHUP];

/// The write end of the notification socket, kept open for the life of
/// the process, and its descriptor number for the handler.
static NOTIFY: OnceLock<UnixStream> = OnceLock::new();
static NOTIFY_FD: AtomicI32 = AtomicI32::new(-1);

/// Dispositions found at `install`, for the signals we took over. Held by
/// the signal thread while it handles a signal, so `install` returns only
/// once a signal being handled has been handled.
static PREVIOUS: Mutex<Option<Vec<(i32, libc::sigaction)>>> = Mutex::new(None);

fn previous() -> MutexGuard<'static, Option<Vec<(i32, libc::sigaction)>>> {
    PREVIOUS.lock().unwrap_or_else(|p| p.into_inner())
}

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = NOTIFY_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: `fd` is the write end of the socket pair in `NOTIFY`,
        // a static that is never dropped, so the descriptor stays open.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        // write(2) is async-signal-safe (rustix makes the system call
        // directly on Linux, leaving errno alone). A full socket drops the
        // byte, which only loses a duplicate notification.
        let _ = rustix::io::write(fd, &[sig as u8]);
    }
}

fn our_handler() -> libc::sighandler_t {
    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t
}

/// `sigaction(2)`: set `new` if given, return the disposition before.
fn sigaction(sig: i32, new: Option<&libc::sigaction>) -> io::Result<libc::sigaction> {
    let new = new.map_or(std::ptr::null(), |n| n as *const libc::sigaction);
    // SAFETY: an all-zero `sigaction` is a valid value of the C struct
    // (SIG_DFL, no flags, empty mask on every libc we know of, and the
    // kernel overwrites it anyway); `new` is null or points to a valid
    // struct, `old` is valid for writes.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, new, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(old)
    }
}

/// Our disposition: `on_signal`, restarting interrupted system calls,
/// blocking nothing extra while it runs.
fn our_action() -> libc::sigaction {
    // SAFETY: zeroed is a valid starting value (see `sigaction`), and
    // sigemptyset initialises the mask it is given.
    let mut action: libc::sigaction = unsafe {
        let mut a: libc::sigaction = std::mem::zeroed();
        libc::sigemptyset(&mut a.sa_mask);
        a
    };
    action.sa_sigaction = our_handler();
    action.sa_flags = libc::SA_RESTART;
    action
}

/// Take over [`SIGNALS`] (those not ignored) and start the thread that
/// calls `cleanup` on each; idempotent.
pub(crate) fn install(cleanup: fn(i32)) -> io::Result<()> {
    let mut previous = previous();
    if previous.is_some() {
        return Ok(());
    }
    let (read, write) = UnixStream::pair()?;
    write.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("session-lock-signals".into())
        .spawn(move || signal_thread(read, cleanup))?;
    let write = NOTIFY.get_or_init(|| write);
    NOTIFY_FD.store(write.as_raw_fd(), Ordering::Relaxed);
    // Recorded as we go, so that a failure half-way still hands on the
    // signals already taken over.
    let taken = previous.insert(Vec::new());
    let ours = our_action();
    for sig in SIGNALS {
        if sigaction(sig, None)?.sa_sigaction == libc::SIG_IGN {
            // nohup, or ignored on purpose: leave it so.
            continue;
        }
        let old = sigaction(sig, Some(&ours))?;
        taken.push((sig, old));
    }
    Ok(())
}

fn signal_thread(mut read: UnixStream, cleanup: fn(i32)) {
    let mut byte = [0u8; 1];
    loop {
        match read.read(&mut byte) {
            Ok(1) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            _ => return,
        }
        let sig = i32::from(byte[0]);
        let previous = previous();
        cleanup(sig);
        let Some(old) = previous
            .iter()
            .flatten()
            .find(|(s, _)| *s == sig)
            .map(|(_, old)| old)
        else {
            continue;
        };
        match sigaction(sig, None) {
            Ok(now) if now.sa_sigaction == our_handler() => {
                // Nobody installed a handler after us: hand the signal on
                // to what was there before (the default effect, or a
                // handler installed before us) by putting it back and
                // raising the signal again.
                let raised = sigaction(sig, Some(old)).and_then(|_| {
                    let signal = rustix::process::Signal::from_named_raw(sig)
                        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
                    Ok(rustix::process::kill_process(
                        rustix::process::getpid(),
                        signal,
                    )?)
                });
                if let Err(e) = raised {
                    tracing::warn!(signal = sig, error = %e, "could not hand the signal on");
                }
            }
            Ok(_) => tracing::debug!(
                signal = sig,
                "a handler installed after ours has the signal; not raising it again"
            ),
            Err(e) => {
                tracing::warn!(signal = sig, error = %e, "could not read the signal disposition")
            }
        }
    }
}
