//! Stuck-session recovery on top of the lock inspection and the classifier.
//!
//! [`Recovery::recover`] takes what the classifier observed and applies the
//! reference's gates, in order:
//!
//! 1. a session key is required, and only one recovery per key runs at a
//!    time (`skipped` / `observe_only` / `missing_session_ref` or
//!    `already_in_flight`);
//! 2. the observed state and generation must still be current
//!    (`skipped` / `observe_only` / `stale_session_state`);
//! 3. the transcript lock is inspected again: a live owner's lock is never
//!    touched (`skipped` / `keep_lane` / `active_lock_owner`, unless the
//!    caller opted into aborting active work with an abort hook, which gives
//!    `aborted` / `abort_embedded_run`); a provably stale lock is removed
//!    through the core's race-free reclaim (`released` / `release_lane` /
//!    `stale_session_state`), so queued work can take the lock; no lock at
//!    all is `noop` / `none` / `no_active_work`;
//! 4. any error is `failed` / `none` / `exception`.
//!
//! Lock ownership maps to classifier activity as documented in
//! [`crate::attention::classify`]: see [`lock_activity`].

use crate::attention::classify::{self, Attention, LockActivity, SessionState};
use crate::attention::shared::DEFAULT_STUCK_WARN_MS;
pub use crate::attention::shared::{RecoveryAction, RecoveryStatus};
use crate::file::inspect::{Inspection, Verdict};
use crate::file::{self, Reclaim};
use crate::paths::LockPaths;
use crate::{Error, LockOptions};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

/// The lock's contribution to a session's activity snapshot: a lock held by
/// a live owner is active work with an owner; a reclaimable lock (dead or
/// gone owner, orphan) is ownerless activity; the lock's age (from its
/// record, else its mtime) stands in for the last progress age.
pub fn lock_activity(insp: &Inspection) -> LockActivity {
    let reclaimable = insp.verdict == Verdict::Reclaimable;
    LockActivity {
        owner_alive: !reclaimable && insp.pid_alive != Some(false),
        reclaimable,
        lock_age_ms: insp.age.or(insp.file_age).map(|d| d.as_millis() as u64),
    }
}

/// Attention from the lock alone, as `session-lock status` shows it.
///
/// A lock file tells who holds it, whether that owner is alive and since
/// when; it says nothing about the session's state, its queue or its
/// progress. So this returns `Some` only for what the lock alone supports:
/// a lock held by a live owner ([`LockActivity::is_live_owner`]) for longer
/// than the monitor's default warn threshold
/// ([`DEFAULT_STUCK_WARN_MS`], 120 s) is `session.long_running` /
/// `active_work` (kind `embedded_run`, never recovery eligible). Everything
/// else is `None`:
///
/// * a younger live lock is ordinary work;
/// * a reclaimable lock (dead or gone owner, old orphan) is no work at all:
///   the next acquire or `clean` removes it, and its verdict already says so;
/// * whether a session is stuck, stalled or has work queued behind its lock
///   takes the session's state, queue depth and progress, which only the
///   caller has: merge [`lock_activity`] into an
///   [`ActivitySnapshot`](classify::ActivitySnapshot) and
///   call [`classify::classify`] with them, as the monitor does.
pub fn lock_attention(insp: &Inspection) -> Option<Attention> {
    let lock = lock_activity(insp);
    let age_ms = lock.lock_age_ms?;
    if !lock.is_live_owner() || age_ms <= DEFAULT_STUCK_WARN_MS {
        return None;
    }
    Some(Attention {
        event_type: classify::EventType::LongRunning,
        reason: classify::AttentionReason::ActiveWork,
        classification: classify::Classification::LongRunning,
        active_work_kind: Some(classify::ActiveWorkKind::EmbeddedRun),
        recovery_eligible: false,
    })
}

/// What the classifier observed, handed to [`Recovery::recover`]. Made by
/// [`RecoveryRequest::new`]; the other fields are public to set (the
/// struct is non-exhaustive: fields may be added).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryRequest {
    /// The session key (required).
    pub session_key: String,
    /// The session's transcript (its lock is `<transcript>.lock`).
    pub transcript: PathBuf,
    /// The state the classifier saw.
    pub expected_state: SessionState,
    /// The state generation the classifier saw.
    pub state_generation: u64,
    /// Queue depth at observation.
    pub queue_depth: u64,
    /// Age at observation, in milliseconds.
    pub age_ms: u64,
    /// Allow aborting a live owner through the abort hook.
    pub allow_active_abort: bool,
}

impl RecoveryRequest {
    /// A request for `session_key`'s `transcript`, as the classifier saw it
    /// in `expected_state` at `state_generation`; queue depth and age 0, no
    /// active abort.
    pub fn new(
        session_key: impl Into<String>,
        transcript: impl Into<PathBuf>,
        expected_state: SessionState,
        state_generation: u64,
    ) -> Self {
        RecoveryRequest {
            session_key: session_key.into(),
            transcript: transcript.into(),
            expected_state,
            state_generation,
            queue_depth: 0,
            age_ms: 0,
            allow_active_abort: false,
        }
    }
}

