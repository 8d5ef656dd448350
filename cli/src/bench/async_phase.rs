//! Phase 5, async: lateness of a 1 ms interval ticker on a current-thread
//! runtime while tasks contend for one lock, and of the same ticker alone.

use super::report::AsyncResult;
use super::stats::{Stats, ms, round};
use super::{ASYNC_HOLD, ASYNC_TASKS, Plan, err_str, opts, phase, sub_dir};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Phase 5 in the driver: its progress lines, a failure in `errors`.
pub(super) fn run(
    dir: &Path,
    plan: &Plan,
    errors: &mut Vec<String>,
    step: &str,
) -> Option<AsyncResult> {
    phase(
        errors,
        step,
        "async",
        &format!(
            "1 ms ticker while {ASYNC_TASKS} tasks x {} rounds contend (current-thread runtime)",
            plan.async_rounds
        ),
        || async_phase(&sub_dir(dir, "async")?, plan),
        |a| {
            format!(
                "max tick lateness {:.3} ms (p99 {:.3} ms; idle max {:.3} ms)",
                a.max_tick_lateness_ms, a.p99_tick_lateness_ms, a.idle_max_tick_lateness_ms
            )
        },
    )
}

fn async_phase(dir: &Path, plan: &Plan) -> Result<AsyncResult, String> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// Tick every 1 ms until `stop`; lateness of each tick in ns.
    async fn ticker(stop: Arc<AtomicBool>) -> Vec<u64> {
        let mut iv = tokio::time::interval(Duration::from_millis(1));
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        iv.tick().await; // the first tick completes at once
        let mut late = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let due = iv.tick().await;
            late.push(
                tokio::time::Instant::now()
                    .saturating_duration_since(due)
                    .as_nanos() as u64,
            );
        }
        late
    }

    let target = dir.join("async.jsonl");
    let rounds = plan.async_rounds;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err_str("build runtime", e))?;
    rt.block_on(async move {
        // The ticker alone first: the timer's own granularity.
        let stop = Arc::new(AtomicBool::new(false));
        let idle = tokio::spawn(ticker(stop.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let idle = Stats::of(idle.await.map_err(|e| err_str("idle ticker", e))?);

        let stop = Arc::new(AtomicBool::new(false));
        let tick = tokio::spawn(ticker(stop.clone()));
        let opts = opts();
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(ASYNC_TASKS);
        for _ in 0..ASYNC_TASKS {
            let (target, opts) = (target.clone(), opts.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..rounds {
                    let g = session_lock::tokio::acquire_with(&target, &opts)
                        .await
                        .map_err(|e| err_str("async acquire", e))?;
                    // Hold ~100 us without blocking the runtime.
                    let held = Instant::now();
                    while held.elapsed() < ASYNC_HOLD {
                        tokio::task::yield_now().await;
                    }
                    g.release().map_err(|e| err_str("async release", e))?;
                }
                Ok::<(), String>(())
            }));
        }
        let mut first_error = None;
        for t in tasks {
            let r = t
                .await
                .map_err(|e| err_str("async task", e))
                .and_then(|r| r);
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let late = tick.await.map_err(|e| err_str("ticker", e))?;
        if let Some(e) = first_error {
            return Err(e);
        }
        let ticks = late.len();
        let s = Stats::of(late);
        Ok(AsyncResult {
            max_tick_lateness_ms: ms(s.max),
            p99_tick_lateness_ms: ms(s.p99),
            p50_tick_lateness_ms: ms(s.p50),
            idle_max_tick_lateness_ms: ms(idle.max),
            idle_p50_tick_lateness_ms: ms(idle.p50),
            ticks,
            tasks: ASYNC_TASKS,
            rounds,
            acquisitions: ASYNC_TASKS * rounds,
            elapsed_ms: round(elapsed.as_secs_f64() * 1_000.0, 1),
        })
    })
}
