//! One authenticated proxy session: two loops, client→upstream and upstream→client.
//!
//! Denied commands are not answered by the gateway itself. The frontend loop replaces them
//! with a message that is certain to fail upstream (a syntax error, or a reference to a
//! statement or portal that does not exist), and the backend loop rewrites that failure into
//! the denial. PostgreSQL therefore keeps the protocol state exactly as it would for any
//! failed command: pipelined responses stay in order, the extended protocol skips to Sync,
//! and a transaction block is aborted, as the issue asks.

use crate::codec::{self, backend, backend::ErrorFields, frontend, Frame, FrontendMessage};
use crate::gate::{ClientError, CommandRecord, Gatekeeper, HoldOutcome, SessionGrant, SessionRecorder, Verdict};
use warden_core::Effect;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use crate::catalog::Catalog;
use crate::masking::{ResultMasking, RowPlan};
use crate::stream::BoxStream;
use warden_mask::MaskCounts;

/// Text certain to fail PostgreSQL's parser, sent in place of a denied command.
const DENIED_SQL: &str = "WARDEN DENIED";
/// A statement and portal name no client can have created (NUL cannot appear in names).
const DENIED_NAME: &str = "warden\u{1}denied";
const FLUSH_AT: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    pub max_message_bytes: usize,
}

/// What the backend loop should expect next from the upstream, in order.
enum Expect {
    /// A simple Query (or a refused FunctionCall): results until ReadyForQuery.
    Query { command: Option<Arc<Command>>, approval_id: Option<String>, denied: Option<Arc<ErrorFields>>, started: Instant, index: usize },
    Parse { denied: Option<Arc<ErrorFields>> },
    Bind { denied: Option<Arc<ErrorFields>> },
    /// `portal` names the portal for a portal Describe; `internal` marks one the gateway
    /// sent itself to learn a result's columns (its answer is not forwarded).
    Describe { denied: Option<Arc<ErrorFields>>, portal: Option<String>, internal: bool },
    Execute { command: Option<Arc<Command>>, approval_id: Option<String>, params_digest: Option<String>, denied: Option<Arc<ErrorFields>>, started: Instant, portal: String },
    Close,
    Sync,
    /// The frontend loop hit a protocol violation: send this FATAL and end the session.
    Fatal(ErrorFields),
}

impl Expect {
    fn denied(&self) -> Option<&Arc<ErrorFields>> {
        match self {
            Expect::Query { denied, .. } | Expect::Parse { denied } | Expect::Bind { denied } | Expect::Describe { denied, .. } | Expect::Execute { denied, .. } => denied.as_ref(),
            _ => None,
        }
    }

    /// The audit record of a finished (or failed) Query statement or Execute.
    fn record(&mut self, rows: Option<i64>, error_code: Option<String>, masked: &MaskCounts) -> Option<CommandRecord> {
        let (cmd, approval_id, params_digest, started, statement_index) = match self {
            Expect::Execute { command: Some(cmd), approval_id, params_digest, started, .. } => (cmd, approval_id.take(), params_digest.take(), started, None),
            Expect::Query { command: Some(cmd), approval_id, started, index, .. } => {
                let multi = cmd.verdict.classification.as_ref().is_some_and(|c| c.statements.len() > 1);
                let i = *index;
                *index += 1;
                (cmd, approval_id.clone(), None, started, multi.then_some(i))
            }
            _ => return None,
        };
        let masked = masked.iter().filter(|(_, n)| *n > 0).map(|(k, n)| (k.to_string(), n)).collect();
        Some(CommandRecord { sql: cmd.sql.clone(), verdict: cmd.verdict.clone(), statement_index, params_digest, rows, duration: Some(started.elapsed()), error_code, approval_id, masked })
    }

    fn is_extended(&self) -> bool {
        matches!(self, Expect::Parse { .. } | Expect::Bind { .. } | Expect::Describe { .. } | Expect::Execute { .. } | Expect::Close)
    }
}

/// A command text with its verdict as decided at the epoch it was decided in.
struct Command {
    sql: Arc<str>,
    verdict: Arc<Verdict>,
    epoch: u64,
}

