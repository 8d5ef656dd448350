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
//! (`<name>.lock.queue`, see `docs/protocol.md`, "The queue") goes with its
//! last user; one left behind (its last users killed) is removed once its
//! lock file is gone and nobody holds or waits for its `flock`.
//!
//! Only what is provably ours is removed: the exact names we
//! create (`classify_temp_name`), a regular file of our user, private,
//! with one link, holding nothing or one of our records
//! (`is_our_content`; a queue file: nothing), that no other process has
//! open or locked. Everything else is kept and reported
//! ([`SweepResult::kept`]); removed temp and queue files are listed.

use crate::error::{Error, Result};
use crate::file::inspect::{self, Inspection, Policy, Verdict};
use crate::file::{self, Reclaim};
use crate::sys;
use serde::Serialize;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What to sweep and whether to remove. Start from [`SweepOptions::new`]
/// (the defaults) and change what you need, with the `with_*` methods or by
/// setting a field; fields may be added (the struct is non-exhaustive).
///
/// ```
/// use session_lock::sweep::SweepOptions;
/// let dry_run = SweepOptions::new().with_remove(false);
/// assert_eq!(dry_run.suffix, ".jsonl.lock");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

impl SweepOptions {
    /// The defaults: remove, stale 30 min, orphan grace 5 s, suffix
    /// `.jsonl.lock`.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Remove what is reclaimable (`false`: a dry run, report only).
    #[must_use]
    pub fn with_remove(mut self, remove: bool) -> Self {
        self.remove = remove;
        self
    }
    /// The stale threshold for `too-old` (reported only, for live owners).
    #[must_use]
    pub fn with_stale(mut self, stale: Duration) -> Self {
        self.stale = stale;
        self
    }
    /// The orphan grace for empty or malformed lock files and temp files.
    #[must_use]
    pub fn with_orphan_grace(mut self, grace: Duration) -> Self {
        self.orphan_grace = grace;
        self
    }
    /// Consider the lock files whose names end with `suffix`.
    #[must_use]
    pub fn with_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }
}

