//! Decisions for the HTTP and LLM gateway (`crates/http`).
//!
//! - An internal-API request is one access: action `Warden::Action::"http_request"` on a
//!   `Warden::Route::"<METHOD> <path>"` (parent: the target), context [`HttpContext`]
//!   (the session fields plus `method` and `path`).
//! - A model call is one access: action `Warden::Action::"llm_call"` on a
//!   `Warden::Model::"<model>"` (parent: the target, attribute `high_cost`), context
//!   `LlmContext` (the session fields plus `endpoint`, `model`, `max_tokens`, `stream`).
//!
//! The path must already be normalized (the gateway refuses what it cannot normalize);
//! nothing here decodes or rewrites it. Policies for these actions are not in a
//! per-action slice of their own: `slice.rs` files every policy whose action scope names
//! an action outside [`Action::ALL`] (or no action) under every slice, so the `other`
//! slice of an agent holds every policy that can match `http_request` or `llm_call`.
//! Just-in-time grants name database actions only, so they do not apply here yet.

use super::{entity, sorted, Names, PolicyEngine};
use crate::classification::Action;
use crate::decision::{Decision, Effect};
use crate::identity::SessionIdentity;
use cedar_policy::{
    Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    Request, RestrictedExpression,
};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::OnceLock;

/// The Cedar action id of an internal-API request.
pub const HTTP_ACTION: &str = "http_request";
/// The Cedar action id of a model call.
pub const LLM_ACTION: &str = "llm_call";

/// One model call as the gateway parsed it from the request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmCall<'a> {
    /// "chat.completions", "completions", "responses", "embeddings", "messages".
    pub endpoint: &'a str,
    pub model: &'a str,
    /// The request's output cap, 0 when it set none.
    pub max_tokens: i64,
    pub stream: bool,
    /// From the target's configuration.
    pub high_cost: bool,
}

struct HttpNames {
    route: EntityTypeName,
    model: EntityTypeName,
    http_action: EntityUid,
    llm_action: EntityUid,
}

fn names() -> &'static HttpNames {
    static N: OnceLock<HttpNames> = OnceLock::new();
    N.get_or_init(|| {
        let ty = |n: &str| EntityTypeName::from_str(n).expect("static entity type names parse");
        let action = ty("Warden::Action");
        HttpNames {
            route: ty("Warden::Route"),
            model: ty("Warden::Model"),
            http_action: EntityUid::from_type_name_and_id(action.clone(), EntityId::new(HTTP_ACTION)),
            llm_action: EntityUid::from_type_name_and_id(action, EntityId::new(LLM_ACTION)),
        }
    })
}

impl PolicyEngine {
    /// Decides one internal-API request (`method` upper case, `path` normalized). `body`:
    /// the request's JSON body when it has one; an object becomes `context.body` (read
    /// with guards: `context.body has amount && context.body.amount <= 100`), anything
    /// else an empty record.
    pub fn decide_http(&self, who: &SessionIdentity, method: &str, path: &str, body: Option<&serde_json::Value>) -> Decision {
        let n = names();
        let what = format!("{method} {path}");
        let target_uid = Names::uid(&self.names.target, &who.target);
        let resource = EntityUid::from_type_name_and_id(n.route.clone(), EntityId::new(&what));
        let Ok(route) = entity(resource.clone(), &[("method", method), ("path", path)], Some(&target_uid)) else {
            return eval_error(who, &what);
        };
        let extra = [
            ("method", RestrictedExpression::new_string(method.to_string())),
            ("path", RestrictedExpression::new_string(path.to_string())),
            ("body", super::mcp::arguments_record(body.unwrap_or(&serde_json::Value::Null))),
        ];
        self.decide_one(who, &what, n.http_action.clone(), resource, route, extra.into_iter().collect())
    }

    /// Decides one model call.
    pub fn decide_llm(&self, who: &SessionIdentity, call: &LlmCall<'_>) -> Decision {
        let n = names();
        let what = format!("model \"{}\" ({})", call.model, call.endpoint);
        let target_uid = Names::uid(&self.names.target, &who.target);
        let resource = EntityUid::from_type_name_and_id(n.model.clone(), EntityId::new(call.model));
        let attrs: HashMap<String, RestrictedExpression> = [
            ("name".to_string(), RestrictedExpression::new_string(call.model.to_string())),
            ("high_cost".to_string(), RestrictedExpression::new_bool(call.high_cost)),
        ]
        .into_iter()
        .collect();
        let Ok(model) = Entity::new(resource.clone(), attrs, HashSet::from([target_uid])) else {
            return eval_error(who, &what);
        };
        let extra = [
            ("endpoint", RestrictedExpression::new_string(call.endpoint.to_string())),
            ("model", RestrictedExpression::new_string(call.model.to_string())),
            ("max_tokens", RestrictedExpression::new_long(call.max_tokens)),
            ("stream", RestrictedExpression::new_bool(call.stream)),
        ];
        self.decide_one(who, &what, n.llm_action.clone(), resource, model, extra.into_iter().collect())
    }

