//! Session-attention classifier: a pure, total function from what is known
//! about a session to whether it needs attention, and of which kind.
//!
//! [`classify`] reproduces the reference classifier (OpenClaw
//! `classifySessionAttention`, target version, including the "orphaned
//! activity" fix of #84903 and the untracked-progress branch of PR #89831)
//! case for case. Missing ages count as 0 and every age test is a strict `>`
//! against `stale_ms`. The first matching row wins:
//!
//! | # | Condition | Event type | Reason | Classification | Kind | Eligible |
//! |---|---|---|---|---|---|---|
//! | 1 | kind set, state `idle`, queue > 0, `has_active_embedded_run != Some(true)`, `has_live_owner != Some(true)`, progress age > stale | `session.stuck` | `queued_work_without_active_run` | `stale_session_state` | none | yes |
//! | 2 | kind `tool_call`, tool age > stale, progress age > stale | `session.stalled` | `blocked_tool_call` | `blocked_tool_call` | kind | no |
//! | 3 | kind `embedded_run`, queue > 0, last progress reason terminal | `session.stalled` | `queued_behind_terminal_active_work` | `stalled_agent_run` | kind | no |
//! | 4 | kind set, progress age > stale | `session.stalled` | `active_work_without_progress` | `stalled_agent_run` | kind | no |
//! | 5 | kind set, otherwise | `session.long_running` | `queued_behind_active_work` if queue > 0, else `active_work` | `long_running` | kind | no |
//! | 6 | no kind, progress age known and <= stale | `session.long_running` | `queued_behind_untracked_active_progress` if queue > 0, else `untracked_active_progress` | `long_running` | none | no |
//! | 7 | no kind, otherwise | `session.stuck` | `queued_work_without_active_run` if queue > 0, else `stale_session_state` | `stale_session_state` | none | yes |
//!
//! Only `session.stuck` is ever recovery eligible.
//!
//! # Lock ownership (our addition)
//!
//! The reference only sees in-memory activity markers, and an orphaned marker
//! (#87310, #88660) can make a session look ownerless while a process still
//! holds its transcript lock. This crate also knows who holds the lock, so:
//!
//! * **Live-owner rule.** If [`ActivitySnapshot::has_live_owner`] is
//!   `Some(true)`, row 1 never applies: a live lock owner is active work with
//!   an owner, and recovery must never touch live work. Classification falls
//!   through to rows 2-5 (at worst `session.stalled`, never eligible). With
//!   `None` the reference behaviour is unchanged.
//! * **Lock as activity.** [`ActivitySnapshot::merge_lock`] folds a
//!   [`LockActivity`] (built from the lock inspection) into the snapshot:
//!
//! | Lock | `active_work_kind` | `has_active_embedded_run` | `has_live_owner` | `last_progress_age_ms` |
//! |---|---|---|---|---|
//! | none | unchanged | unchanged | unchanged | unchanged |
//! | held by a live owner (`owner_alive && !reclaimable`) | `embedded_run` if none known, else unchanged | `Some(true)` if the kind was filled in, else unchanged | `Some(true)` | lock age if none known, else unchanged |
//! | owner dead or lock reclaimable | `embedded_run` if none known, else unchanged | `Some(false)` if the kind was filled in, else unchanged | `Some(false)`, unless already `Some(true)` | lock age if none known, else unchanged |
//!
//! The lock file's age stands in for a last-progress age only when nothing
//! fresher is known; a known progress age is never replaced. Ownership
//! evidence only accumulates: a snapshot that already says `has_live_owner:
//! Some(true)` keeps it, so merging can make a session safer, never less safe.

use serde::{Deserialize, Serialize};

/// Coarse state of a session, as reported by its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Nothing is running for the session.
    Idle,
    /// A turn is being processed.
    Processing,
    /// The session waits for something external (user input, approval).
    Waiting,
    /// The host has not reported a state (the reference's absent `state`).
    Unknown,
}

impl SessionState {
    /// The reference name: `idle`, `processing`, `waiting` or `unknown`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Processing => "processing",
            Self::Waiting => "waiting",
            Self::Unknown => "unknown",
        }
    }
}

/// Kind of the work a session is observed doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActiveWorkKind {
    /// A tool call is running.
    ToolCall,
    /// A model call is running.
    ModelCall,
    /// An embedded agent run is registered (or the transcript lock is held).
    EmbeddedRun,
}

impl ActiveWorkKind {
    /// The reference name: `tool_call`, `model_call` or `embedded_run`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ToolCall => "tool_call",
            Self::ModelCall => "model_call",
            Self::EmbeddedRun => "embedded_run",
        }
    }
}

