use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::sync::{mpsc, oneshot};
use warden_store::{AuditStore, Checkpoint, NewAuditRow, StoreError};

use crate::chain::{event_hash, sign_checkpoint, GENESIS_HASH};
use crate::event::NAMED_FIELDS;
use crate::AuditEvent;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// Fail closed: the caller must not perform the audited action.
    #[error(
        "audit queue full ({capacity} events queued; raise audit.queue_capacity or check the disk)"
    )]
    QueueFull { capacity: usize },
    #[error("audit log unhealthy, last commit failed: {0}")]
    Unhealthy(String),
    #[error("audit writer has shut down")]
    Closed,
    #[error("invalid audit event: {0}")]
    InvalidEvent(String),
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Events waiting for the writer; beyond this `record_nowait` fails.
    pub queue_capacity: usize,
    /// Most events in one commit.
    pub batch_max: usize,
    /// Write a signed checkpoint once the tail is this many events past the last one
    /// (only with a signing key). Also written on shutdown.
    pub checkpoint_every: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            queue_capacity: 65_536,
            batch_max: 1024,
            checkpoint_every: 1000,
        }
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Successful append transactions (each one fsync).
    pub commits: u64,
    pub events: u64,
    pub largest_batch: u64,
    pub failed_commits: u64,
    /// Times another writer had appended first and the batch was re-chained.
    pub rechains: u64,
    pub checkpoints: u64,
}

#[derive(Default)]
struct Shared {
    healthy: AtomicBool,
    commits: AtomicU64,
    events: AtomicU64,
    largest_batch: AtomicU64,
    failed_commits: AtomicU64,
    rechains: AtomicU64,
    checkpoints: AtomicU64,
    last_error: Mutex<String>,
}

struct Prepared {
    ts_us: i64,
    agent: Option<String>,
    node: Option<String>,
    decision: String,
    event_json: String,
}

enum Msg {
    Event(Prepared, Option<oneshot::Sender<u64>>),
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

pub struct AuditWriter;

impl AuditWriter {
    pub fn start(store: Arc<dyn AuditStore>, signing_key: Option<SigningKey>) -> AuditHandle {
        Self::start_with(store, signing_key, AuditConfig::default())
    }

    /// Spawns the writer thread. It runs until [`AuditHandle::shutdown`] or until every
    /// handle is dropped, committing whatever is queued first in both cases.
    pub fn start_with(
        store: Arc<dyn AuditStore>,
        signing_key: Option<SigningKey>,
        config: AuditConfig,
    ) -> AuditHandle {
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            ..Default::default()
        });
        let w = Writer {
            store,
            key: signing_key,
            batch_max: config.batch_max.max(1),
            checkpoint_every: config.checkpoint_every.max(1),
            shared: shared.clone(),
            tail: None,
            last_checkpoint: None,
        };
        std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || w.run(rx))
            .expect("spawn audit writer thread");
        AuditHandle {
            tx,
            shared,
            capacity,
        }
    }
}

/// Cheap to clone; usable from any tokio task.
#[derive(Clone)]
pub struct AuditHandle {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    capacity: usize,
}

