//! The etcd v3 backend (feature `etcd`): the same guard and promises as the
//! lock-file protocol, kept by an etcd cluster. See `docs/distributed.md`.
//!
//! The recipe is etcd's own (`client/v3/concurrency`, `Mutex`), not a
//! protocol of ours:
//!
//! * every contender grants a **lease** (TTL [`EtcdBackend::lease_ttl`]) and
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

mod hold;

pub(crate) use hold::release_all;
pub use hold::{EtcdHold, wakes};

use crate::error::{Error, Owner, Repr, Result};
use crate::options::LockOptions;
use crate::record::{OwnerRecord, ParsedRecord};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse, WatchFilterType, WatchOptions,
};
use hold::Shared;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// Keys of this crate live under this prefix unless
/// [`EtcdBackend::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "/session-lock/";

/// Lease TTL unless [`EtcdBackend::lease_ttl`] says otherwise: 10 s.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// etcd grants leases in whole seconds; shorter TTLs are raised to this.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(1);

/// An etcd cluster to keep locks in. Build with [`EtcdBackend::new`] or
/// [`crate::Backend::parse`]`("etcd://HOST:PORT,...")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdBackend {
    endpoints: Vec<String>,
    prefix: String,
    lease_ttl: Duration,
    key: Option<String>,
}

impl EtcdBackend {
    /// A backend on these endpoints (`HOST:PORT`, or `http://HOST:PORT`).
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> EtcdBackend {
        EtcdBackend {
            endpoints: endpoints
                .into_iter()
                .map(|e| {
                    let e = e.into();
                    e.strip_prefix("http://").map(str::to_owned).unwrap_or(e)
                })
                .collect(),
            prefix: DEFAULT_PREFIX.to_owned(),
            lease_ttl: DEFAULT_LEASE_TTL,
            key: None,
        }
    }

    /// From the part of an `etcd://` URL after the scheme: `HOST:PORT[,HOST:PORT...]`.
    ///
    /// # Errors
    /// A one-line message naming what is wrong.
    pub fn from_hosts(hosts: &str) -> std::result::Result<EtcdBackend, String> {
        let hosts = hosts.trim_end_matches('/');
        let mut out = Vec::new();
        for h in hosts.split(',') {
            let h = h.trim();
            let port_ok = h
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok || h.contains('/') {
                return Err(format!(
                    "etcd endpoint {h:?} in \"etcd://{hosts}\": expected HOST:PORT (several separated by commas)"
                ));
            }
            out.push(h.to_owned());
        }
        Ok(EtcdBackend::new(out))
    }

    /// Keys live under this prefix (default [`DEFAULT_PREFIX`]); a `/` is
    /// added at the end if missing.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let mut p = prefix.into();
        if !p.ends_with('/') {
            p.push('/');
        }
        self.prefix = p;
        self
    }

    /// Lease TTL (default [`DEFAULT_LEASE_TTL`]; whole seconds, at least
    /// [`MIN_LEASE_TTL`]). A killed holder's lock is free after about this long.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        self.lease_ttl = Duration::from_secs(secs.max(MIN_LEASE_TTL.as_secs()));
        self
    }

    /// Name the lock explicitly instead of by the transcript's canonical
    /// path (hosts that mount the sessions at different paths must agree on
    /// a key).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The key prefix.
    pub fn get_prefix(&self) -> &str {
        &self.prefix
    }

    /// The lease TTL.
    pub fn get_lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// The explicit lock key, if any.
    pub fn get_key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// `etcd://HOST:PORT,...`, for messages.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints.join(","))
    }

    /// The etcd key prefix of one lock: `<prefix><encoded key>/`.
    pub fn lock_dir(&self, key: &str) -> String {
        format!("{}{}/", self.prefix, encode_key(key))
    }
}

/// Percent-encode `%` and `/` so a lock's contenders never fall under
/// another lock's prefix.
pub fn encode_key(key: &str) -> String {
    key.replace('%', "%25").replace('/', "%2F")
}

