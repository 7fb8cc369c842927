//! PostgreSQL `DataRow` values. `RowDescription` is sent before any row, so
//! whether a column keeps its type is decided per column up front
//! ([`Masker::column_plan`]), not per value.

use std::borrow::Cow;

use crate::checks::luhn_ok;
use crate::counts::{COLUMN_RULE, UNCHECKED};
use crate::{format_preserving, keep_last4, DetectorKind, MaskCounts, MaskMethod, Masker};

/// Type OIDs this crate knows (from `pg_type.dat`).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const CIDR: u32 = 650;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const MACADDR8: u32 = 774;
    pub const MACADDR: u32 = 829;
    pub const INET: u32 = 869;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// Wire format code of a column (`0` text, `1` binary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    pub fn from_code(code: i16) -> Option<Format> {
        match code {
            0 => Some(Format::Text),
            1 => Some(Format::Binary),
            _ => None,
        }
    }
    pub fn code(self) -> i16 {
        match self {
            Format::Text => 0,
            Format::Binary => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Values are UTF-8 text in both formats.
    Text,
    Json,
    /// Binary jsonb is a version byte (1) followed by JSON text.
    Jsonb,
    Int(u8),
    Numeric,
    Float(u8),
    /// Types whose values cannot contain any detector's match (bool, dates,
    /// times, uuid, oid).
    Inert,
    Inet,
    Other,
}

fn class_of(type_oid: u32) -> Class {
    use oid::*;
    match type_oid {
        TEXT | VARCHAR | BPCHAR | NAME | CHAR | UNKNOWN | XML => Class::Text,
        JSON => Class::Json,
        JSONB => Class::Jsonb,
        INT2 => Class::Int(2),
        INT4 => Class::Int(4),
        INT8 => Class::Int(8),
        NUMERIC => Class::Numeric,
        FLOAT4 => Class::Float(4),
        FLOAT8 => Class::Float(8),
        BOOL | DATE | TIME | TIMETZ | TIMESTAMP | TIMESTAMPTZ | INTERVAL | UUID | OID | MACADDR
        | MACADDR8 => Class::Inert,
        INET | CIDR => Class::Inet,
        _ => Class::Other,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Pass,
    Detect {
        high_entropy: bool,
    },
    Rule(MaskMethod),
    /// Mask every value whole: nothing in it can be checked.
    Unchecked,
}

/// What to do with one result column. Computed once per `RowDescription`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnPlan {
    action: Action,
    class: Class,
    format: Format,
    type_oid: u32,
    out_oid: u32,
}

impl ColumnPlan {
    /// The type OID to announce in `RowDescription`: the column's own, or
    /// `text` (25) when masked values cannot stay valid for the original
    /// type. The format code does not change (binary `text` is raw UTF-8).
    pub fn output_type_oid(&self) -> u32 {
        self.out_oid
    }
    pub fn format(&self) -> Format {
        self.format
    }
    /// True when values need not be passed to [`Masker::mask_pg_value`]
    /// (doing so anyway is correct and returns them borrowed).
    pub fn is_passthrough(&self) -> bool {
        self.action == Action::Pass
    }
    /// True when a column rule applies: every non-NULL value is masked.
    pub fn is_rule(&self) -> bool {
        matches!(self.action, Action::Rule(_))
    }
}

/// A (possibly) rewritten value: borrowed when unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskedValue<'a> {
    pub bytes: Cow<'a, [u8]>,
    pub counts: MaskCounts,
}

impl MaskedValue<'_> {
    pub fn is_changed(&self) -> bool {
        matches!(self.bytes, Cow::Owned(_))
    }
}

const RULE_MARK: &str = "[REDACTED]";
const UNCHECKED_MARK: &str = "[REDACTED:unchecked]";

