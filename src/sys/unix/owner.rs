//! Who else has a file: other processes' open descriptors and record
//! locks (Linux `/proc`), and the owner of a file by uid and user name.
//! `clean` uses them to leave alone files that someone is using (see
//! `sweep`); elsewhere they answer "nobody we can see".

use super::super::FileId;
use std::collections::HashSet;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// The owner's uid, and whether it is our effective uid.
pub(crate) fn owner_uid(meta: &Metadata) -> (u32, bool) {
    let uid = meta.uid();
    (uid, uid == rustix::process::geteuid().as_raw())
}

/// Link count and permission bits (`mode & 0o7777`).
pub(crate) fn links_and_mode(meta: &Metadata) -> (u64, u32) {
    (meta.nlink(), meta.mode() & 0o7777)
}

/// The user name of `uid` from `/etc/passwd`, if it can be read.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}

/// One line of `/proc/locks` reduced to the holder's pid (`-1` for OFD
/// locks) and the locked inode as (major, minor, inode). Lines of blocked
/// waiters (`->`) are skipped: they hold nothing.
fn parse_proc_locks_line(line: &str) -> Option<(i64, (u32, u32, u64))> {
    let mut f = line.split_whitespace();
    f.next()?; // "1:"
    let kind = f.next()?;
    if kind == "->" {
        return None;
    }
    // class (ADVISORY/MANDATORY), access (READ/WRITE), pid, dev:inode
    let pid: i64 = f.nth(2)?.parse().ok()?;
    let mut id = f.next()?.split(':');
    let major = u32::from_str_radix(id.next()?, 16).ok()?;
    let minor = u32::from_str_radix(id.next()?, 16).ok()?;
    let ino = id.next()?.parse().ok()?;
    Some((pid, (major, minor, ino)))
}

fn split_dev(id: FileId) -> (u32, u32, u64) {
    (rustix::fs::major(id.dev), rustix::fs::minor(id.dev), id.ino)
}

/// Which of `ids` carry a lock of any kind (`flock`, POSIX, OFD, lease)
/// taken by another process, from `/proc/locks`. Empty where that file
/// cannot be read.
pub(crate) fn locked_by_others(ids: &HashSet<FileId>) -> HashSet<FileId> {
    let Ok(text) = std::fs::read_to_string("/proc/locks") else {
        return HashSet::new();
    };
    let me = i64::from(std::process::id());
    let wanted: Vec<((u32, u32, u64), FileId)> =
        ids.iter().map(|&id| (split_dev(id), id)).collect();
    let mut out = HashSet::new();
    for (pid, key) in text.lines().filter_map(parse_proc_locks_line) {
        if pid == me {
            continue;
        }
        if let Some((_, id)) = wanted.iter().find(|(k, _)| *k == key) {
            out.insert(*id);
        }
    }
    out
}

/// Which of `ids` another process has open, from `/proc/<pid>/fd` (as
/// far as we may read it: another user's processes are visible to root
/// only). Empty where `/proc` cannot be read.
pub(crate) fn open_by_others(ids: &HashSet<FileId>) -> HashSet<FileId> {
    let mut out = HashSet::new();
    if ids.is_empty() {
        return out;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    let me = std::process::id().to_string();
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            // stat(2) of the magic link reports the open file itself.
            if let Ok(m) = std::fs::metadata(fd.path()) {
                let id = super::file_id(&m);
                if ids.contains(&id) {
                    out.insert(id);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_parse() {
        assert_eq!(
            parse_proc_locks_line("1: FLOCK  ADVISORY  WRITE 18125 fe:00:5398585 0 EOF"),
            Some((18125, (0xfe, 0, 5_398_585)))
        );
        assert_eq!(
            parse_proc_locks_line("2: POSIX  ADVISORY  READ 7 08:01:12 0 EOF"),
            Some((7, (8, 1, 12)))
        );
        assert_eq!(
            parse_proc_locks_line("3: OFDLCK ADVISORY  WRITE -1 00:2a:99 0 EOF"),
            Some((-1, (0, 0x2a, 99)))
        );
        assert_eq!(
            parse_proc_locks_line("4: -> FLOCK  ADVISORY  WRITE 1 fe:00:1 0 EOF"),
            None
        );
        assert_eq!(parse_proc_locks_line("garbage"), None);
    }
}
