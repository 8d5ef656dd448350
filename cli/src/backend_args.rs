//! The backend options shared by `session-lock` and the test helper:
//! `--backend URL` (else `SESSION_LOCK_BACKEND`, else etcd at
//! `ETCDCTL_ENDPOINTS`, else `file`), `--lease-ttl`, `--key`, TLS and
//! authentication for etcd (each option over its etcdctl variable), and the
//! lock options built from them.

use session_lock::LockOptions;
use std::path::PathBuf;
use std::time::Duration;

/// Where locks live: global options of every subcommand. Nothing secret
/// is ever an option (argv is visible in `ps`, and `exec` hands these to
/// its holder process as an argument): the etcd password comes from the
/// environment or a file.
#[derive(clap::Args, Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct BackendArgs {
    /// `file` (lock files beside the transcripts),
    /// `etcd://HOST:PORT[,HOST:PORT...]` or `etcds://...` (TLS; needs the
    /// `etcd` build feature) [env: SESSION_LOCK_BACKEND, else etcd at
    /// ETCDCTL_ENDPOINTS] [default: file]
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
    /// etcd TLS: verify the servers against the CA(s) in this PEM file
    /// (turns TLS on) [env: ETCDCTL_CACERT] [default: the system's CAs]
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Backend options"
    )]
    cacert: Option<PathBuf>,
    /// etcd TLS: client certificate (PEM), with --cert-key [env: ETCDCTL_CERT]
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Backend options"
    )]
    cert: Option<PathBuf>,
    /// etcd TLS: the client certificate's private key (PEM) [env: ETCDCTL_KEY]
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Backend options"
    )]
    cert_key: Option<PathBuf>,
    /// etcd TLS: the name to verify in the servers' certificates [default: the endpoint's host]
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        help_heading = "Backend options"
    )]
    server_name: Option<String>,
    /// etcd: user name; the password comes from --password-file or
    /// ETCDCTL_PASSWORD, never from the command line [env: ETCDCTL_USER, as NAME or NAME:PASSWORD]
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        help_heading = "Backend options"
    )]
    user: Option<String>,
    /// etcd: read the user's password from this file (its first line)
    /// [env: ETCDCTL_PASSWORD holds the password itself]
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Backend options"
    )]
    password_file: Option<PathBuf>,
    /// etcd: how long connecting may take, and how long an unreachable
    /// cluster is tried; a connection refused by every endpoint fails at
    /// once [env: ETCDCTL_DIAL_TIMEOUT] [default: 1s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = session_lock::parse_duration,
          help_heading = "Backend options")]
    connect_timeout: Option<Duration>,
}

