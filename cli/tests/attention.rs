//! Lock ownership as session activity, and stuck-session recovery, with real
//! lock-holding processes.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use session_lock::attention::classify::{
    ActivitySnapshot, AttentionReason as AttnReason, EventType, SessionState, classify,
};
use session_lock::attention::monitor::{RecoveryAction, RecoveryStatus};
use session_lock::attention::recovery::{Recovery, RecoveryRequest};
use session_lock::{LockOptions, lock_activity};
use std::path::Path;

fn attention_from_lock(t: &Path, stale_ms: u64) -> session_lock::attention::classify::Attention {
    let insp = session_lock::inspect(t, &LockOptions::new())
        .unwrap()
        .expect("a lock file");
    let activity = ActivitySnapshot::default().merge_lock(Some(&lock_activity(&insp)));
    classify(SessionState::Idle, 1, &activity, stale_ms)
}

fn request(t: &Path, generation: u64) -> RecoveryRequest {
    let mut r = RecoveryRequest::new("agent:main:s1", t, SessionState::Idle, generation);
    r.queue_depth = 1;
    r.age_ms = 200_000;
    r
}

#[test]
fn live_owner_is_not_stuck_dead_owner_is_stuck_and_recovery_frees_the_lane() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = Holder::start(&t, &[]);
    // Idle with queued work, lock held by a live child: not stuck.
    let live = attention_from_lock(&t, 0);
    assert_ne!(live.event_type, EventType::Stuck, "{live:?}");
    assert!(!live.recovery_eligible);
    // Recovery refuses to touch a live owner's lock.
    let rec = Recovery::new();
    let out = rec.recover(&request(&t, 7), |_| Some((SessionState::Idle, 7)), None);
    assert_eq!(
        (out.status, out.action),
        (RecoveryStatus::Skipped, RecoveryAction::KeepLane)
    );
    assert_eq!(out.reason.as_deref(), Some("active_lock_owner"));
    assert!(lock_of(&t).exists());

    holder.kill9();
    let dead = attention_from_lock(&t, 0);
    assert_eq!(dead.event_type, EventType::Stuck, "{dead:?}");
    assert_eq!(dead.reason, AttnReason::QueuedWorkWithoutActiveRun);
    assert!(dead.recovery_eligible);
    assert_eq!(dead.active_work_kind, None);

    // A generation that moved on: skipped, nothing removed.
    let out = rec.recover(&request(&t, 7), |_| Some((SessionState::Idle, 8)), None);
    assert_eq!(
        (out.status, out.action),
        (RecoveryStatus::Skipped, RecoveryAction::ObserveOnly)
    );
    assert_eq!(out.reason.as_deref(), Some("stale_session_state"));
    assert!(lock_of(&t).exists());

    // Current generation: the stale lock is reclaimed and the next writer proceeds.
    let out = rec.recover(&request(&t, 7), |_| Some((SessionState::Idle, 7)), None);
    assert_eq!(
        (out.status, out.action),
        (RecoveryStatus::Released, RecoveryAction::ReleaseLane)
    );
    assert!(out.released);
    assert!(!lock_of(&t).exists());
    let g = session_lock::try_acquire_with(&t, &LockOptions::new()).expect("next writer proceeds");
    g.append_line("queued turn").unwrap();
    g.release().unwrap();

    // Nothing left to do.
    let out = rec.recover(&request(&t, 7), |_| Some((SessionState::Idle, 7)), None);
    assert_eq!(
        (out.status, out.action),
        (RecoveryStatus::Noop, RecoveryAction::None)
    );
    assert_eq!(out.reason.as_deref(), Some("no_active_work"));
}

