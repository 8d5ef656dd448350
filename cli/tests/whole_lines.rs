//! Whole lines, always (guarantee 9): a writer killed or failing mid-line
//! never makes the next writer's line unreadable, and the next holder is
//! told what it took over (`LockGuard::takeover`).

#[path = "../../tests/common/mod.rs"]
mod common;

use common::{Holder, WAIT, bin, kill_append_mid_line};
use session_lock::{ErrorKind, LockOptions, Reason};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The short-write fault and the fault hook are process-wide: every test
/// of this file runs alone.
static FAULT: Mutex<()> = Mutex::new(());

fn fault_serial() -> std::sync::MutexGuard<'static, ()> {
    FAULT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every line of `t` parses as JSON; returns them.
fn json_lines(t: &Path) -> Vec<serde_json::Value> {
    let bytes = std::fs::read(t).unwrap();
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "{} does not end with a newline ({} bytes)",
        t.display(),
        bytes.len()
    );
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "unreadable line in {} ({e}): {:?}",
                    t.display(),
                    String::from_utf8_lossy(&l[..l.len().min(80)])
                )
            })
        })
        .collect()
}

/// The torn-line sidecars next to `t`.
fn sidecars(t: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}.torn-", t.file_name().unwrap().to_string_lossy());
    let mut v: Vec<PathBuf> = std::fs::read_dir(t.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect();
    v.sort();
    v
}

/// The reproduction, with the real CLI: `append` of one huge line is
/// SIGKILLed while its `write(2)` is under way; the next `append` must not
/// glue its line onto the fragment.
#[test]
fn a_writer_killed_mid_line_never_corrupts_the_next_writers_line() {
    let _serial = fault_serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    // Large enough that one write(2) of it takes a while.
    let (_, torn_len, size) = kill_append_mid_line(
        &t,
        192 << 20,
        || {
            let mut c = bin();
            c.args(["append", t.to_str().unwrap(), "-"]);
            c
        },
        || {},
    );
    eprintln!("killed mid-line: {torn_len} of {} bytes on disk", size + 3);
    // The lock of the killed writer is reclaimed; the next writer's line is
    // whole and readable, and the fragment is kept byte for byte.
    let out = bin()
        .args(["append", t.to_str().unwrap(), "{\"after\":1}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&t);
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"before":1}),
            serde_json::json!({"after":1})
        ]
    );
    let side = sidecars(&t);
    assert_eq!(side.len(), 1, "one sidecar: {side:?}");
    let frag = std::fs::read(&side[0]).unwrap();
    assert_eq!(frag.len() as u64, torn_len);
    assert!(frag.starts_with(b"{\"big\":\"xxx"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("torn line") && stderr.contains(&side[0].display().to_string()),
        "the next writer says what it repaired: {stderr}"
    );
}

#[test]
fn a_short_write_is_rolled_back_and_reported() {
    let _serial = fault_serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = session_lock::acquire(&t).unwrap();
    g.append_line("{\"a\":1}").unwrap();
    session_lock::fault::set_short_write(Some(4));
    let err = g.append_line("{\"b\":2}").unwrap_err();
    session_lock::fault::set_short_write(None);
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("short write"), "{err}");
    assert_eq!(std::fs::read_to_string(&t).unwrap(), "{\"a\":1}\n");
    // The guard still holds the lock and writes whole lines after it.
    g.append_line("{\"c\":3}").unwrap();
    g.release().unwrap();
    assert_eq!(
        json_lines(&t),
        vec![serde_json::json!({"a":1}), serde_json::json!({"c":3})]
    );
    assert!(sidecars(&t).is_empty(), "nothing was torn");
}

#[test]
fn append_lines_keeps_the_lines_before_a_failing_one() {
    let _serial = fault_serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = session_lock::acquire(&t).unwrap();
    // Room for the first line and two bytes of the second.
    session_lock::fault::set_short_write(Some(8 + 2));
    let err = g
        .append_lines(["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"])
        .unwrap_err();
    session_lock::fault::set_short_write(None);
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(std::fs::read_to_string(&t).unwrap(), "{\"a\":1}\n");
    g.release().unwrap();
}

