//! `session-lock exec` holds the lock for exactly as long as anything the
//! command started can write: real processes, SIGKILL of the `exec` front,
//! max hold, a removed lock file, forwarded signals, and a chaos run that
//! kills fronts at random.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use session_lock::{ErrorKind, LockOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `session-lock exec ARGS` with its stderr in `err` (a file: a pipe would
/// stay open as long as the command's tree).
fn spawn_exec(args: &[&str], err: &Path) -> Child {
    bin()
        .arg("exec")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(err).unwrap())
        .spawn()
        .expect("spawn session-lock exec")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn read_pid(p: &Path) -> u32 {
    wait_for_path(p, WAIT, "pid file");
    let start = Instant::now();
    loop {
        if let Ok(pid) = read(p).trim().parse() {
            return pid;
        }
        assert!(start.elapsed() < WAIT, "{} never held a pid", p.display());
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Alive and not a zombie, from /proc.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|t| {
        let after = &t[t.rfind(')').unwrap() + 1..];
        !matches!(after.split_whitespace().next(), Some("Z" | "X"))
    })
}

/// What a client of the reference protocol concludes from the record
/// alone: it may enter iff the lock file is gone or its pid is dead (or
/// recycled: another start time).
fn reference_may_enter(lock: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(lock) else {
        return true;
    };
    let v: serde_json::Value = serde_json::from_str(&text).expect("a complete record");
    let pid = v["pid"].as_u64().expect("record pid") as u32;
    if !alive(pid) {
        return true;
    }
    v["starttime"]
        .as_u64()
        .is_some_and(|st| st != starttime(pid))
}

/// Our own contender's view: `try_acquire` must say Busy.
fn assert_busy(t: &Path, when: &str) {
    match session_lock::try_acquire_with(t, &LockOptions::new()) {
        Err(e) if e.kind() == ErrorKind::Busy => {}
        Ok(_) => panic!("{when}: our contender got the lock"),
        Err(e) => panic!("{when}: unexpected error {e}"),
    }
    assert!(
        !reference_may_enter(&lock_of(t)),
        "{when}: a pid-judging client would enter"
    );
}

