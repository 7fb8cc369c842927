//! Request paths as policy sees them and as the upstream receives them.
//!
//! Policy decides over the normalized path and the upstream receives exactly that path
//! (re-encoded), never the agent's raw bytes, so no upstream can interpret a path
//! differently from the decision. Per segment: `;parameters` are dropped, the segment is
//! percent-decoded once, `.` and `..` are resolved, empty segments (`//`) collapse. Refused
//! (the caller answers 400) when the result would be ambiguous for some server:
//! - a decoded segment that still holds `%` (double encoding: `%252e`),
//! - an encoded `/` or `\` (`%2f`, `%5c`) or any raw `\`,
//! - control characters, NUL, or bytes that are not UTF-8 after decoding,
//! - `..` that would climb above the root,
//! - a path longer than the limit.

/// The outcome: `policy` is the decoded path (`/customers/42`), `forward` the same path
/// re-encoded for the upstream request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub policy: String,
    pub forward: String,
}

/// Why a path was refused; client-safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is longer than http.limits.max_path_bytes ({0} bytes)")]
    TooLong(usize),
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path holds a malformed percent-escape")]
    BadEscape,
    #[error("the path is percent-encoded twice (a '%' remains after decoding)")]
    DoubleEncoded,
    #[error("the path holds an encoded '/' or a '\\'")]
    AmbiguousSeparator,
    #[error("the path holds control characters or bytes that are not UTF-8")]
    BadBytes,
    #[error("the path climbs above the root with '..'")]
    AboveRoot,
}

pub fn normalize(raw: &str, case_insensitive: bool, max_bytes: usize) -> Result<Normalized, PathError> {
    if raw.len() > max_bytes {
        return Err(PathError::TooLong(max_bytes));
    }
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    if raw.contains('\\') {
        return Err(PathError::AmbiguousSeparator);
    }
    let mut out: Vec<String> = Vec::new();
    let raw_segments: Vec<&str> = rest.split('/').collect();
    let last = raw_segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in raw_segments.iter().enumerate() {
        let seg = seg.split(';').next().unwrap_or("");
        let decoded = decode(seg)?;
        if decoded.contains('%') {
            return Err(PathError::DoubleEncoded);
        }
        if decoded.contains(['/', '\\']) {
            return Err(PathError::AmbiguousSeparator);
        }
        if decoded.chars().any(|c| c.is_control()) {
            return Err(PathError::BadBytes);
        }
        let decoded = if case_insensitive { decoded.to_lowercase() } else { decoded };
        match decoded.as_str() {
            "" => {
                if i == last {
                    trailing_slash = !out.is_empty();
                }
            }
            "." => trailing_slash = i == last && !out.is_empty(),
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = i == last && !out.is_empty();
            }
            _ => {
                out.push(decoded);
                trailing_slash = false;
            }
        }
    }
    let mut policy = String::with_capacity(raw.len());
    let mut forward = String::with_capacity(raw.len());
    for s in &out {
        policy.push('/');
        policy.push_str(s);
        forward.push('/');
        encode_into(s, &mut forward);
    }
    if out.is_empty() || trailing_slash {
        policy.push('/');
        forward.push('/');
    }
    Ok(Normalized { policy, forward })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode(seg: &str) -> Result<String, PathError> {
    if !seg.contains('%') {
        return Ok(seg.to_string());
    }
    let b = seg.as_bytes();
    let mut v = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(h), Some(l)) = (b.get(i + 1).and_then(|c| hex(*c)), b.get(i + 2).and_then(|c| hex(*c))) else {
                return Err(PathError::BadEscape);
            };
            v.push(h * 16 + l);
            i += 3;
        } else {
            v.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(v).map_err(|_| PathError::BadBytes)
}

/// RFC 3986 pchar minus `;` (which some servers treat as a parameter separator) and `%`.
fn encode_into(s: &str, out: &mut String) {
    for &c in s.as_bytes() {
        let keep = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@');
        if keep {
            out.push(c as char);
        } else {
            out.push('%');
            out.push_str(&format!("{c:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p, false, 4096).map(|n| n.policy)
    }

    #[test]
    fn bypass_forms_resolve_or_are_refused() {
        assert_eq!(n("/crm/customers/../admin").unwrap(), "/crm/admin");
        assert_eq!(n("/crm/customers/%2e%2e/admin").unwrap(), "/crm/admin");
        assert_eq!(n("/crm/customers/%2E%2E/admin").unwrap(), "/crm/admin");
        assert_eq!(n("/crm//admin").unwrap(), "/crm/admin");
        assert_eq!(n("/crm/admin;x=1/users").unwrap(), "/crm/admin/users");
        assert_eq!(n("/crm/./admin/").unwrap(), "/crm/admin/");
        assert_eq!(n("/crm/%61dmin").unwrap(), "/crm/admin");
        assert_eq!(n("/crm/customers/%252e%252e/admin"), Err(PathError::DoubleEncoded));
        assert_eq!(n("/crm/a%2fb"), Err(PathError::AmbiguousSeparator));
        assert_eq!(n("/crm/a\\..\\b"), Err(PathError::AmbiguousSeparator));
        assert_eq!(n("/crm/a%5cb"), Err(PathError::AmbiguousSeparator));
        assert_eq!(n("/crm/a%00"), Err(PathError::BadBytes));
        assert_eq!(n("/crm/%ff"), Err(PathError::BadBytes));
        assert_eq!(n("/crm/%zz"), Err(PathError::BadEscape));
        assert_eq!(n("/.."), Err(PathError::AboveRoot));
        assert_eq!(n("/crm/../../etc"), Err(PathError::AboveRoot));
        assert_eq!(n("*"), Err(PathError::NotAbsolute));
        assert_eq!(n("/"), Ok("/".into()));
        assert!(matches!(normalize(&format!("/{}", "a".repeat(100)), false, 64), Err(PathError::TooLong(64))));
    }

    #[test]
    fn forwarded_path_is_the_decided_path_reencoded() {
        let x = normalize("/crm/na%20me;p/x%3By", false, 4096).unwrap();
        assert_eq!(x.policy, "/crm/na me/x;y");
        assert_eq!(x.forward, "/crm/na%20me/x%3By");
        assert_eq!(normalize("/CRM/Admin", true, 4096).unwrap().policy, "/crm/admin");
    }
}
