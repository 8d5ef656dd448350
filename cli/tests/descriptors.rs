//! The descriptor budget (README, "Descriptors"): a held lock costs about
//! one descriptor, whatever API took it, and everything idle is given back
//! by release and `close_idle()`. Its own test binary: the counts are of
//! this whole process, so no other test may open files meanwhile.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::WAIT;
use session_lock::{ErrorKind, LockGuard};
use std::path::Path;

const LOCKS: usize = 400;

/// The tests of this file count the process's descriptors: one at a time.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Hold `LOCKS` locks, each written to; returns descriptors per held lock.
fn per_lock(dir: &Path, acquire: impl Fn(&Path) -> LockGuard) -> f64 {
    let before = open_fds();
    let guards: Vec<LockGuard> = (0..LOCKS)
        .map(|i| {
            let t = dir.join(format!("s{i}.jsonl"));
            let g = acquire(&t);
            g.append_line(format!("{{\"session\":{i}}}")).unwrap();
            g
        })
        .collect();
    let during = open_fds();
    let cached = session_lock::__private::cached_transcripts();
    assert!(cached <= 32, "{cached} transcript descriptors cached");
    for g in guards {
        g.release().unwrap();
    }
    session_lock::close_idle();
    assert_eq!(
        session_lock::__private::cached_transcripts(),
        0,
        "the transcript cache's count is back to zero"
    );
    let after = open_fds();
    assert_eq!(
        after, before,
        "every descriptor is given back after release and close_idle"
    );
    (during - before) as f64 / LOCKS as f64
}

#[test]
fn a_held_lock_costs_about_one_descriptor_with_every_api() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    // Twice each: the second round runs with whatever the first left
    // cached (spares, parked slots) already given back.
    for round in 0..2 {
        let blocking = per_lock(dir.path(), |t| session_lock::acquire(t).unwrap());
        let trying = per_lock(dir.path(), |t| {
            session_lock::try_acquire_with(t, &Default::default()).unwrap()
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let asynchronous = per_lock(dir.path(), |t| {
            rt.block_on(session_lock::tokio::acquire(t)).unwrap()
        });
        drop(rt);
        eprintln!(
            "round {round}: descriptors per held lock: acquire {blocking:.2}, try_acquire {trying:.2}, tokio {asynchronous:.2}"
        );
        for (api, n) in [
            ("acquire", blocking),
            ("try_acquire", trying),
            ("tokio", asynchronous),
        ] {
            assert!(n <= 1.5, "{api}: {n:.2} descriptors per held lock");
        }
    }
}

/// At the process's descriptor limit an acquire fails with an error that
/// names the limit, and nothing is left half-acquired: every lock file
/// belongs to a lock that was reported held, and all are gone after exit.
#[test]
fn at_the_descriptor_limit_acquire_fails_cleanly() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$HELPER\" hold-many \"$DIR\" 1000")
        .env("HELPER", common::HELPER)
        .env("DIR", dir.path())
        .env("SESSION_LOCK_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // "held N" then "failed KIND: message" then "released N".
    let held: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("held "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {stdout}"));
    assert!(
        (150..256).contains(&held),
        "about one descriptor per lock under a limit of 256: {held}"
    );
    let failed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("failed "))
        .unwrap_or_else(|| panic!("no failure: {stdout}"));
    assert!(
        failed.starts_with(&format!("{:?}", ErrorKind::Io)) && failed.contains("RLIMIT_NOFILE"),
        "{failed}"
    );
    assert!(stdout.contains(&format!("released {held}")), "{stdout}");
    eprintln!("under ulimit -n 256: held {held}, then: {failed}");
    // No lock, slot or temp file is left (queue files stay by design: see
    // docs/protocol.md, "Files").
    common::wait_until(
        WAIT,
        || {
            common::all_names(dir.path())
                .iter()
                .all(|n| n.ends_with(".jsonl") || n.ends_with(".jsonl.lock.queue"))
        },
        || format!("left behind: {:?}", common::all_names(dir.path())),
    );
}