fn wait_gone(pid: u32, what: &str) {
    let start = Instant::now();
    while alive(pid) {
        assert!(start.elapsed() < WAIT, "{what} (pid {pid}) still alive");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_killed_exec_keeps_the_lock_until_its_whole_tree_has_exited() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = d.join("s.jsonl");
    // The command starts a grandchild that outlives it, then waits for
    // cmd-go; the grandchild waits for gc-go and then writes its last line.
    let script = format!(
        "cd '{d}' || exit 1; (sh -c 'echo $$ > gc.pid; while [ ! -e gc-go ] && [ -d {d} ]; do sleep 0.01; done; echo grandchild-last >> {t}') & \
         echo $$ > cmd.pid; while [ ! -e cmd-go ] && [ -d '{d}' ]; do sleep 0.01; done; echo command-last >> {t}",
        d = d.display(),
        t = t.display()
    );
    let mut front = spawn_exec(&[s(&t), "--", "sh", "-c", &script], &d.join("err"));
    let cmd = read_pid(&d.join("cmd.pid"));
    let gc = read_pid(&d.join("gc.pid"));
    front.kill().unwrap();
    wait_child(&mut front, WAIT, "killed exec front");
    assert_busy(&t, "front killed, command running");
    std::fs::write(d.join("cmd-go"), "").unwrap();
    wait_gone(cmd, "command");
    assert_busy(&t, "command exited, grandchild running");
    std::fs::write(d.join("gc-go"), "").unwrap();
    let guard = session_lock::acquire_with(&t, &LockOptions::new().with_timeout(WAIT))
        .expect("lock free once the tree has exited");
    assert!(
        !alive(gc),
        "grandchild still alive after the lock was freed"
    );
    assert_eq!(read(&t), "command-last\ngrandchild-last\n");
    guard.release().unwrap();
}

/// Whether nobody holds a `flock` on `path` (tried without blocking, and
/// dropped again at once).
#[test]
fn a_killed_holder_leaves_the_witness_with_the_command_tree_and_waiters_keep_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = d.join("s.jsonl");
    let script = format!(
        "cd '{d}' || exit 1; echo $$ > cmd.pid; while [ ! -e cmd-go ] && [ -d '{d}' ]; do sleep 0.01; done; echo command-last >> {t}",
        d = d.display(),
        t = t.display()
    );
    let mut front = spawn_exec(&[s(&t), "--", "sh", "-c", &script], &d.join("err"));
    let cmd = read_pid(&d.join("cmd.pid"));
    // The holder is the pid in the record; kill it, not the front.
    let text = read(&lock_of(&t));
    let v: serde_json::Value = serde_json::from_str(&text).expect("a complete record");
    let holder = v["pid"].as_u64().expect("record pid") as i32;
    // SAFETY: kill(2) with a pid read from our own holder's record.
    assert_eq!(unsafe { libc::kill(holder, libc::SIGKILL) }, 0);
    wait_gone(holder as u32, "killed holder");
    assert!(alive(cmd), "the command died with its holder");
    // The command's tree inherited the witness.
    assert!(
        !flock_free(&lock_of(&t)),
        "the witness was released while the command runs"
    );
    // Our contenders judge by the witness (a pid-judging client would
    // enter now: its pid is the holder's, which we killed).
    match session_lock::try_acquire_with(&t, &LockOptions::new()) {
        Err(e) if e.kind() == ErrorKind::Busy => {}
        Ok(_) => panic!("holder killed, command running: our contender got the lock"),
        Err(e) => panic!("unexpected error {e}"),
    }
    // A blocking contender waits in the queue until the tree is gone.
    let (tx, rx) = std::sync::mpsc::channel();
    let t2 = t.clone();
    let waiter = std::thread::spawn(move || {
        let r = session_lock::acquire_with(&t2, &LockOptions::new().with_timeout(WAIT));
        let _ = tx.send(());
        (r, session_lock::__private::wait_wakeups())
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a contender got the lock while the command runs"
    );
    std::fs::write(d.join("cmd-go"), "").unwrap();
    rx.recv_timeout(WAIT)
        .expect("the contender got nothing after the command exited");
    let (guard, (_, by_timer)) = waiter.join().unwrap();
    let guard = guard.expect("lock free once the tree has exited");
    // The tree's last close of the witness (or of the death sentinel that
    // goes with an unnamed witness) is an event under the lock name: the
    // waiter is woken by it, not by its safety re-check.
    assert_eq!(by_timer, 0, "the waiter was woken by a timer");
    assert!(!alive(cmd), "command still alive after the lock was freed");
    assert_eq!(read(&t), "command-last\n");
    guard.release().unwrap();
    wait_child(&mut front, WAIT, "exec front");
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn max_hold_stops_the_whole_tree_before_the_next_holder_enters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = d.join("s.jsonl");
    let ts = d.join("ts");
    // A grandchild that ignores SIGTERM and writes timestamps until killed.
    let script = format!(
        "sh -c 'trap \"\" TERM; echo $$ > {gc}; while :; do date +%s%N >> {ts}; sleep 0.005; done' & wait",
        gc = d.join("gc.pid").display(),
        ts = ts.display()
    );
    let mut front = spawn_exec(
        &[
            "--max-hold",
            "300ms",
            "--kill-after",
            "300ms",
            s(&t),
            "--",
            "sh",
            "-c",
            &script,
        ],
        &d.join("err"),
    );
    let gc = read_pid(&d.join("gc.pid"));
    let guard = session_lock::acquire_with(&t, &LockOptions::new().with_timeout(WAIT))
        .expect("the next holder enters once the tree is gone");
    let entered = now_ns();
    assert!(!alive(gc), "a process of the first tree outlived its lock");
    let status = wait_child(&mut front, WAIT, "exec front");
    assert_eq!(status.code(), Some(4), "{}", read(&d.join("err")));
    assert!(
        read(&d.join("err")).contains("max hold"),
        "{}",
        read(&d.join("err"))
    );
    let stamps: Vec<u128> = read(&ts).lines().filter_map(|l| l.parse().ok()).collect();
    assert!(
        stamps.len() > 3,
        "the grandchild wrote too little: {stamps:?}"
    );
    let last = *stamps.iter().max().unwrap();
    assert!(
        last < entered,
        "a timestamp {last} was written after the next holder entered at {entered}"
    );
    guard.release().unwrap();
}

#[test]
fn a_removed_lock_file_stops_the_command_and_exec_exits_4_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = d.join("s.jsonl");
    let script = format!("echo $$ > {}; exec sleep 60", d.join("cmd.pid").display());
    let mut front = spawn_exec(&[s(&t), "--", "sh", "-c", &script], &d.join("err"));
    let cmd = read_pid(&d.join("cmd.pid"));
    std::fs::remove_file(lock_of(&t)).unwrap();
    let removed = Instant::now();
    let status = wait_child(&mut front, WAIT, "exec front");
    let took = removed.elapsed();
    assert_eq!(status.code(), Some(4), "{}", read(&d.join("err")));
    assert!(
        took < Duration::from_secs(1),
        "exec took {took:?} to notice the removal"
    );
    let err = read(&d.join("err"));
    assert!(
        err.contains("lost the lock") && err.contains(s(&lock_of(&t))),
        "{err}"
    );
    assert!(!alive(cmd), "the command still runs without the lock");
}