/// What is known about a session's activity at one instant.
///
/// Ages are relative to the instant the snapshot describes. Every field is
/// optional; an empty snapshot means "nothing known". Start from
/// `ActivitySnapshot::default()` and set the fields (the struct is
/// non-exhaustive: fields may be added).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct ActivitySnapshot {
    /// Kind of the active work: tool call if any, else model call, else
    /// embedded run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_work_kind: Option<ActiveWorkKind>,
    /// `Some(true)` when at least one embedded run is registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_active_embedded_run: Option<bool>,
    /// Name of the oldest active tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_tool_name: Option<String>,
    /// Call id of the oldest active tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_tool_call_id: Option<String>,
    /// Age of the oldest active tool call, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_tool_age_ms: Option<u64>,
    /// Time since the last progress, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_progress_age_ms: Option<u64>,
    /// Reason of the last progress (`run:completed`, `tool:<name>:started`,
    /// `cli_live:stream_progress`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_progress_reason: Option<String>,
    /// Whether a live process owns the work (from the transcript lock). Not in
    /// the reference; see the module docs for the live-owner rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_live_owner: Option<bool>,
}

/// What the lock inspection says about a session's transcript lock, as input
/// to [`ActivitySnapshot::merge_lock`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LockActivity {
    /// The recorded owner process is alive (and is the process that took the
    /// lock).
    pub owner_alive: bool,
    /// The inspection judged the lock reclaimable (dead owner, recycled pid,
    /// orphan, ...). A reclaimable lock never counts as a live owner.
    pub reclaimable: bool,
    /// Age of the lock (since its owner took it), in milliseconds, if known.
    pub lock_age_ms: Option<u64>,
}

impl LockActivity {
    /// Whether the lock is held by a live owner: alive and not reclaimable.
    pub const fn is_live_owner(&self) -> bool {
        self.owner_alive && !self.reclaimable
    }
}

impl ActivitySnapshot {
    /// Folds transcript-lock ownership into the snapshot (see the mapping table
    /// in the module docs). `None` returns the snapshot unchanged.
    #[must_use]
    pub fn merge_lock(mut self, lock: Option<&LockActivity>) -> ActivitySnapshot {
        let Some(lock) = lock else {
            return self;
        };
        let live = lock.is_live_owner();
        if self.active_work_kind.is_none() {
            self.active_work_kind = Some(ActiveWorkKind::EmbeddedRun);
            self.has_active_embedded_run = Some(live);
        }
        self.has_live_owner = Some(live || self.has_live_owner == Some(true));
        if self.last_progress_age_ms.is_none() {
            self.last_progress_age_ms = lock.lock_age_ms;
        }
        self
    }
}

/// Diagnostic event a classification maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// `session.long_running`: busy, but making progress.
    #[serde(rename = "session.long_running")]
    LongRunning,
    /// `session.stalled`: owned work that stopped making progress.
    #[serde(rename = "session.stalled")]
    Stalled,
    /// `session.stuck`: no live work explains the session's state.
    #[serde(rename = "session.stuck")]
    Stuck,
}

impl EventType {
    /// The reference event name, e.g. `session.stuck`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LongRunning => "session.long_running",
            Self::Stalled => "session.stalled",
            Self::Stuck => "session.stuck",
        }
    }
}

/// Why a session was classified the way it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionReason {
    /// Active work, no queue, progressing (row 5).
    ActiveWork,
    /// Queued work waits behind progressing active work (row 5).
    QueuedBehindActiveWork,
    /// Queued work waits behind an embedded run whose last progress was
    /// terminal (row 3).
    QueuedBehindTerminalActiveWork,
    /// Active work made no progress for longer than the threshold (row 4).
    ActiveWorkWithoutProgress,
    /// A tool call has been running without progress (row 2).
    BlockedToolCall,
    /// Queued work and no run that could drain it (rows 1 and 7).
    QueuedWorkWithoutActiveRun,
    /// No active work and nothing queued: the state itself is stale (row 7).
    StaleSessionState,
    /// Untracked work (e.g. an external CLI runtime) reports fresh progress
    /// (row 6).
    UntrackedActiveProgress,
    /// Queued work waits behind untracked work with fresh progress (row 6).
    QueuedBehindUntrackedActiveProgress,
}

impl AttentionReason {
    /// The reference name, e.g. `queued_work_without_active_run`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ActiveWork => "active_work",
            Self::QueuedBehindActiveWork => "queued_behind_active_work",
            Self::QueuedBehindTerminalActiveWork => "queued_behind_terminal_active_work",
            Self::ActiveWorkWithoutProgress => "active_work_without_progress",
            Self::BlockedToolCall => "blocked_tool_call",
            Self::QueuedWorkWithoutActiveRun => "queued_work_without_active_run",
            Self::StaleSessionState => "stale_session_state",
            Self::UntrackedActiveProgress => "untracked_active_progress",
            Self::QueuedBehindUntrackedActiveProgress => "queued_behind_untracked_active_progress",
        }
    }
}

