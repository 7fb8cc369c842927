use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore as _;
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

mod approvals;
mod identity;
mod recordings;
mod mcp_pins;

use crate::validate::{normalize_email, validate_agent_name};
use crate::*;

/// How long a statement waits for another connection's (or process's) write lock before
/// failing with SQLITE_BUSY. The gateway, its audit writer and CLI commands share one file;
/// a write transaction here lasts milliseconds, so 10 s only bites on a stuck process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept per store; more are opened on demand under contention.
const POOL_MAX_IDLE: usize = 4;
const ENROLLMENT_SECRET_PREFIX: &str = "wdn_es_";

/// Versioned schema. Entry `i` moves `PRAGMA user_version` from `i` to `i + 1`; never edit a
/// released entry, append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: humans, agents, epoch, audit.
    r#"
    CREATE TABLE humans (
        email       TEXT PRIMARY KEY,
        status      TEXT NOT NULL CHECK (status IN ('active', 'deactivated')),
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE TABLE agents (
        name           TEXT PRIMARY KEY,
        owner          TEXT NOT NULL REFERENCES humans(email),
        status         TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
        secret_sha256  BLOB NOT NULL,
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL
    );
    CREATE INDEX agents_by_owner ON agents(owner);

    CREATE TABLE epoch (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        value  INTEGER NOT NULL
    );
    INSERT INTO epoch (id, value) VALUES (1, 0);

    CREATE TABLE audit_events (
        seq         INTEGER PRIMARY KEY,
        ts          INTEGER NOT NULL,   -- unix microseconds
        agent       TEXT,
        node        TEXT,
        decision    TEXT NOT NULL,
        event_json  TEXT NOT NULL,
        prev_hash   TEXT NOT NULL,
        hash        TEXT NOT NULL
    );
    CREATE INDEX audit_by_agent    ON audit_events(agent, seq);
    CREATE INDEX audit_by_node     ON audit_events(node, seq);
    CREATE INDEX audit_by_decision ON audit_events(decision, seq);
    CREATE INDEX audit_by_ts       ON audit_events(ts);
    -- Stops bugs, not attackers (who can drop the triggers): the hash chain and signed
    -- checkpoints are what detect tampering.
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

    CREATE TABLE audit_checkpoints (
        seq         INTEGER PRIMARY KEY,
        hash        TEXT NOT NULL,
        signature   TEXT NOT NULL,
        public_key  TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    "#,
    // 2: approval requests (one exact command, or a JIT grant) and grants.
    r#"
    CREATE TABLE approvals (
        id              TEXT PRIMARY KEY,
        kind            TEXT NOT NULL CHECK (kind IN ('command', 'grant')),
        agent           TEXT NOT NULL,
        owner           TEXT NOT NULL,
        node            TEXT,
        run             TEXT,
        graph_version   TEXT,
        target          TEXT NOT NULL,
        statement       TEXT,
        params_digest   TEXT,
        rule            TEXT NOT NULL,
        reason          TEXT,
        requested_by    TEXT NOT NULL,
        quorum          INTEGER NOT NULL,
        mode            TEXT NOT NULL,
        expires_at      INTEGER NOT NULL,
        grant_actions   TEXT,
        grant_objects   TEXT,
        grant_duration  INTEGER,
        status          TEXT NOT NULL,
        votes           TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE INDEX approvals_by_status ON approvals(status, created_at);
    CREATE INDEX approvals_by_command ON approvals(agent, target, status);
    CREATE TABLE grants (
        id           TEXT PRIMARY KEY,
        approval_id  TEXT NOT NULL REFERENCES approvals(id),
        agent        TEXT NOT NULL,
        node         TEXT,
        run          TEXT,
        target       TEXT NOT NULL,
        actions      TEXT NOT NULL,
        objects      TEXT NOT NULL,
        active_from  INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        revoked      INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX grants_by_agent ON grants(agent, target, expires_at);
    "#,
    // 3: identity lifecycle: SCIM users and groups, reviewed graph versions (issue 11).
    r#"
    CREATE TABLE scim_users (
        id           TEXT PRIMARY KEY,
        email        TEXT NOT NULL UNIQUE REFERENCES humans(email),
        external_id  TEXT,
        attributes   TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    );
    CREATE INDEX scim_users_by_external_id ON scim_users(external_id);
    CREATE TABLE scim_groups (
        id            TEXT PRIMARY KEY,
        display_name  TEXT NOT NULL UNIQUE,
        external_id   TEXT,
        members       TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    );
    CREATE TABLE graph_versions (
        id            TEXT PRIMARY KEY,
        agent         TEXT NOT NULL REFERENCES agents(name),
        graph_id      TEXT NOT NULL,
        digest        TEXT NOT NULL,
        manifest      TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied')),
        submitted_by  TEXT NOT NULL,
        decided_by    TEXT,
        reason        TEXT,
        created_at    INTEGER NOT NULL,
        decided_at    INTEGER,
        UNIQUE (agent, digest)
    );
    "#,
    // 4: session recordings (issue 12): per-session summaries and zstd chunks of JSON Lines
    // entries; each chunk's SHA-256 is also in the audit chain.
    r#"
    CREATE TABLE recordings (
        session_id  TEXT PRIMARY KEY,
        agent       TEXT NOT NULL,
        owner       TEXT,
        node        TEXT,
        run         TEXT,
        thread      TEXT,
        target      TEXT NOT NULL,
        level       TEXT NOT NULL,
        started_at  INTEGER NOT NULL,   -- unix microseconds
        ended_at    INTEGER,
        end_reason  TEXT,
        entries     INTEGER NOT NULL,
        statements  INTEGER NOT NULL,
        chunks      INTEGER NOT NULL,
        bytes       INTEGER NOT NULL,
        dropped     INTEGER NOT NULL
    );
    CREATE INDEX recordings_by_start ON recordings(started_at);
    CREATE INDEX recordings_by_agent ON recordings(agent, started_at);
    CREATE TABLE recording_chunks (
        session_id   TEXT NOT NULL,
        seq          INTEGER NOT NULL,
        first_entry  INTEGER NOT NULL,
        entries      INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        sha256       TEXT NOT NULL,
        data         BLOB NOT NULL,
        PRIMARY KEY (session_id, seq)
    );
    "#,
    // 5: pinned MCP tool definitions (issue 14): digest of description + inputSchema as
    // first seen (or last approved) and as last served.
    r#"
    CREATE TABLE mcp_tool_pins (
        server             TEXT NOT NULL,
        tool               TEXT NOT NULL,
        pinned_digest      TEXT NOT NULL,
        pinned_definition  TEXT NOT NULL,
        seen_digest        TEXT NOT NULL,
        seen_definition    TEXT NOT NULL,
        first_seen_at      INTEGER NOT NULL,
        changed_at         INTEGER,
        approved_by        TEXT,
        approved_at        INTEGER,
        PRIMARY KEY (server, tool)
    );
    "#,
];

/// SQLite backend. Cheap to share (`Arc<SqliteStore>`); each call borrows a pooled
/// connection, so a slow audit commit does not stall an epoch poll in the same process.
pub struct SqliteStore {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// The schema version this build migrates to (`PRAGMA user_version`).
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    /// Opens (creating the file and its parent directory if needed) and migrates.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let mut conn = open_connection(&path)?;
        // WAL lets readers (epoch polls, audit search, other processes) proceed during a
        // write; the mode is persistent in the file, so setting it once here is enough.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), %mode, "sqlite journal_mode is not WAL");
        }
        migrate(&mut conn)?;
        Ok(SqliteStore {
            path,
            pool: Mutex::new(vec![conn]),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_conn<R>(&self, f: impl FnOnce(&mut Connection) -> Result<R>) -> Result<R> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.path)?,
        };
        let out = f(&mut conn);
        // A failed closure has already rolled back (Transaction rolls back on drop), so the
        // connection is clean to reuse.
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_MAX_IDLE {
            pool.push(conn);
        }
        out
    }

    /// Write transactions take the write lock up front (BEGIN IMMEDIATE): in WAL mode a
    /// deferred transaction that reads then writes can fail with SQLITE_BUSY_SNAPSHOT
    /// without the busy handler ever running, if another process wrote in between.
    fn write<R>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<R>) -> Result<R> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL, not NORMAL: in WAL mode NORMAL skips the fsync at commit, so a power loss could
    // drop audit events the gateway already reported as durable.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    // Immediate + re-reading the version inside the transaction: two processes starting at
    // once must not both run migration 1.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

fn now() -> UnixSeconds {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn bump_epoch(tx: &Transaction<'_>) -> Result<()> {
    tx.execute("UPDATE epoch SET value = value + 1 WHERE id = 1", [])?;
    Ok(())
}

fn parse_human_status(s: &str) -> rusqlite::Result<HumanStatus> {
    match s {
        "active" => Ok(HumanStatus::Active),
        "deactivated" => Ok(HumanStatus::Deactivated),
        other => Err(rusqlite::Error::InvalidColumnType(
            0,
            format!("human status {other:?}"),
            rusqlite::types::Type::Text,
        )),
    }
}

fn parse_agent_status(s: &str) -> rusqlite::Result<AgentStatus> {
    match s {
        "active" => Ok(AgentStatus::Active),
        "suspended" => Ok(AgentStatus::Suspended),
        other => Err(rusqlite::Error::InvalidColumnType(
            0,
            format!("agent status {other:?}"),
            rusqlite::types::Type::Text,
        )),
    }
}

const AGENT_SELECT: &str = "SELECT a.name, a.owner, a.status, h.status, a.created_at, a.updated_at
     FROM agents a JOIN humans h ON h.email = a.owner";

fn agent_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRecord> {
    Ok(AgentRecord {
        name: r.get(0)?,
        owner: r.get(1)?,
        status: parse_agent_status(&r.get::<_, String>(2)?)?,
        owner_status: parse_human_status(&r.get::<_, String>(3)?)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

const HUMAN_SELECT: &str = "SELECT email, status, created_at, updated_at FROM humans";

fn human_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HumanRecord> {
    Ok(HumanRecord {
        email: r.get(0)?,
        status: parse_human_status(&r.get::<_, String>(1)?)?,
        created_at: r.get(2)?,
        updated_at: r.get(3)?,
    })
}

const AUDIT_SELECT: &str =
    "SELECT seq, ts, agent, node, decision, event_json, prev_hash, hash FROM audit_events";

fn audit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.get(0)?,
        ts_us: r.get(1)?,
        agent: r.get(2)?,
        node: r.get(3)?,
        decision: r.get(4)?,
        event_json: r.get(5)?,
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
    })
}

fn human_status(tx: &Transaction<'_>, email: &str) -> Result<Option<HumanStatus>> {
    let s: Option<String> = tx
        .query_row("SELECT status FROM humans WHERE email = ?1", [email], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(s.map(|s| parse_human_status(&s)).transpose()?)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

impl Store for SqliteStore {
    fn recordings(&self) -> Option<&dyn crate::RecordingStore> {
        Some(self)
    }

    fn mcp_pins(&self) -> Option<&dyn crate::McpPinStore> {
        Some(self)
    }

    fn create_agent(&self, name: &str, owner_email: &str) -> Result<NewAgent> {
        validate_agent_name(name)?;
        let owner = normalize_email(owner_email)?;
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let secret = format!(
            "{ENROLLMENT_SECRET_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        // Plain SHA-256, not a password hash: the secret is 256 random bits, so there is
        // nothing for a slow hash to protect against brute force.
        let digest = sha256(secret.as_bytes());
        let t = now();
        self.write(|tx| {
            match human_status(tx, &owner)? {
                None => {
                    tx.execute(
                        "INSERT INTO humans (email, status, created_at, updated_at) VALUES (?1, 'active', ?2, ?2)",
                        params![owner, t],
                    )?;
                }
                Some(HumanStatus::Deactivated) => {
                    return Err(StoreError::OwnerDeactivated {
                        agent: name.to_string(),
                        owner: owner.clone(),
                    })
                }
                Some(HumanStatus::Active) => {}
            }
            let exists = tx
                .query_row("SELECT 1 FROM agents WHERE name = ?1", [name], |_| Ok(()))
                .optional()?
                .is_some();
            if exists {
                return Err(StoreError::AgentExists(name.to_string()));
            }
            tx.execute(
                "INSERT INTO agents (name, owner, status, secret_sha256, created_at, updated_at)
                 VALUES (?1, ?2, 'active', ?3, ?4, ?4)",
                params![name, owner, &digest[..], t],
            )?;
            Ok(())
        })?;
        Ok(NewAgent {
            name: name.to_string(),
            owner,
            enrollment_secret: secret,
        })
    }

    fn verify_enrollment(&self, name: &str, secret: &str) -> Result<bool> {
        let presented = sha256(secret.as_bytes());
        let row: Option<(Vec<u8>, String, String)> = self.with_conn(|c| {
            Ok(c.query_row(
                "SELECT a.secret_sha256, a.status, h.status
                 FROM agents a JOIN humans h ON h.email = a.owner WHERE a.name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
        })?;
        let Some((stored, agent_status, owner_status)) = row else {
            return Ok(false);
        };
        // Constant-time so response timing does not reveal how many leading bytes of the
        // digest matched.
        let secret_ok: bool = stored.ct_eq(&presented[..]).into();
        Ok(secret_ok && agent_status == "active" && owner_status == "active")
    }

    fn agent(&self, name: &str) -> Result<Option<AgentRecord>> {
        self.with_conn(|c| {
            Ok(c.query_row(
                &format!("{AGENT_SELECT} WHERE a.name = ?1"),
                [name],
                agent_from_row,
            )
            .optional()?)
        })
    }

    fn list_agents(&self) -> Result<Vec<AgentRecord>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(&format!("{AGENT_SELECT} ORDER BY a.name"))?;
            let rows = st.query_map([], agent_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn suspend_agent(&self, name: &str) -> Result<()> {
        let t = now();
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE agents SET status = 'suspended', updated_at = ?2 WHERE name = ?1 AND status = 'active'",
                params![name, t],
            )?;
            if changed > 0 {
                bump_epoch(tx)?;
                return Ok(());
            }
            let exists = tx
                .query_row("SELECT 1 FROM agents WHERE name = ?1", [name], |_| Ok(()))
                .optional()?
                .is_some();
            if exists {
                Ok(())
            } else {
                Err(StoreError::AgentNotFound(name.to_string()))
            }
        })
    }

    fn resume_agent(&self, name: &str) -> Result<()> {
        let t = now();
        self.write(|tx| {
            let owner: Option<(String, String)> = tx
                .query_row(
                    "SELECT a.owner, h.status FROM agents a JOIN humans h ON h.email = a.owner WHERE a.name = ?1",
                    [name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((owner, owner_status)) = owner else {
                return Err(StoreError::AgentNotFound(name.to_string()));
            };
            if owner_status != "active" {
                return Err(StoreError::OwnerDeactivated {
                    agent: name.to_string(),
                    owner,
                });
            }
            let changed = tx.execute(
                "UPDATE agents SET status = 'active', updated_at = ?2 WHERE name = ?1 AND status = 'suspended'",
                params![name, t],
            )?;
            // Resuming grants rather than revokes, but caches keyed by epoch (decisions)
            // must see it too.
            if changed > 0 {
                bump_epoch(tx)?;
            }
            Ok(())
        })
    }

    fn deactivate_human(&self, email: &str) -> Result<Vec<String>> {
        let email = normalize_email(email)?;
        let t = now();
        self.write(|tx| {
            if human_status(tx, &email)?.is_none() {
                return Err(StoreError::HumanNotFound(email.clone()));
            }
            let human_changed = tx.execute(
                "UPDATE humans SET status = 'deactivated', updated_at = ?2 WHERE email = ?1 AND status = 'active'",
                params![email, t],
            )?;
            let names: Vec<String> = {
                let mut st = tx.prepare(
                    "UPDATE agents SET status = 'suspended', updated_at = ?2
                     WHERE owner = ?1 AND status = 'active' RETURNING name",
                )?;
                let rows = st.query_map(params![email, t], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            if human_changed > 0 || !names.is_empty() {
                bump_epoch(tx)?;
            }
            let mut names = names;
            names.sort();
            Ok(names)
        })
    }

    fn activate_human(&self, email: &str) -> Result<()> {
        let email = normalize_email(email)?;
        let t = now();
        self.write(|tx| {
            match human_status(tx, &email)? {
                None => {
                    tx.execute(
                        "INSERT INTO humans (email, status, created_at, updated_at) VALUES (?1, 'active', ?2, ?2)",
                        params![email, t],
                    )?;
                }
                Some(HumanStatus::Deactivated) => {
                    tx.execute(
                        "UPDATE humans SET status = 'active', updated_at = ?2 WHERE email = ?1",
                        params![email, t],
                    )?;
                    bump_epoch(tx)?;
                }
                Some(HumanStatus::Active) => {}
            }
            Ok(())
        })
    }

    fn human(&self, email: &str) -> Result<Option<HumanRecord>> {
        let email = normalize_email(email)?;
        self.with_conn(|c| {
            Ok(c.query_row(
                &format!("{HUMAN_SELECT} WHERE email = ?1"),
                [email],
                human_from_row,
            )
            .optional()?)
        })
    }

    fn list_humans(&self) -> Result<Vec<HumanRecord>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(&format!("{HUMAN_SELECT} ORDER BY email"))?;
            let rows = st.query_map([], human_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn epoch(&self) -> Result<i64> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached("SELECT value FROM epoch WHERE id = 1")?;
            Ok(st.query_row([], |r| r.get(0))?)
        })
    }

}

impl AuditStore for SqliteStore {
    fn append_audit(&self, rows: &[NewAuditRow]) -> Result<()> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        for w in rows.windows(2) {
            if w[1].seq != w[0].seq + 1 || w[1].prev_hash != w[0].hash {
                return Err(StoreError::InvalidAuditBatch(format!(
                    "row {} does not link to row {}",
                    w[1].seq, w[0].seq
                )));
            }
        }
        self.write(|tx| {
            // Re-read inside the write lock: another process may have appended since the
            // caller last looked, and a batch built on a stale tail would fork the chain.
            let tail: Option<(i64, String)> = tx
                .query_row(
                    "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let links = match &tail {
                None => first.seq == 1,
                Some((seq, hash)) => first.seq == seq + 1 && first.prev_hash == *hash,
            };
            if !links {
                return Err(StoreError::AuditTailMoved {
                    expected_after: first.seq - 1,
                    found: tail,
                });
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO audit_events (seq, ts, agent, node, decision, event_json, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for r in rows {
                st.execute(params![
                    r.seq,
                    r.ts_us,
                    r.agent,
                    r.node,
                    r.decision,
                    r.event_json,
                    r.prev_hash,
                    r.hash
                ])?;
            }
            Ok(())
        })
    }

    fn audit_tail(&self) -> Result<Option<(i64, String)>> {
        self.with_conn(|c| {
            Ok(c.query_row(
                "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
    }

    fn audit_rows(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>> {
        let mut sql = format!("{AUDIT_SELECT} WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
        let mut add = |clause: &str, v: Value| {
            args.push(v);
            sql.push_str(&format!(" AND {clause} ?{}", args.len()));
        };
        if let Some(a) = &filter.agent {
            add("agent =", Value::Text(a.clone()));
        }
        if let Some(n) = &filter.node {
            add("node =", Value::Text(n.clone()));
        }
        if let Some(d) = &filter.decision {
            add("decision =", Value::Text(d.clone()));
        }
        if let Some(s) = filter.since {
            add("ts >=", Value::Integer(s));
        }
        if let Some(b) = filter.before_seq {
            add("seq <", Value::Integer(b));
        }
        let limit = filter.limit.unwrap_or(100).min(10_000);
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
        self.with_conn(|c| {
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), audit_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn audit_range(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRow>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(&format!(
                "{AUDIT_SELECT} WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let rows = st.query_map(params![after_seq, limit], audit_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn append_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        self.write(|tx| {
            // OR IGNORE: two processes may checkpoint the same tail; the first one stands.
            tx.execute(
                "INSERT OR IGNORE INTO audit_checkpoints (seq, hash, signature, public_key, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![cp.seq, cp.hash, cp.signature, cp.public_key, cp.created_at],
            )?;
            Ok(())
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(
                "SELECT seq, hash, signature, public_key, created_at FROM audit_checkpoints ORDER BY seq",
            )?;
            let rows = st.query_map([], |r| {
                Ok(Checkpoint {
                    seq: r.get(0)?,
                    hash: r.get(1)?,
                    signature: r.get(2)?,
                    public_key: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}
