//! The guarded transcript's line writer, shared by both backends: whole
//! lines in, whole lines on disk, whatever happened to the writer before us.
//!
//! Two rules keep the transcript line-shaped (see `docs/protocol.md`,
//! "Whole lines"):
//!
//! * **A torn tail is moved out before we write.** The first time a hold
//!   writes (or [`crate::LockGuard::repair_torn_tail`] asks), the last byte of
//!   the transcript is read. If it is not `\n`, a previous writer died (or
//!   failed) in the middle of a line: the bytes after the last `\n` are
//!   copied to a sidecar file `<transcript>.torn-<UTC time>` (mode 0600,
//!   synced), then cut from the transcript, all under the lock. Nothing is
//!   lost and nothing is appended after a fragment. A `tracing` warning and
//!   the guard's [`Takeover`] say how many bytes went where.
//! * **A failed write of ours leaves nothing.** Before each line the
//!   transcript's length is known; a failed or short `write` (ENOSPC, EIO)
//!   truncates it back to that length, still under the lock, and the error
//!   is returned. With `append_lines_durable` a failed `fdatasync` rolls the
//!   whole call back, so an error always means "none of these lines".

use crate::error::{Error, Result};
use crate::record::OwnerRecord;
use crate::sys;
use crate::verdict::Reason;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What a new holder took over: the holder before it, if that one died,
/// was reclaimed or lost its lease, and the torn line it left, if any.
///
/// Returned by [`crate::LockGuard::takeover`]. An application that finds
/// one knows that the writer before it did not finish normally, and can
/// validate the end of its transcript (for example look at the last turn,
/// or at the fragment's sidecar) before it goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    pub(crate) previous: Option<OwnerRecord>,
    pub(crate) reasons: Vec<Reason>,
    pub(crate) torn_tail: Option<TornTail>,
}

impl Takeover {
    /// What a new holder took over, from a backend's parts: the reclaimed
    /// holder's record and reasons, and the torn tail moved out; `None`
    /// when there was neither (the takeover report of both backends).
    pub(crate) fn from_parts(
        reclaimed: Option<(Option<OwnerRecord>, Vec<Reason>)>,
        torn_tail: Option<TornTail>,
    ) -> Option<Takeover> {
        if reclaimed.is_none() && torn_tail.is_none() {
            return None;
        }
        let (previous, reasons) = reclaimed.unwrap_or_default();
        Some(Takeover {
            previous,
            reasons,
            torn_tail,
        })
    }

    /// The record of the holder whose lock we reclaimed (`None` when the
    /// lock file held no readable record, or when nothing was reclaimed and
    /// only a torn tail was found).
    pub fn previous(&self) -> Option<&OwnerRecord> {
        self.previous.as_ref()
    }

    /// Why the previous holder's lock was reclaimed (`witness-released`,
    /// `dead-pid`, `recycled-pid`, `orphan-self-pid`, `invalid-createdAt`,
    /// ...); empty when nothing was reclaimed.
    pub fn reasons(&self) -> &[Reason] {
        &self.reasons
    }

    /// Whether a lock was reclaimed for us (rather than released normally).
    pub fn reclaimed(&self) -> bool {
        !self.reasons.is_empty() || self.previous.is_some()
    }

    /// The torn last line that was moved out of the transcript, if one was.
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn_tail.as_ref()
    }
}

/// A partial last line found in the transcript and moved out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub(crate) offset: u64,
    pub(crate) bytes: u64,
    pub(crate) saved_to: PathBuf,
}

impl TornTail {
    /// Where the fragment began in the transcript (the transcript's length
    /// right after the repair).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How many bytes the fragment had.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The sidecar file that holds the fragment, byte for byte.
    pub fn saved_to(&self) -> &Path {
        &self.saved_to
    }
}

/// Transcript descriptors kept open between appends, by all holds of the
/// process together. Past this, a hold opens its transcript for each
/// append and closes it after, so that a held lock costs one descriptor
/// (its witness) plus at most this many in all (README, "Descriptors").
pub(crate) const TRANSCRIPT_CACHE: usize = 32;