impl Command {
    /// A verdict that rests on a just-in-time grant ends with the grant, mid-session too.
    fn expired(&self) -> bool {
        self.verdict.decision.valid_until.is_some_and(|t| unix_now() >= t)
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

#[allow(clippy::too_many_arguments)]
pub async fn run<G: Gatekeeper>(gate: Arc<G>, grant: Arc<SessionGrant>, client: BoxStream, client_buf: BytesMut, upstream: BoxStream, upstream_buf: BytesMut, limits: SessionLimits, catalog: Arc<Catalog>) -> String {
    let (client_rd, client_wr) = tokio::io::split(client);
    let (upstream_rd, upstream_wr) = tokio::io::split(upstream);
    let (tx, rx) = mpsc::unbounded_channel();
    let masking = gate.masker(&grant).map(|masker| Arc::new(ResultMasking { masker, catalog }));
    let recorder = gate.recorder(&grant);
    let mut frontend = Frontend { gate: gate.clone(), grant: grant.clone(), tx, statements: HashMap::new(), portals: HashMap::new(), described: HashSet::new(), cache: HashMap::new(), limits, masking: masking.clone(), recorder: recorder.clone() };
    let mut backend = Backend { gate, grant, rx, pending: VecDeque::new(), out: BytesMut::with_capacity(FLUSH_AT), limits, masking, query_plan: None, portal_plans: HashMap::new(), masked: MaskCounts::default(), recorder };
    let mut front_task = tokio::spawn(async move { frontend.run(client_rd, client_buf, upstream_wr).await });
    tokio::select! {
        reason = backend.run(upstream_rd, upstream_buf, client_wr) => { front_task.abort(); reason }
        reason = &mut front_task => reason.unwrap_or_else(|_| "frontend task failed".into()),
    }
}

struct Frontend<G: Gatekeeper> {
    gate: Arc<G>,
    grant: Arc<SessionGrant>,
    tx: mpsc::UnboundedSender<Expect>,
    statements: HashMap<String, Arc<Command>>,
    portals: HashMap<String, (Arc<Command>, String)>,
    cache: HashMap<Arc<str>, Arc<Command>>,
    limits: SessionLimits,
    /// Portals whose result columns the backend loop knows (described since their Bind).
    described: HashSet<String>,
    /// Whether results are masked, so every Execute needs its columns described.
    /// Set when results are masked: statements are also checked against the views they read.
    masking: Option<Arc<ResultMasking>>,
    /// `full` session recording (bind values; admission while the recorder is behind).
    recorder: Option<Arc<dyn SessionRecorder>>,
}

impl<G: Gatekeeper> Frontend<G> {
    async fn run(&mut self, mut rd: ReadHalf<BoxStream>, mut buf: BytesMut, mut wr: WriteHalf<BoxStream>) -> String {
        let mut out = BytesMut::with_capacity(FLUSH_AT);
        loop {
            let frame = match codec::split_frame(&mut buf, self.limits.max_message_bytes) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    if !out.is_empty() && wr.write_all_buf(&mut out).await.is_err() {
                        return "upstream closed".into();
                    }
                    match rd.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return "client closed".into(),
                        Ok(_) => continue,
                    }
                }
                Err(e) => return self.fatal("08P01", e.to_string()),
            };
            match self.handle(frame, &mut out).await {
                Ok(true) => {}
                Ok(false) => {
                    let _ = wr.write_all_buf(&mut out).await;
                    return "client terminated".into();
                }
                Err(fatal) => return fatal,
            }
            if out.len() >= FLUSH_AT && wr.write_all_buf(&mut out).await.is_err() {
                return "upstream closed".into();
            }
        }
    }

    fn fatal(&self, code: &'static str, message: String) -> String {
        let _ = self.tx.send(Expect::Fatal(ErrorFields::fatal(code, message.clone())));
        message
    }

    fn expect(&self, e: Expect) {
        let _ = self.tx.send(e);
    }

    /// The command for this text, decided at the current epoch.
    fn command(&mut self, sql: &str) -> Arc<Command> {
        let epoch = self.gate.epoch();
        if let Some(c) = self.cache.get(sql) {
            if c.epoch == epoch && !c.expired() {
                return c.clone();
            }
        }
        let sql: Arc<str> = Arc::from(sql);
        let verdict = self.gate.decide(&self.grant, &sql);
        let cmd = Arc::new(Command { sql: sql.clone(), verdict, epoch });
        if self.cache.len() >= 4096 {
            self.cache.clear();
        }
        self.cache.insert(sql, cmd.clone());
        cmd
    }

    /// A command re-decided now: grants can expire between Parse and Execute.
    fn current(&mut self, cmd: &Arc<Command>) -> Arc<Command> {
        if cmd.epoch == self.gate.epoch() && !cmd.expired() {
            cmd.clone()
        } else {
            self.command(&cmd.sql.clone())
        }
    }

    /// On a masked session, a command that may run is refused when a view it reads carries
    /// a masked column in a way the masker cannot follow (`crate::views`). Not cached with
    /// the verdict: a view can be redefined without the policy epoch moving.
    async fn refuse_unfollowable_views(&self, cmd: Arc<Command>) -> Arc<Command> {
        let (Some(masking), Some(c)) = (&self.masking, &cmd.verdict.classification) else {
            return cmd;
        };
        if cmd.verdict.decision.effect == Effect::Deny {
            return cmd;
        }
        let Some(misuse) = masking.view_misuse(&cmd.sql, &c.tables()).await else {
            return cmd;
        };
        let id = &self.grant.identity;
        let node = id.node.as_deref().unwrap_or("-");
        let decision = warden_core::Decision::deny_without_policy(format!(
            "warden: {misuse} (agent \"{}\" node \"{node}\"). Request access with: warden grant request --agent {} --node {node} --target {} --action unmask --for 15m --reason \"...\"",
            id.agent, id.agent, id.target
        ));
        Arc::new(Command { sql: cmd.sql.clone(), verdict: Arc::new(Verdict { classification: cmd.verdict.classification.clone(), decision }), epoch: cmd.epoch })
    }

    /// Whether a command may run now: Ok with the approval it used (if it was held), or the
    /// error the client gets instead. Denials are audited here.
    async fn admit(&mut self, cmd: &Arc<Command>, params_digest: Option<&str>) -> Result<Option<String>, Arc<ErrorFields>> {
        if let (Some(r), Effect::Allow | Effect::Hold) = (&self.recorder, cmd.verdict.decision.effect) {
            r.ready().await.map_err(|e| Arc::new(ErrorFields::error(e.sqlstate, e.message)))?;
        }
        match cmd.verdict.decision.effect {
            Effect::Allow => Ok(None),
            Effect::Hold => match self.gate.hold(&self.grant, &cmd.sql, &cmd.verdict, params_digest).await {
                HoldOutcome::Run { approval_id } => Ok(Some(approval_id)),
                HoldOutcome::Refuse { sqlstate, message, hint } => {
                    let mut e = ErrorFields::error(sqlstate, message).with_detail(format!("SQLSTATE {sqlstate}"));
                    e.hint = hint;
                    Err(Arc::new(e))
                }
            },
            Effect::Deny | Effect::NeedsGrant => {
                self.record_denial(cmd, params_digest.map(str::to_string));
                Err(Arc::new(denial_error(&cmd.verdict)))
            }
        }
    }

    fn record_denial(&self, cmd: &Command, params_digest: Option<String>) {
        let gate = self.gate.clone();
        let grant = self.grant.clone();
        let rec = CommandRecord { sql: cmd.sql.clone(), verdict: cmd.verdict.clone(), statement_index: None, params_digest, rows: None, duration: None, error_code: None, approval_id: None, masked: Vec::new() };
        tokio::spawn(async move {
            let _ = gate.record(&grant, rec, false).await;
        });
    }

    /// Returns Ok(false) when the client terminated, Err(reason) on a protocol violation.
    async fn handle(&mut self, frame: Frame, out: &mut BytesMut) -> Result<bool, String> {
        let msg = match FrontendMessage::decode(&frame) {
            Ok(m) => m,
            Err(e) => return Err(self.fatal("08P01", e.to_string())),
        };
        let now = Instant::now();
        match msg {
            FrontendMessage::Query { sql } => {
                let cmd = self.command(&sql);
                let cmd = self.refuse_unfollowable_views(cmd).await;
                match self.admit(&cmd, None).await {
                    Ok(approval_id) => {
                        self.expect(Expect::Query { command: Some(cmd), approval_id, denied: None, started: now, index: 0 });
                        frame.encode(out);
                    }
                    Err(error) => {
                        self.expect(Expect::Query { command: None, approval_id: None, denied: Some(error), started: now, index: 0 });
                        frontend::query(DENIED_SQL).encode(out);
                    }
                }
            }
            FrontendMessage::Parse { statement, sql, .. } => {
                let cmd = self.command(&sql);
                let cmd = self.refuse_unfollowable_views(cmd).await;
                // A held command parses and binds freely: nothing runs before Execute, where
                // the approval binds the parameters too.
                if cmd.verdict.decision.effect != Effect::Deny {
                    self.expect(Expect::Parse { denied: None });
                    frame.encode(out);
                } else {
                    self.record_denial(&cmd, None);
                    self.expect(Expect::Parse { denied: Some(Arc::new(denial_error(&cmd.verdict))) });
                    frontend::parse(&statement, DENIED_SQL).encode(out);
                }
                self.statements.insert(statement, cmd);
            }
            FrontendMessage::Bind { portal, statement, params } => {
                self.described.remove(&portal);
                let digest = params_digest(&params);
                if let Some(r) = &self.recorder {
                    r.bind(&digest, &params);
                }
                match self.statements.get(&statement).cloned() {
                    Some(cmd) => {
                        let cmd = self.current(&cmd);
                        if cmd.verdict.decision.effect != Effect::Deny {
                            self.expect(Expect::Bind { denied: None });
                            frame.encode(out);
                        } else {
                            self.record_denial(&cmd, Some(digest.clone()));
                            self.expect(Expect::Bind { denied: Some(Arc::new(denial_error(&cmd.verdict))) });
                            frontend::bind(&portal, DENIED_NAME).encode(out);
                        }
                        self.portals.insert(portal, (cmd, digest));
                    }
                    None => {
                        // Unknown to us means unknown upstream too: let PostgreSQL say so.
                        self.portals.remove(&portal);
                        self.expect(Expect::Bind { denied: None });
                        frame.encode(out);
                    }
                }
            }
            FrontendMessage::Describe { kind, ref name } => {
                let known = if kind == b'S' { self.statements.get(name).cloned() } else { self.portals.get(name).map(|(c, _)| c.clone()) };
                let denied = known.filter(|c| c.verdict.decision.effect == Effect::Deny).map(|c| Arc::new(denial_error(&c.verdict)));
                let portal = (kind == b'P').then(|| name.clone());
                if let Some(p) = &portal {
                    self.described.insert(p.clone());
                }
                self.expect(Expect::Describe { denied, portal, internal: false });
                frame.encode(out);
            }
            FrontendMessage::Execute { portal, .. } => match self.portals.get(&portal).cloned() {
                Some((cmd, digest)) => {
                    let cmd = self.current(&cmd);
                    match self.admit(&cmd, Some(&digest)).await {
                        Ok(approval_id) => {
                            if self.masking.is_some() && self.described.insert(portal.clone()) {
                                // The client did not ask for the result's columns; the masker
                                // must know them before the first row.
                                self.expect(Expect::Describe { denied: None, portal: Some(portal.clone()), internal: true });
                                frontend::describe_portal(&portal).encode(out);
                            }
                            self.expect(Expect::Execute { command: Some(cmd), approval_id, params_digest: Some(digest), denied: None, started: now, portal });
                            frame.encode(out);
                        }
                        Err(error) => {
                            self.expect(Expect::Execute { command: None, approval_id: None, params_digest: None, denied: Some(error), started: now, portal });
                            frontend::execute(DENIED_NAME).encode(out);
                        }
                    }
                }
                None => {
                    self.expect(Expect::Execute { command: None, approval_id: None, params_digest: None, denied: None, started: now, portal });
                    frame.encode(out);
                }
            },
            FrontendMessage::Close { kind, name } => {
                if kind == b'S' {
                    self.statements.remove(&name);
                } else {
                    self.portals.remove(&name);
                    self.described.remove(&name);
                }
                self.expect(Expect::Close);
                frame.encode(out);
            }
            FrontendMessage::Sync => {
                self.portals.retain(|name, _| !name.is_empty());
                self.described.remove("");
                self.expect(Expect::Sync);
                frame.encode(out);
            }
            FrontendMessage::Flush | FrontendMessage::CopyData | FrontendMessage::CopyDone | FrontendMessage::CopyFail => frame.encode(out),
            FrontendMessage::Terminate => {
                frame.encode(out);
                return Ok(false);
            }
            FrontendMessage::FunctionCall => {
                // The fast-path interface calls any function by OID, around every rule.
                let verdict = Arc::new(Verdict {
                    classification: None,
                    decision: warden_core::Decision::deny_without_policy("warden: the fast-path function call interface is not allowed through the gateway"),
                });
                let cmd = Command { sql: Arc::from("<fast-path function call>"), verdict: verdict.clone(), epoch: 0 };
                self.record_denial(&cmd, None);
                self.expect(Expect::Query { command: None, approval_id: None, denied: Some(Arc::new(denial_error(&verdict))), started: now, index: 0 });
                frontend::query(DENIED_SQL).encode(out);
            }
            FrontendMessage::Password(_) => return Err(self.fatal("08P01", "unexpected password message".into())),
            FrontendMessage::Other(tag) => return Err(self.fatal("08P01", format!("invalid frontend message type {tag}"))),
        }
        Ok(true)
    }
}

