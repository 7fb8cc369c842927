//! `cargo bench -p warden-audit --bench append`
//!
//! The database lives under the target dir, not /tmp, which may be tmpfs (where fsync is
//! free and the figures would flatter the group commit). Set WARDEN_BENCH_DIR to measure
//! another disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use warden_audit::{params_digest, AuditError, AuditEvent, AuditWriter};
use warden_store::{SqliteStore, Store};

fn event() -> AuditEvent {
    let mut e = AuditEvent::new("statement", "allow");
    e.session_id = Some("5d0c2a4e-8b1b-4a57-9a43-0a7d3c1f9e21".into());
    e.agent = Some("billing-bot".into());
    e.owner = Some("alice@example.com".into());
    e.node = Some("fetch_invoices".into());
    e.run = Some("run-1f2e".into());
    e.thread = Some("thread-77".into());
    e.target = Some("pg-main".into());
    e.statement = Some(
        "SELECT id, amount, status FROM invoices WHERE customer_id = $1 AND status = $2".into(),
    );
    e.params_digest = Some(params_digest(&[Some(b"42"), Some(b"open")]));
    e.actions = vec!["select".into()];
    e.tables = vec!["public.invoices".into()];
    e.policy_ids = vec!["billing-read".into()];
    e.rows = Some(12);
    e.duration_us = Some(310);
    e
}

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("WARDEN_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = bench_dir();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("bench.db")).unwrap());
    let h = AuditWriter::start(store, None);
    let ev = event();

    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("record_nowait_sustained", |b| {
        // Sustained: the clock stops only after everything enqueued is durable, so this is
        // the writer's commit throughput, not just the channel's.
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                loop {
                    match h.record_nowait(ev.clone()) {
                        Ok(()) => break,
                        Err(AuditError::QueueFull { .. }) => rt.block_on(h.flush()),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            rt.block_on(h.flush());
            start.elapsed()
        })
    });

    g.throughput(Throughput::Elements(16));
    // One iteration = one durable `record` in each of 16 concurrent tasks; the time per
    // iteration is the mean latency a caller sees with 15 others writing at once.
    g.bench_function("record_latency_16_writers", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..16)
                    .map(|_| {
                        let h = h.clone();
                        let ev = ev.clone();
                        tokio::spawn(async move {
                            for _ in 0..iters {
                                h.record(ev.clone()).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    let s = h.stats();
    eprintln!(
        "writer stats: {} events in {} commits (mean batch {:.1}, largest {})",
        s.events,
        s.commits,
        s.events as f64 / s.commits.max(1) as f64,
        s.largest_batch
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5)).sample_size(20);
    targets = append
}
criterion_main!(benches);