/// The outcome, in the reference's vocabulary.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RecoveryOutcome {
    /// `released`, `skipped`, `noop`, `failed` or `aborted`.
    pub status: RecoveryStatus,
    /// `release_lane`, `observe_only`, `keep_lane`, `abort_embedded_run` or `none`.
    pub action: RecoveryAction,
    /// Why (`already_in_flight`, `stale_session_state`, `active_lock_owner`,
    /// `no_active_work`, `exception`, ...).
    pub reason: Option<String>,
    /// The session key.
    pub session_key: String,
    /// Whether a stale lock was removed.
    pub released: bool,
    /// The lock as inspected by the recovery, if there was one.
    pub lock: Option<Inspection>,
    /// The error, for `failed`.
    pub error: Option<String>,
}

impl RecoveryOutcome {
    fn new(key: &str, status: RecoveryStatus, action: RecoveryAction, reason: &str) -> Self {
        RecoveryOutcome {
            status,
            action,
            reason: Some(reason.to_owned()),
            session_key: key.to_owned(),
            released: false,
            lock: None,
            error: None,
        }
    }
}

/// Coordinates recoveries: one in flight per session key.
#[derive(Debug, Default)]
pub struct Recovery {
    in_flight: Mutex<HashSet<String>>,
}

struct InFlight<'a> {
    set: &'a Mutex<HashSet<String>>,
    key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl Recovery {
    /// A coordinator with nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Run the gates for `req`. `current` answers the session's current
    /// (state, generation); `abort` is called for a live owner only when
    /// `req.allow_active_abort` is set, and returns whether it aborted the
    /// active work (the lock is then left to its owner's release).
    pub fn recover(
        &self,
        req: &RecoveryRequest,
        current: impl Fn(&str) -> Option<(SessionState, u64)>,
        abort: Option<&dyn Fn(&Inspection) -> bool>,
    ) -> RecoveryOutcome {
        use RecoveryAction as A;
        use RecoveryStatus as S;
        let key = req.session_key.trim();
        if key.is_empty() {
            return RecoveryOutcome::new(key, S::Skipped, A::ObserveOnly, "missing_session_ref");
        }
        {
            let mut set = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if !set.insert(key.to_owned()) {
                return RecoveryOutcome::new(key, S::Skipped, A::ObserveOnly, "already_in_flight");
            }
        }
        let _in_flight = InFlight {
            set: &self.in_flight,
            key: key.to_owned(),
        };
        crate::fault::hit("recovery.in_flight");
        if current(key) != Some((req.expected_state, req.state_generation)) {
            return RecoveryOutcome::new(key, S::Skipped, A::ObserveOnly, "stale_session_state");
        }
        match self.release_stale_lock(key, req, abort) {
            Ok(outcome) => outcome,
            Err(e) => {
                let mut o = RecoveryOutcome::new(key, S::Failed, A::None, "exception");
                o.error = Some(e.to_string());
                o
            }
        }
    }

    fn release_stale_lock(
        &self,
        key: &str,
        req: &RecoveryRequest,
        abort: Option<&dyn Fn(&Inspection) -> bool>,
    ) -> Result<RecoveryOutcome, Error> {
        use RecoveryAction as A;
        use RecoveryStatus as S;
        let paths = LockPaths::resolve_existing(&req.transcript)?;
        let policy = file::acquire_policy(&LockOptions::new());
        let Some(observed) =
            crate::file::inspect::observe(&paths.lock, &policy, &file::held::held_by_us)?
        else {
            return Ok(RecoveryOutcome::new(
                key,
                S::Noop,
                A::None,
                "no_active_work",
            ));
        };
        let insp = observed.inspection.clone();
        let mut outcome = match insp.verdict {
            Verdict::Reclaimable => match file::reclaim(observed)? {
                Reclaim::Removed => {
                    let mut o = RecoveryOutcome::new(
                        key,
                        S::Released,
                        A::ReleaseLane,
                        "stale_session_state",
                    );
                    o.released = true;
                    o
                }
                // Someone else reclaimed or replaced it meanwhile.
                Reclaim::Changed | Reclaim::Busy | Reclaim::Guarded(_) => {
                    RecoveryOutcome::new(key, S::Skipped, A::ObserveOnly, "lock_changed")
                }
            },
            Verdict::Held | Verdict::Stale => match abort {
                Some(hook) if req.allow_active_abort && hook(&insp) => {
                    RecoveryOutcome::new(key, S::Aborted, A::AbortEmbeddedRun, "active_lock_owner")
                }
                _ => RecoveryOutcome::new(key, S::Skipped, A::KeepLane, "active_lock_owner"),
            },
        };
        outcome.lock = Some(insp);
        Ok(outcome)
    }
}
