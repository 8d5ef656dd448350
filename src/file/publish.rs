//! Publishing a lock file that is never visible without its full record.
//!
//! A [`Prepared`] file holds the complete owner record and the witness
//! flock before it has the lock file's name. Publishing gives it that name
//! without ever replacing an existing lock file:
//!
//! 0. A witness slot of this process (see `slot`): a file of ours at its
//!    own hidden name, kept across holds, renamed onto the lock name with
//!    `renameat2(RENAME_NOREPLACE)`; no new inode per hold. Where no slot
//!    can be had:
//! 1. Linux `O_TMPFILE` + `linkat(2)` through `/proc/self/fd`: the file has
//!    no name at all until the link, so a crash at any point leaves nothing
//!    behind;
//! 2. else a private temp file `.<lock name>.<token>.tmp` (exclusive create,
//!    0600, no symlink following) and `renameat2(RENAME_NOREPLACE)`, or
//!    `link(2)` + unlink of the temp name. This path is taken in a
//!    directory whose filesystem refused `O_TMPFILE` as unsupported, or
//!    where the `linkat` step was refused (remembered per directory, for the
//!    life of the process), and everywhere when `SESSION_LOCK_NO_TMPFILE`
//!    is set;
//! 3. else (no rename-noreplace, no hard links: some FUSE and SMB mounts) a
//!    plain exclusive create of the lock file, witness taken first, record
//!    written after: the one window where software that ignores the witness
//!    can see an empty lock file (the 5 s orphan grace covers it).
//!
//! After an unnamed (1) or `link(2)` (2) publish, the owner also opens the
//! lock file by name for writing, a *death sentinel* it never writes
//! through: its witness descriptor was not opened through that name, and
//! the sentinel is what makes the owner's death an inotify `IN_CLOSE_WRITE`
//! on the lock name (see `sys::open_death_sentinel`).
//!
//! A contender that loses keeps its prepared file and only refreshes
//! `createdAt` in place (`pwrite`, same length) before its next attempt,
//! when it is older than [`CREATED_AT_SLACK`], so
//! a herd of woken waiters costs one failing rename or `linkat` each, not a
//! file creation. The blocking API also prepares its record before it sleeps;
//! the async API does not (see `src/tokio.rs`).

use crate::error::{Error, Repr, Result};
use crate::file::held::Held;
use crate::file::slot;
use crate::options::{Caller, LockOptions};
use crate::paths::LockPaths;
use crate::record::OwnerRecord;
use crate::sys::{self, Publish};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set by `SESSION_LOCK_NO_TMPFILE` (tests and benches of the named path):
/// named temp files everywhere in this process. (A failed link through
/// `/proc/self/fd` is remembered per directory, in [`no_tmpfile_dirs`].)
static NO_TMPFILE: AtomicBool = AtomicBool::new(false);

/// Directories whose filesystem refused `O_TMPFILE` (NFS, FUSE), or where
/// linking one through `/proc/self/fd` was refused: named temp files there,
/// `O_TMPFILE` everywhere else.
fn no_tmpfile_dirs() -> std::sync::MutexGuard<'static, std::collections::HashSet<PathBuf>> {
    static DIRS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<PathBuf>>> =
        std::sync::OnceLock::new();
    DIRS.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token unique to one hold: 16 random bytes drawn once per process,
/// mixed with our pid (a forked child draws none of its own) and a counter.
/// Saves a `getrandom` per acquire.
fn new_token() -> String {
    use std::sync::atomic::AtomicU64;
    static SEED: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bytes = *SEED.get_or_init(sys::random_bytes);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    for (b, x) in bytes[8..].iter_mut().zip(n.to_le_bytes()) {
        *b ^= x;
    }
    for (b, x) in bytes[..4].iter_mut().zip(std::process::id().to_le_bytes()) {
        *b ^= x;
    }
    hex(&bytes)
}

/// `.<lock name>.<token>.tmp`, byte for byte (a non-UTF-8 name keeps its
/// bytes: two transcripts never share a temp name).
fn temp_name(lock: &Path, token: &str) -> std::ffi::OsString {
    let mut name = std::ffi::OsString::from(".");
    name.push(lock.file_name().unwrap_or_default());
    name.push(".");
    name.push(token);
    name.push(".tmp");
    name
}

