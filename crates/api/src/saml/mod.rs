//! SAML 2.0 sign-in to the console for organisations whose identity provider speaks only
//! SAML (issue 11): SP metadata at `/saml/metadata`, SP-initiated login (`/saml/login`,
//! HTTP-Redirect binding) and the assertion consumer service (`/saml/acs`, HTTP-POST).
//! Signatures are verified by `samael` over libxmlsec1; everything else Warden requires of
//! an assertion is in [`sp`]. Behind the `saml` cargo feature (system libraries); the
//! `[saml]` settings parse in every build so a config is never silently ignored.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(feature = "saml")]
mod routes;
#[cfg(feature = "saml")]
mod sp;
#[cfg(feature = "saml")]
pub use sp::{SamlHuman, ServiceProvider};

/// Where the IdP posts the response; `acs_url` must end with it.
pub const ACS_PATH: &str = "/saml/acs";

/// `[saml]` in the gateway config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlSettings {
    /// Warden's entity id as registered at the IdP (the assertions' Audience).
    pub sp_entity_id: String,
    /// `https://<admin address>/saml/acs`, exactly as registered at the IdP (the assertions'
    /// Recipient and the response's Destination).
    pub acs_url: String,
    /// The IdP's metadata XML (entity id, signing certificates, SSO URL); relative paths
    /// resolve against the config file. Either this or `idp_metadata`.
    pub idp_metadata_file: Option<PathBuf>,
    /// The IdP's metadata XML inline.
    pub idp_metadata: Option<String>,
    /// The attribute holding the human's email; default: the NameID.
    pub email_attribute: Option<String>,
    /// The attribute listing the human's groups (matched by Name or FriendlyName).
    #[serde(default = "default_groups_attribute")]
    pub groups_attribute: String,
    /// Tolerated clock difference for NotBefore / NotOnOrAfter.
    #[serde(default = "default_skew", deserialize_with = "duration")]
    pub clock_skew: Duration,
    /// How long a sign-in started at `/saml/login` may be answered.
    #[serde(default = "default_request_ttl", deserialize_with = "duration")]
    pub request_ttl: Duration,
    /// role -> IdP groups, like `[oidc.roles]`; absent: `[oidc.roles]` is used.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
}

fn default_groups_attribute() -> String {
    "groups".into()
}
fn default_skew() -> Duration {
    Duration::from_secs(60)
}
fn default_request_ttl() -> Duration {
    Duration::from_secs(600)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration like \"60s\": {e}")))
}

fn web_url(u: &str) -> bool {
    u.starts_with("https://") || u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost")
}

impl SamlSettings {
    /// Errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.sp_entity_id.trim().is_empty() {
            return Err("saml.sp_entity_id: empty".into());
        }
        if !web_url(&self.acs_url) || !self.acs_url.ends_with(ACS_PATH) {
            return Err(format!("saml.acs_url: must be an https URL ending with {ACS_PATH} (got {:?})", self.acs_url));
        }
        match (&self.idp_metadata_file, &self.idp_metadata) {
            (Some(_), Some(_)) => return Err("saml: set idp_metadata_file or idp_metadata, not both".into()),
            (None, None) => return Err("saml.idp_metadata_file: required (or idp_metadata with the XML inline)".into()),
            _ => {}
        }
        if self.groups_attribute.trim().is_empty() {
            return Err("saml.groups_attribute: empty".into());
        }
        if self.email_attribute.as_deref().is_some_and(|a| a.trim().is_empty()) {
            return Err("saml.email_attribute: empty (leave it out to use the NameID)".into());
        }
        for role in self.roles.keys() {
            if !crate::oidc::ROLES.contains(&role.as_str()) {
                return Err(format!("saml.roles.{role}: unknown role (expected one of {})", crate::oidc::ROLES.join(", ")));
            }
        }
        Ok(())
    }
}

/// The console's SAML routes (empty without the feature or without `[saml]`).
pub(crate) fn routes() -> axum::Router<std::sync::Arc<crate::console::Console>> {
    #[cfg(feature = "saml")]
    return routes::routes();
    #[cfg(not(feature = "saml"))]
    axum::Router::new()
}

/// "Sign in with SAML" on the console's sign-in page, when `[saml]` is configured.
pub(crate) fn login_link(api: &crate::ApiState) -> maud::Markup {
    #[cfg(feature = "saml")]
    let on = api.identity.saml.is_some();
    #[cfg(not(feature = "saml"))]
    let on = {
        let _ = api;
        false
    };
    maud::html! { @if on { p.sso { a href="/saml/login" id="saml-login" { "Sign in with SAML" } } } }
}
