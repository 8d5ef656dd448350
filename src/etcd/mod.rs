//! The etcd v3 backend (feature `etcd`): the same guard and promises as the
//! lock-file protocol, kept by an etcd cluster. See `docs/distributed.md`.
//!
//! The recipe is etcd's own (`client/v3/concurrency`, `Mutex`), not a
//! protocol of ours:
//!
//! * every contender grants a **lease** (TTL [`EtcdBackend::with_lease_ttl`]) and
//!   puts its **own key** `<prefix><lock>/<lease id, 16 hex digits>` with
//!   that lease; the value is our owner record plus the lease id;
//! * the **holder** is the key with the lowest create revision under
//!   `<prefix><lock>/`; a **waiter watches the deletion of the key created
//!   just before its own** (its predecessor) from the revision of the read
//!   that found it, so nothing is missed, nobody polls, only one waiter
//!   wakes per release, and waiters enter in the order their keys were
//!   created (FIFO);
//! * the holder's create revision is the **fencing token**: etcd revisions
//!   only grow, so a later holder always has a larger token;
//! * release, timeout and cancellation **revoke the lease**, which deletes
//!   the key (etcd API reference: "LeaseRevoke revokes a lease. All keys
//!   attached to the lease will expire and be deleted");
//! * one thread per process (`session-lock-etcd`, a small tokio runtime of
//!   its own, so the blocking API needs no runtime from the caller) renews
//!   every lease at a third of its TTL. A guard counts its lock lost at a
//!   **local deadline** of (send time of the last acknowledged renewal) +
//!   TTL - margin, i.e. before the server could have expired the lease, or
//!   as soon as its key is seen deleted.
//!
//! `<lock>` is the lock's key with `%` and `/` percent-encoded, so that the
//! contenders of one lock never fall under another lock's prefix.

mod connect;
mod hold;

pub use crate::backend::etcd::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_LEASE_TTL, DEFAULT_PREFIX, EtcdBackend, MIN_LEASE_TTL,
    decode_key, encode_key,
};
pub use crate::error::EtcdFailure;
pub(crate) use hold::EtcdHold;
pub(crate) use hold::release_all;
pub use hold::wakes;

use crate::error::{Error, LostReason, Owner, Repr, Result};
use crate::options::{Attempt, LockOptions};
use crate::record::{OwnerRecord, ParsedRecord};
pub(crate) use connect::map_err;
use connect::{Call, retryable};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, WatchFilterType, WatchOptions,
};
use hold::Shared;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

// ---------------------------------------------------------------- runtime

/// The process's etcd thread: a current-thread tokio runtime that runs
/// every RPC, watch and keep-alive of this process.
fn runtime(cfg: &EtcdBackend) -> Result<&'static tokio::runtime::Handle> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Handle, String>> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .map_err(|e| e.to_string())?;
        Ok(handle)
    });
    rt.as_ref().map_err(|e| {
        Error::etcd(
            EtcdFailure::Internal,
            "could not start this process's etcd thread (session-lock-etcd) for",
            cfg.url(),
            e.clone(),
        )
    })
}

const THREAD_NAME: &str = "session-lock-etcd";

/// Whether the caller runs on the etcd thread (where blocking on it would
/// deadlock).
pub(crate) fn on_etcd_thread() -> bool {
    std::thread::current().name() == Some(THREAD_NAME)
}

/// The error when the etcd thread dropped a request of `cfg`'s without an
/// answer (it panicked, or the process is exiting).
fn no_answer(cfg: &EtcdBackend) -> Error {
    Error::etcd(
        EtcdFailure::Internal,
        "this process's etcd thread (session-lock-etcd) dropped a request for",
        cfg.url(),
        "the etcd task ended without an answer",
    )
}

/// Run `fut` (a request to `cfg`'s cluster) on the etcd thread and wait
/// for it (blocking API).
pub(crate) fn block<T: Send + 'static>(
    cfg: &EtcdBackend,
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let handle = runtime(cfg)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or_else(|_| Err(no_answer(cfg)))
}

