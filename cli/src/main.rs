//! `session-lock`: guard a session transcript from the shell, inspect and
//! clean lock directories, measure. See `docs/cli.md`.

mod backend_args;
mod bench;
mod columns;
mod durations;
mod exec;

use backend_args::{BACKEND, BackendArgs, options};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use session_lock::sweep::{SweepOptions, sweep};
use session_lock::{Error, ErrorKind, Inspection, LockGuard, LockOptions, LockPaths, Verdict};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Lock files considered in a directory: the transcripts' (`*.jsonl.lock`).
const DEFAULT_SUFFIX: &str = ".jsonl.lock";

/// Exit code: the lock was not obtained (busy or timed out).
pub(crate) const EXIT_NOT_OBTAINED: u8 = 3;
/// Exit code: the lock was lost while held (max hold exceeded, replaced).
pub(crate) const EXIT_LOST: u8 = 4;
/// Exit code: bad path, permission problem or other I/O error.
pub(crate) const EXIT_IO: u8 = 5;
/// Exit code: the command could not be started (as in shells).
pub(crate) const EXIT_CANNOT_RUN: u8 = 126;
/// Exit code: the command was not found (as in shells).
pub(crate) const EXIT_NOT_FOUND: u8 = 127;

#[derive(Parser, Debug)]
#[command(
    name = "session-lock",
    version,
    about = "Cross-process write lock for append-only session transcripts",
    after_help = "Examples:
  session-lock exec -w 30 sessions/a.jsonl ./append-turn.sh --turn 3
  session-lock append sessions/a.jsonl '{\"role\":\"user\",\"text\":\"hi\"}'
  printf '%s\\n' one two | session-lock append sessions/a.jsonl -
  session-lock status sessions/
  session-lock clean --dry-run sessions/

Durations: a number of seconds (5, 1.5) or a number with ms, s, m or h
(500ms, 1.5s, 5m, 1h).

Exit codes: 0 success (exec: the command's status), 2 usage error,
3 lock not obtained (busy or timeout; exec -E changes it), 4 lock lost
while held, 5 bad path / permission / I/O error, 126 command could not
run, 127 command not found, 128+N command killed by signal N."
)]
struct Cli {
    #[command(flatten)]
    backend: BackendArgs,
    #[command(subcommand)]
    command: Command,
}

const EXEC_EXAMPLES: &str = "Examples:
  session-lock exec sessions/a.jsonl ./append-turn.sh --turn 3
  session-lock exec -w 30 sessions/a.jsonl -- ./append-turn.sh
  session-lock exec -w 0.5 -c 'echo \"$(date)\" >> notes.txt' sessions/a.jsonl
  session-lock exec -n -E 75 sessions/a.jsonl ./compact.sh || echo \"busy: $?\"
  session-lock exec --max-hold 20m --kill-after 30s --label nightly sessions/a.jsonl ./compact.sh
  session-lock exec sessions/a.jsonl -- -cmd-starting-with-a-dash

Options go before the command: everything from CMD on is the command's
(`--` is needed only when CMD itself starts with `-`).";

const APPEND_EXAMPLES: &str = "Examples:
  session-lock append sessions/a.jsonl '{\"role\":\"user\",\"text\":\"hi\"}' '{\"role\":\"assistant\",\"text\":\"hello\"}'
  printf '%s\\n' one two | session-lock append sessions/a.jsonl -
  generate-turns | session-lock append --sync -w 10 sessions/a.jsonl -";

const STATUS_EXAMPLES: &str = "Examples:
  session-lock status sessions/
  session-lock status sessions/a.jsonl sessions/b.jsonl.lock
  session-lock status -o pid,alive,holders,label,waiters,path sessions/
  session-lock status -p 4242 sessions/
  session-lock status --noheadings sessions/ | awk '$1 == \"reclaimable\" {print $NF}'
  session-lock status -J sessions/ | jq -c '.locks[] | select(.verdict != \"held\")'
  session-lock status --json-lines sessions/ | jq -c 'select(.verdict != \"held\")'";

/// `status --help`'s end: examples, then the columns `-o` can name.
fn status_after_help() -> String {
    format!("{STATUS_EXAMPLES}\n\n{}", columns::HELP)
}

