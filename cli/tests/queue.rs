//! The lock's queue (`<lock>.queue`, docs/protocol.md "The queue"): blocking
//! contenders wait for its `flock` in the kernel, one is woken per release,
//! in the order they queued; the file comes with contention and goes with
//! its last user, and `clean` removes one left behind by killed contenders
//! once its lock is gone.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use session_lock::sweep::{SweepOptions, sweep};
use session_lock::{LockGuard, LockOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// Contenders on the queue file's `flock`, from `/proc/locks` (the
/// kernel's own list): the one next in line holds it, the others wait for
/// it (`-> FLOCK ... <dev>:<inode> ...`).
fn queued_on(queue: &Path) -> usize {
    common::flocks_on(queue)
}

fn wait_queued(queue: &Path, n: usize) {
    let start = Instant::now();
    while queued_on(queue) < n {
        assert!(
            start.elapsed() < WAIT,
            "{n} waiters never queued on {} ({} did)",
            queue.display(),
            queued_on(queue)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn record_pid(t: &Path) -> u64 {
    let text = std::fs::read_to_string(lock_of(t)).expect("a lock file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("a complete record");
    v["pid"].as_u64().expect("a pid")
}

#[test]
fn waiters_in_other_processes_each_get_the_lock_once_the_one_next_in_line_first() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let queue = queue_of(&t);
    let ours = session_lock::acquire(&t).unwrap();
    let mut waiters = Vec::new();
    for n in 1..=3 {
        waiters.push(Holder::spawn_unready(&t, &[], &[]));
        // The kernel's list says it is queued before the next one starts.
        wait_queued(&queue, n);
    }
    ours.release().unwrap();
    // The waiter next in line (the first) holds the queue's flock and gets
    // the lock first. The later ones get it one at a time, each once, in
    // the order they queued as a rule but not always (see
    // docs/protocol.md, "The queue": order beyond the next in line is not
    // guaranteed). Whoever holds the lock is released as soon as it says
    // so, whatever its place, so a reordering cannot stall the test.
    let mut waiting: Vec<(usize, Holder)> = waiters.into_iter().enumerate().collect();
    let mut order = Vec::new();
    let start = Instant::now();
    while !waiting.is_empty() {
        let ready = waiting
            .iter()
            .position(|(_, w)| matches!(w.lines.try_recv(), Ok(line) if line.starts_with("ready")));
        let Some(k) = ready else {
            assert!(
                start.elapsed() < WAIT,
                "waiters {:?} never got the lock",
                waiting.iter().map(|(i, _)| i + 1).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let (i, w) = waiting.remove(k);
        assert_eq!(
            record_pid(&t),
            u64::from(w.pid()),
            "waiter {} said ready without the lock",
            i + 1
        );
        order.push(i + 1);
        assert!(w.release().success());
    }
    assert_eq!(
        order[0], 1,
        "the waiter next in line was overtaken: {order:?}"
    );
    assert!(!lock_of(&t).exists());
}

/// The first waiter is next in line at once and wakes once, when the lock
/// is released; each later one wakes at most twice: when the queue makes it
/// next in line (its predecessor took the lock), and when the lock is
/// released. Never by a timer.
#[test]
fn each_waiter_wakes_once_in_the_queue_and_once_for_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let queue = queue_of(&t);
    let ours = session_lock::acquire(&t).unwrap();
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for id in 0..4u32 {
        let (t, order) = (t.clone(), order.clone());
        threads.push(std::thread::spawn(move || {
            let g: LockGuard =
                session_lock::acquire_with(&t, &LockOptions::new().with_timeout(WAIT)).unwrap();
            order.lock().unwrap().push(id);
            g.release().unwrap();
            session_lock::__private::wait_wakeups()
        }));
        wait_queued(&queue, id as usize + 1);
    }
    ours.release().unwrap();
    for (id, th) in threads.into_iter().enumerate() {
        let (by_event, by_timer) = th.join().unwrap();
        // A later one finds the lock already free when the queue makes it
        // next (its predecessor released at once): then it wakes only once.
        let most = if id == 0 { 1 } else { 2 };
        assert!(
            (1..=most).contains(&by_event) && by_timer == 0,
            "waiter {id}: woken {by_event} times by events, {by_timer} by timers"
        );
    }
    // The one next in line first; the others each once, usually in the
    // order they queued (seen otherwise in about 1 run in 20: see
    // docs/protocol.md, "The queue").
    let order = order.lock().unwrap().clone();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![0, 1, 2, 3], "{order:?}");
    assert_eq!(
        order[0], 0,
        "the waiter next in line was overtaken: {order:?}"
    );
}

/// The queue file comes with contention and goes with its last user: an
/// uncontended hold makes none, a waiter makes it, the release that finds
/// nobody queued removes it. One left by contenders killed while queued
/// (and their holder killed too) goes with the next release, or with
/// `clean` once its lock is free, never while someone uses it.
#[test]
fn the_queue_file_comes_with_contention_and_goes_with_its_last_user() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let queue = queue_of(&t);
    let g = session_lock::acquire(&t).unwrap();
    g.append_line("{}").unwrap();
    assert!(!queue.exists(), "an uncontended hold made the queue file");
    // A waiter in another process makes it.
    let mut w = Holder::spawn_unready(&t, &[], &[]);
    wait_queued(&queue, 1);
    let meta = std::fs::metadata(&queue).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 0);
    // Held, with a waiter: clean keeps it.
    sweep(dir.path(), &SweepOptions::default()).unwrap();
    assert!(queue.exists(), "clean removed the queue of a held lock");
    // Our release hands over to the waiter. Whether the file is still
    // there now depends on a race that costs nothing: our release looks at
    // the queue after giving up the lock file, and by then the waiter may
    // already hold the lock and have left the queue (nobody queues: the
    // file goes), or still be next in line (kept; the unit test
    // `the_queue_file_is_made_only_when_asked_private_and_goes_when_idle`
    // pins "kept while someone queues"). Its release finds nobody: removed.
    g.release().unwrap();
    w.wait_ready();
    assert!(w.release().success());
    assert!(!queue.exists(), "the last user's release kept it");
    // Left behind: a waiter killed while queued, its holder killed too.
    let h = Holder::start(&t, &[]);
    let w = Holder::spawn_unready(&t, &[], &[]);
    wait_queued(&queue, 1);
    w.kill9();
    h.kill9();
    assert!(queue.exists());
    // A dry run removes nothing; then the lock of the dead holder and the
    // idle queue go, each listed.
    let dry = SweepOptions::new().with_remove(false);
    let r = sweep(dir.path(), &dry).unwrap();
    assert!(queue.exists(), "a dry run removed the queue file");
    assert!(r.queues_removable.is_empty(), "its lock is still there");
    // (The killed waiter's prepared record, a witness slot, goes too once
    // past the orphan grace: none here.)
    let now = SweepOptions::new().with_orphan_grace(Duration::ZERO);
    let r = sweep(dir.path(), &now).unwrap();
    assert!(r.locks.iter().any(|l| l.removed), "{r:?}");
    assert_eq!(r.queues_removed, vec![queue.clone()]);
    session_lock::close_idle();
    assert_eq!(all_names(dir.path()), vec!["s.jsonl"]);
    // The same leftover goes with the next release instead.
    let h = Holder::start(&t, &[]);
    let w = Holder::spawn_unready(&t, &[], &[]);
    wait_queued(&queue, 1);
    w.kill9();
    h.kill9();
    let g = session_lock::acquire(&t).unwrap();
    assert!(queue.exists());
    g.release().unwrap();
    assert!(
        !queue.exists(),
        "the next release kept a leftover queue file"
    );
}

#[test]
fn a_queue_nobody_releases_delays_a_free_lock_by_the_safety_recheck_at_most() {
    // Someone (not following the protocol, or stopped) sits on the queue's
    // flock while the lock itself is free: a waiter still gets the lock
    // after its safety re-check, and keeps its timeout.
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let queue = queue_of(&t);
    // A queue file as a waiter of ours makes it: private, empty.
    let squatter = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&queue)
        .unwrap();
    rustix::fs::flock(&squatter, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let recheck = session_lock::__private::SAFETY_RECHECK;
    let start = Instant::now();
    let g = session_lock::acquire_with(&t, &LockOptions::new().with_timeout(WAIT))
        .expect("the free lock is taken after the safety re-check");
    assert!(
        start.elapsed() < WAIT,
        "took {:?} (safety re-check {recheck:?})",
        start.elapsed()
    );
    let (_, by_timer) = session_lock::__private::wait_wakeups();
    assert_eq!(by_timer, 1, "taken by the safety re-check, once");
    g.release().unwrap();
    // With a shorter timeout than the re-check: a timeout naming nobody.
    let short = LockOptions::new().with_timeout(Duration::from_millis(50));
    let h = Holder::start(&t, &[]);
    let err = session_lock::acquire_with(&t, &short).unwrap_err();
    assert_eq!(err.kind(), session_lock::ErrorKind::Timeout);
    assert_eq!(
        err.owner().and_then(|o| o.pid),
        Some(h.pid()),
        "the timeout names the holder"
    );
    h.release();
    drop(squatter);
}

/// The inotify watches of process `pid`: (descriptor, `inotify wd:...`
/// line) pairs from `/proc/<pid>/fdinfo/<fd>`, one per watch.
fn inotify_watches_of(pid: &str) -> Vec<(String, String)> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    fds.filter_map(|e| {
        let e = e.ok()?;
        let info = std::fs::read_to_string(e.path()).ok()?;
        let fd = e.file_name().to_string_lossy().into_owned();
        Some(
            info.lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .map(|l| (fd.clone(), l.to_owned()))
                .collect::<Vec<_>>(),
        )
    })
    .flatten()
    .collect()
}

/// How many inotify watches process `pid` has.
fn inotify_watches(pid: u32) -> usize {
    inotify_watches_of(&pid.to_string()).len()
}

/// Only the waiter next in line watches the directory: one that waits in
/// the queue has no inotify watch, so the kernel does not queue every
/// rename and close in the directory for each queued process (at 16
/// contenders that was a sixth of the machine's CPU time, in event
/// allocation and reading).
#[test]
fn a_waiter_in_the_queue_does_not_watch_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let queue = queue_of(&t);
    let ours = session_lock::acquire(&t).unwrap();
    let mut next = Holder::spawn_unready(&t, &[], &[]);
    wait_queued(&queue, 1);
    wait_until(
        WAIT,
        || inotify_watches(next.pid()) > 0,
        || "the waiter next in line never watched the directory".into(),
    );
    let mut queued = Holder::spawn_unready(&t, &[], &[]);
    wait_queued(&queue, 2);
    assert_eq!(
        inotify_watches(queued.pid()),
        0,
        "a waiter in the queue watches the directory"
    );
    assert_eq!(inotify_watches(next.pid()), 1);
    ours.release().unwrap();
    next.wait_ready();
    next.release();
    queued.wait_ready();
    queued.release();
    assert!(!lock_of(&t).exists());
}

