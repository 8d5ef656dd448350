//! Phase 3, inspect: [`session_lock::inspect`] on a lock held by a live
//! child, against read + parse + `kill(pid, 0)` + the start time from
//! `/proc`.

use super::peer::Peer;
use super::raw::raw_inspect;
use super::report::{VsBaseline, fmt_ratio};
use super::stats::mono_ns;
use super::{ChildRole, LOOP_WARMUP, Plan, err_str, phase, sub_dir};
use session_lock::{LockOptions, Verdict};
use std::path::Path;

/// Phase 3 in the driver: its progress lines, a failure in `errors`.
pub(super) fn run(
    dir: &Path,
    plan: &Plan,
    errors: &mut Vec<String>,
    step: &str,
) -> Option<VsBaseline> {
    phase(
        errors,
        step,
        "inspect",
        &format!(
            "{} inspections of a lock held by a live child",
            plan.inspect
        ),
        || inspect(&sub_dir(dir, "inspect")?, plan),
        |i| {
            format!(
                "ours p50 {:.1} us, raw {:.1} us, ratio {}",
                i.ours_p50_us,
                i.baseline_p50_us,
                fmt_ratio(i.ratio)
            )
        },
    )
}

fn inspect(dir: &Path, plan: &Plan) -> Result<VsBaseline, String> {
    let target = dir.join("inspect.jsonl");
    let lock = dir.join("inspect.jsonl.lock");
    let mut peer = Peer::spawn(ChildRole::Hold, &target, &[])?;
    peer.expect("ready")?;
    let opts = LockOptions::new();
    let first = session_lock::inspect(&lock, &opts)
        .map_err(|e| err_str("inspect", e))?
        .ok_or("inspect: the child's lock is missing")?;
    if first.verdict != Verdict::Held {
        return Err(format!(
            "inspect: a live child's lock was judged {:?}",
            first.verdict
        ));
    }
    if !raw_inspect(&lock)?.0 {
        return Err("raw inspect: a live child was judged dead".into());
    }
    let (mut ours, mut raw) = (
        Vec::with_capacity(plan.inspect),
        Vec::with_capacity(plan.inspect),
    );
    for i in 0..LOOP_WARMUP + plan.inspect {
        let t0 = mono_ns();
        let insp = session_lock::inspect(&lock, &opts).map_err(|e| err_str("inspect", e))?;
        let t1 = mono_ns();
        let r = raw_inspect(&lock)?;
        let t2 = mono_ns();
        std::hint::black_box((insp, r));
        if i >= LOOP_WARMUP {
            ours.push(t1 - t0);
            raw.push(t2 - t1);
        }
    }
    peer.finish()?;
    Ok(VsBaseline::of(ours, raw, plan.inspect))
}
