//! The MCP tool gateway end to end: a real FastMCP server (Python `mcp` SDK, streamable
//! HTTP, `tests/mcp_fixtures/server.py`) started by the test, a real `warden serve` and the
//! SDK's client (`tests/mcp_fixtures/client.py`) through it, plus raw JSON-RPC for what the
//! SDK would never send.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const UPSTREAM_TOKEN: &str = "shop-upstream-token-789";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_fixtures");

const POLICY: &str = r#"
@id("mcp-lookup")
permit(principal, action == Warden::Action::"mcp_tool_call", resource == Warden::Tool::"shop/lookup");

@id("mcp-small-refunds")
permit(principal, action == Warden::Action::"mcp_tool_call", resource == Warden::Tool::"shop/refund")
when { context.node == "billing" && context.arguments has amount && context.arguments.amount <= 100 };

@id("mcp-mid-refunds-held")
@approval("required")
permit(principal, action == Warden::Action::"mcp_tool_call", resource == Warden::Tool::"shop/refund")
when { context.node == "billing" && context.arguments has amount && context.arguments.amount > 100 && context.arguments.amount <= 400 };
"#;

struct McpServer {
    child: Child,
}

impl McpServer {
    fn start(port: u16, variant: &str) -> McpServer {
        let child = Command::new("python3")
            .arg(format!("{FIXTURES}/server.py"))
            .arg(port.to_string())
            .arg(variant)
            .env("SHOP_MCP_TOKEN", UPSTREAM_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with the mcp package (python3 -m pip install 'mcp<2')");
        wait_for(Duration::from_secs(30), "the MCP server to listen", || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        McpServer { child }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(up_port: u16) -> Gateway {
    let toml = format!(
        r#"
[approvals]
approvers = ["bob@example.com"]

[[http.targets]]
name = "shop"
kind = "mcp"
upstream = "http://127.0.0.1:{up_port}"
auth = {{ bearer_env = "SHOP_MCP_TOKEN" }}
"#
    );
    let gw = Gateway::builder().policy(POLICY).toml(&toml).env("SHOP_MCP_TOKEN", UPSTREAM_TOKEN).start_with_http();
    gw.create_agent("bot", "owner@example.com");
    gw.admin(&["human", "activate", "bob@example.com"]);
    gw
}

fn client_cmd(gw: &Gateway, token: &str, node: &str, args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.arg(format!("{FIXTURES}/client.py")).arg(format!("http://127.0.0.1:{}/shop/mcp", gw.http_port())).arg(token).arg(node).args(args);
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn client(gw: &Gateway, token: &str, node: &str, args: &[&str]) -> Value {
    let out = client_cmd(gw, token, node, args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|_| panic!("client {args:?} printed {stdout:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr)))
}

fn pending_approval(gw: &Gateway) -> Option<String> {
    let out = gw.admin(&["approvals", "list", "--status", "pending", "--json"]);
    let v: Value = serde_json::from_str(&out).ok()?;
    v.as_array()?.first()?.get("id")?.as_str().map(str::to_string)
}

fn audit(gw: &Gateway) -> Vec<Value> {
    let rows = gw.admin(&["audit", "search", "--limit", "1000", "--json"]);
    rows.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).flat_map(|v| if let Value::Array(a) = v { a } else { vec![v] }).collect()
}

#[test]
fn mcp_tool_gateway_end_to_end() {
    let port = free_port();
    let mut server = McpServer::start(port, "v1");
    let gw = start(port);
    let token = gw.token("bot", None, "1h");

    // tools/list: delete_all is hidden (no permit); lookup and refund are shown.
    let listed = client(&gw, &token, "billing", &["list"]);
    assert_eq!(listed["tools"], json!(["lookup", "refund"]), "{listed}");
    // Another node may not refund at all: refund hidden.
    let listed = client(&gw, &token, "reader", &["list"]);
    assert_eq!(listed["tools"], json!(["lookup"]), "{listed}");

    // Masked card number in text and structuredContent.
    let r = client(&gw, &token, "billing", &["call", "lookup", r#"{"customer_id": 7}"#]);
    assert_eq!(r["ok"], true, "{r}");
    let text = r["result"].to_string();
    assert!(!text.contains("4111 1111 1111 1111") && !text.contains("4111111111111111"), "card leaked: {text}");
    assert_eq!(r["result"]["structuredContent"]["name"], "Ada", "{r}");
    assert_ne!(r["result"]["structuredContent"]["card"], "4111 1111 1111 1111", "{r}");
    assert!(r["result"]["content"][0]["text"].as_str().unwrap().contains("Ada"), "{r}");

    // Argument-based allow and deny.
    let r = client(&gw, &token, "billing", &["call", "refund", r#"{"amount": 50}"#]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "refunded 50", "{r}");
    let r = client(&gw, &token, "billing", &["call", "refund", r#"{"amount": 500}"#]);
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["code"], -32003, "{r}");
    assert!(r["message"].as_str().unwrap().contains("shop/refund"), "{r}");
    let r = client(&gw, &token, "billing", &["call", "delete_all", "{}"]);
    assert_eq!(r["code"], -32003, "{r}");

    // Resume mode: the error carries the approval id; approved from the CLI, the same call
    // with the same arguments runs once.
    let r = client(&gw, &token, "billing", &["call", "refund", r#"{"amount": 300}"#, "resume"]);
    assert_eq!(r["code"], -32004, "{r}");
    let id = r["data"]["warden"]["approval_id"].as_str().unwrap_or_else(|| panic!("no approval id: {r}")).to_string();
    let r2 = client(&gw, &token, "billing", &["call", "refund", r#"{"amount": 299}"#, "resume"]);
    assert_eq!(r2["code"], -32004, "other arguments are another approval: {r2}");
    gw.admin(&["approvals", "approve", &id, "--as", "bob@example.com", "--reason", "customer called"]);
    let r = client(&gw, &token, "billing", &["call", "refund", r#"{"amount": 300}"#, "resume"]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "refunded 300", "{r}");
    let r = client(&gw, &token, "billing", &["call", "refund", r#"{"amount": 300}"#, "resume"]);
    assert_eq!(r["code"], -32004, "an approval runs once: {r}");

    // Wait mode: the call is held until a human approves from the CLI.
    while let Some(id) = pending_approval(&gw) {
        gw.admin(&["approvals", "deny", &id, "--as", "bob@example.com", "--reason", "cleanup"]);
    }
    let held = client_cmd(&gw, &token, "billing", &["call", "refund", r#"{"amount": 250}"#, "wait"]).spawn().unwrap();
    let id = wait_for(Duration::from_secs(30), "a pending approval", || pending_approval(&gw));
    gw.admin(&["approvals", "approve", &id, "--as", "bob@example.com", "--reason", "ok"]);
    let out = held.wait_with_output().unwrap();
    let r: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("")).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(r["result"]["content"][0]["text"], "refunded 250", "{r}");

    // Raw JSON-RPC the SDK would never send: refused with JSON-RPC errors (fail closed).
    let hp = gw.http_port();
    let auth = format!("Bearer {token}");
    let h = [("Authorization", auth.as_str()), ("content-type", "application/json"), ("accept", "application/json, text/event-stream")];
    let (status, body) = http_request(hp, "POST", "/shop/mcp", &h, Some("{not json"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], -32700, "{body}");
    let (status, body) = http_request(hp, "POST", "/shop/mcp", &h, Some(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#));
    assert_eq!(status, 400, "{body}");
    let (_, body) = http_request(hp, "POST", "/shop/mcp", &h, Some(r#"{"jsonrpc":"2.0","id":9,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (json!(9), json!(-32601)), "{body}");
    let (status, _) = http_request(hp, "POST", "/shop/mcp", &[("content-type", "application/json")], Some(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#));
    assert_eq!(status, 401);

    // Audit: server, tool, argument digest, decision, approver, masked counts.
    let events = audit(&gw);
    let calls: Vec<&Value> = events.iter().filter(|e| e["kind"] == "mcp_tool_call").collect();
    assert!(calls.iter().any(|e| e["decision"] == "deny" && e["statement"] == "tools/call shop/refund"), "{calls:?}");
    let approved = calls.iter().find(|e| e["extra"]["approved_by"] == "bob@example.com" || e["approved_by"] == "bob@example.com");
    assert!(approved.is_some(), "no approver in {calls:?}");
    assert!(calls.iter().any(|e| e.to_string().contains("\"masked\"")), "no masked counts in {calls:?}");
    assert!(!events.iter().any(|e| e.to_string().contains("4111")), "card in the audit log");

    // Poisoned description: the upstream restarts with a changed refund description. The
    // tool is hidden and calls are refused until an admin re-approves it.
    server.stop();
    let _server2 = McpServer::start(port, "poisoned");
    let listed = client(&gw, &token, "billing", &["list"]);
    assert_eq!(listed["tools"], json!(["lookup"]), "{listed}");
    let r = client(&gw, &token, "billing", &["call", "refund", r#"{"amount": 50}"#]);
    assert_eq!(r["code"], -32006, "{r}");
    let pins = gw.admin(&["mcp", "tools", "list", "--json"]);
    let pins: Value = serde_json::from_str(&pins).unwrap();
    let refund = pins.as_array().unwrap().iter().find(|p| p["tool"] == "refund").unwrap().clone();
    assert_eq!(refund["changed"], true, "{refund}");
    assert!(refund["seen"]["description"].as_str().unwrap().contains("id_rsa"), "{refund}");
    gw.admin(&["mcp", "tools", "approve", "shop", "refund", "--as", "bob@example.com"]);
    std::thread::sleep(Duration::from_millis(600));
    let r = client(&gw, &token, "billing", &["call", "refund", r#"{"amount": 50}"#]);
    assert_eq!(r["ok"], true, "{r}");
    let listed = client(&gw, &token, "billing", &["list"]);
    assert_eq!(listed["tools"], json!(["lookup", "refund"]), "{listed}");
}

/// A minimal streamable-HTTP MCP upstream in the test process: `lookup` answers at once,
/// `slow` takes 30 s (only the gateway can end it early).
async fn start_jsonrpc_upstream() -> u16 {
    async fn handle(body: axum::body::Bytes) -> axum::response::Response {
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let id = req["id"].clone();
        let schema = json!({"type": "object", "properties": {}});
        let result = match req["method"].as_str().unwrap_or("") {
            "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "shop", "version": "1"}}),
            "tools/list" => json!({"tools": [{"name": "lookup", "description": "Look a customer up", "inputSchema": schema}, {"name": "slow", "description": "A long report", "inputSchema": schema}, {"name": "query", "description": "Run SQL", "inputSchema": schema}]}),
            "tools/call" if req["params"]["name"] == "slow" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                json!({"content": [{"type": "text", "text": "report done"}]})
            }
            "tools/call" if req["params"]["name"] == "query" => json!({"content": [{"type": "text", "text": format!("ran {}", req["params"]["arguments"]["sql"])}]}),
            "tools/call" => json!({"content": [{"type": "text", "text": "Ada"}]}),
            _ => json!({}),
        };
        axum::response::Response::builder().header("content-type", "application/json").body(axum::body::Body::from(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())).unwrap()
    }
    let app = axum::Router::new().route("/mcp", axum::routing::post(handle));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

async fn rpc(port: u16, token: &str, method: &str, params: Value) -> (u16, Value) {
    let (status, text) = rpc_raw(port, token, method, params).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

/// A JSON-RPC request as node `billing`; the answer's status and body as they came.
async fn rpc_raw(port: u16, token: &str, method: &str, params: Value) -> (u16, String) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let auth = format!("Bearer {token}");
    tokio::task::spawn_blocking(move || {
        let h = [("Authorization", auth.as_str()), ("content-type", "application/json"), ("accept", "application/json, text/event-stream"), ("x-warden-node", "billing")];
        http_request(port, "POST", "/shop/mcp", &h, Some(&body))
    })
    .await
    .unwrap()
}

/// Issues 11 and 15 on the MCP path: a tool call needs an approved graph version whose
/// manifest lists the tool, and a call in flight is cut within a second of the owner's
/// deactivation, with later calls refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mcp_graph_versions_cap_tools_and_deactivation_cuts_a_live_call() {
    let up = start_jsonrpc_upstream().await;
    let toml = format!("[approvals]\napprovers = [\"bob@example.com\"]\n\n[[http.targets]]\nname = \"shop\"\nkind = \"mcp\"\nupstream = \"http://127.0.0.1:{up}\"\n");
    let policy = r#"
@id("mcp-billing")
permit(principal, action == Warden::Action::"mcp_tool_call", resource in Warden::Target::"shop") when { context.node == "billing" };
"#;
    let gw = Gateway::builder().policy(policy).toml(&toml).start_with_http();
    gw.create_agent("bot", OWNER);
    gw.admin(&["human", "activate", "bob@example.com"]);
    let hp = gw.http_port();
    let gv_token = |gv: &str| gw.admin(&["token", "issue", "--agent", "bot", "--ttl", "5m", "--graph-version", gv]).trim().to_string();
    let call = |name: &str| json!({"name": name, "arguments": {}});

    let (_, v) = rpc(hp, &gv_token("v404"), "tools/call", call("lookup")).await;
    let msg = v["error"]["message"].as_str().unwrap_or_default().to_string();
    assert_eq!(v["error"]["code"], -32003, "{v}");
    assert!(msg.contains("graph version v404") && msg.contains("unknown") && msg.contains("warden graph submit"), "{msg}");

    let file = gw.data_dir().join("mcp-manifest.json");
    std::fs::write(&file, json!({"graph_id": "support", "digest": "m1", "nodes": ["billing"], "privileges": {"billing": [{"target": "shop", "tools": ["lookup"]}]}}).to_string()).unwrap();
    let out = gw.admin(&["graph", "submit", "--agent", "bot", "--file", file.to_str().unwrap()]);
    let id = out.split_whitespace().nth(2).unwrap().to_string();
    let token = gv_token("m1");
    let (_, v) = rpc(hp, &token, "tools/call", call("lookup")).await;
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("pending review"), "{v}");
    gw.admin(&["graph", "approve", &id, "--as", "bob@example.com", "--reason", "reviewed"]);
    let v = wait_for_async(|| rpc(hp, &token, "tools/call", call("lookup"))).await;
    assert_eq!(v["result"]["content"][0]["text"], "Ada", "approved version works: {v}");
    let (_, v) = rpc(hp, &token, "tools/list", json!({})).await;
    let names: Vec<&str> = v["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["lookup"], "tools/list shows only what the manifest lists: {v}");
    // Policy allows every shop tool for billing; the manifest asked for lookup only.
    let (_, v) = rpc(hp, &token, "tools/call", call("slow")).await;
    let msg = v["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("tool \"shop/slow\"") && msg.contains("not in the approved manifest of graph version m1"), "{v}");

    // A live call: no graph version (none required here), the slow tool.
    let plain = gw.token("bot", None, "5m");
    let p2 = plain.clone();
    let in_flight = tokio::spawn(async move {
        let r = rpc(hp, &p2, "tools/call", json!({"name": "slow", "arguments": {}})).await;
        (r, std::time::Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!in_flight.is_finished(), "the slow call is in flight");
    let g = &gw;
    let returned = tokio::task::block_in_place(|| {
        g.admin(&["human", "deactivate", OWNER]);
        std::time::Instant::now()
    });
    let ((status, v), ended) = tokio::time::timeout(Duration::from_secs(5), in_flight).await.expect("the call must be cut").unwrap();
    let after = ended.saturating_duration_since(returned);
    println!("human deactivate: MCP call cut {after:?} after the command returned");
    assert!(after < Duration::from_secs(1), "{after:?}");
    assert_eq!(status, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("deactivated") && v["error"]["data"]["warden"]["error"] == "revoked", "{v}");
    let (status, _) = rpc_status(hp, &plain).await;
    assert_eq!(status, 403, "new calls are refused");
    let audit = gw.admin(&["audit", "search", "--json", "--limit", "1000"]);
    assert!(audit.contains("\"graph_version\":\"m1\""), "MCP events carry the graph version");
}

/// Issue 14: a tool that runs SQL is allowed only with a statement the PostgreSQL
/// classifier reads as a plain SELECT (`context.sql_read_only`); writes, statements hidden
/// after a `;`, side-effecting functions and SQL that does not parse are refused before the
/// upstream sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mcp_sql_tools_run_only_statements_the_classifier_reads_as_read_only() {
    let up = start_jsonrpc_upstream().await;
    let toml = format!("[[http.targets]]\nname = \"shop\"\nkind = \"mcp\"\nupstream = \"http://127.0.0.1:{up}\"\nsql_arguments = {{ query = \"sql\" }}\n");
    let policy = r#"
@id("read-only-sql")
permit(principal, action == Warden::Action::"mcp_tool_call", resource == Warden::Tool::"shop/query") when { context.sql_read_only };
"#;
    let gw = Gateway::builder().policy(policy).toml(&toml).start_with_http();
    gw.create_agent("bot", OWNER);
    let token = gw.token("bot", None, "5m");
    let hp = gw.http_port();
    let query = |sql: &str| json!({"name": "query", "arguments": {"sql": sql}});
    for sql in ["SELECT name FROM customers WHERE id = 1", "WITH c AS (SELECT * FROM customers) SELECT count(*) FROM c"] {
        let (_, v) = rpc(hp, &token, "tools/call", query(sql)).await;
        assert_eq!(v["result"]["content"][0]["text"], format!("ran \"{sql}\""), "{sql}: {v}");
    }
    for sql in [
        "DELETE FROM customers",
        "SELECT 1; DELETE FROM customers",
        "WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d",
        "SELECT pg_terminate_backend(42)",
        "SELECT * FROM customers FOR UPDATE",
        "SELEC name FROM customers",
        "",
    ] {
        let (_, v) = rpc(hp, &token, "tools/call", query(sql)).await;
        assert!(v["result"].is_null() && v["error"]["code"] == -32003, "{sql:?} must be refused: {v}");
    }
    let (_, v) = rpc(hp, &token, "tools/call", json!({"name": "query", "arguments": {"sql": 42}})).await;
    assert!(v["result"].is_null(), "a non-string SQL argument is not read-only: {v}");
    let audit = gw.admin(&["audit", "search", "--json", "--limit", "1000"]);
    assert!(!audit.contains("DELETE FROM customers"), "arguments appear as digests only");
}

/// Issue 14: the upstream credential can be an OAuth client-credentials token. Warden
/// fetches it with its client secret (HTTP Basic), caches it across calls, fetches a fresh
/// one after the upstream answers 401, and refuses the call (never forwards it bare) when
/// the token endpoint is down. The secret and the tokens never reach the agent, the audit or
/// the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mcp_upstream_credentials_come_from_an_oauth_client_credentials_grant() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const SECRET: &str = "cc-secret-5f1e2d9a";
    let issued = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(std::sync::Mutex::new(String::new()));
    let token_app = {
        let issued = issued.clone();
        axum::Router::new().route(
            "/oauth/token",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let issued = issued.clone();
                async move {
                    use base64::Engine;
                    let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("shop-gw:{SECRET}")));
                    let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str());
                    if !ok || !body.contains("grant_type=client_credentials") || !body.contains("scope=tools") || body.contains(SECRET) {
                        return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                    }
                    let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                    (axum::http::StatusCode::OK, json!({"access_token": format!("at-{n}-opaque"), "token_type": "Bearer", "expires_in": 3600}).to_string())
                }
            }),
        )
    };
    let tl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_port = tl.local_addr().unwrap().port();
    let token_server = tokio::spawn(async move { axum::serve(tl, token_app).await.unwrap() });

    let upstream_app = {
        let refused = refused.clone();
        axum::Router::new().route(
            "/mcp",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let refused = refused.clone();
                async move {
                    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    if !auth.starts_with("Bearer at-") || *refused.lock().unwrap() == auth {
                        return axum::http::Response::builder().status(401).body(axum::body::Body::empty()).unwrap();
                    }
                    let result = match req["method"].as_str().unwrap_or("") {
                        "tools/list" => json!({"tools": [{"name": "lookup", "description": "Look a customer up", "inputSchema": {"type": "object"}}]}),
                        _ => json!({"content": [{"type": "text", "text": format!("seen {auth}")}]}),
                    };
                    axum::http::Response::builder().header("content-type", "application/json").body(axum::body::Body::from(json!({"jsonrpc": "2.0", "id": req["id"], "result": result}).to_string())).unwrap()
                }
            }),
        )
    };
    let ul = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = ul.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(ul, upstream_app).await.unwrap() });

    let toml = format!(
        "[[http.targets]]\nname = \"shop\"\nkind = \"mcp\"\nupstream = \"http://127.0.0.1:{up}\"\n[http.targets.auth]\noauth_token_url = \"http://127.0.0.1:{token_port}/oauth/token\"\noauth_client_id = \"shop-gw\"\noauth_client_secret_env = \"SHOP_CC_SECRET\"\noauth_scope = \"tools\"\n"
    );
    let policy = r#"
@id("mcp-billing")
permit(principal, action == Warden::Action::"mcp_tool_call", resource in Warden::Target::"shop") when { context.node == "billing" };
"#;
    let gw = Gateway::builder().policy(policy).toml(&toml).env("SHOP_CC_SECRET", SECRET).start_with_http();
    gw.create_agent("bot", OWNER);
    let token = gw.token("bot", None, "5m");
    let hp = gw.http_port();
    let call = json!({"name": "lookup", "arguments": {}});
    for _ in 0..3 {
        let (_, v) = rpc(hp, &token, "tools/call", call.clone()).await;
        assert_eq!(v["result"]["content"][0]["text"], "seen Bearer at-1-opaque", "{v}");
    }
    assert_eq!(issued.load(Ordering::SeqCst), 1, "one token serves every call until it nears expiry");

    // The upstream stops accepting the token: that call fails, the next one gets a new token.
    *refused.lock().unwrap() = "Bearer at-1-opaque".into();
    assert_eq!(rpc_raw(hp, &token, "tools/call", call.clone()).await.0, 401, "the upstream's refusal reaches the agent");
    let (_, v) = rpc(hp, &token, "tools/call", call.clone()).await;
    assert_eq!(v["result"]["content"][0]["text"], "seen Bearer at-2-opaque", "{v}");

    // The token endpoint goes away and the token is refused again: no bare forward.
    token_server.abort();
    let _ = token_server.await;
    *refused.lock().unwrap() = "Bearer at-2-opaque".into();
    assert_eq!(rpc_raw(hp, &token, "tools/call", call.clone()).await.0, 401);
    let (status, v) = rpc(hp, &token, "tools/call", call.clone()).await;
    assert_eq!(status, 502, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("no credential for the upstream of target \"shop\"") && msg.contains("token endpoint"), "{v}");

    let audit = gw.admin(&["audit", "search", "--json", "--limit", "1000"]);
    assert!(audit.contains("upstream_credential"), "the refused call is audited");
    for needle in [SECRET, "at-1-opaque", "at-2-opaque"] {
        assert!(!audit.contains(needle), "{needle} in the audit");
        assert!(!gw.stderr().contains(needle), "{needle} in the log");
        assert!(!msg.contains(needle), "{needle} in the error");
    }
}

async fn rpc_status(port: u16, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    tokio::task::spawn_blocking(move || {
        let h = [("Authorization", auth.as_str()), ("content-type", "application/json")];
        http_request(port, "POST", "/shop/mcp", &h, Some(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"lookup","arguments":{}}}"#))
    })
    .await
    .unwrap()
}

/// Retries an RPC until it answers a result (the gateway drops its cached graph lookups
/// within one epoch poll of the approval).
async fn wait_for_async<F: std::future::Future<Output = (u16, Value)>>(mut f: impl FnMut() -> F) -> Value {
    let mut last = Value::Null;
    for _ in 0..40 {
        let (_, v) = f().await;
        if v.get("result").is_some() {
            return v;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no result: {last}");
}
