//! Masking configuration (the `[mask]` section of Warden's TOML).
//!
//! ```toml
//! [mask]
//! default_method = "redact"
//! hmac_key = { env = "WARDEN_MASK_HMAC_KEY" }   # a reference, never the key
//!
//! [mask.methods]
//! card = "keep_last4"
//! email = "keyed_hash"
//!
//! [[mask.columns]]
//! pattern = "customers.card_number"
//! method = "keep_last4"
//!
//! [[mask.columns]]
//! pattern = "*.password*"
//!
//! [[mask.custom]]
//! name = "employee_id"
//! regex = "\\bEMP-[0-9]{6}\\b"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Built-in detectors. The snake_case name is the config key and the audit
/// count label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    Card,
    Ssn,
    Iban,
    Email,
    Phone,
    Ipv4,
    Ipv6,
    AwsKey,
    GithubToken,
    StripeKey,
    OpenaiKey,
    AnthropicKey,
    Jwt,
    PrivateKey,
    /// Only applied to columns whose name looks like a secret (see
    /// [`MaskConfig::secret_column_names`]); free text is full of long
    /// random-looking identifiers that are not secrets.
    HighEntropy,
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 15] = [
        DetectorKind::Card,
        DetectorKind::Ssn,
        DetectorKind::Iban,
        DetectorKind::Email,
        DetectorKind::Phone,
        DetectorKind::Ipv4,
        DetectorKind::Ipv6,
        DetectorKind::AwsKey,
        DetectorKind::GithubToken,
        DetectorKind::StripeKey,
        DetectorKind::OpenaiKey,
        DetectorKind::AnthropicKey,
        DetectorKind::Jwt,
        DetectorKind::PrivateKey,
        DetectorKind::HighEntropy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Card => "card",
            DetectorKind::Ssn => "ssn",
            DetectorKind::Iban => "iban",
            DetectorKind::Email => "email",
            DetectorKind::Phone => "phone",
            DetectorKind::Ipv4 => "ipv4",
            DetectorKind::Ipv6 => "ipv6",
            DetectorKind::AwsKey => "aws_key",
            DetectorKind::GithubToken => "github_token",
            DetectorKind::StripeKey => "stripe_key",
            DetectorKind::OpenaiKey => "openai_key",
            DetectorKind::AnthropicKey => "anthropic_key",
            DetectorKind::Jwt => "jwt",
            DetectorKind::PrivateKey => "private_key",
            DetectorKind::HighEntropy => "high_entropy",
        }
    }

    pub fn from_name(s: &str) -> Option<DetectorKind> {
        DetectorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// How a detected (or rule-selected) value is replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskMethod {
    /// `[REDACTED:<kind>]` in text. In columns whose type cannot hold that
    /// marker (integers, numeric, floats) the format-preserving form is used.
    #[default]
    Redact,
    /// Every letter and digit but the last four become `*` (digits become `9`
    /// where the column type needs digits).
    #[serde(rename = "keep_last4")]
    KeepLast4,
    /// Same length and shape: digits become `9`, ASCII letters `x`, other
    /// characters stay.
    FormatPreserving,
    /// `hmac:` + 16 hex digits of HMAC-SHA256(key, normalized value): equal
    /// values stay joinable without being readable.
    KeyedHash,
}

/// A column rule: every non-NULL value of a matching column is masked,
/// whatever its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    /// `table.column` or just `column` (meaning `*.column`); `*` and `?` are
    /// wildcards; matching is ASCII case-insensitive.
    pub pattern: String,
    #[serde(default)]
    pub method: MaskMethod,
}

/// Optional check run on a custom detector's regex match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// The digits of the match pass the Luhn check.
    Luhn,
    /// The match (spaces removed) is an IBAN with a valid mod-97 checksum.
    Iban,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetector {
    /// Audit count label: `[a-z0-9_]{1,64}`.
    pub name: String,
    /// Rust `regex` syntax. Runs over every masked text, so prefer patterns
    /// with a literal prefix (the regex engine uses it as a prefilter).
    pub regex: String,
    #[serde(default)]
    pub validator: Option<Validator>,
    #[serde(default)]
    pub method: Option<MaskMethod>,
}

/// Where the HMAC key comes from. The key itself never appears in config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// Detectors that run on free text and on columns without a rule.
    #[serde(default = "all_detectors")]
    pub detectors: Vec<DetectorKind>,
    /// Method for detectors without an entry in `methods`.
    #[serde(default)]
    pub default_method: MaskMethod,
    #[serde(default)]
    pub methods: BTreeMap<DetectorKind, MaskMethod>,
    #[serde(default)]
    pub columns: Vec<ColumnRule>,
    #[serde(default)]
    pub custom: Vec<CustomDetector>,
    /// Column-name substrings (ASCII case-insensitive) that turn on the
    /// high-entropy detector for that column.
    #[serde(default = "default_secret_column_names")]
    pub secret_column_names: Vec<String>,
    #[serde(default)]
    pub hmac_key: Option<KeyRef>,
}

impl Default for MaskConfig {
    fn default() -> Self {
        MaskConfig {
            detectors: all_detectors(),
            default_method: MaskMethod::Redact,
            methods: BTreeMap::new(),
            columns: Vec::new(),
            custom: Vec::new(),
            secret_column_names: default_secret_column_names(),
            hmac_key: None,
        }
    }
}

fn all_detectors() -> Vec<DetectorKind> {
    DetectorKind::ALL.to_vec()
}

fn default_secret_column_names() -> Vec<String> {
    [
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access_key",
        "private_key",
        "credential",
        "session_key",
        "auth_key",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}
