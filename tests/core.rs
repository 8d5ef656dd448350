//! In-process behaviour of the lock core: orphans, odd files at the lock
//! path, re-entrancy, release safety, reclaim races between threads.

mod common;

use common::*;
use session_lock::{
    ErrorKind, LockOptions, LostReason, Reason, Verdict, acquire, try_acquire_with,
};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn quick() -> LockOptions {
    LockOptions::new().with_timeout(Duration::from_millis(50))
}

#[test]
fn fresh_empty_lock_is_left_alone_and_six_second_old_one_is_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    std::fs::write(&lock, b"").unwrap();
    let err = session_lock::acquire_with(&t, &quick()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(lock.exists(), "a fresh empty lock was removed");
    let insp = session_lock::inspect(&t, &quick()).unwrap().unwrap();
    assert_eq!(
        insp.reasons,
        vec![
            Reason::MissingPid,
            Reason::InvalidCreatedAt,
            Reason::InGrace
        ]
    );
    age_file(&lock, Duration::from_secs(6));
    let g = try_acquire_with(&t, &quick()).expect("6 s old empty lock reclaimed");
    g.release().unwrap();
}

#[test]
fn fresh_brace_lock_kept_old_one_reclaimed_and_removed_on_release() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    std::fs::write(&lock, b"{}").unwrap();
    assert_eq!(
        try_acquire_with(&t, &quick()).unwrap_err().kind(),
        ErrorKind::Busy
    );
    age_file(&lock, Duration::from_secs(120));
    let g = try_acquire_with(&t, &quick().with_stale(Duration::from_secs(10))).unwrap();
    g.release().unwrap();
    assert!(!lock.exists());
}

#[test]
fn lock_files_are_private_and_the_record_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire(&t).unwrap();
    let meta = std::fs::metadata(g.lock_path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(g.lock_path()).unwrap();
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "{text:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in [
        "pid",
        "createdAt",
        "maxHoldMs",
        "hostname",
        "token",
        "witness",
        "version",
    ] {
        assert!(v.get(key).is_some(), "record lacks {key}: {text}");
    }
    #[cfg(target_os = "linux")]
    for key in ["starttime", "bootId"] {
        assert!(v.get(key).is_some(), "record lacks {key}: {text}");
    }
    assert_eq!(v["pid"], std::process::id());
    g.release().unwrap();
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn symlink_at_the_lock_path_is_neither_followed_nor_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, lock_of(&t)).unwrap();
    let err = session_lock::acquire_with(&t, &quick()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAFile, "{err}");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(
        std::fs::symlink_metadata(lock_of(&t))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // Dangling too.
    std::fs::remove_file(&victim).unwrap();
    let err = try_acquire_with(&t, &quick()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAFile, "{err}");
    let swept = session_lock::sweep::sweep(dir.path(), &Default::default()).unwrap();
    assert!(
        swept.locks[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("symlink")
    );
    assert!(std::fs::symlink_metadata(lock_of(&t)).is_ok());
}

#[test]
fn directory_and_fifo_at_the_lock_path_are_clear_errors_not_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("d.jsonl");
    std::fs::create_dir(lock_of(&t)).unwrap();
    let err = try_acquire_with(&t, &quick()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAFile);
    assert!(err.to_string().contains("directory"), "{err}");

    let f = dir.path().join("f.jsonl");
    let fifo = lock_of(&f);
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = within(WAIT, "acquire on a FIFO", move || {
        session_lock::acquire_with(
            &f,
            &LockOptions::new().with_timeout(Duration::from_millis(50)),
        )
        .unwrap_err()
    });
    assert_eq!(err.kind(), ErrorKind::NotAFile);
    assert!(err.to_string().contains("FIFO"), "{err}");
    assert!(std::fs::symlink_metadata(&fifo).is_ok());
}