/// Undo [`encode_key`].
pub fn decode_key(enc: &str) -> String {
    enc.replace("%2F", "/")
        .replace("%2f", "/")
        .replace("%25", "%")
}

// ---------------------------------------------------------------- runtime

/// The process's etcd thread: a current-thread tokio runtime that runs
/// every RPC, watch and keep-alive of this process.
fn runtime() -> Result<&'static tokio::runtime::Handle> {
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
        Error::io(
            "start the etcd thread for",
            std::path::Path::new("etcd"),
            io::Error::other(e.clone()),
        )
    })
}

const THREAD_NAME: &str = "session-lock-etcd";

/// Whether the caller runs on the etcd thread (where blocking on it would
/// deadlock).
pub(crate) fn on_etcd_thread() -> bool {
    std::thread::current().name() == Some(THREAD_NAME)
}

/// Run `fut` on the etcd thread and wait for it (blocking API).
pub(crate) fn block<T: Send + 'static>(
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let handle = runtime()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(Error::io(
            "etcd task",
            std::path::Path::new("etcd"),
            io::Error::other("the etcd task ended without an answer"),
        ))
    })
}

/// Run `fut` on the etcd thread and await it from any runtime (async API).
/// Dropping the returned future drops `fut` on the etcd thread (cancelling
/// an acquire revokes its lease there).
#[cfg(feature = "tokio")]
pub(crate) async fn run_async<T: Send + 'static>(
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let handle = runtime()?;
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
    rx.await.unwrap_or_else(|_| {
        Err(Error::io(
            "etcd task",
            std::path::Path::new("etcd"),
            io::Error::other("the etcd task ended without an answer"),
        ))
    })
}

/// The client for `cfg`'s endpoints: one per endpoint list, shared by
/// every lock of the process (connecting is lazy: errors surface on the
/// first request).
async fn client_async(cfg: &EtcdBackend) -> Result<Client> {
    static CLIENTS: OnceLock<Mutex<HashMap<Vec<String>, Client>>> = OnceLock::new();
    if let Some(c) = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&cfg.endpoints)
    {
        return Ok(c.clone());
    }
    let eps: Vec<String> = cfg
        .endpoints
        .iter()
        .map(|e| format!("http://{e}"))
        .collect();
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_require_leader(true);
    let c = Client::connect(eps, Some(opts))
        .await
        .map_err(|e| map_err(&cfg.url(), e))?;
    CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(cfg.endpoints.clone())
        .or_insert(c.clone());
    Ok(c)
}

// ----------------------------------------------------------------- errors

/// An etcd client error as one clear line naming the endpoints.
pub(crate) fn map_err(url: &str, e: etcd_client::Error) -> Error {
    let path = std::path::Path::new(url);
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            use tonic_code::*;
            let msg = s.message().to_owned();
            let code = s.code() as i32;
            let auth = code == UNAUTHENTICATED
                || code == PERMISSION_DENIED
                || msg.contains("user name is empty")
                || msg.contains("authentication failed")
                || msg.contains("permission denied")
                || msg.contains("invalid auth token");
            if auth {
                Error::io(
                    "etcd refused access at",
                    path,
                    io::Error::new(io::ErrorKind::PermissionDenied, msg),
                )
            } else if code == UNAVAILABLE || code == DEADLINE_EXCEEDED {
                Error::io(
                    "etcd unavailable at",
                    path,
                    io::Error::new(io::ErrorKind::ConnectionRefused, msg),
                )
            } else {
                Error::io("etcd request failed at", path, io::Error::other(msg))
            }
        }
        etcd_client::Error::TransportError(t) => Error::io(
            "cannot reach etcd at",
            path,
            io::Error::new(io::ErrorKind::ConnectionRefused, t.to_string()),
        ),
        other => Error::io(
            "etcd request failed at",
            path,
            io::Error::other(other.to_string()),
        ),
    }
}

