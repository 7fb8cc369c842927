use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use warden_store::{AuditRow, AuditStore};

use crate::chain::{event_hash, verify_checkpoint, GENESIS_HASH};
use crate::AuditEvent;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events checked (up to the first problem).
    pub events: u64,
    pub checkpoints: u64,
    pub ok: bool,
    /// The first problem found, naming the seq.
    pub problem: Option<String>,
    /// Events after the last signed checkpoint: their removal from the end of the log
    /// would go unnoticed (a checkpoint is written every N events and on shutdown).
    pub unanchored_tail: u64,
}

const PAGE: u32 = 10_000;

/// Checks the whole chain and every checkpoint. With `public_key`, every checkpoint must
/// be signed by that key; without it, signatures are checked against the key stored next
/// to them, which proves integrity but not who wrote the checkpoint.
///
/// Never returns "ok" on a read error: a database that cannot be read is a failure.
pub fn verify(store: &dyn AuditStore, public_key: Option<&VerifyingKey>) -> VerifyReport {
    let mut report = VerifyReport {
        events: 0,
        checkpoints: 0,
        ok: false,
        problem: None,
        unanchored_tail: 0,
    };
    match run(store, public_key, &mut report) {
        Ok(()) => report.ok = true,
        Err(problem) => report.problem = Some(problem),
    }
    report
}

fn run(
    store: &dyn AuditStore,
    public_key: Option<&VerifyingKey>,
    r: &mut VerifyReport,
) -> Result<(), String> {
    let db = |e: warden_store::StoreError| format!("database error: {e}");
    let mut checkpoints = BTreeMap::new();
    for cp in store.checkpoints().map_err(db)? {
        let key = match public_key {
            Some(k) => {
                if hex::encode(k.to_bytes()) != cp.public_key {
                    return Err(format!(
                        "checkpoint at {}: signed by key {} (not the expected key)",
                        cp.seq, cp.public_key
                    ));
                }
                *k
            }
            None => parse_key(&cp.public_key)
                .ok_or_else(|| format!("checkpoint at {}: malformed public key", cp.seq))?,
        };
        if !verify_checkpoint(&key, cp.seq, &cp.hash, &cp.signature) {
            return Err(format!(
                "checkpoint at {}: bad signature (forged or edited)",
                cp.seq
            ));
        }
        checkpoints.insert(cp.seq, cp.hash);
    }
    r.checkpoints = checkpoints.len() as u64;

    let mut prev_seq = 0i64;
    let mut prev_hash = GENESIS_HASH.to_string();
    loop {
        let page = store.audit_range(prev_seq, PAGE).map_err(db)?;
        if page.is_empty() {
            break;
        }
        for row in page {
            check_row(&row, prev_seq, &prev_hash)?;
            if let Some(h) = checkpoints.get(&row.seq) {
                if *h != row.hash {
                    return Err(format!(
                        "event {}: differs from its signed checkpoint (chain rewritten)",
                        row.seq
                    ));
                }
            }
            r.events += 1;
            prev_seq = row.seq;
            prev_hash = row.hash;
        }
    }
    if let Some((&cp_seq, _)) = checkpoints.last_key_value() {
        if cp_seq > prev_seq {
            return Err(format!(
                "last checkpoint at {cp_seq} missing (truncated after {prev_seq})"
            ));
        }
    }
    let anchored = checkpoints.last_key_value().map_or(0, |(s, _)| *s);
    r.unanchored_tail = (prev_seq - anchored).max(0) as u64;
    Ok(())
}

fn check_row(row: &AuditRow, prev_seq: i64, prev_hash: &str) -> Result<(), String> {
    let seq = row.seq;
    if seq != prev_seq + 1 {
        return Err(format!("seq gap after {prev_seq} (deleted)"));
    }
    if row.prev_hash != prev_hash {
        return Err(format!(
            "event {seq}: prev_hash does not match event {prev_seq} (deleted, inserted or reordered)"
        ));
    }
    if event_hash(prev_hash, seq, &row.event_json) != row.hash {
        return Err(format!("event {seq}: hash mismatch (edited or reordered)"));
    }
    // The indexed columns are not hashed (they are copies for search); a search over them
    // must not be misled, so they must agree with the hashed JSON.
    let ev: AuditEvent = serde_json::from_str(&row.event_json)
        .map_err(|e| format!("event {seq}: event_json is not an audit event: {e}"))?;
    if ev.unix_micros() != row.ts_us
        || ev.agent != row.agent
        || ev.node != row.node
        || ev.decision != row.decision
    {
        return Err(format!(
            "event {seq}: indexed columns (ts, agent, node, decision) disagree with event_json (edited)"
        ));
    }
    Ok(())
}

fn parse_key(hex_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}