/// Descriptors kept open now (see [`TRANSCRIPT_CACHE`]).
static CACHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many transcript descriptors are kept open now (tests).
#[cfg(feature = "fault-injection")]
pub(crate) fn cached() -> usize {
    CACHED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The transcript as one hold writes it: opened on first use, its tail
/// checked once per hold.
#[derive(Default)]
pub(crate) struct Transcript {
    file: Option<File>,
    /// `file` counts in [`CACHED`] (kept between appends).
    cached: bool,
    /// The tail was checked (and repaired if torn) in this hold.
    checked: bool,
    /// What the check found, kept for the guard's takeover report.
    pub(crate) torn: Option<TornTail>,
}

impl Transcript {
    /// Forget the descriptor (release, loss): the next hold opens and
    /// checks again.
    pub(crate) fn close(&mut self) {
        self.file = None;
        if std::mem::take(&mut self.cached) {
            CACHED.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// After a call: keep the descriptor if the process-wide cache has
    /// room, else close it.
    fn keep_or_close(&mut self) {
        if self.file.is_none() || self.cached {
            return;
        }
        let room = CACHED
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |n| (n < TRANSCRIPT_CACHE).then_some(n + 1),
            )
            .is_ok();
        if room {
            self.cached = true;
        } else {
            self.file = None;
        }
    }

    fn open(&mut self, target: &Path) -> Result<&File> {
        if self.file.is_none() {
            let f =
                sys::open_append(target).map_err(|e| Error::io("open transcript", target, e))?;
            self.file = Some(f);
        }
        match self.file.as_ref() {
            Some(f) => Ok(f),
            None => unreachable!("opened above"),
        }
    }

    /// Check the tail once per hold; see the module docs. Returns what was
    /// repaired by this call or an earlier one in the same hold.
    pub(crate) fn repair_tail(
        &mut self,
        target: &Path,
        held: &dyn Fn() -> bool,
    ) -> Result<Option<TornTail>> {
        let out = self.repair_tail_inner(target, held);
        self.keep_or_close();
        out
    }

    fn repair_tail_inner(
        &mut self,
        target: &Path,
        held: &dyn Fn() -> bool,
    ) -> Result<Option<TornTail>> {
        if !self.checked {
            if self.file.is_none()
                && std::fs::symlink_metadata(target)
                    .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
            {
                // Nothing to repair, and nothing created just to look.
                self.checked = true;
                return Ok(None);
            }
            let file = self.open(target)?;
            let torn = move_torn_tail(file, target, held)?;
            self.torn = torn;
            self.checked = true;
        }
        Ok(self.torn.clone())
    }

    /// Write whole lines (each plus `\n` in one `write(2)` on the
    /// `O_APPEND` descriptor), after the tail check, optionally followed by
    /// `fdatasync`. The lines were checked by [`validate_lines`]; the
    /// caller has just checked that the lock is held, and `held` says
    /// whether it still is (a rollback or a cut is done only while it is,
    /// so a write stuck past a forced release never cuts a new holder's
    /// lines).
    pub(crate) fn append<L: AsRef<[u8]>>(
        &mut self,
        target: &Path,
        lines: &[L],
        sync: bool,
        held: &dyn Fn() -> bool,
    ) -> Result<()> {
        let out = self.append_inner(target, lines, sync, held);
        self.keep_or_close();
        out
    }

    fn append_inner<L: AsRef<[u8]>>(
        &mut self,
        target: &Path,
        lines: &[L],
        sync: bool,
        held: &dyn Fn() -> bool,
    ) -> Result<()> {
        self.repair_tail_inner(target, held)?;
        let file = self.open(target)?;
        let err = |op: &'static str, e: io::Error| Error::io(op, target, e);
        // The length before this call and before each line: a failure rolls
        // back to it. We hold the lock, so nobody cooperating moves it.
        let start = file
            .metadata()
            .map_err(|e| err("stat transcript", e))?
            .len();
        let mut end = start;
        let mut buf = Vec::new();
        for line in lines {
            let line = line.as_ref();
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            buf.clear();
            buf.extend_from_slice(body);
            buf.push(b'\n');
            if let Err(e) = write_line(file, &buf) {
                // Somewhere between `end` and `end + buf.len()` now.
                let to = if sync { start } else { end };
                if !roll_back(file, target, to, end..=end + buf.len() as u64, held) {
                    // Left in place: the next check (this hold's or the
                    // next holder's) moves the fragment out.
                    self.checked = false;
                }
                return Err(err("append to transcript", e));
            }
            end += buf.len() as u64;
        }
        if sync && let Err(e) = file.sync_data() {
            if !roll_back(file, target, start, end..=end, held) {
                self.checked = false;
            }
            return Err(err("sync transcript", e));
        }
        Ok(())
    }
}

/// Refuse a batch with a line that contains a newline, before anything is
/// touched (not even the hold's write gate).
pub(crate) fn validate_lines<I, L>(target: &Path, lines: I) -> Result<Vec<L>>
where
    I: IntoIterator<Item = L>,
    L: AsRef<[u8]>,
{
    let lines: Vec<L> = lines.into_iter().collect();
    if lines.iter().any(|l| {
        let l = l.as_ref();
        l.strip_suffix(b"\n").unwrap_or(l).contains(&b'\n')
    }) {
        return Err(Error::from(crate::error::Repr::InvalidInput {
            path: target.to_owned(),
            what: "a line to append must not contain a newline (one JSON value per line: serialise it compactly, or use append_json); nothing was written".into(),
        }));
    }
    Ok(lines)
}

/// One line in one `write(2)` where the kernel takes it whole; `write_all`
/// only loops on a short write, still under our lock.
fn write_line(mut file: &File, buf: &[u8]) -> io::Result<()> {
    #[cfg(feature = "fault-injection")]
    if let Some(n) = crate::fault::short_write(buf.len()) {
        // A write that stops part way, as on ENOSPC or EIO.
        file.write_all(&buf[..n])?;
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("fault injection: short write of {n} of {} bytes", buf.len()),
        ));
    }
    file.write_all(buf)
}

