//! Release held locks on SIGINT, SIGTERM, SIGQUIT and SIGHUP (feature
//! `signals`).
//!
//! **This is tidiness, not safety.** The kernel witness already makes a
//! dead holder's lock reclaimable the instant the process dies, whatever
//! killed it (SIGKILL and the OOM killer included). Cleaning up on signals
//! only means the lock file is gone instead of reclaimable, which keeps
//! `session-lock status` quiet and helps software that does not understand
//! the witness (the reference implementation judges by pid).
//!
//! How it works: [`install`] puts a minimal async-signal-safe handler on the
//! four signals that only writes the signal number to a pipe. A dedicated
//! thread reads it, calls [`crate::release_all`] (every guard learns
//! [`crate::LostReason::ReleasedAll`]), then puts back the disposition that
//! was there before and raises the signal again, so that its default effect
//! (terminate, or core dump for SIGQUIT) or the application's own handler
//! runs as if we had not been there. Signals that were ignored when
//! `install` ran (`nohup`, `SIG_IGN`) are left alone. Unlike the reference,
//! which re-raises only when its handler is the sole listener, we always
//! hand the signal on to the previous disposition: an application handler
//! that wants to drain gracefully gets the signal after our cleanup.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

/// The signals handled.
pub const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT, libc::SIGHUP];

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static PREVIOUS: Mutex<Vec<(libc::c_int, libc::sigaction)>> = Mutex::new(Vec::new());

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; a full pipe drops the byte,
        // which only loses a duplicate notification.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Install the handlers (idempotent).
///
/// # Errors
/// The OS error if the pipe, the thread or a `sigaction` call fails.
pub fn install() -> io::Result<()> {
    let mut previous = PREVIOUS.lock().unwrap_or_else(|p| p.into_inner());
    if PIPE_WRITE.load(Ordering::Relaxed) >= 0 {
        return Ok(());
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is valid for two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let read_fd = fds[0];
    // The reader blocks; only the write end stays non-blocking.
    // SAFETY: valid fd; clearing O_NONBLOCK.
    unsafe { libc::fcntl(read_fd, libc::F_SETFL, 0) };
    std::thread::Builder::new()
        .name("session-lock-signals".into())
        .spawn(move || signal_thread(read_fd))?;
    PIPE_WRITE.store(fds[1], Ordering::Relaxed);
    for sig in SIGNALS {
        // SAFETY: zeroed sigaction is a valid "no flags, empty mask" value;
        // we fill in the handler and query the previous disposition.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                return Err(io::Error::last_os_error());
            }
            if old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            new.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            if libc::sigaction(sig, &new, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            previous.push((sig, old));
        }
    }
    Ok(())
}

fn signal_thread(read_fd: libc::c_int) {
    loop {
        let mut b = 0u8;
        // SAFETY: reading one byte into a valid buffer.
        let n = unsafe { libc::read(read_fd, (&mut b as *mut u8).cast(), 1) };
        if n != 1 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        let sig = libc::c_int::from(b);
        let released = crate::release_all();
        tracing::info!(
            signal = sig,
            released,
            "released held session locks on signal"
        );
        let previous = PREVIOUS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, old)) = previous.iter().find(|(s, _)| *s == sig) {
            // SAFETY: restoring the disposition we saved, then re-raising so
            // it takes effect (default action or the application's handler).
            unsafe {
                libc::sigaction(sig, old, std::ptr::null_mut());
                libc::kill(libc::getpid(), sig);
            }
        }
    }
}
