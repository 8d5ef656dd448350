//! The baselines' raw file operations: `flock` on a persistent file, the
//! exclusive-create floor, the reference's polling acquire, the raw
//! inspection.

use super::stats::mono_ns;
use super::{ACQUIRE_TIMEOUT, POLL_CAP, POLL_STEP, err_str};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub(super) fn open_rw(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| err_str(&format!("open {}", path.display()), e))
}

pub(super) fn open_append(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err_str(&format!("open {}", path.display()), e))
}

pub(super) fn flock(file: &File, path: &Path) -> Result<(), String> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(std::io::Error::from)
        .map_err(|e| err_str(&format!("flock {}", path.display()), e))
}

pub(super) fn funlock(file: &File, path: &Path) -> Result<(), String> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::Unlock)
        .map_err(std::io::Error::from)
        .map_err(|e| err_str(&format!("unlock {}", path.display()), e))
}

/// The raw floor of an uncontended lock: exclusive create, write the record,
/// close, unlink.
pub(super) fn raw_lock_cycle(lock: &Path, record: &[u8]) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(lock)
        .map_err(|e| err_str("raw create", e))?;
    f.write_all(record).map_err(|e| err_str("raw write", e))?;
    drop(f);
    std::fs::remove_file(lock).map_err(|e| err_str("raw unlink", e))
}

/// The reference's acquire: exclusive create; on failure sleep 50 ms x
/// attempt (capped at 1 s) and try again. Returns the `mono_ns` at which
/// the record was written (the moment acquire returns).
pub(super) fn polling_acquire(lock: &Path, record: &[u8]) -> Result<u64, String> {
    let start = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(lock)
        {
            Ok(mut f) => {
                f.write_all(record)
                    .map_err(|e| err_str("polling write", e))?;
                return Ok(mono_ns());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if start.elapsed() > ACQUIRE_TIMEOUT {
                    return Err(format!("polling acquire of {} timed out", lock.display()));
                }
                attempt += 1;
                std::thread::sleep((POLL_STEP * attempt).min(POLL_CAP));
            }
            Err(e) => return Err(err_str("polling create", e)),
        }
    }
}

/// What the inspect baseline computes: liveness and start time of the
/// record's pid.
pub(super) fn raw_inspect(lock: &Path) -> Result<(bool, Option<u64>), String> {
    let bytes = std::fs::read(lock).map_err(|e| err_str("raw read", e))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| err_str("raw parse", e))?;
    let pid = v
        .get("pid")
        .and_then(serde_json::Value::as_u64)
        .ok_or("raw inspect: record has no pid")?;
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let alive = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    let start = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            // Field 3 (state) is the first after ')'; starttime is field 22.
            rest.split_whitespace().nth(19)?.parse().ok()
        });
    Ok((alive, start))
}

/// The persistent lock file of the raw flock baselines.
pub(super) fn flock_path(target: &Path) -> PathBuf {
    let mut p = target.as_os_str().to_owned();
    p.push(".flock");
    PathBuf::from(p)
}

/// A reference-style owner record for the polling baseline.
pub(super) fn polling_record() -> Vec<u8> {
    format!(
        "{}\n",
        serde_json::json!({"pid": std::process::id(), "createdAt": "2025-01-01T00:00:00.000Z"})
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_inspect_reads_pid_liveness_and_start_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lock = dir.path().join("x.jsonl.lock");
        std::fs::write(&lock, format!("{{\"pid\":{}}}\n", std::process::id())).expect("write");
        let (alive, start) = raw_inspect(&lock).expect("inspect");
        assert!(alive);
        assert_eq!(start.is_some(), cfg!(target_os = "linux"));
    }
}
