//! Dangerous interleavings, forced deterministically with the fault points of
//! `session_lock::fault` (feature `fault-injection`): in-process, a thread is
//! parked at a named point on a gate; across processes, a child is paused
//! with `SESSION_LOCK_FAULT_PAUSE` / `SESSION_LOCK_FAULT_DIR`.
//!
//! The hook is process-global, so the tests of this file run one at a time
//! (`serial()`), and a trap only catches the thread it names.
#![cfg(feature = "fault-injection")]

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use session_lock::sweep::{SweepOptions, sweep};
use session_lock::{
    ErrorKind, LockGuard, LockOptions, LostReason, Verdict, Witness, try_acquire_with,
};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// In-process rounds per scenario (each is a few milliseconds).
const ROUNDS: usize = 300;

struct Trap {
    point: &'static str,
    thread: &'static str,
    reached: mpsc::Sender<()>,
    go: Mutex<mpsc::Receiver<()>>,
}

static TRAPS: Mutex<Vec<Trap>> = Mutex::new(Vec::new());

fn traps() -> MutexGuard<'static, Vec<Trap>> {
    TRAPS.lock().unwrap_or_else(|p| p.into_inner())
}

/// One test at a time; clears leftover traps on entry and exit.
struct Serial(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Drop for Serial {
    fn drop(&mut self) {
        traps().clear();
    }
}

fn serial() -> Serial {
    static M: Mutex<()> = Mutex::new(());
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        session_lock::fault::set_hook(Some(Arc::new(|point: &str| {
            let me = std::thread::current();
            let trap = {
                let mut t = traps();
                t.iter()
                    .position(|t| t.point == point && me.name() == Some(t.thread))
                    .map(|i| t.remove(i))
            };
            if let Some(trap) = trap {
                let _ = trap.reached.send(());
                // Bounded: a test that fails drops its gate, which wakes us.
                let _ = trap
                    .go
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .recv_timeout(WAIT);
            }
        })));
    });
    let g = M.lock().unwrap_or_else(|p| p.into_inner());
    traps().clear();
    Serial(g)
}

/// A thread parked (or about to be) at a fault point.
struct Gate {
    what: String,
    reached: mpsc::Receiver<()>,
    go: Option<mpsc::Sender<()>>,
}

