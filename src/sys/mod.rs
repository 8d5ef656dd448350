//! Platform seam: every OS-specific call the crate makes goes through the
//! items re-exported here (files, flock, publishing, pids and `/proc`,
//! directory events for the waits, signal dispositions). Unix (Linux first)
//! lives in `unix.rs` and its submodules; any other platform is meant to
//! compile against `unsupported.rs`, whose functions return
//! [`std::io::ErrorKind::Unsupported`] instead of panicking (not verified:
//! only a Linux target is available to this project's CI). Outside this
//! module the crate has no `cfg(target_os)`, no `cfg(unix)` and no
//! `std::os` imports.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::flock_unlock;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(not(unix))]
mod unsupported;
#[cfg(not(unix))]
pub use unsupported::flock_unlock;
#[cfg(not(unix))]
pub(crate) use unsupported::*;

/// Identity of a file: device and inode. Two paths naming the same identity
/// name the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// What `kill(pid, 0)` and `/proc` say about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidState {
    /// The process exists (including "exists but belongs to another user": EPERM).
    Alive,
    /// The kernel says there is no such process (ESRCH), or it is a zombie.
    Dead,
    /// Could not tell. Treated as alive everywhere.
    Unknown,
}

/// One directory event, reduced to what lock waiters need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirEvent<'a> {
    /// The queue overflowed: events were lost, everyone re-checks.
    Overflow,
    /// The watch with this descriptor is gone (directory removed or
    /// unmounted, or the watch removed).
    WatchGone(i32),
    /// Something that ends a hold happened to the entry with this name in
    /// the directory of the watch with this descriptor.
    Entry(i32, &'a std::ffi::OsStr),
}

/// Directory events where this crate has no implementation (kqueue is not
/// used): [`DirEvents::new`] answers `Unsupported`, so no value exists and
/// waits fall back to timed re-checks.
#[cfg(not(target_os = "linux"))]
pub(crate) struct DirEvents(std::convert::Infallible);

#[cfg(not(target_os = "linux"))]
impl DirEvents {
    pub(crate) fn new(_blocking: bool) -> std::io::Result<DirEvents> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
    pub(crate) fn add_watch(&self, _dir: &std::path::Path) -> std::io::Result<i32> {
        match self.0 {}
    }
    pub(crate) fn remove_watch(&self, _wd: i32) {
        match self.0 {}
    }
    pub(crate) fn read(
        &self,
        _buf: &mut [std::mem::MaybeUninit<u8>],
        _f: impl FnMut(DirEvent<'_>),
    ) -> std::io::Result<bool> {
        match self.0 {}
    }
    pub(crate) fn wait_readable(&self, _timeout: std::time::Duration) -> std::io::Result<bool> {
        match self.0 {}
    }
}

/// What the platform layer puts inside an [`std::io::Error`] when a file it
/// opened (without blocking, without following a symlink) turned out not to
/// be a regular file: `Error::io` turns it into `ErrorKind::NotAFile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotRegular {
    /// Which of our names it is ("transcript").
    pub role: &'static str,
    /// What was found there ("FIFO", "socket", ...).
    pub what: &'static str,
}

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} is a {}, not a regular file",
            self.role, self.what
        )
    }
}

impl std::error::Error for NotRegular {}

impl NotRegular {
    /// As an [`std::io::Error`] of kind `InvalidInput`.
    pub(crate) fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, self)
    }
}