#[test]
fn nested_guards_keep_the_file_until_the_last_release() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire(&t).unwrap();
    let n = g.nested().unwrap();
    let lock = g.lock_path().to_owned();
    g.release().unwrap();
    assert!(lock.exists(), "released while a nested guard lives");
    n.append_line("still mine").unwrap();
    n.release().unwrap();
    assert!(!lock.exists());
}

#[test]
fn same_thread_try_acquire_is_busy_other_threads_wait() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire(&t).unwrap();
    // Held by this process: busy, naming us (guards move between threads,
    // so this is contention, not a deadlock; see tests/gateway.rs).
    let err = try_acquire_with(&t, &LockOptions::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert!(err.to_string().contains("s.jsonl.lock"), "{err}");
    let t2 = t.clone();
    let other = std::thread::spawn(move || {
        session_lock::acquire_with(
            &t2,
            &LockOptions::new().with_timeout(Duration::from_secs(30)),
        )
        .map(|g| g.release())
    });
    std::thread::sleep(Duration::from_millis(50));
    g.release().unwrap();
    within(WAIT, "other thread", move || other.join().unwrap())
        .expect("other thread acquired")
        .expect("released");
}

#[test]
fn symlinked_directory_shares_one_lock() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let g = acquire(real.join("s.jsonl")).unwrap();
    let p = link.join("s.jsonl");
    let err = std::thread::spawn(move || try_acquire_with(&p, &LockOptions::new()).unwrap_err())
        .join()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Busy);
    g.release().unwrap();
}

#[test]
fn a_path_naming_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let with_slash = format!("{}/sessions/", dir.path().display());
    let err = try_acquire_with(&with_slash, &quick()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.to_string().contains("must name a file"), "{err}");
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn missing_parent_directory_is_created_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("a/b/c/s.jsonl");
    let err = acquire(&t).unwrap_err();
    assert!(err.to_string().contains("a/b/c"), "{err}");
    assert!(!dir.path().join("a").exists(), "nothing created by default");
    let g = session_lock::acquire_with(&t, &LockOptions::new().with_create_dirs(true)).unwrap();
    assert!(dir.path().join("a/b/c/s.jsonl.lock").exists());
    g.release().unwrap();
}

#[test]
fn release_after_replacement_never_removes_the_successor() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire(&t).unwrap();
    let lock = g.lock_path().to_owned();
    // Someone deletes our lock and another owner takes it.
    std::fs::remove_file(&lock).unwrap();
    let successor = std::thread::spawn({
        let t = t.clone();
        move || try_acquire_with(&t, &LockOptions::new()).unwrap()
    })
    .join()
    .unwrap();
    let err = g.append_line("late write").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockLost);
    assert!(
        matches!(g.lost_reason(), Some(LostReason::Replaced)),
        "{:?}",
        g.lost_reason()
    );
    let err = g.release().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockLost);
    assert!(lock.exists(), "the successor's lock was removed");
    assert!(successor.is_held());
    successor.release().unwrap();
    assert_eq!(std::fs::read_to_string(&t).unwrap_or_default(), "");
}

/// Our lock file deleted by someone else, then a successor (another thread)
/// takes the lock: the path now names the successor's inode. Returns the
/// successor's guard and its file identity.
fn replaced_under(g: &session_lock::LockGuard) -> (session_lock::LockGuard, (u64, u64)) {
    let lock = g.lock_path().to_owned();
    std::fs::remove_file(&lock).unwrap();
    let t = g.target().to_owned();
    let successor = within(WAIT, "successor acquire", move || {
        try_acquire_with(&t, &LockOptions::new()).unwrap()
    });
    let id = file_identity(&lock);
    (successor, id)
}

/// Issue 11, gap 1: `release()` with nothing before it (no append, no
/// check) must itself see that the path names another inode.
#[test]
fn release_with_nothing_before_it_never_removes_a_successor() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire(&t).unwrap();
    let lock = g.lock_path().to_owned();
    let (successor, id) = replaced_under(&g);
    let err = g.release().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockLost, "{err}");
    assert!(err.to_string().contains("replaced"), "{err}");
    assert!(lock.exists(), "release removed the successor's lock file");
    assert_eq!(file_identity(&lock), id, "the successor's file was touched");
    assert!(successor.is_held());
    successor.release().unwrap();
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

