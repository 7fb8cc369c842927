//! Session recordings (issue 12): what an agent did and saw, entry by entry, written
//! asynchronously so the data path never waits on the disk.
//!
//! Format: each session is a sequence of JSON objects (`{"seq", "at_us", "kind", ...}`,
//! kinds `start`, `statement`, `gap`, `end`), cut into chunks of JSON Lines. A chunk is
//! zstd-compressed and stored with the SHA-256 of its uncompressed lines; that digest is
//! first written to the audit hash chain as a `recording_chunk` event (durable), and only
//! then is the chunk stored, so every stored chunk is anchored in the chain and an edit,
//! removal or reordering of chunks is detected by [`load`].
//!
//! Memory is bounded: every queued or buffered entry counts against `max_pending_bytes`
//! until its chunk is stored. When the budget is spent, `metadata` sessions drop entries
//! and record the gap (an entry and an audit event), and `full` sessions hold new
//! statements until there is room (the caller waits with [`RecordingHandle::wait_for_room`]).
//! Chunks are flushed at least every `flush_every` (default 1 s), which bounds what a
//! `kill -9` can lose.

use crate::{AuditEvent, AuditHandle};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_store::{RecordingChunk, RecordingSummary, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingLevel {
    /// Only session start and end.
    Off,
    /// Statements, parameter digests, decisions, row counts, timings.
    Metadata,
    /// Also bind values and result rows as the agent saw them (after masking), capped.
    Full,
}

impl RecordingLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingLevel::Off => "off",
            RecordingLevel::Metadata => "metadata",
            RecordingLevel::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => RecordingLevel::Off,
            "metadata" => RecordingLevel::Metadata,
            "full" => RecordingLevel::Full,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Bytes of entries queued or buffered but not yet stored, across all sessions.
    pub max_pending_bytes: usize,
    /// Chunks are written at least this often (bounds the loss on a crash).
    pub flush_every: Duration,
    /// A session's buffer is cut into a chunk once it holds this many bytes.
    pub chunk_bytes: usize,
    /// Recordings of sessions that ended longer ago are deleted (None: kept forever).
    pub retention: Option<Duration>,
    /// zstd level.
    pub compression_level: i32,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig { max_pending_bytes: 64 << 20, flush_every: Duration::from_secs(1), chunk_bytes: 1 << 20, retention: None, compression_level: 3 }
    }
}

/// Who and what a recorded session is about.
#[derive(Debug, Clone, Serialize)]
pub struct SessionMeta {
    pub session_id: String,
    pub agent: String,
    pub owner: Option<String>,
    pub node: Option<String>,
    pub run: Option<String>,
    pub thread: Option<String>,
    pub graph_version: Option<String>,
    pub target: String,
    pub level: RecordingLevel,
}

/// One recorded statement. Serialized on the writer thread, not on the data path.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatementEntry {
    pub sql: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_index: Option<usize>,
    pub decision: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<(String, u64)>,
    /// `full` only: bind values as sent (strings; NULL as null; non-UTF-8 as `\x` hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Vec<Option<String>>>,
    /// `full` only: result column names and rows as the agent received them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Vec<Vec<Option<String>>>>,
    /// `full` only: rows or bytes beyond the per-statement caps were not recorded.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl StatementEntry {
    /// What the entry weighs against the memory budget (close to its JSON size).
    pub fn weight(&self) -> usize {
        let result: usize = self.result.as_ref().map(|r| r.iter().map(|row| row.iter().map(|v| v.as_ref().map_or(4, |s| s.len() + 3)).sum::<usize>() + 2).sum()).unwrap_or(0);
        let params: usize = self.params.as_ref().map(|p| p.iter().map(|v| v.as_ref().map_or(4, |s| s.len() + 3)).sum()).unwrap_or(0);
        200 + self.sql.len() + self.reason.as_ref().map_or(0, String::len) + result + params
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryBody {
    Start(SessionMeta),
    Statement(StatementEntry),
    /// Entries dropped because the recorder fell behind (metadata level).
    Gap { dropped: u64 },
    End { reason: String },
}

#[derive(Serialize)]
struct Line<'a> {
    seq: i64,
    at_us: i64,
    #[serde(flatten)]
    body: &'a EntryBody,
}

