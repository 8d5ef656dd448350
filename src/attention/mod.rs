//! Session attention: the classifier that turns a session's activity (lock
//! ownership included) into `session.long_running` / `session.stalled` /
//! `session.stuck` ([`classify`]), the monitor that emits those events with
//! the reference's back-off ([`monitor`]), and the recovery of stuck
//! sessions on top of lock inspection ([`recovery`]). See
//! `docs/attention.md`.
//!
//! The graph: `classify` is pure and depends on nothing of the crate;
//! `recovery` uses `classify` and the lock; `monitor` uses both.

pub mod classify;
pub mod monitor;
pub mod recovery;
