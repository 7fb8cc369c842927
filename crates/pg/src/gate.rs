//! The seam between the protocol and everything else (DESIGN.md "phases as a trait"): the
//! session drives the order of events and calls these hooks; policy, identity and audit
//! live behind them. The codec and the session never decide anything themselves.

use crate::startup::StartupRequest;
use crate::upstream::UpstreamConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use warden_core::{Classification, Decision, SessionIdentity};
/// Bind values as [`SessionRecorder::bind`] receives them.
pub use bytes::Bytes;

/// An error whose message is safe to show the client (DESIGN.md "user-facing errors").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientError {
    pub sqlstate: &'static str,
    pub message: String,
}

impl ClientError {
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> Self {
        ClientError { sqlstate, message: message.into() }
    }
}

/// What authentication established for one session.
#[derive(Debug)]
pub struct SessionGrant {
    pub session_id: String,
    pub identity: SessionIdentity,
    pub upstream: UpstreamConfig,
    /// The token's expiry (unix seconds): the session ends then.
    pub expires_at_unix: i64,
    /// Becomes `Some(reason)` when the session must end (agent suspended, owner deactivated).
    pub revoked: watch::Receiver<Option<String>>,
    /// How the client wants held commands handled ("wait" or "resume"), if it said.
    pub approval_mode: Option<String>,
}

/// A command's classification and the decision over it.
#[derive(Debug)]
pub struct Verdict {
    /// `None` when the command could not be parsed (then the decision is a denial).
    pub classification: Option<Classification>,
    pub decision: Decision,
}

impl Verdict {
    pub fn is_write(&self) -> bool {
        self.classification.as_ref().is_none_or(|c| c.is_write())
    }
}

/// How a held command ends.
#[derive(Debug)]
pub enum HoldOutcome {
    /// Approved: forward the command as sent.
    Run { approval_id: String },
    /// Denied, timed out, or pending in resume mode: this error goes to the client.
    Refuse { sqlstate: &'static str, message: String, hint: Option<String> },
}

/// One command's outcome, for the audit log.
#[derive(Debug)]
pub struct CommandRecord {
    pub sql: Arc<str>,
    pub verdict: Arc<Verdict>,
    /// For a multi-statement simple query, which statement this record is about.
    pub statement_index: Option<usize>,
    /// SHA-256 of the bind parameters (never the values).
    pub params_digest: Option<String>,
    pub rows: Option<i64>,
    pub duration: Option<Duration>,
    /// SQLSTATE of an upstream error, if the command failed there.
    pub error_code: Option<String>,
    /// The approval this execution used, if it was held.
    pub approval_id: Option<String>,
    /// How many values of each kind were masked in the result (never the values).
    pub masked: Vec<(String, u64)>,
}

#[async_trait::async_trait]
pub trait Gatekeeper: Send + Sync + 'static {
    /// Checks the agent's credential and resolves the target. Errors end the connection.
    async fn authenticate(&self, request: &StartupRequest, password: &str, peer: SocketAddr) -> Result<SessionGrant, ClientError>;

    /// Changes whenever cached verdicts may be stale (policy reload, grants, approvals).
    fn epoch(&self) -> u64;

    /// Classifies and decides one command text for this session.
    fn decide(&self, session: &SessionGrant, sql: &str) -> Arc<Verdict>;

    /// Records a command. With `durable`, returns only once the record is on disk; an error
    /// means the result must not reach the client.
    async fn record(&self, session: &SessionGrant, record: CommandRecord, durable: bool) -> Result<(), ClientError>;

    /// A command whose verdict is `Hold`: ask humans, and either wait for them (wait mode)
    /// or refuse at once with the approval id (resume mode). A command approved earlier in
    /// resume mode runs here exactly once.
    async fn hold(&self, session: &SessionGrant, sql: &str, verdict: &Verdict, params_digest: Option<&str>) -> HoldOutcome;

    /// The masking that applies to this session's results, if any (decided once per session:
    /// which rules apply and whether the node may see values in clear is policy's call).
    fn masker(&self, _session: &SessionGrant) -> Option<Arc<warden_mask::Masker>> {
        None
    }

    /// The recorder that captures bind values and results as the agent receives them
    /// (`full` session recording), if this session has one. Decided once per session.
    fn recorder(&self, _session: &SessionGrant) -> Option<Arc<dyn SessionRecorder>> {
        None
    }

    /// Called exactly once when an authenticated session ends, whatever the path.
    fn session_ended(&self, session: &SessionGrant, reason: &str);
}

/// Captures what one session's agent sent and saw (issue 12, `full` recording). The
/// session calls it from its own loops in protocol order: `bind` when parameters are
/// bound, `columns` and `row` for each result as forwarded (after masking); the matching
/// [`Gatekeeper::record`] call then closes the statement.
#[async_trait::async_trait]
pub trait SessionRecorder: Send + Sync {
    /// Before a statement runs. An error refuses it: the recorder cannot keep up and the
    /// statement must not run unrecorded (fail closed).
    async fn ready(&self) -> Result<(), ClientError>;
    /// Bind values, keyed by the parameters' digest (as in [`CommandRecord::params_digest`]).
    fn bind(&self, params_digest: &str, params: &[Option<Bytes>]);
    /// A RowDescription body as forwarded to the client.
    fn columns(&self, row_description: &[u8]);
    /// A DataRow body as forwarded to the client.
    fn row(&self, data_row: &[u8]);
}