#[test]
fn a_failed_durable_append_leaves_none_of_its_lines() {
    let _serial = fault_serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    std::fs::write(&t, "{\"a\":1}\n").unwrap();
    // A child process whose writes stop after 10 bytes (the first line and
    // two bytes of the second): the CLI's `--sync` append of the two lines
    // fails and leaves the transcript as it was.
    let out = bin()
        .args([
            "append",
            "--sync",
            t.to_str().unwrap(),
            "{\"b\":2}",
            "{\"c\":3}",
        ])
        .env("SESSION_LOCK_FAULT_SHORT_WRITE", "10")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&t).unwrap(), "{\"a\":1}\n");
    // In-process: the first line goes out whole, the second fails; durable
    // means all or nothing, so the first is cut back off too.
    let g = session_lock::acquire(&t).unwrap();
    session_lock::fault::set_short_write(Some(8 + 2));
    let err = g
        .append_lines_durable(["{\"b\":2}", "{\"c\":3}"])
        .unwrap_err();
    session_lock::fault::set_short_write(None);
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(std::fs::read_to_string(&t).unwrap(), "{\"a\":1}\n");
    g.append_lines_durable(["{\"d\":4}"]).unwrap();
    g.release().unwrap();
    assert_eq!(
        json_lines(&t),
        vec![serde_json::json!({"a":1}), serde_json::json!({"d":4})]
    );
}

#[test]
fn the_next_holder_learns_it_took_over_from_a_killed_holder() {
    let _serial = fault_serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = Holder::start(&t, &["--label", "doomed"]);
    let pid = holder.pid();
    holder.kill9();
    let g = session_lock::acquire_with(&t, &LockOptions::new().with_timeout(WAIT)).unwrap();
    let takeover = g.takeover().expect("a killed holder's lock was taken over");
    assert!(takeover.reclaimed());
    let prev = takeover.previous().expect("the dead holder's record");
    assert_eq!(prev.pid, Some(pid));
    assert_eq!(prev.label.as_deref(), Some("doomed"));
    assert!(
        takeover.reasons().contains(&Reason::WitnessReleased),
        "{:?}",
        takeover.reasons()
    );
    assert_eq!(takeover.torn_tail(), None);
    g.release().unwrap();
    // After a normal release there is nothing to report.
    let g = session_lock::try_acquire_with(&t, &LockOptions::new()).unwrap();
    assert_eq!(g.takeover(), None);
    g.append_line("{}").unwrap();
    assert_eq!(g.takeover(), None);
    g.release().unwrap();
}

#[test]
fn a_holder_that_died_mid_line_is_reported_with_its_fragment() {
    let _serial = fault_serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    // A writer that wrote one and a half lines under the lock, then died.
    let holder = Holder::start(&t, &[]);
    std::fs::write(&t, "{\"turn\":1}\n{\"turn\":2,\"text\":\"hal").unwrap();
    let pid = holder.pid();
    holder.kill9();
    let g = session_lock::acquire_with(&t, &LockOptions::new().with_timeout(WAIT)).unwrap();
    // Checked explicitly (exec does this before the command runs).
    let torn = g.repair_torn_tail().unwrap().expect("torn tail");
    assert_eq!(torn.offset(), 11);
    assert_eq!(torn.bytes(), 21);
    let takeover = g.takeover().unwrap();
    assert_eq!(takeover.previous().and_then(|r| r.pid), Some(pid));
    assert_eq!(takeover.torn_tail(), Some(&torn));
    assert_eq!(
        std::fs::read_to_string(torn.saved_to()).unwrap(),
        "{\"turn\":2,\"text\":\"hal"
    );
    g.append_line("{\"turn\":3}").unwrap();
    g.release().unwrap();
    assert_eq!(
        json_lines(&t),
        vec![serde_json::json!({"turn":1}), serde_json::json!({"turn":3})]
    );
}

