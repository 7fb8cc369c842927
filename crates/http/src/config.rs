//! The `[http]` section of Warden's TOML: HTTP and LLM targets, limits and masking.
//!
//! ```toml
//! [listen]
//! http = "127.0.0.1:8282"
//!
//! [[http.targets]]
//! name = "crm"
//! kind = "http"
//! upstream = "http://127.0.0.1:9000"
//! auth = { bearer_env = "CRM_TOKEN" }
//! mask_fields = ["$.customer.card_number"]
//!
//! [[http.targets]]
//! name = "openai"
//! kind = "llm"
//! upstream = "http://127.0.0.1:9001"
//! auth = { header = "x-api-key", value_env = "OPENAI_KEY" }
//! # or a client-credentials grant: Warden fetches and renews the bearer token
//! # auth = { oauth_token_url = "https://idp/oauth/token", oauth_client_id = "warden",
//! #         oauth_client_secret_env = "SHOP_SECRET", oauth_scope = "tools" }
//! budgets = { per_agent_usd = 5.0, per_run_tokens = 200000, window = "1d" }
//! [http.targets.models."gpt-4o-mini"]
//! input_usd_per_mtok = 0.15
//! output_usd_per_mtok = 0.6
//! [http.targets.models."gpt-4o"]
//! input_usd_per_mtok = 2.5
//! output_usd_per_mtok = 10.0
//! high_cost = true
//! ```

use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_core::secret::Secret;
use warden_mask::MaskConfig;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default)]
    pub targets: Vec<HttpTarget>,
    #[serde(default)]
    pub limits: HttpLimits,
    /// Detectors and methods for response masking (the `warden-mask` configuration).
    #[serde(default)]
    pub mask: MaskConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Http,
    Llm,
    /// An MCP server over streamable HTTP (`mcp.rs`).
    Mcp,
}

/// What to do with a response that masking cannot handle (unknown content type,
/// compressed, invalid JSON, larger than the masking buffer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmaskable {
    /// 502 with a JSON error naming why.
    #[default]
    Refuse,
    /// The upstream status with the body replaced by a redaction marker.
    Redact,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTarget {
    pub name: String,
    pub kind: TargetKind,
    /// `http://host:port` or `https://host:port`, with an optional base path.
    pub upstream: String,
    #[serde(default)]
    pub auth: Option<UpstreamAuth>,
    /// For `https://` upstreams: trust roots and an mTLS client certificate.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// Paths compare case-insensitively (they are lower-cased before policy and forwarding).
    #[serde(default)]
    pub case_insensitive: bool,
    /// Mask response bodies (JSON, text, SSE). On by default.
    #[serde(default = "yes")]
    pub mask: bool,
    /// JSON paths whose values are always redacted: `$.customer.card_number`, `$..ssn`
    /// (any depth), `*` for one key; arrays are transparent (`$.items.ssn` covers
    /// `{"items":[{"ssn":..}]}`).
    #[serde(default)]
    pub mask_fields: Vec<String>,
    #[serde(default)]
    pub on_unmaskable: Unmaskable,
    /// LLM targets: models with prices (USD per million tokens) and flags.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    /// LLM targets: mask sensitive values (the `[http.mask]` detectors) in the request
    /// body before it leaves for the provider. A body that cannot be checked is refused.
    #[serde(default)]
    pub redact_prompts: bool,
    #[serde(default)]
    pub budgets: Budgets,
    /// LLM targets: output tokens reserved (and set on the request) when a request names
    /// no cap of its own.
    #[serde(default = "default_max_output")]
    pub default_max_output_tokens: i64,
    #[serde(default = "default_upstream_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// MCP targets: tool name -> the argument that carries SQL (`{ query = "sql" }`). The
    /// statement is classified by Warden's PostgreSQL parser and the call's
    /// `context.sql_read_only` says whether it only reads; SQL that does not parse, or a
    /// missing or non-string argument, is not read-only (fail closed).
    #[serde(default)]
    pub sql_arguments: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

fn default_max_output() -> i64 {
    4096
}

fn default_upstream_timeout() -> Duration {
    Duration::from_secs(300)
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default)]
    pub input_usd_per_mtok: f64,
    #[serde(default)]
    pub output_usd_per_mtok: f64,
    /// Calls need a human approval of the exact request (in addition to a permit).
    #[serde(default)]
    pub high_cost: bool,
}

