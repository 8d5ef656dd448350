//! The library inside a gateway: guards that move between threads and
//! through a blocking pool, loss watchers that end, forked children.

mod common;

use common::{WAIT, within};
use session_lock::{ErrorKind, LockOptions, LostReason};
use std::sync::mpsc;
use std::time::Duration;

fn opts(timeout: Duration) -> LockOptions {
    LockOptions::new().timeout(timeout)
}

/// A guard moved to another thread and dropped there: the first thread's
/// `try_acquire` meanwhile says `Busy` (not "would deadlock"), and its
/// `acquire_with` gets the lock after the drop.
#[test]
fn a_guard_moved_to_another_thread_is_waited_for_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = session_lock::acquire(&t).unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let mover = std::thread::spawn(move || {
        // Bounded: a failing test ends instead of hanging.
        let _ = go_rx.recv_timeout(WAIT);
        std::thread::sleep(Duration::from_millis(300));
        g.append_line("{\"from\":\"mover\"}").unwrap();
        drop(g);
    });
    let busy = session_lock::try_acquire(&t, &LockOptions::new()).unwrap_err();
    assert_eq!(busy.kind(), ErrorKind::Busy, "{busy}");
    assert_eq!(
        busy.owner().and_then(|o| o.pid),
        Some(std::process::id()),
        "{busy}"
    );
    go_tx.send(()).unwrap();
    let g = session_lock::acquire_with(&t, &opts(WAIT))
        .unwrap_or_else(|e| panic!("the moved guard's drop must let us in: {e}"));
    g.append_line("{\"from\":\"first\"}").unwrap();
    g.release().unwrap();
    mover.join().unwrap();
    assert_eq!(
        std::fs::read_to_string(&t).unwrap(),
        "{\"from\":\"mover\"}\n{\"from\":\"first\"}\n"
    );
}

/// The same through tokio's blocking pool with one blocking thread: a guard
/// acquired in `spawn_blocking` and kept by async code does not make a
/// later `spawn_blocking` acquire on the same pool thread fail.
#[test]
fn a_blocking_pool_thread_that_acquired_before_waits_for_the_guard_kept_by_async_code() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    rt.block_on(async move {
        let t1 = t.clone();
        let (g, first_thread) = tokio::task::spawn_blocking(move || {
            (
                session_lock::acquire(&t1).unwrap(),
                std::thread::current().id(),
            )
        })
        .await
        .unwrap();
        let dropper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(g);
        });
        let t2 = t.clone();
        let (second, second_thread) = tokio::time::timeout(
            WAIT,
            tokio::task::spawn_blocking(move || {
                (
                    session_lock::acquire_with(&t2, &opts(WAIT)),
                    std::thread::current().id(),
                )
            }),
        )
        .await
        .expect("the pool's acquire ended")
        .unwrap();
        assert_eq!(first_thread, second_thread, "one blocking thread");
        let g = second.unwrap_or_else(|e| panic!("must wait, not fail: {e}"));
        g.release().unwrap();
        dropper.await.unwrap();
    });
}

/// A thread that waits for a lock it still holds itself waits until its
/// timeout (nothing can prove that its guard has not moved); the error
/// names our own process as the owner.
#[test]
fn a_thread_waiting_for_its_own_lock_times_out_naming_itself() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = session_lock::acquire(&t).unwrap();
    let err = session_lock::acquire_with(&t, &opts(Duration::from_millis(200))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_eq!(err.owner().and_then(|o| o.pid), Some(std::process::id()));
    assert_eq!(err.owner().and_then(|o| o.alive), Some(true));
    g.release().unwrap();
}

/// Other threads behind an in-process holder are woken in-process by its
/// release (no directory event needed): they acquire one after another.
#[test]
fn threads_behind_an_in_process_holder_all_get_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = session_lock::acquire(&t).unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let t = t.clone();
            let ready_tx = ready_tx.clone();
            std::thread::spawn(move || {
                ready_tx.send(()).unwrap();
                let g = session_lock::acquire_with(&t, &opts(WAIT)).unwrap();
                g.append_line(format!("{{\"waiter\":{i}}}")).unwrap();
                g.release().unwrap();
            })
        })
        .collect();
    for _ in 0..4 {
        ready_rx.recv_timeout(WAIT).unwrap();
    }
    g.release().unwrap();
    for w in waiters {
        within(WAIT, "a waiter", move || w.join().unwrap());
    }
    assert_eq!(std::fs::read_to_string(&t).unwrap().lines().count(), 4);
}

/// `lost()` ends after a normal release too, so a watcher task ends.
#[test]
fn loss_watchers_end_after_a_normal_release() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    rt.block_on(async move {
        let g = session_lock::tokio::acquire(&t).await.unwrap();
        let watcher = tokio::spawn(g.lost());
        tokio::task::yield_now().await;
        g.release().unwrap();
        let reason = tokio::time::timeout(WAIT, watcher)
            .await
            .expect("the watcher ended")
            .unwrap();
        assert_eq!(reason, LostReason::Released);
        // Dropping instead of releasing ends it too; and a nested guard's
        // watcher ends only with the last guard.
        let g = session_lock::tokio::acquire(&t).await.unwrap();
        let n = g.nested().unwrap();
        let watcher = tokio::spawn(n.lost());
        drop(g);
        tokio::task::yield_now().await;
        assert!(!watcher.is_finished(), "the nested guard still holds it");
        drop(n);
        let reason = tokio::time::timeout(WAIT, watcher)
            .await
            .expect("the watcher ended")
            .unwrap();
        assert_eq!(reason, LostReason::Released);
    });
}
