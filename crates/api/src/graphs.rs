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
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};
use warden_audit::AuditEvent;
use warden_core::{Access, Action, ObjectRef};
use warden_store::{GraphStatus, GraphVersion, StoreError};

pub const MANIFEST_FORMAT: &str = "warden-graph-manifest/v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privilege {
    /// None: any target.
    pub target: Option<String>,
    /// Warden action ids.
    pub actions: Vec<String>,
    /// Qualified table names; empty: every table.
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub graph_id: String,
    pub digest: String,
    pub nodes: Vec<String>,
    pub privileges: BTreeMap<String, Vec<Privilege>>,
}

/// Table names as the classifier reports them (unqualified → `public.`, `pg_*` →
/// `pg_catalog.`).
pub fn qualify_table(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n == "*" || n.contains('.') {
        n
    } else if n.starts_with("pg_") {
        format!("pg_catalog.{n}")
    } else {
        format!("public.{n}")
    }
}

fn expand_action(a: &str) -> Result<Vec<String>, String> {
    let a = a.trim().to_ascii_lowercase();
    Ok(match a.as_str() {
        "read" => vec!["select".into()],
        "write" => vec!["insert".into(), "update".into(), "delete".into()],
        other if Action::ALL.iter().any(|x| x.as_str() == other) => vec![other.to_string()],
        other => return Err(format!("unknown action {other:?} (read, write, or one of {})", Action::ALL.map(|x| x.as_str()).join(", "))),
    })
}

