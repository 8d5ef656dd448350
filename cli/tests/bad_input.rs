//! Bad-input corpus for the lock file, driven through `try_acquire`,
//! `acquire_with` (100 ms timeout), `session_lock::inspect` and the CLI
//! (`session-lock status --json-lines TRANSCRIPT`, `session-lock clean --json DIR`).
//!
//! Every case is probed twice, fresh and with its mtime 60 s in the past
//! (`File::set_modified`, no sleeping), each probe on its own fresh copy.
//! Every case must have a clear outcome (held, reclaimable after the grace,
//! or a clear error naming the path), never a panic, never a hang, and never
//! the removal of anything that is not a stale lock file (symlink targets,
//! hard-linked files and directories survive byte for byte).
//!
//! The table of outcomes is printed (`--nocapture`) and written to
//! `target/bad-input-outcomes.txt` (the cases with another user's files,
//! an ignored test that needs root: `target/bad-input-outcomes-other-users.txt`).

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use session_lock::{Error, LockOptions};
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Any single probe taking longer than this is a hang.
const HANG: Duration = Duration::from_secs(20);
const AGE: Duration = Duration::from_secs(60);

#[derive(Clone)]
enum Setup {
    Bytes(Vec<u8>),
    /// A sparse file of this many bytes (reads must stay capped).
    Sparse(u64),
    Dir,
    DirWithFile,
    Fifo,
    Socket,
    SymlinkDangling,
    /// Symlink to an hour-old lock of a dead pid in another directory.
    SymlinkToOldLock,
    SymlinkToDir,
    /// Hard link to a file in another directory holding junk.
    HardLinkToVictim,
    /// The transcript's parent directory does not exist.
    MissingParent,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// Empty, malformed or pid-less: kept while fresh (`in-grace`), reclaimed
    /// once its mtime is older than the 5 s orphan grace.
    Grace,
    /// Never removed by a contender: held or stale (live owner, unknown
    /// version, unreadable), fresh or old.
    Kept,
    /// Owner provably gone: reclaimed at once.
    Reclaim,
    /// Not a regular file: a clear `NotAFile` error naming the path, nothing
    /// removed or followed.
    NotAFile,
    /// See the missing-parent row.
    MissingParent,
}

#[derive(Clone)]
struct Case {
    name: String,
    setup: Setup,
    expect: Expect,
    /// chown the lock file to this uid (and gid).
    owner: Option<u32>,
    mode: Option<u32>,
}

fn case(name: impl Into<String>, setup: Setup, expect: Expect) -> Case {
    Case {
        name: name.into(),
        setup,
        expect,
        owner: None,
        mode: None,
    }
}

fn json(v: serde_json::Value) -> Setup {
    Setup::Bytes(format!("{v}\n").into_bytes())
}

