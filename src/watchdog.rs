//! The max-hold watchdog: one plain thread per process, started on first
//! need, that sleeps until the earliest deadline of all held locks.
//!
//! It is a thread and not a runtime task so that it fires even when the
//! holder's async runtime or main thread is wedged (the reference's
//! watchdog ran inside the holder's event loop and never fired for a wedged
//! holder, its issue #87483). There is no tick: it wakes at the next
//! deadline. On expiry it force-releases the lock (removing the file only
//! if it is still ours), marks every guard lost, wakes whoever waits on
//! [`crate::LockGuard::wait_lost`] or [`crate::LockGuard::lost`], and logs
//! a warning with the reference's wording.

use crate::error::LostReason;
use crate::lock::held::Held;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

type Key = (Instant, u64);

struct State {
    deadlines: BTreeMap<Key, Weak<Held>>,
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
    static THREAD: std::sync::Once = std::sync::Once::new();
    let wd = WD.get_or_init(|| Watchdog {
        state: Mutex::new(State {
            deadlines: BTreeMap::new(),
            wakes_at: None,
        }),
        cv: Condvar::new(),
    });
    THREAD.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("session-lock-watchdog".into())
            .spawn(move || wd.run());
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the session-lock watchdog thread; max hold is not enforced");
        }
    });
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
                    if let Some(held) = weak.and_then(|w| w.upgrade()) {
                        expire(&held);
                    }
                    st = self.lock();
                }
            }
        }
    }
}

fn expire(held: &Arc<Held>) {
    let held_ms = held.acquired.elapsed().as_millis() as u64;
    let max_hold_ms = held.max_hold.as_millis() as u64;
    let reason = LostReason::MaxHoldExceeded {
        held_ms,
        max_hold_ms,
    };
    if held.force_release(reason) {
        // The reference's wording, so existing log alerts keep matching.
        tracing::warn!(
            lock_path = %held.paths.lock.display(),
            held_ms,
            max_hold_ms,
            "[session-write-lock] releasing lock held for {held_ms}ms (max={max_hold_ms}ms): {}",
            held.paths.lock.display()
        );
    }
}

/// Start watching `held`'s max hold.
pub(crate) fn arm(held: &Arc<Held>) {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let deadline = held
        .acquired
        .checked_add(held.max_hold)
        .unwrap_or_else(|| held.acquired + crate::options::MAX_HOLD_CAP);
    let key = (deadline, SEQ.fetch_add(1, Ordering::Relaxed));
    *held.watchdog_key.lock().unwrap_or_else(|p| p.into_inner()) = Some(key);
    let wd = watchdog();
    let mut st = wd.lock();
    st.deadlines.insert(key, Arc::downgrade(held));
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
}

/// Stop watching `held` (released or lost).
pub(crate) fn disarm(held: &Held) {
    let key = held
        .watchdog_key
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(key) = key {
        watchdog().lock().deadlines.remove(&key);
    }
}

/// How many deadlines the watchdog is tracking (for tests and `status`).
pub fn armed_count() -> usize {
    watchdog().lock().deadlines.len()
}
