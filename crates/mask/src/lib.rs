//! Warden's masking: find sensitive values (payment cards, SSNs, IBANs,
//! emails, phones, IP addresses, API keys and tokens, custom patterns) and
//! replace them before a response reaches an agent.
//!
//! * [`Masker::mask_str`] masks free text (JSON bodies, SSE events, logs).
//! * [`Masker::column_plan`] + [`Masker::mask_pg_value`] mask PostgreSQL
//!   `DataRow` values in place, in text or binary format, keeping every value
//!   valid for the type announced in `RowDescription`.
//!
//! Fail closed: a value that cannot be checked (invalid UTF-8 in a text
//! column, a binary value of a type this crate cannot decode) is replaced as
//! a whole and counted as `unchecked`; it is never passed through.
//!
//! What counts as a card: 13-19 digits, written contiguously or in groups of
//! 4-6 digits joined by single spaces or dashes, passing Luhn, with an issuer
//! prefix and length of a real network (see `checks::issuer_ok`), and not
//! glued to an identifier (`ORD-...`, `id_...`, a decimal fraction).

mod checks;
mod config;
mod counts;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod pg;
mod scan;

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use config::{
    ColumnRule, CustomDetector, DetectorKind, KeyRef, MaskConfig, MaskMethod, Validator,
};
pub use counts::MaskCounts;
pub use error::MaskError;
pub use pg::{oid, ColumnPlan, Format, MaskedValue, RowError};
pub use scan::Source;

use scan::{CustomDet, Hit, Scanner};

const MIN_KEY_LEN: usize = 16;
const HASH_HEX_LEN: usize = 16;

/// A finding in a text: what matched where (byte offsets). Overlapping
/// findings are merged, so this is exactly what [`Masker::mask_str`] replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub source: Source,
    pub range: Range<usize>,
}

