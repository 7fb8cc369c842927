//! OIDC for humans: validates ID and access tokens from one configured issuer against its
//! JWKS (discovered from `{issuer}/.well-known/openid-configuration` unless `jwks_url` is
//! set), with key rotation (an unknown `kid` triggers a refetch, at most once per
//! `jwks_min_refresh`), expiry with configurable clock skew, issuer and audience. The
//! groups claim maps to Warden roles through `[oidc.roles]`.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// `[oidc]` in the gateway config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// Exactly as the IdP writes it in `iss`.
    pub issuer: String,
    /// Accepted `aud` values (the client id for ID tokens, the API for access tokens).
    pub audience: Vec<String>,
    /// JWKS location; default: discovered from the issuer.
    pub jwks_url: Option<String>,
    /// Tolerated clock difference for `exp` and `nbf`.
    #[serde(default = "default_skew", with = "duration_str")]
    pub clock_skew: Duration,
    /// Unknown `kid`s refetch the JWKS at most this often (a flood of forged kids must not
    /// turn into a flood of requests to the IdP).
    #[serde(default = "default_min_refresh", with = "duration_str")]
    pub jwks_min_refresh: Duration,
    /// Keys are refetched after this long even if every kid is known.
    #[serde(default = "default_cache_ttl", with = "duration_str")]
    pub jwks_cache_ttl: Duration,
    /// The claim holding the human's email (`email`; Entra ID access tokens: `upn` or
    /// `preferred_username`).
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// role → IdP groups, e.g. `approver = ["warden-approvers"]`. Roles: admin, approver,
    /// developer, auditor.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    /// The console's OAuth client (authorization code + PKCE). Set: "Sign in with <issuer>"
    /// appears on the console's sign-in page. ID tokens must carry it as `aud`.
    pub client_id: Option<String>,
    /// Environment variable holding the client secret (confidential client); neither this
    /// nor `client_secret_file`: a public client (PKCE only).
    pub client_secret_env: Option<String>,
    /// File holding the client secret (relative paths: to the config file).
    pub client_secret_file: Option<std::path::PathBuf>,
    /// Where the IdP sends the browser back: `https://<admin address>/console/oidc/callback`,
    /// registered at the IdP exactly like this.
    pub redirect_url: Option<String>,
    /// Scopes asked for beyond `openid email profile` (e.g. `groups`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The client `warden login` uses for the device authorization grant (a public client);
    /// default: `client_id`.
    pub cli_client_id: Option<String>,
}

fn default_skew() -> Duration {
    Duration::from_secs(60)
}
fn default_min_refresh() -> Duration {
    Duration::from_secs(10)
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_email_claim() -> String {
    "email".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}

mod duration_str {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration like \"60s\": {e}")))
    }
}

pub const ROLES: [&str; 4] = ["admin", "approver", "developer", "auditor"];

impl OidcSettings {
    /// Errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        if !self.issuer.starts_with("https://") && !self.issuer.starts_with("http://127.0.0.1") && !self.issuer.starts_with("http://localhost") {
            return Err(format!("oidc.issuer: must be an https URL (got {:?})", self.issuer));
        }
        if self.audience.is_empty() {
            return Err("oidc.audience: list at least one accepted audience".into());
        }
        if self.client_id.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err("oidc.client_id: empty".into());
        }
        if self.client_id.is_some() {
            match self.redirect_url.as_deref() {
                None => return Err("oidc.redirect_url: required with oidc.client_id (https://<admin address>/console/oidc/callback)".into()),
                Some(u) if !(u.starts_with("https://") || u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost")) => {
                    return Err(format!("oidc.redirect_url: must be an https URL (got {u:?})"))
                }
                Some(u) if !u.ends_with(crate::oidc_login::CALLBACK_PATH) => return Err(format!("oidc.redirect_url: must end with {} (got {u:?})", crate::oidc_login::CALLBACK_PATH)),
                Some(_) => {}
            }
        }
        if self.client_secret_env.is_some() && self.client_secret_file.is_some() {
            return Err("oidc: set client_secret_env or client_secret_file, not both".into());
        }
        if (self.client_secret_env.is_some() || self.client_secret_file.is_some()) && self.client_id.is_none() {
            return Err("oidc.client_id: required with a client secret".into());
        }
        if let Some(bad) = self.scopes.iter().find(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            return Err(format!("oidc.scopes: {bad:?} is not a single scope"));
        }
        for role in self.roles.keys() {
            if !ROLES.contains(&role.as_str()) {
                return Err(format!("oidc.roles.{role}: unknown role (expected one of {})", ROLES.join(", ")));
            }
        }
        Ok(())
    }
}

