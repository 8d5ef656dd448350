//! The owner record: one JSON object, newline-terminated, written completely
//! before the lock file becomes visible.
//!
//! Field names stay compatible with the reference implementation (`pid`,
//! `createdAt`, `starttime`, `maxHoldMs`) so either side can read the other's
//! files; ours add `hostname`, `bootId`, `pidNs`, `token`, `witness`, `label`
//! and `version`. Reading is bounded ([`MAX_RECORD_BYTES`]) and forgiving: an
//! invalid field is treated as missing, unknown fields are ignored, and
//! nothing in a record can make the parser panic.

use serde::Serialize;
use serde_json::Value;

/// Reads of a lock file stop here. The reference caps at 1 MiB; our records
/// are a few hundred bytes, so 64 KiB leaves ample room for labels and
/// newer fields while bounding what a junk file can cost.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The record format version this crate writes. A record with a higher
/// version is treated as held (fail closed), never as garbage.
pub const RECORD_VERSION: u64 = 1;

/// The `witness` value of a record whose owner keeps an exclusive `flock`
/// on the lock file's inode while it holds the lock.
pub const WITNESS_FLOCK: &str = "flock";

/// Labels longer than this are cut (on a char boundary) when written.
pub const MAX_LABEL_BYTES: usize = 1024;

/// An owner record, as written by this crate or read from a lock file
/// (possibly written by other software). Every field is optional on read.
/// To build one (a test, a peer's record), start from
/// `OwnerRecord::default()` and set the fields (the struct is
/// non-exhaustive: fields may be added).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct OwnerRecord {
    /// Owner process id (valid only as an integer > 0 that fits a pid_t).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Creation time as written (RFC 3339); see [`OwnerRecord::created_at_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Owner start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starttime: Option<u64>,
    /// The owner's own max hold, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_hold_ms: Option<u64>,
    /// Host name of the owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Linux boot id of the owner's kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The owner's pid namespace (`pid:[...]`), to tell containers apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
    /// Random per-acquisition token (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// How liveness is proven: `"flock"` when the owner holds the witness lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness: Option<String>,
    /// Free text from the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Record format version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// What a lock file's bytes turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
// One value per inspection, never stored in bulk: boxing would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
pub enum ParsedRecord {
    /// A JSON object (fields validated one by one; any may be missing).
    Record(OwnerRecord),
    /// Zero bytes: a lock created by software that writes after creating.
    Empty,
    /// Not a JSON object: truncated, non-UTF-8, an array, a scalar, or
    /// larger than [`MAX_RECORD_BYTES`].
    Malformed,
}

impl ParsedRecord {
    /// The record, if the bytes held a JSON object.
    pub fn record(&self) -> Option<&OwnerRecord> {
        match self {
            ParsedRecord::Record(r) => Some(r),
            _ => None,
        }
    }
}

impl OwnerRecord {
    /// `createdAt` as milliseconds since the epoch, if it parses.
    pub fn created_at_ms(&self) -> Option<i64> {
        self.created_at
            .as_deref()
            .and_then(crate::time::parse_rfc3339_ms)
    }

    /// Whether the record says its owner holds a kernel witness lock.
    pub fn has_flock_witness(&self) -> bool {
        self.witness.as_deref() == Some(WITNESS_FLOCK)
    }

    /// Serialise as one JSON object followed by a newline.
    pub fn to_line(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        let mut out = serde_json::to_vec(self).expect("owner record serialises");
        out.push(b'\n');
        out
    }

