//! `session-lock exec`: hold the lock while a command runs, for exactly as
//! long as anything the command started can write.
//!
//! Two processes of ours take part (see `docs/cli.md`, "exec"):
//!
//! * the **front** (`session-lock exec`, the process the caller started and
//!   may signal or kill) starts the holder in its own process group, relays
//!   SIGTERM/SIGINT/SIGHUP/SIGQUIT sent to it (not the terminal's) to the
//!   holder and exits with its status;
//! * the **holder** (the same binary, shown in `ps` as `session-lock exec:
//!   holder for FILE`) becomes a child subreaper, acquires the lock (the
//!   record names the holder's pid), lets the command inherit the witness
//!   descriptor, runs it **in the front's process group** (the caller's job,
//!   as `flock(1)` does: the terminal's Ctrl-C, Ctrl-Z, `fg` and `kill %1`
//!   reach it as they would without us, and it may read the terminal), and
//!   releases the lock only once the command *and every process it started*
//!   have exited and been reaped.
//!
//! So a SIGKILL of the front leaves the lock held by a live pid and a held
//! witness until the command's whole tree has exited; a SIGKILL of the
//! holder itself still leaves the witness held by the command's tree (the
//! kernel drops a flock only when the last descriptor of it closes), which
//! our contenders honour; only peers that judge by pid alone would then see
//! a dead owner.
//!
//! On max hold, on loss of the lock (the file removed or replaced) and on
//! signals the holder stops the tree first: the signal received is
//! forwarded (followed by SIGCONT, so that a stopped command sees it), max
//! hold and loss send SIGTERM; after SIGTERM or SIGHUP, SIGKILL follows
//! `--kill-after` later; the lock is let go only after the last process is
//! reaped. The holder signals the processes of the tree one by one (its
//! descendants), never a process group: the job's group holds the front,
//! and without job control (a script) the caller's whole script.

use crate::{
    EXIT_CANNOT_RUN, EXIT_IO, EXIT_LOST, EXIT_NOT_FOUND, EXIT_NOT_OBTAINED, acquire_announcing,
    check_transcript, fail,
};
use rustix::process::{Pid, Signal};
use session_lock::{LockOptions, LostReason};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use std::future::Future;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Grace between SIGTERM and SIGKILL when the command must stop (max hold
/// reached, lock lost), unless `--kill-after` says otherwise.
pub(crate) const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(5);

/// The signals the front relays to the holder and the holder forwards to
/// the command's tree.
const FORWARDED: [i32; 4] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT];

/// The environment variable that hands the holder its arguments (JSON): not
/// argv, so that `ps` shows the holder's short title; removed from the
/// command's environment.
pub(crate) const HANDOFF_ENV: &str = "SESSION_LOCK_EXEC_HOLDER";

/// Without inotify events (some network filesystems), the holder still
/// checks that the lock file is its own this often.
const LOSS_RECHECK: Duration = Duration::from_secs(1);

/// After SIGKILL, how often the tree is signalled again while processes of
/// it remain (children reparented to the holder after their parent died).
const KILL_REPEAT: Duration = Duration::from_millis(100);

/// The library's own watchdog is a backstop only: the holder enforces max
/// hold itself (stop the tree, then release). It fires this long after the
/// holder should have finished stopping the tree.
const BACKSTOP_MARGIN: Duration = Duration::from_secs(10);

/// After the command itself exited, how long the holder waits silently for
/// the processes it left behind before saying that it waits.
const LEFTOVER_NOTICE: Duration = Duration::from_secs(1);

