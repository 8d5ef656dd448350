//! Lock file -> verdict and reasons.
//!
//! [`decide`] is a pure function from what was observed ([`Facts`]) to a
//! [`Verdict`] with its [`Reason`]s; [`crate::inspect()`](fn@crate::inspect) is the thin I/O around it.
//!
//! Before any rule: a regular lock file that we may not open (`EACCES`,
//! another user's `0600` file) is **held** with `unreadable` (owner
//! unknown, fail closed). The rules of [`decide`], in order:
//!
//! 1. The kernel witness is held (someone holds `flock` on the lock file's
//!    inode), or this process holds the lock (a live hold in its registry):
//!    **held**, or **stale** when report-only reasons (`too-old`, and under
//!    the acquire policy `hold-exceeded`) apply. Nothing is removed.
//! 2. Empty or malformed (no JSON object): `missing-pid`,
//!    `invalid-createdAt`, judged by the file's mtime only: **reclaimable**
//!    once it is older than the orphan grace (`min(orphan_grace, stale)`),
//!    else **held** with `in-grace`.
//! 3. A record with a newer `version` than ours: **held**
//!    (`unknown-version`), fail closed.
//! 4. Where the record comes from: the same kernel when its `bootId` equals
//!    ours, whatever the host names say (containers have their own), and
//!    then another pid namespace if `pidNs` differs; otherwise another host
//!    if `hostname` differs, else another boot if `bootId` differs, else
//!    another pid namespace if `pidNs` differs, else local. A field missing
//!    on either side never differs.
//! 5. Our own records (`witness: "flock"`) whose witness is free: the owner
//!    is gone. Local or another pid namespace: **reclaimable**
//!    (`witness-released`); another boot: **reclaimable** (`other-boot`);
//!    another host: age only, **held** (`other-host`) or, past the stale
//!    threshold, **reclaimable** (`other-host`, `too-old`).
//! 6. Any other record from another host or pid namespace is never judged by
//!    pid: age only, as above (`other-host` / `other-namespace`); from
//!    another boot: **reclaimable** (`other-boot`).
//! 7. Local records without a usable witness (other software's, or ours
//!    where `flock` does not work), judged by pid: the reference's reasons,
//!    `missing-pid` | `dead-pid` | `recycled-pid`, then `invalid-createdAt` |
//!    `too-old`, then `hold-exceeded` (acquire policy), then
//!    `orphan-self-pid` (our pid, not a live hold of ours, and our start
//!    time, or under the acquire policy no start time). EPERM and "unknown"
//!    mean alive. No reason: **held**; a live pid: **stale** (what
//!    is left is report-only: `too-old`, `hold-exceeded`,
//!    `invalid-createdAt`); no valid pid: by mtime only, as in rule 2;
//!    anything else (dead, recycled, our own orphan): **reclaimable**.

use crate::error::{Error, Owner, Repr, Result};
use crate::record::{MAX_RECORD_BYTES, OwnerRecord, ParsedRecord, RECORD_VERSION};
use crate::sys::{self, FileId, PidState};
use serde::Serialize;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use crate::identity::SelfIdentity;
pub use crate::verdict::{Reason, Verdict, Witness};

/// What the I/O layer observed about a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidFacts {
    /// `kill(pid, 0)` plus the zombie check.
    pub state: PidState,
    /// Current start time of that pid, if readable.
    pub starttime: Option<u64>,
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The file's contents.
    pub parsed: &'a ParsedRecord,
    /// The witness probe.
    pub witness: Witness,
    /// Pid probe of the record's pid; `None` when not probed.
    pub pid: Option<PidFacts>,
    /// Wall clock now, ms since the epoch.
    pub now_ms: i64,
    /// Age of the file's mtime (None if unknown).
    pub mtime_age: Option<Duration>,
    /// This process holds this very lock file (registry).
    pub held_by_this_process: bool,
    /// Us.
    pub me: &'a SelfIdentity,
}

/// The thresholds [`decide`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Live holders older than this are reported `too-old`.
    pub stale: Duration,
    /// Empty/malformed files younger than this (mtime) are left alone.
    pub orphan_grace: Duration,
    /// Report `hold-exceeded` (acquire: yes; sweep: no, as the reference).
    pub respect_max_hold: bool,
    /// `orphan-self-pid` for a record with our pid and no start time
    /// (acquire: yes; sweep: no, as the reference).
    pub reclaim_self_without_starttime: bool,
}

