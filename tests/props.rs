//! Property tests for the owner-record parser and the verdict function.
//!
//! `OwnerRecord::parse` must be total (no panic on any bytes, any JSON) and
//! must read back what `to_line` writes. `inspect::decide` must never let a
//! contender take a lock from the living: a held witness, a live or
//! unknown pid (judged by pid), a record from another host (judged by pid),
//! or a fresh empty/malformed/pid-less file is never reclaimable.

mod common;

use proptest::prelude::*;
use serde_json::Value;
use session_lock::__private::{
    Facts, PidFacts, PidState, Policy, SelfIdentity, decide, record_age,
};
use session_lock::record::{MAX_RECORD_BYTES, OwnerRecord, ParsedRecord, RECORD_VERSION};
use session_lock::{Reason, Verdict, Witness};
use std::time::Duration;

const NOW: i64 = 1_796_032_447_000;

fn any_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

fn nonempty_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..max).prop_map(String::from_iter)
}

/// Records in the domain the parser keeps as is: pid in 1..=i32::MAX,
/// maxHoldMs > 0, host/boot/namespace non-empty.
fn valid_record() -> impl Strategy<Value = OwnerRecord> {
    (
        prop::option::of(1u32..=i32::MAX as u32),
        prop::option::of(any_string(40)),
        prop::option::of(any::<u64>()),
        prop::option::of(1u64..),
        prop::option::of(nonempty_string(24)),
        prop::option::of(nonempty_string(24)),
        prop::option::of(nonempty_string(24)),
        prop::option::of(any_string(24)),
        prop::option::of(any_string(8)),
        prop::option::of(any_string(64)),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(
                pid,
                created_at,
                starttime,
                max_hold_ms,
                hostname,
                boot_id,
                pid_ns,
                token,
                witness,
                label,
                version,
            )| {
                let mut r = OwnerRecord::default();
                r.pid = pid;
                r.created_at = created_at;
                r.starttime = starttime;
                r.max_hold_ms = max_hold_ms;
                r.hostname = hostname;
                r.boot_id = boot_id;
                r.pid_ns = pid_ns;
                r.token = token;
                r.witness = witness;
                r.label = label;
                r.version = version;
                r
            },
        )
}

/// Any record, including values the parser must drop (pid 0 or > i32::MAX,
/// maxHoldMs 0, empty host names).
fn any_record() -> impl Strategy<Value = OwnerRecord> {
    (
        valid_record(),
        prop::option::of(any::<u32>()),
        prop::option::of(0u64..3),
        prop::bool::ANY,
    )
        .prop_map(|(mut r, pid, max_hold, empty_host)| {
            if pid.is_some() {
                r.pid = pid;
            }
            if max_hold.is_some() {
                r.max_hold_ms = max_hold;
            }
            if empty_host {
                r.hostname = Some(String::new());
                r.boot_id = Some(String::new());
            }
            r
        })
}

/// What `parse` makes of a record we serialised.
fn normalised(mut r: OwnerRecord) -> OwnerRecord {
    r.pid = r.pid.filter(|&p| p > 0 && p <= i32::MAX as u32);
    r.max_hold_ms = r.max_hold_ms.filter(|&m| m > 0);
    for s in [&mut r.hostname, &mut r.boot_id, &mut r.pid_ns] {
        if s.as_deref() == Some("") {
            *s = None;
        }
    }
    r
}

