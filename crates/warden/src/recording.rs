//! Session recording (issue 12): the `[recording]` config, the per-session level choice,
//! the gate's side of recording (start, statements, end, `full` capture of bind values and
//! results as the agent saw them) and the `warden sessions` commands.
//!
//! ```toml
//! [recording]
//! default = "metadata"          # off | metadata | full
//! max_rows = 100                # full: rows kept per statement
//! max_bytes = 65536             # full: result bytes kept per statement
//! retention = "30d"             # recordings older than this are deleted
//! [[recording.rules]]           # most specific match wins: agent+target, agent, target
//! target = "payments"
//! level = "full"
//! ```

use crate::config::Config;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden_audit::recording::{now_us, EntryBody, RecorderConfig, RecordingHandle, RecordingLevel, SessionMeta, StatementEntry};
use warden_audit::{AuditEvent, AuditHandle};
use warden_pg::gate::{ClientError, CommandRecord, SessionGrant, SessionRecorder};
use warden_store::{RecordingFilter, RecordingSummary, Store};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    #[serde(default = "default_level")]
    pub default: RecordingLevel,
    #[serde(default)]
    pub rules: Vec<RecordingRule>,
    /// `full`: result rows kept per statement (the rest is counted, not kept).
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// `full`: result and bind bytes kept per statement.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Memory for entries not yet stored, across all sessions. Beyond it `metadata`
    /// sessions drop entries (recorded as a gap) and `full` sessions hold new statements.
    #[serde(default = "default_max_pending")]
    pub max_pending_bytes: usize,
    /// How long a `full` statement waits for the recorder before it is refused.
    #[serde(default = "default_full_wait")]
    pub full_wait: String,
    /// How often chunks are written (at most 1s: what a crash may lose).
    #[serde(default = "default_flush")]
    pub flush_every: String,
    /// Recordings of sessions that ended longer ago are deleted; absent: kept.
    #[serde(default)]
    pub retention: Option<String>,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig { default: default_level(), rules: Vec::new(), max_rows: default_max_rows(), max_bytes: default_max_bytes(), max_pending_bytes: default_max_pending(), full_wait: default_full_wait(), flush_every: default_flush(), retention: None }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingRule {
    pub agent: Option<String>,
    pub target: Option<String>,
    pub level: RecordingLevel,
}

fn default_level() -> RecordingLevel {
    RecordingLevel::Metadata
}
fn default_max_rows() -> usize {
    100
}
fn default_max_bytes() -> usize {
    64 * 1024
}
fn default_max_pending() -> usize {
    64 << 20
}
fn default_full_wait() -> String {
    "5s".into()
}
fn default_flush() -> String {
    // Half the promised bound: a chunk cut just after a flush waits one interval plus the
    // write of the chunk before it.
    "500ms".into()
}

fn duration(key: &str, s: &str) -> Result<Duration> {
    humantime::parse_duration(s).map_err(|e| anyhow::anyhow!("{key}: {s:?} is not a duration like \"1s\": {e}"))
}

impl RecordingConfig {
    pub fn validate(&self) -> Result<()> {
        for (i, r) in self.rules.iter().enumerate() {
            if r.agent.is_none() && r.target.is_none() {
                bail!("recording.rules[{i}]: name an agent, a target, or both (use recording.default for everything)");
            }
        }
        let flush = duration("recording.flush_every", &self.flush_every)?;
        if flush.is_zero() || flush > Duration::from_secs(1) {
            bail!("recording.flush_every: between 1ms and 1s (a crash loses at most this much recording)");
        }
        duration("recording.full_wait", &self.full_wait)?;
        if let Some(r) = &self.retention {
            duration("recording.retention", r)?;
        }
        if self.max_pending_bytes < 64 * 1024 {
            bail!("recording.max_pending_bytes: at least 65536");
        }
        Ok(())
    }

