//! Real etcd servers for the etcd backend's tests: free 127.0.0.1 ports,
//! a temp data dir, killed (and reaped) on drop.
//!
//! The tests that start servers are ignored by default and fail without an
//! `etcd` binary on PATH when run ([`require_etcd`]).

#![allow(dead_code)]

pub mod proxy;
pub mod tls;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fail the test unless an `etcd` binary is on PATH. The tests that call
/// this are `#[ignore = "needs etcd ..."]` (docs/testing.md, "Tests that
/// need a component"): `cargo test --all-features` lists them as ignored,
/// and run on purpose (`-- --ignored`, as `.ci/run` does) a missing etcd
/// is a failure, never a silent pass.
pub fn require_etcd(test: &str) {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{test}: needs an `etcd` binary on PATH (Debian: apt-get install etcd-server); \
         this test is #[ignore]d for that reason and was run on purpose"
    );
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// One etcd member.
pub struct Etcd {
    child: Option<Child>,
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Kill it now (SIGKILL) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// TLS on a member's client port.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The server's certificate and key.
    pub pair: tls::Pair,
    /// The CA client certificates are checked against.
    pub ca: std::path::PathBuf,
    /// Require a client certificate (`--client-cert-auth`).
    pub client_cert_auth: bool,
}

fn spawn_member(name: &str, client: u16, peer: u16, cluster: &str, token: &str) -> Etcd {
    spawn_member_tls(name, client, peer, cluster, token, None)
}

fn spawn_member_tls(
    name: &str,
    client: u16,
    peer: u16,
    cluster: &str,
    token: &str,
    tls: Option<&ServerTls>,
) -> Etcd {
    let dir = tempfile::tempdir().expect("temp dir for etcd");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut cmd = Command::new("etcd");
    if let Some(t) = tls {
        cmd.arg("--cert-file")
            .arg(&t.pair.cert)
            .arg("--key-file")
            .arg(&t.pair.key)
            .arg("--trusted-ca-file")
            .arg(&t.ca)
            .arg(format!("--client-cert-auth={}", t.client_cert_auth))
            // Authentication tokens expire after a second (default 300 s):
            // the client must get new ones while it holds and waits.
            .args(["--auth-token-ttl", "1"]);
    }
    let child = cmd
        .args(["--name", name])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg(format!(
            "--listen-client-urls={scheme}://127.0.0.1:{client}"
        ))
        .arg(format!(
            "--advertise-client-urls={scheme}://127.0.0.1:{client}"
        ))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--initial-cluster={cluster}"))
        .arg(format!("--initial-cluster-token={token}"))
        .args(["--initial-cluster-state", "new"])
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
        .args(["--logger", "zap", "--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    Etcd {
        child: Some(child),
        name: name.to_owned(),
        client_port: client,
        peer_port: peer,
        _dir: dir,
    }
}

/// Wait until the cluster answers a request through the library (at most 20 s).
pub fn wait_ready(endpoints: &[String]) {
    wait_ready_with(&session_lock::etcd::EtcdBackend::new(endpoints.to_vec()));
}

/// Wait until the cluster answers `cfg`'s `status` (at most 20 s).
pub fn wait_ready_with(cfg: &session_lock::etcd::EtcdBackend) {
    let endpoints = cfg.endpoints();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        match session_lock::etcd::status(cfg) {
            Ok(_) => return,
            Err(e) if Instant::now() > until => {
                panic!("etcd at {endpoints:?} not ready in 20 s: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// One single-member etcd, ready.
pub fn single() -> Etcd {
    let (c, p) = (free_port(), free_port());
    let name = format!("s{c}");
    let e = spawn_member(
        &name,
        c,
        p,
        &format!("{name}=http://127.0.0.1:{p}"),
        &format!("t{c}"),
    );
    wait_ready(&[e.endpoint()]);
    e
}

/// Wait until something accepts TCP connections on `port` (at most 20 s):
/// for servers whose certificate no client of ours accepts.
pub fn wait_listening(port: u16) {
    wait_for(
        &format!("etcd to listen on 127.0.0.1:{port}"),
        Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
    );
}

/// One single-member etcd with TLS on its client port; started, not
/// waited for (the caller knows which client can check it).
pub fn single_tls(tls: &ServerTls) -> Etcd {
    let (c, p) = (free_port(), free_port());
    let name = format!("s{c}");
    spawn_member_tls(
        &name,
        c,
        p,
        &format!("{name}=http://127.0.0.1:{p}"),
        &format!("t{c}"),
        Some(tls),
    )
}

/// A 3-member cluster with TLS on its client ports (peers talk plain
/// HTTP among themselves); started, not waited for.
pub fn cluster3_tls(tls: &ServerTls) -> Vec<Etcd> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let names: Vec<String> = ports.iter().map(|(c, _)| format!("m{c}")).collect();
    let cluster = names
        .iter()
        .zip(&ports)
        .map(|(n, (_, p))| format!("{n}=http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let token = format!("c{}", ports[0].0);
    names
        .iter()
        .zip(&ports)
        .map(|(n, (c, p))| spawn_member_tls(n, *c, *p, &cluster, &token, Some(tls)))
        .collect()
}

/// A 3-member cluster, ready.
pub fn cluster3() -> Vec<Etcd> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let names: Vec<String> = ports.iter().map(|(c, _)| format!("m{c}")).collect();
    let cluster = names
        .iter()
        .zip(&ports)
        .map(|(n, (_, p))| format!("{n}=http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let token = format!("c{}", ports[0].0);
    let members: Vec<Etcd> = names
        .iter()
        .zip(&ports)
        .map(|(n, (c, p))| spawn_member(n, *c, *p, &cluster, &token))
        .collect();
    let eps: Vec<String> = members.iter().map(Etcd::endpoint).collect();
    wait_ready(&eps);
    members
}

/// Poll `f` every 10 ms until it returns Some, failing after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
