//! Phase 4, throughput: N processes doing guarded cycles for a fixed time,
//! against a raw `flock`-guarded `O_APPEND` loop; each run's file and
//! overlap counter are checked afterwards.

use super::check::{SharedCounter, verify_lines};
use super::peer::Peer;
use super::report::{Throughput, fmt_ratio};
use super::stats::{ms, ratio, round};
use super::{CYCLE_PAUSE, ChildRole, Plan, THROUGHPUT_NS, err_str, progress, sub_dir};
use std::path::Path;
use std::time::Duration;

/// Phase 4 in the driver: its progress lines (one per process count), the
/// failures in `errors`.
pub(super) fn run(
    dir: &Path,
    plan: &Plan,
    errors: &mut Vec<String>,
    step: &str,
) -> Option<Vec<Throughput>> {
    progress(&format!(
        "{step} throughput: n = {THROUGHPUT_NS:?} processes, {:.1} s each, ours and raw flock ...",
        plan.throughput.as_secs_f64()
    ));
    match sub_dir(dir, "throughput") {
        Ok(d) => throughput(&d, plan, errors, step),
        Err(e) => {
            errors.push(format!("throughput: {e}"));
            None
        }
    }
}

/// One throughput run: N workers of one kind.
struct Run {
    cycles: u64,
    per_s: f64,
    max_wait_ns: u64,
    /// Wake-ups of the workers' acquire loops, summed (0 for the baseline,
    /// whose waits happen inside the kernel's `flock`).
    wakeups: u64,
    lines: Result<(), String>,
}

fn throughput_run(
    dir: &Path,
    n: usize,
    role: ChildRole,
    duration: Duration,
) -> Result<Run, String> {
    let kind = if role == ChildRole::CyclesOurs {
        "ours"
    } else {
        "flock"
    };
    let sub = dir.join(format!("throughput-n{n}-{kind}"));
    std::fs::create_dir_all(&sub).map_err(|e| err_str("create directory", e))?;
    let target = sub.join("t.jsonl");
    let shm = sub.join("overlap.shm");
    SharedCounter::create(&shm)?;
    let mut peers = Vec::with_capacity(n);
    for id in 0..n {
        let extra = [
            "--shm".to_owned(),
            shm.display().to_string(),
            "--id".to_owned(),
            id.to_string(),
            "--duration-ms".to_owned(),
            duration.as_millis().to_string(),
            "--pause-us".to_owned(),
            CYCLE_PAUSE.as_micros().to_string(),
        ];
        peers.push(Peer::spawn(role, &target, &extra)?);
    }
    for p in &mut peers {
        p.expect("ready")?;
    }
    for p in &mut peers {
        p.send("go")?;
    }
    let (mut counts, mut max_wait_ns, mut overlaps) = (Vec::with_capacity(n), 0u64, 0u64);
    let mut wakeups = 0u64;
    for p in &mut peers {
        let line = p.recv()?;
        let nums: Vec<u64> = line
            .strip_prefix("done ")
            .map(|rest| rest.split(' ').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        let [cycles, wait, over, woke] = nums[..] else {
            return Err(format!("throughput: bad report {line:?}"));
        };
        counts.push(cycles);
        max_wait_ns = max_wait_ns.max(wait);
        overlaps += over;
        wakeups += woke;
    }
    for p in peers {
        p.finish()?;
    }
    let cycles: u64 = counts.iter().sum();
    let lines = if overlaps > 0 {
        Err(format!("{overlaps} overlapping critical sections detected"))
    } else {
        match SharedCounter::read(&shm)? {
            0 => verify_lines(&target, &counts),
            left => Err(format!("overlap counter left at {left}")),
        }
    };
    Ok(Run {
        cycles,
        per_s: round(cycles as f64 / duration.as_secs_f64(), 1),
        max_wait_ns,
        wakeups,
        lines,
    })
}

fn throughput(
    dir: &Path,
    plan: &Plan,
    errors: &mut Vec<String>,
    step: &str,
) -> Option<Vec<Throughput>> {
    let mut out = Vec::new();
    for n in THROUGHPUT_NS {
        let ours = match throughput_run(dir, n, ChildRole::CyclesOurs, plan.throughput) {
            Ok(r) => r,
            Err(e) => {
                progress(&format!("{step} throughput n={n}: FAILED: {e}"));
                errors.push(format!("throughput n={n} ours: {e}"));
                continue;
            }
        };
        let base = match throughput_run(dir, n, ChildRole::CyclesFlock, plan.throughput) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(format!("throughput n={n} baseline: {e}"));
                None
            }
        };
        if let Err(e) = &ours.lines {
            errors.push(format!("throughput n={n} ours: lines not ok: {e}"));
        }
        if let Some(Err(e)) = base.as_ref().map(|b| &b.lines) {
            errors.push(format!("throughput n={n} baseline: lines not ok: {e}"));
        }
        let t = Throughput {
            n,
            ours_cycles_per_s: ours.per_s,
            baseline_cycles_per_s: base.as_ref().map(|b| b.per_s),
            ratio: base.as_ref().and_then(|b| ratio(ours.per_s, b.per_s)),
            max_wait_ms: ms(ours.max_wait_ns),
            baseline_max_wait_ms: base.as_ref().map(|b| ms(b.max_wait_ns)),
            wakeups_per_release: (ours.cycles > 0)
                .then(|| round(ours.wakeups as f64 / ours.cycles as f64, 3)),
            lines_ok: ours.lines.is_ok(),
            baseline_lines_ok: base.as_ref().map(|b| b.lines.is_ok()),
            ours_cycles: ours.cycles,
            baseline_cycles: base.as_ref().map(|b| b.cycles),
            duration_s: plan.throughput.as_secs_f64(),
        };
        progress(&format!(
            "{step} throughput n={n}: ours {:.0}/s, flock {}, ratio {}, max wait {:.2} ms, wake-ups/release {}, lines {}",
            t.ours_cycles_per_s,
            t.baseline_cycles_per_s
                .map_or("-".into(), |b| format!("{b:.0}/s")),
            fmt_ratio(t.ratio),
            t.max_wait_ms,
            t.wakeups_per_release
                .map_or("-".into(), |w| format!("{w:.2}")),
            if t.lines_ok { "ok" } else { "NOT OK" }
        ));
        out.push(t);
    }
    (!out.is_empty()).then_some(out)
}
