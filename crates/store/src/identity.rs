//! Identity lifecycle state: SCIM-provisioned users and groups, agent ownership transfer,
//! withdrawal of a departing human's pending requests and votes, and reviewed graph
//! versions (issue 11).

use crate::{Result, UnixSeconds};

/// A human as a SCIM client (Okta, Entra ID) provisioned them. `email` is the SCIM
/// `userName` and the key of the human in the store; `active` mirrors the human's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUser {
    pub id: String,
    pub email: String,
    pub external_id: Option<String>,
    /// The other attributes the client sent (name, displayName, emails, ...), as a JSON
    /// object, returned as provisioned.
    pub attributes: String,
    pub active: bool,
    pub created_at: UnixSeconds,
    pub updated_at: UnixSeconds,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroup {
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    /// SCIM user ids.
    pub members: Vec<String>,
    pub created_at: UnixSeconds,
    pub updated_at: UnixSeconds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphStatus {
    Pending,
    Approved,
    Denied,
}

impl GraphStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GraphStatus::Pending => "pending",
            GraphStatus::Approved => "approved",
            GraphStatus::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => GraphStatus::Pending,
            "approved" => GraphStatus::Approved,
            "denied" => GraphStatus::Denied,
            _ => return None,
        })
    }
}

/// A submitted graph version of one agent. Privileges in the manifest apply only once
/// `status` is approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphVersion {
    pub id: String,
    pub agent: String,
    pub graph_id: String,
    pub digest: String,
    /// The manifest as submitted (JSON).
    pub manifest: String,
    pub status: GraphStatus,
    /// `agent:<name>` when the agent submitted it, or a human's email.
    pub submitted_by: String,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    pub created_at: UnixSeconds,
    pub decided_at: Option<UnixSeconds>,
}

/// What [`IdentityStore::withdraw_human`] withdrew.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Withdrawn {
    /// Pending requests the human had made (grant requests), now cancelled.
    pub cancelled_requests: Vec<String>,
    /// Pending requests the human had voted on; their vote no longer counts.
    pub withdrawn_votes: Vec<String>,
}

pub trait IdentityStore: Send + Sync {
    /// Links a SCIM user to a human (created active if unknown; an existing human keeps
    /// its status). Conflict if the email is already provisioned.
    fn scim_create_user(&self, email: &str, external_id: Option<&str>, attributes: &str) -> Result<ScimUser>;
    fn scim_user(&self, id: &str) -> Result<Option<ScimUser>>;
    /// `(total matching, page)`; `user_name` matches case-insensitively, `offset` is 0-based.
    fn scim_users(&self, user_name: Option<&str>, external_id: Option<&str>, offset: u32, limit: u32) -> Result<(u64, Vec<ScimUser>)>;
    /// Replaces external id and attributes (never the email: humans are keyed by it).
    fn scim_update_user(&self, id: &str, external_id: Option<&str>, attributes: &str) -> Result<ScimUser>;
    /// Removes the SCIM link (and group memberships). The human record stays, for the
    /// audit trail and agent ownership history; the caller deactivates it first.
    fn scim_delete_user(&self, id: &str) -> Result<ScimUser>;
    fn scim_create_group(&self, display_name: &str, external_id: Option<&str>, members: &[String]) -> Result<ScimGroup>;
    fn scim_group(&self, id: &str) -> Result<Option<ScimGroup>>;
    fn scim_groups(&self, display_name: Option<&str>, offset: u32, limit: u32) -> Result<(u64, Vec<ScimGroup>)>;
    /// Replaces name, external id and members.
    fn scim_update_group(&self, group: &ScimGroup) -> Result<ScimGroup>;
    fn scim_delete_group(&self, id: &str) -> Result<()>;
    /// Display names of the groups the user belongs to.
    fn scim_groups_of(&self, user_id: &str) -> Result<Vec<String>>;

    /// Moves an agent to another owner, who must be an active human. Returns the previous
    /// owner. Does not resume a suspended agent. Bumps the epoch.
    fn transfer_agent(&self, name: &str, to_email: &str) -> Result<String>;
    /// Cancels the pending requests a (departing) human made and withdraws their votes on
    /// requests still pending. Bumps the epoch when anything changed.
    fn withdraw_human(&self, email: &str) -> Result<Withdrawn>;

    /// Conflict if this agent already submitted this digest.
    fn submit_graph(&self, agent: &str, graph_id: &str, digest: &str, manifest: &str, submitted_by: &str) -> Result<GraphVersion>;
    fn graph_version(&self, id: &str) -> Result<Option<GraphVersion>>;
    fn graph_by_digest(&self, agent: &str, digest: &str) -> Result<Option<GraphVersion>>;
    /// Newest first.
    fn list_graphs(&self, agent: Option<&str>, limit: u32) -> Result<Vec<GraphVersion>>;
    /// Decides a pending version. Bumps the epoch (live sessions re-decide).
    fn decide_graph(&self, id: &str, approve: bool, by: &str, reason: &str) -> Result<GraphVersion>;
}
