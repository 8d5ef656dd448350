//! # session-lock
//!
//! A cross-process write lock for append-only session transcripts
//! (`*.jsonl`), and a classifier that turns session activity (lock
//! ownership included) into `session.long_running` / `session.stalled` /
//! `session.stuck`.
//!
//! Each transcript `T` is guarded by a sidecar lock file `T.lock` holding a
//! JSON owner record compatible with the reference implementation
//! (OpenClaw). While it holds the lock, the owner also holds an exclusive
//! `flock` on the lock file's inode: the *kernel witness*. The kernel drops
//! it the instant the owner dies, so "is the witness free?" answers "is the
//! owner alive?" with no pid guessing and no clocks.
//!
//! ```
//! use session_lock::{acquire_with, LockOptions};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir()?;
//! let transcript = dir.path().join("agent-42.jsonl");
//! let opts = LockOptions::new().with_timeout(Duration::from_secs(10)).with_label("worker");
//! let guard = acquire_with(&transcript, &opts)?;
//! guard.append_line(r#"{"type":"turn","text":"hello"}"#)?; // refused if the lock was lost
//! guard.release()?;
//! assert_eq!(std::fs::read_to_string(&transcript)?, "{\"type\":\"turn\",\"text\":\"hello\"}\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Guarantees
//!
//! 1. **Mutual exclusion**: at no instant do two live guards exist for one
//!    target, across threads, tasks and processes, including while stale
//!    locks are reclaimed by many contenders at once.
//! 2. **No theft from the living**: a lock whose owner is alive (same host)
//!    is never removed; EPERM and "unknown" mean alive. Old live holders are
//!    *reported* (`too-old`, `hold-exceeded`), never removed.
//! 3. **Crash recovery**: a dead owner's lock is taken over by the next
//!    contender at once (woken by the kernel), without human action.
//! 4. **Never payload-less by our hand**: the record is written to a file
//!    that does not have the lock file's name yet (on Linux an unnamed
//!    `O_TMPFILE` file, else a private temp file), witnessed, then published
//!    without clobbering with `linkat(2)`, `renameat2(RENAME_NOREPLACE)` or
//!    `link(2)`. The one exception is the last-resort fallback for
//!    filesystems with neither rename-noreplace nor hard links (some FUSE and
//!    SMB mounts): there the lock file is created first and the record
//!    written right after, so it is empty for that moment. Empty, malformed
//!    or pid-less lock files are reclaimed only once their mtime is older
//!    than the 5 s orphan grace.
//! 5. **Release removes only our own file**: release, drop and forced
//!    release unlink the lock path only if it still names our inode.
//! 6. **A holder learns it lost the lock** ([`LockGuard::check`],
//!    [`LockGuard::wait_lost`], [`LockGuard::lost`]), and
//!    [`LockGuard::append_line`] refuses to write after a loss.
//! 7. **Bounded**: every wait honours its timeout; a FIFO, directory, socket
//!    or symlink at the lock path is an error ([`ErrorKind::NotAFile`]),
//!    never followed and never a hang; reads are capped at 64 KiB.
//! 8. **Async never blocks the runtime** (feature `tokio`): the async API
//!    yields before every synchronous inspection and waits on inotify
//!    readiness, not on a blocking-pool thread.
//! 9. **Whole lines**: before a hold's first append, a torn last line left
//!    by a writer that died mid-line is moved to `<transcript>.torn-<time>`;
//!    a failed write of ours is cut back off; the new holder learns what it
//!    took over ([`LockGuard::takeover`]).
//!
//! ## Files, threads and descriptors
//!
//! Next to a transcript `T`: `T.lock` while someone holds the lock,
//! `T.lock.queue` while blocking contenders queue (it goes with its last
//! user: an uncontended hold makes none), between a
//! process's holds its hidden witness slot `.T.lock.w<N>.tmp` (removed by
//! [`close_idle`]), and `T.torn-<time>` when a torn last line was moved out
//! (the application's data, never removed). Threads: one watchdog thread
//! per process (started by the first hold, again in a forked child), and a
//! small pool of `session-lock-queue` helpers that block in the queue's
//! `flock` for blocking waiters (they exit after 10 s idle). Descriptors:
//! one per held lock, plus bounded caches for the whole process (32
//! transcripts, 32 queue spares, 64 parked slots, the waiters' inotify
//! instances); release closes a hold's descriptors and [`close_idle`] the
//! idle caches; see the README, "Descriptors".
//!
//! ## Hazards
//!
//! * The lock is **advisory**: it excludes cooperating processes only. A
//!   process that writes the transcript without the lock, or deletes lock
//!   files by hand, is not stopped (a deleted lock is *detected* by the
//!   holder's next [`LockGuard::check`] or append).
//! * A holder past its max hold (default 5 min) is force-released by the
//!   watchdog thread; code that writes the transcript by other means than
//!   the guard must call [`LockGuard::check`] first.
//! * A second `acquire` of a lock that another guard of this process holds
//!   waits for that guard's release, woken in-process, whatever thread or
//!   task holds the guard now (guards are `Send`: no error can prove that
//!   waiting is futile). So a thread that acquires a lock it still holds
//!   itself waits until its timeout (a warning says so when it starts);
//!   use [`LockGuard::nested`] for re-entrancy.
//! * After `fork(2)` the child holds none of the parent's locks: its copies
//!   of the parent's guards report [`LostReason::Inherited`], refuse to
//!   write and remove nothing when dropped; the child acquires (and gets a
//!   watchdog and queue helpers of its own) like any other process.
//! * Host names must be unique among hosts sharing a directory: a record from
//!   another host (a different host name, and not the boot id of this
//!   kernel) is never judged by pid, only by the witness and by age. A
//!   record with this kernel's boot id is local whatever its host name
//!   (containers).
//!
//! ## Platform notes
//!
//! Linux is the primary platform, and the only one built and tested
//! (`O_TMPFILE` + `linkat`, `renameat2`, `/proc` start times, boot id,
//! inotify). Other Unixes are meant to publish with `link(2)`, have no
//! start-time or boot-id checks, and wait with a short backoff instead of
//! inotify. Other platforms (Windows) are meant to compile against a seam
//! whose every lock operation returns [`ErrorKind::Unsupported`]. Neither is
//! verified: no target other than Linux is installed on the build machine,
//! so they are not even known to compile, and the `session-lock` binary is
//! Unix-only. See `docs/platforms.md`.
//!
//! Everything OS-specific is behind one internal seam (`src/sys/`, one
//! module per platform); the rest of the crate is platform-independent.
//!
//! ## Unsafe code
//!
//! The library denies `unsafe_code` and makes its system calls through
//! `rustix` and `std`. One module is exempt: the `sigaction(2)` code of
//! the `signals` feature (`src/sys/unix/signals.rs`, three `unsafe` blocks:
//! building a `sigaction`, calling `sigaction(2)`, borrowing the
//! notification socket's descriptor inside the signal handler). It exists
//! because the cleanup must know whether a handler was installed after its
//! own (then the signal is left to it) and `signal-hook`, the safe
//! alternative, cannot tell; see the `signals` module docs. Without the
//! `signals` feature the library is `#![forbid(unsafe_code)]`.

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The one exemption is `sys/unix/signals.rs` (see "Unsafe code" above).
#![cfg_attr(feature = "signals", deny(unsafe_code))]
#![cfg_attr(not(feature = "signals"), forbid(unsafe_code))]

