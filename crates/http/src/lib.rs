//! Warden's HTTP and LLM gateway: agents call `http://gateway/<target>/<path>` with their
//! Warden token; the gateway authenticates, normalizes the path, asks Cedar (`http_request`
//! on a Route, `llm_call` on a Model), holds for approval, reserves LLM budget, forwards
//! with the credential it holds, masks the response (JSON, text, SSE event by event) and
//! audits every decision.
//!
//! Graph versions (`warden-graphs`) cap what policy allows for callers whose token carries
//! one; JIT grants (`grants.rs`) may cover routes and models a policy does not; revocation
//! (`revocation.rs`) cuts in-flight streams and calls of suspended or deprovisioned agents.
//!
//! Smuggling: hyper parses both sides and the gateway re-frames every message; what hyper
//! tolerates (Content-Length with Transfer-Encoding, repeated Content-Length) is caught by
//! [`sniff`] and refused before anything is forwarded.

pub mod budget;
pub mod config;
pub mod jsonmask;
pub mod llm;
pub mod normalize;
mod grants;
pub mod oauth;
mod proxy;
mod revocation;
pub mod sniff;
pub mod sse;

pub use config::{HttpConfig, HttpLimits, HttpTarget, TargetKind};
pub use proxy::{Deps, HttpGateway};
