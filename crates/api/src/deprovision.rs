//! Deactivating a human and everything that hangs off them (issue 11): their agents are
//! suspended (the gateway's epoch watcher ends their live sessions within its poll
//! interval), the agents' pending approvals and grants are cancelled, the human's own
//! pending requests are cancelled and their votes on others' requests withdrawn. Every step
//! is audited.

use crate::ApiState;
use warden_audit::AuditEvent;

/// What a deactivation did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Deprovisioned {
    pub email: String,
    pub suspended_agents: Vec<String>,
    pub cancelled_approvals: Vec<String>,
    pub cancelled_requests: Vec<String>,
    pub withdrawn_votes: Vec<String>,
}

fn event(kind: &str, email: &str, via: &str) -> AuditEvent {
    let mut ev = AuditEvent::new("admin", "allow");
    ev.owner = Some(email.to_string());
    ev.extra.insert("action".into(), kind.into());
    ev.extra.insert("via".into(), via.into());
    ev
}

/// Runs the cascade. The first store write (deactivate + suspend, one transaction that
/// bumps the epoch) is what cuts sessions, so it goes first; cancellation and audit follow.
pub async fn deactivate(state: &ApiState, email: &str, via: &str) -> Result<Deprovisioned, String> {
    let store = state.store.clone();
    let who = email.to_string();
    let (s2, w2) = (store.clone(), who.clone());
    let suspended = tokio::task::spawn_blocking(move || s2.deactivate_human(&w2)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    if let Some(hook) = state.identity.on_revocation.clone() {
        tokio::task::spawn_blocking(move || hook());
    }
    let result = tokio::task::spawn_blocking(move || -> warden_store::Result<Deprovisioned> {
        // Every agent the human owns, not only those this call suspended: one suspended
        // earlier may still hold approved-but-unused requests.
        let owned: Vec<String> = store.list_agents()?.into_iter().filter(|a| a.owner.eq_ignore_ascii_case(&who)).map(|a| a.name).collect();
        let cancelled = if owned.is_empty() { Vec::new() } else { store.cancel_for_agents(&owned)? };
        let withdrawn = store.withdraw_human(&who)?;
        Ok(Deprovisioned { email: who, suspended_agents: suspended, cancelled_approvals: cancelled, cancelled_requests: withdrawn.cancelled_requests, withdrawn_votes: withdrawn.withdrawn_votes })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;

    let mut ev = event("human_deactivate", email, via);
    ev.extra.insert("suspended_agents".into(), result.suspended_agents.clone().into());
    let mut events = vec![ev];
    for agent in &result.suspended_agents {
        let mut ev = event("agent_suspend", email, via);
        ev.agent = Some(agent.clone());
        ev.reason = Some(format!("owner {email} was deactivated"));
        events.push(ev);
    }
    if !result.cancelled_approvals.is_empty() {
        let mut ev = event("approvals_cancel", email, via);
        ev.reason = Some(format!("agents of {email} suspended: pending approvals cancelled, grants revoked"));
        ev.extra.insert("approval_ids".into(), result.cancelled_approvals.clone().into());
        events.push(ev);
    }
    if !result.cancelled_requests.is_empty() {
        let mut ev = event("requests_cancel", email, via);
        ev.reason = Some(format!("{email} was deactivated: the requests they made are cancelled"));
        ev.extra.insert("approval_ids".into(), result.cancelled_requests.clone().into());
        events.push(ev);
    }
    if !result.withdrawn_votes.is_empty() {
        let mut ev = event("votes_withdraw", email, via);
        ev.reason = Some(format!("{email} was deactivated: their votes on pending requests no longer count"));
        ev.extra.insert("approval_ids".into(), result.withdrawn_votes.clone().into());
        events.push(ev);
    }
    for ev in events {
        state.audit.record(ev).await.map_err(|e| format!("the audit log could not record the deactivation: {e}"))?;
    }
    Ok(result)
}

/// Reactivates a human. Their agents stay suspended: each must be resumed deliberately.
pub async fn activate(state: &ApiState, email: &str, via: &str) -> Result<(), String> {
    let store = state.store.clone();
    let who = email.to_string();
    tokio::task::spawn_blocking(move || store.activate_human(&who)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let mut ev = event("human_activate", email, via);
    ev.reason = Some("reactivated; their agents stay suspended until resumed one by one".into());
    state.audit.record(ev).await.map_err(|e| format!("the audit log could not record the activation: {e}"))?;
    Ok(())
}
