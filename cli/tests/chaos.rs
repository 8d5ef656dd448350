//! Chaos: 8-16 real processes contend for one transcript while a killer
//! SIGKILLs holders and waiters at random points and SIGSTOPs some for a few
//! milliseconds. Afterwards the independent evidence must show zero overlaps,
//! whole lines written exactly once, and a lock that is free and acquirable.
//!
//! The workers are `session-lock-test-helper __chaos_worker` (see
//! `cli/src/bin/test-helper/main.rs`). Each guarded section:
//!
//! 1. enters a witness that does not use the crate: it hard-links a complete
//!    marker file `witness/inside` naming its pid, start time, worker id and
//!    section number (`link(2)` fails if the name exists). A marker left by a
//!    holder that was SIGKILLed mid-section is reset by the next holder only
//!    after it proved that owner dead (no such pid, zombie, or pid recycled:
//!    start time differs), and the reset is logged as `R <by> <owner>`; a
//!    marker whose owner stays alive for 10 s is reported as an overlap and
//!    the worker exits 99;
//! 2. appends `E <id> <seq> <n>` to `witness/witness.log` (O_APPEND, one
//!    write), then `n` (1-3) numbered lines of random length through the
//!    guard, then `X <id> <seq>`, then removes its marker (it must still be
//!    its own), then releases.
//!
//! The checker replays `witness.log`: every `E` must be followed by its own
//! `X` before anything else, except when that worker was SIGKILLed by the
//! killer, in which case that section must be the worker's last event. The
//! transcript must hold, in the same order as the `E`s, exactly the lines of
//! each section: all `n` of a completed section, a prefix for a killed one,
//! every line whole (length and fill byte checked), none twice.
//!
//! Leftover temp files (`.s.jsonl.lock.<token>.tmp`): where the record is
//! prepared in an unnamed `O_TMPFILE` file nothing can be left; where it is
//! prepared under a private temp name, a worker killed between creating that
//! file and publishing it leaves it behind, and the protocol cannot remove it
//! at that moment (its name is random and private). The test asserts that
//! there are at most as many as there were kills, that none is flocked by
//! anyone once all workers are gone, that nothing else is left in the
//! directory, and that `sweep` removes every one of them once they are older
//! than the orphan grace (aged with `File::set_modified`, no sleeping).
//!
//! Torn-line sidecars (`s.jsonl.torn-<time>`): a worker killed in the
//! middle of a line leaves a fragment, which the next holder moves out of
//! the transcript into a sidecar. Each sidecar must hold the start of the
//! next line of a section that a kill cut, one such line per section; a
//! killed mover may leave an empty sidecar (at most one per kill) or a copy
//! that the next holder makes again (a prefix of another sidecar). Any
//! other sidecar is a violation.
//!
//! Quick mode (default, CI): 8 workers, at least 2 000 sections and 100 kills,
//! bounded at 40 s. Long mode (`CHAOS_LONG=1`, or the ignored `chaos_long`
//! test): 16 workers, at least 20 000 sections and 1 000 kills. `CHAOS_SEED`
//! replays a killer schedule (the workers' own timing still varies).
//! Linux only: the marker proves death through `/proc/<pid>/stat`.
#![cfg(target_os = "linux")]

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use session_lock::LockOptions;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Config {
    name: &'static str,
    workers: usize,
    min_time: Duration,
    max_time: Duration,
    min_sections: u64,
    min_kills: u64,
}

const QUICK: Config = Config {
    name: "quick",
    workers: 8,
    min_time: Duration::from_secs(5),
    max_time: Duration::from_secs(40),
    min_sections: 2_000,
    min_kills: 100,
};

