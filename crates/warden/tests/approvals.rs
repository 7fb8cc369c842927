//! Issue 10 end to end against the real PostgreSQL on 127.0.0.1:5432: human approval of one
//! exact command (wait and resume modes, denial, timeout, quorum, separation of duties,
//! restart), the signed Slack-compatible webhook, and just-in-time grants that end in live
//! sessions. Approvals are given by the `warden` CLI in another process, as an approver would.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio_postgres::SimpleQueryMessage;

const ANN: &str = "ann@example.com";
const BOB: &str = "bob@example.com";
const CARL: &str = "carl@example.com";
/// Active, but not a configured approver.
const MALLORY: &str = "mallory@example.com";

/// The quickstart policy plus nodes whose writes need approval:
/// `held` (mode from the session, wait by default), `quorum2` (wait, two approvers) and
/// `resumer` (resume by policy). Writes of `reader` stay default-denied (JIT grant tests).
fn policy() -> String {
    let mut p = quickstart_policy();
    p.push_str(
        r#"
@id("approvals-read")
permit(principal, action == Warden::Action::"select", resource in Warden::Target::"test")
when { ["held", "quorum2", "resumer"].contains(context.node) };

@id("held-writes")
@approval("required")
permit(principal, action in [Warden::Action::"insert", Warden::Action::"update"], resource is Warden::Table in Warden::Target::"test")
when { context.node == "held" && resource.schema == "public" };

@id("quorum-writes")
@approval("wait")
@quorum("2")
permit(principal, action in [Warden::Action::"insert", Warden::Action::"update"], resource is Warden::Table in Warden::Target::"test")
when { context.node == "quorum2" && resource.schema == "public" };

@id("resume-writes")
@approval("resume")
permit(principal, action in [Warden::Action::"insert", Warden::Action::"update"], resource is Warden::Table in Warden::Target::"test")
when { context.node == "resumer" && resource.schema == "public" };
"#,
    );
    p
}

/// A gateway with the approvals policy, `extra` lines in `[approvals]`, approvers ann, bob,
/// carl and the owner alice (listed so that only separation of duties refuses her), and the
/// humans activated.
fn gateway_with(extra: &str, env: &[(&str, &str)]) -> Gateway {
    let mut b = Gateway::builder().policy(&policy()).toml(&format!(
        "[approvals]\napprovers = [\"{ANN}\", \"{BOB}\", \"{CARL}\", \"{OWNER}\"]\n{extra}\n"
    ));
    for (k, v) in env {
        b = b.env(k, v);
    }
    let gw = b.start();
    for h in [ANN, BOB, CARL, MALLORY, OWNER] {
        gw.admin(&["human", "activate", h]);
    }
    gw
}

fn gateway() -> Gateway {
    gateway_with("timeout = \"60s\"", &[])
}

/// Blocking work (CLI processes, polling) inside a multi-thread tokio test.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn cli(gw: &Gateway, args: &[&str]) -> std::process::Output {
    blocking(|| gw.cli(args))
}

fn admin(gw: &Gateway, args: &[&str]) -> String {
    blocking(|| gw.admin(args))
}

fn approve(gw: &Gateway, id: &str, who: &str) -> String {
    admin(gw, &["approvals", "approve", id, "--as", who, "--reason", "looks right"])
}