/// Token and spend budgets; every one optional. They hold under concurrency: a request
/// reserves its maximum cost before it is forwarded and settles with the provider's usage.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    pub per_agent_tokens: Option<u64>,
    pub per_agent_usd: Option<f64>,
    pub per_owner_tokens: Option<u64>,
    pub per_owner_usd: Option<f64>,
    pub per_run_tokens: Option<u64>,
    pub per_run_usd: Option<f64>,
    /// Budgets reset at every multiple of this window (since the Unix epoch); none means
    /// they never reset while the gateway runs.
    #[serde(default, deserialize_with = "opt_duration")]
    pub window: Option<Duration>,
}

impl Budgets {
    pub fn any(&self) -> bool {
        self.per_agent_tokens.is_some()
            || self.per_agent_usd.is_some()
            || self.per_owner_tokens.is_some()
            || self.per_owner_usd.is_some()
            || self.per_run_tokens.is_some()
            || self.per_run_usd.is_some()
    }

    fn uses_usd(&self) -> bool {
        self.per_agent_usd.is_some() || self.per_owner_usd.is_some() || self.per_run_usd.is_some()
    }
}

/// TLS to an `https://` upstream. The server certificate is always verified (against the
/// Mozilla roots, or `ca_file` alone when set); there is no switch to turn that off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM bundle of the CAs that may sign the upstream's certificate (an internal CA).
    pub ca_file: Option<PathBuf>,
    /// mTLS: the client certificate chain and key Warden presents (the agent never has them).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

/// The credential Warden injects upstream. Exactly one form.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamAuth {
    pub bearer_env: Option<String>,
    pub bearer_file: Option<PathBuf>,
    /// A header name (`x-api-key`) whose value comes from `value_env` or `value_file`.
    pub header: Option<String>,
    pub value_env: Option<String>,
    pub value_file: Option<PathBuf>,
    pub basic_user: Option<String>,
    pub basic_password_env: Option<String>,
    pub basic_password_file: Option<PathBuf>,
    /// OAuth 2.0 client credentials: Warden fetches (and renews) a bearer token from this
    /// endpoint with `oauth_client_id` and the secret from `oauth_client_secret_env|_file`.
    pub oauth_token_url: Option<String>,
    pub oauth_client_id: Option<String>,
    pub oauth_client_secret_env: Option<String>,
    pub oauth_client_secret_file: Option<PathBuf>,
    pub oauth_scope: Option<String>,
    pub oauth_audience: Option<String>,
}

/// A resolved upstream credential.
pub enum Credential {
    /// A header with a fixed value (bearer, API key, basic).
    Header(http::HeaderName, Secret),
    /// Bearer tokens from a client-credentials grant.
    ClientCredentials(crate::oauth::ClientCredentials),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimits {
    /// Request line plus headers.
    #[serde(default = "d_header_bytes")]
    pub max_header_bytes: usize,
    #[serde(default = "d_headers")]
    pub max_headers: usize,
    #[serde(default = "d_path_bytes")]
    pub max_path_bytes: usize,
    /// Request bodies are read whole (they are bound to approvals and parsed for LLM
    /// calls) up to this size.
    #[serde(default = "d_request_body")]
    pub max_request_body_bytes: usize,
    /// A masked non-streaming response is held up to this size; larger ones are treated as
    /// unmaskable (`on_unmaskable`).
    #[serde(default = "d_response_body")]
    pub max_masked_body_bytes: usize,
    /// One server-sent event.
    #[serde(default = "d_sse_event")]
    pub max_sse_event_bytes: usize,
    /// Most characters of streamed text held back to catch a value split across events.
    #[serde(default = "d_holdback")]
    pub sse_holdback_chars: usize,
    #[serde(default = "d_connect_timeout", deserialize_with = "duration")]
    pub upstream_connect_timeout: Duration,
    /// An idle client connection is closed after this long.
    #[serde(default = "d_idle", deserialize_with = "duration")]
    pub client_header_timeout: Duration,
}

fn d_header_bytes() -> usize {
    16 * 1024
}
fn d_headers() -> usize {
    64
}
fn d_path_bytes() -> usize {
    4096
}
fn d_request_body() -> usize {
    10 * 1024 * 1024
}
fn d_response_body() -> usize {
    16 * 1024 * 1024
}
fn d_sse_event() -> usize {
    1024 * 1024
}
fn d_holdback() -> usize {
    96
}
fn d_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn d_idle() -> Duration {
    Duration::from_secs(30)
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: d_header_bytes(),
            max_headers: d_headers(),
            max_path_bytes: d_path_bytes(),
            max_request_body_bytes: d_request_body(),
            max_masked_body_bytes: d_response_body(),
            max_sse_event_bytes: d_sse_event(),
            sse_holdback_chars: d_holdback(),
            upstream_connect_timeout: d_connect_timeout(),
            client_header_timeout: d_idle(),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration like \"30s\": {e}")))
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A config problem; the message starts with the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(msg: String) -> ConfigError {
    ConfigError(msg)
}