const LONG: Config = Config {
    name: "long",
    workers: 16,
    min_time: Duration::from_secs(30),
    max_time: Duration::from_secs(900),
    min_sections: 20_000,
    min_kills: 1_000,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Worker {
    id: u64,
    child: Child,
}

struct Run {
    sessions: PathBuf,
    target: PathBuf,
    witness: PathBuf,
    workers: Vec<Worker>,
    next_id: u64,
    killed: HashSet<u64>,
    kills: u64,
    kills_holder: u64,
    kills_random: u64,
    kills_double: u64,
    stops: u64,
    stops_holder: u64,
    failures: Vec<String>,
}

impl Run {
    fn spawn(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let child = helper()
            .args(["__chaos_worker", "--id", &id.to_string(), "--dir"])
            .arg(&self.witness)
            .arg(&self.target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chaos worker");
        self.workers.push(Worker { id, child });
    }

    /// Index of the worker whose pid is in the current lock record, if any.
    fn holder(&self) -> Option<usize> {
        let bytes = std::fs::read(lock_of(&self.target)).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let pid = v.get("pid")?.as_u64()? as u32;
        self.workers.iter().position(|w| w.child.id() == pid)
    }

    fn kill(&mut self, idx: usize) {
        let mut w = self.workers.swap_remove(idx);
        w.child.kill().expect("SIGKILL worker");
        let status = wait_child(&mut w.child, WAIT, "SIGKILLed chaos worker");
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(libc::SIGKILL) {
            self.killed.insert(w.id);
            self.kills += 1;
        } else {
            // It exited on its own just before the signal: a failure unless 0.
            self.failures
                .push(format!("worker {} exited by itself: {status}", w.id));
        }
        self.spawn();
    }

    fn stop_for(&mut self, idx: usize, pause: Duration) {
        let pid = self.workers[idx].child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child's pid (not yet reaped).
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(pause);
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        self.stops += 1;
    }

    /// Reap workers that exited without being killed: always a failure
    /// while the run lasts (they loop until the stop file exists).
    fn check_exits(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            if let Ok(Some(status)) = self.workers[i].child.try_wait() {
                let w = self.workers.swap_remove(i);
                self.failures
                    .push(format!("worker {} exited unexpectedly: {status}", w.id));
                self.spawn();
            } else {
                i += 1;
            }
        }
    }
}

fn count_entered(log: &Path) -> u64 {
    std::fs::read(log)
        .map(|b| {
            b.split(|&c| c == b'\n')
                .filter(|l| l.starts_with(b"E "))
                .count() as u64
        })
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Enter { id: u64, seq: u64, n: u64 },
    Exit { id: u64, seq: u64 },
    Reset { owner: u64 },
}

fn parse_log(text: &str) -> Result<Vec<Ev>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split(' ').collect();
        let num = |k: usize| -> Result<u64, String> {
            f.get(k)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("witness.log line {}: torn or malformed: {line:?}", i + 1))
        };
        let ev = match (f.first().copied(), f.len()) {
            (Some("E"), 4) => Ev::Enter {
                id: num(1)?,
                seq: num(2)?,
                n: num(3)?,
            },
            (Some("X"), 3) => Ev::Exit {
                id: num(1)?,
                seq: num(2)?,
            },
            (Some("R"), 3) => {
                num(1)?;
                Ev::Reset { owner: num(2)? }
            }
            _ => return Err(format!("witness.log line {}: malformed: {line:?}", i + 1)),
        };
        out.push(ev);
    }
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("witness.log ends with a partial line".into());
    }
    Ok(out)
}

#[derive(Debug)]
struct Section {
    id: u64,
    seq: u64,
    n: u64,
    completed: bool,
}