impl Masker {
    /// Plan for one result column. `table` is the source table the
    /// classifier traced the column to (`None` when unknown: rules then
    /// match on the column part alone).
    ///
    /// Columns of types that cannot hold a built-in detector's match (bool,
    /// date/time types, interval, uuid, oid, macaddr) pass through without a
    /// rule; custom detectors are not run on them either, so protect such
    /// columns with a column rule. Binary values of types this crate cannot
    /// decode (arrays, records, bytea, extension types) are masked whole and
    /// announced as `text`: ask upstream for text format to keep them.
    pub fn column_plan(
        &self,
        table: Option<&str>,
        column: &str,
        type_oid: u32,
        format: Format,
    ) -> ColumnPlan {
        let class = class_of(type_oid);
        let text_out = |plan_action| ColumnPlan {
            action: plan_action,
            class,
            format,
            type_oid,
            out_oid: oid::TEXT,
        };
        let same = |plan_action| ColumnPlan {
            action: plan_action,
            class,
            format,
            type_oid,
            out_oid: type_oid,
        };
        if let Some(m) = self.rule_for(table, column) {
            return match class {
                Class::Inert | Class::Inet | Class::Other => text_out(Action::Rule(m)),
                _ => same(Action::Rule(m)),
            };
        }
        let ip =
            self.scanner.enabled(DetectorKind::Ipv4) || self.scanner.enabled(DetectorKind::Ipv6);
        match class {
            Class::Inert => same(Action::Pass),
            Class::Inet if !ip => same(Action::Pass),
            // A masked address is no longer a valid inet.
            Class::Inet if format == Format::Binary => text_out(Action::Unchecked),
            Class::Inet => text_out(Action::Detect {
                high_entropy: false,
            }),
            Class::Other if format == Format::Binary => text_out(Action::Unchecked),
            _ => same(Action::Detect {
                high_entropy: self.secret_named(column),
            }),
        }
    }