const KEYS: [&str; 11] = [
    "pid",
    "createdAt",
    "starttime",
    "maxHoldMs",
    "hostname",
    "bootId",
    "pidNs",
    "token",
    "witness",
    "label",
    "version",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        any_string(16).prop_map(Value::String),
    ];
    let key = prop_oneof![
        3 => prop::sample::select(&KEYS[..]).prop_map(str::to_owned),
        1 => any_string(8),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..10)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let parsed = OwnerRecord::parse(&bytes);
        if bytes.is_empty() {
            prop_assert_eq!(parsed, ParsedRecord::Empty);
        }
    }

    #[test]
    fn parse_never_panics_on_json_and_its_truncations(v in json_value(), cut in any::<prop::sample::Index>()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let parsed = OwnerRecord::parse(&bytes);
        match (&v, &parsed) {
            (Value::Object(map), ParsedRecord::Record(rec)) => {
                let want_pid = map
                    .get("pid")
                    .and_then(Value::as_u64)
                    .filter(|&p| p > 0 && p <= i32::MAX as u64)
                    .map(|p| p as u32);
                prop_assert_eq!(rec.pid, want_pid);
                prop_assert_eq!(rec.starttime, map.get("starttime").and_then(Value::as_u64));
                prop_assert!(rec.max_hold_ms != Some(0));
                prop_assert!(rec.hostname.as_deref() != Some(""));
            }
            (Value::Object(_), other) => prop_assert!(false, "object parsed as {other:?}"),
            (_, ParsedRecord::Record(_)) => prop_assert!(false, "non-object {v} parsed as a record"),
            _ => {}
        }
        // Any prefix (a torn write): never a panic, never more than the whole.
        let prefix = &bytes[..cut.index(bytes.len() + 1)];
        let _ = OwnerRecord::parse(prefix);
    }

    #[test]
    fn created_at_parsing_is_total(s in any_string(40), digits in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?") {
        for text in [s, digits] {
            let mut rec = OwnerRecord::default();
            rec.created_at = Some(text);
            let _ = rec.created_at_ms();
            let _ = record_age(&rec, NOW);
            let _ = record_age(&rec, i64::MIN);
            let _ = record_age(&rec, i64::MAX);
        }
    }

    #[test]
    fn to_line_round_trips_valid_records(r in valid_record()) {
        let line = r.to_line();
        prop_assert_eq!(line.last(), Some(&b'\n'));
        prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        prop_assert!(line.len() <= MAX_RECORD_BYTES);
        prop_assert_eq!(OwnerRecord::parse(&line), ParsedRecord::Record(r));
    }

    #[test]
    fn to_line_round_trips_any_record_up_to_field_validation(r in any_record()) {
        let line = r.to_line();
        prop_assert_eq!(OwnerRecord::parse(&line), ParsedRecord::Record(normalised(r)));
    }
}

// ---------------------------------------------------------------- decide

#[derive(Debug, Clone)]
struct Scenario {
    parsed: ParsedRecord,
    witness: Witness,
    pid: Option<PidFacts>,
    now_ms: i64,
    mtime_age: Option<Duration>,
    held_by_this_process: bool,
    me: SelfIdentity,
    policy: Policy,
}

impl Scenario {
    fn facts(&self) -> Facts<'_> {
        Facts {
            parsed: &self.parsed,
            witness: self.witness,
            pid: self.pid,
            now_ms: self.now_ms,
            mtime_age: self.mtime_age,
            held_by_this_process: self.held_by_this_process,
            me: &self.me,
        }
    }
    fn decide(&self) -> (Verdict, Vec<Reason>) {
        decide(&self.facts(), &self.policy)
    }
    fn record(&self) -> Option<&OwnerRecord> {
        self.parsed.record()
    }
    fn effective_grace(&self) -> Duration {
        self.policy.orphan_grace.min(self.policy.stale)
    }
}

fn differs(theirs: &Option<String>, ours: &Option<String>) -> bool {
    matches!((theirs, ours), (Some(a), Some(b)) if a != b)
}

/// One boot id is one running kernel: the same machine whatever the host
/// names say (containers have their own).
fn same_kernel(rec: &OwnerRecord, me: &SelfIdentity) -> bool {
    matches!((&rec.boot_id, &me.boot_id), (Some(a), Some(b)) if a == b)
}

fn other_host(rec: &OwnerRecord, me: &SelfIdentity) -> bool {
    !same_kernel(rec, me) && differs(&rec.hostname, &me.hostname)
}

fn local(rec: &OwnerRecord, me: &SelfIdentity) -> bool {
    if same_kernel(rec, me) {
        return !differs(&rec.pid_ns, &me.pid_ns);
    }
    !differs(&rec.hostname, &me.hostname)
        && !differs(&rec.boot_id, &me.boot_id)
        && !differs(&rec.pid_ns, &me.pid_ns)
}

/// A record is judged by pid unless it claims a flock witness and the probe
/// could tell (held or free).
fn judged_by_pid(rec: &OwnerRecord, witness: Witness) -> bool {
    !(rec.has_flock_witness() && witness != Witness::Unknown)
}

fn pick<T: Clone + std::fmt::Debug + 'static>(v: Vec<T>) -> impl Strategy<Value = T> {
    prop::sample::select(v)
}

