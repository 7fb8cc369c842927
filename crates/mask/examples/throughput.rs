//! Throughput per CPU-second, for shared machines where criterion's wall
//! clock also counts time spent descheduled. Same inputs as benches/detect.rs.
//!
//! cargo run --release -p warden-mask --example throughput

use std::hint::black_box;

use warden_mask::{MaskConfig, Masker};

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

/// Nanoseconds this thread has spent on a CPU (Linux).
fn on_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn main() {
    let m = Masker::new(&MaskConfig::default()).unwrap();
    for (name, text) in [
        ("clean_logs", clean_logs()),
        ("clean_prose", clean_prose()),
        ("dense", dense()),
    ] {
        for _ in 0..20 {
            black_box(m.mask_str(black_box(&text)));
        }
        let n = 300;
        let c0 = on_cpu_ns();
        let w0 = std::time::Instant::now();
        for _ in 0..n {
            black_box(m.mask_str(black_box(&text)));
        }
        let wall = w0.elapsed().as_secs_f64();
        let mb = (text.len() * n) as f64 / 1e6;
        match (c0, on_cpu_ns()) {
            (Some(a), Some(b)) => println!(
                "{name:12} {:6.0} MB/s per CPU-second  {:6.0} MB/s wall",
                mb / ((b - a) as f64 / 1e9),
                mb / wall
            ),
            _ => println!("{name:12} {:6.0} MB/s wall", mb / wall),
        }
    }
}
