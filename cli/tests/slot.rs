//! Witness slots (docs/protocol.md, "Witness slots"): a process keeps one
//! witnessed inode per lock across its holds, parked at a hidden slot name
//! between them; slots left by dead processes are taken over or cleaned,
//! never multiplied; a witness shared with children is never parked.
//!
//! `close_idle` is process-wide, so the tests of this file run one at a time.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use session_lock::sweep::{SweepOptions, sweep};
use session_lock::{LockOptions, try_acquire_with};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

fn serial() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    let g = M.lock().unwrap_or_else(|p| p.into_inner());
    session_lock::close_idle();
    g
}

/// One test's start: the serial guard and a fresh directory with `s.jsonl`
/// in it; `None` (the test has nothing to check) when slots are turned off.
fn start() -> Option<(
    MutexGuard<'static, ()>,
    tempfile::TempDir,
    std::path::PathBuf,
)> {
    let s = serial();
    if !slots_on() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    Some((s, dir, t))
}

fn slots_on() -> bool {
    std::env::var_os("SESSION_LOCK_NO_SLOTS").is_none()
        && std::env::var_os("SESSION_LOCK_NO_TMPFILE").is_none()
}

fn slot_names(dir: &Path) -> Vec<String> {
    all_names(dir)
        .into_iter()
        .filter(|n| is_slot_name(n))
        .collect()
}

fn token(lock: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lock).unwrap()).expect("a complete record");
    v["token"].as_str().expect("a token").to_owned()
}

#[test]
fn a_process_keeps_one_witness_inode_across_its_holds() {
    let Some((_s, dir, t)) = start() else {
        return;
    };
    let lock = lock_of(&t);
    let g = try_acquire_with(&t, &LockOptions::new()).unwrap();
    let first = file_identity(&lock);
    let first_token = token(&lock);
    g.release().unwrap();
    assert!(!lock.exists(), "the lock name is free after release");
    // Parked at its slot name, its flock still ours.
    let slot = dir.path().join(".s.jsonl.lock.w0.tmp");
    assert_eq!(slot_names(dir.path()), vec![".s.jsonl.lock.w0.tmp"]);
    assert_eq!(file_identity(&slot), first);
    assert!(is_live_slot(&slot), "the parked slot's flock was dropped");
    // Another process takes the free lock meanwhile: a parked slot holds
    // nothing up.
    let h = Holder::start(&t, &[]);
    h.release();
    // Our next hold publishes the same inode, with a fresh record.
    let g = try_acquire_with(&t, &LockOptions::new()).unwrap();
    assert_eq!(
        file_identity(&lock),
        first,
        "a new inode for the second hold"
    );
    assert_ne!(token(&lock), first_token, "the record was not rewritten");
    assert_eq!(g.record().token.as_deref(), Some(token(&lock).as_str()));
    g.release().unwrap();
    // close_idle leaves nothing behind.
    assert_eq!(session_lock::close_idle(), 1);
    assert_eq!(all_names(dir.path()), Vec::<String>::new());
}

#[test]
fn a_slot_left_by_a_dead_process_is_taken_over_not_multiplied() {
    let Some((_s, dir, t)) = start() else {
        return;
    };
    let lock = lock_of(&t);
    // What a process that died between holds leaves: slot 0 with an old,
    // longer record and no flock.
    let left = dir.path().join(".s.jsonl.lock.w0.tmp");
    std::fs::write(
        &left,
        format!(
            "{{\"pid\":{},\"padding\":\"{}\"}}\n",
            dead_pid(),
            "x".repeat(600)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&left, std::fs::Permissions::from_mode(0o600)).unwrap();
    let id = file_identity(&left);
    let g = try_acquire_with(&t, &LockOptions::new()).unwrap();
    assert_eq!(
        file_identity(&lock),
        id,
        "the dead process's slot was not taken over"
    );
    // The whole file is our record now (the old tail was cut).
    let text = std::fs::read_to_string(&lock).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).expect("a complete record");
    assert_eq!(v["pid"].as_u64(), Some(u64::from(std::process::id())));
    assert!(!text.contains("padding"), "{text}");
    g.release().unwrap();
    assert_eq!(slot_names(dir.path()), vec![".s.jsonl.lock.w0.tmp"]);
    session_lock::close_idle();
}

