//! The backend options shared by `session-lock` and the test helper:
//! `--backend URL` (else `SESSION_LOCK_BACKEND`, else `file`), `--lease-ttl`
//! and `--key` for etcd, and the lock options built from them.

use session_lock::LockOptions;
use std::time::Duration;

/// Where locks live: global options of every subcommand.
#[derive(clap::Args, Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct BackendArgs {
    /// `file` (lock files beside the transcripts) or
    /// `etcd://HOST:PORT[,HOST:PORT...]` (needs the `etcd` build feature)
    /// [env: SESSION_LOCK_BACKEND] [default: file]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help_heading = "Backend options"
    )]
    backend: Option<String>,
    /// etcd: lease TTL; a killed holder's lock is free after about this long [default: 10s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = session_lock::parse_duration,
          help_heading = "Backend options")]
    lease_ttl: Option<Duration>,
    /// etcd: the lock's key [default: the transcript's canonical path]
    #[arg(
        long,
        global = true,
        value_name = "KEY",
        help_heading = "Backend options"
    )]
    key: Option<String>,
}

impl BackendArgs {
    /// The backend these options name (`--backend`, else `SESSION_LOCK_BACKEND`, else `file`).
    pub(crate) fn resolve(&self) -> Result<session_lock::Backend, String> {
        let url = match &self.backend {
            Some(b) => b.clone(),
            None => std::env::var("SESSION_LOCK_BACKEND").unwrap_or_default(),
        };
        #[allow(unused_mut)]
        let mut backend = session_lock::Backend::parse(&url)?;
        #[cfg(feature = "etcd")]
        if let session_lock::Backend::Etcd(e) = &mut backend {
            let mut cfg = e.clone();
            if let Some(t) = self.lease_ttl {
                cfg = cfg.lease_ttl(t);
            }
            if let Some(k) = &self.key {
                cfg = cfg.key(k.clone());
            }
            *e = cfg;
            return Ok(backend);
        }
        if self.lease_ttl.is_some() || self.key.is_some() {
            return Err(
                "--lease-ttl and --key need an etcd backend (--backend etcd://HOST:PORT)".into(),
            );
        }
        Ok(backend)
    }
}

/// The backend of this run (set once in `main`).
pub(crate) static BACKEND: std::sync::OnceLock<session_lock::Backend> = std::sync::OnceLock::new();

/// The backend of this run.
pub(crate) fn backend() -> session_lock::Backend {
    BACKEND.get().cloned().unwrap_or_default()
}

/// Options for this run's backend with the given timeout, max hold, label.
pub(crate) fn options(
    timeout: Option<Duration>,
    max_hold: Option<Duration>,
    label: Option<String>,
) -> LockOptions {
    let mut o = LockOptions::new().backend(backend());
    if let Some(t) = timeout {
        o = o.timeout(t);
    }
    if let Some(m) = max_hold {
        o = o.max_hold(m);
    }
    if let Some(l) = label {
        o = o.label(l);
    }
    o
}
