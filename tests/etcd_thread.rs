//! A guard released on this process's etcd thread: the async API drops
//! there the result of an acquire whose caller went away just as the
//! lock was granted (`etcd::run_async`). Blocking there for the revoke's
//! answer would wedge the thread that must give it, and with it every
//! etcd lock of the process; the release revokes in the background
//! instead. The window is a race in real use, so the test drops a guard
//! there through a seam.
#![cfg(all(feature = "etcd", feature = "fault-injection"))]

#[path = "../cli/tests/etcd_support/mod.rs"]
mod etcd_support;

use etcd_support::{require_etcd, single};
use session_lock::etcd::EtcdBackend;
use session_lock::{Backend, LockOptions};
use std::sync::mpsc;
use std::time::Duration;

#[test]
#[ignore = "needs etcd on PATH (Debian: etcd-server); CI runs it: cargo test --all-features --test etcd_thread -- --ignored"]
fn a_guard_dropped_on_the_etcd_thread_revokes_without_wedging_it() {
    require_etcd("a guard dropped on the etcd thread");
    let etcd = single();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    // A lease far longer than the waits below: the lock is free again in
    // time only if the release revoked it.
    let cfg = EtcdBackend::new([etcd.endpoint()]).with_lease_ttl(Duration::from_secs(60));
    let opts = |wait: u64| {
        LockOptions::new()
            .with_timeout(Duration::from_secs(wait))
            .with_backend(Backend::Etcd(cfg.clone()))
    };
    let g = session_lock::acquire_with(&t, &opts(10)).unwrap();
    g.append_line("{\"n\":1}").unwrap();

    let (tx, rx) = mpsc::channel();
    assert!(
        session_lock::__private::run_on_etcd_thread(&cfg, move || {
            drop(g);
            tx.send(()).unwrap();
        }),
        "the etcd thread did not start"
    );
    rx.recv_timeout(Duration::from_secs(10))
        .expect("dropping a guard on the etcd thread did not return within 10 s: it blocked the thread that must answer it");

    // The etcd thread still serves requests, and the lease is revoked: the
    // lock is free long before the 60 s TTL.
    let next = session_lock::acquire_with(&t, &opts(10))
        .expect("the lock is free again within 10 s (the dropped guard's lease revoked)");
    next.append_line("{\"n\":2}").unwrap();
    next.release().unwrap();
    assert_eq!(
        std::fs::read_to_string(&t).unwrap(),
        "{\"n\":1}\n{\"n\":2}\n"
    );
}
