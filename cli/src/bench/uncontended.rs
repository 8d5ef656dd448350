//! Phase 1, uncontended: `acquire_with` + `release` against the raw floor
//! (exclusive create + write one record-sized line + close + unlink).

use super::raw::raw_lock_cycle;
use super::report::{VsBaseline, fmt_ratio};
use super::stats::mono_ns;
use super::{LOOP_WARMUP, Plan, err_str, opts, phase, sub_dir};
use std::path::Path;

/// Phase 1 in the driver: its progress lines, a failure in `errors`.
pub(super) fn run(
    dir: &Path,
    plan: &Plan,
    errors: &mut Vec<String>,
    step: &str,
) -> Option<VsBaseline> {
    phase(
        errors,
        step,
        "uncontended",
        &format!(
            "{} acquire+release vs raw create+write+close+unlink",
            plan.uncontended
        ),
        || uncontended(&sub_dir(dir, "uncontended")?, plan),
        |u| {
            format!(
                "ours p50 {:.1} us, raw {:.1} us, ratio {}",
                u.ours_p50_us,
                u.baseline_p50_us,
                fmt_ratio(u.ratio)
            )
        },
    )
}

fn uncontended(dir: &Path, plan: &Plan) -> Result<VsBaseline, String> {
    let target = dir.join("uncontended.jsonl");
    let raw_lock = dir.join("raw-uncontended.jsonl.lock");
    let opts = opts();
    // Our own record, so the raw floor writes exactly as many bytes.
    let g = session_lock::acquire_with(&target, &opts).map_err(|e| err_str("acquire", e))?;
    let record = std::fs::read(g.lock_path()).map_err(|e| err_str("read own record", e))?;
    g.release().map_err(|e| err_str("release", e))?;
    let (mut ours, mut raw) = (
        Vec::with_capacity(plan.uncontended),
        Vec::with_capacity(plan.uncontended),
    );
    // Interleaved, so drift (frequency scaling, other load) hits both alike.
    for i in 0..LOOP_WARMUP + plan.uncontended {
        let t0 = mono_ns();
        let g = session_lock::acquire_with(&target, &opts).map_err(|e| err_str("acquire", e))?;
        g.release().map_err(|e| err_str("release", e))?;
        let t1 = mono_ns();
        raw_lock_cycle(&raw_lock, &record)?;
        let t2 = mono_ns();
        if i >= LOOP_WARMUP {
            ours.push(t1 - t0);
            raw.push(t2 - t1);
        }
    }
    Ok(VsBaseline::of(ours, raw, plan.uncontended))
}