#[test]
fn sigterm_to_exec_reaches_the_command_and_the_lock_stays_until_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = d.join("s.jsonl");
    let script = format!(
        "cd '{}' && trap 'echo > got-term; while [ ! -e go ] && [ -d $PWD ]; do sleep 0.01; done; exit 7' TERM; echo $$ > cmd.pid; while [ -d $PWD ]; do sleep 0.01; done",
        d.display()
    );
    let mut front = spawn_exec(&[s(&t), "--", "sh", "-c", &script], &d.join("err"));
    read_pid(&d.join("cmd.pid"));
    let front_pid = rustix::process::Pid::from_raw(front.id() as i32).unwrap();
    rustix::process::kill_process(front_pid, rustix::process::Signal::TERM).unwrap();
    wait_for_path(&d.join("got-term"), WAIT, "the command's TERM trap");
    assert_busy(&t, "command handling SIGTERM");
    std::fs::write(d.join("go"), "").unwrap();
    let status = wait_child(&mut front, WAIT, "exec front");
    assert_eq!(status.code(), Some(7), "{}", read(&d.join("err")));
    assert!(!lock_of(&t).exists(), "lock left behind");
}

/// Replay `witness.log`: sections never interleave. Returns the number of
/// sections and the number of transcript lines they wrote.
fn replay(log: &str) -> (u64, u64) {
    let mut inside: Option<(String, String)> = None;
    let (mut sections, mut lines) = (0, 0);
    for l in log.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f[..] {
            ["E", id, seq, n] => {
                assert!(
                    inside.is_none(),
                    "OVERLAP: {id}/{seq} entered while {inside:?} was inside"
                );
                inside = Some((id.into(), seq.into()));
                lines += n.parse::<u64>().unwrap();
            }
            ["X", id, seq] => {
                assert_eq!(
                    inside.take(),
                    Some((id.into(), seq.into())),
                    "exit without entry"
                );
                sections += 1;
            }
            ["R", ..] => panic!("a section's marker was left by a dead process: {l}"),
            _ => panic!("bad witness line {l:?}"),
        }
    }
    assert!(inside.is_none(), "a section never left: {inside:?}");
    (sections, lines)
}

