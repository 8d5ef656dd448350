//! Witness slots: one inode per process and lock, kept across holds.
//!
//! A fresh witnessed inode per hold costs an inode allocation at acquire
//! and an inode eviction at release. On ext4 without a journal the
//! allocation also skips every inode of the group deleted in the last
//! minute (`recently_deleted()` in `fs/ext4/ialloc.c`), so under a steady
//! lock churn it grows to dominate the whole cycle (measured here: 150 us
//! per uncontended acquire + release in a tight loop, 55 % of it in that
//! scan). A slot keeps the inode instead:
//!
//! * A slot is a private file `.<lock name>.w<N>.tmp` (N below [`SLOTS`],
//!   mode 0600) next to the lock file, opened read-write through that name
//!   and exclusively `flock`ed by its owner for as long as the owner keeps
//!   it: the flock is the witness, held across holds.
//! * Acquire writes the record into the slot file and renames it onto the
//!   lock name with `renameat2(RENAME_NOREPLACE)`. The rename moves the
//!   very dentry the witness descriptor was opened through, so the owner's
//!   death is an `IN_CLOSE_WRITE` under the lock name without a separate
//!   death sentinel.
//! * Release checks that the lock name still names our inode and renames
//!   it back onto its slot name (no-replace), then checks that the slot name
//!   now names our inode; if the name was swapped in between, the file it
//!   moved is not ours and is put back at once. Waiters see the rename
//!   (`IN_MOVED_FROM` on the lock name) as they see an unlink.
//! * The parked slot is kept in this process for the next hold of the same
//!   lock ([`MAX_IDLE`] locks at most; the oldest is removed beyond that).
//!   A slot whose witness was shared with child processes, or whose hold
//!   was lost, is never parked.
//! * A process that exits leaves its parked slots behind with their flocks
//!   free: the next process to need a slot for that lock takes the file
//!   over (open without `O_EXCL`, take the free flock, check the name still
//!   names the file), and `clean` removes them once older than the orphan
//!   grace, like any temp file whose flock is free. So a lock never has
//!   more than [`SLOTS`] of them.
//!
//! Where slots cannot work (no `renameat2` no-replace, no `flock`, every
//! slot taken, `SESSION_LOCK_NO_SLOTS` or `SESSION_LOCK_NO_TMPFILE` set),
//! publishing falls back to a fresh inode per hold (see `publish`).

use crate::sys::{self, FileId, Publish};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Slot names per lock: `.<lock name>.w0.tmp` .. `.w31.tmp`. Bounds the
/// files a lock can gather, and the processes that can hold a slot for one
/// lock at a time (the rest fall back to a fresh inode per hold).
pub const SLOTS: u32 = 32;

/// Parked slots kept per process; beyond that the oldest is removed.
pub const MAX_IDLE: usize = 64;

/// A slot we own: its open, exclusively `flock`ed descriptor.
pub(crate) struct Slot {
    pub file: File,
    /// The slot's own name.
    pub path: PathBuf,
    pub id: FileId,
    /// Bytes in the file (the last record written).
    pub len: u64,
}

/// `.<lock name>.w<n>.tmp` next to `lock`, byte for byte (a non-UTF-8
/// lock name keeps its bytes: two locks never share a slot name).
pub(crate) fn slot_path(lock: &Path, n: u32) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(lock.file_name().unwrap_or_default());
    name.push(format!(".w{n}.tmp"));
    lock.with_file_name(name)
}

struct Parked {
    slot: Slot,
    pid: u32,
    seq: u64,
}

#[derive(Default)]
struct State {
    parked: HashMap<PathBuf, Parked>,
    seq: u64,
    /// Directories where a slot could not be published (no rename-noreplace).
    off: HashSet<PathBuf>,
}

fn state() -> MutexGuard<'static, State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Whether slots are used for locks in `dir`.
pub(crate) fn enabled(dir: &Path) -> bool {
    static ENV_OFF: OnceLock<bool> = OnceLock::new();
    let env_off = *ENV_OFF.get_or_init(|| {
        std::env::var_os("SESSION_LOCK_NO_SLOTS").is_some()
            || std::env::var_os("SESSION_LOCK_NO_TMPFILE").is_some()
    });
    !env_off && !state().off.contains(dir)
}

/// Stop using slots in `dir` (its filesystem refused the rename).
pub(crate) fn disable(dir: &Path) {
    state().off.insert(dir.to_owned());
}

/// Our parked slot for `lock`, if any (never one inherited across `fork`).
pub(crate) fn take_parked(lock: &Path) -> Option<Slot> {
    let parked = state().parked.remove(lock)?;
    if parked.pid == std::process::id() {
        Some(parked.slot)
    } else {
        // A copy of the parent's descriptor: the flock is the parent's too.
        None
    }
}

