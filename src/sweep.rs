//! Directory sweep: inspect every lock file in a directory and remove only
//! what acquire itself would reclaim, through the same race-free reclaim.
//!
//! Like the reference's `cleanStaleLockFiles`, the sweep does not apply
//! `hold-exceeded` and does not reclaim our-pid records without a start time
//! (`orphan-self-pid` needs a matching start time here). It also removes
//! temp files (`.<name>.lock.<token>.tmp`) left by a process that died
//! between creating and publishing its record, and witness slots
//! (`.<name>.lock.w<N>.tmp`, see `docs/protocol.md`, "Witness slots") left
//! by processes that exited, once nobody holds them and they are older than
//! the orphan grace. A lock's queue file
//! (`<name>.lock.queue`, see `docs/protocol.md`, "The queue") is removed,
//! without a report, only once its transcript and its lock file are both
//! gone and nobody holds or waits for its `flock`.

use crate::error::{Error, Result};
use crate::inspect::{self, Inspection, Policy, Verdict};
use crate::lock::{self, Reclaim};
use crate::sys;
use serde::Serialize;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What to sweep and whether to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepOptions {
    /// Remove reclaimable locks (false: report only, a dry run).
    pub remove: bool,
    /// Stale threshold for `too-old` (report only for live owners).
    pub stale: Duration,
    /// Orphan grace for empty/malformed files and temp files.
    pub orphan_grace: Duration,
    /// Lock file names to consider end with this (default `.jsonl.lock`).
    pub suffix: String,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            remove: true,
            stale: crate::DEFAULT_STALE,
            orphan_grace: crate::DEFAULT_ORPHAN_GRACE,
            suffix: ".jsonl.lock".to_owned(),
        }
    }
}

/// One lock file's report.
///
/// Serialised as the lock's [`Inspection`] fields at the top level
/// (`lockPath`, `verdict`, `reasons`, `contents`, `record`, `witness`,
/// `pidAlive`, `ageMs`, `fileAgeMs`; without an inspection just `lockPath`
/// and `verdict`: `"unknown"` with an `error`, else `"absent"`) followed
/// by `removed` and `error`: the
/// shape `session-lock status --json` and `clean --json` print for a lock.
///
/// ```
/// use session_lock::sweep::{sweep, SweepOptions};
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.jsonl.lock"), b"")?;
/// let result = sweep(dir.path(), &SweepOptions::default())?;
/// let v = serde_json::to_value(&result.locks[0])?;
/// assert_eq!(v["verdict"], "held");
/// assert_eq!(v["reasons"][0], "missing-pid");
/// assert_eq!(v["removed"], false);
/// assert!(v.get("inspection").is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SweepReport {
    /// The lock file.
    pub lock_path: PathBuf,
    /// The inspection (absent if the file vanished or could not be read).
    pub inspection: Option<Inspection>,
    /// Whether the sweep removed it.
    pub removed: bool,
    /// What went wrong with this file, if anything (the sweep goes on).
    pub error: Option<String>,
}

impl Serialize for SweepReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Absent<'a> {
            lock_path: &'a Path,
            verdict: &'static str,
        }
        #[derive(Serialize)]
        struct Report<'a, L: Serialize> {
            #[serde(flatten)]
            lock: L,
            removed: bool,
            error: &'a Option<String>,
        }
        match &self.inspection {
            Some(lock) => Report {
                lock,
                removed: self.removed,
                error: &self.error,
            }
            .serialize(s),
            None => Report {
                lock: Absent {
                    lock_path: &self.lock_path,
                    // Vanished, or could not be inspected (then `error` says why).
                    verdict: if self.error.is_some() {
                        "unknown"
                    } else {
                        "absent"
                    },
                },
                removed: self.removed,
                error: &self.error,
            }
            .serialize(s),
        }
    }
}

/// The sweep's result.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SweepResult {
    /// Every lock file, sorted by name.
    pub locks: Vec<SweepReport>,
    /// Leftover temp files removed.
    pub temps_removed: Vec<PathBuf>,
    /// Leftover temp files a sweep with `remove` would remove (dry run).
    pub temps_removable: Vec<PathBuf>,
}

fn sweep_policy(opts: &SweepOptions) -> Policy {
    Policy {
        stale: opts.stale,
        orphan_grace: opts.orphan_grace,
        respect_max_hold: false,
        reclaim_self_without_starttime: false,
    }
}

/// Sweep `dir`.
///
/// # Errors
/// `Io` if the directory cannot be listed (a missing directory is an empty
/// result, as in the reference). Per-file problems are reported in
/// [`SweepReport::error`] and do not stop the sweep.
///
/// # Examples
/// ```
/// use session_lock::sweep::{sweep, SweepOptions};
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.jsonl.lock"), b"")?; // fresh empty file: kept
/// let result = sweep(dir.path(), &SweepOptions::default())?;
/// assert_eq!(result.locks.len(), 1);
/// assert!(!result.locks[0].removed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sweep(dir: impl AsRef<Path>, opts: &SweepOptions) -> Result<SweepResult> {
    let (locks, temps, queues) = list(dir.as_ref(), &opts.suffix)?;
    let policy = sweep_policy(opts);
    let mut result = SweepResult::default();
    for path in locks {
        result.locks.push(sweep_one(&path, &policy, opts.remove));
    }
    if opts.remove {
        for path in queues {
            remove_idle_queue(&path);
        }
    }
    for path in temps {
        if stale_temp(&path, opts.orphan_grace, opts.remove) {
            if opts.remove {
                result.temps_removed.push(path);
            } else {
                result.temps_removable.push(path);
            }
        }
    }
    Ok(result)
}

