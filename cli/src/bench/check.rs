//! What proves a throughput run exclusive: an overlap counter shared by
//! the workers, and the check of the lines they appended.

use super::{LINE_PAD, err_str};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter in a shared file mapping: every critical section increments it
/// on entry and decrements it on exit, so a non-zero value on entry proves
/// an overlap, across processes, at the cost of one atomic operation.
pub(super) struct SharedCounter {
    ptr: *mut libc::c_void,
    len: usize,
}

impl SharedCounter {
    /// Size of the mapped file (one page).
    const LEN: usize = 4096;

    pub(super) fn create(path: &Path) -> Result<(), String> {
        let f = File::create(path).map_err(|e| err_str("create shared counter", e))?;
        f.set_len(Self::LEN as u64)
            .map_err(|e| err_str("size shared counter", e))
    }

    pub(super) fn map(path: &Path) -> Result<SharedCounter, String> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| err_str("open shared counter", e))?;
        // SAFETY: a shared read-write mapping of a regular file we opened
        // read-write and that the parent sized to LEN bytes; the mapping
        // outlives the descriptor, and is unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(err_str(
                "map shared counter",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(SharedCounter {
            ptr,
            len: Self::LEN,
        })
    }

    fn counter(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned, at least 8 bytes long, lives
        // as long as `self`, and every process only touches it atomically.
        unsafe { &*(self.ptr as *const AtomicU64) }
    }

    /// Enter a critical section; true if someone else was inside.
    pub(super) fn enter(&self) -> bool {
        self.counter().fetch_add(1, Ordering::SeqCst) != 0
    }

    pub(super) fn leave(&self) {
        self.counter().fetch_sub(1, Ordering::SeqCst);
    }

    /// The value in the file, read without mapping (0 when all left).
    pub(super) fn read(path: &Path) -> Result<u64, String> {
        let bytes = std::fs::read(path).map_err(|e| err_str("read shared counter", e))?;
        let first: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or("shared counter file is too short")?;
        Ok(u64::from_ne_bytes(first))
    }
}

impl Drop for SharedCounter {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping created in `map`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// One line of a throughput worker.
pub(super) fn cycle_line(id: u64, seq: u64) -> String {
    format!(r#"{{"id":{id},"seq":{seq},"text":"{LINE_PAD}"}}"#)
}

/// Check the shared transcript: whole lines, each well-formed, each worker's
/// sequence complete and in order, `counts[id]` lines per worker.
pub(super) fn verify_lines(path: &Path, counts: &[u64]) -> Result<(), String> {
    let data = std::fs::read(path).map_err(|e| err_str("read transcript", e))?;
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return Err("no cycles completed".into());
    }
    if data.last() != Some(&b'\n') {
        return Err("the file does not end with a whole line".into());
    }
    let mut next = vec![0u64; counts.len()];
    let body = &data[..data.len() - 1];
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let v: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| format!("line {}: malformed ({e})", i + 1))?;
        let id = v.get("id").and_then(serde_json::Value::as_u64);
        let seq = v.get("seq").and_then(serde_json::Value::as_u64);
        let text_ok = v.get("text").and_then(serde_json::Value::as_str) == Some(LINE_PAD);
        let (Some(id), Some(seq), true) = (id, seq, text_ok) else {
            return Err(format!("line {}: unexpected content", i + 1));
        };
        let Some(slot) = next.get_mut(id as usize) else {
            return Err(format!("line {}: unknown worker {id}", i + 1));
        };
        if *slot != seq {
            return Err(format!(
                "line {}: worker {id} seq {seq}, expected {slot}",
                i + 1
            ));
        }
        *slot += 1;
    }
    if next != counts {
        return Err(format!(
            "line counts {next:?} differ from the workers' cycles {counts:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_lines_accepts_whole_ordered_lines_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.jsonl");
        let write = |lines: &[String], tail: &str| {
            let mut s: String = lines.iter().map(|l| format!("{l}\n")).collect();
            s.push_str(tail);
            std::fs::write(&path, s).expect("write test file");
        };
        let good = vec![cycle_line(0, 0), cycle_line(1, 0), cycle_line(0, 1)];
        write(&good, "");
        assert_eq!(verify_lines(&path, &[2, 1]), Ok(()));
        // Wrong count, unknown worker, out of order, torn tail, interleaved.
        assert!(verify_lines(&path, &[2, 2]).is_err());
        assert!(verify_lines(&path, &[3]).is_err());
        write(&[cycle_line(0, 1), cycle_line(0, 0)], "");
        assert!(verify_lines(&path, &[2]).is_err());
        write(&good, "{\"id\":1,");
        assert!(verify_lines(&path, &[2, 1]).is_err());
        let a = cycle_line(0, 0);
        let b = cycle_line(1, 0);
        write(&[format!("{}{}", &a[..10], b), a[10..].to_owned()], "");
        assert!(verify_lines(&path, &[1, 1]).is_err());
        write(&[], "");
        assert!(verify_lines(&path, &[0]).is_err());
    }
}
