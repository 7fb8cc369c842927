//! `warden mcp tools list|approve`: pinned MCP tool definitions (issue 14). The gateway pins
//! each tool's description and input schema the first time it sees them; a changed one is
//! refused until approved here (a running gateway notices within 500 ms).

use crate::config::Config;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::process::ExitCode;
use std::sync::Arc;
use warden_audit::AuditEvent;
use warden_store::Store;

#[derive(Subcommand)]
pub enum McpCmd {
    /// Pinned MCP tools.
    #[command(subcommand)]
    Tools(ToolsCmd),
}

#[derive(Subcommand)]
pub enum ToolsCmd {
    /// Every tool seen, and whether its definition changed since it was pinned.
    List {
        /// Only this MCP target.
        #[arg(long)]
        server: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Pin the definition the upstream serves now (after reviewing it with `list --json`).
    Approve {
        server: String,
        tool: String,
        /// Who approves (audited).
        #[arg(long = "as", default_value = "admin")]
        by: String,
    },
}

fn pin_json(p: &warden_store::McpToolPin) -> serde_json::Value {
    let def = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::String(s.to_string()));
    serde_json::json!({
        "server": p.server, "tool": p.tool, "changed": p.changed(),
        "pinned_digest": p.pinned_digest, "seen_digest": p.seen_digest,
        "pinned": def(&p.pinned_definition), "seen": def(&p.seen_definition),
        "first_seen_at": p.first_seen_at, "changed_at": p.changed_at,
        "approved_by": p.approved_by, "approved_at": p.approved_at,
    })
}

pub fn run(cmd: McpCmd, config: &Config, store: Arc<dyn Store>) -> Result<ExitCode> {
    let pins = store.mcp_pins().context("this store keeps no MCP tool pins")?;
    match cmd {
        McpCmd::Tools(ToolsCmd::List { server, json }) => {
            let rows = pins.mcp_tools(server.as_deref())?;
            if json {
                println!("{}", serde_json::Value::Array(rows.iter().map(pin_json).collect()));
            } else {
                for p in rows {
                    let state = if p.changed() { "CHANGED" } else { "pinned" };
                    println!("{:<20} {:<28} {:<8} {}", p.server, p.tool, state, &p.seen_digest[..16.min(p.seen_digest.len())]);
                }
            }
        }
        McpCmd::Tools(ToolsCmd::Approve { server, tool, by }) => {
            let before = pins.mcp_tool(&server, &tool)?.with_context(|| format!("no MCP tool {server}/{tool} has been seen"))?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
            pins.approve_mcp_tool(&server, &tool, &by, now)?;
            let mut ev = AuditEvent::new("admin", "allow");
            ev.target = Some(server.clone());
            ev.statement = Some(format!("mcp tools approve {server} {tool}"));
            ev.extra.insert("by".into(), by.clone().into());
            ev.extra.insert("previous_digest".into(), before.pinned_digest.clone().into());
            ev.extra.insert("pinned_digest".into(), before.seen_digest.clone().into());
            crate::cli::AdminAudit::start(config, store.clone())?.record("mcp_tool_approve", ev)?;
            println!("pinned {server}/{tool} at {}", before.seen_digest);
        }
    }
    Ok(ExitCode::SUCCESS)
}
