//! Detector throughput.
//!
//! cargo bench -p warden-mask --bench detect
//!
//! * `clean_logs`: 1 MiB of log lines with timestamps, paths, ids and
//!   durations but no sensitive value (the common case).
//! * `clean_prose`: 1 MiB of prose with no digits at all (scanner ceiling).
//! * `dense`: 1 MiB where roughly every 100th byte starts a card, email,
//!   phone, IP, SSN or token.
//! * `int8_binary`: DataRow values of a bigint column, 8 bytes each.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use warden_mask::{oid, Format, MaskConfig, Masker};

#[path = "common/inputs.rs"]
mod inputs;
use inputs::*;

fn bench(c: &mut Criterion) {
    let m = Masker::new(&MaskConfig::default()).unwrap();
    let mut g = c.benchmark_group("mask_str");
    for (name, text) in [
        ("clean_logs", clean_logs()),
        ("clean_prose", clean_prose()),
        ("dense", dense()),
    ] {
        let (_, counts) = m.mask_str(&text);
        if name.starts_with("clean") {
            assert!(counts.is_empty(), "{name} must have no matches: {counts:?}");
        }
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(m.mask_str(black_box(&text)))));
    }
    g.finish();

    let mut g = c.benchmark_group("pg");
    let plan = m.column_plan(Some("t"), "amount", oid::INT8, Format::Binary);
    let values: Vec<[u8; 8]> = (0..4096i64)
        .map(|i| (i * 7919 + 1_000_000).to_be_bytes())
        .collect();
    g.throughput(Throughput::Bytes(8 * values.len() as u64));
    g.bench_function("int8_binary", |b| {
        b.iter(|| {
            for v in &values {
                black_box(m.mask_pg_value(&plan, black_box(v)));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