    /// Masks one non-NULL `DataRow` value of a column planned by
    /// [`Masker::column_plan`]. NULLs carry no data and stay NULL.
    pub fn mask_pg_value<'a>(&self, plan: &ColumnPlan, value: &'a [u8]) -> MaskedValue<'a> {
        let mut counts = MaskCounts::default();
        let bytes = self.mask_pg_value_counting(plan, value, &mut counts);
        MaskedValue { bytes, counts }
    }

    /// [`Masker::mask_pg_value`] adding to `counts`: a row's values share one tally rather
    /// than merging one per value.
    fn mask_pg_value_counting<'a>(&self, plan: &ColumnPlan, value: &'a [u8], counts: &mut MaskCounts) -> Cow<'a, [u8]> {
        match plan.action {
            Action::Pass => Cow::Borrowed(value),
            Action::Unchecked => {
                counts.bump_slot(UNCHECKED);
                Cow::Owned(UNCHECKED_MARK.as_bytes().to_vec())
            }
            Action::Rule(m) => {
                counts.bump_slot(COLUMN_RULE);
                Cow::Owned(self.rule_value(plan, m, value))
            }
            Action::Detect { high_entropy } => self.detect_value(plan, value, high_entropy, counts),
        }
    }

    fn detect_value<'a>(
        &self,
        plan: &ColumnPlan,
        value: &'a [u8],
        he: bool,
        counts: &mut MaskCounts,
    ) -> Cow<'a, [u8]> {
        let unchecked = |counts: &mut MaskCounts, v: Vec<u8>| {
            counts.bump_slot(UNCHECKED);
            Cow::Owned(v)
        };
        match plan.class {
            Class::Text | Class::Inet | Class::Other => {
                let Ok(s) = std::str::from_utf8(value) else {
                    return unchecked(counts, UNCHECKED_MARK.as_bytes().to_vec());
                };
                // Arrays, records, enums... keep their syntax only under a
                // replacement that maps letters and digits one to one.
                let force = (plan.class == Class::Other).then_some(MaskMethod::FormatPreserving);
                let (out, c) = self.mask_text(s, he, force);
                match out {
                    Cow::Borrowed(_) => Cow::Borrowed(value),
                    Cow::Owned(o) => {
                        counts.merge(&c);
                        Cow::Owned(o.into_bytes())
                    }
                }
            }
            Class::Json | Class::Jsonb => {
                let body = split_jsonb(plan, value);
                let Some(s) = body.and_then(|b| std::str::from_utf8(b).ok()) else {
                    return unchecked(counts, json_value(plan, &format!("\"{UNCHECKED_MARK}\"")));
                };
                let (out, c) = self.mask_text(s, he, None);
                let Cow::Owned(o) = out else {
                    return Cow::Borrowed(value);
                };
                counts.merge(&c);
                let was_json = is_json(s);
                let ok = |t: &str| !was_json || is_json(t);
                let text = if ok(&o) {
                    o
                } else {
                    // Format-preserving replacement only rewrites letters
                    // and digits, so numbers stay numbers and strings stay
                    // strings.
                    let (fp, _) = self.mask_text(s, he, Some(MaskMethod::FormatPreserving));
                    if ok(&fp) {
                        fp.into_owned()
                    } else {
                        "\"[REDACTED]\"".to_string()
                    }
                };
                Cow::Owned(json_value(plan, &text))
            }
            Class::Int(w) => {
                let Some(n) = decode_int(plan.format, w, value) else {
                    return unchecked(counts, encode_int(plan.format, w, 0));
                };
                // Below 13 digits no built-in detector can match a bare
                // integer (cards are 13-19 digits; SSNs and phones need
                // separators or a label).
                if self.scanner.customs.is_empty() && n.unsigned_abs() < 1_000_000_000_000 {
                    return Cow::Borrowed(value);
                }
                let s = n.to_string();
                let hits = self.hits(&s, false);
                let Some(first) = hits.first() else {
                    return Cow::Borrowed(value);
                };
                for h in &hits {
                    self.count(counts, h.src);
                }
                let digits = s.trim_start_matches('-');
                let masked = self.mask_digits(self.method_of(first.src), digits, Some(w));
                let v: i64 = masked.parse().unwrap_or(0);
                Cow::Owned(encode_int(plan.format, w, if n < 0 { -v } else { v }))
            }
            Class::Numeric => {
                let s = match plan.format {
                    Format::Text => std::str::from_utf8(value).ok().map(str::to_string),
                    Format::Binary => numeric_to_text(value),
                };
                let Some(s) = s.filter(|s| numeric_syntax_ok(s)) else {
                    return unchecked(counts, encode_numeric(plan.format, "0"));
                };
                // "4111111111111111.00" is the integer a card column holds.
                let probe = match s.split_once('.') {
                    Some((i, f)) if f.bytes().all(|c| c == b'0') => i,
                    _ => s.as_str(),
                };
                let hits = self.hits(probe, false);
                let Some(first) = hits.first() else {
                    return Cow::Borrowed(value);
                };
                for h in &hits {
                    self.count(counts, h.src);
                }
                let masked = self.mask_numeric_text(self.method_of(first.src), &s);
                Cow::Owned(encode_numeric(plan.format, &masked))
            }
            Class::Float(w) => {
                let Some(f) = decode_float(plan.format, w, value) else {
                    return unchecked(counts, encode_float(plan.format, w, 0.0));
                };
                // Only an integral float can carry a card (doubles hold 15-16
                // exact digits); render it as the integer it is.
                if !(f.is_finite() && f.fract() == 0.0 && f.abs() < 1e19) {
                    return Cow::Borrowed(value);
                }
                let s = format!("{}", f as i128);
                let hits = self.hits(&s, false);
                let Some(first) = hits.first() else {
                    return Cow::Borrowed(value);
                };
                for h in &hits {
                    self.count(counts, h.src);
                }
                let digits = s.trim_start_matches('-');
                let masked = self.mask_digits(self.method_of(first.src), digits, None);
                let v: f64 = masked.parse().unwrap_or(0.0);
                Cow::Owned(encode_float(plan.format, w, if f < 0.0 { -v } else { v }))
            }
            Class::Inert => Cow::Borrowed(value),
        }
    }

    fn rule_value(&self, plan: &ColumnPlan, m: MaskMethod, value: &[u8]) -> Vec<u8> {
        match plan.class {
            Class::Int(w) => {
                let Some(n) = decode_int(plan.format, w, value) else {
                    return encode_int(plan.format, w, 0);
                };
                let s = n.to_string();
                let masked = self.mask_digits(m, s.trim_start_matches('-'), Some(w));
                let v: i64 = masked.parse().unwrap_or(0);
                encode_int(plan.format, w, if n < 0 { -v } else { v })
            }
            Class::Numeric => {
                let s = match plan.format {
                    Format::Text => std::str::from_utf8(value).ok().map(str::to_string),
                    Format::Binary => numeric_to_text(value),
                };
                match s.filter(|s| numeric_syntax_ok(s)) {
                    Some(s) => encode_numeric(plan.format, &self.mask_numeric_text(m, &s)),
                    None => encode_numeric(plan.format, "0"),
                }
            }
            Class::Float(w) => {
                let Some(f) = decode_float(plan.format, w, value) else {
                    return encode_float(plan.format, w, 0.0);
                };
                if !f.is_finite() {
                    return encode_float(plan.format, w, 0.0);
                }
                let s = format!("{}", f.abs().trunc() as i128);
                let v: f64 = self.mask_digits(m, &s, None).parse().unwrap_or(0.0);
                encode_float(plan.format, w, if f < 0.0 { -v } else { v })
            }
            Class::Json | Class::Jsonb => {
                let body = split_jsonb(plan, value);
                let s = body.and_then(|b| std::str::from_utf8(b).ok());
                let text = match (m, s) {
                    (MaskMethod::FormatPreserving, Some(s)) if is_json(s) => {
                        let mut o = String::new();
                        format_preserving(s, &mut o);
                        if is_json(&o) {
                            o
                        } else {
                            format!("\"{RULE_MARK}\"")
                        }
                    }
                    (_, s) => {
                        let t = self.rule_text(m, s, body.unwrap_or(value));
                        serde_json::to_string(&t).expect("string serializes")
                    }
                };
                json_value(plan, &text)
            }
            Class::Text | Class::Inet | Class::Other | Class::Inert => {
                let s = match plan.format {
                    Format::Text => std::str::from_utf8(value).ok(),
                    // Binary forms of other types are not text; only keyed
                    // hashing (over the raw bytes) applies to them.
                    Format::Binary if plan.class == Class::Text => std::str::from_utf8(value).ok(),
                    Format::Binary => None,
                };
                self.rule_text(m, s, value).into_bytes()
            }
        }
    }

    fn rule_text(&self, m: MaskMethod, s: Option<&str>, raw: &[u8]) -> String {
        let mut out = String::new();
        match (m, s) {
            (MaskMethod::KeyedHash, _) => {
                out.push_str("hmac:");
                out.push_str(&self.keyed_hex(raw));
            }
            (MaskMethod::KeepLast4, Some(s)) => keep_last4(s, '*', &mut out),
            (MaskMethod::FormatPreserving, Some(s)) => format_preserving(s, &mut out),
            _ => out.push_str(RULE_MARK),
        }
        out
    }

    /// Same number of digits, always a digit string; `width` bounds the
    /// result to fit the integer type. Never leaves a Luhn-valid 13-19 digit
    /// number behind.
    fn mask_digits(&self, m: MaskMethod, digits: &str, width: Option<u8>) -> String {
        let d = digits.as_bytes();
        let n = d.len();
        let mut out: Vec<u8> = match m {
            MaskMethod::Redact | MaskMethod::FormatPreserving => vec![b'9'; n],
            MaskMethod::KeepLast4 if n > 4 => {
                let mut v = vec![b'9'; n - 4];
                v.extend_from_slice(&d[n - 4..]);
                v
            }
            MaskMethod::KeepLast4 => vec![b'9'; n],
            MaskMethod::KeyedHash => self.keyed_digits(d, n),
        };
        if out == d {
            out.iter_mut()
                .for_each(|c| *c = if *c == b'9' { b'8' } else { b'9' });
        }
        if let Some(w) = width {
            let max: u128 = match w {
                2 => i16::MAX as u128,
                4 => i32::MAX as u128,
                _ => i64::MAX as u128,
            };
            let fits = |o: &[u8]| {
                std::str::from_utf8(o)
                    .ok()
                    .and_then(|s| s.parse::<u128>().ok())
                    .is_some_and(|v| v <= max)
            };
            if !fits(&out) {
                // Each max starts with a digit >= 2, so "1..." of the same
                // length always fits.
                out[0] = b'1';
            }
        }
        if (13..=19).contains(&n) && luhn_ok(&out) {
            out[1] = if out[1] == b'9' { b'8' } else { out[1] + 1 };
        }
        String::from_utf8(out).expect("ascii digits")
    }

    fn mask_numeric_text(&self, m: MaskMethod, s: &str) -> String {
        let (sign, rest) = match s.strip_prefix('-') {
            Some(r) => ("-", r),
            None => ("", s),
        };
        if !rest.bytes().next().is_some_and(|c| c.is_ascii_digit()) {
            return "0".to_string(); // NaN / Infinity under a rule
        }
        let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
        let mut out = String::from(sign);
        out.push_str(&self.mask_digits(m, int, None));
        if !frac.is_empty() {
            out.push('.');
            out.extend(std::iter::repeat_n('9', frac.len()));
        }
        out
    }
}