/// Compiled masking configuration. Build once, share (`Arc<Masker>`); every
/// method takes `&self`.
pub struct Masker {
    scanner: Scanner,
    methods: [MaskMethod; 15],
    custom_names: Vec<Arc<str>>,
    custom_methods: Vec<MaskMethod>,
    rules: Vec<(String, String, MaskMethod)>,
    secret_columns: Vec<String>,
    hmac: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for Masker {
    // Hand-written so the HMAC state can never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("custom", &self.custom_names)
            .field("rules", &self.rules.len())
            .field("hmac_key", &self.hmac.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

fn valid_custom_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && DetectorKind::from_name(s).is_none()
        && s != "column_rule"
        && s != "unchecked"
}

impl Masker {
    /// Compiles `cfg`, reading the HMAC key from the env var or file that
    /// `cfg.hmac_key` names.
    pub fn new(cfg: &MaskConfig) -> Result<Masker, MaskError> {
        let key = match &cfg.hmac_key {
            None => None,
            Some(KeyRef {
                env: Some(var),
                file: None,
            }) => {
                let v = std::env::var(var)
                    .map_err(|_| MaskError::KeyEnvMissing { var: var.clone() })?;
                Some(v.trim().as_bytes().to_vec())
            }
            Some(KeyRef {
                env: None,
                file: Some(path),
            }) => {
                let v = std::fs::read(path).map_err(|e| MaskError::KeyFileUnreadable {
                    path: path.display().to_string(),
                    reason: e.kind().to_string(),
                })?;
                Some(v.trim_ascii().to_vec())
            }
            Some(_) => return Err(MaskError::AmbiguousKeyRef),
        };
        Masker::with_hmac_key(cfg, key.as_deref())
    }

    /// Compiles `cfg` with a key the caller resolved itself (from its own
    /// secret store); `cfg.hmac_key` is ignored.
    pub fn with_hmac_key(cfg: &MaskConfig, key: Option<&[u8]>) -> Result<Masker, MaskError> {
        let mut names = Vec::new();
        let mut customs = Vec::new();
        let mut custom_methods = Vec::new();
        for (index, c) in cfg.custom.iter().enumerate() {
            if !valid_custom_name(&c.name) {
                return Err(MaskError::BadCustomName { index });
            }
            if names.iter().any(|n: &Arc<str>| **n == *c.name) {
                return Err(MaskError::DuplicateCustomName { index });
            }
            let re = regex::RegexBuilder::new(&c.regex)
                .size_limit(1 << 22)
                .build()
                .map_err(|_| MaskError::BadRegex { index })?;
            names.push(Arc::from(c.name.as_str()));
            customs.push(CustomDet {
                re,
                validator: c.validator,
            });
            custom_methods.push(c.method.unwrap_or(cfg.default_method));
        }
        let mut rules = Vec::new();
        for (index, r) in cfg.columns.iter().enumerate() {
            let p = r.pattern.to_ascii_lowercase();
            let (t, c) = match p.rsplit_once('.') {
                Some((t, c)) => (t.to_string(), c.to_string()),
                None => ("*".to_string(), p.clone()),
            };
            if t.is_empty()
                || c.is_empty()
                || t.split('.').any(str::is_empty)
                || p.chars().any(char::is_whitespace)
            {
                return Err(MaskError::BadColumnPattern { index });
            }
            rules.push((t, c, r.method));
        }
        let mut methods = [cfg.default_method; 15];
        for (k, m) in &cfg.methods {
            methods[k.index()] = *m;
        }
        let uses_hash = cfg.default_method == MaskMethod::KeyedHash
            || cfg.methods.values().any(|m| *m == MaskMethod::KeyedHash)
            || cfg
                .columns
                .iter()
                .any(|r| r.method == MaskMethod::KeyedHash)
            || custom_methods.contains(&MaskMethod::KeyedHash);
        let hmac = match key {
            Some(k) if k.len() < MIN_KEY_LEN => {
                return Err(MaskError::KeyTooShort { min: MIN_KEY_LEN })
            }
            Some(k) => {
                Some(<Hmac<Sha256> as Mac>::new_from_slice(k).expect("HMAC takes any key length"))
            }
            None if uses_hash => return Err(MaskError::MissingKey),
            None => None,
        };
        Ok(Masker {
            scanner: Scanner::new(&cfg.detectors, customs),
            methods,
            custom_names: names,
            custom_methods,
            rules,
            secret_columns: cfg
                .secret_column_names
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            hmac,
        })
    }

    /// The audit label of a finding's source.
    pub fn label(&self, src: Source) -> &str {
        match src {
            Source::Detector(k) => k.as_str(),
            Source::Custom(i) => &self.custom_names[i],
        }
    }

    fn method_of(&self, src: Source) -> MaskMethod {
        match src {
            Source::Detector(k) => self.methods[k.index()],
            Source::Custom(i) => self.custom_methods[i],
        }
    }

    fn count(&self, counts: &mut MaskCounts, src: Source) {
        match src {
            Source::Detector(k) => counts.bump_slot(k.index()),
            Source::Custom(i) => counts.bump_custom(&self.custom_names[i]),
        }
    }

    /// Findings in `text`, sorted, overlaps merged.
    pub fn find(&self, text: &str) -> Vec<Finding> {
        self.hits(text, false)
            .into_iter()
            .map(|h| Finding {
                source: h.src,
                range: h.start..h.end,
            })
            .collect()
    }

    pub(crate) fn hits(&self, text: &str, high_entropy: bool) -> Vec<Hit> {
        let mut hits = Vec::new();
        self.scanner.scan(text, high_entropy, &mut hits);
        if hits.len() > 1 {
            hits.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
            // Union of overlapping spans: masking only part of an overlap
            // could leave the rest of a value readable.
            let mut w = 0;
            for r in 1..hits.len() {
                if hits[r].start < hits[w].end {
                    hits[w].end = hits[w].end.max(hits[r].end);
                } else {
                    w += 1;
                    hits[w] = hits[r];
                }
            }
            hits.truncate(w + 1);
        }
        hits
    }

    /// Masks free text. Returns the input borrowed (no allocation) when
    /// nothing matched.
    pub fn mask_str<'a>(&self, text: &'a str) -> (Cow<'a, str>, MaskCounts) {
        self.mask_text(text, false, None)
    }

    /// `force`: use this method for every finding (pg types whose syntax
    /// only survives format-preserving replacement).
    pub(crate) fn mask_text<'a>(
        &self,
        text: &'a str,
        high_entropy: bool,
        force: Option<MaskMethod>,
    ) -> (Cow<'a, str>, MaskCounts) {
        let mut counts = MaskCounts::default();
        let hits = self.hits(text, high_entropy);
        if hits.is_empty() {
            return (Cow::Borrowed(text), counts);
        }
        let mut out = String::with_capacity(text.len() + 16 * hits.len());
        let mut last = 0;
        for h in &hits {
            out.push_str(&text[last..h.start]);
            let m = force.unwrap_or_else(|| self.method_of(h.src));
            self.replace(m, self.label(h.src), h.src, &text[h.start..h.end], &mut out);
            self.count(&mut counts, h.src);
            last = h.end;
        }
        out.push_str(&text[last..]);
        (Cow::Owned(out), counts)
    }