fn params_digest(params: &[Option<Bytes>]) -> String {
    let mut h = Sha256::new();
    h.update((params.len() as u64).to_be_bytes());
    for p in params {
        match p {
            None => h.update(u64::MAX.to_be_bytes()),
            Some(v) => {
                h.update((v.len() as u64).to_be_bytes());
                h.update(v);
            }
        }
    }
    hex::encode(h.finalize())
}

struct Backend<G: Gatekeeper> {
    gate: Arc<G>,
    grant: Arc<SessionGrant>,
    rx: mpsc::UnboundedReceiver<Expect>,
    pending: VecDeque<Expect>,
    out: BytesMut,
    limits: SessionLimits,
    masking: Option<Arc<ResultMasking>>,
    /// The plan of the simple-protocol result being streamed.
    query_plan: Option<Arc<RowPlan>>,
    /// Plans of portals, from their Describe (the client's or the gateway's own).
    portal_plans: HashMap<String, Arc<RowPlan>>,
    /// Values masked so far in the current command.
    masked: MaskCounts,
    recorder: Option<Arc<dyn SessionRecorder>>,
}

enum Step {
    Continue,
    End(String),
}

impl<G: Gatekeeper> Backend<G> {
    async fn run(&mut self, mut rd: ReadHalf<BoxStream>, mut buf: BytesMut, mut wr: WriteHalf<BoxStream>) -> String {
        let mut revoked = self.grant.revoked.clone();
        let expiry = token_deadline(self.grant.expires_at_unix);
        let reason = loop {
            let frame = match codec::split_frame(&mut buf, self.limits.max_message_bytes) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    if !self.out.is_empty() && wr.write_all_buf(&mut self.out).await.is_err() {
                        break "client closed".to_string();
                    }
                    tokio::select! {
                        biased;
                        changed = revoked.changed() => {
                            let why = match changed {
                                Ok(()) => revoked.borrow().clone(),
                                Err(_) => Some("gateway shutting down".to_string()),
                            };
                            if let Some(why) = why {
                                self.send_fatal(&mut wr, ErrorFields::fatal("57P01", format!("warden: session ended: {why}"))).await;
                                break why;
                            }
                            continue;
                        }
                        _ = tokio::time::sleep_until(expiry) => {
                            let why = "token expired".to_string();
                            self.send_fatal(&mut wr, ErrorFields::fatal("57P01", "warden: session ended: token expired; connect again with a fresh token")).await;
                            break why;
                        }
                        e = self.next_expect() => {
                            if let Some(Expect::Fatal(f)) = e {
                                let why = f.message.clone();
                                self.send_fatal(&mut wr, f).await;
                                break why;
                            }
                            continue;
                        }
                        n = rd.read_buf(&mut buf) => match n {
                            Ok(0) | Err(_) => break "upstream closed".to_string(),
                            Ok(_) => continue,
                        },
                    }
                }
                Err(e) => {
                    self.send_fatal(&mut wr, ErrorFields::fatal("08P01", format!("warden: upstream protocol error: {e}"))).await;
                    break "upstream protocol error".to_string();
                }
            };
            match self.handle(frame).await {
                Step::Continue => {}
                Step::End(why) => {
                    let _ = wr.write_all_buf(&mut self.out).await;
                    break why;
                }
            }
            if self.out.len() >= FLUSH_AT && wr.write_all_buf(&mut self.out).await.is_err() {
                break "client closed".to_string();
            }
        };
        let _ = wr.flush().await;
        reason
    }

    /// Waits for an expectation that the frontend posts while nothing is buffered; only a
    /// Fatal needs handling here, others are queued.
    async fn next_expect(&mut self) -> Option<Expect> {
        match self.rx.recv().await {
            Some(Expect::Fatal(f)) => Some(Expect::Fatal(f)),
            Some(e) => {
                self.pending.push_back(e);
                None
            }
            None => std::future::pending().await,
        }
    }

    async fn send_fatal(&mut self, wr: &mut WriteHalf<BoxStream>, fields: ErrorFields) {
        fields.frame().encode(&mut self.out);
        let _ = wr.write_all_buf(&mut self.out).await;
        let _ = wr.flush().await;
    }

    fn drain(&mut self) -> Option<String> {
        while let Ok(e) = self.rx.try_recv() {
            if let Expect::Fatal(f) = e {
                f.frame().encode(&mut self.out);
                return Some(f.message);
            }
            self.pending.push_back(e);
        }
        None
    }

    async fn handle(&mut self, frame: Frame) -> Step {
        if let Some(why) = self.drain() {
            return Step::End(why);
        }
        match frame.tag {
            b'E' => return self.on_error(frame).await,
            b'Z' => {
                if matches!(self.pending.front(), Some(Expect::Query { .. } | Expect::Sync)) {
                    self.pending.pop_front();
                }
            }
            b'1' | b'2' | b'3' => {
                self.pending.pop_front();
            }
            b'n' => {
                if let Some(Expect::Describe { portal, internal, .. }) = self.pending.pop_front() {
                    if let Some(p) = portal {
                        self.portal_plans.remove(&p);
                    }
                    if internal {
                        return Step::Continue;
                    }
                }
            }
            b'T' => return self.on_row_description(frame).await,
            b'D' => return self.on_data_row(frame),
            b'C' | b'I' | b's' => {
                let rows = if frame.tag == b'C' { backend::command_rows(&frame.body) } else { None };
                if let Err(e) = self.on_complete(rows).await {
                    // The result of a write must not reach the agent before its audit is
                    // durable; with the audit store failing, withhold it and end the session.
                    let f = ErrorFields::fatal(e.sqlstate, e.message);
                    f.frame().encode(&mut self.out);
                    return Step::End(f.message);
                }
            }
            _ => {}
        }
        frame.encode(&mut self.out);
        Step::Continue
    }

    /// Plans masking for the result this RowDescription announces, and forwards it (with
    /// retyped columns where masked values cannot keep their type) unless the gateway asked.
    async fn on_row_description(&mut self, frame: Frame) -> Step {
        let describe = match self.pending.front() {
            Some(Expect::Describe { portal, internal, .. }) => Some((portal.clone(), *internal)),
            _ => None,
        };
        if describe.is_some() {
            self.pending.pop_front();
        }
        let mut forward = frame.clone();
        if let Some(masking) = &self.masking {
            let plan = match masking.plan(&frame.body).await {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    tracing::error!(session = %self.grant.session_id, error = %e, "cannot plan result masking");
                    let f = ErrorFields::fatal("58030", "warden: the result cannot be checked for sensitive data, so it is withheld (fail closed)");
                    f.frame().encode(&mut self.out);
                    return Step::End(f.message);
                }
            };
            if let Some(d) = &plan.description {
                forward = Frame::new(b'T', d.clone());
            }
            match &describe {
                Some((Some(portal), _)) => {
                    self.portal_plans.insert(portal.clone(), plan);
                }
                Some((None, _)) => {}
                None => self.query_plan = Some(plan),
            }
        }
        if let Some(r) = &self.recorder {
            r.columns(&forward.body);
        }
        if !matches!(describe, Some((_, true))) {
            forward.encode(&mut self.out);
        }
        Step::Continue
    }

    fn on_data_row(&mut self, frame: Frame) -> Step {
        let Some(masking) = &self.masking else {
            if let Some(r) = &self.recorder {
                r.row(&frame.body);
            }
            frame.encode(&mut self.out);
            return Step::Continue;
        };
        let plan = match self.pending.front() {
            Some(Expect::Execute { portal, .. }) => self.portal_plans.get(portal),
            Some(Expect::Query { .. }) => self.query_plan.as_ref(),
            _ => None,
        };
        let Some(plan) = plan else {
            let f = ErrorFields::fatal("58030", "warden: a result arrived whose columns are unknown, so it cannot be checked for sensitive data (fail closed)");
            f.frame().encode(&mut self.out);
            return Step::End(f.message);
        };
        match masking.mask_row(plan, &frame.body) {
            Ok((masked, counts)) => {
                self.masked.merge(&counts);
                let row = match masked {
                    Some(body) => Frame::new(b'D', body),
                    None => frame,
                };
                if let Some(r) = &self.recorder {
                    r.row(&row.body);
                }
                row.encode(&mut self.out);
                Step::Continue
            }
            Err(e) => {
                tracing::error!(session = %self.grant.session_id, error = %e, "cannot mask a row");
                let f = ErrorFields::fatal("58030", "warden: a result row could not be checked for sensitive data, so the result is withheld (fail closed)");
                f.frame().encode(&mut self.out);
                Step::End(f.message)
            }
        }
    }

    async fn on_complete(&mut self, rows: Option<i64>) -> Result<(), ClientError> {
        let masked = std::mem::take(&mut self.masked);
        let record = match self.pending.front_mut() {
            Some(e @ Expect::Execute { .. }) => {
                let rec = e.record(rows, None, &masked);
                self.pending.pop_front();
                rec
            }
            Some(e @ Expect::Query { .. }) => {
                self.query_plan = None;
                e.record(rows, None, &masked)
            }
            _ => None,
        };
        if let Some(rec) = record {
            let durable = statement_is_write(&rec);
            self.gate.record(&self.grant, rec, durable).await?;
        }
        Ok(())
    }

    async fn on_error(&mut self, frame: Frame) -> Step {
        let Some(front) = self.pending.front_mut() else {
            // An error nobody asked for (the server is shutting the backend down).
            let fatal = ErrorFields::decode(&frame.body).severity != "ERROR";
            frame.encode(&mut self.out);
            return if fatal { Step::End("upstream ended the session".into()) } else { Step::Continue };
        };
        let fields = ErrorFields::decode(&frame.body);
        match front.denied() {
            Some(error) => error.frame().encode(&mut self.out),
            None => {
                let masked = std::mem::take(&mut self.masked);
                if let Some(rec) = front.record(None, Some(fields.code.clone()), &masked) {
                    let _ = self.gate.record(&self.grant, rec, false).await;
                }
                frame.encode(&mut self.out);
            }
        }
        if self.pending.front().is_some_and(Expect::is_extended) {
            // PostgreSQL skips every extended-protocol message until Sync after an error.
            while self.pending.front().is_some_and(Expect::is_extended) {
                self.pending.pop_front();
            }
        }
        if fields.severity == "FATAL" || fields.severity == "PANIC" {
            return Step::End("upstream ended the session".into());
        }
        Step::Continue
    }
}