impl Gate {
    /// Wait until the trapped thread is parked at the point.
    fn reached(&self) {
        self.reached
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("{} was never reached: {e}", self.what));
    }
    /// Let it go on.
    fn open(&mut self) {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// Park the next thread named `thread` that reaches `point`.
fn trap(point: &'static str, thread: &'static str) -> Gate {
    let (reached_tx, reached_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    traps().push(Trap {
        point,
        thread,
        reached: reached_tx,
        go: Mutex::new(go_rx),
    });
    Gate {
        what: format!("{point} in thread {thread}"),
        reached: reached_rx,
        go: Some(go_tx),
    }
}

fn named<T: Send + 'static>(
    name: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn thread")
}

fn join<T: Send + 'static>(h: JoinHandle<T>, what: &str) -> T {
    within(WAIT, what, move || h.join()).unwrap_or_else(|_| panic!("{what} panicked"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A lock in our own format whose owner died: witness free, so it is
/// reclaimable at once (`witness-released`), without any aging.
fn plant_dead_owner_lock(lock: &Path, dead: u32) {
    let rec = serde_json::json!({
        "pid": dead,
        "createdAt": iso(now_ms()),
        "witness": "flock",
        "version": 1,
        "token": "dead-owner",
    });
    std::fs::write(lock, format!("{rec}\n")).unwrap();
}

fn token_at(lock: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("token")?.as_str().map(str::to_owned)
}

fn assert_holds(g: &LockGuard, lock: &Path, what: &str) {
    assert!(g.is_held(), "{what}: guard lost the lock");
    assert_eq!(
        token_at(lock),
        g.record().token,
        "{what}: the lock file is not the guard's"
    );
}

fn temp_files(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect()
}

fn opts() -> LockOptions {
    LockOptions::new().with_timeout(Duration::from_millis(20))
}

// ------------------------------------------------------------ two reclaimers

#[test]
fn two_reclaimers_on_one_stale_lock_serialise_and_exactly_one_wins() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    let dead = dead_pid();
    for round in 0..ROUNDS {
        plant_dead_owner_lock(&lock, dead);
        let stale = file_identity(&lock);
        let mut gate = trap("reclaim.before_unlink", "reclaimer-a");
        let ta = t.clone();
        let a = named("reclaimer-a", move || {
            try_acquire_with(&ta, &LockOptions::new())
        });
        // A holds the stale inode's flock and has checked the path names it.
        gate.reached();
        // B: the second reclaimer sees the witness held, removes nothing and
        // does not win, whether it tries once or waits.
        let err = try_acquire_with(&t, &LockOptions::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy, "round {round}: {err}");
        if round % 10 == 0 {
            let err = session_lock::acquire_with(&t, &opts()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Timeout, "round {round}: {err}");
            let insp = session_lock::inspect(&t, &LockOptions::new())
                .unwrap()
                .unwrap();
            assert_eq!(insp.witness, Witness::Held, "round {round}");
            // A sweep at the same moment removes nothing either.
            let swept = sweep(dir.path(), &SweepOptions::default()).unwrap();
            assert!(!swept.locks[0].removed, "round {round}: sweep removed it");
        }
        assert_eq!(
            file_identity(&lock),
            stale,
            "round {round}: B touched the stale lock"
        );
        // Nothing of B's is left. A, paused, holds its reclaim guard (see
        // docs/reclaim.md) and still has the record it failed to publish:
        // on the named-temp path (`SESSION_LOCK_NO_TMPFILE=1`) that is one
        // private temp file, which it links after its unlink.
        let (temps, others): (Vec<String>, Vec<String>) = names(dir.path())
            .into_iter()
            .partition(|n| n.starts_with('.') && n.ends_with(".tmp"));
        assert_eq!(
            others,
            vec!["s.jsonl.lock", "s.jsonl.lock.reclaim"],
            "round {round}"
        );
        assert!(temps.len() <= 1, "round {round}: {temps:?}");
        gate.open();
        let g =
            join(a, "reclaimer A").unwrap_or_else(|e| panic!("round {round}: A did not win: {e}"));
        assert_holds(&g, &lock, "A");
        let err = try_acquire_with(&t, &LockOptions::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy, "round {round}: two holders");
        g.release().unwrap();
        assert_eq!(names(dir.path()), Vec::<String>::new(), "round {round}");
    }
}

#[test]
fn a_reclaimer_with_a_stale_verdict_never_removes_the_winners_lock() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    let dead = dead_pid();
    // A judged the lock reclaimable and is paused before it locks the stale
    // inode; B reclaims it and publishes (and on odd rounds releases, and C
    // publishes again). A's stale verdict must remove nothing of theirs.
    for round in 0..ROUNDS {
        plant_dead_owner_lock(&lock, dead);
        let mut gate = trap("acquire.after_observe", "reclaimer-a");
        let ta = t.clone();
        let a = named("reclaimer-a", move || {
            try_acquire_with(&ta, &LockOptions::new())
        });
        gate.reached();
        let b = try_acquire_with(&t, &LockOptions::new())
            .unwrap_or_else(|e| panic!("round {round}: B could not reclaim: {e}"));
        let holder = if round % 2 == 1 {
            b.release().unwrap();
            try_acquire_with(&t, &LockOptions::new()).expect("C acquires")
        } else {
            b
        };
        gate.open();
        let err = join(a, "reclaimer A").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy, "round {round}: {err}");
        assert_holds(&holder, &lock, "the winner");
        holder.release().unwrap();
        assert_eq!(names(dir.path()), Vec::<String>::new(), "round {round}");
    }
}