/// Everything `exec` needs, resolved from the command line.
#[derive(Debug, Clone)]
pub(crate) struct ExecArgs {
    /// `--backend`, `--lease-ttl`, `--key`, passed on to the holder.
    pub backend: crate::BackendArgs,
    /// The transcript to guard.
    pub file: PathBuf,
    /// How long to wait for the lock (`-w`); `None`: the library default.
    pub timeout: Option<Duration>,
    /// `-w forever`: no deadline.
    pub forever: bool,
    /// Free text for the owner record.
    pub label: Option<String>,
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

/// What the front hands the holder (one JSON argument).
#[derive(serde::Serialize, serde::Deserialize)]
struct HolderArgs {
    /// The front's pid: while the lock is not yet ours, the holder follows
    /// the front into death (a front killed while waiting cancels the run).
    front: u32,
    #[serde(default)]
    backend: crate::BackendArgs,
    /// The transcript's path as bytes: JSON strings are UTF-8, file names
    /// need not be.
    #[serde(with = "path_bytes")]
    file: PathBuf,
    timeout_ms: Option<u64>,
    #[serde(default)]
    forever: bool,
    /// The front's process group: the command joins it (the caller's job).
    group: i32,
    /// The write end of a pipe: one byte on it tells the front that the
    /// command has started (from then on the terminal's signals reach the
    /// command directly, and the front relays them no more).
    started_fd: i32,
    label: Option<String>,
    max_hold_ms: u64,
    kill_after_ms: u64,
    nonblock: bool,
    conflict_exit_code: u8,
    verbose: bool,
    cmd: Vec<String>,
}

/// A path through JSON as its bytes (an array of numbers), so that a
/// non-UTF-8 transcript name reaches the holder unchanged.
mod path_bytes {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::PathBuf;

    pub(super) fn serialize<S: serde::Serializer>(
        p: &std::path::Path,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(p.as_os_str().as_bytes(), s)
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        let bytes: Vec<u8> = serde::Deserialize::deserialize(d)?;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
    }
}

/// `1.5s`, `5s`, `2m`, `250ms` for messages.
fn human(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.as_secs() >= 120 && d.as_secs().is_multiple_of(60) {
        format!("{}m", d.as_secs() / 60)
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The front: start the holder, relay signals to it, exit with its status.
pub(crate) fn run(args: &ExecArgs) -> u8 {
    if let Err(code) = check_transcript(&args.file) {
        return code;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("session-lock: cannot find its own executable to start the holder: {e}");
            return EXIT_IO;
        }
    };
    // Blocked before any thread or child exists, and taken with
    // sigwaitinfo(2) by the relay thread below, which sees each signal's
    // origin. A signal that arrives before the holder exists stays pending
    // and is relayed once its pid is known. (The holder inherits the mask
    // and unblocks them once its own handlers are in place.)
    let set = match block_signals(&FORWARDED) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("session-lock: cannot handle signals: {e}");
            return EXIT_IO;
        }
    };
    let (started_r, started_w) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("session-lock: cannot start the holder process: {e}");
            return EXIT_IO;
        }
    };
    // The holder inherits the write end (no other thread spawns a process
    // meanwhile); the front keeps none of it.
    {
        use std::os::fd::AsRawFd;
        let _ = rustix::io::fcntl_setfd(&started_w, rustix::io::FdFlags::empty());
        let handoff = HolderArgs {
            front: std::process::id(),
            backend: args.backend.clone(),
            file: args.file.clone(),
            timeout_ms: args.timeout.map(ms),
            forever: args.forever,
            group: rustix::process::getpgrp().as_raw_nonzero().get(),
            started_fd: started_w.as_raw_fd(),
            label: args.label.clone(),
            max_hold_ms: ms(args.max_hold),
            kill_after_ms: ms(args.kill_after),
            nonblock: args.nonblock,
            conflict_exit_code: args.conflict_exit_code,
            verbose: args.verbose,
            cmd: args.cmd.clone(),
        };
        let json = match serde_json::to_string(&handoff) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("session-lock: cannot pass the command to the holder: {e}");
                return EXIT_IO;
            }
        };
        // Its own process group: the job's signals (Ctrl-C, `kill %1`,
        // `kill -9 %1`) reach the front and the command, never the holder,
        // which must outlive both to stop the tree and release the lock.
        let spawned = std::process::Command::new(&exe)
            .arg0(holder_title(&args.file))
            .env(HANDOFF_ENV, json)
            .process_group(0)
            .spawn();
        drop(started_w);
        match spawned {
            Ok(c) => run_front(c, started_r, set),
            Err(e) => {
                eprintln!("session-lock: cannot start the holder process: {e}");
                EXIT_IO
            }
        }
    }
}

