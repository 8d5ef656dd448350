//! An etcd hold: the lease, its keep-alive on the etcd thread, the local
//! deadline, loss, append and release. [`crate::LockGuard`] wraps it the
//! way it wraps a lock-file hold.

use super::connect::Call;
use super::{EtcdBackend, block, map_err, on_etcd_thread};
use crate::error::{Error, EtcdFailure, LostReason, Repr, Result};
use crate::hold_state::HoldState;
use crate::options::LockOptions;
use crate::record::OwnerRecord;
use crate::registry::Registry;
use etcd_client::{
    Client, EventType, LeaseKeepAliveStream, LeaseKeeper, WatchFilterType, WatchOptions,
    WatchStream,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// The safety margin between the local deadline and the server's lease
/// expiry: a fifth of the TTL, at least 200 ms, at most half the TTL.
pub(crate) fn margin(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(200)).min(ttl / 2)
}

/// Watch deliveries that ended a wait (tests: one per release).
static WAKES: AtomicU64 = AtomicU64::new(0);

pub(crate) fn count_wake() {
    WAKES.fetch_add(1, Ordering::Relaxed);
}

/// Predecessor deletions that woke a waiter in this process so far.
pub fn wakes() -> u64 {
    WAKES.load(Ordering::Relaxed)
}

struct State {
    /// Past this instant the lease may have expired on the server.
    deadline: Instant,
}

/// State shared by a hold and its keep-alive task.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Nested guards, the loss or release (an abandoned acquisition counts
    /// as released: the keep-alive stops), and their waiters: the same
    /// machinery as the file hold's.
    ending: HoldState,
}

impl Shared {
    pub(crate) fn new(deadline: tokio::time::Instant) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State {
                deadline: deadline.into_std(),
            }),
            ending: HoldState::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lost(&self) -> Option<LostReason> {
        self.ending.lost()
    }

    /// Mark lost (first reason wins, none after a release); wakes every
    /// waiter. True if this call marked it.
    pub(crate) fn mark_lost(&self, reason: LostReason) -> bool {
        self.ending.mark_lost(reason)
    }

    /// Stop the keep-alive (released, or the acquisition was abandoned).
    pub(crate) fn finish(&self) {
        self.ending.mark_released();
    }

    /// Resolves once the hold ends: lost (the reason), or finished.
    pub(crate) async fn wait_ended(&self) -> LostReason {
        self.ending.ended_async().await
    }

    /// When the lease may have expired on the server, as last renewed.
    fn deadline(&self) -> Instant {
        self.state().deadline
    }

    /// `Err` with the reason once the hold has ended; judges the local
    /// deadline now (a passed one marks the hold lost).
    fn check(&self) -> std::result::Result<(), LostReason> {
        if let Some(r) = self.ending.lost() {
            return Err(r);
        }
        if self.ending.released() {
            return Err(LostReason::ReleasedAll);
        }
        let deadline = self.deadline();
        let now = Instant::now();
        if now >= deadline {
            let late = now - deadline;
            let reason = LostReason::LeaseExpired {
                detail: format!(
                    "no renewal acknowledged in time (local deadline passed {}ms ago)",
                    late.as_millis()
                ),
            };
            if self.ending.mark_lost(reason.clone()) {
                return Err(reason);
            }
            // Lost or released meanwhile: that end, as marked.
            return Err(self.ending.lost().unwrap_or(LostReason::ReleasedAll));
        }
        Ok(())
    }
}

/// The keep-alive of one lease, on the etcd thread: renew every TTL/3,
/// move the local deadline on each acknowledged renewal, watch our own key
/// for deletion, and mark the hold lost when either says so. (Max hold is
/// the watchdog's, as for a lock file: see [`EtcdHold`]'s `Expire`.)
pub(crate) fn spawn_keep_alive(
    client: Client,
    cfg: EtcdBackend,
    shared: Arc<Shared>,
    lease: i64,
    ttl: Duration,
    key: String,
    rev: i64,
) {
    let interval = ttl / 3;
    let keep = KeepAlive {
        client,
        cfg,
        shared,
        lease,
        key,
        rev,
        interval,
        margin: margin(ttl),
        keeper: None,
        watch: None,
        next: tokio::time::Instant::now() + interval,
    };
    tokio::spawn(keep.run());
}