/// gRPC status codes (numbers from the gRPC spec).
mod tonic_code {
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

fn unreachable_error(url: &str, within: Duration, last: Option<Error>) -> Error {
    let why = match last {
        Some(e) if e.io_error().is_some() => {
            format!(" (last error: {})", e.io_error().expect("checked"))
        }
        Some(e) => format!(" (last error: {e})"),
        None => String::new(),
    };
    Error::io(
        "cannot reach etcd at",
        std::path::Path::new(url),
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no usable answer within {}ms{why}", within.as_millis()),
        ),
    )
}

/// Errors worth trying again on another connection or after an election:
/// everything but a refusal of access and a missing lease.
fn retryable(e: &Error) -> bool {
    let text = e.to_string();
    e.kind() != crate::ErrorKind::PermissionDenied && !text.contains("lease not found")
}

fn foreign_error(key: &str, why: &str) -> Error {
    Error::io(
        "a key written by something else is under the lock prefix:",
        std::path::Path::new(key),
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{why}; not a session-lock contender (remove it, or use another --prefix)"),
        ),
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
                let err = map_err(&cfg.url(), e);
                if !retryable(&err) {
                    return Err(err);
                }
                last = Some(err);
                let pause = tokio::time::sleep(Duration::from_millis(50));
                if tokio::time::timeout_at(until, pause).await.is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    Err(unreachable_error(&cfg.url(), until - now, last))
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
    let paths = crate::lock::LockPaths::resolve_with(target, opts)?;
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
    pub try_only: bool,
}

/// Blocking acquire / try_acquire.
pub(crate) fn acquire_blocking(
    target: &std::path::Path,
    cfg: &EtcdBackend,
    opts: &LockOptions,
    try_only: bool,
) -> Result<crate::LockGuard> {
    let (key, target) = lock_key(cfg, target, opts)?;
    let req = Request {
        cfg: cfg.clone(),
        key,
        target,
        opts: opts.clone(),
        try_only,
    };
    let hold = block(acquire(req))?;
    Ok(hold.into_guard())
}