/// The holder's title in `ps`: `session-lock exec: holder for FILE` (the
/// path as the user gave it).
fn holder_title(file: &Path) -> String {
    format!("session-lock exec: holder for {}", file.display())
}

/// The front's wait: relay signals sent to it to the holder, exit with the
/// holder's status.
fn run_front(
    mut holder: std::process::Child,
    started_r: std::io::PipeReader,
    set: libc::sigset_t,
) -> u8 {
    use std::sync::atomic::{AtomicBool, Ordering};
    let started = std::sync::Arc::new(AtomicBool::new(false));
    {
        let started = started.clone();
        let mut r = started_r;
        std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            if matches!(std::io::Read::read(&mut r, &mut byte), Ok(1)) {
                started.store(true, Ordering::Release);
            }
        });
    }
    let holder_pid = Pid::from_raw(holder.id() as i32);
    std::thread::spawn(move || {
        loop {
            let Some((sig, from_terminal)) = wait_signal(&set) else {
                continue;
            };
            // Once the command runs in our process group, the terminal's
            // signals (Ctrl-C, Ctrl-\, a hangup) reach it directly: relaying
            // them would deliver them twice. Before that, they cancel the run.
            if from_terminal && started.load(Ordering::Acquire) {
                continue;
            }
            if let (Some(pid), Some(sig)) = (holder_pid, Signal::from_named_raw(sig)) {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    });
    match holder.wait() {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => u8::try_from(c).unwrap_or(1),
            (None, Some(sig)) => 128u8.saturating_add(sig as u8),
            _ => 1,
        },
        Err(e) => {
            eprintln!("session-lock: waiting for the holder process failed: {e}");
            EXIT_IO
        }
    }
}

/// Block `sigs` in the calling thread (and the threads it starts later).
fn block_signals(sigs: &[i32]) -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set;
    // pthread_sigmask reads it and changes only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

/// Unblock `sigs` in the calling thread (and the processes it starts).
fn unblock_signals(sigs: &[i32]) -> std::io::Result<()> {
    // SAFETY: as in `block_signals`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// Take one signal of `set` (blocked in every thread): the signal, and
/// whether the kernel sent it for the terminal (`SI_KERNEL`: Ctrl-C,
/// Ctrl-\, a hangup), as opposed to kill(2) by a process. `None` on EINTR.
fn wait_signal(set: &libc::sigset_t) -> Option<(i32, bool)> {
    // SAFETY: `info` is written by sigwaitinfo before it is read; `set` is
    // an initialised signal set.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let sig = libc::sigwaitinfo(set, &mut info);
        (sig > 0).then_some((sig, info.si_code == libc::SI_KERNEL))
    }
}

/// What the holder's main loop hears about.
enum Event {
    /// The command itself (the direct child) ended.
    CommandExited(std::process::ExitStatus),
    /// No child of the holder is left: the command and everything it started
    /// (reparented to the holder, a subreaper) have been reaped.
    TreeGone,
    /// The lock is no longer ours.
    Lost(LostReason),
    /// A signal to forward.
    Signal(i32),
}

/// Why the holder is stopping the command's tree.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    MaxHold,
    Lost,
    /// SIGTERM or SIGHUP was forwarded: the command's own status counts.
    Signal,
}