/// Where a record comes from, relative to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local,
    OtherHost,
    OtherBoot,
    OtherNamespace,
}

fn origin(rec: &OwnerRecord, me: &SelfIdentity) -> Origin {
    let differs = |theirs: &Option<String>, ours: &Option<String>| matches!((theirs, ours), (Some(a), Some(b)) if a != b);
    let same_kernel = matches!((&rec.boot_id, &me.boot_id), (Some(a), Some(b)) if a == b);
    if same_kernel {
        // One boot id is one running kernel: the same machine whatever the
        // host names say (containers have their own), so the witness flock
        // is authoritative; only pids need the namespace check.
        return if differs(&rec.pid_ns, &me.pid_ns) {
            Origin::OtherNamespace
        } else {
            Origin::Local
        };
    }
    if differs(&rec.hostname, &me.hostname) {
        Origin::OtherHost
    } else if differs(&rec.boot_id, &me.boot_id) {
        Origin::OtherBoot
    } else if differs(&rec.pid_ns, &me.pid_ns) {
        Origin::OtherNamespace
    } else {
        Origin::Local
    }
}

/// Whether [`decide`] will need a pid probe for this record: a local record
/// with a pid that is not proven by a working witness.
pub fn needs_pid_probe(parsed: &ParsedRecord, witness: Witness, me: &SelfIdentity) -> bool {
    match parsed.record() {
        Some(rec) => {
            rec.pid.is_some()
                && origin(rec, me) == Origin::Local
                && !(rec.has_flock_witness() && witness != Witness::Unknown)
        }
        None => false,
    }
}

/// Age of the record from `createdAt`, clamped at zero (a future `createdAt`
/// is age 0, never "old").
pub fn record_age(rec: &OwnerRecord, now_ms: i64) -> Option<Duration> {
    let created = rec.created_at_ms()?;
    Some(Duration::from_millis(
        now_ms.saturating_sub(created).max(0) as u64
    ))
}

fn report_only_reasons(rec: Option<&OwnerRecord>, facts: &Facts, policy: &Policy) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if let Some(rec) = rec
        && let Some(age) = record_age(rec, facts.now_ms)
    {
        if age > policy.stale {
            reasons.push(Reason::TooOld);
        }
        if policy.respect_max_hold
            && rec
                .max_hold_ms
                .is_some_and(|m| age > Duration::from_millis(m))
        {
            reasons.push(Reason::HoldExceeded);
        }
    }
    reasons
}

fn held_or_stale(reasons: Vec<Reason>) -> (Verdict, Vec<Reason>) {
    if reasons.is_empty() {
        (Verdict::Held, reasons)
    } else {
        (Verdict::Stale, reasons)
    }
}