fn statement_is_write(rec: &CommandRecord) -> bool {
    match (&rec.verdict.classification, rec.statement_index) {
        (Some(c), Some(i)) => c.statements.get(i).is_none_or(|s| s.accesses.iter().any(|a| a.action.is_write())),
        _ => rec.verdict.is_write(),
    }
}

/// The client's view of a denial: the rule's sentence as the message, how to ask for
/// access as the hint, and the SQLSTATE and deciding policies as the detail, so the code is
/// visible even at psql's default verbosity.
pub fn denial_error(verdict: &Verdict) -> ErrorFields {
    let reason = &verdict.decision.reason;
    let (message, hint) = match reason.split_once(" Request access with: ") {
        Some((m, h)) => (m.to_string(), Some(format!("Request access with: {h}"))),
        None => (reason.clone(), None),
    };
    let mut detail = "SQLSTATE 42501 (insufficient_privilege)".to_string();
    if !verdict.decision.policy_ids.is_empty() {
        detail.push_str(&format!("; decided by policy: {}", verdict.decision.policy_ids.join(", ")));
    }
    let e = ErrorFields::error("42501", message).with_detail(detail);
    match hint {
        Some(h) => e.with_hint(h),
        None => e,
    }
}

fn token_deadline(expires_at_unix: i64) -> tokio::time::Instant {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let left = (expires_at_unix as f64 - now).max(0.0);
    tokio::time::Instant::now() + Duration::from_secs_f64(left.min(10.0 * 365.0 * 86_400.0))
}