/// The same for a guard that is simply dropped.
#[test]
fn drop_with_nothing_before_it_never_removes_a_successor() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire(&t).unwrap();
    let lock = g.lock_path().to_owned();
    let (successor, id) = replaced_under(&g);
    drop(g);
    assert!(lock.exists(), "drop removed the successor's lock file");
    assert_eq!(file_identity(&lock), id, "the successor's file was touched");
    assert!(successor.is_held());
    successor.release().unwrap();
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn deleted_lock_is_noticed_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire(&t).unwrap();
    assert!(g.is_held());
    std::fs::remove_file(g.lock_path()).unwrap();
    assert!(!g.is_held());
    assert_eq!(g.check().unwrap_err().kind(), ErrorKind::LockLost);
    assert_eq!(g.lost_reason(), Some(LostReason::Removed));
    drop(g); // must not panic
}

#[test]
fn unknown_newer_version_is_held_not_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    std::fs::write(
        &lock,
        format!(
            r#"{{"pid":{},"createdAt":"2020-01-01T00:00:00.000Z","witness":"lease","version":99}}"#,
            dead_pid()
        ),
    )
    .unwrap();
    age_file(&lock, Duration::from_secs(3600));
    let insp = session_lock::inspect(&t, &quick()).unwrap().unwrap();
    assert_eq!(
        (insp.verdict, insp.reasons),
        (Verdict::Held, vec![Reason::UnknownVersion])
    );
    assert_eq!(
        try_acquire_with(&t, &quick()).unwrap_err().kind(),
        ErrorKind::Busy
    );
    assert!(lock.exists());
}

#[test]
fn orphan_self_pid_is_reclaimed_but_never_our_own_live_lock() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let me = std::process::id();
    write_reference_lock(&lock_of(&t), me, 1000, Some(starttime(me)));
    let insp = session_lock::inspect(&t, &quick()).unwrap().unwrap();
    assert_eq!(insp.reasons, vec![Reason::OrphanSelfPid]);
    let g = try_acquire_with(&t, &quick()).expect("orphan-self-pid reclaimed");
    // Our own live lock: another thread must not reclaim it.
    let p = t.clone();
    let err = std::thread::spawn(move || try_acquire_with(&p, &LockOptions::new()).unwrap_err())
        .join()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Busy);
    g.release().unwrap();
}

#[test]
fn many_threads_reclaiming_one_stale_lock_never_both_win() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let dead = dead_pid();
    for round in 0..200 {
        write_reference_lock(&lock_of(&t), dead, 60_000, None);
        let n = 8;
        let barrier = Arc::new(Barrier::new(n));
        let done = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (t, barrier, done) = (t.clone(), barrier.clone(), done.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let r = try_acquire_with(&t, &LockOptions::new());
                    // Hold until every contender has tried.
                    done.wait();
                    match r {
                        Ok(g) => {
                            g.release().unwrap();
                            1
                        }
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::Busy, "round {round}: {e}");
                            0
                        }
                    }
                })
            })
            .collect();
        let winners: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(winners, 1, "round {round}: {winners} winners");
        assert!(!lock_of(&t).exists());
    }
    assert_eq!(
        names(dir.path()),
        Vec::<String>::new(),
        "temp files left behind"
    );
}

