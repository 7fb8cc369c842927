//! Policy load errors, shaped for `warden policy check FILE`: every problem names its
//! source, line and column, so an operator can jump straight to it. Cedar's own messages
//! are kept because they are precise; only its byte offsets are turned into lines.

use miette::Diagnostic;
use std::fmt;

/// One problem found while loading policies (or, for [`super::PolicyEngine::warnings`], a
/// suspicious but accepted policy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyProblem {
    /// The `source_name` given to [`super::PolicyEngine::from_sources`].
    pub source: String,
    /// 1-based; `None` when Cedar gave no location (rare: problems about the whole set).
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    /// The policy's id (its `@id` or generated id) when the problem belongs to one policy.
    pub policy_id: Option<String>,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
    }
}

/// Everything wrong with a set of policy sources; one problem per line in `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub problems: Vec<PolicyProblem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

/// 1-based (line, column) of a byte offset; offsets past the end or inside a UTF-8
/// sequence are clamped rather than trusted, since they come from another crate.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Builds a problem from a Cedar diagnostic whose labels are byte spans into `text`.
pub(crate) fn from_diagnostic(
    source: &str,
    text: &str,
    policy_id: Option<String>,
    diag: &dyn Diagnostic,
    message: String,
) -> PolicyProblem {
    let offset = diag
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset());
    let (line, column) = match offset {
        Some(o) => {
            let (l, c) = line_col(text, o);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    PolicyProblem {
        source: source.to_string(),
        line,
        column,
        policy_id,
        message,
        help: diag.help().map(|h| h.to_string()),
    }
}

/// Orders problems by source and position, and folds the copies Cedar emits per request
/// type: strict validation checks a policy once for every (principal, action, resource)
/// combination it may apply to, so one typo can come back twenty times.
pub(crate) fn collapse(
    mut problems: Vec<PolicyProblem>,
    sources: &[(String, String)],
) -> Vec<PolicyProblem> {
    let source_index = |name: &str| {
        sources
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or(usize::MAX)
    };
    problems.sort_by(|a, b| {
        (
            source_index(&a.source),
            a.line,
            a.column,
            &a.policy_id,
            &a.message,
        )
            .cmp(&(
                source_index(&b.source),
                b.line,
                b.column,
                &b.policy_id,
                &b.message,
            ))
    });
    let mut out: Vec<(PolicyProblem, usize)> = Vec::new();
    for p in problems {
        match out.last_mut() {
            Some((first, n))
                if first.line.is_some()
                    && (&first.source, first.line, first.column, &first.policy_id)
                        == (&p.source, p.line, p.column, &p.policy_id)
                    && without_type_names(&first.message) == without_type_names(&p.message) =>
            {
                *n += 1
            }
            _ => out.push((p, 0)),
        }
    }
    out.into_iter()
        .map(|(mut p, similar)| {
            if similar > 0 {
                p.message.push_str(&format!(
                    " (and the same for {similar} more actions or resource types)"
                ));
                if p.message.contains("on entity type") {
                    // Cedar's own hint ("did you mean ...") names an attribute of the wrong
                    // type here; the fix is to narrow the type first.
                    p.help = Some(
                        "the attribute exists only on some of the types this policy covers: test \
                         `resource is Warden::Table` (or narrow the scope) before reading it"
                            .to_string(),
                    );
                }
            }
            p
        })
        .collect()
}

/// The message with `Warden::...` names blanked, so copies that differ only in the
/// action or entity type they were checked for compare equal.
fn without_type_names(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("Warden::") {
        out.push_str(&rest[..at]);
        out.push('_');
        let tail = &rest[at..];
        let mut end = tail
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if tail[end..].starts_with('"') {
            // Action ids: `Warden::Action::"select"`.
            end += 1 + tail[end + 1..]
                .find('"')
                .map_or(tail.len() - end - 1, |q| q + 1);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn type_names_are_blanked() {
        assert_eq!(
            super::without_type_names("in context for Warden::Action::\"set_role\" not found"),
            "in context for _ not found"
        );
        assert_eq!(
            super::without_type_names("type `Warden::Setting` not"),
            "type `_` not"
        );
    }

    #[test]
    fn offsets_map_to_lines_and_columns() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 5), (2, 3));
        // Inside the two-byte 'é': clamp back to its start.
        assert_eq!(line_col(t, 6), (2, 3));
        assert_eq!(line_col(t, 8), (3, 1));
        assert_eq!(line_col(t, 100), (3, 2));
    }
}
