//! Unix implementation of the platform seam. Linux-only pieces (`/proc`,
//! `O_TMPFILE`, `renameat2`, inotify, boot id) are gated inside; other
//! Unixes fall back to what POSIX gives (link(2) publish, no start time, no
//! boot id, no directory events). System calls go through `rustix`; the
//! only `unsafe` of the library is in `unix/signals.rs` (see its docs).

use super::{FileId, PidState};
use rustix::fs::{AtFlags, CWD, FlockOperation, OFlags};
use rustix::io::Errno;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

#[cfg(target_os = "linux")]
mod inotify;
#[cfg(target_os = "linux")]
pub(crate) use inotify::DirEvents;

#[cfg(feature = "signals")]
pub(crate) mod signals;

mod owner;
pub(crate) use owner::{links_and_mode, locked_by_others, open_by_others, owner_uid, user_name};

/// `custom_flags` takes the C `int` value of the open flags.
fn oflags(flags: OFlags) -> i32 {
    flags.bits() as i32
}

fn is(e: &io::Error, errno: Errno) -> bool {
    e.raw_os_error() == Some(errno.raw_os_error())
}

/// Exclusive create, mode 0600, never following a symlink, close-on-exec
/// (std always sets O_CLOEXEC).
pub(crate) fn create_private_exclusive(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(oflags(OFlags::NOFOLLOW))
        .open(path)?;
    make_private(&file)?;
    Ok(file)
}

/// Mode 0600 on a file we just created: `open(2)` applies the umask to the
/// mode it is given, so under umask 0277 a new file would be 0400 (its
/// owner could not write it again) and under 0477 0200 (its owner could
/// not read the record: `owner=unknown`, never reclaimed but by root).
pub(crate) fn make_private(file: &File) -> io::Result<()> {
    rustix::fs::fchmod(file, rustix::fs::Mode::from_raw_mode(0o600))?;
    Ok(())
}

/// A file of ours left without read or write access for its owner by a
/// umask (see [`make_private`]): regular, ours, private but not 0600.
pub(crate) fn needs_owner_access(meta: &Metadata) -> bool {
    meta.file_type().is_file()
        && meta.uid() == rustix::process::geteuid().as_raw()
        && meta.mode() & 0o077 == 0
        && meta.mode() & 0o777 != 0o600
}

/// Open (or create, mode 0600) a witness slot file for reading and
/// writing, never following a symlink, close-on-exec. Not exclusive: a slot
/// left by a process that died is taken over (see `lock::slot`).
pub(crate) fn open_slot(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(oflags(OFlags::NOFOLLOW | OFlags::NONBLOCK))
        .open(path)
}

/// A regular file owned by our effective user, with one name and no
/// permission bits for group or others: a file we may adopt as ours.
pub(crate) fn is_private_single(meta: &Metadata) -> bool {
    meta.file_type().is_file()
        && meta.uid() == rustix::process::geteuid().as_raw()
        && meta.nlink() == 1
        && meta.mode() & 0o077 == 0
}

/// Open an existing lock file for inspection: read-only, no symlink following,
/// non-blocking so that a FIFO planted at the path cannot hang the open.
pub(crate) fn open_for_inspection(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(oflags(OFlags::NOFOLLOW | OFlags::NONBLOCK))
        .open(path)
}