/// The holder (`session-lock` started by the front with its arguments in
/// [`HANDOFF_ENV`]).
pub(crate) fn holder(json: &str) -> u8 {
    let args: HolderArgs = match serde_json::from_str(json) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "session-lock: {HANDOFF_ENV} is internal to `session-lock exec`; unset it ({e})"
            );
            return 2;
        }
    };
    // The front's end of the "started" pipe: never inherited by the command.
    let started_pipe = take_inherited_fd(args.started_fd);
    // Until the command starts, the front's death cancels the run (a
    // `timeout -s KILL` around a waiting `exec` must not run the command
    // later); from the start on, the holder outlives the front.
    let follow_front = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    if follow_front.is_err()
        || rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(args.front)
    {
        return 128 + 9;
    }
    // Orphans of the command's tree are reparented to us, so we can wait
    // for all of them before letting the lock go.
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        eprintln!("session-lock: cannot become a child subreaper: {e}");
        return EXIT_IO;
    }
    let (tx, rx) = mpsc::channel::<Event>();
    let signals = match signal_hook::iterator::Signals::new(FORWARDED) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("session-lock: cannot handle signals: {e}");
            return EXIT_IO;
        }
    };
    let sig_handle = signals.handle();
    // The front blocks these signals (to take them with sigwaitinfo) and
    // the mask is inherited: unblocked here, once our handlers are in place
    // (one that was pending is now taken by them), so that the command
    // starts with them unblocked too.
    if let Err(e) = unblock_signals(&FORWARDED) {
        eprintln!("session-lock: cannot handle signals: {e}");
        return EXIT_IO;
    }
    // Until the command is started, a signal ends the holder at once (a
    // record published in between names a dead pid and a free witness:
    // reclaimable at once); afterwards it is forwarded to the command.
    let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let tx = tx.clone();
        let started = started.clone();
        let mut signals = signals;
        std::thread::spawn(move || {
            for sig in signals.forever() {
                if !started.load(std::sync::atomic::Ordering::Acquire) {
                    std::process::exit(128 + sig);
                }
                if tx.send(Event::Signal(sig)).is_err() {
                    break;
                }
            }
        });
    }
    let max_hold = Duration::from_millis(args.max_hold_ms);
    let kill_after = Duration::from_millis(args.kill_after_ms);
    let backend = match args.backend.resolve() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("session-lock: {e}");
            return 2;
        }
    };
    let mut opts = LockOptions::new().with_backend(backend).with_max_hold(
        max_hold
            .saturating_add(kill_after)
            .saturating_add(BACKSTOP_MARGIN),
    );
    if args.forever {
        opts = opts.without_timeout();
    } else if let Some(t) = args.timeout_ms {
        opts = opts.with_timeout(Duration::from_millis(t));
    }
    if let Some(l) = &args.label {
        opts = opts.with_label(l.clone());
    }
    let file = &args.file;
    crate::remember_shown(file);
    let asked = Instant::now();
    let acquired = if args.nonblock {
        session_lock::try_acquire_with(file, &opts)
    } else {
        acquire_announcing(file, &opts)
    };
    let guard = match acquired {
        Ok(g) => g,
        Err(e) => {
            let code = fail(&e);
            return if code == EXIT_NOT_OBTAINED {
                args.conflict_exit_code
            } else {
                code
            };
        }
    };
    if args.verbose {
        crate::report_acquired(file, &guard, asked.elapsed(), std::process::id());
    }
    // The command writes the transcript itself: a line torn by a writer
    // before it is moved out first (the library warns where it went).
    if let Err(e) = guard.repair_torn_tail() {
        return fail(&e);
    }
    if let Err(e) = guard.share_with_children() {
        return fail(&e);
    }
    started.store(true, std::sync::atomic::Ordering::Release);
    if let Err(e) = rustix::process::set_parent_process_death_signal(None) {
        eprintln!("session-lock: cannot detach the holder from the front: {e}");
        return EXIT_IO;
    }
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(args.front) {
        // The front died before we detached: the run is cancelled.
        return 128 + 9;
    }
    // The command joins the front's process group, the caller's job (as
    // with flock(1)). That group is gone only if the front is (it has just
    // been seen alive): then a group of its own.
    let command = |group: i32| {
        std::process::Command::new(&args.cmd[0])
            .args(&args.cmd[1..])
            .env_remove(HANDOFF_ENV)
            .process_group(group)
            .spawn()
    };
    let spawned = match command(args.group) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => command(0),
        other => other,
    };
    if let Some(mut pipe) = started_pipe {
        // The front stops relaying the terminal's signals from here on.
        let _ = std::io::Write::write_all(&mut pipe, b"s");
    }
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!("session-lock: cannot run {:?}: {e}", args.cmd[0]);
            drop(guard);
            return if e.kind() == std::io::ErrorKind::NotFound {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_RUN
            };
        }
    };
    let _ = guard.keep_from_children();
    let Some(command_pid) = Pid::from_raw(child.id() as i32) else {
        return EXIT_IO;
    };
    // The child is reaped by the reaper thread below (wait for any child),
    // never through `Child`.
    drop(child);
    spawn_reaper(command_pid, tx.clone());
    // Every backend's guard learns of the losses it sees itself (etcd: a
    // lease past its local deadline, its key deleted; both: a forced
    // release). A lock file removed or replaced by someone else is seen
    // by watching it.
    spawn_lost_wait(guard.lost(), tx.clone());
    if matches!(opts.backend(), session_lock::Backend::File) {
        spawn_loss_watch(guard.lock_path(), tx.clone());
    }
    let code = supervise(&args, max_hold, kill_after, &rx);
    sig_handle.close();
    let released = guard.release();
    match (code, released) {
        (Supervised::Lost, _) => EXIT_LOST,
        (Supervised::MaxHold, Ok(())) => EXIT_LOST,
        (_, Err(e)) => {
            fail(&e);
            EXIT_LOST
        }
        (Supervised::Exited(status), Ok(())) => {
            if args.verbose {
                eprintln!(
                    "session-lock: released the lock on {}",
                    crate::shown_lock(file)
                );
            }
            match (status.code(), status.signal()) {
                (Some(c), _) => c as u8,
                (None, Some(sig)) => 128u8.saturating_add(sig as u8),
                _ => 1,
            }
        }
    }
}