impl AuditHandle {
    /// Resolves with the event's seq once the transaction holding it has committed with
    /// fsync. Waits for queue space (backpressure) rather than failing when full; fails
    /// at once while the log is unhealthy.
    pub async fn record(&self, ev: AuditEvent) -> Result<u64, AuditError> {
        let p = self.prepare(&ev)?;
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Event(p, Some(done)))
            .await
            .map_err(|_| AuditError::Closed)?;
        // The writer never drops a waiter of a queued event while running; a dropped
        // sender means the thread died.
        wait.await.map_err(|_| AuditError::Closed)
    }

    /// Enqueues without waiting for durability. `Ok` means the writer will commit the
    /// event (or keep retrying); a full queue is an error, never a silent drop.
    pub fn record_nowait(&self, ev: AuditEvent) -> Result<(), AuditError> {
        let p = self.prepare(&ev)?;
        self.tx.try_send(Msg::Event(p, None)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AuditError::QueueFull {
                capacity: self.capacity,
            },
            mpsc::error::TrySendError::Closed(_) => AuditError::Closed,
        })
    }

    /// Resolves once everything enqueued before the call is durable.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Commits everything queued, writes a final checkpoint, and stops the writer. Later
    /// calls on any clone fail with [`AuditError::Closed`].
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// False from a failed commit until the next successful one.
    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> AuditStats {
        let s = &self.shared;
        AuditStats {
            commits: s.commits.load(Ordering::Relaxed),
            events: s.events.load(Ordering::Relaxed),
            largest_batch: s.largest_batch.load(Ordering::Relaxed),
            failed_commits: s.failed_commits.load(Ordering::Relaxed),
            rechains: s.rechains.load(Ordering::Relaxed),
            checkpoints: s.checkpoints.load(Ordering::Relaxed),
        }
    }

    // Serializing in the caller spreads the JSON cost over the tokio workers and keeps the
    // single writer thread on hashing and I/O.
    fn prepare(&self, ev: &AuditEvent) -> Result<Prepared, AuditError> {
        if !self.healthy() {
            let e = self
                .shared
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            return Err(AuditError::Unhealthy(e));
        }
        if let Some(k) = ev.extra.keys().find(|k| NAMED_FIELDS.contains(&k.as_str())) {
            return Err(AuditError::InvalidEvent(format!(
                "extra field {k:?} collides with a named field"
            )));
        }
        let event_json =
            serde_json::to_string(ev).map_err(|e| AuditError::InvalidEvent(e.to_string()))?;
        Ok(Prepared {
            ts_us: ev.unix_micros(),
            agent: ev.agent.clone(),
            node: ev.node.clone(),
            decision: ev.decision.clone(),
            event_json,
        })
    }
}

/// How long a batch of record_nowait events may wait for company before its commit.
const NOWAIT_LINGER: Duration = Duration::from_millis(2);

