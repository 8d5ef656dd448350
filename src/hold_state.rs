//! What every hold keeps the same way, whichever backend made it: the
//! guards sharing it (nested guards), how it ended (lost, with the reason,
//! or released normally), and the waiters for that end, blocking
//! ([`crate::LockGuard::wait_lost`]) or async ([`crate::LockGuard::lost`]).
//!
//! A leaf: its mutex is taken last and never held while calling out (the
//! wakers are woken after it is dropped), so a backend may call it while
//! holding its own state lock (the file backend does, see `file::held`).

use crate::error::LostReason;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

struct Inner {
    /// Guards sharing the hold.
    refs: usize,
    lost: Option<LostReason>,
    /// Released normally by its last guard (see [`LostReason::Released`]).
    released: bool,
    /// The `lost()` futures (and a backend's own tasks) waiting for the end.
    wakers: Vec<Waker>,
}

/// The guard count and the end of one hold, with its waiters.
pub(crate) struct HoldState {
    inner: Mutex<Inner>,
    /// Notified at every end: loss or release.
    ended_cv: Condvar,
}

impl Default for HoldState {
    fn default() -> Self {
        HoldState::new()
    }
}

impl HoldState {
    /// A hold with its first guard.
    pub(crate) fn new() -> HoldState {
        HoldState {
            inner: Mutex::new(Inner {
                refs: 1,
                lost: None,
                released: false,
                wakers: Vec::new(),
            }),
            ended_cv: Condvar::new(),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Nothing in `Inner` is left half-updated by a panic: keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the hold was lost, if it was (not a normal release).
    pub(crate) fn lost(&self) -> Option<LostReason> {
        self.inner().lost.clone()
    }

    /// Whether the last guard released the hold normally.
    #[cfg(feature = "etcd")]
    pub(crate) fn released(&self) -> bool {
        self.inner().released
    }

    /// Why the hold ended, if it did: the loss, or
    /// [`LostReason::Released`] after a normal release.
    pub(crate) fn ended(&self) -> Option<LostReason> {
        Self::ended_in(&self.inner())
    }

    fn ended_in(st: &Inner) -> Option<LostReason> {
        st.lost
            .clone()
            .or(st.released.then_some(LostReason::Released))
    }

    /// One more guard. `Err` with the reason once the hold has ended
    /// ([`LostReason::ReleasedAll`] for a released one: no guard is left to
    /// share).
    pub(crate) fn add_ref(&self) -> Result<(), LostReason> {
        let mut st = self.inner();
        if let Some(r) = &st.lost {
            return Err(r.clone());
        }
        if st.released {
            return Err(LostReason::ReleasedAll);
        }
        st.refs += 1;
        Ok(())
    }

    /// One guard is done. True if it was the last: the caller releases.
    pub(crate) fn release_ref(&self) -> bool {
        let mut st = self.inner();
        st.refs = st.refs.saturating_sub(1);
        st.refs == 0
    }

    /// Mark the hold lost and wake every waiter. The first reason wins, and
    /// a hold already released is not lost afterwards. True if this call
    /// marked it.
    pub(crate) fn mark_lost(&self, reason: LostReason) -> bool {
        let mut st = self.inner();
        let marked = st.lost.is_none() && !st.released;
        if marked {
            st.lost = Some(reason);
        }
        self.wake(st);
        marked
    }

    /// The last guard released the hold (or the backend gave it up):
    /// waiters end with [`LostReason::Released`] unless it was lost first.
    /// Returns that loss, if any (read in the same step, so a loss marked
    /// concurrently is either returned here or not marked at all).
    pub(crate) fn mark_released(&self) -> Option<LostReason> {
        let mut st = self.inner();
        st.released = true;
        let lost = st.lost.clone();
        self.wake(st);
        lost
    }

    /// Wake the `lost()` futures (outside the lock) and the blocked waiters.
    fn wake(&self, mut st: MutexGuard<'_, Inner>) {
        let wakers = std::mem::take(&mut st.wakers);
        drop(st);
        self.ended_cv.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    /// Block until the hold ends or `until` passes (`None`: no limit).
    /// The end's reason, or `None` at `until`.
    pub(crate) fn wait_until(&self, until: Option<Instant>) -> Option<LostReason> {
        let mut st = self.inner();
        loop {
            if let Some(r) = Self::ended_in(&st) {
                return Some(r);
            }
            st = match until {
                None => self.ended_cv.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    self.ended_cv
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Block until the hold ends or `timeout` passes (`None`: forever).
    pub(crate) fn wait_lost(&self, timeout: Option<Duration>) -> Option<LostReason> {
        self.wait_until(timeout.and_then(|t| Instant::now().checked_add(t)))
    }

    /// The `lost()` future's poll: ready with the end's reason, else the
    /// task is woken at the end.
    pub(crate) fn poll_lost(&self, cx: &mut Context<'_>) -> Poll<LostReason> {
        let mut st = self.inner();
        if let Some(r) = Self::ended_in(&st) {
            return Poll::Ready(r);
        }
        if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            st.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Resolves when the hold ends, with the reason (usable from any
    /// runtime: a plain poll over [`HoldState::poll_lost`]).
    #[cfg(feature = "etcd")]
    pub(crate) async fn ended_async(&self) -> LostReason {
        std::future::poll_fn(|cx| self.poll_lost(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn nested_guards_keep_the_hold_until_the_last_release() {
        let s = HoldState::new();
        s.add_ref().unwrap();
        assert!(!s.release_ref());
        assert!(s.release_ref());
        s.mark_released();
        assert_eq!(s.ended(), Some(LostReason::Released));
        assert_eq!(s.add_ref(), Err(LostReason::ReleasedAll));
    }

    #[test]
    fn the_first_loss_wins_and_a_released_hold_is_not_lost_after() {
        let s = HoldState::new();
        assert!(s.mark_lost(LostReason::Removed));
        assert!(!s.mark_lost(LostReason::Replaced));
        assert_eq!(s.lost(), Some(LostReason::Removed));
        assert_eq!(s.add_ref(), Err(LostReason::Removed));
        // A loss reported first stays the end after the release.
        s.mark_released();
        assert_eq!(s.ended(), Some(LostReason::Removed));

        let r = HoldState::new();
        r.mark_released();
        assert!(!r.mark_lost(LostReason::ReleasedAll));
        assert_eq!(r.lost(), None);
        assert_eq!(r.ended(), Some(LostReason::Released));
    }

    #[test]
    fn a_blocked_waiter_wakes_at_the_end_and_times_out_otherwise() {
        let s = Arc::new(HoldState::new());
        assert_eq!(s.wait_lost(Some(Duration::from_millis(10))), None);
        let s2 = s.clone();
        let waiter = std::thread::spawn(move || s2.wait_lost(Some(Duration::from_secs(30))));
        std::thread::sleep(Duration::from_millis(20));
        s.mark_lost(LostReason::ReleasedAll);
        assert_eq!(waiter.join().unwrap(), Some(LostReason::ReleasedAll));
    }

    #[test]
    fn a_polled_waiter_is_woken_on_release() {
        struct Flag(std::sync::atomic::AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let s = HoldState::new();
        assert!(s.poll_lost(&mut cx).is_pending());
        assert!(s.poll_lost(&mut cx).is_pending());
        assert!(s.release_ref());
        s.mark_released();
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(s.poll_lost(&mut cx), Poll::Ready(LostReason::Released));
    }
}