enum Supervised {
    Exited(std::process::ExitStatus),
    MaxHold,
    Lost,
}

/// Wait for the command's tree to end, stopping it on max hold, loss or
/// signal. Returns once every process of the tree has been reaped.
fn supervise(
    args: &HolderArgs,
    max_hold: Duration,
    kill_after: Duration,
    rx: &mpsc::Receiver<Event>,
) -> Supervised {
    let deadline = Instant::now() + max_hold;
    let mut stopping: Option<(Stop, Instant)> = None;
    let mut killing = false;
    let mut status = None;
    let mut notice_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wake = match (stopping, killing) {
            (_, true) => now + KILL_REPEAT,
            (Some((_, kill_at)), false) => kill_at,
            (None, _) => notice_at.map_or(deadline, |n| n.min(deadline)),
        };
        match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(Event::CommandExited(s)) => {
                status = Some(s);
                if stopping.is_none_or(|(why, _)| why == Stop::Signal) {
                    notice_at = Some(Instant::now() + LEFTOVER_NOTICE);
                }
            }
            Ok(Event::TreeGone) => break,
            Ok(Event::Lost(reason)) => {
                if stopping.is_none_or(|(why, _)| why != Stop::Lost) {
                    eprintln!(
                        "session-lock: lost the lock on {} ({reason}); stopping the command",
                        crate::shown_lock(&args.file)
                    );
                    signal_tree(Signal::TERM);
                    stopping = Some((Stop::Lost, Instant::now() + kill_after));
                }
            }
            Ok(Event::Signal(sig)) => {
                if let Some(sig) = Signal::from_named_raw(sig) {
                    signal_tree(sig);
                }
                // SIGTERM and SIGHUP mean "end": a command that ignores them
                // is killed after the grace, as on max hold (a stopped one
                // was continued by signal_tree and ends now).
                if (sig == SIGTERM || sig == SIGHUP) && stopping.is_none() {
                    stopping = Some((Stop::Signal, Instant::now() + kill_after));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                if killing {
                    signal_tree(Signal::KILL);
                } else if let Some((_, kill_at)) = stopping {
                    if now >= kill_at {
                        eprintln!(
                            "session-lock: the command did not stop within {}; killing it",
                            human(kill_after)
                        );
                        signal_tree(Signal::KILL);
                        killing = true;
                    }
                } else if now >= deadline {
                    eprintln!(
                        "session-lock: max hold {} reached on {}; stopping the command",
                        human(max_hold),
                        crate::shown_lock(&args.file)
                    );
                    signal_tree(Signal::TERM);
                    stopping = Some((Stop::MaxHold, now + kill_after));
                } else if notice_at.is_some_and(|n| now >= n) {
                    notice_at = None;
                    eprintln!(
                        "session-lock: {:?} exited; waiting for the processes it started (they may still write, so they keep the lock on {})",
                        args.cmd[0],
                        crate::shown_lock(&args.file)
                    );
                }
            }
        }
    }
    match stopping {
        Some((Stop::Lost, _)) => Supervised::Lost,
        Some((Stop::MaxHold, _)) => Supervised::MaxHold,
        Some((Stop::Signal, _)) | None => match status {
            Some(s) => Supervised::Exited(s),
            None => Supervised::Lost,
        },
    }
}