/// The JSON text of a json/jsonb value (`None`: unknown jsonb version).
fn split_jsonb<'v>(plan: &ColumnPlan, value: &'v [u8]) -> Option<&'v [u8]> {
    if plan.class == Class::Jsonb && plan.format == Format::Binary {
        match value.split_first() {
            Some((1, rest)) => Some(rest),
            _ => None,
        }
    } else {
        Some(value)
    }
}

fn json_value(plan: &ColumnPlan, text: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(text.len() + 1);
    if plan.class == Class::Jsonb && plan.format == Format::Binary {
        v.push(1);
    }
    v.extend_from_slice(text.as_bytes());
    v
}

fn decode_int(f: Format, w: u8, v: &[u8]) -> Option<i64> {
    match f {
        Format::Binary => match (w, v.len()) {
            (2, 2) => Some(i16::from_be_bytes([v[0], v[1]]) as i64),
            (4, 4) => Some(i32::from_be_bytes(v.try_into().ok()?) as i64),
            (8, 8) => Some(i64::from_be_bytes(v.try_into().ok()?)),
            _ => None,
        },
        Format::Text => {
            let s = std::str::from_utf8(v).ok()?;
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            // Preserve the exact text: "0042" is not canonical but valid.
            if digits.len() > 1 && digits.starts_with('0') {
                return None;
            }
            s.parse().ok()
        }
    }
}

