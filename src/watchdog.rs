//! The max-hold watchdog: one plain thread per process, started on first
//! need, that sleeps until the earliest deadline of all held locks.
//!
//! It is a thread and not a runtime task so that it fires even when the
//! holder's async runtime or main thread is wedged (the reference's
//! watchdog ran inside the holder's event loop and never fired for a wedged
//! holder, its issue #87483). There is no tick: it wakes at the next
//! deadline. On expiry it asks the hold to end as lost with
//! [`LostReason::MaxHoldExceeded`] (the file hold force-releases, removing
//! the file only if it is still ours; the etcd hold revokes its lease),
//! which marks every guard lost and wakes whoever waits on
//! [`crate::LockGuard::wait_lost`] or [`crate::LockGuard::lost`]; then it
//! logs a warning with the reference's wording, here for both backends.

use crate::error::LostReason;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

/// A hold with a max hold: the watchdog calls [`Expire::expire`] on it
/// once the deadline passes (the watchdog knows nothing else about it).
pub(crate) trait Expire: Send + Sync {
    /// What the warning names: the lock file, or the etcd key.
    fn name(&self) -> String;
    /// When the hold began, and its max hold.
    fn held_since(&self) -> (Instant, Duration);
    /// The max hold passed: end the hold as lost with `reason`. True if
    /// this call ended it (false: released or lost already, or not this
    /// process's hold).
    fn expire(self: Arc<Self>, reason: LostReason) -> bool;
}

/// Expire `target` and warn, in the reference's wording, if that ended it.
fn fire(target: Arc<dyn Expire>) {
    let (since, max_hold) = target.held_since();
    let held_ms = since.elapsed().as_millis() as u64;
    let max_hold_ms = max_hold.as_millis() as u64;
    let name = target.name();
    let reason = LostReason::MaxHoldExceeded {
        held_ms,
        max_hold_ms,
    };
    if target.expire(reason) {
        tracing::warn!(
            lock_path = %name,
            held_ms,
            max_hold_ms,
            "[session-write-lock] releasing lock held for {held_ms}ms (max={max_hold_ms}ms): {name}"
        );
    }
}

/// A deadline armed with [`arm`], for [`disarm`].
pub(crate) type Key = (Instant, u64);

struct State {
    deadlines: BTreeMap<Key, Weak<dyn Expire>>,
    /// When the thread will wake by itself (`None`: it waits for a notify).
    /// Arming a later deadline needs no wake-up: on an uncontended
    /// acquire/release loop that saves a futex wake per acquisition.
    wakes_at: Option<Instant>,
}

struct Watchdog {
    state: Mutex<State>,
    cv: Condvar,
}

fn watchdog() -> &'static Watchdog {
    static WD: OnceLock<Watchdog> = OnceLock::new();
    // The process whose watchdog thread runs: a child forked after the
    // thread started has none (fork copies only the calling thread), so the
    // first use in the child starts its own.
    static THREAD_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let wd = WD.get_or_init(|| Watchdog {
        state: Mutex::new(State {
            deadlines: BTreeMap::new(),
            wakes_at: None,
        }),
        cv: Condvar::new(),
    });
    let pid = std::process::id();
    if THREAD_PID.swap(pid, Ordering::SeqCst) != pid {
        let spawned = std::thread::Builder::new()
            .name("session-lock-watchdog".into())
            .spawn(move || wd.run());
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the session-lock watchdog thread; max hold is not enforced");
        }
    }
    wd
}

impl Watchdog {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        let mut st = self.lock();
        loop {
            let now = Instant::now();
            let next = st.deadlines.keys().next().copied();
            match next {
                None => {
                    st.wakes_at = None;
                    st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                Some(key) if key.0 > now => {
                    st.wakes_at = Some(key.0);
                    st = self
                        .cv
                        .wait_timeout(st, key.0 - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                Some(key) => {
                    let weak = st.deadlines.remove(&key);
                    drop(st);
                    if let Some(target) = weak.and_then(|w| w.upgrade()) {
                        fire(target);
                    }
                    st = self.lock();
                }
            }
        }
    }
}

/// One hold's max-hold deadline with the watchdog: armed when the hold
/// begins, disarmed when it ends (either backend's hold keeps one).
#[derive(Default)]
pub(crate) struct MaxHold(Mutex<Option<Key>>);

impl MaxHold {
    /// Expire `target` at `since + max_hold` (capped at
    /// [`crate::options::MAX_HOLD_CAP`] past `since` where that overflows).
    pub(crate) fn arm(&self, since: Instant, max_hold: Duration, target: Weak<dyn Expire>) {
        let deadline = since
            .checked_add(max_hold)
            .unwrap_or_else(|| since + crate::options::MAX_HOLD_CAP);
        let key = arm(deadline, target);
        let old = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(key);
        if let Some(old) = old {
            disarm(old);
        }
    }

    /// Stop watching (released or lost); a second call does nothing.
    pub(crate) fn disarm(&self) {
        let key = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(key) = key {
            disarm(key);
        }
    }
}

/// Call `fire(target)` at `deadline` unless disarmed first. The watchdog
/// keeps only a weak reference: a target dropped without disarming is
/// simply skipped.
fn arm(deadline: Instant, target: Weak<dyn Expire>) -> Key {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let key = (deadline, SEQ.fetch_add(1, Ordering::Relaxed));
    let wd = watchdog();
    let mut st = wd.lock();
    st.deadlines.insert(key, target);
    let notify = st.wakes_at.is_none_or(|at| deadline < at);
    if notify {
        // The thread recomputes `wakes_at` when it runs; until then, treat
        // this deadline as the wake-up so others need not notify again.
        st.wakes_at = Some(deadline);
    }
    drop(st);
    if notify {
        wd.cv.notify_one();
    }
    key
}

/// Stop watching the deadline `key` (released or lost).
fn disarm(key: Key) {
    watchdog().lock().deadlines.remove(&key);
}

/// How many deadlines the watchdog is tracking (for tests and `status`).
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
pub fn armed_count() -> usize {
    watchdog().lock().deadlines.len()
}
