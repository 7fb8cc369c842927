//! Approval requests (one exact command, or a just-in-time grant) and grants. Kept in the
//! store so pending requests, decisions and one-time approvals survive a gateway restart and
//! are shared by every process using the store.

use crate::{Result, UnixSeconds};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    /// A command approval that has been used; it never runs again.
    Executed,
    /// Withdrawn (the agent's owner was deactivated, or an admin cancelled it).
    Cancelled,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Executed => "executed",
            ApprovalStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "expired" => ApprovalStatus::Expired,
            "executed" => ApprovalStatus::Executed,
            "cancelled" => ApprovalStatus::Cancelled,
            _ => return None,
        })
    }
}

/// What a just-in-time grant allows once approved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrantSpec {
    pub actions: Vec<String>,
    /// Objects as the classifier names them (`public.orders`); empty = the whole target.
    pub objects: Vec<String>,
    pub duration_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApproval {
    /// "command" or "grant".
    pub kind: String,
    pub agent: String,
    pub owner: String,
    pub node: Option<String>,
    pub run: Option<String>,
    pub graph_version: Option<String>,
    pub target: String,
    /// Exact statement text (command approvals).
    pub statement: Option<String>,
    pub params_digest: Option<String>,
    /// The rule that asked for approval (policy ids), or the grant request's reason.
    pub rule: String,
    pub reason: Option<String>,
    /// Who asked: `agent:<name>` for a held command, a human's email for a grant request.
    pub requested_by: String,
    pub quorum: u32,
    /// "wait" or "resume".
    pub mode: String,
    /// A pending request expires then; an approved command approval can be used until then.
    pub expires_at: UnixSeconds,
    pub grant: Option<GrantSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub by: String,
    pub approve: bool,
    pub reason: String,
    pub at: UnixSeconds,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    pub id: String,
    pub request: NewApproval,
    pub status: ApprovalStatus,
    pub votes: Vec<Vote>,
    pub created_at: UnixSeconds,
    pub updated_at: UnixSeconds,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: String,
    pub approval_id: String,
    pub agent: String,
    pub node: Option<String>,
    pub run: Option<String>,
    pub target: String,
    pub actions: Vec<String>,
    pub objects: Vec<String>,
    pub active_from: UnixSeconds,
    pub expires_at: UnixSeconds,
    pub revoked: bool,
}

impl GrantRecord {
    /// Whether this grant covers one access of a session right now.
    pub fn covers(&self, node: Option<&str>, run: Option<&str>, action: &str, object: Option<&str>, now: UnixSeconds) -> bool {
        !self.revoked
            && now >= self.active_from
            && now < self.expires_at
            && self.node.as_deref().is_none_or(|n| Some(n) == node)
            && self.run.as_deref().is_none_or(|r| Some(r) == run)
            && self.actions.iter().any(|a| a == action)
            && (self.objects.is_empty() || object.is_some_and(|o| self.objects.iter().any(|x| x == o)))
    }
}

/// The outcome of a vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Recorded; more approvals are needed.
    Recorded { approvals: u32, quorum: u32 },
    Approved,
    Denied,
}

pub trait ApprovalStore: Send + Sync {
    fn create_approval(&self, request: &NewApproval) -> Result<ApprovalRecord>;
    fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>>;
    /// Newest first; `status` None lists all.
    fn list_approvals(&self, status: Option<ApprovalStatus>, limit: u32) -> Result<Vec<ApprovalRecord>>;
    /// Records a vote on a pending, unexpired request. One deny decides; approvals decide at
    /// quorum (distinct approvers). A grant approval activates its grant in the same
    /// transaction. Bumps the epoch when the request is decided.
    fn vote(&self, id: &str, vote: &Vote) -> Result<VoteOutcome>;
    /// An approved, unused, unexpired command approval for exactly this command.
    fn find_approved_command(&self, agent: &str, node: Option<&str>, target: &str, statement: &str, params_digest: Option<&str>, now: UnixSeconds) -> Result<Option<ApprovalRecord>>;
    /// Marks an approved command approval executed. True for exactly one caller.
    fn consume_approval(&self, id: &str) -> Result<bool>;
    /// Moves pending requests past their expiry to expired; returns them.
    fn expire_approvals(&self, now: UnixSeconds) -> Result<Vec<ApprovalRecord>>;
    /// Cancels pending requests and revokes active grants of these agents (owner
    /// deactivated, agent suspended). Returns the approval ids cancelled.
    fn cancel_for_agents(&self, agents: &[String]) -> Result<Vec<String>>;
    /// Grants of the agent on the target that are active at `now`.
    fn active_grants(&self, agent: &str, target: &str, now: UnixSeconds) -> Result<Vec<GrantRecord>>;
    fn list_grants(&self, limit: u32) -> Result<Vec<GrantRecord>>;
    /// Revokes a grant; bumps the epoch. Errors if unknown.
    fn revoke_grant(&self, id: &str) -> Result<()>;
}
