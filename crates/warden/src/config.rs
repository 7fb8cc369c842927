//! The gateway's TOML configuration (DESIGN.md "config"): unknown keys are errors, every
//! problem names its key, relative paths are relative to the config file, and secrets are
//! referenced (env var or file), never written inline.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_core::secret::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the store, keys and recordings live. Overridden by WARDEN_DATA_DIR.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub tls: Option<ClientTls>,
    pub policy: PolicyConfig,
    #[serde(default)]
    pub tokens: Tokens,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub approvals: Approvals,
    /// Masking of sensitive values in results (detectors, column rules, methods). Absent:
    /// results pass unmasked.
    #[serde(default)]
    pub masking: Option<warden_mask::MaskConfig>,
    /// SCIM 2.0 provisioning (`/scim/v2`); absent: every SCIM call is refused.
    #[serde(default)]
    pub scim: Option<ScimConfig>,
    /// OIDC for humans calling the admin API; absent: human API calls are refused.
    #[serde(default)]
    pub oidc: Option<warden_api::oidc::OidcSettings>,
    /// SAML 2.0 sign-in to the console (`[saml]`); absent: no SAML.
    #[serde(default)]
    pub saml: Option<warden_api::saml::SamlSettings>,
    #[serde(default)]
    pub graphs: GraphsConfig,
    /// HTTP and LLM targets, limits and response masking of the HTTP gateway (`[http]`).
    #[serde(default)]
    pub http: warden_http::HttpConfig,
    /// Session recording levels, caps and retention (`[recording]`, issue 12).
    #[serde(default)]
    pub recording: crate::recording::RecordingConfig,
    /// Web console sign-in (`[console]`, issue 12).
    #[serde(default)]
    pub console: crate::console::ConsoleConfig,
    #[serde(default, rename = "targets")]
    pub targets: Vec<Target>,
    /// Directory of the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".warden")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    #[serde(default = "default_pg_listen")]
    pub postgres: SocketAddr,
    #[serde(default = "default_admin_listen")]
    pub admin: SocketAddr,
    /// The HTTP and LLM gateway (`http://HOST:PORT/<target>/<path>`). Started when set or
    /// when `[http]` has targets; then it defaults to 127.0.0.1:8282.
    #[serde(default)]
    pub http: Option<SocketAddr>,
}

pub fn default_http_listen() -> SocketAddr {
    "127.0.0.1:8282".parse().unwrap()
}

impl Default for Listen {
    fn default() -> Self {
        Listen { postgres: default_pg_listen(), admin: default_admin_listen(), http: None }
    }
}

fn default_pg_listen() -> SocketAddr {
    "127.0.0.1:6543".parse().unwrap()
}

fn default_admin_listen() -> SocketAddr {
    "127.0.0.1:8181".parse().unwrap()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Refuse clients that do not negotiate TLS (their token would cross the wire in clear).
    #[serde(default)]
    pub require: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    #[serde(default = "default_ttl", with = "humantime_serde_compat")]
    pub default_ttl: Duration,
    #[serde(default = "max_ttl", with = "humantime_serde_compat")]
    pub max_ttl: Duration,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens { default_ttl: default_ttl(), max_ttl: max_ttl() }
    }
}

fn default_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}

fn max_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approvals {
    /// How long a held command waits on its connection (wait mode) before it is refused.
    #[serde(default = "default_approval_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// How long a resume-mode request stays open, and an approval stays usable.
    #[serde(default = "default_resume_lifetime", with = "humantime_serde_compat")]
    pub resume_lifetime: Duration,
    /// Who may approve requests on any target (emails of humans). Targets may add their own.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Approval requests are POSTed here as Slack-compatible JSON.
    pub webhook_url: Option<String>,
    /// Environment variable holding the HMAC-SHA256 key that signs webhook bodies.
    pub webhook_secret_env: Option<String>,
}

impl Default for Approvals {
    fn default() -> Self {
        Approvals { timeout: default_approval_timeout(), resume_lifetime: default_resume_lifetime(), approvers: Vec::new(), webhook_url: None, webhook_secret_env: None }
    }
}

fn default_approval_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_resume_lifetime() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest protocol message accepted from a client or upstream.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    #[serde(default = "default_startup_timeout", with = "humantime_serde_compat")]
    pub startup_timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde_compat")]
    pub upstream_connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message_bytes: default_max_message(), startup_timeout: default_startup_timeout(), upstream_connect_timeout: default_connect_timeout() }
    }
}

fn default_max_message() -> usize {
    // PostgreSQL's own ceiling is 1 GB; a lower default caps memory per connection.
    256 * 1024 * 1024
}

fn default_startup_timeout() -> Duration {
    Duration::from_secs(15)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    pub database: String,
    pub user: String,
    /// Name of an environment variable holding the upstream password.
    pub password_env: Option<String>,
    /// Path of a file holding the upstream password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// disable | require | verify-full
    #[serde(default = "default_tls_mode")]
    pub tls: String,
    /// PEM roots for verify-full.
    pub ca_file: Option<PathBuf>,
    /// Who may approve requests on this target, besides `approvals.approvers`.
    #[serde(default)]
    pub approvers: Vec<String>,
}

