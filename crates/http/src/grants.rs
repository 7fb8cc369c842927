//! Just-in-time grants for the gateway's actions (issue 15): an approved grant whose
//! actions name `http_request` (objects: route patterns `"GET /customers/*"`) or
//! `llm_call` (objects: model names) turns a default deny into an allow until it expires.
//! As on the database path, a grant never lifts a `forbid`, never an evaluation error, and
//! never the graph-version cap (applied after it). A stream a grant allowed ends when the
//! grant does.

use crate::proxy::{now_unix, HttpGateway};
use warden_core::{Decision, Effect, SessionIdentity};

/// How a default deny (no permit matched) ends, per `warden_core::policy::http`: only
/// these denials may be turned by a grant. Anything else (a forbid, an evaluation error)
/// stays denied.
fn is_default_deny(d: &Decision) -> bool {
    d.effect == Effect::Deny
        && d.policy_ids.is_empty()
        && (d.reason.ends_with("no policy permits it (default deny). Ask the policy owners for a permit on this route.")
            || d.reason.ends_with("no policy permits it (default deny). Ask the policy owners for a permit on this model."))
}

impl HttpGateway {
    /// The decision once active grants are taken into account. `action` is
    /// `http_request` or `llm_call`; `object` is `"METHOD /path"` or the model.
    pub(crate) async fn apply_grants(&self, who: &SessionIdentity, action: &'static str, object: &str, decision: Decision) -> Decision {
        if !is_default_deny(&decision) {
            return decision;
        }
        let (store, agent, target) = (self.deps.store.clone(), who.agent.clone(), who.target.clone());
        let now = now_unix();
        let grants = match tokio::task::spawn_blocking(move || store.active_grants(&agent, &target, now)).await {
            Ok(Ok(g)) => g,
            _ => return Decision::deny_without_policy("warden: denied because grants cannot be read (store unavailable; fail closed)"),
        };
        let best = grants
            .into_iter()
            .filter(|g| !g.revoked && g.expires_at > now)
            .filter(|g| g.node.as_ref().is_none_or(|n| who.node.as_ref() == Some(n)) && g.run.as_ref().is_none_or(|r| who.run.as_ref() == Some(r)))
            .filter(|g| g.actions.iter().any(|a| a == action))
            .filter(|g| g.objects.is_empty() || g.objects.iter().any(|pat| warden_graphs::object_matches(action, &warden_graphs::gateway_object(action, pat), object)))
            .max_by_key(|g| g.expires_at);
        match best {
            Some(g) => Decision {
                effect: Effect::Allow,
                reason: format!("warden: allowed by just-in-time grant {} (until {})", g.id, g.expires_at),
                policy_ids: vec![format!("grant:{}", g.id)],
                denied_access: None,
                approval: None,
                valid_until: Some(g.expires_at),
            },
            None => {
                let mut d = decision;
                let node = who.node.as_deref().unwrap_or("-");
                d.reason.push_str(&format!(
                    " Or request temporary access with: warden grant request --agent {} --node {node} --target {} --action {action} --tables \"{object}\" --for 15m --reason \"...\"",
                    who.agent, who.target
                ));
                d
            }
        }
    }
}
