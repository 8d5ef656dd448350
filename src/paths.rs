//! The transcript's path and the names derived from it, for both
//! backends: [`LockPaths`] (the normalised transcript and lock paths, the
//! etcd backend's key comes from the transcript path too), the check that
//! a name is no protocol name and that every name derived from it fits the
//! filesystem's limit, and the creation of missing directories when asked.

use crate::error::{Error, NameProblem, Repr, Result};
use crate::options::LockOptions;
use crate::sys;
use std::io;
use std::path::{Path, PathBuf};

/// The transcript path and its lock path, normalised: the parent directory
/// resolved with `realpath`, the file name kept as given, so a symlinked
/// directory shares one lock and a symlinked file does not (as in the
/// reference).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LockPaths {
    /// The normalised transcript path.
    pub target: PathBuf,
    /// `<target>.lock`.
    pub lock: PathBuf,
    /// The resolved parent directory.
    pub dir: PathBuf,
}

impl LockPaths {
    /// Normalise `target` and check that it can be locked, as
    /// [`crate::acquire`] does with the default options: see
    /// [`LockPaths::resolve_with`]. Creates nothing.
    ///
    /// # Errors
    /// As [`LockPaths::resolve_with`].
    pub fn resolve(target: impl AsRef<Path>) -> Result<LockPaths> {
        Self::resolve_with(target, &LockOptions::default())
    }

    /// Normalise `target` and check that it can be locked, as acquiring it
    /// with `opts` does before touching anything: its name is not one the
    /// protocol derives from a transcript (`x.jsonl.lock`,
    /// `x.jsonl.lock.queue`, `x.jsonl.lock.reclaim`, a witness slot or temp
    /// file name), every name derived from it fits the filesystem's name
    /// limit, its directory exists (or is created, mode 0700, with
    /// [`LockOptions::with_create_dirs`]), and nothing but a regular file (or a
    /// symlink) is at its name.
    ///
    /// # Errors
    /// `InvalidName` for a protocol name (with [`Error::suggestion`]) or a
    /// name too long (with [`Error::longest_name`]); `Io` if the path has
    /// no file name or its directory is missing or cannot be created;
    /// `NotAFile` for a directory, FIFO, socket or device at the
    /// transcript's name.
    pub fn resolve_with(target: impl AsRef<Path>, opts: &LockOptions) -> Result<LockPaths> {
        let target = target.as_ref();
        let (abs, name) = split(target)?;
        if let Some((what, transcript)) = protocol_name(name.as_encoded_bytes()) {
            let mut of = abs.clone();
            of.set_file_name(transcript);
            return Err(Error::from(Repr::InvalidName {
                path: target.to_owned(),
                problem: NameProblem::ProtocolName { what, of },
            }));
        }
        let parent = abs.parent().unwrap_or(Path::new("/"));
        let (dir, name_max) = match canonical_dir_cache(parent, None) {
            // Known canonical (no symlink on the way): no realpath, no
            // statvfs. If it has vanished since, publishing says so.
            Some(max) => (parent.to_owned(), max),
            None => {
                let dir = match std::fs::canonicalize(parent) {
                    Ok(dir) => dir,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        if !opts.create_dirs {
                            return Err(missing_dir_error(parent));
                        }
                        create_private_dirs(parent)?;
                        std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_owned())
                    }
                    // EACCES on the way: let the open report it.
                    Err(_) => parent.to_owned(),
                };
                let max = sys::name_max(&dir);
                if dir == parent {
                    canonical_dir_cache(parent, Some(max));
                }
                (dir, max)
            }
        };
        if let Some(problem) = too_long(name.len(), name_max) {
            return Err(Error::from(Repr::InvalidName {
                path: target.to_owned(),
                problem,
            }));
        }
        let paths = Self::join(dir, name);
        // A FIFO, socket, device or directory at the transcript's name is
        // refused before the lock is taken (appending re-checks with fstat).
        if let Ok(meta) = std::fs::symlink_metadata(&paths.target) {
            let ft = meta.file_type();
            if !ft.is_file() && !ft.is_symlink() {
                return Err(Error::from(Repr::NotAFile {
                    lock_path: paths.target,
                    what: sys::file_kind(ft),
                    role: "transcript",
                }));
            }
        }
        Ok(paths)
    }

    /// Normalise `target` without checking or creating anything (for
    /// inspecting what is there).
    ///
    /// # Errors
    /// `Io` if the path has no file name.
    pub fn resolve_existing(target: impl AsRef<Path>) -> Result<LockPaths> {
        let (abs, name) = split(target.as_ref())?;
        let parent = abs.parent().unwrap_or(Path::new("/"));
        // realpath only the directory; fall back to the absolute path.
        let dir = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_owned());
        Ok(Self::join(dir, name))
    }

    fn join(dir: PathBuf, name: std::ffi::OsString) -> LockPaths {
        let target = dir.join(&name);
        let mut lock_name = name;
        lock_name.push(".lock");
        LockPaths {
            lock: dir.join(lock_name),
            target,
            dir,
        }
    }
}

