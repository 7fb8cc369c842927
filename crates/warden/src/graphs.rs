//! Graph versions at the gateway and on the command line (issue 11).
//!
//! Enforcement ([`GraphGate::cap_to_approved_manifest`]) runs after the Cedar decision: a
//! session whose token carries a graph version (`gv`) gets no privileges unless that version
//! is approved for its agent, and then only what the approved manifest lists for its node.
//! The effective right is the intersection of policy and manifest.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::process::ExitCode;
use std::sync::Arc;
use warden_api::graphs::{graph_decision_event, graph_json, Manifest};
use warden_core::{Classification, Decision, Effect, SessionIdentity};
use warden_store::{GraphStatus, Store};

pub struct GraphGate {
    /// `[graphs] require_approved_version`: tokens without `gv` get no privileges either.
    require_approved: bool,
    /// Parsed manifests by graph version id (immutable once stored).
    parsed: quick_cache::sync::Cache<String, Arc<Result<Manifest, String>>>,
}

fn deny(reason: String, access: Option<warden_core::Access>) -> Decision {
    Decision { effect: Effect::Deny, policy_ids: vec!["graph-version".into()], denied_access: access, reason, approval: None, valid_until: None }
}

impl GraphGate {
    pub fn new(require_approved: bool) -> Self {
        GraphGate { require_approved, parsed: quick_cache::sync::Cache::new(1024) }
    }

    /// Narrows a policy decision to what the session's approved graph version allows. A
    /// denial stays as it is; an allow, hold or needs-grant becomes a denial when the
    /// version is missing, unapproved, or its manifest does not list the access.
    pub fn cap_to_approved_manifest(&self, store: &dyn Store, id: &SessionIdentity, c: &Classification, decision: Decision) -> Decision {
        if decision.effect == Effect::Deny {
            return decision;
        }
        let agent = &id.agent;
        let Some(gv) = id.graph_version.as_deref() else {
            if self.require_approved {
                return deny(format!("warden: denied: this gateway requires an approved graph version ([graphs] require_approved_version) and the token of agent \"{agent}\" carries none; submit the graph's manifest (warden graph submit --agent {agent} --file manifest.json, or POST /v1/graphs), have it approved, and request tokens with graph_version"), None);
            }
            return decision;
        };
        let found = match store.graph_by_digest(agent, gv) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot read graph versions");
                return deny("warden: denied because graph versions cannot be read (store unavailable; fail closed)".into(), None);
            }
        };
        let g = match found {
            None => return deny(format!("warden: denied: graph version {gv} of agent \"{agent}\" is unknown; submit its manifest (warden graph submit --agent {agent} --file manifest.json, or POST /v1/graphs) and have an approver who is not its owner approve it"), None),
            Some(g) if g.status == GraphStatus::Pending => return deny(format!("warden: denied: graph version {gv} of agent \"{agent}\" is pending review ({}); an approver who is neither its owner nor its submitter runs: warden graph approve {} --as EMAIL --reason \"...\"", g.id, g.id), None),
            Some(g) if g.status == GraphStatus::Denied => return deny(format!("warden: denied: graph version {gv} of agent \"{agent}\" was denied by {}: {}; submit a new version", g.decided_by.clone().unwrap_or_default(), g.reason.clone().unwrap_or_default()), None),
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
        let manifest = match manifest.as_ref() {
            Ok(m) => m,
            Err(e) => return deny(format!("warden: denied: the approved manifest of graph version {gv} cannot be read ({e})"), None),
        };
        for s in &c.statements {
            for access in &s.accesses {
                if !manifest.permits(id.node.as_deref(), &id.target, access) {
                    let node = id.node.as_deref().map(|n| format!("node \"{n}\"")).unwrap_or_else(|| "a session without a node".into());
                    return deny(
                        format!("warden: denied: {access} is not in the approved manifest of graph version {gv} for {node} (policy alone is not enough: the effective right is policy AND manifest); submit a new graph version that asks for it"),
                        Some(access.clone()),
                    );
                }
            }
        }
        decision
    }
}

