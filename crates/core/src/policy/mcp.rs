//! Decisions for the MCP tool gateway (`crates/http/src/mcp.rs`).
//!
//! A tool call is one access: action `Warden::Action::"mcp_tool_call"` on a
//! `Warden::Tool::"<server>/<tool>"` (parent: the target, attributes `server` and `name`),
//! context `McpContext`: the session fields plus `server`, `tool`, `arguments` (the call's
//! JSON arguments as a Cedar record) and `sql_read_only`.
//!
//! Arguments are arbitrary JSON, so the schema declares `arguments` as an empty record and
//! the request is built without the schema (lenient): policies read arguments behind a
//! guard, `context.arguments has amount && context.arguments.amount <= 100`. JSON maps to
//! Cedar as objects to records, arrays to sets, integers to Long; a JSON value Cedar cannot
//! hold (a float, an integer beyond i64, `null`) is dropped from the record, so a guard on
//! it is false. (Strict validation types a guarded access as always false and reports an
//! "impossible policy" warning; the policy is accepted and evaluated on the real record.)
//!
//! `tools/list` shows a tool when the node may call it with some arguments:
//! [`PolicyEngine::mcp_tool_listed`] evaluates the policies without `arguments`, so a
//! policy that reads them errors (unknown) instead of deciding; a permit that is satisfied
//! or unknown lists the tool, a forbid that is satisfied hides it.

use super::{entity, quoted_list, sorted, Names, PolicyEngine};
use crate::classification::Action;
use crate::decision::{Decision, Effect};
use crate::identity::SessionIdentity;
use cedar_policy::{
    Context, Decision as CedarDecision, Entities, EntityId, EntityTypeName, EntityUid, Request,
    RestrictedExpression,
};
use std::str::FromStr;
use std::sync::OnceLock;

/// The Cedar action id of an MCP tool call.
pub const MCP_ACTION: &str = "mcp_tool_call";

/// One tool call as the gateway parsed it.
#[derive(Clone, Debug)]
pub struct ToolCall<'a> {
    /// The MCP target's name.
    pub server: &'a str,
    pub tool: &'a str,
    /// `params.arguments` (a JSON object; anything else is treated as `{}`).
    pub arguments: &'a serde_json::Value,
    /// From the PostgreSQL classifier when the target names SQL arguments.
    pub sql_read_only: bool,
}

struct McpNames {
    tool: EntityTypeName,
    action: EntityUid,
}

fn names() -> &'static McpNames {
    static N: OnceLock<McpNames> = OnceLock::new();
    N.get_or_init(|| {
        let ty = |n: &str| EntityTypeName::from_str(n).expect("static entity type names parse");
        McpNames { tool: ty("Warden::Tool"), action: EntityUid::from_type_name_and_id(ty("Warden::Action"), EntityId::new(MCP_ACTION)) }
    })
}

/// JSON to a Cedar value; `None` for what Cedar cannot hold (floats, huge integers, null).
fn cedar_value(v: &serde_json::Value) -> Option<RestrictedExpression> {
    use serde_json::Value;
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => n.as_i64().map(RestrictedExpression::new_long),
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Array(a) => Some(RestrictedExpression::new_set(a.iter().filter_map(cedar_value))),
        Value::Object(o) => {
            let pairs: Vec<(String, RestrictedExpression)> = o.iter().filter_map(|(k, v)| cedar_value(v).map(|e| (k.clone(), e))).collect();
            RestrictedExpression::new_record(pairs).ok()
        }
    }
}

/// Arguments as a Cedar record (`{}` when they are not a JSON object).
pub fn arguments_record(arguments: &serde_json::Value) -> RestrictedExpression {
    match arguments {
        serde_json::Value::Object(_) => cedar_value(arguments).unwrap_or_else(|| RestrictedExpression::new_record(Vec::<(String, RestrictedExpression)>::new()).expect("empty record")),
        _ => RestrictedExpression::new_record(Vec::<(String, RestrictedExpression)>::new()).expect("empty record"),
    }
}