impl HttpConfig {
    /// Checks every key; errors name it (`http.targets[1].upstream: ...`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let key = format!("http.targets[{i}]");
            let name_ok = !t.name.is_empty() && t.name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
            if !name_ok || !names.insert(t.name.as_str()) {
                return Err(bad(format!("{key}.name: must be unique, non-empty, of letters, digits, '-', '_', '.' (got {:?})", t.name)));
            }
            parse_upstream(&t.upstream).map_err(|e| bad(format!("{key}.upstream: {e}")))?;
            if let Some(a) = &t.auth {
                a.validate().map_err(|e| bad(format!("{key}.auth: {e}")))?;
            }
            if let Some(tls) = &t.tls {
                if !t.upstream.starts_with("https://") {
                    return Err(bad(format!("{key}.tls: applies to https:// upstreams only")));
                }
                if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
                    return Err(bad(format!("{key}.tls: client_cert_file and client_key_file go together")));
                }
            }
            if t.kind != TargetKind::Mcp && !t.sql_arguments.is_empty() {
                return Err(bad(format!("{key}.sql_arguments: applies to kind = \"mcp\" targets only")));
            }
            if t.kind != TargetKind::Llm && t.redact_prompts {
                return Err(bad(format!("{key}.redact_prompts: applies to kind = \"llm\" targets only")));
            }
            if t.kind != TargetKind::Llm && (!t.models.is_empty() || t.budgets.any()) {
                return Err(bad(format!("{key}: models and budgets apply to kind = \"llm\" targets only")));
            }
            for (m, c) in &t.models {
                if !(c.input_usd_per_mtok >= 0.0 && c.output_usd_per_mtok >= 0.0 && c.input_usd_per_mtok.is_finite() && c.output_usd_per_mtok.is_finite()) {
                    return Err(bad(format!("{key}.models.{m:?}: prices must be finite and >= 0")));
                }
            }
            let b = &t.budgets;
            for (k, v) in [("per_agent_usd", b.per_agent_usd), ("per_owner_usd", b.per_owner_usd), ("per_run_usd", b.per_run_usd)] {
                if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                    return Err(bad(format!("{key}.budgets.{k}: must be finite and >= 0")));
                }
            }
            if b.uses_usd() && t.models.is_empty() {
                return Err(bad(format!("{key}.models: a USD budget needs model prices")));
            }
            if b.window.is_some_and(|w| w.as_secs() == 0) {
                return Err(bad(format!("{key}.budgets.window: at least 1s")));
            }
            if t.default_max_output_tokens < 1 {
                return Err(bad(format!("{key}.default_max_output_tokens: at least 1")));
            }
            for (j, f) in t.mask_fields.iter().enumerate() {
                crate::jsonmask::FieldRule::parse(f).map_err(|e| bad(format!("{key}.mask_fields[{j}]: {e}")))?;
            }
        }
        let l = &self.limits;
        if l.max_header_bytes < 1024 {
            return Err(bad("http.limits.max_header_bytes: at least 1024".into()));
        }
        if l.max_headers < 8 {
            return Err(bad("http.limits.max_headers: at least 8".into()));
        }
        if l.max_path_bytes < 64 {
            return Err(bad("http.limits.max_path_bytes: at least 64".into()));
        }
        if l.max_sse_event_bytes < 1024 {
            return Err(bad("http.limits.max_sse_event_bytes: at least 1024".into()));
        }
        if l.sse_holdback_chars < 32 {
            return Err(bad("http.limits.sse_holdback_chars: at least 32 (a card number with separators is 25 characters)".into()));
        }
        Ok(())
    }
}

