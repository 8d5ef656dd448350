//! `session-lock`: guard a session transcript from the shell, inspect and
//! clean lock directories, measure. See `docs/cli.md`.

mod bench;

use clap::{Parser, Subcommand};
use session_lock::sweep::{SweepOptions, sweep};
use session_lock::{Error, ErrorKind, Inspection, LockGuard, LockOptions, LockPaths, Verdict};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Exit code: the lock was not obtained (busy or timed out).
const EXIT_NOT_OBTAINED: u8 = 3;
/// Exit code: the lock was lost while held (max hold exceeded, replaced).
const EXIT_LOST: u8 = 4;
/// Exit code: bad path, permission problem or other I/O error.
const EXIT_IO: u8 = 5;
/// Exit code: the command could not be started (as in shells).
const EXIT_CANNOT_RUN: u8 = 126;
/// Exit code: the command was not found (as in shells).
const EXIT_NOT_FOUND: u8 = 127;

#[derive(Parser, Debug)]
#[command(
    name = "session-lock",
    version,
    about = "Cross-process write lock for append-only session transcripts",
    after_help = "Examples:
  session-lock exec --timeout 30s sessions/a.jsonl -- ./append-turn.sh
  session-lock append sessions/a.jsonl '{\"role\":\"user\",\"text\":\"hi\"}'
  printf '%s\\n' one two | session-lock append sessions/a.jsonl -
  session-lock status sessions/
  session-lock clean --dry-run sessions/