/// Run `fut` on the etcd thread and await it from any runtime (async API).
/// Dropping the returned future drops `fut` on the etcd thread (cancelling
/// an acquire revokes its lease there).
#[cfg(feature = "tokio")]
pub(crate) async fn run_async<T: Send + 'static>(
    cfg: &EtcdBackend,
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let handle = runtime(cfg)?;
    let (mut tx, rx) = tokio::sync::oneshot::channel();
    handle.spawn(async move {
        let out = tokio::select! {
            out = fut => Some(out),
            _ = tx.closed() => None,
        };
        if let Some(out) = out {
            // A result nobody takes any more (the caller was dropped just
            // now) is dropped here: a guard in it releases.
            let _ = tx.send(out);
        }
    });
    rx.await.unwrap_or_else(|_| Err(no_answer(cfg)))
}

// ----------------------------------------------------------------- errors

/// The last failed attempt before a bound ran out: our error, and whether
/// the connection was closed under it ([`connect::closed_under_us`]).
pub(crate) struct LastError {
    pub err: Error,
    pub closed: bool,
}

/// No usable answer within `within`: "timed out", with the last attempt's
/// cause; a TLS error if every connection was closed after the handshake
/// ([`connect::closed_after_handshake`]).
pub(crate) fn unreachable_error(
    cfg: &EtcdBackend,
    within: Duration,
    last: Option<LastError>,
) -> Error {
    let why = match &last {
        Some(l) => format!(
            " (last error: {})",
            l.err
                .etcd_detail()
                .map_or_else(|| l.err.to_string(), str::to_owned)
        ),
        None => String::new(),
    };
    let closed = last.as_ref().is_some_and(|l| l.closed);
    if let Some(e) = connect::closed_after_handshake(cfg, within, closed, &why) {
        return e;
    }
    Error::etcd(
        EtcdFailure::TimedOut,
        "cannot reach etcd at",
        cfg.url(),
        format!(
            "timed out: no usable answer within {}ms{why}",
            within.as_millis()
        ),
    )
}

fn foreign_error(key: &str, why: &str) -> Error {
    Error::etcd(
        EtcdFailure::ForeignKey,
        "a key written by something else is under the lock prefix:",
        key,
        format!("{why}; not a session-lock contender (remove it, or use another --prefix)"),
    )
}

/// The longest one request may take before the cluster counts as
/// unreachable, when the acquire timeout does not bound it sooner.
fn rpc_bound(cfg: &EtcdBackend) -> Duration {
    cfg.lease_ttl.max(Duration::from_secs(2))
}

/// Run one request with a bound (the acquire deadline, or [`rpc_bound`]),
/// trying again every 50 ms while the cluster answers with a connection
/// error or "no leader" (a dead member, an election in progress). The
/// requests given here are idempotent, or checked by the caller.
async fn rpc<T, F, Fut>(
    cfg: &EtcdBackend,
    deadline: Option<Instant>,
    client: &Client,
    mut f: F,
) -> Result<T>
where
    F: FnMut(Client) -> Fut,
    Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let now = Instant::now();
    let bound = now + rpc_bound(cfg);
    let until = deadline.map_or(bound, |d| d.min(bound));
    let mut last = None;
    loop {
        match tokio::time::timeout_at(until, f(client.clone())).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                let closed = connect::closed_under_us(&e);
                let err = map_err(cfg, Call::Request, &e);
                if !retryable(&err) {
                    return Err(err);
                }
                tracing::debug!(error = %err, "etcd request failed; trying again");
                last = Some(LastError { err, closed });
                let pause = tokio::time::sleep(Duration::from_millis(50));
                if tokio::time::timeout_at(until, pause).await.is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    Err(unreachable_error(cfg, until - now, last))
}

// ----------------------------------------------------------------- values

/// What we store as a contender's value: the owner record plus the lease.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Value<'a> {
    #[serde(flatten)]
    record: &'a OwnerRecord,
    lease_id: String,
    lease_ttl_ms: u64,
    /// The key's create revision, once known (written right after the
    /// create; absent only in that first write).
    #[serde(skip_serializing_if = "Option::is_none")]
    fencing_token: Option<i64>,
}