/// Replay the witness log. Returns the sections in order, the overlap
/// violations, and how many sections were cut short by a kill.
fn replay(evs: &[Ev], killed: &HashSet<u64>) -> (Vec<Section>, Vec<String>, u64) {
    let mut sections: Vec<Section> = Vec::new();
    let mut violations = Vec::new();
    let mut open: Option<usize> = None;
    let mut finished: HashSet<u64> = HashSet::new(); // killed mid-section
    let mut next_seq: HashMap<u64, u64> = HashMap::new();
    let mut cut = 0;
    let mut close_killed = |idx: usize,
                            sections: &Vec<Section>,
                            finished: &mut HashSet<u64>,
                            violations: &mut Vec<String>,
                            why: &str| {
        let s = &sections[idx];
        if killed.contains(&s.id) {
            finished.insert(s.id);
            cut += 1;
        } else {
            violations.push(format!(
                "OVERLAP: section {}/{} of a worker that was never killed had no exit before {why}",
                s.id, s.seq
            ));
        }
    };
    for (i, ev) in evs.iter().enumerate() {
        match *ev {
            Ev::Enter { id, seq, n } => {
                if let Some(prev) = open.take() {
                    close_killed(
                        prev,
                        &sections,
                        &mut finished,
                        &mut violations,
                        &format!("event {i} ({ev:?})"),
                    );
                }
                if finished.contains(&id) {
                    violations.push(format!("worker {id} entered again after it was killed"));
                }
                let want = next_seq.entry(id).or_insert(0);
                if seq != *want {
                    violations.push(format!("worker {id}: section {seq}, expected {want}"));
                }
                *want = seq + 1;
                if !(1..=3).contains(&n) {
                    violations.push(format!("worker {id}: section {seq} announces {n} lines"));
                }
                open = Some(sections.len());
                sections.push(Section {
                    id,
                    seq,
                    n,
                    completed: false,
                });
            }
            Ev::Exit { id, seq } => match open.take() {
                Some(idx) if sections[idx].id == id && sections[idx].seq == seq => {
                    sections[idx].completed = true;
                }
                other => violations.push(format!(
                    "OVERLAP: exit {id}/{seq} at event {i} while the open section was {:?}",
                    other.map(|x| (sections[x].id, sections[x].seq))
                )),
            },
            Ev::Reset { owner } => {
                if !killed.contains(&owner) {
                    violations.push(format!(
                        "OVERLAP: the marker of worker {owner}, never killed, was reset at event {i}"
                    ));
                }
                if let Some(idx) = open.take() {
                    if sections[idx].id != owner {
                        violations.push(format!(
                            "OVERLAP: marker of {owner} reset while section {}/{} was open",
                            sections[idx].id, sections[idx].seq
                        ));
                    }
                    close_killed(
                        idx,
                        &sections,
                        &mut finished,
                        &mut violations,
                        "a marker reset",
                    );
                }
            }
        }
    }
    if let Some(idx) = open {
        close_killed(idx, &sections, &mut finished, &mut violations, "the end");
    }
    (sections, violations, cut)
}

/// The byte that fills line `k` of section `id`/`seq` (the worker's format).
fn fill(id: u64, seq: u64, k: u64) -> char {
    (b'a' + ((id + seq + k) % 26) as u8) as char
}

/// Check the transcript against the replayed sections. Returns violations.
fn check_transcript(text: &str, sections: &[Section]) -> Vec<String> {
    let mut violations = Vec::new();
    if !text.is_empty() && !text.ends_with('\n') {
        violations.push("transcript ends with a partial line".into());
    }
    // Runs of consecutive lines of one section, in file order.
    let mut runs: Vec<((u64, u64), Vec<u64>)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split(' ').collect();
        let parsed = (|| {
            if f.len() != 6 {
                return None;
            }
            let nums: Vec<u64> = f[..5]
                .iter()
                .map(|s| s.parse().ok())
                .collect::<Option<_>>()?;
            let (id, seq, k, n, len) = (nums[0], nums[1], nums[2], nums[3], nums[4]);
            let body = f[5];
            (body.len() as u64 == len && body.chars().all(|c| c == fill(id, seq, k)) && k < n)
                .then_some((id, seq, k))
        })();
        let Some((id, seq, k)) = parsed else {
            violations.push(format!("torn or foreign line {}: {line:?}", i + 1));
            continue;
        };
        match runs.last_mut() {
            Some((key, ks)) if *key == (id, seq) => ks.push(k),
            _ => runs.push(((id, seq), vec![k])),
        }
    }
    let expected: Vec<&Section> = sections.iter().filter(|s| s.completed || s.n > 0).collect();
    let mut seen_runs = HashSet::new();
    let mut ei = 0;
    for ((id, seq), ks) in &runs {
        if !seen_runs.insert((*id, *seq)) {
            violations.push(format!(
                "section {id}/{seq} appears in two places (interleaving)"
            ));
            continue;
        }
        // Skip killed sections that wrote nothing.
        while ei < expected.len()
            && (expected[ei].id, expected[ei].seq) != (*id, *seq)
            && !expected[ei].completed
        {
            ei += 1;
        }
        let Some(s) = expected.get(ei) else {
            violations.push(format!(
                "lines of {id}/{seq} with no entered section (or out of order)"
            ));
            continue;
        };
        if (s.id, s.seq) != (*id, *seq) {
            violations.push(format!(
                "transcript order: lines of {id}/{seq} where completed section {}/{} was expected",
                s.id, s.seq
            ));
            continue;
        }
        let prefix: Vec<u64> = (0..ks.len() as u64).collect();
        if *ks != prefix {
            violations.push(format!("section {id}/{seq}: line numbers {ks:?}"));
        } else if s.completed && ks.len() as u64 != s.n {
            violations.push(format!(
                "completed section {id}/{seq}: {} of {} lines present",
                ks.len(),
                s.n
            ));
        } else if ks.len() as u64 > s.n {
            violations.push(format!("section {id}/{seq}: more lines than announced"));
        }
        ei += 1;
    }
    // Completed sections after the last run (or skipped) must not be missing.
    for s in &expected[ei.min(expected.len())..] {
        if s.completed {
            violations.push(format!("completed section {}/{} has no lines", s.id, s.seq));
        }
    }
    violations
}