Exit codes: 0 success (exec: the command's status), 2 usage error,
3 lock not obtained (busy or timeout), 4 lock lost while held,
5 bad path / permission / I/O error, 126 command could not run,
127 command not found, 128+N command killed by signal N."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Hold the lock on FILE while CMD runs (like flock(1)); exit with CMD's status.
    Exec {
        /// How long to wait for the lock (500ms, 30s, 5m; default 60s).
        #[arg(long, value_parser = session_lock::parse_duration)]
        timeout: Option<Duration>,
        /// Max hold before the watchdog releases the lock and CMD is terminated (default 5m).
        #[arg(long, value_parser = session_lock::parse_duration)]
        max_hold: Option<Duration>,
        /// Free text recorded in the lock's owner record.
        #[arg(long)]
        label: Option<String>,
        /// The transcript to guard.
        file: PathBuf,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Append each LINE (or each line of stdin with `-`) to FILE under the lock, whole lines only.
    Append {
        /// How long to wait for the lock (default 60s).
        #[arg(long, value_parser = session_lock::parse_duration)]
        timeout: Option<Duration>,
        /// fdatasync the transcript before releasing.
        #[arg(long)]
        sync: bool,
        /// The transcript.
        file: PathBuf,
        /// Lines to append; `-` reads lines from stdin.
        lines: Vec<String>,
    },
    /// Show every lock under DIRs / of FILEs: owner, liveness, age, verdict, reasons, attention.
    Status {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        /// Directories (every *.jsonl.lock inside) or transcripts / lock files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Remove only what acquire itself would reclaim (dead owners, old orphans), race-free.
    Clean {
        /// Report what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        /// Directories to clean.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Measure handoff, uncontended, inspection, throughput and async latency against baselines.
    Bench(bench::BenchArgs),
    /// Test helper: hold the lock until stdin closes (prints `ready` when held).
    #[command(name = "__hold", hide = true)]
    Hold {
        #[arg(long, value_parser = session_lock::parse_duration)]
        max_hold: Option<Duration>,
        #[arg(long, value_parser = session_lock::parse_duration)]
        timeout: Option<Duration>,
        #[arg(long)]
        label: Option<String>,
        file: PathBuf,
    },
    /// Test helper: COUNT guarded cycles, each proving exclusivity with a marker file.
    #[command(name = "__worker", hide = true)]
    Worker {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        marker: PathBuf,
        #[arg(long, default_value = "0")]
        id: u64,
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SESSION_LOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Exec {
            timeout,
            max_hold,
            label,
            file,
            cmd,
        } => exec(&file, &options(timeout, max_hold, label), &cmd),
        Command::Append {
            timeout,
            sync,
            file,
            lines,
        } => append(
            &file,
            &options(timeout, None, Some("session-lock append".into())),
            &lines,
            sync,
        ),
        Command::Status { json, paths } => status(&paths, json),
        Command::Clean {
            dry_run,
            json,
            dirs,
        } => clean(&dirs, dry_run, json),
        Command::Bench(args) => return ExitCode::from(bench::run(&args) as u8),
        Command::Hold {
            max_hold,
            timeout,
            label,
            file,
        } => hold(&file, &options(timeout, max_hold, label)),
        Command::Worker {
            count,
            marker,
            id,
            file,
        } => worker(&file, &marker, id, count),
    };
    ExitCode::from(code)
}

fn options(
    timeout: Option<Duration>,
    max_hold: Option<Duration>,
    label: Option<String>,
) -> LockOptions {
    let mut o = LockOptions::new();
    if let Some(t) = timeout {
        o = o.timeout(t);
    }
    if let Some(m) = max_hold {
        o = o.max_hold(m);
    }
    if let Some(l) = label {
        o = o.label(l);
    }
    o
}

/// Print an error as one line and map it to an exit code.
fn fail(err: &Error) -> u8 {
    eprintln!("session-lock: {err}");
    match err.kind() {
        ErrorKind::Busy | ErrorKind::Timeout | ErrorKind::Stale | ErrorKind::WouldDeadlock => {
            EXIT_NOT_OBTAINED
        }
        ErrorKind::LockLost => EXIT_LOST,
        _ => EXIT_IO,
    }
}

fn describe_owner(insp: &Inspection) -> String {
    let owner = insp.owner();
    let mut s = owner.to_string();
    if let Some(h) = &owner.hostname {
        s.push_str(&format!(" host={h}"));
    }
    if let Some(l) = &owner.label {
        s.push_str(&format!(" label={l:?}"));
    }
    s
}

/// Acquire, printing once to stderr who holds the lock after 1 s of
/// waiting (as cargo does for its own lock).
fn acquire_announcing(file: &Path, opts: &LockOptions) -> Result<LockGuard, Error> {
    const ANNOUNCE_AFTER: Duration = Duration::from_secs(1);
    let start = Instant::now();
    let first = match opts.get_timeout() {
        Some(t) if t <= ANNOUNCE_AFTER => return session_lock::acquire_with(file, opts),
        _ => opts.clone().timeout(ANNOUNCE_AFTER),
    };
    match session_lock::acquire_with(file, &first) {
        Err(e) if e.kind() == ErrorKind::Timeout => {
            let who = session_lock::inspect(file, opts)
                .ok()
                .flatten()
                .map(|i| describe_owner(&i))
                .unwrap_or_else(|| "another process".into());
            eprintln!(
                "session-lock: waiting for the lock on {} (held by {who})",
                file.display()
            );
            let rest = match opts.get_timeout() {
                Some(t) => opts.clone().timeout(t.saturating_sub(start.elapsed())),
                None => opts.clone(),
            };
            session_lock::acquire_with(file, &rest)
        }
        other => other,
    }
}

fn exec(file: &Path, opts: &LockOptions, cmd: &[String]) -> u8 {
    let guard = match acquire_announcing(file, opts) {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
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

fn append(file: &Path, opts: &LockOptions, lines: &[String], sync: bool) -> u8 {
    let mut all: Vec<String> = Vec::new();
    for l in lines {
        if l == "-" {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                match line {
                    Ok(line) => all.push(line),
                    Err(e) => {
                        eprintln!("session-lock: reading stdin: {e}");
                        return EXIT_IO;
                    }
                }
            }
        } else {
            all.push(l.clone());
        }
    }
    if let Some(bad) = all.iter().find(|l| l.contains('\n')) {
        eprintln!("session-lock: a line must not contain a newline: {bad:?}");
        return 2;
    }
    let guard = match acquire_announcing(file, opts) {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    if let Err(e) = guard.append_lines(&all, sync) {
        return fail(&e);
    }
    match guard.release() {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

fn lock_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| io_err("list directory", p, e))?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(".lock") && !n.starts_with('.'))
                })
                .collect();
            found.sort();
            out.extend(found);
        } else if p.extension().is_some_and(|e| e == "lock") {
            out.push(p.clone());
        } else {
            let parent = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(io_err(
                    "find directory of",
                    p,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
                ));
            }
            out.push(LockPaths::resolve_existing(p)?.lock);
        }
    }
    Ok(out)
}

