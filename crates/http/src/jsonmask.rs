//! Masking of JSON bodies without re-serializing them: the body is validated first
//! (invalid JSON is unmaskable, never passed through), then every string (keys included)
//! and number literal is checked with the detectors, and values under a field rule are
//! replaced whole. Everything else, key order and whitespace included, is kept byte for
//! byte. Strings are decoded before detection, so `\u0034111...` escapes hide nothing.

use std::borrow::Cow;
use warden_mask::{MaskCounts, Masker};

/// `$.a.b`, `$..name` (any depth), `*` for any one key; arrays are transparent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRule {
    anywhere: bool,
    segments: Vec<String>,
}

impl FieldRule {
    pub fn parse(s: &str) -> Result<FieldRule, String> {
        let (anywhere, rest) = if let Some(r) = s.strip_prefix("$..") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("$.") {
            (false, r)
        } else {
            return Err(format!("{s:?} must start with \"$.\" or \"$..\""));
        };
        let segments: Vec<String> = rest.replace("[*]", "").split('.').map(str::to_string).collect();
        if segments.iter().any(|x| x.is_empty() || x.contains(['[', ']', '$'])) {
            return Err(format!("{s:?}: write keys separated by '.', '*' for any key"));
        }
        Ok(FieldRule { anywhere, segments })
    }

    fn matches(&self, path: &[Cow<'_, str>]) -> bool {
        let n = self.segments.len();
        if path.len() < n || (!self.anywhere && path.len() != n) {
            return false;
        }
        let tail = &path[path.len() - n..];
        self.segments.iter().zip(tail).all(|(s, p)| s == "*" || s == p)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonMaskError {
    #[error("the body is not valid JSON")]
    Invalid,
}

/// What masking replaced: detector findings, and values replaced by field rules.
#[derive(Debug, Default)]
pub struct Tally {
    pub counts: MaskCounts,
    pub fields: u64,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.counts.total() + self.fields
    }
}

enum Frame<'a> {
    Object { key: Option<Cow<'a, str>>, expect_key: bool },
    Array,
}

/// Masks `body`; `Ok(None)` when nothing changed.
pub fn mask_json(masker: &Masker, rules: &[FieldRule], body: &[u8], tally: &mut Tally) -> Result<Option<Vec<u8>>, JsonMaskError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|_| JsonMaskError::Invalid)?;
    let Tally { counts, fields } = tally;
    let text = std::str::from_utf8(body).map_err(|_| JsonMaskError::Invalid)?;
    let b = text.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0usize;
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let replace = |out: &mut Option<Vec<u8>>, copied: &mut usize, start: usize, end: usize, with: &[u8]| {
        let o = out.get_or_insert_with(|| Vec::with_capacity(b.len() + 64));
        o.extend_from_slice(&b[*copied..start]);
        o.extend_from_slice(with);
        *copied = end;
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' => {
                if c == b',' {
                    if let Some(Frame::Object { expect_key, key }) = stack.last_mut() {
                        *expect_key = true;
                        *key = None;
                    }
                }
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
            }
            _ => {
                // A key, or the start of a value.
                let is_key = matches!(stack.last(), Some(Frame::Object { expect_key: true, .. }));
                if is_key {
                    let end = string_end(b, i);
                    let raw = &text[i..end];
                    let key: String = serde_json::from_str(raw).map_err(|_| JsonMaskError::Invalid)?;
                    let (m, cts) = masker.mask_str(&key);
                    if let Cow::Owned(m) = &m {
                        counts.merge(&cts);
                        replace(&mut out, &mut copied, i, end, serde_json::to_string(m).expect("strings serialize").as_bytes());
                    }
                    if let Some(Frame::Object { key: k, expect_key }) = stack.last_mut() {
                        *k = Some(Cow::Owned(key));
                        *expect_key = false;
                    }
                    i = end;
                    continue;
                }
                let path: Vec<Cow<str>> = stack.iter().filter_map(|f| match f {
                    Frame::Object { key: Some(k), .. } => Some(k.clone()),
                    _ => None,
                }).collect();
                if !stack.is_empty() && rules.iter().any(|r| r.matches(&path)) {
                    let end = value_end(b, i);
                    replace(&mut out, &mut copied, i, end, b"\"[REDACTED:field]\"");
                    *fields += 1;
                    i = end;
                    continue;
                }
                match c {
                    b'{' => {
                        stack.push(Frame::Object { key: None, expect_key: true });
                        i += 1;
                    }
                    b'[' => {
                        stack.push(Frame::Array);
                        i += 1;
                    }
                    b'"' => {
                        let end = string_end(b, i);
                        let raw = &text[i..end];
                        let v: Cow<str> = if raw.contains('\\') { Cow::Owned(serde_json::from_str(raw).map_err(|_| JsonMaskError::Invalid)?) } else { Cow::Borrowed(&raw[1..raw.len() - 1]) };
                        let (m, cts) = masker.mask_str(&v);
                        if let Cow::Owned(m) = &m {
                            counts.merge(&cts);
                            replace(&mut out, &mut copied, i, end, serde_json::to_string(m).expect("strings serialize").as_bytes());
                        }
                        i = end;
                    }
                    _ => {
                        // number or literal
                        let end = value_end(b, i);
                        if c == b'-' || c.is_ascii_digit() {
                            let (m, cts) = masker.mask_str(&text[i..end]);
                            if let Cow::Owned(m) = &m {
                                counts.merge(&cts);
                                replace(&mut out, &mut copied, i, end, serde_json::to_string(m).expect("strings serialize").as_bytes());
                            }
                        }
                        i = end;
                    }
                }
            }
        }
    }
    Ok(out.map(|mut o| {
        o.extend_from_slice(&b[copied..]);
        o
    }))
}