#[test]
fn two_reclaimers_past_their_look_one_backs_off_on_time() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    let dead = dead_pid();
    for round in 0..ROUNDS / 5 {
        plant_dead_owner_lock(&lock, dead);
        let stale = file_identity(&lock);
        // B has judged the lock reclaimable and is paused before locking it.
        let mut gate_b = trap("acquire.after_observe", "reclaimer-b");
        let tb = t.clone();
        let b = named("reclaimer-b", move || {
            let start = Instant::now();
            let r = session_lock::acquire_with(
                &tb,
                &LockOptions::new().with_timeout(Duration::from_millis(50)),
            );
            (r, start.elapsed())
        });
        gate_b.reached();
        // A locks the stale inode and is paused just before its unlink.
        let mut gate_a = trap("reclaim.before_unlink", "reclaimer-a");
        let ta = t.clone();
        let a = named("reclaimer-a", move || {
            try_acquire_with(&ta, &LockOptions::new())
        });
        gate_a.reached();
        // B goes on: it cannot lock the inode, backs off, then finds the
        // witness held and waits out its 50 ms; it removes nothing.
        gate_b.open();
        let (rb, took) = join(b, "reclaimer B");
        let err = rb.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "round {round}: {err}");
        assert!(
            took < Duration::from_secs(2),
            "round {round}: 50 ms took {took:?}"
        );
        assert_eq!(file_identity(&lock), stale, "round {round}: B touched it");
        gate_a.open();
        let g = join(a, "reclaimer A").expect("A acquires");
        assert_holds(&g, &lock, "A");
        g.release().unwrap();
        assert_eq!(names(dir.path()), Vec::<String>::new(), "round {round}");
    }
}

#[test]
fn a_foreign_unlink_under_a_stale_verdict_never_costs_the_new_holder() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    let dead = dead_pid();
    // A foreign reclaimer that ignores the witness (the reference's
    // `rm -f`) removes the stale file under A's look, and C publishes: A's
    // stale verdict must not remove C's lock.
    for round in 0..ROUNDS {
        plant_dead_owner_lock(&lock, dead);
        let mut gate = trap("acquire.after_observe", "reclaimer-a");
        let ta = t.clone();
        let a = named("reclaimer-a", move || {
            try_acquire_with(&ta, &LockOptions::new())
        });
        gate.reached();
        std::fs::remove_file(&lock).unwrap();
        let c = try_acquire_with(&t, &LockOptions::new()).expect("C publishes at the free path");
        gate.open();
        let err = join(a, "reclaimer A").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy, "round {round}: {err}");
        assert_holds(&c, &lock, "C");
        c.release().unwrap();
        assert_eq!(names(dir.path()), Vec::<String>::new(), "round {round}");
    }
}

// --------------------------------------------------- release racing a reclaim

#[test]
fn a_release_paused_before_its_unlink_is_never_reclaimed_under_it() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    for round in 0..ROUNDS {
        let th = t.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut gate = trap("release.before_unlink", "holder");
        let h = named("holder", move || {
            let g = try_acquire_with(&th, &LockOptions::new()).expect("holder acquires");
            g.append_line("holder").unwrap();
            ready_tx.send(()).unwrap();
            g.release()
        });
        ready_rx.recv_timeout(WAIT).expect("holder ready");
        // The holder checked the path still names its file and is about to
        // unlink it: its witness is still held, so contenders and sweeps
        // find it held and remove nothing.
        gate.reached();
        let id = file_identity(&lock);
        let err = try_acquire_with(&t, &LockOptions::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy, "round {round}: {err}");
        if round % 10 == 0 {
            let swept = sweep(dir.path(), &SweepOptions::default()).unwrap();
            assert!(!swept.locks[0].removed, "round {round}");
            assert_eq!(
                swept.locks[0].inspection.as_ref().unwrap().verdict,
                Verdict::Held
            );
        }
        assert_eq!(file_identity(&lock), id, "round {round}");
        gate.open();
        join(h, "releasing holder").expect("release succeeds");
        let g = try_acquire_with(&t, &LockOptions::new()).expect("free after release");
        g.append_line("next").unwrap();
        g.release().unwrap();
        assert_eq!(names(dir.path()), vec!["s.jsonl"], "round {round}");
        std::fs::remove_file(&t).unwrap();
    }
}

