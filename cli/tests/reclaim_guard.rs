//! The reclaim guard `<lock>.reclaim` (docs/reclaim.md, "Next to the
//! reference"): a guard that blocks a reclaim is never deleted unless it
//! is an empty directory past `RECLAIM_GUARD_ABANDONED`, and it is named,
//! with its age and the fix, by the acquire timeout, `status` and `clean`;
//! its removal wakes a waiter through inotify, not a poll.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use session_lock::LockOptions;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// The step and wake counters are per process (steps) and per thread
/// (wakes): one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn guard_of(t: &Path) -> PathBuf {
    let mut s = lock_of(t).into_os_string();
    s.push(".reclaim");
    PathBuf::from(s)
}

fn cli(args: &[&std::ffi::OsStr]) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, WAIT, "session-lock");
    let mut out = child.wait_with_output().unwrap();
    out.status = status;
    out
}

/// Set the mtime of `p` itself (a symlink too) an hour back.
fn age_link(p: &Path) {
    let when = std::time::SystemTime::now() - Duration::from_secs(3600);
    let secs = when
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ok = std::process::Command::new("touch")
        .args(["-h", "-d"])
        .arg(format!("@{secs}"))
        .arg(p)
        .status()
        .unwrap();
    assert!(ok.success(), "touch -h {}", p.display());
}

/// What is at `p`, to prove it unchanged: type, identity, mtime, contents.
fn snapshot(p: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{} is gone: {e}", p.display()));
    let body = if m.is_dir() {
        format!("{:?}", all_names(p))
    } else if m.file_type().is_symlink() {
        format!("-> {:?}", std::fs::read_link(p).unwrap())
    } else {
        String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned()
    };
    format!("{:?} {} {} {body}", m.file_type(), m.ino(), m.mtime())
}

/// A regular file, a symlink and a non-empty directory at the guard name,
/// an hour old, next to a dead owner's lock: nothing at the guard name is
/// deleted, the lock is not reclaimed, and acquire's timeout, `status` and
/// `clean` name the guard with its age and the fix.
#[test]
fn a_guard_that_blocks_the_reclaim_is_kept_and_named_with_the_fix() {
    let _serial = serial();
    for case in ["regular file", "symlink", "non-empty directory"] {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("s.jsonl");
        let lock = lock_of(&t);
        let guard = guard_of(&t);
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"precious\n").unwrap();
        write_reference_lock(&lock, dead_pid(), 3_600_000, None);
        match case {
            "regular file" => std::fs::write(&guard, b"someone's data\n").unwrap(),
            "symlink" => std::os::unix::fs::symlink(&victim, &guard).unwrap(),
            _ => {
                std::fs::create_dir(&guard).unwrap();
                std::fs::write(guard.join("inside"), b"x").unwrap();
            }
        }
        age_link(&guard);
        let before = snapshot(&guard);
        let victim_before = snapshot(&victim);

        let opts = LockOptions::new().with_timeout(Duration::from_millis(300));
        let err = session_lock::acquire_with(&t, &opts).expect_err(case);
        let msg = err.to_string();
        assert_eq!(
            err.kind(),
            session_lock::ErrorKind::Timeout,
            "{case}: {msg}"
        );
        let shown = guard.display().to_string();
        for part in [shown.as_str(), "age 360", "by hand", "blocks the reclaim"] {
            assert!(
                msg.contains(part),
                "{case}: the timeout lacks {part:?}: {msg}"
            );
        }
        assert!(err.blocking_guard().is_some(), "{case}");
        let busy = session_lock::try_acquire_with(&t, &LockOptions::new()).expect_err(case);
        assert!(busy.to_string().contains(&shown), "{case}: {busy}");

        let status = cli(&["status".as_ref(), dir.path().as_os_str()]);
        let out = String::from_utf8_lossy(&status.stdout);
        let err_text = String::from_utf8_lossy(&status.stderr);
        assert!(
            out.lines()
                .any(|l| l.starts_with("guard") && l.ends_with(&shown)),
            "{case}: status has no guard row:\n{out}"
        );
        assert!(
            err_text.contains(&shown) && err_text.contains("by hand"),
            "{case}: status does not say what to do:\n{err_text}"
        );

        for args in [vec!["clean", "--dry-run"], vec!["clean"]] {
            let mut a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
            a.push(dir.path().as_os_str());
            let clean = cli(&a);
            let out = String::from_utf8_lossy(&clean.stdout);
            let err_text = String::from_utf8_lossy(&clean.stderr);
            assert!(
                out.lines()
                    .any(|l| l.starts_with("kept-guarded")
                        && l.ends_with(&lock.display().to_string())),
                "{case}: {args:?} does not say the lock is kept for the guard:\n{out}"
            );
            assert!(
                out.lines()
                    .any(|l| l.starts_with("kept") && l.ends_with(&shown)),
                "{case}: {args:?} has no guard row:\n{out}"
            );
            assert!(
                err_text.contains(&shown) && err_text.contains("by hand"),
                "{case}: {args:?} does not say what to do:\n{err_text}"
            );
        }
        assert_eq!(snapshot(&guard), before, "{case}: the guard was changed");
        assert_eq!(
            snapshot(&victim),
            victim_before,
            "{case}: its target was changed"
        );
        assert!(lock.exists(), "{case}: reclaimed under the guard");
    }
}

