//! Connecting to etcd: TLS (server verification, client certificates, the
//! server name), user and password, one client per connection setting
//! shared by every lock of the process, and the one-line errors that name
//! what went wrong (TLS, authentication, permission, unreachable).

use super::EtcdBackend;
use crate::backend::etcd::{Password, TlsSettings};
use crate::error::{Error, EtcdFailure, Repr, Result};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// Everything that makes one connection differ from another: clients are
/// shared per value of this (the lock prefix, TTL and key do not matter).
#[derive(Clone, PartialEq, Eq, Hash)]
struct ConnKey {
    endpoints: Vec<String>,
    tls: TlsSettings,
    user: Option<(String, Password)>,
    connect_timeout: Duration,
}

/// Which request failed: etcd answers the same gRPC code for different
/// things on different calls (`api/v3rpc/rpctypes/error.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// `Authenticate` (the client's `update_user`): every refusal of it is
    /// about the credentials.
    Authenticate,
    /// Any other request (KV, lease, watch, status).
    Request,
}

/// What a failed request of the etcd client says, by type: the decision
/// behind every error of the backend (its words only go into the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Diagnosis {
    pub failure: EtcdFailure,
    /// rustls's verdict, for a TLS failure.
    pub tls: Option<TlsProblem>,
}

/// Which TLS setting a handshake failure points at, from rustls's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsProblem {
    /// The server's certificate is not signed by a CA we trust.
    UnknownIssuer,
    /// The server's certificate is made out to another name.
    WrongName,
    /// The server's certificate has expired or is not valid yet.
    Expired,
    /// The server sent an alert: it refused our client certificate, or the
    /// lack of one.
    ServerAlert,
    /// The TLS layer failed after the handshake, its verdict's type lost on
    /// the way (see [`tls_after_handshake`]): on a client connection, the
    /// server's alert refusing our client certificate, or the lack of one.
    AfterHandshake,
    /// Anything else (a server that does not speak TLS, ...).
    Other,
}

/// The failure a gRPC status code means for `call`, with or without a
/// user configured. From etcd's `api/v3rpc/rpctypes/error.go`:
///
/// * `PermissionDenied`: only `ErrGRPCPermissionDenied` ("permission
///   denied": the user's roles do not cover the key).
/// * `Unauthenticated`: `ErrGRPCInvalidAuthToken` (a token the client's
///   automatic refresh could not renew).
/// * On `Authenticate`, `InvalidArgument` is `ErrGRPCAuthFailed` (wrong user
///   or password) or `ErrGRPCUserEmpty`, and `FailedPrecondition`
///   `ErrGRPCAuthNotEnabled` or `ErrGRPCUserNotFound`: all about the
///   credentials.
/// * On any other request without a user, `InvalidArgument` is
///   `ErrGRPCUserEmpty`: authentication is on and we sent no token. (Its
///   other meanings, a request too large, an empty or duplicate key, a
///   txn with too many operations, cannot be ours: our requests are a few
///   hundred bytes, one key each.) With a user it is something else
///   (`ErrGRPCAuthOldRevision`, ...), left to `Rejected`.
/// * `NotFound`: only `ErrGRPCLeaseNotFound` ("requested lease not found").
/// * `Unavailable`: no leader, leader changed, server stopped, request timed
///   out; `DeadlineExceeded` and `Cancelled` the same from the client side.
pub(crate) fn failure_of(code: tonic::Code, call: Call, has_user: bool) -> EtcdFailure {
    use tonic::Code as C;
    match (code, call) {
        (C::PermissionDenied, _) => EtcdFailure::Permission,
        (C::Unauthenticated, _) => EtcdFailure::Authentication,
        (C::InvalidArgument | C::FailedPrecondition, Call::Authenticate) => {
            EtcdFailure::Authentication
        }
        (C::InvalidArgument, Call::Request) if !has_user => EtcdFailure::Authentication,
        (C::NotFound, _) => EtcdFailure::LeaseNotFound,
        (C::Unavailable | C::DeadlineExceeded | C::Cancelled, _) => EtcdFailure::Unavailable,
        _ => EtcdFailure::Rejected,
    }
}

/// What rustls's error says about the TLS settings.
fn tls_problem(e: &rustls::Error) -> TlsProblem {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => TlsProblem::UnknownIssuer,
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => TlsProblem::WrongName,
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => TlsProblem::Expired,
        rustls::Error::AlertReceived(_) => TlsProblem::ServerAlert,
        _ => TlsProblem::Other,
    }
}

/// Each error in `e`'s chain, `e` first. An [`io::Error`] wrapping another
/// error yields that one too: its `source()` skips it (it returns the
/// wrapped error's source), and that is where tokio-rustls puts rustls's
/// verdict (an `io::Error` of kind `InvalidData` around a
/// `rustls::Error`).
fn sources<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    let mut next: Vec<&'a (dyn std::error::Error + 'static)> = vec![e];
    std::iter::from_fn(move || {
        let cur = next.pop()?;
        if let Some(src) = cur.source() {
            next.push(src);
        }
        if let Some(inner) = cur.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            next.push(inner);
        }
        Some(cur)
    })
}

/// The error the client library wraps: its own type has no `source()`.
fn inner(e: &etcd_client::Error) -> Option<&(dyn std::error::Error + 'static)> {
    match e {
        etcd_client::Error::GRpcStatus(s) => Some(s),
        etcd_client::Error::TransportError(t) => Some(t),
        etcd_client::Error::IoError(io) => Some(io),
        _ => None,
    }
}

/// Every error in an etcd client error's chain, by type.
fn chain_of(e: &etcd_client::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    inner(e).into_iter().flat_map(sources)
}