/// Descriptors of this process whose inotify instance watches `dir`
/// (its inode in the watch's `ino:<hex>` field).
fn fds_watching(dir: &Path) -> Vec<String> {
    let ino = format!("ino:{:x} ", std::fs::metadata(dir).unwrap().ino());
    let mut fds: Vec<String> = inotify_watches_of("self")
        .into_iter()
        .filter(|(_, line)| line.contains(&ino))
        .map(|(fd, _)| fd)
        .collect();
    fds.dedup();
    fds
}

/// A thread keeps its directory watch after a wait, for its next wait;
/// once it waits in the queue, the watch is removed until it is next in
/// line again.
#[test]
fn a_thread_that_watched_before_stops_watching_while_it_waits_in_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let queue = queue_of(&t);
    let opts = LockOptions::new().with_timeout(WAIT);
    // A thread that waits once (next in line, so it watches), takes the
    // lock, gives it back, then waits again on our signal.
    let ours = session_lock::acquire(&t).unwrap();
    let (done, first_done) = std::sync::mpsc::channel::<()>();
    let (go, again) = std::sync::mpsc::channel::<()>();
    let (t1, o1) = (t.clone(), opts.clone());
    let first = std::thread::spawn(move || {
        session_lock::acquire_with(&t1, &o1)
            .unwrap()
            .release()
            .unwrap();
        done.send(()).unwrap();
        again.recv().unwrap();
        session_lock::acquire_with(&t1, &o1)
            .unwrap()
            .release()
            .unwrap();
    });
    wait_queued(&queue, 1);
    // Its look comes after it takes the queue's flock: wait until it
    // watches, so that it does wait (and watch) before we release.
    wait_until(
        WAIT,
        || !fds_watching(dir.path()).is_empty(),
        || "the waiter never watched the directory".into(),
    );
    ours.release().unwrap();
    first_done
        .recv_timeout(WAIT)
        .expect("the first acquire never ended");
    let kept = fds_watching(dir.path());
    assert_eq!(kept.len(), 1, "the thread's watch was not kept: {kept:?}");
    let ours = session_lock::try_acquire_with(&t, &opts).unwrap();
    // Another waiter is next in line now; the first thread queues behind it.
    let (t2, o2) = (t.clone(), opts.clone());
    let second = std::thread::spawn(move || {
        session_lock::acquire_with(&t2, &o2)
            .unwrap()
            .release()
            .unwrap();
    });
    wait_queued(&queue, 1);
    go.send(()).unwrap();
    wait_queued(&queue, 2);
    // Once the one next in line watches (after its first look), the
    // queued one's watch is gone.
    wait_until(
        WAIT,
        || fds_watching(dir.path()).iter().any(|fd| !kept.contains(fd)),
        || "the waiter next in line never watched the directory".into(),
    );
    let now = fds_watching(dir.path());
    assert!(
        !now.contains(&kept[0]),
        "the queued thread still watches the directory: {now:?}"
    );
    ours.release().unwrap();
    second.join().unwrap();
    first.join().unwrap();
    assert!(!lock_of(&t).exists());
}