/// Signal every process of the command's tree: the holder's descendants
/// (orphans of the tree are reparented to the holder, a subreaper). Never a
/// process group: the command's is the caller's job, with the front in it,
/// and without job control the caller's whole script. Two rounds, so that a
/// child forked while the first was under way is reached too. Any signal
/// but SIGKILL and SIGCONT is followed by SIGCONT, so that a stopped
/// process sees it (as timeout(1) does).
fn signal_tree(sig: Signal) {
    let me = std::process::id();
    for sig in [sig, Signal::CONT] {
        for _ in 0..2 {
            for pid in descendants_of(me) {
                if let Some(pid) = Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(pid, sig);
                }
            }
        }
        if sig == Signal::KILL || sig == Signal::CONT {
            break;
        }
    }
}

/// Every descendant of `root` (from the parent pids in `/proc/*/stat`).
fn descendants_of(root: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let t = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces and ')'.
            let after = t.get(t.rfind(')')? + 1..)?;
            let ppid = after.split_whitespace().nth(1)?.parse::<u32>().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, _) in parents.iter().filter(|(_, ppid)| *ppid == p) {
            if !out.contains(&pid) {
                out.push(pid);
                frontier.push(pid);
            }
        }
    }
    out
}

/// Own an inherited descriptor by number, with close-on-exec set so that
/// the command does not inherit it. `None` if `fd` is not open.
fn take_inherited_fd(fd: i32) -> Option<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only asks whether `fd` is open; nothing else in this
    // process owns it (the front passed it to us, and the holder opens it
    // here once, before any other descriptor is made from the number).
    unsafe {
        if fd < 3 || libc::fcntl(fd, libc::F_GETFD) < 0 {
            return None;
        }
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        Some(std::fs::File::from_raw_fd(fd))
    }
}

/// Reap every child (we are a subreaper, so that includes orphaned
/// descendants of the command); report the command's own status, then
/// `TreeGone` when no child is left.
fn spawn_reaper(command: Pid, tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        loop {
            match rustix::process::wait(rustix::process::WaitOptions::empty()) {
                Ok(Some((pid, status))) => {
                    if pid == command {
                        let raw = std::process::ExitStatus::from_raw(status.as_raw());
                        let _ = tx.send(Event::CommandExited(raw));
                    }
                }
                Ok(None) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => {
                    // ECHILD: nothing left to wait for.
                    let _ = tx.send(Event::TreeGone);
                    return;
                }
            }
        }
    });
}

