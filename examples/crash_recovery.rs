//! A holder process is SIGKILLed in the middle of its hold; the next
//! contender takes the lock over at once, with no timeout and no human action.
//!
//! Run: `cargo run --example crash_recovery`
//!
//! What to watch:
//!
//! 1. While the holder lives, `session_lock::inspect` says `held` (the
//!    holder's kernel witness, an exclusive `flock` on the lock file, is
//!    taken) and `try_acquire` answers `Busy`, naming the holder's pid.
//! 2. After `kill -9` the lock file is still on disk, but the kernel has
//!    dropped the witness with the dead process's descriptors: `inspect` now
//!    says `reclaimable` with the single reason `witness-released`. No pid
//!    was probed and no clock was read to decide that.
//! 3. `try_acquire` (which never waits) reclaims the dead holder's file and
//!    publishes ours in one call, within a millisecond or so.
//! 4. The holder died in the middle of its second line. The successor's
//!    first append moves that torn line out to `session.jsonl.torn-<time>`
//!    before writing, and `guard.takeover()` tells it whose lock it took
//!    over, why, and what it repaired.
//!
//! The example re-runs its own executable as the holder (`crash_recovery
//! holder <transcript>`), the same way the crate's tests use real processes.

use session_lock::{ErrorKind, LockOptions, Reason, Verdict, Witness};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("holder"), Some(path)) => holder(Path::new(path)),
        _ => parent(),
    }
}

/// The child: take the lock, write one line, announce it, then hang (the
/// parent kills us mid-hold).
fn holder(transcript: &Path) -> Res<()> {
    let opts = LockOptions::new()
        .with_timeout(Duration::from_secs(10))
        .with_label("crash_recovery holder");
    let guard = session_lock::acquire_with(transcript, &opts)?;
    guard.append_line(r#"{"from":"holder","text":"started a turn"}"#)?;
    // What a kill inside the `write(2)` of a long line leaves on disk: the
    // first part of the line, without its newline.
    std::fs::OpenOptions::new()
        .append(true)
        .open(transcript)?
        .write_all(br#"{"from":"holder","text":"half a tu"#)?;
    println!("ready {}", std::process::id());
    std::io::stdout().flush()?;
    std::thread::sleep(Duration::from_secs(3600));
    drop(guard);
    Ok(())
}

/// Kills the holder if the parent bails out early, so that no child outlives
/// a failed run.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already dead and reaped on the normal path: both calls then fail
        // harmlessly.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parent() -> Res<()> {
    let dir = tempfile::tempdir()?;
    let transcript = dir.path().join("session.jsonl");
    let opts = LockOptions::new();

    // 1. Start the holder and wait for its readiness line.
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe()?)
            .arg("holder")
            .arg(&transcript)
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().ok_or("holder has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("ready") {
        return Err(format!("holder did not start: {line:?}").into());
    }
    let holder_pid = child.0.id();
    println!("holder pid {holder_pid} holds {}", transcript.display());

    // 2. Inspect while it lives.
    let before = session_lock::inspect(&transcript, &opts)?.ok_or("no lock file")?;
    println!(
        "before the kill: verdict={:?} witness={:?} pidAlive={:?} reasons={:?} owner: {}",
        before.verdict,
        before.witness,
        before.pid_alive,
        before.reasons,
        before.owner()
    );
    if before.verdict != Verdict::Held || before.witness != Witness::Held {
        return Err("expected a held lock with its witness taken".into());
    }
    match session_lock::try_acquire_with(&transcript, &opts) {
        Err(e) if e.kind() == ErrorKind::Busy => println!("try_acquire: {e}"),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err("try_acquire succeeded while the holder lives".into()),
    }

    // 3. SIGKILL mid-hold (std's Child::kill sends SIGKILL on Unix), and
    //    reap it so the kernel has closed every descriptor of the holder.
    child.0.kill()?;
    let status = child.0.wait()?;
    println!("holder killed: {status}");
    println!(
        "lock file still on disk: {}",
        dir.path().join("session.jsonl.lock").exists()
    );

    // 4. Inspect again: the witness is free, so the owner is provably gone.
    let after = session_lock::inspect(&transcript, &opts)?.ok_or("no lock file")?;
    println!(
        "after the kill:  verdict={:?} witness={:?} pidAlive={:?} reasons={:?} owner: {}",
        after.verdict,
        after.witness,
        after.pid_alive,
        after.reasons,
        after.owner()
    );
    if after.verdict != Verdict::Reclaimable || after.reasons != [Reason::WitnessReleased] {
        return Err("expected reclaimable / witness-released".into());
    }

    // 5. Take it over at once: try_acquire never waits, and it does not
    //    need to, because the dead holder's file is reclaimable right now.
    let start = Instant::now();
    let guard = session_lock::try_acquire_with(&transcript, &opts.clone().with_label("successor"))?;
    println!(
        "try_acquire took the lock over in {:?}; new owner pid {:?} (ours: {})",
        start.elapsed(),
        guard.record().pid,
        std::process::id()
    );
    guard.append_line(r#"{"from":"successor","text":"took over"}"#)?;

    // 6. What the successor took over.
    let takeover = guard.takeover().ok_or("expected a takeover report")?;
    println!(
        "took over from pid {:?} (label {:?}), reasons {:?}",
        takeover.previous().and_then(|r| r.pid),
        takeover.previous().and_then(|r| r.label.clone()),
        takeover.reasons()
    );
    let torn = takeover.torn_tail().ok_or("expected the torn line")?;
    println!(
        "moved a torn line of {} bytes (at offset {}) to {}: {:?}",
        torn.bytes(),
        torn.offset(),
        torn.saved_to().display(),
        std::fs::read_to_string(torn.saved_to())?
    );
    if takeover.previous().and_then(|r| r.pid) != Some(holder_pid) {
        return Err("the takeover should name the killed holder".into());
    }
    guard.release()?;

    let text = std::fs::read_to_string(&transcript)?;
    print!("transcript:\n{text}");
    if text.lines().count() != 2 || !text.ends_with('\n') {
        return Err("expected the holder's line and the successor's line, whole".into());
    }
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)?;
    }
    if dir.path().join("session.jsonl.lock").exists() {
        return Err("the lock file should be gone after release".into());
    }
    println!("OK: the dead holder's lock was reclaimed without waiting");
    Ok(())
}