/// A contender key as found under the prefix.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Contender {
    /// The full etcd key.
    pub key: String,
    /// Its create revision (the fencing token if it holds the lock).
    pub create_revision: i64,
    /// Its lease.
    pub lease: i64,
    /// The owner record in its value.
    pub record: OwnerRecord,
}

impl Contender {
    /// Judge one key under a lock's prefix: ours (a parseable record, a
    /// lease, a 16-hex-digit name) or foreign (an error naming it).
    fn from_kv(kv: &KeyValue, dir: &str) -> Result<Contender> {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let name = key.strip_prefix(dir).unwrap_or(&key);
        if name.len() != 16 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(foreign_error(&key, "its name is not a lease id"));
        }
        if kv.lease() == 0 {
            return Err(foreign_error(&key, "it has no lease"));
        }
        let ParsedRecord::Record(record) = OwnerRecord::parse(kv.value()) else {
            return Err(foreign_error(&key, "its value is not an owner record"));
        };
        Ok(Contender {
            key,
            create_revision: kv.create_revision(),
            lease: kv.lease(),
            record,
        })
    }

    /// The holder as [`crate::LockOptions::on_wait`] hooks and errors see
    /// it: its stored owner record (liveness is the lease's, not a probed
    /// pid's, hence `alive: None`).
    fn owner(&self) -> Owner {
        Owner {
            pid: self.record.pid,
            alive: None,
            age_ms: self
                .record
                .created_at_ms()
                .map(|c| (crate::time::now_ms() - c).max(0) as u64),
            hostname: self.record.hostname.clone(),
            label: self.record.label.clone(),
        }
    }
}

// ---------------------------------------------------------------- acquire

/// The lock key of `target` under `cfg`: the explicit key, or the
/// transcript's canonical path.
pub(crate) fn lock_key(
    cfg: &EtcdBackend,
    target: &std::path::Path,
    opts: &LockOptions,
) -> Result<(String, PathBuf)> {
    // The same checks as the file backend (no protocol name, an existing
    // or, with `create_dirs`, created directory, a regular transcript).
    let paths = crate::paths::LockPaths::resolve_with(target, opts)?;
    let key = match &cfg.key {
        Some(k) => k.clone(),
        None => paths.target.to_string_lossy().into_owned(),
    };
    Ok((key, paths.target))
}

/// Everything an acquisition needs, owned (it runs on the etcd thread).
pub(crate) struct Request {
    pub cfg: EtcdBackend,
    pub key: String,
    pub target: PathBuf,
    pub opts: LockOptions,
    pub attempt: Attempt,
}

/// Blocking acquire / try_acquire.
pub(crate) fn acquire_blocking(
    target: &std::path::Path,
    cfg: &EtcdBackend,
    opts: &LockOptions,
    attempt: Attempt,
) -> Result<Arc<EtcdHold>> {
    let (key, target) = lock_key(cfg, target, opts)?;
    let req = Request {
        cfg: cfg.clone(),
        key,
        target,
        opts: opts.clone(),
        attempt,
    };
    if attempt == Attempt::Wait {
        hold::warn_if_same_thread(cfg, &req.key);
    }
    block(cfg, acquire(req)).map(|h| h.register(true))
}

/// Async acquire / try_acquire.
#[cfg(feature = "tokio")]
pub(crate) async fn acquire_async(
    target: &std::path::Path,
    cfg: &EtcdBackend,
    opts: &LockOptions,
    attempt: Attempt,
) -> Result<Arc<EtcdHold>> {
    let (key, target) = lock_key(cfg, target, opts)?;
    let req = Request {
        cfg: cfg.clone(),
        key,
        target,
        opts: opts.clone(),
        attempt,
    };
    run_async(cfg, acquire(req))
        .await
        .map(|h| h.register(false))
}

/// Revokes a lease when dropped unless disarmed: a timed-out, failed or
/// cancelled acquisition leaves no key behind.
struct Revoker {
    client: Client,
    lease: i64,
    armed: bool,
    shared: Option<Arc<Shared>>,
}

