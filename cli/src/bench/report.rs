//! The report: each phase's result, the targets judged on them, and the
//! table printed without `--json`.

use super::THROUGHPUT_NS;
use super::stats::{Stats, ratio, round, us};
use serde::Serialize;

/// The whole result, printed as JSON with `--json`.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) quick: bool,
    pub(super) dir: String,
    pub(super) uncontended: Option<VsBaseline>,
    pub(super) handoff: Option<Handoff>,
    pub(super) inspect: Option<VsBaseline>,
    pub(super) throughput: Option<Vec<Throughput>>,
    #[serde(rename = "async")]
    pub(super) async_: Option<AsyncResult>,
    pub(super) targets: Vec<Target>,
    pub(super) errors: Vec<String>,
    pub(super) ok: bool,
    pub(super) elapsed_s: f64,
}

/// Phases 1 (uncontended) and 3 (inspect): one operation of ours timed
/// against its raw baseline, sample by sample.
#[derive(Debug, Serialize)]
pub(super) struct VsBaseline {
    pub(super) ours_p50_us: f64,
    pub(super) ours_p99_us: f64,
    pub(super) baseline_p50_us: f64,
    pub(super) baseline_p99_us: f64,
    pub(super) ratio: Option<f64>,
    pub(super) iterations: usize,
}

impl VsBaseline {
    /// From the samples (nanoseconds) of ours and of the baseline.
    pub(super) fn of(ours: Vec<u64>, raw: Vec<u64>, iterations: usize) -> VsBaseline {
        let (o, r) = (Stats::of(ours), Stats::of(raw));
        VsBaseline {
            ours_p50_us: us(o.p50),
            ours_p99_us: us(o.p99),
            baseline_p50_us: us(r.p50),
            baseline_p99_us: us(r.p99),
            ratio: ratio(o.p50 as f64, r.p50 as f64),
            iterations,
        }
    }
}

/// Phase 2.
#[derive(Debug, Serialize)]
pub(super) struct Handoff {
    pub(super) ours_p50_us: f64,
    pub(super) ours_p99_us: f64,
    pub(super) ours_max_us: f64,
    pub(super) flock_p50_us: f64,
    pub(super) flock_p99_us: f64,
    pub(super) polling_p50_us: f64,
    pub(super) polling_p99_us: f64,
    /// A raw inotify-woken waiter (unlink -> poll -> read): the floor of
    /// any wait that can time out, which a blocking `flock` cannot.
    pub(super) inotify_p50_us: f64,
    pub(super) ratio_vs_flock: Option<f64>,
    /// Ours against that floor.
    pub(super) ratio_vs_inotify: Option<f64>,
    /// The floor against a raw `flock` handoff (what no inotify-woken
    /// waiter can beat).
    pub(super) inotify_vs_flock: Option<f64>,
    pub(super) speedup_vs_polling: Option<f64>,
    pub(super) iterations: usize,
    pub(super) polling_iterations: usize,
    /// Handoffs (ours, flock, polling, inotify) released while some thread
    /// of the waiter was still running after the grace period (should be 0).
    pub(super) not_parked: [usize; 4],
}

/// Phase 4, one process count.
#[derive(Debug, Serialize)]
pub(super) struct Throughput {
    pub(super) n: usize,
    pub(super) ours_cycles_per_s: f64,
    pub(super) baseline_cycles_per_s: Option<f64>,
    pub(super) ratio: Option<f64>,
    pub(super) max_wait_ms: f64,
    pub(super) baseline_max_wait_ms: Option<f64>,
    /// Wake-ups of our workers' acquire loops per release (one release per
    /// cycle), counted by the library (`session_lock::wait_wakeups`): a
    /// grant of the queue's `flock`, an inotify event, a re-check timer.
    pub(super) wakeups_per_release: Option<f64>,
    pub(super) lines_ok: bool,
    pub(super) baseline_lines_ok: Option<bool>,
    pub(super) ours_cycles: u64,
    pub(super) baseline_cycles: Option<u64>,
    pub(super) duration_s: f64,
}

/// Phase 5.
#[derive(Debug, Serialize)]
pub(super) struct AsyncResult {
    pub(super) max_tick_lateness_ms: f64,
    pub(super) p99_tick_lateness_ms: f64,
    pub(super) p50_tick_lateness_ms: f64,
    pub(super) idle_max_tick_lateness_ms: f64,
    pub(super) idle_p50_tick_lateness_ms: f64,
    pub(super) ticks: usize,
    pub(super) tasks: usize,
    pub(super) rounds: usize,
    pub(super) acquisitions: usize,
    pub(super) elapsed_ms: f64,
}

/// One target of the issue, judged (a miss does not fail the exit code).
#[derive(Debug, Serialize)]
pub(super) struct Target {
    name: &'static str,
    goal: &'static str,
    value: Option<f64>,
    pass: bool,
}