#[test]
fn threads_contending_with_waits_keep_exclusion() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles: Vec<_> = (0..6)
        .map(|id| {
            let (t, inside) = (t.clone(), inside.clone());
            std::thread::spawn(move || {
                for i in 0..100 {
                    let g = session_lock::acquire_with(
                        &t,
                        &LockOptions::new().with_timeout(Duration::from_secs(60)),
                    )
                    .unwrap();
                    assert_eq!(
                        inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                        0,
                        "overlap"
                    );
                    g.append_line(format!("{id} {i}")).unwrap();
                    inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    g.release().unwrap();
                }
            })
        })
        .collect();
    within(Duration::from_secs(120), "contending threads", move || {
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_eq!(std::fs::read_to_string(&t).unwrap().lines().count(), 600);
}

/// A temp file as a publisher killed before publishing leaves it: its
/// exact name `.<lock>.<32-hex token>.tmp`, mode 0600, our record with that
/// token (the sweep removes nothing else; see `security.rs`
/// `clean_keeps_look_alikes_and_files_in_use_and_lists_what_it_removes`).
fn plant_our_temp(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let tok = "0123456789abcdef0123456789abcdef";
    let tmp = dir.join(format!(".s.jsonl.lock.{tok}.tmp"));
    std::fs::write(
        &tmp,
        format!("{{\"pid\":1,\"token\":\"{tok}\",\"witness\":\"flock\"}}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    tmp
}

#[test]
fn leftover_temp_files_are_swept_once_old() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = plant_our_temp(dir.path());
    let r = session_lock::sweep::sweep(dir.path(), &Default::default()).unwrap();
    assert!(r.temps_removed.is_empty());
    age_file(&tmp, Duration::from_secs(60));
    let dry = session_lock::sweep::SweepOptions::new().with_remove(false);
    let r = session_lock::sweep::sweep(dir.path(), &dry).unwrap();
    assert_eq!(r.temps_removable, vec![tmp.clone()]);
    assert!(
        r.temps_removed.is_empty() && tmp.exists(),
        "a dry run removed it"
    );
    let r = session_lock::sweep::sweep(dir.path(), &Default::default()).unwrap();
    assert_eq!(r.temps_removed, vec![tmp.clone()]);
    assert!(!tmp.exists());
}

/// Issue 11, gap 5: an old temp file whose flock someone holds (a waiter's
/// prepared record) is not a leftover: the sweep takes the flock before it
/// unlinks, and here cannot. (flock locks belong to the open file
/// description, so a second open in this process conflicts like another
/// process would; the end-to-end case with a real waiter process is in
/// `cross_process.rs`.)
#[test]
fn an_old_temp_file_with_a_live_flock_survives_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = plant_our_temp(dir.path());
    let held = std::fs::File::open(&tmp).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    age_file(&tmp, Duration::from_secs(60));
    for remove in [false, true] {
        let opts = session_lock::sweep::SweepOptions::new().with_remove(remove);
        let r = session_lock::sweep::sweep(dir.path(), &opts).unwrap();
        assert!(
            r.temps_removed.is_empty() && r.temps_removable.is_empty(),
            "remove={remove}: {r:?}"
        );
        assert!(
            tmp.exists(),
            "remove={remove}: the held temp file was removed"
        );
    }
    // Once its holder lets go it is a leftover like any other.
    drop(held);
    let r = session_lock::sweep::sweep(dir.path(), &Default::default()).unwrap();
    assert_eq!(r.temps_removed, vec![tmp.clone()]);
    assert!(!tmp.exists());
}

#[test]
fn read_only_directory_is_a_clear_error() {
    if unsafe { libc::geteuid() } == 0 {
        // Root ignores directory permissions; the case is covered by the
        // non-root run of the bad-input suite.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let err = try_acquire_with(dir.path().join("s.jsonl"), &quick()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn on_wait_fires_once_with_the_holder_then_the_wait_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let first = session_lock::acquire_with(&t, &LockOptions::new().with_label("first")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let opts = {
        let calls = calls.clone();
        let tx = std::sync::Mutex::new(tx);
        LockOptions::new()
            .with_timeout(WAIT)
            .on_wait(Duration::from_millis(50), move |holder| {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = tx.lock().unwrap().send(holder.label.clone());
            })
    };
    let t2 = t.clone();
    let waiter = std::thread::spawn(move || session_lock::acquire_with(&t2, &opts).map(drop));
    let label = rx.recv_timeout(WAIT).expect("the hook never ran");
    assert_eq!(label.as_deref(), Some("first"));
    first.release().unwrap();
    within(WAIT, "waiter", move || waiter.join().unwrap()).expect("acquired after the hook");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// The hook waits for its time: a wait shorter than `after` never calls
/// it, however many times the waiter looked (a mutation run found the
/// `now < at` comparison unpinned: `==` called it at the first look).
#[test]
fn on_wait_never_fires_before_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let first = session_lock::acquire(&t).unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let opts = {
        let calls = calls.clone();
        LockOptions::new()
            .with_timeout(Duration::from_millis(200))
            .on_wait(Duration::from_secs(3600), move |_| {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
    };
    let t2 = t.clone();
    let err = within(WAIT, "waiter", move || {
        session_lock::acquire_with(&t2, &opts).map(drop)
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the hook ran early"
    );
    first.release().unwrap();
}

/// A waiter's record says when it took the lock, not when it began to
/// wait: the prepared record's `createdAt` is rewritten before it is
/// published if it is older than the documented 50 ms slack (see
/// docs/protocol.md, Publish). The holder keeps the lock for 300 ms after
/// the waiter prepared its record, so without the rewrite the published
/// `createdAt` is 300 ms early.
#[test]
fn a_waiters_record_says_when_it_took_the_lock() {
    const SLACK_MS: i64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let first = acquire(&t).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    // The hook runs once the waiter has prepared its record and is about
    // to sleep.
    let opts = LockOptions::new()
        .with_timeout(WAIT)
        .on_wait(Duration::ZERO, move |_| {
            let _ = tx.lock().unwrap().send(());
        });
    let t2 = t.clone();
    let waiter = std::thread::spawn(move || {
        let g = session_lock::acquire_with(&t2, &opts)?;
        let on_disk = session_lock::inspect(&t2, &LockOptions::new())?;
        g.release()?;
        Ok::<_, session_lock::Error>(on_disk)
    });
    rx.recv_timeout(WAIT).expect("the waiter never waited");
    // The length of the wait is the point of the test, not a handshake.
    std::thread::sleep(Duration::from_millis(300));
    let released_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    first.release().unwrap();
    let insp = within(WAIT, "waiter", move || waiter.join().unwrap())
        .unwrap()
        .expect("the waiter's lock file");
    let created = insp
        .record
        .and_then(|r| r.created_at_ms())
        .expect("a createdAt");
    assert!(
        created >= released_ms - SLACK_MS,
        "createdAt is {} ms before the lock was free",
        released_ms - created
    );
}

/// A lost hold is not "held by this process": after the guard learned its
/// file was deleted, the same thread acquires again at once instead of
/// finding it busy (a mutation run found the live flag of a lost hold
/// unchecked).
#[test]
fn a_lost_guard_does_not_make_its_thread_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire(&t).unwrap();
    std::fs::remove_file(g.lock_path()).unwrap();
    assert_eq!(g.check().unwrap_err().kind(), ErrorKind::LockLost);
    let again = try_acquire_with(&t, &LockOptions::new())
        .unwrap_or_else(|e| panic!("the lost guard still counts as held: {e}"));
    assert!(again.is_held());
    // And an inspection sees the new holder, not the lost one.
    let insp = session_lock::inspect(&t, &LockOptions::new())
        .unwrap()
        .unwrap();
    assert_eq!(insp.record.and_then(|r| r.token), again.record().token);
    again.release().unwrap();
    assert_eq!(g.release().unwrap_err().kind(), ErrorKind::LockLost);
}

/// The guard's accessors report this hold (found unchecked by a mutation run).
#[test]
fn guard_accessors_report_the_hold() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let opts = LockOptions::new().with_max_hold(Duration::from_secs(7));
    let g = session_lock::acquire_with(&t, &opts).unwrap();
    assert_eq!(g.max_hold(), Duration::from_secs(7));
    let after = std::time::Instant::now();
    g.check().unwrap();
    let since = after.elapsed();
    let held = g.held_for();
    assert!(
        held >= since && held > Duration::ZERO,
        "{held:?} < {since:?}"
    );
    let debug = format!("{g:?}");
    let token = g.record().token.clone().unwrap();
    assert!(
        debug.starts_with("LockGuard")
            && debug.contains(&token)
            && debug.contains(&*g.lock_path().to_string_lossy()),
        "{debug}"
    );
    g.release().unwrap();
}

/// Every acquisition has its own random token (32 hex digits), and a
/// directory that vanished after a first acquire is created again when
/// the options ask for it (both found unchecked by a mutation run), and
/// reported missing otherwise.
#[test]
fn tokens_are_fresh_and_a_vanished_directory_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sessions");
    let t = sub.join("s.jsonl");
    let mut tokens = Vec::new();
    let create = LockOptions::new().with_create_dirs(true);
    for _ in 0..2 {
        let g = session_lock::acquire_with(&t, &create).unwrap();
        tokens.push(g.record().token.clone().expect("a token"));
        g.release().unwrap();
        // Gone (with the persistent queue file inside), while this process
        // still knows it as canonical.
        std::fs::remove_dir_all(&sub).unwrap();
    }
    assert_ne!(tokens[0], tokens[1]);
    // Without create_dirs, a directory known from an earlier acquire that
    // has vanished since is reported, not made again.
    std::fs::create_dir(&sub).unwrap();
    acquire(&t).unwrap().release().unwrap();
    std::fs::remove_dir_all(&sub).unwrap();
    let err = acquire(&t).unwrap_err();
    assert!(err.to_string().contains("sessions"), "{err}");
    assert!(!sub.exists());
    for tok in &tokens {
        assert!(
            tok.len() == 32
                && tok
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{tok}"
        );
    }
}

/// Reasons print their reference names (`Display`).
#[test]
fn reasons_display_their_reference_names() {
    assert_eq!(Reason::DeadPid.to_string(), "dead-pid");
    assert_eq!(Reason::TooOld.to_string(), Reason::TooOld.as_str());
}

#[test]
fn durable_appends_write_whole_lines_and_are_refused_after_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire(&t).unwrap();
    g.append_lines_durable(["a", "b\n"]).unwrap();
    g.append_lines(["c"]).unwrap();
    assert_eq!(std::fs::read_to_string(&t).unwrap(), "a\nb\nc\n");
    std::fs::remove_file(lock_of(&t)).unwrap();
    let err = g.append_lines_durable(["late"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockLost, "{err}");
    assert_eq!(std::fs::read_to_string(&t).unwrap(), "a\nb\nc\n");
}

/// An option the backend cannot honour is refused, naming the option and
/// the backend, before anything is touched (no etcd is reached here: the
/// endpoint is never dialled).
#[cfg(feature = "etcd")]
#[test]
fn options_the_etcd_backend_cannot_honour_are_refused_naming_them() {
    use session_lock::Backend;
    use session_lock::etcd::EtcdBackend;
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let etcd = || LockOptions::new().with_backend(Backend::Etcd(EtcdBackend::new(["127.0.0.1:1"])));
    for (name, opts) in [
        ("with_stale", etcd().with_stale(Duration::from_secs(60))),
        (
            "with_orphan_grace",
            etcd().with_orphan_grace(Duration::from_secs(1)),
        ),
        ("with_fail_on_stale", etcd().with_fail_on_stale(true)),
    ] {
        let err = session_lock::acquire_with(&t, &opts).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{name}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("LockOptions::{name}")) && msg.contains("etcd backend"),
            "{msg}"
        );
        let err = session_lock::try_acquire_with(&t, &opts).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{name}: {err}");
    }
    assert_eq!(
        all_names(dir.path()),
        Vec::<String>::new(),
        "something was made"
    );
}