    /// The level for a session: the most specific rule (agent and target, then agent,
    /// then target), else the default.
    pub fn level(&self, agent: &str, target: &str) -> RecordingLevel {
        let score = |r: &RecordingRule| -> Option<u8> {
            let a = match &r.agent {
                Some(x) if x == agent => 2,
                Some(_) => return None,
                None => 0,
            };
            let t = match &r.target {
                Some(x) if x == target => 1,
                Some(_) => return None,
                None => 0,
            };
            Some(a + t)
        };
        self.rules.iter().filter_map(|r| score(r).map(|s| (s, r.level))).max_by_key(|(s, _)| *s).map(|(_, l)| l).unwrap_or(self.default)
    }

    pub fn recorder_config(&self) -> RecorderConfig {
        RecorderConfig {
            max_pending_bytes: self.max_pending_bytes,
            flush_every: duration("", &self.flush_every).unwrap_or(Duration::from_secs(1)),
            retention: self.retention.as_deref().and_then(|r| humantime::parse_duration(r).ok()),
            ..RecorderConfig::default()
        }
    }
}

/// The gateway's recorder: which sessions record at which level, and the writer.
pub struct Recording {
    handle: RecordingHandle,
    config: RecordingConfig,
    full_wait: Duration,
    audit: AuditHandle,
    masker: Option<Arc<warden_mask::Masker>>,
    sessions: Mutex<HashMap<String, Arc<SessionRec>>>,
}

struct SessionRec {
    id: Arc<str>,
    level: RecordingLevel,
    /// Metadata entries dropped since the last gap entry.
    dropped: AtomicU64,
    full: Option<Arc<FullCapture>>,
}

