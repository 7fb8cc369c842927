//! The command line. Admin commands act directly on the gateway's store (the same SQLite
//! file a running gateway uses); a running gateway notices changes within its poll interval.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use warden_audit::{AuditEvent, AuditHandle, AuditWriter};
use warden_core::policy::PolicyEngine;
use warden_core::token::TokenRequest;
use warden_store::{AuditFilter, SqliteStore, Store};

#[derive(Parser)]
#[command(name = "warden", version, about = "Privileged-access gateway for AI agents")]
pub struct Cli {
    /// The gateway's configuration file.
    #[arg(long, global = true, env = "WARDEN_CONFIG", default_value = "warden.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Manage agents (deployed graphs' identities).
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Manage humans (agent owners and approvers).
    #[command(subcommand)]
    Human(HumanCmd),
    /// Issue short-lived agent tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Validate policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Decide requests for human approval (held commands and grant requests).
    #[command(subcommand)]
    Approvals(ApprovalsCmd),
    /// Just-in-time grants that expire by themselves.
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Reviewed graph versions: submit, list, show, approve, deny.
    #[command(subcommand)]
    Graph(crate::graphs::GraphCmd),
    /// Recorded sessions: list, show, replay, export.
    #[command(subcommand)]
    Sessions(crate::recording::SessionsCmd),
    /// MCP tool gateway: pinned tool definitions (list, approve).
    #[command(subcommand)]
    Mcp(crate::mcp::McpCmd),
    /// Sign in as a human with the identity provider (`[oidc]`): device flow, or a token on
    /// stdin. Deciding commands then act as you without --as.
    Login(crate::login::LoginArgs),
    /// Who `warden login` signed in (verified again now).
    Whoami,
    /// Forget the saved login.
    Logout,
}

