//! Admin API calls that act as a human, authenticated by an OIDC bearer token
//! (`[oidc]`): deciding approval requests with the same separation-of-duties rules as
//! `warden approvals approve`, and `GET /v1/me`.

use crate::duties::{check_decider, Decidable};
use crate::oidc::Human;
use crate::{api_error, ApiState};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::time::{SystemTime, UNIX_EPOCH};
use warden_audit::AuditEvent;
use warden_store::{Vote, VoteOutcome};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/deny", post(deny))
}

/// The human behind `Authorization: Bearer <OIDC token>`, who must also be an active human
/// in the store (a deactivated human's still-valid IdP token does not work here).
pub async fn human(state: &ApiState, headers: &HeaderMap) -> Result<Human, Response> {
    let Some(verifier) = state.identity.oidc.clone() else {
        return Err(api_error(StatusCode::UNAUTHORIZED, "human authentication is not configured (set [oidc] issuer and audience)"));
    };
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(crate::scim::bearer);
    let Some(token) = token else { return Err(api_error(StatusCode::UNAUTHORIZED, "Authorization: Bearer <OIDC token> required")) };
    let human = match verifier.verify(token).await {
        Ok(h) => h,
        Err(e @ crate::oidc::OidcError::Unavailable(_)) => {
            tracing::error!(error = %e, "oidc verification unavailable");
            return Err(api_error(StatusCode::SERVICE_UNAVAILABLE, "the identity provider's keys cannot be fetched; try again"));
        }
        Err(e) => return Err(api_error(StatusCode::UNAUTHORIZED, e.to_string())),
    };
    active_human(state, |g| verifier.roles_for(g), human).await.map_err(|(code, msg)| api_error(code, msg))
}

/// A verified human who must also be active in the store, with their SCIM groups counted
/// like the token's groups claim (Entra ID leaves groups out of tokens when there are many;
/// SCIM provisioning still tells us), and roles from those groups by `roles_for` (the
/// `[oidc.roles]` or `[saml.roles]` mapping). Shared by the API and the console's OIDC and
/// SAML sign-ins.
pub async fn active_human(state: &ApiState, roles_for: impl Fn(&[String]) -> Vec<String>, mut human: Human) -> Result<Human, (StatusCode, String)> {
    let store = state.store.clone();
    let email = human.email.clone();
    let found = tokio::task::spawn_blocking(move || -> warden_store::Result<(Option<warden_store::HumanRecord>, Vec<String>)> {
        let rec = store.human(&email)?;
        let groups = match store.scim_users(Some(&email), None, 0, 1)?.1.first() {
            Some(u) => store.scim_groups_of(&u.id)?,
            None => Vec::new(),
        };
        Ok((rec, groups))
    })
    .await
    .ok()
    .and_then(Result::ok);
    let Some((rec, scim_groups)) = found else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable".into()));
    };
    for g in scim_groups {
        if !human.groups.contains(&g) {
            human.groups.push(g);
        }
    }
    human.roles = roles_for(&human.groups);
    match rec {
        Some(h) if h.status == warden_store::HumanStatus::Active => Ok(human),
        Some(_) => Err((StatusCode::FORBIDDEN, format!("{} is deactivated in Warden", human.email))),
        None => Err((StatusCode::FORBIDDEN, format!("{} is not a known human (provision them by SCIM or `warden human activate`)", human.email))),
    }
}

async fn me(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    match human(&state, &headers).await {
        Ok(h) => Json(serde_json::json!({"email": h.email, "subject": h.subject, "groups": h.groups, "roles": h.roles})).into_response(),
        Err(r) => r,
    }
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

async fn vote(state: ApiState, headers: HeaderMap, id: String, reason: String, approve: bool) -> Response {
    let h = match human(&state, &headers).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    if reason.trim().is_empty() {
        return api_error(StatusCode::BAD_REQUEST, "reason: say why (it is audited and shown to the requester)");
    }
    let store = state.store.clone();
    let identity = state.identity.clone();
    let role = h.has_role("approver") || h.has_role("admin");
    let (who, why) = (h.email.clone(), reason.clone());
    let result = tokio::task::spawn_blocking(move || -> Result<(warden_store::ApprovalRecord, String, VoteOutcome), (StatusCode, String)> {
        let rec = store.approval(&id).map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?.ok_or((StatusCode::NOT_FOUND, format!("no approval request {id:?}")))?;
        let r = &rec.request;
        let approvers = identity.approvers.for_target(Some(&r.target));
        let d = Decidable { what: format!("request {}", rec.id), agent: &r.agent, owner: &r.owner, submitted_by: &r.requested_by };
        let who = check_decider(store.as_ref(), &approvers, role, &d, &who).map_err(|e| (StatusCode::FORBIDDEN, e))?;
        let outcome = store.vote(&id, &Vote { by: who.clone(), approve, reason: why, at: now_unix() }).map_err(|e| match e {
            warden_store::StoreError::ApprovalNotPending { .. } | warden_store::StoreError::AlreadyVoted { .. } => (StatusCode::CONFLICT, e.to_string()),
            other => (StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
        })?;
        Ok((rec, who, outcome))
    })
    .await;
    let (rec, who, outcome) = match result {
        Ok(Ok(v)) => v,
        Ok(Err((code, msg))) => return api_error(code, msg),
        Err(_) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    let mut ev = AuditEvent::new(if approve { "approval_approved" } else { "approval_denied" }, if approve { "allow" } else { "deny" });
    ev.agent = Some(rec.request.agent.clone());
    ev.owner = Some(rec.request.owner.clone());
    ev.node = rec.request.node.clone();
    ev.target = Some(rec.request.target.clone());
    ev.statement = rec.request.statement.clone();
    ev.reason = Some(reason);
    ev.extra.insert("approval_id".into(), rec.id.clone().into());
    ev.extra.insert("approver".into(), who.clone().into());
    ev.extra.insert("outcome".into(), format!("{outcome:?}").into());
    ev.extra.insert("via".into(), "api-oidc".into());
    if state.audit.record(ev).await.is_err() {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable");
    }
    let (status, approvals, quorum) = match outcome {
        VoteOutcome::Recorded { approvals, quorum } => ("pending", approvals, quorum),
        VoteOutcome::Approved => ("approved", rec.request.quorum, rec.request.quorum),
        VoteOutcome::Denied => ("denied", 0, rec.request.quorum),
    };
    Json(serde_json::json!({"id": rec.id, "status": status, "approvals": approvals, "quorum": quorum, "by": who})).into_response()
}

async fn approve(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>, Json(body): Json<crate::graphs::Reason>) -> Response {
    vote(state, headers, id, body.reason, true).await
}

async fn deny(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>, Json(body): Json<crate::graphs::Reason>) -> Response {
    vote(state, headers, id, body.reason, false).await
}
