//! Property tests: row shape, no card survives masking, format-preserving
//! length, keyed-hash determinism, no panics on arbitrary input.

use proptest::prelude::*;
use warden_mask::{oid, ColumnRule, DetectorKind, Format, MaskConfig, MaskMethod, Masker, Source};

const KEY: &[u8] = b"property-test-key-0123456789abcdef";

fn masker(method: MaskMethod) -> Masker {
    let cfg = MaskConfig {
        default_method: method,
        columns: vec![ColumnRule {
            pattern: "*.secret_col".into(),
            method,
        }],
        ..MaskConfig::default()
    };
    Masker::with_hmac_key(&cfg, Some(KEY)).unwrap()
}

fn methods() -> impl Strategy<Value = MaskMethod> {
    prop_oneof![
        Just(MaskMethod::Redact),
        Just(MaskMethod::KeepLast4),
        Just(MaskMethod::FormatPreserving),
        Just(MaskMethod::KeyedHash),
    ]
}

fn luhn_ok(d: &[u8]) -> bool {
    let mut sum = 0;
    for (i, &c) in d.iter().rev().enumerate() {
        let mut x = (c - b'0') as u32;
        if i % 2 == 1 {
            x *= 2;
            if x > 9 {
                x -= 9;
            }
        }
        sum += x;
    }
    sum % 10 == 0
}

/// A Luhn-valid card with a real issuer prefix.
fn cards() -> impl Strategy<Value = String> {
    let prefixes = prop_oneof![
        Just(("4", 16)),
        Just(("4", 13)),
        Just(("4", 19)),
        Just(("51", 16)),
        Just(("2221", 16)),
        Just(("37", 15)),
        Just(("6011", 16)),
        Just(("62", 18)),
        Just(("3530", 16)),
        Just(("36", 14)),
    ];
    (prefixes, proptest::collection::vec(0u8..10, 19)).prop_map(|((p, n), ds)| {
        let mut d: Vec<u8> = p
            .bytes()
            .chain(ds.iter().map(|x| b'0' + x))
            .take(n - 1)
            .collect();
        for check in b'0'..=b'9' {
            d.push(check);
            if luhn_ok(&d) {
                break;
            }
            d.pop();
        }
        String::from_utf8(d).unwrap()
    })
}

fn grouped(card: &str, sep: usize) -> String {
    match sep {
        0 => card.to_string(),
        _ => {
            let s = if sep == 1 { " " } else { "-" };
            card.as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join(s)
        }
    }
}

/// Digit-free filler so the only digits in a text are the card's.
fn filler() -> impl Strategy<Value = String> {
    "[a-zA-Z ,.;:\"{}\\[\\]()=/_\n-]{0,20}"
}