/// End (exclusive) of the string literal starting at `i` (a '"'); input is valid JSON.
fn string_end(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// End (exclusive) of the value starting at `i`; input is valid JSON.
fn value_end(b: &[u8], i: usize) -> usize {
    match b[i] {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            b.len()
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                j += 1;
            }
            j
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_mask::MaskConfig;

    fn m() -> Masker {
        Masker::new(&MaskConfig::default()).unwrap()
    }

    fn run(rules: &[&str], body: &str) -> Result<String, JsonMaskError> {
        let rules: Vec<FieldRule> = rules.iter().map(|r| FieldRule::parse(r).unwrap()).collect();
        let mut c = Tally::default();
        Ok(match mask_json(&m(), &rules, body.as_bytes(), &mut c)? {
            Some(v) => String::from_utf8(v).unwrap(),
            None => body.to_string(),
        })
    }

    #[test]
    fn cards_in_strings_numbers_and_escapes_are_masked_and_the_rest_is_kept() {
        let out = run(&[], r#"{"b": 1, "a": {"card": "4111 1111 1111 1111", "n": 4111111111111111, "e": "\u0034111111111111111"}, "ok": [true, null, "x"]}"#).unwrap();
        assert!(!out.contains("4111 1111 1111 1111") && !out.contains("4111111111111111") && !out.contains("\\u0034111"), "{out}");
        assert!(out.starts_with(r#"{"b": 1, "a": {"card": ""#), "{out}");
        assert!(out.ends_with(r#""ok": [true, null, "x"]}"#), "{out}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
    }

    #[test]
    fn field_rules_redact_whole_values() {
        let out = run(&["$.customer.card_number", "$..ssn"], r#"{"customer":{"card_number":"x-1","name":"Al","card_numbers":1},"items":[{"ssn":{"a":1}},{"ssn":"z"}]}"#).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["customer"]["card_number"], "[REDACTED:field]");
        assert_eq!(v["customer"]["name"], "Al");
        assert_eq!(v["customer"]["card_numbers"], 1);
        assert_eq!(v["items"][0]["ssn"], "[REDACTED:field]");
        assert_eq!(v["items"][1]["ssn"], "[REDACTED:field]");
    }

    #[test]
    fn invalid_json_is_an_error() {
        assert_eq!(run(&[], r#"{"a": "4111 1111 1111 1111""#), Err(JsonMaskError::Invalid));
        assert_eq!(run(&[], "not json"), Err(JsonMaskError::Invalid));
    }
}
