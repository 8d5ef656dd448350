//! `status` as `lslocks` shows locks: a column list chosen with
//! `-o/--output`, and the facts only `/proc` knows (is the recorded pid
//! itself alive, which processes hold the witness, how many wait).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The columns `status` can print (file backend), in their default order
/// first. `PATH` is always last when chosen.
pub(crate) const ALL: [&str; 12] = [
    "VERDICT",
    "PID",
    "ALIVE",
    "AGE",
    "REASONS",
    "ATTENTION",
    "HOLDERS",
    "LABEL",
    "HOST",
    "COMMAND",
    "WAITERS",
    "PATH",
];

/// The default columns.
pub(crate) const DEFAULT: [&str; 8] = [
    "VERDICT",
    "PID",
    "ALIVE",
    "AGE",
    "REASONS",
    "ATTENTION",
    "HOLDERS",
    "PATH",
];

/// What each column shows, for `--help` and docs/cli.md.
pub(crate) const HELP: &str =
    "Columns (-o/--output, comma-separated, case-insensitive; +LIST appends to the default):
  VERDICT    held, stale, reclaimable, absent (or what a look-alike file is)
  PID        the pid in the owner record (for exec: its holder process)
  ALIVE      whether that pid itself is alive (true/false; ? unknown, e.g. another host)
  AGE        how long the record has existed
  REASONS    why the verdict (dead-pid, too-old, hold-exceeded, ...)
  ATTENTION  session.long_running etc. when the lock alone justifies it
  HOLDERS    pids with the lock file open (the witness: the holder, or the
             command tree an exec holder left behind); ? if /proc says nothing
  LABEL      the record's label
  HOST       the record's host name
  COMMAND    the recorded pid's command name, if it is alive
  WAITERS    processes queued on FILE.lock.queue (from /proc/locks)
  PATH       the lock file, as given or found under a given directory
Default: VERDICT,PID,ALIVE,AGE,REASONS,ATTENTION,HOLDERS,PATH";

/// Parse `-o/--output`: a comma-separated list of column names, any case,
/// or `+LIST` to append to the default. Unknown or repeated names are
/// refused with the list of known ones.
pub(crate) fn parse_output(text: &str) -> Result<Vec<&'static str>, String> {
    let (mut cols, list) = match text.strip_prefix('+') {
        Some(rest) => (DEFAULT.to_vec(), rest),
        None => (Vec::new(), text),
    };
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(col) = ALL.iter().find(|c| c.eq_ignore_ascii_case(name)) else {
            return Err(format!("unknown column {name:?}; known: {}", ALL.join(",")));
        };
        if !cols.contains(col) {
            cols.push(col);
        }
    }
    if cols.is_empty() {
        return Err(format!("no column named; known: {}", ALL.join(",")));
    }
    // The path, which may hold spaces, is printed last.
    if let Some(i) = cols.iter().position(|c| *c == "PATH") {
        let p = cols.remove(i);
        cols.push(p);
    }
    Ok(cols)
}

/// Whether `pid` is alive (not a zombie) and, when the record has one, has
/// the recorded start time (else the pid was recycled: the recorded process
/// is dead). `None` when `/proc` cannot tell.
pub(crate) fn pid_alive(pid: u32, starttime: Option<u64>) -> Option<bool> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    Some(stat_says_alive(&text, starttime))
}

/// The pure part of [`pid_alive`]: a `/proc/PID/stat` line, judged.
fn stat_says_alive(stat: &str, starttime: Option<u64>) -> bool {
    // The command name may hold spaces and ')': fields start after the last ')'.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z" | &"X")) {
        return false;
    }
    // Field 22 of stat(5), the 20th after the name.
    match (
        starttime,
        fields.get(19).and_then(|f| f.parse::<u64>().ok()),
    ) {
        (Some(want), Some(got)) => want == got,
        _ => true,
    }
}

/// The command name of a live pid (`/proc/PID/comm`).
pub(crate) fn command_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

/// Pids with a descriptor open on `lock`'s inode (the witness), from
/// `/proc/*/fd` (only processes this user may look into). Sorted.
pub(crate) fn holders(lock: &Path) -> Vec<u32> {
    let Ok(meta) = std::fs::symlink_metadata(lock) else {
        return Vec::new();
    };
    let want = (meta.dev(), meta.ino());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    // stat follows the link to the open file itself.
                    std::fs::metadata(fd.path()).is_ok_and(|m| (m.dev(), m.ino()) == want)
                })
            })
        })
        .collect();
    out.sort_unstable();
    out
}

/// How many processes hold or wait for a flock on `queue` (the lock's wait
/// queue file), from `/proc/locks`. `None` when it cannot be read.
pub(crate) fn waiters(queue: &Path) -> Option<usize> {
    let Ok(meta) = std::fs::symlink_metadata(queue) else {
        return Some(0);
    };
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    Some(count_flocks(&locks, meta.dev(), meta.ino()))
}

/// The pure part of [`waiters`]: FLOCK entries (held or blocked, `->`) on
/// the inode `dev`/`ino` in `/proc/locks` text (`MAJ:MIN:INO`, the device
/// numbers in hex, as proc(5) shows them).
fn count_flocks(locks: &str, dev: u64, ino: u64) -> usize {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    locks
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().filter(|w| *w != "->").collect();
            f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str())
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lists() {
        for (text, want) in [
            ("pid,alive", Ok(vec!["PID", "ALIVE"])),
            ("PATH,label", Ok(vec!["LABEL", "PATH"])),
            ("Pid, HOST ,pid", Ok(vec!["PID", "HOST"])),
            (
                "+label,waiters",
                Ok([&DEFAULT[..7], &["LABEL", "WAITERS", "PATH"]].concat()),
            ),
            ("pid,owner", Err("unknown column \"owner\"")),
            ("", Err("no column")),
        ] {
            match (parse_output(text), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{text}"),
                (Err(e), Err(piece)) => assert!(e.contains(piece), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        // Every column is documented.
        for c in ALL {
            assert!(HELP.contains(&format!("  {c} ")), "{c} undocumented");
        }
    }

    #[test]
    fn stat_lines_judged() {
        let line = |state: &str, start: u64| {
            format!(
                "42 (a) b) {state} 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 {start} 1000 10"
            )
        };
        assert!(stat_says_alive(&line("S", 555), Some(555)));
        assert!(stat_says_alive(&line("R", 555), None));
        assert!(!stat_says_alive(&line("S", 556), Some(555)), "recycled pid");
        assert!(!stat_says_alive(&line("Z", 555), Some(555)), "zombie");
        assert!(!stat_says_alive("garbage", None));
    }

    #[test]
    fn proc_locks_counted_per_inode() {
        let dev = rustix::fs::makedev(0xfe, 0);
        let locks = "1: FLOCK  ADVISORY  WRITE 2684 fe:00:10225046 0 EOF
1: -> FLOCK  ADVISORY  WRITE 2690 fe:00:10225046 0 EOF
1: -> FLOCK  ADVISORY  WRITE 2691 fe:00:10225046 0 EOF
2: OFDLCK ADVISORY  WRITE -1 fe:00:10225046 0 EOF
3: FLOCK  ADVISORY  WRITE 77 fe:00:999 0 EOF
4: FLOCK  ADVISORY  WRITE 78 08:01:10225046 0 EOF";
        assert_eq!(count_flocks(locks, dev, 10225046), 3);
        assert_eq!(count_flocks(locks, dev, 999), 1);
        assert_eq!(count_flocks(locks, dev, 5), 0);
    }
}