/// The pure decision. See the module docs for the rules.
pub fn decide(facts: &Facts, policy: &Policy) -> (Verdict, Vec<Reason>) {
    let rec = facts.parsed.record();
    if facts.witness == Witness::Held || facts.held_by_this_process {
        return held_or_stale(report_only_reasons(rec, facts, policy));
    }
    let Some(rec) = rec else {
        // Empty or malformed: judged by mtime only.
        return orphan_by_mtime(
            vec![Reason::MissingPid, Reason::InvalidCreatedAt],
            facts,
            policy,
        );
    };
    if rec.version.is_some_and(|v| v > RECORD_VERSION) {
        return (Verdict::Held, vec![Reason::UnknownVersion]);
    }
    let origin = origin(rec, facts.me);
    if rec.has_flock_witness() && facts.witness == Witness::Free {
        return match origin {
            Origin::Local | Origin::OtherNamespace => {
                (Verdict::Reclaimable, vec![Reason::WitnessReleased])
            }
            Origin::OtherBoot => (Verdict::Reclaimable, vec![Reason::OtherBoot]),
            Origin::OtherHost => by_age_only(Reason::OtherHost, rec, facts, policy),
        };
    }
    match origin {
        Origin::OtherHost => return by_age_only(Reason::OtherHost, rec, facts, policy),
        Origin::OtherNamespace => return by_age_only(Reason::OtherNamespace, rec, facts, policy),
        Origin::OtherBoot => return (Verdict::Reclaimable, vec![Reason::OtherBoot]),
        Origin::Local => {}
    }

    // Judged by pid, as the reference does.
    let mut reasons = Vec::new();
    let mut pid_alive = false;
    match (rec.pid, facts.pid) {
        (None, _) => reasons.push(Reason::MissingPid),
        (
            Some(_),
            Some(PidFacts {
                state: PidState::Dead,
                ..
            }),
        ) => reasons.push(Reason::DeadPid),
        (Some(_), probe) => {
            // Alive, Unknown, or not probed: all count as alive.
            pid_alive = true;
            if let (
                Some(stored),
                Some(PidFacts {
                    state: PidState::Alive,
                    starttime: Some(now),
                }),
            ) = (rec.starttime, probe)
                && stored != now
            {
                reasons.push(Reason::RecycledPid);
                pid_alive = false;
            }
        }
    }
    match record_age(rec, facts.now_ms) {
        None => reasons.push(Reason::InvalidCreatedAt),
        Some(age) if age > policy.stale => reasons.push(Reason::TooOld),
        Some(_) => {}
    }
    if policy.respect_max_hold
        && let (Some(age), Some(max)) = (record_age(rec, facts.now_ms), rec.max_hold_ms)
        && age > Duration::from_millis(max)
    {
        reasons.push(Reason::HoldExceeded);
    }
    if rec.pid == Some(facts.me.pid) && !reasons.contains(&Reason::RecycledPid) {
        let same_life = match rec.starttime {
            Some(st) => facts.me.starttime == Some(st),
            None => policy.reclaim_self_without_starttime,
        };
        if same_life {
            reasons.push(Reason::OrphanSelfPid);
            pid_alive = false;
        }
    }
    if reasons.is_empty() {
        return (Verdict::Held, reasons);
    }
    if pid_alive {
        // A live owner is never removed: whatever is left is report-only
        // (too-old, hold-exceeded, and, unlike the reference, also
        // invalid-createdAt, which it would reclaim after 5 s of mtime age).
        return (Verdict::Stale, reasons);
    }
    if rec.pid.is_none() {
        // No owner to judge: only the file's own age (mtime) may make it
        // reclaimable, whatever `createdAt` claims (the reference lets a
        // pid-less record with an old `createdAt` go at once; a copied or
        // clock-skewed record must not).
        return orphan_by_mtime(reasons, facts, policy);
    }
    (Verdict::Reclaimable, reasons)
}

fn orphan_by_mtime(
    mut reasons: Vec<Reason>,
    facts: &Facts,
    policy: &Policy,
) -> (Verdict, Vec<Reason>) {
    let grace = policy.orphan_grace.min(policy.stale);
    match facts.mtime_age {
        Some(age) if age > grace => (Verdict::Reclaimable, reasons),
        _ => {
            reasons.push(Reason::InGrace);
            (Verdict::Held, reasons)
        }
    }
}

fn by_age_only(
    why: Reason,
    rec: &OwnerRecord,
    facts: &Facts,
    policy: &Policy,
) -> (Verdict, Vec<Reason>) {
    match record_age(rec, facts.now_ms) {
        Some(age) if age > policy.stale => (Verdict::Reclaimable, vec![why, Reason::TooOld]),
        _ => (Verdict::Held, vec![why]),
    }
}

/// The result of inspecting one lock file.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Inspection {
    /// The lock file.
    pub lock_path: PathBuf,
    /// The record, if the file held a JSON object.
    pub record: Option<OwnerRecord>,
    /// `record`, `empty` or `malformed`.
    pub contents: &'static str,
    /// The witness probe.
    pub witness: Witness,
    /// Whether the owner is alive. For our records (`witness: "flock"`)
    /// with a working probe: `true` while the witness is held, `false` when
    /// it is free and the lock is reclaimable, `None` when it is free but
    /// the lock is kept (a young record of another host, whose free witness
    /// proves nothing here). Otherwise from the pid probe (`false` for a dead
    /// or recycled pid); `None` when not probed or unknown.
    pub pid_alive: Option<bool>,
    /// Age from `createdAt`.
    #[serde(serialize_with = "ser_opt_ms", rename = "ageMs")]
    pub age: Option<Duration>,
    /// Age of the file's mtime.
    #[serde(serialize_with = "ser_opt_ms", rename = "fileAgeMs")]
    pub file_age: Option<Duration>,
    /// The decision.
    pub verdict: Verdict,
    /// Its reasons.
    pub reasons: Vec<Reason>,
    #[serde(skip)]
    pub(crate) id: FileId,
}

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_millis() as u64)),
        None => s.serialize_none(),
    }
}