#[derive(Subcommand)]
enum ApprovalsCmd {
    /// Requests, newest first.
    List {
        /// pending | approved | denied | expired | executed | cancelled
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    Show {
        id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Approve a request (counts toward its quorum).
    Approve {
        id: String,
        /// The approver's email (a configured approver; not the agent's owner or the
        /// requester); default: the human `warden login` signed in.
        #[arg(long = "as")]
        approver: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// Deny a request; one denial decides.
    Deny {
        id: String,
        /// Default: the human `warden login` signed in.
        #[arg(long = "as")]
        approver: Option<String>,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum GrantCmd {
    /// Ask for a just-in-time grant; it is active from approval until it expires.
    Request {
        #[arg(long)]
        agent: String,
        /// Limit the grant to one graph node.
        #[arg(long)]
        node: Option<String>,
        /// Limit the grant to one LangGraph run.
        #[arg(long)]
        run: Option<String>,
        #[arg(long)]
        target: String,
        /// read, write, or Warden action ids (comma-separated or repeated); on HTTP/LLM
        /// targets http_request or llm_call.
        #[arg(long = "action", required = true)]
        actions: Vec<String>,
        /// What the grant covers (comma-separated): tables of a database target, route
        /// patterns ("GET /customers/*") or model names of an HTTP/LLM target; none = all.
        #[arg(long, alias = "objects", value_delimiter = ',')]
        tables: Vec<String>,
        /// How long the grant lasts once approved, e.g. 15m.
        #[arg(long = "for")]
        duration: String,
        #[arg(long)]
        reason: String,
        /// Who asks (an email); they cannot approve their own request.
        #[arg(long = "as")]
        requester: String,
        #[arg(long, default_value_t = 1)]
        quorum: u32,
    },
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// End a grant now, live sessions included.
    Revoke { id: String },
}

#[derive(Args)]
struct JsonFlag {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Create an agent; prints its enrollment secret once.
    Create {
        name: String,
        #[arg(long)]
        owner: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
    Show {
        name: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Suspend an agent: its tokens stop working and its live sessions end.
    Suspend { name: String },
    Resume { name: String },
    /// Move an agent to another (active) owner. It stays suspended if it was.
    Transfer {
        name: String,
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum HumanCmd {
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Deactivate a human: every agent they own is suspended and its sessions end.
    Deactivate { email: String },
    /// Reactivate a human. Their agents stay suspended until resumed one by one.
    Activate { email: String },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print a token for an agent (for operators and tests; agents use POST /v1/token).
    Issue {
        #[arg(long)]
        agent: String,
        /// Pin the token to one graph node.
        #[arg(long)]
        node: Option<String>,
        #[arg(long)]
        run: Option<String>,
        /// Lifetime, e.g. 10m (default tokens.default_ttl, at most tokens.max_ttl).
        #[arg(long)]
        ttl: Option<String>,
        /// The graph version digest the token acts for (must be approved: warden graph).
        #[arg(long)]
        graph_version: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain and signed checkpoints; exits 1 if anything was edited,
    /// deleted, reordered or truncated.
    Verify {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Search events, newest first.
    Search {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        node: Option<String>,
        /// allow | deny | hold | needs_grant
        #[arg(long)]
        decision: Option<String>,
        /// RFC 3339 time, or a duration ago such as 1h.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Validate Cedar policy files against Warden's schema (the config's files if none given).
    Check { files: Vec<PathBuf> },
    /// Print the Cedar schema policies are validated against.
    Schema,
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve => {
            let config = Config::load(&cli.config)?;
            crate::serve::run(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCmd::Check { files }) => policy_check(&cli.config, files),
        Command::Logout => crate::login::logout().map(|()| ExitCode::SUCCESS),
        Command::Policy(PolicyCmd::Schema) => {
            print!("{}", PolicyEngine::schema_text());
            Ok(ExitCode::SUCCESS)
        }
        command => {
            let config = Config::load(&cli.config)?;
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(config.store_path()).with_context(|| format!("cannot open store {}", config.store_path().display()))?);
            admin(command, &config, store)
        }
    }
}

fn policy_check(config_path: &std::path::Path, files: Vec<PathBuf>) -> Result<ExitCode> {
    let files = if files.is_empty() {
        let config = Config::load(config_path)?;
        config.policy.files.iter().map(|f| config.resolve(f)).collect()
    } else {
        files
    };
    let sources = read_policy_sources(&files)?;
    match PolicyEngine::from_sources(&sources) {
        Ok(engine) => {
            for w in engine.warnings() {
                eprintln!("warning: {w}");
            }
            println!("ok: {} policies in {} file(s) validate against the Warden schema", engine.policy_ids().len(), files.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

pub fn read_policy_sources(files: &[PathBuf]) -> Result<Vec<(String, String)>> {
    files
        .iter()
        .map(|f| Ok((f.display().to_string(), std::fs::read_to_string(f).with_context(|| format!("cannot read policy file {}", f.display()))?)))
        .collect()
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

/// Admin changes are audited like everything else; a command whose audit event cannot be
/// made durable reports failure.
pub(crate) struct AdminAudit {
    handle: AuditHandle,
    runtime: tokio::runtime::Runtime,
}

impl AdminAudit {
    pub(crate) fn start(config: &Config, store: Arc<dyn Store>) -> Result<Self> {
        let key = crate::keys::load_or_create(&config.data_dir(), "audit")?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.block_on(async { AuditWriter::start(store, Some(key.signing_key().clone())) });
        Ok(AdminAudit { handle, runtime })
    }

    pub(crate) fn record(&self, action: &str, mut ev: AuditEvent) -> Result<()> {
        ev.extra.insert("action".into(), action.into());
        ev.extra.insert("via".into(), "cli".into());
        self.runtime.block_on(async {
            let r = self.handle.record(ev).await;
            self.handle.shutdown().await;
            r
        })?;
        Ok(())
    }
}

fn admin_event(agent: Option<&str>) -> AuditEvent {
    let mut ev = AuditEvent::new("admin", "allow");
    ev.agent = agent.map(str::to_string);
    ev
}

fn admin(command: Command, config: &Config, store: Arc<dyn Store>) -> Result<ExitCode> {
    match command {
        Command::Login(args) => crate::login::login(args, config, store.as_ref())?,
        Command::Whoami => crate::login::whoami(config, store.as_ref())?,
        Command::Agent(AgentCmd::Create { name, owner, out }) => {
            let created = store.create_agent(&name, &owner)?;
            let mut ev = admin_event(Some(&created.name));
            ev.owner = Some(created.owner.clone());
            AdminAudit::start(config, store.clone())?.record("agent_create", ev)?;
            if out.json {
                println!("{}", serde_json::json!({"agent": created.name, "owner": created.owner, "enrollment_secret": created.enrollment_secret}));
            } else {
                println!("agent {} created, owned by {}", created.name, created.owner);
                println!("enrollment secret (shown once; exchange it at POST /v1/token):");
                println!("{}", created.enrollment_secret);
            }
        }
        Command::Agent(AgentCmd::List { out }) => {
            let agents = store.list_agents()?;
            if out.json {
                let rows: Vec<_> = agents.iter().map(agent_json).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<32} {:<32} {:<10} OWNER STATUS", "AGENT", "OWNER", "STATUS");
                for a in agents {
                    println!("{:<32} {:<32} {:<10} {}", a.name, a.owner, a.status.as_str(), a.owner_status.as_str());
                }
            }
        }
        Command::Agent(AgentCmd::Show { name, out }) => {
            let a = store.agent(&name)?.with_context(|| format!("no agent named {name:?}"))?;
            if out.json {
                println!("{}", agent_json(&a));
            } else {
                println!("agent {}\nowner {} ({})\nstatus {}\nmay act {}", a.name, a.owner, a.owner_status.as_str(), a.status.as_str(), a.may_act());
            }
        }
        Command::Agent(AgentCmd::Suspend { name }) => {
            store.suspend_agent(&name)?;
            store.cancel_for_agents(std::slice::from_ref(&name))?;
            AdminAudit::start(config, store)?.record("agent_suspend", admin_event(Some(&name)))?;
            println!("agent {name} suspended; its live sessions end within a second");
        }
        Command::Agent(AgentCmd::Resume { name }) => {
            store.resume_agent(&name)?;
            AdminAudit::start(config, store)?.record("agent_resume", admin_event(Some(&name)))?;
            println!("agent {name} resumed");
        }
        Command::Human(HumanCmd::List { out }) => {
            let humans = store.list_humans()?;
            if out.json {
                let rows: Vec<_> = humans.iter().map(|h| serde_json::json!({"email": h.email, "status": h.status.as_str()})).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for h in humans {
                    println!("{:<40} {}", h.email, h.status.as_str());
                }
            }
        }
        Command::Human(HumanCmd::Deactivate { email }) => {
            let suspended = store.deactivate_human(&email)?;
            store.cancel_for_agents(&suspended)?;
            let mut ev = admin_event(None);
            ev.owner = Some(email.clone());
            ev.extra.insert("suspended_agents".into(), suspended.clone().into());
            AdminAudit::start(config, store)?.record("human_deactivate", ev)?;
            println!("{email} deactivated; agents suspended: {}", if suspended.is_empty() { "none".to_string() } else { suspended.join(", ") });
        }
        Command::Human(HumanCmd::Activate { email }) => {
            store.activate_human(&email)?;
            let mut ev = admin_event(None);
            ev.owner = Some(email.clone());
            AdminAudit::start(config, store)?.record("human_activate", ev)?;
            println!("{email} active; their agents stay suspended until resumed");
        }
        Command::Token(TokenCmd::Issue { agent, node, run, ttl, graph_version }) => {
            let ttl = match ttl {
                Some(t) => humantime::parse_duration(&t).with_context(|| format!("--ttl {t:?}: expected a duration like 10m"))?,
                None => config.tokens.default_ttl,
            };
            if ttl > config.tokens.max_ttl || ttl.is_zero() {
                bail!("--ttl: must be between 1s and tokens.max_ttl ({})", humantime::format_duration(config.tokens.max_ttl));
            }
            let record = store.agent(&agent)?.with_context(|| format!("no agent named {agent:?}"))?;
            if !record.may_act() {
                bail!("agent {agent:?} cannot act (agent {}, owner {})", record.status.as_str(), record.owner_status.as_str());
            }
            let keys = crate::keys::load_or_create(&config.data_dir(), "token")?;
            let (token, claims) = keys.issue(&TokenRequest { agent: agent.clone(), node, run, graph_version, ttl_secs: ttl.as_secs() as i64, ..Default::default() }, now_unix());
            let mut ev = admin_event(Some(&agent));
            ev.node = claims.node.clone();
            ev.run = claims.run.clone();
            ev.extra.insert("token_id".into(), claims.jti.into());
            ev.extra.insert("expires_at".into(), claims.exp.into());
            AdminAudit::start(config, store)?.record("token_issue", ev)?;
            eprintln!("token for agent {agent} (expires in {}):", humantime::format_duration(ttl));
            println!("{token}");
        }
        Command::Audit(AuditCmd::Verify { out }) => {
            let key = crate::keys::load_or_create(&config.data_dir(), "audit")?;
            let report = warden_audit::verify(store.as_ref(), Some(&key.signing_key().verifying_key()));
            if out.json {
                println!("{}", serde_json::json!({"ok": report.ok, "events": report.events, "checkpoints": report.checkpoints, "problem": report.problem, "unanchored_tail": report.unanchored_tail}));
            } else if report.ok {
                println!("ok: {} events, {} signed checkpoints, chain intact ({} events after the last checkpoint)", report.events, report.checkpoints, report.unanchored_tail);
            } else {
                println!("FAILED: {}", report.problem.as_deref().unwrap_or("unknown problem"));
            }
            return Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        Command::Audit(AuditCmd::Search { agent, node, decision, since, limit, out }) => {
            let since = since.map(|s| parse_since(&s)).transpose()?;
            let rows = store.audit_rows(&AuditFilter { agent, node, decision, since, before_seq: None, limit: Some(limit) })?;
            for r in rows {
                if out.json {
                    let mut v: serde_json::Value = serde_json::from_str(&r.event_json).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("seq".into(), r.seq.into());
                        o.insert("hash".into(), r.hash.clone().into());
                    }
                    println!("{v}");
                } else {
                    let ev: AuditEvent = serde_json::from_str(&r.event_json)?;
                    println!("{:>6} {} {:<14} {:<6} {:<20} {:<12} {}", r.seq, ev.time, ev.kind, ev.decision, ev.agent.unwrap_or_default(), ev.node.unwrap_or_default(), ev.statement.or(ev.reason).unwrap_or_default().replace('\n', " "));
                }
            }
        }
        Command::Approvals(cmd) => return approvals_cmd(cmd, config, store),
        Command::Graph(cmd) => return crate::graphs::run(cmd, config, store),
        Command::Sessions(cmd) => return crate::recording::run(cmd, config, store, parse_since),
        Command::Agent(AgentCmd::Transfer { name, to }) => {
            let previous = store.transfer_agent(&name, &to)?;
            let mut ev = admin_event(Some(&name));
            ev.owner = Some(to.trim().to_ascii_lowercase());
            ev.extra.insert("previous_owner".into(), previous.clone().into());
            AdminAudit::start(config, store)?.record("agent_transfer", ev)?;
            println!("agent {name} transferred from {previous} to {}", to.trim().to_ascii_lowercase());
        }
        Command::Grant(cmd) => return grant_cmd(cmd, config, store),
        Command::Mcp(cmd) => return crate::mcp::run(cmd, config, store),
        Command::Serve | Command::Policy(_) | Command::Logout => unreachable!("handled before opening the store"),
    }
    Ok(ExitCode::SUCCESS)
}

fn agent_json(a: &warden_store::AgentRecord) -> serde_json::Value {
    serde_json::json!({"agent": a.name, "owner": a.owner, "status": a.status.as_str(), "owner_status": a.owner_status.as_str(), "may_act": a.may_act(), "created_at": a.created_at})
}

/// Unix microseconds from an RFC 3339 time or a duration ago.
fn parse_since(s: &str) -> Result<i64> {
    if let Ok(d) = humantime::parse_duration(s) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        return Ok(now.saturating_sub(d).as_micros() as i64);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).with_context(|| format!("--since {s:?}: expected an RFC 3339 time or a duration like 1h"))?;
    Ok((t.unix_timestamp_nanos() / 1000) as i64)
}

fn approval_json(r: &warden_store::ApprovalRecord) -> serde_json::Value {
    let q = &r.request;
    serde_json::json!({
        "id": r.id, "kind": q.kind, "status": r.status.as_str(), "agent": q.agent, "owner": q.owner, "node": q.node,
        "run": q.run, "graph_version": q.graph_version, "target": q.target, "statement": q.statement,
        "params_digest": q.params_digest, "rule": q.rule, "reason": q.reason, "requested_by": q.requested_by,
        "quorum": q.quorum, "mode": q.mode, "expires_at": q.expires_at, "created_at": r.created_at,
        "grant": q.grant.as_ref().map(|g| serde_json::json!({"actions": g.actions, "tables": g.objects, "duration_secs": g.duration_secs})),
        "votes": r.votes.iter().map(|v| serde_json::json!({"by": v.by, "approve": v.approve, "reason": v.reason, "at": v.at})).collect::<Vec<_>>(),
    })
}

fn approvals_cmd(cmd: ApprovalsCmd, config: &Config, store: Arc<dyn Store>) -> Result<ExitCode> {
    use warden_store::{ApprovalStatus, Vote, VoteOutcome};
    match cmd {
        ApprovalsCmd::List { status, out } => {
            let status = status.map(|s| ApprovalStatus::parse(&s).with_context(|| format!("--status {s:?}: expected pending, approved, denied, expired, executed or cancelled"))).transpose()?;
            let rows = store.list_approvals(status, 200)?;
            if out.json {
                println!("{}", serde_json::Value::Array(rows.iter().map(approval_json).collect()));
            } else {
                for r in rows {
                    let what = r.request.statement.clone().unwrap_or_else(|| format!("grant {:?}", r.request.grant.as_ref().map(|g| &g.actions)));
                    println!("{:<22} {:<9} {:<8} {:<20} {:<12} {}", r.id, r.status.as_str(), r.request.kind, r.request.agent, r.request.node.clone().unwrap_or_default(), what.replace('\n', " "));
                }
            }
        }
        ApprovalsCmd::Show { id, out } => {
            let r = store.approval(&id)?.with_context(|| format!("no approval request {id:?}"))?;
            let v = approval_json(&r);
            println!("{}", if out.json { v.to_string() } else { serde_json::to_string_pretty(&v)? });
        }
        ApprovalsCmd::Approve { id, approver, reason } | ApprovalsCmd::Deny { id, approver, reason } if reason.trim().is_empty() => {
            let _ = (id, approver);
            bail!("--reason: say why (it is audited and shown to the requester)");
        }
        ApprovalsCmd::Approve { ref id, ref approver, ref reason } | ApprovalsCmd::Deny { ref id, ref approver, ref reason } => {
            let approve = matches!(cmd, ApprovalsCmd::Approve { .. });
            let rec = store.approval(id)?.with_context(|| format!("no approval request {id:?}"))?;
            let decider = crate::login::decider(config, store.as_ref(), approver.as_deref())?;
            let who = crate::approvals::check_approver(config, store.as_ref(), &rec, &decider)?;
            let outcome = store.vote(id, &Vote { by: who.clone(), approve, reason: reason.clone(), at: now_unix() })?;
            let mut ev = AuditEvent::new(if approve { "approval_approved" } else { "approval_denied" }, if approve { "allow" } else { "deny" });
            ev.agent = Some(rec.request.agent.clone());
            ev.owner = Some(rec.request.owner.clone());
            ev.node = rec.request.node.clone();
            ev.target = Some(rec.request.target.clone());
            ev.statement = rec.request.statement.clone();
            ev.reason = Some(reason.clone());
            ev.extra.insert("approval_id".into(), rec.id.clone().into());
            ev.extra.insert("approver".into(), who.clone().into());
            ev.extra.insert("outcome".into(), format!("{outcome:?}").into());
            AdminAudit::start(config, store)?.record(if approve { "approval_vote" } else { "approval_deny" }, ev)?;
            match outcome {
                VoteOutcome::Recorded { approvals, quorum } => println!("{id}: approval by {who} recorded ({approvals} of {quorum})"),
                VoteOutcome::Approved => println!("{id}: approved by {who}"),
                VoteOutcome::Denied => println!("{id}: denied by {who}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn grant_cmd(cmd: GrantCmd, config: &Config, store: Arc<dyn Store>) -> Result<ExitCode> {
    match cmd {
        GrantCmd::Request { agent, node, run, target, actions, tables, duration, reason, requester, quorum } => {
            let record = store.agent(&agent)?.with_context(|| format!("no agent named {agent:?}"))?;
            let http_target = config.http.targets.iter().any(|t| t.name == target);
            if !http_target && !config.targets.iter().any(|t| t.name == target) {
                bail!("--target {target:?}: no such target in the config");
            }
            let duration = humantime::parse_duration(&duration).with_context(|| format!("--for {duration:?}: expected a duration like 15m"))?;
            if duration.is_zero() || duration > config.tokens.max_ttl {
                bail!("--for: must be between 1s and tokens.max_ttl ({})", humantime::format_duration(config.tokens.max_ttl));
            }
            let (actions, objects) = if http_target {
                (crate::approvals::expand_gateway_actions(&actions)?, tables.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect())
            } else {
                (crate::approvals::expand_actions(&actions)?, tables.iter().filter(|t| !t.trim().is_empty()).map(|t| crate::approvals::qualify_table(t)).collect::<Vec<String>>())
            };
            let request = warden_store::NewApproval {
                kind: "grant".into(),
                agent: agent.clone(),
                owner: record.owner.clone(),
                node,
                run,
                graph_version: None,
                target,
                statement: None,
                params_digest: None,
                rule: "jit-grant".into(),
                reason: Some(reason.clone()),
                requested_by: requester.trim().to_ascii_lowercase(),
                quorum: quorum.max(1),
                mode: "grant".into(),
                expires_at: now_unix() + config.approvals.resume_lifetime.as_secs() as i64,
                grant: Some(warden_store::GrantSpec { actions, objects, duration_secs: duration.as_secs() as i64 }),
            };
            let rec = store.create_approval(&request)?;
            let mut ev = admin_event(Some(&agent));
            ev.reason = Some(reason);
            ev.extra.insert("approval_id".into(), rec.id.clone().into());
            ev.extra.insert("requested_by".into(), rec.request.requested_by.clone().into());
            AdminAudit::start(config, store)?.record("grant_request", ev)?;
            println!("grant request {} created; an approver runs: warden approvals approve {} --as EMAIL --reason \"...\"", rec.id, rec.id);
        }
        GrantCmd::List { out } => {
            let grants = store.list_grants(200)?;
            let now = now_unix();
            let state = |g: &warden_store::GrantRecord| if g.revoked { "revoked" } else if now >= g.expires_at { "expired" } else { "active" };
            if out.json {
                let rows: Vec<_> = grants.iter().map(|g| serde_json::json!({"id": g.id, "approval_id": g.approval_id, "agent": g.agent, "node": g.node, "run": g.run, "target": g.target, "actions": g.actions, "tables": g.objects, "active_from": g.active_from, "expires_at": g.expires_at, "state": state(g)})).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for g in &grants {
                    println!("{:<22} {:<8} {:<20} {:<12} {:<24} {}", g.id, state(g), g.agent, g.node.clone().unwrap_or_default(), g.actions.join(","), g.objects.join(","));
                }
            }
        }
        GrantCmd::Revoke { id } => {
            store.revoke_grant(&id)?;
            let mut ev = admin_event(None);
            ev.extra.insert("grant_id".into(), id.clone().into());
            AdminAudit::start(config, store)?.record("grant_revoke", ev)?;
            println!("grant {id} revoked; live sessions lose it within a second");
        }
    }
    Ok(ExitCode::SUCCESS)
}
