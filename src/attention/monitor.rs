//! Heartbeat driver: turns per-session observations into attention events and
//! recovery requests, with the reference's warning back-off.
//!
//! [`Monitor`] owns no threads and reads no clock: the host reports what it
//! sees (state, queue depth, progress, activity, lock ownership) with the time
//! it saw it, and calls [`Monitor::tick`] every [`MonitorConfig::heartbeat_ms`]
//! (the reference heartbeat is a 30 s interval). Each tick follows the
//! reference heartbeat (OpenClaw `startDiagnosticHeartbeat`):
//!
//! * A session is classified when it is `idle` with queued work, known
//!   activity (an active work kind) and a last-progress age above
//!   `stuck_warn_ms` (age = that progress age), or when it is `processing`
//!   and its age is above `stuck_warn_ms` (age = the larger of the time since
//!   it entered `processing` and, when it has an active work kind, its
//!   progress age, so that a refreshed state cannot hide owned work that
//!   stopped progressing). Other sessions are not classified; a tick that does
//!   not classify a session ends its warning episode (its back-off resets).
//! * Classification is [`classify`] with `stale_ms = stuck_warn_ms`, over the
//!   activity snapshot aged to the tick, combined with progress recorded
//!   through [`Monitor::record_progress`] and with the transcript lock folded
//!   in by [`ActivitySnapshot::merge_lock`].
//! * `session.long_running` and `session.stalled` events are emitted on every
//!   tick they apply. `session.stuck` warnings go through [`StuckBackoff`],
//!   fed with the classified age. The back-off alone, for the default 120 s
//!   threshold, warns at 120 s, 240 s, 480 s, 960 s ... of age
//!   ([`StuckBackoff::schedule`]). The monitor warns later, because it
//!   classifies only ages strictly above the threshold and only at ticks:
//!   with 30 s ticks that see ages 30 s, 60 s, 90 s ..., the first tick past
//!   120 s is at 150 s, and the warnings come at 150 s, 300 s, 600 s,
//!   1200 s ... (150; then `max(150 + 120, 2 * 150)` = 300; 600; 1200).
//! * When the classification is recovery eligible, a [`RecoveryRequested`]
//!   carrying the session's current state generation is emitted as well, on
//!   every such tick: the back-off throttles reports, never recovery. The one
//!   exception is the reference's liveness guard: a tick arriving
//!   [`HEARTBEAT_DELAY_TOLERANCE_MS`] or more later than scheduled defers
//!   recovery decisions for that tick, because a starved host sees every
//!   session as stale (#84903).
//!
//! Every emitted event is also logged with `tracing` (warn for stuck and
//! stalled, info otherwise) in the reference's log-line format, e.g.
//! `stuck session: sessionId=unknown sessionKey=main state=idle age=150s
//! queueDepth=1 reason=queued_work_without_active_run
//! classification=stale_session_state lastProgressAge=150s recovery=checking`.
//!
//! A recovery must check, before it acts, that its observation is still
//! current: [`Monitor::state_generation`] returns the state and generation to
//! compare with the request's `state` and `state_generation`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::attention::classify::{
    ActiveWorkKind, ActivitySnapshot, AttentionReason, Classification, EventType, LockActivity,
    SessionState, classify,
};
pub use crate::attention::shared::{DEFAULT_STUCK_WARN_MS, RecoveryAction, RecoveryStatus};

/// Default heartbeat interval (the reference heartbeat's 30 s `setInterval`).
pub const DEFAULT_HEARTBEAT_MS: u64 = 30_000;

/// A tick this much (or more) later than `heartbeat_ms` after the previous one
/// defers recovery requests for that tick (reference liveness guard, 1 s).
pub const HEARTBEAT_DELAY_TOLERANCE_MS: u64 = 1_000;

/// Thresholds of a [`Monitor`]: start from `MonitorConfig::default()` and
/// set the fields (the struct is non-exhaustive: fields may be added).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MonitorConfig {
    /// Age above which a session is classified; also the classifier's
    /// `stale_ms` and the back-off threshold.
    pub stuck_warn_ms: u64,
    /// Interval at which the host calls [`Monitor::tick`]; used to detect a
    /// delayed tick.
    pub heartbeat_ms: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            stuck_warn_ms: DEFAULT_STUCK_WARN_MS,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
        }
    }
}

/// Back-off for `session.stuck` warnings about one unchanged session.
///
/// The first warning is due when the age reaches the threshold; after a
/// warning at age `w` the next one is due at `max(w + threshold, 2 * w)`.
/// [`reset`](Self::reset) starts over (state change, progress, newly queued
/// work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StuckBackoff {
    threshold_ms: u64,
    last_warn_age_ms: Option<u64>,
}

impl StuckBackoff {
    /// A back-off that has not warned yet.
    pub const fn new(threshold_ms: u64) -> Self {
        Self {
            threshold_ms,
            last_warn_age_ms: None,
        }
    }

    /// Age at which the next warning is due.
    pub fn next_warn_age_ms(&self) -> u64 {
        match self.last_warn_age_ms {
            None => self.threshold_ms,
            Some(last) => last
                .saturating_add(self.threshold_ms)
                .max(last.saturating_mul(2)),
        }
    }

    /// Whether a warning is due at `age_ms`; if so, records it as emitted.
    pub fn try_warn(&mut self, age_ms: u64) -> bool {
        let due = age_ms >= self.next_warn_age_ms();
        if due {
            self.last_warn_age_ms = Some(age_ms);
        }
        due
    }

    /// Age of the last emitted warning, if any since the last reset.
    pub const fn last_warn_age_ms(&self) -> Option<u64> {
        self.last_warn_age_ms
    }

    /// Forgets the warnings emitted so far.
    pub fn reset(&mut self) {
        self.last_warn_age_ms = None;
    }

    /// Ages (up to and including `up_to_ms`) at which the back-off lets a
    /// warning through for a session observed continuously (every
    /// millisecond): 120 000, 240 000, 480 000, 960 000, ... for a 120 000 ms
    /// threshold. A [`Monitor`] emits later (see
    /// [`schedule_with_ticks`](Self::schedule_with_ticks)).
    #[must_use]
    pub fn schedule(threshold_ms: u64, up_to_ms: u64) -> Vec<u64> {
        Self::schedule_with_ticks(threshold_ms, 1, up_to_ms)
    }