/// The torn-line sidecars (`s.jsonl.torn-<time>`) in `dir`: where a
/// worker was killed in the middle of a line, the next holder moves that
/// fragment out of the transcript into one. Each fragment must be a strict
/// prefix (no newline) of the next line of a section that a kill cut (the
/// line after the ones of that section in the transcript), one section per
/// fragment. The holder moving it out may be killed too: before it wrote
/// the sidecar (an empty one is left, at most one per kill), or after a
/// copy, before it cut the transcript (the next holder moves the same
/// fragment again: a sidecar that is a prefix of another is that copy).
/// Returns the sidecars' names and the violations.
fn torn_sidecars(
    dir: &Path,
    transcript: &str,
    sections: &[Section],
    kills: u64,
) -> (Vec<String>, Vec<String>) {
    let mut present: HashMap<(u64, u64), u64> = HashMap::new();
    for line in transcript.lines() {
        let mut f = line.split(' ').map(|x| x.parse::<u64>().ok());
        if let (Some(Some(id)), Some(Some(seq))) = (f.next(), f.next()) {
            *present.entry((id, seq)).or_default() += 1;
        }
    }
    // The line a cut section would have written next, up to its length
    // field (the length and the fill are checked below).
    let next_line = |s: &Section| {
        let k = present.get(&(s.id, s.seq)).copied().unwrap_or(0);
        (k < s.n).then(|| {
            (
                format!("{} {} {k} {} ", s.id, s.seq, s.n),
                fill(s.id, s.seq, k),
            )
        })
    };
    let fits = |frag: &str, head: &str, fill: char| {
        if frag.len() <= head.len() {
            return head.starts_with(frag);
        }
        let Some(rest) = frag.strip_prefix(head) else {
            return false;
        };
        let (len, body) = rest.split_once(' ').unwrap_or((rest, ""));
        !len.is_empty()
            && len.bytes().all(|b| b.is_ascii_digit())
            && body.chars().all(|c| c == fill)
            && (rest.len() == len.len() || len.parse::<usize>().is_ok_and(|l| body.len() <= l))
    };
    let mut sidecars: Vec<(String, String)> = names(dir)
        .into_iter()
        .filter(|n| n.starts_with("s.jsonl.torn-"))
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap_or_default();
            (n, String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect();
    // Longest first: a copy cut short is then a prefix of one already
    // matched, and a short fragment cannot take a longer one's section.
    sidecars.sort_by_key(|(_, frag)| std::cmp::Reverse(frag.len()));
    let mut violations = Vec::new();
    let mut used = HashSet::new();
    let mut matched: Vec<&str> = Vec::new();
    let mut empty = 0;
    for (n, frag) in &sidecars {
        if frag.is_empty() {
            empty += 1;
            continue;
        }
        if frag.contains('\n') {
            violations.push(format!(
                "torn-line sidecar {n} holds a whole line: {frag:?}"
            ));
            continue;
        }
        if matched.iter().any(|m| m.starts_with(frag.as_str())) {
            continue;
        }
        let owner = sections
            .iter()
            .filter(|s| !s.completed && !used.contains(&(s.id, s.seq)))
            .find(|s| next_line(s).is_some_and(|(head, f)| fits(frag, &head, f)));
        match owner {
            Some(s) => {
                used.insert((s.id, s.seq));
                matched.push(frag);
            }
            None => violations.push(format!(
                "torn-line sidecar {n} holds {frag:?}, not the start of the next line of a section cut by a kill"
            )),
        }
    }
    if empty > kills {
        violations.push(format!(
            "{empty} empty torn-line sidecars but only {kills} kills"
        ));
    }
    (sidecars.into_iter().map(|(n, _)| n).collect(), violations)
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with(".s.jsonl.lock.") && n.ends_with(".tmp"))
        .map(|n| dir.join(n))
        .collect()
}

