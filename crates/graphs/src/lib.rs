//! Reviewed graph versions at the gateway (issue 11), shared by the database path
//! (`crates/warden/src/gate.rs`) and the HTTP, LLM and MCP gateway (`crates/http`).
//!
//! A manifest names the graph, its version digest, its nodes and the privileges each node
//! asks for; once a human approves the version, a caller carrying it (`gv` token claim) may
//! do only what both policy and the manifest allow. Manifest layout (the Python client's
//! `warden_langgraph.manifest()` output is accepted as is):
//! ```json
//! {"format": "warden-graph-manifest/v1", "name": "support", "digest": "<sha256 hex>",
//!  "nodes": ["lookup", "refund", "writer"], "edges": [...],
//!  "privileges": {"lookup": ["select:public.customers", "http_request:GET /customers/*"],
//!                 "refund": [{"target": "test", "actions": ["update"], "tables": ["public.orders"]}],
//!                 "writer": [{"target": "ai", "models": ["small"]}, {"target": "shop", "tools": ["refund"]}]}}
//! ```
//! A string privilege is `action[:object]` on any target: a table for database actions,
//! `"METHOD /path"` (a trailing `*` covers everything under it) for `http_request`, a model
//! for `llm_call`, a tool for `mcp_tool_call`. An object names `target` (absent = any) and
//! `actions` (`read`/`write` shorthands allowed) with `tables` (absent or `"*"` = every
//! table), or `routes`, `models`, `tools` (each implies its action). With `format` set, the
//! digest is recomputed over format, nodes, edges and privileges (canonical JSON, as the
//! client computes it) and must match.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use warden_core::{Access, Action, ObjectRef};

mod gate;
pub use gate::{ApprovedManifest, GatewayAccess, GraphGate};

pub const MANIFEST_FORMAT: &str = "warden-graph-manifest/v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privilege {
    /// None: any target.
    pub target: Option<String>,
    /// Warden action ids (database actions and the gateway's `http_request`, `llm_call`,
    /// `mcp_tool_call`).
    pub actions: Vec<String>,
    /// Qualified table names; empty: every table.
    pub tables: Vec<String>,
    /// For the gateway's actions: route patterns (`"GET /customers/*"`), model names or
    /// tool names; empty: every one on the target.
    pub objects: Vec<String>,
}

/// The gateway's actions, which name routes, models and tools instead of tables.
pub const GATEWAY_ACTIONS: [&str; 3] = ["http_request", "llm_call", "mcp_tool_call"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub graph_id: String,
    pub digest: String,
    pub nodes: Vec<String>,
    pub privileges: BTreeMap<String, Vec<Privilege>>,
}

/// Table names as the classifier reports them (unqualified → `public.`, `pg_*` →
/// `pg_catalog.`).
pub fn qualify_table(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n == "*" || n.contains('.') {
        n
    } else if n.starts_with("pg_") {
        format!("pg_catalog.{n}")
    } else {
        format!("public.{n}")
    }
}

fn expand_action(a: &str) -> Result<Vec<String>, String> {
    let a = a.trim().to_ascii_lowercase();
    Ok(match a.as_str() {
        "read" => vec!["select".into()],
        "write" => vec!["insert".into(), "update".into(), "delete".into()],
        other if Action::ALL.iter().any(|x| x.as_str() == other) || GATEWAY_ACTIONS.contains(&other) => vec![other.to_string()],
        other => return Err(format!("unknown action {other:?} (read, write, or one of {}, {})", Action::ALL.map(|x| x.as_str()).join(", "), GATEWAY_ACTIONS.join(", "))),
    })
}

