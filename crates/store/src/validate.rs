use crate::{Result, StoreError};

/// Agent names end up in tokens, policies, audit search and URLs, so they are kept to a
/// set that needs no quoting anywhere.
pub fn validate_agent_name(name: &str) -> Result<()> {
    let rule = |rule| {
        Err(StoreError::InvalidAgentName {
            name: name.to_string(),
            rule,
        })
    };
    if name.is_empty() || name.len() > 63 {
        return rule("must be 1-63 characters long");
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return rule("must start with a lowercase letter a-z");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return rule("may contain only lowercase letters a-z, digits 0-9, '_' and '-'");
    }
    Ok(())
}

/// Lowercases and trims, so `Alice@Example.com` from OIDC and `alice@example.com` from
/// SCIM are one human (an owner that splits in two would escape deactivation).
pub fn normalize_email(email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let ok = match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if ok {
        Ok(e)
    } else {
        Err(StoreError::InvalidEmail(email.to_string()))
    }
}
