//! Several processes append to one session transcript under the lock; one
//! holder is killed with SIGKILL in the middle of its hold; the run ends by
//! verifying the transcript.
//!
//! Run: `cargo run --example transcript_demo`
//!
//! What to watch: the writers block while the victim holds the lock, and
//! the moment the victim is SIGKILLed one of them takes over (the kernel
//! releases the victim's witness lock; nobody waits for a timeout or deletes
//! anything by hand). At the end every writer's lines are present exactly
//! once, no line is torn or interleaved, and no lock or temp file is left.

use session_lock::{LockOptions, acquire_with};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WRITERS: usize = 4;
const LINES_PER_WRITER: usize = 250;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("writer") => writer(&args[2], args[3].parse()?),
        Some("victim") => victim(&args[2]),
        _ => parent(),
    }
}

fn opts() -> LockOptions {
    LockOptions::new().with_timeout(Duration::from_secs(60))
}

/// Append LINES_PER_WRITER numbered JSON lines, one lock hold per line.
fn writer(path: &str, id: usize) -> Result<(), Box<dyn std::error::Error>> {
    for seq in 0..LINES_PER_WRITER {
        let guard = acquire_with(path, &opts().with_label(format!("demo writer {id}")))?;
        guard.append_line(format!(
            r#"{{"writer":{id},"seq":{seq},"pid":{}}}"#,
            std::process::id()
        ))?;
        guard.release()?;
    }
    // A short-lived process: remove the witness slot it kept between its
    // holds (a hidden `.session.jsonl.lock.w<N>.tmp`; see docs/protocol.md,
    // "Witness slots"). Without this the next process takes it over, or
    // `session-lock clean` removes it later.
    session_lock::close_idle();
    Ok(())
}

/// Take the lock, write half a turn's worth of lines, say "holding", and
/// sleep forever: the parent kills us mid-hold.
fn victim(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let guard = acquire_with(path, &opts().with_label("demo victim"))?;
    guard.append_line(r#"{"writer":"victim","seq":0}"#)?;
    println!("holding");
    std::io::stdout().flush()?;
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}

fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let me = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("session-lock-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let transcript = dir.join("session.jsonl");
    let path = transcript.to_string_lossy().into_owned();
    println!("transcript: {path}");

    // 1. The victim takes the lock first and holds it.
    let mut victim = Command::new(&me)
        .args(["victim", &path])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(victim.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    println!(
        "victim pid {} holds the lock ({})",
        victim.id(),
        line.trim()
    );

    // 2. Writers start and block behind it.
    let mut writers = Vec::new();
    for id in 0..WRITERS {
        writers.push(
            Command::new(&me)
                .args(["writer", &path, &id.to_string()])
                .spawn()?,
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = count_lines(&transcript);
    println!("{WRITERS} writers started; lines so far: {before} (they are waiting)");

    // 3. SIGKILL the victim mid-hold.
    let killed_at = Instant::now();
    victim.kill()?;
    victim.wait()?;
    println!("victim SIGKILLed while holding the lock");

    // 4. Watch the takeover.
    loop {
        if count_lines(&transcript) > before {
            println!(
                "a writer took over {:?} after the kill",
                killed_at.elapsed()
            );
            break;
        }
        if killed_at.elapsed() > Duration::from_secs(30) {
            return Err("no writer took over within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for mut w in writers {
        let status = w.wait()?;
        if !status.success() {
            return Err(format!("a writer failed: {status}").into());
        }
    }

    // 5. Verify.
    let text = std::fs::read_to_string(&transcript)?;
    let mut seen = vec![vec![0u32; LINES_PER_WRITER]; WRITERS];
    let mut victim_lines = 0;
    for (n, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("line {n} is torn or interleaved: {line:?}: {e}"))?;
        match (v["writer"].as_u64(), v["seq"].as_u64()) {
            (Some(w), Some(s)) => seen[w as usize][s as usize] += 1,
            _ if v["writer"] == "victim" => victim_lines += 1,
            _ => return Err(format!("unexpected line {line:?}").into()),
        }
    }
    let missing_or_dup = seen.iter().flatten().filter(|&&c| c != 1).count();
    let leftovers: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // The transcript, and the lock's wait queue, which stays by design
        // (see docs/protocol.md, "The queue"); no lock file, no temp file.
        .filter(|n| n != "session.jsonl" && n != "session.jsonl.lock.queue")
        .collect();
    println!(
        "verified: {} lines ({} from writers, {victim_lines} from the victim before it died), \
         {missing_or_dup} missing or duplicated, leftover files: {leftovers:?}",
        text.lines().count(),
        WRITERS * LINES_PER_WRITER,
    );
    std::fs::remove_dir_all(&dir)?;
    if missing_or_dup != 0 || !leftovers.is_empty() || victim_lines != 1 {
        return Err("verification failed".into());
    }
    println!(
        "OK: no torn or interleaved lines, nothing lost, the dead holder's lock was reclaimed"
    );
    Ok(())
}

fn count_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}