fn encode_int(f: Format, w: u8, n: i64) -> Vec<u8> {
    match f {
        Format::Text => n.to_string().into_bytes(),
        Format::Binary => match w {
            2 => (n as i16).to_be_bytes().to_vec(),
            4 => (n as i32).to_be_bytes().to_vec(),
            _ => n.to_be_bytes().to_vec(),
        },
    }
}

fn decode_float(f: Format, w: u8, v: &[u8]) -> Option<f64> {
    match f {
        Format::Binary => match (w, v.len()) {
            (4, 4) => Some(f32::from_be_bytes(v.try_into().ok()?) as f64),
            (8, 8) => Some(f64::from_be_bytes(v.try_into().ok()?)),
            _ => None,
        },
        Format::Text => std::str::from_utf8(v).ok()?.trim().parse().ok(),
    }
}

fn encode_float(f: Format, w: u8, x: f64) -> Vec<u8> {
    match (f, w) {
        (Format::Text, _) => format!("{x}").into_bytes(),
        (Format::Binary, 4) => (x as f32).to_be_bytes().to_vec(),
        (Format::Binary, _) => x.to_be_bytes().to_vec(),
    }
}

fn numeric_syntax_ok(s: &str) -> bool {
    if matches!(s, "NaN" | "Infinity" | "-Infinity") {
        return true;
    }
    let r = s.strip_prefix('-').unwrap_or(s);
    let (i, f) = r.split_once('.').unwrap_or((r, ""));
    !i.is_empty() && i.bytes().all(|c| c.is_ascii_digit()) && f.bytes().all(|c| c.is_ascii_digit())
}

