//! `session-lock exec`: hold the lock while a command runs.

use crate::{
    EXIT_CANNOT_RUN, EXIT_IO, EXIT_LOST, EXIT_NOT_FOUND, acquire_announcing, check_transcript, fail,
};
use session_lock::LockOptions;
use std::path::PathBuf;
use std::time::Duration;

/// Grace between SIGTERM and SIGKILL when the command must stop (max hold
/// reached, lock lost), unless `--kill-after` says otherwise.
pub(crate) const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(5);

/// Everything `exec` needs, resolved from the command line.
#[derive(Debug, Clone)]
pub(crate) struct ExecArgs {
    /// The transcript to guard.
    pub file: PathBuf,
    /// Timeout (`-w`), label; `max_hold` is enforced by `exec` itself.
    pub opts: LockOptions,
    /// How long the command may hold the lock before it is stopped.
    pub max_hold: Duration,
    /// SIGTERM -> SIGKILL grace when the command must stop.
    pub kill_after: Duration,
    /// `-n`: fail at once if the lock is held.
    pub nonblock: bool,
    /// Exit code when the lock could not be obtained (`-E`).
    pub conflict_exit_code: u8,
    /// `--verbose`: say when the lock is obtained and released.
    pub verbose: bool,
    /// The command and its arguments (`-c STR` is `sh -c STR`).
    pub cmd: Vec<String>,
}

pub(crate) fn run(args: &ExecArgs) -> u8 {
    let (file, cmd) = (&args.file, &args.cmd);
    let opts = args.opts.clone().max_hold(args.max_hold);
    let opts = &opts;
    if let Err(code) = check_transcript(file) {
        return code;
    }
    let acquired = if args.nonblock {
        session_lock::try_acquire(file, opts)
    } else {
        acquire_announcing(file, opts)
    };
    let guard = match acquired {
        Ok(g) => g,
        Err(e) => {
            let code = fail(&e);
            return if code == crate::EXIT_NOT_OBTAINED {
                args.conflict_exit_code
            } else {
                code
            };
        }
    };
    if args.verbose {
        eprintln!("session-lock: got the lock on {}", file.display());
    }
    let _ = args.kill_after; // TODO(issue 10): SIGTERM, then SIGKILL after this grace
    let mut child = match std::process::Command::new(&cmd[0]).args(&cmd[1..]).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("session-lock: cannot run {:?}: {e}", cmd[0]);
            return if e.kind() == std::io::ErrorKind::NotFound {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_RUN
            };
        }
    };
    let child_pid = child.id();
    // If the lock is lost (watchdog, replaced), the command is no longer
    // protected: terminate it rather than let it write unguarded.
    let done = std::sync::atomic::AtomicBool::new(false);
    let (status, reason) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                if let Some(reason) = guard.wait_lost(Some(Duration::from_millis(50))) {
                    eprintln!(
                        "session-lock: lost the lock on {} ({reason}); terminating the command",
                        file.display()
                    );
                    // SAFETY: plain kill(2) on our own child's pid.
                    unsafe { libc::kill(child_pid as libc::pid_t, libc::SIGTERM) };
                    return Some(reason);
                }
            }
            None
        });
        let status = child.wait();
        done.store(true, std::sync::atomic::Ordering::Release);
        (status, watcher.join().ok().flatten())
    });
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            eprintln!("session-lock: waiting for the command failed: {e}");
            return EXIT_IO;
        }
    };
    if reason.is_some() {
        return EXIT_LOST;
    }
    drop(guard);
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => 128u8.saturating_add(sig as u8),
        _ => 1,
    }
}