/// `status -o LIST`: the chosen columns.
#[derive(Debug, Clone)]
struct Columns(Vec<&'static str>);

fn parse_columns(text: &str) -> Result<Columns, String> {
    columns::parse_output(text).map(Columns)
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Json {
    /// A table.
    No,
    /// One document, `{"locks": [...]}`.
    Document,
    /// One object per line.
    Lines,
}

/// `status`'s output options.
struct StatusFormat {
    json: Json,
    headings: bool,
    columns: Vec<&'static str>,
    pid: Option<u32>,
    /// `-o` or `-p` was given: the file backend's options (refused with
    /// etcd).
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    file_only: bool,
}

const CLEAN_EXAMPLES: &str = "Examples:
  session-lock clean --dry-run sessions/
  session-lock clean sessions/ archive/sessions/
  session-lock clean --json sessions/ | jq -r 'select(.removed) | .lockPath'";

const COMPLETIONS_EXAMPLES: &str = "Examples:
  session-lock completions bash > ~/.local/share/bash-completion/completions/session-lock
  session-lock completions zsh > ~/.zfunc/_session-lock     # fpath+=~/.zfunc in .zshrc
  session-lock completions fish > ~/.config/fish/completions/session-lock.fish";

const MAN_EXAMPLES: &str = "Examples:
  session-lock man | man -l -
  session-lock man > /usr/local/share/man/man1/session-lock.1
  session-lock man --dir /usr/local/share/man/man1   # also session-lock-exec.1 etc.";

const BENCH_EXAMPLES: &str = "Examples:
  session-lock bench --quick
  session-lock bench --json --dir /var/tmp > bench.json";

#[derive(Subcommand, Debug)]
enum Command {
    /// Hold the lock on FILE while a command runs (like flock(1)); exit with its status.
    #[command(
        after_help = EXEC_EXAMPLES,
        override_usage = "session-lock exec [OPTIONS] <FILE> <CMD> [ARGS]...\n       session-lock exec [OPTIONS] <FILE> -c <SHELL_COMMAND>",
        group(clap::ArgGroup::new("what_to_run").args(["command", "cmd"])),
    )]
    Exec {
        /// How long to wait for the lock (5, 0.5, 500ms, 30s, 5m; 0 is --nonblock; forever or inf: no deadline) [default: 60s]
        #[arg(short = 'w', long = "wait", visible_alias = "timeout", value_name = "DURATION",
              value_parser = durations::parse_wait, allow_hyphen_values = true)]
        wait: Option<durations::Wait>,
        /// Fail at once if the lock is held (exit 3, or the -E code).
        #[arg(short = 'n', long, conflicts_with = "wait")]
        nonblock: bool,
        /// Exit code when the lock is not obtained (busy with -n, or the wait ran out) [default: 3]
        #[arg(short = 'E', long, value_name = "N")]
        conflict_exit_code: Option<u8>,
        /// Run SHELL_COMMAND with `/bin/sh -c` instead of CMD [ARGS]...
        #[arg(short = 'c', long = "command", value_name = "SHELL_COMMAND")]
        command: Option<String>,
        /// Say on stderr when the lock is obtained (after how long a wait, and
        /// whose dead lock was taken over) and released.
        #[arg(long)]
        verbose: bool,
        /// Max hold: then the command is stopped (SIGTERM, SIGKILL after --kill-after); off: no max hold (about 24.8 days) [default: 5m]
        #[arg(long, value_name = "DURATION", value_parser = durations::parse_max_hold,
              allow_hyphen_values = true)]
        max_hold: Option<Duration>,
        /// Grace between SIGTERM and SIGKILL when the command must stop [default: 5s]
        #[arg(long, value_name = "DURATION", value_parser = durations::parse_plain,
              allow_hyphen_values = true)]
        kill_after: Option<Duration>,
        /// flock(1)'s shared lock: refused (see the message).
        #[arg(short = 's', long = "shared", hide = true)]
        flock_shared: bool,
        /// flock(1)'s exclusive lock: refused (see the message).
        #[arg(short = 'x', short_alias = 'e', long = "exclusive", hide = true)]
        flock_exclusive: bool,
        /// flock(1)'s close-before-exec: refused (see the message).
        #[arg(short = 'o', long = "close", hide = true)]
        flock_close: bool,
        /// flock(1)'s unlock: refused (see the message).
        #[arg(short = 'u', long = "unlock", hide = true)]
        flock_unlock: bool,
        /// Free text recorded in the lock's owner record.
        #[arg(long)]
        label: Option<String>,
        /// The transcript to guard.
        file: PathBuf,
        /// The command and its arguments (everything from here on is the command's).
        #[arg(trailing_var_arg = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Append each LINE (or each line of stdin with `-`) to FILE under the lock, whole lines only.
    #[command(after_help = APPEND_EXAMPLES)]
    Append {
        /// How long to wait for the lock (5, 0.5, 500ms, 30s, 5m; forever or inf: no deadline) [default: 60s]
        #[arg(short = 'w', long = "wait", visible_alias = "timeout", value_name = "DURATION",
              value_parser = durations::parse_wait, allow_hyphen_values = true)]
        wait: Option<durations::Wait>,
        /// Say on stderr how long the wait took and whose dead lock was taken over.
        #[arg(long)]
        verbose: bool,
        /// fdatasync the transcript before releasing.
        #[arg(long)]
        sync: bool,
        /// The transcript.
        file: PathBuf,
        /// Lines to append; `-` reads lines from stdin.
        lines: Vec<String>,
    },
    /// Show every lock under DIRs / of FILEs: verdict, owner, liveness, age, reasons, path.
    #[command(after_help = status_after_help())]
    Status {
        /// One JSON document, `{"locks": [...]}` (as `lslocks -J`), instead of a table.
        #[arg(short = 'J', long)]
        json: bool,
        /// JSON Lines: one object per lock.
        #[arg(long, conflicts_with = "json")]
        json_lines: bool,
        /// Leave out the header row.
        #[arg(short = 'n', long)]
        noheadings: bool,
        /// Columns to print (see the list below); +LIST adds to the default.
        #[arg(short = 'o', long, value_name = "LIST", value_parser = parse_columns)]
        output: Option<Columns>,
        /// Only locks whose record names PID or that PID holds open.
        #[arg(short = 'p', long, value_name = "PID")]
        pid: Option<u32>,
        /// In directories, consider lock files whose names end with this.
        #[arg(long, default_value = DEFAULT_SUFFIX)]
        suffix: String,
        /// Directories (every *.jsonl.lock inside) or transcripts / lock
        /// files (file backend; with etcd every lock under the prefix is shown).
        paths: Vec<PathBuf>,
    },
    /// Remove only what acquire itself would reclaim (dead owners, old orphans), race-free.
    #[command(after_help = CLEAN_EXAMPLES)]
    Clean {
        /// Report what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        /// Leave out the header row.
        #[arg(long)]
        noheadings: bool,
        /// Consider lock files whose names end with this (never a bare
        /// `.lock`: other software's lock files must not be judged).
        #[arg(long, default_value = DEFAULT_SUFFIX)]
        suffix: String,
        /// Directories to clean.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Measure handoff, uncontended, inspection, throughput and async latency against baselines.
    #[command(after_help = BENCH_EXAMPLES)]
    Bench(bench::BenchArgs),
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell).
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per subcommand into DIR.
    #[command(after_help = MAN_EXAMPLES)]
    Man {
        /// Write session-lock.1 and session-lock-SUBCOMMAND.1 into this existing directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
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
        .with_ansi(colour_wanted(std::io::stderr().is_terminal()))
        .init();
    // `exec`'s holder: started by the front with its arguments in the
    // environment, so that `ps` shows its short title.
    if let Ok(json) = std::env::var(exec::HANDOFF_ENV) {
        return ExitCode::from(exec::holder(&json));
    }
    let cli = match Cli::from_arg_matches(&cli_command().get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match cli.backend.resolve() {
        Ok(b) => {
            let _ = BACKEND.set(b);
        }
        Err(e) => {
            eprintln!("session-lock: {e}");
            return ExitCode::from(2);
        }
    }
    // Tidiness only: a killed holder's lock is reclaimable anyway (see the
    // `signals` module docs).
    #[cfg(target_os = "linux")]
    if matches!(cli.command, Command::Append { .. })
        && let Err(e) = session_lock::signals::install()
    {
        eprintln!("session-lock: could not install signal cleanup: {e}");
    }
    let code = match cli.command {
        Command::Exec {
            wait,
            nonblock,
            conflict_exit_code,
            command,
            verbose,
            max_hold,
            label,
            kill_after,
            flock_shared,
            flock_exclusive,
            flock_close,
            flock_unlock,
            file,
            cmd,
        } => {
            let refused: Vec<&str> = [
                (flock_shared, "-s"),
                (flock_exclusive, "-x"),
                (flock_close, "-o"),
                (flock_unlock, "-u"),
            ]
            .into_iter()
            .filter_map(|(set, name)| set.then_some(name))
            .collect();
            if !refused.is_empty() {
                for name in refused {
                    eprintln!("session-lock: {}", refused_flock_option(name));
                }
                return ExitCode::from(2);
            }
            if command.is_none() && cmd.is_empty() {
                if file
                    .to_str()
                    .is_some_and(|f| f.bytes().all(|b| b.is_ascii_digit()))
                {
                    eprintln!("session-lock: {}", refused_flock_option("FD"));
                } else {
                    eprintln!(
                        "session-lock: a command is required: session-lock exec FILE CMD [ARGS]... or session-lock exec FILE -c SHELL_COMMAND"
                    );
                }
                return ExitCode::from(2);
            }
            exec::run(&exec::ExecArgs {
                backend: cli.backend.clone(),
                file,
                timeout: match wait {
                    Some(durations::Wait::For(d)) => Some(d),
                    _ => None,
                },
                forever: wait == Some(durations::Wait::Forever),
                label,
                max_hold: max_hold.unwrap_or(session_lock::DEFAULT_MAX_HOLD),
                kill_after: kill_after.unwrap_or(exec::DEFAULT_KILL_AFTER),
                // `-w 0` is `-n`, as in flock(1).
                nonblock: nonblock || wait == Some(durations::Wait::For(Duration::ZERO)),
                conflict_exit_code: conflict_exit_code.unwrap_or(EXIT_NOT_OBTAINED),
                verbose,
                cmd: match command {
                    Some(c) => vec!["/bin/sh".into(), "-c".into(), c],
                    None => cmd,
                },
            })
        }
        Command::Append {
            wait,
            verbose,
            sync,
            file,
            lines,
        } => {
            let timeout = match wait {
                Some(durations::Wait::For(d)) => Some(d),
                _ => None,
            };
            let mut opts = options(timeout, None, Some("session-lock append".into()));
            if wait == Some(durations::Wait::Forever) {
                opts = opts.without_timeout();
            }
            append(&file, &opts, &lines, sync, verbose)
        }
        Command::Status {
            json,
            json_lines,
            noheadings,
            output,
            pid,
            suffix,
            paths,
        } => status(
            &paths,
            &StatusFormat {
                json: if json {
                    Json::Document
                } else if json_lines {
                    Json::Lines
                } else {
                    Json::No
                },
                headings: !noheadings,
                file_only: output.is_some() || pid.is_some(),
                columns: output.map_or(columns::DEFAULT.to_vec(), |c| c.0),
                pid,
            },
            &suffix,
        ),
        Command::Clean {
            dry_run,
            json,
            noheadings,
            suffix,
            dirs,
        } => clean(&dirs, dry_run, json, !noheadings, &suffix),
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(shell, &mut cli_command(), "session-lock", &mut out);
            0
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Bench(args) => {
            #[cfg(feature = "etcd")]
            if let session_lock::Backend::Etcd(cfg) = backend_args::backend() {
                return ExitCode::from(bench::etcd::run(&args, &cfg) as u8);
            }
            return ExitCode::from(bench::run(&args) as u8);
        }
    };
    // A one-shot process: leave no parked witness slot behind.
    session_lock::close_idle();
    ExitCode::from(code)
}

/// The command line's definition, with the etcd-only options shown only
/// on the subcommands that take a lock (they are global, so that they may
/// stand anywhere on the line, and clap would list them everywhere).
fn cli_command() -> clap::Command {
    let mut cmd = Cli::command();
    for id in ["lease_ttl", "key"] {
        let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == id).cloned() else {
            continue;
        };
        // Hidden where propagated; a visible copy where a lock is taken
        // (clap does not propagate a global arg to a subcommand that has
        // one of the same id, and passes its value up either way).
        cmd = cmd.mut_arg(id, |a| a.hide(true));
        for sub in ["exec", "append"] {
            let visible = arg.clone();
            cmd = cmd.mut_subcommand(sub, |s| s.arg(visible));
        }
    }
    cmd
}