/// Async acquire / try_acquire.
#[cfg(feature = "tokio")]
pub(crate) async fn acquire_async(
    target: &std::path::Path,
    cfg: &EtcdBackend,
    opts: &LockOptions,
    try_only: bool,
) -> Result<crate::LockGuard> {
    let (key, target) = lock_key(cfg, target, opts)?;
    let req = Request {
        cfg: cfg.clone(),
        key,
        target,
        opts: opts.clone(),
        try_only,
    };
    let hold = run_async(acquire(req)).await?;
    Ok(hold.into_guard())
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
    let out = acquire_inner(req, &mut revoker).await;
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

async fn acquire_inner(req: Request, slot: &mut Option<Revoker>) -> Result<Arc<EtcdHold>> {
    let Request {
        cfg,
        key,
        target,
        opts,
        try_only,
    } = req;
    let started = Instant::now();
    let deadline = if try_only {
        None
    } else {
        opts.timeout.and_then(|t| started.checked_add(t))
    };
    let dir = cfg.lock_dir(&key);
    let lock_path = PathBuf::from(&dir);
    let mut client = client_async(&cfg).await?;

    // try_acquire: if someone holds it, say who without creating anything.
    if try_only && let Some(h) = holder(&mut client, &cfg, &dir, None).await? {
        return Err(Error::from(Repr::Busy {
            lock_path,
            owner: Box::new(h.owner()),
            reasons: vec![],
            guard: None,
        }));
    }

    let ttl_s = cfg.lease_ttl.as_secs() as i64;
    let grant = rpc(&cfg, deadline, &client, |mut c| async move {
        c.lease_grant(ttl_s, None).await
    })
    .await?;
    let lease = grant.id();
    let granted_ttl = Duration::from_secs(grant.ttl().max(1) as u64);
    // Counted from before the grant was asked for: conservative.
    let lease_start = started;
    let revoker = slot.insert(Revoker {
        client: client.clone(),
        lease,
        armed: true,
        shared: None,
    });
    let my_key = format!("{dir}{lease:016x}");
    let record = crate::lock::publish::build_record(&opts, format!("{lease:016x}"), false);
    let value = serde_json::to_vec(&Value {
        record: &record,
        lease_id: format!("{lease:016x}"),
        lease_ttl_ms: granted_ttl.as_millis() as u64,
        fencing_token: None,
    })
    .map_err(|e| Error::io("encode owner record for", &lock_path, io::Error::other(e)))?;

    // One transaction: create our key (only if absent: etcd's recipe), and
    // read the lowest and the two highest create revisions under the prefix
    // (the highest is ours, the next one our predecessor).
    let put = Txn::new()
        .when([Compare::create_revision(
            my_key.as_str(),
            CompareOp::Equal,
            0,
        )])
        .and_then([
            TxnOp::put(
                my_key.as_str(),
                value,
                Some(etcd_client::PutOptions::new().with_lease(lease)),
            ),
            TxnOp::get(dir.as_str(), Some(first_by_create())),
        ]);
    let resp = rpc(&cfg, deadline, &client, |mut c| {
        let put = put.clone();
        async move { c.txn(put).await }
    })
    .await?;
    let mut first: Option<Contender> = None;
    let my_rev = if resp.succeeded() {
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(g) = op
                && let Some(kv) = g.kvs().first()
            {
                first = Some(Contender::from_kv(kv, &dir)?);
            }
        }
        resp.header().map(|h| h.revision()).unwrap_or_default()
    } else {
        // Our key exists already: a retried transaction whose first try
        // was applied (then it carries our lease), or not ours at all.
        let k = my_key.clone();
        let g = rpc(&cfg, deadline, &client, |mut c| {
            let k = k.clone();
            async move { c.get(k, None).await }
        })
        .await?;
        match g.kvs().first() {
            Some(kv) if kv.lease() == lease => kv.create_revision(),
            _ => return Err(foreign_error(&my_key, "our own lease's key already exists")),
        }
    };

    // The fencing token is our key's create revision, known only now: write
    // it into the stored record too (one more round trip; the compare keeps
    // the write to our own key as created, and successors watch deletions
    // only, so it wakes nobody).
    let tokened = serde_json::to_vec(&Value {
        record: &record,
        lease_id: format!("{lease:016x}"),
        lease_ttl_ms: granted_ttl.as_millis() as u64,
        fencing_token: Some(my_rev),
    })
    .map_err(|e| Error::io("encode owner record for", &lock_path, io::Error::other(e)))?;
    let stamp = Txn::new()
        .when([Compare::create_revision(
            my_key.as_str(),
            CompareOp::Equal,
            my_rev,
        )])
        .and_then([TxnOp::put(
            my_key.as_str(),
            tokened,
            Some(etcd_client::PutOptions::new().with_lease(lease)),
        )]);
    let stamped = rpc(&cfg, deadline, &client, |mut c| {
        let stamp = stamp.clone();
        async move { c.txn(stamp).await }
    })
    .await?;
    if !stamped.succeeded() {
        return Err(Error::from(Repr::LockLost {
            lock_path,
            reason: crate::LostReason::KeyDeleted { key: my_key },
        }));
    }

    let shared = Shared::new(lease_start + granted_ttl - hold::margin(granted_ttl));
    revoker.shared = Some(shared.clone());
    hold::spawn_keep_alive(
        client.clone(),
        cfg.clone(),
        shared.clone(),
        lease,
        granted_ttl,
        my_key.clone(),
        my_rev,
    );

    let mut last_holder = first.clone();
    loop {
        // Predecessor: the key created last before ours.
        let pred_opts = GetOptions::new()
            .with_prefix()
            .with_max_create_revision(my_rev)
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_limit(2);
        let (pred, read_rev) = if first.as_ref().is_some_and(|f| f.key == my_key) {
            (None, my_rev)
        } else if try_only {
            // Someone got in between our look and our put (the caller
            // revokes our lease).
            return Err(Error::from(Repr::Busy {
                lock_path,
                owner: Box::new(last_holder.map(|h| h.owner()).unwrap_or_default()),
                reasons: vec![],
                guard: None,
            }));
        } else {
            let d = dir.clone();
            let g = rpc(&cfg, deadline, &client, |mut c| {
                let (d, o) = (d.clone(), pred_opts.clone());
                async move { c.get(d, Some(o)).await }
            })
            .await?;
            let rev = g.header().map(|h| h.revision()).unwrap_or_default();
            let kvs = g.kvs();
            if kvs.first().is_none_or(|kv| kv.key() != my_key.as_bytes()) {
                return Err(Error::from(Repr::LockLost {
                    lock_path,
                    reason: crate::LostReason::LeaseExpired {
                        detail: "our contender key vanished while we waited".into(),
                    },
                }));
            }
            match kvs.get(1) {
                Some(kv) => (Some(Contender::from_kv(kv, &dir)?), rev),
                None => (None, rev),
            }
        };
        let Some(pred) = pred else {
            // Nobody created before us is left: we hold the lock.
            if let Some(reason) = shared.lost() {
                return Err(Error::from(Repr::LockLost { lock_path, reason }));
            }
            revoker.armed = false;
            return Ok(EtcdHold::new(
                cfg.clone(),
                client,
                shared,
                key,
                my_key,
                lock_path,
                target,
                record,
                lease,
                my_rev,
                granted_ttl,
                &opts,
            ));
        };
        // Wait for the predecessor's deletion (watch from the revision of
        // the read that found it: a deletion since then is replayed).
        let wait = wait_deleted(&mut client, &cfg, &pred.key, read_rev + 1);
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = wait => {
                if let Err(e) = r {
                    // A broken watch: look again (the reads are bounded).
                    tracing::debug!(error = %e, "watch of the predecessor failed; looking again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            _ = expired => {
                if let Ok(Some(h)) = holder(&mut client, &cfg, &dir, Some(Instant::now() + Duration::from_millis(500))).await {
                    last_holder = Some(h);
                }
                return Err(Error::from(Repr::Timeout {
                    lock_path,
                    timeout: opts.timeout.unwrap_or(Duration::MAX),
                    owner: Box::new(last_holder.map(|h| h.owner()).unwrap_or_default()),
                    reasons: vec![],
                    guard: None,
                }));
            }
            reason = shared.wait_lost() => {
                return Err(Error::from(Repr::LockLost { lock_path, reason }));
            }
        }
        first = None;
        last_holder = None;
    }
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
                    return Err(Error::io(
                        "etcd cancelled the watch of",
                        std::path::Path::new(key),
                        io::Error::other(resp.cancel_reason().to_owned()),
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
                return Err(Error::io(
                    "etcd closed the watch of",
                    std::path::Path::new(key),
                    io::Error::new(io::ErrorKind::ConnectionAborted, "stream ended"),
                ));
            }
            Err(e) => return Err(map_err(&cfg.url(), e)),
        }
    }
}

// ----------------------------------------------------------------- status

/// One lock under the prefix, as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
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
    block(async move {
        let client = client_async(&cfg).await?;
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

/// Raw round trips for `bench`: one put-if-absent transaction and one
/// delete on `key`, against the same cluster and client the locks use.
#[doc(hidden)]
pub fn raw_txn_roundtrip(cfg: &EtcdBackend, key: &str) -> Result<()> {
    let cfg = cfg.clone();
    let key = key.to_owned();
    block(async move {
        let client = client_async(&cfg).await?;
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
