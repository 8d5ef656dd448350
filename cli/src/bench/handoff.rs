//! Phase 2, handoff: the latency from A's release to B's acquire, between
//! two processes, for our lock and for the raw `flock`, polling and inotify
//! baselines.

use super::peer::Peer;
use super::raw::{flock, funlock, open_rw, polling_acquire, polling_record};
use super::report::Handoff;
use super::stats::{Stats, mono_ns, ratio, round, us};
use super::{
    ChildRole, HANDOFF_WARMUP, HOLD_BEFORE_RELEASE, PARK_GRACE, Plan, err_str, opts, phase, sub_dir,
};
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

/// Phase 2 in the driver: its progress lines, a failure in `errors`.
pub(super) fn run(
    dir: &Path,
    plan: &Plan,
    errors: &mut Vec<String>,
    step: &str,
) -> Option<Handoff> {
    phase(
        errors,
        step,
        "handoff",
        &format!(
            "{} handoffs between two processes (ours, raw flock), {} with polling",
            plan.handoff, plan.polling
        ),
        || handoff(&sub_dir(dir, "handoff")?, plan),
        |h| {
            format!(
                "ours p50 {:.1} us p99 {:.1} us, flock p50 {:.1} us, polling p50 {:.1} ms",
                h.ours_p50_us,
                h.ours_p99_us,
                h.flock_p50_us,
                h.polling_p50_us / 1_000.0
            )
        },
    )
}

/// What A holds during one handoff.
enum Holding {
    Ours(session_lock::LockGuard),
    Flock,
    Polling,
    Inotify(File),
}

/// Whether every thread of `pid` is asleep (state `S` in
/// `/proc/<pid>/task/*/stat`); `None` where that cannot be read.
fn all_threads_asleep(pid: u32) -> Option<bool> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks {
        let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
        let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
        if state != "S" {
            return Some(false);
        }
    }
    Some(true)
}

/// Wait (up to [`PARK_GRACE`]) until every thread of `pid` is asleep, so a
/// handoff measures a real wake-up. False if some thread kept running.
fn wait_parked(pid: u32) -> bool {
    let deadline = Instant::now() + PARK_GRACE;
    loop {
        match all_threads_asleep(pid) {
            Some(true) | None => return true,
            Some(false) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(50))
            }
            Some(false) => return false,
        }
    }
}

/// Handoff samples in nanoseconds (A = this process, B = a child), and how
/// many handoffs released while B was not (yet) asleep.
fn handoff_samples(dir: &Path, role: ChildRole, iters: usize) -> Result<(Vec<u64>, usize), String> {
    let target = match role {
        ChildRole::HandoffOurs => dir.join("handoff.jsonl"),
        ChildRole::HandoffFlock => dir.join("handoff.jsonl.flock"),
        ChildRole::HandoffInotify => dir.join("handoff-inotify.lock"),
        _ => dir.join("handoff-polling.jsonl.lock"),
    };
    let opts = opts();
    let record = polling_record();
    let flock_file = match role {
        ChildRole::HandoffFlock => Some(open_rw(&target)?),
        _ => None,
    };
    let mut peer = Peer::spawn(role, &target, &[])?;
    let warmup = HANDOFF_WARMUP.min(iters);
    let mut samples = Vec::with_capacity(iters);
    let mut not_parked = 0;
    for i in 0..warmup + iters {
        let holding = match (role, &flock_file) {
            (ChildRole::HandoffFlock, Some(f)) => {
                flock(f, &target)?;
                Holding::Flock
            }
            (ChildRole::HandoffPolling, _) => {
                polling_acquire(&target, &record)?;
                Holding::Polling
            }
            // The file exists, kept open (as our witness is) so that its
            // unlink does not also free the inode.
            (ChildRole::HandoffInotify, _) => Holding::Inotify(open_rw(&target)?),
            _ => Holding::Ours(
                session_lock::acquire_with(&target, &opts).map_err(|e| err_str("acquire", e))?,
            ),
        };
        peer.send("go")?;
        peer.expect("ready")?;
        // B is about to call acquire: give it time to park in its wait.
        std::thread::sleep(HOLD_BEFORE_RELEASE);
        let parked = wait_parked(peer.pid());
        let released = mono_ns();
        match (holding, &flock_file) {
            (Holding::Ours(g), _) => g.release().map_err(|e| err_str("release", e))?,
            (Holding::Flock, Some(f)) => funlock(f, &target)?,
            (Holding::Inotify(file), _) => {
                std::fs::remove_file(&target).map_err(|e| err_str("inotify unlink", e))?;
                drop(file);
            }
            _ => std::fs::remove_file(&target).map_err(|e| err_str("polling unlink", e))?,
        }
        let reply = peer.recv()?;
        let acquired: u64 = reply
            .parse()
            .map_err(|_| format!("handoff: bad timestamp {reply:?}"))?;
        let Some(latency) = acquired.checked_sub(released) else {
            return Err(format!(
                "{}: the waiter acquired {} ns before the holder released (overlap)",
                role.name(),
                released - acquired
            ));
        };
        if i >= warmup {
            samples.push(latency);
            not_parked += usize::from(!parked);
        }
    }
    peer.finish()?;
    Ok((samples, not_parked))
}

fn handoff(dir: &Path, plan: &Plan) -> Result<Handoff, String> {
    let (ours, ours_np) = handoff_samples(dir, ChildRole::HandoffOurs, plan.handoff)?;
    let (flock, flock_np) = handoff_samples(dir, ChildRole::HandoffFlock, plan.handoff)?;
    let (polling, polling_np) = handoff_samples(dir, ChildRole::HandoffPolling, plan.polling)?;
    let (inotify, inotify_np) = handoff_samples(dir, ChildRole::HandoffInotify, plan.handoff)?;
    let (ours, flock, polling) = (Stats::of(ours), Stats::of(flock), Stats::of(polling));
    let inotify = Stats::of(inotify);
    Ok(Handoff {
        ours_p50_us: us(ours.p50),
        ours_p99_us: us(ours.p99),
        ours_max_us: us(ours.max),
        flock_p50_us: us(flock.p50),
        flock_p99_us: us(flock.p99),
        polling_p50_us: us(polling.p50),
        polling_p99_us: us(polling.p99),
        inotify_p50_us: us(inotify.p50),
        ratio_vs_flock: ratio(ours.p50 as f64, flock.p50 as f64),
        ratio_vs_inotify: ratio(ours.p50 as f64, inotify.p50 as f64),
        inotify_vs_flock: ratio(inotify.p50 as f64, flock.p50 as f64),
        speedup_vs_polling: ratio(polling.p50 as f64, ours.p50 as f64).map(|r| round(r, 1)),
        iterations: plan.handoff,
        polling_iterations: plan.polling,
        not_parked: [ours_np, flock_np, polling_np, inotify_np],
    })
}