/// Operator-facing classification of a session needing attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// Busy and progressing.
    LongRunning,
    /// An agent run stopped progressing.
    StalledAgentRun,
    /// A tool call is blocked.
    BlockedToolCall,
    /// The session's state is not explained by any live work.
    StaleSessionState,
}

impl Classification {
    /// The reference name, e.g. `stalled_agent_run`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LongRunning => "long_running",
            Self::StalledAgentRun => "stalled_agent_run",
            Self::BlockedToolCall => "blocked_tool_call",
            Self::StaleSessionState => "stale_session_state",
        }
    }
}

/// Result of [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Attention {
    /// Event to emit.
    pub event_type: EventType,
    /// Why.
    pub reason: AttentionReason,
    /// Operator-facing classification.
    pub classification: Classification,
    /// Kind of the active work; `None` when the work is judged orphaned or
    /// there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_work_kind: Option<ActiveWorkKind>,
    /// Whether stuck-session recovery may be requested (only ever for
    /// [`EventType::Stuck`]).
    pub recovery_eligible: bool,
}

/// Whether a last-progress reason marks the end of a run or response: exactly
/// `run:completed` or `embedded_run:ended`, or containing `response.completed`,
/// `rawResponseItem/completed`, `raw_response_item.completed` or
/// `output_item.done`.
#[must_use]
pub fn is_terminal_progress_reason(reason: &str) -> bool {
    const EXACT: [&str; 2] = ["run:completed", "embedded_run:ended"];
    const CONTAINED: [&str; 4] = [
        "response.completed",
        "rawResponseItem/completed",
        "raw_response_item.completed",
        "output_item.done",
    ];
    EXACT.contains(&reason) || CONTAINED.iter().any(|marker| reason.contains(marker))
}