fn io_err(op: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::io(op, path, e)
}

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) if d.as_secs() >= 120 => format!("{}m", d.as_secs() / 60),
        Some(d) if d.as_millis() >= 10_000 => format!("{}s", d.as_secs()),
        Some(d) => format!("{}ms", d.as_millis()),
        None => "-".into(),
    }
}

fn status(paths: &[PathBuf], json: bool) -> u8 {
    let files = match lock_files(paths) {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let opts = LockOptions::new();
    let mut code = 0;
    if !json {
        println!(
            "{:<40} {:<12} {:>8} {:<6} {:>8} {:<28} ATTENTION",
            "LOCK", "VERDICT", "PID", "ALIVE", "AGE", "REASONS"
        );
    }
    for f in files {
        match session_lock::inspect(&f, &opts) {
            Ok(Some(insp)) => {
                let attention = session_lock::lock_attention(&insp);
                if json {
                    let mut v = serde_json::to_value(&insp).unwrap_or_default();
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert(
                            "attention".into(),
                            serde_json::to_value(attention).unwrap_or_default(),
                        );
                    }
                    println!("{v}");
                } else {
                    let reasons: Vec<&str> = insp.reasons.iter().map(|r| r.as_str()).collect();
                    println!(
                        "{:<40} {:<12} {:>8} {:<6} {:>8} {:<28} {}",
                        f.display(),
                        format!("{:?}", insp.verdict).to_lowercase(),
                        insp.record
                            .as_ref()
                            .and_then(|r| r.pid)
                            .map_or("-".into(), |p| p.to_string()),
                        insp.pid_alive.map_or("?".into(), |a| a.to_string()),
                        ms(insp.age.or(insp.file_age)),
                        if reasons.is_empty() {
                            "-".into()
                        } else {
                            reasons.join(",")
                        },
                        attention
                            .as_ref()
                            .map_or("-".into(), |a| a.event_type.as_str().to_owned()),
                    );
                }
            }
            Ok(None) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"lockPath": f, "verdict": "absent"})
                    );
                } else {
                    println!("{:<40} absent", f.display());
                }
            }
            Err(e) => {
                code = fail(&e);
            }
        }
    }
    code
}

fn clean(dirs: &[PathBuf], dry_run: bool, json: bool) -> u8 {
    let mut code = 0;
    for dir in dirs {
        if !dir.is_dir() {
            eprintln!("session-lock: {} is not a directory", dir.display());
            code = EXIT_IO;
            continue;
        }
        let opts = SweepOptions {
            remove: !dry_run,
            suffix: ".lock".into(),
            ..SweepOptions::default()
        };
        let result = match sweep(dir, &opts) {
            Ok(r) => r,
            Err(e) => {
                code = fail(&e);
                continue;
            }
        };
        for r in &result.locks {
            let (verdict, reasons) = match &r.inspection {
                Some(i) => (
                    format!("{:?}", i.verdict).to_lowercase(),
                    i.reasons
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                None => ("absent".into(), String::new()),
            };
            let action = if r.removed {
                "removed"
            } else if r
                .inspection
                .as_ref()
                .is_some_and(|i| i.verdict == Verdict::Reclaimable)
            {
                if dry_run {
                    "would-remove"
                } else {
                    "kept (changed)"
                }
            } else {
                "kept"
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "lockPath": r.lock_path, "verdict": verdict, "reasons": reasons.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
                        "action": action, "removed": r.removed, "error": r.error,
                        "owner": r.inspection.as_ref().map(|i| i.owner()),
                    })
                );
            } else {
                println!(
                    "{:<14} {:<12} {:<28} {}{}",
                    action,
                    verdict,
                    if reasons.is_empty() { "-" } else { &reasons },
                    r.lock_path.display(),
                    r.error
                        .as_ref()
                        .map(|e| format!("  error: {e}"))
                        .unwrap_or_default()
                );
            }
            if r.error.is_some() {
                code = EXIT_IO;
            }
        }
        for t in &result.temps_removed {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"lockPath": t, "action": "removed-temp", "removed": true})
                );
            } else {
                println!(
                    "{:<14} {:<12} {:<28} {}",
                    "removed",
                    "temp",
                    "-",
                    t.display()
                );
            }
        }
    }
    code
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

fn worker(file: &Path, marker: &Path, id: u64, count: u64) -> u8 {
    let opts = LockOptions::new().timeout(Duration::from_secs(120));
    for i in 0..count {
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
