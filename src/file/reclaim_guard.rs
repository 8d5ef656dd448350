//! The reclaim guard `<lock>.reclaim` (see `docs/reclaim.md`, "Reclaim
//! guards in the way", and `docs/protocol.md`, "Next to the reference"):
//! taking it around a reclaim, clearing an abandoned one (an empty
//! directory older than [`RECLAIM_GUARD_ABANDONED`], nothing else), and
//! reporting one that is in the way ([`GuardReport`]).

use crate::error::{Error, Result};
use crate::sys::{self, FileId};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Suffix of the reclaim guard, the directory the reference's lock engine
/// creates with `mkdir` next to the lock file while it re-checks and deletes
/// a stale lock (see `docs/reclaim.md`, "Next to the reference").
pub(crate) const RECLAIM_GUARD_SUFFIX: &str = ".reclaim";

/// A reclaim guard whose mtime is older than this is abandoned (its
/// reclaimer died between `mkdir` and `rmdir`) and may be removed. A live
/// guard lives for a re-read, a policy callback and an unlink: milliseconds
/// (the reference's slowest callback, a PowerShell argv read on Windows,
/// takes about a second). 30 s leaves a wide margin for a paused event loop
/// and still unwedges the directory without a human.
pub const RECLAIM_GUARD_ABANDONED: Duration = Duration::from_secs(30);

/// `<lock>.reclaim`.
pub(crate) fn reclaim_guard_path(lock: &Path) -> PathBuf {
    let mut s = lock.as_os_str().to_owned();
    s.push(RECLAIM_GUARD_SUFFIX);
    PathBuf::from(s)
}

/// Why a reclaim guard blocks a reclaim (see [`GuardReport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum GuardProblem {
    /// A directory younger than [`RECLAIM_GUARD_ABANDONED`]: another
    /// reclaimer (the reference engine) is at work, or died a moment ago.
    Live,
    /// Abandoned, but not empty: never emptied by this crate.
    NotEmpty,
    /// Abandoned, but we may not remove it (another user's, in a sticky
    /// or read-only directory).
    NotRemovable,
    /// Something other than a directory at the guard's name: never the
    /// reference's guard, never removed by this crate.
    NotADirectory,
}

impl GuardProblem {
    /// The problem as `status` and `clean` print it (`live`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            GuardProblem::Live => "live",
            GuardProblem::NotEmpty => "not-empty",
            GuardProblem::NotRemovable => "not-removable",
            GuardProblem::NotADirectory => "not-a-directory",
        }
    }
}

/// A reclaim guard `<lock>.reclaim` that keeps a reclaimable lock from
/// being reclaimed: what is there, whose it is, how old, and what to do.
/// Its `Display` is the sentence the acquire timeout, `status` and `clean`
/// show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GuardReport {
    /// The guard's path.
    pub path: PathBuf,
    /// What is there: `directory`, `regular file`, `symlink`, ...
    pub kind: &'static str,
    /// The owner's uid.
    pub uid: Option<u32>,
    /// The owner's user name, where `/etc/passwd` says.
    pub user: Option<String>,
    /// Age by its mtime.
    #[serde(rename = "ageMs", serialize_with = "ser_ms")]
    pub age: Option<Duration>,
    /// Why it blocks.
    pub problem: GuardProblem,
    /// The error that kept us from removing an abandoned one.
    pub error: Option<String>,
}

fn ser_ms<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_millis() as u64),
        None => s.serialize_none(),
    }
}

impl GuardReport {
    fn new(path: &Path, meta: &std::fs::Metadata, problem: GuardProblem) -> GuardReport {
        let ft = meta.file_type();
        let (uid, _) = sys::owner_uid(meta);
        GuardReport {
            path: path.to_owned(),
            kind: if ft.is_file() {
                "regular file"
            } else {
                sys::file_kind(ft)
            },
            uid: Some(uid),
            user: sys::user_name(uid),
            age: guard_age(meta),
            problem,
            error: None,
        }
    }

    /// How long until a live guard counts as abandoned (its age reaches
    /// [`RECLAIM_GUARD_ABANDONED`]); `None` for the other problems.
    pub fn abandoned_in(&self) -> Option<Duration> {
        (self.problem == GuardProblem::Live)
            .then(|| RECLAIM_GUARD_ABANDONED.saturating_sub(self.age.unwrap_or_default()))
    }

    /// What a human should do, if anything.
    pub fn fix(&self) -> Option<String> {
        let p = self.path.display();
        match self.problem {
            GuardProblem::Live => None,
            GuardProblem::NotEmpty => Some(format!(
                "check what is in it, then remove it by hand: rm -r -- '{p}'"
            )),
            GuardProblem::NotRemovable => Some(format!(
                "remove it by hand as its owner or root: rmdir -- '{p}'"
            )),
            GuardProblem::NotADirectory => Some(format!(
                "check what it is, then remove it by hand: rm -- '{p}'"
            )),
        }
    }
}

