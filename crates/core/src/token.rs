//! Warden-minted agent tokens: short-lived Ed25519-signed JWTs (DESIGN.md decisions).
//! An agent presents one as its PostgreSQL password (or HTTP bearer); the gateway checks
//! signature, issuer, audience and expiry here, and the agent's live status elsewhere.

use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

const ISSUER: &str = "warden";
const AUDIENCE: &str = "warden-gateway";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The agent name.
    pub sub: String,
    /// A node the token is pinned to; a session cannot claim another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// Graph version digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gv: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
    #[error("signing key unreadable: {0}")]
    Key(String),
}

/// What to put in a new token; times are filled in by [`TokenKeys::issue`].
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    pub agent: String,
    pub node: Option<String>,
    pub run: Option<String>,
    pub thread: Option<String>,
    pub graph_version: Option<String>,
    pub ttl_secs: i64,
}

/// The gateway's signing and verification keys.
pub struct TokenKeys {
    signing: SigningKey,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, TokenError> {
        // The error of the pkcs8 crate may quote key material: report only that it failed.
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|_| TokenError::Key("not an Ed25519 PKCS#8 PEM key".into()))?;
        Ok(Self::from_signing_key(key))
    }

    pub fn to_pkcs8_pem(&self) -> String {
        self.signing
            .to_pkcs8_pem(Default::default())
            .expect("an Ed25519 key always encodes")
            .to_string()
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    fn from_signing_key(signing: SigningKey) -> Self {
        let der = signing.to_pkcs8_der().expect("an Ed25519 key always encodes");
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        let decoding = DecodingKey::from_ed_components(&x).expect("a 32-byte public key is a valid component");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is exact: a revocation story that tolerates minutes of skew is no story.
        validation.leeway = 0;
        TokenKeys { signing, encoding, decoding, validation }
    }

    pub fn issue(&self, req: &TokenRequest, now_unix: i64) -> (String, TokenClaims) {
        let claims = TokenClaims {
            sub: req.agent.clone(),
            node: req.node.clone(),
            run: req.run.clone(),
            thread: req.thread.clone(),
            gv: req.graph_version.clone(),
            iat: now_unix,
            exp: now_unix + req.ttl_secs,
            jti: uuid_like(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .expect("signing with a valid Ed25519 key cannot fail");
        (token, claims)
    }

    /// Checks signature, issuer, audience and expiry against `now_unix`.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<TokenClaims, TokenError> {
        let mut validation = self.validation.clone();
        // jsonwebtoken compares against the wall clock; we check expiry ourselves against the
        // caller's clock so tests and long-lived sessions use one notion of now.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<TokenClaims>(token, &self.decoding, &validation).map_err(|_| TokenError::Invalid)?;
        if data.claims.exp <= now_unix {
            return Err(TokenError::Expired);
        }
        Ok(data.claims)
    }
}

fn uuid_like() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ttl: i64) -> TokenRequest {
        TokenRequest { agent: "bot".into(), node: Some("reader".into()), ttl_secs: ttl, ..Default::default() }
    }

    #[test]
    fn issued_token_verifies_until_expiry() {
        let keys = TokenKeys::generate();
        let (tok, claims) = keys.issue(&req(60), 1_000);
        assert_eq!(keys.verify(&tok, 1_059).unwrap(), claims);
        assert!(matches!(keys.verify(&tok, 1_060), Err(TokenError::Expired)));
    }

    #[test]
    fn token_from_another_key_or_tampered_is_invalid() {
        let keys = TokenKeys::generate();
        let other = TokenKeys::generate();
        let (tok, _) = other.issue(&req(60), 1_000);
        assert!(matches!(keys.verify(&tok, 1_001), Err(TokenError::Invalid)));
        let (tok, _) = keys.issue(&req(60), 1_000);
        let mut parts: Vec<String> = tok.split('.').map(String::from).collect();
        let forged = serde_json::json!({"sub":"admin","iat":1000,"exp":9_999_999_999i64,"jti":"x","iss":"warden","aud":"warden-gateway"});
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string());
        assert!(matches!(keys.verify(&parts.join("."), 1_001), Err(TokenError::Invalid)));
        assert!(matches!(keys.verify("bogus", 1_001), Err(TokenError::Invalid)));
    }

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let keys = TokenKeys::generate();
        let again = TokenKeys::from_pkcs8_pem(&keys.to_pkcs8_pem()).unwrap();
        let (tok, _) = keys.issue(&req(60), 1_000);
        assert!(again.verify(&tok, 1_001).is_ok());
    }
}