/// The absolute form of `target` and its file name; an error for a path
/// that names no file (`dir/`, `.`, `..`).
fn split(target: &Path) -> Result<(PathBuf, std::ffi::OsString)> {
    let abs = if target.is_absolute() {
        target.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("resolve current directory for", target, e))?
            .join(target)
    };
    // "dir/" names a directory, not a transcript in it: its lock would
    // land beside the directory, outside it.
    let trailing_slash = target
        .as_os_str()
        .as_encoded_bytes()
        .last()
        .is_some_and(|&b| std::path::is_separator(char::from(b)));
    match abs.file_name() {
        Some(n) if n != ".." && n != "." && !trailing_slash => {
            let n = n.to_owned();
            Ok((abs, n))
        }
        _ => Err(Error::io(
            "resolve",
            target,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the transcript path must name a file",
            ),
        )),
    }
}

/// The error for a transcript whose directory does not exist.
pub(crate) fn missing_dir_error(dir: &Path) -> Error {
    Error::io(
        "find directory",
        dir,
        io::Error::new(
            io::ErrorKind::NotFound,
            "no such directory; nothing was created (create it first, or let the library \
             create it with LockOptions::with_create_dirs)",
        ),
    )
}

/// Create `dir` and its missing ancestors, each mode 0700 whatever the
/// umask ([`LockOptions::with_create_dirs`]).
pub(crate) fn create_private_dirs(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while std::fs::symlink_metadata(at).is_err() {
        missing.push(at);
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    for d in missing.into_iter().rev() {
        match sys::create_private_dir(d) {
            Ok(()) => {}
            // Made by someone else meanwhile: theirs, left as it is.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create directory", d, e)),
        }
    }
    Ok(())
}

/// How much longer than the transcript's name the longest name derived
/// from it is: a named temp file `.<name>.lock.<32 hex>.tmp` (see
/// `publish`); the others are shorter (`.<name>.lock.w31.tmp` by 14,
/// `<name>.lock.reclaim` by 13, `<name>.lock.queue` by 11, a torn-line
/// sidecar `<name>.torn-<YYYYMMDDTHHMMSS.mmmZ>-<N>` by at most 30).
pub(crate) const DERIVED_NAME_EXTRA: usize = 1 + ".lock".len() + 1 + 32 + ".tmp".len();

/// Whether a transcript name of `len` bytes is too long where a name may
/// have `name_max` bytes.
fn too_long(len: usize, name_max: usize) -> Option<NameProblem> {
    let longest = name_max.saturating_sub(DERIVED_NAME_EXTRA);
    (len > longest).then_some(NameProblem::TooLong {
        len,
        name_max,
        longest,
    })
}

/// If `name` is one the protocol derives from a transcript, what it is and
/// that transcript's name: `<t>.lock`, `<t>.lock.queue`,
/// `<t>.lock.reclaim`, a witness slot `.<t>.lock.w<N>.tmp` or a temp file
/// `.<t>.lock.<32 hex>.tmp`.
pub(crate) fn protocol_name(name: &[u8]) -> Option<(&'static str, std::ffi::OsString)> {
    let found = |what, t: &[u8]| (!t.is_empty()).then(|| (what, os_from_bytes(t)));
    for (suffix, what) in [
        (&b".lock.queue"[..], "queue file"),
        (b".lock.reclaim", "reclaim guard"),
        (b".lock", "lock file"),
    ] {
        if let Some(t) = name.strip_suffix(suffix) {
            return found(what, t);
        }
    }
    let inner = name.strip_prefix(b".")?.strip_suffix(b".tmp")?;
    let at = inner.windows(6).rposition(|w| w == b".lock.")?;
    let (t, tail) = (&inner[..at], &inner[at + 6..]);
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if tail.strip_prefix(b"w").is_some_and(digits) {
        found("witness slot", t)
    } else if tail.len() == 32 && tail.iter().all(u8::is_ascii_hexdigit) {
        found("temp file", t)
    } else {
        None
    }
}

/// A name cut from `OsStr::as_encoded_bytes` at ASCII boundaries, back
/// as an `OsString` (through the platform's byte view: no `unsafe`).
fn os_from_bytes(b: &[u8]) -> std::ffi::OsString {
    sys::os_string_from_bytes(b.to_vec())
}

/// Directories seen to be their own realpath (absolute, no symlink, no
/// `.`/`..`), with their filesystem's name limit. Looking one up is safe
/// to skip `canonicalize` and `statvfs` on every acquire: such a path can
/// only change meaning if a component is later replaced by a symlink,
/// which cooperating processes do not do. `Some(max)` inserts `dir`;
/// `None` answers its limit if known.
fn canonical_dir_cache(dir: &Path, insert: Option<usize>) -> Option<usize> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<PathBuf, usize>>> =
        std::sync::OnceLock::new();
    let mut map = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    match insert {
        Some(max) => {
            if map.len() >= 4096 {
                map.clear();
            }
            map.insert(dir.to_owned(), max)
        }
        None => map.get(dir).copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_and_the_transcript_they_belong_to() {
        let hex = "0123456789abcdef0123456789ABCDEF";
        let slot_temp = format!(".x.jsonl.lock.{hex}.tmp");
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("x.jsonl", None),
            ("x.jsonl.lock", Some(("lock file", "x.jsonl"))),
            ("x.jsonl.lock.queue", Some(("queue file", "x.jsonl"))),
            ("x.jsonl.lock.reclaim", Some(("reclaim guard", "x.jsonl"))),
            (".x.jsonl.lock.w0.tmp", Some(("witness slot", "x.jsonl"))),
            (".x.jsonl.lock.w31.tmp", Some(("witness slot", "x.jsonl"))),
            (&slot_temp, Some(("temp file", "x.jsonl"))),
            // A lock of a lock: the suggestion peels one layer.
            ("x.jsonl.lock.lock", Some(("lock file", "x.jsonl.lock"))),
            // Not our shapes.
            (".x.jsonl.lock.w.tmp", None),
            (".x.jsonl.lock.wx1.tmp", None),
            (".x.jsonl.lock.0123.tmp", None),
            ("x.jsonl.lock.w0.tmp", None),
            ("x.jsonl.locked", None),
            ("x.queue", None),
            // Nothing left to suggest.
            (".lock", None),
            ("..lock.w1.tmp", None),
        ];
        for (name, want) in cases {
            let got = protocol_name(name.as_bytes());
            let got = got
                .as_ref()
                .map(|(what, t)| (*what, t.to_str().expect("ASCII")));
            assert_eq!(got, *want, "{name}");
        }
        // Non-UTF-8 bytes are kept as they are.
        let (what, t) = protocol_name(b"s\xff.jsonl.lock").expect("a lock name");
        assert_eq!(what, "lock file");
        assert_eq!(t.as_encoded_bytes(), b"s\xff.jsonl");
    }

    #[test]
    fn name_limit_table() {
        // 255 is NAME_MAX on ext4, xfs, btrfs and tmpfs.
        assert_eq!(DERIVED_NAME_EXTRA, 43);
        // The torn-line sidecar's suffix, with the largest `-N`, fits too.
        let torn = format!(
            "{}{}-999",
            crate::transcript::TORN_INFIX,
            "20261205T001530.123Z"
        );
        assert!(torn.len() <= DERIVED_NAME_EXTRA, "{torn}");
        assert_eq!(too_long(212, 255), None);
        assert_eq!(
            too_long(213, 255),
            Some(NameProblem::TooLong {
                len: 213,
                name_max: 255,
                longest: 212
            })
        );
        assert_eq!(
            too_long(1, 14),
            Some(NameProblem::TooLong {
                len: 1,
                name_max: 14,
                longest: 0
            })
        );
        assert_eq!(too_long(1000, 4096), None);
    }

    #[test]
    fn too_long_message_names_the_limit() {
        let err = Error::from(Repr::InvalidName {
            path: PathBuf::from("/s/aaa.jsonl"),
            problem: too_long(213, 255).expect("too long"),
        });
        let msg = err.to_string();
        assert!(msg.contains("212 bytes") && msg.contains("255"), "{msg}");
        assert_eq!(err.longest_name(), Some(212));
        assert_eq!(err.kind(), crate::ErrorKind::InvalidName);
    }
}
