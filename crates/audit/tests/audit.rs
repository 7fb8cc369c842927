use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use warden_audit::*;
use warden_store::*;

fn ev(i: usize) -> AuditEvent {
    let mut e = AuditEvent::new(
        "statement",
        if i.is_multiple_of(5) { "deny" } else { "allow" },
    );
    e.agent = Some(format!("agent{}", i % 3));
    e.owner = Some("o@x.io".into());
    e.node = Some("fetch".into());
    e.session_id = Some(format!("s{}", i % 7));
    e.statement = Some(format!("SELECT * FROM orders WHERE id = {i}"));
    e.params_digest = Some(params_digest(&[Some(i.to_string().as_bytes())]));
    e.actions = vec!["select".into()];
    e.tables = vec!["public.orders".into()];
    e.rows = Some(1);
    e.duration_us = Some(120);
    e
}

fn key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

fn cfg(checkpoint_every: u64) -> AuditConfig {
    AuditConfig {
        checkpoint_every,
        ..Default::default()
    }
}

/// Writes `n` events (statement of event `i` is `ev(i)`'s) and shuts the writer down.
async fn build_log(path: &std::path::Path, n: usize, key: Option<SigningKey>, every: u64) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path).unwrap());
    let h = AuditWriter::start_with(store, key, cfg(every));
    for i in 1..=n {
        assert_eq!(h.record(ev(i)).await.unwrap(), i as u64);
    }
    h.shutdown().await;
    assert!(matches!(h.record_nowait(ev(0)), Err(AuditError::Closed)));
}

/// What an attacker with write access to the file does: drop the guard triggers, then SQL.
fn tamper(path: &std::path::Path, sql: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;")
        .unwrap();
    c.execute_batch(sql).unwrap();
}

fn verify_file(path: &std::path::Path, pk: Option<&ed25519_dalek::VerifyingKey>) -> VerifyReport {
    let store = SqliteStore::open(path).unwrap();
    verify(&store, pk)
}

fn assert_fails(r: &VerifyReport, needle: &str) {
    assert!(!r.ok, "verify passed a tampered log: {r:?}");
    let p = r.problem.as_deref().unwrap_or("");
    assert!(p.contains(needle), "expected {needle:?} in {p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_records_group_commit_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let k = key();
    let pk = k.verifying_key();
    let h = AuditWriter::start(store.clone(), Some(k));
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let h = h.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in (0..1000).filter(|i| i % 16 == t) {
                    let seq = h.record(ev(i)).await.unwrap();
                    seqs.push(seq);
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=1000).collect::<Vec<u64>>());

    // Durable: visible to an independent connection before shutdown.
    let other = SqliteStore::open(&path).unwrap();
    assert_eq!(other.audit_tail().unwrap().unwrap().0, 1000);
    let stats = h.stats();
    eprintln!("{stats:?}");
    assert_eq!(stats.events, 1000);
    assert!(
        stats.largest_batch > 1,
        "no group commit happened: {stats:?}"
    );
    assert!(stats.commits < 1000, "{stats:?}");
    assert!(h.healthy());

    h.shutdown().await;
    let r = verify(&*store, Some(&pk));
    assert!(r.ok, "{r:?}");
    assert_eq!(r.events, 1000);
    assert_eq!(r.checkpoints, 1);
    assert_eq!(r.unanchored_tail, 0);

    // Search by the indexed columns.
    let denies = store
        .audit_rows(&AuditFilter {
            decision: Some("deny".into()),
            limit: Some(1000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(denies.len(), 200);
}

#[tokio::test]
async fn clean_log_verifies_and_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let k = key();
    build_log(&path, 30, Some(k.clone()), 10).await;
    let store = SqliteStore::open(&path).unwrap();
    let r = verify(&store, Some(&k.verifying_key()));
    assert_eq!(
        r,
        VerifyReport {
            events: 30,
            checkpoints: 3,
            ok: true,
            problem: None,
            unanchored_tail: 0
        }
    );
    let rows = store.audit_all().unwrap();
    let back: AuditEvent = serde_json::from_str(&rows[4].event_json).unwrap();
    assert_eq!(back, {
        let mut e = ev(5);
        e.time = back.time;
        e
    });
    assert_eq!(rows[4].decision, "deny");
    // The time format: RFC3339 UTC, microseconds.
    let v: serde_json::Value = serde_json::from_str(&rows[0].event_json).unwrap();
    let t = v["time"].as_str().unwrap();
    assert_eq!(t.len(), "2025-01-01T00:00:00.000000Z".len(), "{t}");
    assert!(t.ends_with('Z'));
    // Without the key: integrity only, still ok.
    assert!(verify(&store, None).ok);
    // The wrong key: not ok.
    assert_fails(
        &verify(&store, Some(&key().verifying_key())),
        "not the expected key",
    );
}

#[tokio::test]
async fn edited_event_fails_naming_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    build_log(&path, 30, Some(key()), 10).await;
    tamper(&path, "UPDATE audit_events SET event_json = replace(event_json, 'orders', 'ORDERS') WHERE seq = 17");
    assert_fails(&verify_file(&path, None), "event 17: hash mismatch");
}

#[tokio::test]
async fn edited_index_column_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    build_log(&path, 30, None, 10).await;
    tamper(
        &path,
        "UPDATE audit_events SET decision = 'allow' WHERE seq = 15",
    );
    assert_fails(&verify_file(&path, None), "event 15: indexed columns");
}

