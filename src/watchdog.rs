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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

/// Something with a deadline: the watchdog calls [`Expire::expire`] on it
/// once the deadline passes (the watchdog knows nothing else about it).
pub(crate) trait Expire: Send + Sync {
    /// The deadline passed: force-release, mark lost, say so.
    fn expire(self: std::sync::Arc<Self>);
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
                        target.expire();
                    }
                    st = self.lock();
                }
            }
        }
    }
}

/// Call `target.expire()` at `deadline` unless disarmed first. The
/// watchdog keeps only a weak reference: a target dropped without
/// disarming is simply skipped.
pub(crate) fn arm(deadline: Instant, target: Weak<dyn Expire>) -> Key {
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
pub(crate) fn disarm(key: Key) {
    watchdog().lock().deadlines.remove(&key);
}

/// How many deadlines the watchdog is tracking (for tests and `status`).
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
pub fn armed_count() -> usize {
    watchdog().lock().deadlines.len()
}
