//! The admin HTTP API. For now: the agent token exchange and health. Handlers return JSON
//! errors with client-safe messages only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warden_audit::{AuditEvent, AuditHandle};
use warden_core::token::{TokenKeys, TokenRequest};
use warden_store::Store;

pub mod console;
pub mod deprovision;
pub mod duties;
pub mod graphs;
pub mod humans;
pub mod oidc;
pub mod oidc_login;
pub mod reads;
pub mod saml;
pub mod scim;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub tokens: Arc<TokenKeys>,
    pub audit: AuditHandle,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    /// SCIM, OIDC and separation-of-duties settings (issue 11). Default: all off.
    pub identity: Arc<IdentitySettings>,
}

/// What the identity endpoints need from the gateway's config.
#[derive(Default)]
pub struct IdentitySettings {
    /// The bearer token SCIM clients present (`[scim] token_env`); None refuses every call.
    pub scim_token: Option<warden_core::secret::Secret>,
    pub approvers: duties::Approvers,
    /// Verifies humans' bearer tokens (`[oidc]`); None refuses human API calls.
    pub oidc: Option<Arc<oidc::OidcVerifier>>,
    /// Called right after a deactivation is committed, so live sessions in this process end
    /// at once instead of at the next epoch poll (other processes still see the epoch).
    pub on_revocation: Option<Arc<dyn Fn() + Send + Sync>>,
    /// SAML 2.0 sign-in to the console (`[saml]`); None: no SAML routes answer.
    #[cfg(feature = "saml")]
    pub saml: Option<Arc<saml::ServiceProvider>>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/v1/token", post(exchange_token))
        .merge(scim::routes())
        .merge(graphs::routes())
        .merge(humans::routes())
        .merge(reads::routes())
        .with_state(state)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    audit: &'static str,
}

async fn health(State(state): State<ApiState>) -> Response {
    let healthy = state.audit.healthy();
    let body = Health { status: if healthy { "ok" } else { "degraded" }, audit: if healthy { "ok" } else { "failing" } };
    let code = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

/// The body of `POST /v1/token`. The enrollment secret is the agent's long-lived
/// credential; what comes back is a short-lived token for the data path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenExchange {
    pub agent: String,
    pub secret: String,
    pub node: Option<String>,
    pub run: Option<String>,
    pub thread: Option<String>,
    pub graph_version: Option<String>,
    /// e.g. "10m"; defaults to tokens.default_ttl, capped at tokens.max_ttl.
    pub ttl: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub struct IssuedToken {
    pub token: String,
    pub token_type: String,
    pub expires_at: i64,
}

pub fn api_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn exchange_token(State(state): State<ApiState>, Json(req): Json<TokenExchange>) -> Response {
    let ttl = match req.ttl.as_deref().map(humantime::parse_duration).transpose() {
        Ok(t) => t.unwrap_or(state.default_ttl),
        Err(_) => return api_error(StatusCode::BAD_REQUEST, "ttl: expected a duration like \"10m\""),
    };
    if ttl > state.max_ttl || ttl.is_zero() {
        return api_error(StatusCode::BAD_REQUEST, format!("ttl: must be between 1s and tokens.max_ttl ({})", humantime::format_duration(state.max_ttl)));
    }
    let store = state.store.clone();
    let (agent, secret) = (req.agent.clone(), req.secret);
    let verified = tokio::task::spawn_blocking(move || store.verify_enrollment(&agent, &secret)).await;
    match verified {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            let mut ev = AuditEvent::new("token_exchange", "deny");
            ev.agent = Some(req.agent.clone());
            ev.reason = Some("wrong enrollment secret, or agent/owner inactive".into());
            let _ = state.audit.record_nowait(ev);
            return api_error(StatusCode::UNAUTHORIZED, "unknown agent, wrong secret, or the agent or its owner is not active");
        }
        _ => return api_error(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable"),
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let request = TokenRequest { agent: req.agent.clone(), node: req.node, run: req.run, thread: req.thread, graph_version: req.graph_version, ttl_secs: ttl.as_secs() as i64 };
    let (token, claims) = state.tokens.issue(&request, now);
    let mut ev = AuditEvent::new("token_issued", "allow");
    ev.agent = Some(claims.sub.clone());
    ev.node = claims.node.clone();
    ev.run = claims.run.clone();
    ev.extra.insert("token_id".into(), claims.jti.clone().into());
    ev.extra.insert("expires_at".into(), claims.exp.into());
    ev.extra.insert("via".into(), "api".into());
    if state.audit.record(ev).await.is_err() {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable; no token issued");
    }
    Json(IssuedToken { token, token_type: "Bearer".into(), expires_at: claims.exp }).into_response()
}
