//! One error type for the whole crate. Every error names the lock path and,
//! where one is known, the owner, so that a person reading the message knows
//! what to do next.

use crate::verdict::Reason;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for matching without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `try_acquire`: someone else holds the lock (see [`Error::owner`]).
    Busy,
    /// `acquire`: the lock stayed held for the whole timeout.
    Timeout,
    /// The holder is alive but old (`too-old`, `hold-exceeded`), and the
    /// caller asked to fail fast on that ([`crate::LockOptions::with_fail_on_stale`]).
    Stale,
    /// The lock path is a directory, FIFO, socket, symlink or device.
    NotAFile,
    /// The guard no longer holds the lock (max hold exceeded, lock file
    /// removed or replaced, or `release_all`).
    LockLost,
    /// Creating, reading or removing a lock file was refused by permissions.
    PermissionDenied,
    /// Any other I/O failure.
    Io,
    /// This platform or filesystem cannot provide the lock.
    Unsupported,
    /// The transcript's name cannot be locked: it is itself a name of the
    /// lock protocol (a lock, queue, reclaim guard, witness slot or temp
    /// file; see [`Error::suggestion`]), or a name derived from it would be
    /// longer than the filesystem allows (see [`Error::longest_name`]).
    InvalidName,
    /// An argument was refused before anything was touched: an option the
    /// lock cannot honour (a zero max hold, stale threshold or orphan
    /// grace), or a line to append that contains a newline.
    InvalidInput,
}

pub(crate) use crate::sys::NotRegular;

/// What went wrong between this process and an etcd cluster: the detail
/// of an etcd backend error, beside its [`ErrorKind`] (see
/// [`Error::etcd_failure`]). Decided from the gRPC status code etcd
/// answered with (etcd's `api/v3rpc/rpctypes/error.go`) and from the types
/// in a transport error's sources (the OS error, rustls's verdict), never
/// from message text.
#[cfg(feature = "etcd")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EtcdFailure {
    /// Every endpoint refused the TCP connection (`ECONNREFUSED`): nothing
    /// listens there. Final at once. [`ErrorKind::Io`].
    Refused,
    /// No usable answer within the connect timeout (or a request's bound).
    /// [`ErrorKind::Io`].
    TimedOut,
    /// A member answered that it cannot serve now (gRPC `Unavailable`,
    /// `DeadlineExceeded`: no leader, leader changed, request timed out),
    /// or the way to it broke. Tried again within the bounds.
    /// [`ErrorKind::Io`].
    Unavailable,
    /// The TLS handshake failed: a server certificate that does not verify,
    /// a client certificate missing or refused, a server that does not
    /// speak TLS. Never retried. [`ErrorKind::Io`].
    Tls,
    /// The credentials: none given where authentication is on, a wrong
    /// user or password, a token etcd refuses. Never retried.
    /// [`ErrorKind::PermissionDenied`].
    Authentication,
    /// Authenticated, but the user's roles do not cover the key prefix
    /// (gRPC `PermissionDenied`). Never retried.
    /// [`ErrorKind::PermissionDenied`].
    Permission,
    /// etcd no longer knows the lease (gRPC `NotFound`, "requested lease not
    /// found": it expired or was revoked). [`ErrorKind::Io`].
    LeaseNotFound,
    /// A key under the lock's prefix that session-lock did not write (the
    /// message names it). [`ErrorKind::Io`].
    ForeignKey,
    /// etcd refused the request for another reason (the message has etcd's
    /// words). [`ErrorKind::Io`].
    Rejected,
    /// This process's etcd thread could not start, or dropped a request
    /// without an answer. [`ErrorKind::Io`].
    Internal,
}

#[cfg(feature = "etcd")]
impl EtcdFailure {
    /// Its [`ErrorKind`]: authentication and permission refusals are
    /// `PermissionDenied` (as a refused file is), everything else `Io`.
    /// The command line's exit code follows the kind (5 for both).
    fn kind(self) -> ErrorKind {
        match self {
            EtcdFailure::Authentication | EtcdFailure::Permission => ErrorKind::PermissionDenied,
            _ => ErrorKind::Io,
        }
    }