/// Whether a failed request on a TLS connection (`tls`) met the TLS
/// layer's verdict after the handshake, with rustls's error no longer in
/// the chain: tokio-rustls reports every rustls error as an
/// [`io::Error`] of kind `InvalidData`, h2 keeps only an I/O error's kind
/// and words (h2 0.4, `proto::Error::Io(io::ErrorKind, Option<String>)`),
/// and hyper 1 hands that I/O error on as its error's source (its
/// `Error::new_h2` unwraps h2's I/O errors; were that to change, this
/// falls back to retrying until the connect timeout, and the refusal
/// test of `cli/tests/etcd.rs` sees "timed out"). Nothing else on the way
/// to etcd reports that kind: a TCP stream never does, and h2's own
/// framing errors are protocol errors, not I/O ones. With TLS 1.3 the
/// client's handshake ends before the server has judged the client's
/// certificate, so a server refusing it (or its absence) is heard here,
/// on the first request: as this alert, or as the connection closed
/// ([`closed_under_us`]), whichever the client reads first.
fn tls_after_handshake(e: &etcd_client::Error, tls: bool) -> bool {
    tls && chain_of(e).any(|s| {
        s.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::InvalidData)
    })
}

/// Classify a failed request by type: a rustls error anywhere in the chain
/// is TLS (a handshake failure has no gRPC code of its own: tonic reports
/// it as a transport error, or as a status carrying it as its source), and
/// so is the TLS layer's verdict after the handshake on a TLS connection
/// ([`tls_after_handshake`]); else a gRPC status by its code
/// ([`failure_of`]); else a transport or I/O error is the way to the
/// cluster failing.
pub(crate) fn diagnose(e: &etcd_client::Error, call: Call, has_user: bool, tls: bool) -> Diagnosis {
    if let Some(r) = chain_of(e).find_map(|s| s.downcast_ref::<rustls::Error>()) {
        return Diagnosis {
            failure: EtcdFailure::Tls,
            tls: Some(tls_problem(r)),
        };
    }
    if tls_after_handshake(e, tls) {
        return Diagnosis {
            failure: EtcdFailure::Tls,
            tls: Some(TlsProblem::AfterHandshake),
        };
    }
    let failure = match e {
        // A status the client made from a transport error (it carries that
        // error as its source; tonic gives it `Unknown` or `Unavailable`):
        // the way to the cluster failed, no member said anything.
        etcd_client::Error::GRpcStatus(s) if std::error::Error::source(s).is_some() => {
            EtcdFailure::Unavailable
        }
        etcd_client::Error::GRpcStatus(s) => failure_of(s.code(), call, has_user),
        etcd_client::Error::TransportError(_)
        | etcd_client::Error::IoError(_)
        | etcd_client::Error::WatchError(_)
        | etcd_client::Error::LeaseKeepAliveError(_) => EtcdFailure::Unavailable,
        _ => EtcdFailure::Rejected,
    };
    Diagnosis { failure, tls: None }
}

/// What to tell the user for a failure, beside etcd's (or rustls's) own
/// words.
fn hint(d: Diagnosis, cfg: &EtcdBackend) -> String {
    match d.failure {
        EtcdFailure::Tls => tls_hint(cfg, d.tls.unwrap_or(TlsProblem::Other)),
        EtcdFailure::Authentication => match &cfg.user {
            Some(u) => format!(
                "authentication failed for user {u:?}: check the password (ETCDCTL_PASSWORD, ETCDCTL_USER=user:password or --password-file)"
            ),
            None => "the cluster requires a user and password (--user with ETCDCTL_PASSWORD or --password-file, or ETCDCTL_USER=user:password)".into(),
        },
        EtcdFailure::Permission => format!(
            "{} has no read-write permission on the key prefix {:?} (etcdctl role grant-permission ROLE --prefix=true readwrite {})",
            cfg.user
                .as_deref()
                .map_or_else(|| "the user".to_owned(), |u| format!("user {u:?}")),
            cfg.prefix,
            cfg.prefix
        ),
        _ => String::new(),
    }
}

/// For a cluster that never answered: a TLS server that closes every
/// connection right after the handshake is refusing our client
/// certificate, or the lack of one (its alert races with the close, and
/// the close sometimes wins: seen in the refusal tests), or it does not
/// speak TLS. Then the error is a TLS one, with that hint. `closed`: the
/// last attempt failed with the connection closed under it
/// ([`closed_under_us`]); `why` is that attempt's error, in words.
pub(crate) fn closed_after_handshake(
    cfg: &EtcdBackend,
    within: Duration,
    closed: bool,
    why: &str,
) -> Option<Error> {
    if !(cfg.tls.on && closed) {
        return None;
    }
    let client = if cfg.tls.cert_file.is_some() {
        "our client certificate (--cert / ETCDCTL_CERT) is refused"
    } else {
        "it requires a client certificate (--cert and --cert-key, or ETCDCTL_CERT and ETCDCTL_KEY)"
    };
    Some(Error::etcd(
        EtcdFailure::Tls,
        TLS_OP,
        cfg.url(),
        format!(
            "the server closed every connection within {}ms{why}; most likely {client}, or it does not speak TLS",
            within.as_millis()
        ),
    ))
}

/// Whether a request failed because the connection was closed under it:
/// hyper cancels the requests queued on a connection that closes (its
/// `Canceled` error, "connection closed"), or the OS reports a reset or
/// an early end of stream.
pub(crate) fn closed_under_us(e: &etcd_client::Error) -> bool {
    chain_of(e).any(|s| {
        s.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_canceled() || h.is_closed() || h.is_incomplete_message())
            || s.downcast_ref::<io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                )
            })
    })
}