/// An `on_wait` hook that itself waits for a lock in another directory
/// (on the same thread, so with the same inotify instance, whose watch it
/// moves there) does not leave the waiter asleep without a watch: the
/// release after the hook wakes it, not its 2 s safety re-check.
#[test]
fn a_hook_that_waits_for_another_lock_leaves_the_waiter_watching() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = a_dir.path().join("a.jsonl");
    let b = b_dir.path().join("b.jsonl");
    let holder_a = session_lock::acquire(&a).unwrap();
    let holder_b = session_lock::acquire(&b).unwrap();
    let (tx, hook_done) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let b2 = b.clone();
    let opts = LockOptions::new()
        .with_timeout(WAIT)
        .on_wait(Duration::ZERO, move |_| {
            let short = LockOptions::new().with_timeout(Duration::from_millis(100));
            let r = session_lock::acquire_with(&b2, &short);
            let _ = tx.lock().unwrap().send(r.err().map(|e| e.kind()));
        });
    let a2 = a.clone();
    let waiter = std::thread::spawn(move || {
        let g = session_lock::acquire_with(&a2, &opts)?;
        g.release()?;
        Ok::<_, session_lock::Error>(session_lock::__private::wait_wakeups())
    });
    let hook = hook_done.recv_timeout(WAIT).expect("the hook never ran");
    assert_eq!(hook, Some(session_lock::ErrorKind::Timeout));
    holder_a.release().unwrap();
    let (_, by_timer) = within(WAIT, "waiter", move || waiter.join().unwrap()).unwrap();
    assert_eq!(by_timer, 0, "the waiter slept until its safety re-check");
    holder_b.release().unwrap();
}