/// One lock file's report.
///
/// Serialised as the lock's [`Inspection`] fields at the top level
/// (`lockPath`, `verdict`, `reasons`, `contents`, `record`, `witness`,
/// `pidAlive`, `ageMs`, `fileAgeMs`; without an inspection just `lockPath`
/// and `verdict`: `"unknown"` with an `error`, else `"absent"`) followed
/// by `removed` and `error`: the
/// shape `session-lock status --json-lines` and `clean --json` print for a lock.
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
    /// A reclaim guard (`<lock>.reclaim`) that kept this reclaimable lock
    /// (on a dry run: that would keep it).
    pub guard: Option<file::GuardReport>,
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
            #[serde(rename = "reclaimGuard", skip_serializing_if = "Option::is_none")]
            guard: &'a Option<file::GuardReport>,
        }
        match &self.inspection {
            Some(lock) => Report {
                lock,
                removed: self.removed,
                error: &self.error,
                guard: &self.guard,
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
                guard: &self.guard,
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
    /// Queue files removed (their lock and transcript gone, nobody waiting).
    pub queues_removed: Vec<PathBuf>,
    /// Queue files a sweep with `remove` would remove (dry run).
    pub queues_removable: Vec<PathBuf>,
    /// Files that look like ours (temp files, witness slots, queue files)
    /// and were left in place, each with the reason.
    pub kept: Vec<KeptFile>,
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
    for path in queues {
        match idle_queue(&path, opts.remove) {
            Ok(()) if opts.remove => result.queues_removed.push(path),
            Ok(()) => result.queues_removable.push(path),
            Err(None) => {}
            Err(Some(kept)) => result.kept.push(kept),
        }
    }
    for (path, kept) in sweep_temps(temps, &opts.suffix, opts.orphan_grace, opts.remove) {
        match kept {
            None if opts.remove => result.temps_removed.push(path),
            None => result.temps_removable.push(path),
            Some(k) => result.kept.push(k),
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

/// The files in `dir` that look like ours (temp files, witness slots,
/// queue files for locks ending in `suffix`) but are not provably ours,
/// each with the reason, found without taking or removing anything: what
/// `session-lock status DIR` lists. Files that pass the checks on their
/// own and are only young, busy or in use are left out. A missing
/// directory has none.
///
/// # Errors
/// `Io` if the directory cannot be listed.
///
/// # Examples
/// ```
/// use session_lock::sweep::{foreign_files, KeptReason};
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join(".yarn.lock.tmp"), b"")?;
/// let found = foreign_files(dir.path(), ".jsonl.lock")?;
/// assert_eq!(found[0].reason, KeptReason::NotOurName);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn foreign_files(dir: impl AsRef<Path>, suffix: &str) -> Result<Vec<KeptFile>> {
    let (_, temps, queues) = list(dir.as_ref(), suffix)?;
    let mut out = Vec::new();
    for path in queues {
        let reason = match open_checked(&path) {
            Ok((_, meta)) if meta.len() != 0 => KeptReason::NotEmpty,
            Ok(_) => continue,
            Err(r) => r,
        };
        out.push(kept(&path, "queue", reason));
    }
    for path in temps {
        let Some((kind, token)) = temp_kind(&path, suffix) else {
            out.push(kept(&path, "other", KeptReason::NotOurName));
            continue;
        };
        match judge_temp(&path, token.as_deref(), Duration::ZERO) {
            Ok(_) | Err(KeptReason::InGrace | KeptReason::Changed) => {}
            Err(r) => out.push(kept(&path, kind, r)),
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Lock files, names that look like our temp files (`.*.lock.*.tmp`) and
/// queue files (`<name>.lock.queue`) in `dir`, each sorted by name.
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
    let queue_suffix = format!("{suffix}{}", file::queue::QUEUE_SUFFIX);
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

/// What a name that looks like one of our temp files is: a witness slot
/// (`("slot", None)`), a publisher's temp file with its token (`("temp",
/// Some(token))`), or `None` when only the name looks like ours.
fn temp_kind(path: &Path, suffix: &str) -> Option<(&'static str, Option<String>)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match classify_temp_name(&name, suffix) {
        TempName::Slot => Some(("slot", None)),
        TempName::Temp(t) => Some(("temp", Some(t))),
        TempName::Foreign => None,
    }
}

/// What a file next to the locks is, by its name alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TempName {
    /// A witness slot `.<lock>.w<N>.tmp`, N below `slot::SLOTS`.
    Slot,
    /// A publisher's temp file `.<lock>.<token>.tmp` (32 lowercase hex).
    Temp(String),
    /// Anything else: not a name we create.
    Foreign,
}

/// Classify `name` against the exact shapes we create for lock names
/// ending in `suffix` (see `file::slot::slot_path` and `file::publish`).
pub(crate) fn classify_temp_name(name: &str, suffix: &str) -> TempName {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return TempName::Foreign;
    };
    let Some((lock, tail)) = inner.rsplit_once('.') else {
        return TempName::Foreign;
    };
    if !lock.ends_with(suffix) || lock.len() <= suffix.len() || !suffix.ends_with(".lock") {
        return TempName::Foreign;
    }
    if let Some(n) = tail.strip_prefix('w') {
        let canonical = !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n == "0" || !n.starts_with('0'));
        return match n.parse::<u32>() {
            Ok(n) if canonical && n < file::slot::SLOTS => TempName::Slot,
            _ => TempName::Foreign,
        };
    }
    if tail.len() == 32 && tail.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return TempName::Temp(tail.to_owned());
    }
    TempName::Foreign
}

/// Whether `bytes` is what we write into a slot or temp file: nothing, or
/// one of our records (`"witness": "flock"`, a 32-hex `token`, equal to
/// `token` when given) on the first line. A slot may keep the tail of a
/// longer earlier record after that line (a writer killed between its
/// write and its truncate); a temp file is written once.
pub(crate) fn is_our_content(bytes: &[u8], token: Option<&str>) -> bool {
    if bytes.is_empty() {
        return true;
    }
    let line = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) if token.is_none() || i + 1 == bytes.len() => &bytes[..i],
        Some(_) => return false,
        None => bytes,
    };
    match crate::record::OwnerRecord::parse(line) {
        crate::record::ParsedRecord::Record(r) => {
            r.has_flock_witness()
                && r.token.as_deref().is_some_and(|t| {
                    t.len() == 32
                        && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                        && token.is_none_or(|want| want == t)
                })
        }
        _ => false,
    }
}

