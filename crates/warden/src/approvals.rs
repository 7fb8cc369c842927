//! Separation of duties for approvals: who may decide a request.

use crate::config::Config;
use anyhow::{bail, Result};
use warden_store::{ApprovalRecord, HumanStatus, Store};

/// Refuses a decision by anyone who is not a configured approver of the target, is not an
/// active human, owns the agent, submitted the request, or is an agent. Self-approval would
/// make the approval a formality; owner approval would let one person both deploy an agent
/// and wave its risky commands through.
pub fn check_approver(config: &Config, store: &dyn Store, rec: &ApprovalRecord, approver: &str) -> Result<String> {
    let who = approver.trim().to_ascii_lowercase();
    let r = &rec.request;
    if store.agent(&who)?.is_some() || who.starts_with("agent:") {
        bail!("{who} is an agent; agents can never approve");
    }
    if !config.approvers_for(&r.target).contains(&who) {
        bail!("{who} is not an approver for target {:?} (add them to approvals.approvers or the target's approvers)", r.target);
    }
    match store.human(&who)? {
        Some(h) if h.status == HumanStatus::Active => {}
        Some(_) => bail!("{who} is deactivated"),
        None => bail!("{who} is not a known human (warden human activate {who})"),
    }
    if who == r.owner.to_ascii_lowercase() {
        bail!("{who} owns agent {:?} and cannot approve its requests", r.agent);
    }
    if who == r.requested_by.to_ascii_lowercase() {
        bail!("{who} submitted request {} and cannot approve it", rec.id);
    }
    Ok(who)
}

/// Table names as the classifier reports them: unqualified names resolve like PostgreSQL's
/// default search path does.
pub fn qualify_table(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n.contains('.') {
        n
    } else if n.starts_with("pg_") {
        format!("pg_catalog.{n}")
    } else {
        format!("public.{n}")
    }
}

/// `write` and `read` are shorthands; everything else must be a Warden action id.
/// Actions a grant on an HTTP/LLM target may cover (MCP tool grants are not built).
pub fn expand_gateway_actions(actions: &[String]) -> Result<Vec<String>> {
    const GRANTABLE: [&str; 2] = ["http_request", "llm_call"];
    let mut out: Vec<String> = actions.iter().flat_map(|a| a.split(',')).map(|a| a.trim().to_ascii_lowercase()).collect();
    if let Some(bad) = out.iter().find(|a| !GRANTABLE.contains(&a.as_str())) {
        bail!("--action {bad:?}: on an HTTP/LLM target a grant covers {}", GRANTABLE.join(" or "));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub fn expand_actions(actions: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in actions.iter().flat_map(|a| a.split(',')).map(|a| a.trim().to_ascii_lowercase()) {
        match a.as_str() {
            "write" => out.extend(["insert", "update", "delete"].map(String::from)),
            "read" => out.push("select".into()),
            other if warden_core::Action::ALL.iter().any(|x| x.as_str() == other) => out.push(other.to_string()),
            other => bail!("--action {other:?}: expected read, write or one of {}", warden_core::Action::ALL.map(|x| x.as_str()).join(", ")),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