pub mod attention;
mod backend;
mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "fault-injection")]
pub mod fault;
#[cfg(not(feature = "fault-injection"))]
mod fault;
mod file;
mod front;
mod guard;
mod hold_state;
mod identity;
mod options;
mod paths;
pub mod record;
mod registry;
#[cfg(feature = "signals")]
#[cfg_attr(docsrs, doc(cfg(feature = "signals")))]
pub mod signals;
pub use file::sweep;
mod sys;
mod time;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;
mod transcript;
mod verdict;
mod watchdog;

pub use attention::recovery::{lock_activity, lock_attention};
pub use backend::Backend;
pub use error::{Error, ErrorKind, LostReason, Owner, Result};
pub use file::held::{APPEND_GRACE, close_idle};
pub use file::inspect::{Inspection, Reason, Verdict, Witness};
pub use file::{
    GuardProblem, GuardReport, RECLAIM_GUARD_ABANDONED, WaitWakeups, guard_report, inspect,
    wait_wakeups,
};
pub use front::{acquire, acquire_with, release_all, try_acquire, try_acquire_with};
pub use guard::{LockGuard, Lost};
pub use options::{
    DEFAULT_MAX_HOLD, DEFAULT_ORPHAN_GRACE, DEFAULT_STALE, DEFAULT_TIMEOUT, LockOptions,
    MAX_HOLD_CAP, MAX_HOLD_GRACE, max_hold_from_timeout,
};
pub use paths::LockPaths;
pub use time::{DURATION_SYNTAX, parse_duration};
pub use transcript::{Takeover, TornTail};

