//! Waiting never polls (issue 24): on every waiting path (a blocking thread
//! on its own inotify instance, a blocking thread beyond
//! `MAX_LOCAL_INSTANCES` on the shared hub, async tasks on a current-thread
//! and a multi-thread runtime) a waiter takes no step while the lock stays
//! held, and the release wakes it once, by the event, never by a timer.
//! Plus the bad days: the directory deleted and made again under a waiter,
//! an event queue overflow, no inotify at all, idle hub watches beyond the
//! bound, instances across waits and threads.
//!
//! The counters (`__private::acquire_steps`, `all_wait_wakeups`,
//! `local_instances`) and the hub are process-wide, so the tests of this
//! file run one at a time (`serial`).
//!
//! Most paths here are async ones (the hub), so the file needs the
//! `tokio` feature, like `cli/tests/tokio_api.rs`.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use session_lock::__private as p;
use session_lock::{LockGuard, LockOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long the lock stays held once the waiter sleeps. Not a bound on
/// anything: the window in which a poller would take steps (the fallback's
/// back-off starts at 1 ms, a spinning waiter takes thousands) and a
/// sleeper takes none. Far below `SAFETY_RECHECK` (2 s).
const EXPOSURE: Duration = Duration::from_millis(30);

fn serial() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    let g = M.lock().unwrap_or_else(|p| p.into_inner());
    p::force_no_inotify(false);
    session_lock::fault::set_hook(None);
    g
}

fn opts() -> LockOptions {
    LockOptions::new().with_timeout(WAIT)
}

fn steps() -> u64 {
    p::acquire_steps()
}

/// Wait (bounded) until the acquire loops of this process took `n` steps
/// since `from`: a contender's first look, and its look after registering
/// its watch; after that it sleeps.
fn wait_steps(from: u64, n: u64, what: &str) {
    wait_until(
        WAIT,
        || steps() - from >= n,
        || format!("{what}: {} steps of {n}", steps() - from),
    );
}

/// The lock stays held for `EXPOSURE` with the waiter(s) asleep: no step
/// is taken meanwhile. Then it is released.
fn hold_then_release(guard: LockGuard, what: &str) {
    hold_then(what, || guard.release().unwrap());
}

/// As [`hold_then_release`], for a holder in another process.
fn hold_then_release_elsewhere(holder: Holder, what: &str) {
    hold_then(what, || {
        let st = holder.release();
        assert!(st.success(), "{what}: the holder exited with {st}");
    });
}

/// The lock held by another process (the test helper's `__hold`). A
/// blocking waiter behind a guard of its own process sleeps on that hold's
/// end, woken in-process without inotify (issue 20); the tests of the
/// kernel-woken blocking paths therefore keep their holders out of process.
fn held_elsewhere(t: &Path) -> Holder {
    Holder::start(t, &[])
}

/// As [`hold_then_release`], for any holder.
fn hold_then(what: &str, release: impl FnOnce()) {
    let before = steps();
    std::thread::sleep(EXPOSURE);
    let during = steps() - before;
    release();
    assert_eq!(
        during, 0,
        "{what}: {during} steps while the lock was held (polling)"
    );
}

/// Wake-ups of all threads since `from`: (by an event, by the timer).
fn wakes_since(from: (u64, u64)) -> (u64, u64) {
    let now = p::all_wait_wakeups();
    (now.0 - from.0, now.1 - from.1)
}

/// The inotify watches of this process: (descriptor, `ino:<hex>` field).
fn inotify_watches() -> Vec<(String, String)> {
    let Ok(fds) = std::fs::read_dir("/proc/self/fdinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in fds.flatten() {
        let Ok(info) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let fd = e.file_name().to_string_lossy().into_owned();
        for line in info.lines().filter(|l| l.starts_with("inotify wd:")) {
            if let Some(ino) = line.split_whitespace().find(|w| w.starts_with("ino:")) {
                out.push((fd.clone(), ino.to_owned()));
            }
        }
    }
    out
}

fn ino_field(dir: &Path) -> String {
    format!("ino:{:x}", std::fs::metadata(dir).unwrap().ino())
}