fn run_chaos(cfg: &Config) {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!(
        "chaos {}: seed {seed} (CHAOS_SEED to replay the killer)",
        cfg.name
    );
    let mut rng = Rng(seed);
    let root = tempfile::tempdir().unwrap();
    let sessions = root.path().join("sessions");
    let witness = root.path().join("witness");
    std::fs::create_dir(&sessions).unwrap();
    std::fs::create_dir(&witness).unwrap();
    let mut run = Run {
        target: sessions.join("s.jsonl"),
        sessions,
        witness,
        workers: Vec::new(),
        next_id: 0,
        killed: HashSet::new(),
        kills: 0,
        kills_holder: 0,
        kills_random: 0,
        kills_double: 0,
        stops: 0,
        stops_holder: 0,
        failures: Vec::new(),
    };
    let log = run.witness.join("witness.log");
    for _ in 0..cfg.workers {
        run.spawn();
    }
    let start = Instant::now();
    let mut last_count = Instant::now();
    let mut entered = 0;
    loop {
        let elapsed = start.elapsed();
        if last_count.elapsed() > Duration::from_millis(250) {
            entered = count_entered(&log);
            last_count = Instant::now();
        }
        if elapsed >= cfg.min_time && entered >= cfg.min_sections && run.kills >= cfg.min_kills {
            break;
        }
        if elapsed >= cfg.max_time || !run.failures.is_empty() {
            break;
        }
        run.check_exits();
        std::thread::sleep(Duration::from_millis(5 + rng.below(40)));
        let n = run.workers.len() as u64;
        match rng.below(100) {
            // The holder, wherever it is: mid-hold, mid-append, mid-release.
            0..=44 => {
                let idx = run.holder().unwrap_or_else(|| rng.below(n) as usize);
                run.kills_holder += 1;
                run.kill(idx);
            }
            // Anyone: mostly waiters (mid-acquire, parked on inotify).
            45..=69 => {
                run.kills_random += 1;
                run.kill(rng.below(n) as usize);
            }
            // The holder, then a moment later a waiter: the waiters are
            // reclaiming the dead holder's lock right then (mid-reclaim).
            70..=79 => {
                let idx = run.holder().unwrap_or_else(|| rng.below(n) as usize);
                run.kill(idx);
                let spin = Instant::now();
                let wait = Duration::from_micros(rng.below(3000));
                while spin.elapsed() < wait {
                    std::hint::spin_loop();
                }
                run.kills_double += 1;
                run.kill(rng.below(n) as usize);
            }
            // SIGSTOP for 5-50 ms, half the time the holder.
            _ => {
                let idx = match run.holder() {
                    Some(h) if rng.below(2) == 0 => {
                        run.stops_holder += 1;
                        h
                    }
                    _ => rng.below(n) as usize,
                };
                let pause = Duration::from_millis(5 + rng.below(46));
                run.stop_for(idx, pause);
            }
        }
    }
    let elapsed = start.elapsed();
    // Graceful end: workers finish their section and exit 0.
    std::fs::write(run.witness.join("stop"), b"").unwrap();
    for mut w in std::mem::take(&mut run.workers) {
        let status = wait_child(&mut w.child, WAIT, "chaos worker at stop");
        if !status.success() {
            run.failures
                .push(format!("worker {} ended with {status}", w.id));
        }
    }

    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let (sections, mut violations, cut) = match parse_log(&log_text) {
        Ok(evs) => replay(&evs, &run.killed),
        Err(e) => (Vec::new(), vec![e], 0),
    };
    let overlaps = violations.iter().filter(|v| v.contains("OVERLAP")).count();
    let resets = log_text.lines().filter(|l| l.starts_with("R ")).count();
    let transcript = std::fs::read_to_string(&run.target).unwrap_or_default();
    violations.extend(check_transcript(&transcript, &sections));
    let lines = transcript.lines().count();
    let completed = sections.iter().filter(|s| s.completed).count();

    // Leftovers in the lock directory.
    let temps = temp_files(&run.sessions);
    let lock = lock_of(&run.target);
    let lock_left = lock.exists();
    let (torn, torn_violations) = torn_sidecars(&run.sessions, &transcript, &sections, run.kills);
    violations.extend(torn_violations);
    for n in names(&run.sessions) {
        if n != "s.jsonl"
            && n != "s.jsonl.lock"
            && !temps.iter().any(|t| t.ends_with(&n))
            && !torn.contains(&n)
        {
            violations.push(format!("unexpected file left in the lock directory: {n}"));
        }
    }
    // A queue file may be left by workers killed while queued (see
    // docs/protocol.md, "The queue"); with every worker dead, nobody may
    // still hold or wait on its flock.
    let mut queue = lock.as_os_str().to_owned();
    queue.push(".queue");
    let queue = PathBuf::from(queue);
    if queue.exists() && !flock_free(&queue) {
        violations.push("the lock queue is still flocked after every worker died".into());
    }
    for t in &temps {
        if !flock_free(t) {
            violations.push(format!(
                "temp file {} still flocked after every worker died",
                t.display()
            ));
        }
    }
    if temps.len() as u64 > run.kills {
        violations.push(format!(
            "{} temp files but only {} kills",
            temps.len(),
            run.kills
        ));
    }
    let leftover_verdict = if lock_left {
        let insp = session_lock::inspect(&run.target, &LockOptions::new())
            .expect("inspect leftover lock")
            .expect("lock still there");
        format!("{:?} {:?}", insp.verdict, insp.reasons)
    } else {
        "none".into()
    };
    // The lock is free and acquirable (a killed last holder's file is reclaimed).
    match session_lock::try_acquire_with(&run.target, &LockOptions::new()) {
        Ok(g) => {
            assert_eq!(g.record().pid, Some(std::process::id()));
            g.release().unwrap();
            assert!(!lock.exists(), "release left the lock file behind");
            session_lock::close_idle();
        }
        Err(e) => violations.push(format!("lock not acquirable at the end: {e}")),
    }
    // Temp files: swept once older than the grace. Listed again: our
    // acquire above may have taken over a killed worker's slot (the lowest
    // free one, as the protocol says) and `close_idle` removed it.
    let temps = temp_files(&run.sessions);
    for t in &temps {
        age_file(t, Duration::from_secs(60));
    }
    let swept = session_lock::sweep::sweep(&run.sessions, &Default::default()).unwrap();
    if swept.temps_removed.len() != temps.len() {
        violations.push(format!(
            "sweep removed {:?} of the temp files {temps:?}",
            swept.temps_removed
        ));
    }
    let rest: Vec<String> = names(&run.sessions)
        .into_iter()
        .filter(|n| !torn.contains(n))
        .collect();
    if rest != vec!["s.jsonl".to_string()] {
        violations.push(format!("after sweep the lock directory holds {rest:?}"));
    }

    eprintln!(
        "chaos {}: {:.1}s, {} workers at a time, {} spawned; critical sections: {} entered, {} completed, {} cut by a kill; \
         kills: {} (holder {}, any {}, holder+reclaimer pairs {}); stops: {} (holder {}); marker resets: {}; \
         overlaps: {}; lines: {}; temp files left: {}; torn lines moved out: {}; lock left: {}",
        cfg.name,
        elapsed.as_secs_f64(),
        cfg.workers,
        run.next_id,
        sections.len(),
        completed,
        cut,
        run.kills,
        run.kills_holder,
        run.kills_random,
        run.kills_double,
        run.stops,
        run.stops_holder,
        resets,
        overlaps,
        lines,
        temps.len(),
        torn.len(),
        leftover_verdict,
    );
    violations.extend(run.failures.iter().cloned());
    assert!(
        violations.is_empty(),
        "chaos {} (seed {seed}): {} violations:\n{}",
        cfg.name,
        violations.len(),
        violations[..violations.len().min(40)].join("\n")
    );
    assert!(
        sections.len() as u64 >= cfg.min_sections && run.kills >= cfg.min_kills,
        "chaos {}: only {} sections and {} kills within {:?}",
        cfg.name,
        sections.len(),
        run.kills,
        cfg.max_time
    );
}