fn default_kind() -> String {
    "postgres".into()
}

fn default_pg_port() -> u16 {
    5432
}

fn default_tls_mode() -> String {
    "disable".into()
}

mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration like \"15m\": {e}")))
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        let mut config: Config = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Ok(dir) = std::env::var("WARDEN_DATA_DIR") {
            if !dir.is_empty() {
                config.data_dir = PathBuf::from(dir);
            }
        }
        config.validate().with_context(|| format!("invalid config {}", path.display()))?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if self.policy.files.is_empty() {
            bail!("policy.files: list at least one Cedar policy file");
        }
        self.recording.validate()?;
        let mut names = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let key = format!("targets[{i}]");
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                bail!("{key}.name: must be non-empty and unique (got {:?})", t.name);
            }
            if t.kind != "postgres" {
                bail!("{key}.kind: only \"postgres\" is supported so far (got {:?})", t.kind);
            }
            if !["disable", "require", "verify-full"].contains(&t.tls.as_str()) {
                bail!("{key}.tls: expected disable, require or verify-full (got {:?})", t.tls);
            }
            if t.tls == "verify-full" && t.ca_file.is_none() {
                bail!("{key}.ca_file: required with tls = \"verify-full\"");
            }
            if t.password_env.is_some() && t.password_file.is_some() {
                bail!("{key}: set password_env or password_file, not both");
            }
        }
        self.http.validate().map_err(|e| anyhow::anyhow!(e))?;
        if self.tokens.default_ttl > self.tokens.max_ttl {
            bail!("tokens.default_ttl: longer than tokens.max_ttl");
        }
        if let Some(o) = &self.oidc {
            o.validate().map_err(|e| anyhow::anyhow!(e))?;
        }
        if let Some(s) = &self.saml {
            s.validate().map_err(|e| anyhow::anyhow!(e))?;
        }
        if self.scim.as_ref().is_some_and(|s| s.token_env.trim().is_empty()) {
            bail!("scim.token_env: name the environment variable holding the SCIM bearer token");
        }
        if self.limits.max_message_bytes < 1024 {
            bail!("limits.max_message_bytes: at least 1024");
        }
        Ok(())
    }

    /// Everyone who may approve requests on `target`, lower-cased.
    pub fn approvers_for(&self, target: &str) -> Vec<String> {
        let per_target = self.targets.iter().filter(|t| t.name == target).flat_map(|t| t.approvers.iter());
        let mut all: Vec<String> = self.approvals.approvers.iter().chain(per_target).map(|a| a.trim().to_ascii_lowercase()).collect();
        all.sort();
        all.dedup();
        all
    }

    pub fn webhook_secret(&self) -> Result<Option<Secret>> {
        match &self.approvals.webhook_secret_env {
            None => Ok(None),
            Some(var) => Ok(Some(Secret::new(std::env::var(var).with_context(|| format!("approvals.webhook_secret_env: environment variable {var} is not set"))?))),
        }
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.resolve(&self.data_dir)
    }

    pub fn store_path(&self) -> PathBuf {
        self.data_dir().join("warden.db")
    }
}

impl Target {
    /// Reads the upstream password from its env var or file. Errors name the source, never
    /// the value.
    pub fn password(&self, config: &Config) -> Result<Option<Secret>> {
        if let Some(var) = &self.password_env {
            let v = std::env::var(var).with_context(|| format!("target {:?}: environment variable {var} (password_env) is not set", self.name))?;
            return Ok(Some(Secret::new(v)));
        }
        if let Some(file) = &self.password_file {
            let path = config.resolve(file);
            let v = std::fs::read_to_string(&path).with_context(|| format!("target {:?}: cannot read password_file {}", self.name, path.display()))?;
            return Ok(Some(Secret::new(v.trim_end_matches(['\n', '\r']))));
        }
        Ok(None)
    }
}

/// `[scim]`: the bearer token Okta / Entra ID present, referenced by env var.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    pub token_env: String,
}

/// `[graphs]`: reviewed graph versions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphsConfig {
    /// Tokens without a graph version get no privileges (default: they keep today's
    /// policy-only behaviour).
    #[serde(default)]
    pub require_approved_version: bool,
}

impl Config {
    /// The SCIM bearer token, read from `scim.token_env`.
    pub fn scim_token(&self) -> Result<Option<Secret>> {
        match &self.scim {
            None => Ok(None),
            Some(s) => {
                let v = std::env::var(&s.token_env).with_context(|| format!("scim.token_env: environment variable {} is not set", s.token_env))?;
                if v.len() < 16 {
                    bail!("scim.token_env: the token in {} is shorter than 16 characters", s.token_env);
                }
                Ok(Some(Secret::new(v)))
            }
        }
    }

    /// Approvers as the API's separation-of-duties checks take them.
    pub fn identity_approvers(&self) -> warden_api::duties::Approvers {
        warden_api::duties::Approvers {
            global: self.approvals.approvers.clone(),
            per_target: self.targets.iter().map(|t| (t.name.clone(), t.approvers.clone())).collect(),
        }
    }
}
