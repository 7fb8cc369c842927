//! SQLite implementation of [`ApprovalStore`].

use super::{bump_epoch, now, SqliteStore};
use crate::approvals::*;
use crate::{Result, StoreError};
use rusqlite::{params, OptionalExtension, Row, Transaction};

const APPROVAL_SELECT: &str = "SELECT id, kind, agent, owner, node, run, graph_version, target, statement, params_digest, rule, reason,
    requested_by, quorum, mode, expires_at, grant_actions, grant_objects, grant_duration, status, votes, created_at, updated_at FROM approvals";

fn split(s: Option<String>) -> Vec<String> {
    s.filter(|s| !s.is_empty()).map(|s| s.split('\n').map(str::to_string).collect()).unwrap_or_default()
}

fn approval_from_row(r: &Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    let grant_duration: Option<i64> = r.get(18)?;
    let grant = grant_duration.map(|d| -> rusqlite::Result<GrantSpec> { Ok(GrantSpec { actions: split(r.get(16)?), objects: split(r.get(17)?), duration_secs: d }) }).transpose()?;
    let status: String = r.get(19)?;
    let votes: String = r.get(20)?;
    Ok(ApprovalRecord {
        id: r.get(0)?,
        request: NewApproval {
            kind: r.get(1)?,
            agent: r.get(2)?,
            owner: r.get(3)?,
            node: r.get(4)?,
            run: r.get(5)?,
            graph_version: r.get(6)?,
            target: r.get(7)?,
            statement: r.get(8)?,
            params_digest: r.get(9)?,
            rule: r.get(10)?,
            reason: r.get(11)?,
            requested_by: r.get(12)?,
            quorum: r.get(13)?,
            mode: r.get(14)?,
            expires_at: r.get(15)?,
            grant,
        },
        status: ApprovalStatus::parse(&status).unwrap_or(ApprovalStatus::Cancelled),
        votes: decode_votes(&votes),
        created_at: r.get(21)?,
        updated_at: r.get(22)?,
    })
}

// Votes are few and only read back whole: one tab-separated line each keeps the schema flat.
fn encode_votes(votes: &[Vote]) -> String {
    votes
        .iter()
        .map(|v| format!("{}\t{}\t{}\t{}", v.by, if v.approve { "approve" } else { "deny" }, v.at, v.reason.replace(['\t', '\n'], " ")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn decode_votes(s: &str) -> Vec<Vote> {
    s.lines()
        .filter_map(|l| {
            let mut p = l.splitn(4, '\t');
            Some(Vote { by: p.next()?.to_string(), approve: p.next()? == "approve", at: p.next()?.parse().ok()?, reason: p.next().unwrap_or("").to_string() })
        })
        .collect()
}

const GRANT_SELECT: &str = "SELECT id, approval_id, agent, node, run, target, actions, objects, active_from, expires_at, revoked FROM grants";

fn grant_from_row(r: &Row<'_>) -> rusqlite::Result<GrantRecord> {
    Ok(GrantRecord {
        id: r.get(0)?,
        approval_id: r.get(1)?,
        agent: r.get(2)?,
        node: r.get(3)?,
        run: r.get(4)?,
        target: r.get(5)?,
        actions: split(r.get(6)?),
        objects: split(r.get(7)?),
        active_from: r.get(8)?,
        expires_at: r.get(9)?,
        revoked: r.get(10)?,
    })
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 8]>()))
}

fn load(tx: &Transaction<'_>, id: &str) -> Result<Option<ApprovalRecord>> {
    Ok(tx.query_row(&format!("{APPROVAL_SELECT} WHERE id = ?1"), [id], approval_from_row).optional()?)
}