/// A ratio as `1.23x`, `-` for none.
pub(super) fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

/// The targets, judged on `r`.
pub(super) fn targets(r: &Report) -> Vec<Target> {
    let mut t = Vec::new();
    let mut add = |name, goal, value: Option<f64>, ok: fn(f64) -> bool| {
        t.push(Target {
            name,
            goal,
            value,
            pass: value.is_some_and(ok),
        });
    };
    let h = r.handoff.as_ref();
    add(
        "handoff_vs_flock",
        "ours p50 <= 4x flock p50",
        h.and_then(|h| h.ratio_vs_flock),
        |v| v <= 4.0,
    );
    add(
        "handoff_vs_polling",
        ">= 100x faster than polling",
        h.and_then(|h| h.speedup_vs_polling),
        |v| v >= 100.0,
    );
    add(
        "uncontended",
        "ours p50 <= 1.5x raw",
        r.uncontended.as_ref().and_then(|u| u.ratio),
        |v| v <= 1.5,
    );
    add(
        "inspect",
        "ours p50 <= 2x raw",
        r.inspect.as_ref().and_then(|i| i.ratio),
        |v| v <= 2.0,
    );
    let thr = r.throughput.as_deref().unwrap_or_default();
    let all_lines = thr.len() == THROUGHPUT_NS.len() && thr.iter().all(|t| t.lines_ok);
    let at = |n: usize| thr.iter().find(|t| t.n == n);
    let lowest = THROUGHPUT_NS
        .iter()
        .map(|&n| at(n).and_then(|t| t.ratio))
        .try_fold(f64::INFINITY, |m, r| r.map(|r| m.min(r)));
    add(
        "throughput",
        ">= 0.5x raw flock loop at every N, lines_ok everywhere",
        lowest.filter(|_| all_lines),
        |v| v >= 0.5,
    );
    add(
        "max_wait_n16",
        "max wait at N=16 <= 3x the raw loop's",
        at(16).and_then(|t| t.baseline_max_wait_ms.and_then(|b| ratio(t.max_wait_ms, b))),
        |v| v <= 3.0,
    );
    add(
        "wakeups_n16",
        "wake-ups per release at N=16 <= 2",
        at(16).and_then(|t| t.wakeups_per_release),
        |v| v <= 2.0,
    );
    add(
        "async_lateness",
        "100 tasks add < 1 ms to the ticker's max lateness",
        r.async_
            .as_ref()
            .map(|a| round(a.max_tick_lateness_ms - a.idle_max_tick_lateness_ms, 3)),
        |v| v < 1.0,
    );
    t
}

/// The table's verdict on target `name`.
fn pass(r: &Report, name: &str) -> &'static str {
    match r.targets.iter().find(|t| t.name == name) {
        Some(t) if t.pass => "PASS",
        Some(t) if t.value.is_none() => "n/a",
        _ => "MISS",
    }
}

/// Print the report as a table, then the run's kind, directory and
/// duration, and its errors.
pub(super) fn print_table(r: &Report) {
    let mut out = String::new();
    row(
        &mut out,
        "phase",
        "ours".into(),
        "baseline".into(),
        "ratio".into(),
        "target",
        "",
    );
    uncontended_rows(&mut out, r);
    handoff_rows(&mut out, r);
    inspect_rows(&mut out, r);
    throughput_rows(&mut out, r);
    async_rows(&mut out, r);
    print!("{out}");
    println!(
        "\n{} run in {} ({:.1} s); targets are reported, never fail the run.",
        if r.quick { "quick" } else { "full" },
        r.dir,
        r.elapsed_s
    );
    for e in &r.errors {
        println!("error: {e}");
    }
}

/// One row of the table, without trailing blanks.
fn row(
    out: &mut String,
    phase: &str,
    ours: String,
    base: String,
    ratio: String,
    goal: &str,
    verdict: &str,
) {
    let line = format!("{phase:<16} {ours:<12} {base:<24} {ratio:<16} {goal:<26} {verdict}");
    out.push_str(line.trim_end());
    out.push('\n');
}

/// Phase 1's row.
fn uncontended_rows(out: &mut String, r: &Report) {
    match &r.uncontended {
        Some(u) => row(
            out,
            "uncontended",
            format!("{:.1} us", u.ours_p50_us),
            format!("{:.1} us (raw create)", u.baseline_p50_us),
            fmt_ratio(u.ratio),
            "<= 1.5x raw",
            pass(r, "uncontended"),
        ),
        None => row(
            out,
            "uncontended",
            "failed".into(),
            "-".into(),
            "-".into(),
            "<= 1.5x raw",
            "n/a",
        ),
    }
}

