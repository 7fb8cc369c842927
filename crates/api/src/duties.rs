//! Separation of duties, shared by the CLI and the API: who may decide an approval request
//! or a graph version. The same rules as `crates/warden/src/approvals.rs` check_approver,
//! without the dependency on the binary's config.

use std::collections::HashMap;
use warden_store::{HumanStatus, Store};

/// Approvers from the config: `approvals.approvers` (any target) plus each target's own.
#[derive(Debug, Clone, Default)]
pub struct Approvers {
    pub global: Vec<String>,
    pub per_target: HashMap<String, Vec<String>>,
}

impl Approvers {
    /// Everyone who may approve requests on `target` (None: graph versions, which only the
    /// global approvers decide), lower-cased.
    pub fn for_target(&self, target: Option<&str>) -> Vec<String> {
        let per = target.and_then(|t| self.per_target.get(t)).into_iter().flatten();
        let mut all: Vec<String> = self.global.iter().chain(per).map(|a| a.trim().to_ascii_lowercase()).collect();
        all.sort();
        all.dedup();
        all
    }
}

/// What is being decided, for the checks and their messages.
pub struct Decidable<'a> {
    /// e.g. `approval request apr_...` or `graph version gv_...`.
    pub what: String,
    pub agent: &'a str,
    /// The agent's owner now (not at submission: a transfer moves the duty).
    pub owner: &'a str,
    /// `agent:<name>` or an email.
    pub submitted_by: &'a str,
}

/// Refuses anyone who is not on `approvers` (unless `role_approver`: an IdP group mapped to
/// the approver or admin role), is not an active human, is an agent, owns the agent, or
/// submitted the thing. Returns the normalized approver.
pub fn check_decider(store: &dyn Store, approvers: &[String], role_approver: bool, d: &Decidable<'_>, who: &str) -> Result<String, String> {
    let who = who.trim().to_ascii_lowercase();
    let is_agent = who.starts_with("agent:") || store.agent(&who).map_err(|e| e.to_string())?.is_some();
    if is_agent {
        return Err(format!("{who} is an agent; agents can never approve"));
    }
    if who == d.owner.to_ascii_lowercase() {
        return Err(format!("{who} owns agent {:?} and cannot approve its {}", d.agent, d.what));
    }
    let submitter = d.submitted_by.to_ascii_lowercase();
    if who == submitter || submitter == format!("agent:{who}") {
        return Err(format!("{who} submitted {} and cannot approve it", d.what));
    }
    if !role_approver && !approvers.contains(&who) {
        return Err(format!("{who} is not an approver (add them to approvals.approvers, or map their IdP group to the approver role)"));
    }
    match store.human(&who).map_err(|e| e.to_string())? {
        Some(h) if h.status == HumanStatus::Active => {}
        Some(_) => return Err(format!("{who} is deactivated")),
        None => return Err(format!("{who} is not a known human (warden human activate {who})")),
    }
    Ok(who)
}
