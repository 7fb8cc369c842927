//! Decisions are values (DESIGN.md section 10): computed once per (command, principal,
//! policy epoch) and read by the session, the masker and the audit writer.

use crate::classification::Access;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
    /// Held until a human approves this exact command.
    Hold,
    /// Allowed only with an active just-in-time grant.
    NeedsGrant,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
            Effect::Hold => "hold",
            Effect::NeedsGrant => "needs_grant",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub effect: Effect,
    /// The ids (Cedar `@id` annotations, or generated ids) of the policies that decided.
    pub policy_ids: Vec<String>,
    /// For a denial: the first access no policy permits (or a forbid rule matched).
    pub denied_access: Option<Access>,
    /// A client-safe sentence saying why, naming the rule, and how to request access.
    pub reason: String,
    /// For `Hold`: what the approval needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRule>,
    /// For an allow that rests on a just-in-time grant: when the earliest such grant ends.
    /// The decision must not be reused after that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<i64>,
}

/// A permit annotated `@approval("wait"|"resume"|"required")` (and optionally
/// `@quorum("2")`) allows only after humans approve the exact command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRule {
    pub policy_id: String,
    /// "wait" or "resume" when the policy fixes the mode; None lets the session choose.
    pub mode: Option<String>,
    pub quorum: u32,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// A denial that no policy produced: parse failures, unknown message types, errors.
    /// These fail closed.
    pub fn deny_without_policy(reason: impl Into<String>) -> Self {
        Decision { effect: Effect::Deny, policy_ids: Vec::new(), denied_access: None, reason: reason.into(), approval: None, valid_until: None }
    }
}
