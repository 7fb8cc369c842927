//! SCIM 2.0 (RFC 7643/7644) provisioning as Okta and Entra ID call it: `/scim/v2/Users` and
//! `/scim/v2/Groups`, bearer-protected. `active: false` (PATCH or PUT) or DELETE deactivates
//! the human with the full cascade ([`crate::deprovision`]); `active: true` reactivates the
//! human but never their agents.
//!
//! Bodies are parsed by hand rather than with axum's `Json`: SCIM clients send
//! `application/scim+json`, which `Json` refuses.

// Handlers return axum `Response`s as errors on purpose: each one is a finished SCIM error.
#![allow(clippy::result_large_err)]

use crate::deprovision;
use crate::ApiState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq;
use warden_store::{ScimGroup, ScimUser, StoreError};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const MAX_COUNT: u32 = 1000;
/// Attributes Warden owns (or derives) and never stores among the user's free attributes.
const RESERVED: &[&str] = &["schemas", "id", "meta", "userName", "externalId", "active", "password", "groups"];

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/scim/v2/ServiceProviderConfig", get(service_provider_config))
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route("/scim/v2/Users/{id}", get(get_user).put(replace_user).patch(patch_user).delete(delete_user))
        .route("/scim/v2/Groups", get(list_groups).post(create_group))
        .route("/scim/v2/Groups/{id}", get(get_group).put(replace_group).patch(patch_group).delete(delete_group))
}

fn scim_json(status: StatusCode, body: Value) -> Response {
    (status, [("content-type", "application/scim+json")], body.to_string()).into_response()
}

pub fn scim_error(status: StatusCode, scim_type: Option<&str>, detail: impl Into<String>) -> Response {
    let mut body = json!({"schemas": [ERROR_SCHEMA], "status": status.as_u16().to_string(), "detail": detail.into()});
    if let Some(t) = scim_type {
        body["scimType"] = t.into();
    }
    scim_json(status, body)
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Conflict(m) => scim_error(StatusCode::CONFLICT, Some("uniqueness"), m),
        StoreError::NotFound(m) => scim_error(StatusCode::NOT_FOUND, None, m),
        StoreError::InvalidEmail(_) => scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"), e.to_string()),
        other => {
            tracing::error!(error = %other, "SCIM store call failed");
            scim_error(StatusCode::SERVICE_UNAVAILABLE, None, "the store is unavailable")
        }
    }
}

/// Constant-time check of `Authorization: Bearer <token>` against `[scim] token_env`.
/// Both sides are hashed first so neither the comparison time nor an early length check
/// reveals anything about the configured token.
fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), Response> {
    let unauthorized = || scim_error(StatusCode::UNAUTHORIZED, None, "a valid SCIM bearer token is required");
    let Some(expected) = &state.identity.scim_token else { return Err(unauthorized()) };
    let presented = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(bearer).ok_or_else(unauthorized)?;
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.expose().as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

pub(crate) fn bearer(v: &str) -> Option<&str> {
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

async fn blocking<T: Send + 'static>(state: &ApiState, f: impl FnOnce(&dyn warden_store::Store) -> warden_store::Result<T> + Send + 'static) -> Result<T, Response> {
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
        Ok(r) => r.map_err(store_error),
        Err(_) => Err(scim_error(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")),
    }
}

fn parse_body(body: &Bytes) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"), "the body must be a JSON object")),
    }
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t).ok().and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok()).unwrap_or_default()
}

fn user_json(u: &ScimUser) -> Value {
    let mut out: Map<String, Value> = serde_json::from_str(&u.attributes).unwrap_or_default();
    out.insert("schemas".into(), json!([USER_SCHEMA]));
    out.insert("id".into(), u.id.clone().into());
    out.insert("userName".into(), u.email.clone().into());
    if let Some(x) = &u.external_id {
        out.insert("externalId".into(), x.clone().into());
    }
    out.insert("active".into(), u.active.into());
    out.insert("meta".into(), json!({"resourceType": "User", "created": rfc3339(u.created_at), "lastModified": rfc3339(u.updated_at), "location": format!("/scim/v2/Users/{}", u.id)}));
    Value::Object(out)
}