impl Recording {
    pub fn start(config: &Config, store: Arc<dyn Store>, audit: AuditHandle) -> Option<Arc<Recording>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let masker = config.masking.as_ref().and_then(|m| warden_mask::Masker::new(m).ok()).map(Arc::new);
        let rc = &config.recording;
        let handle = RecordingHandle::start(store, audit.clone(), rc.recorder_config(), runtime);
        let copy = RecordingConfig {
            default: rc.default,
            rules: rc.rules.iter().map(|r| RecordingRule { agent: r.agent.clone(), target: r.target.clone(), level: r.level }).collect(),
            max_rows: rc.max_rows,
            max_bytes: rc.max_bytes,
            max_pending_bytes: rc.max_pending_bytes,
            full_wait: rc.full_wait.clone(),
            flush_every: rc.flush_every.clone(),
            retention: rc.retention.clone(),
        };
        let full_wait = duration("", &rc.full_wait).unwrap_or(Duration::from_secs(5));
        Some(Arc::new(Recording { handle, config: copy, full_wait, audit, masker, sessions: Mutex::new(HashMap::new()) }))
    }

    /// Session start: always recorded, whatever the level.
    pub fn session_started(&self, grant: &SessionGrant) {
        let id = &grant.identity;
        let level = self.config.level(&id.agent, &id.target);
        let sid: Arc<str> = Arc::from(grant.session_id.as_str());
        let full = (level == RecordingLevel::Full).then(|| {
            Arc::new(FullCapture { handle: self.handle.clone(), audit: self.audit.clone(), session: sid.clone(), agent: id.agent.clone(), wait: self.full_wait, max_rows: self.config.max_rows, max_bytes: self.config.max_bytes, masker: self.masker.clone(), state: Mutex::new(FullState::default()) })
        });
        let meta = SessionMeta { session_id: grant.session_id.clone(), agent: id.agent.clone(), owner: Some(id.owner.clone()), node: id.node.clone(), run: id.run.clone(), thread: id.thread.clone(), graph_version: id.graph_version.clone(), target: id.target.clone(), level };
        let _ = self.handle.entry(&sid, now_us(), EntryBody::Start(meta), true);
        self.sessions.lock().unwrap().insert(grant.session_id.clone(), Arc::new(SessionRec { id: sid, level, dropped: AtomicU64::new(0), full }));
    }

    fn session(&self, session_id: &str) -> Option<Arc<SessionRec>> {
        self.sessions.lock().unwrap().get(session_id).cloned()
    }

    pub fn recorder(&self, grant: &SessionGrant) -> Option<Arc<dyn SessionRecorder>> {
        let s = self.session(&grant.session_id)?;
        s.full.clone().map(|f| f as Arc<dyn SessionRecorder>)
    }

    /// One finished (or refused) command; called before its audit event is written.
    pub fn statement(&self, grant: &SessionGrant, record: &CommandRecord) {
        let Some(s) = self.session(&grant.session_id) else { return };
        if s.level == RecordingLevel::Off {
            return;
        }
        let decision = &record.verdict.decision;
        let statement = match (&record.verdict.classification, record.statement_index) {
            (Some(c), Some(i)) => c.statements.get(i).map(|st| st.text.clone()),
            _ => None,
        };
        let mut entry = StatementEntry {
            sql: statement.unwrap_or_else(|| record.sql.to_string()),
            statement_index: record.statement_index,
            decision: decision.effect.as_str().to_string(),
            policy_ids: decision.policy_ids.clone(),
            reason: (!decision.allowed()).then(|| decision.reason.clone()),
            params_digest: record.params_digest.clone(),
            rows: record.rows,
            duration_us: record.duration.map(|d| d.as_micros() as u64),
            error: record.error_code.as_ref().map(|c| format!("SQLSTATE {c}")),
            approval_id: record.approval_id.clone(),
            masked: record.masked.clone(),
            ..Default::default()
        };
        let at = now_us() - entry.duration_us.unwrap_or(0) as i64;
        if let Some(full) = &s.full {
            full.complete(&mut entry, record);
            // Full recording never drops: the statement waited for room before it ran.
            let _ = self.handle.entry(&s.id, at, EntryBody::Statement(entry), true);
            return;
        }
        let pending_gap = s.dropped.load(Ordering::Relaxed);
        if pending_gap > 0 && self.handle.has_room() {
            let n = s.dropped.swap(0, Ordering::Relaxed);
            let _ = self.handle.entry(&s.id, now_us(), EntryBody::Gap { dropped: n }, true);
            let mut ev = gap_event(grant, "recording_gap_closed");
            ev.extra.insert("dropped".into(), n.into());
            let _ = self.audit.record_nowait(ev);
        }
        if self.handle.entry(&s.id, at, EntryBody::Statement(entry), false).is_err() && s.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            // The start of a gap is audited at once (the audit log never drops).
            let mut ev = gap_event(grant, "recording_gap");
            ev.reason = Some("the session recorder fell behind (recording.max_pending_bytes); metadata entries are dropped until it catches up".into());
            let _ = self.audit.record_nowait(ev);
        }
    }

    /// Session end with its reason: always recorded.
    pub fn session_ended(&self, grant: &SessionGrant, reason: &str) {
        let Some(s) = self.sessions.lock().unwrap().remove(&grant.session_id) else { return };
        let n = s.dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            let _ = self.handle.entry(&s.id, now_us(), EntryBody::Gap { dropped: n }, true);
            let mut ev = gap_event(grant, "recording_gap_closed");
            ev.extra.insert("dropped".into(), n.into());
            let _ = self.audit.record_nowait(ev);
        }
        let _ = self.handle.entry(&s.id, now_us(), EntryBody::End { reason: reason.to_string() }, true);
    }

    pub async fn shutdown(&self) {
        self.handle.shutdown().await;
    }
}

fn gap_event(grant: &SessionGrant, kind: &str) -> AuditEvent {
    let mut ev = AuditEvent::new(kind, "allow");
    ev.session_id = Some(grant.session_id.clone());
    ev.agent = Some(grant.identity.agent.clone());
    ev.node = grant.identity.node.clone();
    ev.target = Some(grant.identity.target.clone());
    ev
}

#[derive(Default)]
struct FullState {
    binds: HashMap<String, Vec<Option<String>>>,
    columns: Option<(Vec<String>, Vec<i16>)>,
    rows: Vec<Vec<Option<String>>>,
    bytes: usize,
    truncated: bool,
}

/// `full` capture for one session.
struct FullCapture {
    handle: RecordingHandle,
    audit: AuditHandle,
    session: Arc<str>,
    agent: String,
    wait: Duration,
    max_rows: usize,
    max_bytes: usize,
    /// Bind values are masked with the same detectors as results before they are kept.
    masker: Option<Arc<warden_mask::Masker>>,
    state: Mutex<FullState>,
}

