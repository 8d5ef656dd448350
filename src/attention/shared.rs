//! Leaf items that both [`monitor`](super::monitor) and
//! [`recovery`](super::recovery) need: the default stuck threshold and the
//! outcome of a recovery. They live here, below both, so that neither of
//! the two imports the other; each re-exports what its
//! public API names, at the paths they always had.

use serde::Serialize;

/// Default age above which a session is classified (reference
/// `stuckSessionWarnMs`, 120 000 ms).
pub const DEFAULT_STUCK_WARN_MS: u64 = 120_000;

/// Outcome status of a stuck-session recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryStatus {
    /// Active work was aborted.
    Aborted,
    /// Stale lanes or locks were released.
    Released,
    /// A gate refused to act.
    Skipped,
    /// Nothing needed doing.
    Noop,
    /// Recovery failed.
    Failed,
}

/// Action a stuck-session recovery took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryAction {
    /// Aborted the embedded run.
    AbortEmbeddedRun,
    /// Force-cleared an embedded run that did not abort (later reference
    /// versions).
    ForceClearEmbeddedRun,
    /// Released the session's lane.
    ReleaseLane,
    /// Only observed.
    ObserveOnly,
    /// Kept the lane because it has live work.
    KeepLane,
    /// Nothing.
    None,
}

impl RecoveryStatus {
    /// The reference name, e.g. `released`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Aborted => "aborted",
            Self::Released => "released",
            Self::Skipped => "skipped",
            Self::Noop => "noop",
            Self::Failed => "failed",
        }
    }
}

impl RecoveryAction {
    /// The reference name, e.g. `release_lane`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AbortEmbeddedRun => "abort_embedded_run",
            Self::ForceClearEmbeddedRun => "force_clear_embedded_run",
            Self::ReleaseLane => "release_lane",
            Self::ObserveOnly => "observe_only",
            Self::KeepLane => "keep_lane",
            Self::None => "none",
        }
    }
}