fn group_json(g: &ScimGroup, with_members: bool) -> Value {
    let mut out = json!({
        "schemas": [GROUP_SCHEMA], "id": g.id, "displayName": g.display_name,
        "meta": {"resourceType": "Group", "created": rfc3339(g.created_at), "lastModified": rfc3339(g.updated_at), "location": format!("/scim/v2/Groups/{}", g.id)},
    });
    if with_members {
        out["members"] = g.members.iter().map(|m| json!({"value": m, "$ref": format!("/scim/v2/Users/{m}")})).collect();
    }
    if let Some(x) = &g.external_id {
        out["externalId"] = x.clone().into();
    }
    out
}

/// `true`, `false`, or the strings Entra ID has been known to send ("True", "False").
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// `attr eq "value"` (the filters Okta and Entra ID send); single quotes tolerated.
fn parse_filter(filter: &str) -> Result<(String, String), Response> {
    let bad = || scim_error(StatusCode::BAD_REQUEST, Some("invalidFilter"), format!("unsupported filter {filter:?}: only `attribute eq \"value\"` is supported"));
    let mut parts = filter.trim().splitn(3, char::is_whitespace);
    let (attr, op, value) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?.trim());
    if !op.eq_ignore_ascii_case("eq") || value.len() < 2 {
        return Err(bad());
    }
    let unquoted = if (value.starts_with('"') && value.ends_with('"')) || (value.starts_with('\'') && value.ends_with('\'')) { &value[1..value.len() - 1] } else { return Err(bad()) };
    Ok((attr.to_string(), unquoted.replace("\\\"", "\"")))
}

/// `startIndex` (1-based) and `count` as RFC 7644 3.4.2.4 defines them.
fn paging(q: &HashMap<String, String>) -> (u32, u32) {
    let start = q.get("startIndex").and_then(|s| s.parse::<i64>().ok()).unwrap_or(1).max(1) as u32;
    let count = q.get("count").and_then(|s| s.parse::<i64>().ok()).unwrap_or(100).clamp(0, MAX_COUNT as i64) as u32;
    (start, count)
}

fn list_response(total: u64, start: u32, resources: Vec<Value>) -> Response {
    scim_json(StatusCode::OK, json!({"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start, "itemsPerPage": resources.len(), "Resources": resources}))
}

async fn service_provider_config(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    scim_json(StatusCode::OK, json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true}, "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_COUNT}, "changePassword": {"supported": false},
        "sort": {"supported": false}, "etag": {"supported": false},
        "authenticationSchemes": [{"type": "oauthbearertoken", "name": "Bearer token", "description": "The token in [scim] token_env"}],
    }))
}

async fn list_users(State(state): State<ApiState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let (mut user_name, mut external_id) = (None, None);
    if let Some(f) = q.get("filter") {
        match parse_filter(f) {
            Ok((a, v)) if a.eq_ignore_ascii_case("userName") => user_name = Some(v),
            Ok((a, v)) if a.eq_ignore_ascii_case("externalId") => external_id = Some(v),
            Ok((a, _)) => return scim_error(StatusCode::BAD_REQUEST, Some("invalidFilter"), format!("filtering on {a:?} is not supported (userName, externalId)")),
            Err(r) => return r,
        }
    }
    let (start, count) = paging(&q);
    match blocking(&state, move |s| s.scim_users(user_name.as_deref(), external_id.as_deref(), start - 1, count)).await {
        Ok((total, users)) => list_response(total, start, users.iter().map(user_json).collect()),
        Err(r) => r,
    }
}

async fn get_user(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    match blocking(&state, move |s| s.scim_user(&id)).await {
        Ok(Some(u)) => scim_json(StatusCode::OK, user_json(&u)),
        Ok(None) => scim_error(StatusCode::NOT_FOUND, None, "no such user"),
        Err(r) => r,
    }
}