/// A verified human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Human {
    pub email: String,
    pub subject: String,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
}

impl Human {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[derive(Debug)]
pub enum OidcError {
    Malformed,
    Expired,
    Invalid(String),
    UnknownKey(String),
    Unavailable(String),
}

impl std::error::Error for OidcError {}

impl std::fmt::Display for OidcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OidcError::Malformed => f.write_str("the bearer token is not a JWT"),
            OidcError::Expired => f.write_str("the token has expired"),
            OidcError::Invalid(why) => write!(f, "the token is not valid: {why}"),
            OidcError::UnknownKey(kid) => write!(f, "the token was signed by a key the issuer does not publish (kid {kid:?})"),
            OidcError::Unavailable(why) => write!(f, "the identity provider's keys cannot be fetched: {why}"),
        }
    }
}

struct Keys {
    by_kid: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    fetched_at: Option<Instant>,
}

pub struct OidcVerifier {
    settings: OidcSettings,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// Serializes refetches; also remembers when the last one was attempted.
    refetch: Mutex<Option<Instant>>,
    jwks_url: RwLock<Option<String>>,
    /// The console client's secret, read once at start (never logged).
    client_secret: Option<warden_core::secret::Secret>,
    endpoints: RwLock<Option<Discovery>>,
}

/// Algorithms an IdP may sign with. Never HS*: the "key" would be public.
const ALLOWED: [Algorithm; 9] = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];

