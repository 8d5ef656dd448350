//! Unix implementation of the platform seam. Linux-only pieces (`/proc`,
//! `renameat2`, boot id) are gated inside; other Unixes fall back to what
//! POSIX gives (link(2) publish, no start time, no boot id).

use super::{FileId, PidState};
use std::ffi::CString;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Exclusive create, mode 0600, never following a symlink, close-on-exec
/// (std always sets O_CLOEXEC).
pub(crate) fn create_private_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Open an existing lock file for inspection: read-only, no symlink following,
/// non-blocking so that a FIFO planted at the path cannot hang the open.
pub(crate) fn open_for_inspection(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Open a file for appending whole lines (O_APPEND, created 0600 if missing,
/// no symlink following for the final component).
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

pub(crate) fn file_id(meta: &Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

/// Try to take a `flock` without blocking. `Ok(true)`: taken. `Ok(false)`:
/// someone else holds a conflicting lock. `Err`: the filesystem does not
/// support flock (ENOLCK, EOPNOTSUPP) or another failure.
pub(crate) fn flock_try(file: &File, exclusive: bool) -> io::Result<bool> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    } | libc::LOCK_NB;
    loop {
        // SAFETY: flock on a valid open descriptor owned by `file`.
        let ret = unsafe { libc::flock(file.as_raw_fd(), op) };
        if ret == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// Blocking exclusive flock (used only by the raw baselines in the bench).
pub fn flock_blocking(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock on a valid open descriptor owned by `file`.
        let ret = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Drop a flock (used only by the raw baselines in the bench; the crate
/// itself drops its witness by closing the descriptor).
pub fn flock_unlock(file: &File) -> io::Result<()> {
    // SAFETY: flock on a valid open descriptor owned by `file`.
    cvt(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) }).map(|_| ())
}

/// An unnamed regular file in `dir` (Linux `O_TMPFILE`, mode 0600): it has
/// no name until [`link_tmpfile`] gives it one, so a crash before that
/// leaves nothing behind. Errors with the kernel's answer where unsupported
/// (EOPNOTSUPP, EISDIR on old kernels, EINVAL).
#[cfg(target_os = "linux")]
pub(crate) fn open_tmpfile(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn open_tmpfile(_dir: &Path) -> io::Result<File> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Give an `O_TMPFILE` file the name `to`, never replacing an existing
/// `to` (linkat(2) fails with EEXIST). Uses `/proc/self/fd`, which needs no
/// privilege (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH).
#[cfg(target_os = "linux")]
pub(crate) fn link_tmpfile(file: &File, to: &Path) -> io::Result<Publish> {
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let to_c = cstr(to)?;
    // SAFETY: two valid NUL-terminated paths.
    let ret = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if ret == 0 {
        return Ok(Publish::Done { renamed: true });
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EEXIST) => Ok(Publish::Exists),
        // No /proc mounted (a missing target directory is a real error).
        Some(libc::ENOENT) if !Path::new("/proc/self/fd").exists() => Ok(Publish::Unsupported),
        // A filesystem without hard links for such files.
        Some(libc::EPERM) | Some(libc::EOPNOTSUPP) | Some(libc::EXDEV) => Ok(Publish::Unsupported),
        _ => Err(err),
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn link_tmpfile(_file: &File, _to: &Path) -> io::Result<Publish> {
    Ok(Publish::Unsupported)
}

/// Open the published lock file by name for writing, without following a
/// symlink and without blocking. Its only purpose: when the holder dies the
/// kernel closes it, and a writable descriptor closing while the name is
/// still linked is an inotify `IN_CLOSE_WRITE` on that name, which wakes
/// the waiters at once (a descriptor from `O_TMPFILE` closes unseen).
pub(crate) fn open_death_sentinel(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// ELOOP: `O_NOFOLLOW` met a symlink.
pub(crate) fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// EBADF from `flock(LOCK_EX)` on a read-only descriptor: NFS emulates
/// flock with POSIX locks, whose exclusive form needs write access.
pub(crate) fn is_needs_writable_fd(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EBADF)
}

/// What `open(O_TMPFILE)` answers where the filesystem or kernel lacks it.
pub(crate) fn is_tmpfile_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
    ) || e.kind() == io::ErrorKind::Unsupported
}

/// Kind of a non-regular file, for messages.
pub(crate) fn file_kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// Write all of `buf` at `offset` (pwrite), not moving the file position.
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, offset)
}

/// Outcome of a no-clobber publish.
pub(crate) enum Publish {
    /// The temp file is now at the destination (and no longer at its own name
    /// when `renamed`; after a hard link both names exist).
    Done { renamed: bool },
    /// The destination already exists.
    Exists,
    /// Neither `renameat2(RENAME_NOREPLACE)` nor `link(2)` work here.
    Unsupported,
}

/// Atomically make `from` visible at `to` without ever replacing an existing
/// `to`: `renameat2(RENAME_NOREPLACE)` where the kernel and filesystem have it
/// (Linux >= 3.15 on ext4, xfs, btrfs, tmpfs), else `link(2)`.
pub(crate) fn publish_noreplace(from: &Path, to: &Path) -> io::Result<Publish> {
    let from_c = cstr(from)?;
    let to_c = cstr(to)?;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: two valid NUL-terminated paths; AT_FDCWD for relative
        // resolution (our paths are absolute anyway).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                from_c.as_ptr(),
                libc::AT_FDCWD,
                to_c.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if ret == 0 {
            return Ok(Publish::Done { renamed: true });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EEXIST) => return Ok(Publish::Exists),
            // Not supported by this kernel or filesystem: try link(2).
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {}
            _ => return Err(err),
        }
    }
    // SAFETY: two valid NUL-terminated paths.
    let ret = unsafe { libc::link(from_c.as_ptr(), to_c.as_ptr()) };
    if ret == 0 {
        return Ok(Publish::Done { renamed: false });
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EEXIST) => Ok(Publish::Exists),
        // Filesystems without hard links (some FUSE, SMB, vfat) answer
        // EPERM or EOPNOTSUPP; see link(2).
        Some(libc::EPERM) | Some(libc::EOPNOTSUPP) | Some(libc::EMLINK) => Ok(Publish::Unsupported),
        _ => Err(err),
    }
}