impl Inspection {
    /// The owner, for messages.
    pub fn owner(&self) -> Owner {
        let rec = self.record.as_ref();
        Owner {
            pid: rec.and_then(|r| r.pid),
            alive: self.pid_alive,
            age_ms: self.age.map(|a| a.as_millis() as u64),
            hostname: rec.and_then(|r| r.hostname.clone()),
            label: rec.and_then(|r| r.label.clone()),
        }
    }
}

/// A lock file opened for inspection: the verdict plus the open descriptor
/// (holding a shared witness lock when the probe found the witness free),
/// which [`crate::file`] needs for a race-free reclaim.
pub(crate) struct Observed {
    pub inspection: Inspection,
    /// `None` when the file could not be opened (unreadable): never reclaimed.
    pub file: Option<File>,
}

fn not_a_file(path: &Path, meta: &std::fs::Metadata) -> Error {
    Error::from(Repr::NotAFile {
        lock_path: path.to_owned(),
        what: sys::file_kind(meta.file_type()),
        role: "lock path",
    })
}

/// Open, probe and judge the lock file at `lock_path`. `Ok(None)`: it does
/// not exist (any more). `held_by_us` answers whether this process holds the
/// file with that identity.
pub(crate) fn observe(
    lock_path: &Path,
    policy: &Policy,
    held_by_us: &dyn Fn(FileId) -> bool,
) -> Result<Option<Observed>> {
    let file = match sys::open_for_inspection(lock_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            // ELOOP (symlink, O_NOFOLLOW) and ENXIO (socket) land here; say
            // what is at the path instead of an errno.
            return match std::fs::symlink_metadata(lock_path) {
                Ok(meta) if !meta.file_type().is_file() => Err(not_a_file(lock_path, &meta)),
                Ok(meta) if e.kind() == io::ErrorKind::PermissionDenied => {
                    Ok(Some(unreadable(lock_path, &meta)))
                }
                Err(e2) if e2.kind() == io::ErrorKind::NotFound => Ok(None),
                _ => Err(Error::io("open lock file", lock_path, e)),
            };
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| Error::io("stat lock file", lock_path, e))?;
    if !meta.file_type().is_file() {
        return Err(not_a_file(lock_path, &meta));
    }
    let witness = match sys::flock_try(&file, false) {
        Ok(true) => {
            // Drop the probe at once: only reclaimers ever lock an existing
            // inode again (owners always lock a fresh one before publishing
            // it), so "free" stays true, and a reclaimer's exclusive lock
            // does not have to wait for inspectors that are still reading.
            let _ = sys::flock_unlock(&file);
            Witness::Free
        }
        Ok(false) => Witness::Held,
        Err(_) => Witness::Unknown,
    };
    let mut buf = Vec::with_capacity(512);
    // Read one byte past the cap so an oversized file is seen as such.
    (&file)
        .take(MAX_RECORD_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("read lock file", lock_path, e))?;
    let parsed = OwnerRecord::parse(&buf);
    let me = SelfIdentity::current();
    let pid = if needs_pid_probe(&parsed, witness, &me) {
        parsed.record().and_then(|r| r.pid).map(|p| PidFacts {
            state: sys::probe_pid(p),
            starttime: sys::process_start_time(p),
        })
    } else {
        None
    };
    let now = SystemTime::now();
    let mtime_age = meta
        .modified()
        .ok()
        .map(|m| now.duration_since(m).unwrap_or(Duration::ZERO));
    let id = sys::file_id(&meta);
    let facts = Facts {
        parsed: &parsed,
        witness,
        pid,
        now_ms: crate::time::system_time_ms(now),
        mtime_age,
        held_by_this_process: held_by_us(id),
        me: &me,
    };
    let (verdict, reasons) = decide(&facts, policy);
    let rec = parsed.record();
    let pid_alive = if witness == Witness::Held && rec.is_some_and(OwnerRecord::has_flock_witness) {
        Some(true)
    } else if rec.is_some_and(OwnerRecord::has_flock_witness) && witness == Witness::Free {
        // A free witness proves death only where it is authoritative (this
        // kernel); for another host `decide` keeps the lock, so say unknown.
        (verdict == Verdict::Reclaimable).then_some(false)
    } else {
        match pid.map(|p| p.state) {
            Some(PidState::Dead) => Some(false),
            Some(PidState::Alive) => Some(!reasons.contains(&Reason::RecycledPid)),
            _ => None,
        }
    };
    let inspection = Inspection {
        lock_path: lock_path.to_owned(),
        age: rec.and_then(|r| record_age(r, facts.now_ms)),
        record: rec.cloned(),
        contents: match parsed {
            ParsedRecord::Record(_) => "record",
            ParsedRecord::Empty => "empty",
            ParsedRecord::Malformed => "malformed",
        },
        witness,
        pid_alive,
        file_age: mtime_age,
        verdict,
        reasons,
        id,
    };
    Ok(Some(Observed {
        inspection,
        file: Some(file),
    }))
}

