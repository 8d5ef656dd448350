//! A child forked from a process that holds an etcd lock has no hold of its
//! own: its copy of the guard reports `LostReason::Inherited`, refuses to
//! append, and releasing it revokes nothing (the lease and its renewals
//! are the parent's), as with lock files (`tests/fork.rs`). One test in
//! its own binary: a fork while other test threads run could copy a lock
//! one of them holds.
#![cfg(feature = "etcd")]

#[path = "../cli/tests/etcd_support/mod.rs"]
mod etcd_support;

use etcd_support::{require_etcd, single};
use session_lock::etcd::EtcdBackend;
use session_lock::{Backend, ErrorKind, LockOptions, LostReason};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// The child's checks; `Err(step)` names the first that failed.
fn child(g: &session_lock::LockGuard, parent: u32) -> Result<(), i32> {
    let inherited =
        |r: Option<LostReason>| matches!(r, Some(LostReason::Inherited { pid }) if pid == parent);
    match g.check() {
        Err(e) if e.kind() == ErrorKind::LockLost && inherited(e.lost_reason().cloned()) => {}
        _ => return Err(1),
    }
    if !inherited(g.lost_reason()) {
        return Err(2);
    }
    match g.append_line("{\"from\":\"child\"}") {
        Err(e) if e.kind() == ErrorKind::LockLost => {}
        _ => return Err(3),
    }
    if !inherited(g.wait_lost(Some(Duration::from_secs(5)))) {
        return Err(4);
    }
    Ok(())
}

#[test]
#[ignore = "needs etcd on PATH (Debian: etcd-server); CI runs it: cargo test --all-features --test fork_etcd -- --ignored"]
fn a_forked_child_has_no_hold_of_its_parents_etcd_lock() {
    require_etcd("fork with an etcd hold");
    let etcd = single();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let cfg = EtcdBackend::new([etcd.endpoint()]).with_lease_ttl(Duration::from_secs(2));
    let opts = LockOptions::new()
        .with_timeout(WAIT)
        .with_backend(Backend::Etcd(cfg.clone()));
    let g = session_lock::acquire_with(&t, &opts).unwrap();
    g.append_line("{\"from\":\"parent\",\"n\":1}").unwrap();
    let parent = std::process::id();
    // SAFETY: this binary has this one test, so no other test thread can
    // hold one of the library's locks at the fork; the child only asks its
    // copy of the guard (no etcd call) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(&g, parent)))
            .map_or(90, |r| match r {
                Ok(()) => 0,
                Err(step) => step,
            });
        // SAFETY: ends the child without the parent's destructors (its copy
        // of the guard must not release anything) or the test harness.
        unsafe { libc::_exit(code) };
    }
    // Bounded: a child stuck (a lock copied at the fork) fails the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut status = 0;
        // SAFETY: waits for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        let _ = tx.send((r, status));
    });
    let Ok((r, status)) = rx.recv_timeout(WAIT) else {
        // SAFETY: our own child, stuck.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("the forked child did not finish within {WAIT:?}");
    };
    assert_eq!(r, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed at step {} (status {status:#x})",
        libc::WEXITSTATUS(status)
    );
    // The parent still holds, and nothing of the child's reached the file.
    g.check().expect("the parent still holds its lock");
    g.append_line("{\"from\":\"parent\",\"n\":2}").unwrap();
    g.release().unwrap();
    assert_eq!(
        std::fs::read_to_string(&t).unwrap(),
        "{\"from\":\"parent\",\"n\":1}\n{\"from\":\"parent\",\"n\":2}\n"
    );
    // And the lock is free at once (the parent's release revoked the lease).
    let next = session_lock::try_acquire_with(&t, &opts).expect("free after the release");
    next.release().unwrap();
}