/// Issue 11, gap 3: the state gate compares the state, not only the
/// generation. A session that moved to `processing` under the same
/// generation, or that the host no longer knows, is skipped with
/// `stale_session_state` and its (reclaimable) lock is kept.
#[test]
fn recovery_skips_a_session_whose_state_moved_or_is_unknown_now() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    Holder::start(&t, &[]).kill9();
    let rec = Recovery::new();
    let skipped = |current: Option<(SessionState, u64)>, what: &str| {
        let out = rec.recover(&request(&t, 7), |_| current, None);
        assert_eq!(
            (out.status, out.action, out.reason.as_deref()),
            (
                RecoveryStatus::Skipped,
                RecoveryAction::ObserveOnly,
                Some("stale_session_state")
            ),
            "{what}"
        );
        assert!(!out.released, "{what}");
        assert!(lock_of(&t).exists(), "{what}: the lock was removed");
    };
    skipped(
        Some((SessionState::Processing, 7)),
        "state moved to processing",
    );
    skipped(Some((SessionState::Waiting, 7)), "state moved to waiting");
    skipped(None, "session unknown now");
    // The lock was reclaimable all along: only the gate kept it.
    let out = rec.recover(&request(&t, 7), |_| Some((SessionState::Idle, 7)), None);
    assert_eq!(out.status, RecoveryStatus::Released);
    assert!(!lock_of(&t).exists());
}

#[test]
fn abort_hook_runs_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = Holder::start(&t, &[]);
    let rec = Recovery::new();
    let hook = |_: &session_lock::Inspection| true;
    let out = rec.recover(
        &request(&t, 1),
        |_| Some((SessionState::Idle, 1)),
        Some(&hook),
    );
    assert_eq!(
        out.status,
        RecoveryStatus::Skipped,
        "abort without allow_active_abort"
    );
    let mut req = request(&t, 1);
    req.allow_active_abort = true;
    let out = rec.recover(&req, |_| Some((SessionState::Idle, 1)), Some(&hook));
    assert_eq!(
        (out.status, out.action),
        (RecoveryStatus::Aborted, RecoveryAction::AbortEmbeddedRun)
    );
    // The live owner's lock is left to its owner.
    assert!(lock_of(&t).exists());
    assert!(holder.release().success());
}

#[test]
fn missing_session_key_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(&dir.path().join("s.jsonl"), 1);
    req.session_key = "  ".into();
    let out = Recovery::new().recover(&req, |_| Some((SessionState::Idle, 1)), None);
    assert_eq!(out.reason.as_deref(), Some("missing_session_ref"));
}

