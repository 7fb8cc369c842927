//! `warden login | whoami | logout`: a human signs the CLI in with their identity
//! provider (`[oidc]`), by the device authorization grant (RFC 8628) or a pasted token, so
//! that deciding commands (`warden approvals approve|deny`) act as the verified human
//! instead of an `--as EMAIL` the operator types.
//!
//! The token is kept in a file only its owner can read (`$WARDEN_CREDENTIALS`, else
//! `$XDG_CONFIG_HOME/warden/credentials.json`, else `~/.config/warden/credentials.json`)
//! and is verified again (signature, issuer, audience, expiry) and the human checked
//! active in the store every time it is used: a deactivated human's saved login stops
//! working at once. The token is never printed.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use warden_api::oidc::{post_form, OidcVerifier, TokenError};
use warden_store::{HumanStatus, Store};

#[derive(Args)]
pub struct LoginArgs {
    /// Read a token from standard input instead of the device flow (e.g. one your IdP's
    /// CLI printed). It must be for one of `[oidc] audience`.
    #[arg(long)]
    pub token_stdin: bool,
}

fn fmt_unix(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t).ok().and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()).unwrap_or_else(|| t.to_string())
}

#[derive(Serialize, Deserialize)]
struct Saved {
    issuer: String,
    email: String,
    expires_at: Option<i64>,
    token: String,
}

fn credentials_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("WARDEN_CREDENTIALS") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").context("neither WARDEN_CREDENTIALS nor HOME is set")?).join(".config"),
    };
    Ok(base.join("warden").join("credentials.json"))
}

fn oidc(config: &Config) -> Result<&warden_api::oidc::OidcSettings> {
    config.oidc.as_ref().context("warden login needs [oidc] in the config (issuer, audience, and cli_client_id or client_id for the device flow)")
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Verifies the token and checks the human is active: their email.
fn verify(config: &Config, store: &dyn Store, token: &str) -> Result<(String, Vec<String>, Option<i64>)> {
    let verifier = OidcVerifier::new(oidc(config)?.clone()).map_err(|e| anyhow::anyhow!(e))?;
    let human = runtime()?.block_on(verifier.verify(token)).map_err(|e| anyhow::anyhow!("the token was refused: {e}"))?;
    match store.human(&human.email)? {
        Some(h) if h.status == HumanStatus::Active => {}
        Some(_) => bail!("{} is deactivated in Warden", human.email),
        None => bail!("{} is not a known human (provision them by SCIM or `warden human activate`)", human.email),
    }
    Ok((human.email, human.roles, expiry(token)))
}

/// The `exp` claim, for display only (verification reads it again).
fn expiry(token: &str) -> Option<i64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("exp")?.as_i64()
}

pub fn login(args: LoginArgs, config: &Config, store: &dyn Store) -> Result<()> {
    let token = if args.token_stdin {
        let mut t = String::new();
        std::io::stdin().read_to_string(&mut t)?;
        t.trim().to_string()
    } else {
        runtime()?.block_on(device_flow(oidc(config)?))?
    };
    if token.is_empty() {
        bail!("no token on standard input");
    }
    let (email, roles, expires_at) = verify(config, store, &token)?;
    let path = credentials_path()?;
    save(&path, &Saved { issuer: oidc(config)?.issuer.clone(), email: email.clone(), expires_at, token })?;
    let until = expires_at.map(|e| format!(" until {}", fmt_unix(e))).unwrap_or_default();
    let roles = if roles.is_empty() { "no Warden role".to_string() } else { roles.join(", ") };
    println!("signed in as {email} ({roles}){until}; saved to {}", path.display());
    Ok(())
}

fn save(path: &std::path::Path, saved: &Saved) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Written beside and renamed: a reader never sees half a file, and the mode is set
    // before any byte of the token is written.
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(serde_json::to_string(saved)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn load(config: &Config) -> Result<Saved> {
    let path = credentials_path()?;
    let text = std::fs::read_to_string(&path).map_err(|_| anyhow::anyhow!("not signed in (run `warden login`)"))?;
    let saved: Saved = serde_json::from_str(&text).with_context(|| format!("{} is not a Warden login; run `warden login` again", path.display()))?;
    if saved.issuer != oidc(config)?.issuer {
        bail!("the saved login is for {}, not this gateway's issuer {}; run `warden login`", saved.issuer, oidc(config)?.issuer);
    }
    Ok(saved)
}

/// The human deciding: `--as` if given (an operator with the store), else the signed-in
/// human, verified again now.
pub fn decider(config: &Config, store: &dyn Store, as_flag: Option<&str>) -> Result<String> {
    if let Some(e) = as_flag {
        return Ok(e.to_string());
    }
    let saved = load(config).context("say who decides: --as EMAIL, or sign in with `warden login`")?;
    let (email, _, _) = verify(config, store, &saved.token).context("the saved login no longer works; run `warden login`")?;
    Ok(email)
}

pub fn whoami(config: &Config, store: &dyn Store) -> Result<()> {
    let saved = load(config)?;
    let (email, roles, expires_at) = verify(config, store, &saved.token).context("the saved login no longer works; run `warden login`")?;
    let until = expires_at.map(|e| format!(" until {}", fmt_unix(e))).unwrap_or_default();
    println!("{email} ({}){until}", if roles.is_empty() { "no Warden role".to_string() } else { roles.join(", ") });
    Ok(())
}

pub fn logout() -> Result<()> {
    let path = credentials_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => println!("signed out (removed {})", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("not signed in"),
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
    Ok(())
}

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

async fn device_flow(settings: &warden_api::oidc::OidcSettings) -> Result<String> {
    let client_id = settings.cli_client_id.clone().or_else(|| settings.client_id.clone()).context("oidc.cli_client_id: set the public client `warden login` uses for the device flow (or pass --token-stdin)")?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let d = warden_api::oidc::discover(&http, &settings.issuer).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let device_url = d.device_authorization_endpoint.context("the identity provider does not offer the device flow (no device_authorization_endpoint); use --token-stdin")?;
    let token_url = d.token_endpoint.context("the identity provider's discovery document has no token_endpoint")?;
    let scope = ["openid", "email", "profile"].into_iter().chain(settings.scopes.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
    let auth: DeviceAuthorization = post_form(&http, &device_url, &[("client_id", client_id.as_str()), ("scope", scope.as_str())], None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    match &auth.verification_uri_complete {
        Some(u) => eprintln!("Open {u}\n(or {} and enter the code {})", auth.verification_uri, auth.user_code),
        None => eprintln!("Open {} and enter the code {}", auth.verification_uri, auth.user_code),
    }
    let deadline = Instant::now() + Duration::from_secs(auth.expires_in.min(1800));
    let mut interval = Duration::from_secs(auth.interval.unwrap_or(5).max(1));
    #[derive(Deserialize)]
    struct Tokens {
        access_token: String,
    }
    let form = [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", auth.device_code.as_str()), ("client_id", client_id.as_str())];
    loop {
        if Instant::now() >= deadline {
            bail!("the code expired before it was approved; run `warden login` again");
        }
        tokio::time::sleep(interval).await;
        match post_form::<Tokens>(&http, &token_url, &form, None).await {
            Ok(t) => return Ok(t.access_token),
            Err(TokenError::Refused { error, .. }) if error == "authorization_pending" => {}
            Err(TokenError::Refused { error, .. }) if error == "slow_down" => interval += Duration::from_secs(5),
            Err(e) => bail!("{e}"),
        }
    }
}