/// Why the sweep left a file next to the locks in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KeptReason {
    /// The name only looks like one of ours (`.yarn.lock.tmp`, a slot
    /// number of 32 or more, another suffix).
    NotOurName,
    /// Not a regular file (directory, symlink, FIFO, socket, device).
    NotARegularFile,
    /// Owned by another user.
    OtherOwner,
    /// Readable or writable by group or others: we create these 0600.
    NotPrivate,
    /// The file has more than one name (a hard link).
    HardLinked,
    /// Its contents are not one of our records.
    ForeignContents,
    /// A queue file that is not empty (ours always are).
    NotEmpty,
    /// Younger than the orphan grace.
    InGrace,
    /// Another process has it open.
    OpenElsewhere,
    /// Someone holds a lock on it (`flock`, POSIX or OFD lock, lease).
    Locked,
    /// It vanished or was replaced while we looked.
    Changed,
}

impl KeptReason {
    /// The reason as `clean` prints it (`not-our-name`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KeptReason::NotOurName => "not-our-name",
            KeptReason::NotARegularFile => "not-a-regular-file",
            KeptReason::OtherOwner => "other-owner",
            KeptReason::NotPrivate => "not-private",
            KeptReason::HardLinked => "hard-linked",
            KeptReason::ForeignContents => "foreign-contents",
            KeptReason::NotEmpty => "not-empty",
            KeptReason::InGrace => "in-grace",
            KeptReason::OpenElsewhere => "open-elsewhere",
            KeptReason::Locked => "locked",
            KeptReason::Changed => "changed",
        }
    }
}

/// A file next to the locks that the sweep considered and left in place.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct KeptFile {
    /// The file.
    pub path: PathBuf,
    /// What its name says it is: `temp`, `slot`, `queue`, or `other` for
    /// a name that only looks like ours.
    pub kind: &'static str,
    /// Why it was kept.
    pub reason: KeptReason,
}

fn kept(path: &Path, kind: &'static str, reason: KeptReason) -> KeptFile {
    KeptFile {
        path: path.to_owned(),
        kind,
        reason,
    }
}

/// Checks on what `open_for_inspection` found at a temp, slot or queue
/// name that hold for every file we create there: a regular file of our
/// user, mode 0600 or stricter, one name.
fn check_ours(meta: &std::fs::Metadata) -> std::result::Result<(), KeptReason> {
    if !meta.file_type().is_file() {
        return Err(KeptReason::NotARegularFile);
    }
    if !sys::owner_uid(meta).1 {
        return Err(KeptReason::OtherOwner);
    }
    let (links, mode) = sys::links_and_mode(meta);
    if mode & 0o077 != 0 {
        return Err(KeptReason::NotPrivate);
    }
    if links != 1 {
        return Err(KeptReason::HardLinked);
    }
    Ok(())
}

fn open_checked(
    path: &Path,
) -> std::result::Result<(std::fs::File, std::fs::Metadata), KeptReason> {
    let file = sys::open_for_inspection(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => KeptReason::Changed,
        io::ErrorKind::PermissionDenied => KeptReason::OtherOwner,
        // ELOOP: a symlink (never followed), and the like.
        _ => KeptReason::NotARegularFile,
    })?;
    let meta = file.metadata().map_err(|_| KeptReason::Changed)?;
    check_ours(&meta)?;
    Ok((file, meta))
}

/// A temp or slot file that passed the checks on its own, waiting for the
/// checks against other processes.
struct Candidate {
    path: PathBuf,
    kind: &'static str,
    file: std::fs::File,
    id: sys::FileId,
}

