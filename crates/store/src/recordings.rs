//! Session recordings (issue 12): per-session summaries and zstd-compressed chunks of
//! JSON Lines entries. The recording writer (crates/audit `recording`) owns the format; the
//! store only keeps rows. Each chunk's SHA-256 is also written to the audit chain, so a
//! chunk edited or removed here is detected against the chain.

use crate::Result;

/// One recorded session. Times are unix MICROseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSummary {
    pub session_id: String,
    pub agent: String,
    pub owner: Option<String>,
    pub node: Option<String>,
    pub run: Option<String>,
    pub thread: Option<String>,
    pub target: String,
    /// `off`, `metadata` or `full`.
    pub level: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    /// Entries written so far (start, statements, gaps, end).
    pub entries: i64,
    pub statements: i64,
    pub chunks: i64,
    /// Compressed bytes stored.
    pub bytes: i64,
    /// Entries dropped because the recorder fell behind (metadata level only).
    pub dropped: i64,
}

/// One compressed chunk of a session's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingChunk {
    pub session_id: String,
    /// 0, 1, 2, ... per session.
    pub seq: i64,
    /// Index of the chunk's first entry in the session.
    pub first_entry: i64,
    pub entries: i64,
    /// Unix microseconds.
    pub created_at: i64,
    /// Lowercase hex SHA-256 of the uncompressed JSON Lines.
    pub sha256: String,
    /// zstd frame.
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct RecordingFilter {
    pub agent: Option<String>,
    pub node: Option<String>,
    pub target: Option<String>,
    /// Sessions started at or after (unix microseconds).
    pub since: Option<i64>,
    /// Defaults to 100; capped at 10 000.
    pub limit: Option<u32>,
}

pub trait RecordingStore: Send + Sync {
    /// Upserts the summaries and inserts the chunks, in one transaction.
    fn save_recording(&self, summaries: &[RecordingSummary], chunks: &[RecordingChunk]) -> Result<()>;
    /// Newest first.
    fn recordings(&self, filter: &RecordingFilter) -> Result<Vec<RecordingSummary>>;
    fn recording(&self, session_id: &str) -> Result<Option<RecordingSummary>>;
    /// Ascending by seq.
    fn recording_chunks(&self, session_id: &str) -> Result<Vec<RecordingChunk>>;
    /// Deletes recordings of sessions that ended (or, still open, started) before
    /// `before` (unix microseconds), chunks included. Returns how many sessions went.
    fn purge_recordings(&self, before: i64) -> Result<u64>;
}