impl ApprovalStore for SqliteStore {
    fn create_approval(&self, a: &NewApproval) -> Result<ApprovalRecord> {
        let id = new_id(if a.kind == "grant" { "grq" } else { "apr" });
        let t = now();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO approvals (id, kind, agent, owner, node, run, graph_version, target, statement, params_digest, rule, reason,
                    requested_by, quorum, mode, expires_at, grant_actions, grant_objects, grant_duration, status, votes, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, 'pending', '', ?20, ?20)",
                params![
                    id, a.kind, a.agent, a.owner, a.node, a.run, a.graph_version, a.target, a.statement, a.params_digest, a.rule, a.reason,
                    a.requested_by, a.quorum.max(1), a.mode, a.expires_at,
                    a.grant.as_ref().map(|g| g.actions.join("\n")),
                    a.grant.as_ref().map(|g| g.objects.join("\n")),
                    a.grant.as_ref().map(|g| g.duration_secs),
                    t
                ],
            )?;
            bump_epoch(tx)?;
            Ok(())
        })?;
        Ok(self.approval(&id)?.expect("just inserted"))
    }

    fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>> {
        self.with_conn(|c| Ok(c.query_row(&format!("{APPROVAL_SELECT} WHERE id = ?1"), [id], approval_from_row).optional()?))
    }

    fn list_approvals(&self, status: Option<ApprovalStatus>, limit: u32) -> Result<Vec<ApprovalRecord>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare(&format!("{APPROVAL_SELECT} WHERE (?1 IS NULL OR status = ?1) ORDER BY created_at DESC, id LIMIT ?2"))?;
            let rows = stmt.query_map(params![status.map(|s| s.as_str()), limit.min(10_000)], approval_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn vote(&self, id: &str, vote: &Vote) -> Result<VoteOutcome> {
        self.write(|tx| {
            let rec = load(tx, id)?.ok_or_else(|| StoreError::ApprovalNotFound(id.to_string()))?;
            if rec.status != ApprovalStatus::Pending {
                return Err(StoreError::ApprovalNotPending { id: id.to_string(), status: rec.status.as_str() });
            }
            if vote.at >= rec.request.expires_at {
                return Err(StoreError::ApprovalNotPending { id: id.to_string(), status: "expired" });
            }
            if rec.votes.iter().any(|v| v.by == vote.by) {
                return Err(StoreError::AlreadyVoted { id: id.to_string(), by: vote.by.clone() });
            }
            let mut votes = rec.votes.clone();
            votes.push(vote.clone());
            let approvals = votes.iter().filter(|v| v.approve).count() as u32;
            let (status, outcome) = if !vote.approve {
                (ApprovalStatus::Denied, VoteOutcome::Denied)
            } else if approvals >= rec.request.quorum {
                (ApprovalStatus::Approved, VoteOutcome::Approved)
            } else {
                (ApprovalStatus::Pending, VoteOutcome::Recorded { approvals, quorum: rec.request.quorum })
            };
            tx.execute("UPDATE approvals SET status = ?2, votes = ?3, updated_at = ?4 WHERE id = ?1", params![id, status.as_str(), encode_votes(&votes), vote.at])?;
            if status == ApprovalStatus::Approved {
                if let Some(g) = &rec.request.grant {
                    tx.execute(
                        "INSERT INTO grants (id, approval_id, agent, node, run, target, actions, objects, active_from, expires_at, revoked)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0)",
                        params![new_id("grt"), id, rec.request.agent, rec.request.node, rec.request.run, rec.request.target, g.actions.join("\n"), g.objects.join("\n"), vote.at, vote.at + g.duration_secs],
                    )?;
                }
            }
            if status != ApprovalStatus::Pending {
                bump_epoch(tx)?;
            }
            Ok(outcome)
        })
    }

    fn find_approved_command(&self, agent: &str, node: Option<&str>, target: &str, statement: &str, params_digest: Option<&str>, now: i64) -> Result<Option<ApprovalRecord>> {
        self.with_conn(|c| {
            Ok(c.query_row(
                &format!(
                    "{APPROVAL_SELECT} WHERE kind = 'command' AND status = 'approved' AND agent = ?1 AND node IS ?2 AND target = ?3
                     AND statement = ?4 AND params_digest IS ?5 AND expires_at > ?6 ORDER BY created_at LIMIT 1"
                ),
                params![agent, node, target, statement, params_digest, now],
                approval_from_row,
            )
            .optional()?)
        })
    }

    fn consume_approval(&self, id: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute("UPDATE approvals SET status = 'executed', updated_at = ?2 WHERE id = ?1 AND status = 'approved'", params![id, now()])?;
            Ok(n == 1)
        })
    }

    fn expire_approvals(&self, now: i64) -> Result<Vec<ApprovalRecord>> {
        self.write(|tx| {
            let expired: Vec<ApprovalRecord> = {
                let mut stmt = tx.prepare(&format!("{APPROVAL_SELECT} WHERE status = 'pending' AND expires_at <= ?1"))?;
                let rows = stmt.query_map([now], approval_from_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            if !expired.is_empty() {
                tx.execute("UPDATE approvals SET status = 'expired', updated_at = ?1 WHERE status = 'pending' AND expires_at <= ?1", [now])?;
                bump_epoch(tx)?;
            }
            Ok(expired)
        })
    }

    fn cancel_for_agents(&self, agents: &[String]) -> Result<Vec<String>> {
        self.write(|tx| {
            let mut cancelled = Vec::new();
            for agent in agents {
                let mut stmt = tx.prepare("SELECT id FROM approvals WHERE agent = ?1 AND status IN ('pending', 'approved')")?;
                let ids = stmt.query_map([agent], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
                tx.execute("UPDATE approvals SET status = 'cancelled', updated_at = ?2 WHERE agent = ?1 AND status IN ('pending', 'approved')", params![agent, now()])?;
                tx.execute("UPDATE grants SET revoked = 1 WHERE agent = ?1", [agent])?;
                cancelled.extend(ids);
            }
            bump_epoch(tx)?;
            Ok(cancelled)
        })
    }

    fn active_grants(&self, agent: &str, target: &str, now: i64) -> Result<Vec<GrantRecord>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(&format!("{GRANT_SELECT} WHERE agent = ?1 AND target = ?2 AND revoked = 0 AND active_from <= ?3 AND expires_at > ?3"))?;
            let rows = stmt.query_map(params![agent, target, now], grant_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn list_grants(&self, limit: u32) -> Result<Vec<GrantRecord>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare(&format!("{GRANT_SELECT} ORDER BY active_from DESC LIMIT ?1"))?;
            let rows = stmt.query_map([limit.min(10_000)], grant_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn revoke_grant(&self, id: &str) -> Result<()> {
        self.write(|tx| {
            if tx.execute("UPDATE grants SET revoked = 1 WHERE id = ?1", [id])? == 0 {
                return Err(StoreError::GrantNotFound(id.to_string()));
            }
            bump_epoch(tx)
        })
    }
}