impl std::fmt::Display for GuardReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reclaim guard {} ({}", self.path.display(), self.kind)?;
        match (self.uid, &self.user) {
            (Some(u), Some(n)) => write!(f, ", owner uid {u} ({n})")?,
            (Some(u), None) => write!(f, ", owner uid {u}")?,
            _ => {}
        }
        if let Some(a) = self.age {
            write!(f, ", age {:.1}s", a.as_secs_f64())?;
        }
        write!(f, ") blocks the reclaim: ")?;
        match self.problem {
            GuardProblem::Live => write!(
                f,
                "another reclaimer's, live; counts as abandoned in {:.1}s",
                self.abandoned_in().unwrap_or_default().as_secs_f64()
            )?,
            GuardProblem::NotEmpty => write!(
                f,
                "abandoned (older than {}s) but not empty, never emptied by session-lock",
                RECLAIM_GUARD_ABANDONED.as_secs()
            )?,
            GuardProblem::NotRemovable => write!(
                f,
                "abandoned (older than {}s) but we may not remove it",
                RECLAIM_GUARD_ABANDONED.as_secs()
            )?,
            GuardProblem::NotADirectory => {
                write!(f, "not a directory, never removed by session-lock")?
            }
        }
        if let Some(e) = &self.error {
            write!(f, " ({e})")?;
        }
        if let Some(fix) = self.fix() {
            write!(f, "; {fix}")?;
        }
        Ok(())
    }
}

fn guard_age(meta: &std::fs::Metadata) -> Option<Duration> {
    meta.modified()
        .ok()
        .map(|m| m.elapsed().unwrap_or_default())
}

/// The reclaim guard at `<lock>.reclaim`, if one is there that would block
/// a reclaim now, found without changing anything: what `status` and a
/// dry-run `clean` show. An abandoned empty directory is not reported (a
/// reclaim removes it).
pub fn guard_report(lock: &Path) -> Option<GuardReport> {
    let path = reclaim_guard_path(lock);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_dir() {
        return Some(GuardReport::new(&path, &meta, GuardProblem::NotADirectory));
    }
    if guard_age(&meta).unwrap_or_default() < RECLAIM_GUARD_ABANDONED {
        return Some(GuardReport::new(&path, &meta, GuardProblem::Live));
    }
    match std::fs::read_dir(&path).map(|mut e| e.next().is_none()) {
        Ok(true) => None,
        Ok(false) => Some(GuardReport::new(&path, &meta, GuardProblem::NotEmpty)),
        Err(e) => {
            let mut r = GuardReport::new(&path, &meta, GuardProblem::NotRemovable);
            r.error = Some(e.to_string());
            Some(r)
        }
    }
}

/// A reclaim guard we created; dropping it removes it if the path still
/// names the directory we made.
pub(super) struct ReclaimGuard {
    path: PathBuf,
    id: FileId,
}

impl Drop for ReclaimGuard {
    fn drop(&mut self) {
        crate::fault::hit("reclaim.before_guard_rmdir");
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| sys::file_id(&m) == self.id)
            && let Err(e) = std::fs::remove_dir(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(guard = %self.path.display(), error = %e, "could not remove our reclaim guard");
        }
    }
}

/// Take the reclaim guard of `lock` the way the reference does (`mkdir`),
/// removing an abandoned one first. `Ok(Err(report))`: a guard is in the
/// way (another reclaimer's live one, or one we may not remove). Callers
/// hold the stale inode's exclusive flock, so our own reclaimers never
/// break each other's guards; a guard is broken only when it is an empty
/// directory older than [`RECLAIM_GUARD_ABANDONED`]. Anything else at its
/// name (a file, a symlink, a non-empty directory) is never removed.
pub(super) type TakenGuard = std::result::Result<ReclaimGuard, Box<GuardReport>>;

