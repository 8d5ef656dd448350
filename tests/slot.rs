//! Witness slots (docs/protocol.md, "Witness slots"): a process keeps one
//! witnessed inode per lock across its holds, parked at a hidden slot name
//! between them; slots left by dead processes are taken over or cleaned,
//! never multiplied; a witness shared with children is never parked.
//!
//! `close_idle` is process-wide, so the tests of this file run one at a time.

mod common;

use common::*;
use session_lock::sweep::{SweepOptions, sweep};
use session_lock::{LockOptions, try_acquire};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

fn serial() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    let g = M.lock().unwrap_or_else(|p| p.into_inner());
    session_lock::close_idle();
    g
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
    let _s = serial();
    if !slots_on() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    let g = try_acquire(&t, &LockOptions::new()).unwrap();
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
    let g = try_acquire(&t, &LockOptions::new()).unwrap();
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
    assert_eq!(all_names(dir.path()), vec!["s.jsonl.lock.queue"]);
}

#[test]
fn a_slot_left_by_a_dead_process_is_taken_over_not_multiplied() {
    let _s = serial();
    if !slots_on() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
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
    let id = file_identity(&left);
    let g = try_acquire(&t, &LockOptions::new()).unwrap();
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
    let _s = serial();
    if !slots_on() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    // Ours, parked (slot 0), and one left by a dead process (slot 1).
    try_acquire(&t, &LockOptions::new())
        .unwrap()
        .release()
        .unwrap();
    let ours = dir.path().join(".s.jsonl.lock.w0.tmp");
    let dead = dir.path().join(".s.jsonl.lock.w1.tmp");
    std::fs::write(&dead, b"{}\n").unwrap();
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
    let g = try_acquire(&t, &LockOptions::new()).unwrap();
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
    let g = try_acquire(&t, &LockOptions::new()).unwrap();
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
    let g = try_acquire(&t, &LockOptions::new()).unwrap();
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
        let g = session_lock::acquire_with(&t2, &LockOptions::new().timeout(WAIT));
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
