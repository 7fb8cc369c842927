//! Precision and recall per detector over `corpus/*.jsonl`.
//!
//! `cargo test -p warden-mask --test corpus -- --nocapture` prints the table.
//! A finding counts as a true positive only if kind and exact span match.

use std::collections::BTreeMap;

use warden_mask::{MaskConfig, Masker};

#[derive(serde::Deserialize)]
struct Sample {
    text: String,
    expect: Vec<(String, String)>,
}

#[derive(Default)]
struct Tally {
    tp: u64,
    fp: u64,
    fn_: u64,
    fp_examples: Vec<String>,
    fn_examples: Vec<String>,
}

#[test]
fn corpus_precision_recall() {
    let m = Masker::new(&MaskConfig::default()).unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut t: BTreeMap<String, Tally> = BTreeMap::new();
    let mut samples = 0;
    for f in &files {
        for (ln, line) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let s: Sample = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", f.display(), ln + 1));
            samples += 1;
            let mut expected = s.expect.clone();
            for (kind, _) in &expected {
                t.entry(kind.clone()).or_default();
            }
            for found in m.find(&s.text) {
                let kind = m.label(found.source).to_string();
                let span = s.text[found.range].to_string();
                let e = t.entry(kind.clone()).or_default();
                match expected.iter().position(|(k, v)| *k == kind && *v == span) {
                    Some(i) => {
                        expected.remove(i);
                        e.tp += 1;
                    }
                    None => {
                        e.fp += 1;
                        e.fp_examples.push(format!("{span:?} in {:?}", s.text));
                    }
                }
            }
            for (kind, v) in expected {
                let e = t.entry(kind).or_default();
                e.fn_ += 1;
                e.fn_examples.push(format!("{v:?} in {:?}", s.text));
            }
        }
    }
    println!("\n{samples} samples from {} files", files.len());
    println!(
        "{:<14} {:>6} {:>4} {:>4} {:>9} {:>7}",
        "detector", "TP", "FP", "FN", "precision", "recall"
    );
    let mut failed = Vec::new();
    for (k, v) in &t {
        let p = if v.tp + v.fp == 0 {
            1.0
        } else {
            v.tp as f64 / (v.tp + v.fp) as f64
        };
        let r = if v.tp + v.fn_ == 0 {
            1.0
        } else {
            v.tp as f64 / (v.tp + v.fn_) as f64
        };
        println!(
            "{k:<14} {:>6} {:>4} {:>4} {:>9.4} {:>7.4}",
            v.tp, v.fp, v.fn_, p, r
        );
        for ex in v.fp_examples.iter().take(5) {
            println!("    FP {ex}");
        }
        for ex in v.fn_examples.iter().take(5) {
            println!("    FN {ex}");
        }
        if p < 0.99 || r < 0.99 {
            failed.push(k.clone());
        }
    }
    assert!(
        failed.is_empty(),
        "precision or recall below 0.99 for {failed:?}"
    );
}
