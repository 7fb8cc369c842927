//! Warden's tamper-evident audit log.
//!
//! Events are serialized once to JSON; that exact string is stored and hashed into a
//! SHA-256 chain (definition in [`chain`]). A dedicated writer thread group-commits queued
//! events (one SQLite transaction, one fsync per batch) and answers each waiter only after
//! the commit. Signed Ed25519 checkpoints over (seq, hash), every N events and on shutdown,
//! let [`verify`] detect truncation of the tail and rewriting of the chain by someone
//! without the signing key.

pub mod chain;
mod event;
pub mod recording;
mod verify;
mod writer;

pub use event::{now_micros, params_digest, AuditEvent};
pub use verify::{verify, VerifyReport};
pub use writer::{AuditConfig, AuditError, AuditHandle, AuditStats, AuditWriter};
