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
    port: u16,
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
        McpServer { port, child }
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
