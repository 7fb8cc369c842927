//! Pinned MCP tool descriptions (issue 14): the MCP gateway records a digest of each tool's
//! description and input schema the first time it sees the tool; when an upstream later
//! serves a different one, calls to the tool are refused until an admin re-approves
//! (`warden mcp tools approve SERVER TOOL`). Defence against tool poisoning and rug pulls.

use crate::Result;

/// One tool of one MCP server as pinned. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpToolPin {
    pub server: String,
    pub tool: String,
    /// SHA-256 (hex) of the approved canonical `{"description", "inputSchema"}` JSON.
    pub pinned_digest: String,
    /// That JSON, for review.
    pub pinned_definition: String,
    /// The digest last served by the upstream (equal to `pinned_digest` when unchanged).
    pub seen_digest: String,
    pub seen_definition: String,
    pub first_seen_at: i64,
    /// When the upstream first served a definition different from the pinned one.
    pub changed_at: Option<i64>,
    /// `None` for the first sighting (trust on first use); else the admin who re-approved.
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
}

impl McpToolPin {
    pub fn changed(&self) -> bool {
        self.pinned_digest != self.seen_digest
    }
}

pub trait McpPinStore: Send + Sync {
    /// Records a sighting in one transaction: pins an unknown tool (first use), notes a
    /// changed definition. Returns the pin after the sighting.
    fn mcp_tool_seen(&self, server: &str, tool: &str, digest: &str, definition: &str, now: i64) -> Result<McpToolPin>;
    fn mcp_tool(&self, server: &str, tool: &str) -> Result<Option<McpToolPin>>;
    /// Ordered by server, tool.
    fn mcp_tools(&self, server: Option<&str>) -> Result<Vec<McpToolPin>>;
    /// Pins the definition last seen. False when the tool is unknown.
    fn approve_mcp_tool(&self, server: &str, tool: &str, by: &str, now: i64) -> Result<bool>;
}