/// A waiter behind a guard it may not remove (non-empty) sleeps on
/// inotify; the guard's removal wakes it by an event, and it takes the
/// lock in a handful of steps, not by polling every few milliseconds.
#[test]
fn removing_the_guard_wakes_a_waiter_by_an_event() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    let guard = guard_of(&t);
    write_reference_lock(&lock, dead_pid(), 3_600_000, None);
    std::fs::create_dir(&guard).unwrap();
    std::fs::write(guard.join("inside"), b"x").unwrap();
    age_link(&guard);
    let steps_before = session_lock::__private::acquire_steps();
    let (events_before, timers_before) = session_lock::__private::wait_wakeups();
    let remover = {
        let guard = guard.clone();
        let dir = dir.path().to_owned();
        std::thread::spawn(move || {
            // Once the waiter watches the directory (its second step, or
            // later), remove the guard.
            wait_until(
                WAIT,
                || session_lock::__private::acquire_steps() >= steps_before + 2 && watched(&dir),
                || "the waiter never watched the directory (it polls)".into(),
            );
            std::fs::remove_file(guard.join("inside")).unwrap();
            std::fs::remove_dir(&guard).unwrap();
        })
    };
    let g = session_lock::acquire_with(&t, &LockOptions::new().with_timeout(WAIT))
        .expect("the lock is reclaimed once the guard is gone");
    remover.join().unwrap();
    let steps = session_lock::__private::acquire_steps() - steps_before;
    let (events, timers) = session_lock::__private::wait_wakeups();
    assert_eq!(timers - timers_before, 0, "woken by a timer");
    assert!(events > events_before, "not woken by an event");
    assert!(steps <= 6, "{steps} steps: the waiter polled");
    g.release().unwrap();
    assert!(!guard.exists());
}

/// Whether some inotify instance of this process watches `dir`.
fn watched(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ino = format!("ino:{:x} ", std::fs::metadata(dir).unwrap().ino());
    std::fs::read_dir("/proc/self/fdinfo")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .any(|info| {
            info.lines()
                .any(|l| l.starts_with("inotify wd:") && l.contains(&ino))
        })
}

/// A fresh guard directory (another reclaimer at work): the timeout and
/// `status` say it is live and when it counts as abandoned.
#[test]
fn a_live_guard_is_named_with_when_it_counts_as_abandoned() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let guard = guard_of(&t);
    write_reference_lock(&lock_of(&t), dead_pid(), 3_600_000, None);
    std::fs::create_dir(&guard).unwrap();
    let opts = LockOptions::new().with_timeout(Duration::from_millis(200));
    let msg = session_lock::acquire_with(&t, &opts)
        .expect_err("kept by the live guard")
        .to_string();
    let shown = guard.display().to_string();
    assert!(
        msg.contains(&shown) && msg.contains("live; counts as abandoned in"),
        "{msg}"
    );
    let status = cli(&["status".as_ref(), dir.path().as_os_str()]);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("guard") && l.contains(" live ") && l.ends_with(&shown)),
        "{out}"
    );
    assert!(guard.is_dir());
}

