//! The holds of this process, one registry per backend, kept the same way:
//! keyed by lock (the file backend by lock path, the etcd backend by
//! endpoints, prefix and key), only this process's holds answered (a child
//! forked from a holder forgets its parent's at its first use), and the
//! thread that acquired each hold, for the same-thread check.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

struct Entry<H> {
    hold: Arc<H>,
    /// The thread that acquired it through the blocking API (`None`: the
    /// async API, whose task may move between threads).
    thread: Option<ThreadId>,
}

struct Inner<K, H> {
    /// The process whose holds `holds` lists (0: none yet).
    pid: u32,
    holds: HashMap<K, Entry<H>>,
}

/// This process's holds of one backend.
pub(crate) struct Registry<K, H> {
    inner: Mutex<Option<Inner<K, H>>>,
    /// Called on each hold inherited across fork as the child forgets it
    /// (the file backend closes its copies of the descriptors there).
    forget: fn(&H),
}

impl<K: Hash + Eq, H> Registry<K, H> {
    /// An empty registry; `forget` as for [`Registry::forget`].
    pub(crate) const fn new(forget: fn(&H)) -> Registry<K, H> {
        Registry {
            inner: Mutex::new(None),
            forget,
        }
    }

    /// Run `f` on this process's holds, after forgetting any that a child
    /// forked from a holder inherited (seen at its first use).
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<K, Entry<H>>) -> T) -> T {
        // A panic while locked leaves at worst an entry too many or too few.
        let mut reg = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        let inner = reg.get_or_insert_with(|| Inner {
            pid,
            holds: HashMap::new(),
        });
        if inner.pid != pid {
            for (_, e) in inner.holds.drain() {
                (self.forget)(&e.hold);
            }
            inner.pid = pid;
        }
        f(&mut inner.holds)
    }

    /// Enter `hold` under `key`, acquired by the current thread if
    /// `blocking` (the same-thread check's record).
    pub(crate) fn insert(&self, key: K, hold: Arc<H>, blocking: bool) {
        let thread = blocking.then(|| std::thread::current().id());
        self.with(|m| m.insert(key, Entry { hold, thread }));
    }

    /// Remove `key` if it still names `hold` (a later hold of the same lock
    /// may have replaced it).
    pub(crate) fn remove(&self, key: &K, hold: *const H) {
        self.with(|m| {
            if m.get(key)
                .is_some_and(|e| std::ptr::eq(Arc::as_ptr(&e.hold), hold))
            {
                m.remove(key);
            }
        });
    }

    /// This process's hold of `key`, if any.
    pub(crate) fn get(&self, key: &K) -> Option<Arc<H>> {
        self.with(|m| m.get(key).map(|e| e.hold.clone()))
    }

    /// Every hold of this process.
    pub(crate) fn all(&self) -> Vec<Arc<H>> {
        self.with(|m| m.values().map(|e| e.hold.clone()).collect())
    }

    /// Whether `pred` holds for one of this process's holds.
    pub(crate) fn any(&self, mut pred: impl FnMut(&H) -> bool) -> bool {
        self.with(|m| m.values().any(|e| pred(&e.hold)))
    }

    /// Warn when the current thread is about to wait for a lock (`key`,
    /// named `lock_path`) that it acquired itself. No error: a guard is
    /// `Send` and may have moved to a thread that will drop it, so waiting
    /// may well succeed, and nothing can prove otherwise; but if the guard
    /// is still here, the wait ends only at its timeout.
    pub(crate) fn warn_if_same_thread(&self, key: &K, lock_path: &Path) {
        let me = std::thread::current().id();
        if self.with(|m| m.get(key).is_some_and(|e| e.thread == Some(me))) {
            tracing::warn!(
                lock_path = %lock_path.display(),
                "this thread waits for a lock that it acquired itself: unless that guard has moved to another thread, this waits until the timeout; derive a nested guard with LockGuard::nested() instead"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FORGOT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    #[test]
    fn a_key_is_removed_only_by_the_hold_it_names() {
        let reg: Registry<&str, u32> = Registry::new(|_| {
            FORGOT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let (a, b) = (Arc::new(1), Arc::new(2));
        reg.insert("k", a.clone(), true);
        assert_eq!(reg.get(&"k").as_deref(), Some(&1));
        // A later hold of the same lock replaces it; the earlier one's
        // removal leaves the later one.
        reg.insert("k", b.clone(), false);
        reg.remove(&"k", Arc::as_ptr(&a));
        assert_eq!(reg.get(&"k").as_deref(), Some(&2));
        assert!(reg.any(|h| *h == 2));
        assert_eq!(reg.all().len(), 1);
        reg.remove(&"k", Arc::as_ptr(&b));
        assert!(reg.get(&"k").is_none());
        // Nothing was inherited across fork in this process.
        assert_eq!(FORGOT.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