#[test]
fn chaos_quick() {
    if std::env::var("CHAOS_LONG").as_deref() == Ok("1") {
        run_chaos(&LONG);
    } else {
        run_chaos(&QUICK);
    }
}

#[test]
#[ignore = "long chaos run (minutes): cargo test --test chaos -- --ignored, or CHAOS_LONG=1"]
fn chaos_long() {
    run_chaos(&LONG);
}

#[test]
fn replay_flags_an_overlap_and_accepts_a_killed_section() {
    let killed: HashSet<u64> = [1].into_iter().collect();
    let e = |id, seq| Ev::Enter { id, seq, n: 1 };
    let x = |id, seq| Ev::Exit { id, seq };
    // 1 killed mid-section, then 2 resets its marker and runs: fine.
    let ok = [
        e(0, 0),
        x(0, 0),
        e(1, 0),
        Ev::Reset { owner: 1 },
        e(2, 0),
        x(2, 0),
    ];
    let (s, v, cut) = replay(&ok, &killed);
    assert!(v.is_empty(), "{v:?}");
    assert_eq!((s.len(), cut), (3, 1));
    // 0 never killed, yet 2 entered before 0 exited: overlap.
    let bad = [e(0, 0), e(2, 0), x(2, 0), x(0, 0)];
    let (_, v, _) = replay(&bad, &killed);
    assert!(v.iter().any(|m| m.contains("OVERLAP")), "{v:?}");
    // A killed worker cannot come back.
    let (_, v, _) = replay(&[e(1, 0), e(1, 1)], &killed);
    assert!(!v.is_empty());
    // Transcript: a torn line and a duplicate are caught.
    let secs = [Section {
        id: 0,
        seq: 0,
        n: 1,
        completed: true,
    }];
    let good = format!("0 0 0 1 3 {}\n", "aaa");
    assert!(check_transcript(&good, &secs).is_empty());
    assert!(!check_transcript("0 0 0 1 3 aa\n", &secs).is_empty());
    assert!(!check_transcript(&format!("{good}{good}"), &secs).is_empty());
    assert!(!check_transcript("", &secs).is_empty());
}