/// Which TLS setting to look at, from rustls's verdict.
fn tls_hint(cfg: &EtcdBackend, problem: TlsProblem) -> String {
    let ca = if cfg.tls.ca_file.is_some() {
        "the CA file (--cacert / ETCDCTL_CACERT)"
    } else {
        "the system's CAs (no --cacert / ETCDCTL_CACERT given)"
    };
    match problem {
        TlsProblem::UnknownIssuer => format!("the server's certificate is not signed by {ca}"),
        TlsProblem::WrongName => "the server's certificate is made out to another name (--server-name NAME verifies that name instead of the host)".into(),
        TlsProblem::Expired => "the server's certificate has expired or is not valid yet (check it, and this host's clock)".into(),
        TlsProblem::ServerAlert => {
            if cfg.tls.cert_file.is_some() {
                "the server refused our client certificate (--cert / ETCDCTL_CERT): is it signed by the server's --trusted-ca-file?".into()
            } else {
                "the server requires a client certificate: --cert and --cert-key, or ETCDCTL_CERT and ETCDCTL_KEY".into()
            }
        }
        TlsProblem::AfterHandshake => {
            if cfg.tls.cert_file.is_some() {
                "the TLS session failed after the handshake: most likely the server refused our client certificate (--cert / ETCDCTL_CERT): is it signed by the server's --trusted-ca-file, unexpired, and usable for client authentication?".into()
            } else {
                "the TLS session failed after the handshake: most likely the server requires a client certificate (--cert and --cert-key, or ETCDCTL_CERT and ETCDCTL_KEY)".into()
            }
        }
        TlsProblem::Other => format!(
            "check that the server speaks TLS and its certificate is signed by {ca}, unexpired and made out to the endpoint's host"
        ),
    }
}

/// Add `text` to `parts` unless one of them says it already; a part that
/// `text` repeats with more context is replaced by it.
fn push_part(parts: &mut Vec<String>, text: String) {
    let text = text.replace(['\n', '\r'], " ");
    if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
        return;
    }
    parts.retain(|p| !text.contains(p.as_str()));
    parts.push(text);
}

/// An error and its sources (tonic puts the interesting part, rustls's
/// verdict, in a source), each said once.
fn chain(parts: &mut Vec<String>, e: &(dyn std::error::Error + 'static)) {
    push_part(parts, e.to_string());
    let mut cur = e.source();
    while let Some(s) = cur {
        push_part(parts, s.to_string());
        cur = s.source();
    }
}

/// etcd's (or rustls's, or the OS's) words for a client error: the
/// status's message and every source, each said once. For the message
/// only; the decision is [`diagnose`]'s.
fn words(e: &etcd_client::Error) -> String {
    let mut parts = Vec::new();
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            push_part(&mut parts, s.message().to_owned());
            if let Some(src) = std::error::Error::source(s) {
                chain(&mut parts, src);
            }
        }
        other => chain(&mut parts, other),
    }
    parts.join(": ")
}

/// An etcd client error as one line naming the endpoints and the cause.
pub(crate) fn map_err(cfg: &EtcdBackend, call: Call, e: &etcd_client::Error) -> Error {
    error_for(
        cfg,
        diagnose(e, call, cfg.user.is_some(), cfg.tls.on),
        words(e),
    )
}

/// The error for a diagnosis, with etcd's (or rustls's) own words in `text`.
pub(crate) fn error_for(cfg: &EtcdBackend, d: Diagnosis, text: String) -> Error {
    let h = hint(d, cfg);
    let detail = if h.is_empty() {
        text
    } else {
        format!("{text}; {h}")
    };
    let op = match d.failure {
        EtcdFailure::Tls => TLS_OP,
        EtcdFailure::Authentication => "authentication: etcd refused access at",
        EtcdFailure::Permission => "permission: etcd refused access at",
        EtcdFailure::Unavailable => "etcd unavailable at",
        EtcdFailure::Refused | EtcdFailure::TimedOut => "cannot reach etcd at",
        _ => "etcd request failed at",
    };
    Error::etcd(d.failure, op, cfg.url(), detail)
}

/// How every TLS error of the backend begins.
const TLS_OP: &str = "TLS: the secure connection to etcd failed at";

/// Whether an error of ours is worth another try on another connection or
/// after an election: not a refusal (TLS, authentication, permission), not
/// a lease etcd no longer knows, not a bad setting.
pub(crate) fn retryable(e: &Error) -> bool {
    match e.etcd_failure() {
        Some(f) => matches!(
            f,
            EtcdFailure::Unavailable
                | EtcdFailure::TimedOut
                | EtcdFailure::Refused
                | EtcdFailure::Rejected
        ),
        None => e.kind() != crate::ErrorKind::InvalidInput,
    }
}

fn invalid(cfg: &EtcdBackend, what: String) -> Error {
    Error::from(Repr::InvalidInput {
        path: PathBuf::from(cfg.url()),
        what,
    })
}

fn read_pem(cfg: &EtcdBackend, what: &str, file: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(file).map_err(|e| {
        invalid(
            cfg,
            format!("cannot read the etcd {what} file {}: {e}", file.display()),
        )
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(invalid(
            cfg,
            format!("the etcd {what} file {} is not PEM", file.display()),
        ));
    }
    Ok(bytes)
}

/// The client library's options for `cfg` (reads the TLS files).
fn connect_options(cfg: &EtcdBackend) -> Result<ConnectOptions> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(cfg.connect_timeout)
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_require_leader(true);
    if cfg.user.is_some() {
        // The user is given after connecting ([`client`]); from then on the
        // client authenticates again whenever etcd says the token is
        // invalid (it expires: `--auth-token-ttl`, 300 s by default), then
        // retries the request once.
        opts = opts.with_auto_token_refresh(true);
    }
    if cfg.tls.on {
        if cfg.plain_http {
            return Err(invalid(
                cfg,
                "etcd endpoints: http:// together with TLS (https://, etcds://, a CA or a client certificate); use one or the other".into(),
            ));
        }
        // The handshake is part of connecting: bounded by the same timeout.
        let mut tls = TlsOptions::new().timeout(cfg.connect_timeout);
        tls = match &cfg.tls.ca_file {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read_pem(cfg, "CA", ca)?)),
            None => tls.with_enabled_roots(),
        };
        match (&cfg.tls.cert_file, &cfg.tls.key_file) {
            (Some(c), Some(k)) => {
                let cert = read_pem(cfg, "client certificate", c)?;
                let key = read_pem(cfg, "client key", k)?;
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    cfg,
                    "etcd client certificate: give both the certificate and its key (--cert and --cert-key, or ETCDCTL_CERT and ETCDCTL_KEY)".into(),
                ));
            }
        }
        if let Some(name) = &cfg.tls.server_name {
            tls = tls.domain_name(name.clone());
        }
        opts = opts.with_tls(tls);
    }
    Ok(opts)
}