impl Drop for Revoker {
    fn drop(&mut self) {
        if self.armed {
            if let Some(s) = &self.shared {
                s.finish();
            }
            let mut c = self.client.clone();
            let lease = self.lease;
            // We run on the etcd thread (acquire futures live there).
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), c.lease_revoke(lease)).await;
                });
            }
        }
    }
}

fn first_by_create() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1)
}

/// The holder of the lock under `dir`, if any.
async fn holder(
    client: &mut Client,
    cfg: &EtcdBackend,
    dir: &str,
    deadline: Option<Instant>,
) -> Result<Option<Contender>> {
    let resp = rpc(cfg, deadline, client, |mut c| async move {
        c.get(dir, Some(first_by_create())).await
    })
    .await?;
    resp.kvs()
        .first()
        .map(|kv| Contender::from_kv(kv, dir))
        .transpose()
}

async fn acquire(req: Request) -> Result<Arc<EtcdHold>> {
    let mut revoker = None;
    let dir = req.cfg.lock_dir(&req.key);
    let out = acquire_inner(req, &mut revoker)
        .await
        .map_err(|e| e.for_etcd_lock(&dir));
    if out.is_err()
        && let Some(mut r) = revoker.take()
        && r.armed
    {
        // Revoke before answering: a CLI that exits right after a timeout
        // must not leave its key queued until the lease expires.
        r.armed = false;
        if let Some(s) = &r.shared {
            s.finish();
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), r.client.lease_revoke(r.lease)).await;
    }
    out
}

/// etcd's lock recipe, in its steps: connect (and, for `try_acquire`, say
/// who holds the lock without creating anything), grant a lease, put our
/// key, stamp the fencing token into it, start the keep-alive, wait until
/// no key created before ours is left, and hold.
async fn acquire_inner(req: Request, slot: &mut Option<Revoker>) -> Result<Arc<EtcdHold>> {
    let Request {
        cfg,
        key,
        target,
        opts,
        attempt,
    } = req;
    let try_only = attempt == Attempt::Once;
    let started = Instant::now();
    let deadline = if try_only {
        None
    } else {
        opts.timeout.and_then(|t| started.checked_add(t))
    };
    let dir = cfg.lock_dir(&key);
    let lock_path = PathBuf::from(&dir);
    let mut client = connect::client(&cfg, deadline).await?;

    // try_acquire: if someone holds it, say who without creating anything.
    if try_only && let Some(h) = holder(&mut client, &cfg, &dir, None).await? {
        return Err(busy(lock_path, Some(&h)));
    }

    // The grant's lease is in a `Revoker` from the moment it exists (see
    // `grant`): an acquire cancelled at any point revokes it.
    let (revoker, granted_ttl) = grant(&cfg, &client, deadline).await?;
    let lease = revoker.lease;
    let revoker = slot.insert(revoker);
    let record = crate::record::OwnerRecord::ours(
        opts.max_hold,
        opts.label.clone(),
        format!("{lease:016x}"),
        false,
    );
    let mut place = Place {
        my_key: format!("{dir}{lease:016x}"),
        my_rev: 0,
        cfg,
        client,
        dir,
        lock_path,
        deadline,
        lease,
        granted_ttl,
    };
    let first = place.put_key(&record).await?;
    place.stamp_token(&record).await?;

    // The lease counts from before the grant was asked for: conservative.
    let shared = Shared::new(started + granted_ttl - hold::margin(granted_ttl));
    revoker.shared = Some(shared.clone());
    hold::spawn_keep_alive(
        place.client.clone(),
        place.cfg.clone(),
        shared.clone(),
        lease,
        granted_ttl,
        place.my_key.clone(),
        place.my_rev,
    );

    place
        .wait_turn(&shared, first, try_only, started, &opts)
        .await?;
    // Nobody created before us is left: we hold the lock.
    if let Some(reason) = shared.lost() {
        return Err(Error::from(Repr::LockLost {
            lock_path: place.lock_path,
            reason,
        }));
    }
    revoker.armed = false;
    Ok(EtcdHold::new(
        place.cfg,
        place.client,
        shared,
        key,
        place.my_key,
        place.lock_path,
        target,
        record,
        lease,
        place.my_rev,
        granted_ttl,
        &opts,
    ))
}