/// One lease's keep-alive, on the etcd thread (see [`spawn_keep_alive`]).
struct KeepAlive {
    client: Client,
    cfg: EtcdBackend,
    shared: Arc<Shared>,
    lease: i64,
    /// Our contender key and its create revision.
    key: String,
    rev: i64,
    /// Renew every TTL/3.
    interval: Duration,
    /// See [`margin`].
    margin: Duration,
    /// The lease's keep-alive stream (`None`: to be opened).
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    /// The watch of our key's deletion (`None`: to be made).
    watch: Option<WatchStream>,
    /// When to renew next.
    next: tokio::time::Instant,
}

impl KeepAlive {
    /// Until the hold ends: renew on time, and mark the hold lost when our
    /// key is deleted, the local deadline passes or etcd says the lease is
    /// gone.
    async fn run(mut self) {
        loop {
            let deadline = tokio::time::Instant::from_std(self.shared.deadline());
            self.watch_own_key(deadline).await;
            let wake = self.next.min(deadline);
            let deleted = tokio::select! {
                _ = tokio::time::sleep_until(wake) => false,
                _ = self.shared.wait_ended() => return,
                d = next_delete(&mut self.watch) => d,
            };
            if deleted {
                let reason = LostReason::KeyDeleted {
                    key: self.key.clone(),
                };
                return self.lose(reason, true).await;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                let reason = LostReason::LeaseExpired {
                    detail: format!(
                        "no renewal acknowledged by {} within the TTL minus {}ms",
                        self.cfg.url(),
                        self.margin.as_millis()
                    ),
                };
                return self.lose(reason, true).await;
            }
            if now < self.next {
                continue;
            }
            if let Some(reason) = self.renew(deadline).await {
                // etcd says the lease is gone: nothing left to revoke.
                return self.lose(reason, false).await;
            }
        }
    }

    /// Make the watch of our key's deletion if there is none. Bounded by
    /// the local deadline too: a watch that cannot be made (a partition)
    /// must not delay the loss past it (seen in cli/tests/etcd.rs's partition
    /// runs: the loss was announced up to a TTL/3 late, eating the margin
    /// before the next holder).
    async fn watch_own_key(&mut self, deadline: tokio::time::Instant) {
        if self.watch.is_some() {
            return;
        }
        let opts = WatchOptions::new()
            .with_start_revision(self.rev + 1)
            .with_filters([WatchFilterType::NoPut]);
        let until = (tokio::time::Instant::now() + self.interval).min(deadline);
        let made = self.client.watch(self.key.as_str(), Some(opts));
        self.watch = tokio::time::timeout_at(until, made)
            .await
            .ok()
            .and_then(|r| r.ok());
    }

    /// Renew once, bounded by the local deadline. An acknowledged renewal
    /// moves the deadline, counted from when we asked, not from the answer
    /// (the server restarted its TTL no earlier than that). `Some` when
    /// etcd says the lease is gone; a failure is retried in 100 ms (the
    /// deadline check in [`KeepAlive::run`] ends that).
    async fn renew(&mut self, deadline: tokio::time::Instant) -> Option<LostReason> {
        let sent = tokio::time::Instant::now();
        let (client, keeper, lease) = (&mut self.client, &mut self.keeper, self.lease);
        let renewed = tokio::time::timeout_at(deadline, async {
            if keeper.is_none() {
                *keeper = Some(client.lease_keep_alive(lease).await?);
            }
            let Some((k, s)) = keeper.as_mut() else {
                unreachable!("set above");
            };
            k.keep_alive().await?;
            s.message().await
        })
        .await;
        let gone = || LostReason::LeaseExpired {
            detail: format!("{} says the lease no longer exists", self.cfg.url()),
        };
        match renewed {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                let granted = Duration::from_secs(resp.ttl() as u64);
                self.shared.state().deadline = (sent + granted - self.margin).into_std();
                self.next = sent + self.interval;
                None
            }
            Ok(Ok(Some(_))) => Some(gone()),
            Ok(Err(e)) if is_lease_not_found(&self.cfg, &e) => Some(gone()),
            other => {
                // Stream broken or no answer yet: reconnect and retry soon.
                if let Ok(Err(e)) = &other {
                    tracing::debug!(error = %map_err(&self.cfg, Call::Request, e), "lease keep-alive failed; retrying");
                }
                self.keeper = None;
                self.next = tokio::time::Instant::now() + Duration::from_millis(100);
                None
            }
        }
    }

    /// Mark the hold lost; with `revoke`, revoke the lease too (it may
    /// still exist on the server: free it for the next holder now).
    async fn lose(&self, reason: LostReason, revoke: bool) {
        self.shared.mark_lost(reason);
        if revoke {
            let mut c = self.client.clone();
            let _ = tokio::time::timeout(Duration::from_secs(2), c.lease_revoke(self.lease)).await;
        }
    }
}

