//! Masking of PostgreSQL results end to end (issue 9), against the real PostgreSQL on
//! 127.0.0.1:5432: detectors and column rules in simple, extended (text and binary) and
//! undescribed-portal results and psql; rule-protected columns refused when their derivation
//! cannot be followed; a property test over generated expressions; clear access through the
//! `unmask` policy action and JIT grants; COPY TO; audit counts; streaming of a large result.

mod common;

use common::raw::{authed as raw_authed, frame, parse as parse_msgs};
use common::*;
use futures_util::{pin_mut, TryStreamExt};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::SimpleQueryMessage;

/// The quickstart's `[masking]` section.
const MASKING: &str = r#"
[masking]
columns = [
  { pattern = "*.card_number", method = "keep_last4" },
  { pattern = "*.ssn", method = "redact" },
]
"#;

const CARD: &str = "4111111111111111";
const CARD_SPACES: &str = "4111 1111 1111 1111";
const CARD_DASHES: &str = "4111-1111-1111-1111";
const MC: &str = "5105105105105100";
const MC_DASHES: &str = "5105-1051-0510-5100";
const SSN: &str = "123-45-6789";
const EMAIL: &str = "bob.smith@example.com";
const AWS: &str = "AKIAIOSFODNN7EXAMPLE";
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

fn masking_gateway() -> Gateway {
    Gateway::builder().toml(MASKING).start()
}

/// A scratch table created (and filled) by `setup`, `{t}` standing for its name; dropped on
/// Drop. Views and other tables the setup creates are dropped with CASCADE.
struct Scratch {
    name: String,
}

impl Scratch {
    async fn new(prefix: &str, setup: &str) -> Scratch {
        let name = unique(prefix);
        direct()
            .await
            .batch_execute(&setup.replace("{t}", &name))
            .await
            .unwrap_or_else(|e| panic!("setup of {name}: {}", error_text(&e)));
        Scratch { name }
    }
    fn sql(&self, template: &str) -> String {
        template.replace("{t}", &self.name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c"])
            .arg(format!(
                "DROP TABLE IF EXISTS public.{n} CASCADE; DROP TABLE IF EXISTS public.{n}_o CASCADE; DROP VIEW IF EXISTS public.{n}_v CASCADE; DROP VIEW IF EXISTS public.{n}_b CASCADE; DROP TABLE IF EXISTS public.{n}_b CASCADE",
                n = self.name
            ))
            .output();
    }
}

type Rows = Vec<Vec<Option<String>>>;

/// Columns and rows of the last result of a simple query.
fn simple_result(msgs: &[SimpleQueryMessage]) -> (Vec<String>, Rows) {
    let mut cols = Vec::new();
    let mut rows = Vec::new();
    for m in msgs {
        match m {
            SimpleQueryMessage::RowDescription(d) => {
                cols = d.iter().map(|c| c.name().to_string()).collect();
                rows.clear();
            }
            SimpleQueryMessage::Row(r) => {
                rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => {}
        }
    }
    (cols, rows)
}

async fn simple(c: &tokio_postgres::Client, sql: &str) -> (Vec<String>, Rows) {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e)));
    simple_result(&msgs)
}

/// An extended-protocol query (binary results); text columns read as strings, other columns
/// as their Debug form.
async fn extended(c: &tokio_postgres::Client, sql: &str) -> (Vec<String>, Rows) {
    use tokio_postgres::types::Type;
    let rows = c
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e)));
    let stmt = c.prepare(sql).await.unwrap();
    let cols = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let out = rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match *r.columns()[i].type_() {
                    Type::INT4 => r.get::<_, Option<i32>>(i).map(|v| v.to_string()),
                    Type::INT8 => r.get::<_, Option<i64>>(i).map(|v| v.to_string()),
                    _ => r.get::<_, Option<AnyText>>(i).map(|v| v.0),
                })
                .collect()
        })
        .collect();
    (cols, out)
}

/// Any value read as (lossy) UTF-8 bytes: text, varchar, json, ... in binary format.
struct AnyText(String);