/// Judge every temp-looking name; remove (or, without `remove`, only
/// report) those that are provably ours and abandoned. Returns each path
/// with `None` (removed or removable) or why it was kept.
fn sweep_temps(
    temps: Vec<PathBuf>,
    suffix: &str,
    grace: Duration,
    remove: bool,
) -> Vec<(PathBuf, Option<KeptFile>)> {
    let mut out = Vec::new();
    let mut candidates = Vec::new();
    for path in temps {
        let Some((kind, token)) = temp_kind(&path, suffix) else {
            out.push((
                path.clone(),
                Some(kept(&path, "other", KeptReason::NotOurName)),
            ));
            continue;
        };
        match judge_temp(&path, token.as_deref(), grace) {
            Ok((file, id)) => candidates.push(Candidate {
                path,
                kind,
                file,
                id,
            }),
            Err(reason) => out.push((path.clone(), Some(kept(&path, kind, reason)))),
        }
    }
    let ids: std::collections::HashSet<sys::FileId> = candidates.iter().map(|c| c.id).collect();
    let locked = if ids.is_empty() {
        Default::default()
    } else {
        sys::locked_by_others(&ids)
    };
    let open = sys::open_by_others(&ids);
    for c in candidates {
        let verdict = if locked.contains(&c.id) {
            Err(KeptReason::Locked)
        } else if open.contains(&c.id) {
            Err(KeptReason::OpenElsewhere)
        } else {
            remove_temp(&c, remove)
        };
        let k = verdict.err().map(|r| kept(&c.path, c.kind, r));
        out.push((c.path, k));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The checks of one temp or slot file on its own: ours by type, owner,
/// mode, links and contents, and older than the grace.
fn judge_temp(
    path: &Path,
    token: Option<&str>,
    grace: Duration,
) -> std::result::Result<(std::fs::File, sys::FileId), KeptReason> {
    use std::io::Read;
    let (file, meta) = open_checked(path)?;
    let mut bytes = Vec::new();
    (&file)
        .take(crate::record::MAX_RECORD_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| KeptReason::ForeignContents)?;
    if bytes.len() > crate::record::MAX_RECORD_BYTES || !is_our_content(&bytes, token) {
        return Err(KeptReason::ForeignContents);
    }
    let old = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > grace);
    if !old {
        return Err(KeptReason::InGrace);
    }
    Ok((file, sys::file_id(&meta)))
}

/// Take the candidate's `flock` (held across the unlink, so that no
/// process of ours takes a slot over meanwhile), check the name still
/// names it, and remove it when `remove`.
fn remove_temp(c: &Candidate, remove: bool) -> std::result::Result<(), KeptReason> {
    // `_writable` keeps a descriptor NFS needed (and its lock) until after
    // the unlink.
    let mut _writable = None;
    match file::lock_for_removal(&c.file, &mut _writable, &c.path, c.id) {
        file::RemovalLock::Taken => {}
        file::RemovalLock::Busy | file::RemovalLock::Unsupported => {
            return Err(KeptReason::Locked);
        }
        file::RemovalLock::Changed => return Err(KeptReason::Changed),
    }
    let same = std::fs::symlink_metadata(&c.path).is_ok_and(|m| sys::file_id(&m) == c.id);
    if !same {
        return Err(KeptReason::Changed);
    }
    if remove && std::fs::remove_file(&c.path).is_err() {
        return Err(KeptReason::Changed);
    }
    Ok(())
}

/// A queue file (`<T>.lock.queue`) that may go: ours (regular, our user,
/// private, one name, empty), `T.lock` gone, and nobody holding or waiting
/// for a lock on it (a queue file goes with its last user; this one was
/// left by contenders killed while queued). Its `flock` is taken without
/// blocking and held across the unlink, so a contender that opened it
/// just before takes it after we are done, finds its name gone and opens
/// again (as after its last user's removal, see `file::queue`). `Ok`:
/// removed (or removable, without `remove`); `Err(None)`: kept without a
/// report (its lock is in use: the lock's next release removes it);
/// `Err(Some)`: kept, and why.
fn idle_queue(path: &Path, remove: bool) -> std::result::Result<(), Option<KeptFile>> {
    let report = |r| Some(kept(path, "queue", r));
    let (file, meta) = open_checked(path).map_err(report)?;
    if meta.len() != 0 {
        return Err(report(KeptReason::NotEmpty));
    }
    let Some(lock) = path
        .to_str()
        .and_then(|p| p.strip_suffix(file::queue::QUEUE_SUFFIX))
        .map(PathBuf::from)
    else {
        return Err(None);
    };
    let absent = |p: &Path| matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == io::ErrorKind::NotFound);
    if !absent(&lock) {
        return Err(None);
    }
    let id = sys::file_id(&meta);
    if sys::locked_by_others(&[id].into_iter().collect()).contains(&id) {
        return Err(report(KeptReason::Locked));
    }
    if !matches!(sys::flock_try(&file, true), Ok(true)) {
        return Err(report(KeptReason::Locked));
    }
    let same = std::fs::symlink_metadata(path).is_ok_and(|m| sys::file_id(&m) == id);
    // Checked again under the flock: our blocking holders publish only
    // while they hold it (the queue is advisory: a race here costs order,
    // never exclusion).
    if !same || !absent(&lock) {
        return Err(report(KeptReason::Changed));
    }
    if remove && std::fs::remove_file(path).is_err() {
        return Err(report(KeptReason::Changed));
    }
    Ok(())
}

