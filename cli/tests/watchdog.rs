//! The max-hold watchdog: a wedged holder still loses its lock, the holder
//! learns it, and nothing it writes afterwards reaches the transcript.

#[path = "../../tests/common/mod.rs"]
mod common;
mod log_capture;

use common::*;
use log_capture::captured;
use session_lock::{ErrorKind, LockOptions, LostReason, acquire_with, try_acquire_with};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tests that hold locks in this process run one at a time: one of them
/// counts the watchdog's global deadlines, another calls `release_all`.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn forced_release_is_known_to_the_holder_and_its_writes_are_refused() {
    let _s = serial();
    let logs = captured();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire_with(
        &t,
        &LockOptions::new().with_max_hold(Duration::from_millis(200)),
    )
    .unwrap();
    g.append_line("before").unwrap();
    let reason = g.wait_lost(Some(WAIT)).expect("the watchdog fired");
    match reason {
        LostReason::MaxHoldExceeded {
            held_ms,
            max_hold_ms,
        } => {
            assert_eq!(max_hold_ms, 200);
            assert!(held_ms >= 200, "fired early: {held_ms}");
        }
        other => panic!("unexpected reason {other:?}"),
    }
    assert!(!g.is_held());
    assert!(!lock_of(&t).exists(), "forced release left the file");
    // A successor takes the lock.
    let t2 = t.clone();
    let successor = std::thread::spawn(move || try_acquire_with(&t2, &LockOptions::new()).unwrap())
        .join()
        .unwrap();
    successor.append_line("successor").unwrap();
    // The old holder's write is refused and reaches nothing.
    let err = g.append_line("after loss").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockLost);
    assert!(err.to_string().contains("max hold exceeded"), "{err}");
    // Its release does not touch the successor's lock.
    assert_eq!(g.release().unwrap_err().kind(), ErrorKind::LockLost);
    assert!(lock_of(&t).exists());
    assert!(successor.is_held());
    successor.release().unwrap();
    assert_eq!(std::fs::read_to_string(&t).unwrap(), "before\nsuccessor\n");
    let lock = dir.path().canonicalize().unwrap().join("s.jsonl.lock");
    let want = format!("ms (max=200ms): {}", lock.display());
    // The watchdog thread logs after the release that woke the holder:
    // wait for the line (bounded), do not race it.
    let text = || String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    wait_until(
        WAIT,
        || {
            text().lines().any(|l| {
                l.contains("[session-write-lock] releasing lock held for ") && l.contains(&want)
            })
        },
        || format!("warning not logged in the reference's wording: {}", text()),
    );
}

/// Issue 11, gap 1: a watchdog-forced release after our lock file was
/// deleted and a successor published its own must leave the successor's
/// file alone (the forced release checks the path's identity too).
#[test]
fn forced_release_after_replacement_never_removes_the_successor() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire_with(
        &t,
        &LockOptions::new().with_max_hold(Duration::from_secs(1)),
    )
    .unwrap();
    let lock = g.lock_path().to_owned();
    std::fs::remove_file(&lock).unwrap();
    let t2 = t.clone();
    let successor = within(WAIT, "successor acquire", move || {
        try_acquire_with(&t2, &LockOptions::new()).unwrap()
    });
    let id = file_identity(&lock);
    // Nothing has looked at the old guard yet: only the watchdog will.
    assert_eq!(
        g.lost_reason(),
        None,
        "the watchdog fired before the path was replaced (setup slower than max hold?)"
    );
    let reason = g.wait_lost(Some(WAIT)).expect("the watchdog fired");
    assert!(
        matches!(reason, LostReason::MaxHoldExceeded { .. }),
        "{reason:?}"
    );
    assert!(
        lock.exists(),
        "the forced release removed the successor's lock"
    );
    assert_eq!(file_identity(&lock), id, "the successor's file was touched");
    assert!(successor.is_held());
    assert_eq!(g.release().unwrap_err().kind(), ErrorKind::LockLost);
    successor.release().unwrap();
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn a_wedged_holder_process_loses_the_lock_and_a_contender_gets_it() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    // The holder's main thread blocks reading stdin forever; only the
    // watchdog thread can release.
    let mut holder = Holder::start(&t, &["--max-hold", "300ms"]);
    let g = acquire_with(
        &t,
        &LockOptions::new().with_timeout(Duration::from_secs(60)),
    )
    .expect("contender got the lock");
    let line = holder.next_line(WAIT);
    assert!(
        line.starts_with("lost max hold exceeded"),
        "holder said {line:?}"
    );
    assert!(g.is_held());
    g.release().unwrap();
    let status = wait_child(&mut holder.child, WAIT, "holder exit");
    assert_eq!(status.code(), Some(4), "holder exit code for a lost lock");
}

#[test]
fn deadlines_fire_in_order_and_dropping_a_guard_cancels_its_deadline() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let base = session_lock::__private::armed_count();
    let handles: Vec<_> = [450u64, 150, 300]
        .into_iter()
        .map(|ms| {
            let (t, order) = (dir.path().join(format!("{ms}.jsonl")), order.clone());
            let g = acquire_with(
                &t,
                &LockOptions::new().with_max_hold(Duration::from_millis(ms)),
            )
            .unwrap();
            std::thread::spawn(move || {
                let r = g.wait_lost(Some(WAIT));
                order.lock().unwrap().push(ms);
                r
            })
        })
        .collect();
    let dropped = acquire_with(
        dir.path().join("dropped.jsonl"),
        &LockOptions::new().with_max_hold(Duration::from_millis(100)),
    )
    .unwrap();
    assert_eq!(session_lock::__private::armed_count(), base + 4);
    drop(dropped);
    assert_eq!(session_lock::__private::armed_count(), base + 3);
    for h in handles {
        assert!(matches!(
            h.join().unwrap(),
            Some(LostReason::MaxHoldExceeded { .. })
        ));
    }
    assert_eq!(*order.lock().unwrap(), vec![150, 300, 450]);
    assert_eq!(session_lock::__private::armed_count(), base);
    assert!(!dir.path().join("dropped.jsonl.lock").exists());
}

#[test]
fn release_all_releases_everything_and_guards_know() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let a = acquire_with(dir.path().join("a.jsonl"), &LockOptions::new()).unwrap();
    let b = acquire_with(dir.path().join("b.jsonl"), &LockOptions::new()).unwrap();
    assert!(session_lock::release_all() >= 2);
    for g in [&a, &b] {
        assert_eq!(g.lost_reason(), Some(LostReason::ReleasedAll));
        assert!(!g.lock_path().exists());
        assert_eq!(g.append_line("x").unwrap_err().kind(), ErrorKind::LockLost);
    }
    drop(a);
    drop(b);
}

#[test]
fn max_hold_is_recorded_in_the_owner_record() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let opts = LockOptions::new().with_max_hold(session_lock::max_hold_from_timeout(
        Some(Duration::from_secs(600)),
        session_lock::MAX_HOLD_GRACE,
        session_lock::DEFAULT_MAX_HOLD,
    ));
    let g = acquire_with(dir.path().join("s.jsonl"), &opts).unwrap();
    assert_eq!(g.record().max_hold_ms, Some(720_000));
    let text = std::fs::read_to_string(g.lock_path()).unwrap();
    assert!(text.contains(r#""maxHoldMs":720000"#), "{text}");
    g.release().unwrap();
}
