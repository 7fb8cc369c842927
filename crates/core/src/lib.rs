//! Warden's concepts (DESIGN.md section 2) and the decisions made over them.
//! Nothing here does I/O: protocol crates classify commands into [`Classification`]s,
//! the [`policy`] module turns them into [`Decision`]s, and the binary wires the two.

pub mod classification;
pub mod decision;
pub mod identity;
pub mod policy;
pub mod secret;
pub mod token;

pub use classification::{Access, Action, Classification, ObjectRef, StatementClass};
pub use decision::{ApprovalRule, Decision, Effect};
pub use identity::SessionIdentity;