fn sweep_one(path: &Path, policy: &Policy, remove: bool) -> SweepReport {
    let mut report = SweepReport {
        lock_path: path.to_owned(),
        inspection: None,
        removed: false,
        error: None,
        guard: None,
    };
    match inspect::observe(path, policy, &crate::file::held::held_by_us) {
        Ok(None) => {}
        Ok(Some(observed)) => {
            report.inspection = Some(observed.inspection.clone());
            if !remove && observed.inspection.verdict == Verdict::Reclaimable {
                report.guard = file::guard_report(path);
            }
            if remove && observed.inspection.verdict == Verdict::Reclaimable {
                match file::reclaim(observed) {
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
                    Ok(Reclaim::Guarded(guard)) => report.guard = Some(*guard),
                    Ok(Reclaim::Changed | Reclaim::Busy) => {}
                    Err(e) => report.error = Some(e.to_string()),
                }
            }
        }
        Err(e) => report.error = Some(e.to_string()),
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_shapes_we_create_are_ours() {
        let tok = "0123456789abcdef0123456789abcdef";
        let s = ".jsonl.lock";
        for (name, want) in [
            (".a.jsonl.lock.w0.tmp", TempName::Slot),
            (".a.jsonl.lock.w31.tmp", TempName::Slot),
            (".a.b.jsonl.lock.w7.tmp", TempName::Slot),
            (".a.jsonl.lock.w32.tmp", TempName::Foreign),
            (".a.jsonl.lock.w99.tmp", TempName::Foreign),
            (".a.jsonl.lock.w01.tmp", TempName::Foreign),
            (".a.jsonl.lock.w.tmp", TempName::Foreign),
            (".a.jsonl.lock.w+1.tmp", TempName::Foreign),
            (
                &format!(".a.jsonl.lock.{tok}.tmp"),
                TempName::Temp(tok.into()),
            ),
            (
                &format!(".a.jsonl.lock.{}.tmp", tok.to_uppercase()),
                TempName::Foreign,
            ),
            (
                &format!(".a.jsonl.lock.{}.tmp", &tok[1..]),
                TempName::Foreign,
            ),
            (".yarn.lock.tmp", TempName::Foreign),
            (".Cargo.lock.tmp", TempName::Foreign),
            (".notes.lock.backup.tmp", TempName::Foreign),
            (".jsonl.lock.w0.tmp", TempName::Foreign),
            (".a.db.lock.w0.tmp", TempName::Foreign),
            ("a.jsonl.lock.w0.tmp", TempName::Foreign),
            (".a.jsonl.lock.w0.tmp.bak", TempName::Foreign),
        ] {
            assert_eq!(classify_temp_name(name, s), want, "{name}");
        }
        assert_eq!(
            classify_temp_name(".a.db.lock.w0.tmp", ".db.lock"),
            TempName::Slot
        );
    }

    #[test]
    fn only_our_records_are_our_contents() {
        let tok = "0123456789abcdef0123456789abcdef";
        let rec = format!("{{\"pid\":1,\"token\":\"{tok}\",\"witness\":\"flock\"}}\n");
        assert!(is_our_content(b"", None));
        assert!(is_our_content(rec.as_bytes(), None));
        assert!(is_our_content(rec.as_bytes(), Some(tok)));
        assert!(!is_our_content(
            rec.as_bytes(),
            Some("ffffffffffffffffffffffffffffffff")
        ));
        // A slot keeps the tail of a longer earlier record; a temp file not.
        let torn = format!("{rec}\"label\":\"x\"}}\n");
        assert!(is_our_content(torn.as_bytes(), None));
        assert!(!is_our_content(torn.as_bytes(), Some(tok)));
        for foreign in [
            "precious user data\n".to_owned(),
            "{\"pid\":1}\n".to_owned(),
            rec.replace("flock", "none"),
            rec.replace(tok, "short"),
            "[1,2]".to_owned(),
        ] {
            assert!(!is_our_content(foreign.as_bytes(), None), "{foreign}");
        }
    }
}