#[tokio::test]
async fn deleted_middle_row_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    build_log(&path, 30, Some(key()), 10).await;
    tamper(&path, "DELETE FROM audit_events WHERE seq = 17");
    assert_fails(&verify_file(&path, None), "seq gap after 16 (deleted)");
}

#[tokio::test]
async fn deleted_first_row_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    build_log(&path, 5, None, 10).await;
    tamper(&path, "DELETE FROM audit_events WHERE seq = 1");
    assert_fails(&verify_file(&path, None), "seq gap after 0 (deleted)");
}

#[tokio::test]
async fn swapped_payloads_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    build_log(&path, 30, None, 10).await;
    tamper(
        &path,
        "UPDATE audit_events SET event_json = CASE seq
             WHEN 20 THEN (SELECT event_json FROM audit_events WHERE seq = 21)
             ELSE (SELECT event_json FROM audit_events WHERE seq = 20) END
         WHERE seq IN (20, 21)",
    );
    assert_fails(&verify_file(&path, None), "event 20: hash mismatch");
}

#[tokio::test]
async fn truncated_tail_fails_thanks_to_the_shutdown_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    // Checkpoints at 10, 20 and (shutdown) 25.
    build_log(&path, 25, Some(key()), 10).await;
    tamper(&path, "DELETE FROM audit_events WHERE seq > 22");
    assert_fails(
        &verify_file(&path, None),
        "last checkpoint at 25 missing (truncated after 22)",
    );
}

#[tokio::test]
async fn rewritten_chain_fails_at_the_next_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    build_log(&path, 30, Some(key()), 10).await;
    // Edit event 13 and recompute every later hash, as an attacker without the signing
    // key would: the chain is consistent again, but checkpoint 20 is not.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("DROP TRIGGER audit_events_no_update;")
        .unwrap();
    c.execute("UPDATE audit_events SET event_json = replace(event_json, 'orders', 'ORDERS') WHERE seq = 13", [])
        .unwrap();
    let mut prev: String = c
        .query_row("SELECT hash FROM audit_events WHERE seq = 12", [], |r| {
            r.get(0)
        })
        .unwrap();
    for seq in 13..=30i64 {
        let json: String = c
            .query_row(
                "SELECT event_json FROM audit_events WHERE seq = ?1",
                [seq],
                |r| r.get(0),
            )
            .unwrap();
        let h = warden_audit::chain::event_hash(&prev, seq, &json);
        c.execute(
            "UPDATE audit_events SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![prev, h, seq],
        )
        .unwrap();
        prev = h;
    }
    drop(c);
    assert_fails(
        &verify_file(&path, None),
        "event 20: differs from its signed checkpoint",
    );
}

#[tokio::test]
async fn flipped_byte_in_the_database_file_is_never_ok() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        let h = AuditWriter::start_with(store, Some(key()), cfg(10));
        for i in 1..=30 {
            let mut e = ev(i);
            if i == 7 {
                e.statement = Some("SELECT secret_marker_QQQQ FROM vault".into());
            }
            h.record(e).await.unwrap();
        }
        h.shutdown().await; // the writer has released its connections
    }
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let (busy, _, _): (i64, i64, i64) = c
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0);
    }
    let wal = path.with_extension("db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);

    let mut bytes = std::fs::read(&path).unwrap();
    let marker = b"secret_marker_QQQQ";
    let hits: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker)
        .map(|(i, _)| i)
        .collect();
    assert!(!hits.is_empty(), "statement text not found in the file");
    for i in hits {
        bytes[i + 15] ^= 0x01; // 'Q' -> 'P': still valid UTF-8, so SQLite reads it happily
    }
    std::fs::write(&path, &bytes).unwrap();

    let r = verify_file(&path, None);
    assert!(!r.ok, "{r:?}");
    let p = r.problem.unwrap();
    assert!(
        p.contains("event 7: hash mismatch") || p.contains("database error"),
        "{p}"
    );
}

/// Delegates to SQLite, but appends can be held (gate) or made to fail.
struct FaultyStore {
    inner: SqliteStore,
    gate: Mutex<()>,
    fail: AtomicBool,
}

