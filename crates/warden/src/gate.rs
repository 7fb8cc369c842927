//! Warden's answers to the PostgreSQL session's questions: who is this (tokens and the
//! store), may this command run (classifier and Cedar), and what happened (the audit log).
//! Also the registry of live sessions that revocation reaches into.

use crate::config::Config;
use crate::notify::Notifier;
use warden_pg::gate::HoldOutcome;
use warden_store::{ApprovalStatus, NewApproval};
use quick_cache::sync::Cache;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use warden_audit::{AuditEvent, AuditHandle};
use warden_core::policy::{ActiveGrant, PolicyEngine, RequestContext};
use warden_core::token::{TokenError, TokenKeys};
use warden_core::{Classification, Decision, SessionIdentity};
use warden_pg::gate::{ClientError, CommandRecord, Gatekeeper, SessionGrant, Verdict};
use warden_pg::startup::StartupRequest;
use warden_pg::upstream::UpstreamConfig;
use warden_store::Store;

type Classified = Arc<Result<Classification, String>>;

pub struct WardenGate {
    store: Arc<dyn Store>,
    policy: PolicyEngine,
    tokens: Arc<TokenKeys>,
    audit: AuditHandle,
    targets: HashMap<String, UpstreamConfig>,
    /// Classification depends only on the text: shared by all sessions, keyed by the full
    /// text (never a hash: a collision would be a bypass).
    classified: Cache<String, Classified>,
    epoch: AtomicU64,
    sessions: Mutex<HashMap<String, LiveSession>>,
    notifier: Notifier,
    masker: Option<Arc<warden_mask::Masker>>,
    approval_timeout: Duration,
    resume_lifetime: Duration,
    graphs: crate::graphs::GraphGate,
    /// Session recording (issue 12); None outside a tokio runtime.
    recording: Option<Arc<crate::recording::Recording>>,
}

/// SQLSTATE of "approval pending" in resume mode: class W is in the range PostgreSQL leaves
/// to implementations, so no client mistakes it for a server error.
pub const APPROVAL_PENDING_SQLSTATE: &str = "WA001";
/// How often a held connection looks at its request; bounds approve-to-result latency.
const APPROVAL_POLL: Duration = Duration::from_millis(10);