    /// Like [`schedule`](Self::schedule) for a session observed only at ages
    /// that are multiples of `tick_ms` (a heartbeat; 0 is treated as 1),
    /// with a warning allowed at exactly the threshold (`>=`). With a 120 s
    /// threshold and 30 s ticks: 120 s, 240 s, 480 s, 960 s, ...; with 50 s
    /// ticks: 150 s, 300 s, 600 s, ...
    ///
    /// This is the back-off alone, not what a [`Monitor`] emits: the monitor
    /// classifies a session only when its age is strictly above the
    /// threshold (`>`), so with the default 120 s threshold and 30 s ticks
    /// at ages 30 s, 60 s, ... its first warning is at 150 s, then 300 s,
    /// 600 s, 1200 s, ...
    #[must_use]
    pub fn schedule_with_ticks(threshold_ms: u64, tick_ms: u64, up_to_ms: u64) -> Vec<u64> {
        let tick_ms = tick_ms.max(1);
        let mut backoff = Self::new(threshold_ms);
        let mut schedule = Vec::new();
        // Earliest tick not observed yet; strictly increases, so this ends.
        let mut earliest = 0u64;
        while let Some(at) = backoff
            .next_warn_age_ms()
            .div_ceil(tick_ms)
            .checked_mul(tick_ms)
            .map(|at| at.max(earliest))
        {
            if at > up_to_ms || !backoff.try_warn(at) {
                break;
            }
            schedule.push(at);
            match at.checked_add(tick_ms) {
                Some(next) => earliest = next,
                None => break,
            }
        }
        schedule
    }
}

/// A `session.long_running`, `session.stalled` or `session.stuck` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AttentionEvent {
    /// Event name (`type` on the wire).
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Session id, when the host reported one ([`Monitor::set_session_id`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Session key (the monitor's key).
    pub session_key: String,
    /// State at the observation.
    pub state: SessionState,
    /// Age that triggered the classification, in milliseconds.
    pub age_ms: u64,
    /// Queued work at the observation.
    pub queue_depth: u64,
    /// Classifier reason.
    pub reason: AttentionReason,
    /// Classifier classification.
    pub classification: Classification,
    /// Classifier active work kind (absent for orphaned or no work).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_work_kind: Option<ActiveWorkKind>,
    /// Reason of the last progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_progress_reason: Option<String>,
    /// Time since the last progress, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_progress_age_ms: Option<u64>,
    /// Name of the oldest active tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_tool_name: Option<String>,
    /// Call id of the oldest active tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_tool_call_id: Option<String>,
    /// Age of the oldest active tool call, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_tool_age_ms: Option<u64>,
    /// Whether a live process holds the session's lock (ours, not in the
    /// reference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_live_owner: Option<bool>,
}

/// A `session.recovery.requested` event: the session was classified stuck and
/// recovery eligible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "type",
    rename = "session.recovery.requested",
    rename_all = "camelCase"
)]
#[non_exhaustive]
pub struct RecoveryRequested {
    /// Session id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Session key.
    pub session_key: String,
    /// State at the observation; recovery must find it unchanged.
    pub state: SessionState,
    /// Generation at the observation; recovery must find it unchanged.
    pub state_generation: u64,
    /// Age that triggered the classification, in milliseconds.
    pub age_ms: u64,
    /// Queued work at the observation.
    pub queue_depth: u64,
    /// Classifier reason.
    pub reason: AttentionReason,
    /// Classifier active work kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_work_kind: Option<ActiveWorkKind>,
}

/// A `session.recovery.completed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "type",
    rename = "session.recovery.completed",
    rename_all = "camelCase"
)]
#[non_exhaustive]
pub struct RecoveryCompleted {
    /// Session key.
    pub session_key: String,
    /// Outcome status.
    pub status: RecoveryStatus,
    /// Action taken.
    pub action: RecoveryAction,
    /// Outcome reason (`stale_session_state`, `active_embedded_run`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome_reason: Option<String>,
    /// Number of released entries, when any were released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released: Option<u64>,
    /// The observation was no longer current when the outcome arrived.
    pub stale: bool,
}

impl RecoveryCompleted {
    /// Logs the outcome with `tracing` (warn when failed, info otherwise).
    pub fn log(&self) {
        let mut parts = vec![
            format!("status={}", self.status.as_str()),
            format!("action={}", self.action.as_str()),
            format!("sessionKey={}", self.session_key),
        ];
        if let Some(reason) = &self.outcome_reason {
            parts.push(format!("reason={reason}"));
        }
        if let Some(released) = self.released {
            parts.push(format!("released={released}"));
        }
        if self.stale {
            parts.push("stale=true".to_owned());
        }
        let line = parts.join(" ");
        if self.status == RecoveryStatus::Failed {
            tracing::warn!(session_key = %self.session_key, "stuck session recovery outcome: {line}");
        } else {
            tracing::info!(session_key = %self.session_key, "stuck session recovery outcome: {line}");
        }
    }
}

/// What a [`Monitor::tick`] produced; serialises as the inner event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum MonitorOutput {
    /// A `session.long_running`, `session.stalled` or `session.stuck` event.
    Attention(AttentionEvent),
    /// A `session.recovery.requested` event; the host should run recovery.
    RecoveryRequested(RecoveryRequested),
}

/// Per-session observations.
#[derive(Debug, Clone)]
struct Session {
    session_id: Option<String>,
    state: SessionState,
    generation: u64,
    /// When the session entered its current state.
    state_since_ms: u64,
    queue_depth: u64,
    /// Snapshot as of `activity_at_ms`.
    activity: ActivitySnapshot,
    activity_at_ms: u64,
    /// Lock observation as of `lock_at_ms`.
    lock: Option<LockActivity>,
    lock_at_ms: u64,
    /// Last progress reported through `record_progress`: (time, reason).
    progress: Option<(u64, String)>,
    backoff: StuckBackoff,
}

impl Session {
    fn new(threshold_ms: u64) -> Self {
        Self {
            session_id: None,
            state: SessionState::Unknown,
            generation: 0,
            state_since_ms: 0,
            queue_depth: 0,
            activity: ActivitySnapshot::default(),
            activity_at_ms: 0,
            lock: None,
            lock_at_ms: 0,
            progress: None,
            backoff: StuckBackoff::new(threshold_ms),
        }
    }

    /// The activity as of `now_ms`: the snapshot aged since it was taken, the
    /// fresher of its progress and the recorded progress, then the lock.
    fn activity_at(&self, now_ms: u64) -> ActivitySnapshot {
        let elapsed = now_ms.saturating_sub(self.activity_at_ms);
        let age = |ms: Option<u64>| ms.map(|ms| ms.saturating_add(elapsed));
        let mut activity = ActivitySnapshot {
            active_tool_age_ms: age(self.activity.active_tool_age_ms),
            last_progress_age_ms: age(self.activity.last_progress_age_ms),
            ..self.activity.clone()
        };
        if let Some((at_ms, reason)) = &self.progress {
            let recorded_age = now_ms.saturating_sub(*at_ms);
            if activity
                .last_progress_age_ms
                .is_none_or(|known| recorded_age <= known)
            {
                activity.last_progress_age_ms = Some(recorded_age);
                activity.last_progress_reason = Some(reason.clone());
            }
        }
        let lock = self.lock.map(|lock| {
            let elapsed = now_ms.saturating_sub(self.lock_at_ms);
            LockActivity {
                lock_age_ms: lock.lock_age_ms.map(|ms| ms.saturating_add(elapsed)),
                ..lock
            }
        });
        activity.merge_lock(lock.as_ref())
    }

