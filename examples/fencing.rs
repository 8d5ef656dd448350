//! A paused holder's late write, rejected by a store that checks fencing
//! tokens (see `docs/distributed.md`).
//!
//! ```sh
//! cargo run --features etcd --example fencing                  # starts its own etcd (needs `etcd` on PATH)
//! ETCD_ENDPOINT=127.0.0.1:2379 cargo run --features etcd --example fencing
//! ```
//!
//! 1. Process A takes the lock (lease TTL 2 s), gets token `ta`, checks its
//!    guard, and is about to write: then its whole process is SIGSTOPped.
//! 2. Its lease expires; this process (B) takes the lock with token `tb > ta`
//!    and writes through the store with `tb`.
//! 3. A is continued and sends the write it had already decided to make,
//!    with `ta`. The lock cannot stop a write that was past its check; the
//!    store can: it has seen `tb` and rejects anything older.

use session_lock::etcd::EtcdBackend;
use session_lock::{Backend, LockOptions};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A storage layer that remembers the highest token it has accepted and
/// refuses writes carrying an older one.
#[derive(Default)]
struct FencedStore {
    highest: i64,
    lines: Vec<String>,
}

impl FencedStore {
    fn write(&mut self, token: i64, line: &str) -> Result<(), String> {
        if token < self.highest {
            return Err(format!(
                "rejected {line:?}: token {token} is older than {}",
                self.highest
            ));
        }
        self.highest = token;
        self.lines.push(line.to_owned());
        Ok(())
    }
}

fn backend(endpoint: &str) -> LockOptions {
    LockOptions::new()
        .with_timeout(Duration::from_secs(20))
        .with_backend(Backend::Etcd(
            EtcdBackend::new([endpoint])
                .with_lease_ttl(Duration::from_secs(2))
                .with_key("fencing-example"),
        ))
}

/// Process A: hold, report the token, then send the write it decided on.
fn holder(endpoint: &str, transcript: &str) -> Result<(), Box<dyn std::error::Error>> {
    let guard = session_lock::acquire_with(transcript, &backend(endpoint))?;
    let token = guard.fencing_token().ok_or("no token")?;
    guard.check()?; // the last check before the write
    println!("token {token}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?; // (paused here by SIGSTOP)
    println!("write {token} a-late");
    println!("guard {:?}", guard.check().err().map(|e| e.to_string()));
    std::io::stdout().flush()?;
    Ok(())
}

fn start_etcd(
    dir: &std::path::Path,
) -> Result<(std::process::Child, String), Box<dyn std::error::Error>> {
    let port = |_: ()| -> std::io::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let (c, p) = (port(())?, port(())?);
    let child = Command::new("etcd")
        .args(["--name", "fx", "--data-dir"])
        .arg(dir.join("data"))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{c}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{c}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{p}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{p}"
        ))
        .arg(format!("--initial-cluster=fx=http://127.0.0.1:{p}"))
        .args(["--log-level", "error", "--logger", "zap"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start etcd ({e}); install it (Debian: etcd-server) or set ETCD_ENDPOINT"
            )
        })?;
    let endpoint = format!("127.0.0.1:{c}");
    let cfg = EtcdBackend::new([endpoint.as_str()]);
    for _ in 0..200 {
        if session_lock::etcd::status(&cfg).is_ok() {
            return Ok((child, endpoint));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("etcd did not come up within 10 s".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("holder") {
        return holder(&args[2], &args[3]);
    }
    let dir = tempfile::tempdir()?;
    let transcript = dir.path().join("session.jsonl");
    let transcript = transcript.to_str().ok_or("non-UTF-8 temp dir")?.to_owned();
    let (mut etcd, endpoint) = match std::env::var("ETCD_ENDPOINT") {
        Ok(e) => (None, e),
        Err(_) => {
            let (c, e) = start_etcd(dir.path())?;
            (Some(c), e)
        }
    };
    let mut store = FencedStore::default();

    let mut a = Command::new(std::env::current_exe()?)
        .args(["holder", &endpoint, &transcript])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut a_out = BufReader::new(a.stdout.take().ok_or("no stdout")?).lines();
    let first = a_out.next().ok_or("holder ended")??;
    let ta: i64 = first.trim_start_matches("token ").parse()?;
    println!("A holds the lock with token {ta}; pausing A (SIGSTOP) before its write");
    Command::new("kill")
        .args(["-STOP", &a.id().to_string()])
        .status()?;

    let guard = session_lock::acquire_with(&transcript, &backend(&endpoint))?;
    let tb = guard.fencing_token().ok_or("no token")?;
    println!("B acquired after A's lease expired: token {tb}");
    store.write(tb, "b1")?;
    println!("store accepted B's write with token {tb}");

    Command::new("kill")
        .args(["-CONT", &a.id().to_string()])
        .status()?;
    writeln!(a.stdin.as_mut().ok_or("no stdin")?, "go")?;
    let late = a_out.next().ok_or("holder ended")??;
    let token: i64 = late.split_whitespace().nth(1).ok_or("bad line")?.parse()?;
    match store.write(token, "a-late") {
        Ok(()) => return Err("the store accepted the paused holder's late write".into()),
        Err(e) => println!("store {e}"),
    }
    if let Some(Ok(g)) = a_out.next() {
        println!("A's guard afterwards: {g}");
    }
    let _ = a.wait();
    guard.release()?;
    assert_eq!(store.lines, ["b1"]);
    if let Some(e) = etcd.as_mut() {
        let _ = e.kill();
        let _ = e.wait();
    }
    println!("ok: only B's write is in the store");
    Ok(())
}
