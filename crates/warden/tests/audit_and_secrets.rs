//! What the gateway writes down: the audit log (complete, digest-not-values, tamper-evident)
//! and where secrets must never appear.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const CARD: &str = "4111111111111111";

/// `warden audit search --agent A --json`: one event per line.
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

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn find<'a>(
    events: &'a [serde_json::Value],
    needle: &str,
    decision: &str,
) -> Option<&'a serde_json::Value> {
    events.iter().find(|e| {
        e["kind"] == "statement"
            && e["decision"] == decision
            && e["statement"].as_str().is_some_and(|s| s.contains(needle))
    })
}

#[tokio::test]
async fn audit_lists_allowed_and_denied_statements_without_parameter_values_and_detects_an_edited_byte(
) {
    let t = Table::new("audit").await;
    let n = &t.name;
    let mut gw = Gateway::start();
    let token = gw.agent_with_token("bot");
    let reader = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let writer = gw.connect("bot", &token, Some("writer")).await.unwrap();

    // The alias marks the statement whose stored text the test edits later.
    reader
        .simple_query(&format!(
            "SELECT id, name AS audit_marker_q FROM {n} ORDER BY id"
        ))
        .await
        .unwrap();
    assert!(reader
        .simple_query(&format!("DELETE FROM {n} WHERE id = 1"))
        .await
        .is_err());
    let rows = reader
        .query(&format!("SELECT id FROM {n} WHERE name = $1"), &[&CARD])
        .await
        .unwrap();
    assert!(rows.is_empty());
    assert!(reader
        .execute(
            format!("DELETE FROM {n} WHERE name = $1").as_str(),
            &[&CARD]
        )
        .await
        .is_err());
    assert_eq!(
        writer
            .execute(
                format!("INSERT INTO {n} (id, name) VALUES ($1, $2)").as_str(),
                &[&7i32, &CARD]
            )
            .await
            .unwrap(),
        1
    );

    // Reads are audited asynchronously: wait until all five statements are listed.
    let (raw, events) = {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let last = audit_events(&gw, "bot");
            let statements = last.1.iter().filter(|e| e["kind"] == "statement").count();
            if statements >= 5 || std::time::Instant::now() > deadline {
                break last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    let select = find(&events, "audit_marker_q", "allow")
        .unwrap_or_else(|| panic!("allowed simple SELECT not audited:\n{raw}"));
    assert_eq!(select["node"], "reader");
    assert_eq!(select["agent"], "bot");
    assert_eq!(select["owner"], OWNER);
    assert_eq!(select["target"], "test");
    assert!(
        strs(&select["actions"]).contains(&"select".to_string()),
        "{select}"
    );
    assert!(
        strs(&select["tables"])
            .iter()
            .any(|x| x.ends_with(n.as_str())),
        "{select}"
    );
    assert!(
        select["session_id"].is_string() && select["hash"].is_string(),
        "{select}"
    );
    assert_eq!(select["rows"], 3, "{select}");

    let denied = find(&events, &format!("DELETE FROM {n} WHERE id = 1"), "deny")
        .unwrap_or_else(|| panic!("denied DELETE not audited:\n{raw}"));
    assert_eq!(denied["node"], "reader");
    assert!(
        strs(&denied["actions"]).contains(&"delete".to_string()),
        "{denied}"
    );
    assert!(
        strs(&denied["tables"])
            .iter()
            .any(|x| x.ends_with(n.as_str())),
        "{denied}"
    );
    assert!(
        denied["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "a denial records its reason: {denied}"
    );
    find(&events, &format!("DELETE FROM {n} WHERE name = $1"), "deny")
        .unwrap_or_else(|| panic!("denied extended DELETE not audited:\n{raw}"));

    let ext = find(
        &events,
        &format!("SELECT id FROM {n} WHERE name = $1"),
        "allow",
    )
    .unwrap_or_else(|| panic!("extended SELECT not audited:\n{raw}"));
    let digest = ext["params_digest"]
        .as_str()
        .unwrap_or_else(|| panic!("extended statement without params_digest: {ext}"));
    assert!(
        digest.len() >= 32 && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "{digest}"
    );
    let insert = find(&events, &format!("INSERT INTO {n}"), "allow")
        .unwrap_or_else(|| panic!("INSERT not audited:\n{raw}"));
    assert_eq!(insert["node"], "writer");
    assert!(
        strs(&insert["actions"]).contains(&"insert".to_string()),
        "{insert}"
    );
    assert_eq!(insert["rows"], 1, "{insert}");
    let insert_digest = insert["params_digest"]
        .as_str()
        .unwrap_or_else(|| panic!("INSERT without params_digest: {insert}"));
    assert_ne!(
        digest, insert_digest,
        "different parameters, different digests"
    );
    assert!(
        !raw.contains(CARD),
        "a bound parameter value leaked into the audit log:\n{raw}"
    );

    // Filters work.
    let denials = gw.admin(&[
        "audit",
        "search",
        "--agent",
        "bot",
        "--decision",
        "deny",
        "--json",
    ]);
    assert!(
        denials.lines().count() >= 2 && !denials.contains("\"decision\":\"allow\""),
        "{denials}"
    );
    let writer_only = gw.admin(&[
        "audit", "search", "--agent", "bot", "--node", "writer", "--json",
    ]);
    assert!(
        writer_only.contains("INSERT INTO") && !writer_only.contains("audit_marker_q"),
        "{writer_only}"
    );

    let verify = gw.cli(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "audit verify on an untouched log: {}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // Stop the gateway (audit flushed, store closed), then flip one byte of the marked
    // statement's stored text. SQLite may keep stale copies of a row in free pages, so flip
    // the byte in every copy: one of them is the live row.
    drop(reader);
    drop(writer);
    gw.stop();
    let data = gw.data_dir();
    for f in files_under(&data) {
        assert!(
            !contains_bytes(&std::fs::read(&f).unwrap(), CARD.as_bytes()),
            "{CARD} found in {}",
            f.display()
        );
    }
    let flipped = ["warden.db", "warden.db-wal"]
        .iter()
        .map(|f| flip_every(&data.join(f), b"audit_marker_q"))
        .sum::<usize>()
        > 0;
    assert!(flipped, "statement text not found in the store files");
    let verify = gw.cli(&["audit", "verify"]);
    println!(
        "audit verify after the edit: {:?} {}",
        verify.status,
        String::from_utf8_lossy(&verify.stdout)
    );
    assert!(
        !verify.status.success(),
        "audit verify must fail after an edit: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// Flips the case of the last letter of every occurrence of `needle` in `path`; returns how
/// many it flipped.
fn flip_every(path: &Path, needle: &[u8]) -> usize {
    let Ok(mut bytes) = std::fs::read(path) else {
        return 0;
    };
    let hits: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    for at in &hits {
        bytes[at + needle.len() - 1] ^= 0x20;
    }
    std::fs::write(path, bytes).unwrap();
    hits.len()
}

#[tokio::test]
async fn secrets_never_leak_to_files_logs_help_or_client_errors() {
    const PASSWORD: &str = "upstream-Pw-zebra-4471";
    let t = Table::new("secrets").await;
    let policy = format!(
        "{}\n@id(\"withpw-read\")\npermit(principal, action == Warden::Action::\"select\", resource in Warden::Target::\"withpw\") when {{ context.node == \"reader\" }};\n",
        quickstart_policy()
    );
    let mut gw = Gateway::builder()
        .policy(&policy)
        .env("WARDEN_TEST_UPSTREAM_PW", PASSWORD)
        .toml(
            r#"
[[targets]]
name = "withpw"
host = "127.0.0.1"
port = 5432
database = "test"
user = "postgres"
password_env = "WARDEN_TEST_UPSTREAM_PW"

[[targets]]
name = "down"
host = "127.0.0.1"
port = 1
database = "test"
user = "postgres"
password_env = "WARDEN_TEST_UPSTREAM_PW"
"#,
        )
        .start();
    let enrollment = gw.create_agent("bot", OWNER);
    let token = gw.token("bot", None, "5m");
    let (status, body) = http_post_json(
        gw.admin_port,
        "/v1/token",
        &serde_json::json!({"agent": "bot", "secret": enrollment}),
    );
    assert_eq!(status, 200, "{body}");
    let exchanged = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    // Everything a client gets to read, including every error.
    let mut seen = Vec::new();
    for (tok, dbname) in [(&token, "test"), (&exchanged, "withpw")] {
        let c = connect_str(&gw.conn_string("bot", tok, dbname, Some("reader")))
            .await
            .unwrap();
        let rows = c
            .simple_query(&format!("SELECT * FROM {}", t.name))
            .await
            .unwrap();
        seen.push(format!("{rows:?}"));
        for bad in [
            format!("DELETE FROM {}", t.name),
            "SELEC nonsense".into(),
            "SELECT * FROM no_such_table_xyz".into(),
            "SET ROLE postgres".into(),
        ] {
            seen.push(error_text(&c.simple_query(&bad).await.unwrap_err()));
            seen.push(error_text(&c.execute(bad.as_str(), &[]).await.unwrap_err()));
        }
    }
    let attempts = [
        gw.conn_string("bot", &token, "down", Some("reader")),
        gw.conn_string("bot", &token, "nosuchtarget", Some("reader")),
        gw.conn_string("intruder", &token, "test", Some("reader")),
        gw.conn_string("bot", &enrollment, "test", Some("reader")),
        gw.conn_string("bot", &format!("{token}x"), "withpw", Some("reader")),
    ];
    for conn in &attempts {
        match connect_str(conn).await {
            Ok(_) => panic!("{conn} should be refused"),
            Err(e) => seen.push(error_text(&e)),
        }
    }
    assert!(
        seen.iter().any(|s| s.contains("\"down\" is unavailable")),
        "{seen:#?}"
    );
    let (status, body) = http_post_json(
        gw.admin_port,
        "/v1/token",
        &serde_json::json!({"agent": "bot", "secret": format!("{enrollment}x")}),
    );
    assert_eq!(status, 401);
    seen.push(body);
    let (audit, _) = audit_events(&gw, "bot");

    gw.stop();
    let help: Vec<String> = [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["agent", "--help"],
        vec!["agent", "create", "--help"],
        vec!["token", "issue", "--help"],
        vec!["audit", "search", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["human", "deactivate", "--help"],
        vec!["policy", "check", "--help"],
    ]
    .iter()
    .map(|args| {
        let out = gw.cli(args);
        assert!(out.status.success(), "{args:?}");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
    .collect();

    let token_sig = token.rsplit('.').next().unwrap();
    let exchanged_sig = exchanged.rsplit('.').next().unwrap();
    let enrollment_body = enrollment.trim_start_matches("wdn_es_");
    let secrets = [
        ("upstream password", PASSWORD),
        ("token signature", token_sig),
        ("exchanged token signature", exchanged_sig),
        ("enrollment secret", enrollment_body),
    ];
    let files = files_under(&gw.data_dir());
    assert!(!files.is_empty());
    for (what, secret) in secrets {
        assert!(secret.len() >= 16, "{what} too short to search for");
        for f in &files {
            assert!(
                !contains_bytes(&std::fs::read(f).unwrap(), secret.as_bytes()),
                "{what} found in {}",
                f.display()
            );
        }
        assert!(
            !gw.stderr().contains(secret),
            "{what} found in the gateway's stderr"
        );
        assert!(!audit.contains(secret), "{what} found in the audit log");
        for s in &seen {
            assert!(
                !s.contains(secret),
                "{what} found in a client-visible message: {s}"
            );
        }
        for h in &help {
            assert!(!h.contains(secret), "{what} found in --help output: {h}");
        }
    }
}

#[tokio::test]
async fn a_write_is_audited_durably_before_its_result_reaches_the_agent() {
    let t = Table::new("durable").await;
    let n = &t.name;
    let mut gw = Gateway::start();
    let token = gw.agent_with_token("bot");
    let writer = gw.connect("bot", &token, Some("writer")).await.unwrap();
    for id in 10..15 {
        assert_eq!(
            writer
                .execute(
                    format!("INSERT INTO {n} VALUES ($1, 'durable_{id}')").as_str(),
                    &[&id]
                )
                .await
                .unwrap(),
            1
        );
    }
    writer
        .simple_query(&format!(
            "UPDATE {n} SET name = 'durable_simple' WHERE id = 10"
        ))
        .await
        .unwrap();
    // No shutdown, no flush: the process dies the moment the last result arrived.
    gw.kill();
    let (raw, _) = audit_events(&gw, "bot");
    for id in 10..15 {
        assert!(
            raw.contains(&format!("durable_{id}")),
            "INSERT {id} returned to the agent but is not in the audit log:\n{raw}"
        );
    }
    assert!(
        raw.contains("durable_simple"),
        "UPDATE returned to the agent but is not in the audit log:\n{raw}"
    );
    let verify = gw.cli(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// DESIGN.md "a guard that always audits": no exit path skips the session's close event,
/// a gateway shutdown included.
#[tokio::test]
async fn sessions_open_at_shutdown_still_get_their_close_event() {
    let mut gw = Gateway::start();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    gw.stop();
    let (raw, events) = audit_events(&gw, "bot");
    let started: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "session_start")
        .filter_map(|e| e["session_id"].as_str())
        .collect();
    assert_eq!(started.len(), 1, "{raw}");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "session_end" && e["session_id"].as_str() == Some(started[0])),
        "the session open at shutdown has no session_end event:\n{raw}"
    );
}