#[test]
fn chaos_killing_exec_fronts_never_lets_two_sections_overlap() {
    const WORKERS: u64 = 3;
    let (want_sections, want_kills) = if std::env::var_os("CHAOS_LONG").is_some() {
        (5000, 2000)
    } else {
        (500, 200)
    };
    let dir = tempfile::tempdir().unwrap();
    let d: PathBuf = dir.path().to_owned();
    let t = d.join("s.jsonl");
    let started = Instant::now();
    let limit = Duration::from_secs(240);
    let slots: Vec<Arc<Mutex<Option<Child>>>> =
        (0..WORKERS).map(|_| Arc::new(Mutex::new(None))).collect();
    let kills = Arc::new(AtomicU64::new(0));
    let spawned = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            let (slot, d, t, stop, spawned) = (
                slots[id as usize].clone(),
                d.clone(),
                t.clone(),
                stop.clone(),
                spawned.clone(),
            );
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let child = bin()
                        .args(["exec", "--label", "chaos", "--timeout", "60s"])
                        .arg(&t)
                        .arg("--")
                        .arg(HELPER)
                        .args(["__chaos_section", "--id", &id.to_string()])
                        .args(["--seq", &seq.to_string(), "--dir"])
                        .arg(&d)
                        .arg(&t)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(
                            std::fs::OpenOptions::new()
                                .append(true)
                                .create(true)
                                .open(d.join(format!("err-{id}")))
                                .unwrap(),
                        )
                        .spawn()
                        .expect("spawn exec");
                    spawned.fetch_add(1, Ordering::Relaxed);
                    *slot.lock().unwrap() = Some(child);
                    let begun = Instant::now();
                    loop {
                        let mut g = slot.lock().unwrap();
                        let c = g.as_mut().unwrap();
                        if let Some(st) = c.try_wait().unwrap() {
                            // Killed by the killer (SIGKILL), or the section's status.
                            assert!(
                                st.success() || st.code().is_none(),
                                "exec {id}/{seq} failed: {st:?}"
                            );
                            *g = None;
                            break;
                        }
                        drop(g);
                        assert!(begun.elapsed() < WAIT, "exec {id}/{seq} hangs");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    seq += 1;
                }
            })
        })
        .collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    loop {
        let done = read(&d.join("witness.log"))
            .lines()
            .filter(|l| l.starts_with('X'))
            .count() as u64;
        if done >= want_sections && kills.load(Ordering::Relaxed) >= want_kills {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "chaos: only {done} sections and {} kills in {limit:?}",
            kills.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(10 + next() % 40));
        let slot = &slots[(next() % WORKERS) as usize];
        let mut g = slot.lock().unwrap();
        // Only a child not yet reaped: its pid cannot have been recycled.
        if let Some(c) = g.as_mut()
            && c.try_wait().unwrap().is_none()
        {
            c.kill().unwrap();
            kills.fetch_add(1, Ordering::Relaxed);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    // Every holder left (killed fronts' holders finish their section first).
    let guard = session_lock::acquire_with(&t, &LockOptions::new().with_timeout(WAIT))
        .expect("lock free at the end");
    let (sections, lines) = replay(&read(&d.join("witness.log")));
    let transcript = read(&t);
    for l in transcript.lines() {
        let f: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(f.len(), 4, "torn line {l:?}");
    }
    assert_eq!(transcript.lines().count() as u64, lines);
    for id in 0..WORKERS {
        let err = read(&d.join(format!("err-{id}")));
        assert!(!err.contains("OVERLAP"), "worker {id}: {err}");
    }
    guard.release().unwrap();
    eprintln!(
        "exec chaos: {sections} sections, {} fronts started, {} killed, {lines} lines, 0 overlaps, {:?}",
        spawned.load(Ordering::Relaxed),
        kills.load(Ordering::Relaxed),
        started.elapsed()
    );
}

/// Pids whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|t| {
                    let after = t.get(t.rfind(')')? + 1..)?;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

#[test]
fn an_exec_killed_while_it_waits_never_runs_its_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = d.join("s.jsonl");
    let holder = Holder::start(&t, &[]);
    let ran = d.join("ran");
    let mut front = spawn_exec(&["-w", "30", s(&t), "--", "touch", s(&ran)], &d.join("err"));
    // The holder process exists (it may or may not be waiting yet: either
    // way the command must never run).
    let start = Instant::now();
    let waiting = loop {
        if let Some(&pid) = children_of(front.id()).first() {
            break pid;
        }
        assert!(start.elapsed() < WAIT, "exec never started its holder");
        std::thread::sleep(Duration::from_millis(1));
    };
    front.kill().unwrap();
    wait_child(&mut front, WAIT, "killed exec front");
    wait_gone(waiting, "the holder of a killed front");
    assert!(holder.release().success());
    let g = session_lock::acquire_with(&t, &LockOptions::new().with_timeout(WAIT)).unwrap();
    assert!(!ran.exists(), "the command ran after its exec was killed");
    g.release().unwrap();
}

// ---- Job control (issue 22): the command belongs to the caller's job, as
// with flock(1). Each `exec` runs in a session of its own (setsid), so that
// the signals a test sends to "the job" reach nothing of the test runner.

/// `session-lock exec ARGS` as the leader of a new session (and so of a
/// process group: the job), stderr in `err`.
fn spawn_exec_job(args: &[&str], err: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let mut c = bin();
    c.arg("exec")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(err).unwrap());
    // SAFETY: setsid(2) is async-signal-safe; nothing else runs in the child
    // between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.spawn().expect("spawn session-lock exec in a new session")
}

