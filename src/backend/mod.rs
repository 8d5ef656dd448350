//! Which coordination backend a lock uses: the lock-file protocol of
//! `docs/protocol.md` (the default), or an etcd v3 cluster (feature `etcd`,
//! see `docs/distributed.md`).

#[cfg(feature = "etcd")]
pub(crate) mod etcd;

/// Where locks live. Choose with [`crate::LockOptions::with_backend`].
///
/// ```
/// use session_lock::{Backend, LockOptions};
/// assert_eq!(Backend::parse("file").unwrap(), Backend::File);
/// let opts = LockOptions::new().with_backend(Backend::File);
/// assert_eq!(opts.backend(), &Backend::File);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// A sidecar lock file `<transcript>.lock` with a kernel witness (this
    /// host, or a shared filesystem with the caveats of `docs/platforms.md`).
    #[default]
    File,
    /// Leases, the lock recipe and fencing tokens of an etcd v3 cluster.
    #[cfg(feature = "etcd")]
    Etcd(etcd::EtcdBackend),
}

impl Backend {
    /// Parse the CLI's `--backend` value: `file`, or
    /// `etcd://HOST:PORT[,HOST:PORT...]`, or `etcds://...` for TLS (needs
    /// the `etcd` feature; an endpoint may also say `https://HOST:PORT`).
    ///
    /// # Errors
    /// A one-line message for anything else.
    pub fn parse(text: &str) -> Result<Backend, String> {
        let text = text.trim();
        if text.is_empty() || text == "file" {
            return Ok(Backend::File);
        }
        let (rest, tls) = match (text.strip_prefix("etcd://"), text.strip_prefix("etcds://")) {
            (Some(rest), _) => (Some(rest), false),
            (None, Some(rest)) => (Some(rest), true),
            (None, None) => (None, false),
        };
        if let Some(rest) = rest {
            #[cfg(feature = "etcd")]
            {
                return etcd::EtcdBackend::from_hosts(rest)
                    .map(|b| if tls { b.with_tls(true) } else { b })
                    .map(Backend::Etcd);
            }
            #[cfg(not(feature = "etcd"))]
            {
                let _ = (rest, tls);
                return Err(format!(
                    "backend {text:?}: this build has no etcd backend (rebuild with the cargo feature `etcd`)"
                ));
            }
        }
        Err(format!(
            "backend {text:?}: expected `file`, `etcd://HOST:PORT[,HOST:PORT...]` or `etcds://...` (TLS)"
        ))
    }

    /// The backend's name in messages: `file` or `etcd`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::File => "file",
            #[cfg(feature = "etcd")]
            Backend::Etcd(_) => "etcd",
        }
    }

    /// How the backend tells a live holder from a dead one, for messages
    /// about options that only the other one uses.
    pub(crate) fn liveness(&self) -> &'static str {
        match self {
            Backend::File => "a holder is judged by its witness, its pid and the age of its record",
            #[cfg(feature = "etcd")]
            Backend::Etcd(_) => {
                "a holder is live exactly as long as its lease (there is no record age or pid to judge)"
            }
        }
    }

    /// `file` or the etcd URL.
    pub fn describe(&self) -> String {
        match self {
            Backend::File => "file".into(),
            #[cfg(feature = "etcd")]
            Backend::Etcd(e) => e.url(),
        }
    }
}
