//! Who is acting in a session: established once at authentication, carried by every
//! decision and audit event.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionIdentity {
    /// The agent's name (the PostgreSQL `user` it connects as).
    pub agent: String,
    /// The email of the human who owns the agent.
    pub owner: String,
    /// The graph node the session acts for, if declared.
    pub node: Option<String>,
    /// LangGraph run id, if known.
    pub run: Option<String>,
    /// LangGraph thread id, if known.
    pub thread: Option<String>,
    /// The graph version digest the token was issued for, if any.
    pub graph_version: Option<String>,
    /// The target (upstream resource) name the session is connected to.
    pub target: String,
}