    /// The age to classify the session at, or `None` when the heartbeat does
    /// not classify it.
    fn attention_age(&self, activity: &ActivitySnapshot, now_ms: u64, warn_ms: u64) -> Option<u64> {
        let progress_age = activity.last_progress_age_ms.unwrap_or(0);
        let age = match self.state {
            SessionState::Idle if self.queue_depth > 0 && activity.active_work_kind.is_some() => {
                progress_age
            }
            SessionState::Processing => {
                let owned_work_age = if activity.active_work_kind.is_some() {
                    progress_age
                } else {
                    0
                };
                now_ms
                    .saturating_sub(self.state_since_ms)
                    .max(owned_work_age)
            }
            _ => return None,
        };
        (age > warn_ms).then_some(age)
    }
}

/// Tracks sessions and decides, on each heartbeat tick, which need attention
/// (see the module docs). Sessions are created on first mention, in state
/// [`SessionState::Unknown`] with generation 0, and reported in key order.
#[derive(Debug, Clone)]
pub struct Monitor {
    config: MonitorConfig,
    sessions: BTreeMap<String, Session>,
    last_tick_ms: Option<u64>,
}

impl Default for Monitor {
    fn default() -> Self {
        Self::new(MonitorConfig::default())
    }
}

impl Monitor {
    /// A monitor with no sessions.
    pub fn new(config: MonitorConfig) -> Self {
        Self {
            config,
            sessions: BTreeMap::new(),
            last_tick_ms: None,
        }
    }

    /// The monitor's thresholds.
    pub const fn config(&self) -> MonitorConfig {
        self.config
    }

    fn session(&mut self, key: &str) -> &mut Session {
        let threshold_ms = self.config.stuck_warn_ms;
        self.sessions
            .entry(key.to_owned())
            .or_insert_with(|| Session::new(threshold_ms))
    }

    /// Records a state event: bumps the session's generation (so recoveries
    /// observed before it become stale) and resets the warning back-off. The
    /// session's age restarts only when the state actually changes, so
    /// re-asserting `processing` cannot hide a wedged session.
    pub fn set_state(&mut self, key: &str, state: SessionState, now_ms: u64) {
        let session = self.session(key);
        session.generation = session.generation.wrapping_add(1);
        if session.state != state {
            session.state = state;
            session.state_since_ms = now_ms;
        }
        session.backoff.reset();
    }

    /// Records the session id reported in events for `key`.
    pub fn set_session_id(&mut self, key: &str, session_id: impl Into<String>) {
        self.session(key).session_id = Some(session_id.into());
    }

    /// Records the queued work. Newly queued work (a larger depth) resets the
    /// warning back-off.
    pub fn set_queue_depth(&mut self, key: &str, depth: u64) {
        let session = self.session(key);
        if depth > session.queue_depth {
            session.backoff.reset();
        }
        session.queue_depth = depth;
    }

    /// Records progress (`reason` as in
    /// [`ActivitySnapshot::last_progress_reason`]) at `now_ms`, and resets the
    /// warning back-off.
    pub fn record_progress(&mut self, key: &str, reason: impl Into<String>, now_ms: u64) {
        let session = self.session(key);
        session.progress = Some((now_ms, reason.into()));
        session.backoff.reset();
    }

    /// Replaces the activity snapshot, taken at `now_ms`; its ages keep
    /// growing from there until the next snapshot. A progress age older than
    /// one recorded with [`record_progress`](Self::record_progress) is
    /// ignored in favour of the fresher one.
    pub fn set_activity(&mut self, key: &str, activity: ActivitySnapshot, now_ms: u64) {
        let session = self.session(key);
        session.activity = activity;
        session.activity_at_ms = now_ms;
    }

    /// Replaces the transcript-lock observation, made at `now_ms` (`None`: no
    /// lock). Its age keeps growing from there; it is folded into the activity
    /// with [`ActivitySnapshot::merge_lock`].
    pub fn set_lock_activity(&mut self, key: &str, lock: Option<LockActivity>, now_ms: u64) {
        let session = self.session(key);
        session.lock = lock;
        session.lock_at_ms = now_ms;
    }

    /// Forgets a session. Returns whether it was tracked.
    pub fn remove(&mut self, key: &str) -> bool {
        self.sessions.remove(key).is_some()
    }

    /// Current state and generation of a session, for checking that a
    /// recovery request is still current.
    pub fn state_generation(&self, key: &str) -> Option<(SessionState, u64)> {
        self.sessions
            .get(key)
            .map(|session| (session.state, session.generation))
    }

    /// The activity the monitor would classify at `now_ms` (snapshot aged,
    /// recorded progress and lock folded in).
    pub fn activity(&self, key: &str, now_ms: u64) -> Option<ActivitySnapshot> {
        self.sessions
            .get(key)
            .map(|session| session.activity_at(now_ms))
    }

    /// Runs one heartbeat at `now_ms` (see the module docs for the rules) and
    /// returns the events, in session-key order; each is also logged.
    #[must_use = "the outputs include recovery requests the host must act on"]
    pub fn tick(&mut self, now_ms: u64) -> Vec<MonitorOutput> {
        let elapsed_ms = self
            .last_tick_ms
            .map_or(0, |last| now_ms.saturating_sub(last));
        let overdue_ms = elapsed_ms.saturating_sub(self.config.heartbeat_ms);
        let defer_recovery =
            self.last_tick_ms.is_some() && overdue_ms >= HEARTBEAT_DELAY_TOLERANCE_MS;
        if defer_recovery {
            tracing::warn!(
                overdue_ms,
                "liveness heartbeat delayed: overdue={overdue_ms}ms elapsed={elapsed_ms}ms; deferring recovery decisions"
            );
        }
        self.last_tick_ms = Some(now_ms);

        let warn_ms = self.config.stuck_warn_ms;
        let mut outputs = Vec::new();
        for (key, session) in &mut self.sessions {
            let activity = session.activity_at(now_ms);
            let Some(age_ms) = session.attention_age(&activity, now_ms, warn_ms) else {
                // Healthy (or not ours to judge) this tick: the episode is over.
                session.backoff.reset();
                continue;
            };
            let attention = classify(session.state, session.queue_depth, &activity, warn_ms);
            let recover = attention.recovery_eligible && !defer_recovery;
            let report =
                attention.event_type != EventType::Stuck || session.backoff.try_warn(age_ms);
            if report {
                let event = AttentionEvent {
                    event_type: attention.event_type,
                    session_id: session.session_id.clone(),
                    session_key: key.clone(),
                    state: session.state,
                    age_ms,
                    queue_depth: session.queue_depth,
                    reason: attention.reason,
                    classification: attention.classification,
                    active_work_kind: attention.active_work_kind,
                    last_progress_reason: activity.last_progress_reason.clone(),
                    last_progress_age_ms: activity.last_progress_age_ms,
                    active_tool_name: activity.active_tool_name.clone(),
                    active_tool_call_id: activity.active_tool_call_id.clone(),
                    active_tool_age_ms: activity.active_tool_age_ms,
                    has_live_owner: activity.has_live_owner,
                };
                log_attention(&event, recover);
                outputs.push(MonitorOutput::Attention(event));
            }
            if recover {
                let request = RecoveryRequested {
                    session_id: session.session_id.clone(),
                    session_key: key.clone(),
                    state: session.state,
                    state_generation: session.generation,
                    age_ms,
                    queue_depth: session.queue_depth,
                    reason: attention.reason,
                    active_work_kind: attention.active_work_kind,
                };
                log_recovery_requested(&request);
                outputs.push(MonitorOutput::RecoveryRequested(request));
            }
        }
        outputs
    }
}

