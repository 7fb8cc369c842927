//! Who may connect: tokens at connect time, revocation of live sessions, the HTTP token
//! exchange, and TLS to the client.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;

/// Connects and expects a refusal; returns the server's SQLSTATE and message.
async fn refused(gw: &Gateway, agent: &str, token: &str, node: Option<&str>) -> (String, String) {
    match gw.connect(agent, token, node).await {
        Ok(_) => panic!("connection as {agent} node {node:?} should have been refused"),
        Err(e) => (
            sqlstate(&e).unwrap_or_else(|| panic!("refusal without SQLSTATE: {}", error_text(&e))),
            error_text(&e),
        ),
    }
}

#[tokio::test]
async fn bad_foreign_and_expired_tokens_are_refused_and_a_pinned_node_cannot_change() {
    let gw = Gateway::start();
    let bot = gw.agent_with_token("bot");
    let other = gw.agent_with_token("other");
    let short = gw.token("bot", None, "1s");
    let pinned = gw.token("bot", Some("reader"), "5m");

    let (code, msg) = refused(&gw, "bot", "not-a-token", Some("reader")).await;
    assert_eq!(code, "28P01", "{msg}");
    // A token whose signature was tampered with.
    let mut forged = bot.clone().into_bytes();
    let last = forged.len() - 3;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let (code, msg) = refused(
        &gw,
        "bot",
        std::str::from_utf8(&forged).unwrap(),
        Some("reader"),
    )
    .await;
    assert_eq!(code, "28P01", "{msg}");
    // Another agent's valid token.
    let (code, msg) = refused(&gw, "bot", &other, Some("reader")).await;
    assert_eq!(code, "28P01", "{msg}");
    assert!(msg.contains("another agent"), "{msg}");
    // The node pin holds.
    let (code, msg) = refused(&gw, "bot", &pinned, Some("writer")).await;
    assert_eq!(code, "28000", "{msg}");
    assert!(msg.contains("pinned") && msg.contains("reader"), "{msg}");
    gw.connect("bot", &pinned, Some("reader"))
        .await
        .expect("the pinned node itself connects");
    gw.connect("bot", &pinned, None)
        .await
        .expect("no node asked: the pinned one applies");
    gw.connect("bot", &bot, Some("writer"))
        .await
        .expect("an unpinned token connects as any node");

    // Expired: the token lived 1 s (whole seconds), so after 2 s it is certainly dead.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (code, msg) = refused(&gw, "bot", &short, Some("reader")).await;
    assert_eq!(code, "28P01", "{msg}");
    assert!(msg.contains("expired"), "{msg}");
}

/// Polls the open session with a query until it fails; returns the time from `since` and
/// everything the client saw (the query's error and the connection's own error).
async fn until_session_ends(c: Conn, since: Instant) -> (Duration, String) {
    let deadline = since + Duration::from_secs(5);
    let (elapsed, query_error) = loop {
        match c.simple_query("SELECT 1").await {
            Ok(_) => {}
            Err(e) => break (since.elapsed(), error_text(&e)),
        }
        assert!(
            Instant::now() < deadline,
            "the session survived the revocation for 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let conn_error = match tokio::time::timeout(Duration::from_secs(5), c.done).await {
        Ok(Ok(Err(e))) => error_text(&e),
        Ok(Ok(Ok(()))) => "connection closed cleanly".into(),
        other => format!("{other:?}"),
    };
    (elapsed, format!("{query_error} / {conn_error}"))
}

#[tokio::test]
async fn suspending_an_agent_ends_its_live_sessions_within_a_second() {
    let gw = Gateway::start();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();

    gw.admin(&["agent", "suspend", "bot"]);
    let (elapsed, seen) = until_session_ends(c, Instant::now()).await;
    println!("agent suspend → client saw the session end after {elapsed:?}: {seen}");
    assert!(
        seen.contains("suspended"),
        "the client should be told why: {seen}"
    );
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");

    let (code, msg) = refused(&gw, "bot", &token, Some("reader")).await;
    assert!(msg.contains("suspended"), "{code} {msg}");
}

#[tokio::test]
async fn deactivating_the_owner_ends_the_agents_live_sessions_within_a_second() {
    let gw = Gateway::start();
    gw.create_agent("bot", "bob@example.com");
    let token = gw.token("bot", None, "5m");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    // Another owner's agent is not affected.
    let bystander_token = gw.agent_with_token("bystander");
    let bystander = gw
        .connect("bystander", &bystander_token, Some("reader"))
        .await
        .unwrap();

    gw.admin(&["human", "deactivate", "bob@example.com"]);
    let (elapsed, seen) = until_session_ends(c, Instant::now()).await;
    println!("human deactivate → client saw the session end after {elapsed:?}: {seen}");
    assert!(
        seen.contains("deactivated"),
        "the client should be told why: {seen}"
    );
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");

    let (_, msg) = refused(&gw, "bot", &token, Some("reader")).await;
    assert!(msg.contains("deactivated"), "{msg}");
    bystander
        .simple_query("SELECT 1")
        .await
        .expect("other owners' agents keep working");
}

#[tokio::test]
async fn a_token_expiring_mid_session_ends_the_session() {
    let gw = Gateway::start();
    gw.create_agent("bot", OWNER);
    // Whole-second expiry: 3 s leaves room to connect on a loaded machine.
    let token = gw.token("bot", None, "3s");
    let issued = Instant::now();
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();

    // Idle past the expiry, then query.
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(issued.elapsed())).await;
    let (elapsed, seen) = until_session_ends(c, Instant::now()).await;
    println!("token expiry → first query after expiry failed after {elapsed:?}: {seen}");
    assert!(
        elapsed < Duration::from_millis(100),
        "the first query after expiry must fail, took {elapsed:?}"
    );
    assert!(seen.contains("expired"), "{seen}");
    let (code, msg) = refused(&gw, "bot", &token, Some("reader")).await;
    assert_eq!(code, "28P01", "{msg}");
}