impl OidcVerifier {
    pub fn new(settings: OidcSettings) -> Result<Self, String> {
        settings.validate()?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().map_err(|e| format!("oidc: cannot build HTTP client: {e}"))?;
        let jwks_url = settings.jwks_url.clone();
        let client_secret = load_client_secret(&settings)?;
        Ok(OidcVerifier { settings, http, keys: RwLock::new(Keys { by_kid: HashMap::new(), fetched_at: None }), refetch: Mutex::new(None), jwks_url: RwLock::new(jwks_url), client_secret, endpoints: RwLock::new(None) })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn client_secret(&self) -> Option<&warden_core::secret::Secret> {
        self.client_secret.as_ref()
    }

    /// The issuer's discovery document, fetched once and kept (endpoints do not rotate
    /// like keys do).
    pub async fn discovery(&self) -> Result<Discovery, OidcError> {
        if let Some(d) = self.endpoints.read().await.clone() {
            return Ok(d);
        }
        let d = discover(&self.http, &self.settings.issuer).await?;
        *self.endpoints.write().await = Some(d.clone());
        Ok(d)
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        get_json(&self.http, url).await
    }

    async fn resolve_jwks_url(&self) -> Result<String, OidcError> {
        if let Some(u) = self.jwks_url.read().await.clone() {
            return Ok(u);
        }
        let d = self.discovery().await?;
        let jwks_uri = d.jwks_uri.ok_or_else(|| OidcError::Unavailable("the discovery document has no jwks_uri".into()))?;
        *self.jwks_url.write().await = Some(jwks_uri.clone());
        Ok(jwks_uri)
    }

    /// Refetches the JWKS unless another caller did within `jwks_min_refresh` (unless
    /// `force_if_empty` and we have no keys at all).
    async fn refresh(&self) -> Result<(), OidcError> {
        let mut last = self.refetch.lock().await;
        // Rate-limited even when no key is known: an IdP that is down or serves an empty
        // set must not receive one request per incoming token.
        if let Some(t) = *last {
            if t.elapsed() < self.settings.jwks_min_refresh {
                return Ok(());
            }
        }
        *last = Some(Instant::now());
        let url = self.resolve_jwks_url().await?;
        let set: JwkSet = self.get_json(&url).await?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else { continue };
            if let Some(u) = &jwk.common.public_key_use {
                if *u != jsonwebtoken::jwk::PublicKeyUse::Signature {
                    continue;
                }
            }
            let alg = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok());
            match DecodingKey::from_jwk(jwk) {
                Ok(k) => {
                    by_kid.insert(kid, (k, alg));
                }
                Err(e) => tracing::warn!(kid, error = %e, "oidc: skipping a JWKS key Warden cannot use"),
            }
        }
        tracing::info!(keys = by_kid.len(), url, "oidc: JWKS fetched");
        *self.keys.write().await = Keys { by_kid, fetched_at: Some(Instant::now()) };
        Ok(())
    }

    async fn key_for(&self, kid: &str) -> Result<(DecodingKey, Option<Algorithm>), OidcError> {
        let cached = {
            let keys = self.keys.read().await;
            let fresh = keys.fetched_at.is_some_and(|t| t.elapsed() < self.settings.jwks_cache_ttl);
            match keys.by_kid.get(kid) {
                Some(k) if fresh => return Ok(k.clone()),
                other => other.cloned(),
            }
        };
        // Unknown kid (the IdP rotated) or a stale cache: refetch, rate-limited. A known key
        // outlives a failed refetch: an IdP outage must not lock every human out.
        if let Err(e) = self.refresh().await {
            return cached.ok_or(e);
        }
        self.keys.read().await.by_kid.get(kid).cloned().or(cached).ok_or_else(|| OidcError::UnknownKey(kid.to_string()))
    }

    /// Verifies signature, issuer, audience, expiry (with clock skew) and not-before.
    pub async fn verify(&self, token: &str) -> Result<Human, OidcError> {
        self.verify_for(token, &self.settings.audience).await.map(|(h, _)| h)
    }

    /// An ID token from the console's code exchange: everything `verify` checks, with `aud`
    /// the console's client id (and `azp` too when several audiences are listed), and the
    /// `nonce` this login sent.
    pub async fn verify_id_token(&self, token: &str, client_id: &str, nonce: &str) -> Result<Human, OidcError> {
        let (human, claims) = self.verify_for(token, &[client_id.to_string()]).await?;
        if let Some(serde_json::Value::Array(auds)) = claims.get("aud") {
            if auds.len() > 1 && claims.get("azp").and_then(|v| v.as_str()) != Some(client_id) {
                return Err(OidcError::Invalid("several audiences and azp is not this client".into()));
            }
        }
        if claims.get("nonce").and_then(|v| v.as_str()) != Some(nonce) {
            return Err(OidcError::Invalid("the nonce does not match this sign-in".into()));
        }
        Ok(human)
    }

    async fn verify_for(&self, token: &str, audience: &[String]) -> Result<(Human, serde_json::Map<String, serde_json::Value>), OidcError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| OidcError::Malformed)?;
        if !ALLOWED.contains(&header.alg) {
            return Err(OidcError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.clone().ok_or_else(|| OidcError::Invalid("no kid in the header".into()))?;
        let (key, key_alg) = self.key_for(&kid).await?;
        if key_alg.is_some_and(|a| a != header.alg) {
            return Err(OidcError::Invalid("the header's algorithm does not match the key's".into()));
        }
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.settings.issuer]);
        v.set_audience(audience);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = self.settings.clock_skew.as_secs();
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => OidcError::Expired,
            jsonwebtoken::errors::ErrorKind::InvalidAudience => OidcError::Invalid("wrong audience".into()),
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => OidcError::Invalid("wrong issuer".into()),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => OidcError::Invalid("bad signature".into()),
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => OidcError::Invalid("not valid yet (nbf)".into()),
            _ => OidcError::Invalid("malformed claims".into()),
        })?;
        let claims = data.claims;
        let email = claims
            .get(&self.settings.email_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| OidcError::Invalid(format!("no {:?} claim", self.settings.email_claim)))?
            .trim()
            .to_ascii_lowercase();
        let subject = claims.get("sub").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let groups: Vec<String> = match claims.get(&self.settings.groups_claim) {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|g| g.as_str().map(str::to_string)).collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let roles = self.roles_for(&groups);
        Ok((Human { email, subject, groups, roles }, claims))
    }

    /// Roles whose configured groups intersect `groups`.
    pub fn roles_for(&self, groups: &[String]) -> Vec<String> {
        self.settings.roles.iter().filter(|(_, gs)| gs.iter().any(|g| groups.contains(g))).map(|(r, _)| r.clone()).collect()
    }
}

