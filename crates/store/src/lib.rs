//! Warden's control-plane state behind one trait ([`Store`]), so a PostgreSQL
//! backend can follow the embedded SQLite one ([`SqliteStore`]); DESIGN.md section 4.
//!
//! The API is blocking on purpose: SQLite calls are short and the gateway runs them
//! from `spawn_blocking` or a dedicated thread (the audit writer).
//!
//! What is never stored here: agent tokens, upstream passwords, signing keys. Enrollment
//! secrets are stored only as SHA-256 digests.

pub mod approvals;
pub mod identity;
pub mod mcp_pins;
pub mod recordings;
mod sqlite;
mod validate;

pub use approvals::{ApprovalRecord, ApprovalStatus, ApprovalStore, GrantRecord, GrantSpec, NewApproval, Vote, VoteOutcome};

pub use identity::{GraphStatus, GraphVersion, IdentityStore, ScimGroup, ScimUser, Withdrawn};
pub use mcp_pins::{McpPinStore, McpToolPin};
pub use recordings::{RecordingChunk, RecordingFilter, RecordingStore, RecordingSummary};
pub use sqlite::SqliteStore;
pub use validate::{normalize_email, validate_agent_name};

/// Unix seconds.
pub type UnixSeconds = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid agent name {name:?}: {rule}")]
    InvalidAgentName { name: String, rule: &'static str },
    #[error("invalid email {0:?}: expected one '@' with text on both sides and no whitespace")]
    InvalidEmail(String),
    #[error("agent {0:?} already exists")]
    AgentExists(String),
    #[error("no agent named {0:?}")]
    AgentNotFound(String),
    #[error("no human with email {0:?}")]
    HumanNotFound(String),
    #[error("owner {owner:?} of agent {agent:?} is deactivated; activate the owner (or move the agent) first")]
    OwnerDeactivated { agent: String, owner: String },
    /// The audit chain's tail is not what the appender built on: another writer (another
    /// process) appended first. Re-chain on `found` and retry.
    #[error("audit tail moved: expected to append after seq {expected_after}, tail is {found:?}")]
    AuditTailMoved {
        expected_after: i64,
        found: Option<(i64, String)>,
    },
    #[error("invalid audit batch: {0}")]
    InvalidAuditBatch(String),
    #[error("database schema version {found} is newer than this build supports ({supported}); upgrade warden")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("no approval request {0:?}")]
    ApprovalNotFound(String),
    #[error("approval request {id:?} is {status}, not pending")]
    ApprovalNotPending { id: String, status: &'static str },
    #[error("{by} has already voted on approval request {id:?}")]
    AlreadyVoted { id: String, by: String },
    #[error("no grant {0:?}")]
    GrantNotFound(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HumanStatus {
    Active,
    Deactivated,
}

impl HumanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HumanStatus::Active => "active",
            HumanStatus::Deactivated => "deactivated",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    Active,
    Suspended,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanRecord {
    pub email: String,
    pub status: HumanStatus,
    pub created_at: UnixSeconds,
    pub updated_at: UnixSeconds,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub name: String,
    pub owner: String,
    pub status: AgentStatus,
    pub owner_status: HumanStatus,
    pub created_at: UnixSeconds,
    pub updated_at: UnixSeconds,
}

impl AgentRecord {
    /// An agent may act only while both it and its owner are active (DESIGN.md: orphaned agents).
    pub fn may_act(&self) -> bool {
        self.status == AgentStatus::Active && self.owner_status == HumanStatus::Active
    }
}

/// Returned once by [`Store::create_agent`]; the secret cannot be recovered later.
pub struct NewAgent {
    pub name: String,
    pub owner: String,
    /// `wdn_es_` + base64url(32 random bytes), no padding.
    pub enrollment_secret: String,
}

impl std::fmt::Debug for NewAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keeps the secret out of logs that print the struct.
        f.debug_struct("NewAgent")
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("enrollment_secret", &"<redacted>")
            .finish()
    }
}

/// One audit row as the audit crate built it. `seq`, `prev_hash` and `hash` are computed
/// by the caller; the store only checks that the batch links onto the current tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditRow {
    pub seq: i64,
    /// Unix microseconds (copied from the event, for range search).
    pub ts_us: i64,
    pub agent: Option<String>,
    pub node: Option<String>,
    pub decision: String,
    pub event_json: String,
    /// Lowercase hex SHA-256.
    pub prev_hash: String,
    /// Lowercase hex SHA-256.
    pub hash: String,
}

