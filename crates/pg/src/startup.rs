//! What a client asks for in its startup packet: the agent, the target, the node, and the
//! ordinary session parameters. Startup parameters set server settings before any statement
//! is classified, so only a reviewed set passes; anything else is refused by name.

/// Parameters forwarded to the upstream when a client sends them. Each only changes how
/// values are formatted; none changes privileges or name resolution.
const FORWARDED: &[&str] = &["application_name", "client_encoding", "datestyle", "timezone", "extra_float_digits", "intervalstyle"];

/// The gateway's own options, given as `options='-c warden.node=NAME'`.
const WARDEN_PREFIX: &str = "warden.";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartupRequest {
    pub user: String,
    pub database: String,
    pub node: Option<String>,
    pub run: Option<String>,
    pub thread: Option<String>,
    /// "wait" or "resume": how the client wants held commands handled.
    pub approval_mode: Option<String>,
    /// Parameters to forward upstream, names lower-cased.
    pub forwarded: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartupError {
    #[error("startup parameter \"user\" is required (the agent name)")]
    MissingUser,
    #[error("startup parameter \"{0}\" is not allowed through the gateway")]
    Forbidden(String),
    #[error("unknown gateway option \"{0}\" (known: warden.node, warden.run, warden.thread, warden.approval)")]
    UnknownOption(String),
    #[error("malformed options parameter: {0}")]
    BadOptions(String),
}

pub fn parse_startup(params: &[(String, String)]) -> Result<StartupRequest, StartupError> {
    let mut req = StartupRequest::default();
    for (key, value) in params {
        let lower = key.to_ascii_lowercase();
        match lower.as_str() {
            "user" => req.user = value.clone(),
            "database" => req.database = value.clone(),
            "options" => {
                for (name, val) in parse_options(value)? {
                    set_option(&mut req, &name, val)?;
                }
            }
            _ if lower.starts_with(WARDEN_PREFIX) => set_option(&mut req, &lower, value.clone())?,
            _ if FORWARDED.contains(&lower.as_str()) => req.forwarded.push((lower, value.clone())),
            _ => return Err(StartupError::Forbidden(key.clone())),
        }
    }
    if req.user.is_empty() {
        return Err(StartupError::MissingUser);
    }
    if req.database.is_empty() {
        req.database = req.user.clone();
    }
    Ok(req)
}

fn set_option(req: &mut StartupRequest, name: &str, value: String) -> Result<(), StartupError> {
    let name = name.to_ascii_lowercase();
    let slot = match name.as_str() {
        "warden.node" => &mut req.node,
        "warden.run" => &mut req.run,
        "warden.thread" => &mut req.thread,
        "warden.approval" => {
            if value != "wait" && value != "resume" {
                return Err(StartupError::BadOptions(format!("warden.approval must be wait or resume, not \"{value}\"")));
            }
            &mut req.approval_mode
        }
        n if n.starts_with(WARDEN_PREFIX) => return Err(StartupError::UnknownOption(name)),
        n if FORWARDED.contains(&n) => {
            req.forwarded.push((name, value));
            return Ok(());
        }
        _ => return Err(StartupError::Forbidden(name)),
    };
    *slot = Some(value).filter(|v| !v.is_empty());
    Ok(())
}

/// Splits libpq's `options` value: whitespace-separated, backslash escapes, `-c name=value`,
/// `-cname=value` or `--name=value`.
fn parse_options(options: &str) -> Result<Vec<(String, String)>, StartupError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(chars.next().ok_or_else(|| StartupError::BadOptions("trailing backslash".into()))?);
                in_word = true;
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next().ok_or_else(|| StartupError::BadOptions("-c without a setting".into()))?
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_string()
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_string()
        } else {
            return Err(StartupError::BadOptions(format!("unexpected word \"{w}\"")));
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| StartupError::BadOptions(format!("\"{setting}\" is not name=value")))?;
        out.push((name.replace('-', "_"), value.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn node_comes_from_options_and_is_stripped() {
        let r = parse_startup(&p(&[("user", "bot"), ("database", "test"), ("options", "-c warden.node=reader"), ("application_name", "psql")])).unwrap();
        assert_eq!(r.node.as_deref(), Some("reader"));
        assert_eq!(r.forwarded, vec![("application_name".to_string(), "psql".to_string())]);
        let r = parse_startup(&p(&[("user", "bot"), ("options", "-cwarden.node=a\\ b --warden.run=r1")])).unwrap();
        assert_eq!((r.node.as_deref(), r.run.as_deref(), r.database.as_str()), (Some("a b"), Some("r1"), "bot"));
    }

    #[test]
    fn settings_that_change_privileges_or_resolution_are_refused() {
        for opts in ["-c role=postgres", "-c search_path=evil", "-c session_authorization=postgres", "--default_transaction_read_only=off"] {
            assert!(matches!(parse_startup(&p(&[("user", "bot"), ("options", opts)])), Err(StartupError::Forbidden(_))), "{opts}");
        }
        assert!(matches!(parse_startup(&p(&[("user", "bot"), ("replication", "database")])), Err(StartupError::Forbidden(_))));
        assert!(matches!(parse_startup(&p(&[("user", "bot"), ("options", "-c warden.nod=x")])), Err(StartupError::UnknownOption(_))));
        assert!(matches!(parse_startup(&p(&[("user", "bot"), ("options", "-c")])), Err(StartupError::BadOptions(_))));
        assert!(matches!(parse_startup(&p(&[("database", "x")])), Err(StartupError::MissingUser)));
    }
}