// Nearly every message is an Entry: boxing it would add an allocation per recorded
// statement to save space only in the rare Flush.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Entry { session: Arc<str>, at_us: i64, body: EntryBody, weight: usize },
    Flush(tokio::sync::oneshot::Sender<()>),
    Shutdown(tokio::sync::oneshot::Sender<()>),
}

struct Shared {
    pending: AtomicUsize,
    max_pending: usize,
    healthy: AtomicBool,
    dropped: AtomicU64,
    chunks: AtomicU64,
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct RecordingHandle {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

/// The entry could not be queued: the recorder is behind (budget spent) or not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind;

pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros() as i64
}

impl RecordingHandle {
    /// Starts the writer thread. `runtime` runs the audit calls it makes.
    pub fn start(store: Arc<dyn Store>, audit: AuditHandle, config: RecorderConfig, runtime: tokio::runtime::Handle) -> RecordingHandle {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared { pending: AtomicUsize::new(0), max_pending: config.max_pending_bytes.max(1), healthy: AtomicBool::new(store.recordings().is_some()), dropped: AtomicU64::new(0), chunks: AtomicU64::new(0) });
        let w = Writer { store, audit, config, runtime, shared: shared.clone(), sessions: HashMap::new(), last_purge: None };
        std::thread::Builder::new().name("warden-recorder".into()).spawn(move || w.run(rx)).expect("spawn recorder thread");
        RecordingHandle { tx, shared }
    }

    /// Queues an entry. With `must_keep` the budget is not checked (session start and end,
    /// and `full` statements, whose callers waited for room before the statement ran).
    pub fn entry(&self, session: &Arc<str>, at_us: i64, body: EntryBody, must_keep: bool) -> Result<(), Behind> {
        let weight = match &body {
            EntryBody::Statement(s) => s.weight(),
            _ => 300,
        };
        if !must_keep {
            let now = self.shared.pending.load(Ordering::Relaxed);
            if now + weight > self.shared.max_pending || !self.healthy() {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(Behind);
            }
        }
        self.shared.pending.fetch_add(weight, Ordering::Relaxed);
        self.tx.send(Msg::Entry { session: session.clone(), at_us, body, weight }).map_err(|_| {
            self.shared.pending.fetch_sub(weight, Ordering::Relaxed);
            Behind
        })
    }