/// A regular lock file we may not open: owner unknown, so held (fail closed).
fn unreadable(lock_path: &Path, meta: &std::fs::Metadata) -> Observed {
    let file_age = meta.modified().ok().map(|m| {
        SystemTime::now()
            .duration_since(m)
            .unwrap_or(Duration::ZERO)
    });
    Observed {
        inspection: Inspection {
            lock_path: lock_path.to_owned(),
            record: None,
            contents: "unreadable",
            witness: Witness::Unknown,
            pid_alive: None,
            age: None,
            file_age,
            verdict: Verdict::Held,
            reasons: vec![Reason::Unreadable],
            id: sys::file_id(meta),
        },
        file: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::WITNESS_FLOCK;

    const NOW: i64 = 1_796_032_447_000;

    fn me() -> SelfIdentity {
        SelfIdentity {
            pid: 100,
            starttime: Some(5000),
            hostname: Some("here".into()),
            boot_id: Some("boot-a".into()),
            pid_ns: Some("pid:[1]".into()),
        }
    }

    fn policy() -> Policy {
        Policy {
            stale: Duration::from_secs(30 * 60),
            orphan_grace: Duration::from_secs(5),
            respect_max_hold: true,
            reclaim_self_without_starttime: true,
        }
    }

    fn iso(ms_ago: i64) -> Option<String> {
        Some(crate::time::format_rfc3339_ms(NOW - ms_ago))
    }

    fn ours(age_ms: i64) -> OwnerRecord {
        OwnerRecord {
            pid: Some(200),
            created_at: iso(age_ms),
            starttime: Some(7),
            max_hold_ms: Some(300_000),
            hostname: Some("here".into()),
            boot_id: Some("boot-a".into()),
            pid_ns: Some("pid:[1]".into()),
            token: Some("t".into()),
            witness: Some(WITNESS_FLOCK.into()),
            label: None,
            version: Some(RECORD_VERSION),
        }
    }

    fn reference(pid: Option<u32>, age_ms: i64, starttime: Option<u64>) -> OwnerRecord {
        OwnerRecord {
            pid,
            created_at: iso(age_ms),
            starttime,
            ..OwnerRecord::default()
        }
    }

    struct Case {
        name: &'static str,
        parsed: ParsedRecord,
        witness: Witness,
        pid: Option<PidFacts>,
        mtime_age_s: Option<u64>,
        held_by_us: bool,
        want: (Verdict, Vec<Reason>),
    }

    fn alive(st: Option<u64>) -> Option<PidFacts> {
        Some(PidFacts {
            state: PidState::Alive,
            starttime: st,
        })
    }
    fn dead() -> Option<PidFacts> {
        Some(PidFacts {
            state: PidState::Dead,
            starttime: None,
        })
    }
    fn unknown() -> Option<PidFacts> {
        Some(PidFacts {
            state: PidState::Unknown,
            starttime: None,
        })
    }

    fn run(cases: Vec<Case>) {
        let me = me();
        for c in cases {
            let facts = Facts {
                parsed: &c.parsed,
                witness: c.witness,
                pid: c.pid,
                now_ms: NOW,
                mtime_age: c.mtime_age_s.map(Duration::from_secs),
                held_by_this_process: c.held_by_us,
                me: &me,
            };
            assert_eq!(decide(&facts, &policy()), c.want, "case {}", c.name);
        }
    }

    use Reason::*;
    use Verdict::*;

    /// `too-old` and `hold-exceeded` mean strictly past the threshold.
    #[test]
    fn age_thresholds_are_strict() {
        let stale_ms = 30 * 60 * 1000;
        let no_max = |age| {
            ParsedRecord::Record(OwnerRecord {
                max_hold_ms: None,
                ..ours(age)
            })
        };
        let held = |parsed, want| Case {
            name: "threshold",
            parsed,
            witness: Witness::Held,
            pid: None,
            mtime_age_s: Some(1),
            held_by_us: false,
            want,
        };
        run(vec![
            held(no_max(stale_ms), (Held, vec![])),
            held(no_max(stale_ms + 1), (Stale, vec![TooOld])),
            held(ParsedRecord::Record(ours(300_000)), (Held, vec![])),
            held(
                ParsedRecord::Record(ours(300_001)),
                (Stale, vec![HoldExceeded]),
            ),
        ]);
    }

    #[test]
    fn verdict_table() {
        let rec = ParsedRecord::Record;
        let mut other_host = ours(1000);
        other_host.hostname = Some("elsewhere".into());
        other_host.boot_id = Some("boot-x".into());
        let mut other_host_old = ours(31 * 60_000);
        other_host_old.hostname = Some("elsewhere".into());
        other_host_old.boot_id = Some("boot-x".into());
        // A container on this kernel: other host name, same boot id.
        let mut container = ours(1000);
        container.hostname = Some("container-7".into());
        container.pid_ns = Some("pid:[9]".into());
        let mut other_boot = ours(1000);
        other_boot.boot_id = Some("boot-b".into());
        let mut other_ns = reference(Some(200), 1000, None);
        other_ns.pid_ns = Some("pid:[2]".into());
        let mut newer = ours(1000);
        newer.version = Some(RECORD_VERSION + 1);
        let mut no_witness_support = ours(1000);
        no_witness_support.witness = None;
        let cases = vec![
            Case {
                name: "witness held",
                parsed: rec(ours(1000)),
                witness: Witness::Held,
                pid: None,
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Held, vec![]),
            },
            Case {
                name: "witness held but ancient: report only",
                parsed: rec(ours(31 * 60_000)),
                witness: Witness::Held,
                pid: None,
                mtime_age_s: Some(9999),
                held_by_us: false,
                want: (Stale, vec![TooOld, HoldExceeded]),
            },
            Case {
                name: "witness released",
                parsed: rec(ours(1000)),
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Reclaimable, vec![WitnessReleased]),
            },
            Case {
                name: "held by this process, witness free",
                parsed: rec(ours(1000)),
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(1),
                held_by_us: true,
                want: (Held, vec![]),
            },
            Case {
                name: "container on this kernel: the witness decides",
                parsed: rec(container.clone()),
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Reclaimable, vec![WitnessReleased]),
            },
            Case {
                name: "container on this kernel, witness held",
                parsed: rec(container),
                witness: Witness::Held,
                pid: None,
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Held, vec![]),
            },
            Case {
                name: "other boot",
                parsed: rec(other_boot),
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Reclaimable, vec![OtherBoot]),
            },
            Case {
                name: "other host, young",
                parsed: rec(other_host),
                witness: Witness::Free,
                pid: dead(),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Held, vec![OtherHost]),
            },
            Case {
                name: "other host, old",
                parsed: rec(other_host_old),
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Reclaimable, vec![OtherHost, TooOld]),
            },
            Case {
                name: "other pid namespace, never by pid",
                parsed: rec(other_ns),
                witness: Witness::Free,
                pid: dead(),
                mtime_age_s: Some(60),
                held_by_us: false,
                want: (Held, vec![OtherNamespace]),
            },
            Case {
                name: "newer version",
                parsed: rec(newer),
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(60),
                held_by_us: false,
                want: (Held, vec![UnknownVersion]),
            },
            Case {
                name: "our record on fs without flock: pid alive",
                parsed: rec(no_witness_support.clone()),
                witness: Witness::Unknown,
                pid: alive(Some(7)),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Held, vec![]),
            },
            Case {
                name: "our record on fs without flock: pid dead",
                parsed: rec(no_witness_support),
                witness: Witness::Unknown,
                pid: dead(),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Reclaimable, vec![DeadPid]),
            },
            Case {
                name: "reference alive",
                parsed: rec(reference(Some(200), 1000, Some(7))),
                witness: Witness::Free,
                pid: alive(Some(7)),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Held, vec![]),
            },
            Case {
                name: "reference dead",
                parsed: rec(reference(Some(200), 1000, Some(7))),
                witness: Witness::Free,
                pid: dead(),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Reclaimable, vec![DeadPid]),
            },
            Case {
                name: "reference recycled",
                parsed: rec(reference(Some(200), 1000, Some(7))),
                witness: Witness::Free,
                pid: alive(Some(8)),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Reclaimable, vec![RecycledPid]),
            },
            Case {
                name: "EPERM (alive) never dead",
                parsed: rec(reference(Some(200), 1000, Some(7))),
                witness: Witness::Free,
                pid: alive(None),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Held, vec![]),
            },
            Case {
                name: "unknown liveness is alive",
                parsed: rec(reference(Some(200), 1000, Some(7))),
                witness: Witness::Free,
                pid: unknown(),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Held, vec![]),
            },
            Case {
                name: "start time unreadable: alive",
                parsed: rec(reference(Some(200), 1000, Some(7))),
                witness: Witness::Free,
                pid: alive(None),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Held, vec![]),
            },
            Case {
                name: "too old but alive: report only",
                parsed: rec(reference(Some(200), 31 * 60_000, None)),
                witness: Witness::Free,
                pid: alive(None),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Stale, vec![TooOld]),
            },
            Case {
                name: "dead and too old",
                parsed: rec(reference(Some(200), 31 * 60_000, None)),
                witness: Witness::Free,
                pid: dead(),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Reclaimable, vec![DeadPid, TooOld]),
            },
            Case {
                name: "hold exceeded but alive: report only",
                parsed: rec(OwnerRecord {
                    max_hold_ms: Some(10_000),
                    ..reference(Some(200), 30_000, None)
                }),
                witness: Witness::Free,
                pid: alive(None),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Stale, vec![HoldExceeded]),
            },
            Case {
                name: "hold not exceeded",
                parsed: rec(OwnerRecord {
                    max_hold_ms: Some(60_000),
                    ..reference(Some(200), 30_000, None)
                }),
                witness: Witness::Free,
                pid: alive(None),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Held, vec![]),
            },
            Case {
                name: "future createdAt is age 0",
                parsed: rec(reference(Some(200), -3_600_000, None)),
                witness: Witness::Free,
                pid: alive(None),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Held, vec![]),
            },
            Case {
                name: "invalid createdAt, live pid: report only",
                parsed: rec(OwnerRecord {
                    created_at: Some("garbage".into()),
                    ..reference(Some(200), 0, None)
                }),
                witness: Witness::Free,
                pid: alive(None),
                mtime_age_s: Some(60),
                held_by_us: false,
                want: (Stale, vec![InvalidCreatedAt]),
            },
            Case {
                name: "invalid createdAt, dead pid",
                parsed: rec(OwnerRecord {
                    created_at: None,
                    ..reference(Some(200), 0, None)
                }),
                witness: Witness::Free,
                pid: dead(),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Reclaimable, vec![DeadPid, InvalidCreatedAt]),
            },
            Case {
                name: "{} fresh: in grace",
                parsed: rec(OwnerRecord::default()),
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Held, vec![MissingPid, InvalidCreatedAt, InGrace]),
            },
            Case {
                name: "{} at exactly the grace: kept (strict >)",
                parsed: rec(OwnerRecord::default()),
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(5),
                held_by_us: false,
                want: (Held, vec![MissingPid, InvalidCreatedAt, InGrace]),
            },
            Case {
                name: "{} 6 s old",
                parsed: rec(OwnerRecord::default()),
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(6),
                held_by_us: false,
                want: (Reclaimable, vec![MissingPid, InvalidCreatedAt]),
            },
            Case {
                name: "empty fresh",
                parsed: ParsedRecord::Empty,
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(0),
                held_by_us: false,
                want: (Held, vec![MissingPid, InvalidCreatedAt, InGrace]),
            },
            Case {
                name: "empty, mtime unknown",
                parsed: ParsedRecord::Empty,
                witness: Witness::Free,
                pid: None,
                mtime_age_s: None,
                held_by_us: false,
                want: (Held, vec![MissingPid, InvalidCreatedAt, InGrace]),
            },
            Case {
                name: "empty old",
                parsed: ParsedRecord::Empty,
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(10),
                held_by_us: false,
                want: (Reclaimable, vec![MissingPid, InvalidCreatedAt]),
            },
            Case {
                name: "empty old but witness held (fallback publish mid-write)",
                parsed: ParsedRecord::Empty,
                witness: Witness::Held,
                pid: None,
                mtime_age_s: Some(10),
                held_by_us: false,
                want: (Held, vec![]),
            },
            Case {
                name: "malformed old",
                parsed: ParsedRecord::Malformed,
                witness: Witness::Unknown,
                pid: None,
                mtime_age_s: Some(10),
                held_by_us: false,
                want: (Reclaimable, vec![MissingPid, InvalidCreatedAt]),
            },
            Case {
                name: "pid missing, createdAt ancient, fresh file: grace",
                parsed: rec(reference(None, 31 * 60_000, None)),
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Held, vec![MissingPid, TooOld, InGrace]),
            },
            Case {
                name: "pid missing, createdAt fine, old file",
                parsed: rec(reference(None, 1000, None)),
                witness: Witness::Free,
                pid: None,
                mtime_age_s: Some(10),
                held_by_us: false,
                want: (Reclaimable, vec![MissingPid]),
            },
            Case {
                name: "orphan self pid, same start time",
                parsed: rec(reference(Some(100), 1000, Some(5000))),
                witness: Witness::Free,
                pid: alive(Some(5000)),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Reclaimable, vec![OrphanSelfPid]),
            },
            Case {
                name: "orphan self pid, no start time",
                parsed: rec(reference(Some(100), 1000, None)),
                witness: Witness::Free,
                pid: alive(Some(5000)),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Reclaimable, vec![OrphanSelfPid]),
            },
            Case {
                name: "self pid, other start time: recycled",
                parsed: rec(reference(Some(100), 1000, Some(4000))),
                witness: Witness::Free,
                pid: alive(Some(5000)),
                mtime_age_s: Some(1),
                held_by_us: false,
                want: (Reclaimable, vec![RecycledPid]),
            },
            Case {
                name: "self pid held by us: never",
                parsed: rec(reference(Some(100), 1000, Some(5000))),
                witness: Witness::Free,
                pid: alive(Some(5000)),
                mtime_age_s: Some(1),
                held_by_us: true,
                want: (Held, vec![]),
            },
        ];
        run(cases);
    }

    #[test]
    fn sweep_policy_differs_from_acquire() {
        let me = me();
        let sweep = Policy {
            respect_max_hold: false,
            reclaim_self_without_starttime: false,
            ..policy()
        };
        let self_no_st = ParsedRecord::Record(reference(Some(100), 1000, None));
        let facts = Facts {
            parsed: &self_no_st,
            witness: Witness::Free,
            pid: alive(Some(5000)),
            now_ms: NOW,
            mtime_age: Some(Duration::from_secs(1)),
            held_by_this_process: false,
            me: &me,
        };
        assert_eq!(decide(&facts, &sweep), (Held, vec![]));
        let hold = ParsedRecord::Record(OwnerRecord {
            max_hold_ms: Some(10_000),
            ..reference(Some(200), 30_000, None)
        });
        let facts = Facts {
            parsed: &hold,
            ..facts
        };
        assert_eq!(decide(&facts, &sweep), (Held, vec![]));
    }

    #[test]
    fn probe_is_needed_only_for_pid_judged_local_records() {
        let me = me();
        let r = |rec| ParsedRecord::Record(rec);
        assert!(!needs_pid_probe(&r(ours(1)), Witness::Free, &me));
        assert!(needs_pid_probe(&r(ours(1)), Witness::Unknown, &me));
        assert!(needs_pid_probe(
            &r(reference(Some(5), 1, None)),
            Witness::Free,
            &me
        ));
        assert!(!needs_pid_probe(
            &r(reference(None, 1, None)),
            Witness::Free,
            &me
        ));
        let mut other = ours(1);
        other.hostname = Some("x".into());
        other.boot_id = Some("boot-x".into());
        other.witness = None;
        assert!(!needs_pid_probe(&r(other), Witness::Unknown, &me));
        assert!(!needs_pid_probe(&ParsedRecord::Empty, Witness::Free, &me));
    }
}
