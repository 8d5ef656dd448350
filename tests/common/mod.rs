//! Helpers shared by the integration tests: child processes of the crate's
//! own binary with a readiness handshake, and waits that fail with a message
//! instead of hanging.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `session-lock` binary (package session-lock-cli): known to the
/// tests in `cli/tests` only.
pub const BIN: &str = match option_env!("CARGO_BIN_EXE_session-lock") {
    Some(p) => p,
    None => "session-lock (the tests that run it are in cli/tests)",
};

/// The test-helper binary (`__hold`, `__worker`, `__chaos_worker`,
/// `__chaos_section`), not part of the shipped CLI: tests that run it need
/// `required-features = ["test-helpers"]` in cli/Cargo.toml.
pub const HELPER: &str = match option_env!("CARGO_BIN_EXE_session-lock-test-helper") {
    Some(p) => p,
    None => "session-lock-test-helper (built only with --features test-helpers)",
};

/// A child running the test helper.
pub fn helper() -> Command {
    let mut c = Command::new(HELPER);
    c.env("SESSION_LOCK_LOG", "warn");
    c
}

/// Generous bound for any wait in a test: a deadlock fails after this.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn bin() -> Command {
    let mut c = Command::new(BIN);
    c.env("SESSION_LOCK_LOG", "warn");
    c
}

/// A child holding a lock via `session-lock __hold`.
pub struct Holder {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub lines: mpsc::Receiver<String>,
}

impl Holder {
    /// Start a holder and wait (bounded) until it says `ready`.
    pub fn start(file: &Path, extra: &[&str]) -> Holder {
        let mut h = Holder::spawn_unready(file, extra, &[]);
        h.wait_ready();
        h
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Next stdout line, failing the test after `limit`.
    pub fn next_line(&mut self, limit: Duration) -> String {
        match self.lines.recv_timeout(limit) {
            Ok(l) => l,
            Err(e) => {
                let _ = self.child.kill();
                panic!(
                    "holder {} printed nothing within {limit:?}: {e}",
                    self.child.id()
                );
            }
        }
    }

    /// Ask the holder to release (close its stdin) and wait for its exit.
    pub fn release(mut self) -> ExitStatus {
        drop(self.stdin.take());
        wait_child(&mut self.child, WAIT, "holder release")
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL holder");
        wait_child(&mut self.child, WAIT, "killed holder");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait for a child with a deadline; kill it and fail the test on timeout.
pub fn wait_child(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: child {} did not exit within {limit:?}", child.id());
            }
            Err(e) => panic!("{what}: wait failed: {e}"),
        }
    }
}

/// Run a thread's work with a deadline; fail the test if it does not finish.
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("{what} did not finish within {limit:?}: {e}"))
}

/// Write a lock file in the reference's format.
pub fn write_reference_lock(lock: &Path, pid: u32, created_ms_ago: u64, starttime: Option<u64>) {
    let created = std::time::SystemTime::now() - Duration::from_millis(created_ms_ago);
    let ms = created
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut v = serde_json::json!({"pid": pid, "createdAt": iso(ms)});
    if let Some(st) = starttime {
        v["starttime"] = st.into();
    }
    let mut f = std::fs::File::create(lock).unwrap();
    f.write_all(serde_json::to_string_pretty(&v).unwrap().as_bytes())
        .unwrap();
}

/// RFC 3339 UTC with milliseconds (like JavaScript's toISOString).
pub fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil from days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// Start time (clock ticks) of a live pid, from /proc.
pub fn starttime(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &text[text.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A pid that is certainly dead: spawn `true`, reap it.
pub fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// Set a file's mtime into the past.
pub fn age_file(path: &Path, by: Duration) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - by).unwrap();
}

/// The names in `dir`, sorted, without lock queue files (`*.lock.queue`)
/// and without the parked witness slots of live processes
/// (`.<name>.lock.w<N>.tmp` with a held flock): both are kept by design
/// (docs/protocol.md, "The queue" and "Witness slots"), and the tests that
/// care about them use [`all_names`]. A slot left by a dead process (flock
/// free) is listed.
pub fn names(dir: &Path) -> Vec<String> {
    all_names(dir)
        .into_iter()
        .filter(|n| !n.ends_with(".lock.queue") && !is_live_slot(&dir.join(n)))
        .collect()
}

