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

const MIB: usize = 1 << 20;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() as usize) % xs.len()]
    }
}

const WORDS: &[&str] = &[
    "request",
    "completed",
    "handler",
    "session",
    "upstream",
    "returned",
    "cache",
    "miss",
    "for",
    "the",
    "user",
    "agent",
    "node",
    "policy",
    "allowed",
    "query",
    "against",
    "table",
    "customers",
    "orders",
    "retrying",
    "connection",
    "pool",
    "healthy",
    "shard",
    "replica",
    "lag",
    "within",
    "budget",
    "graph",
];

fn clean_logs() -> String {
    let mut r = Lcg(7);
    let mut s = String::with_capacity(MIB + 256);
    while s.len() < MIB {
        let level = r.pick(&["INFO", "DEBUG", "WARN"]);
        s.push_str(&format!(
            "2024-03-{:02}T{:02}:{:02}:{:02}.{:03}Z {level} {} {} {} {} path=/api/v1/{}/{} status={} dur={}ms rows={}\n",
            r.next() % 28 + 1,
            r.next() % 24,
            r.next() % 60,
            r.next() % 60,
            r.next() % 1000,
            r.pick(WORDS),
            r.pick(WORDS),
            r.pick(WORDS),
            r.pick(WORDS),
            r.pick(WORDS),
            r.next() % 100000,
            r.pick(&["200", "201", "404", "500"]),
            r.next() % 5000,
            r.next() % 1000,
        ));
    }
    s
}

fn clean_prose() -> String {
    let mut r = Lcg(11);
    let mut s = String::with_capacity(MIB + 64);
    while s.len() < MIB {
        s.push_str(r.pick(WORDS));
        s.push_str(if r.next().is_multiple_of(12) {
            ".\n"
        } else {
            " "
        });
    }
    s
}

fn dense() -> String {
    let mut r = Lcg(3);
    let mut s = String::with_capacity(MIB + 256);
    let hits = [
        "4111 1111 1111 1111",
        "jane.doe@example.com",
        "(415) 555-2671",
        "10.1.2.3",
        "123-45-6789",
        "AKIAIOSFODNN7EXAMPLE",
        "DE89 3704 0044 0532 0130 00",
        "2001:db8::1",
    ];
    while s.len() < MIB {
        s.push_str(r.pick(WORDS));
        s.push(' ');
        s.push_str(r.pick(WORDS));
        s.push(' ');
        s.push_str(r.pick(&hits));
        s.push_str(" and then some more words here for padding the line out, ");
        s.push_str(r.pick(WORDS));
        s.push('\n');
    }
    s
}

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