#[test]
fn exec_moves_a_torn_line_out_before_the_command_writes() {
    let _serial = fault_serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    std::fs::write(&t, "{\"a\":1}\n{\"torn\":").unwrap();
    let out = bin()
        .args([
            "exec",
            t.to_str().unwrap(),
            "-c",
            "echo '{\"b\":2}' >> \"$T\"",
        ])
        .env("T", &t)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        json_lines(&t),
        vec![serde_json::json!({"a":1}), serde_json::json!({"b":2})]
    );
    let side = sidecars(&t);
    assert_eq!(side.len(), 1, "{side:?}");
    assert_eq!(std::fs::read_to_string(&side[0]).unwrap(), "{\"torn\":");
    // A transcript that does not exist is not created by the check.
    let fresh = dir.path().join("fresh.jsonl");
    let out = bin()
        .args(["exec", fresh.to_str().unwrap(), "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!fresh.exists());
}

/// A write stuck in the kernel (a hung network filesystem; here an append
/// parked at its last step before `write`) must not keep the watchdog from
/// releasing the lock: it waits `APPEND_GRACE` for the append, then
/// releases anyway, and the next holder gets the lock.
#[test]
fn a_write_stuck_in_the_kernel_does_not_keep_the_watchdog_from_releasing() {
    let _serial = fault_serial();
    use std::sync::{Arc, mpsc};
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let (unpark_tx, unpark_rx) = mpsc::channel::<()>();
    let (parked_tx, parked_rx) = mpsc::channel::<()>();
    let unpark_rx = Arc::new(Mutex::new(unpark_rx));
    let parked_tx = Mutex::new(parked_tx);
    session_lock::fault::set_hook(Some(Arc::new(move |point: &str| {
        if point == "append.before_write" && std::thread::current().name() == Some("stuck-writer") {
            let _ = parked_tx.lock().unwrap().send(());
            // Bounded: a failing test ends instead of hanging.
            let _ = unpark_rx.lock().unwrap().recv_timeout(WAIT);
        }
    })));
    let opts = LockOptions::new().with_max_hold(Duration::from_millis(300));
    let guard = Arc::new(session_lock::acquire_with(&t, &opts).unwrap());
    let g = guard.clone();
    let writer = std::thread::Builder::new()
        .name("stuck-writer".into())
        .spawn(move || g.append_line("{\"late\":1}"))
        .unwrap();
    parked_rx
        .recv_timeout(WAIT)
        .expect("the append reached its write");
    // The watchdog fires at 300 ms and releases after the grace; the next
    // holder then gets in. Before, the watchdog waited for the append's
    // state lock forever.
    let next = common::within(WAIT, "the next holder's acquire", {
        let t = t.clone();
        move || {
            session_lock::acquire_with(
                &t,
                &LockOptions::new().with_timeout(Duration::from_secs(30)),
            )
        }
    })
    .expect("the watchdog released the lock");
    assert!(matches!(
        guard.lost_reason(),
        Some(session_lock::LostReason::MaxHoldExceeded { .. })
    ));
    next.append_line("{\"next\":1}").unwrap();
    // An append that starts now is refused.
    let refused = guard.append_line("{\"refused\":1}").unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::LockLost);
    // The stuck write lands when the kernel lets it: whole, at the end.
    unpark_tx.send(()).unwrap();
    writer.join().unwrap().unwrap();
    session_lock::fault::set_hook(None);
    next.append_line("{\"next\":2}").unwrap();
    next.release().unwrap();
    assert_eq!(
        json_lines(&t),
        vec![
            serde_json::json!({"next":1}),
            serde_json::json!({"late":1}),
            serde_json::json!({"next":2})
        ]
    );
}

/// Within the grace a release waits for an append in flight: the line is
/// in the transcript before `release_all` returns, and before the next
/// holder's line.
#[test]
fn a_release_waits_for_an_append_in_flight_within_the_grace() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};
    let _serial = fault_serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let releasing = Arc::new(AtomicBool::new(false));
    let (parked_tx, parked_rx) = mpsc::channel::<()>();
    let parked_tx = Mutex::new(parked_tx);
    let seen = releasing.clone();
    session_lock::fault::set_hook(Some(Arc::new(move |point: &str| {
        if point == "append.before_write" && std::thread::current().name() == Some("slow-writer") {
            let _ = parked_tx.lock().unwrap().send(());
            // Until the release has begun (bounded), then a slow write.
            let start = std::time::Instant::now();
            while !seen.load(Ordering::SeqCst) && start.elapsed() < WAIT {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    })));
    let guard = Arc::new(session_lock::acquire(&t).unwrap());
    let g = guard.clone();
    let writer = std::thread::Builder::new()
        .name("slow-writer".into())
        .spawn(move || g.append_line("{\"first\":1}"))
        .unwrap();
    parked_rx
        .recv_timeout(WAIT)
        .expect("the append reached its write");
    releasing.store(true, Ordering::SeqCst);
    assert_eq!(session_lock::release_all(), 1);
    // release_all returned: the append in flight has landed.
    assert_eq!(
        std::fs::read_to_string(&t).unwrap_or_default(),
        "{\"first\":1}\n",
        "release_all returned before the append in flight was written"
    );
    session_lock::fault::set_hook(None);
    writer.join().unwrap().unwrap();
    let next = session_lock::try_acquire(&t).unwrap();
    next.append_line("{\"next\":1}").unwrap();
    next.release().unwrap();
    assert_eq!(
        json_lines(&t),
        vec![
            serde_json::json!({"first":1}),
            serde_json::json!({"next":1})
        ]
    );
}
