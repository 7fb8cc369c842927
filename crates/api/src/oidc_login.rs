//! The console's OIDC sign-in: authorization code with PKCE (RFC 7636, S256), a nonce in
//! the ID token and a state bound to the browser by a cookie (login CSRF). Active when
//! `[oidc] client_id` and `redirect_url` are set. Ends in the same console session as the
//! token and SAML sign-ins, after the same store checks (active human, SCIM groups).

use crate::console::Console;
use crate::oidc::{pkce_pair, post_form, TokenResponse};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the IdP sends the browser back; `oidc.redirect_url` must end with it.
pub const CALLBACK_PATH: &str = "/console/oidc/callback";
const START_PATH: &str = "/console/oidc/login";
/// Binds the callback to the browser that started the sign-in. SameSite=Lax, not Strict:
/// the IdP's redirect back is a cross-site top-level navigation, which Strict would strip.
const STATE_COOKIE: &str = "warden_oidc_state";
const TTL: Duration = Duration::from_secs(600);
/// `/console/oidc/login` needs no credentials: past this many unanswered sign-ins the
/// oldest are dropped, which only fails those.
const MAX_PENDING: usize = 10_000;

struct Started {
    nonce: String,
    pkce_verifier: String,
    at: Instant,
}

/// state -> the sign-in it answers. One use each.
#[derive(Default)]
pub(crate) struct Pending(Mutex<HashMap<String, Started>>);

impl Pending {
    fn insert(&self, state: String, started: Started) {
        let mut m = self.0.lock().unwrap();
        m.retain(|_, s| s.at.elapsed() < TTL);
        if m.len() >= MAX_PENDING {
            if let Some(oldest) = m.iter().min_by_key(|(_, s)| s.at).map(|(k, _)| k.clone()) {
                m.remove(&oldest);
            }
        }
        m.insert(state, started);
    }

    fn take(&self, state: &str) -> Option<Started> {
        self.0.lock().unwrap().remove(state).filter(|s| s.at.elapsed() < TTL)
    }
}

type C = State<Arc<Console>>;

pub(crate) fn routes() -> Router<Arc<Console>> {
    Router::new().route(START_PATH, get(start)).route(CALLBACK_PATH, get(callback))
}

/// The console's OAuth client, when configured.
fn client(c: &Console) -> Option<(Arc<crate::oidc::OidcVerifier>, String, String)> {
    let v = c.api().identity.oidc.clone()?;
    let id = v.settings().client_id.clone()?;
    let redirect = v.settings().redirect_url.clone()?;
    Some((v, id, redirect))
}

/// "Sign in with <issuer>" on the console's sign-in page, when the client is configured.
pub(crate) fn login_link(api: &crate::ApiState) -> maud::Markup {
    let issuer = api.identity.oidc.as_ref().filter(|v| v.settings().client_id.is_some()).map(|v| v.settings().issuer.clone());
    maud::html! { @if let Some(i) = issuer { p.sso { a href=(START_PATH) id="oidc-login" { "Sign in with " (i) } } } }
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn state_cookie(c: &Console, value: &str, max_age: u64) -> HeaderValue {
    let secure = if c.secure_cookie() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{STATE_COOKIE}={value}; Path=/console/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")).unwrap()
}

async fn start(State(c): C) -> Response {
    let Some((verifier, client_id, redirect_url)) = client(&c) else {
        return (StatusCode::NOT_FOUND, "OIDC sign-in is not configured ([oidc] client_id and redirect_url)").into_response();
    };
    let endpoint = match verifier.discovery().await {
        Ok(d) => d.authorization_endpoint,
        Err(e) => {
            tracing::error!(error = %e, "oidc: discovery failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "the identity provider cannot be reached; try again").into_response();
        }
    };
    let Some(endpoint) = endpoint else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the identity provider's discovery document has no authorization_endpoint").into_response();
    };
    let (pkce_verifier, challenge) = pkce_pair();
    let (state, nonce) = (random_hex(), random_hex());
    let scope = ["openid", "email", "profile"].into_iter().chain(verifier.settings().scopes.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
    let params = [
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", redirect_url.as_str()),
        ("scope", scope.as_str()),
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let Ok(url) = reqwest::Url::parse_with_params(&endpoint, &params) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the identity provider's authorization_endpoint is not a URL").into_response();
    };
    c.oidc_pending.insert(state.clone(), Started { nonce, pkce_verifier, at: Instant::now() });
    let mut r = Redirect::to(url.as_str()).into_response();
    r.headers_mut().append(header::SET_COOKIE, state_cookie(&c, &state, TTL.as_secs()));
    r
}

async fn callback(State(c): C, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some((verifier, client_id, redirect_url)) = client(&c) else {
        return (StatusCode::NOT_FOUND, "OIDC sign-in is not configured").into_response();
    };
    let mut r = sign_in(&c, &verifier, &client_id, &redirect_url, &headers, &q).await;
    r.headers_mut().append(header::SET_COOKIE, state_cookie(&c, "", 0));
    r
}

async fn sign_in(c: &Console, verifier: &crate::oidc::OidcVerifier, client_id: &str, redirect_url: &str, headers: &HeaderMap, q: &HashMap<String, String>) -> Response {
    if let Some(err) = q.get("error") {
        let detail = q.get("error_description").map(|d| format!(" ({d})")).unwrap_or_default();
        return c.refuse_sign_in("oidc", None, format!("the identity provider answered {err}{detail}"));
    }
    let state = q.get("state").map(String::as_str).unwrap_or_default();
    let bound = crate::console::cookie(headers, STATE_COOKIE).is_some_and(|v| !state.is_empty() && crate::console::eq(&v, state));
    // Taken before the cookie check too, so a state seen once can never be answered again.
    let started = c.oidc_pending.take(state);
    let (Some(started), true) = (started, bound) else {
        return c.refuse_sign_in("oidc", None, "this sign-in was not started in this browser, expired, or was already answered; start again".into());
    };
    let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
        return c.refuse_sign_in("oidc", None, "no authorization code in the callback".into());
    };
    let token_endpoint = match verifier.discovery().await.map(|d| d.token_endpoint) {
        Ok(Some(t)) => t,
        Ok(None) => return (StatusCode::SERVICE_UNAVAILABLE, "the identity provider's discovery document has no token_endpoint").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "oidc: discovery failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "the identity provider cannot be reached; try again").into_response();
        }
    };
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", redirect_url), ("client_id", client_id), ("code_verifier", started.pkce_verifier.as_str())];
    let secret = verifier.client_secret().map(|s| (client_id, s));
    let tokens: TokenResponse = match post_form(verifier.http(), &token_endpoint, &form, secret).await {
        Ok(t) => t,
        Err(e @ crate::oidc::TokenError::Refused { .. }) => return c.refuse_sign_in("oidc", None, e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "oidc: code exchange failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "the identity provider's token endpoint cannot be reached; try again").into_response();
        }
    };
    let Some(id_token) = tokens.id_token else {
        return c.refuse_sign_in("oidc", None, "the token endpoint returned no ID token (is the openid scope allowed for this client?)".into());
    };
    let human = match verifier.verify_id_token(&id_token, client_id, &started.nonce).await {
        Ok(h) => h,
        Err(e) => return c.refuse_sign_in("oidc", None, format!("the ID token was refused: {e}")),
    };
    c.finish_sign_in("oidc", human, |g| verifier.roles_for(g)).await
}