/// The attributes kept verbatim: everything but what Warden owns.
fn free_attributes(body: &Map<String, Value>) -> Map<String, Value> {
    body.iter().filter(|(k, _)| !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(k))).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn audit_scim(state: &ApiState, action: &str, email: &str, id: &str) {
    let mut ev = warden_audit::AuditEvent::new("admin", "allow");
    ev.owner = Some(email.to_string());
    ev.extra.insert("action".into(), action.into());
    ev.extra.insert("via".into(), "scim".into());
    ev.extra.insert("scim_id".into(), id.into());
    let _ = state.audit.record_nowait(ev);
}

/// Applies `active` to the human behind the user, with the cascade on deactivation.
async fn apply_active(state: &ApiState, user: &ScimUser, active: Option<bool>) -> Result<(), Response> {
    match active {
        Some(false) if user.active => deprovision::deactivate(state, &user.email, "scim").await.map(|_| ()),
        Some(true) if !user.active => deprovision::activate(state, &user.email, "scim").await,
        _ => Ok(()),
    }
    .map_err(|e| {
        tracing::error!(error = %e, "SCIM status change failed");
        scim_error(StatusCode::SERVICE_UNAVAILABLE, None, "the change could not be completed; retry")
    })
}

async fn reload_user(state: &ApiState, id: &str) -> Response {
    let id = id.to_string();
    match blocking(state, move |s| s.scim_user(&id)).await {
        Ok(Some(u)) => scim_json(StatusCode::OK, user_json(&u)),
        Ok(None) => scim_error(StatusCode::NOT_FOUND, None, "no such user"),
        Err(r) => r,
    }
}

