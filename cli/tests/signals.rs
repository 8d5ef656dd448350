//! Cleanup on SIGINT/SIGTERM/SIGQUIT/SIGHUP (feature `signals`): the lock
//! file is removed, then the signal takes its default effect.
#![cfg(target_os = "linux")]

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;

fn signal_removes_lock_then_terminates(sig: libc::c_int) {
    // A signal ignored when the holder starts is left alone by design
    // (`signals` module docs), and an ignored disposition is inherited:
    // under `nohup` SIGHUP is, and the holder would never exit. The
    // holder starts with the default disposition, as from a terminal.
    // SAFETY: signal(2) with SIG_DFL, no handler involved.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let mut holder = Holder::start(&t, &[]);
    assert!(lock_of(&t).exists());
    // SAFETY: plain kill(2) on our child.
    assert_eq!(unsafe { libc::kill(holder.pid() as libc::pid_t, sig) }, 0);
    let status = wait_child(&mut holder.child, WAIT, "signalled holder");
    assert_eq!(
        status.signal(),
        Some(sig),
        "the signal's default effect must run: {status:?}"
    );
    assert!(
        !lock_of(&t).exists(),
        "lock file left behind after signal {sig}"
    );
}

#[test]
fn sigterm_removes_the_lock() {
    signal_removes_lock_then_terminates(libc::SIGTERM);
}

#[test]
fn sigint_removes_the_lock() {
    signal_removes_lock_then_terminates(libc::SIGINT);
}

#[test]
fn sighup_removes_the_lock() {
    signal_removes_lock_then_terminates(libc::SIGHUP);
}

#[test]
fn sigquit_removes_the_lock() {
    signal_removes_lock_then_terminates(libc::SIGQUIT);
}
