//! Connecting to etcd: TLS (server verification, client certificates, the
//! server name), user and password, one client per connection setting
//! shared by every lock of the process, and the one-line errors that name
//! what went wrong (TLS, authentication, permission, unreachable).

use super::EtcdBackend;
use crate::error::{Error, Repr, Result};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// A password: kept in memory only, never printed. Its `Debug` says
/// `<redacted>`, and it has no `Display`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Password(pub(crate) String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// TLS settings of a backend (paths and names only, nothing secret: the
/// key file's contents are read at connect time and dropped after).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct TlsSettings {
    /// Talk TLS to every endpoint.
    pub on: bool,
    /// PEM file of the CA(s) to verify the servers against (else the
    /// system's roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key (mutual TLS).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name to verify in the servers' certificates instead of the host.
    pub server_name: Option<String>,
}

/// Everything that makes one connection differ from another: clients are
/// shared per value of this (the lock prefix, TTL and key do not matter).
#[derive(Clone, PartialEq, Eq, Hash)]
struct ConnKey {
    endpoints: Vec<String>,
    tls: TlsSettings,
    user: Option<(String, Password)>,
    connect_timeout: Duration,
}

/// Why etcd (or the way to it) refused a request: the decision behind
/// every error message of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The TLS handshake failed: a certificate that does not verify (unknown
    /// CA, expired, another host's), a client certificate missing or refused.
    Tls,
    /// User name or password wrong or missing, or the token refused.
    Auth,
    /// Authenticated, but the user's roles do not cover the keys.
    Permission,
    /// No answer, no leader, connection refused or reset: worth another try.
    Unavailable,
    /// Anything else.
    Other,
}

