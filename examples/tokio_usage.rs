//! The async API on a single-threaded tokio runtime: many tasks append to one
//! transcript through `session_lock::tokio::acquire_with`, a ticker task
//! keeps ticking while they contend, and `guard.lost()` ends a long piece of
//! work in a `tokio::select!` when the watchdog takes the lock away.
//!
//! Run: `cargo run --example tokio_usage` (needs the `tokio` feature, on by
//! default).
//!
//! What to watch:
//!
//! 1. Eight writer tasks take turns on one lock, each holding it across an
//!    `.await`. Every task runs on the same thread as the ticker, yet the
//!    ticker stays on time to within a few milliseconds: waiting for the lock
//!    parks no thread (a waiter sleeps on the process-wide inotify hub and a
//!    tokio timer), and each inspection is preceded by a yield.
//! 2. The transcript ends with every writer's lines exactly once, whole.
//! 3. A task holding the lock with a 200 ms max hold races its work against
//!    `guard.lost()`; the watchdog (a plain thread, so it fires even though
//!    this runtime has one thread) releases the lock, `lost()` wins the
//!    select, and the next `append_line` is refused with `LockLost`.

#[cfg(feature = "tokio")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(demo::run())
}

#[cfg(not(feature = "tokio"))]
fn main() {
    eprintln!("tokio_usage needs the `tokio` feature (on by default)");
}

#[cfg(feature = "tokio")]
mod demo {
    use session_lock::{ErrorKind, LockOptions};
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tokio::time::{Instant, MissedTickBehavior};

    const WRITERS: usize = 8;
    const TURNS: usize = 20;

    pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let transcript = dir.path().join("session.jsonl");

        // The ticker: a 5 ms interval; report how late its ticks were.
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut interval = tokio::time::interval(Duration::from_millis(5));
                interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let (mut ticks, mut worst) = (0u64, Duration::ZERO);
                while !stop.load(Ordering::Relaxed) {
                    let due = interval.tick().await;
                    worst = worst.max(Instant::now() - due);
                    ticks += 1;
                }
                (ticks, worst)
            }
        });

        // The writers.
        let start = Instant::now();
        let mut writers = Vec::new();
        for id in 0..WRITERS {
            writers.push(tokio::spawn(writer(transcript.clone(), id)));
        }
        for w in writers {
            w.await??;
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let (ticks, worst) = ticker.await?;
        println!(
            "{WRITERS} tasks x {TURNS} turns done in {elapsed:?}; \
             ticker: {ticks} ticks, worst lateness {worst:?}"
        );

        // Verify: every (writer, turn) exactly once, no torn line.
        let text = std::fs::read_to_string(&transcript)?;
        let mut seen = [[0u8; TURNS]; WRITERS];
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let (w, t) = (v["writer"].as_u64(), v["turn"].as_u64());
            match (w, t) {
                (Some(w), Some(t)) => seen[w as usize][t as usize] += 1,
                _ => return Err(format!("unexpected line {line:?}").into()),
            }
        }
        if seen.iter().flatten().any(|&n| n != 1) {
            return Err("a line is missing or duplicated".into());
        }
        println!(
            "transcript: {} whole lines, each once",
            text.lines().count()
        );

        lost_in_select(&transcript).await?;
        println!("OK");
        Ok(())
    }

    /// One task: TURNS times acquire, append, hold across an await, release.
    async fn writer(path: PathBuf, id: usize) -> Result<(), session_lock::Error> {
        let opts = LockOptions::new()
            .with_timeout(Duration::from_secs(30))
            .with_label(format!("task {id}"));
        for turn in 0..TURNS {
            let guard = session_lock::tokio::acquire_with(&path, &opts).await?;
            guard.append_line(format!(r#"{{"writer":{id},"turn":{turn}}}"#))?;
            // Holding the lock across an await is fine: the others wait
            // without blocking this thread.
            tokio::time::sleep(Duration::from_millis(1)).await;
            guard.release()?;
        }
        Ok(())
    }

    /// Race a long job against `guard.lost()`.
    async fn lost_in_select(path: &PathBuf) -> Result<(), Box<dyn std::error::Error>> {
        let opts = LockOptions::new()
            .with_max_hold(Duration::from_millis(200))
            .with_label("long job");
        let guard = session_lock::tokio::acquire_with(path, &opts).await?;
        let started = Instant::now();
        let job = async {
            for step in 0.. {
                guard.append_line(format!(r#"{{"job":"long","step":{step}}}"#))?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok::<(), session_lock::Error>(())
        };
        tokio::select! {
            biased;
            reason = guard.lost() => {
                println!("after {:?}: lost() resolved: {reason}", started.elapsed());
            }
            outcome = job => {
                // Only if an append hit the loss before lost() was polled.
                let e = outcome.err().ok_or("the job cannot finish on its own")?;
                println!("after {:?}: the job's append saw the loss: {e}", started.elapsed());
            }
        }
        match guard.append_line(r#"{"job":"long","step":"after"}"#) {
            Err(e) if e.kind() == ErrorKind::LockLost => {
                println!("append_line after the loss is refused: {e}");
            }
            other => return Err(format!("expected LockLost, got {other:?}").into()),
        }
        // Dropping a lost guard removes nothing and logs nothing new.
        drop(guard);
        Ok(())
    }
}
