//! Who "we" are (pid, start time, host, boot, pid namespace), for comparing
//! with an owner record and for writing our own. A leaf module over the
//! platform seam.

use crate::sys;
use std::sync::OnceLock;

/// Who "we" are, for comparing with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfIdentity {
    /// Our pid.
    pub pid: u32,
    /// Our start time (clock ticks since boot), if known.
    pub starttime: Option<u64>,
    /// Our host name.
    pub hostname: Option<String>,
    /// Our kernel's boot id.
    pub boot_id: Option<String>,
    /// Our pid namespace.
    pub pid_ns: Option<String>,
}

impl SelfIdentity {
    /// This process (cached; recomputed after a fork changes the pid).
    pub fn current() -> SelfIdentity {
        static CACHE: OnceLock<std::sync::Mutex<Option<SelfIdentity>>> = OnceLock::new();
        let pid = std::process::id();
        let cache = CACHE.get_or_init(Default::default);
        let mut slot = cache.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(me) if me.pid == pid => me.clone(),
            _ => {
                let me = SelfIdentity {
                    pid,
                    starttime: sys::process_start_time(pid),
                    hostname: sys::hostname(),
                    boot_id: sys::boot_id(),
                    pid_ns: sys::pid_namespace(),
                };
                *slot = Some(me.clone());
                me
            }
        }
    }
}
