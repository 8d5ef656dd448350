//! Certificates for the TLS tests, made by the `openssl` command line
//! (on the CI image; Debian's `openssl` package otherwise): a CA, server
//! certificates (good for 127.0.0.1, made out to another host, expired),
//! client certificates, and a second, unrelated CA.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether `openssl` can be run (else the TLS tests fail: they are
/// ignored by default, see `require_etcd`).
pub fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key and certificate pair on disk.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every certificate the tests use, in one temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA the servers' and clients' certificates are signed by.
    pub ca: PathBuf,
    /// A CA that signed nothing of ours.
    pub other_ca: PathBuf,
    /// Server: SAN IP 127.0.0.1 and DNS localhost.
    pub server: Pair,
    /// Server: made out to `other.example` only.
    pub wrong_host: Pair,
    /// Server: for 127.0.0.1, but expired yesterday.
    pub expired: Pair,
    /// Client certificate (CN `lock-client`).
    pub client: Pair,
}

const CNF: &str = "[req]\ndistinguished_name = dn\n[dn]\n[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n";

fn key(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
            &format!("{name}.key"),
        ],
    );
    dir.join(format!("{name}.key"))
}

fn ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let k = key(dir, name);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-config",
            "req.cnf",
            "-extensions",
            "ca",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "30",
            "-out",
            &format!("{name}.pem"),
        ],
    );
    (dir.join(format!("{name}.pem")), k)
}

/// A leaf signed by the CA `ca_name`, with these SANs, valid for `days`
/// (negative: expired).
fn leaf(dir: &Path, ca_name: &str, name: &str, san: &str, days: &str) -> Pair {
    let k = key(dir, name);
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!(
            "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = {san}\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-config",
            "req.cnf",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca_name}.pem"),
            "-CAkey",
            &format!("{ca_name}.key"),
            "-CAcreateserial",
            "-days",
            days,
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    Pair {
        cert: dir.join(format!("{name}.pem")),
        key: k,
    }
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir for certificates");
        let d = dir.path();
        std::fs::write(d.join("req.cnf"), CNF).unwrap();
        let (ca_cert, _) = ca(d, "test-ca");
        let (other_ca, _) = ca(d, "other-ca");
        let local = "IP:127.0.0.1,DNS:localhost";
        Pki {
            ca: ca_cert,
            other_ca,
            server: leaf(d, "test-ca", "server", local, "30"),
            wrong_host: leaf(d, "test-ca", "wrong-host", "DNS:other.example", "30"),
            expired: leaf(d, "test-ca", "expired", local, "-1"),
            client: leaf(d, "test-ca", "lock-client", "DNS:lock-client", "30"),
            dir,
        }
    }
}
