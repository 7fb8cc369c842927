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
}

/// Algorithms an IdP may sign with. Never HS*: the "key" would be public.
const ALLOWED: [Algorithm; 9] = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];

impl OidcVerifier {
    pub fn new(settings: OidcSettings) -> Result<Self, String> {
        settings.validate()?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().map_err(|e| format!("oidc: cannot build HTTP client: {e}"))?;
        let jwks_url = settings.jwks_url.clone();
        Ok(OidcVerifier { settings, http, keys: RwLock::new(Keys { by_kid: HashMap::new(), fetched_at: None }), refetch: Mutex::new(None), jwks_url: RwLock::new(jwks_url) })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let resp = self.http.get(url).send().await.map_err(|e| OidcError::Unavailable(format!("GET {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(OidcError::Unavailable(format!("GET {url}: HTTP {}", resp.status())));
        }
        let body = resp.bytes().await.map_err(|e| OidcError::Unavailable(format!("GET {url}: {e}")))?;
        serde_json::from_slice(&body).map_err(|e| OidcError::Unavailable(format!("GET {url}: {e}")))
    }

    async fn resolve_jwks_url(&self) -> Result<String, OidcError> {
        if let Some(u) = self.jwks_url.read().await.clone() {
            return Ok(u);
        }
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer.trim_end_matches('/'));
        let d: Discovery = self.get_json(&url).await?;
        if d.issuer != self.settings.issuer {
            return Err(OidcError::Unavailable(format!("discovery document names issuer {:?}, not the configured {:?}", d.issuer, self.settings.issuer)));
        }
        *self.jwks_url.write().await = Some(d.jwks_uri.clone());
        Ok(d.jwks_uri)
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
        v.set_audience(&self.settings.audience);
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
        Ok(Human { email, subject, groups, roles })
    }

    /// Roles whose configured groups intersect `groups`.
    pub fn roles_for(&self, groups: &[String]) -> Vec<String> {
        self.settings.roles.iter().filter(|(_, gs)| gs.iter().any(|g| groups.contains(g))).map(|(r, _)| r.clone()).collect()
    }
}
