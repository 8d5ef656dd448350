//! The words of a judgement about one lock file: its [`Verdict`], the
//! [`Reason`]s behind it and the state of its kernel [`Witness`]. A leaf
//! module: errors, inspection and the attention code all speak it.

use serde::Serialize;
use std::fmt;

/// Why a lock is (or would be) stale. Names follow the reference where one
/// exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Reason {
    /// No valid pid in the record (or no record at all).
    #[serde(rename = "missing-pid")]
    MissingPid,
    /// The pid does not exist (ESRCH) or is a zombie.
    #[serde(rename = "dead-pid")]
    DeadPid,
    /// The pid is alive but started at another time than the record says.
    #[serde(rename = "recycled-pid")]
    RecycledPid,
    /// `createdAt` missing or unparseable.
    #[serde(rename = "invalid-createdAt")]
    InvalidCreatedAt,
    /// Older than the stale threshold (report only while the owner lives).
    #[serde(rename = "too-old")]
    TooOld,
    /// Older than the record's own `maxHoldMs` (report only).
    #[serde(rename = "hold-exceeded")]
    HoldExceeded,
    /// Our own pid and start time, but not in our registry: a leftover from
    /// an earlier life of this pid (in-process restart, pid 1 containers).
    #[serde(rename = "orphan-self-pid")]
    OrphanSelfPid,
    /// Our record format, and nobody holds its witness lock: the owner died.
    #[serde(rename = "witness-released")]
    WitnessReleased,
    /// Written before the last reboot of this host.
    #[serde(rename = "other-boot")]
    OtherBoot,
    /// Written on another host: never judged by pid.
    #[serde(rename = "other-host")]
    OtherHost,
    /// Written in another pid namespace (container): never judged by pid.
    #[serde(rename = "other-namespace")]
    OtherNamespace,
    /// A record version newer than this crate understands: held.
    #[serde(rename = "unknown-version")]
    UnknownVersion,
    /// Empty or malformed, but younger than the orphan grace: left alone.
    #[serde(rename = "in-grace")]
    InGrace,
    /// The lock file exists but we may not read it (another user's 0600
    /// file): its owner is unknown, so it counts as held.
    #[serde(rename = "unreadable")]
    Unreadable,
}

impl Reason {
    /// The reason's name (`dead-pid`, `too-old`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingPid => "missing-pid",
            Reason::DeadPid => "dead-pid",
            Reason::RecycledPid => "recycled-pid",
            Reason::InvalidCreatedAt => "invalid-createdAt",
            Reason::TooOld => "too-old",
            Reason::HoldExceeded => "hold-exceeded",
            Reason::OrphanSelfPid => "orphan-self-pid",
            Reason::WitnessReleased => "witness-released",
            Reason::OtherBoot => "other-boot",
            Reason::OtherHost => "other-host",
            Reason::OtherNamespace => "other-namespace",
            Reason::UnknownVersion => "unknown-version",
            Reason::InGrace => "in-grace",
            Reason::Unreadable => "unreadable",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision about one lock file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Someone holds it; wait.
    Held,
    /// Held by a live owner, but old: reported, never removed.
    Stale,
    /// Its owner is provably gone (or it is an orphan past the grace):
    /// acquire and `clean` remove it, race-free.
    Reclaimable,
}

/// State of the kernel witness lock on the lock file's inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Witness {
    /// Someone holds an exclusive flock on the inode.
    Held,
    /// Nobody holds it.
    Free,
    /// flock is not supported here (or the file could not be opened).
    Unknown,
}
