//! Session attention: the classifier that turns a session's activity (lock
//! ownership included) into `session.long_running` / `session.stalled` /
//! `session.stuck` ([`classify`]), the monitor that emits those events with
//! the reference's back-off ([`monitor`]), and the recovery of stuck
//! sessions on top of lock inspection ([`recovery`]). See
//! `docs/attention.md`.
//!
//! The graph, acyclic: `classify` is pure and depends on nothing of the
//! crate; `shared` (private) holds the leaf items `monitor` and `recovery`
//! both need (the default stuck threshold, the recovery outcome enums);
//! `recovery` uses `classify`, `shared` and the lock; `monitor` uses
//! `classify` and `shared`. Neither of `monitor` and `recovery` imports the
//! other; each re-exports from `shared` what its API names.

pub mod classify;
pub mod monitor;
pub mod recovery;
mod shared;