#[tokio::test]
async fn http_token_exchange_issues_working_tokens_and_refuses_bad_secrets_and_suspended_agents() {
    let t = Table::new("http").await;
    let gw = Gateway::start();
    let secret = gw.create_agent("bot", OWNER);

    let (status, body) = http_post_json(
        gw.admin_port,
        "/v1/token",
        &serde_json::json!({"agent": "bot", "secret": secret, "node": "reader", "ttl": "5m"}),
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = v["token"].as_str().unwrap();
    let c = gw.connect("bot", token, Some("reader")).await.unwrap();
    let rows = c
        .query(&format!("SELECT name FROM {} ORDER BY id", t.name), &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    // The node the token was exchanged for is pinned.
    let (code, _) = refused(&gw, "bot", token, Some("writer")).await;
    assert_eq!(code, "28000");

    let (status, body) = http_post_json(
        gw.admin_port,
        "/v1/token",
        &serde_json::json!({"agent": "bot", "secret": "wdn_es_wrong"}),
    );
    assert_eq!(status, 401, "{body}");
    let (status, body) = http_post_json(
        gw.admin_port,
        "/v1/token",
        &serde_json::json!({"agent": "nobody", "secret": secret}),
    );
    assert_eq!(status, 401, "{body}");

    gw.admin(&["agent", "suspend", "bot"]);
    let (status, body) = http_post_json(
        gw.admin_port,
        "/v1/token",
        &serde_json::json!({"agent": "bot", "secret": secret}),
    );
    assert_eq!(status, 401, "a suspended agent gets no token: {body}");
    assert!(!body.contains(&secret));
}

fn tls_gateway() -> (Gateway, rustls::pki_types::CertificateDer<'static>) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert_pem = cert.cert.pem();
    let gw = Gateway::builder()
        .file("cert.pem", cert_pem.clone())
        .file("key.pem", cert.signing_key.serialize_pem())
        .toml("[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\nrequire = true\n")
        .start();
    (gw, cert.cert.der().clone())
}

#[tokio::test]
async fn with_tls_required_plaintext_is_refused_and_tls_clients_work() {
    let t = Table::new("tls").await;
    let (gw, cert_der) = tls_gateway();
    let token = gw.agent_with_token("bot");

    // Plaintext: refused before the token crosses the wire.
    let (code, msg) = refused(&gw, "bot", &token, Some("reader")).await;
    assert!(msg.contains("TLS"), "{code} {msg}");

    // tokio-postgres over rustls, trusting exactly this certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
    let conn = format!(
        "{} sslmode=require",
        gw.conn_string("bot", &token, "test", Some("reader"))
    );
    let (client, connection) = tokio_postgres::connect(&conn, tls)
        .await
        .expect("TLS client connects");
    tokio::spawn(connection);
    let rows = client
        .query(&format!("SELECT name FROM {} ORDER BY id", t.name), &[])
        .await
        .unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>(),
        ["alice", "bob", "carol"]
    );
    let e = client
        .simple_query(&format!("DELETE FROM {}", t.name))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));

    // psql: sslmode=require works, sslmode=disable is refused with a message about TLS.
    let out = gw.psql("bot", &token, "reader", "sslmode=require", "select 1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gw.psql("bot", &token, "reader", "sslmode=disable", "select 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.rows().await, original_rows());
}

#[tokio::test]
async fn startup_settings_that_change_privileges_are_refused() {
    let gw = Gateway::start();
    let token = gw.agent_with_token("bot");
    for opts in [
        "-c warden.node=reader -c role=postgres",
        "-c warden.node=reader -c search_path=evil",
        "-c session_authorization=postgres",
        "-c warden.nodes=reader",
    ] {
        let conn = format!(
            "host=127.0.0.1 port={} user=bot password='{token}' dbname=test options='{opts}'",
            gw.pg_port
        );
        match connect_str(&conn).await {
            Ok(_) => panic!("options {opts:?} must be refused"),
            Err(e) => assert_eq!(
                sqlstate(&e).as_deref(),
                Some("08P01"),
                "{opts}: {}",
                error_text(&e)
            ),
        }
    }
    // Formatting parameters pass through to the upstream.
    let conn = format!(
        "{} application_name=warden-e2e",
        gw.conn_string("bot", &token, "test", Some("reader"))
    );
    let c = connect_str(&conn).await.unwrap();
    let name = c.simple_query("SHOW application_name").await;
    if let Ok(msgs) = name {
        let v: Vec<_> = msgs
            .iter()
            .filter_map(|m| {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    r.get(0).map(str::to_string)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(v, ["warden-e2e"]);
    }
}
