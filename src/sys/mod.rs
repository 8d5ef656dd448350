//! Platform seam: every OS-specific call the crate makes goes through the
//! functions re-exported here. Unix (Linux first) lives in `unix.rs`; any other
//! platform is meant to compile against `unsupported.rs`, whose functions
//! return [`std::io::ErrorKind::Unsupported`] instead of panicking (not
//! verified: only a Linux target is available to this project's CI).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;
#[cfg(unix)]
pub use unix::{flock_blocking, flock_unlock};

#[cfg(not(unix))]
mod unsupported;
#[cfg(not(unix))]
pub(crate) use unsupported::*;
#[cfg(not(unix))]
pub use unsupported::{flock_blocking, flock_unlock};

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