pub(super) fn take_reclaim_guard(lock: &Path) -> Result<TakenGuard> {
    let path = reclaim_guard_path(lock);
    let mut last = None;
    for _ in 0..3 {
        match std::fs::DirBuilder::new().mode_private().create(&path) {
            Ok(()) => {
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|e| Error::io("stat reclaim guard", &path, e))?;
                return Ok(Ok(ReclaimGuard {
                    id: sys::file_id(&meta),
                    path,
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create reclaim guard", &path, e)),
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("stat reclaim guard", &path, e)),
        };
        if !meta.is_dir() {
            // Not the reference's guard, and not provably anyone's we may
            // delete: left in place, and named in the errors and reports.
            let r = GuardReport::new(&path, &meta, GuardProblem::NotADirectory);
            return Ok(Err(Box::new(r)));
        }
        let age = guard_age(&meta).unwrap_or_default();
        if age < RECLAIM_GUARD_ABANDONED {
            return Ok(Err(Box::new(GuardReport::new(
                &path,
                &meta,
                GuardProblem::Live,
            ))));
        }
        // Abandoned: removed only if empty (rmdir never removes contents).
        match std::fs::remove_dir(&path) {
            Ok(()) => tracing::warn!(
                guard = %path.display(),
                age_s = age.as_secs(),
                "removed an abandoned reclaim guard"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                let problem = if e.kind() == io::ErrorKind::DirectoryNotEmpty {
                    GuardProblem::NotEmpty
                } else {
                    GuardProblem::NotRemovable
                };
                let mut r = GuardReport::new(&path, &meta, problem);
                r.error = Some(e.to_string());
                last = Some(Box::new(r));
                break;
            }
        }
    }
    // Made again under us three times: someone is busy there.
    Ok(Err(last.unwrap_or_else(|| {
        Box::new(GuardReport {
            path: path.clone(),
            kind: "directory",
            uid: None,
            user: None,
            age: None,
            problem: GuardProblem::Live,
            error: None,
        })
    })))
}

/// `DirBuilder` with mode 0700 where the platform has modes.
trait PrivateDir {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateDir for std::fs::DirBuilder {
    fn mode_private(&mut self) -> &mut Self {
        sys::dir_builder_private(self);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(problem: GuardProblem, age_s: u64) -> GuardReport {
        GuardReport {
            path: PathBuf::from("/s/x.jsonl.lock.reclaim"),
            kind: "directory",
            uid: Some(1000),
            user: Some("alice".into()),
            age: Some(Duration::from_secs(age_s)),
            problem,
            error: None,
        }
    }

    #[test]
    fn each_problem_says_what_to_do() {
        for (problem, age, abandoned_in, fix, says) in [
            (
                GuardProblem::Live,
                10,
                Some(20),
                None,
                "live; counts as abandoned in 20.0s",
            ),
            (
                GuardProblem::Live,
                45,
                Some(0),
                None,
                "counts as abandoned in 0.0s",
            ),
            (
                GuardProblem::NotEmpty,
                45,
                None,
                Some("rm -r -- '/s/x.jsonl.lock.reclaim'"),
                "not empty",
            ),
            (
                GuardProblem::NotRemovable,
                45,
                None,
                Some("rmdir -- '/s/x.jsonl.lock.reclaim'"),
                "we may not remove it",
            ),
            (
                GuardProblem::NotADirectory,
                1,
                None,
                Some("rm -- '/s/x.jsonl.lock.reclaim'"),
                "not a directory",
            ),
        ] {
            let r = report(problem, age);
            assert_eq!(
                r.abandoned_in(),
                abandoned_in.map(Duration::from_secs),
                "{problem:?}"
            );
            let text = r.to_string();
            assert!(text.contains(says), "{text}");
            assert!(text.contains("owner uid 1000 (alice)"), "{text}");
            match fix {
                Some(f) => assert!(
                    r.fix().is_some_and(|x| x.contains(f)) && text.contains(f),
                    "{text}"
                ),
                None => assert!(r.fix().is_none() && !text.contains("by hand"), "{text}"),
            }
        }
    }

    #[test]
    fn only_an_empty_abandoned_directory_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("s.jsonl.lock");
        let guard = reclaim_guard_path(&lock);
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        // A file: never removed, whatever its age.
        std::fs::write(&guard, b"x").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&guard)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let r = take_reclaim_guard(&lock).unwrap().err().expect("blocked");
        assert_eq!(r.problem, GuardProblem::NotADirectory);
        assert!(guard.is_file());
        std::fs::remove_file(&guard).unwrap();
        // A fresh directory: live.
        std::fs::create_dir(&guard).unwrap();
        let r = take_reclaim_guard(&lock).unwrap().err().expect("blocked");
        assert_eq!(r.problem, GuardProblem::Live);
        assert_eq!(
            guard_report(&lock).map(|r| r.problem),
            Some(GuardProblem::Live)
        );
        // Non-empty and old: kept.
        std::fs::write(guard.join("inside"), b"x").unwrap();
        std::fs::File::open(&guard)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let r = take_reclaim_guard(&lock).unwrap().err().expect("blocked");
        assert_eq!(r.problem, GuardProblem::NotEmpty);
        assert_eq!(
            guard_report(&lock).map(|r| r.problem),
            Some(GuardProblem::NotEmpty)
        );
        // Empty and old: cleared and taken (and released on drop).
        std::fs::remove_file(guard.join("inside")).unwrap();
        std::fs::File::open(&guard)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(guard_report(&lock), None);
        let taken = take_reclaim_guard(&lock).unwrap().expect("taken");
        assert!(guard.is_dir());
        drop(taken);
        assert!(!guard.exists());
    }
}