impl FullCapture {
    fn complete(&self, entry: &mut StatementEntry, record: &CommandRecord) {
        let mut st = self.state.lock().unwrap();
        if let Some(d) = &record.params_digest {
            entry.params = st.binds.get(d).cloned();
        }
        // A refusal never reached the database: the rows buffered belong to a command
        // still running, not to it.
        if record.duration.is_none() {
            return;
        }
        entry.columns = st.columns.as_ref().map(|(names, _)| names.clone());
        entry.result = Some(std::mem::take(&mut st.rows));
        entry.truncated = std::mem::take(&mut st.truncated);
        st.bytes = 0;
    }

    fn text(&self, v: &[u8], binary: bool) -> String {
        match (binary, std::str::from_utf8(v)) {
            (false, Ok(s)) => s.to_string(),
            _ => format!("\\x{}", hex::encode(v)),
        }
    }
}

#[async_trait::async_trait]
impl SessionRecorder for FullCapture {
    async fn ready(&self) -> Result<(), ClientError> {
        if self.handle.has_room() || self.handle.wait_for_room(self.wait).await {
            return Ok(());
        }
        let mut ev = AuditEvent::new("recording_behind", "deny");
        ev.session_id = Some(self.session.to_string());
        ev.agent = Some(self.agent.clone());
        ev.reason = Some("full recording cannot keep up; the statement was refused (fail closed)".into());
        let _ = self.audit.record_nowait(ev);
        Err(ClientError::new("53000", "warden: this session is recorded in full and the recorder is behind; the statement was refused so nothing runs unrecorded (retry shortly, or raise recording.max_pending_bytes)"))
    }

    fn bind(&self, params_digest: &str, params: &[Option<warden_pg::gate::Bytes>]) {
        let mut st = self.state.lock().unwrap();
        if st.binds.contains_key(params_digest) {
            return;
        }
        if st.binds.len() >= 256 {
            st.binds.clear();
        }
        let mut budget = self.max_bytes;
        let values = params
            .iter()
            .map(|p| {
                p.as_ref().map(|v| {
                    let s = self.text(&v[..v.len().min(budget)], false);
                    budget = budget.saturating_sub(v.len());
                    match &self.masker {
                        Some(m) => m.mask_str(&s).0.into_owned(),
                        None => s,
                    }
                })
            })
            .collect();
        st.binds.insert(params_digest.to_string(), values);
    }

    fn columns(&self, body: &[u8]) {
        let mut st = self.state.lock().unwrap();
        st.columns = parse_row_description(body);
    }

    fn row(&self, body: &[u8]) {
        let mut st = self.state.lock().unwrap();
        if st.truncated || st.rows.len() >= self.max_rows || st.bytes >= self.max_bytes {
            st.truncated = true;
            return;
        }
        let formats = st.columns.as_ref().map(|(_, f)| f.clone()).unwrap_or_default();
        let Some(values) = parse_data_row(body) else { return };
        let mut size = 0;
        let row: Vec<Option<String>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.map(|v| {
                    size += v.len();
                    self.text(v, formats.get(i).copied() == Some(1))
                })
            })
            .collect();
        st.bytes += size;
        st.rows.push(row);
    }
}

fn parse_row_description(body: &[u8]) -> Option<(Vec<String>, Vec<i16>)> {
    let n = i16::from_be_bytes(body.get(0..2)?.try_into().ok()?) as usize;
    let mut pos = 2;
    let (mut names, mut formats) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let end = pos + body.get(pos..)?.iter().position(|b| *b == 0)?;
        names.push(String::from_utf8_lossy(&body[pos..end]).into_owned());
        pos = end + 1 + 4 + 2 + 4 + 2 + 4;
        formats.push(i16::from_be_bytes(body.get(pos..pos + 2)?.try_into().ok()?));
        pos += 2;
    }
    Some((names, formats))
}