/// Whether etcd says the lease is gone: gRPC `NotFound`, its code for
/// "requested lease not found" (`ErrGRPCLeaseNotFound`), decided by
/// [`super::connect::diagnose`] from the code, not the words.
fn is_lease_not_found(cfg: &EtcdBackend, e: &etcd_client::Error) -> bool {
    super::connect::diagnose(
        e,
        super::connect::Call::Request,
        cfg.user().is_some(),
        cfg.tls.on,
    )
    .failure
        == EtcdFailure::LeaseNotFound
}

/// The next deletion on our key's watch; `false` never (a broken stream is
/// dropped and pends until re-created by the loop).
async fn next_delete(watch: &mut Option<WatchStream>) -> bool {
    let Some(w) = watch.as_mut() else {
        return std::future::pending().await;
    };
    while let Ok(Some(resp)) = w.message().await {
        if resp
            .events()
            .iter()
            .any(|e| e.event_type() == EventType::Delete)
        {
            return true;
        }
        if resp.canceled() {
            break;
        }
    }
    *watch = None;
    // Let the loop re-create it after the next renewal.
    std::future::pending().await
}

// ------------------------------------------------------------------ hold

/// A held etcd lock. Shared by its guards (nested) and the registry.
/// Crate-private: a user sees it only as a `LockGuard`.
pub(crate) struct EtcdHold {
    /// The transcript as this hold writes it: its own mutex, never the
    /// shared state's, so that a slow write, `fdatasync` or torn-line copy
    /// never keeps the keep-alive tasks (which lock the state) from
    /// renewing this or any other lease of the process.
    writer: Mutex<crate::transcript::Transcript>,
    cfg: EtcdBackend,
    client: Client,
    shared: Arc<Shared>,
    /// The lock's key (decoded).
    key: String,
    /// Our contender key.
    my_key: String,
    lock_path: PathBuf,
    target: PathBuf,
    record: OwnerRecord,
    lease: i64,
    token: i64,
    ttl: Duration,
    acquired: Instant,
    max_hold: Duration,
    /// The max-hold deadline armed with the watchdog.
    max_hold_armed: crate::watchdog::MaxHold,
    /// The process that made this hold (a forked child's watchdog must
    /// not revoke its parent's lease).
    owner_pid: u32,
}

impl Drop for EtcdHold {
    /// A hold dropped without a release (an acquisition whose caller went
    /// away) leaves no deadline with the watchdog.
    fn drop(&mut self) {
        self.max_hold_armed.disarm();
    }
}

impl crate::watchdog::Expire for EtcdHold {
    fn name(&self) -> String {
        self.key.clone()
    }

    fn held_since(&self) -> (Instant, Duration) {
        (self.acquired, self.max_hold)
    }

    /// Max hold reached: mark every guard lost (the keep-alive stops) and
    /// revoke the lease (the watchdog warns).
    fn expire(self: Arc<Self>, reason: LostReason) -> bool {
        if std::process::id() != self.owner_pid || !self.shared.mark_lost(reason) {
            return false;
        }
        self.revoke_in_background();
        true
    }
}