/// Another user's abandoned guard in a sticky directory: an unprivileged
/// acquirer may not remove it (`rmdir` is refused), so it is reported as
/// such, with `rmdir` by its owner or root as the fix, and left in place.
/// Runs the acquirer as uid 65534 (`setpriv`): needs root (docs/testing.md,
/// "Tests that need a component").
#[test]
#[ignore = "needs root and setpriv(1) to act as two other users (CI runs it as root): cargo test --all-features --test reclaim_guard -- --ignored"]
fn another_users_guard_in_a_sticky_directory_is_reported_not_removable() {
    let _serial = serial();
    require_root_and_setpriv();
    let setpriv = |uid: &str| {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
        ]);
        c
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let t = d.join("s.jsonl");
    let guard = guard_of(&t);
    // The guard: uid 65533's, an hour old.
    assert!(
        setpriv("65533")
            .arg("mkdir")
            .arg(&guard)
            .status()
            .unwrap()
            .success()
    );
    age_link(&guard);
    // A dead owner's lock, written by the acquirer's user (65534).
    let dead = dead_pid();
    let record = format!("{{\"pid\":{dead},\"createdAt\":\"2020-01-01T00:00:00.000Z\"}}");
    assert!(
        setpriv("65534")
            .args(["sh", "-c", "printf '%s' \"$1\" > \"$0\""])
            .arg(lock_of(&t))
            .arg(&record)
            .status()
            .unwrap()
            .success()
    );
    let before = snapshot(&guard);
    let mut child = setpriv("65534")
        .arg(BIN)
        .args(["append", "--wait", "300ms"])
        .arg(&t)
        .arg("{}")
        .env("SESSION_LOCK_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, WAIT, "acquirer as uid 65534");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !status.success(),
        "acquired under another user's guard: {err}"
    );
    let shown = guard.display().to_string();
    for part in [
        shown.as_str(),
        "uid 65533",
        "may not remove it",
        "rmdir -- ",
    ] {
        assert!(err.contains(part), "the error lacks {part:?}: {err}");
    }
    assert_eq!(snapshot(&guard), before, "the guard was changed");
    assert!(lock_of(&t).exists(), "reclaimed under the guard");
}

/// The async API waits behind a guard the same way: on the process-wide
/// inotify hub, which maps the guard's name to its lock; the guard's
/// removal wakes the task by an event.
#[test]
fn removing_the_guard_wakes_an_async_waiter_by_an_event() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let guard = guard_of(&t);
    write_reference_lock(&lock_of(&t), dead_pid(), 3_600_000, None);
    std::fs::create_dir(&guard).unwrap();
    std::fs::write(guard.join("inside"), b"x").unwrap();
    age_link(&guard);
    let steps_before = session_lock::__private::acquire_steps();
    let remover = {
        let guard = guard.clone();
        let dir = dir.path().to_owned();
        std::thread::spawn(move || {
            wait_until(
                WAIT,
                || session_lock::__private::acquire_steps() >= steps_before + 2 && watched(&dir),
                || "the async waiter never watched the directory".into(),
            );
            std::fs::remove_file(guard.join("inside")).unwrap();
            std::fs::remove_dir(&guard).unwrap();
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (events_before, timers_before) = session_lock::__private::wait_wakeups();
    let g = rt
        .block_on(session_lock::tokio::acquire_with(
            &t,
            &LockOptions::new().with_timeout(WAIT),
        ))
        .expect("the lock is reclaimed once the guard is gone");
    remover.join().unwrap();
    let (events, timers) = session_lock::__private::wait_wakeups();
    assert_eq!(timers - timers_before, 0, "woken by a timer");
    assert!(events > events_before, "not woken by an event");
    g.release().unwrap();
}