    fn decide_one(
        &self,
        who: &SessionIdentity,
        what: &str,
        action: EntityUid,
        resource: EntityUid,
        resource_entity: Entity,
        extra: Vec<(&str, RestrictedExpression)>,
    ) -> Decision {
        let Ok((principal, entities, context)) = self.http_parts(who, resource_entity, extra) else {
            return eval_error(who, what);
        };
        let Ok(request) = Request::new(principal, action, resource, context, None) else {
            return eval_error(who, what);
        };
        let policies = self.slices.get(&who.agent, Action::Other);
        let response = self.authorizer.is_authorized(&request, policies, &entities);
        let diagnostics = response.diagnostics();
        if diagnostics.errors().next().is_some() {
            let ids = sorted(diagnostics.errors().map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => e.policy_id().to_string(),
            }));
            let mut d = eval_error(who, what);
            d.policy_ids = ids;
            return d;
        }
        let reasons = sorted(diagnostics.reason().map(|id| id.to_string()));
        match response.decision() {
            CedarDecision::Deny if reasons.is_empty() => Decision::deny_without_policy(format!(
                "{}no policy permits it (default deny). Ask the policy owners for a permit on this {}.",
                prefix(who, what),
                if action_is_llm(what) { "model" } else { "route" }
            )),
            CedarDecision::Deny => {
                let quoted: Vec<String> = reasons.iter().map(|id| format!("\"{id}\"")).collect();
                let noun = if reasons.len() == 1 { "policy" } else { "policies" };
                Decision {
                    effect: Effect::Deny,
                    reason: format!(
                        "{}denied by {noun} {} (forbid). Ask the policy owners to change the rule.",
                        prefix(who, what),
                        quoted.join(", ")
                    ),
                    policy_ids: reasons,
                    denied_access: None,
                    approval: None,
                    valid_until: None,
                }
            }
            CedarDecision::Allow => self.allow_or_hold(reasons, "request", None),
        }
    }

    fn http_parts(
        &self,
        who: &SessionIdentity,
        resource: Entity,
        extra: Vec<(&str, RestrictedExpression)>,
    ) -> Result<(EntityUid, Entities, Context), ()> {
        let n = &self.names;
        let agent_uid = Names::uid(&n.agent, &who.agent);
        let target_uid = Names::uid(&n.target, &who.target);
        let mut entities = Vec::with_capacity(4);
        entities.push(entity(agent_uid.clone(), &[("owner", &who.owner)], None)?);
        entities.push(entity(target_uid, &[("name", &who.target)], None)?);
        let principal = match &who.node {
            Some(node) => {
                let uid = Names::uid(&n.node, &format!("{}/{node}", who.agent));
                entities.push(entity(uid.clone(), &[("name", node)], Some(&agent_uid))?);
                uid
            }
            None => agent_uid,
        };
        entities.push(resource);
        let entities = Entities::from_entities(entities, None).map_err(|_| ())?;
        let s = |v: &str| RestrictedExpression::new_string(v.to_string());
        let mut pairs = vec![
            ("node".to_string(), s(who.node.as_deref().unwrap_or(""))),
            ("agent".to_string(), s(&who.agent)),
            ("owner".to_string(), s(&who.owner)),
            ("run".to_string(), s(who.run.as_deref().unwrap_or(""))),
            ("graph_version".to_string(), s(who.graph_version.as_deref().unwrap_or(""))),
            ("target".to_string(), s(&who.target)),
        ];
        pairs.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
        let context = Context::from_pairs(pairs).map_err(|_| ())?;
        Ok((principal, entities, context))
    }
}

fn action_is_llm(what: &str) -> bool {
    what.starts_with("model \"")
}

fn prefix(who: &SessionIdentity, what: &str) -> String {
    let mut s = format!("warden: {what} denied for agent \"{}\"", who.agent);
    if let Some(node) = &who.node {
        s.push_str(&format!(" node \"{node}\""));
    }
    s.push_str(&format!(" on target \"{}\": ", who.target));
    s
}