fn encode_numeric(f: Format, s: &str) -> Vec<u8> {
    match f {
        Format::Text => s.as_bytes().to_vec(),
        Format::Binary => {
            text_to_numeric(s).unwrap_or_else(|| text_to_numeric("0").expect("zero encodes"))
        }
    }
}

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// Binary numeric: ndigits, weight, sign, dscale (i16/u16 BE), then
/// base-10000 digits.
pub(crate) fn numeric_to_text(b: &[u8]) -> Option<String> {
    if b.len() < 8 {
        return None;
    }
    let ndigits = i16::from_be_bytes([b[0], b[1]]);
    let weight = i16::from_be_bytes([b[2], b[3]]) as i32;
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = u16::from_be_bytes([b[6], b[7]]) as usize;
    if ndigits < 0 || b.len() != 8 + 2 * ndigits as usize || dscale > 16383 {
        return None;
    }
    match sign {
        NUMERIC_NAN => return Some("NaN".into()),
        NUMERIC_PINF => return Some("Infinity".into()),
        NUMERIC_NINF => return Some("-Infinity".into()),
        0 | NUMERIC_NEG => {}
        _ => return None,
    }
    let digits: Vec<u16> = b[8..]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    if digits.iter().any(|&d| d >= 10000) || weight.abs() > 10000 {
        return None;
    }
    let get = |i: i32| {
        if i >= 0 && (i as usize) < digits.len() {
            digits[i as usize]
        } else {
            0
        }
    };
    let mut s = String::new();
    if sign == NUMERIC_NEG {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                s.push_str(&get(i).to_string());
            } else {
                s.push_str(&format!("{:04}", get(i)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut i = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", get(i)));
            i += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Some(s)
}

pub(crate) fn text_to_numeric(s: &str) -> Option<Vec<u8>> {
    let header = |nd: i16, w: i16, sign: u16, ds: u16| {
        let mut v = Vec::new();
        v.extend_from_slice(&nd.to_be_bytes());
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&ds.to_be_bytes());
        v
    };
    match s {
        "NaN" => return Some(header(0, 0, NUMERIC_NAN, 0)),
        "Infinity" => return Some(header(0, 0, NUMERIC_PINF, 0)),
        "-Infinity" => return Some(header(0, 0, NUMERIC_NINF, 0)),
        _ => {}
    }
    let (neg, r) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = r.split_once('.').unwrap_or((r, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let dscale = u16::try_from(frac.len()).ok()?;
    let ipad = (4 - int.len() % 4) % 4;
    let fpad = (4 - frac.len() % 4) % 4;
    let all: Vec<u8> = std::iter::repeat_n(b'0', ipad)
        .chain(int.bytes())
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', fpad))
        .collect();
    let mut groups: Vec<u16> = all
        .chunks(4)
        .map(|c| c.iter().fold(0u16, |a, &d| a * 10 + (d - b'0') as u16))
        .collect();
    let mut weight = ((ipad + int.len()) / 4) as i32 - 1;
    let lead = groups.iter().take_while(|&&g| g == 0).count();
    groups.drain(..lead);
    weight -= lead as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        return Some(header(0, 0, 0, dscale));
    }
    let mut v = header(
        i16::try_from(groups.len()).ok()?,
        i16::try_from(weight).ok()?,
        if neg { NUMERIC_NEG } else { 0 },
        dscale,
    );
    for g in groups {
        v.extend_from_slice(&g.to_be_bytes());
    }
    Some(v)
}

fn is_json(s: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
}

/// A `DataRow` body that does not match its plans. The caller must not
/// forward the row (fail closed): send an error to the client instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("DataRow is truncated or has trailing bytes")]
    Malformed,
    #[error("DataRow has {got} columns, RowDescription announced {want}")]
    ColumnCount { got: usize, want: usize },
}

impl Masker {
    /// Rewrites a whole `DataRow` message body (after the type byte and
    /// length: `i16` column count, then per column an `i32` length, `-1` for
    /// NULL, and the bytes). The column count never changes; NULLs stay NULL.
    /// Returns the body borrowed when no value changed.
    pub fn mask_data_row<'a>(
        &self,
        plans: &[ColumnPlan],
        body: &'a [u8],
    ) -> Result<(Cow<'a, [u8]>, MaskCounts), RowError> {
        let mut counts = MaskCounts::default();
        if body.len() < 2 {
            return Err(RowError::Malformed);
        }
        let n = i16::from_be_bytes([body[0], body[1]]);
        if n < 0 || n as usize != plans.len() {
            return Err(RowError::ColumnCount {
                got: n.max(0) as usize,
                want: plans.len(),
            });
        }
        let mut out: Option<Vec<u8>> = None;
        let mut pos = 2;
        for plan in plans {
            let len_at = pos;
            let len = i32::from_be_bytes(
                body.get(pos..pos + 4)
                    .ok_or(RowError::Malformed)?
                    .try_into()
                    .expect("4 bytes"),
            );
            pos += 4;
            if len < -1 {
                return Err(RowError::Malformed);
            }
            let value = if len == -1 {
                None
            } else {
                let v = body
                    .get(pos..pos + len as usize)
                    .ok_or(RowError::Malformed)?;
                pos += len as usize;
                Some(v)
            };
            let masked = match value {
                Some(v) if !plan.is_passthrough() => match self.mask_pg_value_counting(plan, v, &mut counts) {
                    Cow::Owned(m) => Some(m),
                    Cow::Borrowed(_) => None,
                },
                _ => None,
            };
            match (&mut out, masked) {
                (Some(o), Some(m)) => {
                    o.extend_from_slice(&(m.len() as i32).to_be_bytes());
                    o.extend_from_slice(&m);
                }
                (Some(o), None) => o.extend_from_slice(&body[len_at..pos]),
                (None, Some(m)) => {
                    // First change: copy everything before this column once.
                    let mut o = Vec::with_capacity(body.len() + 32);
                    o.extend_from_slice(&body[..len_at]);
                    o.extend_from_slice(&(m.len() as i32).to_be_bytes());
                    o.extend_from_slice(&m);
                    out = Some(o);
                }
                (None, None) => {}
            }
        }
        if pos != body.len() {
            return Err(RowError::Malformed);
        }
        Ok((out.map_or(Cow::Borrowed(body), Cow::Owned), counts))
    }
}