/// JSON with object keys sorted and no whitespace: what Python's
/// `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            out.push('{');
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The digest the client computes for a `warden-graph-manifest/v1` manifest.
pub fn v1_digest(manifest: &Value) -> String {
    let body = json!({"format": manifest.get("format"), "nodes": manifest.get("nodes"), "edges": manifest.get("edges").cloned().unwrap_or(json!([])), "privileges": manifest.get("privileges")});
    let mut s = String::new();
    canonical(&body, &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn parse_privilege(node: &str, p: &Value) -> Result<Privilege, String> {
    let ctx = |e: String| format!("privileges[{node:?}]: {e}");
    match p {
        Value::String(s) => {
            let (action, object) = match s.split_once(':') {
                Some((a, t)) => (a, Some(t.trim())),
                None => (s.as_str(), None),
            };
            let actions = expand_action(action).map_err(ctx)?;
            if GATEWAY_ACTIONS.contains(&actions[0].as_str()) {
                let objects = object.filter(|o| *o != "*").map(|o| vec![gateway_object(&actions[0], o)]).unwrap_or_default();
                return Ok(Privilege { target: None, actions, tables: Vec::new(), objects });
            }
            Ok(Privilege { target: None, actions, tables: object.map(qualify_table).into_iter().filter(|t| t != "*").collect(), objects: Vec::new() })
        }
        Value::Object(o) => {
            let mut actions = Vec::new();
            let mut objects = Vec::new();
            for (key, action) in [("routes", "http_request"), ("models", "llm_call"), ("tools", "mcp_tool_call")] {
                match o.get(key) {
                    None => {}
                    Some(Value::Array(list)) => {
                        actions.push(action.to_string());
                        for item in list {
                            let item = item.as_str().ok_or_else(|| ctx(format!("{key} must be strings")))?.trim();
                            if item != "*" {
                                objects.push(gateway_object(action, item));
                            }
                        }
                    }
                    Some(_) => return Err(ctx(format!("{key} must be a list"))),
                }
            }
            let listed: Vec<&Value> = match (o.get("actions"), o.get("action")) {
                (Some(Value::Array(a)), _) => a.iter().collect(),
                (_, Some(v)) => vec![v],
                _ if !actions.is_empty() => Vec::new(),
                _ => return Err(ctx("an object privilege needs \"actions\" (or \"routes\", \"models\", \"tools\")".into())),
            };
            for a in listed {
                actions.extend(expand_action(a.as_str().ok_or_else(|| ctx("actions must be strings".into()))?).map_err(ctx)?);
            }
            let tables: Vec<String> = match o.get("tables") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(t)) => t.iter().filter_map(Value::as_str).map(qualify_table).filter(|t| t != "*").collect(),
                Some(_) => return Err(ctx("tables must be a list".into())),
            };
            let target = o.get("target").and_then(Value::as_str).map(str::to_string);
            Ok(Privilege { target, actions, tables, objects })
        }
        _ => Err(ctx("each privilege is a string (\"select:public.orders\") or an object".into())),
    }
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("the manifest is not JSON: {e}"))?;
        Self::from_value(&v)
    }

    pub fn from_value(v: &Value) -> Result<Manifest, String> {
        let o = v.as_object().ok_or("the manifest must be a JSON object")?;
        let graph_id = ["graph_id", "graph", "name"].iter().find_map(|k| o.get(*k).and_then(Value::as_str)).ok_or("graph_id: required (the graph's name)")?.to_string();
        let digest = ["digest", "version"].iter().find_map(|k| o.get(*k).and_then(Value::as_str)).ok_or("digest: required (the graph version's digest)")?.trim().to_string();
        if digest.is_empty() || digest.len() > 200 {
            return Err("digest: must be 1 to 200 characters".into());
        }
        let mut nodes = Vec::new();
        let mut privileges: BTreeMap<String, Vec<Privilege>> = BTreeMap::new();
        for n in o.get("nodes").and_then(Value::as_array).ok_or("nodes: required (a list)")? {
            match n {
                Value::String(s) => nodes.push(s.clone()),
                Value::Object(no) => {
                    let name = no.get("name").or_else(|| no.get("id")).and_then(Value::as_str).ok_or("nodes[]: an object node needs a name")?.to_string();
                    for p in no.get("privileges").and_then(Value::as_array).into_iter().flatten() {
                        privileges.entry(name.clone()).or_default().push(parse_privilege(&name, p)?);
                    }
                    nodes.push(name);
                }
                _ => return Err("nodes[]: a node is a name or an object".into()),
            }
        }
        if let Some(p) = o.get("privileges") {
            let p = p.as_object().ok_or("privileges: must map node names to lists")?;
            for (node, list) in p {
                if !nodes.contains(node) {
                    return Err(format!("privileges: node {node:?} is not among nodes"));
                }
                for item in list.as_array().ok_or_else(|| format!("privileges[{node:?}]: must be a list"))? {
                    privileges.entry(node.clone()).or_default().push(parse_privilege(node, item)?);
                }
            }
        }
        if let Some(f) = o.get("format").and_then(Value::as_str) {
            if f != MANIFEST_FORMAT {
                return Err(format!("format: {f:?} is not supported (expected {MANIFEST_FORMAT:?})"));
            }
            let computed = v1_digest(v);
            if !computed.eq_ignore_ascii_case(&digest) {
                return Err(format!("digest: the manifest's content hashes to {computed}, not {digest}; the digest must cover exactly what is submitted"));
            }
        }
        Ok(Manifest { graph_id, digest, nodes, privileges })
    }

    /// Whether the manifest lets `node` take this access on `target`. Tables must be listed
    /// (or the privilege cover every table); other accesses need their action listed.
    pub fn permits(&self, node: Option<&str>, target: &str, access: &Access) -> bool {
        let Some(node) = node else { return false };
        let Some(privs) = self.privileges.get(node) else { return false };
        let action = access.action.as_str();
        privs.iter().any(|p| {
            p.target.as_deref().is_none_or(|t| t == target)
                && p.actions.iter().any(|a| a == action)
                && match &access.object {
                    Some(ObjectRef::Table(t)) => p.tables.is_empty() || p.tables.iter().any(|x| x == t),
                    _ => true,
                }
        })
    }

    /// Whether the manifest lets `node` take a gateway action on `target`: `object` is
    /// `"METHOD /path"` (normalized) for `http_request`, the model for `llm_call`, the tool
    /// for `mcp_tool_call`.
    pub fn permits_gateway(&self, node: Option<&str>, target: &str, action: &str, object: &str) -> bool {
        let Some(node) = node else { return false };
        let Some(privs) = self.privileges.get(node) else { return false };
        privs.iter().any(|p| {
            p.target.as_deref().is_none_or(|t| t == target)
                && p.actions.iter().any(|a| a == action)
                && (p.objects.is_empty() || p.objects.iter().any(|pat| object_matches(action, pat, object)))
        })
    }
}