/// `warden approvals approve` that must be refused; returns its stderr.
fn refused_vote(gw: &Gateway, id: &str, who: &str) -> String {
    let out = cli(gw, &["approvals", "approve", id, "--as", who, "--reason", "trying"]);
    assert!(!out.status.success(), "approval of {id} by {who} should be refused; stdout: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn show(gw: &Gateway, id: &str) -> serde_json::Value {
    serde_json::from_str(admin(gw, &["approvals", "show", id, "--json"]).trim()).unwrap()
}

/// The id of the (single) pending command approval of `agent`, once it exists.
fn pending_for(gw: &Gateway, agent: &str) -> String {
    blocking(|| {
        wait_for(Duration::from_secs(10), "a pending approval request", || {
            let list: serde_json::Value = serde_json::from_str(gw.admin(&["approvals", "list", "--status", "pending", "--json"]).trim()).unwrap();
            list.as_array().unwrap().iter().find(|a| a["agent"] == agent && a["kind"] == "command").map(|a| a["id"].as_str().unwrap().to_string())
        })
    })
}

fn audit(gw: &Gateway) -> Vec<serde_json::Value> {
    admin(gw, &["audit", "search", "--json", "--limit", "2000"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn events<'a>(all: &'a [serde_json::Value], kind: &str, approval_id: &str) -> Vec<&'a serde_json::Value> {
    all.iter().filter(|e| e["kind"] == kind && e["approval_id"] == approval_id).collect()
}

/// The `apr_...` / `grq_...` id in a message.
fn approval_id_in(msg: &str) -> String {
    let start = msg.find("apr_").unwrap_or_else(|| panic!("no approval id in {msg:?}"));
    msg[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| error_text(e))
}

/// Expects an error with this SQLSTATE; returns its message.
fn expect_error<T: std::fmt::Debug>(r: Result<T, tokio_postgres::Error>, code: &str, what: &str) -> String {
    match r {
        Ok(v) => panic!("{what}: expected SQLSTATE {code}, got success {v:?}"),
        Err(e) => {
            assert_eq!(sqlstate(&e).as_deref(), Some(code), "{what}: {}", error_text(&e));
            db_message(&e)
        }
    }
}

fn command_tag(msgs: &[SimpleQueryMessage]) -> Option<u64> {
    msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    })
}