/// Keep a slot (at its own name, flock held) for the next hold of `lock`.
pub(crate) fn park(lock: PathBuf, slot: Slot) {
    let evicted = {
        let mut st = state();
        st.seq += 1;
        let seq = st.seq;
        let mut evicted = st.parked.insert(
            lock,
            Parked {
                slot,
                pid: std::process::id(),
                seq,
            },
        );
        if st.parked.len() > MAX_IDLE
            && let Some(oldest) = st
                .parked
                .iter()
                .min_by_key(|(_, p)| p.seq)
                .map(|(k, _)| k.clone())
        {
            evicted = st.parked.remove(&oldest).or(evicted);
        }
        evicted
    };
    // A copy inherited across fork is only closed: the name is the parent's.
    if let Some(p) = evicted
        && p.pid == std::process::id()
    {
        discard(p.slot);
    }
}

/// Remove every parked slot of this process (see `close_idle`).
pub(crate) fn close_all() -> usize {
    let parked: Vec<Parked> = state().parked.drain().map(|(_, p)| p).collect();
    let mut n = 0;
    for p in parked {
        if p.pid == std::process::id() {
            discard(p.slot);
            n += 1;
        }
    }
    n
}

/// Give a slot up: remove its name if it still names our file, then close
/// it (which drops the flock).
pub(crate) fn discard(slot: Slot) {
    // We hold its flock, so no other process takes it over meanwhile.
    if std::fs::symlink_metadata(&slot.path).is_ok_and(|m| sys::file_id(&m) == slot.id) {
        let _ = std::fs::remove_file(&slot.path);
    }
}

/// Claim a free slot for `lock`: an unused name, or a slot whose owner is
/// gone (its flock is free). Probing starts at slot 0 so that slots left by
/// exited processes are taken over before new names are made. `None` if
/// every slot is taken or the directory cannot have one.
pub(crate) fn claim(lock: &Path) -> Option<Slot> {
    for n in 0..SLOTS {
        let path = slot_path(lock, n);
        let file = match sys::open_slot(&path) {
            Ok(f) => f,
            // No directory: the fallback reports it with the right words.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            // Someone else's (EACCES), a directory, a symlink: not a slot.
            Err(_) => continue,
        };
        let Ok(meta) = file.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        match sys::flock_try(&file, true) {
            Ok(true) => {}
            Ok(false) => continue,
            // No flock here: no witness, no slots.
            Err(_) => return None,
        }
        // `clean` may have removed the name between our open and our flock
        // (it takes the flock before it removes), or replaced it.
        let id = sys::file_id(&meta);
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| sys::file_id(&m) == id) {
            continue;
        }
        // Only a private file of ours with one name: never adopt (write
        // into, truncate, publish) a file planted or hard-linked there.
        if !sys::is_private_single(&meta) {
            continue;
        }
        // Created under a umask such as 0277 (0400) or 0477 (0200): our
        // own file, but its owner could not reopen it read-write.
        if sys::needs_owner_access(&meta) && sys::make_private(&file).is_err() {
            continue;
        }
        return Some(Slot {
            file,
            path,
            id,
            len: meta.len(),
        });
    }
    None
}

/// What [`unpublish`] did.
pub(crate) enum Unpublished {
    /// Our file is back at its slot name; the lock name is free.
    Parked,
    /// Not renamed (the slot name is taken, the rename failed): unlink the
    /// lock name instead.
    No,
    /// The lock name was swapped between the caller's check and the
    /// rename: the file moved was not ours and has been put back.
    Foreign,
}

/// Release by renaming our file (`id`, checked at `lock` by the caller just
/// before) from `lock` back to `slot`.
pub(crate) fn unpublish(lock: &Path, slot: &Path, id: FileId) -> Unpublished {
    match sys::rename_noreplace(lock, slot) {
        Ok(Publish::Done { .. }) => {
            // Only a positive mismatch means we moved someone else's file;
            // an error here (EACCES, EIO) cannot tell, and ours is the file
            // we checked a moment ago.
            let moved_other = std::fs::symlink_metadata(slot).is_ok_and(|m| sys::file_id(&m) != id);
            if !moved_other {
                Unpublished::Parked
            } else {
                let back = sys::rename_noreplace(slot, lock);
                if !matches!(back, Ok(Publish::Done { .. })) {
                    tracing::warn!(
                        lock_path = %lock.display(),
                        slot = %slot.display(),
                        "a lock file that replaced ours during release could not be put back"
                    );
                }
                Unpublished::Foreign
            }
        }
        _ => Unpublished::No,
    }
}