/// The lock files in `dir` whose names end with `suffix` (and do not start
/// with `.`), sorted: what [`sweep`] and `session-lock status DIR` look at.
/// A missing directory has none.
///
/// # Errors
/// `Io` if the directory cannot be listed.
pub fn lock_files(dir: impl AsRef<Path>, suffix: &str) -> Result<Vec<PathBuf>> {
    list(dir.as_ref(), suffix).map(|(locks, _, _)| locks)
}

/// Lock files, leftover temp files (`.<name>.lock.<token>.tmp`) and queue
/// files (`<name>.lock.queue`) in `dir`, each sorted by name.
type Listing = (Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>);

fn list(dir: &Path, suffix: &str) -> Result<Listing> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(Error::io("list directory", dir, e)),
    };
    let mut locks = Vec::new();
    let mut temps = Vec::new();
    let mut queues = Vec::new();
    let queue_suffix = format!("{suffix}{}", lock::queue::QUEUE_SUFFIX);
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list directory", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") && name.contains(".lock.") {
            temps.push(entry.path());
        } else if name.ends_with(suffix) && !name.starts_with('.') {
            locks.push(entry.path());
        } else if name.ends_with(&queue_suffix) && !name.starts_with('.') {
            queues.push(entry.path());
        }
    }
    locks.sort();
    temps.sort();
    queues.sort();
    Ok((locks, temps, queues))
}

/// Remove the queue file `path` (`<T>.lock.queue`) if `T` and `T.lock` are
/// both gone and nobody holds its `flock` (taken without blocking and held
/// across the unlink, so a contender that opened it just before waits on
/// it until we are done, and then finds the lock path free). Returns
/// whether it was removed.
fn remove_idle_queue(path: &Path) -> bool {
    let Some(lock) = path
        .to_str()
        .and_then(|p| p.strip_suffix(lock::queue::QUEUE_SUFFIX))
        .map(PathBuf::from)
    else {
        return false;
    };
    let Some(target) = lock
        .to_str()
        .and_then(|p| p.strip_suffix(".lock"))
        .map(PathBuf::from)
    else {
        return false;
    };
    let absent = |p: &Path| matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == io::ErrorKind::NotFound);
    if !absent(&lock) || !absent(&target) {
        return false;
    }
    let Ok(file) = sys::open_for_inspection(path) else {
        return false;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if !meta.file_type().is_file() || !matches!(sys::flock_try(&file, true), Ok(true)) {
        return false;
    }
    let same =
        std::fs::symlink_metadata(path).is_ok_and(|m| sys::file_id(&m) == sys::file_id(&meta));
    // Checked again under the flock: our blocking holders publish only
    // while they hold it (the queue is advisory: a race here costs order,
    // never exclusion).
    same && absent(&lock) && std::fs::remove_file(path).is_ok()
}

fn sweep_one(path: &Path, policy: &Policy, remove: bool) -> SweepReport {
    let mut report = SweepReport {
        lock_path: path.to_owned(),
        inspection: None,
        removed: false,
        error: None,
    };
    match inspect::observe(path, policy, &crate::lock::held::held_by_us) {
        Ok(None) => {}
        Ok(Some(observed)) => {
            report.inspection = Some(observed.inspection.clone());
            if remove && observed.inspection.verdict == Verdict::Reclaimable {
                match lock::reclaim(observed) {
                    Ok(Reclaim::Removed) => {
                        report.removed = true;
                        tracing::warn!(
                            "removed stale session lock: {} ({})",
                            path.display(),
                            report
                                .inspection
                                .as_ref()
                                .map(|i| i
                                    .reasons
                                    .iter()
                                    .map(|r| r.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", "))
                                .unwrap_or_default()
                        );
                    }
                    Ok(Reclaim::Changed | Reclaim::Busy | Reclaim::Guarded) => {}
                    Err(e) => report.error = Some(e.to_string()),
                }
            }
        }
        Err(e) => report.error = Some(e.to_string()),
    }
    report
}

/// A leftover temp file nobody holds a flock on, older than the grace:
/// removed when `remove`, else only reported. Returns whether it was (or
/// would be) removed.
fn stale_temp(path: &Path, grace: Duration, remove: bool) -> bool {
    let Ok(file) = sys::open_for_inspection(path) else {
        return false;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if !meta.file_type().is_file() {
        return false;
    }
    let old = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > grace);
    if !old {
        return false;
    }
    // `_writable` keeps a descriptor NFS needed (and its lock) until after
    // the unlink.
    let mut _writable = None;
    let id = sys::file_id(&meta);
    if !matches!(
        lock::lock_for_removal(&file, &mut _writable, path, id),
        lock::RemovalLock::Taken
    ) {
        return false;
    }
    let same = std::fs::symlink_metadata(path).is_ok_and(|m| sys::file_id(&m) == id);
    same && (!remove || std::fs::remove_file(path).is_ok())
}