fn digit_chains(s: &str) -> Vec<String> {
    // Every maximal run of digits joined by single separators, separators
    // dropped: what a reader could reassemble into a card number.
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            cur.push(c as char);
        } else if matches!(c, b' ' | b'-')
            && b.get(i + 1).is_some_and(u8::is_ascii_digit)
            && !cur.is_empty()
        {
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn no_card_survives_text_masking(card in cards(), sep in 0usize..3, pre in filler(), post in filler(), m in methods()) {
        let masker = masker(m);
        let text = format!("{pre} {} {post}", grouped(&card, sep));
        prop_assert!(masker.find(&text).iter().any(|f| f.source == Source::Detector(DetectorKind::Card)), "not detected: {text:?}");
        let (out, counts) = masker.mask_str(&text);
        prop_assert!(counts.get("card") >= 1);
        for chain in digit_chains(&out) {
            for i in 0..chain.len() {
                for j in i + 13..=chain.len().min(i + 19) {
                    prop_assert!(!(luhn_ok(&chain.as_bytes()[i..j]) && &chain[i..j] == card.as_str()), "{card} survived in {out:?}");
                }
            }
        }
        prop_assert!(!masker.find(&out).iter().any(|f| f.source == Source::Detector(DetectorKind::Card)), "card in output {out:?}");
    }

    #[test]
    fn no_luhn_card_in_masked_int_columns(card in cards(), m in methods(), binary in any::<bool>(), rule in any::<bool>()) {
        prop_assume!(card.len() <= 18 || card.as_str() < "9223372036854775807");
        let masker = masker(m);
        let col = if rule { "secret_col" } else { "ref" };
        let format = if binary { Format::Binary } else { Format::Text };
        let plan = masker.column_plan(Some("t"), col, oid::INT8, format);
        prop_assert_eq!(plan.output_type_oid(), oid::INT8);
        let n: i64 = card.parse().unwrap();
        let raw = if binary { n.to_be_bytes().to_vec() } else { card.clone().into_bytes() };
        let out = masker.mask_pg_value(&plan, &raw);
        let v = if binary {
            prop_assert_eq!(out.bytes.len(), 8);
            i64::from_be_bytes(out.bytes[..].try_into().unwrap())
        } else {
            std::str::from_utf8(&out.bytes).unwrap().parse::<i64>().unwrap()
        };
        let s = v.to_string();
        prop_assert_eq!(s.len(), card.len(), "same number of digits");
        prop_assert!(!luhn_ok(s.as_bytes()), "Luhn-valid output {s} from {card}");
    }

    #[test]
    fn format_preserving_keeps_length(text in "\\PC{0,80}", card in cards()) {
        let masker = masker(MaskMethod::FormatPreserving);
        let input = format!("{text} {card} a@example.com");
        let (out, _) = masker.mask_str(&input);
        prop_assert_eq!(out.chars().count(), input.chars().count());
        prop_assert_ne!(out.as_ref(), input.as_str());
        let plan = masker.column_plan(None, "secret_col", oid::TEXT, Format::Text);
        let v = masker.mask_pg_value(&plan, text.as_bytes());
        let s = std::str::from_utf8(&v.bytes).unwrap();
        prop_assert_eq!(s.chars().count(), text.chars().count());
        if text.chars().any(char::is_alphanumeric) {
            prop_assert_ne!(s, text.as_str());
        }
    }

    #[test]
    fn keyed_hash_is_deterministic_and_distinguishes(a in "\\PC{1,40}", b in "\\PC{1,40}") {
        let masker = masker(MaskMethod::KeyedHash);
        let plan = masker.column_plan(Some("t"), "secret_col", oid::TEXT, Format::Text);
        let ha = masker.mask_pg_value(&plan, a.as_bytes()).bytes.into_owned();
        let ha2 = masker.mask_pg_value(&plan, a.as_bytes()).bytes.into_owned();
        let hb = masker.mask_pg_value(&plan, b.as_bytes()).bytes.into_owned();
        prop_assert_eq!(&ha, &ha2);
        prop_assert!(ha.starts_with(b"hmac:"));
        if a != b {
            prop_assert_ne!(ha, hb);
        }
    }

    #[test]
    fn data_row_shape_is_preserved(
        cols in proptest::collection::vec((prop_oneof![Just(oid::TEXT), Just(oid::INT8), Just(oid::INT4), Just(oid::NUMERIC), Just(oid::JSONB), Just(oid::UUID), Just(1009u32)], any::<bool>(), any::<bool>(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24))), 0..12),
        m in methods(),
    ) {
        let masker = masker(m);
        let plans: Vec<_> = cols.iter().map(|(t, bin, rule, _)| {
            masker.column_plan(Some("t"), if *rule { "secret_col" } else { "c" }, *t, if *bin { Format::Binary } else { Format::Text })
        }).collect();
        let mut body = (cols.len() as i16).to_be_bytes().to_vec();
        for (_, _, _, v) in &cols {
            match v {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    body.extend_from_slice(v);
                }
            }
        }
        let (out, _) = masker.mask_data_row(&plans, &body).unwrap();
        prop_assert_eq!(i16::from_be_bytes([out[0], out[1]]) as usize, cols.len());
        let mut pos = 2;
        for (_, _, _, v) in &cols {
            let len = i32::from_be_bytes(out[pos..pos + 4].try_into().unwrap());
            pos += 4;
            prop_assert_eq!(len == -1, v.is_none(), "NULLs stay NULL, values stay values");
            if len > 0 {
                pos += len as usize;
            }
        }
        prop_assert_eq!(pos, out.len());
    }

    #[test]
    fn arbitrary_values_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), t in 0u32..4000, bin in any::<bool>(), rule in any::<bool>(), m in methods()) {
        let masker = masker(m);
        let plan = masker.column_plan(Some("t"), if rule { "secret_col" } else { "c" }, t, if bin { Format::Binary } else { Format::Text });
        let _ = masker.mask_pg_value(&plan, &bytes);
        let s = String::from_utf8_lossy(&bytes);
        let _ = masker.mask_str(&s);
    }

    #[test]
    fn cards_found_in_input_never_reach_output(s in "[0-9 \\-a-z@.:+]{0,120}", m in methods()) {
        let masker = masker(m);
        let found: Vec<String> = masker.find(&s).into_iter()
            .filter(|f| f.source == Source::Detector(DetectorKind::Card))
            .map(|f| s[f.range].bytes().filter(u8::is_ascii_digit).map(char::from).collect())
            .collect();
        let (out, _) = masker.mask_str(&s);
        let out_digits: Vec<String> = digit_chains(&out);
        for card in found {
            prop_assert!(!out_digits.iter().any(|c| c.contains(&card)), "{card} in {out:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, .. ProptestConfig::default() })]

    /// The libFuzzer property on proptest's inputs (stable toolchain, CI).
    #[test]
    fn fuzz_property(data in proptest::collection::vec(prop_oneof![Just(b'4'), Just(b'1'), Just(b' '), Just(b'-'), any::<u8>(), 0x30u8..0x3a], 0..96)) {
        warden_mask::fuzzing::check(&data);
    }
}