async fn count(t: &Table, id: i32) -> i64 {
    direct().await.query_one(&format!("SELECT count(*) FROM {} WHERE id = $1", t.name), &[&id]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_write_is_released_by_an_approval_from_the_cli_and_every_step_is_audited() {
    let t = Table::new("apr_wait").await;
    let gw = gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("held")).await.unwrap();

    let sql = format!("INSERT INTO {} VALUES (4, 'dave') RETURNING id, name", t.name);
    let held = tokio::spawn(async move {
        let r = c.query(&sql, &[]).await.map(|rows| rows.iter().map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1))).collect::<Vec<_>>());
        (c, r)
    });
    let id = pending_for(&gw, "bot");
    assert!(id.starts_with("apr_"), "{id}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "the held statement returned before any approval");
    assert_eq!(t.rows().await, original_rows(), "nothing may run before the approval");
    assert_eq!(show(&gw, &id)["mode"], "wait");

    let out = approve(&gw, &id, ANN);
    assert!(out.contains("approved"), "{out}");
    let (c, r) = tokio::time::timeout(Duration::from_secs(10), held).await.expect("held statement released").unwrap();
    assert_eq!(r.unwrap(), vec![(4, "dave".to_string())], "the client gets the statement's own result");
    assert_eq!(count(&t, 4).await, 1);
    assert_eq!(show(&gw, &id)["status"], "executed");

    // The session goes on normally afterwards.
    let n: i64 = c.query_one(&format!("SELECT count(*) FROM {}", t.name), &[]).await.unwrap().get(0);
    assert_eq!(n, 4);

    let all = blocking(|| {
        wait_for(Duration::from_secs(10), "the statement event carrying the approval id", || {
            let all = audit(&gw);
            all.iter().any(|e| e["kind"] == "statement" && e["approval_id"] == id.as_str()).then_some(all)
        })
    });
    let requested = events(&all, "approval_requested", &id);
    assert_eq!(requested.len(), 1, "{requested:?}");
    assert_eq!(requested[0]["agent"], "bot");
    assert_eq!(requested[0]["owner"], OWNER);
    assert_eq!(requested[0]["node"], "held");
    assert!(requested[0]["statement"].as_str().unwrap().contains("dave"), "{:?}", requested[0]);
    let approved = events(&all, "approval_approved", &id);
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(approved[0]["approver"], ANN);
    assert_eq!(approved[0]["reason"], "looks right");
    assert_eq!(events(&all, "approval_executed", &id).len(), 1);
    let stmt = events(&all, "statement", &id);
    assert_eq!(stmt.len(), 1, "{stmt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_returns_42501_with_the_id_approver_and_reason_and_the_session_stays_usable() {
    let t = Table::new("apr_deny").await;
    let gw = gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("held")).await.unwrap();

    let sql = format!("UPDATE {} SET name = 'mallory' WHERE id = 1", t.name);
    let held = tokio::spawn(async move {
        let r = c.simple_query(&sql).await;
        (c, r)
    });
    let id = pending_for(&gw, "bot");
    let out = admin(&gw, &["approvals", "deny", &id, "--as", BOB, "--reason", "not during the freeze"]);
    assert!(out.contains("denied"), "{out}");
    let (c, r) = tokio::time::timeout(Duration::from_secs(10), held).await.expect("held statement answered").unwrap();
    let msg = expect_error(r, "42501", "denied approval");
    assert!(msg.contains(&id) && msg.contains(BOB) && msg.contains("not during the freeze"), "{msg}");
    assert_eq!(t.rows().await, original_rows());
    assert_eq!(show(&gw, &id)["status"], "denied");

    let rows = c.simple_query(&format!("SELECT id, name FROM {} ORDER BY id", t.name)).await.expect("session usable after a denial");
    assert_eq!(rows.iter().filter(|m| matches!(m, SimpleQueryMessage::Row(_))).count(), 3);

    let all = audit(&gw);
    let denied = events(&all, "approval_denied", &id);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["approver"], BOB);
    assert_eq!(denied[0]["reason"], "not during the freeze");
    assert!(events(&all, "approval_executed", &id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_write_times_out_with_42501_and_cannot_be_approved_afterwards() {
    let t = Table::new("apr_timeout").await;
    let gw = gateway_with("timeout = \"2s\"", &[]);
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("held")).await.unwrap();

    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(15), c.simple_query(&format!("INSERT INTO {} VALUES (9, 'zed')", t.name))).await.expect("the gateway answers after its timeout");
    let waited = started.elapsed();
    let msg = expect_error(r, "42501", "timed-out approval");
    eprintln!("timeout answer after {waited:?}: {msg}");
    let id = approval_id_in(&msg);
    assert!(msg.contains("timed out"), "{msg}");
    assert!(waited >= Duration::from_millis(1900) && waited < Duration::from_secs(6), "answered after {waited:?} with timeout 2s");
    assert_eq!(t.rows().await, original_rows());
    assert_eq!(show(&gw, &id)["status"], "expired");
    let refusal = refused_vote(&gw, &id, ANN);
    assert!(refusal.contains("expired") || refusal.contains("pending"), "{refusal}");
    assert_eq!(t.rows().await, original_rows());
    blocking(|| wait_for(Duration::from_secs(5), "approval_expired audit event", || (!events(&audit(&gw), "approval_expired", &id).is_empty()).then_some(())));
    c.simple_query(&format!("SELECT * FROM {}", t.name)).await.expect("session usable after a timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_mode_runs_the_approved_command_once_and_anything_else_needs_a_new_approval() {
    let t = Table::new("apr_resume").await;
    let gw = gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect_with_options("bot", &token, "-c warden.node=held -c warden.approval=resume").await.unwrap();
    let sql = format!("INSERT INTO {} (id, name) VALUES ($1, $2)", t.name);

    let started = Instant::now();
    let msg = expect_error(c.execute(&sql, &[&10i32, &"ten"]).await, "WA001", "first run");
    assert!(started.elapsed() < Duration::from_secs(3), "resume mode answers at once");
    assert!(msg.contains("approval apr_"), "{msg}");
    let first = approval_id_in(&msg);
    let rec = show(&gw, &first);
    assert_eq!(rec["status"], "pending");
    assert_eq!(rec["mode"], "resume");
    assert_eq!(count(&t, 10).await, 0);

    approve(&gw, &first, ANN);
    assert_eq!(c.execute(&sql, &[&10i32, &"ten"]).await.expect("approved re-run"), 1);
    assert_eq!(count(&t, 10).await, 1);
    assert_eq!(show(&gw, &first)["status"], "executed");

    let msg = expect_error(c.execute(&sql, &[&10i32, &"ten"]).await, "WA001", "second re-run");
    let second = approval_id_in(&msg);
    assert_ne!(second, first, "a second re-run needs a new approval");
    let msg = expect_error(c.execute(&sql, &[&11i32, &"eleven"]).await, "WA001", "changed parameters");
    let third = approval_id_in(&msg);
    assert!(third != first && third != second, "changed parameters need their own approval");
    assert_eq!(count(&t, 10).await, 1);
    assert_eq!(count(&t, 11).await, 0);

    // Approving the changed-parameter request releases that command only.
    approve(&gw, &third, BOB);
    let msg = expect_error(c.execute(&sql, &[&10i32, &"ten"]).await, "WA001", "old parameters after approving new ones");
    assert_ne!(approval_id_in(&msg), third);
    assert_eq!(c.execute(&sql, &[&11i32, &"eleven"]).await.expect("approved changed parameters"), 1);
    assert_eq!(count(&t, 11).await, 1);

    let all = audit(&gw);
    assert_eq!(events(&all, "approval_executed", &first).len(), 1);
    assert_eq!(events(&all, "statement", &first).len(), 1, "the re-run's statement event carries the approval id");

    // @approval("resume") on the policy makes resume mode without any client option.
    let r = gw.connect("bot", &token, Some("resumer")).await.unwrap();
    let msg = expect_error(r.simple_query(&format!("UPDATE {} SET name = 'x' WHERE id = 1", t.name)).await, "WA001", "policy resume mode");
    assert!(msg.contains("approval apr_"), "{msg}");
    assert_eq!(t.rows().await[0], (1, "alice".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_owner_agent_and_non_approver_cannot_approve() {
    let t = Table::new("apr_sod").await;
    let gw = gateway();
    let token = gw.agent_with_token("bot");
    gw.create_agent("helper", OWNER);

    // A command approval (resume mode, so nothing blocks).
    let c = gw.connect_with_options("bot", &token, "-c warden.node=held -c warden.approval=resume").await.unwrap();
    let msg = expect_error(c.simple_query(&format!("UPDATE {} SET name = 'x' WHERE id = 2", t.name)).await, "WA001", "held command");
    let id = approval_id_in(&msg);
    let e = refused_vote(&gw, &id, OWNER);
    assert!(e.contains("owns agent"), "owner: {e}");
    let e = refused_vote(&gw, &id, "bot");
    assert!(e.contains("agent"), "the agent itself: {e}");
    let e = refused_vote(&gw, &id, "helper");
    assert!(e.contains("agents can never approve"), "another agent: {e}");
    let e = refused_vote(&gw, &id, "agent:bot");
    assert!(e.contains("agent"), "the requester (agent:bot): {e}");
    let e = refused_vote(&gw, &id, MALLORY);
    assert!(e.contains("not an approver"), "non-approver: {e}");
    let rec = show(&gw, &id);
    assert_eq!(rec["status"], "pending", "refused votes change nothing: {rec}");
    assert_eq!(rec["votes"].as_array().unwrap().len(), 0, "{rec}");
    approve(&gw, &id, CARL);
    assert_eq!(show(&gw, &id)["status"], "approved");

    // A grant request: its requester cannot approve it.
    let out = admin(&gw, &["grant", "request", "--agent", "bot", "--node", "reader", "--target", "test", "--action", "insert", "--tables", &t.name, "--for", "1m", "--reason", "backfill", "--as", ANN]);
    let grq = out.split_whitespace().find(|w| w.starts_with("grq_")).unwrap().to_string();
    let e = refused_vote(&gw, &grq, ANN);
    assert!(e.contains("submitted request"), "requester: {e}");
    let e = refused_vote(&gw, &grq, OWNER);
    assert!(e.contains("owns agent"), "owner on a grant: {e}");
    assert_eq!(show(&gw, &grq)["status"], "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_of_two_needs_two_distinct_approvers() {
    let t = Table::new("apr_quorum").await;
    let gw = gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("quorum2")).await.unwrap();
    let sql = format!("INSERT INTO {} VALUES (5, 'erin')", t.name);
    let held = tokio::spawn(async move {
        let r = c.simple_query(&sql).await;
        (c, r)
    });
    let id = pending_for(&gw, "bot");
    assert_eq!(show(&gw, &id)["quorum"], 2);
    let out = approve(&gw, &id, ANN);
    assert!(out.contains("1 of 2"), "{out}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.is_finished(), "one approval of two released the statement");
    assert_eq!(count(&t, 5).await, 0);
    let e = refused_vote(&gw, &id, ANN);
    assert!(e.contains("already") || e.contains("voted"), "the same approver twice: {e}");
    assert!(!held.is_finished());

    approve(&gw, &id, BOB);
    let (_c, r) = tokio::time::timeout(Duration::from_secs(10), held).await.expect("released by the second approval").unwrap();
    assert_eq!(command_tag(&r.expect("held insert runs")), Some(1));
    assert_eq!(count(&t, 5).await, 1);
}

/// Requests and approves a JIT grant; returns the grant request id.
fn jit_grant(gw: &Gateway, node: &str, action: &str, table: &str, dur: &str) -> String {
    let out = admin(gw, &["grant", "request", "--agent", "bot", "--node", node, "--target", "test", "--action", action, "--tables", table, "--for", dur, "--reason", "incident 42", "--as", ANN]);
    let grq = out.split_whitespace().find(|w| w.starts_with("grq_")).unwrap_or_else(|| panic!("no grq_ id in {out:?}")).to_string();
    approve(gw, &grq, BOB);
    grq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jit_grant_allows_a_write_and_its_expiry_ends_it_in_a_live_session() {
    let t = Table::new("apr_jit").await;
    let gw = gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let insert = |id: i32| format!("INSERT INTO {} VALUES ({id}, 'jit{id}')", t.name);

    expect_error(c.simple_query(&insert(20)).await, "42501", "write before the grant");
    let granted = Instant::now();
    jit_grant(&gw, "reader", "insert", &t.name, "3s");
    // The gateway notices the store change within its poll interval.
    let mut ok = None;
    for i in 21..60 {
        match c.simple_query(&insert(i)).await {
            Ok(_) => {
                ok = Some(i);
                break;
            }
            Err(e) => assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{}", error_text(&e)),
        }
        assert!(granted.elapsed() < Duration::from_secs(2), "the approved grant did not reach the live session within 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = ok.expect("a write under the grant");
    assert_eq!(count(&t, first).await, 1);

    // Same session, after expiry (at most 3 s after approval).
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(granted.elapsed())).await;
    let msg = expect_error(c.simple_query(&insert(100)).await, "42501", "write after the grant expired");
    assert!(msg.contains("denied"), "{msg}");
    assert_eq!(count(&t, 100).await, 0);
    // Reads under the node's own rights still work.
    c.simple_query(&format!("SELECT * FROM {}", t.name)).await.expect("reads unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_stops_a_live_sessions_writes_within_a_second() {
    let t = Table::new("apr_revoke").await;
    let gw = gateway();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let update = format!("UPDATE {} SET name = 'granted' WHERE id = 1", t.name);

    let grq = jit_grant(&gw, "reader", "update", &t.name, "5m");
    blocking(|| std::thread::sleep(Duration::from_millis(100)));
    let deadline = Instant::now() + Duration::from_secs(3);
    while c.simple_query(&update).await.is_err() {
        assert!(Instant::now() < deadline, "the grant never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grants: serde_json::Value = serde_json::from_str(admin(&gw, &["grant", "list", "--json"]).trim()).unwrap();
    let grant = grants.as_array().unwrap().iter().find(|g| g["approval_id"] == grq.as_str()).expect("the approved grant is listed");
    assert_eq!(grant["state"], "active");
    let grant_id = grant["id"].as_str().unwrap().to_string();

    admin(&gw, &["grant", "revoke", &grant_id]);
    let revoked = Instant::now();
    let took = loop {
        match c.simple_query(&update).await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{}", error_text(&e));
                break revoked.elapsed();
            }
        }
        assert!(revoked.elapsed() < Duration::from_secs(5), "the revoked grant still allows writes after 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(took < Duration::from_millis(1200), "revocation reached the live session after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_survives_a_gateway_restart() {
    let t = Table::new("apr_restart").await;
    let mut gw = gateway();
    let token = gw.agent_with_token("bot");
    let opts = "-c warden.node=held -c warden.approval=resume";
    let sql = format!("INSERT INTO {} (id, name) VALUES ($1, $2)", t.name);
    let id = {
        let c = gw.connect_with_options("bot", &token, opts).await.unwrap();
        approval_id_in(&expect_error(c.execute(&sql, &[&30i32, &"thirty"]).await, "WA001", "before restart"))
    };

    blocking(|| gw.restart());
    assert_eq!(show(&gw, &id)["status"], "pending");
    approve(&gw, &id, ANN);

    let c = gw.connect_with_options("bot", &token, opts).await.unwrap();
    assert_eq!(c.execute(&sql, &[&30i32, &"thirty"]).await.expect("approved re-run after restart"), 1);
    assert_eq!(count(&t, 30).await, 1);
    let msg = expect_error(c.execute(&sql, &[&30i32, &"thirty"]).await, "WA001", "second re-run after restart");
    assert_ne!(approval_id_in(&msg), id);
    assert_eq!(count(&t, 30).await, 1);
}

/// One HTTP request as the test's webhook receiver saw it.
#[derive(Debug)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP/1.1 server answering 200 to every request and reporting each one.
async fn webhook_receiver() -> (u16, tokio::sync::mpsc::UnboundedReceiver<Received>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p;
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_string();
                let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
                let len: usize = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
                let mut body = buf[head_end + 4..].to_vec();
                while body.len() < len {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => body.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                let _ = tx.send(Received { request_line, headers, body });
            });
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_gets_signed_slack_compatible_json_and_the_secret_never_reaches_logs() {
    use hmac::{Hmac, Mac};
    let t = Table::new("apr_hook").await;
    let (port, mut rx) = webhook_receiver().await;
    let secret = format!("whsec-{}", unique("s"));
    let gw = gateway_with(
        &format!("timeout = \"60s\"\nwebhook_url = \"http://127.0.0.1:{port}/hooks/approvals\"\nwebhook_secret_env = \"WARDEN_TEST_WEBHOOK_SECRET\""),
        &[("WARDEN_TEST_WEBHOOK_SECRET", &secret)],
    );
    let token = gw.agent_with_token("bot");
    let c = gw.connect_with_options("bot", &token, "-c warden.node=held -c warden.approval=resume").await.unwrap();
    let msg = expect_error(c.simple_query(&format!("UPDATE {} SET name = 'hooked' WHERE id = 3", t.name)).await, "WA001", "held command");
    let id = approval_id_in(&msg);

    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("the webhook was called within 10 s").unwrap();
    assert!(got.request_line.starts_with("POST /hooks/approvals "), "{got:?}");
    assert!(got.header("content-type").unwrap_or("").starts_with("application/json"), "{got:?}");
    let body: serde_json::Value = serde_json::from_slice(&got.body).expect("a JSON body");
    let text = body["text"].as_str().expect("Slack's `text` field");
    assert!(text.contains(&id) && text.contains("bot"), "{text}");
    assert_eq!(body["approval"]["id"], id.as_str());
    assert_eq!(body["approval"]["agent"], "bot");
    assert_eq!(body["approval"]["mode"], "resume");

    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&got.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(got.header("x-warden-signature"), Some(expected.as_str()), "HMAC-SHA256 of the exact body");

    let all = blocking(|| {
        wait_for(Duration::from_secs(10), "approval_notified audit event", || {
            let all = audit(&gw);
            (!events(&all, "approval_notified", &id).is_empty()).then_some(all)
        })
    });
    let notified = events(&all, "approval_notified", &id);
    assert_eq!(notified[0]["webhook_status"], 200, "{:?}", notified[0]);
    assert!(rx.try_recv().is_err(), "a successful delivery is not retried");

    let stderr = gw.stderr();
    assert!(!stderr.contains(&secret), "the webhook secret appears in the gateway's stderr");
    let audit_text = admin(&gw, &["audit", "search", "--json", "--limit", "2000"]);
    assert!(!audit_text.contains(&secret), "the webhook secret appears in the audit log");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<58} n={:<4} median {:>7.2} ms  p99 {:>7.2} ms  min {:>6.2} ms  max {:>7.2} ms",
        v.len(),
        ms(percentile(&v, 50.0)),
        ms(percentile(&v, 99.0)),
        ms(v[0]),
        ms(v[v.len() - 1])
    );
}

/// Benchmark, not a test: `bench/approval_latency.sh` runs it. N held statements in wait mode
/// released by the `warden approvals approve` CLI, then N released by a direct store vote
/// (what the CLI does, without process start-up and its audit write); for each, the time
/// until the held statement's result reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run bench/approval_latency.sh"]
async fn bench_approval_latency() {
    use warden_store::{ApprovalStatus, ApprovalStore, SqliteStore, Vote};
    let n: usize = std::env::var("APPROVAL_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let t = Table::new("apr_bench").await;
    let gw = gateway();
    let token = gw.agent_with_token("bot");
    let store = SqliteStore::open(gw.data_dir().join("warden.db")).unwrap();
    let mut conn = Some(gw.connect("bot", &token, Some("held")).await.unwrap());
    let (mut cli_start, mut cli_return, mut via_store) = (Vec::new(), Vec::new(), Vec::new());
    let mut before_cli_returned = 0;
    for round in 0..2 * n {
        let c = conn.take().unwrap();
        let sql = format!("INSERT INTO {} VALUES ({}, 'bench')", t.name, 1000 + round);
        let held = tokio::spawn(async move {
            let r = c.simple_query(&sql).await;
            let at = Instant::now();
            (c, r, at)
        });
        let id = blocking(|| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(a) = store.list_approvals(Some(ApprovalStatus::Pending), 10).unwrap().into_iter().next() {
                    return a.id;
                }
                assert!(Instant::now() < deadline, "no pending request");
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        if round < n {
            let t0 = Instant::now();
            let out = blocking(|| gw.cli(&["approvals", "approve", &id, "--as", ANN, "--reason", "bench"]));
            let t1 = Instant::now();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let (c, r, at) = held.await.unwrap();
            r.expect("released statement runs");
            conn = Some(c);
            cli_start.push(at - t0);
            if at < t1 {
                before_cli_returned += 1;
            }
            cli_return.push(at.saturating_duration_since(t1));
        } else {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
            blocking(|| store.vote(&id, &Vote { by: ANN.into(), approve: true, reason: "bench".into(), at: now }).unwrap());
            let t1 = Instant::now();
            let (c, r, at) = held.await.unwrap();
            r.expect("released statement runs");
            conn = Some(c);
            via_store.push(at.saturating_duration_since(t1));
        }
    }
    assert_eq!(direct().await.query_one(&format!("SELECT count(*) FROM {} WHERE name = 'bench'", t.name), &[]).await.unwrap().get::<_, i64>(0), 2 * n as i64);
    println!("\napproval latency, wait mode, {n} approvals each (goal: under 50 ms)");
    summary("approve CLI started -> result at client (incl. process)", cli_start);
    summary("approve CLI returned -> result at client", cli_return);
    println!("  ({before_cli_returned} of {n} results reached the client before the CLI process had exited; counted as 0 ms)");
    summary("direct store vote returned -> result at client", via_store);
}