/// Cut the transcript back to `to` after a failed write of ours, if the
/// hold is still `held` and its length is still in `ours` (what our writes
/// can have made it): never cut what someone else wrote after a forced
/// release. Returns whether the transcript ends where it did before.
fn roll_back(
    file: &File,
    target: &Path,
    to: u64,
    ours: std::ops::RangeInclusive<u64>,
    held: &dyn Fn() -> bool,
) -> bool {
    let now = file.metadata().map(|m| m.len());
    let why = match now {
        Ok(n) if held() && ours.contains(&n) => match file.set_len(to) {
            Ok(()) => return true,
            Err(e) => e.to_string(),
        },
        Ok(n) if held() => format!("its length ({n}) is not what our writes made it"),
        Ok(_) => "the lock was released while the write was stuck".into(),
        Err(e) => e.to_string(),
    };
    // Left as it is: a torn end is moved out by the next tail check.
    tracing::error!(
        transcript = %target.display(),
        length = to,
        "could not roll back a failed append ({why}); the next tail check will move a torn line out"
    );
    false
}

/// Read size for scanning back to the last newline.
const SCAN_CHUNK: usize = 64 * 1024;

/// If the transcript does not end with `\n`, move everything after its last
/// `\n` to a sidecar file and truncate it away.
fn move_torn_tail(file: &File, target: &Path, held: &dyn Fn() -> bool) -> Result<Option<TornTail>> {
    let err = |op: &'static str, e: io::Error| Error::io(op, target, e);
    let len = file
        .metadata()
        .map_err(|e| err("stat transcript", e))?
        .len();
    if len == 0 {
        return Ok(None);
    }
    let mut last = [0u8];
    sys::read_exact_at(file, &mut last, len - 1)
        .map_err(|e| err("read the last byte of transcript", e))?;
    if last[0] == b'\n' {
        return Ok(None);
    }
    // Scan back for the last newline: the fragment starts after it.
    let mut buf = vec![0u8; SCAN_CHUNK];
    let mut pos = len;
    let offset = loop {
        if pos == 0 {
            break 0;
        }
        let from = pos.saturating_sub(SCAN_CHUNK as u64);
        let chunk = &mut buf[..(pos - from) as usize];
        sys::read_exact_at(file, chunk, from).map_err(|e| err("read transcript", e))?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            break from + i as u64 + 1;
        }
        pos = from;
    };
    let bytes = len - offset;
    let (mut side, saved_to) = create_sidecar(target)?;
    let side_err = |op: &'static str, e: io::Error| Error::io(op, &saved_to, e);
    let mut at = offset;
    while at < len {
        let n = ((len - at) as usize).min(buf.len());
        sys::read_exact_at(file, &mut buf[..n], at)
            .map_err(|e| err("read torn line of transcript", e))?;
        side.write_all(&buf[..n])
            .map_err(|e| side_err("write torn line to", e))?;
        at += n as u64;
    }
    // The fragment is on disk before it leaves the transcript.
    side.sync_all()
        .map_err(|e| side_err("sync torn line file", e))?;
    if let Some(dir) = saved_to.parent() {
        // Best effort: the sidecar's name survives a crash too.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    crate::fault::hit("torn.before_cut");
    // Cut only what we copied: if the transcript changed meanwhile (this
    // hold was force-released during a long copy and a new holder wrote),
    // the fragment is no longer ours to cut; it is saved either way.
    let now = file
        .metadata()
        .map_err(|e| err("stat transcript", e))?
        .len();
    if now != len || !held() {
        return Err(err(
            "move the torn line out of transcript",
            io::Error::other(format!(
                "it changed, or the lock was released, while its torn last line was copied to {} ({len} bytes before, {now} now); nothing was cut",
                saved_to.display()
            )),
        ));
    }
    file.set_len(offset)
        .map_err(|e| err("truncate the torn line of transcript", e))?;
    tracing::warn!(
        transcript = %target.display(),
        offset,
        bytes,
        saved_to = %saved_to.display(),
        "the transcript ended in a torn line (a writer died or failed mid-line): moved {bytes} bytes to {}",
        saved_to.display()
    );
    Ok(Some(TornTail {
        offset,
        bytes,
        saved_to,
    }))
}