// ---- OAuth client side: discovery, token endpoint, PKCE (console login and `warden login`)

/// The parts of `{issuer}/.well-known/openid-configuration` Warden uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub device_authorization_endpoint: Option<String>,
}

/// Fetches and checks the discovery document (its `issuer` must be the configured one).
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery, OidcError> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let d: Discovery = get_json(http, &url).await?;
    if d.issuer != issuer {
        return Err(OidcError::Unavailable(format!("discovery document names issuer {:?}, not the configured {:?}", d.issuer, issuer)));
    }
    Ok(d)
}

async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> Result<T, OidcError> {
    let resp = http.get(url).send().await.map_err(|e| OidcError::Unavailable(format!("GET {url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(OidcError::Unavailable(format!("GET {url}: HTTP {}", resp.status())));
    }
    let body = resp.bytes().await.map_err(|e| OidcError::Unavailable(format!("GET {url}: {e}")))?;
    serde_json::from_slice(&body).map_err(|e| OidcError::Unavailable(format!("GET {url}: {e}")))
}

/// A successful token endpoint answer (RFC 6749 5.1). Debug is not derived: tokens are
/// secrets.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub id_token: Option<String>,
}

/// Why the token endpoint said no (RFC 6749 5.2), or why it could not be asked.
#[derive(Debug)]
pub enum TokenError {
    /// `error` and `error_description` from the IdP (e.g. `invalid_grant`,
    /// `authorization_pending`, `slow_down`).
    Refused { error: String, description: Option<String> },
    Unavailable(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Refused { error, description: Some(d) } => write!(f, "the identity provider refused: {error} ({d})"),
            TokenError::Refused { error, description: None } => write!(f, "the identity provider refused: {error}"),
            TokenError::Unavailable(why) => write!(f, "the identity provider's token endpoint cannot be reached: {why}"),
        }
    }
}

/// POSTs a form to a token (or device authorization) endpoint, with HTTP Basic client
/// authentication when a secret is given (RFC 6749 2.3.1), and parses the JSON answer.
pub async fn post_form<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str, form: &[(&str, &str)], client_secret: Option<(&str, &warden_core::secret::Secret)>) -> Result<T, TokenError> {
    let mut req = http.post(url).header("accept", "application/json").form(form);
    if let Some((id, secret)) = client_secret {
        req = req.basic_auth(form_encode(id), Some(form_encode(secret.expose())));
    }
    let resp = req.send().await.map_err(|e| TokenError::Unavailable(format!("POST {url}: {}", e.without_url())))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| TokenError::Unavailable(format!("POST {url}: {}", e.without_url())))?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|_| TokenError::Unavailable(format!("POST {url}: HTTP {status} with an answer that is not the expected JSON")));
    }
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
        error_description: Option<String>,
    }
    match serde_json::from_slice::<OAuthError>(&body) {
        Ok(e) => Err(TokenError::Refused { error: e.error, description: e.error_description }),
        Err(_) => Err(TokenError::Unavailable(format!("POST {url}: HTTP {status}"))),
    }
}

/// `application/x-www-form-urlencoded` of one value (Basic credentials are encoded so
/// first, RFC 6749 2.3.1).
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A PKCE pair (RFC 7636, S256): 32 random bytes as the verifier, its SHA-256 as the
/// challenge, both base64url without padding.
pub fn pkce_pair() -> (String, String) {
    use base64::Engine;
    use sha2::Digest;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let verifier = b64.encode(rand::random::<[u8; 32]>());
    let challenge = b64.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn load_client_secret(s: &OidcSettings) -> Result<Option<warden_core::secret::Secret>, String> {
    let value = if let Some(var) = &s.client_secret_env {
        std::env::var(var).map_err(|_| format!("oidc.client_secret_env: environment variable {var} is not set"))?
    } else if let Some(path) = &s.client_secret_file {
        std::fs::read_to_string(path).map_err(|e| format!("oidc.client_secret_file: cannot read {}: {e}", path.display()))?.trim().to_string()
    } else {
        return Ok(None);
    };
    if value.is_empty() {
        return Err("oidc.client_secret_env/client_secret_file: the client secret is empty".into());
    }
    Ok(Some(warden_core::secret::Secret::new(value)))
}