/// Descriptors of this process watching `dir`.
fn fds_watching(dir: &Path) -> Vec<String> {
    let ino = ino_field(dir);
    let mut fds: Vec<String> = inotify_watches()
        .into_iter()
        .filter(|(_, i)| *i == ino)
        .map(|(fd, _)| fd)
        .collect();
    fds.sort();
    fds.dedup();
    fds
}

/// A blocking waiter on its own thread; returns its thread's wake-ups.
fn blocking_waiter(t: &Path) -> std::thread::JoinHandle<(u64, u64)> {
    let t = t.to_owned();
    std::thread::spawn(move || {
        session_lock::acquire_with(&t, &opts())
            .unwrap()
            .release()
            .unwrap();
        p::wait_wakeups()
    })
}

fn join<T: Send + 'static>(h: std::thread::JoinHandle<T>, what: &str) -> T {
    within(WAIT, what, move || h.join().unwrap())
}

#[test]
fn a_blocking_waiter_sleeps_on_its_own_instance_until_the_release() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = held_elsewhere(&t);
    let s0 = steps();
    let waiter = blocking_waiter(&t);
    wait_steps(s0, 2, "the waiter never looked twice");
    hold_then_release_elsewhere(holder, "blocking waiter");
    assert_eq!(
        join(waiter, "the waiter"),
        (1, 0),
        "wake-ups (by event, by timer)"
    );
}

/// A blocking waiter behind a guard of its own process sleeps on that
/// hold's end (issue 20) and is woken once, in-process, by the release.
#[test]
fn a_blocking_waiter_behind_a_guard_of_its_own_process_sleeps_until_the_release() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = session_lock::acquire(&t).unwrap();
    let s0 = steps();
    let waiter = blocking_waiter(&t);
    wait_steps(s0, 2, "the waiter never looked twice");
    hold_then_release(holder, "in-process waiter");
    assert_eq!(
        join(waiter, "the waiter"),
        (1, 0),
        "wake-ups (by event, by timer)"
    );
}

/// A thread that waits in one lock's directory and then in another's
/// watches the second (not the first) for its second wait.
#[test]
fn a_thread_that_waited_in_one_directory_watches_the_next() {
    let _s = serial();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (a_dir.path().join("a.jsonl"), b_dir.path().join("b.jsonl"));
    let (go_b, wait_b) = mpsc::channel::<()>();
    let (a_done, a_released) = mpsc::channel::<()>();
    let (a2, b2) = (a.clone(), b.clone());
    let holder = held_elsewhere(&a);
    let s0 = steps();
    let waiter = std::thread::spawn(move || {
        session_lock::acquire_with(&a2, &opts())
            .unwrap()
            .release()
            .unwrap();
        let first = p::wait_wakeups();
        a_done.send(()).unwrap();
        wait_b.recv().unwrap();
        session_lock::acquire_with(&b2, &opts())
            .unwrap()
            .release()
            .unwrap();
        (first, p::wait_wakeups())
    });
    wait_steps(s0, 2, "the waiter never looked twice at a");
    hold_then_release_elsewhere(holder, "waiter in a");
    a_released
        .recv_timeout(WAIT)
        .expect("the waiter never took a");
    let holder = held_elsewhere(&b);
    let s1 = steps();
    go_b.send(()).unwrap();
    wait_steps(s1, 2, "the waiter never looked twice at b");
    hold_then_release_elsewhere(holder, "waiter in b");
    let (first, both) = join(waiter, "the waiter");
    assert_eq!(
        first,
        (1, 0),
        "first wait (a): wake-ups (by event, by timer)"
    );
    assert_eq!(
        both,
        (2, 0),
        "both waits (a, then b): wake-ups (by event, by timer)"
    );
}