/// `Busy`, naming the holder where known.
fn busy(lock_path: PathBuf, holder: Option<&Contender>) -> Error {
    Error::from(Repr::Busy {
        lock_path,
        owner: Box::new(holder.map(Contender::owner).unwrap_or_default()),
        reasons: vec![],
        guard: None,
    })
}

/// Grant our lease: a [`Revoker`] holding it, and the TTL granted. The
/// grant runs as a task of its own whose answer carries the `Revoker`, so
/// an acquire cancelled while the grant is in flight, or before it took
/// the answer, drops that `Revoker`, which revokes the lease instead of
/// leaving it to expire (cli/tests/conformance.rs,
/// `async_cancellation_leaves_nothing`).
async fn grant(
    cfg: &EtcdBackend,
    client: &Client,
    deadline: Option<Instant>,
) -> Result<(Revoker, Duration)> {
    let ttl_s = cfg.lease_ttl.as_secs() as i64;
    let (granted, grant_rx) = tokio::sync::oneshot::channel();
    let (grant_cfg, grant_client) = (cfg.clone(), client.clone());
    tokio::spawn(async move {
        let grant = rpc(&grant_cfg, deadline, &grant_client, |mut c| async move {
            c.lease_grant(ttl_s, None).await
        })
        .await
        .map(|g| {
            let revoker = Revoker {
                client: grant_client.clone(),
                lease: g.id(),
                armed: true,
                shared: None,
            };
            (revoker, Duration::from_secs(g.ttl().max(1) as u64))
        });
        let _ = granted.send(grant);
    });
    grant_rx.await.map_err(|_| no_answer(cfg))?
}

/// Our place in a lock's queue: our lease and key, and what the steps after
/// the grant need.
struct Place {
    cfg: EtcdBackend,
    client: Client,
    /// The lock's key prefix (`<prefix><lock>/`), and the same as a path
    /// for errors.
    dir: String,
    lock_path: PathBuf,
    deadline: Option<Instant>,
    lease: i64,
    granted_ttl: Duration,
    /// Our contender key, `<dir><lease id>`.
    my_key: String,
    /// Our key's create revision (the fencing token); 0 until
    /// [`Place::put_key`].
    my_rev: i64,
}

impl Place {
    /// Our key's value: the owner record plus the lease (and the fencing
    /// token, once known).
    fn value(&self, record: &OwnerRecord, fencing_token: Option<i64>) -> Result<Vec<u8>> {
        serde_json::to_vec(&Value {
            record,
            lease_id: format!("{:016x}", self.lease),
            lease_ttl_ms: self.granted_ttl.as_millis() as u64,
            fencing_token,
        })
        .map_err(|e| {
            Error::io(
                "encode owner record for",
                &self.lock_path,
                io::Error::other(e),
            )
        })
    }