#[derive(Subcommand)]
pub enum GraphCmd {
    /// Submit a graph version's manifest for review.
    Submit {
        #[arg(long)]
        agent: String,
        /// The manifest (JSON): graph id, version digest, nodes and each node's privileges.
        #[arg(long)]
        file: std::path::PathBuf,
        /// Who submits (an email); default: the agent itself. The submitter cannot approve.
        #[arg(long = "as")]
        submitter: Option<String>,
    },
    List {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    Show {
        id: String,
    },
    /// Approve a pending version (not by its submitter or the agent's owner).
    Approve {
        id: String,
        #[arg(long = "as")]
        approver: String,
        #[arg(long)]
        reason: String,
    },
    Deny {
        id: String,
        #[arg(long = "as")]
        approver: String,
        #[arg(long)]
        reason: String,
    },
}

pub fn run(cmd: GraphCmd, config: &Config, store: Arc<dyn Store>) -> Result<ExitCode> {
    match cmd {
        GraphCmd::Submit { agent, file, submitter } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("--file {}: cannot read", file.display()))?;
            let m = Manifest::parse(&text).map_err(|e| anyhow::anyhow!("--file {}: {e}", file.display()))?;
            store.agent(&agent)?.with_context(|| format!("no agent named {agent:?}"))?;
            let by = submitter.map(|s| s.trim().to_ascii_lowercase()).unwrap_or_else(|| format!("agent:{agent}"));
            let g = store.submit_graph(&agent, &m.graph_id, &m.digest, text.trim(), &by)?;
            let mut ev = warden_audit::AuditEvent::new("graph_submitted", "hold");
            ev.agent = Some(agent.clone());
            ev.graph_version = Some(g.digest.clone());
            ev.extra.insert("graph_version_id".into(), g.id.clone().into());
            ev.extra.insert("graph_id".into(), g.graph_id.clone().into());
            ev.extra.insert("submitted_by".into(), by.into());
            crate::cli::AdminAudit::start(config, store)?.record("graph_submit", ev)?;
            println!("graph version {} submitted ({} {}); an approver who is neither the owner nor the submitter runs: warden graph approve {} --as EMAIL --reason \"...\"", g.id, g.graph_id, g.digest, g.id);
        }
        GraphCmd::List { agent, json } => {
            let rows = store.list_graphs(agent.as_deref(), 500)?;
            if json {
                println!("{}", serde_json::Value::Array(rows.iter().map(|g| graph_json(g, false)).collect()));
            } else {
                for g in rows {
                    println!("{:<24} {:<9} {:<20} {:<16} {}", g.id, g.status.as_str(), g.agent, g.graph_id, g.digest);
                }
            }
        }
        GraphCmd::Show { id } => {
            let g = store.graph_version(&id)?.with_context(|| format!("no graph version {id:?}"))?;
            println!("{}", serde_json::to_string_pretty(&graph_json(&g, true))?);
        }
        GraphCmd::Approve { id, approver, reason } | GraphCmd::Deny { id, approver, reason } if reason.trim().is_empty() => {
            let _ = (id, approver);
            bail!("--reason: say why (it is audited)");
        }
        GraphCmd::Approve { ref id, ref approver, ref reason } | GraphCmd::Deny { ref id, ref approver, ref reason } => {
            let approve = matches!(cmd, GraphCmd::Approve { .. });
            let approvers = config.identity_approvers().for_target(None);
            let g = warden_api::graphs::decide(store.as_ref(), &approvers, false, id, approver, approve, reason).map_err(|(_, msg)| anyhow::anyhow!(msg))?;
            crate::cli::AdminAudit::start(config, store)?.record(if approve { "graph_approve" } else { "graph_deny" }, graph_decision_event(&g, approve, "cli"))?;
            println!("graph version {id} {} by {}", g.status.as_str(), g.decided_by.unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}
