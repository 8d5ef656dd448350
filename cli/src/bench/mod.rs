//! `session-lock bench`: this crate's numbers next to baselines measured in
//! the same run, on the same directory.
//!
//! Phases (each prints a progress line to stderr):
//!
//! 1. **uncontended**: `acquire_with` + `release`, against the raw floor
//!    (exclusive create + write one record-sized line + close + unlink).
//! 2. **handoff**: two processes. A holds the lock, B blocks in acquire, A
//!    releases; latency = the moment B's acquire returns minus the moment A
//!    called release (`CLOCK_MONOTONIC` nanoseconds, passed over a pipe).
//!    Same shape for a raw `flock` handoff on a persistent file and for the
//!    reference's polling algorithm (exclusive create, on failure sleep
//!    50 ms x attempt, capped at 1 s), and for a raw inotify wait (B polls
//!    an inotify watch on the directory with a timeout, A unlinks a file):
//!    the floor of any waiter that must honour a deadline, which a
//!    blocking `flock` cannot.
//! 3. **inspect**: [`session_lock::inspect`] on a lock held by a live child,
//!    against read + `serde_json` parse + `kill(pid, 0)` + the start time
//!    from `/proc/<pid>/stat`.
//! 4. **throughput**: N processes doing guarded cycles (acquire, append one
//!    line, release, pause 100 us) for a fixed time, against a raw
//!    `flock`-guarded `O_APPEND` loop. The shared file is then checked line
//!    by line, and an atomic counter in a shared mapping detects any overlap
//!    of two critical sections. Each of our workers also reports how often
//!    its acquire loop woke up (the library's own count: a grant of the
//!    lock's queue, an inotify event, a re-check timer), summed into
//!    `wakeups_per_release` (one release per cycle).
//! 5. **async** (`session_lock::tokio`): lateness of a 1 ms interval ticker on a
//!    current-thread runtime while 100 tasks contend for one lock, and of
//!    the same ticker alone; the target is on the difference.
//!
//! The targets are judged on ratios within one run and
//! reported, never enforced: handoff p50 <= 4x flock, uncontended <= 1.5x
//! raw, throughput >= 0.5x the flock loop at every N, max wait at N=16 <=
//! 3x the flock loop's, wake-ups per release at N=16 <= 2, 100 tasks add
//! < 1 ms to the ticker's max lateness; the polling baseline stays.
//!
//! Child processes are this same executable, re-run as
//! `session-lock bench --child <role> ...` (hidden arguments); they talk to
//! the parent over their stdin/stdout, one line per message.

mod async_phase;
mod check;
mod child;
#[cfg(feature = "etcd")]
pub(crate) mod etcd;
mod handoff;
mod inspect;
mod peer;
mod raw;
mod report;
mod stats;
mod throughput;
mod uncontended;