impl PolicyEngine {
    /// Decides one `tools/call`.
    pub fn decide_mcp(&self, who: &SessionIdentity, call: &ToolCall<'_>) -> Decision {
        let what = format!("tool \"{}/{}\"", call.server, call.tool);
        let Ok((request, entities)) = self.mcp_request(who, call.server, call.tool, Some((call.arguments, call.sql_read_only))) else {
            return eval_error(who, &what);
        };
        let policies = self.slices.get(&who.agent, Action::Other);
        let response = self.authorizer.is_authorized(&request, policies, &entities);
        let diagnostics = response.diagnostics();
        if diagnostics.errors().next().is_some() && response.decision() == CedarDecision::Deny && diagnostics.reason().next().is_none() {
            // Only an erroring policy could have mattered: fail closed, naming it.
            let ids = sorted(diagnostics.errors().map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => e.policy_id().to_string(),
            }));
            let mut d = Decision::deny_without_policy(format!(
                "{}policy {} could not be evaluated on these arguments (a missing or mistyped argument; denied to fail closed). Guard argument reads with `context.arguments has <name>`.",
                prefix(who, &what),
                quoted_list(&ids)
            ));
            d.policy_ids = ids;
            return d;
        }
        let reasons = sorted(diagnostics.reason().map(|id| id.to_string()));
        match response.decision() {
            CedarDecision::Deny if reasons.is_empty() => Decision::deny_without_policy(format!(
                "{}no policy permits it (default deny). Ask the policy owners for a permit on this tool.",
                prefix(who, &what)
            )),
            CedarDecision::Deny => Decision {
                effect: Effect::Deny,
                reason: format!("{}denied by {} (forbid). Ask the policy owners to change the rule.", prefix(who, &what), quoted_list(&reasons)),
                policy_ids: reasons,
                denied_access: None,
                approval: None,
                valid_until: None,
            },
            CedarDecision::Allow => self.allow_or_hold(reasons, "tool call", None),
        }
    }

    /// Whether `tools/list` shows the tool to this caller: some permit is satisfied or
    /// depends on the arguments, and no forbid is satisfied regardless of them.
    pub fn mcp_tool_listed(&self, who: &SessionIdentity, server: &str, tool: &str) -> bool {
        let Ok((request, entities)) = self.mcp_request(who, server, tool, None) else {
            return false;
        };
        let policies = self.slices.get(&who.agent, Action::Other);
        let response = self.authorizer.is_authorized(&request, policies, &entities);
        let diagnostics = response.diagnostics();
        match response.decision() {
            CedarDecision::Allow => true,
            // A satisfied forbid hides the tool whatever the arguments.
            CedarDecision::Deny if diagnostics.reason().next().is_some() => false,
            CedarDecision::Deny => diagnostics.errors().any(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                    policies.policy(e.policy_id()).is_some_and(|p| p.effect() == cedar_policy::Effect::Permit)
                }
            }),
        }
    }

    /// The request and entities; `args` None leaves `arguments` and `sql_read_only` out of
    /// the context (listing).
    fn mcp_request(&self, who: &SessionIdentity, server: &str, tool: &str, args: Option<(&serde_json::Value, bool)>) -> Result<(Request, Entities), ()> {
        let n = &self.names;
        let m = names();
        let agent_uid = Names::uid(&n.agent, &who.agent);
        let target_uid = Names::uid(&n.target, &who.target);
        let resource = EntityUid::from_type_name_and_id(m.tool.clone(), EntityId::new(format!("{server}/{tool}")));
        let mut entities = Vec::with_capacity(4);
        entities.push(entity(agent_uid.clone(), &[("owner", &who.owner)], None)?);
        entities.push(entity(target_uid.clone(), &[("name", &who.target)], None)?);
        let principal = match &who.node {
            Some(node) => {
                let uid = Names::uid(&n.node, &format!("{}/{node}", who.agent));
                entities.push(entity(uid.clone(), &[("name", node)], Some(&agent_uid))?);
                uid
            }
            None => agent_uid,
        };
        entities.push(entity(resource.clone(), &[("server", server), ("name", tool)], Some(&target_uid))?);
        let entities = Entities::from_entities(entities, None).map_err(|_| ())?;
        let s = |v: &str| RestrictedExpression::new_string(v.to_string());
        let mut pairs = vec![
            ("node".to_string(), s(who.node.as_deref().unwrap_or(""))),
            ("agent".to_string(), s(&who.agent)),
            ("owner".to_string(), s(&who.owner)),
            ("run".to_string(), s(who.run.as_deref().unwrap_or(""))),
            ("graph_version".to_string(), s(who.graph_version.as_deref().unwrap_or(""))),
            ("target".to_string(), s(&who.target)),
            ("server".to_string(), s(server)),
            ("tool".to_string(), s(tool)),
        ];
        if let Some((arguments, read_only)) = args {
            pairs.push(("arguments".to_string(), arguments_record(arguments)));
            pairs.push(("sql_read_only".to_string(), RestrictedExpression::new_bool(read_only)));
        }
        let context = Context::from_pairs(pairs).map_err(|_| ())?;
        let request = Request::new(principal, m.action.clone(), resource, context, None).map_err(|_| ())?;
        Ok((request, entities))
    }
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
    Decision::deny_without_policy(format!("{}policy evaluation error (denied to fail closed). Ask the policy owners to check the policies.", prefix(who, what)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn who(node: Option<&str>) -> SessionIdentity {
        SessionIdentity { agent: "bot".into(), owner: "o@example.com".into(), node: node.map(Into::into), run: None, thread: None, graph_version: None, target: "shop".into() }
    }

    const POLICY: &str = r#"
@id("lookup")
permit(principal, action == Warden::Action::"mcp_tool_call", resource == Warden::Tool::"shop/lookup");

@id("small-refunds")
permit(principal, action == Warden::Action::"mcp_tool_call", resource == Warden::Tool::"shop/refund")
when { context.node == "billing" && context.arguments has amount && context.arguments.amount <= 100 };

@id("big-refunds-held")
@approval("resume")
permit(principal, action == Warden::Action::"mcp_tool_call", resource == Warden::Tool::"shop/refund")
when { context.node == "billing" && context.arguments has amount && context.arguments.amount > 100 && context.arguments.amount <= 1000 };

@id("read-only-sql")
permit(principal, action == Warden::Action::"mcp_tool_call", resource == Warden::Tool::"shop/sql.query")
when { context.sql_read_only };

@id("never-delete")
forbid(principal, action == Warden::Action::"mcp_tool_call", resource in Warden::Target::"shop")
when { resource.name like "delete*" };

@id("everything-else")
permit(principal, action == Warden::Action::"mcp_tool_call", resource in Warden::Target::"shop")
when { resource.name like "delete*" };
"#;

    fn engine() -> PolicyEngine {
        PolicyEngine::from_sources(&[("p.cedar".to_string(), POLICY.to_string())]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn call<'a>(tool: &'a str, args: &'a serde_json::Value) -> ToolCall<'a> {
        ToolCall { server: "shop", tool, arguments: args, sql_read_only: false }
    }

    #[test]
    fn arguments_decide() {
        let e = engine();
        let b = who(Some("billing"));
        assert_eq!(e.decide_mcp(&b, &call("refund", &json!({"amount": 50}))).effect, Effect::Allow);
        let d = e.decide_mcp(&b, &call("refund", &json!({"amount": 500})));
        assert_eq!(d.effect, Effect::Hold);
        assert_eq!(d.approval.unwrap().mode.as_deref(), Some("resume"));
        let d = e.decide_mcp(&b, &call("refund", &json!({"amount": 5000})));
        assert_eq!(d.effect, Effect::Deny);
        assert!(d.reason.contains("default deny") && d.reason.contains("shop/refund"), "{}", d.reason);
        // Missing, mistyped, float arguments never satisfy a guard.
        assert_eq!(e.decide_mcp(&b, &call("refund", &json!({}))).effect, Effect::Deny);
        assert_eq!(e.decide_mcp(&b, &call("refund", &json!({"amount": "50"}))).effect, Effect::Deny);
        assert_eq!(e.decide_mcp(&b, &call("refund", &json!({"amount": 50.5}))).effect, Effect::Deny);
        assert_eq!(e.decide_mcp(&b, &call("refund", &json!([1]))).effect, Effect::Deny);
        assert_eq!(e.decide_mcp(&who(Some("other")), &call("refund", &json!({"amount": 50}))).effect, Effect::Deny);
        let d = e.decide_mcp(&b, &call("delete_all", &json!({})));
        assert_eq!(d.effect, Effect::Deny);
        assert_eq!(d.policy_ids, vec!["never-delete".to_string()]);
        let sql = json!({"sql": "select 1"});
        let mut c = call("sql.query", &sql);
        assert_eq!(e.decide_mcp(&b, &c).effect, Effect::Deny);
        c.sql_read_only = true;
        assert_eq!(e.decide_mcp(&b, &c).effect, Effect::Allow);
        // Nested records and sets.
        let e2 = PolicyEngine::from_sources(&[(
            "n.cedar".to_string(),
            r#"permit(principal, action == Warden::Action::"mcp_tool_call", resource) when { context.arguments has q && context.arguments.q has tags && context.arguments.q.tags.contains("x") };"#.to_string(),
        )])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e2.decide_mcp(&b, &call("t", &json!({"q": {"tags": ["x", 1, null, 2.5]}}))).effect, Effect::Allow);
        assert_eq!(e2.decide_mcp(&b, &call("t", &json!({"q": {"tags": ["y"]}}))).effect, Effect::Deny);
    }

    #[test]
    fn unguarded_argument_reads_are_refused_at_load() {
        let r = PolicyEngine::from_sources(&[(
            "u.cedar".to_string(),
            r#"permit(principal, action == Warden::Action::"mcp_tool_call", resource) when { context.arguments.amount <= 100 };"#.to_string(),
        )]);
        assert!(r.is_err());
    }

    #[test]
    fn listing_follows_what_may_be_called() {
        let e = engine();
        let b = who(Some("billing"));
        assert!(e.mcp_tool_listed(&b, "shop", "lookup"));
        assert!(e.mcp_tool_listed(&b, "shop", "refund"));
        assert!(!e.mcp_tool_listed(&who(Some("other")), "shop", "refund"));
        assert!(!e.mcp_tool_listed(&b, "shop", "delete_all"));
        assert!(!e.mcp_tool_listed(&b, "shop", "unknown"));
        // Depends on `sql_read_only`, unknown while listing.
        assert!(e.mcp_tool_listed(&b, "shop", "sql.query"));
    }
}