pub type AuditRow = NewAuditRow;

/// Search over audit rows. All set fields must match. Results are newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub agent: Option<String>,
    pub node: Option<String>,
    pub decision: Option<String>,
    /// Inclusive lower bound on the event time, in unix MICROseconds (the unit of the
    /// `ts` column and of the events' own timestamps). Parse RFC3339 at the edge (CLI/API).
    pub since: Option<i64>,
    /// Only rows with `seq < before_seq` (paging backwards through results).
    pub before_seq: Option<i64>,
    /// Defaults to 100; capped at 10 000.
    pub limit: Option<u32>,
}

/// A signed statement "the chain had hash `hash` at `seq`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    /// Lowercase hex SHA-256 (the hash of event `seq`).
    pub hash: String,
    /// Lowercase hex Ed25519 signature.
    pub signature: String,
    /// Lowercase hex Ed25519 public key that made the signature.
    pub public_key: String,
    pub created_at: UnixSeconds,
}

/// Control-plane state. Implementations must be safe to share between threads and
/// between processes using the same database.
/// The audit log's rows and signed checkpoints: all the audit writer and verifier need, so
/// they (and their test doubles) do not depend on the rest of the control plane.
pub trait AuditStore: Send + Sync {
    /// Appends the rows in one transaction (one fsync). The batch must be contiguous and
    /// link onto the current tail (re-read inside the write transaction); otherwise
    /// [`StoreError::AuditTailMoved`] and nothing is written.
    fn append_audit(&self, rows: &[NewAuditRow]) -> Result<()>;
    /// `(seq, hash)` of the last row, or `None` for an empty log.
    fn audit_tail(&self) -> Result<Option<(i64, String)>>;
    fn audit_rows(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>>;
    /// Rows with `seq > after_seq` in ascending order, at most `limit`: page through the
    /// whole log for verification without holding it in memory.
    fn audit_range(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRow>>;
    /// The whole log in ascending order. Prefer [`AuditStore::audit_range`] for large logs.
    fn audit_all(&self) -> Result<Vec<AuditRow>> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.audit_range(after, 10_000)?;
            match page.last() {
                Some(last) => after = last.seq,
                None => return Ok(out),
            }
            out.extend(page);
        }
    }
    fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()>;
    /// Ascending by seq.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>>;
}

pub trait Store: AuditStore + ApprovalStore + IdentityStore + Send + Sync {
    /// Creates the agent (and its owner, active, if unknown). Refused if the owner is
    /// deactivated or the name is taken.
    fn create_agent(&self, name: &str, owner_email: &str) -> Result<NewAgent>;
    /// True only if the secret is right AND the agent and its owner are active, so a
    /// caller that mints tokens on `true` cannot mint one for a revoked agent.
    fn verify_enrollment(&self, name: &str, secret: &str) -> Result<bool>;
    fn agent(&self, name: &str) -> Result<Option<AgentRecord>>;
    fn list_agents(&self) -> Result<Vec<AgentRecord>>;
    /// Idempotent. Bumps the epoch when the status changes.
    fn suspend_agent(&self, name: &str) -> Result<()>;
    /// Refused while the owner is deactivated. Idempotent.
    fn resume_agent(&self, name: &str) -> Result<()>;
    /// Deactivates the human and suspends every active agent they own, in one transaction
    /// that bumps the epoch. Returns the names of the agents this call suspended.
    fn deactivate_human(&self, email: &str) -> Result<Vec<String>>;
    /// Creates the human if unknown. Does NOT resume their agents: a returning owner must
    /// resume each agent deliberately.
    fn activate_human(&self, email: &str) -> Result<()>;
    fn human(&self, email: &str) -> Result<Option<HumanRecord>>;
    fn list_humans(&self) -> Result<Vec<HumanRecord>>;
    /// A counter bumped in the same transaction as every access-changing write. Cheap
    /// enough to poll every ~200 ms; when it moves, re-check live sessions.
    fn epoch(&self) -> Result<i64>;


    /// Session recordings, where the backend keeps them (None: recording is unavailable).
    fn recordings(&self) -> Option<&dyn RecordingStore> {
        None
    }

    /// Pinned MCP tool definitions, where the backend keeps them (None: MCP calls are
    /// refused, since pins cannot be checked).
    fn mcp_pins(&self) -> Option<&dyn McpPinStore> {
        None
    }
}