impl UpstreamAuth {
    fn validate(&self) -> Result<(), String> {
        let bearer = self.bearer_env.is_some() as u8 + self.bearer_file.is_some() as u8;
        let header = self.header.is_some() as u8;
        let value = self.value_env.is_some() as u8 + self.value_file.is_some() as u8;
        let basic = self.basic_user.is_some() as u8;
        let basic_pw = self.basic_password_env.is_some() as u8 + self.basic_password_file.is_some() as u8;
        let oauth = self.oauth_token_url.is_some() as u8;
        let oauth_secret = self.oauth_client_secret_env.is_some() as u8 + self.oauth_client_secret_file.is_some() as u8;
        if bearer + header + basic + oauth != 1 || bearer > 1 {
            return Err("set exactly one of bearer_env, bearer_file, header (+ value_env|value_file), basic_user (+ basic_password_env|basic_password_file), oauth_token_url (+ oauth_client_id, oauth_client_secret_env|oauth_client_secret_file)".into());
        }
        if oauth == 1 {
            let url = self.oauth_token_url.as_deref().unwrap_or("");
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.parse::<http::Uri>().is_err() {
                return Err(format!("oauth_token_url: {url:?} is not an http(s) URL"));
            }
            if self.oauth_client_id.as_deref().is_none_or(str::is_empty) || oauth_secret != 1 {
                return Err("oauth_token_url needs oauth_client_id and exactly one of oauth_client_secret_env, oauth_client_secret_file".into());
            }
        } else if self.oauth_client_id.is_some() || oauth_secret != 0 || self.oauth_scope.is_some() || self.oauth_audience.is_some() {
            return Err("oauth_client_id, oauth_client_secret_*, oauth_scope and oauth_audience need oauth_token_url".into());
        }
        if header == 1 {
            if value != 1 {
                return Err("header needs exactly one of value_env, value_file".into());
            }
            let h = self.header.as_deref().unwrap_or("");
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(format!("header: {h:?} is not a header name"));
            }
            if is_hop_or_reserved(&h.to_ascii_lowercase()) {
                return Err(format!("header: {h:?} cannot be injected"));
            }
        } else if value != 0 {
            return Err("value_env/value_file need header".into());
        }
        if basic == 1 && basic_pw != 1 {
            return Err("basic_user needs exactly one of basic_password_env, basic_password_file".into());
        }
        if basic == 0 && basic_pw != 0 {
            return Err("basic_password_* need basic_user".into());
        }
        Ok(())
    }

    /// The header to inject, read from env or file now. Errors name the key, never the value.
    pub fn resolve(&self, target: &str, base_dir: &Path) -> Result<Credential, ConfigError> {
        let key = |k: &str| format!("http target {target:?}: auth.{k}");
        let read_env = |k: &str, var: &str| std::env::var(var).map_err(|_| bad(format!("{}: environment variable {var} is not set", key(k))));
        let read_file = |k: &str, p: &Path| {
            let p = if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) };
            std::fs::read_to_string(&p).map(|v| v.trim_end_matches(['\n', '\r']).to_string()).map_err(|_| bad(format!("{}: cannot read {}", key(k), p.display())))
        };
        if let Some(url) = &self.oauth_token_url {
            let secret = match (&self.oauth_client_secret_env, &self.oauth_client_secret_file) {
                (Some(v), _) => read_env("oauth_client_secret_env", v)?,
                (_, Some(p)) => read_file("oauth_client_secret_file", p)?,
                _ => unreachable!("validated"),
            };
            return Ok(Credential::ClientCredentials(crate::oauth::ClientCredentials {
                token_url: url.clone(),
                client_id: self.oauth_client_id.clone().unwrap_or_default(),
                client_secret: Secret::new(secret),
                scope: self.oauth_scope.clone(),
                audience: self.oauth_audience.clone(),
            }));
        }
        let (name, value) = if let Some(v) = &self.bearer_env {
            ("authorization".to_string(), format!("Bearer {}", read_env("bearer_env", v)?))
        } else if let Some(p) = &self.bearer_file {
            ("authorization".to_string(), format!("Bearer {}", read_file("bearer_file", p)?))
        } else if let Some(h) = &self.header {
            let v = match (&self.value_env, &self.value_file) {
                (Some(v), _) => read_env("value_env", v)?,
                (_, Some(p)) => read_file("value_file", p)?,
                _ => unreachable!("validated"),
            };
            (h.to_ascii_lowercase(), v)
        } else {
            use base64::Engine;
            let user = self.basic_user.clone().unwrap_or_default();
            let pw = match (&self.basic_password_env, &self.basic_password_file) {
                (Some(v), _) => read_env("basic_password_env", v)?,
                (_, Some(p)) => read_file("basic_password_file", p)?,
                _ => unreachable!("validated"),
            };
            ("authorization".to_string(), format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))))
        };
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(bad(format!("{}: the credential is not a valid header value", key("*"))));
        }
        Ok(Credential::Header(http::HeaderName::from_bytes(name.as_bytes()).expect("validated"), Secret::new(value)))
    }
}