/// A thread keeps its instance across waits (one `inotify_init1` per
/// thread, not per wait) and gives it back when it exits.
#[test]
fn a_thread_keeps_its_instance_across_waits_and_frees_it_on_exit() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    assert_eq!(p::local_instances(), 0, "instances left by earlier tests");
    let made = p::local_instances_made();
    let (again, next) = mpsc::channel::<()>();
    let (released, first_done) = mpsc::channel::<()>();
    let t2 = t.clone();
    let holder = held_elsewhere(&t);
    let s0 = steps();
    let waiter = std::thread::spawn(move || {
        for _ in 0..2 {
            next.recv().unwrap();
            session_lock::acquire_with(&t2, &opts())
                .unwrap()
                .release()
                .unwrap();
            let _ = released.send(());
        }
        p::wait_wakeups()
    });
    again.send(()).unwrap();
    wait_steps(s0, 2, "first wait");
    let first = fds_watching(dir.path());
    assert_eq!(
        first.len(),
        1,
        "one instance watches the directory: {first:?}"
    );
    assert_eq!(p::local_instances(), 1);
    hold_then_release_elsewhere(holder, "first wait");
    first_done
        .recv_timeout(WAIT)
        .expect("the first acquire never ended");
    let holder = held_elsewhere(&t);
    let s1 = steps();
    again.send(()).unwrap();
    wait_steps(s1, 2, "second wait");
    assert_eq!(
        fds_watching(dir.path()),
        first,
        "the second wait used another instance"
    );
    assert_eq!(p::local_instances(), 1);
    assert_eq!(
        p::local_instances_made() - made,
        1,
        "a new instance for the second wait"
    );
    hold_then_release_elsewhere(holder, "second wait");
    assert_eq!(join(waiter, "the waiter"), (2, 0));
    assert_eq!(
        p::local_instances(),
        0,
        "the exited thread's instance is counted"
    );
    assert_eq!(fds_watching(dir.path()), Vec::<String>::new());
}

/// Events of the lock's own name queued while the thread was not waiting
/// (its own release, after its first wait) are drained before it looks:
/// they do not wake its next wait.
#[test]
fn stale_events_of_the_lock_name_do_not_wake_the_next_wait() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let (again, next) = mpsc::channel::<()>();
    let (done, first_done) = mpsc::channel::<(u64, u64)>();
    let t2 = t.clone();
    let holder = held_elsewhere(&t);
    let s0 = steps();
    let waiter = std::thread::spawn(move || {
        let g = session_lock::acquire_with(&t2, &opts()).unwrap();
        // Events of the lock name on our instance, none of them read.
        g.release().unwrap();
        drop(session_lock::acquire_with(&t2, &opts()).unwrap());
        done.send(p::wait_wakeups()).unwrap();
        next.recv().unwrap();
        let before = p::wait_wakeups();
        session_lock::acquire_with(&t2, &opts())
            .unwrap()
            .release()
            .unwrap();
        let after = p::wait_wakeups();
        (after.0 - before.0, after.1 - before.1)
    });
    wait_steps(s0, 2, "first wait");
    hold_then_release_elsewhere(holder, "first wait");
    let first = first_done.recv_timeout(WAIT).expect("first acquires");
    assert_eq!(first, (1, 0));
    let holder = held_elsewhere(&t);
    let s1 = steps();
    again.send(()).unwrap();
    wait_steps(s1, 2, "second wait");
    hold_then_release_elsewhere(holder, "second wait");
    assert_eq!(join(waiter, "the waiter"), (1, 0), "second wait's wake-ups");
}

