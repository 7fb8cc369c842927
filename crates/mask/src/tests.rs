use super::*;

pub(crate) fn masker() -> Masker {
    Masker::new(&MaskConfig::default()).unwrap()
}

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn with(cfg: MaskConfig) -> Masker {
    Masker::with_hmac_key(&cfg, Some(KEY)).unwrap()
}

fn kinds(m: &Masker, text: &str) -> Vec<(String, String)> {
    m.find(text)
        .into_iter()
        .map(|f| (m.label(f.source).to_string(), text[f.range].to_string()))
        .collect()
}

fn one(kind: &str, v: &str) -> Vec<(String, String)> {
    vec![(kind.to_string(), v.to_string())]
}

#[test]
fn cards() {
    let m = masker();
    for c in [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "3782 822463 10005",
        "5555555555554444",
        "6011000990139424",
        "4222222222222",
    ] {
        assert_eq!(kinds(&m, &format!("card: {c}.")), one("card", c), "{c}");
    }
    assert_eq!(
        kinds(&m, r#"{"pan":"4111111111111111"}"#),
        one("card", "4111111111111111")
    );
    assert_eq!(
        kinds(&m, r#"{"pan":4111111111111111}"#),
        one("card", "4111111111111111")
    );
    // Fails Luhn, unknown issuer, glued to identifiers, decimal fraction.
    for neg in [
        "4111111111111112",
        "1700000000000123",
        "ORD-4111111111111111",
        "id_4111111111111111",
        "0.4111111111111111",
        "4111111111111111ab",
        "41111111111111111111",
    ] {
        assert!(m.find(neg).is_empty(), "{neg}");
    }
}

#[test]
fn ssn() {
    let m = masker();
    assert_eq!(kinds(&m, "ssn 123-45-6789"), one("ssn", "123-45-6789"));
    assert_eq!(kinds(&m, "SSN: 123456789"), one("ssn", "123456789"));
    for neg in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "123-00-4567",
        "123-45-0000",
        "id 123456789",
    ] {
        assert!(m.find(neg).is_empty(), "{neg}");
    }
}

#[test]
fn iban() {
    let m = masker();
    assert_eq!(
        kinds(&m, "IBAN DE89 3704 0044 0532 0130 00 ok"),
        one("iban", "DE89 3704 0044 0532 0130 00")
    );
    assert_eq!(
        kinds(&m, "to GB82WEST12345698765432."),
        one("iban", "GB82WEST12345698765432")
    );
    assert!(m.find("GB82WEST12345698765433").is_empty());
}

#[test]
fn email() {
    let m = masker();
    assert_eq!(
        kinds(&m, "mail <jane.doe+x@example.co.uk>"),
        one("email", "jane.doe+x@example.co.uk")
    );
    for neg in [
        "@handle",
        "user@localhost",
        "icon@2x.png",
        "lodash@4.17.21",
        "a@b.c",
    ] {
        assert!(m.find(neg).is_empty(), "{neg}");
    }
}

#[test]
fn phone() {
    let m = masker();
    for p in [
        "+1 415 555 2671",
        "+44 20 7946 0958",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "020 7946 0958",
        "+14155552671",
    ] {
        assert_eq!(kinds(&m, &format!("call {p} now")), one("phone", p), "{p}");
    }
    for neg in [
        "2024-01-15 10:23:45",
        "order 4155552671",
        "ORD-415-555-2671",
        "550e8400-e29b-41d4-a716-446655440000",
        "1700000000",
    ] {
        assert!(m.find(neg).is_empty(), "{neg}");
    }
}

#[test]
fn ips() {
    let m = masker();
    assert_eq!(kinds(&m, "from 10.0.0.1:5432"), one("ipv4", "10.0.0.1"));
    assert_eq!(
        kinds(&m, "from 2001:db8::ff00:42:8329."),
        one("ipv6", "2001:db8::ff00:42:8329")
    );
    assert_eq!(kinds(&m, "lo ::1 up"), one("ipv6", "::1"));
    assert_eq!(
        kinds(&m, "link fe80::1ff:fe23:4567:890a%eth0"),
        one("ipv6", "fe80::1ff:fe23:4567:890a")
    );
    for neg in [
        "256.1.1.1",
        "1.3.6.1.4.1.311",
        "v1.2.3.4",
        "10:23:45",
        "std::vec::Vec",
        "00:1a:2b:3c:4d:5e",
    ] {
        assert!(m.find(neg).is_empty(), "{neg}");
    }
}

#[test]
fn secrets() {
    let m = masker();
    let cases = [
        ("aws_key", "AKIAIOSFODNN7EXAMPLE"),
        ("github_token", "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"),
        ("stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("openai_key", "sk-proj-Ab3dEf9hIjK1mNoP2rStUvWxYz0123"),
        ("anthropic_key", "sk-ant-api03-Xy9AbCdEfGh1JkLmNoPqRsTuVw"),
        (
            "jwt",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ),
    ];
    for (k, v) in cases {
        assert_eq!(kinds(&m, &format!("key={v} end")), one(k, v), "{k}");
    }
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----";
    assert_eq!(kinds(&m, &format!("x\n{pem}\ny")), one("private_key", pem));
    let truncated = "-----BEGIN PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90";
    assert_eq!(kinds(&m, truncated), one("private_key", truncated));
    for neg in [
        "-----BEGIN CERTIFICATE-----",
        "task-force-alpha-bravo-charlie",
        "sk-learn-compatibility-layer-v2",
        "eyJub3RhIjoiand0In0.eyJ4IjoxfQ.sig", // no "alg"
        "AKIA1234",
    ] {
        assert!(m.find(neg).is_empty(), "{neg}");
    }
}

#[test]
fn methods() {
    let card = "4111 1111 1111 1111";
    let text = format!("pay {card} now");
    let mk = |m: MaskMethod| {
        let cfg = MaskConfig {
            default_method: m,
            ..MaskConfig::default()
        };
        with(cfg).mask_str(&text).0.into_owned()
    };
    assert_eq!(mk(MaskMethod::Redact), "pay [REDACTED:card] now");
    assert_eq!(mk(MaskMethod::KeepLast4), "pay **** **** **** 1111 now");
    assert_eq!(
        mk(MaskMethod::FormatPreserving),
        "pay 9999 9999 9999 9999 now"
    );
    let h = mk(MaskMethod::KeyedHash);
    assert!(
        h.starts_with("pay hmac:") && h.len() == "pay hmac: now".len() + 16,
        "{h}"
    );
    // Equal card numbers join whatever their separators; different ones don't.
    let m = with(MaskConfig {
        default_method: MaskMethod::KeyedHash,
        ..MaskConfig::default()
    });
    assert_eq!(
        m.mask_str("4111-1111-1111-1111").0,
        m.mask_str("4111111111111111").0
    );
    assert_ne!(
        m.mask_str("4111111111111111").0,
        m.mask_str("5555555555554444").0
    );
    // FP never reproduces its input.
    let mut o = String::new();
    format_preserving("xx99", &mut o);
    assert_eq!(o, "yy88");
}

#[test]
fn timestamps_are_skipped_but_what_follows_is_not() {
    let m = masker();
    for t in ["2024-03-01", "2024-03-01T12:00:00.123Z", "2024-03-01 12:00:00+02:00", "2024-03-01T12:00Z"] {
        assert!(m.find(t).is_empty(), "{t}");
        let s = format!("{t} 4111 1111 1111 1111");
        assert_eq!(kinds(&m, &s), one("card", "4111 1111 1111 1111"), "{s}");
        let s = format!("{t} from 10.0.0.1");
        assert_eq!(kinds(&m, &s), one("ipv4", "10.0.0.1"), "{s}");
    }
    // Not a date: the card chain still sees it.
    assert_eq!(kinds(&m, "4111-1111-1111-1111"), one("card", "4111-1111-1111-1111"));
}

#[test]
fn clean_text_is_borrowed() {
    let m = masker();
    let (out, counts) = m.mask_str("2024-01-15T10:23:45Z INFO GET /api/v1/orders/12345 200 12ms");
    assert!(matches!(out, Cow::Borrowed(_)));
    assert!(counts.is_empty());
}

#[test]
fn counts_per_kind() {
    let m = masker();
    let (_, c) = m.mask_str("a@example.com b@example.com 4111111111111111");
    assert_eq!(c.get("email"), 2);
    assert_eq!(c.detector(DetectorKind::Card), 1);
    assert_eq!(c.total(), 3);
    assert_eq!(
        serde_json::to_string(&c).unwrap(),
        r#"{"card":1,"email":2}"#
    );
}

#[test]
fn custom_detectors() {
    let cfg: MaskConfig = toml::from_str(
        r#"
        [[custom]]
        name = "employee_id"
        regex = "EMP-[0-9]{6}"
        [[custom]]
        name = "luhn_ref"
        regex = "REF[0-9]{8}"
        validator = "luhn"
        method = "format_preserving"
        "#,
    )
    .unwrap();
    let m = Masker::new(&cfg).unwrap();
    let (out, c) = m.mask_str("EMP-123456 REF00000018 REF00000019");
    assert_eq!(
        out,
        "[REDACTED:employee_id] XXX99999999 REF00000019".replace("XXX", "xxx")
    );
    assert_eq!(c.get("employee_id"), 1);
    assert_eq!(c.get("luhn_ref"), 1);
}

#[test]
fn config_errors_name_the_key_and_leak_nothing() {
    let bad_toml = toml::from_str::<MaskConfig>("detector = [\"card\"]");
    assert!(bad_toml.is_err(), "deny_unknown_fields");
    let cfg = MaskConfig {
        default_method: MaskMethod::KeyedHash,
        ..MaskConfig::default()
    };
    assert_eq!(
        Masker::with_hmac_key(&cfg, None).unwrap_err(),
        MaskError::MissingKey
    );
    let secret = b"short-secret";
    let e = Masker::with_hmac_key(&cfg, Some(secret)).unwrap_err();
    assert!(!e.to_string().contains("short-secret"));
    assert!(e.to_string().contains("mask.hmac_key"));
    let cfg = MaskConfig {
        custom: vec![CustomDetector {
            name: "x".into(),
            regex: "4111111111111111(".into(),
            validator: None,
            method: None,
        }],
        ..MaskConfig::default()
    };
    let e = Masker::new(&cfg).unwrap_err().to_string();
    assert!(
        e.starts_with("mask.custom[0].regex") && !e.contains("4111"),
        "{e}"
    );
    let cfg = MaskConfig {
        hmac_key: Some(KeyRef {
            env: Some("WARDEN_MASK_TEST_UNSET_VAR".into()),
            file: None,
        }),
        ..MaskConfig::default()
    };
    assert!(Masker::new(&cfg)
        .unwrap_err()
        .to_string()
        .contains("WARDEN_MASK_TEST_UNSET_VAR"));
    let dir = std::env::temp_dir().join(format!("warden-mask-key-{}", std::process::id()));
    std::fs::write(&dir, "topsecretkeymaterial-0123456789\n").unwrap();
    let cfg = MaskConfig {
        default_method: MaskMethod::KeyedHash,
        hmac_key: Some(KeyRef {
            env: None,
            file: Some(dir.clone()),
        }),
        ..MaskConfig::default()
    };
    let m = Masker::new(&cfg).unwrap();
    assert!(!format!("{m:?}").contains("topsecret"));
    std::fs::remove_file(&dir).ok();
    for e in [
        MaskError::BadColumnPattern { index: 0 },
        MaskError::KeyFileUnreadable {
            path: "/k".into(),
            reason: "not found".into(),
        },
        MaskError::DuplicateCustomName { index: 1 },
        MaskError::AmbiguousKeyRef,
    ] {
        assert!(e.to_string().starts_with("mask."), "{e}");
    }
}

#[test]
fn globs() {
    assert!(glob("*.ssn", "t.ssn"));
    assert!(glob("password*", "password_hash"));
    assert!(glob("*password*", "user_password"));
    assert!(!glob("password*", "old_password"));
    assert!(glob("c?rd", "card"));
}

// ---- PostgreSQL values ------------------------------------------------

fn rules_masker() -> Masker {
    let cfg: MaskConfig = toml::from_str(
        r#"
        [[columns]]
        pattern = "customers.card_number"
        method = "keep_last4"
        [[columns]]
        pattern = "*.ssn"
        [[columns]]
        pattern = "*.password*"
        method = "keyed_hash"
        "#,
    )
    .unwrap();
    Masker::with_hmac_key(&cfg, Some(KEY)).unwrap()
}

#[test]
fn int8_card_binary_and_text() {
    let m = masker();
    let card: i64 = 4111111111111111;
    let plan = m.column_plan(Some("orders"), "ref", oid::INT8, Format::Binary);
    assert_eq!(plan.output_type_oid(), oid::INT8);
    let raw = card.to_be_bytes();
    let out = m.mask_pg_value(&plan, &raw);
    assert_eq!(out.bytes.len(), 8);
    let v = i64::from_be_bytes(out.bytes[..].try_into().unwrap());
    assert_eq!(v, 9999999999999999);
    assert_eq!(out.counts.get("card"), 1);
    let plan = m.column_plan(Some("orders"), "ref", oid::INT8, Format::Text);
    let out = m.mask_pg_value(&plan, b"4111111111111111");
    assert_eq!(&out.bytes[..], b"9999999999999999");
    // Ordinary ids pass borrowed.
    let out = m.mask_pg_value(&plan, b"1700000000000123");
    assert!(!out.is_changed());
    // 19-digit card in int8: all 9s overflow, the value must still fit.
    let c19 = "6011000000000000001"; // Discover 19 digits
    assert!(crate::checks::luhn_ok(c19.as_bytes()));
    let out = m.mask_pg_value(&plan, c19.as_bytes());
    let s = std::str::from_utf8(&out.bytes).unwrap();
    assert_eq!(s.len(), 19);
    assert!(s.parse::<i64>().is_ok(), "{s}");
}

#[test]
fn numeric_and_float_cards() {
    let m = masker();
    let plan = m.column_plan(None, "n", oid::NUMERIC, Format::Binary);
    let enc = pg::text_to_numeric("4111111111111111").unwrap();
    assert_eq!(pg::numeric_to_text(&enc).unwrap(), "4111111111111111");
    let out = m.mask_pg_value(&plan, &enc);
    assert_eq!(pg::numeric_to_text(&out.bytes).unwrap(), "9999999999999999");
    for s in [
        "0",
        "-12.5000",
        "0.0001",
        "123456789.987654321",
        "10000",
        "NaN",
    ] {
        assert_eq!(
            pg::numeric_to_text(&pg::text_to_numeric(s).unwrap()).unwrap(),
            s
        );
    }
    let plan = m.column_plan(None, "n", oid::NUMERIC, Format::Text);
    assert_eq!(
        &m.mask_pg_value(&plan, b"4111111111111111.00").bytes[..],
        b"9999999999999999.99"
    );
    let plan = m.column_plan(None, "f", oid::FLOAT8, Format::Binary);
    let raw = 4111111111111111f64.to_be_bytes();
    let out = m.mask_pg_value(&plan, &raw);
    assert_eq!(
        f64::from_be_bytes(out.bytes[..].try_into().unwrap()),
        9999999999999999f64
    );
}

#[test]
fn text_columns_and_json() {
    let m = masker();
    let plan = m.column_plan(Some("t"), "notes", oid::TEXT, Format::Binary);
    let out = m.mask_pg_value(&plan, b"card 4111-1111-1111-1111 ok");
    assert_eq!(&out.bytes[..], b"card [REDACTED:card] ok");
    let plan = m.column_plan(Some("t"), "doc", oid::JSONB, Format::Binary);
    let out = m.mask_pg_value(
        &plan,
        b"\x01{\"pan\": 4111111111111111, \"e\": \"a@example.com\"}",
    );
    assert_eq!(
        &out.bytes[..],
        b"\x01{\"pan\": 9999999999999999, \"e\": \"x@xxxxxxx.xxx\"}".as_slice()
    );
    let plan = m.column_plan(Some("t"), "doc", oid::JSON, Format::Text);
    let out = m.mask_pg_value(&plan, br#"{"e": "a@example.com"}"#);
    assert_eq!(&out.bytes[..], br#"{"e": "[REDACTED:email]"}"#);
}

#[test]
fn invalid_utf8_and_unknown_binary_fail_closed() {
    let m = masker();
    let plan = m.column_plan(Some("t"), "notes", oid::TEXT, Format::Text);
    let out = m.mask_pg_value(&plan, b"card 4111111111111111 \xff\xfe");
    assert_eq!(&out.bytes[..], b"[REDACTED:unchecked]");
    assert_eq!(out.counts.get("unchecked"), 1);
    let plan = m.column_plan(Some("t"), "tags", 1009, Format::Binary); // text[]
    assert_eq!(plan.output_type_oid(), oid::TEXT);
    let out = m.mask_pg_value(&plan, b"\x00\x00\x00\x01anything");
    assert_eq!(&out.bytes[..], b"[REDACTED:unchecked]");
    // Text format of an unknown type is checked, keeping its syntax.
    let plan = m.column_plan(Some("t"), "tags", 1009, Format::Text);
    assert_eq!(plan.output_type_oid(), 1009);
    let out = m.mask_pg_value(&plan, b"{4111111111111111,plain}");
    assert_eq!(&out.bytes[..], b"{9999999999999999,plain}");
    // Types that cannot carry a match pass through.
    let plan = m.column_plan(Some("t"), "at", oid::TIMESTAMPTZ, Format::Binary);
    assert!(plan.is_passthrough());
}

#[test]
fn column_rules() {
    let m = rules_masker();
    let plan = m.column_plan(
        Some("public.customers"),
        "card_number",
        oid::TEXT,
        Format::Text,
    );
    assert!(plan.is_rule());
    let out = m.mask_pg_value(&plan, b"4111 1111 1111 1234");
    assert_eq!(&out.bytes[..], b"**** **** **** 1234");
    assert_eq!(out.counts.get("column_rule"), 1);
    // Same rule, integer column: digits, same length, valid int8.
    let plan = m.column_plan(Some("customers"), "card_number", oid::INT8, Format::Binary);
    let raw = 4111111111111234i64.to_be_bytes();
    let out = m.mask_pg_value(&plan, &raw);
    assert_eq!(
        i64::from_be_bytes(out.bytes[..].try_into().unwrap()),
        9999999999991234
    );
    // Unknown table: the column part still applies.
    assert!(m
        .column_plan(None, "card_number", oid::TEXT, Format::Text)
        .is_rule());
    assert!(!m
        .column_plan(Some("orders"), "card_number", oid::TEXT, Format::Text)
        .is_rule());
    let plan = m.column_plan(Some("people"), "SSN", oid::TEXT, Format::Text);
    assert_eq!(
        &m.mask_pg_value(&plan, b"anything at all").bytes[..],
        b"[REDACTED]"
    );
    // A rule on a uuid column: the masked value is text.
    let plan = m.column_plan(Some("people"), "ssn", oid::UUID, Format::Binary);
    assert_eq!(plan.output_type_oid(), oid::TEXT);
    // keyed hash on passwords: equal in, equal out.
    let plan = m.column_plan(Some("users"), "password_hash", oid::TEXT, Format::Text);
    let a = m.mask_pg_value(&plan, b"$2b$12$abc").bytes.into_owned();
    let b = m.mask_pg_value(&plan, b"$2b$12$abc").bytes.into_owned();
    let c = m.mask_pg_value(&plan, b"$2b$12$abd").bytes.into_owned();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.starts_with(b"hmac:"));
    // int2 rule: 5 digits of 9s would overflow.
    let plan = m.column_plan(Some("people"), "ssn", oid::INT2, Format::Text);
    let out = m.mask_pg_value(&plan, b"31000");
    let v: i16 = std::str::from_utf8(&out.bytes).unwrap().parse().unwrap();
    assert_eq!(v.to_string().len(), 5);
}

#[test]
fn high_entropy_only_in_secret_columns() {
    let m = masker();
    let token = "Zx9Qw3Lk7Pv2Rt8MbN4c";
    let plan = m.column_plan(Some("svc"), "api_token", oid::TEXT, Format::Text);
    let out = m.mask_pg_value(&plan, token.as_bytes());
    assert_eq!(&out.bytes[..], b"[REDACTED:high_entropy]");
    let plan = m.column_plan(Some("svc"), "description", oid::TEXT, Format::Text);
    assert!(!m.mask_pg_value(&plan, token.as_bytes()).is_changed());
    assert!(m.find(token).is_empty());
}
