//! Session recording and replay (issue 12), end to end against the real PostgreSQL: a
//! session of N statements replays N entries in order with results as the agent saw them
//! (card numbers masked) and every chunk anchored in the verified audit chain; after
//! `kill -9` mid-load the audit loses no write and the recording at most the last second.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const MASKING: &str = r#"
[masking]
columns = [
  { pattern = "*.card_number", method = "keep_last4" },
]
"#;

fn export(gw: &Gateway, id: &str) -> (Value, Vec<Value>) {
    let out = gw.cli(&["sessions", "export", id]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap());
    let header = lines.next().expect("header line");
    (header, lines.collect())
}

fn session_of(gw: &Gateway, agent: &str) -> Value {
    let list: Value = serde_json::from_str(gw.admin(&["sessions", "list", "--agent", agent, "--json"]).trim()).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    list[0].clone()
}

#[tokio::test]
async fn session_of_n_statements_replays_n_entries_in_order_and_chain_verifies() {
    let mut gw = Gateway::builder().toml(MASKING).toml("[recording]\ndefault = \"full\"\nmax_rows = 2\n").start();
    let table = unique("rec_cards");
    direct().await.batch_execute(&format!("CREATE TABLE public.{table} (id int primary key, holder text, card_number text); INSERT INTO public.{table} VALUES (1, 'ann', '4111111111111111'), (2, 'bob', '5105105105105100'), (3, 'cy', '4111111111111111')")).await.unwrap();
    let token = gw.agent_with_token("recorder");
    let c = gw.connect("recorder", &token, Some("reader")).await.unwrap();
    const N: usize = 12;
    for i in 0..N {
        if i % 2 == 0 {
            c.simple_query(&format!("SELECT id, holder, card_number FROM public.{table} WHERE id <= {} ORDER BY id", i % 4 + 1)).await.unwrap();
        } else {
            c.query(&format!("SELECT id, card_number FROM public.{table} WHERE id = $1"), &[&((i % 3 + 1) as i32)]).await.unwrap();
        }
    }
    // One denial is recorded too (no DELETE for readers).
    assert!(c.simple_query(&format!("DELETE FROM public.{table}")).await.is_err());
    let Conn { client, done } = c;
    drop(client);
    let _ = done.await;
    // The gateway writes the end entry when the session closes; a clean stop flushes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.stop();

    let s = session_of(&gw, "recorder");
    assert_eq!(s["level"], "full");
    assert_eq!(s["end_reason"], "client terminated", "{s}");
    let id = s["session_id"].as_str().unwrap();
    let (header, entries) = export(&gw, id);
    assert_eq!(header["verified"], true, "{header}");
    assert_eq!(entries.first().unwrap()["kind"], "start");
    assert_eq!(entries.last().unwrap()["kind"], "end");
    let statements: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "statement").collect();
    assert_eq!(statements.len(), N + 1, "{entries:#?}");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], i as i64, "entries in order");
    }
    let times: Vec<i64> = entries.iter().map(|e| e["at_us"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1] + 1000), "timestamps in order: {times:?}");
    for (i, e) in statements[..N].iter().enumerate() {
        assert_eq!(e["decision"], "allow");
        if i % 2 == 0 {
            assert!(e["sql"].as_str().unwrap().contains("WHERE id <= "), "{e}");
        } else {
            assert!(e["params"].is_array(), "bind values in full recording: {e}");
        }
        assert!(e["columns"].is_array(), "{e}");
    }
    // Results as the agent saw them: masked, and capped at max_rows with the cut marked.
    let text = serde_json::to_string(&entries).unwrap();
    assert!(!text.contains("4111111111111111") && !text.contains("5105105105105100"), "a card number reached the recording");
    assert!(text.contains("1111"), "masked values keep their last 4");
    let big = statements[6]; // id <= 3: three rows, two kept
    assert_eq!(big["rows"], 3);
    assert_eq!(big["result"].as_array().unwrap().len(), 2);
    assert_eq!(big["truncated"], true);
    assert_eq!(statements[N]["decision"], "deny");
    // Replay prints every statement; `show` verifies; the chain verifies.
    let replay = gw.admin(&["sessions", "replay", id, "--speed", "0"]);
    assert_eq!(replay.lines().filter(|l| l.contains("SELECT id")).count(), N, "{replay}");
    gw.admin(&["sessions", "show", id]);
    let verify = gw.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    direct().await.batch_execute(&format!("DROP TABLE public.{table}")).await.unwrap();
}