    /// Parse at most [`MAX_RECORD_BYTES`] of a lock file. Never panics.
    pub fn parse(bytes: &[u8]) -> ParsedRecord {
        if bytes.is_empty() {
            return ParsedRecord::Empty;
        }
        if bytes.len() > MAX_RECORD_BYTES {
            return ParsedRecord::Malformed;
        }
        // serde_json bounds its own recursion depth (128), so a deeply
        // nested document is an error, not a stack overflow.
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(bytes) else {
            return ParsedRecord::Malformed;
        };
        let string = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
        let pid = map
            .get("pid")
            .and_then(Value::as_u64)
            .filter(|&p| p > 0 && p <= i32::MAX as u64)
            .map(|p| p as u32);
        ParsedRecord::Record(OwnerRecord {
            pid,
            created_at: string("createdAt"),
            // as_u64 rejects negatives and fractions (123.5), like the reference.
            starttime: map.get("starttime").and_then(Value::as_u64),
            max_hold_ms: map
                .get("maxHoldMs")
                .and_then(Value::as_u64)
                .filter(|&m| m > 0),
            hostname: string("hostname").filter(|s| !s.is_empty()),
            boot_id: string("bootId").filter(|s| !s.is_empty()),
            pid_ns: string("pidNs").filter(|s| !s.is_empty()),
            token: string("token"),
            witness: string("witness"),
            label: string("label"),
            version: map.get("version").and_then(Value::as_u64),
        })
    }
}

/// Cut `label` to at most [`MAX_LABEL_BYTES`] on a char boundary.
pub(crate) fn clip_label(label: &str) -> String {
    if label.len() <= MAX_LABEL_BYTES {
        return label.to_owned();
    }
    let mut end = MAX_LABEL_BYTES;
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    label[..end].to_owned()
}

impl OwnerRecord {
    /// The record this process writes for a hold: who we are (pid, start
    /// time, host, boot id, pid namespace), now as `createdAt`, the max
    /// hold, the label, `token`, and `witness: "flock"` when the holder
    /// keeps that witness (the file backend; the etcd backend's token is
    /// its lease).
    pub(crate) fn ours(
        max_hold: std::time::Duration,
        label: Option<String>,
        token: String,
        witness: bool,
    ) -> OwnerRecord {
        OwnerRecord::ours_at(max_hold, label, token, witness, crate::time::now_ms())
    }