struct Writer {
    store: Arc<dyn AuditStore>,
    key: Option<SigningKey>,
    batch_max: usize,
    checkpoint_every: u64,
    shared: Arc<Shared>,
    /// Last committed (seq, hash) as this writer knows it; `None` = re-read from the store.
    tail: Option<(i64, String)>,
    last_checkpoint: Option<i64>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut shutdown_waiters = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            // Group commit: everything already queued (up to batch_max events) shares one
            // transaction and so one fsync; latency under load is one commit, not N.
            let mut events = Vec::new();
            let mut waiters = Vec::new();
            let mut flushes = Vec::new();
            let mut next = Some(first);
            let mut lingered = false;
            loop {
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Event(p, w) => {
                            waiters.push(w);
                            events.push(p);
                        }
                        Msg::Flush(f) => flushes.push(f),
                        Msg::Shutdown(s) => {
                            // Refuse new sends but keep draining what is already queued:
                            // record_nowait callers were told "Ok".
                            rx.close();
                            shutdown_waiters.push(s);
                        }
                    }
                    if events.len() < self.batch_max {
                        next = rx.try_recv().ok();
                    }
                }
                // Nobody waits on a batch of record_nowait events: let it fill for a moment
                // so a busy gateway commits (and fsyncs) hundreds of times a second, not once
                // per statement. A durable waiter, a flush or shutdown commits at once.
                let nobody_waits = waiters.iter().all(Option::is_none) && flushes.is_empty() && shutdown_waiters.is_empty();
                if lingered || !nobody_waits || events.is_empty() || events.len() >= self.batch_max {
                    break;
                }
                lingered = true;
                std::thread::sleep(NOWAIT_LINGER);
                next = rx.try_recv().ok();
                if next.is_none() {
                    break;
                }
            }
            if !events.is_empty() {
                let first_seq = self.commit(&events);
                for (i, w) in waiters.into_iter().enumerate() {
                    if let Some(w) = w {
                        let _ = w.send(first_seq as u64 + i as u64);
                    }
                }
                self.maybe_checkpoint(false);
            }
            for f in flushes {
                let _ = f.send(());
            }
        }
        self.maybe_checkpoint(true);
        // Release the store (its connections) before acknowledging, so a caller of
        // shutdown() can rely on the writer no longer touching the database.
        drop(self);
        for s in shutdown_waiters {
            let _ = s.send(());
        }
    }

    /// Returns the first seq of the batch. Retries until the commit succeeds: the events are
    /// already promised (waiters, record_nowait), so giving up would lose them silently.
    fn commit(&mut self, events: &[Prepared]) -> i64 {
        let mut backoff = Duration::from_millis(50);
        loop {
            let result = self.tail_or_read().and_then(|(seq, hash)| {
                let rows = chain(seq, &hash, events);
                self.store.append_audit(&rows).map(|()| rows)
            });
            match result {
                Ok(rows) => {
                    let last = rows.last().expect("non-empty batch");
                    self.tail = Some((last.seq, last.hash.clone()));
                    let s = &self.shared;
                    s.commits.fetch_add(1, Ordering::Relaxed);
                    s.events.fetch_add(rows.len() as u64, Ordering::Relaxed);
                    s.largest_batch
                        .fetch_max(rows.len() as u64, Ordering::Relaxed);
                    if !s.healthy.swap(true, Ordering::AcqRel) {
                        tracing::info!("audit log healthy again");
                    }
                    return rows[0].seq;
                }
                Err(StoreError::AuditTailMoved { .. }) => {
                    // Another process appended; rebuild on the real tail. Not a failure.
                    self.tail = None;
                    self.shared.rechains.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.tail = None;
                    let s = &self.shared;
                    s.failed_commits.fetch_add(1, Ordering::Relaxed);
                    *s.last_error.lock().unwrap_or_else(|e| e.into_inner()) = e.to_string();
                    s.healthy.store(false, Ordering::Release);
                    tracing::error!(error = %e, events = events.len(), retry_in = ?backoff, "audit commit failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn tail_or_read(&mut self) -> Result<(i64, String), StoreError> {
        if let Some(t) = &self.tail {
            return Ok(t.clone());
        }
        let t = self
            .store
            .audit_tail()?
            .unwrap_or_else(|| (0, GENESIS_HASH.to_string()));
        self.tail = Some(t.clone());
        Ok(t)
    }

    fn maybe_checkpoint(&mut self, final_one: bool) {
        if self.key.is_none() {
            return;
        }
        let last_cp = match self.last_checkpoint {
            Some(s) => s,
            None => match self.store.checkpoints() {
                Ok(cps) => *self.last_checkpoint.insert(cps.last().map_or(0, |c| c.seq)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read audit checkpoints");
                    return;
                }
            },
        };
        // On shutdown the tail may have been written by someone else since; read it so the
        // final checkpoint covers every event.
        if final_one {
            self.tail = None;
        }
        let tail = self.tail_or_read();
        let (seq, hash) = match tail {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read audit tail for checkpoint");
                return;
            }
        };
        let due = if final_one {
            seq > last_cp
        } else {
            seq - last_cp >= self.checkpoint_every as i64
        };
        let Some(key) = self.key.as_ref().filter(|_| due) else {
            return;
        };
        let cp = Checkpoint {
            seq,
            signature: sign_checkpoint(key, seq, &hash),
            public_key: hex::encode(key.verifying_key().to_bytes()),
            hash,
            created_at: time::OffsetDateTime::now_utc().unix_timestamp(),
        };
        // A missed checkpoint loses no event; the next commit tries again.
        match self.store.append_checkpoint(&cp) {
            Ok(()) => {
                self.last_checkpoint = Some(seq);
                self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, seq, "cannot write audit checkpoint"),
        }
    }
}

fn chain(after_seq: i64, after_hash: &str, events: &[Prepared]) -> Vec<NewAuditRow> {
    let mut prev = after_hash.to_string();
    events
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let seq = after_seq + 1 + i as i64;
            let hash = event_hash(&prev, seq, &p.event_json);
            NewAuditRow {
                seq,
                ts_us: p.ts_us,
                agent: p.agent.clone(),
                node: p.node.clone(),
                decision: p.decision.clone(),
                event_json: p.event_json.clone(),
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            }
        })
        .collect()
}