#[test]
fn torn_sidecars_must_be_the_start_of_a_cut_sections_next_line() {
    let secs = [
        Section {
            id: 2,
            seq: 5,
            n: 3,
            completed: false,
        },
        Section {
            id: 3,
            seq: 0,
            n: 1,
            completed: true,
        },
    ];
    // Section 2/5 wrote its line 0 whole, then was killed in line 1 (fill
    // 'a' + (2 + 5 + 1) % 26 = 'i').
    let transcript = "2 5 0 3 4 hhhh\n3 0 0 1 2 dd\n";
    let check = |frags: &[&str], kills: u64| {
        let dir = tempfile::tempdir().unwrap();
        for (i, f) in frags.iter().enumerate() {
            std::fs::write(dir.path().join(format!("s.jsonl.torn-2026T{i}")), f).unwrap();
        }
        torn_sidecars(dir.path(), transcript, &secs, kills)
    };
    for ok in [
        "2",
        "2 5 1 3",
        "2 5 1 3 1",
        "2 5 1 3 12 iii",
        "2 5 1 3 3 iii",
    ] {
        let (found, v) = check(&[ok], 1);
        assert!(v.is_empty() && found.len() == 1, "{ok:?}: {v:?}");
    }
    for bad in [
        "2 5 0 3",        // line 0 is already whole in the transcript
        "3 0 0",          // a completed section lost nothing
        "2 5 1 3 2 iii",  // longer than its length field
        "2 5 1 3 9 ihi",  // wrong fill
        "2 5 1 3 9 ii\n", // a whole line is not torn
        "x",              // foreign
    ] {
        let (_, v) = check(&[bad], 1);
        assert_eq!(v.len(), 1, "{bad:?} accepted");
    }
    // A mover killed after its copy: the next one copies the same
    // fragment again (whole, or the first copy was cut short).
    let (found, v) = check(&["2 5 1", "2 5 1 3 7 ii", "2 5 1 3 7 ii"], 2);
    assert_eq!((found.len(), v.len()), (3, 0), "{v:?}");
    // One cut section cannot have lost two different lines.
    let (_, v) = check(&["2 5 1 3 7 ii", "2 5 1 3 8"], 2);
    assert_eq!(v.len(), 1, "{v:?}");
    // A mover killed before it wrote: an empty sidecar, one per kill.
    assert!(check(&["", ""], 2).1.is_empty());
    assert_eq!(check(&["", ""], 1).1.len(), 1);
}