/// `<transcript>.torn-<YYYYMMDDTHHMMSS.mmmZ>` (with `-N` after it if that
/// name exists), created new and private.
fn create_sidecar(target: &Path) -> Result<(File, PathBuf)> {
    let stamp: String = crate::time::format_rfc3339_ms(crate::time::now_ms())
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let mut base = target.as_os_str().to_owned();
    base.push(format!("{TORN_INFIX}{stamp}"));
    for n in 0..1000u32 {
        let mut name = base.clone();
        if n > 0 {
            name.push(format!("-{n}"));
        }
        let path = PathBuf::from(name);
        match sys::create_private_exclusive(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create torn line file", &path, e)),
        }
    }
    Err(Error::io(
        "create torn line file",
        Path::new(&base),
        io::Error::from(io::ErrorKind::AlreadyExists),
    ))
}

impl Drop for Transcript {
    fn drop(&mut self) {
        self.close();
    }
}

/// What comes between the transcript's name and the time in a torn-line
/// sidecar's name.
pub(crate) const TORN_INFIX: &str = ".torn-";

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t.jsonl");
        std::fs::write(&t, content).unwrap();
        (dir, t)
    }

    #[test]
    fn whole_lines_are_left_alone() {
        for content in [&b""[..], b"{}\n", b"a\nb\n"] {
            let (_d, t) = setup(content);
            let mut tr = Transcript::default();
            assert_eq!(tr.repair_tail(&t, &|| true).unwrap(), None);
            assert_eq!(std::fs::read(&t).unwrap(), content);
        }
    }

    #[test]
    fn a_torn_tail_is_moved_to_a_sidecar_and_cut() {
        // Fragments shorter, equal to and longer than one scan chunk.
        for frag_len in [1usize, 10, SCAN_CHUNK, SCAN_CHUNK * 2 + 7] {
            for head in [&b""[..], b"{\"a\":1}\n"] {
                let frag = vec![b'x'; frag_len];
                let mut content = head.to_vec();
                content.extend_from_slice(&frag);
                let (_d, t) = setup(&content);
                let mut tr = Transcript::default();
                let torn = tr
                    .repair_tail(&t, &|| true)
                    .unwrap()
                    .expect("torn tail found");
                assert_eq!(torn.offset(), head.len() as u64);
                assert_eq!(torn.bytes(), frag_len as u64);
                assert_eq!(std::fs::read(torn.saved_to()).unwrap(), frag);
                assert_eq!(std::fs::read(&t).unwrap(), head);
                let name = torn.saved_to().file_name().unwrap().to_string_lossy();
                assert!(name.starts_with("t.jsonl.torn-"), "{name}");
                // Checked once per hold: the answer is kept, nothing redone.
                assert_eq!(tr.repair_tail(&t, &|| true).unwrap(), Some(torn));
            }
        }
    }

    #[test]
    fn a_missing_transcript_is_not_created_by_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t.jsonl");
        let mut tr = Transcript::default();
        assert_eq!(tr.repair_tail(&t, &|| true).unwrap(), None);
        assert!(!t.exists());
        tr.append(&t, &["{}"], false, &|| true).unwrap();
        assert_eq!(std::fs::read(&t).unwrap(), b"{}\n");
    }

    /// A transcript that changes while its torn tail is being copied (this
    /// hold force-released during a long copy, a new holder writing) is not
    /// cut: the new lines stay, the fragment is saved anyway.
    #[cfg(feature = "fault-injection")]
    #[test]
    fn a_transcript_that_changed_during_the_copy_is_not_cut() {
        let (_d, t) = setup(b"{\"a\":1}\n{\"to");
        let t2 = t.clone();
        crate::fault::set_hook(Some(std::sync::Arc::new(move |point: &str| {
            if point == "torn.before_cut" && std::thread::current().name() == Some("torn-copier") {
                let mut f = std::fs::OpenOptions::new().append(true).open(&t2).unwrap();
                f.write_all(b"rn\"}\n{\"new\":2}\n").unwrap();
            }
        })));
        let t3 = t.clone();
        let err = std::thread::Builder::new()
            .name("torn-copier".into())
            .spawn(move || Transcript::default().repair_tail(&t3, &|| true))
            .unwrap()
            .join()
            .unwrap()
            .unwrap_err();
        crate::fault::set_hook(None);
        assert!(err.to_string().contains("nothing was cut"), "{err}");
        assert_eq!(
            std::fs::read(&t).unwrap(),
            b"{\"a\":1}\n{\"torn\"}\n{\"new\":2}\n"
        );
    }

    #[test]
    fn two_fragments_in_one_millisecond_get_two_sidecars() {
        let (_d, t) = setup(b"ab");
        let (_f1, p1) = create_sidecar(&t).unwrap();
        let (_f2, p2) = create_sidecar(&t).unwrap();
        assert_ne!(p1, p2);
    }

    #[test]
    fn an_append_after_a_torn_tail_starts_on_its_own_line() {
        let (_d, t) = setup(b"{\"a\":1}\n{\"half");
        let mut tr = Transcript::default();
        tr.append(&t, &["{\"b\":2}"], false, &|| true).unwrap();
        assert_eq!(std::fs::read(&t).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(tr.torn.as_ref().map(TornTail::bytes), Some(6));
    }
}