#[test]
fn clean_removes_a_dead_processes_slot_and_keeps_a_live_ones() {
    let Some((_s, dir, t)) = start() else {
        return;
    };
    // Ours, parked (slot 0), and one left by a dead process (slot 1).
    try_acquire_with(&t, &LockOptions::new())
        .unwrap()
        .release()
        .unwrap();
    let ours = dir.path().join(".s.jsonl.lock.w0.tmp");
    let dead = dir.path().join(".s.jsonl.lock.w1.tmp");
    // As a killed process leaves it: private, one of our records (a copy
    // of ours; the sweep removes nothing that is not, see security.rs).
    std::fs::write(&dead, std::fs::read(&ours).unwrap()).unwrap();
    std::fs::set_permissions(&dead, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // Young: both kept (a slot being claimed has no flock for a moment).
    let swept = sweep(dir.path(), &SweepOptions::default()).unwrap();
    assert!(swept.temps_removed.is_empty(), "{:?}", swept.temps_removed);
    // Past the orphan grace: only the dead one goes.
    age_file(&ours, Duration::from_secs(60));
    age_file(&dead, Duration::from_secs(60));
    let swept = sweep(dir.path(), &SweepOptions::default()).unwrap();
    assert_eq!(swept.temps_removed, vec![dead.clone()]);
    assert_eq!(slot_names(dir.path()), vec![".s.jsonl.lock.w0.tmp"]);
    // And ours is still the one we use.
    let id = file_identity(&ours);
    let g = try_acquire_with(&t, &LockOptions::new()).unwrap();
    assert_eq!(file_identity(&lock_of(&t)), id);
    g.release().unwrap();
    session_lock::close_idle();
}

#[test]
fn a_witness_shared_with_children_is_never_parked() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    let g = try_acquire_with(&t, &LockOptions::new()).unwrap();
    let first = file_identity(&lock);
    let old = std::fs::File::open(&lock).unwrap();
    g.share_with_children().unwrap();
    g.release().unwrap();
    assert!(
        slot_names(dir.path()).is_empty(),
        "a shared witness was parked: {:?}",
        all_names(dir.path())
    );
    // So the next hold is on another inode (the old one may still be
    // flocked by a child). `old` keeps the first inode from being freed,
    // so its number cannot be handed out again.
    let g = try_acquire_with(&t, &LockOptions::new()).unwrap();
    assert_ne!(file_identity(&lock), first);
    g.release().unwrap();
    drop(old);
    session_lock::close_idle();
}

#[test]
fn a_killed_holders_death_wakes_a_waiter_under_the_lock_name() {
    // The slot witness was opened through the slot name and renamed onto
    // the lock name; the kernel reports its close at death under the lock
    // name, so a waiter wakes by event, not by its safety re-check.
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let h = Holder::start(&t, &[]);
    let t2 = t.clone();
    let waiter = std::thread::spawn(move || {
        let g = session_lock::acquire_with(&t2, &LockOptions::new().with_timeout(WAIT));
        (g, session_lock::__private::wait_wakeups())
    });
    // Let the waiter look and sleep; a kill before that is fine too (then
    // it finds a dead owner on its first look).
    std::thread::sleep(Duration::from_millis(100));
    h.kill9();
    let (g, (_, by_timer)) = waiter.join().unwrap();
    let g = g.expect("the waiter takes over the dead holder's lock");
    assert_eq!(by_timer, 0, "woken by a timer, not by the death");
    g.release().unwrap();
    session_lock::close_idle();
}

#[test]
fn a_file_planted_at_a_slot_name_is_never_adopted() {
    let Some((_s, dir, t)) = start() else { return };
    // A hard link to someone's file: never written into or truncated.
    let victim = dir.path().join("victim.txt");
    let precious = "precious data that must not be touched\n".repeat(20);
    std::fs::write(&victim, &precious).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::hard_link(&victim, dir.path().join(".s.jsonl.lock.w0.tmp")).unwrap();
    let g = try_acquire_with(&t, &LockOptions::new()).unwrap();
    assert_ne!(file_identity(&lock_of(&t)), file_identity(&victim));
    g.release().unwrap();
    session_lock::close_idle();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), precious);
    // A file others may write: not adopted either, the lock stays private.
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let w0 = dir.path().join(".s.jsonl.lock.w0.tmp");
    std::fs::write(&w0, b"").unwrap();
    std::fs::set_permissions(&w0, std::fs::Permissions::from_mode(0o666)).unwrap();
    let g = try_acquire_with(&t, &LockOptions::new()).unwrap();
    assert_eq!(
        std::fs::metadata(lock_of(&t)).unwrap().mode() & 0o777,
        0o600
    );
    assert_ne!(file_identity(&lock_of(&t)), file_identity(&w0));
    g.release().unwrap();
    session_lock::close_idle();
}