/// Route patterns are kept as `"METHOD /path"` with the method upper-cased (a bare path
/// means any method); models and tools as written. Also the form of JIT grant objects.
pub fn gateway_object(action: &str, o: &str) -> String {
    if action != "http_request" {
        return o.to_string();
    }
    match o.split_once(' ') {
        Some((m, p)) => format!("{} {}", m.to_ascii_uppercase(), p.trim()),
        None => format!("* {o}"),
    }
}

/// A route pattern matches its exact path, or every path under it when it ends in `*`;
/// method `*` matches any method. Models and tools match exactly. JIT grants of gateway
/// actions match their objects the same way.
pub fn object_matches(action: &str, pattern: &str, object: &str) -> bool {
    if action != "http_request" {
        return pattern == object;
    }
    let (Some((pm, pp)), Some((om, op))) = (pattern.split_once(' '), object.split_once(' ')) else { return false };
    (pm == "*" || pm == om)
        && match pp.strip_suffix('*') {
            Some(prefix) => op.starts_with(prefix),
            None => pp == op,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(action: Action, table: Option<&str>) -> Access {
        Access { action, object: table.map(|t| ObjectRef::Table(t.into())) }
    }

    #[test]
    fn string_and_object_privileges_and_the_intersection() {
        let m = Manifest::parse(r#"{"graph_id": "g", "digest": "d1", "nodes": ["lookup", "refund", "idle"],
            "privileges": {"lookup": ["read:customers", "transaction"],
                           "refund": [{"target": "prod", "actions": ["write"], "tables": ["public.orders"]}]}}"#)
        .unwrap();
        assert!(m.permits(Some("lookup"), "any", &access(Action::Select, Some("public.customers"))));
        assert!(!m.permits(Some("lookup"), "any", &access(Action::Select, Some("public.orders"))));
        assert!(m.permits(Some("lookup"), "any", &access(Action::Transaction, None)));
        assert!(!m.permits(Some("lookup"), "any", &access(Action::Delete, Some("public.customers"))));
        assert!(m.permits(Some("refund"), "prod", &access(Action::Delete, Some("public.orders"))));
        assert!(!m.permits(Some("refund"), "staging", &access(Action::Delete, Some("public.orders"))), "target named");
        assert!(!m.permits(Some("idle"), "prod", &access(Action::Select, None)), "no privileges, nothing");
        assert!(!m.permits(None, "prod", &access(Action::Select, None)), "no node, nothing");
        assert!(!m.permits(Some("ghost"), "prod", &access(Action::Select, None)));
    }

    #[test]
    fn gateway_privileges_name_routes_models_and_tools() {
        let m = Manifest::parse(r#"{"graph_id": "g", "digest": "d1", "nodes": ["reader", "writer"],
            "privileges": {"reader": ["http_request:get /customers/*", "llm_call:small"],
                           "writer": [{"target": "shop", "tools": ["refund"]}, {"target": "crm", "routes": ["POST /refunds"]}]}}"#)
        .unwrap();
        assert!(m.permits_gateway(Some("reader"), "crm", "http_request", "GET /customers/1"));
        assert!(!m.permits_gateway(Some("reader"), "crm", "http_request", "DELETE /customers/1"), "method named");
        assert!(!m.permits_gateway(Some("reader"), "crm", "http_request", "GET /customersX"), "under the prefix only");
        assert!(m.permits_gateway(Some("reader"), "ai", "llm_call", "small"));
        assert!(!m.permits_gateway(Some("reader"), "ai", "llm_call", "big"));
        assert!(m.permits_gateway(Some("writer"), "shop", "mcp_tool_call", "refund"));
        assert!(!m.permits_gateway(Some("writer"), "other", "mcp_tool_call", "refund"), "target named");
        assert!(m.permits_gateway(Some("writer"), "crm", "http_request", "POST /refunds"));
        assert!(!m.permits_gateway(Some("writer"), "crm", "http_request", "POST /refunds/2"));
        assert!(!m.permits_gateway(None, "crm", "http_request", "GET /customers/1"));
        assert!(!m.permits(Some("reader"), "crm", &access(Action::Select, Some("public.customers"))), "a route is not a table");
    }

    #[test]
    fn malformed_manifests_name_the_problem() {
        for (text, want) in [
            (r#"{"digest": "d", "nodes": []}"#, "graph_id"),
            (r#"{"graph_id": "g", "nodes": []}"#, "digest"),
            (r#"{"graph_id": "g", "digest": "d", "nodes": ["a"], "privileges": {"b": []}}"#, "not among nodes"),
            (r#"{"graph_id": "g", "digest": "d", "nodes": ["a"], "privileges": {"a": ["fly:t"]}}"#, "unknown action"),
            (r#"{"format": "warden-graph-manifest/v1", "graph_id": "g", "digest": "00", "nodes": [], "privileges": {}}"#, "hashes to"),
        ] {
            let e = Manifest::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn canonical_json_sorts_keys_without_spaces() {
        let mut s = String::new();
        canonical(&json!({"b": [1, {"d": "é", "c": null}], "a": true}), &mut s);
        assert_eq!(s, r#"{"a":true,"b":[1,{"c":null,"d":"é"}]}"#);
    }
}