impl<'a> tokio_postgres::types::FromSql<'a> for AnyText {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(AnyText(String::from_utf8_lossy(raw).into_owned()))
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Whether `text` carries `card` (any separators, forwards or backwards).
fn carries_card(text: &str, card: &str) -> bool {
    let d = digits(text);
    let rev: String = card.chars().rev().collect();
    d.contains(card) || d.contains(&rev)
}

fn all_text(rows: &Rows) -> String {
    rows.iter()
        .flatten()
        .map(|v| v.clone().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn expect_refused(r: Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>, sql: &str) -> String {
    match r {
        Ok(m) => panic!("{sql}: expected 42501, got rows {:?}", simple_result(&m)),
        Err(e) => {
            assert_eq!(
                sqlstate(&e).as_deref(),
                Some("42501"),
                "{sql}: {}",
                error_text(&e)
            );
            error_text(&e)
        }
    }
}

// ------------------------------------------------------------------ detectors

#[tokio::test]
async fn detectors_mask_cards_ssn_email_and_secrets_in_simple_extended_and_psql() {
    let values = [
        (1, CARD_SPACES.to_string()),
        (2, CARD_DASHES.to_string()),
        (3, format!("order 77 paid with {CARD} yesterday, thanks")),
        (4, format!(r#"{{"pan":"{CARD}","n":1}}"#)),
        (5, format!("ssn {SSN} on file")),
        (6, format!("mail {EMAIL} now")),
        (7, format!("key {AWS} leaked")),
        (8, format!("bearer {JWT}")),
        (9, "hello world, order 1234567890123456".to_string()),
        (10, format!(r#"{{"card": {MC}}}"#)),
    ];
    let inserts: Vec<String> = values
        .iter()
        .map(|(i, v)| {
            format!(
                "({i}, '{}', '{}'::json)",
                v.replace('\'', "''"),
                if v.starts_with('{') {
                    v.replace('\'', "''")
                } else {
                    "null".into()
                }
            )
        })
        .collect();
    let t = Scratch::new(
        "det",
        &format!("CREATE TABLE public.{{t}} (id int PRIMARY KEY, note text, doc json); INSERT INTO public.{{t}} VALUES {};", inserts.join(",")),
    )
    .await;
    let gw = masking_gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let sql = t.sql("SELECT id, note, doc FROM {t} ORDER BY id");
    let d = direct().await;
    let (dcols, drows) = simple(&d.client, &sql).await;
    let secrets = [CARD_SPACES, CARD_DASHES, CARD, MC, SSN, EMAIL, AWS, JWT];

    let psql = gw.psql("bot", &token, "reader", "", &sql);
    assert!(
        psql.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&psql.stderr)
    );
    let psql_out = String::from_utf8(psql.stdout).unwrap();
    assert!(psql_out.contains("(10 rows)"), "{psql_out}");
    for s in secrets {
        assert!(
            !psql_out.contains(s),
            "psql output carries {s}:\n{psql_out}"
        );
    }
    assert!(
        !carries_card(&psql_out, CARD) && !carries_card(&psql_out, MC),
        "{psql_out}"
    );

    for (proto, (cols, rows)) in [
        ("simple", simple(&c, &sql).await),
        ("extended", extended(&c, &sql).await),
    ] {
        assert_eq!(cols, dcols, "{proto}: columns");
        assert_eq!(rows.len(), drows.len(), "{proto}: row count");
        for (row, drow) in rows.iter().zip(&drows) {
            assert_eq!(row.len(), 3, "{proto}: column count");
            assert_eq!(row[0], drow[0], "{proto}: the id is not sensitive");
            let text = format!("{:?} {:?}", row[1], row[2]);
            for s in secrets {
                assert!(
                    !text.contains(s),
                    "{proto}: row {:?} carries {s}: {text}",
                    row[0]
                );
            }
            assert!(
                !carries_card(&text, CARD) && !carries_card(&text, MC),
                "{proto}: {text}"
            );
        }
        let note = |i: usize| rows[i][1].clone().unwrap();
        assert!(note(0).contains("[REDACTED:card]"), "{proto}: {}", note(0));
        assert!(
            note(2).starts_with("order 77 paid with ") && note(2).ends_with(" yesterday, thanks"),
            "{proto}: the text around a card stays: {}",
            note(2)
        );
        assert!(note(4).contains("[REDACTED:ssn]"), "{proto}: {}", note(4));
        assert!(note(5).contains("[REDACTED:email]"), "{proto}: {}", note(5));
        assert!(
            note(6).contains("[REDACTED:aws_key]"),
            "{proto}: {}",
            note(6)
        );
        assert!(note(7).contains("[REDACTED:jwt]"), "{proto}: {}", note(7));
        // A 16-digit number failing Luhn is not a card.
        assert_eq!(note(8), "hello world, order 1234567890123456", "{proto}");
        // JSON columns stay valid JSON.
        for i in [3, 9] {
            let doc = rows[i][2].clone().unwrap();
            serde_json::from_str::<serde_json::Value>(&doc)
                .unwrap_or_else(|e| panic!("{proto}: masked json is not JSON ({e}): {doc}"));
        }
    }
}

#[tokio::test]
async fn cards_in_bigint_columns_are_masked_in_text_and_binary_results() {
    let t = Scratch::new(
        "int8",
        "CREATE TABLE public.{t} (id int PRIMARY KEY, n bigint); INSERT INTO public.{t} VALUES (1, 4111111111111111), (2, 1234567890123456), (3, 42), (4, NULL), (5, 5105105105105100);",
    )
    .await;
    let gw = masking_gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let sql = t.sql("SELECT id, n FROM {t} ORDER BY id");

    // Text results (simple protocol).
    let (_, rows) = simple(&c, &sql).await;
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.len() == 2));
    for (i, expect_card) in [(0, true), (4, true)] {
        let v = rows[i][1].clone().unwrap();
        assert!(
            expect_card && !carries_card(&v, CARD) && !carries_card(&v, MC),
            "text: {v}"
        );
        v.parse::<i64>()
            .unwrap_or_else(|_| panic!("a masked bigint stays a bigint in text: {v:?}"));
    }
    assert_eq!(
        rows[1][1].as_deref(),
        Some("1234567890123456"),
        "not a card (Luhn)"
    );
    assert_eq!(rows[2][1].as_deref(), Some("42"));
    assert_eq!(rows[3][1], None);

    // Binary results (tokio-postgres typed query): the column stays int8 or is re-announced.
    let rows = c.query(&sql, &[]).await.unwrap();
    assert_eq!(rows.len(), 5);
    let get = |i: usize| -> Option<String> {
        let r = &rows[i];
        match *r.columns()[1].type_() {
            tokio_postgres::types::Type::INT8 => r.get::<_, Option<i64>>(1).map(|v| v.to_string()),
            _ => r.get::<_, Option<String>>(1),
        }
    };
    for i in [0, 4] {
        let v = get(i).unwrap();
        assert!(
            !carries_card(&v, CARD) && !carries_card(&v, MC),
            "binary: {v}"
        );
    }
    assert_eq!(get(1).as_deref(), Some("1234567890123456"));
    assert_eq!(get(2).as_deref(), Some("42"));
    assert_eq!(get(3), None);
}

// ---------------------------------------------------------- raw extended protocol

async fn raw_undescribed(s: &mut TcpStream, sql: &str, format: u16) -> Vec<(u8, Vec<u8>)> {
    let mut parse = vec![0u8];
    parse.extend_from_slice(sql.as_bytes());
    parse.extend_from_slice(&[0, 0, 0]);
    let mut bind = vec![0u8, 0u8];
    bind.extend_from_slice(&0u16.to_be_bytes()); // no parameter formats
    bind.extend_from_slice(&0u16.to_be_bytes()); // no parameters
    bind.extend_from_slice(&1u16.to_be_bytes());
    bind.extend_from_slice(&format.to_be_bytes());
    let mut exec = vec![0u8];
    exec.extend_from_slice(&0u32.to_be_bytes());
    let mut out = frame(b'P', &parse);
    out.extend(frame(b'B', &bind));
    out.extend(frame(b'E', &exec));
    out.extend(frame(b'S', &[]));
    s.write_all(&out).await.unwrap();
    let mut got = Vec::new();
    loop {
        let mut buf = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
        let msgs = parse_msgs(&got);
        if msgs.last().is_some_and(|(t, _)| *t == b'Z') {
            return msgs;
        }
    }
}

/// The values of a DataRow body.
fn data_row_values(body: &[u8]) -> Vec<Option<Vec<u8>>> {
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut out = Vec::new();
    for _ in 0..n {
        let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
        at += 4;
        if len < 0 {
            out.push(None);
        } else {
            out.push(Some(body[at..at + len as usize].to_vec()));
            at += len as usize;
        }
    }
    out
}

#[tokio::test]
async fn portals_the_client_never_described_are_masked_in_text_and_binary() {
    let t = Scratch::new(
        "raw",
        &format!("CREATE TABLE public.{{t}} (id int PRIMARY KEY, note text, n bigint, card_number text); INSERT INTO public.{{t}} VALUES (1, 'pay {CARD_SPACES} now', 4111111111111111, 'tok-QQZZ-7788'), (2, 'clean', 7, NULL);"),
    )
    .await;
    let gw = masking_gateway();
    let token = gw.agent_with_token("bot");
    let mut s = raw_authed(&gw, &token).await;
    let sql = t.sql("SELECT id, note, n, card_number FROM {t} ORDER BY id");
    for format in [0u16, 1] {
        let msgs = raw_undescribed(&mut s, &sql, format).await;
        let tags: String = msgs.iter().map(|(t, _)| *t as char).collect();
        assert!(!tags.contains('E'), "format {format}: error: {msgs:?}");
        assert!(!tags.contains('T'), "format {format}: the client did not Describe, so no RowDescription may reach it: {tags}");
        let rows: Vec<_> = msgs
            .iter()
            .filter(|(t, _)| *t == b'D')
            .map(|(_, b)| data_row_values(b))
            .collect();
        assert_eq!(rows.len(), 2, "format {format}: {tags}");
        assert!(rows.iter().all(|r| r.len() == 4));
        let all: Vec<u8> = msgs
            .iter()
            .filter(|(t, _)| *t == b'D')
            .flat_map(|(_, b)| b.clone())
            .collect();
        assert!(
            !contains_bytes(&all, CARD_SPACES.as_bytes()),
            "format {format}: card in text"
        );
        assert!(
            !contains_bytes(&all, b"tok-QQZZ-7788"),
            "format {format}: column rule value in clear"
        );
        assert!(
            !contains_bytes(&all, &4111111111111111i64.to_be_bytes()),
            "format {format}: card in a binary int8"
        );
        assert!(
            !carries_card(&String::from_utf8_lossy(&all), CARD),
            "format {format}"
        );
        let n = rows[0][2].clone().unwrap();
        if format == 1 {
            assert_eq!(
                n.len(),
                8,
                "a masked binary int8 stays 8 bytes (or the column would be re-announced)"
            );
        } else {
            std::str::from_utf8(&n).unwrap().parse::<i64>().unwrap();
        }
        assert_eq!(rows[1][1].as_deref(), Some(&b"clean"[..]));
        assert_eq!(rows[1][3], None);
    }
}

// --------------------------------------------------------------- column rules

const RULES_SETUP: &str = "CREATE TABLE public.{t} (id int PRIMARY KEY, name text, card_number text, ssn text); \
    INSERT INTO public.{t} VALUES (1, 'alice', '4111 1111 1111 1111', '123-45-6789'), (2, 'bob', 'tok-AB12-CD34-9876', '078-05-1120'), (3, 'carol', NULL, NULL); \
    CREATE TABLE public.{t}_o (id int PRIMARY KEY, customer_id int, card_number text); \
    INSERT INTO public.{t}_o VALUES (10, 1, 'ord-XY99-8765'), (11, 2, NULL), (12, 2, 'ord-ZZ11-4321');";

/// The protected values stored by RULES_SETUP.
const PROTECTED: &[&str] = &[
    "4111 1111 1111 1111",
    "tok-AB12-CD34-9876",
    "AB12",
    "CD34",
    "123-45-6789",
    "078-05-1120",
    "ord-XY99-8765",
    "XY99",
    "ord-ZZ11-4321",
];

fn assert_no_protected(text: &str, what: &str) {
    for p in PROTECTED {
        assert!(!text.contains(p), "{what}: {p} in clear:\n{text}");
    }
    assert!(!carries_card(text, CARD), "{what}: card digits:\n{text}");
}

#[tokio::test]
async fn column_rules_apply_through_aliases_stars_and_joins_without_changing_the_shape() {
    let t = Scratch::new("rules", RULES_SETUP).await;
    let gw = masking_gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let d = direct().await;
    let queries = [
        "SELECT id, card_number, ssn FROM {t} ORDER BY id",
        "SELECT id, card_number AS x, ssn AS y FROM {t} ORDER BY id",
        "SELECT id, c.card_number AS x FROM {t} c ORDER BY id",
        "SELECT * FROM {t} ORDER BY id",
        "SELECT c.* FROM {t} c ORDER BY id",
        "SELECT o.id, c.name, c.card_number AS cc, o.card_number FROM {t}_o o JOIN {t} c ON c.id = o.customer_id ORDER BY o.id",
        "SELECT o.*, c.* FROM {t}_o o LEFT JOIN {t} c ON c.id = o.customer_id ORDER BY o.id",
    ];
    for q in queries {
        let sql = t.sql(q);
        let (dcols, drows) = simple(&d.client, &sql).await;
        for (proto, (cols, rows)) in [
            ("simple", simple(&c, &sql).await),
            ("extended", extended(&c, &sql).await),
        ] {
            let what = format!("{proto} {sql}");
            assert_eq!(cols, dcols, "{what}: column names");
            assert_eq!(rows.len(), drows.len(), "{what}: row count");
            for (row, drow) in rows.iter().zip(&drows) {
                assert_eq!(row.len(), drow.len(), "{what}: column count");
                for (i, (v, dv)) in row.iter().zip(drow).enumerate() {
                    let protected = dv.as_deref().is_some_and(|dv| PROTECTED.contains(&dv));
                    if protected {
                        let v = v
                            .as_deref()
                            .unwrap_or_else(|| panic!("{what}: a masked value became NULL"));
                        assert_ne!(
                            v,
                            dv.as_deref().unwrap(),
                            "{what}: column {} in clear",
                            cols[i]
                        );
                    } else if dv.is_none() {
                        assert_eq!(v, dv, "{what}: NULL stays NULL");
                    } else if !cols[i].contains("card")
                        && cols[i] != "ssn"
                        && cols[i] != "x"
                        && cols[i] != "cc"
                        && cols[i] != "y"
                    {
                        assert_eq!(v, dv, "{what}: unprotected column {} changed", cols[i]);
                    }
                }
            }
            assert_no_protected(&all_text(&rows), &what);
            // keep_last4 keeps the last four characters of a rule-masked card_number.
            if let Some(pos) = cols.iter().position(|c| c == "card_number" || c == "x") {
                if q.contains("FROM {t} ") && !q.contains("{t}_o") {
                    assert!(
                        rows[1][pos].as_deref().is_some_and(|v| v.ends_with("9876")),
                        "{what}: {:?}",
                        rows[1][pos]
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn column_rules_cover_views_over_protected_columns() {
    // A view renames the column and exposes derived values. The result's origin is the
    // view's column, so the rule must follow the view to its base column (or refuse).
    let t = Scratch::new(
        "view",
        &format!("{RULES_SETUP} CREATE VIEW public.{{t}}_v AS SELECT id, card_number AS cn, reverse(card_number) AS r, upper(ssn) AS s FROM public.{{t}};"),
    )
    .await;
    let gw = masking_gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let mut leaks = Vec::new();
    for q in [
        "SELECT id, cn FROM {t}_v ORDER BY id",
        "SELECT id, r FROM {t}_v ORDER BY id",
        "SELECT id, s FROM {t}_v ORDER BY id",
        "SELECT * FROM {t}_v ORDER BY id",
    ] {
        let sql = t.sql(q);
        match c.simple_query(&sql).await {
            Err(e) => assert_eq!(
                sqlstate(&e).as_deref(),
                Some("42501"),
                "{sql}: {}",
                error_text(&e)
            ),
            Ok(m) => {
                let (_, rows) = simple_result(&m);
                let text = all_text(&rows);
                let mut needles: Vec<String> = PROTECTED.iter().map(|p| p.to_string()).collect();
                needles.extend(
                    PROTECTED
                        .iter()
                        .map(|p| p.chars().rev().collect::<String>()),
                );
                needles.extend(["TOK-AB12".to_string(), "6987-43DC".to_string()]);
                let found: Vec<&String> = needles
                    .iter()
                    .filter(|n| text.contains(n.as_str()))
                    .collect();
                if !found.is_empty() || carries_card(&text, CARD) {
                    leaks.push(format!("{q}: {found:?} in {rows:?}"));
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "protected values in clear through a view:\n{}",
        leaks.join("\n")
    );
}

/// A view (and a view over it) that passes a protected column through as a plain column is
/// followed: its values arrive masked by the base column's rule, and uses of the view
/// column that the masker could not follow are refused, naming both columns. Statements
/// reading a view that derives values from a protected column are refused, naming the view.
#[tokio::test]
async fn views_that_pass_a_protected_column_through_are_masked_by_the_base_rule() {
    let t = Scratch::new(
        "pview",
        &format!(
            "{RULES_SETUP} CREATE VIEW public.{{t}}_v AS SELECT id, card_number AS cn, name FROM public.{{t}}; \
             CREATE VIEW public.{{t}}_v2 AS SELECT v.cn AS c2, v.id FROM public.{{t}}_v v; \
             CREATE VIEW public.{{t}}_b AS SELECT id, md5(card_number) AS digest FROM public.{{t}};"
        ),
    )
    .await;
    let gw = masking_gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    for q in [
        "SELECT id, cn FROM {t}_v ORDER BY id",
        "SELECT * FROM {t}_v ORDER BY id",
        "SELECT v.cn AS x, v.id FROM {t}_v v ORDER BY v.id",
        "SELECT c2, id FROM {t}_v2 ORDER BY id",
    ] {
        let sql = t.sql(q);
        let (cols, rows) = simple(&c, &sql).await;
        assert_eq!(rows.len(), 3, "{sql}");
        assert_no_protected(&all_text(&rows), &sql);
        assert!(!carries_card(&all_text(&rows), CARD), "{sql}: {rows:?}");
        let pos = cols.iter().position(|c| ["cn", "x", "c2"].contains(&c.as_str())).unwrap();
        // keep_last4, the base column's rule, not just a detector's redaction.
        assert!(rows[1][pos].as_deref().is_some_and(|v| v.ends_with("9876") && v != "tok-AB12-CD34-9876"), "{sql}: {rows:?}");
    }
    // The view's unprotected columns pass unchanged.
    assert_eq!(simple(&c, &t.sql("SELECT name FROM {t}_v ORDER BY id")).await.1[0][0].as_deref(), Some("alice"));
    for q in [
        "SELECT upper(cn) FROM {t}_v",
        "SELECT id FROM {t}_v WHERE cn LIKE '4%'",
        "SELECT string_agg(c2, ',') FROM {t}_v2",
        "SELECT row_to_json(v) FROM {t}_v v",
        "SELECT x FROM (SELECT cn AS x FROM {t}_v) s",
    ] {
        let sql = t.sql(q);
        let msg = expect_refused(c.simple_query(&sql).await, &sql);
        assert!(msg.contains("_v") && (msg.contains(".card_number") || msg.contains("whole-row")), "{sql}: {msg}");
    }
    let sql = t.sql("SELECT id FROM {t}_b");
    let msg = expect_refused(c.simple_query(&sql).await, &sql);
    assert!(msg.contains(&t.sql("view public.{t}_b")) && msg.contains("card_number"), "{msg}");
    // Extended protocol: refused at Parse, the session goes on.
    let err = c.query(&t.sql("SELECT upper(cn) FROM {t}_v"), &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{}", error_text(&err));
    let rows = c.query(&t.sql("SELECT cn FROM {t}_v ORDER BY id"), &[]).await.unwrap();
    let v: Option<String> = rows[0].get(0);
    assert!(v.as_deref().is_some_and(|v| v.ends_with("1111") && !v.contains(CARD_SPACES)), "{v:?}");
    let audit = gw.admin(&["audit", "search", "--json", "--limit", "1000"]);
    assert!(audit.contains("Warden cannot follow"), "view refusals are audited");
}

#[tokio::test]
async fn uses_of_protected_columns_that_cannot_be_followed_are_refused_naming_the_column() {
    let t = Scratch::new("refuse", RULES_SETUP).await;
    let gw = masking_gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    // (query, what the denial must name)
    let col = "card_number";
    let cases: Vec<(&str, &str)> = vec![
        // expressions
        ("SELECT upper(card_number) FROM {t}", col),
        ("SELECT card_number || '' FROM {t}", col),
        ("SELECT card_number::text FROM {t}", col),
        ("SELECT CAST(card_number AS varchar) FROM {t}", col),
        ("SELECT substring(card_number, 1, 6) FROM {t}", col),
        ("SELECT substring(card_number from 1 for 6) FROM {t}", col),
        ("SELECT md5(card_number) FROM {t}", col),
        ("SELECT upper(c.card_number) AS name FROM {t} c", col),
        ("SELECT length(card_number) FROM {t}", col),
        ("SELECT upper(ssn) FROM {t}", "ssn"),
        // aggregates
        ("SELECT string_agg(card_number, ',') FROM {t}", col),
        ("SELECT array_agg(card_number) FROM {t}", col),
        ("SELECT json_agg(card_number) FROM {t}", col),
        ("SELECT max(card_number) FROM {t}", col),
        // whole-row values
        ("SELECT c FROM {t} c", "{t}"),
        ("SELECT row_to_json(c) FROM {t} c", "{t}"),
        ("SELECT to_jsonb(c) FROM {t} c", "{t}"),
        ("SELECT json_agg(c) FROM {t} c", "{t}"),
        ("SELECT c::text FROM {t} c", "{t}"),
        // subqueries
        ("SELECT (SELECT card_number FROM {t} WHERE id = 1)", col),
        ("SELECT x FROM (SELECT card_number AS x FROM {t}) s", col),
        ("SELECT id FROM {t} WHERE id IN (SELECT id FROM {t} WHERE card_number LIKE '4%')", col),
        ("SELECT id, (SELECT o.card_number FROM {t}_o o WHERE o.customer_id = c.id LIMIT 1) FROM {t} c", col),
        // CTEs
        ("WITH s AS (SELECT card_number FROM {t}) SELECT * FROM s", col),
        ("WITH s AS (SELECT card_number AS x FROM {t}) SELECT x FROM s", col),
        // set operations
        ("SELECT card_number FROM {t} UNION SELECT 'x'", col),
        ("SELECT name FROM {t} UNION ALL SELECT card_number FROM {t}", col),
        ("SELECT card_number FROM {t} INTERSECT SELECT card_number FROM {t}_o", col),
        // predicates and ordering
        ("SELECT id FROM {t} WHERE card_number LIKE '4%'", col),
        ("SELECT id FROM {t} WHERE card_number = '4111 1111 1111 1111'", col),
        ("SELECT id FROM {t} WHERE card_number > '4'", col),
        ("SELECT id FROM {t} ORDER BY card_number", col),
        ("SELECT count(*) FROM {t} GROUP BY card_number", col),
        ("SELECT o.id FROM {t}_o o JOIN {t} c ON c.card_number = o.card_number", col),
        ("SELECT id FROM {t} WHERE ssn LIKE '123%'", "ssn"),
    ];
    for (q, name) in cases {
        let sql = t.sql(q);
        let name = t.sql(name);
        let msg = expect_refused(c.simple_query(&sql).await, &sql);
        assert!(
            msg.contains(&name),
            "{sql}: the denial must name {name}: {msg}"
        );
        assert_no_protected(&msg, &sql);
        // Extended protocol: refused as well.
        match c.query(&sql, &[]).await {
            Ok(rows) => panic!("extended {sql}: expected 42501, got {} rows", rows.len()),
            Err(e) => {
                assert_eq!(
                    sqlstate(&e).as_deref(),
                    Some("42501"),
                    "extended {sql}: {}",
                    error_text(&e)
                );
                assert!(
                    error_text(&e).contains(&name),
                    "extended {sql}: {}",
                    error_text(&e)
                );
            }
        }
    }
    // psql shows the denial too.
    let out = gw.psql(
        "bot",
        &token,
        "reader",
        "",
        &t.sql("SELECT upper(card_number) FROM {t}"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("card_number"),
        "psql: {err}"
    );
    // The session is still usable and plain selection still works.
    let (_, rows) = simple(&c, &t.sql("SELECT card_number FROM {t} ORDER BY id")).await;
    assert_eq!(rows.len(), 3);
    assert_no_protected(&all_text(&rows), "plain select after denials");
}

// ------------------------------------------------------------ property test

const CARD_A: &str = "4539148803436467";
const CARD_B: &str = "4716820503116467";

fn luhn(s: &str) -> bool {
    let mut sum = 0;
    for (i, c) in s.bytes().rev().enumerate() {
        let mut d = (c - b'0') as u32;
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

fn grouped(card: &str, sep: &str) -> String {
    card.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(sep)
}

/// Text-to-text functions over `{}` (the masked column or an expression over it).
const FUNCS: &[&str] = &[
    "upper({})",
    "lower({})",
    "reverse({})",
    "substr({},1,8)",
    "substr({},3)",
    "{}||'a'",
    "replace({},' ','')",
    "replace({},'-','')",
    "left({},10)",
    "right({},12)",
    "md5({})",
    "concat({},'')",
    "concat_ws('|',{},'z')",
    "format('%s',{})",
    "({})::text",
    "({})::varchar(40)",
    "coalesce({},'')",
    "(select {})",
    "trim({})",
    "lpad({},40,'0')",
    "translate({},'0123456789','abcdefghij')",
    "encode(convert_to({},'UTF8'),'hex')",
    "regexp_replace({},'[^0-9]','','g')",
    "split_part({},' ',2)",
    "initcap({})",
    "overlay({} placing 'X' from 1 for 1)",
    "quote_literal({})",
    "btrim({},'4')",
    "nullif({},'')",
    "case when {} is null then '' else {} end",
    "array_to_string(array[{}],',')",
    "(array[{}])[1]",
    "to_json({})::text",
    "jsonb_build_object('k',{})::text",
    "repeat({},2)",
    "substring({} from '[0-9 -]+')",
    "string_to_array({},' ')::text",
    "ascii({})::text",
    "length({})::text",
    "(select string_agg(y, '') from unnest(string_to_array({}, ' ')) y)",
];

/// Optional outer aggregate.
const AGGS: &[&str] = &[
    "{}",
    "array_agg({})::text",
    "string_agg({},',')",
    "json_agg({})::text",
    "max({})",
    "min({})",
    "jsonb_agg({})::text",
];

/// How the column is named.
const REFS: &[&str] = &["card_number", "x.card_number", "(x).card_number"];

/// Where the expression sits; every shape yields one text column.
const SHAPES: &[&str] = &[
    "SELECT {e} AS v FROM {t} x",
    "SELECT v FROM (SELECT {e} AS v FROM {t} x) s",
    "WITH s AS (SELECT {e} AS v FROM {t} x) SELECT v FROM s",
    "SELECT {e} AS v FROM {t} x UNION ALL SELECT 'z'",
    "SELECT id::text AS v FROM {t} x WHERE {e} LIKE '4%' OR {e} = ''",
    "SELECT id::text AS v FROM {t} x ORDER BY {e}",
];

fn build(funcs: &[usize], agg: usize, reference: usize, shape: usize) -> String {
    let mut e = REFS[reference].to_string();
    for &f in funcs {
        e = FUNCS[f].replace("{}", &e);
    }
    let e = AGGS[agg].replace("{}", &e);
    let shape = if agg > 0 && shape >= 4 { 0 } else { shape };
    SHAPES[shape].replace("{e}", &e)
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Refused,
    Error(String),
    Rows(Rows),
}

async fn outcome(
    c: &tokio_postgres::Client,
    sql: &str,
    extended_protocol: bool,
) -> (Outcome, String) {
    let r = if extended_protocol {
        c.query(sql, &[]).await.map(|rows| {
            rows.iter()
                .map(|r| vec![r.get::<_, Option<AnyText>>(0).map(|v| v.0)])
                .collect::<Rows>()
        })
    } else {
        c.simple_query(sql).await.map(|m| simple_result(&m).1)
    };
    match r {
        Ok(rows) => {
            let text = all_text(&rows);
            (Outcome::Rows(rows), text)
        }
        Err(e) => {
            let text = error_text(&e);
            match sqlstate(&e).as_deref() {
                Some("42501") => {
                    assert!(
                        text.contains("is masked"),
                        "{sql}: refused for another reason than masking: {text}"
                    );
                    (Outcome::Refused, text)
                }
                other => (Outcome::Error(other.unwrap_or("client").to_string()), text),
            }
        }
    }
}

/// Runs `expr_sql` (with `{t}`) against the table holding card A and the one holding card B
/// (same last four digits) in both protocols. Masking leaks nothing when every outcome is a
/// refusal or the same rows for both cards, and no text carries a card's digits.
async fn check_expression(
    c: &tokio_postgres::Client,
    a: &Scratch,
    b: &Scratch,
    template: &str,
    stats: &mut [u32; 3],
) -> Result<(), String> {
    for ext in [false, true] {
        let (oa, ta) = outcome(c, &a.sql(template), ext).await;
        let (ob, tb) = outcome(c, &b.sql(template), ext).await;
        let proto = if ext { "extended" } else { "simple" };
        for (card, text) in [(CARD_A, &ta), (CARD_B, &tb), (CARD_A, &tb), (CARD_B, &ta)] {
            if carries_card(text, card) || text.contains(&card[..8]) {
                return Err(format!(
                    "{proto} {template}: output carries card {card}: {text}"
                ));
            }
        }
        match (&oa, &ob) {
            (Outcome::Refused, Outcome::Refused) => stats[0] += 1,
            (Outcome::Error(x), Outcome::Error(y)) if x == y => stats[1] += 1,
            (Outcome::Rows(x), Outcome::Rows(y)) if x == y => stats[2] += 1,
            _ => return Err(format!("{proto} {template}: the result depends on the stored card:\n  card A: {oa:?} {ta}\n  card B: {ob:?} {tb}")),
        }
    }
    Ok(())
}

async fn card_table(prefix: &str, card: &str) -> Scratch {
    assert!(luhn(card), "{card}");
    Scratch::new(
        prefix,
        &format!("CREATE TABLE public.{{t}} (id int PRIMARY KEY, card_number text); INSERT INTO public.{{t}} VALUES (1, '{}'), (2, '{}'), (3, '{card}');", grouped(card, " "), grouped(card, "-")),
    )
    .await
}

#[test]
fn no_generated_expression_over_a_masked_column_reveals_the_card() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestError, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Function calls are permitted, so every refusal comes from masking, not the policy.
    let policy = format!(
        "{}\n@id(\"reader-functions\")\npermit(principal, action == Warden::Action::\"call_function\", resource in Warden::Target::\"test\") when {{ context.node == \"reader\" }};\n",
        quickstart_policy()
    );
    let gw = Gateway::builder().policy(&policy).toml(MASKING).start();
    let token = gw.agent_with_token("bot");
    let (c, a, b) = rt.block_on(async {
        let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
        (
            c,
            card_table("propa", CARD_A).await,
            card_table("propb", CARD_B).await,
        )
    });
    let mut stats = [0u32; 3];

    // Every function once, at depth 1, in the plainest shape and under each aggregate.
    for f in 0..FUNCS.len() {
        for agg in [0, 1] {
            let sql = build(&[f], agg, 0, 0);
            if let Err(e) = rt.block_on(check_expression(&c, &a, &b, &sql, &mut stats)) {
                panic!("{e}");
            }
        }
    }
    // The plain column itself is masked, not refused, and equal for both cards.
    rt.block_on(async {
        let (oa, _) = outcome(&c, &a.sql("SELECT card_number AS v FROM {t} x"), false).await;
        assert!(matches!(oa, Outcome::Rows(ref r) if r.len() == 3), "{oa:?}");
        check_expression(&c, &a, &b, "SELECT card_number AS v FROM {t} x", &mut stats)
            .await
            .unwrap();
    });

    // Generated compositions, 1-3 deep, with aggregates, column spellings and shapes.
    let strategy = (
        proptest::collection::vec(0..FUNCS.len(), 1..=3),
        0..AGGS.len(),
        0..REFS.len(),
        0..SHAPES.len(),
    );
    let cases = std::env::var("MASKING_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let stats_cell = std::cell::RefCell::new(stats);
    let result = runner.run(&strategy, |(funcs, agg, reference, shape)| {
        let sql = build(&funcs, agg, reference, shape);
        let r = rt.block_on(check_expression(
            &c,
            &a,
            &b,
            &sql,
            &mut stats_cell.borrow_mut(),
        ));
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        Ok(())
    });
    let stats = stats_cell.into_inner();
    eprintln!(
        "masking property: {} refused, {} PostgreSQL errors, {} equal results (queries x2 tables)",
        stats[0], stats[1], stats[2]
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => panic!(
            "leak: {reason}\nminimal input: {input:?} = {}",
            build(&input.0, input.1, input.2, input.3)
        ),
        Err(e) => panic!("{e}"),
    }
    assert!(stats[0] > 0);
}

// ------------------------------------------------------------- clear access

fn audit_events(gw: &Gateway, agent: &str) -> (String, Vec<serde_json::Value>) {
    let out = gw.admin(&[
        "audit", "search", "--agent", agent, "--limit", "1000", "--json",
    ]);
    let events = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, events)
}

#[tokio::test]
async fn an_unmask_policy_shows_clear_values_to_its_node_only_and_is_audited() {
    let t = Scratch::new("unmask", RULES_SETUP).await;
    let policy = format!(
        "{}\n@id(\"auditor-read\")\npermit(principal, action == Warden::Action::\"select\", resource in Warden::Target::\"test\") when {{ context.node == \"auditor\" }};\n@id(\"auditor-unmask\")\npermit(principal, action == Warden::Action::\"unmask\", resource in Warden::Target::\"test\") when {{ context.node == \"auditor\" }};\n",
        quickstart_policy()
    );
    let gw = Gateway::builder().policy(&policy).toml(MASKING).start();
    let token = gw.agent_with_token("bot");
    let sql = t.sql("SELECT id, card_number, ssn FROM {t} ORDER BY id");

    let reader = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let (_, rows) = simple(&reader, &sql).await;
    assert_no_protected(&all_text(&rows), "reader");
    expect_refused(
        reader
            .simple_query(&t.sql("SELECT upper(card_number) FROM {t}"))
            .await,
        "reader upper",
    );

    let auditor = gw.connect("bot", &token, Some("auditor")).await.unwrap();
    let (_, rows) = simple(&auditor, &sql).await;
    assert_eq!(rows[0][1].as_deref(), Some("4111 1111 1111 1111"));
    assert_eq!(rows[0][2].as_deref(), Some("123-45-6789"));
    assert_eq!(rows[1][1].as_deref(), Some("tok-AB12-CD34-9876"));
    let (_, rows) = extended(&auditor, &sql).await;
    assert_eq!(rows[0][1].as_deref(), Some("4111 1111 1111 1111"));
    let (_, rows) = simple(
        &auditor,
        &t.sql("SELECT upper(card_number) FROM {t} WHERE id = 2"),
    )
    .await;
    assert_eq!(
        rows[0][0].as_deref(),
        Some("TOK-AB12-CD34-9876"),
        "expressions are allowed with clear access"
    );

    let (raw, events) = wait_for(Duration::from_secs(10), "the unmask audit event", || {
        let (raw, ev) = audit_events(&gw, "bot");
        ev.iter()
            .any(|e| e["kind"] == "unmask")
            .then_some((raw, ev))
    });
    let unmask: Vec<_> = events.iter().filter(|e| e["kind"] == "unmask").collect();
    assert!(
        unmask
            .iter()
            .all(|e| e["node"] == "auditor" && e["decision"] == "allow"),
        "{raw}"
    );
    assert!(
        unmask
            .iter()
            .any(|e| e["policy_ids"].to_string().contains("auditor-unmask")),
        "{raw}"
    );
}

fn grant_id(gw: &Gateway, agent: &str) -> String {
    let list: serde_json::Value =
        serde_json::from_str(gw.admin(&["grant", "list", "--json"]).trim()).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|g| g["agent"] == agent && g["state"] == "active")
        .unwrap_or_else(|| panic!("no active grant: {list}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn approve_unmask_grant(gw: &Gateway, agent: &str, duration: &str) -> String {
    let out = gw.admin(&[
        "grant",
        "request",
        "--agent",
        agent,
        "--node",
        "reader",
        "--target",
        "test",
        "--action",
        "unmask",
        "--for",
        duration,
        "--reason",
        "incident 42",
        "--as",
        "carol@example.com",
    ]);
    let id = out.split_whitespace().nth(2).unwrap().to_string();
    gw.admin(&[
        "approvals",
        "approve",
        &id,
        "--as",
        "bob@example.com",
        "--reason",
        "ok",
    ]);
    grant_id(gw, agent)
}

fn jit_gateway() -> Gateway {
    let gw = Gateway::builder()
        .toml(&format!(
            "[approvals]\napprovers = [\"bob@example.com\"]\n{MASKING}"
        ))
        .start();
    gw.admin(&["human", "activate", "bob@example.com"]);
    gw
}

async fn card_of_row1(gw: &Gateway, token: &str, t: &Scratch) -> String {
    let c = gw.connect("bot", token, Some("reader")).await.unwrap();
    let (_, rows) = simple(&c, &t.sql("SELECT card_number FROM {t} ORDER BY id")).await;
    rows[0][0].clone().unwrap()
}

#[tokio::test]
async fn a_jit_unmask_grant_shows_clear_values_only_while_it_is_active() {
    let t = Scratch::new("jit", RULES_SETUP).await;
    let gw = jit_gateway();
    let token = gw.agent_with_token("bot");
    assert_ne!(
        card_of_row1(&gw, &token, &t).await,
        CARD_SPACES,
        "masked before any grant"
    );

    approve_unmask_grant(&gw, "bot", "4s");
    let granted_at = std::time::Instant::now();
    assert_eq!(
        card_of_row1(&gw, &token, &t).await,
        CARD_SPACES,
        "clear while the grant is active"
    );
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let (_, rows) = simple(
        &c,
        &t.sql("SELECT upper(card_number) FROM {t} WHERE id = 2"),
    )
    .await;
    assert_eq!(rows[0][0].as_deref(), Some("TOK-AB12-CD34-9876"));
    // Another node of the same agent is not covered by a grant for node "reader".
    let w = gw.connect("bot", &token, Some("writer")).await.unwrap();
    let (_, rows) = simple(&w, &t.sql("SELECT card_number FROM {t} ORDER BY id")).await;
    assert_no_protected(&all_text(&rows), "writer during a reader grant");
    wait_for(
        Duration::from_secs(10),
        "an unmask audit event for the grant",
        || {
            audit_events(&gw, "bot")
                .1
                .iter()
                .any(|e| e["kind"] == "unmask" && e["node"] == "reader")
                .then_some(())
        },
    );

    // After expiry: masked again, and expressions are refused again.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(granted_at.elapsed())).await;
    assert_ne!(
        card_of_row1(&gw, &token, &t).await,
        CARD_SPACES,
        "masked after the grant expired"
    );
    let c2 = gw.connect("bot", &token, Some("reader")).await.unwrap();
    expect_refused(
        c2.simple_query(&t.sql("SELECT upper(card_number) FROM {t}"))
            .await,
        "after expiry",
    );
}

#[tokio::test]
async fn a_live_session_loses_clear_access_when_its_unmask_grant_is_revoked() {
    let t = Scratch::new("jitrev", RULES_SETUP).await;
    let gw = jit_gateway();
    let token = gw.agent_with_token("bot");
    let id = approve_unmask_grant(&gw, "bot", "10m");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let sql = t.sql("SELECT card_number FROM {t} ORDER BY id");
    assert_eq!(simple(&c, &sql).await.1[0][0].as_deref(), Some(CARD_SPACES));
    let out = gw.admin(&["grant", "revoke", &id]);
    assert!(out.contains("revoked"), "{out}");
    // "live sessions lose it within a second"
    tokio::time::sleep(Duration::from_millis(1500)).await;
    match c.simple_query(&sql).await {
        Ok(m) => {
            let rows = simple_result(&m).1;
            assert_no_protected(&all_text(&rows), "the same session after revocation");
        }
        Err(e) => assert!(sqlstate(&e).is_some(), "{}", error_text(&e)),
    }
}

// ----------------------------------------------------------------- COPY TO

#[tokio::test]
async fn copy_to_is_refused_while_masking_is_configured_even_when_policy_permits_it() {
    let t = Scratch::new("copy", RULES_SETUP).await;
    let policy = format!(
        "{}\n@id(\"reader-copy\")\npermit(principal, action == Warden::Action::\"copy_to\", resource in Warden::Target::\"test\") when {{ context.node == \"reader\" }};\n",
        quickstart_policy()
    );
    let copies = [
        "COPY {t} TO STDOUT",
        "COPY {t} (name) TO STDOUT",
        "COPY (SELECT card_number FROM {t}) TO STDOUT",
        "COPY (SELECT name FROM {t}) TO STDOUT WITH (FORMAT binary)",
    ];

    // Control: without [masking] the same policy lets COPY TO through.
    let plain = Gateway::builder().policy(&policy).start();
    let token = plain.agent_with_token("bot");
    let out = plain.psql(
        "bot",
        &token,
        "reader",
        "",
        &t.sql("COPY {t} (name) TO STDOUT"),
    );
    assert!(
        out.status.success(),
        "control: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice"));

    let gw = Gateway::builder().policy(&policy).toml(MASKING).start();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    for q in copies {
        let sql = t.sql(q);
        let msg = expect_refused(c.simple_query(&sql).await, &sql);
        assert!(msg.contains("COPY") && msg.contains("mask"), "{sql}: {msg}");
        let out = gw.psql("bot", &token, "reader", "", &sql);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && !stdout.contains("alice"),
            "psql {sql}: {stdout}"
        );
        assert_no_protected(&stdout, &sql);
    }
    // The session goes on.
    assert_eq!(
        simple(&c, &t.sql("SELECT name FROM {t} ORDER BY id"))
            .await
            .1
            .len(),
        3
    );
}

// ------------------------------------------------------------------- audit

#[tokio::test]
async fn audit_events_count_masked_values_by_kind_and_never_hold_them() {
    let t = Scratch::new(
        "maudit",
        &format!("CREATE TABLE public.{{t}} (id int PRIMARY KEY, note text, card_number text); INSERT INTO public.{{t}} VALUES (1, 'pay {CARD_SPACES} now', 'tok-QQZZ-7788'), (2, 'pay {MC_DASHES}', NULL), (3, 'clean', NULL);"),
    )
    .await;
    let mut gw = masking_gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let simple_sql =
        t.sql("SELECT id, note, card_number AS audit_simple_marker FROM {t} ORDER BY id");
    let ext_sql = t.sql("SELECT id, note, card_number AS audit_ext_marker FROM {t} ORDER BY id");
    let clean_sql = t.sql("SELECT id AS audit_clean_marker FROM {t}");
    assert_eq!(simple(&c, &simple_sql).await.1.len(), 3);
    assert_eq!(extended(&c, &ext_sql).await.1.len(), 3);
    simple(&c, &clean_sql).await;

    let (raw, events) = wait_for(Duration::from_secs(10), "three statement events", || {
        let (raw, ev) = audit_events(&gw, "bot");
        (ev.iter()
            .filter(|e| {
                e["kind"] == "statement"
                    && e["statement"]
                        .as_str()
                        .is_some_and(|s| s.contains("audit_"))
            })
            .count()
            >= 3)
            .then_some((raw, ev))
    });
    let find = |marker: &str| {
        events
            .iter()
            .find(|e| {
                e["kind"] == "statement"
                    && e["statement"].as_str().is_some_and(|s| s.contains(marker))
            })
            .unwrap_or_else(|| panic!("{marker}: {raw}"))
    };
    for marker in ["audit_simple_marker", "audit_ext_marker"] {
        let ev = find(marker);
        assert_eq!(
            ev["masked"],
            serde_json::json!({"card": 2, "column_rule": 1}),
            "{marker}: {ev}"
        );
        assert_eq!(ev["rows"], 3, "{ev}");
    }
    assert!(
        find("audit_clean_marker").get("masked").is_none(),
        "nothing masked, no counts"
    );

    // Neither the audit log, nor anything under the data dir, nor the gateway's log holds a value.
    gw.stop();
    let needles: [&[u8]; 5] = [
        CARD_SPACES.as_bytes(),
        CARD.as_bytes(),
        MC_DASHES.as_bytes(),
        MC.as_bytes(),
        b"tok-QQZZ-7788",
    ];
    for n in needles {
        assert!(
            !contains_bytes(raw.as_bytes(), n),
            "audit search output holds {:?}",
            String::from_utf8_lossy(n)
        );
        assert!(
            !contains_bytes(gw.stderr().as_bytes(), n),
            "gateway log holds {:?}",
            String::from_utf8_lossy(n)
        );
        for f in files_under(&gw.data_dir()) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !contains_bytes(&bytes, n),
                "{} holds {:?}",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
}

// --------------------------------------------------------------- streaming

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_masked_result_streams_without_the_gateway_buffering_it() {
    const ROWS: i64 = 50_000;
    let t = Scratch::new(
        "stream",
        &format!("CREATE TABLE public.{{t}} (id int PRIMARY KEY, card_number text, note text, pad text); ALTER TABLE public.{{t}} ALTER COLUMN pad SET STORAGE EXTERNAL; INSERT INTO public.{{t}} SELECT i, '{CARD_SPACES}', 'row ' || i || ' paid with {MC_DASHES}', repeat(md5(i::text), 80) FROM generate_series(1, {ROWS}) i;"),
    )
    .await;
    let gw = masking_gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    // Warm up (catalog, code paths), then measure from here.
    simple(
        &c,
        &t.sql("SELECT id, card_number, note FROM {t} WHERE id < 10"),
    )
    .await;
    let base_kb = gw.proc_status_kb("VmRSS").unwrap();

    // ~2.5 KB of padding per row: ~125 MB in all, more than the bound.
    let sql = t.sql("SELECT id, card_number, note, pad FROM {t} ORDER BY id");
    let started = std::time::Instant::now();
    let stream = c
        .query_raw(sql.as_str(), Vec::<String>::new())
        .await
        .unwrap();
    pin_mut!(stream);
    let (mut n, mut bytes, mut paused_kb) = (0i64, 0usize, 0u64);
    while let Some(row) = stream.try_next().await.unwrap() {
        n += 1;
        let card: &str = row.get(1);
        let note: &str = row.get(2);
        let pad: &str = row.get(3);
        bytes += card.len() + note.len() + pad.len();
        if n % 997 == 0 || n == 1 {
            assert!(
                !carries_card(card, CARD) && !carries_card(note, MC),
                "row {n}: {card} {note}"
            );
        }
        if n == 5_000 {
            // A slow reader: a gateway that reads ahead without bound would fill up now.
            tokio::time::sleep(Duration::from_secs(2)).await;
            paused_kb = gw.proc_status_kb("VmRSS").unwrap();
        }
    }
    let elapsed = started.elapsed();
    let hwm_kb = gw.proc_status_kb("VmHWM").unwrap();
    eprintln!("streamed {n} rows, {} MB in {elapsed:?}; gateway RSS base {} MB, during pause {} MB, peak {} MB", bytes >> 20, base_kb >> 10, paused_kb >> 10, hwm_kb >> 10);
    assert_eq!(n, ROWS, "row count");
    assert!(
        bytes > 100 << 20,
        "the result is larger than the bound ({bytes} bytes)"
    );
    assert!(
        paused_kb < base_kb + 64 * 1024,
        "gateway RSS grew by {} MB while the client paused",
        (paused_kb - base_kb) >> 10
    );
    assert!(hwm_kb < 200 * 1024, "gateway peak RSS {} MB", hwm_kb >> 10);
}