/// `session-lock.1` and `session-lock-SUB.1` for each visible subcommand
/// (clap_mangen's `generate_to` would add pages for `help` too).
fn man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![("session-lock.1".to_owned(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("session-lock-{}", sub.get_name());
        pages.push((
            format!("{name}.1"),
            sub.clone().display_name(&name).bin_name(&name),
        ));
    }
    for (file, page) in pages {
        let mut out = std::fs::File::create(dir.join(file))?;
        clap_mangen::Man::new(page).render(&mut out)?;
    }
    Ok(())
}

/// `man`: the page on stdout, or every page into `dir`.
fn man(dir: Option<&Path>) -> u8 {
    let cmd = cli_command();
    let written = match dir {
        Some(d) => man_pages(&cmd, d),
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout().lock()),
    };
    match written {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 128 + 13,
        Err(e) => {
            eprintln!(
                "session-lock: writing the man page{}: {e}",
                dir.map_or(String::new(), |d| format!(" into {}", d.display()))
            );
            EXIT_IO
        }
    }
}

/// The library's resolved names of the transcript this run locks (its
/// directory made absolute and real) and how the user named them: the
/// library's messages are printed with the user's names (one rule for
/// every path the command line prints).
static SHOWN: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// Remember how the user named `file`, for [`fail`].
pub(crate) fn remember_shown(file: &Path) {
    if let Ok(paths) = LockPaths::resolve_existing(file) {
        let _ = SHOWN.set(vec![
            (paths.lock.display().to_string(), shown_lock(file)),
            (
                paths.target.display().to_string(),
                file.display().to_string(),
            ),
        ]);
    }
}

