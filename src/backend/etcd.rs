//! The etcd backend's settings (feature `etcd`): which cluster, how to
//! reach it (TLS, credentials, connect timeout), where the keys live and
//! the lease TTL. Plain data, chosen by the caller through [`crate::Backend`]
//! and read by the etcd backend (`crate::etcd`); nothing here talks to
//! etcd. Re-exported as `session_lock::etcd::EtcdBackend`.

use std::path::PathBuf;
use std::time::Duration;

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

/// Keys of this crate live under this prefix unless
/// [`EtcdBackend::with_prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "/session-lock/";

/// Lease TTL unless [`EtcdBackend::with_lease_ttl`] says otherwise: 10 s.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// etcd grants leases in whole seconds; shorter TTLs are raised to this.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(1);

/// How long connecting to a member may take (TCP and TLS handshake), and
/// how long a cluster that does not answer at all is tried before an
/// acquire, `try_acquire` or `status` fails, unless
/// [`EtcdBackend::with_connect_timeout`] says otherwise: 1 s.
///
/// Why 1 s: `exec -n` and `status` should fail within about a
/// second when no endpoint answers. Connecting is a TCP handshake, a TLS
/// handshake and, with a user, one authentication round trip: a few
/// milliseconds on a LAN, a few hundred across regions, so 1 s leaves
/// headroom for a loaded member while still being "about a second" (etcdctl's
/// `--dial-timeout` is 2 s; `--connect-timeout 2s` or `ETCDCTL_DIAL_TIMEOUT`
/// restores it). A connection refused by every endpoint does not wait for
/// it: that answer is final at once.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// An etcd cluster to keep locks in. Build with [`EtcdBackend::new`] or
/// [`crate::Backend::parse`]`("etcd://HOST:PORT,...")` (`etcds://` for TLS).
///
/// Its `Debug` output never shows the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdBackend {
    pub(crate) endpoints: Vec<String>,
    pub(crate) prefix: String,
    pub(crate) lease_ttl: Duration,
    pub(crate) key: Option<String>,
    /// Boxed: keeps `Backend` small (clippy's large_enum_variant).
    pub(crate) tls: Box<TlsSettings>,
    /// Some endpoint was given as `http://` (refused together with TLS).
    pub(crate) plain_http: bool,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<Password>,
    pub(crate) connect_timeout: Duration,
}

impl EtcdBackend {
    /// A backend on these endpoints: `HOST:PORT`, `http://HOST:PORT`, or
    /// `https://HOST:PORT` (TLS; then for every endpoint).
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> EtcdBackend {
        let mut tls = Box::<TlsSettings>::default();
        let mut plain_http = false;
        let endpoints = endpoints
            .into_iter()
            .map(|e| {
                let e: String = e.into();
                let e = e.trim().trim_end_matches('/');
                if let Some(rest) = e.strip_prefix("https://") {
                    tls.on = true;
                    rest.to_owned()
                } else if let Some(rest) = e.strip_prefix("http://") {
                    plain_http = true;
                    rest.to_owned()
                } else {
                    e.to_owned()
                }
            })
            .collect();
        EtcdBackend {
            endpoints,
            prefix: DEFAULT_PREFIX.to_owned(),
            lease_ttl: DEFAULT_LEASE_TTL,
            key: None,
            tls,
            plain_http,
            user: None,
            password: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// From the part of an `etcd://` URL after the scheme:
    /// `HOST:PORT[,HOST:PORT...]`; each may carry `http://` or `https://`
    /// (TLS).
    ///
    /// # Errors
    /// A one-line message naming what is wrong.
    pub fn from_hosts(hosts: &str) -> std::result::Result<EtcdBackend, String> {
        let hosts = hosts.trim_end_matches('/');
        let mut out = Vec::new();
        for h in hosts.split(',') {
            let h = h.trim();
            let bare = h
                .strip_prefix("https://")
                .or_else(|| h.strip_prefix("http://"))
                .unwrap_or(h)
                .trim_end_matches('/');
            let port_ok = bare
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok || bare.contains('/') {
                return Err(format!(
                    "etcd endpoint {h:?} in {hosts:?}: expected HOST:PORT, http://HOST:PORT or https://HOST:PORT (several separated by commas)"
                ));
            }
            out.push(h.to_owned());
        }
        Ok(EtcdBackend::new(out))
    }

    /// Keys live under this prefix (default [`DEFAULT_PREFIX`]); a `/` is
    /// added at the end if missing.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        let mut p = prefix.into();
        if !p.ends_with('/') {
            p.push('/');
        }
        self.prefix = p;
        self
    }

    /// Lease TTL (default [`DEFAULT_LEASE_TTL`]; whole seconds, at least
    /// [`MIN_LEASE_TTL`]). A killed holder's lock is free after about this long.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        self.lease_ttl = Duration::from_secs(secs.max(MIN_LEASE_TTL.as_secs()));
        self
    }