fn parse_data_row(body: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let n = i16::from_be_bytes(body.get(0..2)?.try_into().ok()?) as usize;
    let mut pos = 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes(body.get(pos..pos + 4)?.try_into().ok()?);
        pos += 4;
        if len < 0 {
            out.push(None);
        } else {
            let v = body.get(pos..pos + len as usize)?;
            pos += len as usize;
            out.push(Some(v));
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// CLI

#[derive(Subcommand)]
pub enum SessionsCmd {
    /// Recorded sessions, newest first.
    List {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        node: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// RFC 3339 time or a duration ago, e.g. 1h.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// A session's summary, its entries, and whether its chunks verify against the audit chain.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Print the session's statements and results with their original timing.
    Replay {
        id: String,
        /// Speed factor (2 = twice as fast; 0 = no waiting).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
    /// The session's entries as JSON Lines (a header line, then one entry per line).
    Export { id: String },
}

use warden_audit::recording::{fmt_us, summary_json};


fn find(store: &dyn Store, id: &str) -> Result<RecordingSummary> {
    let rec = store.recordings().context("this store keeps no recordings")?;
    rec.recording(id)?.with_context(|| format!("no recorded session {id:?} (see warden sessions list)"))
}

pub fn run(cmd: SessionsCmd, _config: &Config, store: Arc<dyn Store>, parse_since: impl Fn(&str) -> Result<i64>) -> Result<ExitCode> {
    let rec = store.recordings().context("this store keeps no recordings")?;
    match cmd {
        SessionsCmd::List { agent, node, target, since, limit, json } => {
            let since = since.as_deref().map(&parse_since).transpose()?;
            let list = rec.recordings(&RecordingFilter { agent, node, target, since, limit: Some(limit) })?;
            if json {
                println!("{}", Value::Array(list.iter().map(summary_json).collect()));
            } else {
                println!("{:<26} {:<24} {:<12} {:<12} {:<9} {:>6}  {:<24} END", "SESSION", "STARTED", "AGENT", "NODE", "LEVEL", "STMTS", "TARGET");
                for s in &list {
                    let end = match (&s.ended_at, &s.end_reason) {
                        (Some(_), Some(r)) => r.clone(),
                        _ => "(open)".into(),
                    };
                    println!("{:<26} {:<24} {:<12} {:<12} {:<9} {:>6}  {:<24} {end}", s.session_id, fmt_us(s.started_at), s.agent, s.node.as_deref().unwrap_or("-"), s.level, s.statements, s.target);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SessionsCmd::Show { id, json } => {
            let s = find(store.as_ref(), &id)?;
            let loaded = warden_audit::recording::load(store.as_ref(), &s).map_err(|e| anyhow::anyhow!(e))?;
            if json {
                println!("{}", serde_json::json!({"session": summary_json(&s), "verified": loaded.verified, "problems": loaded.problems, "entries": loaded.entries}));
            } else {
                println!("session   {}", s.session_id);
                println!("agent     {} (owner {})", s.agent, s.owner.as_deref().unwrap_or("-"));
                println!("node      {}   run {}   target {}", s.node.as_deref().unwrap_or("-"), s.run.as_deref().unwrap_or("-"), s.target);
                println!("level     {}", s.level);
                println!("started   {}", fmt_us(s.started_at));
                println!("ended     {} ({})", s.ended_at.map(fmt_us).unwrap_or_else(|| "-".into()), s.end_reason.as_deref().unwrap_or("open"));
                println!("entries   {} ({} statements, {} chunks, {} bytes, {} dropped)", s.entries, s.statements, s.chunks, s.bytes, s.dropped);
                println!("verified  {}", if loaded.verified { "yes: every chunk matches its digest in the audit chain".to_string() } else { format!("NO: {}", loaded.problems.join("; ")) });
                println!();
                for e in &loaded.entries {
                    println!("{}", render_entry(e, s.started_at, false));
                }
            }
            Ok(if loaded.verified { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        SessionsCmd::Replay { id, speed } => {
            let s = find(store.as_ref(), &id)?;
            let loaded = warden_audit::recording::load(store.as_ref(), &s).map_err(|e| anyhow::anyhow!(e))?;
            if !loaded.verified {
                eprintln!("warning: recording does not verify: {}", loaded.problems.join("; "));
            }
            let mut out = std::io::stdout().lock();
            let mut last: Option<i64> = None;
            for e in &loaded.entries {
                let at = e.get("at_us").and_then(Value::as_i64).unwrap_or(s.started_at);
                if let (Some(prev), true) = (last, speed > 0.0) {
                    let wait = ((at - prev).max(0) as f64 / speed) as u64;
                    out.flush().ok();
                    std::thread::sleep(Duration::from_micros(wait.min(60_000_000)));
                }
                last = Some(at);
                writeln!(out, "{}", render_entry(e, s.started_at, true))?;
            }
            Ok(if loaded.verified { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        SessionsCmd::Export { id } => {
            let s = find(store.as_ref(), &id)?;
            let loaded = warden_audit::recording::load(store.as_ref(), &s).map_err(|e| anyhow::anyhow!(e))?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", serde_json::json!({"kind": "recording", "format": "warden-recording/v1", "session": summary_json(&s), "verified": loaded.verified, "problems": loaded.problems}))?;
            for e in &loaded.entries {
                writeln!(out, "{e}")?;
            }
            Ok(if loaded.verified { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

/// One entry as text: `+12.345s  statement  allow  SELECT ...  (1 row, 0.3 ms)` and, with
/// `results`, the recorded rows under it.
pub fn render_entry(e: &Value, started_at: i64, results: bool) -> String {
    let at = e.get("at_us").and_then(Value::as_i64).unwrap_or(started_at);
    let offset = (at - started_at) as f64 / 1e6;
    let kind = e.get("kind").and_then(Value::as_str).unwrap_or("?");
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut line = format!("+{offset:>9.3}s  ");
    match kind {
        "start" => line.push_str(&format!("session start  agent {} node {} target {} (level {})", s("agent"), e.get("node").and_then(Value::as_str).unwrap_or("-"), s("target"), s("level"))),
        "end" => line.push_str(&format!("session end    {}", s("reason"))),
        "gap" => line.push_str(&format!("GAP            {} entries were not recorded (recorder behind)", e.get("dropped").and_then(Value::as_u64).unwrap_or(0))),
        "statement" => {
            line.push_str(&format!("{:<6} {}", s("decision"), s("sql")));
            let mut notes = Vec::new();
            if let Some(r) = e.get("rows").and_then(Value::as_i64) {
                notes.push(format!("{r} row{}", if r == 1 { "" } else { "s" }));
            }
            if let Some(d) = e.get("duration_us").and_then(Value::as_u64) {
                notes.push(format!("{:.3} ms", d as f64 / 1000.0));
            }
            if let Some(err) = e.get("error").and_then(Value::as_str) {
                notes.push(err.to_string());
            }
            if let Some(a) = e.get("approval_id").and_then(Value::as_str) {
                notes.push(format!("approved by {a}"));
            }
            if let Some(p) = e.get("params") {
                notes.push(format!("params {p}"));
            } else if let Some(d) = e.get("params_digest").and_then(Value::as_str) {
                notes.push(format!("params sha256:{}", &d[..d.len().min(12)]));
            }
            if let Some(m) = e.get("masked").and_then(Value::as_array).filter(|m| !m.is_empty()) {
                notes.push(format!("masked {}", Value::Array(m.clone())));
            }
            if !notes.is_empty() {
                line.push_str(&format!("  ({})", notes.join(", ")));
            }
            if let Some(r) = e.get("reason").and_then(Value::as_str) {
                line.push_str(&format!("\n             reason: {r}"));
            }
            if results {
                if let Some(cols) = e.get("columns").and_then(Value::as_array) {
                    let names: Vec<&str> = cols.iter().filter_map(Value::as_str).collect();
                    line.push_str(&format!("\n             | {}", names.join(" | ")));
                }
                if let Some(rows) = e.get("result").and_then(Value::as_array) {
                    for row in rows {
                        let cells: Vec<String> = row.as_array().map(|r| r.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| "NULL".into())).collect()).unwrap_or_default();
                        line.push_str(&format!("\n             | {}", cells.join(" | ")));
                    }
                }
                if e.get("truncated").and_then(Value::as_bool) == Some(true) {
                    line.push_str("\n             | ... (truncated at recording.max_rows / max_bytes)");
                }
            }
        }
        other => line.push_str(other),
    }
    line
}