impl std::fmt::Debug for EtcdHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdHold")
            .field("key", &self.my_key)
            .field("lease", &format_args!("{:016x}", self.lease))
            .field("lease_ttl", &self.ttl)
            .field("token", &self.token)
            .finish()
    }
}

type RegKey = (Vec<String>, String, String);

/// This process's etcd holds (see `crate::registry`). A child forked from
/// a holder forgets its parent's: their leases are the parent's to keep or
/// revoke.
static REGISTRY: Registry<RegKey, EtcdHold> = Registry::new(|_| {});

fn reg_key(cfg: &EtcdBackend, key: &str) -> RegKey {
    (cfg.endpoints.clone(), cfg.prefix.clone(), key.to_owned())
}

/// Warn when the current thread is about to wait for a lock (`key` under
/// `cfg`) that it holds itself (see `Registry::warn_if_same_thread`).
pub(crate) fn warn_if_same_thread(cfg: &EtcdBackend, key: &str) {
    REGISTRY.warn_if_same_thread(&reg_key(cfg, key), Path::new(&cfg.lock_dir(key)));
}

/// Release every etcd lock of this process (see [`crate::release_all`]).
pub(crate) fn release_all() -> usize {
    let mut n = 0;
    for h in REGISTRY.all() {
        if h.shared.mark_lost(LostReason::ReleasedAll) {
            h.max_hold_armed.disarm();
            let _ = h.revoke();
            n += 1;
        }
    }
    n
}