impl AuditStore for FaultyStore {
    fn append_audit(&self, rows: &[NewAuditRow]) -> Result<()> {
        let _held = self.gate.lock().unwrap();
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::InvalidAuditBatch(
                "injected disk failure".into(),
            ));
        }
        self.inner.append_audit(rows)
    }
    fn audit_tail(&self) -> Result<Option<(i64, String)>> {
        self.inner.audit_tail()
    }
    fn audit_rows(&self, f: &AuditFilter) -> Result<Vec<AuditRow>> {
        self.inner.audit_rows(f)
    }
    fn audit_range(&self, a: i64, l: u32) -> Result<Vec<AuditRow>> {
        self.inner.audit_range(a, l)
    }
    fn append_checkpoint(&self, c: &Checkpoint) -> Result<()> {
        self.inner.append_checkpoint(c)
    }
    fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.inner.checkpoints()
    }
}

fn faulty(dir: &tempfile::TempDir) -> Arc<FaultyStore> {
    Arc::new(FaultyStore {
        inner: SqliteStore::open(dir.path().join("f.db")).unwrap(),
        gate: Mutex::new(()),
        fail: AtomicBool::new(false),
    })
}

#[tokio::test]
async fn full_queue_is_an_error_not_a_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir);
    let h = AuditWriter::start_with(
        store.clone(),
        None,
        AuditConfig {
            queue_capacity: 4,
            ..Default::default()
        },
    );
    let mut accepted = 0;
    let mut refused = None;
    {
        let _hold = store.gate.lock().unwrap(); // the writer blocks in its first commit
        for i in 0..100 {
            match h.record_nowait(ev(i)) {
                Ok(()) => accepted += 1,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
            if i == 0 {
                std::thread::sleep(Duration::from_millis(50)); // let the writer take it
            }
        }
    }
    let err = refused.expect("queue never filled");
    assert!(
        matches!(err, AuditError::QueueFull { capacity: 4 }),
        "{err}"
    );
    assert!(err.to_string().contains("audit.queue_capacity"));
    assert!((4..=5).contains(&accepted), "{accepted}");
    h.flush().await;
    // Every accepted event was written.
    assert_eq!(store.audit_all().unwrap().len(), accepted);
    assert!(verify(&*store, None).ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commit_marks_unhealthy_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir);
    store.fail.store(true, Ordering::SeqCst);
    let h = AuditWriter::start(store.clone(), None);
    let waiting = {
        let h = h.clone();
        tokio::spawn(async move { h.record(ev(1)).await })
    };
    for _ in 0..200 {
        if !h.healthy() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!h.healthy());
    let err = h.record_nowait(ev(2)).unwrap_err();
    assert!(
        matches!(err, AuditError::Unhealthy(ref m) if m.contains("injected")),
        "{err}"
    );
    assert!(
        !waiting.is_finished(),
        "a waiter was answered before its event was durable"
    );

    store.fail.store(false, Ordering::SeqCst);
    let seq = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seq, 1);
    assert!(h.healthy());
    assert!(h.stats().failed_commits >= 1);
    assert_eq!(h.record(ev(3)).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_on_one_file_never_fork() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    // Two stores = two sets of connections, as two processes would have.
    let gw: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let cli: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let k = key();
    let a = AuditWriter::start_with(gw.clone(), Some(k.clone()), cfg(50));
    let b = AuditWriter::start_with(cli.clone(), None, cfg(50));
    // Strict alternation: every commit lands on a tail the other writer moved.
    for i in 0..10 {
        a.record(ev(i)).await.unwrap();
        let mut admin = AuditEvent::new("admin", "allow");
        admin.extra.insert("actor".into(), "root@x.io".into());
        b.record(admin).await.unwrap();
    }
    assert!(
        a.stats().rechains + b.stats().rechains >= 9,
        "{:?} {:?}",
        a.stats(),
        b.stats()
    );
    // Then a free-for-all.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let w = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                w.record(ev(i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    a.shutdown().await;
    b.shutdown().await;
    let r = verify(&*gw, Some(&k.verifying_key()));
    assert!(r.ok, "{r:?}");
    assert_eq!(r.events, 220);
}

#[tokio::test]
async fn extra_fields_cannot_shadow_named_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("x.db")).unwrap());
    let h = AuditWriter::start(store, None);
    let mut e = ev(1);
    e.extra.insert("decision".into(), "allow".into());
    assert!(matches!(
        h.record_nowait(e).unwrap_err(),
        AuditError::InvalidEvent(_)
    ));
}

#[test]
fn params_digest_is_unambiguous() {
    let d = |p: &[Option<&[u8]>]| params_digest(p);
    let all = [
        d(&[]),
        d(&[Some(b"ab")]),
        d(&[Some(b"a"), Some(b"b")]),
        d(&[None]),
        d(&[Some(b"")]),
        d(&[None, None]),
        d(&[Some(b"ab"), None]),
        d(&[None, Some(b"ab")]),
    ];
    for (i, x) in all.iter().enumerate() {
        assert_eq!(x.len(), 64);
        for y in &all[i + 1..] {
            assert_ne!(x, y);
        }
    }
    assert_eq!(d(&[Some(b"ab")]), d(&[Some(b"ab")]));
}