/// A process's state letter from /proc (`T` stopped, `Z` zombie...).
fn state(pid: u32) -> Option<char> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    t[t.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// The lock, taken within `limit` or the test fails saying how long it took.
fn lock_within(t: &Path, limit: Duration, what: &str) -> session_lock::LockGuard {
    let start = Instant::now();
    match session_lock::acquire_with(t, &LockOptions::new().with_timeout(limit)) {
        Ok(g) => g,
        Err(e) => panic!(
            "{what}: the lock was not free within {limit:?} ({e}; after {:?})",
            start.elapsed()
        ),
    }
}

#[test]
fn sigkill_to_the_jobs_process_group_ends_the_command_and_frees_the_lock_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = d.join("s.jsonl");
    let script = format!("echo $$ > '{}/cmd.pid'; exec sleep 60", d.display());
    let mut front = spawn_exec_job(&[s(&t), "sh", "-c", &script], &d.join("err"));
    let cmd = read_pid(&d.join("cmd.pid"));
    assert_busy(&t, "command running");
    // `kill -9 %1`: the whole job, as a shell sends it.
    // SAFETY: kill(2) of the process group our child leads.
    assert_eq!(
        unsafe { libc::kill(-(front.id() as i32), libc::SIGKILL) },
        0
    );
    wait_child(&mut front, WAIT, "killed exec front");
    let guard = lock_within(&t, Duration::from_secs(1), "kill -9 of the job");
    assert!(!alive(cmd), "the command survived kill -9 of its job");
    guard.release().unwrap();
}

#[test]
fn sigkill_of_exec_alone_keeps_the_lock_while_the_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = d.join("s.jsonl");
    let script = format!(
        "echo $$ > cmd.pid; while [ ! -e cmd-go ] && [ -d '{d}' ]; do sleep 0.01; done; echo last >> '{t}'",
        d = d.display(),
        t = t.display()
    );
    let mut c = spawn_exec_job(
        &[
            s(&t),
            "sh",
            "-c",
            &format!("cd '{}' && {script}", d.display()),
        ],
        &d.join("err"),
    );
    let cmd = read_pid(&d.join("cmd.pid"));
    c.kill().unwrap();
    wait_child(&mut c, WAIT, "killed exec front");
    assert!(alive(cmd), "the command died with exec");
    assert_busy(&t, "exec killed, command running");
    std::fs::write(d.join("cmd-go"), "").unwrap();
    let guard = lock_within(&t, WAIT, "command finished");
    assert_eq!(read(&t), "last\n");
    guard.release().unwrap();
}

#[test]
fn a_stopped_command_ends_after_sigterm_to_exec_within_the_kill_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = d.join("s.jsonl");
    // The command ignores SIGTERM: after the grace it is killed.
    let script = format!(
        "trap '' TERM; echo $$ > '{}/cmd.pid'; while :; do sleep 0.05; done",
        d.display()
    );
    let mut front = spawn_exec_job(
        &["--kill-after", "1s", s(&t), "sh", "-c", &script],
        &d.join("err"),
    );
    let cmd = read_pid(&d.join("cmd.pid"));
    // SAFETY: kill(2) of the command our child started.
    assert_eq!(unsafe { libc::kill(cmd as i32, libc::SIGSTOP) }, 0);
    wait_until(
        WAIT,
        || state(cmd) == Some('T'),
        || format!("command {cmd} never stopped"),
    );
    let start = Instant::now();
    // SAFETY: kill(2) of our child.
    assert_eq!(unsafe { libc::kill(front.id() as i32, libc::SIGTERM) }, 0);
    // Bounded by WAIT so that a hang fails with a message; the issue's
    // bound (the 1 s grace, plus a second for the rest) is asserted after.
    let status = wait_child(
        &mut front,
        Duration::from_secs(10),
        "exec after SIGTERM with a stopped command",
    );
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "exec took {took:?} to end a stopped command (grace 1 s)"
    );
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "the command was killed after the grace"
    );
    assert!(!alive(cmd), "the stopped command survived");
    lock_within(&t, Duration::from_secs(1), "after exec ended")
        .release()
        .unwrap();
}

