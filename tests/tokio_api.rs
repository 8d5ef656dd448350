//! The tokio front door: many waiters on a small runtime, cancellation at
//! every await point, release on drop inside the runtime.
#![cfg(feature = "tokio")]

mod common;

use common::*;
use session_lock::{ErrorKind, LockOptions, LostReason};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

fn runtime(workers: usize, blocking: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(blocking)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn two_hundred_waiters_on_a_small_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    // Two workers and one blocking thread: waiting must not hold threads.
    let rt = runtime(2, 1);
    let inside = Arc::new(AtomicUsize::new(0));
    let done = rt.block_on(async {
        let mut tasks = Vec::new();
        for id in 0..200 {
            let (t, inside) = (t.clone(), inside.clone());
            tasks.push(tokio::spawn(async move {
                let opts = LockOptions::new().timeout(Duration::from_secs(120));
                let g = session_lock::tokio::acquire_with(&t, &opts).await?;
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "overlap");
                g.append_line(format!("{id}"))?;
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
                drop(g); // released on drop inside the runtime
                Ok::<_, session_lock::Error>(())
            }));
        }
        tokio::time::timeout(Duration::from_secs(120), async {
            let mut n = 0;
            for task in tasks {
                task.await.unwrap().unwrap();
                n += 1;
            }
            n
        })
        .await
        .expect("200 waiters did not finish within 120 s")
    });
    assert_eq!(done, 200);
    assert_eq!(std::fs::read_to_string(&t).unwrap().lines().count(), 200);
    assert_eq!(names(dir.path()), vec!["s.jsonl"]);
}

/// Polls the inner future at most `n` times, then drops it.
struct PollN<F> {
    inner: Option<Pin<Box<F>>>,
    left: usize,
}

impl<F: Future> Future for PollN<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.left == 0 {
            self.inner = None;
            return Poll::Ready(None);
        }
        self.left -= 1;
        let inner = self.inner.as_mut().expect("polled after completion");
        match inner.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => {
                // Come back soon so every await point gets its turn.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

#[test]
fn dropping_the_acquire_future_at_any_point_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for contended in [false, true] {
        for n in 0..12 {
            let t = dir.path().join(format!("c{contended}-{n}.jsonl"));
            // A holder on another thread makes the future wait.
            let holder = contended.then(|| {
                let t = t.clone();
                std::thread::spawn(move || session_lock::acquire(&t).unwrap())
                    .join()
                    .unwrap()
            });
            let opts = LockOptions::new().timeout(Duration::from_secs(30));
            let out = rt.block_on(PollN {
                inner: Some(Box::pin(session_lock::tokio::acquire_with(
                    t.clone(),
                    &opts,
                ))),
                left: n,
            });
            // Completed within n polls: only possible uncontended.
            if let Some(res) = out {
                assert!(!contended, "acquired a held lock");
                res.unwrap().release().unwrap();
            }
            if let Some(h) = holder {
                assert!(h.is_held(), "a cancelled waiter disturbed the holder");
                h.release().unwrap();
            }
            // Nothing left: no lock file, no temp file.
            let left: Vec<String> = names(dir.path())
                .into_iter()
                .filter(|name| name.contains(&format!("c{contended}-{n}.")))
                .collect();
            assert!(
                left.is_empty(),
                "left behind after {n} polls (contended={contended}): {left:?}"
            );
            // And the lock is free.
            session_lock::try_acquire(&t, &LockOptions::new())
                .unwrap()
                .release()
                .unwrap();
        }
    }
}

#[test]
fn async_waiter_wakes_when_another_process_releases() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = Holder::start(&t, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t2 = t.clone();
    let res = rt.block_on(async move {
        let waiter = tokio::spawn(async move {
            session_lock::tokio::acquire_with(
                &t2,
                &LockOptions::new().timeout(Duration::from_secs(60)),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let busy = session_lock::tokio::try_acquire(&t, &LockOptions::new())
            .await
            .unwrap_err();
        assert_eq!(busy.kind(), ErrorKind::Busy);
        assert!(
            tokio::task::spawn_blocking(move || holder.release().success())
                .await
                .unwrap()
        );
        tokio::time::timeout(WAIT, waiter)
            .await
            .expect("waiter woke")
            .unwrap()
    });
    res.expect("acquired").release().unwrap();
}

#[test]
fn async_timeout_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = Holder::start(&t, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(session_lock::tokio::acquire_with(
            &t,
            &LockOptions::new().timeout(Duration::from_millis(100)),
        ))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        err.to_string().contains(&format!("pid={}", holder.pid())),
        "{err}"
    );
    assert!(holder.release().success());
}

#[test]
fn lost_future_resolves_on_forced_release() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reason = rt.block_on(async {
        let g = session_lock::tokio::acquire_with(
            &t,
            &LockOptions::new().max_hold(Duration::from_millis(100)),
        )
        .await
        .unwrap();
        let r = tokio::time::timeout(WAIT, g.lost())
            .await
            .expect("lost() resolved");
        assert_eq!(
            g.append_line("late").unwrap_err().kind(),
            ErrorKind::LockLost
        );
        r
    });
    assert!(
        matches!(
            reason,
            LostReason::MaxHoldExceeded {
                max_hold_ms: 100,
                ..
            }
        ),
        "{reason:?}"
    );
    assert!(!lock_of(&t).exists());
}

#[test]
fn tasks_on_one_thread_wait_for_each_other_instead_of_deadlocking() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let g = session_lock::tokio::acquire(&t).await.unwrap();
        let t2 = t.clone();
        let second =
            tokio::spawn(
                async move { session_lock::tokio::acquire(&t2).await.map(|g| g.release()) },
            );
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(g);
        tokio::time::timeout(WAIT, second)
            .await
            .expect("second task woke")
            .unwrap()
            .unwrap()
            .unwrap();
    });
}
