//! Wall-clock helpers: RFC 3339 timestamps for the owner record's `createdAt`
//! and human durations (`5`, `1.5s`, `500ms`, `5m`) for the CLI.
//!
//! Wall-clock time is only ever a *hint* here: reclaim decisions for our own
//! records rest on the kernel witness, budgets use `Instant`, and the ages we
//! compute from `createdAt` are clamped at zero so a clock stepped backwards
//! makes nothing look older than it is.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    system_time_ms(SystemTime::now())
}

pub(crate) fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (the "civil from days" algorithm, H. Hinnant, chrono-compatible dates).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-30T09:54:07.123Z` for milliseconds since the epoch (the format of
/// JavaScript's `Date.prototype.toISOString`, which the reference writes).
pub(crate) fn format_rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// Parse an RFC 3339 timestamp (`Z` or `±HH:MM` offset, optional fraction)
/// to milliseconds since the epoch. `None` for anything else.
pub(crate) fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(r)?;
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo as u32) || h > 23 || mi > 59 {
        return None;
    }
    // RFC 3339 allows a leap second (60); fold it into the next second.
    if s > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &b[start..i.min(start + 3)];
        let mut v = 0i64;
        for (k, c) in digits.iter().enumerate() {
            v += i64::from(c - b'0') * 10i64.pow(2 - k as u32);
        }
        frac_ms = v;
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let v = oh * 60 + om;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60;
    secs.checked_mul(1000)?.checked_add(frac_ms)
}

fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// What [`parse_duration`] accepts, for messages and help texts.
pub const DURATION_SYNTAX: &str =
    "a number of seconds (5, 1.5) or a number with ms, s, m or h (500ms, 1.5s, 5m, 1h)";

/// Parse a human duration: a number of seconds (`5`, `1.5`), or a number
/// followed by `ms`, `s`, `m` or `h` (`500ms`, `1.5s`, `5m`, `0.5h`). The
/// number is decimal digits with an optional fraction (`1.5`; not `.5`,
/// `1.`, `1e3`, `-1` or `+1`); no space before the unit. A bare number is
/// seconds, as in `flock -w` and `timeout(1)`. A fraction finer than a
/// nanosecond is truncated.
///
/// # Errors
/// Returns a message naming the input and saying what is accepted
/// ([`DURATION_SYNTAX`]) when the text is not such a duration, or when it
/// is longer than `u64::MAX` milliseconds.
///
/// # Examples
/// ```
/// use session_lock::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert!(parse_duration("5x").unwrap_err().contains("500ms, 1.5s, 5m, 1h"));
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}: expected {DURATION_SYNTAX}");
    let t = text.trim();
    let int_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (int, rest) = t.split_at(int_end);
    let (frac, unit) = match rest.strip_prefix('.') {
        Some(r) => r.split_at(r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len())),
        None => ("", rest),
    };
    if int.is_empty() || (rest.starts_with('.') && frac.is_empty()) {
        return Err(bad());
    }
    let unit_ns: u128 = match unit {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    // Integer arithmetic throughout: 0.1s is exactly 100ms.
    let int: u128 = int.parse().map_err(|_| bad())?;
    let mut ns = int.checked_mul(unit_ns).ok_or_else(bad)?;
    let mut scale = unit_ns;
    for d in frac.bytes() {
        if scale < 10 {
            break; // below a nanosecond
        }
        scale /= 10;
        ns += u128::from(d - b'0') * scale;
    }
    if ns / 1_000_000 > u128::from(u64::MAX) {
        return Err(bad());
    }
    let secs = u64::try_from(ns / 1_000_000_000).map_err(|_| bad())?;
    Ok(Duration::new(secs, (ns % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_javascript_to_iso_string() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(1_796_032_447_123),
            "2026-11-30T09:54:07.123Z"
        );
        assert_eq!(
            format_rfc3339_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn round_trips() {
        for ms in [
            0,
            1,
            999,
            86_399_999,
            951_782_400_000,
            1_796_032_447_123,
            4_102_444_800_000,
        ] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms), "{ms}");
        }
    }

    #[test]
    fn parses_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.5Z"), Some(500));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.123456Z"), Some(123));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:00:00-01:00"), Some(0));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00Zjunk",
            "+2026-01-01T00:00:00Z",
            "２０２６-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("5", ms(5_000)),
            ("0", ms(0)),
            ("1.5", ms(1_500)),
            ("0.25", ms(250)),
            ("1.5s", ms(1_500)),
            ("30s", ms(30_000)),
            ("500ms", ms(500)),
            ("0.5ms", Duration::from_micros(500)),
            ("5m", ms(300_000)),
            ("1.5m", ms(90_000)),
            ("2h", ms(7_200_000)),
            ("0.5h", ms(1_800_000)),
            (" 7s ", ms(7_000)),
            ("0.1", ms(100)),
            ("1.0000000009", Duration::new(1, 0)),
            ("007", ms(7_000)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn bad_durations_say_what_is_accepted() {
        for bad in [
            "",
            "s",
            "ms",
            "5x",
            "5 s",
            "5S",
            "-1s",
            "+1",
            ".5",
            "1.",
            "1.s",
            "1..5",
            "1.5.5",
            "1e3",
            "1_000",
            "inf",
            "NaN",
            "5sec",
            "1m30s",
            "99999999999999999999h",
            "18446744073709551616ms",
            "18446744073709552s",
            "１s",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains(DURATION_SYNTAX), "{err}");
        }
        // The largest accepted: u64::MAX milliseconds.
        assert_eq!(
            parse_duration("18446744073709551615ms"),
            Ok(Duration::from_millis(u64::MAX))
        );
    }
}
