//! Client-safe denial sentences. They reach the agent (PostgreSQL ErrorResponse, HTTP 403)
//! and, through it, possibly an LLM: they name only what the agent already knows (its
//! own identity, the command's access, policy ids) and never Cedar internals.

use crate::classification::{Access, ObjectRef};
use crate::identity::SessionIdentity;

/// Why an access was denied.
pub(crate) enum DenyCause<'a> {
    /// No permit matched.
    Default,
    /// These forbid policies matched.
    Forbid(&'a [String]),
    /// Cedar could not evaluate some policy; we fail closed.
    EvaluationError,
}

pub(crate) fn denial(who: &SessionIdentity, access: &Access, cause: DenyCause<'_>) -> String {
    let mut s = format!("warden: {access} denied for agent \"{}\"", who.agent);
    if let Some(node) = &who.node {
        s.push_str(&format!(" node \"{node}\""));
    }
    s.push_str(&format!(" on target \"{}\": ", who.target));
    match cause {
        DenyCause::Default => {
            s.push_str("no policy permits it (default deny). Request access with: ");
            s.push_str(&grant_request_command(who, access));
        }
        DenyCause::Forbid(ids) => {
            let quoted: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
            let noun = if ids.len() == 1 { "policy" } else { "policies" };
            // A grant cannot lift a forbid, so pointing at `grant request` would mislead.
            s.push_str(&format!(
                "denied by {noun} {} (forbid). Ask the policy owners to change the rule.",
                quoted.join(", ")
            ));
        }
        DenyCause::EvaluationError => {
            s.push_str("policy evaluation error (denied to fail closed). Ask the policy owners to check the policies.");
        }
    }
    s
}

/// A ready-to-paste command; placeholders stay for what only a human can say (why).
pub(crate) fn grant_request_command(who: &SessionIdentity, access: &Access) -> String {
    let mut c = format!("warden grant request --agent {}", shell_word(&who.agent));
    if let Some(node) = &who.node {
        c.push_str(&format!(" --node {}", shell_word(node)));
    }
    c.push_str(&format!(
        " --target {} --action {}",
        shell_word(&who.target),
        access.action.as_str()
    ));
    if let Some(object) = &access.object {
        let (flag, name) = match object {
            ObjectRef::Table(n) => ("--tables", n),
            ObjectRef::Function(n) => ("--functions", n),
            ObjectRef::Channel(n) => ("--channels", n),
            ObjectRef::Setting(n) => ("--settings", n),
        };
        c.push_str(&format!(" {flag} {}", shell_word(name)));
    }
    c.push_str(" --for 15m --reason \"...\"");
    c
}

/// Quotes a word for POSIX shells only when needed, so the common case stays readable and
/// an odd name (spaces, quotes) cannot turn the pasted command into something else.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '@' | '+' | ',')
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("billing-bot"), "billing-bot");
        assert_eq!(shell_word("public.customers"), "public.customers");
        assert_eq!(shell_word("my table"), "'my table'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