/// Headers an operator cannot choose as the credential header.
pub(crate) fn is_hop_or_reserved(h: &str) -> bool {
    matches!(h, "host" | "content-length" | "transfer-encoding" | "connection" | "upgrade" | "te" | "trailer" | "keep-alive" | "proxy-connection")
}

/// (scheme, authority, base path without trailing '/').
pub(crate) fn parse_upstream(s: &str) -> Result<(&'static str, String, String), String> {
    let (scheme, rest) = match (s.strip_prefix("https://"), s.strip_prefix("http://")) {
        (Some(r), _) => ("https", r),
        (_, Some(r)) => ("http", r),
        _ => return Err(format!("{s:?} must start with http:// or https://")),
    };
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if auth.is_empty() || auth.contains('@') {
        return Err(format!("{s:?} needs a host[:port] (and no user info)"));
    }
    if path.contains(['?', '#']) {
        return Err(format!("{s:?}: no query or fragment"));
    }
    http::uri::Authority::try_from(auth).map_err(|_| format!("{s:?}: {auth:?} is not a host[:port]"))?;
    Ok((scheme, auth.to_string(), path.trim_end_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<HttpConfig, String> {
        let c: HttpConfig = toml::from_str(t).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("[[targets]]\nname='a'\nkind='http'\nupstream='ftp://x'").unwrap_err();
        assert!(e.starts_with("http.targets[0].upstream"), "{e}");
        let e = parse("[[targets]]\nname='a'\nkind='http'\nupstream='http://x'\nauth={bearer_env='A', header='x'}").unwrap_err();
        assert!(e.starts_with("http.targets[0].auth"), "{e}");
        for auth in [
            "{oauth_token_url='ftp://idp/token', oauth_client_id='c', oauth_client_secret_env='S'}",
            "{oauth_token_url='https://idp/token', oauth_client_secret_env='S'}",
            "{oauth_token_url='https://idp/token', oauth_client_id='c'}",
            "{oauth_token_url='https://idp/token', oauth_client_id='c', oauth_client_secret_env='S', bearer_env='B'}",
            "{bearer_env='B', oauth_scope='x'}",
        ] {
            let e = parse(&format!("[[targets]]\nname='a'\nkind='mcp'\nupstream='http://x'\nauth={auth}")).unwrap_err();
            assert!(e.starts_with("http.targets[0].auth") && e.contains("oauth"), "{auth}: {e}");
        }
        parse("[[targets]]\nname='a'\nkind='mcp'\nupstream='http://x'\nauth={oauth_token_url='https://idp/token', oauth_client_id='c', oauth_client_secret_file='s.txt', oauth_scope='tools'}").unwrap();
        let e = parse("[[targets]]\nname='a'\nkind='http'\nupstream='http://x'\nbogus=1").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse("[limits]\nmax_header_bytes=10").unwrap_err();
        assert!(e.starts_with("http.limits.max_header_bytes"), "{e}");
        let e = parse("[[targets]]\nname='a'\nkind='llm'\nupstream='http://x'\nbudgets={per_agent_usd=1.0}").unwrap_err();
        assert!(e.starts_with("http.targets[0].models"), "{e}");
    }

    #[test]
    fn a_full_llm_target_parses() {
        let c = parse(
            "[[targets]]\nname='ai'\nkind='llm'\nupstream='http://127.0.0.1:9/v1base/'\nauth={header='x-api-key', value_env='K'}\nbudgets={per_run_tokens=100, window='1d'}\n[targets.models.'m1']\ninput_usd_per_mtok=1.0\nhigh_cost=true\n",
        )
        .unwrap();
        assert_eq!(parse_upstream(&c.targets[0].upstream).unwrap(), ("http", "127.0.0.1:9".to_string(), "/v1base".to_string()));
        assert!(c.targets[0].models["m1"].high_cost);
    }
}