struct LiveSession {
    agent: String,
    revoke: watch::Sender<Option<String>>,
    /// The session was given clear results at its start. Its result stream is then not
    /// masked at all, so once clear access lapses nothing it could return may reach it.
    clear: ClearAccess,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClearAccess {
    /// Results are masked (or masking is not configured): nothing to re-check.
    No,
    /// Results flow unmasked; unmask is re-decided at every decision.
    Granted,
    /// Clear access lapsed (grant revoked or expired, policy changed); audited once.
    Lapsed,
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

impl WardenGate {
    pub fn new(config: &Config, store: Arc<dyn Store>, policy: PolicyEngine, tokens: Arc<TokenKeys>, audit: AuditHandle) -> anyhow::Result<Arc<Self>> {
        let mut targets = HashMap::new();
        for t in &config.targets {
            let tls = match t.tls.as_str() {
                "require" => warden_pg::upstream::UpstreamTls::Require,
                "verify-full" => {
                    let ca = config.resolve(t.ca_file.as_ref().expect("validated"));
                    let roots = warden_pg::tls::load_roots(&ca.to_string_lossy())?;
                    warden_pg::upstream::UpstreamTls::VerifyFull { roots: Arc::new(roots) }
                }
                _ => warden_pg::upstream::UpstreamTls::Disable,
            };
            let upstream = UpstreamConfig {
                host: t.host.clone(),
                port: t.port,
                database: t.database.clone(),
                user: t.user.clone(),
                password: t.password(config)?,
                tls,
                connect_timeout: config.limits.upstream_connect_timeout,
            };
            targets.insert(t.name.clone(), upstream);
        }
        let recording = crate::recording::Recording::start(config, store.clone(), audit.clone());
        Ok(Arc::new(WardenGate {
            recording,
            store,
            policy,
            tokens,
            audit,
            targets,
            classified: Cache::new(100_000),
            epoch: AtomicU64::new(1),
            sessions: Mutex::new(HashMap::new()),
            notifier: Notifier::new(config.approvals.webhook_url.clone(), config.webhook_secret()?),
            masker: match &config.masking {
                Some(m) => Some(Arc::new(warden_mask::Masker::new(m).map_err(|e| anyhow::anyhow!("masking: {e}"))?)),
                None => None,
            },
            approval_timeout: config.approvals.timeout,
            resume_lifetime: config.approvals.resume_lifetime,
            graphs: crate::graphs::GraphGate::new(config.graphs.require_approved_version),
        }))
    }

    pub fn recording(&self) -> Option<&Arc<crate::recording::Recording>> {
        self.recording.as_ref()
    }

    fn classify(&self, sql: &str) -> Classified {
        if let Some(c) = self.classified.get(sql) {
            return c;
        }
        let c: Classified = Arc::new(warden_pg::classify::classify(sql).map_err(|e| e.to_string()));
        self.classified.insert(sql.to_string(), c.clone());
        c
    }

    /// Ends every live session whose agent may no longer act. Runs whenever the store's
    /// epoch moves (another process suspended an agent or deactivated an owner).
    pub fn enforce_revocations(&self) {
        let agents: Vec<String> = {
            let sessions = self.sessions.lock().unwrap();
            let mut a: Vec<String> = sessions.values().map(|s| s.agent.clone()).collect();
            a.sort();
            a.dedup();
            a
        };
        for agent in agents {
            let reason = match self.store.agent(&agent) {
                Ok(Some(rec)) if rec.may_act() => continue,
                Ok(Some(rec)) if rec.owner_status != warden_store::HumanStatus::Active => format!("owner {} of agent {agent} was deactivated", rec.owner),
                Ok(Some(_)) => format!("agent {agent} was suspended"),
                Ok(None) => format!("agent {agent} no longer exists"),
                // The store cannot say the agent may act: fail closed.
                Err(_) => "the gateway cannot confirm the agent is active (store unavailable)".to_string(),
            };
            let sessions = self.sessions.lock().unwrap();
            for s in sessions.values().filter(|s| s.agent == agent) {
                s.revoke.send_replace(Some(reason.clone()));
            }
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn active_grants(&self, id: &SessionIdentity) -> warden_store::Result<Vec<ActiveGrant>> {
        Ok(self
            .store
            .active_grants(&id.agent, &id.target, now_unix())?
            .into_iter()
            .map(|g| ActiveGrant { id: g.id, node: g.node, run: g.run, actions: g.actions, objects: g.objects, expires_at: g.expires_at })
            .collect())
    }

    /// Whether this session may see masked values in clear (policy or a JIT grant).
    fn unmask_decision(&self, id: &SessionIdentity, grants: &[ActiveGrant]) -> Decision {
        let unmask = Classification { statements: vec![warden_core::StatementClass { text: "<unmask>".into(), accesses: vec![warden_core::Access { action: warden_core::Action::Unmask, object: None }] }] };
        self.policy.decide(id, &unmask, &RequestContext { now_unix: now_unix(), grants: grants.to_vec() })
    }

    fn clear_access(&self, session: &SessionGrant) -> ClearAccess {
        self.sessions.lock().unwrap().get(&session.session_id).map_or(ClearAccess::No, |s| s.clear)
    }

    fn set_clear_access(&self, session: &SessionGrant, clear: ClearAccess) {
        if let Some(s) = self.sessions.lock().unwrap().get_mut(&session.session_id) {
            s.clear = clear;
        }
    }

    /// The session's result stream was left unmasked at its start (the session layer picks
    /// masking once), so clear access is re-decided with every decision: an allowed verdict
    /// is not reused past the unmask grant's expiry, and a revocation moves the epoch, which
    /// brings the session back here. Once clear access lapses, every statement that could
    /// return data is refused (only transaction control still runs, so an open transaction
    /// can be ended); a new connection gets masked results.
    fn recheck_clear_access(&self, session: &SessionGrant, c: &Classification, grants: &[ActiveGrant], decision: &mut Decision) -> Option<Decision> {
        let state = self.clear_access(session);
        if state == ClearAccess::No {
            return None;
        }
        if state == ClearAccess::Granted {
            let unmask = self.unmask_decision(&session.identity, grants);
            if unmask.allowed() {
                if let Some(until) = unmask.valid_until {
                    decision.valid_until = Some(decision.valid_until.map_or(until, |v| v.min(until)));
                }
                return None;
            }
            self.set_clear_access(session, ClearAccess::Lapsed);
            let mut ev = self.event(session, "unmask_ended", "deny");
            ev.reason = Some("clear access lapsed mid-session (unmask grant revoked or expired, or policy changed)".into());
            let _ = self.audit.record_nowait(ev);
        }
        if c.actions().iter().all(|a| *a == warden_core::Action::Transaction) {
            return None;
        }
        let id = &session.identity;
        let node = id.node.as_deref().unwrap_or("-");
        Some(Decision::deny_without_policy(format!(
            "warden: clear access for agent \"{}\" node \"{node}\" ended during this session (its unmask grant was revoked or expired); this connection's results are not masked, so it may only end its transaction: reconnect to get masked results, or request access with: warden grant request --agent {} --node {node} --target {} --action unmask --for 15m --reason \"...\"",
            id.agent, id.agent, id.target
        )))
    }

    /// A protected column may reach a masked session only as a plain output column, which
    /// the row masker rewrites. Any other use (expressions, predicates, aggregates,
    /// subqueries, set operations, whole-row values) could carry its value out in a form
    /// the masker cannot recognise, so the statement is refused, naming the column.
    fn protected_column_misuse(&self, id: &SessionIdentity, sql: &str, grants: &[ActiveGrant]) -> Option<Decision> {
        let masker = self.masker.as_ref()?;
        let uses = match warden_pg::classify::column_uses(sql) {
            Ok(u) => u,
            Err(e) => return Some(Decision::deny_without_policy(format!("warden: denied because column use could not be analysed ({e})"))),
        };
        let misuse = uses.iter().filter(|u| !u.direct_output).find_map(|u| {
            let tables: Vec<Option<&str>> = if u.tables.is_empty() { vec![None] } else { u.tables.iter().map(|t| Some(t.as_str())).collect() };
            tables.into_iter().find(|t| masker.rule_covers(*t, u.column.as_deref())).map(|t| match (t, &u.column) {
                (Some(t), Some(c)) => format!("column {t}.{c}"),
                (None, Some(c)) => format!("column {c}"),
                (Some(t), None) => format!("a whole-row or star use of {t}, which has masked columns,"),
                (None, None) => "a whole-row value with masked columns".to_string(),
            })
        })?;
        if self.unmask_decision(id, grants).allowed() {
            return None;
        }
        let node = id.node.as_deref().unwrap_or("-");
        Some(Decision::deny_without_policy(format!(
            "warden: {misuse} is masked for agent \"{}\" node \"{node}\": it may be selected as a plain column (its values arrive masked) but not used in expressions, predicates, aggregates, subqueries or set operations. Request access with: warden grant request --agent {} --node {node} --target {} --action unmask --for 15m --reason \"...\"",
            id.agent, id.agent, id.target
        )))
    }

    /// Ends every live session (gateway shutdown) and waits up to `grace` for them to
    /// record their close events.
    pub async fn end_all_sessions(&self, reason: &str, grace: Duration) {
        for s in self.sessions.lock().unwrap().values() {
            s.revoke.send_replace(Some(reason.to_string()));
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !self.sessions.lock().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls the store's revocation epoch and the audit log's health.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut last_epoch = None;
        let mut last_healthy = true;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let gate = self.clone();
            let epoch = tokio::task::spawn_blocking(move || gate.store.epoch()).await.ok().and_then(Result::ok);
            if epoch.is_none() || epoch != last_epoch {
                let gate = self.clone();
                tokio::task::spawn_blocking(move || gate.enforce_revocations()).await.ok();
                last_epoch = epoch;
            }
            let gate = self.clone();
            if let Ok(Ok(expired)) = tokio::task::spawn_blocking(move || gate.store.expire_approvals(now_unix())).await {
                for rec in expired {
                    self.approval_event(&rec, "approval_expired", "deny", None);
                }
            }
            let healthy = self.audit.healthy();
            if healthy != last_healthy {
                // Cached verdicts were made under the other health state.
                self.epoch.fetch_add(1, Ordering::AcqRel);
                last_healthy = healthy;
            }
        }
    }

    fn approval_event(&self, rec: &warden_store::ApprovalRecord, kind: &str, decision: &str, session: Option<&SessionGrant>) {
        let r = &rec.request;
        let mut ev = match session {
            Some(s) => self.event(s, kind, decision),
            None => AuditEvent::new(kind, decision),
        };
        ev.agent = Some(r.agent.clone());
        ev.owner = Some(r.owner.clone());
        ev.node = r.node.clone();
        ev.run = r.run.clone();
        ev.target = Some(r.target.clone());
        ev.statement = r.statement.clone();
        ev.params_digest = r.params_digest.clone();
        ev.policy_ids = vec![r.rule.clone()];
        ev.extra.insert("approval_id".into(), rec.id.clone().into());
        if let Err(e) = self.audit.record_nowait(ev) {
            tracing::error!(error = %e, "could not audit an approval step");
        }
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&dyn Store) -> warden_store::Result<T> + Send + 'static) -> Option<T> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "store call failed");
                None
            }
            Err(_) => None,
        }
    }

    fn event(&self, session: &SessionGrant, kind: &str, decision: &str) -> AuditEvent {
        let id = &session.identity;
        let mut ev = AuditEvent::new(kind, decision);
        ev.session_id = Some(session.session_id.clone());
        ev.agent = Some(id.agent.clone());
        ev.owner = Some(id.owner.clone());
        ev.node = id.node.clone();
        ev.run = id.run.clone();
        ev.thread = id.thread.clone();
        ev.graph_version = id.graph_version.clone();
        ev.target = Some(id.target.clone());
        ev
    }
}

fn refuse(message: impl Into<String>) -> ClientError {
    ClientError::new("28000", message)
}

#[async_trait::async_trait]
impl Gatekeeper for WardenGate {
    async fn authenticate(&self, request: &StartupRequest, password: &str, peer: SocketAddr) -> Result<SessionGrant, ClientError> {
        let agent = request.user.clone();
        let Some(upstream) = self.targets.get(&request.database) else {
            return Err(ClientError::new("3D000", format!("warden: no target named \"{}\" (dbname selects the target)", request.database)));
        };
        let claims = match self.tokens.verify(password, now_unix()) {
            Ok(c) => c,
            Err(TokenError::Expired) => return Err(ClientError::new("28P01", format!("warden: token for agent \"{agent}\" has expired; get a fresh one"))),
            Err(_) => return Err(ClientError::new("28P01", format!("warden: authentication failed for agent \"{agent}\": the password must be a valid Warden token"))),
        };
        if claims.sub != agent {
            return Err(ClientError::new("28P01", format!("warden: authentication failed for agent \"{agent}\": the token was issued to another agent")));
        }
        let node = match (&claims.node, &request.node) {
            (Some(pinned), Some(asked)) if pinned != asked => {
                return Err(refuse(format!("warden: the token is pinned to node \"{pinned}\" and cannot act as node \"{asked}\"")));
            }
            (Some(pinned), _) => Some(pinned.clone()),
            (None, asked) => asked.clone(),
        };
        // Register before reading the store: a revocation landing after the read still
        // reaches this session through the registry.
        let session_id = hex::encode(rand::random::<[u8; 12]>());
        let (revoke, revoked) = watch::channel(None);
        self.sessions.lock().unwrap().insert(session_id.clone(), LiveSession { agent: agent.clone(), revoke, clear: ClearAccess::No });
        let unregister = || {
            self.sessions.lock().unwrap().remove(&session_id);
        };
        let store = self.store.clone();
        let name = agent.clone();
        let record = match tokio::task::spawn_blocking(move || store.agent(&name)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "store unavailable during authentication");
                unregister();
                return Err(ClientError::new("08006", "warden: the gateway's store is unavailable; try again"));
            }
            Err(_) => {
                unregister();
                return Err(refuse("warden: internal error"));
            }
        };
        let refusal = match &record {
            Some(r) if r.may_act() => None,
            Some(r) if r.owner_status != warden_store::HumanStatus::Active => Some(format!("warden: agent \"{agent}\" cannot act: its owner {} is deactivated", r.owner)),
            Some(_) => Some(format!("warden: agent \"{agent}\" is suspended")),
            None => Some(format!("warden: authentication failed for agent \"{agent}\"")),
        };
        if let Some(msg) = refusal {
            unregister();
            return Err(refuse(msg));
        }
        let record = record.expect("checked above");
        let identity = SessionIdentity {
            agent: agent.clone(),
            owner: record.owner,
            node,
            run: request.run.clone().or(claims.run),
            thread: request.thread.clone().or(claims.thread),
            graph_version: claims.gv,
            target: request.database.clone(),
        };
        let grant = SessionGrant { session_id: session_id.clone(), identity, upstream: upstream.clone(), expires_at_unix: claims.exp, revoked, approval_mode: request.approval_mode.clone() };
        let mut ev = self.event(&grant, "session_start", "allow");
        ev.extra.insert("peer".into(), peer.to_string().into());
        ev.extra.insert("token_id".into(), claims.jti.into());
        if self.audit.record(ev).await.is_err() {
            unregister();
            return Err(ClientError::new("58030", "warden: the audit log is unavailable; sessions are refused until it recovers"));
        }
        if let Some(r) = &self.recording {
            r.session_started(&grant);
        }
        tracing::info!(session = %grant.session_id, agent = %grant.identity.agent, node = ?grant.identity.node, target = %grant.identity.target, "session started");
        Ok(grant)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn decide(&self, session: &SessionGrant, sql: &str) -> Arc<Verdict> {
        if !self.audit.healthy() {
            return Arc::new(Verdict { classification: None, decision: Decision::deny_without_policy("warden: denied because the audit log is unavailable (fail closed)") });
        }
        let classified = self.classify(sql);
        let verdict = match classified.as_ref() {
            Ok(c) => {
                let id = &session.identity;
                let now = now_unix();
                let grants = match self.store.active_grants(&id.agent, &id.target, now) {
                    Ok(g) => g,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read grants");
                        return Arc::new(Verdict { classification: None, decision: Decision::deny_without_policy("warden: denied because grants cannot be read (store unavailable; fail closed)") });
                    }
                };
                let grants: Vec<ActiveGrant> = grants
                    .into_iter()
                    .map(|g| ActiveGrant { id: g.id, node: g.node, run: g.run, actions: g.actions, objects: g.objects, expires_at: g.expires_at })
                    .collect();
                if self.masker.is_some() && c.actions().contains(&warden_core::Action::CopyTo) {
                    // COPY streams rows as CopyData, which the masker does not rewrite.
                    return Arc::new(Verdict { classification: Some(c.clone()), decision: Decision::deny_without_policy("warden: COPY ... TO is refused while results are masked (its rows would bypass masking); use SELECT") });
                }
                let decision = self.policy.decide(id, c, &RequestContext { now_unix: now, grants: grants.clone() });
                if decision.effect != warden_core::Effect::Deny {
                    if let Some(denial) = self.protected_column_misuse(id, sql, &grants) {
                        return Arc::new(Verdict { classification: Some(c.clone()), decision: denial });
                    }
                }
                let mut decision = self.graphs.cap_to_approved_manifest(self.store.as_ref(), id, c, decision);
                if let Some(denial) = self.recheck_clear_access(session, c, &grants, &mut decision) {
                    return Arc::new(Verdict { classification: Some(c.clone()), decision: denial });
                }
                Verdict { decision, classification: Some(c.clone()) }
            }
            Err(e) => Verdict { classification: None, decision: Decision::deny_without_policy(format!("warden: denied because the statement could not be classified ({e}); nothing was sent to the database")) },
        };
        Arc::new(verdict)
    }

    async fn record(&self, session: &SessionGrant, record: CommandRecord, durable: bool) -> Result<(), ClientError> {
        if let Some(r) = &self.recording {
            r.statement(session, &record);
        }
        let decision = &record.verdict.decision;
        let mut ev = self.event(session, "statement", decision.effect.as_str());
        let statement = match (&record.verdict.classification, record.statement_index) {
            (Some(c), Some(i)) => c.statements.get(i),
            _ => None,
        };
        match statement {
            Some(s) => {
                ev.statement = Some(s.text.clone());
                let mut actions: Vec<String> = s.accesses.iter().map(|a| a.action.as_str().to_string()).collect();
                actions.dedup();
                ev.actions = actions;
                ev.tables = s.accesses.iter().filter_map(|a| match &a.object {
                    Some(warden_core::ObjectRef::Table(t)) => Some(t.clone()),
                    _ => None,
                }).collect();
                ev.tables.dedup();
            }
            None => {
                ev.statement = Some(record.sql.to_string());
                if let Some(c) = &record.verdict.classification {
                    ev.actions = c.actions().iter().map(|a| a.as_str().to_string()).collect();
                    ev.tables = c.tables();
                }
            }
        }
        ev.params_digest = record.params_digest;
        ev.policy_ids = decision.policy_ids.clone();
        if !decision.allowed() {
            ev.reason = Some(decision.reason.clone());
        }
        ev.rows = record.rows;
        ev.duration_us = record.duration.map(|d| d.as_micros() as u64);
        ev.error = record.error_code.map(|c| format!("SQLSTATE {c}"));
        if let Some(id) = record.approval_id {
            ev.extra.insert("approval_id".into(), id.into());
        }
        if !record.masked.is_empty() {
            let counts: serde_json::Map<String, serde_json::Value> = record.masked.into_iter().map(|(k, n)| (k, n.into())).collect();
            ev.extra.insert("masked".into(), counts.into());
        }
        if durable {
            self.audit.record(ev).await.map(|_| ()).map_err(|e| {
                tracing::error!(error = %e, "durable audit write failed; withholding the result");
                ClientError::new("58030", "warden: the audit log could not record this write; its result is withheld and the session ends")
            })
        } else {
            self.audit.record_nowait(ev).map_err(|e| {
                tracing::error!(error = %e, "audit enqueue failed");
                ClientError::new("58030", "warden: the audit log is unavailable")
            })
        }
    }

    async fn hold(&self, session: &SessionGrant, sql: &str, verdict: &Verdict, params_digest: Option<&str>) -> HoldOutcome {
        let id = session.identity.clone();
        let refuse = |message: String| HoldOutcome::Refuse { sqlstate: "42501", message, hint: None };
        let (agent, node, target, statement, digest) = (id.agent.clone(), id.node.clone(), id.target.clone(), sql.to_string(), params_digest.map(str::to_string));
        // Resume mode's second half: an approved request for exactly this command runs once.
        let found = self.blocking(move |s| s.find_approved_command(&agent, node.as_deref(), &target, &statement, digest.as_deref(), now_unix())).await;
        let Some(found) = found else { return refuse("warden: denied because approvals cannot be read (store unavailable; fail closed)".into()) };
        if let Some(rec) = found {
            let rid = rec.id.clone();
            if self.blocking(move |s| s.consume_approval(&rid)).await == Some(true) {
                self.approval_event(&rec, "approval_executed", "allow", Some(session));
                return HoldOutcome::Run { approval_id: rec.id };
            }
        }
        let rule = verdict.decision.approval.clone().unwrap_or(warden_core::ApprovalRule { policy_id: verdict.decision.policy_ids.join(","), mode: None, quorum: 1 });
        let mode = rule.mode.clone().or(session.approval_mode.clone()).unwrap_or_else(|| "wait".into());
        let lifetime = if mode == "resume" { self.resume_lifetime } else { self.approval_timeout };
        let request = NewApproval {
            kind: "command".into(),
            agent: id.agent.clone(),
            owner: id.owner.clone(),
            node: id.node.clone(),
            run: id.run.clone(),
            graph_version: id.graph_version.clone(),
            target: id.target.clone(),
            statement: Some(sql.to_string()),
            params_digest: params_digest.map(str::to_string),
            rule: rule.policy_id.clone(),
            reason: None,
            requested_by: format!("agent:{}", id.agent),
            quorum: rule.quorum,
            mode: mode.clone(),
            // Rounded up: the store's clock has whole seconds, and a request must not expire
            // before its held connection gives up on it.
            expires_at: now_unix() + lifetime.as_secs() as i64 + 1,
            grant: None,
        };
        let Some(rec) = self.blocking(move |s| s.create_approval(&request)).await else {
            return refuse("warden: denied because the approval request could not be recorded (fail closed)".into());
        };
        self.approval_event(&rec, "approval_requested", "hold", Some(session));
        let audit = self.audit.clone();
        let (notified_id, agent) = (rec.id.clone(), id.agent.clone());
        self.notifier.notify(&rec, move |result| {
            let mut ev = AuditEvent::new("approval_notified", "hold");
            ev.agent = Some(agent);
            ev.extra.insert("approval_id".into(), notified_id.into());
            match result {
                Ok(status) => ev.extra.insert("webhook_status".into(), status.into()),
                Err(e) => ev.extra.insert("webhook_error".into(), e.into()),
            };
            let _ = audit.record_nowait(ev);
        });
        let approve_hint = format!("an approver runs: warden approvals approve {} --as EMAIL --reason \"...\"", rec.id);
        if mode == "resume" {
            return HoldOutcome::Refuse {
                sqlstate: APPROVAL_PENDING_SQLSTATE,
                message: format!("warden: approval pending: approval {} (policy \"{}\") must be granted by a human; once approved, send the same statement with the same parameters again and it runs once", rec.id, rule.policy_id),
                hint: Some(approve_hint),
            };
        }
        tracing::info!(approval = %rec.id, agent = %id.agent, "command held for approval");
        let deadline = tokio::time::Instant::now() + lifetime;
        let mut revoked = session.revoked.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(APPROVAL_POLL) => {}
                _ = revoked.changed() => return refuse(format!("warden: approval {} abandoned: the session was revoked", rec.id)),
            }
            let rid = rec.id.clone();
            let Some(Some(now)) = self.blocking(move |s| s.approval(&rid)).await else { continue };
            match now.status {
                ApprovalStatus::Pending if tokio::time::Instant::now() < deadline => continue,
                ApprovalStatus::Pending | ApprovalStatus::Expired => {
                    // The watcher may expire the request first (its clock has whole seconds);
                    // either way the client hears the same thing, and the expiry is audited once.
                    if now.status == ApprovalStatus::Pending {
                        for expired in self.blocking(|s| s.expire_approvals(now_unix() + 1)).await.unwrap_or_default() {
                            self.approval_event(&expired, "approval_expired", "deny", None);
                        }
                    }
                    return refuse(format!("warden: approval {} timed out after {}; the statement did not run", rec.id, humantime::format_duration(lifetime)));
                }
                ApprovalStatus::Approved => {
                    let rid = rec.id.clone();
                    if self.blocking(move |s| s.consume_approval(&rid)).await == Some(true) {
                        self.approval_event(&now, "approval_executed", "allow", Some(session));
                        return HoldOutcome::Run { approval_id: rec.id };
                    }
                    return refuse(format!("warden: approval {} was already used", rec.id));
                }
                ApprovalStatus::Denied => {
                    let by = now.votes.iter().rev().find(|v| !v.approve);
                    let (who, why) = by.map(|v| (v.by.clone(), v.reason.clone())).unwrap_or_default();
                    return refuse(format!("warden: approval {} denied by {who}: {why}", rec.id));
                }
                other => return refuse(format!("warden: approval {} is {}; the statement did not run", rec.id, other.as_str())),
            }
        }
    }

    fn masker(&self, session: &SessionGrant) -> Option<Arc<warden_mask::Masker>> {
        let masker = self.masker.clone()?;
        let grants = self.active_grants(&session.identity).unwrap_or_default();
        let decision = self.unmask_decision(&session.identity, &grants);
        if decision.allowed() {
            // Clear access is itself a privilege: audited whenever a session gets it.
            let mut ev = self.event(session, "unmask", "allow");
            ev.policy_ids = decision.policy_ids;
            let _ = self.audit.record_nowait(ev);
            self.set_clear_access(session, ClearAccess::Granted);
            return None;
        }
        Some(masker)
    }

    fn recorder(&self, session: &SessionGrant) -> Option<Arc<dyn warden_pg::gate::SessionRecorder>> {
        self.recording.as_ref()?.recorder(session)
    }

    fn session_ended(&self, session: &SessionGrant, reason: &str) {
        if let Some(r) = &self.recording {
            r.session_ended(session, reason);
        }
        self.sessions.lock().unwrap().remove(&session.session_id);
        let mut ev = self.event(session, "session_end", "allow");
        ev.reason = Some(reason.to_string());
        if let Err(e) = self.audit.record_nowait(ev) {
            tracing::error!(error = %e, "could not audit session end");
        }
        tracing::info!(session = %session.session_id, agent = %session.identity.agent, reason, "session ended");
    }
}