#[test]
fn an_interactive_command_reads_the_terminal_and_is_not_stopped_by_sigttin() {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = d.join("s.jsonl");
    let (mut master, slave) = {
        let (mut m, mut s) = (-1, -1);
        // SAFETY: openpty writes two descriptors we then own; the optional
        // name, termios and window size are left out.
        let rc = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        use std::os::fd::FromRawFd;
        // SAFETY: fresh descriptors from openpty, owned once each.
        unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) }
    };
    let script = format!("read line; echo \"got:$line\" > '{}/out'", d.display());
    let mut c = bin();
    c.args(["exec", s(&t), "sh", "-c", &script])
        .stdin(slave.try_clone().unwrap())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("err")).unwrap());
    // SAFETY: setsid and ioctl(TIOCSCTTY) on stdin (the pty's slave) are
    // async-signal-safe: exec becomes a session leader with the pty as its
    // controlling terminal, its group the foreground job, as a shell does.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut front = c.spawn().expect("spawn exec on a pty");
    drop(slave);
    master.write_all(b"hello\n").unwrap();
    let out = d.join("out");
    wait_until(
        Duration::from_secs(10),
        || read(&out).contains("got:hello"),
        || {
            let stopped: Vec<u32> = children_of(front.id())
                .into_iter()
                .flat_map(|h| std::iter::once(h).chain(children_of(h)))
                .filter(|p| state(*p) == Some('T'))
                .collect();
            format!(
                "the command never read the terminal (stopped processes: {stopped:?}; stderr {:?})",
                read(&d.join("err"))
            )
        },
    );
    let status = wait_child(&mut front, WAIT, "exec on a pty");
    assert!(status.success(), "exec on a pty: {status:?}");
    drop(master);
}

/// `status` on a lock whose recorded process (exec's holder) was SIGKILLed
/// while its command holds the witness: ALIVE says false for the dead pid,
/// and HOLDERS names the command, which keeps the lock.
#[test]
fn status_never_says_a_dead_recorded_pid_is_alive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = d.join("s.jsonl");
    let script = format!(
        "echo $$ > '{d}/cmd.pid'; while [ ! -e '{d}/cmd-go' ] && [ -d '{d}' ]; do sleep 0.01; done",
        d = d.display()
    );
    let mut front = spawn_exec_job(&[s(&t), "sh", "-c", &script], &d.join("err"));
    let cmd = read_pid(&d.join("cmd.pid"));
    let v: serde_json::Value =
        serde_json::from_str(&read(&lock_of(&t))).expect("a complete record");
    let holder = v["pid"].as_u64().expect("record pid") as u32;
    // The process the record names is recognisable in `ps`: a short title,
    // no JSON in its argv.
    let argv = std::fs::read(format!("/proc/{holder}/cmdline")).unwrap();
    let argv = String::from_utf8_lossy(&argv).replace('\0', " ");
    assert!(
        argv.starts_with("session-lock exec: holder for ") && !argv.contains('{'),
        "the holder's argv: {argv:?}"
    );
    // SAFETY: kill(2) of the holder our own exec started (its pid is in the record).
    assert_eq!(unsafe { libc::kill(holder as i32, libc::SIGKILL) }, 0);
    wait_gone(holder, "killed holder");
    assert!(alive(cmd), "the command died with its holder");
    // The default table: VERDICT PID ALIVE ... HOLDERS PATH.
    let out = bin()
        .args(["status", "--noheadings", s(&t)])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let cells: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(
        cells.get(..3),
        Some(&["held", holder.to_string().as_str(), "false"][..]),
        "status says the dead holder {holder} is alive: {table:?}"
    );
    let out = bin()
        .args(["status", "-o", "holders", "--noheadings", s(&t)])
        .output()
        .unwrap();
    let holders = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        holders.split(',').any(|p| p == cmd.to_string()),
        "HOLDERS does not name the command {cmd}: {holders:?}"
    );
    let out = bin().args(["status", "-J", s(&t)]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["locks"][0]["pidAlive"], false, "{doc}");
    assert_eq!(
        doc["locks"][0]["verdict"], "held",
        "the command's lock is not free: {doc}"
    );
    std::fs::write(d.join("cmd-go"), "").unwrap();
    lock_within(&t, WAIT, "command finished").release().unwrap();
    wait_child(&mut front, WAIT, "exec front");
}
