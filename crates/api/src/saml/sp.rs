//! The service provider: AuthnRequests out, signed responses in. samael (libxmlsec1)
//! verifies the XML signature against the IdP metadata's certificates and reduces the
//! document to the signed part, so an unsigned assertion wrapped around or beside a signed
//! one is never read (XML signature wrapping). samael also checks Issuer, Destination,
//! Recipient, InResponseTo and the time windows; Warden adds what samael leaves optional
//! (an AudienceRestriction naming us must be present) and refuses replayed assertion ids.

use super::SamlSettings;
use samael::crypto::AllowedSignatureAlgorithm;
use samael::metadata::{EntityDescriptor, HTTP_REDIRECT_BINDING};
use samael::schema::Assertion;
use samael::traits::ToXml;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Sign-ins started and not yet answered are capped (`/saml/login` needs no credentials):
/// past this the oldest are dropped, which only fails those sign-ins.
const MAX_PENDING: usize = 10_000;

/// A human the IdP vouched for (not yet checked against Warden's store).
#[derive(Debug, Clone)]
pub struct SamlHuman {
    pub email: String,
    pub groups: Vec<String>,
}

pub struct ServiceProvider {
    sp: samael::service_provider::ServiceProvider,
    settings: SamlSettings,
    roles: BTreeMap<String, Vec<String>>,
    sso_url: String,
    metadata_xml: String,
    /// RelayState -> (AuthnRequest id, started). One use each.
    pending: Mutex<HashMap<String, (String, Instant)>>,
    /// Assertion ids accepted, kept until their NotOnOrAfter (+ skew) has passed, after which
    /// the assertion is refused as expired anyway. In memory: a second gateway process does
    /// not see this process's ids (DESIGN: SAML sign-in goes to one admin address).
    seen: Mutex<HashMap<String, i64>>,
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

impl ServiceProvider {
    /// `idp_metadata_xml`: the IdP's EntityDescriptor. `fallback_roles`: `[oidc.roles]`, used
    /// when `[saml.roles]` is empty.
    pub fn new(settings: SamlSettings, idp_metadata_xml: &str, fallback_roles: &BTreeMap<String, Vec<String>>) -> Result<Self, String> {
        settings.validate()?;
        let key = if settings.idp_metadata_file.is_some() { "saml.idp_metadata_file" } else { "saml.idp_metadata" };
        let idp: EntityDescriptor = idp_metadata_xml.parse().map_err(|e| format!("{key}: not SAML metadata (an EntityDescriptor): {e}"))?;
        if idp.entity_id.as_deref().is_none_or(str::is_empty) {
            return Err(format!("{key}: the EntityDescriptor has no entityID"));
        }
        let roles = if settings.roles.is_empty() { fallback_roles.clone() } else { settings.roles.clone() };
        let skew = chrono_secs(settings.clock_skew.as_secs());
        let sp = samael::service_provider::ServiceProviderBuilder::default()
            .entity_id(settings.sp_entity_id.clone())
            .acs_url(settings.acs_url.clone())
            .slo_url(settings.acs_url.clone())
            .idp_metadata(idp)
            .allow_idp_initiated(false)
            .max_clock_skew(skew)
            // IssueInstant may be this old (plus skew); NotOnOrAfter still bounds the assertion.
            .max_issue_delay(chrono_secs(300 + settings.clock_skew.as_secs()))
            .allowed_signature_algorithms(Some(vec![
                AllowedSignatureAlgorithm::RsaSha256,
                AllowedSignatureAlgorithm::RsaSha384,
                AllowedSignatureAlgorithm::RsaSha512,
                AllowedSignatureAlgorithm::EcdsaSha256,
                AllowedSignatureAlgorithm::EcdsaSha384,
                AllowedSignatureAlgorithm::EcdsaSha512,
            ]))
            .build()
            .map_err(|e| format!("saml: {e}"))?;
        // Without certificates samael would accept unsigned responses: refuse to start.
        match sp.idp_signing_certs() {
            Ok(Some(c)) if !c.is_empty() => {}
            Ok(_) => return Err(format!("{key}: no signing certificate (KeyDescriptor use=\"signing\" with an X509Certificate)")),
            Err(e) => return Err(format!("{key}: {e}")),
        }
        let sso_url = sp.sso_binding_location(HTTP_REDIRECT_BINDING).ok_or_else(|| format!("{key}: no SingleSignOnService with the HTTP-Redirect binding"))?;
        let metadata_xml = sp.metadata().and_then(|m| m.to_string()).map_err(|e| format!("saml: cannot build the SP metadata: {e}"))?;
        Ok(ServiceProvider { sp, settings, roles, sso_url, metadata_xml, pending: Mutex::new(HashMap::new()), seen: Mutex::new(HashMap::new()) })
    }

    pub fn metadata_xml(&self) -> &str {
        &self.metadata_xml
    }

    /// Roles whose configured groups intersect `groups`.
    pub fn roles_for(&self, groups: &[String]) -> Vec<String> {
        self.roles.iter().filter(|(_, gs)| gs.iter().any(|g| groups.contains(g))).map(|(r, _)| r.clone()).collect()
    }

