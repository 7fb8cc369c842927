//! Reviewed graph versions (issue 11). An agent submits a manifest (graph id, version
//! digest, nodes, and the privileges each node asks for); a human approver who is neither
//! the submitter nor the agent's owner approves it; the gateway then lets a session that
//! carries that version do only what both policy and the approved manifest allow.
//!
//! Manifest layout (the Python client's `warden_langgraph.manifest()` output is accepted
//! as is):
//! ```json
//! {"format": "warden-graph-manifest/v1", "name": "support", "digest": "<sha256 hex>",
//!  "nodes": ["lookup", "refund"], "edges": [...],
//!  "privileges": {"lookup": ["select:public.customers"],
//!                 "refund": [{"target": "test", "actions": ["update"], "tables": ["public.orders"]}]}}
//! ```
//! A string privilege is `action[:table]` on any target; an object names `target` (absent =
//! any), `actions` (`read`/`write` shorthands allowed) and `tables` (absent or `"*"` = every
//! table). With `format` set, the digest is recomputed over format, nodes, edges and
//! privileges (canonical JSON, as the client computes it) and must match.

use crate::duties::{check_decider, Decidable};
use crate::{api_error, ApiState};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};
use warden_audit::AuditEvent;
use warden_store::{GraphStatus, GraphVersion, StoreError};

// The manifest format and its parser live in warden-graphs, shared with the gateways
// that enforce it (database, HTTP, LLM, MCP).
pub use warden_graphs::{qualify_table, v1_digest, Manifest, Privilege, MANIFEST_FORMAT};

