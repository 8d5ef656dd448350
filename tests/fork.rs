//! fork(2) next to held locks. Its own test binary with one test, so that
//! no other test's thread is inside the library when the process forks.

mod common;

use common::{WAIT, within};
use session_lock::{ErrorKind, LockOptions, LostReason};
use std::time::Duration;

/// A forked child starts with no holds of its own: the parent's lock is
/// `Busy` for it, its copy of the parent's guard says it is inherited and
/// removes nothing, a lock it takes with a max hold is released by a
/// watchdog of its own, and its queued waiters get queue helper threads of
/// its own (the parent's idle ones are not inherited). The parent's guard
/// keeps working.
#[test]
fn a_forked_child_has_no_holds_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let other = dir.path().join("child.jsonl");
    let g = session_lock::acquire(&t).unwrap();
    // Start the parent's watchdog thread, so the child inherits a process
    // whose watchdog ran (and has no thread for it).
    let warm = session_lock::acquire_with(
        dir.path().join("warm.jsonl"),
        &LockOptions::new().with_max_hold(Duration::from_secs(60)),
    )
    .unwrap();
    warm.release().unwrap();
    // And leave an idle queue helper thread behind (see `queue_dance`).
    queue_dance(&dir.path().join("queue-parent.jsonl")).expect("the parent's queue works");
    let parent = std::process::id();
    // SAFETY: the child only runs this crate's code and `_exit`s; this test
    // binary has this one test, so no other thread can hold a lock of the
    // library at the fork (the allocator's are fork-safe in glibc).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            child(&t, &other, &g, parent)
        }))
        .map_or(90, |r| match r {
            Ok(()) => 0,
            Err(step) => step,
        });
        // SAFETY: ends the child without running the parent's destructors
        // or the test harness.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // Bounded: the child's own steps are bounded; a hang fails here.
    let waited = within(WAIT, "the forked child", move || {
        // SAFETY: waits for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        (r, status)
    });
    assert_eq!(waited.0, pid);
    let status = waited.1;
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed at step {} (status {status:#x})",
        libc::WEXITSTATUS(status)
    );
    g.check().expect("the parent still holds its lock");
    a_crashed_parents_lock_is_free_while_its_forked_child_lives(dir.path());
    g.append_line("{\"from\":\"parent\"}").unwrap();
    g.release().unwrap();
}

/// The child's checks; `Err(step)` names the first that failed.
fn child(
    t: &std::path::Path,
    other: &std::path::Path,
    g: &session_lock::LockGuard,
    parent: u32,
) -> Result<(), i32> {
    // 1. The parent's lock is someone else's.
    match session_lock::try_acquire_with(t, &LockOptions::new()) {
        Err(e) if e.kind() == ErrorKind::Busy && e.owner().and_then(|o| o.pid) == Some(parent) => {}
        _ => return Err(1),
    }
    // 2. The inherited guard says so, and writes nothing.
    match g.check() {
        Err(e) if e.lost_reason() == Some(&LostReason::Inherited { pid: parent }) => {}
        _ => return Err(2),
    }
    if g.append_line("{\"from\":\"child\"}").is_ok() {
        return Err(3);
    }
    // 3. A lock of the child's own is released by the child's watchdog.
    let mine = session_lock::acquire_with(
        other,
        &LockOptions::new()
            .with_timeout(Duration::from_secs(5))
            .with_max_hold(Duration::from_millis(100)),
    )
    .map_err(|_| 4)?;
    match mine.wait_lost(Some(Duration::from_secs(20))) {
        Some(LostReason::MaxHoldExceeded { .. }) => {}
        _ => return Err(5),
    }
    if other.with_extension("jsonl.lock").exists() {
        return Err(6);
    }
    // 4. A waiter behind the one next in line waits in the kernel's queue,
    //    through a helper thread of the child's own.
    queue_dance(&t.with_file_name("queue-child.jsonl")).map_err(|_| 7)?;
    Ok(())
}