pub(crate) fn create_error(path: &Path, e: io::Error) -> Error {
    if sys::is_symlink_error(&e) {
        return Error::from(Repr::NotAFile {
            lock_path: path.to_owned(),
            what: "symlink",
            role: "lock path",
        });
    }
    Error::io("create lock file", path, e)
}

enum Kind {
    /// A witness slot of ours (see `slot`), at its own name until published.
    Slot {
        name: PathBuf,
        lock: PathBuf,
        /// Bytes of the record written into it.
        len: u64,
    },
    /// `O_TMPFILE`: no name yet.
    Unnamed,
    /// A private temp file with this name (removed on drop unless published).
    Named(PathBuf),
}

/// A witnessed file holding a complete record, not yet published.
pub(crate) struct Prepared {
    kind: Kind,
    file: Option<File>,
    /// The file's identity (links and renames keep it), taken while
    /// preparing so that the publish after a wake-up needs no fstat.
    id: Option<sys::FileId>,
    record: OwnerRecord,
    /// Byte offset of the `createdAt` value in the written line.
    created_at_offset: Option<usize>,
    /// The wall clock, in ms since the epoch, that `createdAt` says (see
    /// [`CREATED_AT_SLACK`]). Compared with the wall clock, not with an
    /// `Instant`: a monotonic clock stops while the machine is suspended,
    /// and the record must not look fresh for that reason.
    written_ms: Option<i64>,
}

/// How old a prepared record's `createdAt` may be when it is published:
/// a waiter rewrites it before publishing only past this age. A waiter
/// woken by a release publishes within microseconds, and one `pwrite` more
/// on that path is a measurable part of a handoff (about a fifth of it in
/// `session-lock bench` on a 2-core VM, whose woken processes run their
/// first system calls slowly). 50 ms is far below any staleness threshold
/// (the reference's is 30 minutes; ours are seconds at the least), and
/// bounds how much earlier than the actual publish `createdAt` can say.
pub(crate) const CREATED_AT_SLACK: Duration = Duration::from_millis(50);

/// Whether a `createdAt` of `written_ms` is recent enough at `now_ms` to
/// be published as is: not older than [`CREATED_AT_SLACK`], and not in
/// the future (a wall clock set back).
fn created_at_fresh(written_ms: Option<i64>, now_ms: i64) -> bool {
    written_ms.is_some_and(|w| (0..CREATED_AT_SLACK.as_millis() as i64).contains(&(now_ms - w)))
}

impl Prepared {
    pub(crate) fn create(paths: &LockPaths, opts: &LockOptions) -> Result<Prepared> {
        Self::create_with(paths, opts, true)
    }

    fn create_with(paths: &LockPaths, opts: &LockOptions, slots: bool) -> Result<Prepared> {
        match Self::create_in(paths, opts, slots) {
            // The (cached, canonical) directory vanished: recreate it, once,
            // if asked to create directories; else say that it is missing.
            Err(e)
                if e.io_error()
                    .is_some_and(|s| s.kind() == io::ErrorKind::NotFound)
                    && std::fs::symlink_metadata(&paths.dir).is_err() =>
            {
                if !opts.create_dirs {
                    return Err(crate::paths::missing_dir_error(&paths.dir));
                }
                crate::paths::create_private_dirs(&paths.dir)?;
                Self::create_in(paths, opts, slots)
            }
            other => other,
        }
    }

    fn create_in(paths: &LockPaths, opts: &LockOptions, slots: bool) -> Result<Prepared> {
        if slots
            && slot::enabled(&paths.dir)
            && let Some(s) = slot::take_parked(&paths.lock).or_else(|| slot::claim(&paths.lock))
        {
            return Self::in_slot(paths, opts, s);
        }
        let token = new_token();
        let (kind, file) = match Self::open_unnamed(paths) {
            Some(f) => (Kind::Unnamed, f),
            None => {
                let tmp = paths.dir.join(temp_name(&paths.lock, &token));
                let f = sys::create_private_exclusive(&tmp)
                    .map_err(|e| create_error(&paths.lock, e))?;
                (Kind::Named(tmp), f)
            }
        };
        let id = file.metadata().ok().map(|m| sys::file_id(&m));
        let mut prepared = Prepared {
            kind,
            file: Some(file),
            id,
            record: OwnerRecord::default(),
            created_at_offset: None,
            written_ms: None,
        };
        let file = prepared.file.as_mut().expect("set above");
        // A fresh inode nobody else has open: the flock is ours at once
        // unless the filesystem does not support flock at all.
        let witness = matches!(sys::flock_try(file, true), Ok(true));
        let now_ms = crate::time::now_ms();
        let record =
            OwnerRecord::ours_at(opts.max_hold, opts.label.clone(), token, witness, now_ms);
        let line = record.to_line();
        // Dropping `prepared` on error removes a named temp file.
        file.write_all(&line)
            .map_err(|e| Error::io("write lock record", &paths.lock, e))?;
        prepared.created_at_offset = find_created_at(&line, &record);
        prepared.written_ms = Some(now_ms);
        prepared.record = record;
        Ok(prepared)
    }