pub fn graph_json(g: &GraphVersion, with_manifest: bool) -> Value {
    let mut v = json!({
        "id": g.id, "agent": g.agent, "graph_id": g.graph_id, "digest": g.digest, "status": g.status.as_str(),
        "submitted_by": g.submitted_by, "decided_by": g.decided_by, "reason": g.reason, "created_at": g.created_at, "decided_at": g.decided_at,
    });
    if with_manifest {
        v["manifest"] = serde_json::from_str(&g.manifest).unwrap_or(Value::Null);
    }
    v
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/graphs", post(submit).get(list))
        .route("/v1/graphs/{id}", get(show))
        .route("/v1/graphs/{id}/approve", post(approve))
        .route("/v1/graphs/{id}/deny", post(deny))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    agent: String,
    /// The enrollment secret; or send a valid agent token as `Authorization: Bearer`.
    secret: Option<String>,
    manifest: Value,
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

/// The agent a request speaks for: a valid agent token (bearer) or the enrollment secret.
async fn authenticate_agent(state: &ApiState, headers: &HeaderMap, agent: &str, secret: Option<String>) -> Result<(), Response> {
    let unauthorized = || api_error(StatusCode::UNAUTHORIZED, "authenticate as the agent: its enrollment secret in \"secret\", or a Warden agent token as Authorization: Bearer");
    let store = state.store.clone();
    let name = agent.to_string();
    if let Some(token) = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(crate::scim::bearer) {
        let claims = state.tokens.verify(token, now_unix()).map_err(|_| unauthorized())?;
        if claims.sub != agent {
            return Err(unauthorized());
        }
        let may_act = tokio::task::spawn_blocking(move || store.agent(&name)).await.ok().and_then(Result::ok).flatten().is_some_and(|a| a.may_act());
        return if may_act { Ok(()) } else { Err(unauthorized()) };
    }
    let secret = secret.ok_or_else(unauthorized)?;
    match tokio::task::spawn_blocking(move || store.verify_enrollment(&name, &secret)).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(unauthorized()),
        _ => Err(api_error(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")),
    }
}

fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::NotFound(_) | StoreError::AgentNotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn submit(State(state): State<ApiState>, headers: HeaderMap, Json(req): Json<Submit>) -> Response {
    if let Err(r) = authenticate_agent(&state, &headers, &req.agent, req.secret).await {
        return r;
    }
    let manifest = match Manifest::from_value(&req.manifest) {
        Ok(m) => m,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, format!("manifest: {e}")),
    };
    if req.manifest.get("agent").and_then(Value::as_str).is_some_and(|a| a != req.agent) {
        return api_error(StatusCode::BAD_REQUEST, "manifest.agent names another agent");
    }
    let store = state.store.clone();
    let (agent, text) = (req.agent.clone(), req.manifest.to_string());
    let submitted = tokio::task::spawn_blocking(move || store.submit_graph(&agent, &manifest.graph_id, &manifest.digest, &text, &format!("agent:{agent}"))).await;
    match submitted {
        Ok(Ok(g)) => {
            let mut ev = AuditEvent::new("graph_submitted", "hold");
            ev.agent = Some(g.agent.clone());
            ev.graph_version = Some(g.digest.clone());
            ev.extra.insert("graph_version_id".into(), g.id.clone().into());
            ev.extra.insert("graph_id".into(), g.graph_id.clone().into());
            ev.extra.insert("submitted_by".into(), g.submitted_by.clone().into());
            if state.audit.record(ev).await.is_err() {
                return api_error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable");
            }
            let mut body = graph_json(&g, false);
            body["next"] = format!("an approver (not the agent's owner) runs: warden graph approve {} --as EMAIL --reason \"...\", or POST /v1/graphs/{}/approve with their OIDC token", g.id, g.id).into();
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Ok(Err(e)) => api_error(store_status(&e), e.to_string()),
        Err(_) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

/// A human (OIDC) or the agent itself (its token) may read a graph version.
async fn reader(state: &ApiState, headers: &HeaderMap) -> Result<Option<String>, Response> {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(crate::scim::bearer).map(str::to_string);
    let Some(token) = token else { return Err(api_error(StatusCode::UNAUTHORIZED, "Authorization: Bearer <OIDC token or agent token> required")) };
    if let Ok(claims) = state.tokens.verify(&token, now_unix()) {
        return Ok(Some(claims.sub));
    }
    crate::humans::human(state, headers).await.map(|_| None)
}

async fn list(State(state): State<ApiState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let agent_only = match reader(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let agent = agent_only.or_else(|| q.get("agent").cloned());
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.list_graphs(agent.as_deref(), 500)).await {
        Ok(Ok(rows)) => Json(Value::Array(rows.iter().map(|g| graph_json(g, false)).collect())).into_response(),
        _ => api_error(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable"),
    }
}

async fn show(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let agent_only = match reader(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.graph_version(&id)).await {
        Ok(Ok(Some(g))) if agent_only.as_ref().is_none_or(|a| *a == g.agent) => Json(graph_json(&g, true)).into_response(),
        Ok(Ok(_)) => api_error(StatusCode::NOT_FOUND, "no such graph version"),
        _ => api_error(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}

/// Approves or denies a pending graph version after the separation-of-duties checks.
/// Shared by the API (OIDC humans) and usable by any other front end.
pub fn decide(store: &dyn warden_store::Store, approvers: &[String], role_approver: bool, id: &str, who: &str, approve: bool, reason: &str) -> Result<GraphVersion, (StatusCode, String)> {
    if reason.trim().is_empty() {
        return Err((StatusCode::BAD_REQUEST, "reason: say why (it is audited)".into()));
    }
    let unavailable = |e: StoreError| (store_status(&e), e.to_string());
    let g = store.graph_version(id).map_err(unavailable)?.ok_or((StatusCode::NOT_FOUND, format!("no graph version {id:?}")))?;
    if g.status != GraphStatus::Pending {
        return Err((StatusCode::CONFLICT, format!("graph version {id} is {}, not pending", g.status.as_str())));
    }
    let owner = store.agent(&g.agent).map_err(unavailable)?.map(|a| a.owner).unwrap_or_default();
    let d = Decidable { what: format!("graph version {id}"), agent: &g.agent, owner: &owner, submitted_by: &g.submitted_by };
    let who = check_decider(store, approvers, role_approver, &d, who).map_err(|e| (StatusCode::FORBIDDEN, e))?;
    store.decide_graph(id, approve, &who, reason).map_err(unavailable)
}

pub fn graph_decision_event(g: &GraphVersion, approve: bool, via: &str) -> AuditEvent {
    let mut ev = AuditEvent::new(if approve { "graph_approved" } else { "graph_denied" }, if approve { "allow" } else { "deny" });
    ev.agent = Some(g.agent.clone());
    ev.graph_version = Some(g.digest.clone());
    ev.reason = g.reason.clone();
    ev.extra.insert("graph_version_id".into(), g.id.clone().into());
    ev.extra.insert("approver".into(), g.decided_by.clone().unwrap_or_default().into());
    ev.extra.insert("via".into(), via.into());
    ev
}

async fn decide_http(state: ApiState, headers: HeaderMap, id: String, body: Reason, approve: bool) -> Response {
    let human = match crate::humans::human(&state, &headers).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let approvers = state.identity.approvers.for_target(None);
    let role = human.has_role("approver") || human.has_role("admin");
    let store = state.store.clone();
    let who = human.email.clone();
    let result = tokio::task::spawn_blocking(move || decide(store.as_ref(), &approvers, role, &id, &who, approve, &body.reason)).await;
    match result {
        Ok(Ok(g)) => {
            if state.audit.record(graph_decision_event(&g, approve, "api")).await.is_err() {
                return api_error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable");
            }
            Json(graph_json(&g, false)).into_response()
        }
        Ok(Err((code, msg))) => api_error(code, msg),
        Err(_) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

async fn approve(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>, Json(body): Json<Reason>) -> Response {
    decide_http(state, headers, id, body, true).await
}

async fn deny(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>, Json(body): Json<Reason>) -> Response {
    decide_http(state, headers, id, body, false).await
}