/// `msg` with the library's resolved names replaced by the user's (the
/// lock's first: the transcript's name is a prefix of it).
fn as_user_named(msg: String, names: &[(String, String)]) -> String {
    names.iter().fold(msg, |m, (resolved, shown)| {
        if resolved == shown {
            m
        } else {
            m.replace(resolved.as_str(), shown)
        }
    })
}

/// Print an error as one line and map it to an exit code.
pub(crate) fn fail(err: &Error) -> u8 {
    let msg = as_user_named(err.to_string(), SHOWN.get().map_or(&[], Vec::as_slice));
    eprintln!("session-lock: {msg}");
    match err.kind() {
        ErrorKind::Busy | ErrorKind::Timeout | ErrorKind::Stale => EXIT_NOT_OBTAINED,
        ErrorKind::LockLost => EXIT_LOST,
        _ => EXIT_IO,
    }
}

/// Whether log lines on a stream may carry colour: only on a terminal, and
/// only while `NO_COLOR` is unset or empty (<https://no-color.org>).
fn colour_wanted(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// What `exec` says about a flock(1) option it does not support: one line,
/// with what to do instead.
fn refused_flock_option(name: &str) -> &'static str {
    match name {
        "-s" => {
            "-s/--shared is not supported: the lock is exclusive only (readers of an append-only transcript need no lock); drop -s"
        }
        "-x" => "-x/-e/--exclusive is not needed: the lock is always exclusive; drop it",
        "-o" => {
            "-o/--close is not supported: the command's whole tree keeps the lock (that is what guards its writes); to let a child outlive the lock, start it detached (setsid -f) after the lock is released"
        }
        "-u" => {
            "-u/--unlock is not supported: the lock is released when the command's tree exits; there is no descriptor to unlock"
        }
        "FD" => {
            "fd mode (flock FD) is not supported: there is no descriptor to lock; name the transcript and the command: session-lock exec FILE CMD [ARGS]..."
        }
        _ => "this flock(1) option is not supported",
    }
}

fn describe_owner(owner: &session_lock::Owner) -> String {
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
/// waiting (as cargo does for its own lock). Every backend calls back only
/// once it knows someone holds the lock (an etcd that was never reached
/// gets no waiting notice), and names the holder from its owner
/// record (pid, host, label, age).
pub(crate) fn acquire_announcing(file: &Path, opts: &LockOptions) -> Result<LockGuard, Error> {
    const ANNOUNCE_AFTER: Duration = Duration::from_secs(1);
    // One acquisition: the library calls back once the wait has lasted a
    // second, with the holder it is waiting for.
    let name = file.display().to_string();
    let opts = opts.clone().on_wait(ANNOUNCE_AFTER, move |holder| {
        eprintln!(
            "session-lock: waiting for the lock on {name} (held by {})",
            describe_owner(holder)
        );
    });
    session_lock::acquire_with(file, &opts)
}

/// A transcript argument must name a file: a directory there would put
/// its lock beside the directory, outside it. Its directory must exist:
/// like `flock(1)`, the command line never creates one.
pub(crate) fn check_transcript(file: &Path) -> Result<(), u8> {
    if file.is_dir() {
        eprintln!(
            "session-lock: {} is a directory; name the transcript file inside it",
            file.display()
        );
        return Err(EXIT_IO);
    }
    let parent = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if std::fs::symlink_metadata(parent).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        eprintln!(
            "session-lock: directory {} does not exist; create it first (session-lock never creates directories)",
            parent.display()
        );
        return Err(EXIT_IO);
    }
    Ok(())
}