    /// Whether a new `full` statement may start: waits (up to `timeout`) until the queued
    /// and buffered entries fit the budget again. False: fail closed.
    pub async fn wait_for_room(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !self.healthy() {
                return false;
            }
            if self.shared.pending.load(Ordering::Relaxed) < self.shared.max_pending {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn has_room(&self) -> bool {
        self.healthy() && self.shared.pending.load(Ordering::Relaxed) < self.shared.max_pending
    }

    /// Resolves once every entry queued before the call is in a stored chunk.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Writes everything queued and stops the writer.
    pub async fn shutdown(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// False while chunks cannot be written (store or audit failing, or no recording store).
    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    pub fn pending_bytes(&self) -> usize {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// Entries dropped so far because the recorder was behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    pub fn chunks_written(&self) -> u64 {
        self.shared.chunks.load(Ordering::Relaxed)
    }
}

struct SessionBuf {
    summary: RecordingSummary,
    meta: Option<SessionMeta>,
    buf: Vec<u8>,
    buf_entries: i64,
    buf_weight: usize,
    next_chunk: i64,
    dirty: bool,
    ended: bool,
}

struct Writer {
    store: Arc<dyn Store>,
    audit: AuditHandle,
    config: RecorderConfig,
    runtime: tokio::runtime::Handle,
    shared: Arc<Shared>,
    sessions: HashMap<Arc<str>, SessionBuf>,
    last_purge: Option<Instant>,
}

impl Writer {
    /// The writer does not block on the channel: a receiver parked there would be woken
    /// (a futex syscall and a context switch) for every statement of every session, which
    /// on a small machine costs more than the recording itself. It wakes every `TICK`,
    /// takes everything queued, and writes chunks every `flush_every`.
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        const TICK: Duration = Duration::from_millis(20);
        let mut deadline = Instant::now() + self.config.flush_every;
        loop {
            std::thread::sleep(TICK.min(deadline.saturating_duration_since(Instant::now())));
            let mut waiters = Vec::new();
            let mut stop = false;
            loop {
                match rx.try_recv() {
                    Ok(Msg::Entry { session, at_us, body, weight }) => {
                        self.add(session, at_us, body, weight);
                    }
                    Ok(Msg::Flush(done)) => waiters.push(done),
                    Ok(Msg::Shutdown(done)) => {
                        waiters.push(done);
                        stop = true;
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        stop = true;
                        break;
                    }
                }
            }
            let big = self.sessions.values().any(|s| s.buf.len() >= self.config.chunk_bytes);
            if stop || big || !waiters.is_empty() || Instant::now() >= deadline {
                self.flush_all();
                self.purge();
                deadline = Instant::now() + self.config.flush_every;
            }
            for w in waiters {
                let _ = w.send(());
            }
            if stop {
                return;
            }
        }
    }

    fn add(&mut self, session: Arc<str>, at_us: i64, body: EntryBody, weight: usize) {
        let s = self.sessions.entry(session.clone()).or_insert_with(|| SessionBuf {
            summary: RecordingSummary { session_id: session.to_string(), agent: String::new(), owner: None, node: None, run: None, thread: None, target: String::new(), level: "metadata".into(), started_at: at_us, ended_at: None, end_reason: None, entries: 0, statements: 0, chunks: 0, bytes: 0, dropped: 0 },
            meta: None,
            buf: Vec::new(),
            buf_entries: 0,
            buf_weight: 0,
            next_chunk: 0,
            dirty: false,
            ended: false,
        });
        match &body {
            EntryBody::Start(m) => {
                s.summary.agent = m.agent.clone();
                s.summary.owner = m.owner.clone();
                s.summary.node = m.node.clone();
                s.summary.run = m.run.clone();
                s.summary.thread = m.thread.clone();
                s.summary.target = m.target.clone();
                s.summary.level = m.level.as_str().into();
                s.summary.started_at = at_us;
                s.meta = Some(m.clone());
            }
            EntryBody::Statement(_) => s.summary.statements += 1,
            EntryBody::Gap { dropped } => s.summary.dropped += *dropped as i64,
            EntryBody::End { reason } => {
                s.summary.ended_at = Some(at_us);
                s.summary.end_reason = Some(reason.clone());
                s.ended = true;
            }
        }
        let line = Line { seq: s.summary.entries, at_us, body: &body };
        if serde_json::to_writer(&mut s.buf, &line).is_ok() {
            s.buf.push(b'\n');
            s.summary.entries += 1;
            s.buf_entries += 1;
        }
        s.buf_weight += weight;
        s.dirty = true;
    }

    fn flush_all(&mut self) {
        let dirty: Vec<Arc<str>> = self.sessions.iter().filter(|(_, s)| s.dirty).map(|(k, _)| k.clone()).collect();
        if dirty.is_empty() {
            return;
        }
        let Some(rec_store) = self.store.recordings() else {
            self.release(&dirty);
            return;
        };
        let mut chunks = Vec::new();
        let mut events = Vec::new();
        let created_at = now_us();
        for key in &dirty {
            let s = self.sessions.get_mut(key).expect("listed above");
            if s.buf.is_empty() {
                continue;
            }
            let digest = hex::encode(Sha256::digest(&s.buf));
            let data = match zstd::bulk::compress(&s.buf, self.config.compression_level) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot compress a recording chunk");
                    continue;
                }
            };
            let chunk = RecordingChunk { session_id: key.to_string(), seq: s.next_chunk, first_entry: s.summary.entries - s.buf_entries, entries: s.buf_entries, created_at, sha256: digest.clone(), data };
            let mut ev = AuditEvent::new("recording_chunk", "allow");
            ev.session_id = Some(key.to_string());
            ev.agent = Some(s.summary.agent.clone()).filter(|a| !a.is_empty());
            ev.owner = s.summary.owner.clone();
            ev.node = s.summary.node.clone();
            ev.run = s.summary.run.clone();
            ev.target = Some(s.summary.target.clone()).filter(|t| !t.is_empty());
            ev.extra.insert("chunk".into(), chunk.seq.into());
            ev.extra.insert("first_entry".into(), chunk.first_entry.into());
            ev.extra.insert("entries".into(), chunk.entries.into());
            ev.extra.insert("sha256".into(), digest.into());
            ev.extra.insert("bytes".into(), (chunk.data.len() as u64).into());
            ev.extra.insert("level".into(), s.summary.level.clone().into());
            events.push(ev);
            chunks.push(chunk);
        }
        // The digests go into the chain first (durably): a stored chunk is always anchored.
        let audit = self.audit.clone();
        let anchored = self.runtime.block_on(async move {
            for ev in events {
                if let Err(e) = audit.record_nowait(ev.clone()) {
                    if audit.record(ev).await.is_err() {
                        return Err(e.to_string());
                    }
                }
            }
            audit.flush().await;
            if audit.healthy() {
                Ok(())
            } else {
                Err("audit log unhealthy".to_string())
            }
        });
        if let Err(e) = anchored {
            tracing::error!(error = %e, "recording chunks could not be anchored in the audit chain; recording is failing");
            self.shared.healthy.store(false, Ordering::Release);
            self.release(&dirty);
            return;
        }
        for c in &chunks {
            if let Some(s) = self.sessions.get_mut(c.session_id.as_str()) {
                s.summary.chunks += 1;
                s.summary.bytes += c.data.len() as i64;
                s.next_chunk += 1;
            }
        }
        let summaries: Vec<RecordingSummary> = dirty.iter().filter_map(|k| self.sessions.get(k)).map(|s| s.summary.clone()).collect();
        match rec_store.save_recording(&summaries, &chunks) {
            Ok(()) => {
                self.shared.healthy.store(true, Ordering::Release);
                self.shared.chunks.fetch_add(chunks.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store recording chunks; recording is failing");
                self.shared.healthy.store(false, Ordering::Release);
            }
        }
        self.release(&dirty);
    }

    /// Empties the flushed buffers, returns their weight to the budget, forgets ended sessions.
    fn release(&mut self, keys: &[Arc<str>]) {
        for k in keys {
            if let Some(s) = self.sessions.get_mut(k) {
                s.buf.clear();
                if s.buf.capacity() > self.config.chunk_bytes * 2 {
                    s.buf.shrink_to(self.config.chunk_bytes);
                }
                s.buf_entries = 0;
                self.shared.pending.fetch_sub(s.buf_weight, Ordering::Relaxed);
                s.buf_weight = 0;
                s.dirty = false;
                if s.ended {
                    self.sessions.remove(k);
                }
            }
        }
    }

    fn purge(&mut self) {
        let Some(retention) = self.config.retention else { return };
        if self.last_purge.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            return;
        }
        self.last_purge = Some(Instant::now());
        let Some(rec_store) = self.store.recordings() else { return };
        let before = now_us() - retention.as_micros() as i64;
        match rec_store.purge_recordings(before) {
            Ok(0) => {}
            Ok(n) => {
                let mut ev = AuditEvent::new("recording_expired", "allow");
                ev.extra.insert("sessions".into(), n.into());
                ev.extra.insert("before_us".into(), before.into());
                let _ = self.audit.record_nowait(ev);
            }
            Err(e) => tracing::error!(error = %e, "cannot purge expired recordings"),
        }
    }
}