#[test]
fn a_lock_swapped_between_a_releases_check_and_its_rename_is_put_back() {
    // The window every path-based release has: the path is checked, then
    // freed by name. A release through a witness slot renames, so what it
    // moved can be checked and put back; an unlink cannot be undone (the
    // fresh-inode path keeps that window, see docs/protocol.md).
    let _s = serial();
    if std::env::var_os("SESSION_LOCK_NO_SLOTS").is_some()
        || std::env::var_os("SESSION_LOCK_NO_TMPFILE").is_some()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    for round in 0..20 {
        let th = t.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut gate = trap("release.after_check", "holder");
        let h = named("holder", move || {
            let g = try_acquire_with(&th, &LockOptions::new()).expect("holder acquires");
            ready_tx.send(()).unwrap();
            g.release()
        });
        ready_rx.recv_timeout(WAIT).expect("holder ready");
        gate.reached();
        // Someone else's file takes the name (as a wrong reclaim would).
        let foreign = dir.path().join("foreign");
        write_reference_lock(&foreign, std::process::id(), 0, None);
        std::fs::rename(&foreign, &lock).unwrap();
        let id = file_identity(&lock);
        gate.open();
        let err = join(h, "holder").expect_err("the release must see the swap");
        assert_eq!(err.kind(), ErrorKind::LockLost, "round {round}: {err}");
        assert_eq!(
            err.lost_reason(),
            Some(&LostReason::Replaced),
            "round {round}"
        );
        assert_eq!(
            file_identity(&lock),
            id,
            "round {round}: the other file is not back at the lock name"
        );
        std::fs::remove_file(&lock).unwrap();
        assert_eq!(names(dir.path()), Vec::<String>::new(), "round {round}");
    }
}

#[test]
fn release_and_watchdog_racing_remove_only_their_own_file() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    for round in 0..20 {
        // The owner's release is paused after its identity check while the
        // max hold expires; the watchdog must then find nothing to do, and
        // a successor that acquires right after must keep its lock.
        let th = t.clone();
        let mut gate = trap("release.before_unlink", "holder");
        let h = named("holder", move || {
            let g = session_lock::try_acquire_with(
                &th,
                &LockOptions::new().with_max_hold(Duration::from_millis(60)),
            )
            .expect("holder acquires");
            let r = g.release();
            (r, Instant::now())
        });
        gate.reached();
        std::thread::sleep(Duration::from_millis(100)); // max hold passes
        gate.open();
        let (released, _) = join(h, "holder");
        released.unwrap_or_else(|e| panic!("round {round}: release failed: {e}"));
        let succ = try_acquire_with(&t, &LockOptions::new()).expect("successor");
        std::thread::sleep(Duration::from_millis(30)); // a late watchdog pass
        assert_holds(&succ, &lock, "successor");
        succ.release().unwrap();
        assert_eq!(names(dir.path()), Vec::<String>::new(), "round {round}");
    }
}

#[test]
fn a_holder_learns_of_a_watchdog_release_before_its_next_write() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    for round in 0..10 {
        // The watchdog force-releases, paused after its identity check; the
        // owner writes meanwhile: its write waits for the release and is
        // refused, and a successor's lock is never touched.
        let mut gate = trap("release.before_unlink", "session-lock-watchdog");
        let g = try_acquire_with(
            &t,
            &LockOptions::new().with_max_hold(Duration::from_millis(30)),
        )
        .expect("acquire");
        g.append_line("before").unwrap();
        gate.reached();
        let g = Arc::new(g);
        let gw = g.clone();
        let writer = named("writer", move || gw.append_line("after"));
        std::thread::sleep(Duration::from_millis(20));
        gate.open();
        let err = join(writer, "writer").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LockLost, "round {round}: {err}");
        assert!(
            matches!(g.lost_reason(), Some(LostReason::MaxHoldExceeded { .. })),
            "round {round}: {:?}",
            g.lost_reason()
        );
        assert!(!lock.exists(), "round {round}: watchdog left the file");
        let succ = try_acquire_with(&t, &LockOptions::new()).expect("successor");
        let g = Arc::into_inner(g).expect("only guard");
        assert_eq!(g.release().unwrap_err().kind(), ErrorKind::LockLost);
        assert_holds(&succ, &lock, "successor");
        succ.release().unwrap();
        let text = std::fs::read_to_string(&t).unwrap();
        assert_eq!(text.matches("after").count(), 0, "round {round}: {text:?}");
        std::fs::remove_file(&t).unwrap();
    }
}

// ------------------------------------------------------ publish before rename