    /// [`OwnerRecord::ours`] with `createdAt` set to `now_ms`.
    pub(crate) fn ours_at(
        max_hold: std::time::Duration,
        label: Option<String>,
        token: String,
        witness: bool,
        now_ms: i64,
    ) -> OwnerRecord {
        let me = crate::identity::SelfIdentity::current();
        OwnerRecord {
            pid: Some(me.pid),
            created_at: Some(crate::time::format_rfc3339_ms(now_ms)),
            starttime: me.starttime,
            max_hold_ms: Some(max_hold.as_millis().max(1) as u64),
            hostname: me.hostname,
            boot_id: me.boot_id,
            pid_ns: me.pid_ns,
            token: Some(token),
            witness: witness.then(|| WITNESS_FLOCK.to_owned()),
            label,
            version: Some(RECORD_VERSION),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(json: &str) -> OwnerRecord {
        match OwnerRecord::parse(json.as_bytes()) {
            ParsedRecord::Record(r) => r,
            other => panic!("{json} parsed as {other:?}"),
        }
    }

    #[test]
    fn reads_the_reference_format() {
        let r = rec(
            r#"{"pid":32504,"createdAt":"2026-05-01T12:00:00.000Z","maxHoldMs":1020000,"starttime":7204072}"#,
        );
        assert_eq!(r.pid, Some(32504));
        assert_eq!(r.starttime, Some(7_204_072));
        assert_eq!(r.max_hold_ms, Some(1_020_000));
        assert!(r.created_at_ms().is_some());
        assert!(!r.has_flock_witness());
    }

    #[test]
    fn reads_the_reference_pretty_format_with_token_whitespace() {
        let r = rec(
            "{\n  \"pid\": 7,\n  \"createdAt\": \"2026-05-01T12:00:00.000Z\"\n}\n\t\t\t\t\t\t\t\t \t \t\n",
        );
        assert_eq!(r.pid, Some(7));
    }

    #[test]
    fn bad_fields_are_missing_not_errors() {
        for json in [
            r#"{"pid":0}"#,
            r#"{"pid":-1}"#,
            r#"{"pid":2147483648}"#,
            r#"{"pid":1.5}"#,
            r#"{"pid":"12"}"#,
            r#"{"pid":null}"#,
        ] {
            assert_eq!(rec(json).pid, None, "{json}");
        }
        assert_eq!(rec(r#"{"starttime":-1}"#).starttime, None);
        assert_eq!(rec(r#"{"starttime":123.5}"#).starttime, None);
        assert_eq!(rec(r#"{"starttime":0}"#).starttime, Some(0));
        assert_eq!(rec(r#"{"maxHoldMs":0}"#).max_hold_ms, None);
        assert_eq!(rec(r#"{"createdAt":"garbage"}"#).created_at_ms(), None);
        assert_eq!(rec(r#"{"createdAt":12}"#).created_at, None);
        assert_eq!(rec(r#"{"extra":{"deep":[1,2,3]},"pid":5}"#).pid, Some(5));
    }

    #[test]
    fn non_objects_are_malformed() {
        for bytes in [
            &b"[]"[..],
            b"null",
            b"42",
            b"\"str\"",
            b"{\"pid\":",
            b"\xff\xfe\x00",
            b"{} trailing",
        ] {
            assert_eq!(
                OwnerRecord::parse(bytes),
                ParsedRecord::Malformed,
                "{bytes:?}"
            );
        }
        assert_eq!(OwnerRecord::parse(b""), ParsedRecord::Empty);
        let huge = vec![b' '; MAX_RECORD_BYTES + 1];
        assert_eq!(OwnerRecord::parse(&huge), ParsedRecord::Malformed);
        let deep = "[".repeat(100_000);
        assert_eq!(OwnerRecord::parse(deep.as_bytes()), ParsedRecord::Malformed);
    }

    /// A valid JSON object of `len` bytes: `{"pid":1,"label":"xx...x"}`.
    fn padded_object(len: usize) -> Vec<u8> {
        let head = br#"{"pid":1,"label":""#;
        let tail = br#""}"#;
        let mut v = head.to_vec();
        v.resize(len - tail.len(), b'x');
        v.extend_from_slice(tail);
        v
    }

    /// The cap judges size, not syntax. A valid object of
    /// exactly the cap is read; one byte past it is malformed.
    #[test]
    fn a_valid_object_past_the_cap_is_malformed() {
        let at = padded_object(MAX_RECORD_BYTES);
        assert!(serde_json::from_slice::<Value>(&at).is_ok());
        assert!(matches!(
            OwnerRecord::parse(&at),
            ParsedRecord::Record(OwnerRecord { pid: Some(1), .. })
        ));
        let past = padded_object(MAX_RECORD_BYTES + 1);
        assert!(serde_json::from_slice::<Value>(&past).is_ok());
        assert_eq!(OwnerRecord::parse(&past), ParsedRecord::Malformed);
    }

    #[test]
    fn round_trips_what_we_write() {
        let r = OwnerRecord {
            pid: Some(42),
            created_at: Some("2026-11-30T09:54:07.123Z".into()),
            starttime: Some(99),
            max_hold_ms: Some(300_000),
            hostname: Some("h".into()),
            boot_id: Some("b".into()),
            pid_ns: Some("pid:[1]".into()),
            token: Some("abcd".into()),
            witness: Some(WITNESS_FLOCK.into()),
            label: Some("cron \"nightly\"\n".into()),
            version: Some(RECORD_VERSION),
        };
        let line = r.to_line();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(OwnerRecord::parse(&line), ParsedRecord::Record(r));
    }

    #[test]
    fn labels_are_clipped_on_char_boundaries() {
        let long = "é".repeat(MAX_LABEL_BYTES);
        let clipped = clip_label(&long);
        assert!(clipped.len() <= MAX_LABEL_BYTES);
        assert!(clipped.chars().all(|c| c == 'é'));
    }
}