/// `.<name>.lock.w<N>.tmp`: a witness slot's name.
pub fn is_slot_name(name: &str) -> bool {
    name.starts_with('.')
        && name
            .strip_suffix(".tmp")
            .and_then(|s| s.rsplit_once(".lock.w"))
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A witness slot whose flock some live process holds.
pub fn is_live_slot(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    is_slot_name(&name) && std::fs::File::open(path).is_ok_and(|f| flock_held(&f))
}

/// Nobody holds a flock on the file at `path` (an exclusive one can be had
/// now; it is dropped again when the descriptor closes).
pub fn flock_free(path: &Path) -> bool {
    let f = std::fs::File::open(path).expect("open a file to test its flock");
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
}

/// Someone holds a flock on the file (a shared one cannot be had now).
pub fn flock_held(f: &std::fs::File) -> bool {
    rustix::fs::flock(f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
}

/// Every name in `dir`, sorted.
pub fn all_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn lock_of(t: &Path) -> PathBuf {
    let mut s = t.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// The wait queue file of transcript `t`'s lock: `<t>.lock.queue`.
pub fn queue_of(t: &Path) -> PathBuf {
    let mut s = lock_of(t).into_os_string();
    s.push(".queue");
    PathBuf::from(s)
}

/// Wait (bounded) until `path` exists; fail the test naming `what`.
pub fn wait_for_path(path: &Path, limit: Duration, what: &str) {
    wait_until(
        limit,
        || std::fs::symlink_metadata(path).is_ok(),
        || format!("{what}: {} did not appear within {limit:?}", path.display()),
    );
}

/// Poll `done` every millisecond until it holds; after `limit`, fail the
/// test with `why()`.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool, why: impl Fn() -> String) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{}", why());
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Holder {
    /// Start `__hold` without waiting for `ready` (e.g. a child paused at a
    /// fault point through `SESSION_LOCK_FAULT_PAUSE`); `envs` are added to
    /// its environment. Call [`Holder::wait_ready`] later.
    pub fn spawn_unready(file: &Path, extra: &[&str], envs: &[(&str, &Path)]) -> Holder {
        let mut cmd = helper();
        cmd.arg("__hold").args(extra).arg(file);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn holder");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Holder {
            child,
            stdin,
            lines: rx,
        }
    }

    /// Wait (bounded) for the `ready` line of a holder started unready.
    pub fn wait_ready(&mut self) {
        let line = self.next_line(WAIT);
        assert!(line.starts_with("ready"), "holder said {line:?}");
    }
}

/// Device and inode of whatever is at `path` (not following a symlink).
pub fn file_identity(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.dev(), m.ino())
}

// ------------------------------------------- tests that need a component
//
// The rule (docs/testing.md, "Tests that need a component"): a test that
// needs something beyond the Rust toolchain and Linux (etcd, openssl, node
// and npm, root) is `#[ignore = "needs ...: ..."]`, so that
// `cargo test --all-features` lists it as `ignored` with the reason instead
// of passing without running; run on purpose (`-- --ignored` or
// `-- --include-ignored`, as `.ci/run` does), a missing component fails it
// with what to install. No test returns early because something is missing.

/// Fail the running test unless `present`: it needs `what` (`install` says
/// how to get it).
#[track_caller]
pub fn require(present: bool, what: &str, install: &str) {
    assert!(
        present,
        "this test needs {what}, which is missing here ({install}); \
         it is #[ignore]d for that reason and was run on purpose"
    );
}

/// Whether `program` runs and exits 0 with `arg` (e.g. `--version`).
pub fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Root and setpriv(1), to act as other users.
#[track_caller]
pub fn require_root_and_setpriv() {
    require(
        rustix::process::geteuid().is_root(),
        "root, to act as other users",
        "run it as root, as CI does",
    );
    require(
        runs("setpriv", "--version"),
        "setpriv(1)",
        "Debian: util-linux",
    );
}

/// A writer killed in the middle of a line, for real: `{"before":1}` is
/// written to `t`, then `append` (a `session-lock append ... T -` command,
/// stdin to be piped) is fed one line of `size` bytes and SIGKILLed once
/// the transcript grows, while its one `write(2)` is under way; if the
/// whole line made it anyway, `again` runs and it is tried with a line
/// twice as large. Returns the length of that first line, the torn
/// fragment's and the line's size.
pub fn kill_append_mid_line(
    t: &Path,
    mut size: usize,
    append: impl Fn() -> Command,
    mut again: impl FnMut(),
) -> (u64, u64, usize) {
    std::fs::write(t, "{\"before\":1}\n").unwrap();
    let head = std::fs::metadata(t).unwrap().len();
    loop {
        let mut line = Vec::with_capacity(size + 16);
        line.extend_from_slice(b"{\"big\":\"");
        line.resize(size, b'x');
        line.extend_from_slice(b"\"}\n");
        let mut child = append()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // EPIPE after the kill is expected.
        let feeder = std::thread::spawn(move || drop(stdin.write_all(&line)));
        // The write has begun once the transcript grows.
        wait_until(
            WAIT,
            || std::fs::metadata(t).unwrap().len() > head,
            || "the append never started writing".into(),
        );
        child.kill().unwrap();
        wait_child(&mut child, WAIT, "the killed append");
        feeder.join().unwrap();
        let written = std::fs::metadata(t).unwrap().len() - head;
        if written < (size + 3) as u64 {
            // The kill landed inside the write: a torn line is on disk.
            assert_ne!(std::fs::read(t).unwrap().last(), Some(&b'\n'));
            return (head, written, size);
        }
        assert!(size < 1 << 30, "the kill never landed inside the write");
        // The whole line made it: start again bigger.
        std::fs::write(t, "{\"before\":1}\n").unwrap();
        again();
        size *= 2;
    }
}

/// The `flock`s taken or waited for on `path`'s inode, from `/proc/locks`:
/// each its process and whether it holds the lock (a waiter's line reads
/// `-> FLOCK ...`). Matched by inode number alone, not the device:
/// `stat`'s device and the one `/proc/locks` prints differ on overlay
/// filesystems (as in containers); another file with the same number on
/// another device would have to be `flock`ed meanwhile to mislead it.
pub fn flocks_of(path: &Path) -> Vec<(u32, bool)> {
    use std::os::unix::fs::MetadataExt;
    let Ok(ino) = std::fs::metadata(path).map(|m| m.ino()) else {
        return Vec::new();
    };
    let suffix = format!(":{ino}");
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            // `N: [->] FLOCK ADVISORY WRITE <pid> <dev>:<inode> ...`
            let w: Vec<&str> = l.split_whitespace().skip(1).collect();
            let held = w.first() != Some(&"->");
            let w = if held { &w[..] } else { &w[1..] };
            (w.first() == Some(&"FLOCK") && w.get(4).is_some_and(|d| d.ends_with(&suffix)))
                .then(|| w.get(3).and_then(|p| p.parse().ok()).map(|pid| (pid, held)))
                .flatten()
        })
        .collect()
}