// The test hooks cannot be switched on by accident: the `fault-injection`
// feature compiles only with `SESSION_LOCK_TEST_HOOKS` set at build time,
// which this repository's `.cargo/config.toml` does for its own builds and
// a dependent crate's build does not.
#[cfg(feature = "fault-injection")]
const _: () = assert!(
    option_env!("SESSION_LOCK_TEST_HOOKS").is_some(),
    "session-lock's `fault-injection` feature is for its own test suite (it lets the environment make writes fail): turn it off, or set SESSION_LOCK_TEST_HOOKS at build time if you really mean it"
);

/// Testing only (feature `fault-injection`, never in production builds):
/// the pure decision function and its inputs, for property tests, and
/// counters that prove waits are woken by the kernel.
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod __private {
    pub use crate::file::inspect::{
        Facts, PidFacts, Policy, SelfIdentity, decide, needs_pid_probe, record_age,
    };
    pub use crate::file::wait::SAFETY_RECHECK;
    pub use crate::sys::PidState;
    pub use crate::watchdog::armed_count;
    /// Waits ended (by an event, by the timer) so far on this thread.
    pub fn wait_wakeups() -> (u64, u64) {
        crate::file::WAKES.with(|w| w.get())
    }
    /// Transcript descriptors kept open between appends, process-wide.
    pub fn cached_transcripts() -> usize {
        crate::transcript::cached()
    }
    /// Acquire-loop steps taken so far in this process.
    pub fn acquire_steps() -> u64 {
        crate::file::STEPS.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Waits ended (by an event, by the timer) so far on all threads of
    /// this process (async waiters are counted on their worker's thread).
    pub fn all_wait_wakeups() -> (u64, u64) {
        let w = crate::file::wait_wakeups();
        (w.by_event, w.by_recheck)
    }
    /// Run `f` on this process's etcd thread (where a guard whose caller
    /// went away is dropped: see `etcd::run_async`); `false` if that
    /// thread cannot be started.
    #[cfg(feature = "etcd")]
    pub fn run_on_etcd_thread(
        cfg: &crate::etcd::EtcdBackend,
        f: impl FnOnce() + Send + 'static,
    ) -> bool {
        crate::etcd::testing::run_on_etcd_thread(cfg, f)
    }
    pub use crate::file::wait::MAX_IDLE_WATCHES;
    pub use crate::file::wait::testing::{
        force_no_inotify, inject_overflow, local_instances, local_instances_made,
    };
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

// The guard may move to another thread or task and be shared; options and
// errors cross threads too. Checked at compile time.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<LockGuard>();
    send_sync::<LockOptions>();
    send_sync::<Error>();
    send_sync::<Inspection>();
};