#[tokio::test]
async fn kill_9_mid_load_loses_no_audit_and_at_most_the_last_second_of_recording() {
    let mut gw = Gateway::builder().toml("[recording]\ndefault = \"metadata\"\n").start();
    let t = Table::new("rec_kill").await;
    let token = gw.agent_with_token("loader");
    let c = gw.connect("loader", &token, Some("writer")).await.unwrap();
    let mut done: Vec<(i32, Instant)> = Vec::new();
    let start = Instant::now();
    let mut i = 100;
    while start.elapsed() < Duration::from_millis(2500) {
        c.simple_query(&format!("INSERT INTO public.{} VALUES ({i}, 'n{i}')", t.name)).await.unwrap();
        done.push((i, Instant::now()));
        i += 1;
    }
    let killed_at = Instant::now();
    gw.kill();
    assert!(done.len() > 20, "too little load: {}", done.len());

    // Every write whose result the client saw is in the audit log (durable before result).
    let audit: Vec<Value> = gw
        .admin(&["audit", "search", "--agent", "loader", "--limit", "10000", "--json"])
        .lines()
        .flat_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|v| if let Value::Array(a) = v { a } else { vec![v] })
        .collect();
    let audited = |id: i32| audit.iter().any(|e| e["kind"] == "statement" && e["statement"].as_str().is_some_and(|s| s.contains(&format!("VALUES ({id},"))));
    for (id, _) in &done {
        assert!(audited(*id), "write {id} lost from the audit log");
    }
    let verify = gw.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));

    // The recording has every statement that finished more than a second before the kill,
    // and what it has verifies against the chain.
    let s = session_of(&gw, "loader");
    let id = s["session_id"].as_str().unwrap();
    let (header, entries) = export(&gw, id);
    assert_eq!(header["verified"], true, "{header}");
    let recorded = |id: i32| entries.iter().any(|e| e["sql"].as_str().is_some_and(|s| s.contains(&format!("VALUES ({id},"))));
    let old: Vec<i32> = done.iter().filter(|(_, at)| killed_at.duration_since(*at) > Duration::from_secs(1)).map(|(id, _)| *id).collect();
    assert!(!old.is_empty());
    for id in &old {
        assert!(recorded(*id), "statement {id}, finished more than 1s before the kill, is missing from the recording");
    }
    eprintln!("{} statements, {} older than 1s, {} recorded", done.len(), old.len(), entries.iter().filter(|e| e["kind"] == "statement").count());
}

#[tokio::test]
async fn auditors_read_the_audit_and_recordings_over_the_admin_api_and_others_cannot() {
    let idp = TestIdp::start();
    let gw = Gateway::builder().toml(MASKING).toml("[recording]\ndefault = \"full\"\n").toml(&idp.config_toml("warden").replace("admin = [\"warden-admins\"]", "admin = [\"warden-admins\"]\nauditor = [\"auditors\"]")).start();
    let table = unique("api_cards");
    direct().await.batch_execute(&format!("CREATE TABLE public.{table} (id int primary key, card_number text); INSERT INTO public.{table} VALUES (1, '4111111111111111')")).await.unwrap();
    let token = gw.agent_with_token("apibot");
    let c = gw.connect("apibot", &token, Some("reader")).await.unwrap();
    c.simple_query(&format!("SELECT id, card_number FROM public.{table}")).await.unwrap();
    assert!(c.simple_query(&format!("DELETE FROM public.{table}")).await.is_err());
    let Conn { client, done } = c;
    drop(client);
    let _ = done.await;
    gw.admin(&["human", "activate", "audrey@example.com"]);
    gw.admin(&["human", "activate", "bob@example.com"]);
    let auditor = idp.token("k1", &idp.claims("audrey@example.com", "warden", &["auditors"], 300));
    let approver = idp.token("k1", &idp.claims("bob@example.com", "warden", &["warden-approvers"], 300));

    let (status, body) = api(&gw, "GET", "/v1/audit?agent=apibot&decision=deny", Some(&auditor), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verification"]["ok"], true, "{body}");
    let events = body["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.iter().all(|e| e["event"]["decision"] == "deny" && e["event"]["agent"] == "apibot"), "{body}");
    assert!(events.iter().any(|e| e["event"]["statement"].as_str().is_some_and(|s| s.starts_with("DELETE"))), "{body}");

    let (status, list) = wait_for(Duration::from_secs(10), "the session's recording", || {
        let (status, list) = api(&gw, "GET", "/v1/sessions?agent=apibot", Some(&auditor), None);
        (list.as_array().is_some_and(|l| l.iter().any(|s| s["end_reason"].is_string()))).then_some((status, list))
    });
    assert_eq!(status, 200);
    let id = list[0]["session_id"].as_str().unwrap().to_string();
    let (status, replay) = wait_for(Duration::from_secs(10), "the session's entries", || {
        let (status, r) = api(&gw, "GET", &format!("/v1/sessions/{id}"), Some(&auditor), None);
        (r["entries"].as_array().is_some_and(|e| e.iter().any(|x| x["kind"] == "end"))).then_some((status, r))
    });
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["verified"], true, "{replay}");
    let text = replay["entries"].to_string();
    assert!(text.contains("1111") && !text.contains("4111111111111111"), "the replay shows masked values only: {text}");

    for path in ["/v1/audit", "/v1/sessions", &format!("/v1/sessions/{id}")] {
        let (status, body) = api(&gw, "GET", path, Some(&approver), None);
        assert_eq!(status, 403, "an approver is not an auditor: {path} {body}");
        let (status, _) = api(&gw, "GET", path, None, None);
        assert_eq!(status, 401, "{path}");
    }
    let (status, _) = api(&gw, "GET", "/v1/sessions/no-such-session", Some(&auditor), None);
    assert_eq!(status, 404);
    let (status, body) = api(&gw, "GET", "/v1/audit?since=yesterday-ish", Some(&auditor), None);
    assert_eq!(status, 400, "{body}");
}