    /// Name the lock explicitly instead of by the transcript's canonical
    /// path (hosts that mount the sessions at different paths must agree on
    /// a key).
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Talk TLS to every endpoint (as `https://` endpoints and `etcds://`
    /// do). Without [`EtcdBackend::with_ca_file`] the servers are verified
    /// against the system's CAs.
    pub fn with_tls(mut self, on: bool) -> Self {
        self.tls.on = on;
        self
    }

    /// Verify the servers' certificates against the CA(s) in this PEM file
    /// (etcdctl's `--cacert`). Turns TLS on.
    pub fn with_ca_file(mut self, pem: impl Into<PathBuf>) -> Self {
        self.tls.ca_file = Some(pem.into());
        self.tls.on = true;
        self
    }

    /// Present this client certificate and key (PEM files) to the servers:
    /// mutual TLS (etcdctl's `--cert` and `--key`). Turns TLS on. The files
    /// are read when the first lock connects.
    pub fn with_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls.cert_file = Some(cert.into());
        self.tls.key_file = Some(key.into());
        self.tls.on = true;
        self
    }

    /// Verify this name in the servers' certificates instead of the
    /// endpoint's host (endpoints given by IP address, certificates made
    /// out to a DNS name). Turns TLS on.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls.server_name = Some(name.into());
        self.tls.on = true;
        self
    }

    /// Authenticate as this etcd user (clusters with `etcdctl auth enable`).
    /// The password is kept in memory only and never printed (the `Debug`
    /// output says `<redacted>`); the client gets a token at connect and a
    /// new one whenever etcd says it expired.
    pub fn with_user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some(name.into());
        self.password = Some(Password(password.into()));
        self
    }

    /// How long connecting (TCP and TLS handshake) may take, and how long a
    /// cluster that gives no usable answer is tried before an acquire,
    /// `try_acquire` or `status` fails (default [`DEFAULT_CONNECT_TIMEOUT`];
    /// an acquire's own timeout bounds it too, if shorter). It is separate
    /// from the acquire's timeout: a long wait for a held lock never makes
    /// an unreachable cluster take longer to report. A refusal (TLS,
    /// authentication, permission) and a connection refused by every
    /// endpoint fail at once.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The endpoints (`HOST:PORT`, without scheme).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lease TTL.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// The explicit lock key, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Whether the endpoints are spoken to over TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.on
    }

    /// The CA file, if one was given.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.tls.ca_file.as_deref()
    }

    /// The client certificate and key files, if given.
    pub fn client_cert(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        self.tls
            .cert_file
            .as_deref()
            .zip(self.tls.key_file.as_deref())
    }

    /// The name verified in the servers' certificates, if not the host.
    pub fn server_name(&self) -> Option<&str> {
        self.tls.server_name.as_deref()
    }

    /// The etcd user name, if any (the password has no getter).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The user and password, for the connection.
    pub(crate) fn user_password(&self) -> Option<(String, Password)> {
        self.user.clone().zip(self.password.clone())
    }

    /// `etcd://HOST:PORT,...` (`etcds://` with TLS), for messages.
    pub fn url(&self) -> String {
        let scheme = if self.tls.on { "etcds" } else { "etcd" };
        format!("{scheme}://{}", self.endpoints.join(","))
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
