//! Throughput per CPU-second, for shared machines where criterion's wall
//! clock also counts time spent descheduled. Same inputs as benches/detect.rs.
//!
//! cargo run --release -p warden-mask --example throughput

use std::hint::black_box;

use warden_mask::{MaskConfig, Masker};

#[path = "../benches/common/inputs.rs"]
mod inputs;
use inputs::*;

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
