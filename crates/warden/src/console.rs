//! `[console]`: the web console's sign-in secrets (issue 12). The console itself lives in
//! `warden_api::console`; this only reads the config.
//!
//! ```toml
//! [console]
//! admin_token_env = "WARDEN_CONSOLE_ADMIN_TOKEN"      # bootstrap admin sign-in
//! auditor_token_env = "WARDEN_CONSOLE_AUDITOR_TOKEN"  # optional read-only sign-in
//! secure_cookie = true                                # set when the admin address is behind TLS
//! ```

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use warden_core::secret::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    pub admin_token_env: Option<String>,
    pub auditor_token_env: Option<String>,
    #[serde(default)]
    pub secure_cookie: bool,
}

fn token(key: &str, var: &Option<String>) -> Result<Option<Secret>> {
    let Some(var) = var else { return Ok(None) };
    let v = std::env::var(var).with_context(|| format!("console.{key}: environment variable {var} is not set"))?;
    if v.len() < 16 {
        bail!("console.{key}: the token in {var} is shorter than 16 characters");
    }
    Ok(Some(Secret::new(v)))
}

pub fn settings(c: &ConsoleConfig) -> Result<warden_api::console::ConsoleSettings> {
    Ok(warden_api::console::ConsoleSettings { admin_token: token("admin_token_env", &c.admin_token_env)?, auditor_token: token("auditor_token_env", &c.auditor_token_env)?, secure_cookie: c.secure_cookie })
}
