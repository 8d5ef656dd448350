//! The library inside a gateway: guards that move between threads and
//! through a blocking pool, loss watchers that end, forked children.

mod common;

use common::{WAIT, within};
use session_lock::{ErrorKind, LockOptions, LostReason};
use std::sync::mpsc;
use std::time::Duration;

fn opts(timeout: Duration) -> LockOptions {
    LockOptions::new().with_timeout(timeout)
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
    let busy = session_lock::try_acquire_with(&t, &LockOptions::new()).unwrap_err();
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
                // Woken by events (in-process or the kernel's), never by
                // the safety re-check's timer.
                let (_, timers) = session_lock::__private::wait_wakeups();
                assert_eq!(timers, 0, "waiter {i} was woken by the timer");
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

/// Options the lock cannot honour are refused before anything is touched,
/// by every front door.
#[test]
fn options_the_lock_cannot_honour_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let table: [(LockOptions, &str); 4] = [
        (LockOptions::new().with_max_hold(Duration::ZERO), "max hold"),
        (
            LockOptions::new().with_max_hold(Duration::from_micros(999)),
            "max hold",
        ),
        (
            LockOptions::new().with_stale(Duration::from_micros(5)),
            "stale threshold",
        ),
        (
            LockOptions::new().with_orphan_grace(Duration::ZERO),
            "orphan grace",
        ),
    ];
    for (opts, what) in table {
        let errs = [
            session_lock::acquire_with(&t, &opts).unwrap_err(),
            session_lock::try_acquire_with(&t, &opts).unwrap_err(),
            rt.block_on(session_lock::tokio::acquire_with(&t, &opts))
                .unwrap_err(),
            rt.block_on(session_lock::tokio::try_acquire_with(&t, &opts))
                .unwrap_err(),
        ];
        for err in errs {
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
            assert!(err.to_string().contains(what), "{err}");
            assert!(err.to_string().contains("s.jsonl"), "{err}");
        }
        assert!(
            common::all_names(dir.path()).is_empty(),
            "{what}: nothing is created: {:?}",
            common::all_names(dir.path())
        );
    }
    // The smallest max hold, and a zero timeout (one attempt), are fine.
    let g = session_lock::acquire_with(
        &t,
        &LockOptions::new()
            .with_max_hold(Duration::from_millis(1))
            .with_timeout(Duration::ZERO),
    )
    .unwrap();
    assert_eq!(g.record().max_hold_ms, Some(1));
    drop(g);
    let g = session_lock::acquire(&t).unwrap();
    let err = std::thread::scope(|s| {
        s.spawn(|| session_lock::acquire_with(&t, &opts(Duration::ZERO)).unwrap_err())
            .join()
            .unwrap()
    });
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    g.release().unwrap();
}

/// A line with a newline is refused as input, and a batch with one writes
/// nothing; `append_json` writes any serialisable value as one line.
#[test]
fn lines_with_newlines_are_refused_and_json_values_are_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = session_lock::acquire(&t).unwrap();
    let err = g.append_line("{\"a\":\n1}").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("newline"), "{err}");
    assert!(!t.exists(), "nothing written, nothing created");
    let err = g.append_lines(["{\"ok\":1}", "{\"bad\":\n2}"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(!t.exists(), "not even the good line before the bad one");
    #[derive(serde::Serialize)]
    struct Turn<'a> {
        role: &'a str,
        text: &'a str,
    }
    g.append_json(&Turn {
        role: "user",
        text: "two\nlines",
    })
    .unwrap();
    g.append_json_lines([&serde_json::json!({"n":1}), &serde_json::json!({"n":2})])
        .unwrap();
    // A map with non-string keys does not serialise: refused, nothing written.
    let bad: std::collections::HashMap<Vec<u8>, u8> = [(vec![1u8], 1u8)].into();
    let err = g.append_json(&bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    g.release().unwrap();
    let text = std::fs::read_to_string(&t).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"role":"user","text":"two\nlines"}),
            serde_json::json!({"n":1}),
            serde_json::json!({"n":2})
        ]
    );
}
