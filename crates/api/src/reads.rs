//! The admin API's read side for auditors (issue 12): audit search with the chain's
//! verification status, recorded sessions, and one session's replay entries. The console's
//! audit, sessions and replay pages render what these same functions return, so the
//! console shows nothing the API does not offer.
//!
//! `GET /v1/audit`, `GET /v1/sessions`, `GET /v1/sessions/{id}`: an OIDC bearer token of an
//! active human with the `auditor` or `admin` role.

use crate::{api_error, ApiState};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};
use warden_audit::recording::{summary_json, LoadedRecording};
use warden_audit::VerifyReport;
use warden_audit::AuditEvent;
use warden_store::{AuditFilter, RecordingFilter, RecordingSummary, Store};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/v1/audit", get(audit)).route("/v1/sessions", get(sessions)).route("/v1/sessions/{id}", get(session))
}

/// Audit search parameters, as the API's query string and the console's form name them:
/// agent, node, decision, target, since (a duration ago, e.g. `1h`), limit.
pub struct AuditQuery {
    filter: AuditFilter,
    target: Option<String>,
    limit: usize,
}

fn param(q: &HashMap<String, String>, k: &str) -> Option<String> {
    q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

impl AuditQuery {
    pub fn from_params(q: &HashMap<String, String>) -> Result<AuditQuery, String> {
        let since = match param(q, "since") {
            Some(s) => {
                let d = humantime::parse_duration(&s).map_err(|_| format!("since: {s:?} is not a duration like 1h"))?;
                Some((SystemTime::now() - d).duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as i64)
            }
            None => None,
        };
        let limit = match param(q, "limit") {
            Some(l) => l.parse::<usize>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| format!("limit: {l:?} is not a number from 1 to 1000"))?,
            None => 200,
        };
        // The target is not a store column: scan more rows than asked when filtering by it.
        let scan = if param(q, "target").is_some() { 5000 } else { limit as u32 };
        Ok(AuditQuery { filter: AuditFilter { agent: param(q, "agent"), node: param(q, "node"), decision: param(q, "decision"), since, before_seq: None, limit: Some(scan) }, target: param(q, "target"), limit })
    }
}

pub struct AuditPage {
    /// (seq, event), newest first.
    pub events: Vec<(i64, AuditEvent)>,
    /// The whole chain's verification, with checkpoint signatures checked against the keys
    /// stored beside them (integrity; `warden audit verify` also checks the gateway's key).
    pub verification: VerifyReport,
}

pub fn audit_search(store: &dyn Store, q: &AuditQuery) -> Result<AuditPage, String> {
    let rows = store.audit_rows(&q.filter).map_err(|e| format!("the audit store cannot be read: {e}"))?;
    let events = rows
        .into_iter()
        .filter_map(|r| serde_json::from_str::<AuditEvent>(&r.event_json).ok().map(|e| (r.seq, e)))
        .filter(|(_, e)| q.target.is_none() || e.target == q.target)
        .take(q.limit)
        .collect();
    Ok(AuditPage { events, verification: warden_audit::verify(store, None) })
}

pub fn session_filter(q: &HashMap<String, String>) -> RecordingFilter {
    RecordingFilter { agent: param(q, "agent"), node: param(q, "node"), target: param(q, "target"), since: None, limit: Some(200) }
}

pub fn session_list(store: &dyn Store, filter: &RecordingFilter) -> Result<Vec<RecordingSummary>, String> {
    match store.recordings() {
        Some(r) => r.recordings(filter).map_err(|e| e.to_string()),
        None => Ok(Vec::new()),
    }
}

/// Err((not found?, why)).
pub fn session_replay(store: &dyn Store, id: &str) -> Result<(RecordingSummary, LoadedRecording), (bool, String)> {
    let rec = store.recordings().ok_or((true, "this store keeps no recordings".to_string()))?;
    let summary = rec.recording(id).map_err(|e| (false, e.to_string()))?.ok_or_else(|| (true, format!("no recorded session {id:?}")))?;
    let loaded = warden_audit::recording::load(store, &summary).map_err(|e| (false, e))?;
    Ok((summary, loaded))
}

/// The caller must be an active human with the auditor or admin role.
async fn auditor(state: &ApiState, headers: &HeaderMap) -> Result<(), Response> {
    let h = crate::humans::human(state, headers).await?;
    if h.has_role("auditor") || h.has_role("admin") {
        Ok(())
    } else {
        Err(api_error(StatusCode::FORBIDDEN, format!("{} has neither the auditor nor the admin role", h.email)))
    }
}

async fn blocking<T: Send + 'static>(state: &ApiState, f: impl FnOnce(&dyn Store) -> T + Send + 'static) -> Result<T, Response> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref())).await.map_err(|_| api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

async fn audit(State(state): State<ApiState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(r) = auditor(&state, &headers).await {
        return r;
    }
    let query = match AuditQuery::from_params(&q) {
        Ok(q) => q,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e),
    };
    match blocking(&state, move |s| audit_search(s, &query)).await {
        Ok(Ok(page)) => {
            let v = &page.verification;
            let events: Vec<Value> = page.events.iter().map(|(seq, e)| json!({"seq": seq, "event": e})).collect();
            Json(json!({"verification": {"ok": v.ok, "events": v.events, "checkpoints": v.checkpoints, "problem": v.problem, "unanchored_tail": v.unanchored_tail}, "events": events})).into_response()
        }
        Ok(Err(e)) => api_error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(r) => r,
    }
}

async fn sessions(State(state): State<ApiState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(r) = auditor(&state, &headers).await {
        return r;
    }
    let filter = session_filter(&q);
    match blocking(&state, move |s| session_list(s, &filter)).await {
        Ok(Ok(list)) => Json(Value::Array(list.iter().map(summary_json).collect())).into_response(),
        Ok(Err(e)) => api_error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(r) => r,
    }
}

async fn session(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = auditor(&state, &headers).await {
        return r;
    }
    match blocking(&state, move |s| session_replay(s, &id)).await {
        Ok(Ok((summary, loaded))) => Json(json!({"session": summary_json(&summary), "verified": loaded.verified, "problems": loaded.problems, "chunks": loaded.chunks, "entries": loaded.entries})).into_response(),
        Ok(Err((true, e))) => api_error(StatusCode::NOT_FOUND, e),
        Ok(Err((false, e))) => api_error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(r) => r,
    }
}
