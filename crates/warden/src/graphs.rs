//! Graph versions on the command line (issue 11).
//!
//! Enforcement ([`GraphGate::cap_to_approved_manifest`], crate `warden-graphs`) runs after
//! the Cedar decision: a session whose token carries a graph version (`gv`) gets no
//! privileges unless that version is approved for its agent, and then only what the
//! approved manifest lists for its node. The effective right is the intersection of policy
//! and manifest.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::process::ExitCode;
use std::sync::Arc;
use warden_api::graphs::{graph_decision_event, graph_json};
use warden_graphs::Manifest;
use warden_store::Store;

/// The cap lives in `warden-graphs`, shared with the HTTP, LLM and MCP gateway.
pub use warden_graphs::GraphGate;

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
        /// Default: the human `warden login` signed in.
        #[arg(long = "as")]
        approver: Option<String>,
        #[arg(long)]
        reason: String,
    },
    Deny {
        id: String,
        /// Default: the human `warden login` signed in.
        #[arg(long = "as")]
        approver: Option<String>,
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
            let approver = crate::login::decider(config, store.as_ref(), approver.as_deref())?;
            let g = warden_api::graphs::decide(store.as_ref(), &approvers, false, id, &approver, approve, reason).map_err(|(_, msg)| anyhow::anyhow!(msg))?;
            crate::cli::AdminAudit::start(config, store)?.record(if approve { "graph_approve" } else { "graph_deny" }, graph_decision_event(&g, approve, "cli"))?;
            println!("graph version {id} {} by {}", g.status.as_str(), g.decided_by.unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}