/// Threads that own an instance, parked until dropped.
struct Parked {
    stop: Vec<mpsc::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.stop.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `n` threads that each waited once for `t` (so each owns an inotify
/// instance) and now wait for the end of the test.
fn park_threads_with_instances(t: &Path, n: usize) -> Parked {
    let mut parked = Parked {
        stop: Vec::new(),
        threads: Vec::new(),
    };
    for i in 0..n {
        let holder = held_elsewhere(t);
        let s0 = steps();
        let (stop, stopped) = mpsc::channel::<()>();
        let (released, done) = mpsc::channel::<()>();
        let t = t.to_owned();
        parked.threads.push(std::thread::spawn(move || {
            session_lock::acquire_with(&t, &opts())
                .unwrap()
                .release()
                .unwrap();
            released.send(()).unwrap();
            let _ = stopped.recv();
        }));
        parked.stop.push(stop);
        wait_steps(s0, 2, "a thread to park never waited");
        assert_eq!(p::local_instances(), i + 1);
        assert!(holder.release().success());
        done.recv_timeout(WAIT)
            .expect("a thread to park never took the lock");
    }
    parked
}

/// Blocking waiters on more threads than `MAX_LOCAL_INSTANCES` (8) wait
/// through the shared hub, and still sleep until the release.
#[test]
fn beyond_eight_instances_a_blocking_waiter_sleeps_on_the_hub() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    assert_eq!(p::local_instances(), 0, "instances left by earlier tests");
    let parked = park_threads_with_instances(&t, 8);
    let holder = held_elsewhere(&t);
    let s0 = steps();
    let waiter = blocking_waiter(&t);
    wait_steps(s0, 2, "the ninth waiter never looked twice");
    assert_eq!(
        p::local_instances(),
        8,
        "the ninth thread made its own instance"
    );
    hold_then_release_elsewhere(holder, "hub waiter");
    assert_eq!(
        join(waiter, "the ninth waiter"),
        (1, 0),
        "wake-ups (by event, by timer)"
    );
    drop(parked);
    assert_eq!(
        p::local_instances(),
        0,
        "exited threads' instances are counted"
    );
}

fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut b = if multi_thread {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().unwrap()
}

fn async_waiter_sleeps_until_the_release(multi_thread: bool) {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = session_lock::acquire(&t).unwrap();
    let (s0, w0) = (steps(), p::all_wait_wakeups());
    let t2 = t.clone();
    let waiter = std::thread::spawn(move || {
        runtime(multi_thread).block_on(async move {
            session_lock::tokio::acquire_with(&t2, &opts())
                .await
                .unwrap()
                .release()
                .unwrap();
        })
    });
    wait_steps(s0, 2, "the task never looked twice");
    hold_then_release(holder, "async waiter");
    join(waiter, "the task");
    assert_eq!(wakes_since(w0), (1, 0), "wake-ups (by event, by timer)");
}

#[test]
fn an_async_waiter_on_a_current_thread_runtime_sleeps_until_the_release() {
    async_waiter_sleeps_until_the_release(false);
}

#[test]
fn an_async_waiter_on_a_multi_thread_runtime_sleeps_until_the_release() {
    async_waiter_sleeps_until_the_release(true);
}

/// Three tasks wait, one is cancelled (its future dropped): the others are
/// still woken by the release, each once per release it waits through.
fn async_waiters_survive_a_cancelled_one(multi_thread: bool) {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    // Another process, so that the winner publishes another inode and the
    // loser sleeps again at once (see the late waiter's test below).
    let holder = Holder::start(&t, &[]);
    let (s0, w0) = (steps(), p::all_wait_wakeups());
    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let (acked, ack) = mpsc::channel::<()>();
    let t2 = t.clone();
    let waiters = std::thread::spawn(move || {
        runtime(multi_thread).block_on(async move {
            let task = |t: PathBuf| {
                tokio::spawn(async move {
                    let g = session_lock::tokio::acquire_with(&t, &opts())
                        .await
                        .unwrap();
                    // The winner holds until the other waiter sleeps again.
                    tokio::time::sleep(EXPOSURE).await;
                    g.release().unwrap();
                })
            };
            let (a, b) = (task(t2.clone()), task(t2.clone()));
            let c = task(t2);
            cancelled.await.unwrap();
            c.abort();
            assert!(c.await.unwrap_err().is_cancelled());
            acked.send(()).unwrap();
            a.await.unwrap();
            b.await.unwrap();
        })
    });
    wait_steps(s0, 6, "three tasks never looked twice each");
    cancel.send(()).unwrap();
    ack.recv_timeout(WAIT)
        .expect("the third task was never cancelled");
    hold_then("two async waiters", || {
        holder.release();
    });
    join(waiters, "the tasks");
    // The first release wakes both; the loser sleeps again until the
    // winner's: at most one wake-up per waiter and release.
    let (by_event, by_timer) = wakes_since(w0);
    assert!(
        by_timer == 0 && (2..=4).contains(&by_event),
        "woken {by_event} times by events, {by_timer} by timers"
    );
}

#[test]
fn async_waiters_on_one_thread_are_woken_after_one_is_cancelled() {
    async_waiters_survive_a_cancelled_one(false);
}

#[test]
fn async_waiters_on_a_multi_thread_runtime_are_woken_after_one_is_cancelled() {
    async_waiters_survive_a_cancelled_one(true);
}

/// Hub watches of directories nobody waits in stay open, up to
/// `MAX_IDLE_WATCHES`; beyond that the least recently used are removed
/// (from the kernel too) when a waiter registers.
#[test]
fn idle_hub_watches_beyond_the_bound_are_removed() {
    let _s = serial();
    let root = tempfile::tempdir().unwrap();
    let n = p::MAX_IDLE_WATCHES + 8;
    let dirs: Vec<PathBuf> = (0..=n)
        .map(|i| {
            let d = root.path().join(format!("d{i}"));
            std::fs::create_dir(&d).unwrap();
            d
        })
        .collect();
    let rt = runtime(false);
    // `n` tasks wait at once, one per directory: no directory is idle while
    // the others register, so nothing is pruned yet.
    let holders: Vec<LockGuard> = dirs[..n]
        .iter()
        .map(|d| session_lock::acquire(d.join("s.jsonl")).unwrap())
        .collect();
    let s0 = steps();
    let targets: Vec<PathBuf> = dirs[..n].iter().map(|d| d.join("s.jsonl")).collect();
    let waiters = std::thread::spawn(move || {
        rt.block_on(async move {
            let tasks: Vec<_> = targets
                .into_iter()
                .map(|t| {
                    tokio::spawn(async move {
                        session_lock::tokio::acquire_with(&t, &opts())
                            .await
                            .unwrap()
                            .release()
                            .unwrap();
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        rt
    });
    wait_steps(s0, 2 * n as u64, "the tasks never looked twice each");
    let watched = |ds: &[PathBuf]| {
        let all = inotify_watches();
        ds.iter()
            .filter(|d| {
                let ino = ino_field(d);
                all.iter().any(|(_, i)| *i == ino)
            })
            .count()
    };
    assert_eq!(
        watched(&dirs[..n]),
        n,
        "every waited-in directory is watched"
    );
    for h in holders {
        h.release().unwrap();
    }
    let rt = join(waiters, "the tasks");
    // All idle now, still watched; the next registration prunes.
    assert_eq!(
        watched(&dirs[..n]),
        n,
        "idle watches stay open until a registration"
    );
    let last = dirs[n].join("s.jsonl");
    let holder = session_lock::acquire(&last).unwrap();
    let s1 = steps();
    let waiter = std::thread::spawn(move || {
        rt.block_on(async move {
            session_lock::tokio::acquire_with(&last, &opts())
                .await
                .unwrap()
                .release()
                .unwrap();
        })
    });
    wait_steps(s1, 2, "the last task never looked twice");
    assert_eq!(
        watched(&dirs[..n]),
        p::MAX_IDLE_WATCHES,
        "idle directories still watched (of {n})"
    );
    assert_eq!(
        watched(&dirs[n..]),
        1,
        "the directory waited in now is watched"
    );
    holder.release().unwrap();
    join(waiter, "the last task");
}

/// Park the waiter (thread named `name`) in its second look at the lock,
/// after it registered its watch: returns a receiver that says it is
/// there and a sender that lets it go on.
fn park_second_look(name: &'static str) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (at, parked) = mpsc::channel::<()>();
    let (go, gone) = mpsc::channel::<()>();
    let (at, gone) = (Mutex::new(at), Mutex::new(gone));
    let looks = AtomicUsize::new(0);
    session_lock::fault::set_hook(Some(Arc::new(move |point: &str| {
        if point == "acquire.after_observe"
            && std::thread::current().name() == Some(name)
            && looks.fetch_add(1, Ordering::SeqCst) == 1
        {
            at.lock().unwrap().send(()).unwrap();
            gone.lock()
                .unwrap()
                .recv_timeout(WAIT)
                .expect("the test never let the waiter go on");
        }
    })));
    (parked, go)
}

/// While the waiter is parked before its wait: release the holder, delete
/// the lock's directory and make it again, and hold the lock there anew.
///
/// The kernel reports the directory gone (`IN_IGNORED`) only once nothing
/// refers to it any more: no open file in it may be left in this process
/// (a kept queue descriptor, a parked witness slot), so the first holder
/// is another process.
fn remake_directory_under_the_waiter(holder: Holder, dir: &Path, t: &Path) -> LockGuard {
    holder.release();
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::create_dir(dir).unwrap();
    session_lock::try_acquire_with(t, &LockOptions::new()).unwrap()
}

/// The directory is deleted and made again under a waiter (with the lock
/// held again there): the waiter watches the new directory and is woken
/// by the next release, not by its safety re-check.
fn directory_remade_during_an_async_wait() {
    let _s = serial();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("sessions");
    std::fs::create_dir(&dir).unwrap();
    let t = dir.join("s.jsonl");
    let holder = Holder::start(&t, &[]);
    let w0 = p::all_wait_wakeups();
    let (parked, go) = park_second_look("remade-dir-waiter");
    let t2 = t.clone();
    let waiter = std::thread::Builder::new()
        .name("remade-dir-waiter".into())
        .spawn(move || {
            runtime(false).block_on(async move {
                session_lock::tokio::acquire_with(&t2, &opts())
                    .await
                    .unwrap()
                    .release()
                    .unwrap();
            })
        })
        .unwrap();
    parked
        .recv_timeout(WAIT)
        .expect("the waiter never looked twice");
    let holder = remake_directory_under_the_waiter(holder, &dir, &t);
    go.send(()).unwrap();
    // It is woken by the events of the old directory, looks, finds the new
    // holder and sleeps again: on a watch of the new directory, or (if it
    // did not make one) until its safety re-check.
    wait_until(
        WAIT,
        || !fds_watching(&dir).is_empty() || wakes_since(w0).1 > 0,
        || "the waiter never watched the new directory".into(),
    );
    holder.release().unwrap();
    join(waiter, "the waiter");
    session_lock::fault::set_hook(None);
    let (by_event, by_timer) = wakes_since(w0);
    assert!(
        by_timer == 0 && (1..=3).contains(&by_event),
        "woken {by_event} times by events, {by_timer} by timers"
    );
}

/// A blocking waiter keeps its own files open in the directory while it
/// waits (its prepared record), so the kernel reports the directory gone
/// only once it stops waiting: the case for a thread's kept watch is a
/// directory deleted and made again between two of its waits. The next
/// wait reads the `IN_IGNORED`, watches the new directory and is woken by
/// the release there.
#[test]
fn a_thread_watches_its_directory_again_after_it_was_remade_between_waits() {
    let _s = serial();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("sessions");
    std::fs::create_dir(&dir).unwrap();
    let t = dir.join("s.jsonl");
    // Out of the queue: a queue descriptor kept for the next wait would
    // keep the old directory alive (see `remake_directory_under_the_waiter`).
    let o = opts().with_fail_on_stale(true);
    let (again, next) = mpsc::channel::<()>();
    let (released, first_done) = mpsc::channel::<()>();
    let holder = Holder::start(&t, &[]);
    let s0 = steps();
    let t2 = t.clone();
    let waiter = std::thread::spawn(move || {
        session_lock::acquire_with(&t2, &o)
            .unwrap()
            .release()
            .unwrap();
        released.send(()).unwrap();
        next.recv().unwrap();
        let before = p::wait_wakeups();
        session_lock::acquire_with(&t2, &o)
            .unwrap()
            .release()
            .unwrap();
        let after = p::wait_wakeups();
        (after.0 - before.0, after.1 - before.1)
    });
    wait_steps(s0, 2, "first wait");
    holder.release();
    first_done
        .recv_timeout(WAIT)
        .expect("the first acquire never ended");
    let old = ino_field(&dir);
    assert_eq!(fds_watching(&dir).len(), 1, "the thread keeps its watch");
    // Its parked witness slot is the last file of ours in the directory.
    session_lock::close_idle();
    std::fs::remove_dir_all(&dir).unwrap();
    wait_until(
        WAIT,
        || !inotify_watches().iter().any(|(_, i)| *i == old),
        || "the kernel never removed the watch of the deleted directory".into(),
    );
    std::fs::create_dir(&dir).unwrap();
    let holder = Holder::start(&t, &[]);
    let s1 = steps();
    again.send(()).unwrap();
    wait_steps(s1, 2, "second wait");
    wait_until(
        WAIT,
        || !fds_watching(&dir).is_empty() || steps() - s1 > 2,
        || "the thread never watched the new directory".into(),
    );
    std::thread::sleep(EXPOSURE);
    holder.release();
    assert_eq!(join(waiter, "the waiter"), (1, 0), "second wait's wake-ups");
}

#[test]
fn an_async_waiter_watches_its_directory_again_after_it_was_remade() {
    directory_remade_during_an_async_wait();
}

/// An event queue overflow on the hub (events lost) wakes every waiter,
/// even with no other event read with it.
#[test]
fn a_hub_queue_overflow_wakes_the_waiters() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = session_lock::acquire(&t).unwrap();
    let (s0, w0) = (steps(), p::all_wait_wakeups());
    let t2 = t.clone();
    let waiter = std::thread::spawn(move || {
        runtime(false).block_on(async move {
            session_lock::tokio::acquire_with(&t2, &opts())
                .await
                .unwrap()
                .release()
                .unwrap();
        })
    });
    wait_steps(s0, 2, "the task never looked twice");
    p::inject_overflow();
    // Wakes the hub's reader with an event of no lock's name.
    std::fs::write(dir.path().join("poke.txt"), b"x").unwrap();
    wait_until(
        WAIT,
        || wakes_since(w0) != (0, 0),
        || "the overflow woke nobody".into(),
    );
    assert_eq!(
        wakes_since(w0),
        (1, 0),
        "woken by the overflow, not a timer"
    );
    holder.release().unwrap();
    join(waiter, "the task");
    assert_eq!(wakes_since(w0).1, 0, "a timer wake-up");
}

/// Without inotify (forced here through the seam), a waiter still gets
/// the lock, by re-checking on its back-off timer: no event wakes it.
#[test]
fn without_inotify_waiters_fall_back_to_rechecking() {
    let _s = serial();
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            p::force_no_inotify(false);
        }
    }
    let _restore = Restore;
    p::force_no_inotify(true);
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = held_elsewhere(&t);
    let (s0, w0) = (steps(), p::all_wait_wakeups());
    let waiter = blocking_waiter(&t);
    let t2 = t.clone();
    let task = std::thread::spawn(move || {
        runtime(false).block_on(async move {
            session_lock::tokio::acquire_with(&t2, &opts())
                .await
                .unwrap()
                .release()
                .unwrap();
        })
    });
    // Both re-check on their timers while the lock is held.
    wait_until(
        WAIT,
        || wakes_since(w0).1 >= 4,
        || format!("no timer re-checks: {:?}", wakes_since(w0)),
    );
    assert_eq!(
        p::local_instances(),
        0,
        "an instance was made without inotify"
    );
    assert!(holder.release().success());
    let (by_event, by_timer) = join(waiter, "the blocking waiter");
    join(task, "the task");
    assert!(
        by_event == 0 && by_timer > 0,
        "blocking: {by_event} by events, {by_timer} by timers"
    );
    assert_eq!(wakes_since(w0).0, 0, "woken by an event without inotify");
    assert!(steps() - s0 > 4);
}

/// A waiter whose wake-up future is first polled after the generation
/// moved (here: parked in its step while the lock changed hands) takes
/// only its own registration away, not the wakers of the others that
/// went back to sleep meanwhile: they are still woken by the next release.
#[test]
fn a_late_async_waiter_leaves_the_others_wakers_in_place() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    // Another process: the task that takes the lock from it publishes
    // another inode (a holder of ours would leave it our parked slot, the
    // same inode, and the other task would settle instead of sleeping).
    let holder = Holder::start(&t, &[]);
    let (s0, w0) = (steps(), p::all_wait_wakeups());
    // Holders among the tasks release when the test adds a permit.
    let permits = Arc::new(tokio::sync::Semaphore::new(0));
    let (got, took) = mpsc::channel::<()>();
    let task = |t: PathBuf, permits: Arc<tokio::sync::Semaphore>, got: mpsc::Sender<()>| async move {
        let g = session_lock::tokio::acquire_with(&t, &opts())
            .await
            .unwrap();
        got.send(()).unwrap();
        permits.acquire().await.unwrap().forget();
        g.release().unwrap();
    };
    let (t1, pm1, got1) = (t.clone(), permits.clone(), got.clone());
    let two = std::thread::spawn(move || {
        runtime(false).block_on(async move {
            let a = tokio::spawn(task(t1.clone(), pm1.clone(), got1.clone()));
            let b = tokio::spawn(task(t1, pm1, got1));
            a.await.unwrap();
            b.await.unwrap();
        })
    });
    wait_steps(s0, 4, "two tasks never looked twice each");
    let (parked, go) = park_second_look("late-waiter");
    let (t3, pm3) = (t.clone(), permits.clone());
    let late = std::thread::Builder::new()
        .name("late-waiter".into())
        .spawn(move || runtime(false).block_on(task(t3, pm3, got)))
        .unwrap();
    parked
        .recv_timeout(WAIT)
        .expect("the late task never looked twice");
    // The late task has read the generation and looks; meanwhile the lock
    // changes hands: one task takes it, the other sleeps again.
    let s1 = steps();
    holder.release();
    took.recv_timeout(WAIT).expect("no task took the lock");
    wait_steps(s1, 2, "the other task never looked again");
    std::thread::sleep(EXPOSURE);
    let s2 = steps();
    go.send(()).unwrap();
    wait_steps(s2, 1, "the late task never looked again");
    std::thread::sleep(EXPOSURE);
    for i in 0..2 {
        permits.add_permits(1);
        took.recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("holder {} never followed: {e}", i + 2));
    }
    permits.add_permits(1);
    join(two, "the two tasks");
    join(late, "the late task");
    session_lock::fault::set_hook(None);
    let (by_event, by_timer) = wakes_since(w0);
    assert!(
        by_timer == 0,
        "woken {by_event} times by events, {by_timer} by timers"
    );
}

/// Waiters on one lock sleep through the releases of another lock in the
/// same directory (the watch is on the directory, the wake-up is by name):
/// a thread on its own instance and a task on the hub.
#[test]
fn waiters_sleep_through_another_locks_releases_in_the_same_directory() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let holder = held_elsewhere(&a);
    let (s0, w0) = (steps(), p::all_wait_wakeups());
    let thread = blocking_waiter(&a);
    wait_steps(s0, 2, "the thread never looked twice");
    let a2 = a.clone();
    let task = std::thread::spawn(move || {
        runtime(false).block_on(async move {
            session_lock::tokio::acquire_with(&a2, &opts())
                .await
                .unwrap()
                .release()
                .unwrap();
        })
    });
    wait_steps(s0, 4, "the task never looked twice");
    let fds = fds_watching(dir.path());
    assert_eq!(
        fds.len(),
        2,
        "the thread's own instance and the hub: {fds:?}"
    );
    let before = steps();
    // In other processes, whose steps are not counted here.
    for _ in 0..3 {
        Holder::start(&b, &[]).release();
    }
    // Events of b reach both watches in the window; neither waiter wakes.
    std::thread::sleep(EXPOSURE);
    let during = steps() - before;
    assert_eq!(during, 0, "{during} steps on another lock's releases");
    assert!(holder.release().success());
    // The task never queues and may take the lock first (seen on the
    // named-temp path): then the thread wakes once more, at the task's
    // release. Never by a timer.
    let (thread_events, thread_timer) = join(thread, "the thread");
    assert!(
        thread_timer == 0 && (1..=2).contains(&thread_events),
        "the thread's wake-ups: {thread_events} by events, {thread_timer} by timers"
    );
    join(task, "the task");
    let (by_event, by_timer) = wakes_since(w0);
    assert!(
        by_timer == 0 && (2..=3).contains(&by_event),
        "woken {by_event} times by events, {by_timer} by timers"
    );
}