/// gRPC status codes (numbers from the gRPC spec).
pub(crate) mod code {
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// Classify a gRPC status (code and the message with its sources). etcd's
/// messages are from `api/v3rpc/rpctypes/error.go`; the TLS ones are
/// rustls's (`invalid peer certificate: UnknownIssuer`, `received fatal
/// alert: CertificateRequired`, ...), which reach us inside "transport
/// error" statuses.
pub(crate) fn classify(code: Option<i32>, text: &str) -> Cause {
    let t = text.to_ascii_lowercase();
    let has = |s: &str| t.contains(s);
    if has("permission denied") || code == Some(code::PERMISSION_DENIED) {
        return Cause::Permission;
    }
    if has("authentication failed")
        || has("user name is empty")
        || has("user name not found")
        || has("invalid auth token")
        || has("auth: revision in header is old")
        || has("authentication is not enabled")
        || code == Some(code::UNAUTHENTICATED)
    {
        return Cause::Auth;
    }
    if has("certificate")
        || has("tls handshake")
        || has("peer sent")
        || has("received fatal alert")
        || has("unknownissuer")
        || has("notvalidforname")
        || has("invalid peer")
        || has("corrupt message")
        || has("invalidcontenttype")
    {
        return Cause::Tls;
    }
    match code {
        Some(code::UNAVAILABLE | code::DEADLINE_EXCEEDED) | None => Cause::Unavailable,
        _ => Cause::Other,
    }
}

/// What to tell the user for a cause, beside etcd's (or rustls's) own
/// words in `text`.
fn hint(cause: Cause, cfg: &EtcdBackend, text: &str) -> String {
    match cause {
        Cause::Tls => tls_hint(cfg, text),
        Cause::Auth => match &cfg.user {
            Some(u) => format!(
                "authentication failed for user {u:?}: check the password (ETCDCTL_PASSWORD, ETCDCTL_USER=user:password or --password-file)"
            ),
            None => "the cluster requires a user and password (--user with ETCDCTL_PASSWORD or --password-file, or ETCDCTL_USER=user:password)".into(),
        },
        Cause::Permission => format!(
            "{} has no read-write permission on the key prefix {:?} (etcdctl role grant-permission ROLE --prefix=true readwrite {})",
            cfg.user
                .as_deref()
                .map_or_else(|| "the user".to_owned(), |u| format!("user {u:?}")),
            cfg.prefix,
            cfg.prefix
        ),
        Cause::Unavailable | Cause::Other => String::new(),
    }
}

/// For a cluster that never answered: a TLS server that closes every
/// connection right after the handshake is refusing our client
/// certificate, or the lack of one (its alert races with the close, and
/// the close sometimes wins: seen in the refusal tests), or it does not
/// speak TLS. Then the error is a TLS one, with that hint.
pub(crate) fn closed_after_handshake(
    cfg: &EtcdBackend,
    within: Duration,
    why: &str,
) -> Option<Error> {
    if !(cfg.tls.on && why.contains("connection closed")) {
        return None;
    }
    let client = if cfg.tls.cert_file.is_some() {
        "our client certificate (--cert / ETCDCTL_CERT) is refused"
    } else {
        "it requires a client certificate (--cert and --cert-key, or ETCDCTL_CERT and ETCDCTL_KEY)"
    };
    let text = format!(
        "the server closed every connection within {}ms{why}; most likely {client}, or it does not speak TLS",
        within.as_millis()
    );
    Some(Error::io(
        TLS_OP,
        Path::new(&cfg.url()),
        io::Error::new(io::ErrorKind::InvalidData, text),
    ))
}

/// Which TLS setting to look at, from rustls's verdict.
fn tls_hint(cfg: &EtcdBackend, text: &str) -> String {
    let ca = if cfg.tls.ca_file.is_some() {
        "the CA file (--cacert / ETCDCTL_CACERT)"
    } else {
        "the system's CAs (no --cacert / ETCDCTL_CACERT given)"
    };
    let t = text.to_ascii_lowercase();
    if t.contains("unknownissuer") || t.contains("unknown issuer") {
        format!("the server's certificate is not signed by {ca}")
    } else if t.contains("notvalidforname") || t.contains("not valid for name") {
        "the server's certificate is made out to another name (--server-name NAME verifies that name instead of the host)".into()
    } else if t.contains("expired") || t.contains("notvalidyet") {
        "the server's certificate has expired or is not valid yet (check it, and this host's clock)"
            .into()
    } else if t.contains("certificaterequired")
        || t.contains("badcertificate")
        || t.contains("unknownca")
        || t.contains("alert")
    {
        if cfg.tls.cert_file.is_some() {
            "the server refused our client certificate (--cert / ETCDCTL_CERT): is it signed by the server's --trusted-ca-file?".into()
        } else {
            "the server requires a client certificate: --cert and --cert-key, or ETCDCTL_CERT and ETCDCTL_KEY".into()
        }
    } else {
        format!(
            "check that the server speaks TLS and its certificate is signed by {ca}, unexpired and made out to the endpoint's host"
        )
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

/// An etcd client error as one line naming the endpoints and the cause.
pub(crate) fn map_err(cfg: &EtcdBackend, e: etcd_client::Error) -> Error {
    let mut parts = Vec::new();
    let code = match &e {
        etcd_client::Error::GRpcStatus(s) => {
            push_part(&mut parts, s.message().to_owned());
            if let Some(src) = std::error::Error::source(s) {
                chain(&mut parts, src);
            }
            Some(s.code() as i32)
        }
        other => {
            chain(&mut parts, other);
            None
        }
    };
    let text = parts.join(": ");
    error_for(cfg, classify(code, &text), text)
}

/// The error for `cause`, with etcd's (or rustls's) own words in `text`.
pub(crate) fn error_for(cfg: &EtcdBackend, cause: Cause, text: String) -> Error {
    let url = cfg.url();
    let path = Path::new(&url);
    let with_hint = |text: String| {
        let h = hint(cause, cfg, &text);
        if h.is_empty() {
            text
        } else {
            format!("{text}; {h}")
        }
    };
    match cause {
        Cause::Tls => Error::io(
            TLS_OP,
            path,
            io::Error::new(io::ErrorKind::InvalidData, with_hint(text)),
        ),
        Cause::Auth => Error::io(
            "authentication: etcd refused access at",
            path,
            io::Error::new(io::ErrorKind::PermissionDenied, with_hint(text)),
        ),
        Cause::Permission => Error::io(
            "permission: etcd refused access at",
            path,
            io::Error::new(io::ErrorKind::PermissionDenied, with_hint(text)),
        ),
        Cause::Unavailable => Error::io(
            "etcd unavailable at",
            path,
            io::Error::new(io::ErrorKind::ConnectionRefused, text),
        ),
        Cause::Other => Error::io("etcd request failed at", path, io::Error::other(text)),
    }
}

/// How every TLS error of the backend begins.
const TLS_OP: &str = "TLS: the secure connection to etcd failed at";

/// Whether an error of ours (from [`error_for`]) is worth another try on
/// another connection or after an election.
pub(crate) fn retryable(e: &Error) -> bool {
    let text = e.to_string();
    e.kind() != crate::ErrorKind::PermissionDenied
        && e.kind() != crate::ErrorKind::InvalidInput
        && !text.starts_with("TLS:")
        && !text.contains("lease not found")
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
/// (issue 22: a CLI without a server used to wait out the whole request
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
        Ok(Err(e)) => return Err(map_err(cfg, e)),
        Err(_) => return Err(super::unreachable_error(cfg, until - started, None)),
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
                let err = map_err(cfg, e);
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
                last = Some(err);
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
    Error::io(
        "cannot reach etcd at",
        Path::new(&cfg.url()),
        io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("connection refused{every}{os}; is etcd running and listening there?"),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_from_codes_and_messages() {
        use code::*;
        const UNKNOWN: i32 = 2;
        const INVALID_ARGUMENT: i32 = 3;
        const FAILED_PRECONDITION: i32 = 9;
        let table: &[(Option<i32>, &str, Cause)] = &[
            (
                Some(INVALID_ARGUMENT),
                "etcdserver: authentication failed, invalid user ID or password",
                Cause::Auth,
            ),
            (
                Some(INVALID_ARGUMENT),
                "etcdserver: user name is empty",
                Cause::Auth,
            ),
            (
                Some(UNAUTHENTICATED),
                "etcdserver: invalid auth token",
                Cause::Auth,
            ),
            (
                Some(FAILED_PRECONDITION),
                "etcdserver: user name not found",
                Cause::Auth,
            ),
            (
                Some(PERMISSION_DENIED),
                "etcdserver: permission denied",
                Cause::Permission,
            ),
            (
                Some(UNKNOWN),
                "etcdserver: permission denied",
                Cause::Permission,
            ),
            (
                Some(UNAVAILABLE),
                "transport error: invalid peer certificate: UnknownIssuer",
                Cause::Tls,
            ),
            (
                Some(UNAVAILABLE),
                "error trying to connect: invalid peer certificate: NotValidForName",
                Cause::Tls,
            ),
            (
                Some(UNAVAILABLE),
                "received fatal alert: CertificateRequired",
                Cause::Tls,
            ),
            (
                Some(UNAVAILABLE),
                "invalid peer certificate: Expired",
                Cause::Tls,
            ),
            (
                Some(UNAVAILABLE),
                "tcp connect error: Connection refused (os error 111)",
                Cause::Unavailable,
            ),
            (
                Some(UNAVAILABLE),
                "etcdserver: no leader",
                Cause::Unavailable,
            ),
            (
                Some(DEADLINE_EXCEEDED),
                "context deadline exceeded",
                Cause::Unavailable,
            ),
            (None, "transport error", Cause::Unavailable),
            (
                Some(UNKNOWN),
                "etcdserver: request is too large",
                Cause::Other,
            ),
        ];
        for (code, text, want) in table {
            assert_eq!(classify(*code, text), *want, "{code:?} {text:?}");
        }
    }

    #[test]
    fn the_password_never_prints() {
        let cfg = EtcdBackend::new(["127.0.0.1:2379"])
            .user("alice", "s3cret-pw")
            .ca_file("/etc/etcd/ca.pem");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("s3cret-pw"), "{dbg}");
        assert!(dbg.contains("<redacted>") && dbg.contains("alice"), "{dbg}");
        for cause in [
            Cause::Tls,
            Cause::Auth,
            Cause::Permission,
            Cause::Unavailable,
            Cause::Other,
        ] {
            let e = error_for(&cfg, cause, "etcd said no".into());
            let text = format!("{e} {e:?}");
            assert!(!text.contains("s3cret-pw"), "{text}");
            assert!(!text.contains('\n'), "{text}");
            assert!(text.contains("etcds://127.0.0.1:2379"), "{text}");
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
        let with_ca = EtcdBackend::new(["https://h:1"]).ca_file("/ca.pem");
        let with_cert = with_ca.clone().client_cert("/c.pem", "/k.pem");
        let table: &[(&EtcdBackend, &str, &str)] = &[
            (
                &with_ca,
                "invalid peer certificate: UnknownIssuer",
                "not signed by the CA file",
            ),
            (
                &with_ca,
                "certificate not valid for name \"h\"",
                "--server-name",
            ),
            (&with_ca, "invalid peer certificate: Expired", "expired"),
            (
                &with_ca,
                "received fatal alert: BadCertificate",
                "requires a client certificate",
            ),
            (
                &with_cert,
                "received fatal alert: BadCertificate",
                "refused our client certificate",
            ),
        ];
        for (cfg, text, want) in table {
            let h = tls_hint(cfg, text);
            assert!(h.contains(want), "{text:?}: {h}");
        }
    }

    #[test]
    fn a_tls_server_closing_every_connection_is_a_tls_error() {
        let tls = EtcdBackend::new(["https://h:1"]);
        let why = " (last error: operation was canceled: transport error: connection closed)";
        let e = closed_after_handshake(&tls, Duration::from_secs(2), why).expect("TLS error");
        let text = e.to_string();
        assert!(text.starts_with("TLS: "), "{text}");
        assert!(text.contains("requires a client certificate"), "{text}");
        let plain = EtcdBackend::new(["h:1"]);
        assert!(closed_after_handshake(&plain, Duration::from_secs(2), why).is_none());
        let refused = " (last error: tcp connect error: Connection refused)";
        assert!(closed_after_handshake(&tls, Duration::from_secs(2), refused).is_none());
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
        let e = refused_error(&EtcdBackend::new(["h:1", "h:2"]), Some(111)).to_string();
        assert!(
            e.starts_with("cannot reach etcd at etcd://h:1,h:2: connection refused by every endpoint (os error 111)"),
            "{e}"
        );
    }

    #[test]
    fn each_refusal_names_its_cause_first() {
        let cfg = EtcdBackend::new(["https://h:1"]).user("u", "p");
        let first = |c| error_for(&cfg, c, "x".into()).to_string();
        assert!(first(Cause::Tls).starts_with("TLS: "));
        assert!(first(Cause::Auth).starts_with("authentication: "));
        assert!(first(Cause::Permission).starts_with("permission: "));
        assert!(!retryable(&error_for(&cfg, Cause::Tls, "x".into())));
        assert!(!retryable(&error_for(&cfg, Cause::Auth, "x".into())));
        assert!(!retryable(&error_for(&cfg, Cause::Permission, "x".into())));
        assert!(retryable(&error_for(&cfg, Cause::Unavailable, "x".into())));
    }
}