fn me_strategy() -> impl Strategy<Value = SelfIdentity> {
    (
        pick(vec![Some(5000u64), None]),
        pick(vec![Some("here".to_string()), None]),
        pick(vec![Some("boot-a".to_string()), None]),
        pick(vec![Some("ns-a".to_string()), None]),
    )
        .prop_map(|(starttime, hostname, boot_id, pid_ns)| SelfIdentity {
            pid: 100,
            starttime,
            hostname,
            boot_id,
            pid_ns,
        })
}

fn created_at() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        1 => pick(vec![
            Some("garbage".to_string()),
            Some(String::new()),
            Some("2026-02-30T00:00:00.000Z".to_string()),
        ]),
        // Age from 10 days in the future to 10 days in the past, with the
        // interesting thresholds (5 s, 30 min) well covered.
        6 => prop_oneof![
            -864_000_000i64..864_000_000,
            0i64..10_000,
            1_790_000i64..1_810_000,
        ]
        .prop_map(|age| Some(common::iso(NOW - age))),
    ]
}

fn record_strategy() -> impl Strategy<Value = OwnerRecord> {
    (
        pick(vec![None, Some(100u32), Some(200), Some(300)]),
        created_at(),
        pick(vec![None, Some(5000u64), Some(7000)]),
        prop::option::of(prop_oneof![1u64..10_000, 1u64..u64::MAX]),
        pick(vec![
            None,
            Some("here".to_string()),
            Some("there".to_string()),
        ]),
        pick(vec![
            None,
            Some("boot-a".to_string()),
            Some("boot-b".to_string()),
        ]),
        pick(vec![
            None,
            Some("ns-a".to_string()),
            Some("ns-b".to_string()),
        ]),
        pick(vec![
            None,
            Some("flock".to_string()),
            Some("lease".to_string()),
        ]),
        pick(vec![
            None,
            Some(0u64),
            Some(RECORD_VERSION),
            Some(RECORD_VERSION + 1),
            Some(99),
        ]),
    )
        .prop_map(
            |(
                pid,
                created_at,
                starttime,
                max_hold_ms,
                hostname,
                boot_id,
                pid_ns,
                witness,
                version,
            )| {
                let mut r = OwnerRecord::default();
                r.pid = pid;
                r.created_at = created_at;
                r.starttime = starttime;
                r.max_hold_ms = max_hold_ms;
                r.hostname = hostname;
                r.boot_id = boot_id;
                r.pid_ns = pid_ns;
                r.token = Some("t".into());
                r.witness = witness;
                r.label = None;
                r.version = version;
                r
            },
        )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let parsed = prop_oneof![
        1 => Just(ParsedRecord::Empty),
        1 => Just(ParsedRecord::Malformed),
        8 => record_strategy().prop_map(ParsedRecord::Record),
    ];
    let witness = pick(vec![Witness::Held, Witness::Free, Witness::Unknown]);
    let pid = prop::option::of(
        (
            pick(vec![PidState::Alive, PidState::Dead, PidState::Unknown]),
            pick(vec![None, Some(5000u64), Some(7000)]),
        )
            .prop_map(|(state, starttime)| PidFacts { state, starttime }),
    );
    let mtime_age = prop::option::of(prop_oneof![
        (0u64..12_000).prop_map(Duration::from_millis),
        Just(Duration::from_secs(5)),
        (0u64..100_000_000).prop_map(Duration::from_millis),
    ]);
    let policy = (
        pick(vec![
            Duration::from_secs(1),
            Duration::from_secs(5),
            Duration::from_secs(30 * 60),
            Duration::from_secs(3600),
        ]),
        pick(vec![
            Duration::ZERO,
            Duration::from_secs(5),
            Duration::from_secs(10),
        ]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(stale, orphan_grace, respect_max_hold, reclaim_self_without_starttime)| Policy {
                stale,
                orphan_grace,
                respect_max_hold,
                reclaim_self_without_starttime,
            },
        );
    (
        parsed,
        witness,
        pid,
        mtime_age,
        prop::bool::weighted(0.1),
        me_strategy(),
        policy,
        prop_oneof![9 => Just(NOW), 1 => any::<i64>()],
    )
        .prop_map(
            |(parsed, witness, pid, mtime_age, held_by_this_process, me, policy, now_ms)| {
                Scenario {
                    parsed,
                    witness,
                    pid,
                    now_ms,
                    mtime_age,
                    held_by_this_process,
                    me,
                    policy,
                }
            },
        )
}

/// The pid probe says the owner lives, or cannot tell: Alive without a
/// start-time mismatch, Unknown, or no probe at all.
fn alive_or_unknown(rec: &OwnerRecord, pid: Option<PidFacts>) -> bool {
    match pid {
        None => true,
        Some(PidFacts {
            state: PidState::Unknown,
            ..
        }) => true,
        Some(PidFacts {
            state: PidState::Alive,
            starttime,
        }) => !matches!((rec.starttime, starttime), (Some(a), Some(b)) if a != b),
        Some(PidFacts {
            state: PidState::Dead,
            ..
        }) => false,
    }
}

fn is_empty_or_malformed(p: &ParsedRecord) -> bool {
    matches!(p, ParsedRecord::Empty | ParsedRecord::Malformed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decide_is_total_and_its_reasons_fit_the_verdict(s in scenario()) {
        let (verdict, reasons) = s.decide();
        match verdict {
            Verdict::Reclaimable => {
                prop_assert!(!reasons.is_empty());
                prop_assert!(!reasons.contains(&Reason::InGrace));
                prop_assert!(!reasons.contains(&Reason::UnknownVersion));
            }
            Verdict::Stale => {
                prop_assert!(!reasons.is_empty());
                prop_assert!(
                    reasons.iter().all(|r| matches!(r, Reason::TooOld | Reason::HoldExceeded | Reason::InvalidCreatedAt)),
                    "stale with {:?}", reasons
                );
            }
            Verdict::Held => {}
        }
    }

    #[test]
    fn a_held_witness_or_our_own_hold_is_never_reclaimable(s in scenario()) {
        let (verdict, reasons) = s.decide();
        if s.witness == Witness::Held || s.held_by_this_process {
            prop_assert_ne!(verdict, Verdict::Reclaimable, "{:?}", reasons);
        }
    }

    #[test]
    fn a_live_or_unknown_pid_is_never_reclaimable_when_judged_by_pid(s in scenario()) {
        let Some(rec) = s.record() else { return Ok(()) };
        let Some(pid) = rec.pid else { return Ok(()) };
        if pid == s.me.pid || !local(rec, &s.me) || !judged_by_pid(rec, s.witness) {
            return Ok(());
        }
        if alive_or_unknown(rec, s.pid) {
            let (verdict, reasons) = s.decide();
            prop_assert_ne!(verdict, Verdict::Reclaimable, "{:?} {:?}", reasons, s);
        }
    }

    #[test]
    fn another_hosts_record_is_reclaimed_only_for_age(s in scenario()) {
        let Some(rec) = s.record() else { return Ok(()) };
        if !other_host(rec, &s.me) {
            return Ok(());
        }
        let (verdict, reasons) = s.decide();
        if verdict == Verdict::Reclaimable {
            prop_assert_eq!(&reasons, &vec![Reason::OtherHost, Reason::TooOld], "{:?}", s);
            prop_assert_ne!(s.witness, Witness::Held);
            let age = record_age(rec, s.now_ms);
            prop_assert!(age.is_some_and(|a| a > s.policy.stale), "age {:?}", age);
        }
        // Never judged by pid: the pid probe cannot change the outcome.
        for state in [PidState::Alive, PidState::Dead, PidState::Unknown] {
            let mut t = s.clone();
            t.pid = Some(PidFacts { state, starttime: Some(1) });
            prop_assert_eq!(t.decide(), (verdict, reasons.clone()));
        }
    }

    #[test]
    fn empty_or_malformed_within_the_grace_is_never_reclaimable(s in scenario()) {
        if !is_empty_or_malformed(&s.parsed) {
            return Ok(());
        }
        let fresh = s.mtime_age.is_none_or(|a| a <= s.effective_grace());
        let (verdict, reasons) = s.decide();
        if fresh {
            prop_assert_ne!(verdict, Verdict::Reclaimable, "{:?} {:?}", reasons, s);
        } else if s.witness != Witness::Held && !s.held_by_this_process {
            prop_assert_eq!(verdict, Verdict::Reclaimable, "{:?} {:?}", reasons, s);
        }
    }

    #[test]
    fn an_unknown_newer_version_is_never_reclaimable(s in scenario()) {
        let Some(rec) = s.record() else { return Ok(()) };
        if rec.version.is_some_and(|v| v > RECORD_VERSION) {
            prop_assert_ne!(s.decide().0, Verdict::Reclaimable);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// "Empty, malformed and pid-less records are reclaimable only once the
    /// file's mtime is older than the orphan grace" (module docs of
    /// `inspect`), whatever `createdAt` or `maxHoldMs` claim. This property
    /// found the bug fixed in 3688ccc (a pid-less record with an old
    /// `createdAt` was reclaimed at once).
    #[test]
    fn a_pid_less_record_within_the_grace_is_never_reclaimable(s in scenario()) {
        let Some(rec) = s.record() else { return Ok(()) };
        if rec.pid.is_some() || !local(rec, &s.me) || !judged_by_pid(rec, s.witness) {
            return Ok(());
        }
        if rec.version.is_some_and(|v| v > RECORD_VERSION) {
            return Ok(());
        }
        if s.mtime_age.is_none_or(|a| a <= s.effective_grace()) {
            let (verdict, reasons) = s.decide();
            prop_assert_ne!(verdict, Verdict::Reclaimable, "{:?} {:?}", reasons, s);
        }
    }
}

fn me() -> SelfIdentity {
    SelfIdentity {
        pid: 100,
        starttime: Some(5000),
        hostname: Some("here".into()),
        boot_id: Some("boot-a".into()),
        pid_ns: Some("ns-a".into()),
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

/// The shrunk counterexamples of the property above, as a plain test.
#[test]
fn fresh_pid_less_record_with_old_created_at_stays_in_grace() {
    let me = me();
    for rec in [
        {
            let mut r = OwnerRecord::default();
            r.created_at = Some(common::iso(NOW - 3_600_000));
            r
        },
        {
            let mut r = OwnerRecord::default();
            r.created_at = Some(common::iso(NOW - 2_000));
            r.max_hold_ms = Some(1);
            r
        },
    ] {
        let parsed = ParsedRecord::Record(rec.clone());
        let facts = Facts {
            parsed: &parsed,
            witness: Witness::Free,
            pid: None,
            now_ms: NOW,
            mtime_age: Some(Duration::from_millis(10)),
            held_by_this_process: false,
            me: &me,
        };
        let (verdict, reasons) = decide(&facts, &policy());
        assert_ne!(
            verdict,
            Verdict::Reclaimable,
            "{rec:?} written 10 ms ago: {reasons:?}"
        );
    }
}

/// Documents a choice the properties above allow: a record from another
/// host on a filesystem without flock (witness unknown) is reclaimed by age
/// alone, as the design's "Scale beyond one machine" says.
#[test]
fn another_hosts_record_without_a_working_witness_is_reclaimed_by_age_alone() {
    let me = me();
    let rec = {
        let mut r = OwnerRecord::default();
        r.pid = Some(200);
        r.created_at = Some(common::iso(NOW - 31 * 60_000));
        r.hostname = Some("there".into());
        r.witness = Some("flock".into());
        r.version = Some(RECORD_VERSION);
        r
    };
    let parsed = ParsedRecord::Record(rec);
    for (witness, want) in [
        (Witness::Held, Verdict::Stale),
        (Witness::Free, Verdict::Reclaimable),
        (Witness::Unknown, Verdict::Reclaimable),
    ] {
        let facts = Facts {
            parsed: &parsed,
            witness,
            pid: None,
            now_ms: NOW,
            mtime_age: Some(Duration::from_secs(3600)),
            held_by_this_process: false,
            me: &me,
        };
        assert_eq!(decide(&facts, &policy()).0, want, "{witness:?}");
    }
}

// ------------------------------------------------------------ whole lines

/// One writer's turn at the transcript.
#[derive(Debug, Clone)]
enum Turn {
    /// Appends its lines and releases.
    Completes,
    /// Dies after `cut` bytes of its lines reached the file (a SIGKILL or a
    /// power loss inside `write(2)`): the bytes stay, the lock is abandoned.
    Dies { cut: prop::sample::Index },
    /// Its writes fail after `cut` bytes (ENOSPC): it rolls back and goes on.
    Fails { cut: prop::sample::Index },
}

fn turns() -> impl Strategy<Value = Vec<(Turn, usize, bool)>> {
    let turn = prop_oneof![
        Just(Turn::Completes),
        any::<prop::sample::Index>().prop_map(|cut| Turn::Dies { cut }),
        any::<prop::sample::Index>().prop_map(|cut| Turn::Fails { cut }),
    ];
    // (turn, how many lines, durable)
    prop::collection::vec((turn, 1usize..4, any::<bool>()), 1..7)
}

/// The short-write fault is process-wide.
static SHORT_WRITES: std::sync::Mutex<()> = std::sync::Mutex::new(());

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Whatever happens to each writer, the transcript parses line by line
    /// and holds every line whose append completed exactly once, in order;
    /// every torn fragment is in a sidecar, byte for byte.
    #[test]
    fn the_transcript_always_holds_whole_lines_and_every_completed_append_once(turns in turns()) {
        let _serial = SHORT_WRITES.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("s.jsonl");
        let mut expected: Vec<u64> = Vec::new();
        let mut fragments: Vec<Vec<u8>> = Vec::new();
        let mut n = 0u64;
        for (turn, count, durable) in turns {
            let lines: Vec<String> = (0..count)
                .map(|_| {
                    n += 1;
                    format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat((n % 7) as usize))
                })
                .collect();
            let g = session_lock::acquire(&t).unwrap();
            match turn {
                Turn::Completes => {
                    if durable {
                        g.append_lines_durable(&lines).unwrap();
                    } else {
                        g.append_lines(&lines).unwrap();
                    }
                    expected.extend(lines.iter().map(|l| id_of(l)));
                    g.release().unwrap();
                }
                Turn::Dies { cut } => {
                    // A writer of ours checks the tail before its first
                    // write, then dies leaving a prefix of its bytes.
                    g.repair_torn_tail().unwrap();
                    let bytes: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
                    let cut = cut.index(bytes.len() + 1);
                    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&t).unwrap();
                    std::io::Write::write_all(&mut f, &bytes[..cut]).unwrap();
                    let whole = bytes[..cut].iter().filter(|&&b| b == b'\n').count();
                    expected.extend(lines[..whole].iter().map(|l| id_of(l)));
                    let tail_start = bytes[..cut].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                    if tail_start < cut {
                        fragments.push(bytes[tail_start..cut].to_vec());
                    }
                    // The lock is abandoned as a dead writer's would be
                    // (released here: only the transcript matters).
                    drop(g);
                }
                Turn::Fails { cut } => {
                    let total: usize = lines.iter().map(|l| l.len() + 1).sum();
                    let cut = cut.index(total + 1);
                    session_lock::fault::set_short_write(Some(cut));
                    let res = if durable {
                        g.append_lines_durable(&lines)
                    } else {
                        g.append_lines(&lines)
                    };
                    session_lock::fault::set_short_write(None);
                    // Lines written whole before the failure stay, unless
                    // the append was durable (all or nothing).
                    let mut written = 0;
                    let mut whole = 0;
                    for l in &lines {
                        if written + l.len() < cut {
                            written += l.len() + 1;
                            whole += 1;
                        } else {
                            break;
                        }
                    }
                    if whole == lines.len() && cut >= total {
                        prop_assert!(res.is_ok(), "{res:?}");
                        expected.extend(lines.iter().map(|l| id_of(l)));
                    } else {
                        prop_assert!(res.is_err(), "a short write must fail the append");
                        if !durable {
                            expected.extend(lines[..whole].iter().map(|l| id_of(l)));
                        }
                    }
                    g.release().unwrap();
                }
            }
        }
        // The next writer repairs whatever the last one left.
        let g = session_lock::acquire(&t).unwrap();
        g.append_line("{\"n\":0}").unwrap();
        g.release().unwrap();
        expected.push(0);
        let content = std::fs::read(&t).unwrap();
        prop_assert!(content.ends_with(b"\n"));
        let got: Vec<u64> = content
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: Value = serde_json::from_slice(l)
                    .unwrap_or_else(|e| panic!("unreadable line {:?}: {e}", String::from_utf8_lossy(l)));
                v["n"].as_u64().unwrap()
            })
            .collect();
        prop_assert_eq!(got, expected);
        let mut side: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("s.jsonl.torn-"))
            .collect();
        side.sort();
        let mut saved: Vec<Vec<u8>> = side.iter().map(|p| std::fs::read(p).unwrap()).collect();
        saved.sort();
        fragments.sort();
        prop_assert_eq!(saved, fragments);
    }
}

fn id_of(line: &str) -> u64 {
    serde_json::from_str::<Value>(line).unwrap()["n"]
        .as_u64()
        .unwrap()
}