/// The lock file of `file` as the user named it (the rule for every path
/// the command line prints: as given, never made absolute).
pub(crate) fn shown_lock(file: &Path) -> String {
    format!("{}.lock", file.display())
}

/// `--verbose`: the lock obtained, after how long a wait, and whose dead
/// lock it took over (and why), if any.
pub(crate) fn report_acquired(file: &Path, guard: &LockGuard, waited: Duration, pid: u32) {
    eprintln!(
        "session-lock: holding the lock on {} (pid {pid}) after waiting {:.3}s",
        shown_lock(file),
        waited.as_secs_f64()
    );
    if let Some(t) = guard.takeover()
        && t.reclaimed()
    {
        eprintln!(
            "session-lock: took over the lock of pid {} ({}), which did not release it",
            t.previous()
                .and_then(|r| r.pid)
                .map_or("?".into(), |p| p.to_string()),
            t.reasons()
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn append(file: &Path, opts: &LockOptions, lines: &[String], sync: bool, verbose: bool) -> u8 {
    if let Err(code) = check_transcript(file) {
        return code;
    }
    remember_shown(file);
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
    let asked = std::time::Instant::now();
    let guard = match acquire_announcing(file, opts) {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    if verbose {
        report_acquired(file, &guard, asked.elapsed(), std::process::id());
    }
    let appended = if sync {
        guard.append_lines_durable(&all)
    } else {
        guard.append_lines(&all)
    };
    if let Err(e) = appended {
        return fail(&e);
    }
    match guard.release() {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

fn lock_files(paths: &[PathBuf], suffix: &str) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for p in paths {
        // A path naming a lock file is inspected as such, whatever it is
        // (a directory or symlink there is reported, never scanned).
        if p.extension().is_some_and(|e| e == "lock") {
            out.push(p.clone());
        } else if p.is_dir() {
            out.extend(session_lock::sweep::lock_files(p, suffix)?);
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
            // Printed as the user named it (FILE.lock), unless the lock
            // lives elsewhere (a symlinked transcript's lock is beside
            // its target): one rule for every path we print.
            let lock = LockPaths::resolve_existing(p)?.lock;
            let given = PathBuf::from(shown_lock(p));
            let same = std::fs::canonicalize(parent).is_ok_and(|d| {
                Some(d.join(given.file_name().unwrap_or_default())) == Some(lock.clone())
            });
            out.push(if same { given } else { lock });
        }
    }
    Ok(out)
}

fn io_err(op: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::io(op, path, e)
}

/// An age as `status` and `clean` print it: the two largest units of
/// d/h/m/s, floored, the second left out when it is zero (`3d4h`, `2h`,
/// `2h5m`, `4m10s`, `12s`); under 10 s, seconds with one decimal (`9.9s`,
/// `0.3s`, `0.0s`). `-` when unknown.
fn age(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "-".into();
    };
    let secs = d.as_secs();
    if secs < 10 {
        return format!("{secs}.{}s", d.subsec_millis() / 100);
    }
    let units = [(86_400, 'd'), (3_600, 'h'), (60, 'm'), (1, 's')];
    let i = units.iter().position(|(n, _)| secs >= *n).unwrap_or(3);
    let (big, big_unit) = units[i];
    let mut out = format!("{}{big_unit}", secs / big);
    if let Some((small, small_unit)) = units.get(i + 1) {
        let rest = secs % big / small;
        if rest > 0 {
            out.push_str(&format!("{rest}{small_unit}"));
        }
    }
    out
}

/// Print one line of `status` / `clean` output. A closed pipe
/// (`status | head`) ends the process quietly with 141, as SIGPIPE would
/// end a C tool; any other write error is exit 5.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(128 + 13);
        }
        eprintln!("session-lock: writing to stdout: {e}");
        std::process::exit(i32::from(EXIT_IO));
    }
}

/// Print rows as left-aligned columns (each as wide as its widest cell, two
/// spaces apart), the header first unless `headings` is false. The last
/// column (the path) is not padded.
fn print_table(header: &[&str], rows: &[Vec<String>], headings: bool) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    if !headings {
        widths.iter_mut().for_each(|w| *w = 0);
    }
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        let cells: Vec<&str> = cells.collect();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        emit(&out);
    };
    if headings {
        line(&mut header.iter().copied());
    }
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

/// The table cells shared by `status` and `clean`: VERDICT PID ALIVE AGE REASONS.
fn lock_cells(insp: Option<&Inspection>) -> Vec<String> {
    let Some(insp) = insp else {
        return ["absent", "-", "-", "-", "-"].map(String::from).to_vec();
    };
    let reasons: Vec<&str> = insp.reasons.iter().map(|r| r.as_str()).collect();
    vec![
        format!("{:?}", insp.verdict).to_lowercase(),
        insp.record
            .as_ref()
            .and_then(|r| r.pid)
            .map_or("-".into(), |p| p.to_string()),
        insp.pid_alive.map_or("?".into(), |a| a.to_string()),
        age(insp.age.or(insp.file_age)),
        if reasons.is_empty() {
            "-".into()
        } else {
            reasons.join(",")
        },
    ]
}