/// A recording read back and checked against the audit chain.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedRecording {
    pub entries: Vec<Value>,
    pub chunks: usize,
    /// Every chunk's digest matched its content and a `recording_chunk` audit event, in order.
    pub verified: bool,
    pub problems: Vec<String>,
}

/// Reads a session's chunks, decompresses them, and checks each against its stored digest
/// and against the `recording_chunk` events of the audit log (found among the events of
/// `agent` since the session started).
pub fn load(store: &dyn Store, summary: &RecordingSummary) -> Result<LoadedRecording, String> {
    let rec = store.recordings().ok_or("this store keeps no recordings")?;
    let chunks = rec.recording_chunks(&summary.session_id).map_err(|e| e.to_string())?;
    let anchors = chunk_anchors(store, summary)?;
    let mut problems = Vec::new();
    let mut entries = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        if c.seq != i as i64 {
            problems.push(format!("chunk {} is missing (found chunk {} in its place)", i, c.seq));
        }
        let raw = match zstd::bulk::decompress(&c.data, 256 << 20) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("chunk {}: cannot decompress ({e})", c.seq));
                continue;
            }
        };
        let digest = hex::encode(Sha256::digest(&raw));
        if digest != c.sha256 {
            problems.push(format!("chunk {}: content does not match its digest", c.seq));
        }
        match anchors.get(&c.seq) {
            Some(d) if *d == digest => {}
            Some(_) => problems.push(format!("chunk {}: digest differs from the one in the audit chain", c.seq)),
            None => problems.push(format!("chunk {}: not anchored in the audit chain", c.seq)),
        }
        for line in raw.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Value>(line) {
                Ok(v) => entries.push(v),
                Err(e) => problems.push(format!("chunk {}: unreadable entry ({e})", c.seq)),
            }
        }
    }
    for seq in anchors.keys() {
        if *seq >= chunks.len() as i64 {
            problems.push(format!("chunk {seq} is in the audit chain but not stored (lost before it was written)"));
        }
    }
    for (i, e) in entries.iter().enumerate() {
        if e.get("seq").and_then(Value::as_i64) != Some(i as i64) {
            problems.push(format!("entry {i} is out of order"));
            break;
        }
    }
    Ok(LoadedRecording { verified: problems.is_empty(), chunks: chunks.len(), entries, problems })
}