#[test]
fn a_publisher_paused_before_its_rename_is_invisible_and_cleans_up() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    for round in 0..ROUNDS {
        let mut gate = trap("publish.before_rename", "publisher");
        let tp = t.clone();
        let p = named("publisher", move || {
            try_acquire_with(&tp, &LockOptions::new())
        });
        gate.reached();
        // Its file is complete, private and witnessed but has no name yet
        // (O_TMPFILE) or only a private temp name; the lock path does not
        // exist.
        let temps = temp_files(dir.path());
        assert!(temps.len() <= 1, "round {round}: {temps:?}");
        if let Some(name) = temps.first() {
            assert!(name.starts_with(".s.jsonl.lock."), "{temps:?}");
            let tmp = dir.path().join(name);
            let meta = std::fs::metadata(&tmp).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "temp file mode");
            let text = std::fs::read_to_string(&tmp).unwrap();
            assert!(
                text.ends_with('\n') && text.contains("\"witness\":\"flock\""),
                "{text}"
            );
        }
        assert!(!lock.exists(), "round {round}: visible before publish");
        // A contender acquires normally.
        let c = try_acquire_with(&t, &LockOptions::new())
            .unwrap_or_else(|e| panic!("round {round}: contender: {e}"));
        gate.open();
        // The paused publisher finds the lock taken and removes its temp file.
        let err = join(p, "publisher").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy, "round {round}: {err}");
        assert_eq!(names(dir.path()), vec!["s.jsonl.lock"], "round {round}");
        assert_holds(&c, &lock, "contender");
        c.release().unwrap();
        assert_eq!(names(dir.path()), Vec::<String>::new(), "round {round}");
    }
}

#[test]
fn a_publisher_process_paused_before_its_rename_loses_cleanly() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let faults = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    let point = "publish.before_rename";
    let mut child = bin()
        .args(["append", "--timeout", "200ms"])
        .arg(&t)
        .arg("from the paused publisher")
        .envs(fault_env(point, faults.path()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for_path(
        &fault_reached(faults.path(), point, pid),
        WAIT,
        "publisher process",
    );
    assert!(temp_files(dir.path()).len() <= 1);
    assert!(!lock.exists());
    let c = try_acquire_with(&t, &LockOptions::new()).expect("contender acquires");
    fault_go(faults.path(), point, pid);
    let status = wait_child(&mut child, WAIT, "paused publisher");
    assert_eq!(status.code(), Some(3), "not obtained: {status}");
    assert_eq!(names(dir.path()), vec!["s.jsonl.lock"], "temp file left");
    assert_holds(&c, &lock, "contender");
    c.release().unwrap();
    assert!(!t.exists(), "the losing publisher wrote to the transcript");
}

// ------------------------------------- cross-process reclaimers, paused child

#[test]
fn a_reclaimer_process_paused_before_its_unlink_keeps_everyone_else_out() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let faults = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    // A real dead holder.
    Holder::start(&t, &[]).kill9();
    let stale = file_identity(&lock);
    let point = "reclaim.before_unlink";
    let mut a = Holder::spawn_unready(&t, &[], &fault_env(point, faults.path()));
    let pid = a.pid();
    wait_for_path(
        &fault_reached(faults.path(), point, pid),
        WAIT,
        "reclaimer process",
    );
    // B, another process, waits 200 ms and gives up; it removes nothing.
    let out = bin()
        .args(["append", "--timeout", "200ms"])
        .arg(&t)
        .arg("from B")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // B in this process too, and a sweep.
    assert_eq!(
        try_acquire_with(&t, &LockOptions::new())
            .unwrap_err()
            .kind(),
        ErrorKind::Busy
    );
    assert!(!sweep(dir.path(), &SweepOptions::default()).unwrap().locks[0].removed);
    assert_eq!(file_identity(&lock), stale);
    fault_go(faults.path(), point, pid);
    a.wait_ready();
    let insp = session_lock::inspect(&t, &LockOptions::new())
        .unwrap()
        .unwrap();
    assert_eq!(insp.record.and_then(|r| r.pid), Some(pid), "A holds");
    let out = bin()
        .args(["append", "--timeout", "100ms"])
        .arg(&t)
        .arg("from B")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "two holders: {out:?}");
    assert!(a.release().success());
    assert!(!lock.exists());
    assert!(!t.exists(), "B wrote without the lock");
}

// ------------------------------ reclaimer paused while the path is replaced

