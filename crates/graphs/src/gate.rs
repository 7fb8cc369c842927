//! The cap an approved graph version puts on a policy decision: the effective right is
//! policy AND manifest. A denial stays as it is; an allow, hold or needs-grant becomes a
//! denial when the caller's version is missing (and required), unknown, unapproved, or its
//! manifest does not list the access.

use crate::Manifest;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use warden_core::{Classification, Decision, Effect, SessionIdentity};
use warden_store::{GraphStatus, Store};

/// The manifest a caller is bound by: None when it carries no graph version and none is
/// required; the parse error of a stored manifest that cannot be read (denies everything).
pub type ApprovedManifest = Option<Arc<Result<Manifest, String>>>;

pub struct GraphGate {
    /// `[graphs] require_approved_version`: tokens without `gv` get no privileges either.
    require_approved: AtomicBool,
    /// Parsed manifests by graph version id (immutable once stored).
    parsed: quick_cache::sync::Cache<String, Arc<Result<Manifest, String>>>,
}

/// One access through the HTTP, LLM or MCP gateway, as a manifest names it.
pub struct GatewayAccess<'a> {
    /// `http_request`, `llm_call` or `mcp_tool_call`.
    pub action: &'a str,
    /// `"METHOD /path"`, the model, or the tool.
    pub object: &'a str,
    /// How the denial names it: `GET /customers/1`, `model "small"`, `tool "shop/refund"`.
    pub described: &'a str,
}

fn deny(reason: String, access: Option<warden_core::Access>) -> Decision {
    Decision { effect: Effect::Deny, policy_ids: vec!["graph-version".into()], denied_access: access, reason, approval: None, valid_until: None }
}

fn node_phrase(id: &SessionIdentity) -> String {
    id.node.as_deref().map(|n| format!("node \"{n}\"")).unwrap_or_else(|| "a caller without a node".into())
}

impl GraphGate {
    pub fn new(require_approved: bool) -> Self {
        GraphGate { require_approved: AtomicBool::new(require_approved), parsed: quick_cache::sync::Cache::new(1024) }
    }

    /// For a gateway built before the setting is known (the HTTP gateway's constructor
    /// takes no `[graphs]` section).
    pub fn set_require_approved(&self, required: bool) {
        self.require_approved.store(required, Ordering::Release);
    }

    /// The approved manifest the caller is bound by: Ok(None) when it carries no version
    /// and none is required (policy alone decides), Err with the denial otherwise.
    pub fn approved_manifest(&self, store: &dyn Store, id: &SessionIdentity) -> Result<ApprovedManifest, Box<Decision>> {
        let agent = &id.agent;
        let Some(gv) = id.graph_version.as_deref() else {
            if self.require_approved.load(Ordering::Acquire) {
                return Err(Box::new(deny(format!("warden: denied: this gateway requires an approved graph version ([graphs] require_approved_version) and the token of agent \"{agent}\" carries none; submit the graph's manifest (warden graph submit --agent {agent} --file manifest.json, or POST /v1/graphs), have it approved, and request tokens with graph_version"), None)));
            }
            return Ok(None);
        };
        let found = match store.graph_by_digest(agent, gv) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot read graph versions");
                return Err(Box::new(deny("warden: denied because graph versions cannot be read (store unavailable; fail closed)".into(), None)));
            }
        };
        let g = match found {
            None => return Err(Box::new(deny(format!("warden: denied: graph version {gv} of agent \"{agent}\" is unknown; submit its manifest (warden graph submit --agent {agent} --file manifest.json, or POST /v1/graphs) and have an approver who is not its owner approve it"), None))),
            Some(g) if g.status == GraphStatus::Pending => return Err(Box::new(deny(format!("warden: denied: graph version {gv} of agent \"{agent}\" is pending review ({}); an approver who is neither its owner nor its submitter runs: warden graph approve {} --as EMAIL --reason \"...\"", g.id, g.id), None))),
            Some(g) if g.status == GraphStatus::Denied => return Err(Box::new(deny(format!("warden: denied: graph version {gv} of agent \"{agent}\" was denied by {}: {}; submit a new version", g.decided_by.clone().unwrap_or_default(), g.reason.clone().unwrap_or_default()), None))),
            Some(g) => g,
        };
        let manifest = match self.parsed.get(&g.id) {
            Some(m) => m,
            None => {
                let m = Arc::new(Manifest::parse(&g.manifest));
                self.parsed.insert(g.id.clone(), m.clone());
                m
            }
        };
        Ok(Some(manifest))
    }

    /// The database path: every access of the classified statement must be in the manifest.
    pub fn cap_to_approved_manifest(&self, store: &dyn Store, id: &SessionIdentity, c: &Classification, decision: Decision) -> Decision {
        if decision.effect == Effect::Deny {
            return decision;
        }
        let manifest = match self.approved_manifest(store, id) {
            Ok(None) => return decision,
            Ok(Some(m)) => m,
            Err(denial) => return *denial,
        };
        cap_statement(&manifest, id, c).unwrap_or(decision)
    }

    /// The HTTP, LLM and MCP gateway: the one access must be in the manifest.
    pub fn cap_gateway_access(&self, manifest: Option<&Result<Manifest, String>>, id: &SessionIdentity, access: &GatewayAccess<'_>, decision: Decision) -> Decision {
        if decision.effect == Effect::Deny {
            return decision;
        }
        let Some(manifest) = manifest else { return decision };
        let gv = id.graph_version.as_deref().unwrap_or("-");
        let m = match manifest {
            Ok(m) => m,
            Err(e) => return deny(format!("warden: denied: the approved manifest of graph version {gv} cannot be read ({e})"), None),
        };
        if m.permits_gateway(id.node.as_deref(), &id.target, access.action, access.object) {
            return decision;
        }
        deny(
            format!(
                "warden: denied: {} ({}) on target \"{}\" is not in the approved manifest of graph version {gv} for {} (policy alone is not enough: the effective right is policy AND manifest); submit a new graph version that asks for it",
                access.described,
                access.action,
                id.target,
                node_phrase(id)
            ),
            None,
        )
    }
}

fn cap_statement(manifest: &Result<Manifest, String>, id: &SessionIdentity, c: &Classification) -> Option<Decision> {
    let gv = id.graph_version.as_deref().unwrap_or("-");
    let manifest = match manifest {
        Ok(m) => m,
        Err(e) => return Some(deny(format!("warden: denied: the approved manifest of graph version {gv} cannot be read ({e})"), None)),
    };
    for s in &c.statements {
        for access in &s.accesses {
            if !manifest.permits(id.node.as_deref(), &id.target, access) {
                let node = id.node.as_deref().map(|n| format!("node \"{n}\"")).unwrap_or_else(|| "a session without a node".into());
                return Some(deny(
                    format!("warden: denied: {access} is not in the approved manifest of graph version {gv} for {node} (policy alone is not enough: the effective right is policy AND manifest); submit a new graph version that asks for it"),
                    Some(access.clone()),
                ));
            }
        }
    }
    None
}
