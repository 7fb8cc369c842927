//! Configuration errors. Messages name the offending setting and never carry
//! a key, a key's bytes, or any value that was being masked.

/// Why a [`crate::MaskConfig`] could not be turned into a [`crate::Masker`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaskError {
    /// The custom detector's regex does not compile. The regex text itself is
    /// not repeated: it lives in the config file the operator already has.
    #[error("mask.custom[{index}].regex: not a valid regular expression (or too large)")]
    BadRegex { index: usize },
    /// Custom detector names label audit counts, so they must be usable labels.
    #[error("mask.custom[{index}].name: must be 1-64 characters of [a-z0-9_] and not a built-in detector name")]
    BadCustomName { index: usize },
    #[error("mask.custom[{index}].name: duplicate custom detector name")]
    DuplicateCustomName { index: usize },
    #[error("mask.columns[{index}].pattern: expected `table.column` or `column`, with optional `*`/`?` wildcards")]
    BadColumnPattern { index: usize },
    #[error("mask.hmac_key: required because a keyed_hash method is configured")]
    MissingKey,
    #[error("mask.hmac_key: set exactly one of `env` or `file`")]
    AmbiguousKeyRef,
    #[error("mask.hmac_key.env: environment variable `{var}` is not set or not valid UTF-8")]
    KeyEnvMissing { var: String },
    #[error("mask.hmac_key.file: cannot read `{path}` ({reason})")]
    KeyFileUnreadable { path: String, reason: String },
    #[error("mask.hmac_key: the key must be at least {min} bytes")]
    KeyTooShort { min: usize },
}
