//! Time and numbers: the monotonic clock, percentiles and rounding.

/// `CLOCK_MONOTONIC` in nanoseconds: comparable across processes.
pub(super) fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; CLOCK_MONOTONIC always exists on
    // the platforms this bench runs on, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Percentiles of a sample, in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Stats {
    pub(super) p50: u64,
    pub(super) p99: u64,
    pub(super) max: u64,
}

impl Stats {
    pub(super) fn of(mut samples: Vec<u64>) -> Stats {
        samples.sort_unstable();
        Stats {
            p50: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
            max: samples.last().copied().unwrap_or(0),
        }
    }
}

/// Nearest-rank percentile of sorted samples (0 for none).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(super) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

pub(super) fn us(ns: u64) -> f64 {
    round(ns as f64 / 1_000.0, 2)
}

pub(super) fn ms(ns: u64) -> f64 {
    round(ns as f64 / 1_000_000.0, 3)
}

pub(super) fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| round(a / b, 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        let s = Stats::of(vec![5, 1, 3]);
        assert_eq!((s.p50, s.p99, s.max), (3, 5, 5));
    }
}
