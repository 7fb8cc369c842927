//! SQLite implementation of [`RecordingStore`].

use super::SqliteStore;
use crate::recordings::*;
use crate::Result;
use rusqlite::{params, OptionalExtension, Row};

const SUMMARY_SELECT: &str = "SELECT session_id, agent, owner, node, run, thread, target, level, started_at, ended_at, end_reason, entries, statements, chunks, bytes, dropped FROM recordings";

fn summary_from_row(r: &Row<'_>) -> rusqlite::Result<RecordingSummary> {
    Ok(RecordingSummary {
        session_id: r.get(0)?,
        agent: r.get(1)?,
        owner: r.get(2)?,
        node: r.get(3)?,
        run: r.get(4)?,
        thread: r.get(5)?,
        target: r.get(6)?,
        level: r.get(7)?,
        started_at: r.get(8)?,
        ended_at: r.get(9)?,
        end_reason: r.get(10)?,
        entries: r.get(11)?,
        statements: r.get(12)?,
        chunks: r.get(13)?,
        bytes: r.get(14)?,
        dropped: r.get(15)?,
    })
}

impl RecordingStore for SqliteStore {
    fn save_recording(&self, summaries: &[RecordingSummary], chunks: &[RecordingChunk]) -> Result<()> {
        self.write(|tx| {
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO recordings (session_id, agent, owner, node, run, thread, target, level, started_at, ended_at, end_reason, entries, statements, chunks, bytes, dropped)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                     ON CONFLICT (session_id) DO UPDATE SET ended_at = excluded.ended_at, end_reason = excluded.end_reason, entries = excluded.entries,
                        statements = excluded.statements, chunks = excluded.chunks, bytes = excluded.bytes, dropped = excluded.dropped",
                )?;
                for s in summaries {
                    st.execute(params![s.session_id, s.agent, s.owner, s.node, s.run, s.thread, s.target, s.level, s.started_at, s.ended_at, s.end_reason, s.entries, s.statements, s.chunks, s.bytes, s.dropped])?;
                }
            }
            let mut st = tx.prepare_cached("INSERT INTO recording_chunks (session_id, seq, first_entry, entries, created_at, sha256, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
            for c in chunks {
                st.execute(params![c.session_id, c.seq, c.first_entry, c.entries, c.created_at, c.sha256, c.data])?;
            }
            Ok(())
        })
    }

    fn recordings(&self, f: &RecordingFilter) -> Result<Vec<RecordingSummary>> {
        let limit = f.limit.unwrap_or(100).min(10_000);
        self.with_conn(|c| {
            let mut st = c.prepare_cached(&format!(
                "{SUMMARY_SELECT} WHERE (?1 IS NULL OR agent = ?1) AND (?2 IS NULL OR node = ?2) AND (?3 IS NULL OR target = ?3) AND (?4 IS NULL OR started_at >= ?4)
                 ORDER BY started_at DESC, session_id LIMIT ?5"
            ))?;
            let rows = st.query_map(params![f.agent, f.node, f.target, f.since, limit], summary_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn recording(&self, session_id: &str) -> Result<Option<RecordingSummary>> {
        self.with_conn(|c| Ok(c.query_row(&format!("{SUMMARY_SELECT} WHERE session_id = ?1"), [session_id], summary_from_row).optional()?))
    }

    fn recording_chunks(&self, session_id: &str) -> Result<Vec<RecordingChunk>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached("SELECT session_id, seq, first_entry, entries, created_at, sha256, data FROM recording_chunks WHERE session_id = ?1 ORDER BY seq")?;
            let rows = st.query_map([session_id], |r| {
                Ok(RecordingChunk { session_id: r.get(0)?, seq: r.get(1)?, first_entry: r.get(2)?, entries: r.get(3)?, created_at: r.get(4)?, sha256: r.get(5)?, data: r.get(6)? })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn purge_recordings(&self, before: i64) -> Result<u64> {
        self.write(|tx| {
            let cond = "coalesce(ended_at, started_at) < ?1";
            tx.execute(&format!("DELETE FROM recording_chunks WHERE session_id IN (SELECT session_id FROM recordings WHERE {cond})"), [before])?;
            let n = tx.execute(&format!("DELETE FROM recordings WHERE {cond}"), [before])?;
            Ok(n as u64)
        })
    }
}