impl EtcdHold {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: EtcdBackend,
        client: Client,
        shared: Arc<Shared>,
        key: String,
        my_key: String,
        lock_path: PathBuf,
        target: PathBuf,
        record: OwnerRecord,
        lease: i64,
        token: i64,
        ttl: Duration,
        opts: &LockOptions,
    ) -> Arc<EtcdHold> {
        let acquired = Instant::now();
        let hold = Arc::new(EtcdHold {
            cfg,
            client,
            shared,
            key,
            my_key,
            lock_path,
            target,
            record,
            lease,
            token,
            ttl,
            acquired,
            max_hold: opts.max_hold,
            max_hold_armed: crate::watchdog::MaxHold::default(),
            owner_pid: std::process::id(),
            writer: Mutex::new(crate::transcript::Transcript::default()),
        });
        let weak: Weak<dyn crate::watchdog::Expire> = Arc::downgrade(&hold) as _;
        hold.max_hold_armed.arm(acquired, hold.max_hold, weak);
        hold
    }

    /// Enter the hold in this process's registry (for
    /// [`crate::release_all`] and the same-thread check), acquired by the
    /// current thread if `blocking`; the front door makes it a guard.
    pub(crate) fn register(self: Arc<Self>, blocking: bool) -> Arc<Self> {
        REGISTRY.insert(reg_key(&self.cfg, &self.key), self.clone(), blocking);
        self
    }

    pub(crate) fn acquired(&self) -> Instant {
        self.acquired
    }

    pub(crate) fn max_hold(&self) -> Duration {
        self.max_hold
    }

    fn lost_error(&self, reason: LostReason) -> Error {
        Error::from(Repr::LockLost {
            lock_path: self.lock_path.clone(),
            reason,
        })
    }

    /// In a child forked from the holder: `Inherited`. Its copy of the
    /// guard is no hold (the lease and its renewals are the parent's), so
    /// it must neither append, nor wait, nor revoke; every question of the
    /// guard asks this first, as the file hold does.
    fn forked_view(&self) -> Option<LostReason> {
        (std::process::id() != self.owner_pid).then_some(LostReason::Inherited {
            pid: self.owner_pid,
        })
    }

    pub(crate) fn check(&self) -> Result<()> {
        if let Some(r) = self.forked_view() {
            return Err(self.lost_error(r));
        }
        self.shared.check().map_err(|r| self.lost_error(r))
    }

    pub(crate) fn lost_reason(&self) -> Option<LostReason> {
        if let Some(r) = self.forked_view() {
            return Some(r);
        }
        // Marks a passed local deadline first.
        let _ = self.shared.check();
        self.shared.lost()
    }

    pub(crate) fn wait_lost(&self, timeout: Option<Duration>) -> Option<LostReason> {
        if let Some(r) = self.forked_view() {
            return Some(r);
        }
        let until = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let _ = self.shared.check();
            // Also wake at the local deadline, which no event announces
            // (a renewal moves it: looked up again on each turn).
            let deadline = self.shared.deadline();
            let wake = until.map_or(deadline, |u| u.min(deadline));
            if let Some(r) = self.shared.ending.wait_until(Some(wake)) {
                return Some(r);
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return None;
            }
        }
    }

    pub(crate) fn poll_lost(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<LostReason> {
        if let Some(r) = self.forked_view() {
            return std::task::Poll::Ready(r);
        }
        let _ = self.shared.check();
        // The local deadline passes without an event: the keep-alive task
        // marks it (and wakes us) when it gets there.
        self.shared.ending.poll_lost(cx)
    }

    pub(crate) fn add_ref(&self) -> Result<()> {
        self.check()?;
        self.shared.ending.add_ref().map_err(|r| self.lost_error(r))
    }

    /// Append under the lock: the hold is checked (lost flag, local
    /// deadline) under the state lock, then each line goes out in one
    /// `write` on an `O_APPEND` descriptor.
    pub(crate) fn append_lines<L: AsRef<[u8]>>(&self, lines: &[L], sync: bool) -> Result<()> {
        self.with_writer(|w| w.append(&self.target, lines, sync, &|| self.still_held()))
    }

    /// Check the hold under the state lock, then write without it.
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut crate::transcript::Transcript) -> Result<T>,
    ) -> Result<T> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.check()?;
        f(&mut w)
    }

    /// Not lost, not released, local deadline not passed.
    fn still_held(&self) -> bool {
        self.shared.check().is_ok()
    }

    /// The torn last line moved out of the transcript in this hold, if any.
    pub(crate) fn torn_tail(&self) -> Option<crate::transcript::TornTail> {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .torn
            .clone()
    }

    /// See [`crate::LockGuard::repair_torn_tail`].
    pub(crate) fn repair_torn_tail(&self) -> Result<Option<crate::transcript::TornTail>> {
        self.with_writer(|w| w.repair_tail(&self.target, &|| self.still_held()))
    }

    /// The request that revokes our lease (deletes our key; the next
    /// waiter's watch fires).
    fn revoke_request(&self) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let client = self.client.clone();
        let lease = self.lease;
        let cfg = self.cfg.clone();
        async move {
            super::rpc(&cfg, None, &client, |mut c| async move {
                c.lease_revoke(lease).await
            })
            .await
            .map(|_| ())
        }
    }

    /// Revoke our lease on the etcd thread without waiting for the answer
    /// (from the watchdog thread, which serves every hold of the process).
    fn revoke_in_background(&self) {
        let fut = self.revoke_request();
        match super::runtime(&self.cfg) {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::debug!(error = %e, "revoking an expired hold's lease failed; it ends at its TTL");
                    }
                });
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot revoke an expired hold's lease; it ends at its TTL");
            }
        }
    }

    /// Revoke our lease. Blocks for the answer, except on the etcd thread
    /// itself.
    fn revoke(&self) -> Result<()> {
        let fut = self.revoke_request();
        if on_etcd_thread() {
            tokio::spawn(async move {
                let _ = fut.await;
            });
            return Ok(());
        }
        block(&self.cfg, fut)
    }

    /// Drop one guard's reference; the last one releases (revokes).
    pub(crate) fn release_ref(&self) -> Result<()> {
        // A forked child's copy: the parent's lease is not ours to revoke.
        if let Some(r) = self.forked_view() {
            return Err(self.lost_error(r));
        }
        if !self.shared.ending.release_ref() {
            return Ok(());
        }
        // Stops the keep-alive; a loss marked before wins.
        let lost = self.shared.ending.mark_released();
        self.unregister();
        if let Some(reason) = lost {
            // Best effort: the lease may still exist (max hold, key deleted).
            let _ = self.revoke();
            return Err(self.lost_error(reason));
        }
        self.revoke().map_err(|e| {
            e.with_etcd_op(
                "release: could not revoke the lease (the lock frees itself when the lease expires) at",
            )
            .for_etcd_lock(&self.lock_path.to_string_lossy())
        })
    }

    fn unregister(&self) {
        self.max_hold_armed.disarm();
        REGISTRY.remove(&reg_key(&self.cfg, &self.key), self);
    }
}