/// A holder, a waiter next in line, and a second waiter that must wait in
/// the lock's queue (a helper thread blocks in its `flock`): the second
/// waiter shows up as a blocked `flock` on the queue file in `/proc/locks`
/// before the holder releases, and all three get the lock in turn.
fn queue_dance(t: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let limit = Duration::from_secs(10);
    let g = session_lock::acquire(t).map_err(|e| e.to_string())?;
    let queue = t.with_extension("jsonl.lock.queue");
    let spawn = |t: std::path::PathBuf| {
        std::thread::spawn(move || {
            session_lock::acquire_with(&t, &LockOptions::new().with_timeout(limit))
                .and_then(|g| g.release())
                .map_err(|e| e.to_string())
        })
    };
    let a = spawn(t.to_owned());
    let until = std::time::Instant::now() + limit;
    // The first waiter is next in line once it made the queue file and
    // holds its flock.
    while !queue.exists() || common::flock_free(&queue) {
        if std::time::Instant::now() > until {
            return Err("the first waiter never took the queue".into());
        }
        std::thread::yield_now();
    }
    let b = spawn(t.to_owned());
    let ino = std::fs::metadata(&queue).map_err(|e| e.to_string())?.ino();
    let blocked = |ino: u64| {
        std::fs::read_to_string("/proc/locks").is_ok_and(|l| {
            l.lines()
                .any(|line| line.contains("-> FLOCK") && line.contains(&format!(":{ino} ")))
        })
    };
    while !blocked(ino) {
        if std::time::Instant::now() > until {
            return Err("the second waiter never blocked in the queue's flock".into());
        }
        std::thread::yield_now();
    }
    g.release().map_err(|e| e.to_string())?;
    a.join()
        .map_err(|_| "first waiter panicked".to_string())??;
    b.join()
        .map_err(|_| "second waiter panicked".to_string())??;
    Ok(())
}

/// A holder forks a child that goes on living (and uses the library once),
/// then dies without releasing: its lock is reclaimable at once, although
/// the child inherited a copy of the witness descriptor (the child closes
/// its copies of the parent's holds at its first use of the library).
fn a_crashed_parents_lock_is_free_while_its_forked_child_lives(dir: &std::path::Path) {
    let t = dir.join("crashed-parent.jsonl");
    let mut ready = [0i32; 2];
    let mut linger = [0i32; 2];
    // SAFETY: plain pipe(2) calls into arrays of two descriptors.
    assert_eq!(unsafe { libc::pipe(ready.as_mut_ptr()) }, 0);
    assert_eq!(unsafe { libc::pipe(linger.as_mut_ptr()) }, 0);
    // SAFETY: as in the test above; the children only run this crate's
    // code, plain system calls and `_exit`.
    let a = unsafe { libc::fork() };
    assert!(a >= 0, "fork failed");
    if a == 0 {
        // A: holds the lock, forks B, dies without releasing.
        unsafe {
            libc::close(ready[0]);
            libc::close(linger[1]);
        }
        let g = match session_lock::acquire(&t) {
            Ok(g) => g,
            Err(_) => unsafe { libc::_exit(11) },
        };
        let b = unsafe { libc::fork() };
        if b == 0 {
            // B: one use of the library (here a lock of its own), then
            // "ready", then live until the test closes the linger pipe.
            let other = t.with_file_name("b-own.jsonl");
            let code = match session_lock::try_acquire(&other) {
                Ok(mine) => {
                    drop(mine);
                    0
                }
                Err(_) => 12,
            };
            let mut byte = [0u8; 1];
            unsafe {
                libc::write(ready[1], [b'r'].as_ptr().cast(), 1);
                libc::read(linger[0], byte.as_mut_ptr().cast(), 1);
                libc::_exit(code);
            }
        }
        // Crash: no release, no destructors.
        std::mem::forget(g);
        unsafe { libc::_exit(if b > 0 { 0 } else { 13 }) };
    }
    // SAFETY: our copies of the ends the children use.
    unsafe {
        libc::close(ready[1]);
        libc::close(linger[0]);
    }
    let status = within(WAIT, "the crashing parent", move || {
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(a, &mut status, 0) };
        status
    });
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the crashing parent failed: {status:#x}"
    );
    let fd = ready[0];
    let got = within(WAIT, "the forked child's readiness", move || {
        let mut byte = [0u8; 1];
        // SAFETY: reads one byte from our pipe end.
        unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) }
    });
    assert_eq!(got, 1, "the forked child never said ready");
    // The child lives on; the dead parent's lock is free.
    let taken = session_lock::try_acquire(&t);
    // SAFETY: closing our pipe ends lets the child exit.
    unsafe {
        libc::close(linger[1]);
        libc::close(ready[0]);
    }
    let g = taken.unwrap_or_else(|e| {
        panic!("the dead parent's lock is held by its forked child's copy of the witness: {e}")
    });
    g.release().unwrap();
}