#[test]
fn a_parked_slot_whose_directory_was_made_again_never_publishes_another_file() {
    let Some((_s, base, _)) = start() else { return };
    let d = base.path().join("sess");
    std::fs::create_dir(&d).unwrap();
    let t = d.join("s.jsonl");
    let lock = lock_of(&t);
    try_acquire_with(&t, &LockOptions::new())
        .unwrap()
        .release()
        .unwrap();
    // The session directory is removed and made again (rm -rf; mkdir), and
    // another live process parks its own slot w0 there.
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::create_dir(&d).unwrap();
    let slot = d.join(".s.jsonl.lock.w0.tmp");
    let mut other = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&slot)
        .unwrap();
    other
        .write_all(b"{\"pid\":1,\"token\":\"theirs\"}\n")
        .unwrap();
    rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let theirs = file_identity(&slot);
    // Our parked slot names that path now: the acquire must not rename
    // their file onto the lock name.
    let g = try_acquire_with(&t, &LockOptions::new()).unwrap();
    assert_ne!(
        file_identity(&lock),
        theirs,
        "another process's slot was published"
    );
    assert_eq!(file_identity(&slot), theirs, "their slot was moved");
    assert_eq!(g.record().pid, Some(std::process::id()));
    g.release().unwrap();
    drop(other);
    session_lock::close_idle();
}

/// Wait (bounded) for one byte on a pipe; `None` on timeout.
fn read_byte(fd: i32, limit: Duration) -> Option<u8> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut b = [0u8; 1];
        // SAFETY: read(2) into a local buffer from a pipe we own.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
        let _ = tx.send((n == 1).then_some(b[0]));
    });
    rx.recv_timeout(limit).ok().flatten()
}

fn pipe() -> [i32; 2] {
    let mut fds = [0i32; 2];
    // SAFETY: pipe(2) into a local array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    fds
}

#[test]
fn a_forked_childs_copy_of_a_guard_never_passes_for_the_parents_new_hold() {
    // fork() without exec: the parent releases (its slot is parked) and
    // takes the lock again, publishing the same inode. The child's copy of
    // the old guard must not pass its check or append: the hold is not its.
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = try_acquire_with(&t, &LockOptions::new()).unwrap();
    let (go, answer) = (pipe(), pipe());
    // SAFETY: the child only uses the guard it inherited and async-signal-
    // safe calls (read, write, _exit) around it; this file's tests run one
    // at a time, so no other test thread holds a lock the child needs.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut b = [0u8; 1];
        // SAFETY: plain reads and writes on the pipes, then _exit.
        unsafe {
            libc::read(go[0], b.as_mut_ptr().cast(), 1);
            let ok = g.check().is_ok() || g.append_line("child writes").is_ok();
            let c: &[u8] = if ok { b"1" } else { b"0" };
            libc::write(answer[1], c.as_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    g.release().unwrap();
    let again = try_acquire_with(&t, &LockOptions::new()).unwrap();
    // SAFETY: write(2) of one byte to our pipe.
    unsafe { libc::write(go[1], b"g".as_ptr().cast(), 1) };
    let answer = read_byte(answer[0], WAIT);
    // SAFETY: reap the child we forked.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    assert_eq!(answer, Some(b'0'), "the child's old guard passed as held");
    assert!(
        !std::fs::read_to_string(&t)
            .unwrap_or_default()
            .contains("child writes")
    );
    again.release().unwrap();
    session_lock::close_idle();
}

/// Something at slot 0's name that cannot be opened as a slot (here a
/// directory) is passed over: the lock gets slot 1, parked after release,
/// rather than no slot at all. (A mutation run found the "no directory,
/// no slots" exit taken for any open error.)
#[test]
fn a_slot_name_that_cannot_be_opened_is_passed_over_for_the_next() {
    let Some((_s, dir, t)) = start() else { return };
    std::fs::create_dir(dir.path().join(".s.jsonl.lock.w0.tmp")).unwrap();
    let g = try_acquire_with(&t, &LockOptions::new()).unwrap();
    g.release().unwrap();
    let w1 = dir.path().join(".s.jsonl.lock.w1.tmp");
    assert!(
        is_live_slot(&w1),
        "no parked slot 1: {:?}",
        all_names(dir.path())
    );
    session_lock::close_idle();
}

/// A process parks at most `MAX_IDLE` (64) slots; beyond that the oldest
/// is removed, not an arbitrary one and not one too many. (A mutation run
/// found the eviction's order and bound untested.)
#[test]
fn beyond_sixty_four_parked_slots_the_oldest_is_removed() {
    let Some((_s, dir, _)) = start() else { return };
    let slot0 = |i: usize| dir.path().join(format!(".l{i}.jsonl.lock.w0.tmp"));
    for i in 0..=64 {
        let t = dir.path().join(format!("l{i}.jsonl"));
        try_acquire_with(&t, &LockOptions::new())
            .unwrap()
            .release()
            .unwrap();
    }
    let parked = (0..=64).filter(|&i| slot0(i).exists()).count();
    assert_eq!(parked, 64, "{:?}", all_names(dir.path()));
    assert!(!slot0(0).exists(), "the oldest parked slot was kept");
    assert!(slot0(64).exists() && slot0(1).exists());
    session_lock::close_idle();
}