/// Watch the lock's directory (inotify) and report a loss as soon as the
/// lock path is removed or names another file; without events, look every
/// [`LOSS_RECHECK`]. It judges by the file's identity alone, so it needs no
/// access to the guard (the main loop confirms with `check`). A forced
/// release by the library's watchdog (the backstop) unlinks the file and is
/// seen here too.
fn spawn_loss_watch(lock: &Path, tx: mpsc::Sender<Event>) {
    use std::os::unix::fs::MetadataExt;
    let identity = |m: &std::fs::Metadata| (m.dev(), m.ino());
    let lock = lock.to_owned();
    let Ok(ours) = std::fs::symlink_metadata(&lock).map(|m| identity(&m)) else {
        let _ = tx.send(Event::Lost(LostReason::Removed));
        return;
    };
    std::thread::spawn(move || {
        let watch = LockDirWatch::new(&lock);
        loop {
            let now = match std::fs::symlink_metadata(&lock) {
                Ok(m) if identity(&m) == ours => None,
                Ok(_) => Some(LostReason::Replaced),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(LostReason::Removed),
                // Cannot tell (EACCES, EIO): keep holding, as `check` does.
                Err(_) => None,
            };
            if let Some(reason) = now {
                let _ = tx.send(Event::Lost(reason));
                return;
            }
            match &watch {
                Some(w) => w.wait(LOSS_RECHECK),
                None => std::thread::sleep(LOSS_RECHECK),
            }
        }
    });
}

/// Report the guard's loss (any backend): block this thread on
/// [`LockGuard::lost`] with a waker that unparks it.
fn spawn_lost_wait(lost: session_lock::Lost, tx: mpsc::Sender<Event>) {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    std::thread::spawn(move || {
        let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut lost = std::pin::pin!(lost);
        let reason = loop {
            if let std::task::Poll::Ready(r) = lost.as_mut().poll(&mut cx) {
                break r;
            }
            std::thread::park();
        };
        let _ = tx.send(Event::Lost(reason));
    });
}

/// The lock's directory under inotify, filtered to the lock's own name.
struct LockDirWatch {
    fd: rustix::fd::OwnedFd,
    name: std::ffi::OsString,
}

impl LockDirWatch {
    fn new(lock: &Path) -> Option<LockDirWatch> {
        use rustix::fs::inotify;
        let dir = lock.parent()?;
        let name = lock.file_name()?.to_owned();
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC).ok()?;
        let mask = inotify::WatchFlags::DELETE
            | inotify::WatchFlags::MOVED_FROM
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::CREATE
            | inotify::WatchFlags::DELETE_SELF
            | inotify::WatchFlags::MOVE_SELF
            | inotify::WatchFlags::ONLYDIR;
        inotify::add_watch(&fd, dir, mask).ok()?;
        Some(LockDirWatch { fd, name })
    }

    /// Sleep until an event about the lock's name (or the directory itself)
    /// arrives, or `timeout` passes.
    fn wait(&self, timeout: Duration) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let ts = Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(n) if n > 0 => {
                    if self.relevant() {
                        return;
                    }
                }
                Ok(_) => return,
                Err(_) => return,
            }
        }
    }

    /// Read the queued events; whether one concerns our name or the
    /// directory itself.
    fn relevant(&self) -> bool {
        use rustix::fs::inotify;
        use std::os::unix::ffi::OsStrExt;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        let mut relevant = false;
        // One read's worth: `poll` said at least one event is queued.
        while let Ok(ev) = reader.next() {
            let name_matches = ev
                .file_name()
                .is_some_and(|n| n.to_bytes() == self.name.as_bytes());
            if name_matches
                || ev.events().intersects(
                    inotify::ReadFlags::DELETE_SELF
                        | inotify::ReadFlags::MOVE_SELF
                        | inotify::ReadFlags::IGNORED
                        | inotify::ReadFlags::QUEUE_OVERFLOW,
                )
            {
                relevant = true;
            }
            if reader.is_buffer_empty() {
                break;
            }
        }
        relevant
    }
}