/// Phase 2's rows: p50 and p99 against `flock`, p50 against inotify and
/// polling.
fn handoff_rows(out: &mut String, r: &Report) {
    match &r.handoff {
        Some(h) => {
            row(
                out,
                "handoff p50",
                format!("{:.1} us", h.ours_p50_us),
                format!("{:.1} us (flock)", h.flock_p50_us),
                fmt_ratio(h.ratio_vs_flock),
                "<= 4x flock",
                pass(r, "handoff_vs_flock"),
            );
            row(
                out,
                "handoff p99",
                format!("{:.1} us", h.ours_p99_us),
                format!("{:.1} us (flock)", h.flock_p99_us),
                fmt_ratio(ratio(h.ours_p99_us, h.flock_p99_us)),
                "",
                "",
            );
            row(
                out,
                "handoff inotify",
                format!("{:.1} us", h.ours_p50_us),
                format!("{:.1} us (inotify)", h.inotify_p50_us),
                fmt_ratio(h.ratio_vs_inotify),
                "",
                "",
            );
            row(
                out,
                "handoff polling",
                format!("{:.1} us", h.ours_p50_us),
                format!("{:.1} ms (polling)", h.polling_p50_us / 1_000.0),
                h.speedup_vs_polling
                    .map_or("-".into(), |s| format!("{s:.0}x faster")),
                ">= 100x faster",
                pass(r, "handoff_vs_polling"),
            );
        }
        None => row(
            out,
            "handoff",
            "failed".into(),
            "-".into(),
            "-".into(),
            "",
            "n/a",
        ),
    }
}

/// Phase 3's row.
fn inspect_rows(out: &mut String, r: &Report) {
    match &r.inspect {
        Some(i) => row(
            out,
            "inspect",
            format!("{:.1} us", i.ours_p50_us),
            format!("{:.1} us (raw)", i.baseline_p50_us),
            fmt_ratio(i.ratio),
            "<= 2x raw",
            pass(r, "inspect"),
        ),
        None => row(
            out,
            "inspect",
            "failed".into(),
            "-".into(),
            "-".into(),
            "<= 2x raw",
            "n/a",
        ),
    }
}

/// Phase 4's rows: per process count, the rate, the max wait and the
/// wake-ups.
fn throughput_rows(out: &mut String, r: &Report) {
    for t in r.throughput.as_deref().unwrap_or_default() {
        let verdict = match t.ratio {
            Some(x) if x >= 0.5 && t.lines_ok => "PASS",
            Some(_) => "MISS",
            None => "n/a",
        };
        row(
            out,
            &format!("throughput n={}", t.n),
            format!("{:.0}/s", t.ours_cycles_per_s),
            t.baseline_cycles_per_s
                .map_or("failed".into(), |b| format!("{b:.0}/s (flock)")),
            fmt_ratio(t.ratio),
            ">= 0.5x flock, lines ok",
            verdict,
        );
        let (goal, verdict) = if t.n == 16 {
            ("<= 3x flock", pass(r, "max_wait_n16"))
        } else {
            ("", "")
        };
        row(
            out,
            "  max wait",
            format!("{:.2} ms", t.max_wait_ms),
            t.baseline_max_wait_ms
                .map_or("-".into(), |b| format!("{b:.2} ms (flock)")),
            if t.lines_ok {
                t.baseline_max_wait_ms
                    .and_then(|b| ratio(t.max_wait_ms, b))
                    .map_or("lines ok".into(), |x| format!("{x:.2}x, lines ok"))
            } else {
                "LINES NOT OK".into()
            },
            goal,
            verdict,
        );
        let (goal, verdict) = if t.n == 16 {
            ("<= 2 per release", pass(r, "wakeups_n16"))
        } else {
            ("", "")
        };
        row(
            out,
            "  wake-ups",
            t.wakeups_per_release
                .map_or("-".into(), |w| format!("{w:.2}/rel")),
            "(counted, ours only)".into(),
            String::new(),
            goal,
            verdict,
        );
    }
    if r.throughput.is_none() {
        row(
            out,
            "throughput",
            "failed".into(),
            "-".into(),
            "-".into(),
            "",
            "n/a",
        );
    }
}

/// Phase 5's row.
fn async_rows(out: &mut String, r: &Report) {
    match &r.async_ {
        Some(a) => row(
            out,
            "async lateness",
            format!("{:.3} ms", a.max_tick_lateness_ms),
            format!("{:.3} ms (ticker alone)", a.idle_max_tick_lateness_ms),
            format!(
                "{:+.3} ms",
                a.max_tick_lateness_ms - a.idle_max_tick_lateness_ms
            ),
            "adds < 1 ms to max",
            pass(r, "async_lateness"),
        ),
        None => row(
            out,
            "async lateness",
            "failed".into(),
            "-".into(),
            "-".into(),
            "",
            "n/a",
        ),
    }
}