    fn replace(&self, m: MaskMethod, label: &str, src: Source, v: &str, out: &mut String) {
        match m {
            MaskMethod::Redact => {
                out.push_str("[REDACTED:");
                out.push_str(label);
                out.push(']');
            }
            MaskMethod::KeepLast4 => keep_last4(v, '*', out),
            MaskMethod::FormatPreserving => format_preserving(v, out),
            MaskMethod::KeyedHash => {
                out.push_str("hmac:");
                out.push_str(&self.keyed_hex(&normalize(src, v)));
            }
        }
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        // Masker::new refuses configs that use keyed_hash without a key.
        let mut m = self
            .hmac
            .clone()
            .expect("keyed_hash requires a key (checked in Masker::new)");
        m.update(data);
        m.finalize().into_bytes().into()
    }

    pub(crate) fn keyed_hex(&self, data: &[u8]) -> String {
        let mut h = hex::encode(self.mac(data));
        h.truncate(HASH_HEX_LEN);
        h
    }

    /// `n` decimal digits derived from the keyed hash; the first is never 0
    /// so integer text stays canonical.
    pub(crate) fn keyed_digits(&self, data: &[u8], n: usize) -> Vec<u8> {
        let mac = self.mac(data);
        (0..n)
            .map(|i| {
                let x = mac[i % 32] as usize + i / 32;
                if i == 0 {
                    b'1' + (x % 9) as u8
                } else {
                    b'0' + (x % 10) as u8
                }
            })
            .collect()
    }

    /// Column rules matching `table.column`. With no known table (lineage
    /// could not name it), any rule whose column part matches applies: a rule
    /// is never dodged by hiding the table.
    /// Whether some column rule covers this column. `column: None` asks about any column
    /// of the table (a star or whole-row use); `table: None` means the table is unknown, so
    /// any table's rule counts. The gateway uses this to refuse uses of protected columns
    /// whose derivation it cannot follow.
    pub fn rule_covers(&self, table: Option<&str>, column: Option<&str>) -> bool {
        let table = table.map(str::to_ascii_lowercase);
        let column = column.map(str::to_ascii_lowercase);
        self.rules.iter().any(|(tp, cp, _)| {
            let col_ok = column.as_ref().is_none_or(|c| glob(cp, c));
            let table_ok = table.as_ref().is_none_or(|t| glob(tp, t) || t.rsplit_once('.').is_some_and(|(_, last)| glob(tp, last)));
            col_ok && table_ok
        })
    }

    fn rule_for(&self, table: Option<&str>, column: &str) -> Option<MaskMethod> {
        let col = column.to_ascii_lowercase();
        let table = table.map(str::to_ascii_lowercase);
        self.rules.iter().find_map(|(tp, cp, m)| {
            if !glob(cp, &col) {
                return None;
            }
            let t_ok = match &table {
                None => true,
                Some(t) => {
                    glob(tp, t) || t.rsplit_once('.').is_some_and(|(_, last)| glob(tp, last))
                }
            };
            t_ok.then_some(*m)
        })
    }

    fn secret_named(&self, column: &str) -> bool {
        let c = column.to_ascii_lowercase();
        self.secret_columns.iter().any(|s| c.contains(s.as_str()))
    }
}

/// Digits only for numbers (so "4111 1111 ..." and "4111-1111-..." join),
/// lower case for emails, upper case without spaces for IBANs.
fn normalize(src: Source, v: &str) -> Vec<u8> {
    match src {
        Source::Detector(DetectorKind::Card | DetectorKind::Ssn | DetectorKind::Phone) => {
            v.bytes().filter(u8::is_ascii_digit).collect()
        }
        Source::Detector(DetectorKind::Email) => v.to_ascii_lowercase().into_bytes(),
        Source::Detector(DetectorKind::Iban) => v
            .bytes()
            .filter(|c| *c != b' ')
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        _ => v.as_bytes().to_vec(),
    }
}

pub(crate) fn keep_last4(v: &str, fill: char, out: &mut String) {
    let total = v.chars().filter(|c| c.is_alphanumeric()).count();
    let keep_from = if total > 4 { total - 4 } else { usize::MAX };
    let mut i = 0;
    for c in v.chars() {
        if c.is_alphanumeric() {
            out.push(if i >= keep_from { c } else { fill });
            i += 1;
        } else {
            out.push(c);
        }
    }
}

/// Digits -> '9', letters -> 'x'; if that reproduces the input (it was all
/// 9s and xs), use '8'/'y' so the original never survives.
pub(crate) fn format_preserving(v: &str, out: &mut String) {
    let map = |c: char, d: char, a: char| {
        if c.is_ascii_digit() {
            d
        } else if c.is_alphanumeric() {
            a
        } else {
            c
        }
    };
    let same = v.chars().all(|c| map(c, '9', 'x') == c);
    let (d, a) = if same { ('8', 'y') } else { ('9', 'x') };
    out.extend(v.chars().map(|c| map(c, d, a)));
}

/// '*' and '?' wildcards over ASCII-lowercased strings.
fn glob(p: &str, s: &str) -> bool {
    let (p, s) = (p.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests;