#[cfg(feature = "fault-injection")]
#[test]
fn two_recoveries_at_once_release_once() {
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    Holder::start(&t, &[]).kill9();
    let rec = Arc::new(Recovery::new());
    // Channels, not barriers: every wait is bounded and fails with a message.
    let (parked_tx, parked_rx) = mpsc::channel::<()>();
    let (resume_tx, resume_rx) = mpsc::channel::<()>();
    let (parked_tx, resume_rx) = (Mutex::new(parked_tx), Mutex::new(resume_rx));
    thread_local!(static PARK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    // Park the first recovery while it is in flight (only the thread that
    // asked for it: other tests run concurrently in this binary).
    session_lock::fault::set_hook(Some(Arc::new(move |point: &str| {
        if point == "recovery.in_flight" && PARK.with(|p| p.get()) {
            let _ = parked_tx.lock().unwrap().send(());
            let _ = resume_rx.lock().unwrap().recv_timeout(WAIT);
        }
    })));
    let first = {
        let (rec, t) = (rec.clone(), t.clone());
        std::thread::spawn(move || {
            PARK.with(|p| p.set(true));
            rec.recover(&request(&t, 3), |_| Some((SessionState::Idle, 3)), None)
        })
    };
    parked_rx
        .recv_timeout(WAIT)
        .expect("the first recovery never reached recovery.in_flight");
    let second = rec.recover(&request(&t, 3), |_| Some((SessionState::Idle, 3)), None);
    resume_tx.send(()).unwrap();
    let first = within(WAIT, "first recovery", move || first.join().unwrap());
    session_lock::fault::set_hook(None);
    assert_eq!(
        (second.status, second.reason.as_deref()),
        (RecoveryStatus::Skipped, Some("already_in_flight"))
    );
    assert_eq!(first.status, RecoveryStatus::Released);
    assert!(!lock_of(&t).exists());
}

/// `lock_attention` reports only what a lock file alone supports: a live
/// owner holding it past the warn threshold (120 s). A young lock, a dead
/// owner's lock, and anything about queues or progress give `None`
/// (issue 10: a lock held for 0.3 s used to be `session.long_running`).
#[test]
fn lock_attention_reports_only_what_the_lock_alone_supports() {
    use session_lock::attention::classify::{ActiveWorkKind, Classification};
    let dir = tempfile::tempdir().unwrap();
    let attention = |t: &Path| {
        let insp = session_lock::inspect(t, &LockOptions::new())
            .unwrap()
            .expect("a lock file");
        session_lock::lock_attention(&insp)
    };
    let young = dir.path().join("young.jsonl");
    let holder = Holder::start(&young, &[]);
    assert_eq!(attention(&young), None, "a lock held a moment ago");
    // Reference-format records of a live process (the holder), below and
    // past the threshold.
    let (under, over) = (
        dir.path().join("under.jsonl"),
        dir.path().join("over.jsonl"),
    );
    write_reference_lock(&lock_of(&under), holder.pid(), 100_000, None);
    write_reference_lock(&lock_of(&over), holder.pid(), 200_000, None);
    assert_eq!(
        attention(&under),
        None,
        "100 s is under the 120 s threshold"
    );
    let a = attention(&over).expect("a live lock held for 200 s");
    assert_eq!(a.event_type, EventType::LongRunning, "{a:?}");
    assert_eq!(a.reason, AttnReason::ActiveWork, "{a:?}");
    assert_eq!(a.classification, Classification::LongRunning, "{a:?}");
    assert_eq!(a.active_work_kind, Some(ActiveWorkKind::EmbeddedRun));
    assert!(!a.recovery_eligible);
    // Dead owners: reclaimable, no work at all, whatever the age.
    let dead = dir.path().join("dead.jsonl");
    write_reference_lock(&lock_of(&dead), 1 << 30, 200_000, None);
    assert_eq!(attention(&dead), None, "a dead owner's old lock");
    let killed = dir.path().join("killed.jsonl");
    Holder::start(&killed, &[]).kill9();
    assert_eq!(attention(&killed), None, "a killed holder's lock");
    assert!(holder.release().success());
}

/// `lock_activity` maps each verdict to the classifier's lock facts (a
/// mutation run found these fields unchecked): a live owner's lock is owned
/// and not reclaimable, a dead owner's and an old orphan's are reclaimable
/// and ownerless; `lock_attention` classifies exactly that.
#[test]
fn lock_activity_and_attention_follow_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let inspect = |t: &Path| {
        session_lock::inspect(t, &LockOptions::new())
            .unwrap()
            .expect("a lock file")
    };
    let attention = |insp: &session_lock::Inspection| {
        let activity = ActivitySnapshot::default().merge_lock(Some(&lock_activity(insp)));
        classify(
            SessionState::Idle,
            1,
            &activity,
            session_lock::attention::monitor::DEFAULT_STUCK_WARN_MS,
        )
    };

    let t = dir.path().join("live.jsonl");
    let holder = Holder::start(&t, &[]);
    let live = inspect(&t);
    let a = lock_activity(&live);
    assert!(a.owner_alive && !a.reclaimable, "live owner: {a:?}");
    assert!(a.lock_age_ms.is_some(), "live owner: {a:?}");
    // The classifier, fed the lock's facts as if it were the whole session,
    // calls a young live lock long-running work; the lock alone justifies
    // no event (see `lock_attention_reports_only_what_the_lock_alone_supports`).
    assert!(attention(&live).event_type == EventType::LongRunning);
    assert_eq!(session_lock::lock_attention(&live), None);

    holder.kill9();
    let dead = inspect(&t);
    let a = lock_activity(&dead);
    assert!(!a.owner_alive && a.reclaimable, "dead owner: {a:?}");
    assert_eq!(session_lock::lock_attention(&dead), None);

    // An old empty lock file: reclaimable, no pid probed, not alive.
    let orphan = dir.path().join("orphan.jsonl");
    std::fs::write(lock_of(&orphan), b"").unwrap();
    age_file(&lock_of(&orphan), std::time::Duration::from_secs(60));
    let insp = inspect(&orphan);
    assert_eq!(insp.pid_alive, None, "{insp:?}");
    let a = lock_activity(&insp);
    assert!(!a.owner_alive && a.reclaimable, "old orphan: {a:?}");
}