    /// The [`io::ErrorKind`] of this error converted into an
    /// [`io::Error`].
    fn io_kind(self) -> io::ErrorKind {
        match self {
            EtcdFailure::Refused => io::ErrorKind::ConnectionRefused,
            EtcdFailure::TimedOut => io::ErrorKind::TimedOut,
            EtcdFailure::Tls | EtcdFailure::ForeignKey => io::ErrorKind::InvalidData,
            EtcdFailure::Authentication | EtcdFailure::Permission => {
                io::ErrorKind::PermissionDenied
            }
            EtcdFailure::LeaseNotFound => io::ErrorKind::NotFound,
            _ => io::ErrorKind::Other,
        }
    }
}

/// Why a transcript name was refused ([`ErrorKind::InvalidName`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameProblem {
    /// The name is one the protocol derives from the transcript `of`.
    ProtocolName {
        /// "lock file", "queue file", "reclaim guard", "witness slot", "temp file".
        what: &'static str,
        /// The transcript it belongs to.
        of: PathBuf,
    },
    /// A derived name would exceed the directory's name limit.
    TooLong {
        /// The transcript name's length in bytes.
        len: usize,
        /// The filesystem's limit on one name, in bytes.
        name_max: usize,
        /// The longest transcript name that works there, in bytes.
        longest: usize,
    },
}

fn invalid_name_message(path: &Path, problem: &NameProblem) -> String {
    match problem {
        NameProblem::ProtocolName { what, of } => format!(
            "{} is a {what} of the session lock protocol, not a transcript; did you mean {}?",
            path.display(),
            of.display()
        ),
        NameProblem::TooLong {
            len,
            name_max,
            longest,
        } => format!(
            "transcript name too long to lock: {} ({len} bytes); the protocol derives names \
             up to {} bytes longer (`.<name>.lock.<token>.tmp`) and this filesystem allows \
             {name_max} bytes per name, so the longest transcript name that works here is \
             {longest} bytes",
            path.display(),
            name_max.saturating_sub(*longest),
        ),
    }
}

/// Who holds a lock, as far as inspection could tell. Displays in the
/// reference's shape: `pid=1234 alive=true ageMs=5021`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Owner {
    /// The owner's pid from the record, when valid.
    pub pid: Option<u32>,
    /// Whether the owner is alive (`None`: unknown, e.g. another host).
    pub alive: Option<bool>,
    /// Age of the lock from its `createdAt`, in milliseconds.
    pub age_ms: Option<u64>,
    /// Host name from the record.
    pub hostname: Option<String>,
    /// Label from the record.
    pub label: Option<String>,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.pid, self.alive) {
            (Some(pid), Some(alive)) => write!(f, "pid={pid} alive={alive}")?,
            (Some(pid), None) => write!(f, "pid={pid}")?,
            (None, _) => f.write_str("owner=unknown")?,
        }
        if let Some(age) = self.age_ms {
            write!(f, " ageMs={age}")?;
        }
        Ok(())
    }
}

/// Why a guard stopped holding its lock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
#[non_exhaustive]
pub enum LostReason {
    /// The max-hold watchdog force-released the lock.
    MaxHoldExceeded {
        /// How long the lock had been held, in milliseconds.
        held_ms: u64,
        /// The max hold that was exceeded, in milliseconds.
        max_hold_ms: u64,
    },
    /// The lock file no longer exists (someone deleted it).
    Removed,
    /// The lock path now names another file (someone deleted and replaced it).
    Replaced,
    /// `release_all` force-released every lock of this process.
    ReleasedAll,
    /// The hold ended normally: its last guard was released or dropped.
    /// What [`crate::LockGuard::lost`] futures and
    /// [`crate::LockGuard::wait_lost`] report then, so that a task watching
    /// for a loss always ends.
    Released,
    /// This guard was inherited across `fork(2)`: the lock is held by the
    /// parent process (`pid`), not by this one. The child can neither write
    /// through it nor release it; dropping it leaves the parent's lock alone.
    Inherited {
        /// The process that holds the lock.
        pid: u32,
    },
    /// etcd backend: the lease may have expired (no renewal acknowledged
    /// before the local deadline) or the server says it is gone.
    LeaseExpired {
        /// What was seen.
        detail: String,
    },
    /// etcd backend: our contender key was deleted by someone else.
    KeyDeleted {
        /// The etcd key.
        key: String,
    },
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LostReason::MaxHoldExceeded {
                held_ms,
                max_hold_ms,
            } => write!(
                f,
                "max hold exceeded (held {held_ms}ms, max {max_hold_ms}ms); the watchdog released it"
            ),
            LostReason::Removed => f.write_str("the lock file was removed by someone else"),
            LostReason::Replaced => {
                f.write_str("the lock file was replaced by someone else's lock")
            }
            LostReason::ReleasedAll => f.write_str("release_all() released it"),
            LostReason::Released => f.write_str("it was released normally"),
            LostReason::Inherited { pid } => write!(
                f,
                "this guard was inherited across fork: the lock is held by process {pid}, not by this one"
            ),
            LostReason::LeaseExpired { detail } => write!(f, "the etcd lease expired: {detail}"),
            LostReason::KeyDeleted { key } => {
                write!(f, "our etcd key {key} was deleted by someone else")
            }
        }
    }
}

