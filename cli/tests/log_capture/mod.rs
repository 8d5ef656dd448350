//! The library's warnings, captured for the tests of one test binary: the
//! subscriber is the process's global one, since the watchdog and the etcd
//! thread log from threads of their own.

use std::io::Write;
use std::sync::{Mutex, Once};

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The warnings logged so far, capturing from the first call on (the
/// subscriber is installed once per process).
pub fn captured() -> &'static Mutex<Vec<u8>> {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    });
    &LOG
}

/// The captured warnings that contain every one of `needles`.
#[allow(dead_code)] // Not every test binary asks this.
pub fn warnings_with(needles: &[&str]) -> Vec<String> {
    let log = captured().lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains("WARN") && needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}