/// JSON with object keys sorted and no whitespace: what Python's
/// `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            out.push('{');
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The digest the client computes for a `warden-graph-manifest/v1` manifest.
pub fn v1_digest(manifest: &Value) -> String {
    let body = json!({"format": manifest.get("format"), "nodes": manifest.get("nodes"), "edges": manifest.get("edges").cloned().unwrap_or(json!([])), "privileges": manifest.get("privileges")});
    let mut s = String::new();
    canonical(&body, &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn parse_privilege(node: &str, p: &Value) -> Result<Privilege, String> {
    let ctx = |e: String| format!("privileges[{node:?}]: {e}");
    match p {
        Value::String(s) => {
            let (action, table) = match s.split_once(':') {
                Some((a, t)) => (a, Some(t)),
                None => (s.as_str(), None),
            };
            Ok(Privilege { target: None, actions: expand_action(action).map_err(ctx)?, tables: table.map(qualify_table).into_iter().filter(|t| t != "*").collect() })
        }
        Value::Object(o) => {
            let mut actions = Vec::new();
            let listed: Vec<&Value> = match (o.get("actions"), o.get("action")) {
                (Some(Value::Array(a)), _) => a.iter().collect(),
                (_, Some(v)) => vec![v],
                _ => return Err(ctx("an object privilege needs \"actions\"".into())),
            };
            for a in listed {
                actions.extend(expand_action(a.as_str().ok_or_else(|| ctx("actions must be strings".into()))?).map_err(ctx)?);
            }
            let tables: Vec<String> = match o.get("tables") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(t)) => t.iter().filter_map(Value::as_str).map(qualify_table).filter(|t| t != "*").collect(),
                Some(_) => return Err(ctx("tables must be a list".into())),
            };
            let target = o.get("target").and_then(Value::as_str).map(str::to_string);
            Ok(Privilege { target, actions, tables })
        }
        _ => Err(ctx("each privilege is a string (\"select:public.orders\") or an object".into())),
    }
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("the manifest is not JSON: {e}"))?;
        Self::from_value(&v)
    }

    pub fn from_value(v: &Value) -> Result<Manifest, String> {
        let o = v.as_object().ok_or("the manifest must be a JSON object")?;
        let graph_id = ["graph_id", "graph", "name"].iter().find_map(|k| o.get(*k).and_then(Value::as_str)).ok_or("graph_id: required (the graph's name)")?.to_string();
        let digest = ["digest", "version"].iter().find_map(|k| o.get(*k).and_then(Value::as_str)).ok_or("digest: required (the graph version's digest)")?.trim().to_string();
        if digest.is_empty() || digest.len() > 200 {
            return Err("digest: must be 1 to 200 characters".into());
        }
        let mut nodes = Vec::new();
        let mut privileges: BTreeMap<String, Vec<Privilege>> = BTreeMap::new();
        for n in o.get("nodes").and_then(Value::as_array).ok_or("nodes: required (a list)")? {
            match n {
                Value::String(s) => nodes.push(s.clone()),
                Value::Object(no) => {
                    let name = no.get("name").or_else(|| no.get("id")).and_then(Value::as_str).ok_or("nodes[]: an object node needs a name")?.to_string();
                    for p in no.get("privileges").and_then(Value::as_array).into_iter().flatten() {
                        privileges.entry(name.clone()).or_default().push(parse_privilege(&name, p)?);
                    }
                    nodes.push(name);
                }
                _ => return Err("nodes[]: a node is a name or an object".into()),
            }
        }
        if let Some(p) = o.get("privileges") {
            let p = p.as_object().ok_or("privileges: must map node names to lists")?;
            for (node, list) in p {
                if !nodes.contains(node) {
                    return Err(format!("privileges: node {node:?} is not among nodes"));
                }
                for item in list.as_array().ok_or_else(|| format!("privileges[{node:?}]: must be a list"))? {
                    privileges.entry(node.clone()).or_default().push(parse_privilege(node, item)?);
                }
            }
        }
        if let Some(f) = o.get("format").and_then(Value::as_str) {
            if f != MANIFEST_FORMAT {
                return Err(format!("format: {f:?} is not supported (expected {MANIFEST_FORMAT:?})"));
            }
            let computed = v1_digest(v);
            if !computed.eq_ignore_ascii_case(&digest) {
                return Err(format!("digest: the manifest's content hashes to {computed}, not {digest}; the digest must cover exactly what is submitted"));
            }
        }
        Ok(Manifest { graph_id, digest, nodes, privileges })
    }

    /// Whether the manifest lets `node` take this access on `target`. Tables must be listed
    /// (or the privilege cover every table); other accesses need their action listed.
    pub fn permits(&self, node: Option<&str>, target: &str, access: &Access) -> bool {
        let Some(node) = node else { return false };
        let Some(privs) = self.privileges.get(node) else { return false };
        let action = access.action.as_str();
        privs.iter().any(|p| {
            p.target.as_deref().is_none_or(|t| t == target)
                && p.actions.iter().any(|a| a == action)
                && match &access.object {
                    Some(ObjectRef::Table(t)) => p.tables.is_empty() || p.tables.iter().any(|x| x == t),
                    _ => true,
                }
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn access(action: Action, table: Option<&str>) -> Access {
        Access { action, object: table.map(|t| ObjectRef::Table(t.into())) }
    }

    #[test]
    fn string_and_object_privileges_and_the_intersection() {
        let m = Manifest::parse(r#"{"graph_id": "g", "digest": "d1", "nodes": ["lookup", "refund", "idle"],
            "privileges": {"lookup": ["read:customers", "transaction"],
                           "refund": [{"target": "prod", "actions": ["write"], "tables": ["public.orders"]}]}}"#)
        .unwrap();
        assert!(m.permits(Some("lookup"), "any", &access(Action::Select, Some("public.customers"))));
        assert!(!m.permits(Some("lookup"), "any", &access(Action::Select, Some("public.orders"))));
        assert!(m.permits(Some("lookup"), "any", &access(Action::Transaction, None)));
        assert!(!m.permits(Some("lookup"), "any", &access(Action::Delete, Some("public.customers"))));
        assert!(m.permits(Some("refund"), "prod", &access(Action::Delete, Some("public.orders"))));
        assert!(!m.permits(Some("refund"), "staging", &access(Action::Delete, Some("public.orders"))), "target named");
        assert!(!m.permits(Some("idle"), "prod", &access(Action::Select, None)), "no privileges, nothing");
        assert!(!m.permits(None, "prod", &access(Action::Select, None)), "no node, nothing");
        assert!(!m.permits(Some("ghost"), "prod", &access(Action::Select, None)));
    }

    #[test]
    fn malformed_manifests_name_the_problem() {
        for (text, want) in [
            (r#"{"digest": "d", "nodes": []}"#, "graph_id"),
            (r#"{"graph_id": "g", "nodes": []}"#, "digest"),
            (r#"{"graph_id": "g", "digest": "d", "nodes": ["a"], "privileges": {"b": []}}"#, "not among nodes"),
            (r#"{"graph_id": "g", "digest": "d", "nodes": ["a"], "privileges": {"a": ["fly:t"]}}"#, "unknown action"),
            (r#"{"format": "warden-graph-manifest/v1", "graph_id": "g", "digest": "00", "nodes": [], "privileges": {}}"#, "hashes to"),
        ] {
            let e = Manifest::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn canonical_json_sorts_keys_without_spaces() {
        let mut s = String::new();
        canonical(&json!({"b": [1, {"d": "é", "c": null}], "a": true}), &mut s);
        assert_eq!(s, r#"{"a":true,"b":[1,{"c":null,"d":"é"}]}"#);
    }
}
