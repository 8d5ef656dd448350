//! The tokio front door: many waiters on a small runtime, cancellation at
//! every await point, release on drop inside the runtime.

#[path = "../../tests/common/mod.rs"]
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
                let opts = LockOptions::new().with_timeout(Duration::from_secs(120));
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
            let opts = LockOptions::new().with_timeout(Duration::from_secs(30));
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
            session_lock::try_acquire_with(&t, &LockOptions::new())
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
                &LockOptions::new().with_timeout(Duration::from_secs(60)),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let busy = session_lock::tokio::try_acquire_with(&t, &LockOptions::new())
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
    let start = std::time::Instant::now();
    let err = rt
        .block_on(session_lock::tokio::acquire_with(
            &t,
            &LockOptions::new().with_timeout(Duration::from_millis(100)),
        ))
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    // Issue 11, gap 4: ends at the deadline, not at the next safety
    // re-check (2 s); a generous correctness bound, not a benchmark.
    assert!(
        took >= Duration::from_millis(100),
        "returned early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "overshot the timeout: {took:?}"
    );
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
            &LockOptions::new().with_max_hold(Duration::from_millis(100)),
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

/// Polls the inner future until `stop` is set after a poll that left it
/// pending, then drops it.
#[cfg(feature = "fault-injection")]
struct DropWhen<F> {
    inner: Option<Pin<Box<F>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(feature = "fault-injection")]
impl<F: Future> Future for DropWhen<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut().expect("polled after completion");
        match inner.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending if self.stop.load(Ordering::SeqCst) => {
                self.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

/// Issue 11, gap 2: an acquire future that lost a publish race keeps its
/// prepared record (on the named-temp path, `SESSION_LOCK_NO_TMPFILE=1`, a
/// `.s.jsonl.lock.<token>.tmp` file) for its next attempt; dropping the
/// future then must remove it. The task is paused at the publish fault
/// point while another holder takes the lock, resumed, and dropped once it
/// has judged the lock held.
#[cfg(feature = "fault-injection")]
#[test]
fn a_dropped_future_that_lost_a_publish_race_leaves_only_the_winners_lock() {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;
    const THREAD: &str = "async-publish-loser";
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let (reached_tx, reached_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (reached_tx, go_rx) = (Mutex::new(reached_tx), Mutex::new(go_rx));
    let parked = AtomicBool::new(false);
    let observed = Arc::new(AtomicBool::new(false));
    {
        let observed = observed.clone();
        // Only the named thread is affected: other tests of this binary run
        // concurrently and never reach a fault point on it.
        session_lock::fault::set_hook(Some(Arc::new(move |point: &str| {
            if std::thread::current().name() != Some(THREAD) {
                return;
            }
            match point {
                "publish.before_rename" if !parked.swap(true, Ordering::SeqCst) => {
                    let _ = reached_tx.lock().unwrap().send(());
                    let _ = go_rx.lock().unwrap().recv_timeout(WAIT);
                }
                "acquire.after_observe" => observed.store(true, Ordering::SeqCst),
                _ => {}
            }
        })));
    }
    let loser = {
        let t = t.clone();
        std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let opts = LockOptions::new().with_timeout(Duration::from_secs(60));
                rt.block_on(DropWhen {
                    inner: Some(Box::pin(session_lock::tokio::acquire_with(t, &opts))),
                    stop: observed,
                })
                .map(|r| r.map(|g| g.record().token.clone()))
            })
            .unwrap()
    };
    reached_rx
        .recv_timeout(WAIT)
        .expect("the async acquire never reached publish.before_rename");
    let temps = || -> Vec<String> {
        names(dir.path())
            .into_iter()
            .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
            .collect()
    };
    if std::env::var_os("SESSION_LOCK_NO_TMPFILE").is_some() {
        assert_eq!(temps().len(), 1, "no prepared temp file: {:?}", temps());
    }
    let winner = session_lock::try_acquire_with(&t, &LockOptions::new()).expect("winner acquires");
    go_tx.send(()).unwrap();
    let out = within(WAIT, "the paused async acquire", move || {
        loser.join().unwrap()
    });
    assert!(out.is_none(), "acquired a held lock: {out:?}");
    session_lock::fault::set_hook(None);
    assert_eq!(
        names(dir.path()),
        vec!["s.jsonl.lock"],
        "the dropped future left its prepared record behind"
    );
    assert!(winner.is_held());
    winner.release().unwrap();
    assert_eq!(names(dir.path()), Vec::<String>::new());
}
