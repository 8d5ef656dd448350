//! The max-hold watchdog: a holder overstays its max hold, the watchdog
//! thread force-releases the lock, the holder learns it (and its next write
//! is refused), and a waiting successor takes the lock.
//!
//! Run: `cargo run --example watchdog`
//!
//! What to watch:
//!
//! 1. The successor thread waits in `acquire_with` while the holder holds.
//! 2. At the holder's max hold (300 ms here; 5 min by default) the watchdog
//!    logs the reference's warning line,
//!    `[session-write-lock] releasing lock held for 300ms (max=300ms): ...`,
//!    removes the lock file (it is still the holder's) and marks the guard
//!    lost. The holder, blocked in `wait_lost`, wakes with the reason.
//! 3. The successor is woken by the file's removal and takes the lock.
//! 4. The holder's next `append_line` fails with `LockLost` and writes
//!    nothing; its late `release()` reports the loss and leaves the
//!    successor's lock file alone.

use session_lock::{ErrorKind, LockOptions, LostReason, Verdict};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    // The watchdog reports through `tracing`; show it (INFO and up).
    tracing_subscriber::fmt().with_target(false).init();

    let dir = tempfile::tempdir()?;
    let transcript = dir.path().join("session.jsonl");
    let start = Instant::now();
    let t = move || format!("{:>4}ms", start.elapsed().as_millis());

    // The holder: a max hold of 300 ms, which it will overstay.
    let holder_opts = LockOptions::new()
        .with_max_hold(Duration::from_millis(300))
        .with_label("slow holder");
    let guard = session_lock::acquire_with(&transcript, &holder_opts)?;
    guard.append_line(r#"{"from":"holder","turn":1}"#)?;
    println!("{} holder: acquired (max hold {:?})", t(), guard.max_hold());

    // The successor: another thread of this process waits like any
    // contender, woken in-process when the hold ends.
    let (acquired_tx, acquired_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let path = transcript.clone();
    let successor = std::thread::spawn(move || -> Result<(), session_lock::Error> {
        let opts = LockOptions::new()
            .with_timeout(Duration::from_secs(10))
            .with_label("successor");
        let guard = session_lock::acquire_with(&path, &opts)?;
        guard.append_line(r#"{"from":"successor","turn":2}"#)?;
        let _ = acquired_tx.send(start.elapsed());
        // Hold until the main thread has looked at the lock file.
        let _ = release_rx.recv_timeout(Duration::from_secs(10));
        guard.release()
    });
    println!("{} successor: waiting for the lock", t());

    // The holder "works" past its max hold. `wait_lost` is how a holder
    // that is not writing right now learns about the loss.
    match guard.wait_lost(Some(Duration::from_secs(5))) {
        Some(reason @ LostReason::MaxHoldExceeded { .. }) => {
            println!("{} holder: wait_lost -> {reason}", t());
        }
        other => return Err(format!("expected a max-hold loss, got {other:?}").into()),
    }

    let took_over = acquired_rx.recv_timeout(Duration::from_secs(5))?;
    println!("{} successor: acquired at {}ms", t(), took_over.as_millis());

    // The holder's next guarded write is refused, and nothing is written.
    match guard.append_line(r#"{"from":"holder","turn":"late"}"#) {
        Err(e) if e.kind() == ErrorKind::LockLost => {
            println!("{} holder: append_line refused: {e}", t());
        }
        other => return Err(format!("expected LockLost, got {other:?}").into()),
    }

    // A late release reports the loss and removes nothing: the lock file
    // now belongs to the successor.
    match guard.release() {
        Err(e) if e.kind() == ErrorKind::LockLost => {
            println!("{} holder: release -> {e}", t());
        }
        other => return Err(format!("expected LockLost from release, got {other:?}").into()),
    }
    let now = session_lock::inspect(&transcript, &LockOptions::new())?
        .ok_or("the successor's lock file is missing")?;
    let label = now.record.as_ref().and_then(|r| r.label.clone());
    println!(
        "{} lock file after the old holder's release: verdict={:?} label={label:?}",
        t(),
        now.verdict
    );
    if now.verdict != Verdict::Held || label.as_deref() != Some("successor") {
        return Err("the successor's lock should be intact".into());
    }

    let _ = release_tx.send(());
    successor.join().map_err(|_| "successor panicked")??;

    let text = std::fs::read_to_string(&transcript)?;
    print!("transcript:\n{text}");
    if text.contains("late") || text.lines().count() != 2 {
        return Err("the refused line must not be in the transcript".into());
    }
    println!("OK: forced release was noticed by the holder and the successor took over");
    Ok(())
}