/// Milliseconds as whole seconds, rounded half up (the reference's
/// `Math.round(ms / 1000)`).
fn secs(ms: u64) -> u64 {
    ms / 1000 + u64::from(ms % 1000 >= 500)
}

/// The reference's attention log line.
fn attention_log_line(event: &AttentionEvent, recovery: bool) -> String {
    let label = match event.event_type {
        EventType::Stuck => "stuck session",
        EventType::Stalled => "stalled session",
        EventType::LongRunning => "long-running session",
    };
    let mut parts = vec![
        format!(
            "{label}: sessionId={}",
            event.session_id.as_deref().unwrap_or("unknown")
        ),
        format!("sessionKey={}", event.session_key),
        format!("state={}", event.state.as_str()),
        format!("age={}s", secs(event.age_ms)),
        format!("queueDepth={}", event.queue_depth),
        format!("reason={}", event.reason.as_str()),
        format!("classification={}", event.classification.as_str()),
    ];
    if let Some(kind) = event.active_work_kind {
        parts.push(format!("activeWorkKind={}", kind.as_str()));
    }
    if let Some(reason) = &event.last_progress_reason {
        parts.push(format!("lastProgress={reason}"));
    }
    if let Some(age) = event.last_progress_age_ms {
        parts.push(format!("lastProgressAge={}s", secs(age)));
    }
    if let Some(name) = &event.active_tool_name {
        parts.push(format!("activeTool={name}"));
    }
    if let Some(id) = &event.active_tool_call_id {
        parts.push(format!("activeToolCallId={id}"));
    }
    if let Some(age) = event.active_tool_age_ms {
        parts.push(format!("activeToolAge={}s", secs(age)));
    }
    if event.reason == AttentionReason::QueuedBehindTerminalActiveWork {
        parts.push("terminalProgressStale=true".to_owned());
    }
    if let Some(live) = event.has_live_owner {
        parts.push(format!("liveOwner={live}"));
    }
    parts.push(format!(
        "recovery={}",
        if recovery { "checking" } else { "none" }
    ));
    parts.join(" ")
}

fn log_attention(event: &AttentionEvent, recovery: bool) {
    let line = attention_log_line(event, recovery);
    let (kind, key) = (event.event_type.as_str(), event.session_key.as_str());
    if event.event_type == EventType::LongRunning {
        tracing::info!(
            event = kind,
            session_key = key,
            age_ms = event.age_ms,
            "{line}"
        );
    } else {
        tracing::warn!(
            event = kind,
            session_key = key,
            age_ms = event.age_ms,
            "{line}"
        );
    }
}