    /// One transaction: create our key (only if absent: etcd's recipe), and
    /// read the lowest create revision under the prefix (the holder, which
    /// is returned). Sets [`Place::my_rev`].
    async fn put_key(&mut self, record: &OwnerRecord) -> Result<Option<Contender>> {
        let put = Txn::new()
            .when([Compare::create_revision(
                self.my_key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then([
                TxnOp::put(
                    self.my_key.as_str(),
                    self.value(record, None)?,
                    Some(etcd_client::PutOptions::new().with_lease(self.lease)),
                ),
                TxnOp::get(self.dir.as_str(), Some(first_by_create())),
            ]);
        let resp = rpc(&self.cfg, self.deadline, &self.client, |mut c| {
            let put = put.clone();
            async move { c.txn(put).await }
        })
        .await?;
        let mut first: Option<Contender> = None;
        self.my_rev = if resp.succeeded() {
            for op in resp.op_responses() {
                if let TxnOpResponse::Get(g) = op
                    && let Some(kv) = g.kvs().first()
                {
                    first = Some(Contender::from_kv(kv, &self.dir)?);
                }
            }
            resp.header().map(|h| h.revision()).unwrap_or_default()
        } else {
            // Our key exists already: a retried transaction whose first try
            // was applied (then it carries our lease), or not ours at all.
            let k = self.my_key.clone();
            let g = rpc(&self.cfg, self.deadline, &self.client, |mut c| {
                let k = k.clone();
                async move { c.get(k, None).await }
            })
            .await?;
            match g.kvs().first() {
                Some(kv) if kv.lease() == self.lease => kv.create_revision(),
                _ => {
                    return Err(foreign_error(
                        &self.my_key,
                        "our own lease's key already exists",
                    ));
                }
            }
        };
        Ok(first)
    }

    /// The fencing token is our key's create revision, known only now: write
    /// it into the stored record too (one more round trip; the compare keeps
    /// the write to our own key as created, and successors watch deletions
    /// only, so it wakes nobody).
    async fn stamp_token(&self, record: &OwnerRecord) -> Result<()> {
        let stamp = Txn::new()
            .when([Compare::create_revision(
                self.my_key.as_str(),
                CompareOp::Equal,
                self.my_rev,
            )])
            .and_then([TxnOp::put(
                self.my_key.as_str(),
                self.value(record, Some(self.my_rev))?,
                Some(etcd_client::PutOptions::new().with_lease(self.lease)),
            )]);
        let stamped = rpc(&self.cfg, self.deadline, &self.client, |mut c| {
            let stamp = stamp.clone();
            async move { c.txn(stamp).await }
        })
        .await?;
        if !stamped.succeeded() {
            return Err(Error::from(Repr::LockLost {
                lock_path: self.lock_path.clone(),
                reason: crate::LostReason::KeyDeleted {
                    key: self.my_key.clone(),
                },
            }));
        }
        Ok(())
    }

    /// Wait until no key created before ours is left (`first`: the holder
    /// the put saw). `try_acquire` does not wait: someone who got in
    /// between our look and our put makes it `Busy`. The `on_wait` hook
    /// runs at most once, and only here: once we know someone holds the
    /// lock (never while connecting).
    async fn wait_turn(
        &mut self,
        shared: &Shared,
        mut first: Option<Contender>,
        try_only: bool,
        started: Instant,
        opts: &LockOptions,
    ) -> Result<()> {
        let mut last_holder = first.clone();
        let mut hook = opts.on_wait.clone();
        loop {
            let (pred, read_rev) = if first.as_ref().is_some_and(|f| f.key == self.my_key) {
                (None, self.my_rev)
            } else if try_only {
                return Err(busy(self.lock_path.clone(), last_holder.as_ref()));
            } else {
                self.predecessor().await?
            };
            let Some(pred) = pred else {
                return Ok(());
            };
            let waited = self
                .wait_for(&pred, read_rev, shared, &mut hook, started)
                .await;
            match waited {
                Waited::Deleted => {}
                Waited::Hook => continue,
                Waited::TimedOut => {
                    let bound = Some(Instant::now() + Duration::from_millis(500));
                    if let Ok(Some(h)) = holder(&mut self.client, &self.cfg, &self.dir, bound).await
                    {
                        last_holder = Some(h);
                    }
                    return Err(Error::from(Repr::Timeout {
                        lock_path: self.lock_path.clone(),
                        timeout: opts.timeout.unwrap_or(Duration::MAX),
                        owner: Box::new(last_holder.map(|h| h.owner()).unwrap_or_default()),
                        reasons: vec![],
                        guard: None,
                    }));
                }
                Waited::Lost(reason) => {
                    return Err(Error::from(Repr::LockLost {
                        lock_path: self.lock_path.clone(),
                        reason,
                    }));
                }
            }
            first = None;
            last_holder = None;
        }
    }

    /// Our predecessor (the key created last before ours), if any, and the
    /// revision of the read that found it.
    async fn predecessor(&self) -> Result<(Option<Contender>, i64)> {
        let pred_opts = GetOptions::new()
            .with_prefix()
            .with_max_create_revision(self.my_rev)
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_limit(2);
        let d = self.dir.clone();
        let g = rpc(&self.cfg, self.deadline, &self.client, |mut c| {
            let (d, o) = (d.clone(), pred_opts.clone());
            async move { c.get(d, Some(o)).await }
        })
        .await?;
        let rev = g.header().map(|h| h.revision()).unwrap_or_default();
        let kvs = g.kvs();
        if kvs
            .first()
            .is_none_or(|kv| kv.key() != self.my_key.as_bytes())
        {
            return Err(Error::from(Repr::LockLost {
                lock_path: self.lock_path.clone(),
                reason: crate::LostReason::LeaseExpired {
                    detail: "our contender key vanished while we waited".into(),
                },
            }));
        }
        match kvs.get(1) {
            Some(kv) => Ok((Some(Contender::from_kv(kv, &self.dir)?), rev)),
            None => Ok((None, rev)),
        }
    }

    /// Wait for the predecessor's deletion (watched from the revision of
    /// the read that found it: a deletion since then is replayed), for the
    /// acquire deadline, for the `on_wait` hook's time (it is called here,
    /// naming the holder), or for our own hold's loss, whichever comes
    /// first.
    async fn wait_for(
        &mut self,
        pred: &Contender,
        read_rev: i64,
        shared: &Shared,
        hook: &mut Option<crate::options::WaitHook>,
        started: Instant,
    ) -> Waited {
        let deadline = self.deadline;
        let due = hook.as_ref().map(|h| started + h.after);
        let wait = wait_deleted(&mut self.client, &self.cfg, &pred.key, read_rev + 1);
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let hook_due = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = hook_due => {}
            r = wait => {
                if let Err(e) = r {
                    // A broken watch: look again (the reads are bounded).
                    tracing::debug!(error = %e, "watch of the predecessor failed; looking again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                return Waited::Deleted;
            }
            _ = expired => return Waited::TimedOut,
            reason = shared.wait_ended() => return Waited::Lost(reason),
        }
        // Name the holder (the lowest key, not our predecessor), read now;
        // then look again and watch anew.
        if let Some(h) = hook.take() {
            let bound = Some(Instant::now() + Duration::from_millis(500));
            if let Ok(Some(holder)) = holder(&mut self.client, &self.cfg, &self.dir, bound).await {
                (h.call)(&holder.owner());
            }
        }
        Waited::Hook
    }
}

/// How [`Place::wait_for`] ended.
enum Waited {
    /// The predecessor's key is gone (or its watch broke): look again.
    Deleted,
    /// The `on_wait` hook ran: look again, keeping what we knew.
    Hook,
    /// The acquire deadline passed.
    TimedOut,
    /// Our own hold ended while we waited (lease lost, key deleted).
    Lost(LostReason),
}

/// Wait until `key` is deleted (a watch from `from_rev` on, deletions only).
/// A broken stream is an error (the caller's loop looks again).
async fn wait_deleted(
    client: &mut Client,
    cfg: &EtcdBackend,
    key: &str,
    from_rev: i64,
) -> Result<()> {
    let opts = WatchOptions::new()
        .with_start_revision(from_rev)
        .with_filters([WatchFilterType::NoPut]);
    let k = key.to_owned();
    let mut stream = rpc(cfg, None, client, |mut c| {
        let (k, o) = (k.clone(), opts.clone());
        async move { c.watch(k, Some(o)).await }
    })
    .await?;
    loop {
        match stream.message().await {
            Ok(Some(resp)) => {
                if resp.canceled() {
                    return Err(Error::etcd(
                        EtcdFailure::Unavailable,
                        "etcd cancelled the watch of",
                        key,
                        resp.cancel_reason(),
                    ));
                }
                if resp
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    crate::etcd::hold::count_wake();
                    return Ok(());
                }
            }
            Ok(None) => {
                return Err(Error::etcd(
                    EtcdFailure::Unavailable,
                    "etcd closed the watch of",
                    key,
                    "stream ended",
                ));
            }
            Err(e) => return Err(map_err(cfg, Call::Request, &e)),
        }
    }
}

// ----------------------------------------------------------------- status

/// One lock under the prefix, as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LockStatus {
    /// The lock's key (decoded).
    pub key: String,
    /// The holder's etcd key.
    pub holder_key: String,
    /// The holder's owner record.
    pub owner: OwnerRecord,
    /// Seconds left on the holder's lease (`None`: could not be read).
    pub lease_ttl_left_s: Option<i64>,
    /// The holder's fencing token (its key's create revision).
    pub token: i64,
    /// Contenders waiting behind the holder.
    pub waiters: usize,
    /// Keys under this lock's prefix that are not ours.
    pub foreign: Vec<String>,
}

/// Every lock under the backend's prefix, holders first by key.
///
/// # Errors
/// Unreachable or refusing etcd, as one line naming the endpoints.
pub fn status(cfg: &EtcdBackend) -> Result<Vec<LockStatus>> {
    let cfg = cfg.clone();
    block(&cfg.clone(), async move {
        let client = connect::client(&cfg, None).await?;
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        let prefix = cfg.prefix.clone();
        let resp = rpc(&cfg, None, &client, |mut c| {
            let (p, o) = (prefix.clone(), opts.clone());
            async move { c.get(p, Some(o)).await }
        })
        .await?;
        let mut by_lock: std::collections::BTreeMap<String, (Vec<Contender>, Vec<String>)> =
            Default::default();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let rest = key.strip_prefix(&cfg.prefix).unwrap_or(&key);
            let Some((enc, _)) = rest.rsplit_once('/') else {
                by_lock.entry(String::new()).or_default().1.push(key);
                continue;
            };
            let dir = format!("{}{enc}/", cfg.prefix);
            let entry = by_lock.entry(decode_key(enc)).or_default();
            match Contender::from_kv(kv, &dir) {
                Ok(c) => entry.0.push(c),
                Err(_) => entry.1.push(key),
            }
        }
        let mut out = Vec::new();
        for (key, (contenders, foreign)) in by_lock {
            let Some(h) = contenders.first() else {
                out.push(LockStatus {
                    key,
                    holder_key: String::new(),
                    owner: OwnerRecord::default(),
                    lease_ttl_left_s: None,
                    token: 0,
                    waiters: 0,
                    foreign,
                });
                continue;
            };
            let lease = h.lease;
            let ttl = rpc(&cfg, None, &client, |mut c| async move {
                c.lease_time_to_live(lease, None).await
            })
            .await
            .ok()
            .map(|r| r.ttl());
            out.push(LockStatus {
                key,
                holder_key: h.key.clone(),
                owner: h.record.clone(),
                lease_ttl_left_s: ttl,
                token: h.create_revision,
                waiters: contenders.len() - 1,
                foreign,
            });
        }
        Ok(out)
    })
}

/// The floor any etcd lock pays, for measuring a cluster: one
/// put-if-absent transaction and one delete of `key` (two round trips that
/// write), through the same connection settings and client the locks use.
/// `session-lock bench --backend etcd://...` reports it next to our
/// acquire and release.
///
/// # Errors
/// As connecting and the two requests fail (see [`crate::Error::etcd_failure`]).
pub fn raw_txn_roundtrip(cfg: &EtcdBackend, key: &str) -> Result<()> {
    let cfg = cfg.clone();
    let key = key.to_owned();
    block(&cfg.clone(), async move {
        let client = connect::client(&cfg, None).await?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), "x", None)]);
        let t = txn.clone();
        rpc(&cfg, None, &client, |mut c| {
            let t = t.clone();
            async move { c.txn(t).await }
        })
        .await?;
        let k = key.clone();
        rpc(&cfg, None, &client, |mut c| {
            let k = k.clone();
            async move { c.delete(k, None).await }
        })
        .await?;
        Ok(())
    })
}

/// Seams for the tests (`__private`).
#[cfg(feature = "fault-injection")]
pub(crate) mod testing {
    use super::EtcdBackend;

    /// Run `f` on the etcd thread, without waiting for it.
    pub(crate) fn run_on_etcd_thread(cfg: &EtcdBackend, f: impl FnOnce() + Send + 'static) -> bool {
        let Ok(rt) = super::runtime(cfg) else {
            return false;
        };
        rt.spawn(async move { f() });
        true
    }
}
