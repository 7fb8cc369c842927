//! SQLite implementation of [`McpPinStore`].

use super::SqliteStore;
use crate::mcp_pins::*;
use crate::Result;
use rusqlite::{params, OptionalExtension, Row};

const SELECT: &str = "SELECT server, tool, pinned_digest, pinned_definition, seen_digest, seen_definition, first_seen_at, changed_at, approved_by, approved_at FROM mcp_tool_pins";

fn from_row(r: &Row<'_>) -> rusqlite::Result<McpToolPin> {
    Ok(McpToolPin {
        server: r.get(0)?,
        tool: r.get(1)?,
        pinned_digest: r.get(2)?,
        pinned_definition: r.get(3)?,
        seen_digest: r.get(4)?,
        seen_definition: r.get(5)?,
        first_seen_at: r.get(6)?,
        changed_at: r.get(7)?,
        approved_by: r.get(8)?,
        approved_at: r.get(9)?,
    })
}

impl McpPinStore for SqliteStore {
    fn mcp_tool_seen(&self, server: &str, tool: &str, digest: &str, definition: &str, now: i64) -> Result<McpToolPin> {
        self.write(|tx| {
            let found = tx.query_row(&format!("{SELECT} WHERE server = ?1 AND tool = ?2"), params![server, tool], from_row).optional()?;
            match found {
                None => {
                    tx.execute(
                        "INSERT INTO mcp_tool_pins (server, tool, pinned_digest, pinned_definition, seen_digest, seen_definition, first_seen_at) VALUES (?1, ?2, ?3, ?4, ?3, ?4, ?5)",
                        params![server, tool, digest, definition, now],
                    )?;
                }
                Some(p) if p.seen_digest == digest => return Ok(p),
                Some(p) => {
                    // Back to the pinned definition clears the change; a new one records it.
                    let changed_at = if p.pinned_digest == digest { None } else { Some(p.changed_at.unwrap_or(now)) };
                    tx.execute(
                        "UPDATE mcp_tool_pins SET seen_digest = ?3, seen_definition = ?4, changed_at = ?5 WHERE server = ?1 AND tool = ?2",
                        params![server, tool, digest, definition, changed_at],
                    )?;
                }
            }
            Ok(tx.query_row(&format!("{SELECT} WHERE server = ?1 AND tool = ?2"), params![server, tool], from_row)?)
        })
    }

    fn mcp_tool(&self, server: &str, tool: &str) -> Result<Option<McpToolPin>> {
        self.with_conn(|c| Ok(c.query_row(&format!("{SELECT} WHERE server = ?1 AND tool = ?2"), params![server, tool], from_row).optional()?))
    }

    fn mcp_tools(&self, server: Option<&str>) -> Result<Vec<McpToolPin>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(&format!("{SELECT} WHERE ?1 IS NULL OR server = ?1 ORDER BY server, tool"))?;
            let rows = st.query_map(params![server], from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn approve_mcp_tool(&self, server: &str, tool: &str, by: &str, now: i64) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE mcp_tool_pins SET pinned_digest = seen_digest, pinned_definition = seen_definition, changed_at = NULL, approved_by = ?3, approved_at = ?4 WHERE server = ?1 AND tool = ?2",
                params![server, tool, by, now],
            )?;
            Ok(n > 0)
        })
    }
}