    /// A new AuthnRequest as an HTTP-Redirect URL to the IdP, remembered under a fresh
    /// RelayState so only a response to it is accepted.
    pub fn start_login(&self) -> Result<String, String> {
        let mut req = self.sp.make_authentication_request(&self.sso_url).map_err(|e| format!("cannot build the AuthnRequest: {e}"))?;
        // samael's ids carry 32 random bits; InResponseTo is only as strong as this id.
        req.id = format!("_{}", hex::encode(rand::random::<[u8; 16]>()));
        let relay = hex::encode(rand::random::<[u8; 16]>());
        let url = req.redirect(&relay).map_err(|e| format!("cannot encode the AuthnRequest: {e}"))?.ok_or("the AuthnRequest has no destination")?;
        let mut pending = self.pending.lock().unwrap();
        let ttl = self.settings.request_ttl;
        pending.retain(|_, (_, at)| at.elapsed() < ttl);
        if pending.len() >= MAX_PENDING {
            if let Some(oldest) = pending.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| k.clone()) {
                pending.remove(&oldest);
            }
        }
        pending.insert(relay, (req.id.clone(), Instant::now()));
        Ok(url.to_string())
    }

    /// Verifies a `SAMLResponse` (base64, HTTP-POST binding) answering the sign-in started
    /// under `relay_state`. Every refusal says why, for the human and the audit log.
    pub fn verify(&self, saml_response: &str, relay_state: &str) -> Result<SamlHuman, String> {
        let request_id = {
            let mut pending = self.pending.lock().unwrap();
            match pending.remove(relay_state) {
                Some((id, at)) if at.elapsed() < self.settings.request_ttl => id,
                _ => return Err("this sign-in was not started here, expired, or was already answered (RelayState unknown); start again".into()),
            }
        };
        let compact: String = saml_response.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let assertion = self.sp.parse_base64_response(&compact, Some(&[request_id.as_str()])).map_err(describe)?;
        self.require_audience(&assertion)?;
        self.refuse_replay(&assertion)?;
        let email = self.email_of(&assertion)?;
        let groups = attribute_values(&assertion, &self.settings.groups_attribute);
        Ok(SamlHuman { email, groups })
    }

    /// samael checks the audience only when the assertion restricts it; Warden requires it.
    fn require_audience(&self, a: &Assertion) -> Result<(), String> {
        let ours = a.conditions.iter().flat_map(|c| c.audience_restrictions.iter().flatten()).any(|r| r.audience.iter().any(|x| *x == self.settings.sp_entity_id));
        if ours {
            Ok(())
        } else {
            Err(format!("the assertion is not addressed to this service provider (no Audience {:?})", self.settings.sp_entity_id))
        }
    }

    fn refuse_replay(&self, a: &Assertion) -> Result<(), String> {
        let confirmations = a.subject.iter().flat_map(|s| s.subject_confirmations.iter().flatten()).filter_map(|c| c.subject_confirmation_data.as_ref()).filter_map(|d| d.not_on_or_after);
        let conditions = a.conditions.iter().filter_map(|c| c.not_on_or_after);
        let until = confirmations.chain(conditions).map(|t| t.timestamp()).max().ok_or("the assertion has no NotOnOrAfter")? + self.settings.clock_skew.as_secs() as i64;
        let now = now_unix();
        let mut seen = self.seen.lock().unwrap();
        seen.retain(|_, exp| *exp > now);
        if seen.contains_key(&a.id) {
            return Err(format!("assertion {:?} was already used (replay refused)", a.id));
        }
        seen.insert(a.id.clone(), until);
        Ok(())
    }

    fn email_of(&self, a: &Assertion) -> Result<String, String> {
        let raw = match &self.settings.email_attribute {
            Some(attr) => attribute_values(a, attr).into_iter().next().ok_or_else(|| format!("the assertion has no {attr:?} attribute (saml.email_attribute)"))?,
            None => a.subject.as_ref().and_then(|s| s.name_id.as_ref()).map(|n| n.value.clone()).ok_or("the assertion has no NameID")?,
        };
        let email = raw.trim().to_ascii_lowercase();
        if !email.contains('@') {
            return Err(format!("{email:?} is not an email address (set saml.email_attribute if the NameID is not the email)"));
        }
        Ok(email)
    }
}

fn chrono_secs(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(s as i64)
}

fn attribute_values(a: &Assertion, name: &str) -> Vec<String> {
    a.attribute_statements
        .iter()
        .flatten()
        .flat_map(|s| s.attributes.iter())
        .filter(|at| at.name.as_deref() == Some(name) || at.friendly_name.as_deref() == Some(name))
        .flat_map(|at| at.values.iter().filter_map(|v| v.value.clone()))
        .collect()
}

/// samael's errors, in words for the human (signature failures carry no detail by design).
fn describe(e: Box<dyn std::error::Error>) -> String {
    let text = e.to_string();
    if text.contains("must be signed") {
        "the SAML response is not signed by the identity provider's certificate (unsigned, signed by another key, or altered after signing)".into()
    } else {
        format!("the SAML response was refused: {text}")
    }
}
