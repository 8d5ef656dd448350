//! `session-lock-test-helper`: child processes for this crate's own tests
//! (never installed: the binary needs the `test-helpers` feature). Each
//! subcommand takes the lock through the library exactly as a user would.

#[path = "../../backend_args.rs"]
mod backend_args;

use backend_args::{BACKEND, BackendArgs, backend, options};
use clap::{Parser, Subcommand};
use session_lock::{Error, ErrorKind, LockOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Exit code: the lock was not obtained (busy or timed out).
const EXIT_NOT_OBTAINED: u8 = 3;
/// Exit code: the lock was lost while held.
const EXIT_LOST: u8 = 4;
/// Exit code: bad path, permission problem or other I/O error.
const EXIT_IO: u8 = 5;

#[derive(Parser, Debug)]
#[command(name = "session-lock-test-helper")]
struct Cli {
    #[command(flatten)]
    backend: BackendArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Test helper (cli/tests/exec.rs): one chaos section run *under* `exec`:
    /// marker in, lines to FILE (plain appends: the lock is exec's), marker out.
    #[command(name = "__chaos_section")]
    ChaosSection {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        seq: u64,
        #[arg(long)]
        dir: PathBuf,
        file: PathBuf,
    },
    /// Test helper: hold the lock until stdin closes (prints `ready` when held).
    #[command(name = "__hold")]
    Hold {
        #[arg(long, value_parser = session_lock::parse_duration)]
        max_hold: Option<Duration>,
        #[arg(long, value_parser = session_lock::parse_duration)]
        timeout: Option<Duration>,
        #[arg(long)]
        label: Option<String>,
        /// Append each stdin line through the guard, answering `appended`
        /// or `refused <error>`; a loss is reported (`lost ...`) but does
        /// not end the process. The line `!release_all` calls
        /// `session_lock::release_all()` instead, answering `released N`.
        #[arg(long)]
        append: bool,
        /// With `--append`: hold the lock on this transcript too (acquired
        /// second, released when the process ends).
        #[arg(long, requires = "append")]
        also: Option<PathBuf>,
        file: PathBuf,
    },
    /// Test helper: COUNT guarded cycles, each proving exclusivity with a marker file.
    #[command(name = "__worker")]
    Worker {
        #[arg(long)]
        count: u64,
        /// Start no cycle after this many milliseconds (a timed run that
        /// ends between sections, never inside one).
        #[arg(long)]
        for_ms: Option<u64>,
        #[arg(long)]
        marker: PathBuf,
        #[arg(long, default_value = "0")]
        id: u64,
        file: PathBuf,
    },
    /// Test helper (cli/tests/descriptors.rs): acquire locks on `DIR/h<N>.jsonl`,
    /// appending a line to each, until COUNT are held or one fails; print
    /// `held N`, `failed <kind>: <error>` (if one did), release them all
    /// and print `released N`.
    #[command(name = "hold-many")]
    HoldMany { dir: PathBuf, count: usize },
    /// Test helper (cli/tests/chaos.rs): guarded sections until DIR/stop exists,
    /// each proving exclusivity with a marker and logging enter/exit to DIR.
    #[command(name = "__chaos_worker")]
    ChaosWorker {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        dir: PathBuf,
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The library's log on stderr, as the tests ask (`SESSION_LOCK_LOG`):
    // shown when a test fails waiting for this process.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("SESSION_LOCK_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    match cli.backend.resolve() {
        Ok(b) => {
            let _ = BACKEND.set(b);
        }
        Err(e) => {
            eprintln!("session-lock-test-helper: {e}");
            return ExitCode::from(2);
        }
    }
    // Tidiness only: a killed holder's lock is reclaimable anyway (see the
    // `signals` module docs); cli/tests/signals.rs checks it through `__hold`.
    #[cfg(target_os = "linux")]
    if matches!(cli.command, Command::Hold { .. })
        && let Err(e) = session_lock::signals::install()
    {
        eprintln!("session-lock-test-helper: could not install signal cleanup: {e}");
    }
    let code = match cli.command {
        Command::Hold {
            max_hold,
            timeout,
            label,
            append: true,
            also,
            file,
        } => hold_appending(&file, also.as_deref(), &options(timeout, max_hold, label)),
        Command::Hold {
            max_hold,
            timeout,
            label,
            file,
            ..
        } => hold(&file, &options(timeout, max_hold, label)),
        Command::Worker {
            count,
            for_ms,
            marker,
            id,
            file,
        } => {
            let until = for_ms.map(|ms| std::time::Instant::now() + Duration::from_millis(ms));
            worker(&file, &marker, id, count, until)
        }
        Command::ChaosWorker { id, dir, file } => chaos_worker(&file, &dir, id),
        Command::HoldMany { dir, count } => hold_many(&dir, count),
        Command::ChaosSection { id, seq, dir, file } => chaos_section(&file, &dir, id, seq),
    };
    session_lock::close_idle();
    ExitCode::from(code)
}

fn hold_many(dir: &std::path::Path, count: usize) -> u8 {
    let mut guards = Vec::new();
    let mut failure = None;
    for i in 0..count {
        let taken = session_lock::acquire(dir.join(format!("h{i}.jsonl")))
            .and_then(|g| g.append_line("{}").map(|()| g));
        match taken {
            Ok(g) => guards.push(g),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    println!("held {}", guards.len());
    if let Some(e) = failure {
        println!("failed {:?}: {e}", e.kind());
    }
    let mut released = 0;
    for g in guards {
        match g.release() {
            Ok(()) => released += 1,
            Err(e) => println!("release failed: {e}"),
        }
    }
    println!("released {released}");
    0
}

/// Print an error as one line and map it to the CLI's exit codes.
fn fail(err: &Error) -> u8 {
    eprintln!("session-lock: {err}");
    match err.kind() {
        ErrorKind::Busy | ErrorKind::Timeout | ErrorKind::Stale => EXIT_NOT_OBTAINED,
        ErrorKind::LockLost => EXIT_LOST,
        _ => EXIT_IO,
    }
}

/// `__hold --append`: hold (`also` too), append each stdin line through
/// the guard and say what happened; print `lost <reason>` when the guard
/// learns of a loss.
fn hold_appending(file: &Path, also: Option<&Path>, opts: &LockOptions) -> u8 {
    let guard = match session_lock::acquire_with(file, opts) {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    let _also = match also
        .map(|f| session_lock::acquire_with(f, opts))
        .transpose()
    {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    let say = |s: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    };
    say(&format!(
        "ready {} token={}",
        std::process::id(),
        guard.fencing_token().map_or("-".into(), |t| t.to_string())
    ));
    let lost = guard.lost();
    std::thread::spawn(move || {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut lost = std::pin::pin!(lost);
        loop {
            if let std::task::Poll::Ready(r) = std::future::Future::poll(lost.as_mut(), &mut cx) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "lost {r}");
                let _ = out.flush();
                return;
            }
            std::thread::park();
        }
    });
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == "!release_all" {
            say(&format!("released {}", session_lock::release_all()));
            continue;
        }
        match guard.append_line(&line) {
            Ok(()) => say("appended"),
            Err(e) => say(&format!("refused {e}")),
        }
    }
    match guard.release() {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

fn hold(file: &Path, opts: &LockOptions) -> u8 {
    let guard = match session_lock::acquire_with(file, opts) {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    println!("ready {}", std::process::id());
    let _ = std::io::stdout().flush();
    // Hold until stdin closes, or until the lock is lost.
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                if let Some(reason) = guard.wait_lost(Some(Duration::from_millis(50))) {
                    if reason == session_lock::LostReason::ReleasedAll {
                        // Signal cleanup: the re-raised signal ends us.
                        return;
                    }
                    println!("lost {reason}");
                    let _ = std::io::stdout().flush();
                    // The main thread may be blocked on stdin forever (that
                    // is the point of the test): exit from here.
                    std::process::exit(EXIT_LOST.into());
                }
            }
        });
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });
    match guard.release() {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

fn worker(
    file: &Path,
    marker: &Path,
    id: u64,
    count: u64,
    until: Option<std::time::Instant>,
) -> u8 {
    let opts = LockOptions::new()
        .with_timeout(Duration::from_secs(120))
        .with_backend(backend());
    for i in 0..count {
        if until.is_some_and(|u| std::time::Instant::now() >= u) {
            break;
        }
        let guard = match session_lock::acquire_with(file, &opts) {
            Ok(g) => g,
            Err(e) => return fail(&e),
        };
        // Independent witness of exclusivity: an exclusive-create marker.
        if let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(marker)
        {
            eprintln!(
                "session-lock: OVERLAP: marker {} exists ({e})",
                marker.display()
            );
            return 99;
        }
        if let Err(e) = guard.append_line(format!("{id} {i}")) {
            return fail(&e);
        }
        if let Err(e) = std::fs::remove_file(marker) {
            eprintln!("session-lock: marker vanished: {e}");
            return 99;
        }
        if let Err(e) = guard.release() {
            return fail(&e);
        }
    }
    0
}

/// State and start time of `pid` from `/proc/<pid>/stat` (chaos helper).
fn chaos_proc(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and ')': split after the last ')'.
    let after = text.get(text.rfind(')')? + 1..)?;
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 (start time) is the 20th after the name; `next` took field 3.
    let starttime = fields.nth(18)?.parse().ok()?;
    Some((state, starttime))
}

/// Enter the chaos section's independent witness: hard-link a complete
/// marker naming us at DIR/inside (link fails if the name exists). A marker
/// left by a holder killed mid-section is removed only once its owner is
/// provably dead (gone, zombie, or pid recycled), and logged as `R`; a marker
/// whose owner stays alive is an overlap.
fn chaos_enter(dir: &Path, me: &str, log: &mut std::fs::File, id: u64) -> Result<(), String> {
    let marker = dir.join("inside");
    let tmp = dir.join(format!("inside.{}.tmp", std::process::id()));
    std::fs::write(&tmp, me).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    let start = Instant::now();
    let outcome = loop {
        match std::fs::hard_link(&tmp, &marker) {
            Ok(()) => break Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => break Err(format!("link {}: {e}", marker.display())),
        }
        let seen = match std::fs::read_to_string(&marker) {
            Ok(s) => s,
            Err(e) => break Err(format!("OVERLAP: marker vanished under our lock ({e})")),
        };
        let f: Vec<u64> = seen
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [pid, starttime, owner, _seq] = f[..] else {
            break Err(format!("unreadable marker {seen:?}"));
        };
        let dead = match chaos_proc(pid as u32) {
            None => true,
            Some((state, st)) => st != starttime || state == 'Z' || state == 'X',
        };
        if dead {
            if std::fs::read_to_string(&marker).ok().as_deref() != Some(seen.as_str()) {
                break Err(format!("OVERLAP: marker {seen:?} changed under our lock"));
            }
            if let Err(e) = std::fs::remove_file(&marker) {
                break Err(format!(
                    "OVERLAP: could not reset dead marker {seen:?}: {e}"
                ));
            }
            if let Err(e) = log.write_all(format!("R {id} {owner}\n").as_bytes()) {
                break Err(format!("witness log: {e}"));
            }
            continue;
        }
        // A holder killed a moment ago drops its flock before it becomes a
        // zombie: give it time to finish dying before calling it an overlap.
        if start.elapsed() > Duration::from_secs(10) {
            break Err(format!(
                "OVERLAP: marker {seen:?} of a live process present while we hold the lock"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = std::fs::remove_file(&tmp); // ours; a leftover is harmless
    outcome
}

/// Leave the chaos section: the marker must still be ours.
fn chaos_leave(dir: &Path, me: &str) -> Result<(), String> {
    let marker = dir.join("inside");
    match std::fs::read_to_string(&marker) {
        Ok(s) if s == me => std::fs::remove_file(&marker)
            .map_err(|e| format!("OVERLAP: marker vanished before we removed it: {e}")),
        Ok(s) => Err(format!("OVERLAP: marker now says {s:?}, we are {me:?}")),
        Err(e) => Err(format!("OVERLAP: marker gone at section end: {e}")),
    }
}

/// Guarded sections until DIR/stop exists (or we are killed). Each section:
/// marker in, `E id seq n` to DIR/witness.log, n numbered lines of random
/// length to the transcript through the guard, `X id seq`, marker out.
fn chaos_worker(file: &Path, dir: &Path, id: u64) -> u8 {
    let pid = std::process::id();
    let Some((_, starttime)) = chaos_proc(pid) else {
        eprintln!("session-lock: cannot read /proc/{pid}/stat");
        return EXIT_IO;
    };
    let stop = dir.join("stop");
    let mut log = match std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("witness.log"))
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("session-lock: witness log: {e}");
            return EXIT_IO;
        }
    };
    let opts = LockOptions::new()
        .with_timeout(Duration::from_secs(60))
        .with_label(format!("chaos {id}"));
    let mut rng = (id << 32) ^ u64::from(pid) ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut seq = 0u64;
    while !stop.exists() {
        let guard = match session_lock::acquire_with(file, &opts) {
            Ok(g) => g,
            Err(e) => return fail(&e),
        };
        let me = format!("{pid} {starttime} {id} {seq}");
        if let Err(msg) = chaos_enter(dir, &me, &mut log, id) {
            eprintln!("session-lock: chaos worker {id}: {msg}");
            return 99;
        }
        let n = 1 + next() % 3;
        if let Err(e) = log.write_all(format!("E {id} {seq} {n}\n").as_bytes()) {
            eprintln!("session-lock: witness log: {e}");
            return EXIT_IO;
        }
        for k in 0..n {
            let len = 16 + (next() % 240) as usize;
            let fill = char::from(b'a' + ((id + seq + k) % 26) as u8);
            let line = format!("{id} {seq} {k} {n} {len} {}", fill.to_string().repeat(len));
            if let Err(e) = guard.append_line(line) {
                return fail(&e);
            }
            if next() % 4 == 0 {
                // Widen the mid-hold window for the killer.
                std::thread::sleep(Duration::from_micros(next() % 300));
            }
        }
        if let Err(e) = log.write_all(format!("X {id} {seq}\n").as_bytes()) {
            eprintln!("session-lock: witness log: {e}");
            return EXIT_IO;
        }
        if let Err(msg) = chaos_leave(dir, &me) {
            eprintln!("session-lock: chaos worker {id}: {msg}");
            return 99;
        }
        if let Err(e) = guard.release() {
            return fail(&e);
        }
        seq += 1;
    }
    0
}

/// One section under `exec` (see `Command::ChaosSection`): the marker names
/// this process's pid and start time, so neither a killed `exec` front nor a
/// recycled pid can hide an overlap.
fn chaos_section(file: &Path, dir: &Path, id: u64, seq: u64) -> u8 {
    let pid = std::process::id();
    let Some((_, starttime)) = chaos_proc(pid) else {
        eprintln!("session-lock: cannot read /proc/{pid}/stat");
        return EXIT_IO;
    };
    let open_append = |p: &Path| {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
    };
    let (mut log, mut out) = match (open_append(&dir.join("witness.log")), open_append(file)) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("session-lock: chaos section: {e}");
            return EXIT_IO;
        }
    };
    let me = format!("{pid} {starttime} {id} {seq}");
    if let Err(msg) = chaos_enter(dir, &me, &mut log, id) {
        eprintln!("session-lock: chaos section {id}/{seq}: {msg}");
        return 99;
    }
    let n = 1 + (u64::from(pid) + seq) % 3;
    if log
        .write_all(format!("E {id} {seq} {n}\n").as_bytes())
        .is_err()
    {
        return EXIT_IO;
    }
    for k in 0..n {
        if out
            .write_all(format!("{id} {seq} {k} {n}\n").as_bytes())
            .is_err()
        {
            return EXIT_IO;
        }
        // Widen the window in which the killer may strike the front.
        std::thread::sleep(Duration::from_micros(200 + (u64::from(pid) * 7 + k) % 1500));
    }
    if log.write_all(format!("X {id} {seq}\n").as_bytes()).is_err() {
        return EXIT_IO;
    }
    if let Err(msg) = chaos_leave(dir, &me) {
        eprintln!("session-lock: chaos section {id}/{seq}: {msg}");
        return 99;
    }
    0
}
