//! The command line's duration options: `-w`/`--wait` (with `forever`),
//! `--max-hold` (with `off`) and `--kill-after`, parsed by small pure
//! functions with a table test beside them.

use std::time::Duration;

/// `-w`/`--wait`: a deadline, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Give up after this long (`0` is `--nonblock`, as in flock(1)).
    For(Duration),
    /// `forever` / `inf`: wait without a deadline.
    Forever,
}

/// The spellings of "no deadline" for `-w` (flock(1) has none; `inf` is
/// what sleep(1) and timeout(1) accept).
const FOREVER: [&str; 3] = ["forever", "inf", "infinity"];

/// The spellings of "no max hold" for `--max-hold`.
const OFF: [&str; 2] = ["off", "none"];

/// A negative number gets a message about durations (clap would otherwise
/// take `-1` for an option and suggest `-- -1`).
fn refuse_negative(text: &str) -> Result<(), String> {
    if text.trim().starts_with('-') {
        return Err(format!(
            "{text:?} is negative; a duration is 0 or more ({})",
            session_lock::DURATION_SYNTAX
        ));
    }
    Ok(())
}

/// `-w`/`--wait`: a duration, or `forever`/`inf`/`infinity`.
pub(crate) fn parse_wait(text: &str) -> Result<Wait, String> {
    refuse_negative(text)?;
    if FOREVER.contains(&text.trim().to_ascii_lowercase().as_str()) {
        return Ok(Wait::Forever);
    }
    session_lock::parse_duration(text)
        .map(Wait::For)
        .map_err(|e| format!("{e}, or forever"))
}

/// `--max-hold`: a duration over zero, or `off`/`none` (the library's
/// [`session_lock::MAX_HOLD_CAP`], about 24.8 days).
pub(crate) fn parse_max_hold(text: &str) -> Result<Duration, String> {
    refuse_negative(text)?;
    if OFF.contains(&text.trim().to_ascii_lowercase().as_str()) {
        return Ok(session_lock::MAX_HOLD_CAP);
    }
    let d = session_lock::parse_duration(text).map_err(|e| format!("{e}, or off"))?;
    if d.is_zero() {
        return Err(
            "a max hold of 0 would stop the command at once; say `off` for no max hold".into(),
        );
    }
    Ok(d.min(session_lock::MAX_HOLD_CAP))
}

/// `--kill-after` and other plain durations: negative numbers refused with
/// a message about durations.
pub(crate) fn parse_plain(text: &str) -> Result<Duration, String> {
    refuse_negative(text)?;
    session_lock::parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_table() {
        let s = Duration::from_secs;
        for (text, want) in [
            ("5", Ok(Wait::For(s(5)))),
            ("0", Ok(Wait::For(s(0)))),
            ("500ms", Ok(Wait::For(Duration::from_millis(500)))),
            ("forever", Ok(Wait::Forever)),
            ("inf", Ok(Wait::Forever)),
            ("Infinity", Ok(Wait::Forever)),
            ("-1", Err("negative")),
            ("-0.5s", Err("negative")),
            ("soon", Err("or forever")),
        ] {
            match (parse_wait(text), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{text}"),
                (Err(e), Err(piece)) => assert!(e.contains(piece), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn max_hold_table() {
        for (text, want) in [
            ("20m", Ok(Duration::from_secs(1200))),
            ("off", Ok(session_lock::MAX_HOLD_CAP)),
            ("none", Ok(session_lock::MAX_HOLD_CAP)),
            ("100000h", Ok(session_lock::MAX_HOLD_CAP)),
            ("0", Err("say `off`")),
            ("0ms", Err("say `off`")),
            ("-5m", Err("negative")),
            ("forever", Err("or off")),
        ] {
            match (parse_max_hold(text), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{text}"),
                (Err(e), Err(piece)) => assert!(e.contains(piece), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn plain_table() {
        assert_eq!(parse_plain("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_plain("-1").unwrap_err().contains("negative"));
        assert!(parse_plain("x").unwrap_err().contains("invalid duration"));
    }
}