/// The reclaimer has checked that the path names the stale inode and is
/// about to unlink it by name. Among cooperating processes nothing can
/// replace the path then (publishing never clobbers, and removing the stale
/// inode needs its flock, which the reclaimer holds). A hostile user who
/// renames files can: these tests pin down what happens then.
fn paused_reclaimer(
    t: &Path,
    dead: u32,
) -> (Gate, JoinHandle<session_lock::Result<LockGuard>>, PathBuf) {
    let lock = lock_of(t);
    plant_dead_owner_lock(&lock, dead);
    let gate = trap("reclaim.before_unlink", "reclaimer");
    let tr = t.to_owned();
    let h = named("reclaimer", move || {
        session_lock::acquire_with(
            &tr,
            &LockOptions::new().with_timeout(Duration::from_secs(5)),
        )
    });
    gate.reached();
    (gate, h, lock)
}

#[test]
fn path_replaced_by_a_live_lock_under_a_paused_reclaimer() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let dead = dead_pid();
    for round in 0..50 {
        let (mut gate, r, lock) = paused_reclaimer(&t, dead);
        // Hostile: move the stale file aside, then a cooperating holder G
        // publishes normally at the now-free path.
        let aside = dir.path().join("stale-aside");
        std::fs::rename(&lock, &aside).unwrap();
        let tg = t.clone();
        let g = named("victim", move || try_acquire_with(&tg, &LockOptions::new()))
            .join()
            .unwrap()
            .expect("G publishes at the free path");
        gate.open();
        // The reclaimer unlinks by name: G's file goes (the documented
        // window), the reclaimer publishes its own and holds.
        let rg = join(r, "reclaimer").expect("reclaimer acquires");
        assert_holds(&rg, &lock, "reclaimer");
        // G learns it lost the lock before its next write; its release
        // never removes the reclaimer's file.
        let err = g.append_line("G after losing").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LockLost, "round {round}");
        assert_eq!(g.lost_reason(), Some(LostReason::Replaced));
        assert_eq!(g.release().unwrap_err().kind(), ErrorKind::LockLost);
        assert_holds(&rg, &lock, "reclaimer after G's release");
        // Nothing else was touched.
        assert_eq!(token_at(&aside).as_deref(), Some("dead-owner"));
        rg.release().unwrap();
        std::fs::remove_file(&aside).unwrap();
        assert_eq!(names(dir.path()), Vec::<String>::new(), "round {round}");
    }
}

#[test]
fn path_replaced_by_a_directory_symlink_or_nothing_under_a_paused_reclaimer() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let dead = dead_pid();
    let victim_dir = dir.path().join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();
    let victim = victim_dir.join("precious.jsonl.lock");

    // A directory: unlink(2) refuses, the acquire fails naming the path,
    // the directory survives.
    let (mut gate, r, lock) = paused_reclaimer(&t, dead);
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    std::fs::write(lock.join("inside"), b"x").unwrap();
    gate.open();
    let err = join(r, "reclaimer vs directory").unwrap_err();
    eprintln!("reclaimer vs directory: {:?}: {err}", err.kind());
    assert!(
        err.to_string().contains("s.jsonl.lock"),
        "error does not name the path: {err}"
    );
    assert!(lock.join("inside").exists(), "directory content removed");
    std::fs::remove_dir_all(&lock).unwrap();

    // A symlink to a stale-looking lock elsewhere: the link itself is
    // unlinked (never followed), the target survives byte for byte.
    plant_dead_owner_lock(&victim, dead);
    let before = std::fs::read(&victim).unwrap();
    let (mut gate, r, lock) = paused_reclaimer(&t, dead);
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    gate.open();
    let res = join(r, "reclaimer vs symlink");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        before,
        "symlink target changed"
    );
    // The name was free again after the unlink of the link: acquired.
    let g = res.expect("reclaimer acquires after unlinking the planted link");
    assert_holds(&g, &lock, "reclaimer");
    g.release().unwrap();
    let _ = std::fs::remove_file(&lock);

    // Nothing: someone else removed it; the reclaimer simply acquires.
    let (mut gate, r, lock) = paused_reclaimer(&t, dead);
    std::fs::remove_file(&lock).unwrap();
    gate.open();
    let g = join(r, "reclaimer vs vanished").expect("acquires");
    assert_holds(&g, &lock, "reclaimer");
    g.release().unwrap();
    assert!(victim.exists());
}
