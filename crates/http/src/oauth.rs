//! Upstream credentials obtained with the OAuth 2.0 client-credentials grant (RFC 6749
//! §4.4): Warden holds the client secret, asks the token endpoint for an access token,
//! caches it until shortly before it expires and sends it upstream as a bearer token. The
//! agent never sees the secret or the token.
//!
//! One fetch at a time per target (concurrent requests wait for it rather than stampeding
//! the token endpoint); a failed fetch is an error for the request (502, fail closed: never
//! forwarded without its credential); an upstream 401 drops the cached token so the next
//! request fetches a fresh one.

use http::HeaderValue;
use std::time::{Duration, Instant};
use warden_core::secret::Secret;

/// Tokens are renewed this long before the endpoint says they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(30);
/// When the endpoint gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

pub struct ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: Option<String>,
    pub audience: Option<String>,
}

pub struct TokenSource {
    grant: ClientCredentials,
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(HeaderValue, Instant)>>,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenSource {
    pub fn new(grant: ClientCredentials, timeout: Duration) -> Result<TokenSource, String> {
        let http = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none()).build().map_err(|e| e.to_string())?;
        Ok(TokenSource { grant, http, cached: tokio::sync::Mutex::new(None) })
    }

    /// The `Authorization` value to send upstream now. Errors name the endpoint and what
    /// went wrong, never the secret or a token.
    pub async fn authorization(&self) -> Result<HeaderValue, String> {
        let mut cached = self.cached.lock().await;
        if let Some((v, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(v.clone());
            }
        }
        let (value, lifetime) = self.fetch().await?;
        *cached = Some((value.clone(), Instant::now() + lifetime.saturating_sub(RENEW_BEFORE).max(Duration::from_secs(1))));
        Ok(value)
    }

    /// The upstream refused the token: fetch a fresh one next time.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<(HeaderValue, Duration), String> {
        let g = &self.grant;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = &g.scope {
            form.push(("scope", s));
        }
        if let Some(a) = &g.audience {
            form.push(("audience", a));
        }
        // Client authentication by HTTP Basic (RFC 6749 §2.3.1), so the secret is never in
        // a body an endpoint might log.
        let resp = self
            .http
            .post(&g.token_url)
            .basic_auth(&g.client_id, Some(g.client_secret.expose()))
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("the token endpoint {} did not answer ({})", g.token_url, e.without_url()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("the token endpoint {} refused the client-credentials grant for client {:?} (HTTP {status})", g.token_url, g.client_id));
        }
        let body = resp.bytes().await.map_err(|e| format!("the token endpoint {} broke off its answer ({})", g.token_url, e.without_url()))?;
        let t: TokenResponse = serde_json::from_slice(&body).map_err(|_| format!("the token endpoint {} answered without a JSON access_token", g.token_url))?;
        if t.token_type.as_deref().is_some_and(|ty| !ty.eq_ignore_ascii_case("bearer")) {
            return Err(format!("the token endpoint {} issued a {:?} token; only bearer tokens can be sent upstream", g.token_url, t.token_type.unwrap_or_default()));
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {}", t.access_token)).map_err(|_| format!("the token endpoint {} issued a token that is not a header value", g.token_url))?;
        value.set_sensitive(true);
        Ok((value, t.expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs)))
    }
}
