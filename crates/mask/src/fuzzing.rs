//! The fuzz property, here so that `cargo test` exercises the same code the
//! libFuzzer target (`fuzz/fuzz_targets/mask.rs`) runs.

use std::sync::OnceLock;

use crate::{oid, ColumnRule, DetectorKind, Format, MaskConfig, MaskMethod, Masker, Source};

const TYPES: [u32; 12] = [
    oid::TEXT,
    oid::VARCHAR,
    oid::BPCHAR,
    oid::JSON,
    oid::JSONB,
    oid::INT2,
    oid::INT4,
    oid::INT8,
    oid::NUMERIC,
    oid::FLOAT8,
    oid::INET,
    1009,
];

fn maskers() -> &'static [Masker] {
    static M: OnceLock<Vec<Masker>> = OnceLock::new();
    M.get_or_init(|| {
        [
            MaskMethod::Redact,
            MaskMethod::KeepLast4,
            MaskMethod::FormatPreserving,
            MaskMethod::KeyedHash,
        ]
        .into_iter()
        .map(|m| {
            let cfg = MaskConfig {
                default_method: m,
                columns: vec![ColumnRule {
                    pattern: "*.rule_col".into(),
                    method: m,
                }],
                ..MaskConfig::default()
            };
            Masker::with_hmac_key(&cfg, Some(b"fuzzing-key-0123456789abcdef"))
                .expect("static config")
        })
        .collect()
    })
}

fn card_digits(m: &Masker, s: &str) -> Vec<String> {
    m.find(s)
        .into_iter()
        .filter(|f| f.source == Source::Detector(DetectorKind::Card))
        .map(|f| {
            s[f.range]
                .bytes()
                .filter(u8::is_ascii_digit)
                .map(char::from)
                .collect()
        })
        .collect()
}

/// Panics if masking `data` panics or lets a card the detector reported in
/// the input be reported again in the output.
pub fn check(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let m = &maskers()[(head & 3) as usize];
    let text = String::from_utf8_lossy(rest);
    let before = card_digits(m, &text);
    let (out, counts) = m.mask_str(&text);
    assert!(before.is_empty() || counts.get("card") > 0);
    for c in card_digits(m, &out) {
        assert!(!before.contains(&c), "card survived masking");
    }

    let ty = TYPES[((head >> 2) as usize) % TYPES.len()];
    let format = if head & 0x40 != 0 {
        Format::Binary
    } else {
        Format::Text
    };
    let col = if head & 0x80 != 0 { "rule_col" } else { "c" };
    let plan = m.column_plan(Some("t"), col, ty, format);
    let v = m.mask_pg_value(&plan, rest);
    if let (Ok(inp), Ok(outp)) = (std::str::from_utf8(rest), std::str::from_utf8(&v.bytes)) {
        let before = card_digits(m, inp);
        for c in card_digits(m, outp) {
            assert!(!before.contains(&c), "card survived value masking");
        }
    }
    // The same bytes as a DataRow body: malformed rows are errors, never panics.
    let plans = vec![plan; (rest.first().copied().unwrap_or(0) % 4) as usize];
    if let Ok((row, _)) = m.mask_data_row(&plans, rest) {
        assert_eq!(row.get(..2), rest.get(..2), "column count changed");
    }
}