impl BackendArgs {
    /// The backend these options name, with the process environment.
    pub(crate) fn resolve(&self) -> Result<session_lock::Backend, String> {
        self.resolve_with(&|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// The backend these options name: `--backend`, else
    /// `SESSION_LOCK_BACKEND`, else etcd at `ETCDCTL_ENDPOINTS`, else
    /// `file`. For etcd, each option overrides its etcdctl variable.
    pub(crate) fn resolve_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<session_lock::Backend, String> {
        let url = match (&self.backend, env("SESSION_LOCK_BACKEND")) {
            (Some(b), _) => b.clone(),
            (None, Some(b)) => b,
            (None, None) => match env("ETCDCTL_ENDPOINTS") {
                Some(list) if cfg!(feature = "etcd") => format!("etcd://{list}"),
                _ => String::new(),
            },
        };
        #[allow(unused_mut)]
        let mut backend = session_lock::Backend::parse(&url)?;
        #[cfg(feature = "etcd")]
        if let session_lock::Backend::Etcd(e) = &mut backend {
            *e = self.etcd(e.clone(), env)?;
            return Ok(backend);
        }
        let etcd_only = [
            ("--lease-ttl", self.lease_ttl.is_some()),
            ("--key", self.key.is_some()),
            ("--cacert", self.cacert.is_some()),
            ("--cert", self.cert.is_some()),
            ("--cert-key", self.cert_key.is_some()),
            ("--server-name", self.server_name.is_some()),
            ("--user", self.user.is_some()),
            ("--password-file", self.password_file.is_some()),
            ("--connect-timeout", self.connect_timeout.is_some()),
        ];
        if let Some((name, _)) = etcd_only.iter().find(|(_, given)| *given) {
            return Err(format!(
                "{name} needs an etcd backend (--backend etcd://HOST:PORT or etcds://HOST:PORT)"
            ));
        }
        Ok(backend)
    }

    /// The etcd settings: options first, then etcdctl's variables.
    #[cfg(feature = "etcd")]
    fn etcd(
        &self,
        mut cfg: session_lock::etcd::EtcdBackend,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<session_lock::etcd::EtcdBackend, String> {
        if let Some(t) = self.lease_ttl {
            cfg = cfg.with_lease_ttl(t);
        }
        if let Some(k) = &self.key {
            cfg = cfg.with_key(k.clone());
        }
        let path =
            |opt: &Option<PathBuf>, var: &str| opt.clone().or_else(|| env(var).map(PathBuf::from));
        if let Some(ca) = path(&self.cacert, "ETCDCTL_CACERT") {
            cfg = cfg.with_ca_file(ca);
        }
        match (
            path(&self.cert, "ETCDCTL_CERT"),
            path(&self.cert_key, "ETCDCTL_KEY"),
        ) {
            (Some(c), Some(k)) => cfg = cfg.with_client_cert(c, k),
            (None, None) => {}
            (Some(_), None) => {
                return Err("a client certificate (--cert / ETCDCTL_CERT) needs its key (--cert-key / ETCDCTL_KEY)".into());
            }
            (None, Some(_)) => {
                return Err("a client key (--cert-key / ETCDCTL_KEY) needs its certificate (--cert / ETCDCTL_CERT)".into());
            }
        }
        if let Some(n) = &self.server_name {
            cfg = cfg.with_server_name(n.clone());
        }
        let timeout = match (self.connect_timeout, env("ETCDCTL_DIAL_TIMEOUT")) {
            (Some(t), _) => Some(t),
            (None, Some(t)) => Some(
                session_lock::parse_duration(&t)
                    .map_err(|e| format!("ETCDCTL_DIAL_TIMEOUT: {e}"))?,
            ),
            (None, None) => None,
        };
        if let Some(t) = timeout {
            cfg = cfg.with_connect_timeout(t);
        }
        if let Some((user, password)) = self.credentials(env)? {
            cfg = cfg.with_user(user, password);
        }
        Ok(cfg)
    }

    /// User and password: `--user`, else the name in `ETCDCTL_USER`; the
    /// password from `--password-file`, else `ETCDCTL_PASSWORD`, else the
    /// part of `ETCDCTL_USER` after `:` (that user's only). Never argv.
    #[cfg(feature = "etcd")]
    fn credentials(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<(String, String)>, String> {
        if self.user.as_deref().is_some_and(|u| u.contains(':')) {
            return Err("--user takes a user name only: a password on the command line is visible to everyone in `ps`; put it in ETCDCTL_PASSWORD or a file for --password-file".into());
        }
        let (env_user, env_user_pw) = match env("ETCDCTL_USER") {
            Some(u) => match u.split_once(':') {
                Some((n, p)) => (Some(n.to_owned()), Some(p.to_owned())),
                None => (Some(u), None),
            },
            None => (None, None),
        };
        let from_env = self.user.is_none() || self.user == env_user;
        let Some(user) = self.user.clone().or(env_user) else {
            if self.password_file.is_some() {
                return Err("--password-file needs a user name (--user or ETCDCTL_USER)".into());
            }
            return Ok(None);
        };
        let password = match &self.password_file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("--password-file {}: {e}", f.display()))?;
                text.lines().next().unwrap_or_default().to_owned()
            }
            None => match env("ETCDCTL_PASSWORD") {
                Some(p) => p,
                None => match env_user_pw.filter(|_| from_env) {
                    Some(p) => p,
                    None => {
                        return Err(format!(
                            "no password for etcd user {user:?}: set ETCDCTL_PASSWORD, ETCDCTL_USER={user}:PASSWORD, or --password-file FILE"
                        ));
                    }
                },
            },
        };
        Ok(Some((user, password)))
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
    let mut o = LockOptions::new().with_backend(backend());
    if let Some(t) = timeout {
        o = o.with_timeout(t);
    }
    if let Some(m) = max_hold {
        o = o.with_max_hold(m);
    }
    if let Some(l) = label {
        o = o.with_label(l);
    }
    o
}

#[cfg(all(test, feature = "etcd"))]
mod tests {
    use super::*;
    use session_lock::Backend;
    use std::path::Path;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn etcd(args: &BackendArgs, vars: &[(&str, &str)]) -> session_lock::etcd::EtcdBackend {
        match args.resolve_with(&env(vars)) {
            Ok(Backend::Etcd(e)) => e,
            other => panic!("expected etcd for {vars:?}: {other:?}"),
        }
    }

    const ETCDCTL: &[(&str, &str)] = &[
        ("ETCDCTL_ENDPOINTS", "https://a:2379,https://b:2379"),
        ("ETCDCTL_CACERT", "/env/ca.pem"),
        ("ETCDCTL_CERT", "/env/c.pem"),
        ("ETCDCTL_KEY", "/env/k.pem"),
        ("ETCDCTL_USER", "alice:pw-from-user"),
        ("ETCDCTL_DIAL_TIMEOUT", "3s"),
    ];

    #[test]
    fn the_etcdctl_environment_alone_is_enough() {
        let e = etcd(&BackendArgs::default(), ETCDCTL);
        assert_eq!(e.endpoints(), ["a:2379", "b:2379"]);
        assert!(e.uses_tls());
        assert_eq!(e.ca_file(), Some(Path::new("/env/ca.pem")));
        assert_eq!(
            e.client_cert(),
            Some((Path::new("/env/c.pem"), Path::new("/env/k.pem")))
        );
        assert_eq!(e.user(), Some("alice"));
        assert_eq!(e.connect_timeout(), Duration::from_secs(3));
        assert!(!format!("{e:?}").contains("pw-from-user"));
    }

    #[test]
    fn options_override_the_variables_and_the_backend_order_holds() {
        let args = BackendArgs {
            cacert: Some("/opt/ca.pem".into()),
            cert: Some("/opt/c.pem".into()),
            cert_key: Some("/opt/k.pem".into()),
            connect_timeout: Some(Duration::from_millis(500)),
            ..Default::default()
        };
        let e = etcd(&args, ETCDCTL);
        assert_eq!(e.ca_file(), Some(Path::new("/opt/ca.pem")));
        assert_eq!(e.client_cert().unwrap().0, Path::new("/opt/c.pem"));
        assert_eq!(e.connect_timeout(), Duration::from_millis(500));
        // SESSION_LOCK_BACKEND beats ETCDCTL_ENDPOINTS; --backend beats both.
        let mut vars = ETCDCTL.to_vec();
        vars.push(("SESSION_LOCK_BACKEND", "etcd://c:1"));
        assert_eq!(etcd(&BackendArgs::default(), &vars).endpoints(), ["c:1"]);
        let file = BackendArgs {
            backend: Some("file".into()),
            ..Default::default()
        };
        assert_eq!(file.resolve_with(&env(&vars)), Ok(Backend::File));
        assert_eq!(
            BackendArgs::default().resolve_with(&env(&[])),
            Ok(Backend::File)
        );
    }

    #[test]
    fn passwords_come_from_the_environment_or_a_file_never_argv() {
        let refused = BackendArgs {
            user: Some("alice:secret".into()),
            ..Default::default()
        };
        let err = refused.resolve_with(&env(ETCDCTL)).unwrap_err();
        assert!(err.contains("ps") && !err.contains("secret"), "{err}");
        // ETCDCTL_PASSWORD beats the part after ':'; a file beats both.
        let mut vars = ETCDCTL.to_vec();
        vars.push(("ETCDCTL_PASSWORD", "pw-from-password"));
        let e = etcd(&BackendArgs::default(), &vars);
        assert_eq!(e, e.clone().with_user("alice", "pw-from-password"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "pw-from-file\n").unwrap();
        let args = BackendArgs {
            password_file: Some(f),
            ..Default::default()
        };
        let e = etcd(&args, &vars);
        assert_eq!(e, e.clone().with_user("alice", "pw-from-file"));
        // Another user does not get ETCDCTL_USER's password.
        let bob = BackendArgs {
            user: Some("bob".into()),
            ..Default::default()
        };
        let err = bob.resolve_with(&env(ETCDCTL)).unwrap_err();
        assert!(err.contains("no password for etcd user \"bob\""), "{err}");
    }

    #[test]
    fn etcd_options_with_the_file_backend_are_refused() {
        let args = BackendArgs {
            cacert: Some("/ca.pem".into()),
            ..Default::default()
        };
        let err = args.resolve_with(&env(&[])).unwrap_err();
        assert!(err.starts_with("--cacert needs an etcd backend"), "{err}");
    }
}