/// `session-lock append FILE {}` as a child whose stderr (warnings on) is
/// kept: a blocking acquire in another process.
fn exec_waiter(t: &Path) -> std::process::Child {
    bin()
        .args(["append", "--wait", "60s"])
        .arg(t)
        .arg("{}")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a child's exit (bounded); its exit status and stderr.
fn finish(mut c: std::process::Child, what: &str) -> (bool, String) {
    let status = wait_child(&mut c, WAIT, what);
    let out = c.wait_with_output().unwrap();
    (
        status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Contents, mtime and identity of a file, to prove it untouched.
fn snapshot(p: &Path) -> (Vec<u8>, i64, i64, u64, u64) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (
        std::fs::read(p).unwrap(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino(),
        m.nlink(),
    )
}

/// Warnings that a queue file is bypassed, in a child's stderr.
fn bypass_reports(stderr: &str, queue: &Path) -> usize {
    stderr
        .lines()
        .filter(|l| {
            l.contains("bypassing the lock's wait queue")
                && l.contains(&queue.display().to_string())
        })
        .count()
}

/// A hard link to another file at the queue name: never opened for its
/// `flock` by a waiter (it waits on lock-file events instead), never
/// written or truncated; the handoff works and the bypass is reported
/// once.
#[test]
fn a_hard_link_at_the_queue_name_is_bypassed_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let queue = queue_of(&t);
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious\n").unwrap();
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    age_file(&victim, Duration::from_secs(3600));
    std::fs::hard_link(&victim, &queue).unwrap();
    let before = snapshot(&victim);
    let h = Holder::start(&t, &[]);
    let w = exec_waiter(&t);
    wait_until(
        WAIT,
        || inotify_watches(w.id()) > 0,
        || "the waiter never watched the directory".into(),
    );
    assert_eq!(
        queued_on(&queue),
        0,
        "a waiter took a flock on the hard-linked file"
    );
    h.release();
    let (ok, stderr) = finish(w, "waiter");
    assert!(ok, "the handoff failed: {stderr}");
    assert_eq!(bypass_reports(&stderr, &queue), 1, "stderr: {stderr}");
    assert_eq!(snapshot(&victim).0, before.0, "contents changed");
    assert_eq!(snapshot(&victim), before, "the linked file was touched");
}

/// A process that is not one of our waiters sits on the queue's `flock`:
/// a waiter that finds it still held after the lock is free bypasses it
/// (reported once), takes the lock, and the queue file is not written.
#[test]
fn a_squatter_on_the_queue_is_bypassed_and_the_handoff_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let queue = queue_of(&t);
    std::fs::File::create(&queue).unwrap();
    std::fs::set_permissions(&queue, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    age_file(&queue, Duration::from_secs(3600));
    let mut squatter = std::process::Command::new("flock")
        .arg("-x")
        .arg(&queue)
        .args(["-c", "echo ready; read x"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flock(1)");
    let out = squatter.stdout.take().unwrap();
    let line = within(WAIT, "squatter ready", move || {
        let mut l = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut l);
        l
    });
    assert!(line.starts_with("ready"), "{line:?}");
    let before = snapshot(&queue);
    let h = Holder::start(&t, &[]);
    let w = exec_waiter(&t);
    // The squatter's lock and the waiter's place behind it.
    wait_queued(&queue, 2);
    h.release();
    let (ok, stderr) = finish(w, "waiter");
    assert!(ok, "the handoff failed: {stderr}");
    assert_eq!(bypass_reports(&stderr, &queue), 1, "stderr: {stderr}");
    // And the next blocking acquire in a fresh process still gets through.
    let (ok, stderr) = finish(exec_waiter(&t), "second waiter");
    assert!(ok, "{stderr}");
    assert_eq!(snapshot(&queue), before, "the queue file was written");
    drop(squatter.stdin.take());
    wait_child(&mut squatter, WAIT, "squatter");
}

/// The other side of the squat test: in ordinary contended handoffs (a
/// holder and three waiters in other processes, each handing over to the
/// next as it exits) no waiter takes the queue for squatted. A waiter
/// granted the queue, or one that finds the lock free for a moment while
/// the next in line publishes, must keep its place.
#[test]
fn ordinary_handoffs_never_bypass_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let queue = queue_of(&t);
    for round in 0..4 {
        let ours = session_lock::acquire(&t).unwrap();
        let waiters: Vec<_> = (0..3).map(|_| exec_waiter(&t)).collect();
        wait_queued(&queue, 3);
        ours.release().unwrap();
        for (i, w) in waiters.into_iter().enumerate() {
            let (ok, stderr) = finish(w, "waiter");
            assert!(ok, "round {round}, waiter {i} failed: {stderr}");
            assert_eq!(
                bypass_reports(&stderr, &queue),
                0,
                "round {round}, waiter {i} bypassed the queue of an ordinary handoff: {stderr}"
            );
        }
    }
    let text = std::fs::read_to_string(&t).unwrap();
    assert_eq!(text, "{}\n".repeat(12), "one line per waiter");
}

/// The squat test's second look: a waiter that joined the queue while the
/// lock was held, and whose wait there ended (at the notice's or the
/// safety re-check's time) with the lock free and the queue still held,
/// waits one more short bound; granted by then, it keeps its place: the
/// next in line was only slow, no bypass. The test plays the slow next in
/// line (it holds the queue's `flock`), pauses the waiter at
/// `queue.free_not_granted`, gives its place up, and lets the waiter go on
/// once the kernel has granted it the queue.
#[test]
fn a_queue_granted_within_the_last_short_bound_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let faults = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let queue = queue_of(&t);
    let point = "queue.free_not_granted";
    let ours = session_lock::acquire(&t).unwrap();
    let next_in_line = std::fs::File::create(&queue).unwrap();
    // As the library makes it (a queue others may write is not used).
    std::fs::set_permissions(&queue, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    rustix::fs::flock(&next_in_line, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let w = bin()
        .args(["append", "--wait", "60s"])
        .arg(&t)
        .arg("{}")
        .envs(fault_env(point, faults.path()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = w.id();
    wait_queued(&queue, 2);
    // The lock is free; the next in line (us) has not published.
    ours.release().unwrap();
    let reached = fault_reached(faults.path(), point, pid);
    wait_until(
        WAIT,
        || reached.exists(),
        || format!("the waiter never reached {point}"),
    );
    // The next in line gives up its place; the kernel grants it to the
    // waiter, which then goes on.
    drop(next_in_line);
    wait_until(
        WAIT,
        || flock_granted_to(&queue, pid),
        || "the queue was never granted to the waiter".into(),
    );
    fault_go(faults.path(), point, pid);
    let (ok, stderr) = finish(w, "waiter");
    assert!(ok, "the waiter failed: {stderr}");
    assert_eq!(
        bypass_reports(&stderr, &queue),
        0,
        "a queue granted within the bound was taken for squatted: {stderr}"
    );
    assert_eq!(std::fs::read_to_string(&t).unwrap(), "{}\n");
}

/// Leave the directory as we found it: after 100 uncontended and contended
/// `append` and `exec` runs of the CLI, and contended holds of threads of
/// this process, nothing of ours is left next to the transcript once
/// nobody holds or waits (the queue file goes with its last user, our
/// parked witness slot with `close_idle`).
#[test]
fn nothing_of_ours_is_left_after_a_hundred_contended_and_uncontended_runs() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let ts = t.to_str().unwrap();
    // 20 uncontended runs, one after the other.
    for i in 0..10 {
        let out = bin()
            .args(["append", ts, &format!("{{\"solo\":{i}}}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "append: {out:?}");
        let out = bin().args(["exec", ts, "--", "true"]).output().unwrap();
        assert!(out.status.success(), "exec: {out:?}");
    }
    assert_eq!(all_names(dir.path()), vec!["s.jsonl"], "after solo runs");
    // 80 contended ones: four shells of 20 runs each, at the same time,
    // while this process holds the lock at the start (so that they queue).
    let held = session_lock::acquire(&t).unwrap();
    let script = r#"i=0; while [ $i -lt 20 ]; do
             if [ $((i % 2)) -eq 0 ]; then "$0" append "$1" "{\"w\":$2,\"i\":$i}" || exit 1
             else "$0" exec "$1" -- true || exit 1; fi
             i=$((i + 1)); done"#;
    let shells: Vec<_> = (0..4)
        .map(|w| {
            std::process::Command::new("sh")
                .args(["-c", script, BIN, ts, &w.to_string()])
                .env("SESSION_LOCK_LOG", "warn")
                .spawn()
                .unwrap()
        })
        .collect();
    wait_until(
        WAIT,
        || queued_on(&queue_of(&t)) >= 2,
        || "the shells never queued behind our hold".into(),
    );
    // Threads of this process contend too.
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let t = t.clone();
            std::thread::spawn(move || {
                for n in 0..5 {
                    let g = session_lock::acquire_with(&t, &LockOptions::new().with_timeout(WAIT))
                        .unwrap();
                    g.append_line(format!("{{\"thread\":{i},\"n\":{n}}}"))
                        .unwrap();
                    g.release().unwrap();
                }
            })
        })
        .collect();
    held.release().unwrap();
    for mut s in shells {
        let st = wait_child(&mut s, WAIT, "a shell of contended runs");
        assert!(st.success(), "a contended run failed: {st}");
    }
    for th in threads {
        th.join().unwrap();
    }
    session_lock::close_idle();
    assert_eq!(
        all_names(dir.path()),
        vec!["s.jsonl"],
        "after contended runs and close_idle"
    );
    let lines = std::fs::read_to_string(&t).unwrap().lines().count();
    assert_eq!(lines, 10 + 4 * 10 + 4 * 5, "every append is there");
}