fn eval_error(who: &SessionIdentity, what: &str) -> Decision {
    Decision::deny_without_policy(format!(
        "{}policy evaluation error (denied to fail closed). Ask the policy owners to check the policies.",
        prefix(who, what)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(node: Option<&str>) -> SessionIdentity {
        SessionIdentity { agent: "bot".into(), owner: "o@example.com".into(), node: node.map(Into::into), run: Some("r1".into()), thread: None, graph_version: None, target: "crm".into() }
    }

    fn engine(text: &str) -> PolicyEngine {
        PolicyEngine::from_sources(&[("p.cedar".to_string(), text.to_string())]).unwrap_or_else(|e| panic!("{e}"))
    }

    const POLICY: &str = r#"
@id("read-customers")
permit(principal, action == Warden::Action::"http_request", resource in Warden::Target::"crm")
when { context.node == "reader" && resource.method == "GET" && resource.path like "/customers/*" };

@id("refunds-need-approval")
@approval("resume")
permit(principal, action == Warden::Action::"http_request", resource is Warden::Route in Warden::Target::"crm")
when { resource.method == "POST" && resource.path == "/refunds" };

@id("no-admin")
forbid(principal, action == Warden::Action::"http_request", resource)
when { resource.path like "/admin*" };

@id("cheap-models")
permit(principal in Warden::Agent::"bot", action == Warden::Action::"llm_call", resource in Warden::Target::"crm")
when { ["gpt-small", "gpt-big"].contains(context.model) && context.max_tokens <= 1000 };
"#;

    #[test]
    fn routes_are_decided_by_method_and_path() {
        let e = engine(POLICY);
        assert_eq!(e.decide_http(&who(Some("reader")), "GET", "/customers/1", None).effect, Effect::Allow);
        let d = e.decide_http(&who(Some("reader")), "DELETE", "/customers/1", None);
        assert_eq!(d.effect, Effect::Deny);
        assert!(d.reason.contains("default deny") && d.reason.contains("DELETE /customers/1"), "{}", d.reason);
        assert_eq!(e.decide_http(&who(Some("writer")), "GET", "/customers/1", None).effect, Effect::Deny);
        let d = e.decide_http(&who(Some("reader")), "POST", "/refunds", None);
        assert_eq!(d.effect, Effect::Hold);
        assert_eq!(d.approval.unwrap().mode.as_deref(), Some("resume"));
        let d = e.decide_http(&who(Some("reader")), "GET", "/admin/users", None);
        assert_eq!(d.effect, Effect::Deny);
        assert_eq!(d.policy_ids, vec!["no-admin".to_string()]);
    }

    #[test]
    fn json_body_fields_decide_with_guards() {
        let e = engine(
            r#"@id("small-refunds")
permit(principal, action == Warden::Action::"http_request", resource is Warden::Route in Warden::Target::"crm")
when { resource.path == "/refunds" && context.body has amount && context.body.amount <= 100 };"#,
        );
        let d = |path: &str, body: Option<serde_json::Value>| e.decide_http(&who(Some("billing")), "POST", path, body.as_ref()).effect;
        assert_eq!(d("/refunds", Some(serde_json::json!({"amount": 50, "note": "x"}))), Effect::Allow);
        assert_eq!(d("/refunds", Some(serde_json::json!({"amount": 500}))), Effect::Deny);
        assert_eq!(d("/refunds", Some(serde_json::json!({"amount": "50"}))), Effect::Deny, "a string is not a number");
        assert_eq!(d("/refunds", Some(serde_json::json!({"total": 50}))), Effect::Deny);
        assert_eq!(d("/refunds", Some(serde_json::json!([{"amount": 50}]))), Effect::Deny, "only objects become the body record");
        assert_eq!(d("/refunds", None), Effect::Deny);
        // An unguarded `context.body.amount` is refused when the policy loads (schema
        // validation), as for MCP arguments.
    }

    #[test]
    fn models_are_decided_by_name_and_cap() {
        let e = engine(POLICY);
        let call = |model, max_tokens| LlmCall { endpoint: "chat.completions", model, max_tokens, stream: false, high_cost: false };
        assert_eq!(e.decide_llm(&who(None), &call("gpt-small", 100)).effect, Effect::Allow);
        assert_eq!(e.decide_llm(&who(None), &call("gpt-small", 5000)).effect, Effect::Deny);
        assert_eq!(e.decide_llm(&who(None), &call("other", 10)).effect, Effect::Deny);
        // A database permit never allows an HTTP request.
        let e = engine(r#"permit(principal, action == Warden::Action::"select", resource);"#);
        assert_eq!(e.decide_http(&who(None), "GET", "/", None).effect, Effect::Deny);
    }
}