/// The etcd backend's side of [`crate::LockGuard`]. (Inherent methods of
/// the same name come first in method resolution: each `EtcdHold::...`
/// line below calls the inherent one.)
impl crate::guard::Hold for EtcdHold {
    fn target(&self) -> &Path {
        &self.target
    }

    fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    fn record(&self) -> &OwnerRecord {
        &self.record
    }

    fn held_for(&self) -> Duration {
        self.acquired().elapsed()
    }

    fn max_hold(&self) -> Duration {
        EtcdHold::max_hold(self)
    }

    fn fencing_token(&self) -> Option<i64> {
        Some(self.token)
    }

    fn check(&self) -> Result<()> {
        EtcdHold::check(self)
    }

    fn lost_reason(&self) -> Option<LostReason> {
        EtcdHold::lost_reason(self)
    }

    fn wait_lost(&self, timeout: Option<Duration>) -> Option<LostReason> {
        EtcdHold::wait_lost(self, timeout)
    }

    fn poll_lost(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<LostReason> {
        EtcdHold::poll_lost(self, cx)
    }

    /// No descriptor to share: the process holding the guard keeps the
    /// lease alive (see `LockGuard::share_with_children`).
    fn set_inheritable(&self, _inherit: bool) -> Result<()> {
        EtcdHold::check(self)
    }

    fn add_ref(&self) -> Result<()> {
        EtcdHold::add_ref(self)
    }

    fn release_ref(&self) -> Result<()> {
        EtcdHold::release_ref(self)
    }

    fn append(&self, lines: &[&[u8]], sync: bool) -> Result<()> {
        self.append_lines(lines, sync)
    }

    fn repair_torn_tail(&self) -> Result<Option<crate::transcript::TornTail>> {
        EtcdHold::repair_torn_tail(self)
    }

    /// A lease that expired cannot be told from a release here (etcd
    /// deletes the key the same way): only the torn-line part.
    fn takeover(&self) -> Option<crate::transcript::Takeover> {
        crate::transcript::Takeover::from_parts(None, self.torn_tail())
    }

    fn describe(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard").field("etcd", self).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{is_lease_not_found, margin};
    use crate::etcd::EtcdBackend;
    use std::time::Duration;
    use tonic::{Code, Status};

    #[test]
    fn only_etcds_not_found_code_says_the_lease_is_gone() {
        let cfg = EtcdBackend::new(["h:1"]);
        let status = |code, msg| etcd_client::Error::GRpcStatus(Status::new(code, msg));
        assert!(is_lease_not_found(
            &cfg,
            &status(Code::NotFound, "etcdserver: requested lease not found")
        ));
        // The words do not decide, the code does.
        for e in [
            status(Code::Unavailable, "etcdserver: requested lease not found"),
            status(Code::Unavailable, "etcdserver: leader changed"),
            etcd_client::Error::IoError(std::io::Error::other("lease not found")),
        ] {
            assert!(!is_lease_not_found(&cfg, &e), "{e}");
        }
    }

    #[test]
    fn the_margin_is_a_fifth_of_the_ttl_at_least_200_ms_at_most_half() {
        let ms = Duration::from_millis;
        for (ttl, want) in [
            (ms(10_000), ms(2_000)),
            (ms(2_000), ms(400)),
            (ms(1_000), ms(200)),
            (ms(600), ms(200)),
            (ms(300), ms(150)),
        ] {
            assert_eq!(margin(ttl), want, "TTL {ttl:?}");
        }
    }
}