/// Open the transcript for appending whole lines: `O_APPEND`, never
/// following a symlink, never blocking (a FIFO planted there would block
/// an `open` for writing until a reader comes, with the lock held), and
/// only if it is a regular file (checked with `fstat` before any write: a
/// device there is never written to). Created mode 0600 whatever the
/// umask if missing. A FIFO, socket, device, directory or symlink there is
/// an `InvalidInput` error carrying [`NotRegular`] (`NotAFile` to callers).
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    // O_NOCTTY: a terminal planted there must not become ours.
    let flags = OFlags::APPEND | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    // Open it if it exists, else create it exclusively (so that only a file
    // we created gets its mode set); a race with another creator retries.
    for _ in 0..3 {
        // Readable too: the torn tail check reads the last line
        // (`transcript`).
        match OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(oflags(flags))
            .open(path)
        {
            Ok(file) => {
                let meta = file.metadata()?;
                if !meta.file_type().is_file() {
                    return Err(not_regular("transcript", meta.file_type()));
                }
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // ENXIO (a FIFO without a reader, a socket), EISDIR, ELOOP (a
            // symlink), EACCES on a device node: say what is there.
            Err(e) => return Err(odd_file_error(path, e)),
        }
        match OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(oflags(flags))
            .open(path)
        {
            Ok(file) => {
                make_private(&file)?;
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(odd_file_error(path, e)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "created and removed by someone else again and again",
    ))
}

/// `e` from opening `path`, or a [`NotRegular`] error if what is there
/// (not followed) is not a regular file.
fn odd_file_error(path: &Path, e: io::Error) -> io::Error {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => not_regular("transcript", m.file_type()),
        _ => e,
    }
}

fn not_regular(role: &'static str, ft: std::fs::FileType) -> io::Error {
    super::NotRegular {
        role,
        what: file_kind(ft),
    }
    .into_io()
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
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    loop {
        match rustix::fs::flock(file, op) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Blocking exclusive flock (the lock's queue, and the raw baselines in the
/// bench). Retries after `EINTR`.
pub(crate) fn flock_blocking(file: &File) -> io::Result<()> {
    loop {
        match rustix::fs::flock(file, FlockOperation::LockExclusive) {
            Err(Errno::INTR) => continue,
            r => return r.map_err(Into::into),
        }
    }
}

/// Drop a flock (the lock's queue, and the raw baselines in the bench; the
/// crate drops its witness by closing the descriptor).
pub fn flock_unlock(file: &File) -> io::Result<()> {
    Ok(rustix::fs::flock(file, FlockOperation::Unlock)?)
}

/// Open the lock's queue file (`<lock>.queue`) for its `flock` wait
/// queue: read-only (a `flock` needs no write access), with `create`
/// created with mode 0600 if missing (else `NotFound`), never following a
/// symlink, non-blocking (a FIFO planted there cannot hang the open),
/// close-on-exec. Anything but a regular file there is `InvalidInput`:
/// the caller then waits without the queue.
pub(crate) fn open_queue(path: &Path, create: bool) -> io::Result<File> {
    use rustix::fs::Mode;
    let create = if create {
        OFlags::CREATE
    } else {
        OFlags::empty()
    };
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | create | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    // Created under a umask such as 0477 (0200): its owner could not open
    // it for reading again (see `make_private`).
    if needs_owner_access(&meta) {
        make_private(&file)?;
    }
    Ok(file)
}

/// An unnamed regular file in `dir` (Linux `O_TMPFILE`, mode 0600): it has
/// no name until [`link_tmpfile`] gives it one, so a crash before that
/// leaves nothing behind. Errors with the kernel's answer where unsupported
/// (EOPNOTSUPP, EISDIR on old kernels, EINVAL).
#[cfg(target_os = "linux")]
pub(crate) fn open_tmpfile(dir: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(oflags(OFlags::TMPFILE))
        .open(dir)?;
    make_private(&file)?;
    Ok(file)
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
    use std::os::fd::AsRawFd;
    let from = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(CWD, from.as_str(), CWD, to, AtFlags::SYMLINK_FOLLOW) {
        Ok(()) => Ok(Publish::Done { renamed: true }),
        Err(Errno::EXIST) => Ok(Publish::Exists),
        // No /proc mounted (a missing target directory is a real error).
        Err(Errno::NOENT) if !Path::new("/proc/self/fd").exists() => Ok(Publish::Unsupported),
        // A filesystem without hard links for such files.
        Err(Errno::PERM | Errno::OPNOTSUPP | Errno::XDEV) => Ok(Publish::Unsupported),
        Err(e) => Err(e.into()),
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
        .custom_flags(oflags(OFlags::NOFOLLOW | OFlags::NONBLOCK))
        .open(path)
}

/// EMFILE: the process is at its `RLIMIT_NOFILE`.
pub(crate) fn is_out_of_descriptors(e: &io::Error) -> bool {
    is(e, Errno::MFILE)
}

/// ELOOP: `O_NOFOLLOW` met a symlink.
pub(crate) fn is_symlink_error(e: &io::Error) -> bool {
    is(e, Errno::LOOP)
}

/// EBADF from `flock(LOCK_EX)` on a read-only descriptor: NFS emulates
/// flock with POSIX locks, whose exclusive form needs write access.
pub(crate) fn is_needs_writable_fd(e: &io::Error) -> bool {
    is(e, Errno::BADF)
}

/// What `open(O_TMPFILE)` answers where the filesystem or kernel lacks it.
pub(crate) fn is_tmpfile_unsupported(e: &io::Error) -> bool {
    [Errno::OPNOTSUPP, Errno::ISDIR, Errno::INVAL]
        .into_iter()
        .any(|errno| is(e, errno))
        || e.kind() == io::ErrorKind::Unsupported
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

/// Fill `buf` from `offset` (pread), not moving the file position.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
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
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::RenameFlags;
        match rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(Publish::Done { renamed: true }),
            Err(Errno::EXIST) => return Ok(Publish::Exists),
            // Not supported by this kernel or filesystem: try link(2).
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // linkat without AT_SYMLINK_FOLLOW is link(2) as Linux does it.
    match rustix::fs::linkat(CWD, from, CWD, to, AtFlags::empty()) {
        Ok(()) => Ok(Publish::Done { renamed: false }),
        Err(Errno::EXIST) => Ok(Publish::Exists),
        // Filesystems without hard links (some FUSE, SMB, vfat) answer
        // EPERM or EOPNOTSUPP; see link(2).
        Err(Errno::PERM | Errno::OPNOTSUPP | Errno::MLINK) => Ok(Publish::Unsupported),
        Err(e) => Err(e.into()),
    }
}

/// `renameat2(RENAME_NOREPLACE)` alone (no `link(2)` fallback): the
/// renamed file keeps its dentry, so a descriptor opened through `from`
/// reports events under `to` from now on. `Unsupported` where the kernel or
/// filesystem lacks the flag.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<Publish> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::RenameFlags;
        match rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(Publish::Done { renamed: true }),
            Err(Errno::EXIST) => Ok(Publish::Exists),
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => Ok(Publish::Unsupported),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (from, to);
        Ok(Publish::Unsupported)
    }
}

/// `kill(pid, 0)` plus a zombie check. EPERM means the process exists under
/// another user: alive (the reference counted it dead until its PR #110235).
pub(crate) fn probe_pid(pid: u32) -> PidState {
    let Some(pid_t) = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .and_then(rustix::process::Pid::from_raw)
    else {
        return PidState::Dead;
    };
    if let Err(e) = rustix::process::test_kill_process(pid_t) {
        return pid_state_from_kill(e);
    }
    match proc_stat(pid) {
        Some(stat) if stat.state == b'Z' || stat.state == b'X' => PidState::Dead,
        _ => PidState::Alive,
    }
}

/// What a failed `kill(pid, 0)` says: ESRCH dead, EPERM alive (another
/// user's process), anything else unknown.
fn pid_state_from_kill(errno: Errno) -> PidState {
    match errno {
        Errno::SRCH => PidState::Dead,
        Errno::PERM => PidState::Alive,
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

/// The node name from uname(2), which is what gethostname(2) answers.
pub(crate) fn hostname() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().trim().to_owned();
    (!name.is_empty()).then_some(name)
}

/// 16 random bytes from the kernel (getrandom(2) on Linux, /dev/urandom
/// elsewhere); if neither answers, a mix of time, pid and a counter, which is
/// still unique per acquisition in this process.
pub(crate) fn random_bytes() -> [u8; 16] {
    let mut buf = [0u8; 16];
    #[cfg(target_os = "linux")]
    {
        use rustix::rand::{GetRandomFlags, getrandom};
        if getrandom(&mut buf, GetRandomFlags::empty()).ok() == Some(buf.len()) {
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

/// Let processes spawned from now on inherit `file` (clear `FD_CLOEXEC`),
/// or stop them from inheriting it.
pub(crate) fn set_inheritable(file: &File, inherit: bool) -> io::Result<()> {
    use rustix::io::{FdFlags, fcntl_getfd, fcntl_setfd};
    let flags = fcntl_getfd(file)?;
    let flags = if inherit {
        flags - FdFlags::CLOEXEC
    } else {
        flags | FdFlags::CLOEXEC
    };
    fcntl_setfd(file, flags)?;
    Ok(())
}

/// Mode 0700 for directories we create (the reclaim guard).
pub(crate) fn dir_builder_private(b: &mut std::fs::DirBuilder) {
    use std::os::unix::fs::DirBuilderExt;
    b.mode(0o700);
}

/// Create the directory `path` (its parent exists) with mode 0700 whatever
/// the umask: `mkdir`, then `fchmod` through a descriptor opened without
/// following a symlink, so that only the directory we made is changed.
/// `AlreadyExists` if something is there.
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    use rustix::fs::Mode;
    rustix::fs::mkdir(path, Mode::RWXU)?;
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fchmod(&fd, Mode::RWXU)?;
    Ok(())
}

/// A file name from its bytes (on Unix any bytes but `/` and NUL).
pub(crate) fn os_string_from_bytes(b: Vec<u8>) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    std::ffi::OsString::from_vec(b)
}

/// The longest name, in bytes, a directory entry in `dir` may have
/// (`statvfs(3)` `f_namemax`); 255, the usual `NAME_MAX`, where unknown.
pub(crate) fn name_max(dir: &Path) -> usize {
    match rustix::fs::statvfs(dir) {
        Ok(st) if st.f_namemax > 0 => usize::try_from(st.f_namemax).unwrap_or(usize::MAX),
        _ => 255,
    }
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
        assert_eq!(pid_state_from_kill(Errno::PERM), PidState::Alive);
        assert_eq!(pid_state_from_kill(Errno::SRCH), PidState::Dead);
        assert_eq!(pid_state_from_kill(Errno::INVAL), PidState::Unknown);
    }

    #[test]
    fn impossible_pids_are_dead() {
        assert_eq!(probe_pid(0), PidState::Dead);
        assert_eq!(probe_pid(u32::MAX), PidState::Dead);
    }
}
