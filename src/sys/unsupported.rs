//! Platforms without an implementation yet (Windows, WASI): meant to
//! compile (unverified: no such target in CI), with every operation that
//! would touch a lock returning `io::ErrorKind::Unsupported` instead of
//! panicking.

use super::{FileId, PidState};
use std::fs::{File, Metadata};
use std::io;
use std::path::Path;

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "session-lock does not support this platform yet",
    )
}

pub(crate) fn file_id(_meta: &Metadata) -> FileId {
    FileId { dev: 0, ino: 0 }
}
pub(crate) fn flock_try(_file: &File, _exclusive: bool) -> io::Result<bool> {
    Err(unsupported())
}
pub(crate) fn flock_blocking(_file: &File) -> io::Result<()> {
    Err(unsupported())
}
pub fn flock_unlock(_file: &File) -> io::Result<()> {
    Err(unsupported())
}
pub(crate) enum Publish {
    Done { renamed: bool },
    Exists,
    Unsupported,
}
pub(crate) fn publish_noreplace(_from: &Path, _to: &Path) -> io::Result<Publish> {
    Err(unsupported())
}
pub(crate) fn rename_noreplace(_from: &Path, _to: &Path) -> io::Result<Publish> {
    Err(unsupported())
}
pub(crate) fn open_slot(_path: &Path) -> io::Result<File> {
    Err(unsupported())
}
pub(crate) fn is_private_single(_meta: &std::fs::Metadata) -> bool {
    false
}
pub(crate) fn probe_pid(_pid: u32) -> PidState {
    PidState::Unknown
}
pub(crate) fn process_start_time(_pid: u32) -> Option<u64> {
    None
}
pub(crate) fn boot_id() -> Option<String> {
    None
}
pub(crate) fn pid_namespace() -> Option<String> {
    None
}
pub(crate) fn hostname() -> Option<String> {
    None
}
pub(crate) fn random_bytes() -> [u8; 16] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    nanos.to_le_bytes()
}
pub(crate) fn open_tmpfile(_dir: &Path) -> io::Result<File> {
    Err(unsupported())
}
pub(crate) fn link_tmpfile(_file: &File, _to: &Path) -> io::Result<Publish> {
    Err(unsupported())
}
pub(crate) fn open_death_sentinel(_path: &Path) -> io::Result<File> {
    Err(unsupported())
}
pub(crate) fn is_symlink_error(_e: &io::Error) -> bool {
    false
}
pub(crate) fn is_needs_writable_fd(_e: &io::Error) -> bool {
    false
}
pub(crate) fn is_tmpfile_unsupported(_e: &io::Error) -> bool {
    true
}
pub(crate) fn file_kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "special file"
    }
}
pub(crate) fn write_all_at(_file: &File, _buf: &[u8], _offset: u64) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn is_out_of_descriptors(_e: &io::Error) -> bool {
    false
}

pub(crate) fn read_exact_at(_file: &File, _buf: &mut [u8], _offset: u64) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn set_inheritable(_file: &File, _inherit: bool) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn dir_builder_private(_b: &mut std::fs::DirBuilder) {}

pub(crate) fn owner_uid(_meta: &Metadata) -> (u32, bool) {
    (0, false)
}
pub(crate) fn links_and_mode(_meta: &Metadata) -> (u64, u32) {
    (0, 0)
}
pub(crate) fn user_name(_uid: u32) -> Option<String> {
    None
}
pub(crate) fn locked_by_others(
    _ids: &std::collections::HashSet<FileId>,
) -> std::collections::HashSet<FileId> {
    Default::default()
}
pub(crate) fn open_by_others(
    _ids: &std::collections::HashSet<FileId>,
) -> std::collections::HashSet<FileId> {
    Default::default()
}

/// No signal handling here: `install` answers `Unsupported`.
#[cfg(feature = "signals")]
pub(crate) mod signals {
    /// SIGINT, SIGTERM, SIGQUIT, SIGHUP by their traditional numbers.
    pub(crate) const SIGNALS: [i32; 4] = [2, 15, 3, 1];

    pub(crate) fn install(_cleanup: fn(i32)) -> std::io::Result<()> {
        Err(super::unsupported())
    }
}

pub(crate) fn make_private(_file: &File) -> io::Result<()> {
    Err(unsupported())
}
pub(crate) fn needs_owner_access(_meta: &Metadata) -> bool {
    false
}
pub(crate) fn create_private_dir(_path: &Path) -> io::Result<()> {
    Err(unsupported())
}
pub(crate) fn name_max(_dir: &Path) -> usize {
    255
}
pub(crate) fn os_string_from_bytes(b: Vec<u8>) -> std::ffi::OsString {
    // Only names cut from UTF-8 reach here on these platforms' tests;
    // anything else is shown, not used to open files.
    std::ffi::OsString::from(String::from_utf8_lossy(&b).into_owned())
}