use report::Report;
use session_lock::LockOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `session-lock bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Directory to run in: a fresh subdirectory of it is used and removed
    /// afterwards (default: the system temp directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Short run (under 30 s on 2 cores).
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Internal: run as one of the bench's child processes.
    #[arg(long, hide = true, value_enum)]
    pub child: Option<ChildRole>,
    /// Internal: the transcript (or lock file) a child works on.
    #[arg(long, hide = true)]
    pub target: Option<PathBuf>,
    /// Internal: the shared overlap counter of a throughput child.
    #[arg(long, hide = true)]
    pub shm: Option<PathBuf>,
    /// Internal: a throughput child's id (its lines carry it).
    #[arg(long, hide = true, default_value_t = 0)]
    pub id: u64,
    /// Internal: how long a throughput child runs, in milliseconds.
    #[arg(long, hide = true, default_value_t = 1000)]
    pub duration_ms: u64,
    /// Internal: pause between release and the next acquire, in microseconds.
    #[arg(long, hide = true, default_value_t = 100)]
    pub pause_us: u64,
}

/// What a bench child process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChildRole {
    /// Handoff waiter (B) using this crate.
    #[value(name = "handoff-ours")]
    HandoffOurs,
    /// Handoff waiter (B) using a raw `flock` on a persistent file.
    #[value(name = "handoff-flock")]
    HandoffFlock,
    /// Handoff waiter (B) using the reference's polling algorithm.
    #[value(name = "handoff-polling")]
    HandoffPolling,
    /// Handoff waiter (B) woken by inotify when a file is unlinked: the
    /// kernel's floor for a wait that can time out (see `child::InotifyWait`).
    #[value(name = "handoff-inotify")]
    HandoffInotify,
    /// Hold the lock until stdin closes (the inspect phase's live owner).
    #[value(name = "hold")]
    Hold,
    /// Throughput worker using this crate.
    #[value(name = "cycles-ours")]
    CyclesOurs,
    /// Throughput worker using a raw `flock` loop.
    #[value(name = "cycles-flock")]
    CyclesFlock,
}

impl ChildRole {
    fn name(self) -> &'static str {
        match self {
            ChildRole::HandoffOurs => "handoff-ours",
            ChildRole::HandoffFlock => "handoff-flock",
            ChildRole::HandoffPolling => "handoff-polling",
            ChildRole::HandoffInotify => "handoff-inotify",
            ChildRole::Hold => "hold",
            ChildRole::CyclesOurs => "cycles-ours",
            ChildRole::CyclesFlock => "cycles-flock",
        }
    }
}

/// How long A keeps holding after B said it is about to wait, so that B is
/// parked in its wait when A releases.
const HOLD_BEFORE_RELEASE: Duration = Duration::from_millis(2);
/// How long A waits at most, after that, for every thread of B to sleep.
const PARK_GRACE: Duration = Duration::from_millis(100);
/// Handoffs discarded at the start of each handoff measurement.
const HANDOFF_WARMUP: usize = 5;
/// Iterations discarded at the start of the uncontended and inspect loops.
const LOOP_WARMUP: usize = 200;
/// Pause between release and the next acquire in the throughput phase.
const CYCLE_PAUSE: Duration = Duration::from_micros(100);
/// Process counts of the throughput phase.
const THROUGHPUT_NS: [usize; 4] = [2, 4, 8, 16];
/// Tasks contending in the async phase.
const ASYNC_TASKS: usize = 100;
/// How long an async task holds the lock.
const ASYNC_HOLD: Duration = Duration::from_micros(100);
/// Acquire timeout everywhere in the bench: a wait this long is a failure.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// The reference's polling: first sleep, growth per attempt and cap.
const POLL_STEP: Duration = Duration::from_millis(50);
/// Cap of the reference's polling sleep.
const POLL_CAP: Duration = Duration::from_secs(1);
/// Filler in throughput lines, so a line is about the size of a short turn.
const LINE_PAD: &str =
    "the quick brown fox jumps over the lazy dog; the quick brown fox jumps over it";

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    quick: bool,
    uncontended: usize,
    handoff: usize,
    polling: usize,
    inspect: usize,
    throughput: Duration,
    async_rounds: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                uncontended: 2_000,
                handoff: 200,
                polling: 20,
                inspect: 2_000,
                throughput: Duration::from_millis(1_000),
                async_rounds: 3,
            }
        } else {
            Plan {
                quick,
                uncontended: 20_000,
                handoff: 2_000,
                polling: 50,
                inspect: 20_000,
                throughput: Duration::from_secs(4),
                async_rounds: 10,
            }
        }
    }
}

/// `what: e`: the shape of every error the bench reports.
fn err_str(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// The options of the bench's own acquires: [`ACQUIRE_TIMEOUT`], a label.
fn opts() -> LockOptions {
    LockOptions::new()
        .with_timeout(ACQUIRE_TIMEOUT)
        .with_label("session-lock bench")
}

/// One progress line to stderr.
fn progress(line: &str) {
    eprintln!("session-lock bench: {line}");
}

/// Run one phase: progress line before, result (or failure) line after.
fn phase<T>(
    errors: &mut Vec<String>,
    step: &str,
    name: &str,
    what: &str,
    f: impl FnOnce() -> Result<T, String>,
    summary: impl FnOnce(&T) -> String,
) -> Option<T> {
    progress(&format!("{step} {name}: {what} ..."));
    let t0 = Instant::now();
    match f() {
        Ok(v) => {
            progress(&format!(
                "{step} {name}: {} ({:.1} s)",
                summary(&v),
                t0.elapsed().as_secs_f64()
            ));
            Some(v)
        }
        Err(e) => {
            progress(&format!("{step} {name}: FAILED: {e}"));
            errors.push(format!("{name}: {e}"));
            None
        }
    }
}

/// A fresh, uniquely named directory under `base`.
fn make_run_dir(base: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(base).map_err(|e| err_str(&format!("create {}", base.display()), e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = base.join(format!(
        "session-lock-bench.{}.{nanos:09}",
        std::process::id()
    ));
    std::fs::create_dir(&dir).map_err(|e| err_str(&format!("create {}", dir.display()), e))?;
    // The lock protocol resolves directories with realpath; do the same so
    // every path the bench prints matches the lock paths.
    Ok(std::fs::canonicalize(&dir).unwrap_or(dir))
}

/// `dir/name`, created if missing: the directory of one phase.
fn sub_dir(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).map_err(|e| err_str("create directory", e))?;
    Ok(d)
}

fn measure(dir: &Path, plan: &Plan) -> Report {
    let started = Instant::now();
    let mut errors = Vec::new();
    let unc = uncontended::run(dir, plan, &mut errors, "[1/5]");
    let hand = handoff::run(dir, plan, &mut errors, "[2/5]");
    let insp = inspect::run(dir, plan, &mut errors, "[3/5]");
    let thr = throughput::run(dir, plan, &mut errors, "[4/5]");
    let asy = async_phase::run(dir, plan, &mut errors, "[5/5]");

    let mut report = Report {
        quick: plan.quick,
        dir: dir.display().to_string(),
        uncontended: unc,
        handoff: hand,
        inspect: insp,
        throughput: thr,
        async_: asy,
        targets: Vec::new(),
        ok: false,
        errors,
        elapsed_s: 0.0,
    };
    report.targets = report::targets(&report);
    let lines_ok = report
        .throughput
        .as_ref()
        .is_some_and(|t| t.len() == THROUGHPUT_NS.len() && t.iter().all(|t| t.lines_ok));
    report.ok = report.errors.is_empty() && lines_ok;
    report.elapsed_s = stats::round(started.elapsed().as_secs_f64(), 1);
    report
}

/// Run the bench; returns the process exit code (0: every measurement ran
/// and every throughput file checked out; 1 otherwise).
pub fn run(args: &BenchArgs) -> i32 {
    if let Some(role) = args.child {
        return child::run(role, args);
    }
    let plan = Plan::new(args.quick);
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = match make_run_dir(&base) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("session-lock bench: {e}");
            return 1;
        }
    };
    progress(&format!(
        "{} run in {}",
        if plan.quick { "quick" } else { "full" },
        dir.display()
    ));
    let report = measure(&dir, &plan);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!(
            "session-lock bench: could not remove {}: {e}",
            dir.display()
        );
    }
    if args.json {
        match serde_json::to_string(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("session-lock bench: cannot serialise the report: {e}");
                return 1;
            }
        }
    } else {
        report::print_table(&report);
    }
    if report.ok { 0 } else { 1 }
}