/// `kill(pid, 0)` plus a zombie check. EPERM means the process exists under
/// another user: alive (the reference counted it dead until its PR #110235).
pub(crate) fn probe_pid(pid: u32) -> PidState {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return PidState::Dead;
    };
    if pid_t <= 0 {
        return PidState::Dead;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let ret = unsafe { libc::kill(pid_t, 0) };
    if ret != 0 {
        return pid_state_from_errno(io::Error::last_os_error().raw_os_error());
    }
    match proc_stat(pid) {
        Some(stat) if stat.state == b'Z' || stat.state == b'X' => PidState::Dead,
        _ => PidState::Alive,
    }
}

/// What a failed `kill(pid, 0)` says: ESRCH dead, EPERM alive (another
/// user's process), anything else unknown.
fn pid_state_from_errno(errno: Option<i32>) -> PidState {
    match errno {
        Some(libc::ESRCH) => PidState::Dead,
        Some(libc::EPERM) => PidState::Alive,
        _ => PidState::Unknown,
    }
}

struct ProcStat {
    state: u8,
    starttime: u64,
}

/// Parse `/proc/<pid>/stat`: the command name may hold spaces and ')' so the
/// fields are split after the last ')' (proc(5)). Field 3 is the state, field
/// 22 the start time in clock ticks since boot.
fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    let state = fields.next()?.as_bytes().first().copied()?;
    // After the state (field 3) come fields 4..; field 22 is the 19th after it.
    let starttime = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, starttime })
}

#[cfg(target_os = "linux")]
fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&text)
}

#[cfg(not(target_os = "linux"))]
fn proc_stat(_pid: u32) -> Option<ProcStat> {
    None
}

/// Start time of `pid` in clock ticks since boot (Linux only; `None` where
/// unknown or unreadable, e.g. hidepid=2).
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|s| s.starttime)
}

#[cfg(target_os = "linux")]
pub(crate) fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn boot_id() -> Option<String> {
    None
}

/// The pid namespace of this process (`pid:[4026531836]`), so that records
/// from another container sharing the volume are not judged by pid.
#[cfg(target_os = "linux")]
pub(crate) fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(link.to_string_lossy().into_owned())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn pid_namespace() -> Option<String> {
    None
}

pub(crate) fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates
    // when the name fits, and we stop at the first NUL or the end.
    let ret = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if ret != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_owned();
    (!name.is_empty()).then_some(name)
}

/// 16 random bytes from the kernel (getrandom(2) on Linux, /dev/urandom
/// elsewhere); if neither answers, a mix of time, pid and a counter, which is
/// still unique per acquisition in this process.
pub(crate) fn random_bytes() -> [u8; 16] {
    let mut buf = [0u8; 16];
    #[cfg(target_os = "linux")]
    {
        // SAFETY: buf is valid for 16 bytes.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == buf.len() as isize {
            return buf;
        }
    }
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut buf).is_ok() {
            return buf;
        }
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    buf[..8].copy_from_slice(&nanos.to_le_bytes());
    let mix = (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    buf[8..].copy_from_slice(&mix.to_le_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_parses_names_with_parens_and_spaces() {
        let text =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = parse_proc_stat(text).expect("parses");
        assert_eq!(stat.state, b'S');
        assert_eq!(stat.starttime, 987_654);
    }

    #[test]
    fn proc_stat_rejects_truncated_text() {
        assert!(parse_proc_stat("1234 (x) S 1 2 3").is_none());
        assert!(parse_proc_stat("no paren at all").is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_process_is_alive_with_a_start_time() {
        assert_eq!(probe_pid(std::process::id()), PidState::Alive);
        assert!(process_start_time(std::process::id()).is_some());
    }

    #[test]
    fn kill_errno_maps_to_liveness() {
        assert_eq!(pid_state_from_errno(Some(libc::EPERM)), PidState::Alive);
        assert_eq!(pid_state_from_errno(Some(libc::ESRCH)), PidState::Dead);
        assert_eq!(pid_state_from_errno(Some(libc::EINVAL)), PidState::Unknown);
        assert_eq!(pid_state_from_errno(None), PidState::Unknown);
    }

    #[test]
    fn impossible_pids_are_dead() {
        assert_eq!(probe_pid(0), PidState::Dead);
        assert_eq!(probe_pid(u32::MAX), PidState::Dead);
    }
}