    /// Write a fresh record into a slot we own (flock held: witnessed).
    fn in_slot(paths: &LockPaths, opts: &LockOptions, s: slot::Slot) -> Result<Prepared> {
        let now_ms = crate::time::now_ms();
        let record =
            OwnerRecord::ours_at(opts.max_hold, opts.label.clone(), new_token(), true, now_ms);
        let line = record.to_line();
        let written = sys::write_all_at(&s.file, &line, 0).and_then(|()| {
            if s.len > line.len() as u64 {
                s.file.set_len(line.len() as u64)
            } else {
                Ok(())
            }
        });
        let mut prepared = Prepared {
            kind: Kind::Slot {
                name: s.path,
                lock: paths.lock.clone(),
                len: line.len() as u64,
            },
            file: Some(s.file),
            id: Some(s.id),
            record: OwnerRecord::default(),
            created_at_offset: None,
            written_ms: None,
        };
        if let Err(e) = written {
            // Its content is unknown now: never park it.
            prepared.discard();
            return Err(Error::io("write lock record", &paths.lock, e));
        }
        prepared.created_at_offset = find_created_at(&line, &record);
        prepared.written_ms = Some(now_ms);
        prepared.record = record;
        Ok(prepared)
    }

    fn open_unnamed(paths: &LockPaths) -> Option<File> {
        static ENV_CHECKED: std::sync::Once = std::sync::Once::new();
        ENV_CHECKED.call_once(|| {
            // Lets tests and benches exercise the named-temp-file path.
            if std::env::var_os("SESSION_LOCK_NO_TMPFILE").is_some() {
                NO_TMPFILE.store(true, Ordering::Relaxed);
            }
        });
        if NO_TMPFILE.load(Ordering::Relaxed) || no_tmpfile_dirs().contains(&paths.dir) {
            return None;
        }
        match sys::open_tmpfile(&paths.dir) {
            Ok(f) => Some(f),
            Err(e) => {
                // Only "not supported here" turns it off for this directory;
                // other errors (EACCES, ENOENT) resurface from the named
                // temp file with the right words.
                if sys::is_tmpfile_unsupported(&e) {
                    no_tmpfile_dirs().insert(paths.dir.clone());
                }
                None
            }
        }
    }

    /// Rewrite `createdAt` in place (same length: the format is fixed
    /// width) so the record says when the lock was actually taken.
    fn refresh(&mut self, lock_path: &Path) -> Result<()> {
        let (Some(offset), Some(file)) = (self.created_at_offset, self.file.as_ref()) else {
            return Ok(());
        };
        let now_ms = crate::time::now_ms();
        if created_at_fresh(self.written_ms, now_ms) {
            return Ok(());
        }
        let now = crate::time::format_rfc3339_ms(now_ms);
        if Some(now.len()) != self.record.created_at.as_ref().map(String::len)
            || self.record.created_at.as_deref() == Some(now.as_str())
        {
            return Ok(());
        }
        sys::write_all_at(file, now.as_bytes(), offset as u64)
            .map_err(|e| Error::io("write lock record", lock_path, e))?;
        self.written_ms = Some(now_ms);
        self.record.created_at = Some(now);
        Ok(())
    }
}

impl Prepared {
    /// An unpublished slot taken out of `self`, with the lock it was for.
    fn take_slot(&mut self) -> Option<(PathBuf, slot::Slot)> {
        let Kind::Slot { name, lock, len } = &self.kind else {
            return None;
        };
        let (file, id) = (self.file.take()?, self.id?);
        let s = slot::Slot {
            file,
            path: name.clone(),
            id,
            len: *len,
        };
        Some((lock.clone(), s))
    }

    /// Give up a slot that was not published: remove its name and close it.
    fn discard(&mut self) {
        if let Some((_, s)) = self.take_slot() {
            slot::discard(s);
        }
    }
}