/// The cells VERDICT PID ALIVE AGE REASONS of a reclaim guard in the way:
/// `guard - - AGE PROBLEM`.
fn guard_cells(g: &session_lock::GuardReport) -> Vec<String> {
    vec![
        "guard".into(),
        "-".into(),
        "-".into(),
        age(g.age),
        g.problem.as_str().into(),
    ]
}

/// A lock as JSON: the library's [`Inspection`] fields (camelCase), or just
/// `lockPath` and `verdict: "absent"`: what `status --json` and
/// `clean --json` print for a lock, before their own fields.
fn lock_json(path: &Path, insp: Option<&Inspection>) -> serde_json::Map<String, serde_json::Value> {
    let v = match insp {
        Some(i) => serde_json::to_value(i).unwrap_or_default(),
        None => serde_json::json!({"lockPath": path, "verdict": "absent"}),
    };
    match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// The facts `status` adds to the library's inspection of a lock: the
/// recorded pid's own liveness, who holds the witness, the waiters.
struct LockFacts {
    alive: Option<bool>,
    holders: Vec<u32>,
    waiters: Option<usize>,
    command: Option<String>,
}

fn lock_facts(lock: &Path, insp: Option<&Inspection>) -> LockFacts {
    let rec = insp.and_then(|i| i.record.as_ref());
    let local = rec.is_some_and(|r| {
        r.hostname.is_none()
            || r.hostname.as_deref() == rustix::system::uname().nodename().to_str().ok()
    });
    // The library's `pid_alive` counts a held witness as life; the pid's
    // own liveness is what ALIVE says: never `true` for a dead pid.
    let alive = match (rec.and_then(|r| r.pid), local) {
        (Some(pid), true) => columns::pid_alive(pid, rec.and_then(|r| r.starttime)),
        _ => insp.and_then(|i| i.pid_alive),
    };
    let queue = {
        let mut q = lock.as_os_str().to_owned();
        q.push(".queue");
        PathBuf::from(q)
    };
    LockFacts {
        alive,
        holders: if insp.is_some() {
            columns::holders(lock)
        } else {
            Vec::new()
        },
        waiters: columns::waiters(&queue),
        command: match (alive, rec.and_then(|r| r.pid)) {
            (Some(true), Some(pid)) if local => columns::command_of(pid),
            _ => None,
        },
    }
}

fn status(paths: &[PathBuf], fmt: &StatusFormat, suffix: &str) -> u8 {
    #[cfg(feature = "etcd")]
    if let session_lock::Backend::Etcd(cfg) = backend_args::backend() {
        if fmt.file_only {
            eprintln!(
                "session-lock: status -o and -p apply to lock files; with etcd the table has its own columns (PID HOST AGE TTL TOKEN WAITERS LABEL KEY)"
            );
            return 2;
        }
        return etcd_status(&cfg, fmt.json, fmt.headings);
    }
    if paths.is_empty() {
        eprintln!("session-lock: status needs at least one directory, transcript or lock file");
        return 2;
    }
    if !valid_suffix(suffix) {
        return 2;
    }
    let files = match lock_files(paths, suffix) {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let opts = LockOptions::new();
    let mut code = 0;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut docs: Vec<serde_json::Value> = Vec::new();
    let dash = || "-".to_owned();
    // A row of the chosen columns from a column -> cell function.
    let row_of = |cell: &dyn Fn(&str) -> String| -> Vec<String> {
        fmt.columns.iter().map(|c| cell(c)).collect()
    };
    for f in files {
        let insp = match session_lock::inspect(&f, &opts) {
            Ok(i) => i,
            Err(e) => {
                code = fail(&e);
                continue;
            }
        };
        let facts = lock_facts(&f, insp.as_ref());
        let rec = insp.as_ref().and_then(|i| i.record.as_ref());
        if let Some(p) = fmt.pid
            && rec.and_then(|r| r.pid) != Some(p)
            && !facts.holders.contains(&p)
        {
            continue;
        }
        let attention = insp.as_ref().and_then(session_lock::lock_attention);
        // A reclaim guard that keeps a reclaimable lock from going.
        let guard = insp
            .as_ref()
            .filter(|i| i.verdict == Verdict::Reclaimable)
            .and_then(|_| session_lock::guard_report(&f));
        if let Some(g) = &guard {
            eprintln!("session-lock: {}: {g}", f.display());
        }
        if fmt.json != Json::No {
            let mut v = lock_json(&f, insp.as_ref());
            if insp.is_some() {
                v.insert(
                    "pidAlive".into(),
                    serde_json::to_value(facts.alive).unwrap_or_default(),
                );
                v.insert(
                    "holders".into(),
                    serde_json::to_value(&facts.holders).unwrap_or_default(),
                );
                v.insert(
                    "command".into(),
                    serde_json::to_value(&facts.command).unwrap_or_default(),
                );
            }
            v.insert(
                "waiters".into(),
                serde_json::to_value(facts.waiters).unwrap_or_default(),
            );
            v.insert(
                "attention".into(),
                serde_json::to_value(attention).unwrap_or_default(),
            );
            if let Some(g) = &guard {
                v.insert(
                    "reclaimGuard".into(),
                    serde_json::to_value(g).unwrap_or_default(),
                );
            }
            docs.push(serde_json::Value::Object(v));
        } else {
            let base = lock_cells(insp.as_ref());
            rows.push(row_of(&|c| match c {
                "VERDICT" => base[0].clone(),
                "PID" => base[1].clone(),
                "ALIVE" if insp.is_some() => facts.alive.map_or("?".into(), |a| a.to_string()),
                "ALIVE" => base[2].clone(),
                "AGE" => base[3].clone(),
                "REASONS" => base[4].clone(),
                "ATTENTION" => attention.map_or_else(dash, |a| a.event_type.as_str().to_owned()),
                "HOLDERS" if insp.is_none() => dash(),
                "HOLDERS" if facts.holders.is_empty() => {
                    if insp
                        .as_ref()
                        .is_some_and(|i| i.witness == session_lock::Witness::Held)
                    {
                        "?".into()
                    } else {
                        dash()
                    }
                }
                "HOLDERS" => facts
                    .holders
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                "LABEL" => rec.and_then(|r| r.label.clone()).unwrap_or_else(dash),
                "HOST" => rec.and_then(|r| r.hostname.clone()).unwrap_or_else(dash),
                "COMMAND" => facts.command.clone().unwrap_or_else(dash),
                "WAITERS" => facts.waiters.map_or("?".into(), |w| w.to_string()),
                "PATH" => f.display().to_string(),
                _ => dash(),
            }));
            if let Some(g) = &guard {
                let cells = guard_cells(g);
                rows.push(row_of(&|c| match c {
                    "VERDICT" => cells[0].clone(),
                    "AGE" => cells[3].clone(),
                    "REASONS" => cells[4].clone(),
                    "PATH" => g.path.display().to_string(),
                    _ => dash(),
                }));
            }
        }
    }
    // Files next to the locks that look like ours and are not: listed
    // with the reason (`clean` keeps them too).
    for dir in paths.iter().filter(|p| p.is_dir()) {
        if fmt.pid.is_some() {
            break;
        }
        let found = match session_lock::sweep::foreign_files(dir, suffix) {
            Ok(f) => f,
            Err(e) => {
                code = fail(&e);
                continue;
            }
        };
        for k in found {
            if fmt.json != Json::No {
                docs.push(serde_json::json!({
                    "lockPath": k.path, "verdict": k.kind, "reasons": [k.reason],
                    "attention": null,
                }));
            } else {
                rows.push(row_of(&|c| match c {
                    "VERDICT" => k.kind.to_owned(),
                    "REASONS" => k.reason.as_str().to_owned(),
                    "PATH" => k.path.display().to_string(),
                    _ => dash(),
                }));
            }
        }
    }
    match fmt.json {
        Json::No => print_table(&fmt.columns, &rows, fmt.headings),
        Json::Lines => docs.iter().for_each(|d| emit(&d.to_string())),
        Json::Document => emit(
            &serde_json::to_string_pretty(&serde_json::json!({ "locks": docs }))
                .unwrap_or_default(),
        ),
    }
    code
}

/// `status` with an etcd backend: every lock under the prefix.
#[cfg(feature = "etcd")]
fn etcd_status(cfg: &session_lock::etcd::EtcdBackend, json: Json, headings: bool) -> u8 {
    let locks = match session_lock::etcd::status(cfg) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let mut code = 0;
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    for l in &locks {
        for f in &l.foreign {
            eprintln!(
                "session-lock: a key written by something else is under the lock prefix: {f}"
            );
            code = EXIT_IO;
        }
        if l.holder_key.is_empty() {
            continue;
        }
        if json != Json::No {
            docs.push(serde_json::to_value(l).unwrap_or_default());
        } else {
            let age = l
                .owner
                .created_at_ms()
                .map(|c| Duration::from_millis((session_lock_now_ms() - c).max(0) as u64));
            rows.push(vec![
                l.owner.pid.map_or("-".into(), |p| p.to_string()),
                l.owner.hostname.clone().unwrap_or_else(|| "-".into()),
                age_cell(age),
                l.lease_ttl_left_s.map_or("-".into(), |t| format!("{t}s")),
                l.token.to_string(),
                l.waiters.to_string(),
                l.owner.label.clone().unwrap_or_else(|| "-".into()),
                l.key.clone(),
            ]);
        }
    }
    match json {
        Json::No => print_table(
            &[
                "PID", "HOST", "AGE", "TTL", "TOKEN", "WAITERS", "LABEL", "KEY",
            ],
            &rows,
            headings,
        ),
        Json::Lines => docs.iter().for_each(|d| emit(&d.to_string())),
        Json::Document => emit(
            &serde_json::to_string_pretty(&serde_json::json!({ "locks": docs }))
                .unwrap_or_default(),
        ),
    }
    code
}

#[cfg(feature = "etcd")]
fn age_cell(d: Option<Duration>) -> String {
    age(d)
}

#[cfg(feature = "etcd")]
fn session_lock_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `--suffix` must end with `.lock` and say more than that: a bare `.lock`
/// would judge other software's lock files (Cargo.lock, yarn.lock).
fn valid_suffix(suffix: &str) -> bool {
    if suffix.ends_with(".lock") && suffix.len() > ".lock".len() {
        return true;
    }
    eprintln!(
        "session-lock: --suffix {suffix:?} must be longer than \".lock\" and end with it (other software's lock files must not be judged)"
    );
    false
}

fn clean(dirs: &[PathBuf], dry_run: bool, json: bool, headings: bool, suffix: &str) -> u8 {
    if !valid_suffix(suffix) {
        return 2;
    }
    let mut code = 0;
    let mut rows = Vec::new();
    for dir in dirs {
        if !dir.is_dir() {
            eprintln!("session-lock: {} is not a directory", dir.display());
            code = EXIT_IO;
            continue;
        }
        let opts = SweepOptions::new()
            .with_remove(!dry_run)
            .with_suffix(suffix);
        let result = match sweep(dir, &opts) {
            Ok(r) => r,
            Err(e) => {
                code = fail(&e);
                continue;
            }
        };
        for r in &result.locks {
            let reclaimable = r
                .inspection
                .as_ref()
                .is_some_and(|i| i.verdict == Verdict::Reclaimable);
            let action = if r.removed {
                "removed"
            } else if r.error.is_some() {
                "error"
            } else if reclaimable && r.guard.is_some() {
                "kept-guarded"
            } else if reclaimable && dry_run {
                "would-remove"
            } else if reclaimable {
                "kept-changed"
            } else {
                "kept"
            };
            if let Some(e) = &r.error {
                code = EXIT_IO;
                eprintln!("session-lock: {}: {e}", r.lock_path.display());
            }
            if json {
                // The library's report: the lock's fields, `removed`, `error`.
                let mut v = match serde_json::to_value(r) {
                    Ok(serde_json::Value::Object(m)) => m,
                    _ => lock_json(&r.lock_path, None),
                };
                v.insert("action".into(), action.into());
                emit(&serde_json::Value::Object(v).to_string());
            } else {
                let mut row = vec![action.to_owned()];
                row.extend(lock_cells(r.inspection.as_ref()));
                if r.inspection.is_none() && r.error.is_some() {
                    row[1] = "unknown".into();
                }
                row.push(r.lock_path.display().to_string());
                rows.push(row);
                if let Some(g) = &r.guard {
                    let mut row = vec!["kept".to_owned()];
                    row.extend(guard_cells(g));
                    row.push(g.path.display().to_string());
                    rows.push(row);
                }
            }
            if let Some(g) = &r.guard {
                eprintln!("session-lock: {}: {g}", r.lock_path.display());
            }
        }
        let removed = |v: &'static str, done: &[PathBuf], would: &[PathBuf]| {
            let done = done.iter().map(move |p| (v, p.clone(), true));
            done.chain(would.iter().map(move |p| (v, p.clone(), false)))
                .collect::<Vec<_>>()
        };
        let mut files = removed("temp", &result.temps_removed, &result.temps_removable);
        files.extend(removed(
            "queue",
            &result.queues_removed,
            &result.queues_removable,
        ));
        for (kind, t, removed) in files {
            let action = if removed { "removed" } else { "would-remove" };
            if json {
                emit(
                    &serde_json::json!({
                        "lockPath": t, "verdict": kind, "removed": removed,
                        "error": null, "action": action,
                    })
                    .to_string(),
                );
            } else {
                let mut row = vec![action.to_owned(), kind.to_owned()];
                row.extend(["-", "-", "-", "-"].map(String::from));
                row.push(t.display().to_string());
                rows.push(row);
            }
        }
        // Files that look like ours and were left in place, with the reason.
        for k in &result.kept {
            if json {
                emit(
                    &serde_json::json!({
                        "lockPath": k.path, "verdict": k.kind, "removed": false,
                        "error": null, "action": "kept", "reasons": [k.reason],
                    })
                    .to_string(),
                );
            } else {
                let mut row = vec!["kept".to_owned(), k.kind.to_owned()];
                row.extend(["-", "-", "-"].map(String::from));
                row.push(k.reason.as_str().to_owned());
                row.push(k.path.display().to_string());
                rows.push(row);
            }
        }
    }
    if !json {
        print_table(
            &[
                "ACTION", "VERDICT", "PID", "ALIVE", "AGE", "REASONS", "PATH",
            ],
            &rows,
            headings,
        );
    }
    code
}

#[cfg(test)]
mod tests {
    use super::{age, as_user_named};

    #[test]
    fn library_names_are_printed_as_the_user_gave_them() {
        let names = [
            (
                "/srv/s/a.jsonl.lock".to_owned(),
                "s/a.jsonl.lock".to_owned(),
            ),
            ("/srv/s/a.jsonl".to_owned(), "s/a.jsonl".to_owned()),
        ];
        for (msg, want) in [
            (
                "session file locked (timeout 300ms): pid=1 alive=true ageMs=5 /srv/s/a.jsonl.lock",
                "session file locked (timeout 300ms): pid=1 alive=true ageMs=5 s/a.jsonl.lock",
            ),
            (
                "open transcript /srv/s/a.jsonl: denied",
                "open transcript s/a.jsonl: denied",
            ),
            (
                "nothing to change /srv/other",
                "nothing to change /srv/other",
            ),
        ] {
            assert_eq!(as_user_named(msg.into(), &names), want);
        }
    }
    use std::time::Duration;

    #[test]
    fn ages_are_compact() {
        let ms = |n| Some(Duration::from_millis(n));
        let s = |n| Some(Duration::from_secs(n));
        for (d, want) in [
            (None, "-"),
            (ms(0), "0.0s"),
            (ms(99), "0.0s"),
            (ms(300), "0.3s"),
            (ms(1_999), "1.9s"),
            (ms(9_999), "9.9s"),
            (s(10), "10s"),
            (s(59), "59s"),
            (s(60), "1m"),
            (s(250), "4m10s"),
            (s(3_599), "59m59s"),
            (s(3_600), "1h"),
            (s(3_600 + 59), "1h"),
            (s(7_500), "2h5m"),
            (s(86_399), "23h59m"),
            (s(86_400), "1d"),
            (s(3 * 86_400 + 4 * 3_600 + 59 * 60), "3d4h"),
            (s(400 * 86_400 + 3_600), "400d1h"),
        ] {
            assert_eq!(age(d), want, "{d:?}");
        }
    }
}
