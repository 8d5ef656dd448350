use session_lock::{ErrorKind, LockOptions, acquire, acquire_with, try_acquire};
use std::time::Duration;

#[test]
fn acquire_append_release() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire(&t).unwrap();
    assert!(g.lock_path().exists());
    g.append_line("a").unwrap();
    let err = std::thread::scope(|s| {
        s.spawn(|| try_acquire(&t, &LockOptions::new()).unwrap_err())
            .join()
            .unwrap()
    });
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    let err = acquire(&t).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldDeadlock, "{err}");
    g.release().unwrap();
    assert!(!dir.path().join("s.jsonl.lock").exists());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn handoff_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let g = acquire(&t).unwrap();
    let t2 = t.clone();
    let h = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let g = acquire_with(&t2, &LockOptions::new().timeout(Duration::from_secs(10))).unwrap();
        let e = start.elapsed();
        g.release().unwrap();
        e
    });
    std::thread::sleep(Duration::from_millis(200));
    g.release().unwrap();
    let waited = h.join().unwrap();
    eprintln!("waited {waited:?}");
}