fn find_created_at(line: &[u8], record: &OwnerRecord) -> Option<usize> {
    let value = record.created_at.as_ref()?;
    let needle = format!("\"createdAt\":\"{value}\"");
    line.windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .map(|p| p + "\"createdAt\":\"".len())
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // Never published: still at its slot name, ours; keep it.
        if let Some((lock, s)) = self.take_slot() {
            slot::park(lock, s);
        } else if self.file.take().is_some()
            && let Kind::Named(tmp) = &self.kind
        {
            // Our private temp file: nobody else knows its random name.
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// What a publish attempt gave.
// Transient, moved once per attempt: boxing the prepared record would only
// add an allocation to the hot path.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Published {
    Held(Arc<Held>),
    /// The lock file exists; the prepared file is kept for the next try.
    Exists(Option<Prepared>),
}

/// One publish attempt, reusing `prepared` if given.
pub(crate) fn publish(
    paths: &LockPaths,
    opts: &LockOptions,
    caller: Caller,
    prepared: Option<Prepared>,
) -> Result<Published> {
    let mut p = match prepared {
        Some(mut p) => {
            p.refresh(&paths.lock)?;
            p
        }
        None => Prepared::create(paths, opts)?,
    };
    crate::fault::hit("publish.before_rename");
    let file = p.file.as_ref().expect("a prepared file until published");
    let outcome = match &p.kind {
        // The slot's name must still be our file (its directory may have
        // been removed and made again, and the name taken by another
        // process's slot): never publish a file that is not ours.
        Kind::Slot { name, .. } => match std::fs::symlink_metadata(name)
            .ok()
            .filter(|m| m.file_type().is_file() && Some(sys::file_id(m)) == p.id)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
            .and_then(|_| sys::rename_noreplace(name, &paths.lock))
        {
            // The slot is not where we left it (its directory was removed,
            // or is no longer writable): give it up and publish a fresh
            // inode, whose errors have the right words.
            Err(_) => {
                p.discard();
                let fresh = Prepared::create_with(paths, opts, false)?;
                return publish(paths, opts, caller, Some(fresh));
            }
            other => other,
        },
        Kind::Unnamed => sys::link_tmpfile(file, &paths.lock),
        Kind::Named(tmp) => sys::publish_noreplace(tmp, &paths.lock),
    }
    .map_err(|e| create_error(&paths.lock, e))?;
    match outcome {
        Publish::Done { renamed } => {
            if let (Kind::Named(tmp), false) = (&p.kind, renamed) {
                // Linked: both names exist; drop the temporary one.
                if let Err(e) = std::fs::remove_file(tmp) {
                    tracing::debug!(path = %tmp.display(), error = %e, "could not remove temp lock file after link");
                }
            }
            let file = p.file.take().expect("checked above");
            // See `sys::open_death_sentinel`: needed where our witness
            // descriptor was not opened through the lock file's own name
            // (unnamed, or linked from a temp name that is gone now). A
            // rename moved the name our witness was opened through.
            let sentinel = match (&p.kind, renamed) {
                (Kind::Named(_) | Kind::Slot { .. }, true) => None,
                _ => sys::open_death_sentinel(&paths.lock).ok(),
            };
            let slot = match std::mem::replace(&mut p.kind, Kind::Unnamed) {
                Kind::Slot { name, len, .. } => Some((name, len)),
                _ => None,
            };
            held(
                paths,
                opts,
                caller,
                file,
                p.id,
                sentinel,
                std::mem::take(&mut p.record),
                slot,
            )
            .map(Published::Held)
        }
        Publish::Exists => Ok(Published::Exists(Some(p))),
        Publish::Unsupported => {
            if matches!(p.kind, Kind::Slot { .. }) {
                // No rename-noreplace here: fresh inodes in this directory.
                slot::disable(&paths.dir);
                p.discard();
                return publish(paths, opts, caller, None);
            }
            if matches!(p.kind, Kind::Unnamed) {
                // linkat through /proc failed here: named temp files in this
                // directory from now on (each directory pays one failed try
                // if /proc is missing altogether).
                no_tmpfile_dirs().insert(paths.dir.clone());
                drop(p);
                return publish(paths, opts, caller, None);
            }
            drop(p);
            publish_fallback(paths, opts, caller)
        }
    }
}

// The parts of one hold as a publish made them: each is needed, and a
// struct for two callers adds nothing.
#[allow(clippy::too_many_arguments)]
fn held(
    paths: &LockPaths,
    opts: &LockOptions,
    caller: Caller,
    file: File,
    id: Option<sys::FileId>,
    sentinel: Option<File>,
    record: OwnerRecord,
    slot: Option<(PathBuf, u64)>,
) -> Result<Arc<Held>> {
    let id = match id {
        Some(id) => id,
        None => sys::file_id(
            &file
                .metadata()
                .map_err(|e| Error::io("stat lock file", &paths.lock, e))?,
        ),
    };
    // The sentinel must name our inode; anything else is closed at once.
    let sentinel = sentinel.filter(|s| s.metadata().is_ok_and(|m| sys::file_id(&m) == id));
    Ok(Held::new(
        paths.clone(),
        file,
        sentinel,
        slot,
        id,
        record,
        opts.max_hold,
        caller,
    ))
}

/// Plain exclusive create + write, for filesystems with neither
/// `renameat2(RENAME_NOREPLACE)` nor hard links (see the module docs).
fn publish_fallback(paths: &LockPaths, opts: &LockOptions, caller: Caller) -> Result<Published> {
    let mut file = match sys::create_private_exclusive(&paths.lock) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Published::Exists(None)),
        Err(e) => return Err(create_error(&paths.lock, e)),
    };
    let witness = matches!(sys::flock_try(&file, true), Ok(true));
    let record = OwnerRecord::ours(opts.max_hold, opts.label.clone(), new_token(), witness);
    let meta = file
        .metadata()
        .map_err(|e| Error::io("stat lock file", &paths.lock, e))?;
    let id = sys::file_id(&meta);
    if let Err(e) = file.write_all(&record.to_line()) {
        // Roll back our partial file, by identity, never by name alone.
        if std::fs::symlink_metadata(&paths.lock).is_ok_and(|m| sys::file_id(&m) == id) {
            let _ = std::fs::remove_file(&paths.lock);
        }
        return Err(Error::io("write lock record", &paths.lock, e));
    }
    held(paths, opts, caller, file, Some(id), None, record, None).map(Published::Held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_offset_points_at_the_value() {
        let opts = LockOptions::new();
        let rec = OwnerRecord::ours(opts.max_hold, opts.label.clone(), "tok".into(), true);
        let line = rec.to_line();
        let off = find_created_at(&line, &rec).expect("found");
        let value = rec.created_at.as_ref().unwrap();
        assert_eq!(&line[off..off + value.len()], value.as_bytes());
    }

    /// The slack is measured on the wall clock the record speaks of: a
    /// record written before a suspend, or "after" a clock set back, is
    /// rewritten.
    #[test]
    fn created_at_is_fresh_only_within_the_slack_and_never_in_the_future() {
        let slack = CREATED_AT_SLACK.as_millis() as i64;
        assert!(created_at_fresh(Some(1_000), 1_000));
        assert!(created_at_fresh(Some(1_000), 1_000 + slack - 1));
        assert!(!created_at_fresh(Some(1_000), 1_000 + slack));
        assert!(!created_at_fresh(Some(1_000), 1_000 + 7_200_000));
        assert!(!created_at_fresh(Some(1_000), 999));
        assert!(!created_at_fresh(None, 1_000));
    }

    #[test]
    fn refresh_keeps_the_record_parseable() {
        let dir = tempfile::tempdir().unwrap();
        let paths = LockPaths::resolve(dir.path().join("s.jsonl")).unwrap();
        let mut p = Prepared::create(&paths, &LockOptions::new()).unwrap();
        let before = p.record.created_at.clone();
        // A different millisecond, still within the slack: kept as is.
        std::thread::sleep(std::time::Duration::from_millis(2));
        p.refresh(&paths.lock).unwrap();
        assert_eq!(before, p.record.created_at);
        // Past the slack: rewritten.
        p.written_ms = p
            .written_ms
            .map(|w| w - CREATED_AT_SLACK.as_millis() as i64);
        p.refresh(&paths.lock).unwrap();
        assert_ne!(before, p.record.created_at);
        let Published::Held(h) =
            publish(&paths, &LockOptions::new(), Caller::Thread, Some(p)).unwrap()
        else {
            panic!("lock path was free");
        };
        let text = std::fs::read(&paths.lock).unwrap();
        let parsed = OwnerRecord::parse(&text);
        assert_eq!(parsed.record(), Some(&h.record));
        drop(crate::LockGuard::new(h));
        assert!(!paths.lock.exists());
    }
}