async fn create_user(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(user_name) = body.get("userName").and_then(Value::as_str).map(str::to_string) else {
        return scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"), "userName is required (the human's email)");
    };
    let active = body.get("active").map(as_bool).unwrap_or(Some(true));
    let external_id = body.get("externalId").and_then(Value::as_str).map(str::to_string);
    let attrs = Value::Object(free_attributes(&body)).to_string();
    let user = match blocking(&state, move |s| s.scim_create_user(&user_name, external_id.as_deref(), &attrs)).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    audit_scim(&state, "scim_user_create", &user.email, &user.id);
    // A newly provisioned user is active; an existing deactivated human stays so unless the
    // client says active: true.
    if let Err(r) = apply_active(&state, &user, active).await {
        return r;
    }
    let mut resp = reload_user(&state, &user.id).await;
    if resp.status() == StatusCode::OK {
        *resp.status_mut() = StatusCode::CREATED;
    }
    resp
}

async fn load_user(state: &ApiState, id: &str) -> Result<ScimUser, Response> {
    let id = id.to_string();
    match blocking(state, move |s| s.scim_user(&id)).await? {
        Some(u) => Ok(u),
        None => Err(scim_error(StatusCode::NOT_FOUND, None, "no such user")),
    }
}

fn same_user_name(user: &ScimUser, v: Option<&Value>) -> Result<(), Response> {
    match v.and_then(Value::as_str) {
        Some(n) if !n.trim().eq_ignore_ascii_case(&user.email) => Err(scim_error(StatusCode::BAD_REQUEST, Some("mutability"), "userName cannot change: humans are keyed by email (deprovision and provision a new user)")),
        _ => Ok(()),
    }
}

async fn replace_user(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let (user, body) = match (load_user(&state, &id).await, parse_body(&body)) {
        (Ok(u), Ok(b)) => (u, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if let Err(r) = same_user_name(&user, body.get("userName")) {
        return r;
    }
    let active = match body.get("active").map(as_bool) {
        Some(None) => return scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"), "active must be a boolean"),
        Some(b) => b,
        None => None,
    };
    // Deactivation first: it is the part that must not wait.
    if let Err(r) = apply_active(&state, &user, active).await {
        return r;
    }
    let external_id = body.get("externalId").and_then(Value::as_str).map(str::to_string);
    let attrs = Value::Object(free_attributes(&body)).to_string();
    let uid = user.id.clone();
    if let Err(r) = blocking(&state, move |s| s.scim_update_user(&uid, external_id.as_deref(), &attrs)).await {
        return r;
    }
    audit_scim(&state, "scim_user_replace", &user.email, &user.id);
    reload_user(&state, &user.id).await
}

/// Sets `path` (`attr` or `attr.sub`) in `attrs`; `None` removes it.
fn set_path(attrs: &mut Map<String, Value>, path: &str, value: Option<Value>) {
    match path.split_once('.') {
        Some((top, sub)) => {
            let entry = attrs.entry(top.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let obj = entry.as_object_mut().expect("object");
            match value {
                Some(v) => obj.insert(sub.to_string(), v),
                None => obj.remove(sub),
            };
        }
        None => {
            match value {
                Some(v) => attrs.insert(path.to_string(), v),
                None => attrs.remove(path),
            };
        }
    }
}

async fn patch_user(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let (user, body) = match (load_user(&state, &id).await, parse_body(&body)) {
        (Ok(u), Ok(b)) => (u, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let Some(ops) = body.get("Operations").or_else(|| body.get("operations")).and_then(Value::as_array) else {
        return scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"), format!("expected {{\"schemas\": [\"{PATCH_SCHEMA}\"], \"Operations\": [...]}}"));
    };
    let mut attrs: Map<String, Value> = serde_json::from_str(&user.attributes).unwrap_or_default();
    let mut external_id = user.external_id.clone();
    let mut active = None;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        let path = op.get("path").and_then(Value::as_str);
        let value = op.get("value");
        match (kind.as_str(), path) {
            ("add" | "replace", None) => {
                let Some(obj) = value.and_then(Value::as_object) else {
                    return scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"), "an operation without a path needs an object value");
                };
                if let Err(r) = same_user_name(&user, obj.get("userName")) {
                    return r;
                }
                for (k, v) in obj {
                    if k.eq_ignore_ascii_case("active") {
                        match as_bool(v) {
                            Some(b) => active = Some(b),
                            None => return scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"), "active must be a boolean"),
                        }
                    } else if k.eq_ignore_ascii_case("externalId") {
                        external_id = v.as_str().map(str::to_string);
                    } else if !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(k)) {
                        // Entra ID sends dotted keys such as "name.givenName" here.
                        set_path(&mut attrs, k, Some(v.clone()));
                    }
                }
            }
            ("add" | "replace", Some(p)) if p.eq_ignore_ascii_case("active") => match value.and_then(as_bool) {
                Some(b) => active = Some(b),
                None => return scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"), "active must be a boolean"),
            },
            ("add" | "replace", Some(p)) if p.eq_ignore_ascii_case("externalId") => external_id = value.and_then(Value::as_str).map(str::to_string),
            ("add" | "replace", Some(p)) if p.eq_ignore_ascii_case("userName") => {
                if let Err(r) = same_user_name(&user, value) {
                    return r;
                }
            }
            ("add" | "replace" | "remove", Some(p)) if p.contains('[') => {
                // Value-filtered paths (emails[type eq "work"].value): kept as the client
                // last sent the whole attribute; nothing Warden enforces depends on them.
                tracing::debug!(path = p, "SCIM PATCH path with a value filter ignored");
            }
            ("add" | "replace", Some(p)) => set_path(&mut attrs, p, value.cloned()),
            ("remove", Some(p)) if p.eq_ignore_ascii_case("externalId") => external_id = None,
            ("remove", Some(p)) => set_path(&mut attrs, p, None),
            _ => return scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"), format!("unsupported operation {op}")),
        }
    }
    if let Err(r) = apply_active(&state, &user, active).await {
        return r;
    }
    let (uid, attrs) = (user.id.clone(), Value::Object(attrs).to_string());
    if let Err(r) = blocking(&state, move |s| s.scim_update_user(&uid, external_id.as_deref(), &attrs)).await {
        return r;
    }
    audit_scim(&state, "scim_user_patch", &user.email, &user.id);
    reload_user(&state, &user.id).await
}

async fn delete_user(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let user = match load_user(&state, &id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    // Deactivate even if already inactive: the cascade is idempotent and re-checks agents.
    if let Err(e) = deprovision::deactivate(&state, &user.email, "scim").await {
        tracing::error!(error = %e, "SCIM delete: deactivation failed");
        return scim_error(StatusCode::SERVICE_UNAVAILABLE, None, "the deactivation could not be completed; retry");
    }
    if let Err(r) = blocking(&state, move |s| s.scim_delete_user(&id)).await {
        return r;
    }
    audit_scim(&state, "scim_user_delete", &user.email, &user.id);
    StatusCode::NO_CONTENT.into_response()
}

// ---- Groups (map to roles later) ----

fn member_ids(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|m| m.get("value").and_then(Value::as_str).or_else(|| m.as_str())).map(str::to_string).collect(),
        Some(Value::Object(m)) => m.get("value").and_then(Value::as_str).map(|s| vec![s.to_string()]).unwrap_or_default(),
        _ => Vec::new(),
    }
}

async fn list_groups(State(state): State<ApiState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let mut name = None;
    if let Some(f) = q.get("filter") {
        match parse_filter(f) {
            Ok((a, v)) if a.eq_ignore_ascii_case("displayName") => name = Some(v),
            Ok((a, _)) => return scim_error(StatusCode::BAD_REQUEST, Some("invalidFilter"), format!("filtering on {a:?} is not supported (displayName)")),
            Err(r) => return r,
        }
    }
    let with_members = !q.get("excludedAttributes").is_some_and(|e| e.split(',').any(|a| a.trim().eq_ignore_ascii_case("members")));
    let (start, count) = paging(&q);
    match blocking(&state, move |s| s.scim_groups(name.as_deref(), start - 1, count)).await {
        Ok((total, groups)) => list_response(total, start, groups.iter().map(|g| group_json(g, with_members)).collect()),
        Err(r) => r,
    }
}

async fn get_group(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    match blocking(&state, move |s| s.scim_group(&id)).await {
        Ok(Some(g)) => scim_json(StatusCode::OK, group_json(&g, true)),
        Ok(None) => scim_error(StatusCode::NOT_FOUND, None, "no such group"),
        Err(r) => r,
    }
}

async fn create_group(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = body.get("displayName").and_then(Value::as_str).map(str::to_string) else {
        return scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"), "displayName is required");
    };
    let external_id = body.get("externalId").and_then(Value::as_str).map(str::to_string);
    let members = member_ids(body.get("members"));
    match blocking(&state, move |s| s.scim_create_group(&name, external_id.as_deref(), &members)).await {
        Ok(g) => {
            audit_group(&state, "scim_group_create", &g);
            scim_json(StatusCode::CREATED, group_json(&g, true))
        }
        Err(r) => r,
    }
}

fn audit_group(state: &ApiState, action: &str, g: &ScimGroup) {
    let mut ev = warden_audit::AuditEvent::new("admin", "allow");
    ev.extra.insert("action".into(), action.into());
    ev.extra.insert("via".into(), "scim".into());
    ev.extra.insert("scim_id".into(), g.id.clone().into());
    ev.extra.insert("group".into(), g.display_name.clone().into());
    ev.extra.insert("members".into(), g.members.clone().into());
    let _ = state.audit.record_nowait(ev);
}

async fn load_group(state: &ApiState, id: &str) -> Result<ScimGroup, Response> {
    let id = id.to_string();
    match blocking(state, move |s| s.scim_group(&id)).await? {
        Some(g) => Ok(g),
        None => Err(scim_error(StatusCode::NOT_FOUND, None, "no such group")),
    }
}

async fn save_group(state: &ApiState, g: ScimGroup, action: &str) -> Response {
    match blocking(state, move |s| s.scim_update_group(&g)).await {
        Ok(g) => {
            audit_group(state, action, &g);
            scim_json(StatusCode::OK, group_json(&g, true))
        }
        Err(r) => r,
    }
}

async fn replace_group(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let (mut g, body) = match (load_group(&state, &id).await, parse_body(&body)) {
        (Ok(g), Ok(b)) => (g, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if let Some(n) = body.get("displayName").and_then(Value::as_str) {
        g.display_name = n.to_string();
    }
    g.external_id = body.get("externalId").and_then(Value::as_str).map(str::to_string);
    g.members = member_ids(body.get("members"));
    save_group(&state, g, "scim_group_replace").await
}

/// `members[value eq "id"]` → the id.
fn member_filter(path: &str) -> Option<String> {
    let inner = path.strip_prefix("members[")?.strip_suffix(']')?;
    parse_filter(inner).ok().filter(|(a, _)| a.eq_ignore_ascii_case("value")).map(|(_, v)| v)
}

async fn patch_group(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let (mut g, body) = match (load_group(&state, &id).await, parse_body(&body)) {
        (Ok(g), Ok(b)) => (g, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let Some(ops) = body.get("Operations").or_else(|| body.get("operations")).and_then(Value::as_array) else {
        return scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"), "expected Operations");
    };
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        let path = op.get("path").and_then(Value::as_str);
        let value = op.get("value");
        match (kind.as_str(), path) {
            ("add", Some(p)) if p.eq_ignore_ascii_case("members") => g.members.extend(member_ids(value)),
            ("replace", Some(p)) if p.eq_ignore_ascii_case("members") => g.members = member_ids(value),
            ("remove", Some(p)) if p.eq_ignore_ascii_case("members") => {
                let gone = member_ids(value);
                // No value: remove every member (RFC 7644 3.5.2.2).
                if value.is_none() { g.members.clear() } else { g.members.retain(|m| !gone.contains(m)) }
            }
            ("remove", Some(p)) if member_filter(p).is_some() => {
                let gone = member_filter(p).expect("checked");
                g.members.retain(|m| *m != gone);
            }
            ("replace" | "add", Some(p)) if p.eq_ignore_ascii_case("displayName") => match value.and_then(Value::as_str) {
                Some(n) => g.display_name = n.to_string(),
                None => return scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"), "displayName must be a string"),
            },
            ("replace" | "add", Some(p)) if p.eq_ignore_ascii_case("externalId") => g.external_id = value.and_then(Value::as_str).map(str::to_string),
            ("replace" | "add", None) => {
                let Some(obj) = value.and_then(Value::as_object) else {
                    return scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"), "an operation without a path needs an object value");
                };
                for (k, v) in obj {
                    match k.as_str() {
                        "displayName" => g.display_name = v.as_str().unwrap_or(&g.display_name).to_string(),
                        "externalId" => g.external_id = v.as_str().map(str::to_string),
                        "members" if kind == "add" => g.members.extend(member_ids(Some(v))),
                        "members" => g.members = member_ids(Some(v)),
                        _ => {}
                    }
                }
            }
            _ => return scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"), format!("unsupported operation {op}")),
        }
    }
    save_group(&state, g, "scim_group_patch").await
}

async fn delete_group(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let g = match load_group(&state, &id).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    match blocking(&state, move |s| s.scim_delete_group(&id)).await {
        Ok(()) => {
            audit_group(&state, "scim_group_delete", &g);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_as_okta_and_entra_send_them() {
        assert_eq!(parse_filter(r#"userName eq "ann@example.com""#).ok(), Some(("userName".into(), "ann@example.com".into())));
        assert_eq!(parse_filter("externalId eq 'x y'").ok(), Some(("externalId".into(), "x y".into())));
        assert_eq!(parse_filter(r#"displayName EQ "Group A""#).ok(), Some(("displayName".into(), "Group A".into())));
        assert!(parse_filter(r#"userName sw "a""#).is_err());
        assert!(parse_filter("userName eq unquoted").is_err());
        assert_eq!(member_filter(r#"members[value eq "usr_1"]"#), Some("usr_1".into()));
    }

    #[test]
    fn paging_defaults_and_bounds() {
        let q = |s: &str, c: &str| HashMap::from([("startIndex".to_string(), s.to_string()), ("count".to_string(), c.to_string())]);
        assert_eq!(paging(&HashMap::new()), (1, 100));
        assert_eq!(paging(&q("0", "-5")), (1, 0));
        assert_eq!(paging(&q("3", "99999")), (3, MAX_COUNT));
    }

    #[test]
    fn active_accepts_entra_strings() {
        assert_eq!(as_bool(&json!("False")), Some(false));
        assert_eq!(as_bool(&json!(true)), Some(true));
        assert_eq!(as_bool(&json!("nope")), None);
    }
}