/// How many `flock`s are taken or waited for on `path` (see [`flocks_of`]).
pub fn flocks_on(path: &Path) -> usize {
    flocks_of(path).len()
}

/// Whether `pid` holds (not waits for) a `flock` on `path` (see
/// [`flocks_of`]).
pub fn flock_granted_to(path: &Path, pid: u32) -> bool {
    flocks_of(path).contains(&(pid, true))
}

/// The environment that pauses a child at fault point `point` (the
/// library's `fault-injection` feature): it creates
/// [`fault_reached`]`(dir, point, pid)` there and waits for [`fault_go`].
pub fn fault_env<'a>(point: &'a str, dir: &'a Path) -> [(&'static str, &'a Path); 2] {
    [
        ("SESSION_LOCK_FAULT_PAUSE", Path::new(point)),
        ("SESSION_LOCK_FAULT_DIR", dir),
    ]
}

/// The file a child paused by [`fault_env`] creates when it reaches `point`.
pub fn fault_reached(dir: &Path, point: &str, pid: u32) -> PathBuf {
    dir.join(format!("{point}.{pid}.reached"))
}

/// Let a child paused by [`fault_env`] at `point` go on.
pub fn fault_go(dir: &Path, point: &str, pid: u32) {
    std::fs::write(dir.join(format!("{point}.{pid}.go")), b"").unwrap();
}
