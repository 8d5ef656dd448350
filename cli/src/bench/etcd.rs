//! `session-lock bench --backend etcd://...`: our lock on etcd next to a
//! raw etcd transaction against the same cluster, measured in the same run.
//!
//! * `raw txn`: one put-if-absent transaction and one delete (two round
//!   trips): the least any etcd lock can cost per acquire + release.
//! * `uncontended`: `acquire_with` + `release` (lease grant, one
//!   transaction, lease revoke: three round trips).
//! * `handoff`: a holder thread releases while another thread waits on its
//!   predecessor's deletion; time from the start of `release` to the
//!   waiter holding the lock.

use super::BenchArgs;
use super::stats::Stats;
use session_lock::etcd::EtcdBackend;
use session_lock::{Backend, LockOptions};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(serde::Serialize)]
struct Row {
    name: &'static str,
    n: usize,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

fn row(name: &'static str, v: Vec<u64>) -> Row {
    let n = v.len();
    let s = Stats::of(v);
    Row {
        name,
        n,
        p50_us: s.p50,
        p99_us: s.p99,
        max_us: s.max,
    }
}

pub(crate) fn run(args: &BenchArgs, cfg: &EtcdBackend) -> i32 {
    match measure(args, cfg) {
        Ok(rows) => {
            if args.json {
                let v = serde_json::json!({"backend": cfg.url(), "rows": rows});
                println!("{v}");
            } else {
                println!(
                    "etcd backend {} (lease TTL {}s)",
                    cfg.url(),
                    cfg.lease_ttl().as_secs()
                );
                println!(
                    "{:<28} {:>6} {:>10} {:>10} {:>10}",
                    "case", "n", "p50 us", "p99 us", "max us"
                );
                for r in &rows {
                    println!(
                        "{:<28} {:>6} {:>10} {:>10} {:>10}",
                        r.name, r.n, r.p50_us, r.p99_us, r.max_us
                    );
                }
            }
            0
        }
        Err(e) => {
            eprintln!("session-lock bench: {e}");
            1
        }
    }
}

fn measure(args: &BenchArgs, cfg: &EtcdBackend) -> Result<Vec<Row>, String> {
    let n = if args.quick { 100 } else { 500 };
    let handoffs = if args.quick { 30 } else { 150 };
    let tag = format!("bench-{}-{}", std::process::id(), session_lock_nanos());
    let dir = tempfile_dir()?;
    let target = dir.join("bench.jsonl");
    let raw_key = format!("{}{tag}-raw", cfg.prefix().trim_end_matches('/'));

    // Warm up the connection.
    session_lock::etcd::raw_txn_roundtrip(cfg, &raw_key).map_err(|e| e.to_string())?;

    let mut raw = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        session_lock::etcd::raw_txn_roundtrip(cfg, &raw_key).map_err(|e| e.to_string())?;
        raw.push(t.elapsed().as_micros() as u64);
    }

    let key_cfg = cfg.clone().with_key(format!("{tag}-uncontended"));
    let opts = LockOptions::new()
        .with_timeout(Duration::from_secs(10))
        .with_backend(Backend::Etcd(key_cfg));
    let mut unc = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let g = session_lock::acquire_with(&target, &opts).map_err(|e| e.to_string())?;
        g.release().map_err(|e| e.to_string())?;
        unc.push(t.elapsed().as_micros() as u64);
    }

    let hand_cfg = cfg.clone().with_key(format!("{tag}-handoff"));
    let hand_opts = LockOptions::new()
        .with_timeout(Duration::from_secs(10))
        .with_backend(Backend::Etcd(hand_cfg.clone()));
    let mut hand = Vec::with_capacity(handoffs);
    for _ in 0..handoffs {
        let holder = session_lock::acquire_with(&target, &hand_opts).map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel();
        let waiter_opts = hand_opts.clone();
        let waiter_target = target.clone();
        let waiter = std::thread::spawn(move || {
            let r = session_lock::acquire_with(&waiter_target, &waiter_opts);
            let at = Instant::now();
            let _ = tx.send(());
            r.map(|g| (g, at))
        });
        // Release only once the waiter's key is there (it then waits on ours).
        let queued_by = Instant::now() + Duration::from_secs(10);
        loop {
            let st = session_lock::etcd::status(&hand_cfg).map_err(|e| e.to_string())?;
            if st
                .iter()
                .any(|l| l.key == format!("{tag}-handoff") && l.waiters >= 1)
            {
                break;
            }
            if Instant::now() > queued_by {
                return Err("the handoff waiter never queued".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let t = Instant::now();
        holder.release().map_err(|e| e.to_string())?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the handoff waiter never got the lock".to_string())?;
        let (g, at) = waiter
            .join()
            .map_err(|_| "waiter panicked".to_string())?
            .map_err(|e| e.to_string())?;
        hand.push(at.saturating_duration_since(t).as_micros() as u64);
        g.release().map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![
        row("raw txn (put-if-absent+del)", raw),
        row("uncontended acquire+release", unc),
        row("handoff (release->acquired)", hand),
    ])
}

fn session_lock_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let d = std::env::temp_dir().join(format!(
        "session-lock-bench-etcd-{}-{}",
        std::process::id(),
        session_lock_nanos()
    ));
    std::fs::create_dir_all(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
    Ok(d)
}