fn raw(s: &str) -> Setup {
    Setup::Bytes(s.as_bytes().to_vec())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A child process that stays alive for the test (killed on drop).
struct Live(std::process::Child);

impl Live {
    fn spawn(cmd: &mut Command) -> Live {
        Live(
            cmd.stdin(Stdio::null())
                .spawn()
                .expect("spawn live process"),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Vals {
    live: u32,
    dead: u32,
}

fn corpus(v: &Vals) -> Vec<Case> {
    use Expect::*;
    let now = iso(now_ms());
    let live = v.live;
    let dead = v.dead;
    let rec = |extra: serde_json::Value| {
        let mut base = serde_json::json!({"createdAt": now});
        for (k, val) in extra.as_object().unwrap() {
            base[k] = val.clone();
        }
        json(base)
    };
    let mut deep = "[".repeat(100_000);
    deep.push_str(&"]".repeat(100_000));
    vec![
        case("empty file", raw(""), Grace),
        case("`{}`", raw("{}"), Grace),
        case("whitespace only", raw("  \n\t\n"), Grace),
        case("NUL bytes", Setup::Bytes(vec![0; 64]), Grace),
        case(
            "truncated JSON (live pid)",
            Setup::Bytes(format!("{{\"pid\": {live}, \"createdAt\": \"").into_bytes()),
            Grace,
        ),
        case(
            "non-UTF-8 bytes",
            Setup::Bytes(b"\xff\xfe\x00{\"pid\":\xc3\x28}".to_vec()),
            Grace,
        ),
        case(
            "UTF-8 BOM + valid record (live pid)",
            Setup::Bytes(
                [
                    &b"\xef\xbb\xbf"[..],
                    format!("{{\"pid\":{live},\"createdAt\":\"{now}\"}}").as_bytes(),
                ]
                .concat(),
            ),
            Grace,
        ),
        case("100 MiB sparse file", Setup::Sparse(100 << 20), Grace),
        case(
            "64 KiB + 1 record (live pid, long label)",
            json(serde_json::json!({"pid": live, "createdAt": now, "label": "x".repeat(65_536)})),
            Grace,
        ),
        case(
            "nesting 100 000 deep",
            Setup::Bytes(deep.into_bytes()),
            Grace,
        ),
        case(
            "JSON array of a record (live pid)",
            Setup::Bytes(format!("[{{\"pid\":{live},\"createdAt\":\"{now}\"}}]").into_bytes()),
            Grace,
        ),
        case("JSON number", raw("42"), Grace),
        case("JSON string", raw("\"locked\""), Grace),
        case("JSON null", raw("null"), Grace),
        case("JSON true", raw("true"), Grace),
        case("pid 0", rec(serde_json::json!({"pid": 0})), Grace),
        case("pid -1", rec(serde_json::json!({"pid": -1})), Grace),
        case(
            "pid 2^31",
            rec(serde_json::json!({"pid": 2_147_483_648u64})),
            Grace,
        ),
        case(
            "pid 2^32 + live pid (wraps to a live pid if cast)",
            rec(serde_json::json!({"pid": (1u64 << 32) + u64::from(live)})),
            Grace,
        ),
        case(
            "pid 1.5 (float)",
            rec(serde_json::json!({"pid": 1.5})),
            Grace,
        ),
        case(
            "pid as string (live pid)",
            rec(serde_json::json!({"pid": live.to_string()})),
            Grace,
        ),
        case("pid null", rec(serde_json::json!({"pid": null})), Grace),
        case(
            "no pid, createdAt 2 h old",
            json(serde_json::json!({"createdAt": iso(now_ms() - 7_200_000)})),
            Grace,
        ),
        case(
            "duplicate pid keys (dead, then live)",
            Setup::Bytes(
                format!("{{\"pid\":{dead},\"pid\":{live},\"createdAt\":\"{now}\"}}").into_bytes(),
            ),
            Kept,
        ),
        case(
            "starttime -1 (live pid)",
            rec(serde_json::json!({"pid": live, "starttime": -1})),
            Kept,
        ),
        case(
            "starttime 12.5 (live pid)",
            rec(serde_json::json!({"pid": live, "starttime": 12.5})),
            Kept,
        ),
        case(
            "starttime -1 (dead pid)",
            rec(serde_json::json!({"pid": dead, "starttime": -1})),
            Reclaim,
        ),
        case(
            "createdAt garbage (live pid)",
            json(serde_json::json!({"pid": live, "createdAt": "yesterday"})),
            Kept,
        ),
        case(
            "createdAt garbage (dead pid)",
            json(serde_json::json!({"pid": dead, "createdAt": "yesterday"})),
            Reclaim,
        ),
        case(
            "createdAt as number (live pid)",
            json(serde_json::json!({"pid": live, "createdAt": 1_700_000_000_000u64})),
            Kept,
        ),
        case(
            "createdAt year 2999 (live pid)",
            json(serde_json::json!({"pid": live, "createdAt": "2999-01-01T00:00:00.000Z"})),
            Kept,
        ),
        case(
            "createdAt year 2999 (dead pid)",
            json(serde_json::json!({"pid": dead, "createdAt": "2999-01-01T00:00:00.000Z"})),
            Reclaim,
        ),
        case(
            "createdAt 1970 (live pid)",
            json(serde_json::json!({"pid": live, "createdAt": "1970-01-01T00:00:00.000Z"})),
            Kept,
        ),
        case(
            "createdAt 1970 (dead pid)",
            json(serde_json::json!({"pid": dead, "createdAt": "1970-01-01T00:00:00.000Z"})),
            Reclaim,
        ),
        case(
            "version 99 (dead pid, witness lease)",
            rec(serde_json::json!({"pid": dead, "version": 99, "witness": "lease"})),
            Kept,
        ),
        case(
            "version as string \"2\" (dead pid)",
            rec(serde_json::json!({"pid": dead, "version": "2"})),
            Reclaim,
        ),
        case(
            "extra fields (live pid)",
            rec(
                serde_json::json!({"pid": live, "zz": {"deep": [1, 2, {"x": null}]}, "hostnameX": "h"}),
            ),
            Kept,
        ),
        case(
            "extra fields (dead pid)",
            rec(serde_json::json!({"pid": dead, "zz": [1, 2, 3]})),
            Reclaim,
        ),
        case(
            "witness \"flock\" claimed, nobody holds it (live pid)",
            rec(serde_json::json!({"pid": live, "witness": "flock", "version": 1})),
            Reclaim,
        ),
        case(
            "other host, live pid, fresh",
            rec(serde_json::json!({"pid": live, "hostname": "other-host.invalid"})),
            Kept,
        ),
        case(
            "hostname \"\" (dead pid)",
            rec(serde_json::json!({"pid": dead, "hostname": ""})),
            Reclaim,
        ),
        case("a directory", Setup::Dir, NotAFile),
        case(
            "a directory with a file inside",
            Setup::DirWithFile,
            NotAFile,
        ),
        case("a FIFO", Setup::Fifo, NotAFile),
        case("a socket", Setup::Socket, NotAFile),
        case("a dangling symlink", Setup::SymlinkDangling, NotAFile),
        case(
            "a symlink to an hour-old dead-pid lock elsewhere",
            Setup::SymlinkToOldLock,
            NotAFile,
        ),
        case("a symlink to a directory", Setup::SymlinkToDir, NotAFile),
        case(
            "a hard link to a junk file elsewhere",
            Setup::HardLinkToVictim,
            Grace,
        ),
        case(
            "missing parent directory",
            Setup::MissingParent,
            MissingParent,
        ),
    ]
}

struct Copy {
    _root: tempfile::TempDir,
    dir: PathBuf,
    t: PathBuf,
    lock: PathBuf,
    /// Files outside the lock directory that must survive unchanged.
    keep: Vec<(PathBuf, Vec<u8>)>,
    /// (file type, dev, ino) at the lock path after setup.
    before: Option<(std::fs::FileType, u64, u64)>,
}

fn make(case: &Case, vals: &Vals, aged: bool) -> Copy {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = root.path().join("sessions");
    let outside = root.path().join("outside");
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut t = dir.join("s.jsonl");
    let mut keep = Vec::new();
    let lock = lock_of(&t);
    match &case.setup {
        Setup::Bytes(b) => std::fs::write(&lock, b).unwrap(),
        Setup::Sparse(n) => std::fs::File::create(&lock).unwrap().set_len(*n).unwrap(),
        Setup::Dir => std::fs::create_dir(&lock).unwrap(),
        Setup::DirWithFile => {
            std::fs::create_dir(&lock).unwrap();
            std::fs::write(lock.join("inside"), b"keep").unwrap();
            keep.push((lock.join("inside"), b"keep".to_vec()));
        }
        Setup::Fifo => {
            let c = std::ffi::CString::new(lock.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        Setup::Socket => {
            drop(std::os::unix::net::UnixListener::bind(&lock).unwrap());
        }
        Setup::SymlinkDangling => {
            std::os::unix::fs::symlink(outside.join("nothing"), &lock).unwrap();
        }
        Setup::SymlinkToOldLock => {
            let target = outside.join("old.jsonl.lock");
            write_reference_lock(&target, vals.dead, 3_600_000, None);
            age_file(&target, Duration::from_secs(3600));
            keep.push((target.clone(), std::fs::read(&target).unwrap()));
            std::os::unix::fs::symlink(&target, &lock).unwrap();
        }
        Setup::SymlinkToDir => {
            let target = outside.join("d");
            std::fs::create_dir(&target).unwrap();
            std::fs::write(target.join("x.jsonl.lock"), b"").unwrap();
            age_file(&target.join("x.jsonl.lock"), Duration::from_secs(3600));
            keep.push((target.join("x.jsonl.lock"), Vec::new()));
            std::os::unix::fs::symlink(&target, &lock).unwrap();
        }
        Setup::HardLinkToVictim => {
            let victim = outside.join("victim.db");
            std::fs::write(&victim, b"precious data, not a lock").unwrap();
            std::fs::hard_link(&victim, &lock).unwrap();
            keep.push((victim, b"precious data, not a lock".to_vec()));
        }
        Setup::MissingParent => {
            t = dir.join("missing").join("s.jsonl");
        }
    }
    let lock = lock_of(&t);
    if let Some(uid) = case.owner {
        std::os::unix::fs::lchown(&lock, Some(uid), Some(uid)).unwrap();
    }
    if let Some(m) = case.mode {
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let regular = std::fs::symlink_metadata(&lock).is_ok_and(|m| m.file_type().is_file());
    if aged && regular {
        age_file(&lock, AGE);
    }
    let before = std::fs::symlink_metadata(&lock)
        .ok()
        .map(|m| (m.file_type(), m.dev(), m.ino()));
    Copy {
        _root: root,
        dir,
        t,
        lock,
        keep,
        before,
    }
}

/// Run `f` on its own thread: a panic or a hang becomes an outcome.
fn guarded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, &'static str> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(HANG) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err("PANIC"),
        Err(_) => Err("HANG"),
    }
}

fn kind(e: &Error) -> String {
    format!("{:?}", e.kind()).to_lowercase()
}

fn reasons(r: &[session_lock::Reason]) -> String {
    r.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

/// Outcome of one library acquire: `acquired`, `busy`, `timeout`, or
/// `error:<kind>`. An error must name the lock path.
fn acquire_outcome(
    r: Result<Result<(), Error>, &'static str>,
    lock: &Path,
    fails: &mut Vec<String>,
    what: &str,
) -> String {
    match r {
        Ok(Ok(())) => "acquired".into(),
        Ok(Err(e)) => {
            let name = lock.file_name().unwrap().to_string_lossy().into_owned();
            let parent = lock.parent().unwrap().to_string_lossy().into_owned();
            let msg = e.to_string();
            if !msg.contains(&name) && !msg.contains(&parent) {
                fails.push(format!("{what}: error does not name the path: {msg}"));
            }
            match e.kind() {
                session_lock::ErrorKind::Busy => "busy".into(),
                session_lock::ErrorKind::Timeout => "timeout".into(),
                _ => format!("error:{}", kind(&e)),
            }
        }
        Err(p) => {
            fails.push(format!("{what}: {p}"));
            p.into()
        }
    }
}

struct Cli {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_cli(mut cmd: Command, what: &str, fails: &mut Vec<String>) -> Cli {
    let start = Instant::now();
    let mut child = cmd
        .env("SESSION_LOCK_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn session-lock");
    // Drain the pipes on threads so a chatty child cannot block.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            fails.push(format!("{what}: HANG"));
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let code = status.and_then(|s| s.code());
    if status.is_some() && code.is_none() {
        fails.push(format!("{what}: killed by a signal: {status:?}"));
    }
    if code == Some(101) {
        fails.push(format!("{what}: PANIC"));
    }
    Cli {
        code,
        stdout: o.join().unwrap_or_default(),
        stderr: e.join().unwrap_or_default(),
    }
}

fn rc(c: &Cli) -> String {
    c.code.map_or("none".into(), |c| c.to_string())
}

/// `status --json-lines LOCK`: "rc verdict[reasons]".
fn status_outcome(c: &Cli) -> String {
    let v: Option<serde_json::Value> = c
        .stdout
        .lines()
        .next()
        .and_then(|l| serde_json::from_str(l).ok());
    match v {
        Some(v) => {
            let rs: Vec<String> = v["reasons"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{} {}{}",
                rc(c),
                v["verdict"].as_str().unwrap_or("?"),
                if rs.is_empty() {
                    String::new()
                } else {
                    format!("[{}]", rs.join(","))
                }
            )
        }
        None => format!("{} -", rc(c)),
    }
}

/// `clean --json DIR`: "rc action" for our lock.
fn clean_outcome(c: &Cli, lock: &Path) -> String {
    let action = c
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["lockPath"].as_str() == Some(&*lock.to_string_lossy()))
        .map(|v| {
            let a = v["action"].as_str().unwrap_or("?").to_owned();
            if v["error"].is_string() {
                format!("{a} (error)")
            } else {
                a
            }
        })
        .unwrap_or_else(|| "-".into());
    format!("{} {action}", rc(c))
}

#[derive(Default)]
struct Probe {
    inspect: String,
    inspect_verdict: Option<session_lock::Verdict>,
    inspect_reasons: Vec<session_lock::Reason>,
    try_acq: String,
    acq: String,
    status: String,
    status_rc: Option<i32>,
    clean: String,
    clean_rc: Option<i32>,
    /// Lock path still there, same file, after try_acquire / acquire_with / clean.
    survived: [bool; 3],
}

fn still_same(copy: &Copy) -> bool {
    let now = std::fs::symlink_metadata(&copy.lock)
        .ok()
        .map(|m| (m.file_type(), m.dev(), m.ino()));
    now.is_some() && now == copy.before
}

fn check_keep(copy: &Copy, what: &str, fails: &mut Vec<String>) {
    for (p, bytes) in &copy.keep {
        match std::fs::read(p) {
            Ok(b) if &b == bytes => {}
            other => fails.push(format!(
                "{what}: {} was changed or removed ({:?})",
                p.display(),
                other.map(|b| b.len())
            )),
        }
    }
}

fn probe(case: &Case, vals: &Vals, aged: bool, fails: &mut Vec<String>) -> Probe {
    let tag = format!("{} ({})", case.name, if aged { "aged" } else { "fresh" });
    let mut p = Probe::default();

    // inspect
    let copy = make(case, vals, aged);
    let t = copy.t.clone();
    let start = Instant::now();
    match guarded(move || session_lock::inspect(&t, &LockOptions::new())) {
        Ok(Ok(Some(i))) => {
            p.inspect = format!(
                "{} [{}]",
                format!("{:?}", i.verdict).to_lowercase(),
                reasons(&i.reasons)
            );
            p.inspect_verdict = Some(i.verdict);
            p.inspect_reasons = i.reasons;
        }
        Ok(Ok(None)) => p.inspect = "absent".into(),
        Ok(Err(e)) => {
            if !e.to_string().contains("s.jsonl") {
                fails.push(format!("{tag}: inspect error does not name the path: {e}"));
            }
            p.inspect = format!("error:{}", kind(&e));
        }
        Err(x) => {
            fails.push(format!("{tag}: inspect {x}"));
            p.inspect = x.into();
        }
    }
    if start.elapsed() > Duration::from_secs(2) {
        fails.push(format!(
            "{tag}: inspect took {:?} (reads must be capped)",
            start.elapsed()
        ));
    }
    check_keep(&copy, &format!("{tag} inspect"), fails);
    if copy.before.is_some() && !still_same(&copy) {
        fails.push(format!("{tag}: inspect changed the lock path"));
    }

    // try_acquire
    let copy = make(case, vals, aged);
    let t = copy.t.clone();
    let r = guarded(move || {
        session_lock::try_acquire_with(&t, &LockOptions::new()).and_then(|g| g.release())
    });
    p.try_acq = acquire_outcome(r, &copy.lock, fails, &format!("{tag} try_acquire"));
    p.survived[0] = still_same(&copy);
    check_keep(&copy, &format!("{tag} try_acquire"), fails);

    // acquire_with, 100 ms
    let copy = make(case, vals, aged);
    let t = copy.t.clone();
    let start = Instant::now();
    let r = guarded(move || {
        session_lock::acquire_with(
            &t,
            &LockOptions::new().with_timeout(Duration::from_millis(100)),
        )
        .and_then(|g| g.release())
    });
    if start.elapsed() > Duration::from_secs(5) {
        fails.push(format!(
            "{tag}: a 100 ms acquire took {:?}",
            start.elapsed()
        ));
    }
    p.acq = acquire_outcome(r, &copy.lock, fails, &format!("{tag} acquire_with"));
    p.survived[1] = still_same(&copy);
    check_keep(&copy, &format!("{tag} acquire_with"), fails);

    // CLI status
    let copy = make(case, vals, aged);
    let mut cmd = bin();
    cmd.args([OsStr::new("status"), OsStr::new("--json-lines")])
        .arg(&copy.t);
    let c = run_cli(cmd, &format!("{tag} status"), fails);
    p.status = status_outcome(&c);
    p.status_rc = c.code;
    if c.code == Some(5) && !c.stderr.contains("s.jsonl") && !c.stderr.contains("missing") {
        fails.push(format!(
            "{tag}: status error does not name the path: {}",
            c.stderr
        ));
    }
    check_keep(&copy, &format!("{tag} status"), fails);

    // CLI clean
    let copy = make(case, vals, aged);
    let clean_dir = copy.lock.parent().unwrap().to_owned();
    let mut cmd = bin();
    cmd.args([OsStr::new("clean"), OsStr::new("--json")])
        .arg(&clean_dir);
    let c = run_cli(cmd, &format!("{tag} clean"), fails);
    p.clean = clean_outcome(&c, &copy.lock);
    p.clean_rc = c.code;
    p.survived[2] = still_same(&copy);
    check_keep(&copy, &format!("{tag} clean"), fails);
    let _ = &copy.dir;
    p
}

fn check_expect(case: &Case, aged: bool, p: &Probe, fails: &mut Vec<String>) {
    use session_lock::Verdict::*;
    let tag = format!("{} ({})", case.name, if aged { "aged" } else { "fresh" });
    let mut want = |ok: bool, what: &str| {
        if !ok {
            fails.push(format!(
                "{tag}: expected {what} ({:?}); got inspect={} try={} acquire={} status={} clean={} survived={:?}",
                case.expect, p.inspect, p.try_acq, p.acq, p.status, p.clean, p.survived
            ));
        }
    };
    let kept = p.survived.iter().all(|&s| s);
    match (case.expect, aged) {
        (Expect::Grace, false) => {
            want(p.inspect_verdict == Some(Held), "held");
            want(
                p.inspect_reasons.contains(&session_lock::Reason::InGrace),
                "in-grace",
            );
            want(p.try_acq == "busy" && p.acq == "timeout", "busy / timeout");
            want(kept, "nothing removed");
            want(
                p.status_rc == Some(0) && p.clean_rc == Some(0),
                "status 0, clean 0",
            );
        }
        (Expect::Grace, true) | (Expect::Reclaim, _) => {
            want(p.inspect_verdict == Some(Reclaimable), "reclaimable");
            want(p.try_acq == "acquired" && p.acq == "acquired", "acquired");
            want(
                !p.survived[2] && p.clean.ends_with("removed"),
                "clean removes it",
            );
            want(
                p.status_rc == Some(0) && p.clean_rc == Some(0),
                "status 0, clean 0",
            );
        }
        (Expect::Kept, _) => {
            want(
                matches!(p.inspect_verdict, Some(Held | Stale)),
                "held or stale",
            );
            want(p.try_acq == "busy" && p.acq == "timeout", "busy / timeout");
            want(kept, "nothing removed");
            want(
                p.status_rc == Some(0) && p.clean_rc == Some(0),
                "status 0, clean 0",
            );
        }
        (Expect::NotAFile, _) => {
            want(p.inspect == "error:notafile", "inspect: NotAFile");
            want(
                p.try_acq == "error:notafile" && p.acq == "error:notafile",
                "acquire: NotAFile",
            );
            want(kept, "nothing removed or followed");
            want(
                p.status_rc == Some(5) && p.clean_rc == Some(5),
                "status 5, clean 5",
            );
        }
        (Expect::MissingParent, _) => {
            want(p.inspect == "absent", "inspect: absent");
            want(
                p.try_acq == "error:io" && p.acq == "error:io",
                "acquire refuses a missing directory (creates it only with create_dirs)",
            );
            want(
                p.status_rc == Some(5),
                "status of a transcript in a missing directory: 5",
            );
            want(p.clean_rc == Some(5), "clean of a missing directory: 5");
        }
    }
}

fn row(case: &str, fresh: &Probe, aged: &Probe) -> String {
    let cell = |p: &Probe| {
        (
            p.inspect.clone(),
            format!("{} / {} / {} / {}", p.try_acq, p.acq, p.status, p.clean),
        )
    };
    let (fi, fo) = cell(fresh);
    let (ai, ao) = cell(aged);
    format!("| {case} | {fi} | {fo} | {ai} | {ao} |")
}

// ------------------------------------------------------ another user

/// How to run the binary as another, non-root user: `setpriv` (any uid) or
/// `runuser -u nobody` (uid 65534).
fn as_user() -> Option<(u32, Box<dyn Fn() -> Command>)> {
    let has = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    if has("setpriv") {
        Some((
            65533,
            Box::new(|| {
                let mut c = Command::new("setpriv");
                c.args(["--reuid=65533", "--regid=65533", "--clear-groups", BIN]);
                c
            }),
        ))
    } else if has("runuser") {
        Some((
            65534,
            Box::new(|| {
                let mut c = Command::new("runuser");
                c.args(["-u", "nobody", "--", BIN]);
                c
            }),
        ))
    } else {
        None
    }
}

#[test]
fn bad_lock_file_corpus() {
    corpus_run(false);
}

/// The corpus's cases with another user's files, judged as root and as
/// another user (docs/testing.md, "Tests that need a component").
#[test]
#[ignore = "needs root and setpriv(1) for another user's files (CI runs it as root): cargo test --all-features --test bad_input -- --ignored"]
fn bad_lock_file_corpus_with_other_users() {
    require_root_and_setpriv();
    corpus_run(true);
}

/// The corpus (`other_users` false), or only its cases with another
/// user's files, judged as root and through the CLI as another user.
fn corpus_run(other_users: bool) {
    let mut live = Live::spawn(Command::new("sleep").arg("600"));
    let vals = Vals {
        live: live.pid(),
        dead: dead_pid(),
    };
    let mut cases = if other_users {
        Vec::new()
    } else {
        corpus(&vals)
    };
    // Another user's files, judged as root.
    let root = other_users;
    let other_live = root.then(|| {
        Live::spawn(Command::new("setpriv").args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sleep",
            "600",
        ]))
    });
    if root {
        let now = iso(now_ms());
        let mut c = case(
            "owned by uid 65534, 0600, dead pid (as root)",
            json(serde_json::json!({"pid": vals.dead, "createdAt": now})),
            Expect::Reclaim,
        );
        c.owner = Some(65534);
        c.mode = Some(0o600);
        cases.push(c);
        if let Some(o) = &other_live {
            let mut c = case(
                "owned by uid 65534, 0600, live pid of uid 65534 (as root)",
                json(serde_json::json!({"pid": o.pid(), "createdAt": now})),
                Expect::Kept,
            );
            c.owner = Some(65534);
            c.mode = Some(0o600);
            cases.push(c);
        }
    }

    let mut fails = Vec::new();
    let mut table = vec![
        "| case | fresh: inspect verdict [reasons] | fresh: try_acquire / acquire 100ms / status rc verdict / clean rc action | aged 60 s: inspect verdict [reasons] | aged 60 s: try_acquire / acquire 100ms / status / clean |".to_string(),
        "|---|---|---|---|---|".to_string(),
    ];
    let start = Instant::now();
    for c in &cases {
        let fresh = probe(c, &vals, false, &mut fails);
        check_expect(c, false, &fresh, &mut fails);
        let aged = probe(c, &vals, true, &mut fails);
        check_expect(c, true, &aged, &mut fails);
        table.push(row(&c.name, &fresh, &aged));
    }

    // The same files judged by a non-root user, through the CLI.
    let mut notes = Vec::new();
    match as_user().filter(|_| other_users) {
        None => notes.push(
            "note: the cases with another user's files are in bad_lock_file_corpus_with_other_users \
             (ignored unless run on purpose: needs root and setpriv)"
                .to_string(),
        ),
        Some((runner, cmd)) => {
            let owner = if runner == 65534 { 0 } else { 65534 };
            let now = iso(now_ms());
            let mut sub = Vec::new();
            let mut c = case(
                format!("owned by uid {owner}, 0600, dead pid (as uid {runner})"),
                json(serde_json::json!({"pid": vals.dead, "createdAt": now})),
                Expect::Kept,
            );
            c.owner = Some(owner);
            c.mode = Some(0o600);
            sub.push(c);
            if let Some(o) = &other_live {
                let mut c = case(
                    format!("owned by uid {owner}, 0600, live pid of uid 65534 (as uid {runner})"),
                    json(serde_json::json!({"pid": o.pid(), "createdAt": now})),
                    Expect::Kept,
                );
                c.owner = Some(owner);
                c.mode = Some(0o600);
                sub.push(c);
                let mut c = case(
                    format!(
                        "owned by uid {owner}, 0644, live pid of uid 65534: EPERM (as uid {runner})"
                    ),
                    json(serde_json::json!({"pid": o.pid(), "createdAt": now})),
                    Expect::Kept,
                );
                c.owner = Some(owner);
                c.mode = Some(0o644);
                sub.push(c);
            }
            let mut c = case(
                format!("owned by uid {owner}, 0644, dead pid (as uid {runner})"),
                json(serde_json::json!({"pid": vals.dead, "createdAt": now})),
                Expect::Reclaim,
            );
            c.owner = Some(owner);
            c.mode = Some(0o644);
            sub.push(c);
            for c in &sub {
                let mut cells = Vec::new();
                for aged in [false, true] {
                    let tag = format!("{} ({})", c.name, if aged { "aged" } else { "fresh" });
                    // Acquire attempt: `append --timeout 100ms`.
                    let copy = make(c, &vals, aged);
                    let mut a = cmd();
                    a.args([
                        OsStr::new("append"),
                        OsStr::new("--timeout"),
                        OsStr::new("100ms"),
                    ])
                    .arg(&copy.t)
                    .arg("line");
                    let r = run_cli(a, &format!("{tag} append as {runner}"), &mut fails);
                    let acq = match r.code {
                        Some(0) => "acquired".to_string(),
                        Some(3) => "busy/timeout (3)".to_string(),
                        _ => format!("rc {} {}", rc(&r), r.stderr.trim()),
                    };
                    let acq_kept = still_same(&copy);
                    let copy2 = make(c, &vals, aged);
                    let mut s = cmd();
                    s.args([OsStr::new("status"), OsStr::new("--json-lines")])
                        .arg(&copy2.lock);
                    let st = run_cli(s, &format!("{tag} status as {runner}"), &mut fails);
                    let copy3 = make(c, &vals, aged);
                    let mut k = cmd();
                    k.args([OsStr::new("clean"), OsStr::new("--json")])
                        .arg(&copy3.dir);
                    let cl = run_cli(k, &format!("{tag} clean as {runner}"), &mut fails);
                    let clean_kept = still_same(&copy3);
                    let ok = match c.expect {
                        Expect::Kept => {
                            r.code == Some(3) && acq_kept && clean_kept && st.code == Some(0)
                        }
                        _ => r.code == Some(0) && !clean_kept,
                    };
                    if !ok {
                        fails.push(format!(
                            "{tag}: expected {:?}; append rc {} ({}), status {}, clean {}, kept {acq_kept}/{clean_kept}",
                            c.expect,
                            rc(&r),
                            r.stderr.trim(),
                            status_outcome(&st),
                            clean_outcome(&cl, &copy3.lock)
                        ));
                    }
                    cells.push((
                        "(CLI only)".to_string(),
                        format!(
                            "append: {acq} / status {} / clean {}",
                            status_outcome(&st),
                            clean_outcome(&cl, &copy3.lock)
                        ),
                    ));
                }
                table.push(format!(
                    "| {} | {} | {} | {} | {} |",
                    c.name, cells[0].0, cells[0].1, cells[1].0, cells[1].1
                ));
            }
        }
    }
    let elapsed = start.elapsed();
    drop(other_live);
    let _ = live.0.kill();

    let mut text = String::new();
    text.push_str("Bad-input corpus: outcome per case (each probe on a fresh copy).\n");
    text.push_str("try_acquire: acquired | busy | error:<kind>; acquire 100ms: acquired | timeout | error:<kind>;\n");
    text.push_str("status = `session-lock status --json-lines TRANSCRIPT` exit code and verdict; clean = `session-lock clean --json DIR` exit code and action.\n");
    text.push_str("Exit codes: 0 ok, 3 not obtained, 5 bad path / I/O error.\n\n");
    for l in &table {
        text.push_str(l);
        text.push('\n');
    }
    for n in &notes {
        text.push_str(n);
        text.push('\n');
    }
    text.push_str(&format!(
        "\n{} cases, {:.1}s\n",
        table.len() - 2,
        elapsed.as_secs_f64()
    ));
    eprintln!("{text}");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join(if other_users {
            "bad-input-outcomes-other-users.txt"
        } else {
            "bad-input-outcomes.txt"
        });
    std::fs::write(&out, &text).unwrap();
    eprintln!("(written to {})", out.display());
    assert!(
        fails.is_empty(),
        "{} problems:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

/// The 100 MiB file: inspecting it reads at most 64 KiB + 1 (the sparse
/// file would take far longer to read whole, and its size is reported).
#[test]
fn a_huge_lock_file_is_judged_from_a_capped_read() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let f = std::fs::File::create(lock_of(&t)).unwrap();
    f.set_len(10 << 30).unwrap(); // 10 GiB, sparse
    drop(f);
    let start = Instant::now();
    let insp = within(WAIT, "inspect 10 GiB", move || {
        session_lock::inspect(&t, &LockOptions::new())
            .unwrap()
            .unwrap()
    });
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(insp.contents, "malformed");
}

/// Issue 11, gap 6: a *valid* JSON object padded past the 64 KiB cap (a
/// long string field) is judged malformed, through inspect's capped read.
#[test]
fn a_valid_record_padded_past_the_cap_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let rec = serde_json::json!({
        "pid": std::process::id(),
        "createdAt": iso(now_ms()),
        "label": "x".repeat(70 * 1024),
    });
    let text = format!("{rec}\n");
    assert!(text.len() > 64 * 1024);
    std::fs::write(lock_of(&t), &text).unwrap();
    let insp = session_lock::inspect(&t, &LockOptions::new())
        .unwrap()
        .expect("a lock file");
    assert_eq!(insp.contents, "malformed", "{insp:?}");
    assert!(
        insp.record.is_none(),
        "an over-cap record was read: {insp:?}"
    );
}

/// `session-lock status PATH` scans PATH as a directory whenever
/// `Path::is_dir()` says so (`lock_files` in `cli/src/main.rs`
/// checks `p.is_dir()` before `p.extension() == "lock"`, and `is_dir`
/// follows symlinks). So for a lock path that is a directory, `status`
/// prints nothing and exits 0 instead of the clear `NotAFile` error that
/// `status TRANSCRIPT` gives; and for a lock path that is a symlink to a
/// directory, the symlink is followed and the lock files of the target
/// directory are reported as if they were this lock. Nothing is removed
/// (status is read-only), so the harm is a misleading report.
#[test]
fn status_of_a_lock_path_that_is_a_directory_or_a_symlink_to_one_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let sessions = root.path().join("sessions");
    let outside = root.path().join("outside");
    std::fs::create_dir(&sessions).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("x.jsonl.lock"), b"").unwrap();
    let dir_lock = sessions.join("d.jsonl.lock");
    std::fs::create_dir(&dir_lock).unwrap();
    let link_lock = sessions.join("l.jsonl.lock");
    std::os::unix::fs::symlink(&outside, &link_lock).unwrap();
    let mut fails = Vec::new();
    for lock in [&dir_lock, &link_lock] {
        let mut cmd = bin();
        cmd.arg("status").arg(lock);
        let c = run_cli(cmd, "status", &mut fails);
        if c.code != Some(5) || c.stdout.contains("x.jsonl.lock") {
            fails.push(format!(
                "status {}: exit {}, stdout {:?}, stderr {:?}",
                lock.display(),
                rc(&c),
                c.stdout,
                c.stderr
            ));
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}
