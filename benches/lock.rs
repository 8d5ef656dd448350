//! Criterion benches of the lock's hot paths, each next to a raw baseline,
//! for comparing changes with `cargo bench --bench lock`.
//!
//! * `uncontended`: acquire + release; raw: exclusive create + write the
//!   record + close + unlink.
//! * `inspect`: inspect a lock held by another thread of this process; raw:
//!   read + parse with `serde_json` + `kill(pid, 0)` + `/proc/<pid>/stat`.
//! * `handoff`: two threads hand the lock back and forth (each handoff waits
//!   until the other thread is blocked in acquire); raw: the same with
//!   `flock` on a persistent file.
//! * `contention`: 4 threads doing guarded cycles (acquire, append a line,
//!   release); raw: a `flock`-guarded `O_APPEND` loop.
//!
//! Everything here is in one process; `session-lock bench` measures the same
//! operations across processes, against the same baselines.

#[cfg(unix)]
mod imp {
    use criterion::{Criterion, criterion_group};
    use session_lock::{LockGuard, LockOptions};
    use std::fs::{File, OpenOptions};
    use std::hint::black_box;
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Barrier, mpsc};
    use std::time::{Duration, Instant};

    /// Threads of the contention bench.
    const CONTENDERS: u64 = 4;

    fn opts() -> LockOptions {
        LockOptions::new()
            .with_timeout(Duration::from_secs(30))
            .with_label("criterion")
    }

    fn config() -> Criterion {
        Criterion::default()
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1))
            .sample_size(20)
    }

    fn open_rw(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .expect("open a file in the bench's temp dir")
    }

    fn open_append(path: &Path) -> File {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .expect("open a transcript in the bench's temp dir")
    }

    /// The raw floor of an uncontended lock.
    fn raw_lock_cycle(lock: &Path, record: &[u8]) {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(lock)
            .expect("raw create: nobody else uses this path");
        f.write_all(record).expect("raw write");
        drop(f);
        std::fs::remove_file(lock).expect("raw unlink");
    }

    /// The raw inspection: read, parse, is the pid alive, its start time.
    fn raw_inspect(lock: &Path) -> (bool, Option<u64>) {
        let bytes = std::fs::read(lock).expect("the holder keeps the lock file");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("our record is JSON");
        let pid = v
            .get("pid")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        // SAFETY: signal 0 only checks existence and permission.
        let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
        let alive = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        let start = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s[s.rfind(')')? + 1..]
                    .split_whitespace()
                    .nth(19)?
                    .parse()
                    .ok()
            });
        (alive, start)
    }

    /// A lock two threads can hand back and forth.
    trait PingLock: Send + 'static {
        type Held;
        fn lock(&mut self) -> Self::Held;
        fn unlock(&mut self, held: Self::Held);
    }

    /// This crate's lock on one transcript.
    struct Ours(PathBuf);

    impl PingLock for Ours {
        type Held = LockGuard;
        fn lock(&mut self) -> LockGuard {
            session_lock::acquire_with(&self.0, &opts()).expect("acquire within 30 s")
        }
        fn unlock(&mut self, held: LockGuard) {
            held.release().expect("release");
        }
    }

    /// A raw flock on a persistent file (one open file description each).
    struct Flock(File);

    impl PingLock for Flock {
        type Held = ();
        fn lock(&mut self) {
            rustix::fs::flock(&self.0, rustix::fs::FlockOperation::LockExclusive).expect("flock");
        }
        fn unlock(&mut self, (): ()) {
            rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock).expect("unlock");
        }
    }

    fn wait_until(cond: impl Fn() -> bool) {
        while !cond() {
            std::thread::yield_now();
        }
    }

    /// Two threads alternate strictly: the holder releases only once the
    /// other is waiting in `lock`, and tries again only after the other
    /// took it. Returns the time for `handoffs` handoffs.
    fn ping_pong<L: PingLock>(handoffs: u64, a: L, b: L) -> Duration {
        let waiting = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let done = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let start = Arc::new(Barrier::new(3));
        let rounds = [handoffs.div_ceil(2), handoffs / 2];
        let threads: Vec<_> = [a, b]
            .into_iter()
            .enumerate()
            .map(|(me, mut lock)| {
                let (waiting, done, start) = (waiting.clone(), done.clone(), start.clone());
                let rounds = rounds[me];
                std::thread::spawn(move || {
                    let other = 1 - me;
                    let other_gone = || done[other].load(Ordering::SeqCst);
                    start.wait();
                    for _ in 0..rounds {
                        waiting[me].store(true, Ordering::SeqCst);
                        let held = lock.lock();
                        waiting[me].store(false, Ordering::SeqCst);
                        wait_until(|| waiting[other].load(Ordering::SeqCst) || other_gone());
                        lock.unlock(held);
                        wait_until(|| !waiting[other].load(Ordering::SeqCst) || other_gone());
                    }
                    done[me].store(true, Ordering::SeqCst);
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        for t in threads {
            t.join().expect("a ping-pong thread panicked");
        }
        t0.elapsed()
    }

    /// `iters` guarded cycles split over [`CONTENDERS`] threads.
    fn contend(iters: u64, cycle: impl Fn(u64, u64) + Send + Sync + 'static) -> Duration {
        let cycle = Arc::new(cycle);
        let start = Arc::new(Barrier::new(CONTENDERS as usize + 1));
        let threads: Vec<_> = (0..CONTENDERS)
            .map(|id| {
                let (cycle, start) = (cycle.clone(), start.clone());
                let mine = iters / CONTENDERS + u64::from(id < iters % CONTENDERS);
                std::thread::spawn(move || {
                    start.wait();
                    for seq in 0..mine {
                        cycle(id, seq);
                    }
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        for t in threads {
            t.join().expect("a contention thread panicked");
        }
        t0.elapsed()
    }

    fn line(id: u64, seq: u64) -> String {
        format!(r#"{{"id":{id},"seq":{seq},"text":"the quick brown fox jumps over the lazy dog"}}"#)
    }

    fn uncontended(c: &mut Criterion) {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("u.jsonl");
        let raw_lock = dir.path().join("raw.jsonl.lock");
        let o = opts();
        let record = {
            let g = session_lock::acquire_with(&target, &o).expect("acquire");
            let r = std::fs::read(g.lock_path()).expect("read own record");
            g.release().expect("release");
            r
        };
        let mut g = c.benchmark_group("uncontended");
        g.bench_function("ours", |b| {
            b.iter(|| {
                let guard = session_lock::acquire_with(&target, &o).expect("acquire");
                guard.release().expect("release");
            })
        });
        g.bench_function("raw_create_write_unlink", |b| {
            b.iter(|| raw_lock_cycle(&raw_lock, &record))
        });
        g.finish();
    }

    fn inspect(c: &mut Criterion) {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("i.jsonl");
        let lock = dir.path().join("i.jsonl.lock");
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let holder = {
            let target = target.clone();
            std::thread::spawn(move || {
                let g = session_lock::acquire_with(&target, &opts()).expect("acquire");
                ready_tx.send(()).expect("the bench thread waits for this");
                // Hold until the bench thread hangs up.
                let _ = stop_rx.recv();
                g.release().expect("release");
            })
        };
        ready_rx.recv().expect("the holder thread acquires");
        let o = LockOptions::new();
        let mut g = c.benchmark_group("inspect");
        g.bench_function("ours_lock_path", |b| {
            b.iter(|| black_box(session_lock::inspect(&lock, &o).expect("inspect")))
        });
        g.bench_function("ours_transcript_path", |b| {
            b.iter(|| black_box(session_lock::inspect(&target, &o).expect("inspect")))
        });
        g.bench_function("raw_read_parse_kill_proc", |b| {
            b.iter(|| black_box(raw_inspect(&lock)))
        });
        g.finish();
        drop(stop_tx);
        holder.join().expect("the holder thread panicked");
    }

    fn handoff(c: &mut Criterion) {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("h.jsonl");
        let flock_file = dir.path().join("h.flock");
        let mut g = c.benchmark_group("handoff");
        g.bench_function("ours", |b| {
            b.iter_custom(|iters| ping_pong(iters, Ours(target.clone()), Ours(target.clone())))
        });
        g.bench_function("raw_flock", |b| {
            b.iter_custom(|iters| {
                ping_pong(
                    iters,
                    Flock(open_rw(&flock_file)),
                    Flock(open_rw(&flock_file)),
                )
            })
        });
        g.finish();
    }

    fn contention(c: &mut Criterion) {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = Arc::new(dir.path().join("c.jsonl"));
        let raw_target = dir.path().join("raw.jsonl");
        let flock_file = dir.path().join("raw.flock");
        let mut g = c.benchmark_group("contention");
        g.bench_function("ours_4_threads", |b| {
            b.iter_custom(|iters| {
                let target = target.clone();
                contend(iters, move |id, seq| {
                    let guard = session_lock::acquire_with(&*target, &opts()).expect("acquire");
                    guard.append_line(line(id, seq)).expect("append");
                    guard.release().expect("release");
                })
            })
        });
        g.bench_function("raw_flock_4_threads", |b| {
            b.iter_custom(|iters| {
                // One open file description per thread, as in separate processes.
                let files: Arc<Vec<(File, File)>> = Arc::new(
                    (0..CONTENDERS)
                        .map(|_| (open_rw(&flock_file), open_append(&raw_target)))
                        .collect(),
                );
                contend(iters, move |id, seq| {
                    let (lock, out) = &files[id as usize];
                    let mut l = line(id, seq);
                    l.push('\n');
                    rustix::fs::flock(lock, rustix::fs::FlockOperation::LockExclusive)
                        .expect("flock");
                    (&*out).write_all(l.as_bytes()).expect("append");
                    rustix::fs::flock(lock, rustix::fs::FlockOperation::Unlock).expect("unlock");
                })
            })
        });
        g.finish();
    }

    criterion_group! {
        name = benches;
        config = config();
        targets = uncontended, inspect, handoff, contention
    }
}

#[cfg(unix)]
criterion::criterion_main!(imp::benches);

/// The benches use Unix APIs; elsewhere there is nothing to run.
#[cfg(not(unix))]
fn main() {}
