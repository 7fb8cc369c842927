//! SQLite implementation of [`IdentityStore`].

use super::{bump_epoch, human_status, now, SqliteStore};
use crate::identity::*;
use crate::validate::normalize_email;
use crate::{HumanStatus, Result, StoreError};
use rusqlite::{params, OptionalExtension, Row, Transaction};

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 10]>()))
}

const USER_SELECT: &str = "SELECT u.id, u.email, u.external_id, u.attributes, h.status, u.created_at, u.updated_at
    FROM scim_users u JOIN humans h ON h.email = u.email";

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<ScimUser> {
    Ok(ScimUser {
        id: r.get(0)?,
        email: r.get(1)?,
        external_id: r.get(2)?,
        attributes: r.get(3)?,
        active: r.get::<_, String>(4)? == "active",
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

const GROUP_SELECT: &str = "SELECT id, display_name, external_id, members, created_at, updated_at FROM scim_groups";

fn group_from_row(r: &Row<'_>) -> rusqlite::Result<ScimGroup> {
    let members: String = r.get(3)?;
    Ok(ScimGroup {
        id: r.get(0)?,
        display_name: r.get(1)?,
        external_id: r.get(2)?,
        members: members.split('\n').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

const GRAPH_SELECT: &str = "SELECT id, agent, graph_id, digest, manifest, status, submitted_by, decided_by, reason, created_at, decided_at FROM graph_versions";

fn graph_from_row(r: &Row<'_>) -> rusqlite::Result<GraphVersion> {
    let status: String = r.get(5)?;
    Ok(GraphVersion {
        id: r.get(0)?,
        agent: r.get(1)?,
        graph_id: r.get(2)?,
        digest: r.get(3)?,
        manifest: r.get(4)?,
        status: GraphStatus::parse(&status).unwrap_or(GraphStatus::Denied),
        submitted_by: r.get(6)?,
        decided_by: r.get(7)?,
        reason: r.get(8)?,
        created_at: r.get(9)?,
        decided_at: r.get(10)?,
    })
}

fn load_user(tx: &Transaction<'_>, id: &str) -> Result<ScimUser> {
    tx.query_row(&format!("{USER_SELECT} WHERE u.id = ?1"), [id], user_from_row).optional()?.ok_or_else(|| StoreError::NotFound(format!("no SCIM user {id:?}")))
}

fn load_group(tx: &Transaction<'_>, id: &str) -> Result<ScimGroup> {
    tx.query_row(&format!("{GROUP_SELECT} WHERE id = ?1"), [id], group_from_row).optional()?.ok_or_else(|| StoreError::NotFound(format!("no SCIM group {id:?}")))
}

impl IdentityStore for SqliteStore {
    fn scim_create_user(&self, email: &str, external_id: Option<&str>, attributes: &str) -> Result<ScimUser> {
        let email = normalize_email(email)?;
        let id = new_id("usr");
        let t = now();
        self.write(|tx| {
            if human_status(tx, &email)?.is_none() {
                tx.execute("INSERT INTO humans (email, status, created_at, updated_at) VALUES (?1, 'active', ?2, ?2)", params![email, t])?;
            }
            let exists = tx.query_row("SELECT id FROM scim_users WHERE email = ?1", [&email], |r| r.get::<_, String>(0)).optional()?;
            if let Some(existing) = exists {
                return Err(StoreError::Conflict(format!("userName {email:?} is already provisioned as {existing}")));
            }
            tx.execute(
                "INSERT INTO scim_users (id, email, external_id, attributes, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![id, email, external_id, attributes, t],
            )?;
            load_user(tx, &id)
        })
    }

    fn scim_user(&self, id: &str) -> Result<Option<ScimUser>> {
        self.with_conn(|c| Ok(c.query_row(&format!("{USER_SELECT} WHERE u.id = ?1"), [id], user_from_row).optional()?))
    }

    fn scim_users(&self, user_name: Option<&str>, external_id: Option<&str>, offset: u32, limit: u32) -> Result<(u64, Vec<ScimUser>)> {
        let user_name = user_name.map(|u| u.trim().to_ascii_lowercase());
        self.with_conn(|c| {
            let filter = "WHERE (?1 IS NULL OR u.email = ?1) AND (?2 IS NULL OR u.external_id = ?2)";
            let total: i64 = c.query_row(&format!("SELECT count(*) FROM scim_users u {filter}"), params![user_name, external_id], |r| r.get(0))?;
            let mut st = c.prepare(&format!("{USER_SELECT} {filter} ORDER BY u.rowid LIMIT ?3 OFFSET ?4"))?;
            let rows = st.query_map(params![user_name, external_id, limit.min(1000), offset], user_from_row)?;
            Ok((total as u64, rows.collect::<rusqlite::Result<_>>()?))
        })
    }

    fn scim_update_user(&self, id: &str, external_id: Option<&str>, attributes: &str) -> Result<ScimUser> {
        let t = now();
        self.write(|tx| {
            let n = tx.execute("UPDATE scim_users SET external_id = ?2, attributes = ?3, updated_at = ?4 WHERE id = ?1", params![id, external_id, attributes, t])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("no SCIM user {id:?}")));
            }
            load_user(tx, id)
        })
    }

    fn scim_delete_user(&self, id: &str) -> Result<ScimUser> {
        let t = now();
        self.write(|tx| {
            let user = load_user(tx, id)?;
            tx.execute("DELETE FROM scim_users WHERE id = ?1", [id])?;
            let groups: Vec<ScimGroup> = {
                let mut st = tx.prepare(&format!("{GROUP_SELECT} WHERE instr(members, ?1) > 0"))?;
                let rows = st.query_map([id], group_from_row)?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for g in groups {
                let members: Vec<String> = g.members.into_iter().filter(|m| m != id).collect();
                tx.execute("UPDATE scim_groups SET members = ?2, updated_at = ?3 WHERE id = ?1", params![g.id, members.join("\n"), t])?;
            }
            Ok(user)
        })
    }

    fn scim_create_group(&self, display_name: &str, external_id: Option<&str>, members: &[String]) -> Result<ScimGroup> {
        let id = new_id("grp");
        let t = now();
        self.write(|tx| {
            let exists = tx.query_row("SELECT 1 FROM scim_groups WHERE display_name = ?1", [display_name], |_| Ok(())).optional()?.is_some();
            if exists {
                return Err(StoreError::Conflict(format!("group {display_name:?} already exists")));
            }
            tx.execute(
                "INSERT INTO scim_groups (id, display_name, external_id, members, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![id, display_name, external_id, members.join("\n"), t],
            )?;
            load_group(tx, &id)
        })
    }

    fn scim_group(&self, id: &str) -> Result<Option<ScimGroup>> {
        self.with_conn(|c| Ok(c.query_row(&format!("{GROUP_SELECT} WHERE id = ?1"), [id], group_from_row).optional()?))
    }

    fn scim_groups(&self, display_name: Option<&str>, offset: u32, limit: u32) -> Result<(u64, Vec<ScimGroup>)> {
        self.with_conn(|c| {
            let total: i64 = c.query_row("SELECT count(*) FROM scim_groups WHERE (?1 IS NULL OR display_name = ?1)", params![display_name], |r| r.get(0))?;
            let mut st = c.prepare(&format!("{GROUP_SELECT} WHERE (?1 IS NULL OR display_name = ?1) ORDER BY rowid LIMIT ?2 OFFSET ?3"))?;
            let rows = st.query_map(params![display_name, limit.min(1000), offset], group_from_row)?;
            Ok((total as u64, rows.collect::<rusqlite::Result<_>>()?))
        })
    }

    fn scim_update_group(&self, g: &ScimGroup) -> Result<ScimGroup> {
        let t = now();
        let mut members = g.members.clone();
        members.sort();
        members.dedup();
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE scim_groups SET display_name = ?2, external_id = ?3, members = ?4, updated_at = ?5 WHERE id = ?1",
                params![g.id, g.display_name, g.external_id, members.join("\n"), t],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("no SCIM group {:?}", g.id)));
            }
            // Role mappings may follow group membership: let caches re-read.
            bump_epoch(tx)?;
            load_group(tx, &g.id)
        })
    }

    fn scim_delete_group(&self, id: &str) -> Result<()> {
        self.write(|tx| {
            if tx.execute("DELETE FROM scim_groups WHERE id = ?1", [id])? == 0 {
                return Err(StoreError::NotFound(format!("no SCIM group {id:?}")));
            }
            bump_epoch(tx)
        })
    }

    fn scim_groups_of(&self, user_id: &str) -> Result<Vec<String>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!("{GROUP_SELECT} WHERE instr(members, ?1) > 0 ORDER BY display_name"))?;
            let rows = st.query_map([user_id], group_from_row)?;
            let groups: Vec<ScimGroup> = rows.collect::<rusqlite::Result<_>>()?;
            Ok(groups.into_iter().filter(|g| g.members.iter().any(|m| m == user_id)).map(|g| g.display_name).collect())
        })
    }

    fn transfer_agent(&self, name: &str, to_email: &str) -> Result<String> {
        let to = normalize_email(to_email)?;
        let t = now();
        self.write(|tx| {
            let owner: String = tx
                .query_row("SELECT owner FROM agents WHERE name = ?1", [name], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::AgentNotFound(name.to_string()))?;
            match human_status(tx, &to)? {
                None => return Err(StoreError::HumanNotFound(to.clone())),
                Some(HumanStatus::Deactivated) => return Err(StoreError::Conflict(format!("{to} is deactivated; an agent can only be transferred to an active human"))),
                Some(HumanStatus::Active) => {}
            }
            tx.execute("UPDATE agents SET owner = ?2, updated_at = ?3 WHERE name = ?1", params![name, to, t])?;
            // Pending requests name the owner, who may not approve them: keep that true.
            tx.execute("UPDATE approvals SET owner = ?2, updated_at = ?3 WHERE agent = ?1 AND status = 'pending'", params![name, to, t])?;
            bump_epoch(tx)?;
            Ok(owner)
        })
    }

    fn withdraw_human(&self, email: &str) -> Result<Withdrawn> {
        let email = normalize_email(email)?;
        let t = now();
        self.write(|tx| {
            let mut out = Withdrawn::default();
            {
                let mut st = tx.prepare("UPDATE approvals SET status = 'cancelled', updated_at = ?2 WHERE lower(requested_by) = ?1 AND status = 'pending' RETURNING id")?;
                let rows = st.query_map(params![email, t], |r| r.get::<_, String>(0))?;
                out.cancelled_requests = rows.collect::<rusqlite::Result<_>>()?;
            }
            let pending: Vec<(String, String)> = {
                let mut st = tx.prepare("SELECT id, votes FROM approvals WHERE status = 'pending' AND votes != ''")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (id, votes) in pending {
                // One vote per line: "by\tapprove|deny\tat\treason".
                let kept: Vec<&str> = votes.lines().filter(|l| !l.split('\t').next().is_some_and(|by| by.eq_ignore_ascii_case(&email))).collect();
                if kept.len() != votes.lines().count() {
                    tx.execute("UPDATE approvals SET votes = ?2, updated_at = ?3 WHERE id = ?1", params![id, kept.join("\n"), t])?;
                    out.withdrawn_votes.push(id);
                }
            }
            if !out.cancelled_requests.is_empty() || !out.withdrawn_votes.is_empty() {
                bump_epoch(tx)?;
            }
            Ok(out)
        })
    }

    fn submit_graph(&self, agent: &str, graph_id: &str, digest: &str, manifest: &str, submitted_by: &str) -> Result<GraphVersion> {
        let id = new_id("gv");
        let t = now();
        self.write(|tx| {
            let exists = tx.query_row("SELECT 1 FROM agents WHERE name = ?1", [agent], |_| Ok(())).optional()?.is_some();
            if !exists {
                return Err(StoreError::AgentNotFound(agent.to_string()));
            }
            let dup = tx.query_row("SELECT id, status FROM graph_versions WHERE agent = ?1 AND digest = ?2", params![agent, digest], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).optional()?;
            if let Some((id, status)) = dup {
                return Err(StoreError::Conflict(format!("agent {agent} already submitted version {digest} as {id} ({status})")));
            }
            tx.execute(
                "INSERT INTO graph_versions (id, agent, graph_id, digest, manifest, status, submitted_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7)",
                params![id, agent, graph_id, digest, manifest, submitted_by, t],
            )?;
            Ok(tx.query_row(&format!("{GRAPH_SELECT} WHERE id = ?1"), [&id], graph_from_row)?)
        })
    }

    fn graph_version(&self, id: &str) -> Result<Option<GraphVersion>> {
        self.with_conn(|c| Ok(c.query_row(&format!("{GRAPH_SELECT} WHERE id = ?1"), [id], graph_from_row).optional()?))
    }

    fn graph_by_digest(&self, agent: &str, digest: &str) -> Result<Option<GraphVersion>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(&format!("{GRAPH_SELECT} WHERE agent = ?1 AND digest = ?2"))?;
            Ok(st.query_row(params![agent, digest], graph_from_row).optional()?)
        })
    }

    fn list_graphs(&self, agent: Option<&str>, limit: u32) -> Result<Vec<GraphVersion>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!("{GRAPH_SELECT} WHERE (?1 IS NULL OR agent = ?1) ORDER BY created_at DESC, id LIMIT ?2"))?;
            let rows = st.query_map(params![agent, limit.min(10_000)], graph_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn decide_graph(&self, id: &str, approve: bool, by: &str, reason: &str) -> Result<GraphVersion> {
        let t = now();
        self.write(|tx| {
            let g = tx.query_row(&format!("{GRAPH_SELECT} WHERE id = ?1"), [id], graph_from_row).optional()?.ok_or_else(|| StoreError::NotFound(format!("no graph version {id:?}")))?;
            if g.status != GraphStatus::Pending {
                return Err(StoreError::Conflict(format!("graph version {id} is {}, not pending", g.status.as_str())));
            }
            let status = if approve { "approved" } else { "denied" };
            tx.execute("UPDATE graph_versions SET status = ?2, decided_by = ?3, reason = ?4, decided_at = ?5 WHERE id = ?1", params![id, status, by, reason, t])?;
            bump_epoch(tx)?;
            Ok(tx.query_row(&format!("{GRAPH_SELECT} WHERE id = ?1"), [id], graph_from_row)?)
        })
    }
}