fn log_recovery_requested(request: &RecoveryRequested) {
    let kind = request.active_work_kind.map_or(String::new(), |kind| {
        format!(" activeWorkKind={}", kind.as_str())
    });
    tracing::info!(
        event = "session.recovery.requested",
        session_key = request.session_key.as_str(),
        "stuck session recovery requested: sessionId={} sessionKey={} state={} stateGeneration={} age={}s queueDepth={} reason={}{kind}",
        request.session_id.as_deref().unwrap_or("unknown"),
        request.session_key,
        request.state.as_str(),
        request.state_generation,
        secs(request.age_ms),
        request.queue_depth,
        request.reason.as_str(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ActiveWorkKind::{EmbeddedRun, ModelCall};
    use SessionState::{Idle, Processing, Unknown, Waiting};

    const WARN: u64 = DEFAULT_STUCK_WARN_MS;
    const BEAT: u64 = DEFAULT_HEARTBEAT_MS;
    const KEY: &str = "agent:main";

    // --- Back-off. ---

    #[test]
    fn backoff_schedule_table() {
        let cases: [(u64, u64, u64, &[u64]); 8] = [
            // threshold, tick, up to, expected
            (
                120_000,
                1,
                2_000_000,
                &[120_000, 240_000, 480_000, 960_000, 1_920_000],
            ),
            (
                120_000,
                30_000,
                1_000_000,
                &[120_000, 240_000, 480_000, 960_000],
            ),
            (120_000, 50_000, 1_000_000, &[150_000, 300_000, 600_000]),
            (120_000, 45_000, 1_000_000, &[135_000, 270_000, 540_000]),
            (120_000, 1, 119_999, &[]),
            (120_000, 1, 120_000, &[120_000]),
            // Threshold 0 with every-ms ticks: 0, then doubling from the next tick.
            (0, 1, 10, &[0, 1, 2, 4, 8]),
            // Tick 0 is treated as 1.
            (1_000, 0, 5_000, &[1_000, 2_000, 4_000]),
        ];
        for (threshold, tick, up_to, expected) in cases {
            assert_eq!(
                StuckBackoff::schedule_with_ticks(threshold, tick, up_to),
                expected,
                "threshold={threshold} tick={tick} up_to={up_to}"
            );
        }
        assert_eq!(
            StuckBackoff::schedule(120_000, 1_000_000),
            [120_000, 240_000, 480_000, 960_000]
        );
    }

    #[test]
    fn backoff_schedule_terminates_at_the_top_of_the_range() {
        // Due ages saturate at u64::MAX instead of overflowing.
        let schedule = StuckBackoff::schedule(u64::MAX / 2, u64::MAX);
        assert_eq!(schedule, [u64::MAX / 2, u64::MAX - 1, u64::MAX]);
        let schedule = StuckBackoff::schedule(1, u64::MAX);
        // 1, 2, 4, ..., 2^63, then the saturated u64::MAX.
        assert_eq!(schedule.len(), 65);
        assert!(schedule.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(StuckBackoff::schedule(0, 0), [0]);
    }

    #[test]
    fn backoff_rule_table() {
        let mut backoff = StuckBackoff::new(WARN);
        // (age, expected warn, next due after the call)
        let steps = [
            (0, false, 120_000),
            (119_999, false, 120_000),
            (120_000, true, 240_000),
            (120_000, false, 240_000),
            (239_999, false, 240_000),
            (250_000, true, 500_000),
            (499_999, false, 500_000),
            (500_000, true, 1_000_000),
        ];
        for (age, warn, next) in steps {
            assert_eq!(backoff.try_warn(age), warn, "age {age}");
            assert_eq!(backoff.next_warn_age_ms(), next, "age {age}");
        }
        assert_eq!(backoff.last_warn_age_ms(), Some(500_000));
        backoff.reset();
        assert_eq!(backoff.last_warn_age_ms(), None);
        assert_eq!(backoff.next_warn_age_ms(), WARN);
        // A late first warning: the next one is due at twice its age (the
        // `+ threshold` term can only tie, since a warning age is never below
        // the threshold).
        let mut late = StuckBackoff::new(100);
        assert!(late.try_warn(150));
        assert_eq!(late.next_warn_age_ms(), 300);
        let mut exact = StuckBackoff::new(100);
        assert!(exact.try_warn(100));
        assert_eq!(exact.next_warn_age_ms(), 200);
    }

    #[test]
    fn backoff_with_30s_ticks_warns_at_120_240_480_960() {
        let mut backoff = StuckBackoff::new(WARN);
        let warned: Vec<u64> = (1..=40)
            .map(|n| n * BEAT)
            .filter(|&age| backoff.try_warn(age))
            .collect();
        assert_eq!(warned, [120_000, 240_000, 480_000, 960_000]);
    }

    // --- Monitor. ---

    fn orphaned_model_call() -> ActivitySnapshot {
        ActivitySnapshot {
            active_work_kind: Some(ModelCall),
            ..ActivitySnapshot::default()
        }
    }

    /// Idle session, one queued message, a model-call marker with no
    /// embedded run behind it, last progress at t = 0.
    fn idle_orphan(monitor: &mut Monitor) {
        monitor.set_state(KEY, Idle, 0);
        monitor.set_queue_depth(KEY, 1);
        monitor.set_activity(KEY, orphaned_model_call(), 0);
        monitor.record_progress(KEY, "model_call:started", 0);
    }

    fn attention(outputs: &[MonitorOutput]) -> Vec<&AttentionEvent> {
        outputs
            .iter()
            .filter_map(|o| match o {
                MonitorOutput::Attention(event) => Some(event),
                MonitorOutput::RecoveryRequested(_) => None,
            })
            .collect()
    }

    fn recoveries(outputs: &[MonitorOutput]) -> Vec<&RecoveryRequested> {
        outputs
            .iter()
            .filter_map(|o| match o {
                MonitorOutput::RecoveryRequested(request) => Some(request),
                MonitorOutput::Attention(_) => None,
            })
            .collect()
    }

    /// Runs ticks every 30 s from `from` to `to` (inclusive) and returns the
    /// outputs with their tick time.
    fn run(monitor: &mut Monitor, from: u64, to: u64) -> Vec<(u64, MonitorOutput)> {
        (from / BEAT..=to / BEAT)
            .map(|n| n * BEAT)
            .flat_map(|now| monitor.tick(now).into_iter().map(move |o| (now, o)))
            .collect()
    }

    fn stuck_event(age_ms: u64) -> AttentionEvent {
        AttentionEvent {
            event_type: EventType::Stuck,
            session_id: None,
            session_key: KEY.to_owned(),
            state: Idle,
            age_ms,
            queue_depth: 1,
            reason: AttentionReason::QueuedWorkWithoutActiveRun,
            classification: Classification::StaleSessionState,
            active_work_kind: None,
            last_progress_reason: Some("model_call:started".to_owned()),
            last_progress_age_ms: Some(age_ms),
            active_tool_name: None,
            active_tool_call_id: None,
            active_tool_age_ms: None,
            has_live_owner: None,
        }
    }

    fn recovery(age_ms: u64, generation: u64) -> RecoveryRequested {
        RecoveryRequested {
            session_id: None,
            session_key: KEY.to_owned(),
            state: Idle,
            state_generation: generation,
            age_ms,
            queue_depth: 1,
            reason: AttentionReason::QueuedWorkWithoutActiveRun,
            active_work_kind: None,
        }
    }

    #[test]
    fn idle_orphan_warns_with_backoff_and_requests_recovery_every_tick() {
        let mut monitor = Monitor::default();
        idle_orphan(&mut monitor);
        let outputs = run(&mut monitor, BEAT, 1_200_000);

        // Progress at t = 0 and ticks at multiples of 30 s: the age equals the
        // tick time. At 120 s the age is not yet *above* the threshold (strict
        // `>`), so the first warning comes at 150 s and doubles from there.
        let warnings: Vec<(u64, AttentionEvent)> = outputs
            .iter()
            .filter_map(|(now, o)| match o {
                MonitorOutput::Attention(event) => Some((*now, event.clone())),
                MonitorOutput::RecoveryRequested(_) => None,
            })
            .collect();
        let expected: Vec<(u64, AttentionEvent)> = [150_000, 300_000, 600_000, 1_200_000]
            .into_iter()
            .map(|age| (age, stuck_event(age)))
            .collect();
        assert_eq!(warnings, expected);

        let requests: Vec<(u64, RecoveryRequested)> = outputs
            .iter()
            .filter_map(|(now, o)| match o {
                MonitorOutput::RecoveryRequested(r) => Some((*now, r.clone())),
                MonitorOutput::Attention(_) => None,
            })
            .collect();
        let expected: Vec<(u64, RecoveryRequested)> = (5..=40)
            .map(|n| n * BEAT)
            .map(|now| (now, recovery(now, 1)))
            .collect();
        assert_eq!(requests, expected);
    }

    #[test]
    fn stuck_warnings_follow_the_observed_ages() {
        // Same session, but the ticks run 1 ms after each multiple of 30 s,
        // so the age crosses the threshold on the 120 s tick. The back-off
        // works on ages, not tick counts, so the extra millisecond shifts
        // each later warning by one tick.
        let mut monitor = Monitor::default();
        monitor.set_state(KEY, Idle, 0);
        monitor.set_queue_depth(KEY, 1);
        monitor.set_activity(KEY, orphaned_model_call(), 1);
        monitor.record_progress(KEY, "model_call:started", 0);
        let ages: Vec<u64> = (1..=40)
            .map(|n| n * BEAT + 1)
            .flat_map(|now| monitor.tick(now))
            .filter_map(|o| match o {
                MonitorOutput::Attention(event) => Some(event.age_ms),
                MonitorOutput::RecoveryRequested(_) => None,
            })
            .collect();
        assert_eq!(ages, [120_001, 270_001, 570_001, 1_170_001]);
    }

    #[test]
    fn progress_resets_the_backoff() {
        let mut monitor = Monitor::default();
        idle_orphan(&mut monitor);
        let first = run(&mut monitor, BEAT, 300_000);
        let warned: Vec<u64> = first
            .iter()
            .filter(|(_, o)| matches!(o, MonitorOutput::Attention(_)))
            .map(|(now, _)| *now)
            .collect();
        assert_eq!(warned, [150_000, 300_000]);

        // Progress at 310 s; without a reset the next warning would wait for
        // age 600 s. With it, the first tick past the threshold warns again.
        monitor.record_progress(KEY, "model_call:started", 310_000);
        let second = run(&mut monitor, 330_000, 480_000);
        let events: Vec<(u64, u64)> = second
            .iter()
            .filter_map(|(now, o)| match o {
                MonitorOutput::Attention(e) => Some((*now, e.age_ms)),
                MonitorOutput::RecoveryRequested(_) => None,
            })
            .collect();
        assert_eq!(events, [(450_000, 140_000)]);
        // Recovery resumes on the same ticks.
        let recovered: Vec<u64> = second
            .iter()
            .filter(|(_, o)| matches!(o, MonitorOutput::RecoveryRequested(_)))
            .map(|(now, _)| *now)
            .collect();
        assert_eq!(recovered, [450_000, 480_000]);
    }

    #[test]
    fn recorded_progress_resets_the_backoff_while_still_classified() {
        // Processing with no markers: stuck on its state age, warned at 150 s
        // and 300 s. Untracked progress at 310 s keeps it classified (as
        // long-running) until that progress is stale again at 450 s; the
        // reset makes that first stale tick warn instead of waiting for 600 s.
        let mut monitor = Monitor::default();
        monitor.set_state(KEY, Processing, 0);
        let warned: Vec<u64> = run(&mut monitor, BEAT, 300_000)
            .iter()
            .filter(|(_, o)| matches!(o, MonitorOutput::Attention(_)))
            .map(|(now, _)| *now)
            .collect();
        assert_eq!(warned, [150_000, 300_000]);
        monitor.record_progress(KEY, "cli_live:stream_progress", 310_000);
        let events: Vec<(u64, EventType, u64)> = run(&mut monitor, 330_000, 480_000)
            .iter()
            .filter_map(|(now, o)| match o {
                MonitorOutput::Attention(e) => Some((*now, e.event_type, e.age_ms)),
                MonitorOutput::RecoveryRequested(_) => None,
            })
            .collect();
        let mut expected: Vec<(u64, EventType, u64)> = (11..=14)
            .map(|n| (n * BEAT, EventType::LongRunning, n * BEAT))
            .collect();
        expected.push((450_000, EventType::Stuck, 450_000));
        assert_eq!(events, expected);
    }

    #[test]
    fn progress_seen_only_in_a_snapshot_also_resets_the_backoff() {
        let mut monitor = Monitor::default();
        idle_orphan(&mut monitor);
        let warned = run(&mut monitor, BEAT, 300_000)
            .iter()
            .filter(|(_, o)| matches!(o, MonitorOutput::Attention(_)))
            .count();
        assert_eq!(warned, 2);
        // The host refreshes the snapshot: the model call progressed at
        // 310 s. Ticks below the threshold end the episode.
        let refreshed = ActivitySnapshot {
            last_progress_age_ms: Some(0),
            last_progress_reason: Some("model_call:stream".to_owned()),
            ..orphaned_model_call()
        };
        monitor.set_activity(KEY, refreshed, 310_000);
        let events: Vec<(u64, u64)> = run(&mut monitor, 330_000, 480_000)
            .iter()
            .filter_map(|(now, o)| match o {
                MonitorOutput::Attention(e) => Some((*now, e.age_ms)),
                MonitorOutput::RecoveryRequested(_) => None,
            })
            .collect();
        assert_eq!(events, [(450_000, 140_000)]);
    }

    #[test]
    fn state_change_and_new_queued_work_reset_the_backoff() {
        let mut monitor = Monitor::default();
        idle_orphan(&mut monitor);
        assert_eq!(attention(&monitor.tick(150_000)).len(), 1);
        assert_eq!(attention(&monitor.tick(180_000)).len(), 0);
        monitor.set_queue_depth(KEY, 2);
        assert_eq!(attention(&monitor.tick(210_000)).len(), 1);
        assert_eq!(attention(&monitor.tick(240_000)).len(), 0);
        // A smaller queue is not new work.
        monitor.set_queue_depth(KEY, 1);
        assert_eq!(attention(&monitor.tick(270_000)).len(), 0);
        monitor.set_state(KEY, Idle, 280_000);
        assert_eq!(attention(&monitor.tick(300_000)).len(), 1);
    }

    #[test]
    fn processing_with_recent_progress_is_long_running_every_tick() {
        let mut monitor = Monitor::default();
        monitor.set_state(KEY, Processing, 0);
        monitor.set_activity(KEY, orphaned_model_call(), 0);
        assert!(monitor.tick(90_000).is_empty());
        monitor.record_progress(KEY, "model_call:started", 100_000);
        assert!(monitor.tick(120_000).is_empty()); // age == threshold
        for now in [150_000, 180_000] {
            let outputs = monitor.tick(now);
            assert_eq!(
                outputs,
                [MonitorOutput::Attention(AttentionEvent {
                    event_type: EventType::LongRunning,
                    session_id: None,
                    session_key: KEY.to_owned(),
                    state: Processing,
                    age_ms: now,
                    queue_depth: 0,
                    reason: AttentionReason::ActiveWork,
                    classification: Classification::LongRunning,
                    active_work_kind: Some(ModelCall),
                    last_progress_reason: Some("model_call:started".to_owned()),
                    last_progress_age_ms: Some(now - 100_000),
                    active_tool_name: None,
                    active_tool_call_id: None,
                    active_tool_age_ms: None,
                    has_live_owner: None,
                })]
            );
        }
        // Untracked progress (no markers) is long-running too.
        monitor.set_activity(KEY, ActivitySnapshot::default(), 200_000);
        monitor.record_progress(KEY, "cli_live:stream_progress", 200_000);
        let outputs = monitor.tick(210_000);
        let events = attention(&outputs);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, EventType::LongRunning);
        assert_eq!(events[0].reason, AttentionReason::UntrackedActiveProgress);
        assert!(recoveries(&outputs).is_empty());
    }

    #[test]
    fn processing_age_includes_owned_work_progress_age() {
        // Re-entered `processing` recently, but the model call it owns has
        // made no progress for 200 s.
        let mut monitor = Monitor::default();
        monitor.set_state(KEY, Processing, 190_000);
        monitor.set_activity(
            KEY,
            ActivitySnapshot {
                last_progress_age_ms: Some(190_000),
                ..orphaned_model_call()
            },
            190_000,
        );
        let outputs = monitor.tick(200_000);
        let events = attention(&outputs);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, EventType::Stalled);
        assert_eq!(events[0].reason, AttentionReason::ActiveWorkWithoutProgress);
        assert_eq!(events[0].age_ms, 200_000);
        assert!(recoveries(&outputs).is_empty());
    }

    #[test]
    fn processing_without_activity_is_stuck_and_eligible() {
        let mut monitor = Monitor::default();
        monitor.set_state(KEY, Processing, 0);
        let outputs = monitor.tick(150_000);
        assert_eq!(outputs.len(), 2);
        let events = attention(&outputs);
        assert_eq!(events[0].event_type, EventType::Stuck);
        assert_eq!(events[0].reason, AttentionReason::StaleSessionState);
        assert_eq!(
            recoveries(&outputs),
            [&RecoveryRequested {
                session_id: None,
                session_key: KEY.to_owned(),
                state: Processing,
                state_generation: 1,
                age_ms: 150_000,
                queue_depth: 0,
                reason: AttentionReason::StaleSessionState,
                active_work_kind: None,
            }]
        );
    }

    #[test]
    fn only_idle_queued_active_or_old_processing_sessions_are_classified() {
        let mut monitor = Monitor::default();
        // Idle without queued work.
        monitor.set_state("a", Idle, 0);
        monitor.set_activity("a", orphaned_model_call(), 0);
        monitor.record_progress("a", "model_call:started", 0);
        // Idle, queued, but no activity.
        monitor.set_state("b", Idle, 0);
        monitor.set_queue_depth("b", 1);
        // Waiting and unknown, with stale orphaned activity.
        for key in ["c", "d"] {
            monitor.set_queue_depth(key, 1);
            monitor.set_activity(key, orphaned_model_call(), 0);
            monitor.record_progress(key, "model_call:started", 0);
        }
        monitor.set_state("c", Waiting, 0);
        assert_eq!(monitor.state_generation("d"), Some((Unknown, 0)));
        // Idle, queued, activity, but no progress age at all (counts as 0).
        monitor.set_state("e", Idle, 0);
        monitor.set_queue_depth("e", 1);
        monitor.set_activity("e", orphaned_model_call(), 0);
        assert!(monitor.tick(10_000_000).is_empty());
    }

    #[test]
    fn generation_increases_on_set_state() {
        let mut monitor = Monitor::default();
        assert_eq!(monitor.state_generation(KEY), None);
        monitor.set_queue_depth(KEY, 1);
        assert_eq!(monitor.state_generation(KEY), Some((Unknown, 0)));
        monitor.set_state(KEY, Processing, 10);
        assert_eq!(monitor.state_generation(KEY), Some((Processing, 1)));
        monitor.set_state(KEY, Idle, 20);
        assert_eq!(monitor.state_generation(KEY), Some((Idle, 2)));
        // Re-asserting a state is still a state event.
        monitor.set_state(KEY, Idle, 30);
        assert_eq!(monitor.state_generation(KEY), Some((Idle, 3)));
        // Other observations do not touch it.
        monitor.record_progress(KEY, "run:started", 40);
        monitor.set_activity(KEY, orphaned_model_call(), 40);
        monitor.set_lock_activity(KEY, None, 40);
        assert!(monitor.tick(50).is_empty());
        assert_eq!(monitor.state_generation(KEY), Some((Idle, 3)));
        assert!(monitor.remove(KEY));
        assert!(!monitor.remove(KEY));
        assert_eq!(monitor.state_generation(KEY), None);
    }

    #[test]
    fn recovery_requests_carry_the_current_generation() {
        let mut monitor = Monitor::default();
        idle_orphan(&mut monitor);
        monitor.set_state(KEY, Idle, 10);
        monitor.set_state(KEY, Idle, 20);
        assert_eq!(recoveries(&monitor.tick(150_000)), [&recovery(150_000, 3)]);
    }

    #[test]
    fn reasserting_processing_does_not_restart_the_age() {
        let mut monitor = Monitor::default();
        monitor.set_state(KEY, Processing, 0);
        monitor.set_state(KEY, Processing, 100_000);
        let outputs = monitor.tick(150_000);
        assert_eq!(attention(&outputs)[0].age_ms, 150_000);
        monitor.set_state(KEY, Idle, 160_000);
        monitor.set_state(KEY, Processing, 170_000);
        assert!(monitor.tick(180_000).is_empty());
    }

    #[test]
    fn delayed_tick_defers_recovery_but_still_warns() {
        let mut monitor = Monitor::default();
        idle_orphan(&mut monitor);
        assert!(monitor.tick(120_000).is_empty());
        // 31 s after the previous tick: 1 s late.
        let outputs = monitor.tick(151_000);
        assert_eq!(attention(&outputs), [&stuck_event(151_000)]);
        assert!(recoveries(&outputs).is_empty());
        // Back on schedule (30 s + 999 ms is within tolerance).
        let outputs = monitor.tick(181_999);
        assert!(attention(&outputs).is_empty());
        assert_eq!(recoveries(&outputs), [&recovery(181_999, 1)]);
    }

    #[test]
    fn live_lock_owner_is_never_recovered_dead_owner_is() {
        let mut monitor = Monitor::default();
        idle_orphan(&mut monitor);
        let live = LockActivity {
            owner_alive: true,
            reclaimable: false,
            lock_age_ms: Some(0),
        };
        monitor.set_lock_activity(KEY, Some(live), 0);
        for now in [150_000, 300_000] {
            let outputs = monitor.tick(now);
            let events = attention(&outputs);
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].event_type, EventType::Stalled);
            assert_eq!(events[0].reason, AttentionReason::ActiveWorkWithoutProgress);
            assert_eq!(events[0].has_live_owner, Some(true));
            assert!(recoveries(&outputs).is_empty());
        }
        // The owner died: orphaned activity again.
        monitor.set_lock_activity(
            KEY,
            Some(LockActivity {
                owner_alive: false,
                reclaimable: true,
                ..live
            }),
            300_000,
        );
        let outputs = monitor.tick(330_000);
        assert_eq!(
            attention(&outputs),
            [&AttentionEvent {
                has_live_owner: Some(false),
                ..stuck_event(330_000)
            }]
        );
        assert_eq!(recoveries(&outputs), [&recovery(330_000, 1)]);
    }

    #[test]
    fn lock_alone_makes_an_idle_queued_session_observable() {
        // No markers at all, but a dead owner's lock taken 100 s before the
        // observation: ownerless activity whose age comes from the lock.
        let mut monitor = Monitor::default();
        monitor.set_state(KEY, Idle, 0);
        monitor.set_queue_depth(KEY, 1);
        let dead = LockActivity {
            owner_alive: false,
            reclaimable: true,
            lock_age_ms: Some(100_000),
        };
        monitor.set_lock_activity(KEY, Some(dead), 0);
        assert!(monitor.tick(0).is_empty());
        let outputs = monitor.tick(30_000);
        assert_eq!(recoveries(&outputs).len(), 1);
        assert_eq!(attention(&outputs)[0].age_ms, 130_000);
        assert_eq!(
            monitor.activity(KEY, 30_000),
            Some(ActivitySnapshot {
                active_work_kind: Some(EmbeddedRun),
                has_active_embedded_run: Some(false),
                has_live_owner: Some(false),
                last_progress_age_ms: Some(130_000),
                ..ActivitySnapshot::default()
            })
        );
    }

    #[test]
    fn snapshot_ages_grow_and_fresher_recorded_progress_wins() {
        let mut monitor = Monitor::default();
        let snapshot = ActivitySnapshot {
            active_tool_age_ms: Some(5_000),
            last_progress_age_ms: Some(10_000),
            last_progress_reason: Some("tool:exec:started".to_owned()),
            ..orphaned_model_call()
        };
        // Taken at 20 s: the tool started at 15 s, the last progress was at 10 s.
        monitor.set_activity(KEY, snapshot.clone(), 20_000);
        let aged = monitor.activity(KEY, 31_000);
        assert_eq!(
            aged,
            Some(ActivitySnapshot {
                active_tool_age_ms: Some(16_000),
                last_progress_age_ms: Some(21_000),
                ..snapshot.clone()
            })
        );
        // Recorded progress older than the snapshot's is ignored...
        monitor.record_progress(KEY, "old", 5_000);
        assert_eq!(monitor.activity(KEY, 31_000), aged);
        // ...a fresher one replaces age and reason.
        monitor.record_progress(KEY, "model_call:ended", 30_000);
        assert_eq!(
            monitor.activity(KEY, 31_000),
            Some(ActivitySnapshot {
                active_tool_age_ms: Some(16_000),
                last_progress_age_ms: Some(1_000),
                last_progress_reason: Some("model_call:ended".to_owned()),
                ..snapshot
            })
        );
        assert_eq!(monitor.activity("nope", 0), None);
    }

    #[test]
    fn sessions_are_reported_in_key_order_with_their_session_id() {
        let mut monitor = Monitor::default();
        for key in ["b", "a"] {
            monitor.set_state(key, Processing, 0);
            monitor.set_session_id(key, format!("id-{key}"));
        }
        let outputs = monitor.tick(150_000);
        let keys: Vec<(&str, Option<&str>)> = attention(&outputs)
            .iter()
            .map(|e| (e.session_key.as_str(), e.session_id.as_deref()))
            .collect();
        assert_eq!(keys, [("a", Some("id-a")), ("b", Some("id-b"))]);
        assert_eq!(recoveries(&outputs)[0].session_id.as_deref(), Some("id-a"));
    }

    // --- Wire format and log lines. ---

    #[test]
    fn events_serialise_with_reference_names() -> Result<(), serde_json::Error> {
        let event = AttentionEvent {
            session_id: Some("s1".to_owned()),
            active_work_kind: Some(ModelCall),
            ..stuck_event(150_000)
        };
        assert_eq!(
            serde_json::to_value(MonitorOutput::Attention(event))?,
            serde_json::json!({
                "type": "session.stuck",
                "sessionId": "s1",
                "sessionKey": KEY,
                "state": "idle",
                "ageMs": 150_000,
                "queueDepth": 1,
                "reason": "queued_work_without_active_run",
                "classification": "stale_session_state",
                "activeWorkKind": "model_call",
                "lastProgressReason": "model_call:started",
                "lastProgressAgeMs": 150_000,
            })
        );
        assert_eq!(
            serde_json::to_value(MonitorOutput::RecoveryRequested(recovery(150_000, 4)))?,
            serde_json::json!({
                "type": "session.recovery.requested",
                "sessionKey": KEY,
                "state": "idle",
                "stateGeneration": 4,
                "ageMs": 150_000,
                "queueDepth": 1,
                "reason": "queued_work_without_active_run",
            })
        );
        let completed = RecoveryCompleted {
            session_key: KEY.to_owned(),
            status: RecoveryStatus::Released,
            action: RecoveryAction::ReleaseLane,
            outcome_reason: Some("stale_lane_task".to_owned()),
            released: Some(1),
            stale: false,
        };
        completed.log();
        assert_eq!(
            serde_json::to_value(&completed)?,
            serde_json::json!({
                "type": "session.recovery.completed",
                "sessionKey": KEY,
                "status": "released",
                "action": "release_lane",
                "outcomeReason": "stale_lane_task",
                "released": 1,
                "stale": false,
            })
        );
        for status in [
            RecoveryStatus::Aborted,
            RecoveryStatus::Released,
            RecoveryStatus::Skipped,
            RecoveryStatus::Noop,
            RecoveryStatus::Failed,
        ] {
            assert_eq!(serde_json::to_value(status)?, status.as_str());
        }
        for action in [
            RecoveryAction::AbortEmbeddedRun,
            RecoveryAction::ForceClearEmbeddedRun,
            RecoveryAction::ReleaseLane,
            RecoveryAction::ObserveOnly,
            RecoveryAction::KeepLane,
            RecoveryAction::None,
        ] {
            assert_eq!(serde_json::to_value(action)?, action.as_str());
        }
        Ok(())
    }

    #[test]
    fn attention_log_lines_match_the_reference_format() {
        assert_eq!(
            attention_log_line(&stuck_event(150_499), true),
            "stuck session: sessionId=unknown sessionKey=agent:main state=idle age=150s \
             queueDepth=1 reason=queued_work_without_active_run \
             classification=stale_session_state lastProgress=model_call:started \
             lastProgressAge=150s recovery=checking"
        );
        let event = AttentionEvent {
            event_type: EventType::Stalled,
            session_id: Some("s1".to_owned()),
            session_key: "k".to_owned(),
            state: Processing,
            age_ms: 90_500,
            queue_depth: 2,
            reason: AttentionReason::QueuedBehindTerminalActiveWork,
            classification: Classification::StalledAgentRun,
            active_work_kind: Some(EmbeddedRun),
            last_progress_reason: Some("run:completed".to_owned()),
            last_progress_age_ms: Some(100),
            active_tool_name: Some("exec".to_owned()),
            active_tool_call_id: Some("call-1".to_owned()),
            active_tool_age_ms: Some(31_000),
            has_live_owner: Some(true),
        };
        assert_eq!(
            attention_log_line(&event, false),
            "stalled session: sessionId=s1 sessionKey=k state=processing age=91s queueDepth=2 \
             reason=queued_behind_terminal_active_work classification=stalled_agent_run \
             activeWorkKind=embedded_run lastProgress=run:completed lastProgressAge=0s \
             activeTool=exec activeToolCallId=call-1 activeToolAge=31s \
             terminalProgressStale=true liveOwner=true recovery=none"
        );
        let long = AttentionEvent {
            event_type: EventType::LongRunning,
            reason: AttentionReason::ActiveWork,
            classification: Classification::LongRunning,
            ..stuck_event(0)
        };
        assert!(attention_log_line(&long, false).starts_with("long-running session: "));
    }
}