/// What to do when the process is out of descriptors (EMFILE), for the
/// `Io` message.
fn descriptor_hint(e: &io::Error) -> &'static str {
    if crate::sys::is_out_of_descriptors(e) {
        " (the process's RLIMIT_NOFILE descriptor limit is reached: each held lock needs about one descriptor, see the README's \"Descriptors\"; raise `ulimit -n` or hold fewer locks)"
    } else {
        ""
    }
}

/// The crate's error: opaque, with a [`kind`](Error::kind) to match on and
/// accessors for what the message says ([`Error::lock_path`],
/// [`Error::owner`], [`Error::reasons`], [`Error::lost_reason`],
/// [`Error::timeout`], [`Error::io_error`]). Every message names the lock
/// path, and the owner where one is known.
///
/// Converts into [`std::io::Error`] (`?` in a function returning
/// `io::Result`), keeping this error as the source.
pub struct Error(Box<Repr>);

/// What an [`Error`] holds (private: match on [`Error::kind`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Repr {
    /// See [`ErrorKind::Busy`].
    #[error("session file locked: {owner} {}{}", lock_path.display(), guard_note(guard))]
    Busy {
        /// The lock file.
        lock_path: PathBuf,
        /// Who holds it.
        owner: Box<Owner>,
        /// Report-only reasons (e.g. `too-old`), if any.
        reasons: Vec<Reason>,
        /// A reclaim guard that kept a reclaimable lock (see
        /// `lock::GuardReport`), as a sentence.
        guard: Option<String>,
    },
    /// See [`ErrorKind::Timeout`].
    #[error("session file locked (timeout {}ms): {owner} {}{}", timeout.as_millis(), lock_path.display(), guard_note(guard))]
    Timeout {
        /// The lock file.
        lock_path: PathBuf,
        /// The timeout that ran out.
        timeout: Duration,
        /// Who held it at the end.
        owner: Box<Owner>,
        /// Report-only reasons (e.g. `too-old`), if any.
        reasons: Vec<Reason>,
        /// As for `Busy`.
        guard: Option<String>,
    },
    /// See [`ErrorKind::Stale`].
    #[error("session file lock stale ({}): {owner} {}", join_reasons(reasons), lock_path.display())]
    Stale {
        /// The lock file.
        lock_path: PathBuf,
        /// Who holds it.
        owner: Box<Owner>,
        /// Why it is reported stale.
        reasons: Vec<Reason>,
    },
    /// See [`ErrorKind::NotAFile`].
    #[error("{role} {} is a {what}, not a regular file; it was left untouched (remove it by hand if nothing uses it)", lock_path.display())]
    NotAFile {
        /// The path.
        lock_path: PathBuf,
        /// What was found there.
        what: &'static str,
        /// Which of our names it is ("lock path", "transcript").
        role: &'static str,
    },
    /// See [`ErrorKind::InvalidName`].
    #[error("{}", invalid_name_message(path, problem))]
    InvalidName {
        /// The transcript path as given.
        path: PathBuf,
        /// Why it was refused.
        problem: NameProblem,
    },
    /// See [`ErrorKind::InvalidInput`].
    #[error("{what}: {}", path.display())]
    InvalidInput {
        /// The transcript (or lock) path of the call.
        path: PathBuf,
        /// What was refused, and what to do instead.
        what: String,
    },
    /// See [`ErrorKind::LockLost`].
    #[error("lock lost: {reason}: {}", lock_path.display())]
    LockLost {
        /// The lock file.
        lock_path: PathBuf,
        /// Why.
        reason: LostReason,
    },
    /// An etcd backend failure (see [`EtcdFailure`]): no OS error, no file.
    #[cfg(feature = "etcd")]
    #[error("{op}{}{at}: {detail}", if at.is_empty() { "" } else { " " })]
    Etcd {
        /// What failed.
        failure: EtcdFailure,
        /// The message's first words ("cannot reach etcd at", "TLS: ...").
        op: &'static str,
        /// What the message names after `op`: the endpoints
        /// (`etcd://HOST:PORT,...`), or the key where that is what matters.
        at: String,
        /// The lock's key prefix in etcd (`/session-lock/<key>/`), when the
        /// error happened for one lock (see [`Error::lock_path`]).
        lock_dir: Option<PathBuf>,
        /// The cause in words (etcd's, rustls's or the OS's, and what to do),
        /// never a secret.
        detail: String,
    },
    /// See [`ErrorKind::Io`], [`ErrorKind::PermissionDenied`] and
    /// [`ErrorKind::Unsupported`].
    #[error("{op} {}: {source}{}", path.display(), descriptor_hint(source))]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to (the lock path or the transcript).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn join_reasons(reasons: &[Reason]) -> String {
    if reasons.is_empty() {
        return "unknown".to_owned();
    }
    reasons
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<Repr> for Error {
    fn from(r: Repr) -> Error {
        Error(Box::new(r))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            Repr::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    /// `Busy` becomes `WouldBlock`, `Timeout` `TimedOut`, `NotAFile` and
    /// `InvalidName` `InvalidInput`, `PermissionDenied` and `Unsupported` keep their kind,
    /// an I/O error keeps its OS kind; an etcd failure becomes
    /// `ConnectionRefused` (refused), `TimedOut`, `InvalidData` (TLS, a
    /// foreign key), `PermissionDenied` (authentication, permission),
    /// `NotFound` (lease not found) or `Other`; the rest are `Other`. The
    /// message and the source are this error.
    fn from(e: Error) -> io::Error {
        let kind = match e.kind() {
            ErrorKind::Busy => io::ErrorKind::WouldBlock,
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::NotAFile | ErrorKind::InvalidName => io::ErrorKind::InvalidInput,
            ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            ErrorKind::Io => e.io_error().map_or(io::ErrorKind::Other, io::Error::kind),
            _ => io::ErrorKind::Other,
        };
        #[cfg(feature = "etcd")]
        let kind = e.etcd_failure().map_or(kind, EtcdFailure::io_kind);
        io::Error::new(kind, e)
    }
}

impl Error {
    /// An I/O error about `path` while doing `op` ("create lock file", ...).
    /// An error the crate's platform layer made for a file of the wrong
    /// type (a FIFO at the transcript, ...) becomes [`ErrorKind::NotAFile`].
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Error {
        if let Some(nr) = source
            .get_ref()
            .and_then(|e| e.downcast_ref::<NotRegular>())
        {
            return Error::from(Repr::NotAFile {
                lock_path: path.to_owned(),
                what: nr.what,
                role: nr.role,
            });
        }
        Error::from(Repr::Io {
            op,
            path: path.to_owned(),
            source,
        })
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match &*self.0 {
            Repr::Busy { .. } => ErrorKind::Busy,
            Repr::Timeout { .. } => ErrorKind::Timeout,
            Repr::Stale { .. } => ErrorKind::Stale,
            Repr::NotAFile { .. } => ErrorKind::NotAFile,
            Repr::InvalidName { .. } => ErrorKind::InvalidName,
            Repr::InvalidInput { .. } => ErrorKind::InvalidInput,
            Repr::LockLost { .. } => ErrorKind::LockLost,
            #[cfg(feature = "etcd")]
            Repr::Etcd { failure, .. } => failure.kind(),
            Repr::Io { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                io::ErrorKind::Unsupported => ErrorKind::Unsupported,
                _ => ErrorKind::Io,
            },
        }
    }

    /// The path the error is about: the lock file (`<transcript>.lock`) for
    /// `Busy`, `Timeout`, `Stale`, `LockLost` and errors on the lock's own
    /// files; the transcript for errors while opening or writing it
    /// (`Io`, `NotAFile` with role "transcript") and for `InvalidName` and
    /// `InvalidInput`. The message always names it.
    ///
    /// With the etcd backend there is no lock file: `Busy`, `Timeout` and
    /// `LockLost` give the lock's key prefix in etcd
    /// (`/session-lock/<key>/`), and so do the cluster's errors
    /// (`Error::etcd_failure`) met while acquiring or holding a lock. A
    /// cluster error met outside any one lock (`status`) gives the
    /// endpoints, `etcd://HOST:PORT,...`, which its message names. (An
    /// invalid etcd setting, `InvalidInput`, gives the endpoints too.)
    pub fn lock_path(&self) -> &Path {
        match &*self.0 {
            #[cfg(feature = "etcd")]
            Repr::Etcd { lock_dir, at, .. } => lock_dir.as_deref().unwrap_or(Path::new(at)),
            Repr::Busy { lock_path, .. }
            | Repr::Timeout { lock_path, .. }
            | Repr::Stale { lock_path, .. }
            | Repr::NotAFile { lock_path, .. }
            | Repr::LockLost { lock_path, .. } => lock_path,
            Repr::Io { path, .. }
            | Repr::InvalidName { path, .. }
            | Repr::InvalidInput { path, .. } => path,
        }
    }

    /// The owner of the lock, where the error is about someone else holding it.
    pub fn owner(&self) -> Option<&Owner> {
        match &*self.0 {
            Repr::Busy { owner, .. } | Repr::Timeout { owner, .. } | Repr::Stale { owner, .. } => {
                Some(owner)
            }
            _ => None,
        }
    }

    /// The reasons reported with `Busy`, `Timeout` (report-only ones such as
    /// `too-old`) and `Stale`; empty otherwise.
    pub fn reasons(&self) -> &[Reason] {
        match &*self.0 {
            Repr::Busy { reasons, .. }
            | Repr::Timeout { reasons, .. }
            | Repr::Stale { reasons, .. } => reasons,
            _ => &[],
        }
    }

    /// Why the lock was lost, for [`ErrorKind::LockLost`].
    pub fn lost_reason(&self) -> Option<&LostReason> {
        match &*self.0 {
            Repr::LockLost { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// For `Busy` and `Timeout` on a lock whose owner is gone but whose
    /// reclaim a reclaim guard (`<lock>.reclaim`) blocked: that guard's
    /// path, owner, age and what to do about it, as one sentence (also at
    /// the end of the message).
    pub fn blocking_guard(&self) -> Option<&str> {
        match &*self.0 {
            Repr::Busy { guard, .. } | Repr::Timeout { guard, .. } => guard.as_deref(),
            _ => None,
        }
    }

    /// The timeout that ran out, for [`ErrorKind::Timeout`].
    pub fn timeout(&self) -> Option<Duration> {
        match &*self.0 {
            Repr::Timeout { timeout, .. } => Some(*timeout),
            _ => None,
        }
    }

    /// The operating system's error, for `Io`, `PermissionDenied` and
    /// `Unsupported` (not for the etcd backend's cluster errors, which have
    /// `Error::etcd_failure` instead).
    pub fn io_error(&self) -> Option<&io::Error> {
        match &*self.0 {
            Repr::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    /// For an error of the etcd backend's cluster (unreachable, TLS,
    /// authentication, permission, ...): what failed. `None` for every
    /// other error, including an invalid setting (`InvalidInput`) and a
    /// held lock (`Busy`, `Timeout`). Such an error has no
    /// [`Error::io_error`]: it is not the operating system's.
    #[cfg(feature = "etcd")]
    pub fn etcd_failure(&self) -> Option<EtcdFailure> {
        match &*self.0 {
            Repr::Etcd { failure, .. } => Some(*failure),
            _ => None,
        }
    }

    /// An etcd backend error; see [`Repr::Etcd`] for the fields.
    #[cfg(feature = "etcd")]
    pub(crate) fn etcd(
        failure: EtcdFailure,
        op: &'static str,
        at: impl Into<String>,
        detail: impl Into<String>,
    ) -> Error {
        Error::from(Repr::Etcd {
            failure,
            op,
            at: at.into(),
            lock_dir: None,
            detail: detail.into(),
        })
    }

    /// The cause in words of an etcd backend error (its message after the
    /// endpoints), for quoting in another message.
    #[cfg(feature = "etcd")]
    pub(crate) fn etcd_detail(&self) -> Option<&str> {
        match &*self.0 {
            Repr::Etcd { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// This etcd backend error, as met for the lock whose key prefix in
    /// etcd is `dir` (see [`Error::lock_path`]); any other error unchanged.
    #[cfg(feature = "etcd")]
    pub(crate) fn for_etcd_lock(mut self, dir: &str) -> Error {
        if let Repr::Etcd { lock_dir, .. } = &mut *self.0
            && lock_dir.is_none()
        {
            *lock_dir = Some(PathBuf::from(dir));
        }
        self
    }

    /// This etcd backend error with other first words (`op`), for the
    /// same cause; any other error unchanged.
    #[cfg(feature = "etcd")]
    pub(crate) fn with_etcd_op(mut self, new_op: &'static str) -> Error {
        if let Repr::Etcd { op, .. } = &mut *self.0 {
            *op = new_op;
        }
        self
    }

    /// What was found at the lock path, for [`ErrorKind::NotAFile`]
    /// (`"directory"`, `"symlink"`, `"FIFO"` ...).
    pub fn found(&self) -> Option<&'static str> {
        match &*self.0 {
            Repr::NotAFile { what, .. } => Some(what),
            _ => None,
        }
    }

    /// For [`ErrorKind::InvalidName`] on a name of the lock protocol
    /// (`x.jsonl.lock`, `x.jsonl.lock.queue`, ...): the transcript it
    /// belongs to (`x.jsonl`), probably the one meant.
    pub fn suggestion(&self) -> Option<&Path> {
        match &*self.0 {
            Repr::InvalidName {
                problem: NameProblem::ProtocolName { of, .. },
                ..
            } => Some(of),
            _ => None,
        }
    }

    /// For [`ErrorKind::InvalidName`] on a name too long for its
    /// filesystem: the longest transcript name, in bytes, that works in
    /// that directory.
    pub fn longest_name(&self) -> Option<usize> {
        match &*self.0 {
            Repr::InvalidName {
                problem: NameProblem::TooLong { longest, .. },
                ..
            } => Some(*longest),
            _ => None,
        }
    }

    /// True for `Busy` and `Timeout`: someone else holds the lock. A real
    /// failure never answers true here.
    pub fn is_contended(&self) -> bool {
        matches!(self.kind(), ErrorKind::Busy | ErrorKind::Timeout)
    }
}

/// `"; <guard>"` after a `Busy` or `Timeout` message, or nothing.
fn guard_note(guard: &Option<String>) -> String {
    guard
        .as_deref()
        .map(|g| format!("; {g}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_message_keeps_the_reference_shape() {
        let err = Error::from(Repr::Timeout {
            lock_path: PathBuf::from("/path/to/s.jsonl.lock"),
            timeout: Duration::from_secs(60),
            owner: Box::new(Owner {
                pid: Some(1234),
                alive: Some(true),
                age_ms: Some(5021),
                ..Owner::default()
            }),
            reasons: vec![],
            guard: None,
        });
        assert_eq!(
            err.to_string(),
            "session file locked (timeout 60000ms): pid=1234 alive=true ageMs=5021 /path/to/s.jsonl.lock"
        );
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.is_contended());
    }

    #[test]
    fn unknown_owner_and_stale_reasons() {
        let err = Error::from(Repr::Stale {
            lock_path: PathBuf::from("/x.lock"),
            owner: Box::default(),
            reasons: vec![Reason::TooOld, Reason::HoldExceeded],
        });
        assert_eq!(
            err.to_string(),
            "session file lock stale (too-old, hold-exceeded): owner=unknown /x.lock"
        );
        assert!(!err.is_contended());
    }

    #[test]
    fn io_kinds_map() {
        let e = Error::io(
            "create",
            Path::new("/x"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(e.lock_path(), Path::new("/x"));
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::PermissionDenied);
        assert!(io.to_string().contains("/x"), "{io}");
    }

    #[cfg(feature = "etcd")]
    #[test]
    fn etcd_failures_keep_their_kinds_and_name_no_made_up_path() {
        use EtcdFailure::*;
        // (failure, kind, io kind): the kinds callers and the CLI's exit
        // codes had (authentication and permission PermissionDenied, the
        // rest Io), with no OS error behind them.
        let table = [
            (Refused, ErrorKind::Io, io::ErrorKind::ConnectionRefused),
            (TimedOut, ErrorKind::Io, io::ErrorKind::TimedOut),
            (Unavailable, ErrorKind::Io, io::ErrorKind::Other),
            (Tls, ErrorKind::Io, io::ErrorKind::InvalidData),
            (
                Authentication,
                ErrorKind::PermissionDenied,
                io::ErrorKind::PermissionDenied,
            ),
            (
                Permission,
                ErrorKind::PermissionDenied,
                io::ErrorKind::PermissionDenied,
            ),
            (LeaseNotFound, ErrorKind::Io, io::ErrorKind::NotFound),
            (ForeignKey, ErrorKind::Io, io::ErrorKind::InvalidData),
            (Rejected, ErrorKind::Io, io::ErrorKind::Other),
            (Internal, ErrorKind::Io, io::ErrorKind::Other),
        ];
        for (failure, kind, io_kind) in table {
            let e = Error::etcd(failure, "cannot reach etcd at", "etcd://h:1", "why");
            assert_eq!(e.to_string(), "cannot reach etcd at etcd://h:1: why");
            assert_eq!(e.kind(), kind, "{failure:?}");
            assert_eq!(e.etcd_failure(), Some(failure));
            assert!(e.io_error().is_none(), "{failure:?}");
            assert!(std::error::Error::source(&e).is_none());
            assert!(!e.is_contended());
            // Outside a lock: the endpoints; for a lock: its key prefix.
            assert_eq!(e.lock_path(), Path::new("etcd://h:1"));
            let e = e.for_etcd_lock("/session-lock/a/");
            assert_eq!(e.lock_path(), Path::new("/session-lock/a/"));
            let e = e.for_etcd_lock("/session-lock/b/");
            assert_eq!(
                e.lock_path(),
                Path::new("/session-lock/a/"),
                "the first stays"
            );
            let io = io::Error::from(e);
            assert_eq!(io.kind(), io_kind, "{failure:?}");
            assert!(
                io.into_inner()
                    .expect("itself")
                    .downcast_ref::<Error>()
                    .is_some()
            );
        }
        let e = Error::etcd(Rejected, "etcd request failed at", "etcd://h:1", "x")
            .with_etcd_op("release: could not revoke the lease at");
        assert_eq!(
            e.to_string(),
            "release: could not revoke the lease at etcd://h:1: x"
        );
        assert_eq!(e.etcd_detail(), Some("x"));
        let file = Error::io(
            "create",
            Path::new("/x"),
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert_eq!(file.etcd_failure(), None);
        assert_eq!(file.for_etcd_lock("/d/").lock_path(), Path::new("/x"));
    }

    #[test]
    fn contention_converts_to_the_io_kinds_callers_expect() {
        let busy = Error::from(Repr::Busy {
            lock_path: PathBuf::from("/x.lock"),
            owner: Box::default(),
            reasons: vec![],
            guard: None,
        });
        assert_eq!(io::Error::from(busy).kind(), io::ErrorKind::WouldBlock);
        let lost = Error::from(Repr::LockLost {
            lock_path: PathBuf::from("/x.lock"),
            reason: LostReason::Removed,
        });
        assert_eq!(lost.lost_reason(), Some(&LostReason::Removed));
        let io = io::Error::from(lost);
        assert_eq!(io.kind(), io::ErrorKind::Other);
        let inner = io.into_inner().expect("the error itself");
        assert!(inner.downcast_ref::<Error>().is_some());
    }
}
