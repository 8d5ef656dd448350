//! The parent's side of a bench child process: spawn it, talk to it line
//! by line, reap it.

use super::{ChildRole, err_str};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A child of the bench, driven line by line over its stdin/stdout.
pub(super) struct Peer {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    reaped: bool,
}

impl Peer {
    pub(super) fn spawn(role: ChildRole, target: &Path, extra: &[String]) -> Result<Peer, String> {
        let exe = std::env::current_exe().map_err(|e| err_str("find own executable", e))?;
        let mut child = Command::new(exe)
            .arg("bench")
            .arg("--child")
            .arg(role.name())
            .arg("--target")
            .arg(target)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| err_str("spawn bench child", e))?;
        let stdin = child.stdin.take();
        let Some(out) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("bench child has no stdout".into());
        };
        Ok(Peer {
            name: format!("{} child {}", role.name(), child.id()),
            child,
            stdin,
            out: BufReader::new(out),
            reaped: false,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn send(&mut self, line: &str) -> Result<(), String> {
        let Some(w) = self.stdin.as_mut() else {
            return Err(format!("{}: stdin already closed", self.name));
        };
        writeln!(w, "{line}")
            .and_then(|()| w.flush())
            .map_err(|e| err_str(&format!("{}: write", self.name), e))
    }

    pub(super) fn recv(&mut self) -> Result<String, String> {
        let mut s = String::new();
        match self.out.read_line(&mut s) {
            Ok(0) => {
                self.stdin = None;
                let status = self.child.wait();
                self.reaped = true;
                Err(match status {
                    Ok(st) => format!("{}: exited early ({st})", self.name),
                    Err(e) => format!("{}: exited early ({e})", self.name),
                })
            }
            Ok(_) => {
                let line = s.trim_end();
                match line.strip_prefix("error ") {
                    Some(e) => Err(format!("{}: {e}", self.name)),
                    None => Ok(line.to_owned()),
                }
            }
            Err(e) => Err(err_str(&format!("{}: read", self.name), e)),
        }
    }

    pub(super) fn expect(&mut self, want: &str) -> Result<(), String> {
        let got = self.recv()?;
        if got == want {
            Ok(())
        } else {
            Err(format!("{}: expected {want:?}, got {got:?}", self.name))
        }
    }

    /// Close stdin and wait for a clean exit.
    pub(super) fn finish(mut self) -> Result<(), String> {
        self.stdin = None;
        let status = self.child.wait();
        self.reaped = true;
        match status {
            Ok(st) if st.success() => Ok(()),
            Ok(st) => Err(format!("{}: {st}", self.name)),
            Err(e) => Err(err_str(&self.name, e)),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !self.reaped {
            // Error path: end our own child by its pid, then reap it.
            self.stdin = None;
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