/// chunk seq → digest, from the audit log.
fn chunk_anchors(store: &dyn Store, summary: &RecordingSummary) -> Result<std::collections::BTreeMap<i64, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut before = None;
    loop {
        let filter = warden_store::AuditFilter { agent: Some(summary.agent.clone()), node: None, decision: None, since: Some(summary.started_at - 1_000_000), before_seq: before, limit: Some(10_000) };
        let rows = store.audit_rows(&filter).map_err(|e| e.to_string())?;
        let Some(last) = rows.last() else { break };
        before = Some(last.seq);
        for r in &rows {
            if !r.event_json.contains("\"recording_chunk\"") || !r.event_json.contains(&summary.session_id) {
                continue;
            }
            let Ok(ev) = serde_json::from_str::<AuditEvent>(&r.event_json) else { continue };
            if ev.kind != "recording_chunk" || ev.session_id.as_deref() != Some(&summary.session_id) {
                continue;
            }
            if let (Some(seq), Some(d)) = (ev.extra.get("chunk").and_then(Value::as_i64), ev.extra.get("sha256").and_then(Value::as_str)) {
                out.insert(seq, d.to_string());
            }
        }
    }
    Ok(out)
}

/// A recorded session's summary as the CLI and the admin API print it (times RFC 3339).
pub fn summary_json(s: &RecordingSummary) -> Value {
    serde_json::json!({
        "session_id": s.session_id, "agent": s.agent, "owner": s.owner, "node": s.node, "run": s.run, "thread": s.thread,
        "target": s.target, "level": s.level, "started_at": fmt_us(s.started_at), "ended_at": s.ended_at.map(fmt_us),
        "end_reason": s.end_reason, "entries": s.entries, "statements": s.statements, "chunks": s.chunks, "bytes": s.bytes, "dropped": s.dropped,
    })
}

/// Unix microseconds as RFC 3339 with milliseconds.
pub fn fmt_us(us: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z")).unwrap_or_default()
}