/// Classifies a session (see the table in the module docs). Pure and total:
/// every input has exactly one answer.
#[must_use]
pub fn classify(
    state: SessionState,
    queue_depth: u64,
    activity: &ActivitySnapshot,
    stale_ms: u64,
) -> Attention {
    let queued = queue_depth > 0;
    let progress_stale = activity.last_progress_age_ms.unwrap_or(0) > stale_ms;
    let stuck = |reason| Attention {
        event_type: EventType::Stuck,
        reason,
        classification: Classification::StaleSessionState,
        active_work_kind: None,
        recovery_eligible: true,
    };

    let Some(kind) = activity.active_work_kind else {
        return match activity.last_progress_age_ms {
            // Row 6: untracked work (no markers) that still reports progress.
            Some(age) if age <= stale_ms => Attention {
                event_type: EventType::LongRunning,
                reason: if queued {
                    AttentionReason::QueuedBehindUntrackedActiveProgress
                } else {
                    AttentionReason::UntrackedActiveProgress
                },
                classification: Classification::LongRunning,
                active_work_kind: None,
                recovery_eligible: false,
            },
            // Row 7.
            _ => stuck(if queued {
                AttentionReason::QueuedWorkWithoutActiveRun
            } else {
                AttentionReason::StaleSessionState
            }),
        };
    };

    // Row 1: activity markers without a run or owner behind them.
    if state == SessionState::Idle
        && queued
        && activity.has_active_embedded_run != Some(true)
        && activity.has_live_owner != Some(true)
        && progress_stale
    {
        return stuck(AttentionReason::QueuedWorkWithoutActiveRun);
    }

    let (event_type, reason, classification) = if kind == ActiveWorkKind::ToolCall
        && activity.active_tool_age_ms.unwrap_or(0) > stale_ms
        && progress_stale
    {
        (
            EventType::Stalled,
            AttentionReason::BlockedToolCall,
            Classification::BlockedToolCall,
        )
    } else if queued
        && kind == ActiveWorkKind::EmbeddedRun
        && activity
            .last_progress_reason
            .as_deref()
            .is_some_and(is_terminal_progress_reason)
    {
        (
            EventType::Stalled,
            AttentionReason::QueuedBehindTerminalActiveWork,
            Classification::StalledAgentRun,
        )
    } else if progress_stale {
        (
            EventType::Stalled,
            AttentionReason::ActiveWorkWithoutProgress,
            Classification::StalledAgentRun,
        )
    } else if queued {
        (
            EventType::LongRunning,
            AttentionReason::QueuedBehindActiveWork,
            Classification::LongRunning,
        )
    } else {
        (
            EventType::LongRunning,
            AttentionReason::ActiveWork,
            Classification::LongRunning,
        )
    };
    Attention {
        event_type,
        reason,
        classification,
        active_work_kind: Some(kind),
        recovery_eligible: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ActiveWorkKind::{EmbeddedRun, ModelCall, ToolCall};
    use SessionState::{Idle, Processing, Unknown, Waiting};

    /// The reference test file's threshold.
    const STALE: u64 = 30_000;

    fn att(
        event_type: EventType,
        reason: AttentionReason,
        classification: Classification,
        active_work_kind: Option<ActiveWorkKind>,
        recovery_eligible: bool,
    ) -> Attention {
        Attention {
            event_type,
            reason,
            classification,
            active_work_kind,
            recovery_eligible,
        }
    }

    fn stuck(reason: AttentionReason) -> Attention {
        att(
            EventType::Stuck,
            reason,
            Classification::StaleSessionState,
            None,
            true,
        )
    }

    fn long_running(reason: AttentionReason, kind: Option<ActiveWorkKind>) -> Attention {
        att(
            EventType::LongRunning,
            reason,
            Classification::LongRunning,
            kind,
            false,
        )
    }

    fn stalled(
        reason: AttentionReason,
        classification: Classification,
        kind: ActiveWorkKind,
    ) -> Attention {
        att(
            EventType::Stalled,
            reason,
            classification,
            Some(kind),
            false,
        )
    }

    fn work(kind: ActiveWorkKind, progress_age_ms: u64) -> ActivitySnapshot {
        ActivitySnapshot {
            active_work_kind: Some(kind),
            has_active_embedded_run: (kind == EmbeddedRun).then_some(true),
            last_progress_age_ms: Some(progress_age_ms),
            ..ActivitySnapshot::default()
        }
    }

    fn tool(tool_age_ms: u64, progress_age_ms: u64) -> ActivitySnapshot {
        ActivitySnapshot {
            active_tool_name: Some("exec".into()),
            active_tool_call_id: Some("call-1".into()),
            active_tool_age_ms: Some(tool_age_ms),
            ..work(ToolCall, progress_age_ms)
        }
    }

    fn with_reason(mut activity: ActivitySnapshot, reason: &str) -> ActivitySnapshot {
        activity.last_progress_reason = Some(reason.into());
        activity
    }

    fn without_embedded_run(mut activity: ActivitySnapshot) -> ActivitySnapshot {
        activity.has_active_embedded_run = None;
        activity
    }

    // --- Reference test list 8.2 (staleMs = 30 000); the reference passes
    // no state in most cases, which is `Unknown` here. ---

    #[test]
    fn empty_activity_is_stuck() {
        let empty = ActivitySnapshot::default();
        assert_eq!(
            classify(Unknown, 0, &empty, STALE),
            stuck(AttentionReason::StaleSessionState)
        );
        assert_eq!(
            classify(Unknown, 1, &empty, STALE),
            stuck(AttentionReason::QueuedWorkWithoutActiveRun)
        );
    }

    #[test]
    fn progressing_embedded_run_is_long_running() {
        let a = work(EmbeddedRun, 10_000);
        assert_eq!(
            classify(Unknown, 0, &a, STALE),
            long_running(AttentionReason::ActiveWork, Some(EmbeddedRun))
        );
        assert_eq!(
            classify(Unknown, 1, &a, STALE),
            long_running(AttentionReason::QueuedBehindActiveWork, Some(EmbeddedRun))
        );
    }

    #[test]
    fn embedded_run_after_terminal_progress_with_queue_is_stalled() {
        let a = with_reason(
            work(EmbeddedRun, 100),
            "codex_app_server:notification:rawResponseItem/completed",
        );
        assert_eq!(
            classify(Unknown, 1, &a, STALE),
            stalled(
                AttentionReason::QueuedBehindTerminalActiveWork,
                Classification::StalledAgentRun,
                EmbeddedRun
            )
        );
        // Without queued work a terminal reason alone is not a stall.
        assert_eq!(
            classify(Unknown, 0, &a, STALE),
            long_running(AttentionReason::ActiveWork, Some(EmbeddedRun))
        );
    }

    #[test]
    fn model_call_without_progress_is_stalled() {
        assert_eq!(
            classify(Unknown, 0, &work(ModelCall, 31_000), STALE),
            stalled(
                AttentionReason::ActiveWorkWithoutProgress,
                Classification::StalledAgentRun,
                ModelCall
            )
        );
    }

    #[test]
    fn old_tool_call_without_progress_is_blocked() {
        assert_eq!(
            classify(Unknown, 0, &tool(31_000, 31_000), STALE),
            stalled(
                AttentionReason::BlockedToolCall,
                Classification::BlockedToolCall,
                ToolCall
            )
        );
        // An old tool with recent progress is not blocked.
        assert_eq!(
            classify(Unknown, 0, &tool(31_000, 1_000), STALE),
            long_running(AttentionReason::ActiveWork, Some(ToolCall))
        );
        // Stale progress but a young tool: generic stall.
        assert_eq!(
            classify(Unknown, 0, &tool(1_000, 31_000), STALE),
            stalled(
                AttentionReason::ActiveWorkWithoutProgress,
                Classification::StalledAgentRun,
                ToolCall
            )
        );
    }

    #[test]
    fn idle_queued_orphaned_model_call_is_stuck() {
        let a = work(ModelCall, 31_000);
        assert_eq!(a.has_active_embedded_run, None);
        assert_eq!(
            classify(Idle, 1, &a, STALE),
            stuck(AttentionReason::QueuedWorkWithoutActiveRun)
        );
        // An explicit `false` is the same as absent.
        let a = ActivitySnapshot {
            has_active_embedded_run: Some(false),
            ..a
        };
        assert_eq!(
            classify(Idle, 1, &a, STALE),
            stuck(AttentionReason::QueuedWorkWithoutActiveRun)
        );
    }

    #[test]
    fn idle_queued_orphaned_tool_call_is_stuck() {
        assert_eq!(
            classify(Idle, 1, &tool(31_000, 31_000), STALE),
            stuck(AttentionReason::QueuedWorkWithoutActiveRun)
        );
    }

    #[test]
    fn processing_orphaned_model_call_is_stalled_not_eligible() {
        assert_eq!(
            classify(Processing, 1, &work(ModelCall, 31_000), STALE),
            stalled(
                AttentionReason::ActiveWorkWithoutProgress,
                Classification::StalledAgentRun,
                ModelCall
            )
        );
    }

    #[test]
    fn untracked_progress_is_long_running() {
        let a = ActivitySnapshot {
            last_progress_age_ms: Some(0),
            last_progress_reason: Some("cli_live:stream_progress".into()),
            ..ActivitySnapshot::default()
        };
        assert_eq!(
            classify(Processing, 1, &a, STALE),
            long_running(AttentionReason::QueuedBehindUntrackedActiveProgress, None)
        );
        assert_eq!(
            classify(Processing, 0, &a, STALE),
            long_running(AttentionReason::UntrackedActiveProgress, None)
        );
    }

    // --- Row 1 guards and the rows it falls through to. ---

    #[test]
    fn orphaned_branch_needs_idle_queue_stale_progress_and_no_run() {
        let orphan = work(ModelCall, 31_000);
        let stalled_model = stalled(
            AttentionReason::ActiveWorkWithoutProgress,
            Classification::StalledAgentRun,
            ModelCall,
        );
        // Not idle.
        for state in [Processing, Waiting, Unknown] {
            assert_eq!(
                classify(state, 1, &orphan, STALE),
                stalled_model,
                "{state:?}"
            );
        }
        // Nothing queued.
        assert_eq!(classify(Idle, 0, &orphan, STALE), stalled_model);
        // A registered embedded run owns the work.
        let owned = ActivitySnapshot {
            has_active_embedded_run: Some(true),
            ..orphan.clone()
        };
        assert_eq!(classify(Idle, 1, &owned, STALE), stalled_model);
        // Fresh progress.
        assert_eq!(
            classify(Idle, 1, &work(ModelCall, 30_000), STALE),
            long_running(AttentionReason::QueuedBehindActiveWork, Some(ModelCall))
        );
    }

    #[test]
    fn live_owner_blocks_orphaned_branch() {
        let orphan = work(ModelCall, 31_000);
        let owned = ActivitySnapshot {
            has_live_owner: Some(true),
            ..orphan.clone()
        };
        assert_eq!(
            classify(Idle, 1, &owned, STALE),
            stalled(
                AttentionReason::ActiveWorkWithoutProgress,
                Classification::StalledAgentRun,
                ModelCall
            )
        );
        let owned_tool = ActivitySnapshot {
            has_live_owner: Some(true),
            ..tool(31_000, 31_000)
        };
        assert_eq!(
            classify(Idle, 1, &owned_tool, STALE),
            stalled(
                AttentionReason::BlockedToolCall,
                Classification::BlockedToolCall,
                ToolCall
            )
        );
        // A known-dead owner and an unknown owner keep the reference result.
        for has_live_owner in [Some(false), None] {
            let a = ActivitySnapshot {
                has_live_owner,
                ..orphan.clone()
            };
            assert_eq!(
                classify(Idle, 1, &a, STALE),
                stuck(AttentionReason::QueuedWorkWithoutActiveRun),
                "{has_live_owner:?}"
            );
        }
    }

    // --- Terminal progress reasons. ---

    #[test]
    fn terminal_progress_reasons() {
        for reason in [
            "run:completed",
            "embedded_run:ended",
            "openai:response.completed",
            "codex_app_server:notification:rawResponseItem/completed",
            "codex:raw_response_item.completed:x",
            "responses:output_item.done",
        ] {
            assert!(is_terminal_progress_reason(reason), "{reason}");
            assert_eq!(
                classify(
                    Processing,
                    2,
                    &with_reason(work(EmbeddedRun, 0), reason),
                    STALE
                ),
                stalled(
                    AttentionReason::QueuedBehindTerminalActiveWork,
                    Classification::StalledAgentRun,
                    EmbeddedRun
                ),
                "{reason}"
            );
        }
        for reason in [
            "",
            "run:started",
            "run:completed:late",
            "xembedded_run:ended",
            "embedded_run:started",
            "model_call:ended",
            "tool:exec:ended",
            "reply_operation:started",
            "cli_live:stream_progress",
            "response.created",
            "output_item.added",
        ] {
            assert!(!is_terminal_progress_reason(reason), "{reason}");
        }
    }

    #[test]
    fn terminal_reason_only_matters_for_queued_embedded_runs() {
        let reason = "run:completed";
        assert_eq!(
            classify(
                Processing,
                1,
                &with_reason(work(ModelCall, 0), reason),
                STALE
            ),
            long_running(AttentionReason::QueuedBehindActiveWork, Some(ModelCall))
        );
        // Row 1 wins over row 3: an idle queued embedded-run marker with no
        // registered run is orphaned, terminal reason or not.
        let orphan = without_embedded_run(with_reason(work(EmbeddedRun, 31_000), reason));
        assert_eq!(
            classify(Idle, 1, &orphan, STALE),
            stuck(AttentionReason::QueuedWorkWithoutActiveRun)
        );
    }

    // --- Boundaries: strict `>` and missing ages. ---

    #[test]
    fn age_equal_to_threshold_is_not_stale() {
        assert_eq!(
            classify(Unknown, 0, &work(ModelCall, STALE), STALE),
            long_running(AttentionReason::ActiveWork, Some(ModelCall))
        );
        assert_eq!(
            classify(Unknown, 0, &work(ModelCall, STALE + 1), STALE),
            stalled(
                AttentionReason::ActiveWorkWithoutProgress,
                Classification::StalledAgentRun,
                ModelCall
            )
        );
        assert_eq!(
            classify(Idle, 1, &work(ModelCall, STALE), STALE),
            long_running(AttentionReason::QueuedBehindActiveWork, Some(ModelCall))
        );
        assert_eq!(
            classify(Idle, 1, &work(ModelCall, STALE + 1), STALE),
            stuck(AttentionReason::QueuedWorkWithoutActiveRun)
        );
        // Tool age at the threshold: not blocked, but stale progress stalls.
        assert_eq!(
            classify(Unknown, 0, &tool(STALE, STALE + 1), STALE),
            stalled(
                AttentionReason::ActiveWorkWithoutProgress,
                Classification::StalledAgentRun,
                ToolCall
            )
        );
        assert_eq!(
            classify(Unknown, 0, &tool(STALE + 1, STALE + 1), STALE),
            stalled(
                AttentionReason::BlockedToolCall,
                Classification::BlockedToolCall,
                ToolCall
            )
        );
        // Untracked progress exactly at the threshold is still fresh (`<=`).
        let untracked = |age| ActivitySnapshot {
            last_progress_age_ms: Some(age),
            ..ActivitySnapshot::default()
        };
        assert_eq!(
            classify(Processing, 0, &untracked(STALE), STALE),
            long_running(AttentionReason::UntrackedActiveProgress, None)
        );
        assert_eq!(
            classify(Processing, 0, &untracked(STALE + 1), STALE),
            stuck(AttentionReason::StaleSessionState)
        );
    }

    #[test]
    fn missing_ages_count_as_zero() {
        let model = ActivitySnapshot {
            active_work_kind: Some(ModelCall),
            ..ActivitySnapshot::default()
        };
        // An idle queued orphan with no progress age is not stale...
        assert_eq!(
            classify(Idle, 1, &model, STALE),
            long_running(AttentionReason::QueuedBehindActiveWork, Some(ModelCall))
        );
        // ...and a tool with no ages is not blocked.
        let bare_tool = ActivitySnapshot {
            active_work_kind: Some(ToolCall),
            ..ActivitySnapshot::default()
        };
        assert_eq!(
            classify(Unknown, 0, &bare_tool, STALE),
            long_running(AttentionReason::ActiveWork, Some(ToolCall))
        );
        // A missing tool age blocks the tool branch even with stale progress.
        let no_tool_age = ActivitySnapshot {
            active_tool_age_ms: None,
            ..tool(0, 31_000)
        };
        assert_eq!(
            classify(Unknown, 0, &no_tool_age, STALE),
            stalled(
                AttentionReason::ActiveWorkWithoutProgress,
                Classification::StalledAgentRun,
                ToolCall
            )
        );
        // With no kind, a missing progress age is not "fresh progress" (row 7).
        assert_eq!(
            classify(Processing, 0, &ActivitySnapshot::default(), STALE),
            stuck(AttentionReason::StaleSessionState)
        );
    }

    #[test]
    fn zero_threshold_and_extreme_ages() {
        assert_eq!(
            classify(Unknown, 0, &work(ModelCall, 0), 0),
            long_running(AttentionReason::ActiveWork, Some(ModelCall))
        );
        assert_eq!(
            classify(Idle, u64::MAX, &tool(u64::MAX, u64::MAX), 0),
            stuck(AttentionReason::QueuedWorkWithoutActiveRun)
        );
        assert_eq!(
            classify(Idle, 1, &work(ModelCall, u64::MAX), u64::MAX),
            long_running(AttentionReason::QueuedBehindActiveWork, Some(ModelCall))
        );
    }

    #[test]
    fn only_stuck_is_ever_eligible() {
        let snapshots = [
            ActivitySnapshot::default(),
            work(EmbeddedRun, 0),
            work(EmbeddedRun, 31_000),
            work(ModelCall, 31_000),
            tool(31_000, 31_000),
            with_reason(work(EmbeddedRun, 0), "run:completed"),
            ActivitySnapshot {
                has_live_owner: Some(true),
                ..work(ModelCall, 31_000)
            },
        ];
        for state in [Idle, Processing, Waiting, Unknown] {
            for queue in [0, 1] {
                for a in &snapshots {
                    let got = classify(state, queue, a, STALE);
                    assert_eq!(
                        got.recovery_eligible,
                        got.event_type == EventType::Stuck,
                        "{state:?} {queue} {a:?}"
                    );
                    if a.has_live_owner == Some(true) {
                        assert!(!got.recovery_eligible, "{state:?} {queue} {a:?}");
                    }
                }
            }
        }
    }

    // --- Lock ownership as activity. ---

    const LIVE: LockActivity = LockActivity {
        owner_alive: true,
        reclaimable: false,
        lock_age_ms: Some(45_000),
    };
    const DEAD: LockActivity = LockActivity {
        owner_alive: false,
        reclaimable: true,
        lock_age_ms: Some(45_000),
    };

    #[test]
    fn merge_without_lock_is_identity() {
        for a in [
            ActivitySnapshot::default(),
            tool(31_000, 31_000),
            with_reason(work(EmbeddedRun, 5), "run:started"),
        ] {
            assert_eq!(a.clone().merge_lock(None), a);
        }
    }

    #[test]
    fn merge_live_owner_into_empty_snapshot() {
        assert_eq!(
            ActivitySnapshot::default().merge_lock(Some(&LIVE)),
            ActivitySnapshot {
                active_work_kind: Some(EmbeddedRun),
                has_active_embedded_run: Some(true),
                has_live_owner: Some(true),
                last_progress_age_ms: Some(45_000),
                ..ActivitySnapshot::default()
            }
        );
    }

    #[test]
    fn merge_dead_or_reclaimable_owner_into_empty_snapshot() {
        let expected = ActivitySnapshot {
            active_work_kind: Some(EmbeddedRun),
            has_active_embedded_run: Some(false),
            has_live_owner: Some(false),
            last_progress_age_ms: Some(45_000),
            ..ActivitySnapshot::default()
        };
        assert_eq!(
            ActivitySnapshot::default().merge_lock(Some(&DEAD)),
            expected
        );
        // Alive but reclaimable (e.g. a recycled pid) is not a live owner.
        let reclaimable = LockActivity {
            owner_alive: true,
            ..DEAD
        };
        assert!(!reclaimable.is_live_owner());
        assert_eq!(
            ActivitySnapshot::default().merge_lock(Some(&reclaimable)),
            expected
        );
        // Dead but not (yet) judged reclaimable is not live either.
        let dead_unjudged = LockActivity {
            reclaimable: false,
            ..DEAD
        };
        assert_eq!(
            ActivitySnapshot::default().merge_lock(Some(&dead_unjudged)),
            expected
        );
    }

    #[test]
    fn merge_keeps_known_kind_and_fresher_progress() {
        let known = with_reason(tool(1_000, 2_000), "tool:exec:started");
        assert_eq!(
            known.clone().merge_lock(Some(&LIVE)),
            ActivitySnapshot {
                has_live_owner: Some(true),
                ..known.clone()
            }
        );
        assert_eq!(
            known.clone().merge_lock(Some(&DEAD)),
            ActivitySnapshot {
                has_live_owner: Some(false),
                ..known.clone()
            }
        );
        // A known progress age is kept even when the lock is younger.
        let young_lock = LockActivity {
            lock_age_ms: Some(10),
            ..LIVE
        };
        assert_eq!(
            work(ModelCall, 50_000)
                .merge_lock(Some(&young_lock))
                .last_progress_age_ms,
            Some(50_000)
        );
    }

    #[test]
    fn merge_lock_without_age_leaves_progress_unknown() {
        let no_age = LockActivity {
            lock_age_ms: None,
            ..LIVE
        };
        assert_eq!(
            ActivitySnapshot::default()
                .merge_lock(Some(&no_age))
                .last_progress_age_ms,
            None
        );
    }

    #[test]
    fn merge_never_downgrades_a_known_live_owner() {
        let a = ActivitySnapshot {
            has_live_owner: Some(true),
            ..work(ModelCall, 31_000)
        };
        assert_eq!(a.clone().merge_lock(Some(&DEAD)), a);
    }

    #[test]
    fn merged_lock_classifies_as_designed() {
        // Idle, queued, old lock held by a live owner: owned work that is not
        // progressing; stalled, never eligible.
        let live = ActivitySnapshot::default().merge_lock(Some(&LIVE));
        assert_eq!(
            classify(Idle, 1, &live, STALE),
            stalled(
                AttentionReason::ActiveWorkWithoutProgress,
                Classification::StalledAgentRun,
                EmbeddedRun
            )
        );
        // Same with a dead owner: orphaned activity, stuck and eligible.
        let dead = ActivitySnapshot::default().merge_lock(Some(&DEAD));
        assert_eq!(
            classify(Idle, 1, &dead, STALE),
            stuck(AttentionReason::QueuedWorkWithoutActiveRun)
        );
        // An orphaned model-call marker while a live process holds the lock:
        // the live-owner rule keeps it out of recovery.
        let orphan = work(ModelCall, 31_000).merge_lock(Some(&LIVE));
        assert_eq!(
            classify(Idle, 1, &orphan, STALE),
            stalled(
                AttentionReason::ActiveWorkWithoutProgress,
                Classification::StalledAgentRun,
                ModelCall
            )
        );
        // A young lock with a live owner is ordinary active work.
        let young = LockActivity {
            lock_age_ms: Some(1_000),
            ..LIVE
        };
        assert_eq!(
            classify(
                Processing,
                0,
                &ActivitySnapshot::default().merge_lock(Some(&young)),
                STALE
            ),
            long_running(AttentionReason::ActiveWork, Some(EmbeddedRun))
        );
    }

    // --- Wire names. ---

    fn json<T: Serialize>(value: T) -> String {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::String(s)) => s,
            other => panic!("expected a JSON string, got {other:?}"),
        }
    }

    #[test]
    fn serde_names_match_as_str() {
        for s in [Idle, Processing, Waiting, Unknown] {
            assert_eq!(json(s), s.as_str());
        }
        for k in [ToolCall, ModelCall, EmbeddedRun] {
            assert_eq!(json(k), k.as_str());
        }
        for e in [EventType::LongRunning, EventType::Stalled, EventType::Stuck] {
            assert_eq!(json(e), e.as_str());
        }
        for r in [
            AttentionReason::ActiveWork,
            AttentionReason::QueuedBehindActiveWork,
            AttentionReason::QueuedBehindTerminalActiveWork,
            AttentionReason::ActiveWorkWithoutProgress,
            AttentionReason::BlockedToolCall,
            AttentionReason::QueuedWorkWithoutActiveRun,
            AttentionReason::StaleSessionState,
            AttentionReason::UntrackedActiveProgress,
            AttentionReason::QueuedBehindUntrackedActiveProgress,
        ] {
            assert_eq!(json(r), r.as_str());
        }
        for c in [
            Classification::LongRunning,
            Classification::StalledAgentRun,
            Classification::BlockedToolCall,
            Classification::StaleSessionState,
        ] {
            assert_eq!(json(c), c.as_str());
        }
        assert_eq!(Idle.as_str(), "idle");
        assert_eq!(EventType::Stuck.as_str(), "session.stuck");
        assert_eq!(
            AttentionReason::QueuedBehindUntrackedActiveProgress.as_str(),
            "queued_behind_untracked_active_progress"
        );
    }

    #[test]
    fn snapshot_and_attention_use_reference_field_names() -> Result<(), serde_json::Error> {
        let a = ActivitySnapshot {
            has_live_owner: Some(false),
            ..with_reason(tool(31_000, 32_000), "tool:exec:started")
        };
        let value = serde_json::to_value(&a)?;
        assert_eq!(
            value,
            serde_json::json!({
                "activeWorkKind": "tool_call",
                "activeToolName": "exec",
                "activeToolCallId": "call-1",
                "activeToolAgeMs": 31_000,
                "lastProgressAgeMs": 32_000,
                "lastProgressReason": "tool:exec:started",
                "hasLiveOwner": false,
            })
        );
        assert_eq!(serde_json::from_value::<ActivitySnapshot>(value)?, a);
        assert_eq!(
            serde_json::from_str::<ActivitySnapshot>("{}")?,
            ActivitySnapshot::default()
        );

        let attention = classify(Idle, 1, &a, STALE);
        assert_eq!(
            serde_json::to_value(attention)?,
            serde_json::json!({
                "eventType": "session.stuck",
                "reason": "queued_work_without_active_run",
                "classification": "stale_session_state",
                "recoveryEligible": true,
            })
        );
        let attention = classify(Processing, 0, &a, STALE);
        assert_eq!(
            serde_json::to_value(attention)?,
            serde_json::json!({
                "eventType": "session.stalled",
                "reason": "blocked_tool_call",
                "classification": "blocked_tool_call",
                "activeWorkKind": "tool_call",
                "recoveryEligible": false,
            })
        );
        Ok(())
    }
}