/// The endpoints as the client library takes them (with their scheme).
fn endpoint_urls(cfg: &EtcdBackend) -> Vec<String> {
    let scheme = if cfg.tls.on { "https" } else { "http" };
    cfg.endpoints
        .iter()
        .map(|e| format!("{scheme}://{e}"))
        .collect()
}

/// The client for `cfg`'s connection settings: one per setting, shared by
/// every lock of the process. It meets the cluster now: with a user it
/// authenticates, without one it asks the cluster's status, so that an
/// unreachable or refusing cluster is known before the first lock request
/// (a CLI without a server would otherwise wait out the whole request
/// bound, 10 s, and announce a wait for a server it never reached).
/// Bounded by the connect timeout (or `deadline`, if sooner). Final at
/// once: a refusal (TLS, authentication, permission), and a connection
/// refused (ECONNREFUSED) by every endpoint. A cluster that answers but
/// cannot serve yet (no leader) counts as reached: the requests after
/// this one are retried within their own bounds. Anything else (a silent
/// endpoint, a closed connection) is tried again until the bound.
pub(crate) async fn client(cfg: &EtcdBackend, deadline: Option<Instant>) -> Result<Client> {
    static CLIENTS: OnceLock<Mutex<HashMap<ConnKey, Client>>> = OnceLock::new();
    let key = ConnKey {
        endpoints: cfg.endpoints.clone(),
        tls: (*cfg.tls).clone(),
        user: cfg.user_password(),
        connect_timeout: cfg.connect_timeout,
    };
    let cache = || {
        CLIENTS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    };
    if let Some(c) = cache().get(&key) {
        return Ok(c.clone());
    }
    let opts = connect_options(cfg)?;
    let eps = endpoint_urls(cfg);
    let started = Instant::now();
    let bound = started + cfg.connect_timeout;
    let until = deadline.map_or(bound, |d| d.min(bound));
    // Connecting itself is lazy (it fails only on bad settings); the first
    // request is what meets the cluster. It is tried again on the same
    // client: its channel balances over every endpoint and learns which
    // ones answer, while a new client would start over (a dead first
    // endpoint then fails every attempt alike).
    let connect = Client::connect(eps, Some(opts));
    let mut c = match tokio::time::timeout_at(until, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(map_err(cfg, Call::Request, &e)),
        Err(_) => return Err(super::unreachable_error(cfg, until - started, None)),
    };
    let call = if cfg.user.is_some() {
        Call::Authenticate
    } else {
        Call::Request
    };
    let mut last = None;
    loop {
        let attempt = async {
            match cfg.user_password() {
                // Authenticate now: a wrong password is known at once.
                Some((user, Password(pw))) => c.update_user(Some((user, pw))).await,
                // Ask something harmless now, so that an unreachable
                // cluster or a TLS refusal surfaces here, within the
                // connect timeout, not at the first lock request.
                None => c.status().await.map(|_| ()),
            }
        };
        match tokio::time::timeout_at(until, attempt).await {
            Ok(Ok(())) => {
                cache().entry(key).or_insert(c.clone());
                return Ok(c);
            }
            Ok(Err(e)) => {
                let refused = match &e {
                    // Its `source` is not the status's: start there.
                    etcd_client::Error::GRpcStatus(s) => connection_refused(s),
                    other => connection_refused(other),
                }
                .map(io::Error::raw_os_error);
                let answered = server_answered(&e);
                let closed = closed_under_us(&e);
                let err = map_err(cfg, call, &e);
                if !retryable(&err) {
                    return Err(err);
                }
                if answered && cfg.user.is_none() {
                    // Our status request reached a member, which answered
                    // (say, "no leader" during an election): the cluster is
                    // there. (An authentication that failed this way is
                    // tried again: the client has no token yet.)
                    cache().entry(key).or_insert(c.clone());
                    return Ok(c);
                }
                if let Some(os) = refused
                    && every_endpoint_refuses(cfg, until).await
                {
                    return Err(refused_error(cfg, os));
                }
                tracing::debug!(error = %err, "connecting to etcd failed; trying again");
                last = Some(super::LastError { err, closed });
                let pause = tokio::time::sleep(Duration::from_millis(50));
                if tokio::time::timeout_at(until, pause).await.is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    Err(super::unreachable_error(cfg, until - started, last))
}

/// What one endpoint said to a bare TCP connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// It accepted the connection.
    Open,
    /// It refused it (ECONNREFUSED): nothing listens there.
    Refused,
    /// Another error, or no answer within the bound.
    Unknown,
}

impl Reach {
    fn of(r: &io::Result<tokio::net::TcpStream>) -> Reach {
        match r {
            Ok(_) => Reach::Open,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Reach::Refused,
            Err(_) => Reach::Unknown,
        }
    }
}

/// Whether the endpoints' answers are a definite "no etcd here": every one
/// refused the connection. One that accepted, or said nothing yet, keeps
/// the cluster worth trying until the connect timeout.
fn all_refused(answers: &[Reach]) -> bool {
    !answers.is_empty() && answers.iter().all(|a| *a == Reach::Refused)
}

/// The client's request failed with a connection refused by one endpoint;
/// ask every endpoint (the client balances over them, so one refusal says
/// nothing of the others). Stops at the first that does not refuse.
async fn every_endpoint_refuses(cfg: &EtcdBackend, until: Instant) -> bool {
    let mut answers = Vec::with_capacity(cfg.endpoints.len());
    for ep in &cfg.endpoints {
        let answer =
            match tokio::time::timeout_at(until, tokio::net::TcpStream::connect(ep.as_str())).await
            {
                Ok(r) => Reach::of(&r),
                Err(_) => Reach::Unknown,
            };
        answers.push(answer);
        if answer != Reach::Refused {
            break;
        }
    }
    answers.len() == cfg.endpoints.len() && all_refused(&answers)
}

/// The OS error "connection refused" somewhere in `e`'s sources (the
/// client library wraps the connect error of its transport).
fn connection_refused<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && io.kind() == io::ErrorKind::ConnectionRefused
        {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// Whether a member itself answered (a gRPC status it sent, which carries
/// no transport error as its source), as opposed to the way to it failing.
fn server_answered(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if std::error::Error::source(s).is_none())
}

/// Every endpoint refused the connection: one line, the endpoints, the
/// cause in words and the OS error.
fn refused_error(cfg: &EtcdBackend, os: Option<i32>) -> Error {
    let every = if cfg.endpoints.len() > 1 {
        " by every endpoint"
    } else {
        ""
    };
    let os = os.map(|n| format!(" (os error {n})")).unwrap_or_default();
    Error::etcd(
        EtcdFailure::Refused,
        "cannot reach etcd at",
        cfg.url(),
        format!("connection refused{every}{os}; is etcd running and listening there?"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use tonic::{Code, Status};

    fn status(code: Code, msg: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(Status::new(code, msg))
    }

    #[test]
    fn failures_from_codes_and_calls() {
        use Call::*;
        use EtcdFailure::*;
        // (code etcd answered, the call, a user configured, the failure);
        // the etcd errors named are from api/v3rpc/rpctypes/error.go.
        let table: &[(Code, Call, bool, EtcdFailure)] = &[
            // ErrGRPCAuthFailed, ErrGRPCUserEmpty on Authenticate.
            (Code::InvalidArgument, Authenticate, true, Authentication),
            // ErrGRPCAuthNotEnabled, ErrGRPCUserNotFound.
            (Code::FailedPrecondition, Authenticate, true, Authentication),
            // ErrGRPCInvalidAuthToken.
            (Code::Unauthenticated, Request, true, Authentication),
            (Code::Unauthenticated, Request, false, Authentication),
            // ErrGRPCUserEmpty: authentication on, no user of ours.
            (Code::InvalidArgument, Request, false, Authentication),
            // With a user: e.g. ErrGRPCAuthOldRevision.
            (Code::InvalidArgument, Request, true, Rejected),
            // ErrGRPCPermissionDenied.
            (Code::PermissionDenied, Request, true, Permission),
            (Code::PermissionDenied, Request, false, Permission),
            // ErrGRPCLeaseNotFound.
            (Code::NotFound, Request, false, LeaseNotFound),
            // ErrGRPCNoLeader, ErrGRPCLeaderChanged, ErrGRPCTimeout...
            (Code::Unavailable, Request, false, Unavailable),
            (Code::DeadlineExceeded, Request, true, Unavailable),
            (Code::Cancelled, Request, false, Unavailable),
            // ErrGRPCNotLeader, ErrGRPCNotCapable.
            (Code::FailedPrecondition, Request, true, Rejected),
            (Code::Unknown, Request, false, Rejected),
            (Code::OutOfRange, Request, false, Rejected),
            (Code::DataLoss, Request, false, Rejected),
        ];
        for (code, call, user, want) in table {
            assert_eq!(
                failure_of(*code, *call, *user),
                *want,
                "{code:?} {call:?} user={user}"
            );
            let d = diagnose(&status(*code, "whatever the words"), *call, *user, false);
            assert_eq!(
                d,
                Diagnosis {
                    failure: *want,
                    tls: None
                },
                "{code:?}"
            );
        }
    }

    #[test]
    fn the_code_decides_never_the_words() {
        let d = |e: &etcd_client::Error| diagnose(e, Call::Request, false, false).failure;
        // The lease is gone: etcd's code for it, whatever the words.
        assert_eq!(
            d(&status(
                Code::NotFound,
                "etcdserver: requested lease not found"
            )),
            EtcdFailure::LeaseNotFound
        );
        assert_eq!(d(&status(Code::NotFound, "")), EtcdFailure::LeaseNotFound);
        // The words alone decide nothing (the old classification matched
        // "lease not found", "permission denied", "certificate" ...).
        assert_eq!(
            d(&status(
                Code::Unknown,
                "etcdserver: requested lease not found"
            )),
            EtcdFailure::Rejected
        );
        assert_eq!(
            d(&status(Code::Unknown, "etcdserver: permission denied")),
            EtcdFailure::Rejected
        );
        assert_eq!(
            d(&status(
                Code::Unavailable,
                "invalid peer certificate: UnknownIssuer"
            )),
            EtcdFailure::Unavailable
        );
        let words = io::Error::other("received fatal alert: CertificateRequired");
        assert_eq!(
            d(&etcd_client::Error::IoError(words)),
            EtcdFailure::Unavailable
        );
        // The way to the cluster failing is no refusal.
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            d(&etcd_client::Error::IoError(refused)),
            EtcdFailure::Unavailable
        );
        // A status tonic made from a transport error (it carries the error
        // as its source): no member said anything, whatever its code.
        let from_transport =
            Status::from_error(Box::new(io::Error::from(io::ErrorKind::ConnectionReset)));
        assert!(std::error::Error::source(&from_transport).is_some());
        assert_eq!(
            d(&etcd_client::Error::GRpcStatus(from_transport)),
            EtcdFailure::Unavailable
        );
        assert_eq!(
            d(&etcd_client::Error::InvalidArgs("x".into())),
            EtcdFailure::Rejected
        );
    }

    #[test]
    fn tls_is_rustls_error_in_the_sources() {
        use rustls::{AlertDescription, CertificateError};
        // tokio-rustls wraps rustls's verdict in an io::Error (InvalidData),
        // whose source() skips it: found all the same.
        let wrapped = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let table: &[(rustls::Error, TlsProblem)] = &[
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                TlsProblem::UnknownIssuer,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                TlsProblem::WrongName,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                TlsProblem::Expired,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidYet),
                TlsProblem::Expired,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                TlsProblem::ServerAlert,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::BadCertificate),
                TlsProblem::ServerAlert,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::BadSignature),
                TlsProblem::Other,
            ),
            (rustls::Error::HandshakeNotComplete, TlsProblem::Other),
        ];
        for (e, want) in table {
            let want = Diagnosis {
                failure: EtcdFailure::Tls,
                tls: Some(*want),
            };
            let io = etcd_client::Error::IoError(wrapped(e.clone()));
            assert_eq!(
                diagnose(&io, Call::Request, false, true),
                want,
                "{e:?} in io"
            );
            // As the source of a status tonic made (a Unavailable code).
            let st = Status::from_error(Box::new(wrapped(e.clone())));
            let st = etcd_client::Error::GRpcStatus(st);
            assert_eq!(
                diagnose(&st, Call::Authenticate, true, true),
                want,
                "{e:?} in status"
            );
        }
    }

    #[test]
    fn the_tls_layers_verdict_after_the_handshake_is_tls_by_its_kind() {
        // What a TLS 1.3 server refusing our client certificate looks like
        // when its alert arrives on the first request: h2 passes on an
        // io::Error of kind InvalidData with rustls's words, not its type.
        let alert = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "received fatal alert: BadCertificate",
            )
        };
        let want = Diagnosis {
            failure: EtcdFailure::Tls,
            tls: Some(TlsProblem::AfterHandshake),
        };
        let io = etcd_client::Error::IoError(alert());
        assert_eq!(diagnose(&io, Call::Request, false, true), want);
        let st = etcd_client::Error::GRpcStatus(Status::from_error(Box::new(alert())));
        assert_eq!(diagnose(&st, Call::Authenticate, true, true), want);
        // Not on a plain connection: no TLS layer there to fail.
        assert_eq!(
            diagnose(&io, Call::Request, false, false).failure,
            EtcdFailure::Unavailable
        );
        // The kind decides, not the words: the same words of another kind
        // are the way to the cluster failing.
        let other = io::Error::other("received fatal alert: BadCertificate");
        assert_eq!(
            diagnose(
                &etcd_client::Error::IoError(other),
                Call::Request,
                false,
                true
            )
            .failure,
            EtcdFailure::Unavailable
        );
        for kind in [io::ErrorKind::ConnectionReset, io::ErrorKind::BrokenPipe] {
            let closed = etcd_client::Error::IoError(io::Error::from(kind));
            assert_eq!(
                diagnose(&closed, Call::Request, false, true).failure,
                EtcdFailure::Unavailable,
                "{kind:?}"
            );
        }
        // It is no retry, and the hint points at the client certificate.
        let cfg = EtcdBackend::new(["https://h:1"]).with_ca_file("/ca.pem");
        let e = map_err(&cfg, Call::Request, &io);
        assert!(!retryable(&e), "{e}");
        let text = e.to_string();
        assert!(text.starts_with("TLS: "), "{text}");
        assert!(text.contains("requires a client certificate"), "{text}");
        let with_cert = cfg.with_client_cert("/c.pem", "/k.pem");
        let text = map_err(&with_cert, Call::Request, &io).to_string();
        assert!(text.contains("refused our client certificate"), "{text}");
    }

    #[test]
    fn the_password_never_prints() {
        let cfg = EtcdBackend::new(["127.0.0.1:2379"])
            .with_user("alice", "s3cret-pw")
            .with_ca_file("/etc/etcd/ca.pem");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("s3cret-pw"), "{dbg}");
        assert!(dbg.contains("<redacted>") && dbg.contains("alice"), "{dbg}");
        for failure in [
            EtcdFailure::Tls,
            EtcdFailure::Authentication,
            EtcdFailure::Permission,
            EtcdFailure::Unavailable,
            EtcdFailure::Rejected,
            EtcdFailure::LeaseNotFound,
        ] {
            let d = Diagnosis { failure, tls: None };
            let e = error_for(&cfg, d, "etcd said no".into());
            let text = format!("{e} {e:?}");
            assert!(!text.contains("s3cret-pw"), "{text}");
            assert!(!text.contains('\n'), "{text}");
            assert!(text.contains("etcds://127.0.0.1:2379"), "{text}");
            assert_eq!(e.etcd_failure(), Some(failure));
            assert!(e.io_error().is_none());
        }
    }

    #[test]
    fn each_part_of_an_error_chain_is_said_once() {
        let mut parts = Vec::new();
        for t in [
            "invalid peer certificate: UnknownIssuer",
            "transport error: invalid peer certificate: UnknownIssuer",
            "transport error",
            "connection error: received fatal alert: BadCertificate",
        ] {
            push_part(&mut parts, t.into());
        }
        assert_eq!(
            parts.join(": "),
            "transport error: invalid peer certificate: UnknownIssuer: connection error: received fatal alert: BadCertificate"
        );
    }

    #[test]
    fn tls_hints_point_at_the_setting() {
        let with_ca = EtcdBackend::new(["https://h:1"]).with_ca_file("/ca.pem");
        let with_cert = with_ca.clone().with_client_cert("/c.pem", "/k.pem");
        let table: &[(&EtcdBackend, TlsProblem, &str)] = &[
            (
                &with_ca,
                TlsProblem::UnknownIssuer,
                "not signed by the CA file",
            ),
            (&with_ca, TlsProblem::WrongName, "--server-name"),
            (&with_ca, TlsProblem::Expired, "expired"),
            (
                &with_ca,
                TlsProblem::ServerAlert,
                "requires a client certificate",
            ),
            (
                &with_cert,
                TlsProblem::ServerAlert,
                "refused our client certificate",
            ),
            (
                &with_ca,
                TlsProblem::AfterHandshake,
                "requires a client certificate",
            ),
            (
                &with_cert,
                TlsProblem::AfterHandshake,
                "refused our client certificate",
            ),
            (&with_ca, TlsProblem::Other, "speaks TLS"),
        ];
        for (cfg, problem, want) in table {
            let h = tls_hint(cfg, *problem);
            assert!(h.contains(want), "{problem:?}: {h}");
        }
    }

    #[test]
    fn each_failure_begins_with_what_failed_and_keeps_etcds_words() {
        let cfg = EtcdBackend::new(["h:1"]);
        let table = [
            (EtcdFailure::Unavailable, "etcd unavailable at"),
            (EtcdFailure::Refused, "cannot reach etcd at"),
            (EtcdFailure::TimedOut, "cannot reach etcd at"),
            (EtcdFailure::Rejected, "etcd request failed at"),
        ];
        for (failure, op) in table {
            let e = error_for(
                &cfg,
                Diagnosis { failure, tls: None },
                "etcd said no".into(),
            );
            let text = e.to_string();
            assert!(text.starts_with(op), "{failure:?}: {text}");
            assert!(
                text.contains("etcd://h:1") && text.contains("etcd said no"),
                "{text}"
            );
        }
        // The words: the status's message, then each source once.
        assert_eq!(
            words(&status(Code::Unavailable, "etcdserver: no leader")),
            "etcdserver: no leader"
        );
        let st = Status::from_error(Box::new(io::Error::other("connection reset by peer")));
        let w = words(&etcd_client::Error::GRpcStatus(st));
        assert!(w.ends_with("connection reset by peer"), "{w}");
        let w = words(&etcd_client::Error::IoError(io::Error::other(
            "disk on fire",
        )));
        assert!(w.ends_with("disk on fire"), "{w}");
    }

    #[test]
    fn a_bad_setting_is_never_retried_an_os_error_is() {
        let cfg = EtcdBackend::new(["h:1"]);
        assert!(!retryable(&invalid(&cfg, "nonsense".into())));
        let io = Error::io("connect", Path::new("/x"), io::Error::other("flaky"));
        assert!(retryable(&io));
    }

    #[test]
    fn tls_files_must_be_readable_pem_and_come_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ok.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let missing = dir.path().join("missing.pem");
        let cfg = EtcdBackend::new(["https://h:1"]);
        assert_eq!(
            read_pem(&cfg, "CA", &pem).unwrap(),
            std::fs::read(&pem).unwrap()
        );
        let e = read_pem(&cfg, "CA", &junk).unwrap_err().to_string();
        assert!(e.contains("is not PEM") && e.contains("junk.pem"), "{e}");
        let e = read_pem(&cfg, "CA", &missing).unwrap_err().to_string();
        assert!(
            e.contains("cannot read the etcd CA file") && e.contains("missing.pem"),
            "{e}"
        );

        let ok = |cfg: &EtcdBackend| connect_options(cfg).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(ok(&EtcdBackend::new(["h:1"])), Ok(()));
        assert_eq!(ok(&cfg.clone().with_ca_file(&pem)), Ok(()));
        assert_eq!(
            ok(&cfg.clone().with_ca_file(&pem).with_client_cert(&pem, &pem)),
            Ok(())
        );
        let e = ok(&cfg.clone().with_ca_file(&junk)).unwrap_err();
        assert!(e.contains("is not PEM"), "{e}");
        let e = ok(&cfg.clone().with_client_cert(&pem, &junk)).unwrap_err();
        assert!(
            e.contains("client key file") && e.contains("is not PEM"),
            "{e}"
        );
        let mut half = cfg.clone();
        half.tls.key_file = None;
        half.tls.cert_file = Some(pem.clone());
        let e = ok(&half).unwrap_err();
        assert!(e.contains("give both the certificate and its key"), "{e}");
        let e = ok(&EtcdBackend::new(["http://h:1"]).with_ca_file(&pem)).unwrap_err();
        assert!(e.contains("http:// together with TLS"), "{e}");
    }

    #[test]
    fn endpoints_get_the_scheme_of_the_connection() {
        let plain = EtcdBackend::new(["h:1", "127.0.0.1:2"]);
        assert_eq!(endpoint_urls(&plain), ["http://h:1", "http://127.0.0.1:2"]);
        let tls = EtcdBackend::new(["https://h:1", "g:2"]);
        assert_eq!(endpoint_urls(&tls), ["https://h:1", "https://g:2"]);
    }

    #[test]
    fn a_transport_errors_sources_are_searched_too() {
        // A real transport error (tonic's has no public constructor): an
        // endpoint that does not parse. Its chain is where a TLS verdict,
        // a closed connection or a refusal would be found.
        let e = tonic::transport::Endpoint::from_shared("http://[::1".to_owned()).unwrap_err();
        let e = etcd_client::Error::TransportError(e);
        assert!(
            chain_of(&e).any(|s| s.downcast_ref::<tonic::transport::Error>().is_some()),
            "{e}"
        );
    }

    #[test]
    fn the_cluster_refuses_only_when_every_endpoint_does() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let open = open.local_addr().unwrap().to_string();
            // Two ports nothing listens on (bound, then let go).
            let mut shut = Vec::new();
            for _ in 0..2 {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                shut.push(l.local_addr().unwrap().to_string());
            }
            let until = Instant::now() + Duration::from_secs(5);
            async fn refuses(eps: &[&str], until: Instant) -> bool {
                every_endpoint_refuses(&EtcdBackend::new(eps.iter().copied()), until).await
            }
            let (a, b) = (shut[0].as_str(), shut[1].as_str());
            assert!(refuses(&[a], until).await);
            assert!(refuses(&[a, b], until).await, "both refuse");
            assert!(!refuses(&[a, &open], until).await, "the second one listens");
            assert!(!refuses(&[&open, a], until).await, "the first one listens");
        });
    }

    #[test]
    fn a_status_without_a_transport_source_is_the_servers_own_answer() {
        assert!(server_answered(&status(
            Code::Unavailable,
            "etcdserver: no leader"
        )));
        let st = Status::from_error(Box::new(io::Error::from(io::ErrorKind::ConnectionReset)));
        assert!(!server_answered(&etcd_client::Error::GRpcStatus(st)));
        let io = etcd_client::Error::IoError(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(!server_answered(&io));
    }

    #[test]
    fn only_a_refused_connect_counts_as_refused() {
        let refused = Err(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(Reach::of(&refused), Reach::Refused);
        let reset = Err(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(Reach::of(&reset), Reach::Unknown);
        let timed_out = Err(io::Error::from(io::ErrorKind::TimedOut));
        assert_eq!(Reach::of(&timed_out), Reach::Unknown);
    }

    #[test]
    fn refusal_hints_name_the_user_and_what_to_fix() {
        let d = |failure| Diagnosis { failure, tls: None };
        let anon = EtcdBackend::new(["h:1"]).with_prefix("/app/");
        let user = anon.clone().with_user("alice", "secret");
        let table: &[(&EtcdBackend, EtcdFailure, &[&str])] = &[
            (
                &anon,
                EtcdFailure::Authentication,
                &["requires a user and password", "--password-file"],
            ),
            (
                &user,
                EtcdFailure::Authentication,
                &["user \"alice\"", "check the password"],
            ),
            (
                &anon,
                EtcdFailure::Permission,
                &["the user has no read-write permission", "\"/app/\""],
            ),
            (
                &user,
                EtcdFailure::Permission,
                &["user \"alice\" has no", "--prefix=true readwrite /app/"],
            ),
        ];
        for (cfg, failure, wants) in table {
            let h = hint(d(*failure), cfg);
            for want in *wants {
                assert!(h.contains(want), "{failure:?}: {want:?} in {h:?}");
            }
            assert!(!h.contains("secret"), "{h}");
        }
        assert_eq!(hint(d(EtcdFailure::Unavailable), &user), "");
    }

    #[test]
    fn a_tls_server_closing_every_connection_is_a_tls_error() {
        let tls = EtcdBackend::new(["https://h:1"]);
        let why = " (last error: operation was canceled: transport error: connection closed)";
        let e = closed_after_handshake(&tls, Duration::from_secs(2), true, why).expect("TLS error");
        let text = e.to_string();
        assert!(text.starts_with("TLS: "), "{text}");
        assert!(text.contains("requires a client certificate"), "{text}");
        assert_eq!(e.etcd_failure(), Some(EtcdFailure::Tls));
        let plain = EtcdBackend::new(["h:1"]);
        assert!(closed_after_handshake(&plain, Duration::from_secs(2), true, why).is_none());
        // The words do not decide: only the closed connection found by type.
        assert!(closed_after_handshake(&tls, Duration::from_secs(2), false, why).is_none());
    }

    #[test]
    fn a_connection_closed_under_a_request_is_found_by_type() {
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::UnexpectedEof,
            io::ErrorKind::BrokenPipe,
        ] {
            let e = etcd_client::Error::IoError(io::Error::from(kind));
            assert!(closed_under_us(&e), "{kind:?}");
            let st = Status::from_error(Box::new(io::Error::from(kind)));
            assert!(
                closed_under_us(&etcd_client::Error::GRpcStatus(st)),
                "{kind:?}"
            );
        }
        let words = etcd_client::Error::IoError(io::Error::other("connection closed"));
        assert!(!closed_under_us(&words));
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(!closed_under_us(&etcd_client::Error::IoError(refused)));
        assert!(!closed_under_us(&status(
            Code::Unavailable,
            "connection closed"
        )));
    }

    #[test]
    fn only_a_refusal_by_every_endpoint_is_final() {
        use Reach::*;
        let table: &[(&[Reach], bool)] = &[
            (&[Refused], true),
            (&[Refused, Refused, Refused], true),
            (&[Refused, Open], false),
            (&[Refused, Unknown], false),
            (&[Open], false),
            (&[Unknown], false),
            (&[], false),
        ];
        for (answers, want) in table {
            assert_eq!(all_refused(answers), *want, "{answers:?}");
        }
    }

    #[test]
    fn a_refused_connection_is_found_among_the_sources_by_type() {
        #[derive(Debug)]
        struct Wrap(io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("tcp connect error")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let refused = Wrap(io::Error::from_raw_os_error(111));
        if io::Error::from_raw_os_error(111).kind() == io::ErrorKind::ConnectionRefused {
            let found = connection_refused(&refused).expect("found");
            assert_eq!(found.raw_os_error(), Some(111));
        }
        // Words alone are not a refusal.
        let words = io::Error::other("Connection refused");
        assert!(connection_refused(&Wrap(words)).is_none());
        let e = refused_error(&EtcdBackend::new(["h:1"]), Some(111)).to_string();
        assert!(
            e.starts_with("cannot reach etcd at etcd://h:1: connection refused (os error 111)"),
            "{e}"
        );
        let e = refused_error(&EtcdBackend::new(["h:1", "h:2"]), Some(111)).to_string();
        assert!(
            e.starts_with("cannot reach etcd at etcd://h:1,h:2: connection refused by every endpoint (os error 111)"),
            "{e}"
        );
    }

    #[test]
    fn each_refusal_names_its_cause_first() {
        let cfg = EtcdBackend::new(["https://h:1"]).with_user("u", "p");
        let err = |failure| error_for(&cfg, Diagnosis { failure, tls: None }, "x".into());
        assert!(err(EtcdFailure::Tls).to_string().starts_with("TLS: "));
        assert!(
            err(EtcdFailure::Authentication)
                .to_string()
                .starts_with("authentication: ")
        );
        assert!(
            err(EtcdFailure::Permission)
                .to_string()
                .starts_with("permission: ")
        );
        for f in [
            EtcdFailure::Tls,
            EtcdFailure::Authentication,
            EtcdFailure::Permission,
            EtcdFailure::LeaseNotFound,
        ] {
            assert!(!retryable(&err(f)), "{f:?}");
        }
        for f in [EtcdFailure::Unavailable, EtcdFailure::Rejected] {
            assert!(retryable(&err(f)), "{f:?}");
        }
        assert_eq!(
            err(EtcdFailure::Permission).kind(),
            crate::ErrorKind::PermissionDenied
        );
        assert_eq!(
            err(EtcdFailure::Authentication).kind(),
            crate::ErrorKind::PermissionDenied
        );
        assert_eq!(err(EtcdFailure::Tls).kind(), crate::ErrorKind::Io);
        assert_eq!(err(EtcdFailure::Unavailable).kind(), crate::ErrorKind::Io);
    }
}
