//! The HTTP and LLM gateway end to end: a real `warden serve`, a local upstream started by
//! the test (a JSON service and an OpenAI-compatible fake model that streams SSE), reqwest
//! and raw TCP clients.

mod common;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CARD: &str = "4111 1111 1111 1111";
const UPSTREAM_TOKEN: &str = "upstream-secret-token-123";
const AI_KEY: &str = "sk-upstream-ai-key-456";

/// What the upstream saw: (method, path with query, authorization, x-api-key, any x-warden header).
type Seen = Arc<Mutex<Vec<(String, String, String, String, bool)>>>;

struct Upstream {
    port: u16,
    seen: Seen,
}

impl Upstream {
    fn paths(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().map(|s| format!("{} {}", s.0, s.1)).collect()
    }
}

/// Bodies of the model requests the fake provider received (nextest runs each test in a
/// process of its own).
static MODEL_REQUESTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

async fn upstream_handler(State(seen): State<Seen>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let h = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let path = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let warden_header = parts.headers.keys().any(|k| k.as_str().starts_with("x-warden"));
    seen.lock().unwrap().push((parts.method.to_string(), path.clone(), h("authorization"), h("x-api-key"), warden_header));
    let method = parts.method.clone();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let json_resp = |v: Value| Response::builder().header("content-type", "application/json").body(Body::from(v.to_string())).unwrap();
    let p = path.split('?').next().unwrap_or("");
    if p.starts_with("/customers/") {
        return json_resp(json!({"id": 1, "name": "Ada", "card": CARD, "note": format!("paid with {}", CARD.replace(' ', "")), "ssn": "anything"}));
    }
    if p == "/refunds" && method == "POST" {
        return json_resp(json!({"refunded": true}));
    }
    if p == "/compressed" {
        return Response::builder().header("content-type", "application/json").header("content-encoding", "gzip").body(Body::from(vec![0x1f, 0x8b, 0, 1, 2])).unwrap();
    }
    if p == "/badjson" {
        return Response::builder().header("content-type", "application/json").body(Body::from(format!("{{\"card\": \"{CARD}\""))).unwrap();
    }
    if p == "/binary" {
        return Response::builder().header("content-type", "application/octet-stream").body(Body::from(CARD)).unwrap();
    }
    if p == "/v1/chat/completions" {
        MODEL_REQUESTS.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if req["stream"] == true && req["messages"][0]["content"] == "talk forever" {
            // One event every 50 ms for a minute: only the gateway can end it early.
            let stream = futures_util::stream::unfold(0u32, |i| async move {
                if i >= 1200 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                let v = json!({"id": "c3", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hello world. "}, "finish_reason": null}]});
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(format!("data: {v}\n\n"))), i + 1))
            });
            return Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap();
        }
        if req["stream"] == true {
            // The card is split across two events, in the middle of a group.
            let pieces = ["Your card ", "is 4111 11", "11 1111 1111", ", keep it safe."];
            let mut sse = String::new();
            for p in pieces {
                let v = json!({"id": "c1", "object": "chat.completion.chunk", "model": req["model"], "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]});
                sse.push_str(&format!("data: {v}\n\n"));
            }
            let fin = json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
            sse.push_str(&format!("data: {fin}\n\n"));
            if req["stream_options"]["include_usage"] == true {
                sse.push_str(&format!("data: {}\n\n", json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}})));
            }
            sse.push_str("data: [DONE]\n\n");
            // Sent in small pieces so event boundaries and TCP writes differ.
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = sse.as_bytes().chunks(7).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
            let stream = futures_util::stream::unfold(chunks.into_iter(), |mut it| async move {
                let next = it.next()?;
                tokio::time::sleep(Duration::from_millis(2)).await;
                Some((next, it))
            });
            return Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        return json_resp(json!({"id": "c2", "object": "chat.completion", "model": req["model"], "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("card {CARD}")}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}}));
    }
    json_resp(json!({"path": p}))
}

async fn start_upstream() -> Upstream {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new().fallback(upstream_handler).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Upstream { port, seen }
}

const POLICY: &str = r#"
@id("crm-reader-gets")
permit(principal, action == Warden::Action::"http_request", resource is Warden::Route in Warden::Target::"crm")
when { context.node == "reader" && resource.method == "GET" };

@id("crm-refunds-need-approval")
@approval("required")
permit(principal, action == Warden::Action::"http_request", resource is Warden::Route in Warden::Target::"crm")
when { resource.method == "POST" && resource.path == "/refunds" };

@id("crm-no-admin")
forbid(principal, action == Warden::Action::"http_request", resource is Warden::Route)
when { resource.path like "/admin*" };

@id("ai-allowed-models")
permit(principal in Warden::Agent::"bot", action == Warden::Action::"llm_call", resource in Warden::Target::"ai")
when { ["small", "big"].contains(resource.name) };
"#;

fn start_gateway(up: &Upstream, run_budget_tokens: Option<u64>) -> Gateway {
    start_gateway_with(up, run_budget_tokens, "")
}

fn start_gateway_with(up: &Upstream, run_budget_tokens: Option<u64>, extra_toml: &str) -> Gateway {
    let budget = run_budget_tokens.map(|n| format!("budgets = {{ per_run_tokens = {n} }}\n")).unwrap_or_default();
    let toml = format!(
        r#"
[approvals]
approvers = ["bob@example.com"]

[[http.targets]]
name = "crm"
kind = "http"
upstream = "http://127.0.0.1:{port}"
auth = {{ bearer_env = "CRM_TOKEN" }}
mask_fields = ["$.ssn"]

[[http.targets]]
name = "ai"
kind = "llm"
upstream = "http://127.0.0.1:{port}"
auth = {{ header = "x-api-key", value_env = "AI_KEY" }}
{budget}
[http.targets.models.small]
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0

[http.targets.models.big]
input_usd_per_mtok = 10.0
output_usd_per_mtok = 30.0
high_cost = true
"#,
        port = up.port
    );
    let gw = Gateway::builder().policy(POLICY).toml(&toml).toml(extra_toml).env("WARDEN_TEST_SCIM_TOKEN", SCIM_TOKEN).env("CRM_TOKEN", UPSTREAM_TOKEN).env("AI_KEY", AI_KEY).start_with_http();
    gw.create_agent("bot", OWNER);
    gw
}

/// Reads an SSE response into `text` until Warden's `event: error` (the cut); panics if
/// the stream runs on for 5 s instead.
async fn read_until_error_event(r: &mut reqwest::Response, text: &mut String) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = r.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("event: error") {
                break;
            }
        }
    })
    .await
    .expect("the stream must be cut, not run on");
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(64).build().unwrap()
}

/// A raw HTTP/1.1 exchange; returns (status, whole response text).
fn raw(port: u16, request: &str) -> (u16, String) {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf);
    let resp = String::from_utf8_lossy(&buf).to_string();
    let status = resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allowed_denied_and_the_upstream_sees_only_warden_credentials() {
    let up = start_upstream().await;
    let gw = start_gateway(&up, None);
    let token = gw.token("bot", None, "5m");
    let base = format!("http://127.0.0.1:{}", gw.http_port());
    let c = client();

    // Allowed: a reader GETs a customer; the card is masked, the field rule redacts ssn.
    let r = c.get(format!("{base}/crm/customers/1?expand=all")).bearer_auth(&token).header("x-warden-node", "reader").header("x-warden-run", "run-1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(!body.contains(CARD) && !body.contains("4111111111111111"), "card leaked: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], "Ada");
    assert_eq!(v["ssn"], "[REDACTED:field]");
    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, "/customers/1?expand=all");
    assert_eq!(seen[0].2, format!("Bearer {UPSTREAM_TOKEN}"), "upstream must see Warden's credential, not the agent token");
    assert!(!seen[0].4, "x-warden-* headers must not reach the upstream");

    // Denied by default: a writer, a DELETE; denied by a forbid: /admin.
    for (method, path, node, rule) in [("GET", "/crm/customers/1", "writer", "default deny"), ("DELETE", "/crm/customers/1", "reader", "default deny"), ("GET", "/crm/admin/users", "reader", "crm-no-admin")] {
        let r = c.request(method.parse().unwrap(), format!("{base}{path}")).bearer_auth(&token).header("x-warden-node", node).send().await.unwrap();
        assert_eq!(r.status(), 403, "{method} {path} as {node}");
        let v: Value = r.json_like().await;
        assert_eq!(v["error"], "denied");
        assert!(v["message"].as_str().unwrap().contains(rule), "{v}");
    }
    // No token, a bad token, an unknown target.
    assert_eq!(c.get(format!("{base}/crm/customers/1")).send().await.unwrap().status(), 401);
    assert_eq!(c.get(format!("{base}/crm/customers/1")).bearer_auth("nope").send().await.unwrap().status(), 401);
    assert_eq!(c.get(format!("{base}/nowhere/x")).bearer_auth(&token).send().await.unwrap().status(), 404);
    // A token pinned to a node wins over the header.
    let pinned = gw.token("bot", Some("writer"), "5m");
    let r = c.get(format!("{base}/crm/customers/1")).bearer_auth(&pinned).header("x-warden-node", "reader").send().await.unwrap();
    assert_eq!(r.status(), 403);

    // Responses masking cannot handle are refused, never passed through.
    for p in ["/crm/compressed", "/crm/badjson", "/crm/binary"] {
        let r = c.get(format!("{base}{p}")).bearer_auth(&token).header("x-warden-node", "reader").send().await.unwrap();
        assert_eq!(r.status(), 502, "{p}");
        let body = r.text().await.unwrap();
        assert!(body.contains("unmaskable") && !body.contains("4111"), "{p}: {body}");
    }
    assert_eq!(up.paths().len(), 4, "only the allowed requests reached the upstream: {:?}", up.paths());
}

trait JsonLike {
    async fn json_like(self) -> Value;
}

impl JsonLike for reqwest::Response {
    async fn json_like(self) -> Value {
        let t = self.text().await.unwrap();
        serde_json::from_str(&t).unwrap_or_else(|_| panic!("not JSON: {t}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn path_normalization_bypass_attempts_are_resolved_or_refused() {
    let up = start_upstream().await;
    let gw = start_gateway(&up, None);
    let token = gw.token("bot", None, "5m");
    let port = gw.http_port();
    let get = |path: &str| raw(port, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Warden-Node: reader\r\nConnection: close\r\n\r\n"));
    // Resolved to /admin/... and denied by the forbid.
    for p in ["/crm/customers/../admin/users", "/crm/customers/%2e%2e/admin/users", "/crm/customers/%2E%2E/admin/users", "/crm//admin/users", "/crm/admin;x=1/users", "/crm/./admin/users", "/crm/%61dmin/users"] {
        let (status, resp) = get(p);
        assert_eq!(status, 403, "{p}: {resp}");
        assert!(resp.contains("crm-no-admin"), "{p}: {resp}");
    }
    // Ambiguous: refused with 400.
    for p in ["/crm/customers/%252e%252e/admin/users", "/crm/customers/..%2fadmin/users", "/crm/customers/%5c..%5cadmin", "/crm/../../admin", "/crm/a%00b", "/crm/%zz"] {
        let (status, resp) = get(p);
        assert_eq!(status, 400, "{p}: {resp}");
    }
    assert!(up.paths().iter().all(|p| !p.contains("admin")), "an admin path reached the upstream: {:?}", up.paths());
    // The normalized path is what the upstream receives.
    let (status, _) = get("/crm/customers/x/../1");
    assert_eq!(status, 200);
    assert_eq!(up.paths(), vec!["GET /customers/1".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smuggling_attempts_get_400_and_nothing_reaches_the_upstream() {
    let up = start_upstream().await;
    let gw = start_gateway(&up, None);
    let token = gw.token("bot", None, "5m");
    let port = gw.http_port();
    let auth = format!("Authorization: Bearer {token}\r\nX-Warden-Node: reader\r\n");
    let cases = [
        ("CL+TE", format!("POST /crm/refunds HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /crm/customers/1 HTTP/1.1\r\nHost: x\r\n{auth}\r\n"), 400),
        ("TE+CL", format!("GET /crm/customers/1 HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"), 400),
        ("duplicate CL", format!("GET /crm/customers/1 HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nContent-Length: 0\r\n\r\n"), 400),
        ("conflicting CL", format!("GET /crm/customers/1 HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nContent-Length: 5\r\n\r\nhello"), 400),
        ("obs-fold", format!("GET /crm/customers/1 HTTP/1.1\r\nHost: x\r\n{auth}X-A: a\r\n b\r\n\r\n"), 400),
        ("TE not chunked", format!("GET /crm/customers/1 HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: gzip\r\n\r\n"), 400),
        ("oversized headers", format!("GET /crm/customers/1 HTTP/1.1\r\nHost: x\r\n{auth}X-Big: {}\r\n\r\n", "a".repeat(20_000)), 431),
    ];
    for (name, req, want) in &cases {
        let (status, resp) = raw(port, req);
        assert_eq!(status, *want, "{name}: {resp}");
        if *want == 431 {
            assert!(resp.contains("http.limits.max_header_bytes"), "{name}: the error names the setting: {resp}");
        }
    }
    // An oversized body names its setting too (content-length known up front).
    let (status, resp) = raw(port, &format!("POST /crm/refunds HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 20000000\r\n\r\n"));
    assert_eq!(status, 413, "{resp}");
    assert!(resp.contains("http.limits.max_request_body_bytes"), "{resp}");
    assert!(up.paths().is_empty(), "something reached the upstream: {:?}", up.paths());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_requests_resume_after_approval_and_wait_mode_holds_the_connection() {
    let up = start_upstream().await;
    let gw = start_gateway(&up, None);
    gw.admin(&["human", "activate", "bob@example.com"]);
    let token = gw.token("bot", None, "5m");
    let base = format!("http://127.0.0.1:{}", gw.http_port());
    let c = client();
    let refund = json!({"order": 42, "amount": 10}).to_string();

    // Resume mode: 409 with the approval id, nothing sent upstream.
    let r = c.post(format!("{base}/crm/refunds")).bearer_auth(&token).header("x-warden-approval", "resume").header("content-type", "application/json").body(refund.clone()).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json_like().await;
    let id = v["approval_id"].as_str().unwrap().to_string();
    assert_eq!(v["error"], "approval_pending");
    assert!(up.paths().is_empty());
    // A different body is a different request: it does not ride on this approval.
    gw.admin(&["approvals", "approve", &id, "--as", "bob@example.com", "--reason", "ok"]);
    let other = json!({"order": 42, "amount": 10000}).to_string();
    let r = c.post(format!("{base}/crm/refunds")).bearer_auth(&token).header("x-warden-approval", "resume").body(other).send().await.unwrap();
    assert_eq!(r.status(), 409);
    // The same request runs once.
    let r = c.post(format!("{base}/crm/refunds")).bearer_auth(&token).header("x-warden-approval", "resume").header("content-type", "application/json").body(refund.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.paths(), vec!["POST /refunds".to_string()]);
    let r = c.post(format!("{base}/crm/refunds")).bearer_auth(&token).header("x-warden-approval", "resume").header("content-type", "application/json").body(refund.clone()).send().await.unwrap();
    assert_eq!(r.status(), 409, "an approval is used once");

    // Wait mode: the request is held until a human approves, then answered on the same call.
    let pending_ids = |gw: &Gateway| -> Vec<String> {
        let out = gw.admin(&["approvals", "list", "--json"]);
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        v.as_array().unwrap().iter().filter(|a| a["status"] == "pending").map(|a| a["id"].as_str().unwrap().to_string()).collect()
    };
    let before = pending_ids(&gw);
    let waiting = {
        let c = c.clone();
        let (base, token) = (base.clone(), token.clone());
        let body = json!({"order": 7}).to_string();
        tokio::spawn(async move { c.post(format!("{base}/crm/refunds")).bearer_auth(&token).body(body).send().await.unwrap().status() })
    };
    let gw_ref = &gw;
    let pending = wait_for(Duration::from_secs(20), "a new pending approval", || pending_ids(gw_ref).into_iter().find(|id| !before.contains(id)));
    gw.admin(&["approvals", "approve", &pending, "--as", "bob@example.com", "--reason", "fine"]);
    assert_eq!(waiting.await.unwrap(), 200);
    assert_eq!(up.paths().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn llm_models_high_cost_and_streaming_masking_across_events() {
    let up = start_upstream().await;
    let gw = start_gateway(&up, None);
    let token = gw.token("bot", None, "5m");
    let base = format!("http://127.0.0.1:{}", gw.http_port());
    let c = client();
    let chat = |model: &str, stream: bool| json!({"model": model, "messages": [{"role": "user", "content": "what is my card?"}], "max_tokens": 50, "stream": stream}).to_string();

    let r = c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).header("x-warden-run", "r1").body(chat("small", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json_like().await;
    assert_eq!(v["usage"]["completion_tokens"], 20);
    assert!(!v.to_string().contains("4111"), "{v}");
    let seen = up.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.3, AI_KEY, "the provider key is injected");
    assert_eq!(seen.2, "", "the agent's token never reaches the provider");

    // A model no policy allows; a high-cost model waits for a human.
    let r = c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).body(chat("gpt-huge", false)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).header("x-warden-approval", "resume").body(chat("big", false)).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("high_cost"));

    // Streaming: events arrive one by one, the card split across two events is masked.
    let mut r = c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).body(chat("small", true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut raw_body = String::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        raw_body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let mut text = String::new();
    let mut usage = Value::Null;
    for line in raw_body.lines() {
        let Some(d) = line.strip_prefix("data: ") else { continue };
        if d == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(d).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if !v["usage"].is_null() {
            usage = v["usage"].clone();
        }
    }
    assert!(raw_body.contains("data: [DONE]"), "{raw_body}");
    assert!(!raw_body.contains("4111") && !text.contains("1111 1111"), "card leaked: {raw_body}");
    assert!(text.starts_with("Your card is ") && text.ends_with(", keep it safe."), "{text}");
    assert!(text.contains("[REDACTED:card]"), "{text}");
    assert_eq!(usage["completion_tokens"], 9, "the usage event the gateway asked for arrives: {raw_body}");

    // Audit: model, tokens, cost, latency and decision; prompts and completions only as digests.
    let gw_ref = &gw;
    let events: Vec<Value> = wait_for(Duration::from_secs(20), "the streamed call's audit event", || {
        let text = gw_ref.admin(&["audit", "search", "--json", "--limit", "2000"]);
        let evs: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        evs.iter().any(|e| e["kind"] == "llm_call" && e["stream"] == true).then_some(evs)
    });
    let streamed = events.iter().find(|e| e["kind"] == "llm_call" && e["stream"] == true).unwrap();
    assert_eq!(streamed["model"], "small");
    assert_eq!(streamed["prompt_tokens"], 12);
    assert_eq!(streamed["completion_tokens"], 9);
    assert!(streamed["cost_usd"].as_f64().unwrap() > 0.0, "{streamed}");
    assert!(streamed["completion_digest"].as_str().unwrap().len() == 64 && streamed["prompt_digest"].is_string(), "{streamed}");
    assert!(events.iter().any(|e| e["kind"] == "llm_call" && e["decision"] == "deny" && e["model"] == "gpt-huge"));
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("what is my card") && !all.contains("4111") && !all.contains("keep it safe"), "prompt or completion text in the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_calls_against_a_budget_for_ten_let_at_most_ten_through() {
    let up = start_upstream().await;
    let body = json!({"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}).to_string();
    // The gateway reserves body_len/2 + 16 prompt tokens plus max_tokens per call.
    let per_call = (body.len() / 2 + 16 + 100) as u64;
    let gw = start_gateway(&up, Some(per_call * 10));
    let token = gw.token("bot", None, "5m");
    let base = format!("http://127.0.0.1:{}", gw.http_port());
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (c, base, token, body) = (c.clone(), base.clone(), token.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).header("x-warden-run", "budget-run").body(body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, text) = t.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                assert!(text.contains("budgets.per_run_tokens"), "the refusal names the budget: {text}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {text}"),
        }
    }
    assert!(ok <= 10, "{ok} calls passed a budget that fits 10");
    assert!(ok >= 1, "no call passed");
    assert_eq!(ok + refused, 50);
    let upstream_calls = up.paths().iter().filter(|p| p.contains("chat/completions")).count();
    assert_eq!(upstream_calls, ok, "refused calls never reach the provider");
    // Another run has its own budget.
    let r = c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).header("x-warden-run", "other-run").body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Issue 15: deprovisioning reaches a response that is still streaming. The stream ends
/// with an error event naming the cause within a second of `warden human deactivate`
/// returning, and the agent's next request is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_deactivation_cuts_a_live_sse_stream_within_a_second() {
    let up = start_upstream().await;
    let gw = Arc::new(start_gateway(&up, None));
    let token = gw.token("bot", None, "5m");
    let base = format!("http://127.0.0.1:{}", gw.http_port());
    let c = client();
    let body = json!({"model": "small", "messages": [{"role": "user", "content": "talk forever"}], "max_tokens": 50, "stream": true}).to_string();
    let mut r = c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut seen = String::new();
    while seen.matches("hello").count() < 3 {
        seen.push_str(&String::from_utf8_lossy(&r.chunk().await.unwrap().expect("the stream runs")));
    }

    let g = gw.clone();
    let (issued, returned) = tokio::task::spawn_blocking(move || {
        let t = std::time::Instant::now();
        g.admin(&["human", "deactivate", OWNER]);
        (t, std::time::Instant::now())
    })
    .await
    .unwrap();
    let mut tail = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = r.chunk().await {
            tail.push_str(&String::from_utf8_lossy(&chunk));
            if tail.contains("event: error") {
                break;
            }
        }
        std::time::Instant::now()
    })
    .await
    .expect("the stream must be cut, not run on");
    let after_return = ended.saturating_duration_since(returned);
    println!("human deactivate: stream cut {:?} after the command returned ({:?} after it started)", after_return, ended - issued);
    assert!(tail.contains("event: error") && tail.contains("agent_revoked") && tail.contains("deactivated"), "{tail}");
    assert!(after_return < Duration::from_secs(1), "cut after {after_return:?}");
    let words_after = tail.matches("hello").count();
    assert!(words_after <= 25, "the stream ran on for {words_after} events");

    // A new request of the revoked agent is refused, stream or not.
    let r = c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).body(body).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json_like().await;
    assert!(v["message"].as_str().unwrap().contains("deactivated"), "{v}");
}

fn gv_token(gw: &Gateway, gv: &str, node: &str) -> String {
    gw.admin(&["token", "issue", "--agent", "bot", "--node", node, "--ttl", "5m", "--graph-version", gv]).trim().to_string()
}

/// Issue 11 on the HTTP path: a token's graph version must be approved, and then the
/// approved manifest caps what policy allows (routes and models the node asked for).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graph_versions_bind_http_routes_and_llm_models() {
    let up = start_upstream().await;
    let gw = start_gateway(&up, None);
    gw.admin(&["human", "activate", "bob@example.com"]);
    let base = format!("http://127.0.0.1:{}", gw.http_port());
    let c = client();
    let get = |token: String, path: &str| c.get(format!("{base}{path}")).bearer_auth(token).header("x-warden-node", "writer").send();

    // Unknown version: denied, saying how to submit it.
    let r = get(gv_token(&gw, "v404", "reader"), "/crm/customers/1").await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json_like().await;
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("graph version v404") && msg.contains("unknown") && msg.contains("warden graph submit"), "{msg}");

    let manifest = json!({"graph_id": "support", "digest": "v1", "nodes": ["reader", "writer"],
        "privileges": {"reader": ["http_request:GET /customers/*", {"target": "ai", "models": ["small"]}]}});
    let file = gw.data_dir().join("manifest-v1.json");
    std::fs::write(&file, manifest.to_string()).unwrap();
    let out = gw.admin(&["graph", "submit", "--agent", "bot", "--file", file.to_str().unwrap()]);
    let id = out.split_whitespace().nth(2).unwrap().to_string();

    // Submitted, not yet approved: still denied, naming the approve command.
    let token = gv_token(&gw, "v1", "reader");
    let r = get(token.clone(), "/crm/customers/1").await.unwrap();
    assert_eq!(r.status(), 403);
    let msg = r.json_like().await["message"].as_str().unwrap().to_string();
    assert!(msg.contains("pending review") && msg.contains(&format!("warden graph approve {id}")), "{msg}");
    assert!(up.paths().is_empty(), "nothing reached the upstream: {:?}", up.paths());

    gw.admin(&["graph", "approve", &id, "--as", "bob@example.com", "--reason", "reviewed the manifest"]);
    // At once: the denial before approval was not cached.
    let status = get(token.clone(), "/crm/customers/1").await.unwrap().status().as_u16();
    assert_eq!(status, 200, "the approved version works on the next request");

    // Policy lets a reader GET every crm route; the manifest asked for /customers/* only.
    let r = get(token.clone(), "/crm/orders/7").await.unwrap();
    assert_eq!(r.status(), 403);
    let msg = r.json_like().await["message"].as_str().unwrap().to_string();
    assert!(msg.contains("GET /orders/7") && msg.contains("not in the approved manifest of graph version v1") && msg.contains("node \"reader\""), "{msg}");
    // A node the manifest gives nothing gets nothing, though policy would allow it.
    let other = gv_token(&gw, "v1", "writer");
    assert_eq!(get(other, "/crm/customers/1").await.unwrap().status(), 403);

    // Models: policy allows small and big; the manifest asked for small only.
    let chat = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}).to_string();
    let r = c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).body(chat("small")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).header("x-warden-approval", "resume").body(chat("big")).send().await.unwrap();
    assert_eq!(r.status(), 403, "the manifest cap applies before any approval is asked for");
    let msg = r.json_like().await["message"].as_str().unwrap().to_string();
    assert!(msg.contains("model \"big\"") && msg.contains("not in the approved manifest"), "{msg}");

    // Audit: the gateway's events carry the graph version.
    let gw_ref = &gw;
    wait_for(Duration::from_secs(10), "http events with the graph version", || {
        let text = gw_ref.admin(&["audit", "search", "--json", "--limit", "2000"]);
        let evs: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let allowed = evs.iter().any(|e| e["kind"] == "http_request" && e["decision"] == "allow" && e["graph_version"] == "v1");
        let denied = evs.iter().any(|e| e["kind"] == "llm_call" && e["decision"] == "deny" && e["graph_version"] == "v1" && e["policy_ids"].to_string().contains("graph-version"));
        (allowed && denied).then_some(())
    });
}

/// Issue 11's story end to end: the owner is deactivated by SCIM (as Okta or Entra ID would)
/// while their agent holds an open PostgreSQL session and a streaming model response; both
/// are cut within a second, and neither a new connection nor a new request gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scim_deactivation_cuts_the_owners_agent_on_postgres_and_http_within_a_second() {
    let up = start_upstream().await;
    let gw = Arc::new(start_gateway_with(&up, None, "[scim]\ntoken_env = \"WARDEN_TEST_SCIM_TOKEN\"\n"));
    let (status, user) = scim(&gw, "POST", "/scim/v2/Users", Some(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": OWNER, "active": true, "emails": [{"value": OWNER, "primary": true}]})));
    assert!(status == 201, "{status} {user}");
    let scim_id = user["id"].as_str().unwrap().to_string();
    let token = gw.token("bot", Some("reader"), "5m");
    let pg = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let base = format!("http://127.0.0.1:{}", gw.http_port());
    let body = json!({"model": "small", "messages": [{"role": "user", "content": "talk forever"}], "max_tokens": 50, "stream": true}).to_string();
    let mut stream = client().post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).body(body.clone()).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    while seen.matches("hello").count() < 2 {
        seen.push_str(&String::from_utf8_lossy(&stream.chunk().await.unwrap().expect("the stream runs")));
    }

    let since = Instant::now();
    let port = gw.admin_port;
    let patch = tokio::task::spawn_blocking(move || {
        let auth = format!("Bearer {SCIM_TOKEN}");
        let op = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": false}}]});
        http_request(port, "PATCH", &format!("/scim/v2/Users/{scim_id}"), &[("Authorization", &auth), ("Content-Type", "application/scim+json")], Some(&op.to_string()))
    });
    let pg_cut = async {
        match tokio::time::timeout(Duration::from_secs(5), pg.done).await {
            Ok(Ok(Err(e))) => (since.elapsed(), error_text(&e)),
            other => panic!("the PostgreSQL session survived the deactivation: {other:?}"),
        }
    };
    let http_cut = async {
        let mut tail = String::new();
        read_until_error_event(&mut stream, &mut tail).await;
        (since.elapsed(), tail)
    };
    let ((pg_after, pg_error), (http_after, tail)) = tokio::join!(pg_cut, http_cut);
    let (status, body) = patch.await.unwrap();
    assert_eq!(status, 200, "{body}");
    println!("SCIM PATCH active=false: PostgreSQL session cut after {pg_after:?}, SSE stream after {http_after:?}");
    assert!(pg_error.contains("deactivated"), "{pg_error}");
    assert!(tail.contains("agent_revoked") && tail.contains("deactivated"), "{tail}");
    assert!(pg_after < Duration::from_secs(1) && http_after < Duration::from_secs(1), "pg {pg_after:?}, http {http_after:?}");

    let err = gw.connect("bot", &token, Some("reader")).await.err().expect("a new connection is refused");
    assert!(error_text(&err).contains("deactivated"), "{}", error_text(&err));
    let r = client().post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).body(body).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

/// `[graphs] require_approved_version = true` holds on the HTTP path too: a token without a
/// graph version gets nothing, though policy would allow the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn required_graph_versions_refuse_http_tokens_without_one() {
    let up = start_upstream().await;
    let gw = start_gateway_with(&up, None, "[graphs]\nrequire_approved_version = true\n");
    let base = format!("http://127.0.0.1:{}", gw.http_port());
    let token = gw.token("bot", Some("reader"), "5m");
    let r = client().get(format!("{base}/crm/customers/1")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let msg = r.json_like().await["message"].as_str().unwrap().to_string();
    assert!(msg.contains("requires an approved graph version") && msg.contains("warden graph submit"), "{msg}");
    assert!(up.paths().is_empty(), "nothing reached the upstream: {:?}", up.paths());
}

/// `warden grant request` on an HTTP/LLM target, as carol; returns the request id (a human
/// approves it with the real CLI).
fn request_http_grant(gw: &Gateway, target: &str, node: &str, actions: &[&str], objects: &[&str], secs: i64) -> String {
    let out = gw.admin(&["grant", "request", "--agent", "bot", "--node", node, "--target", target, "--action", &actions.join(","), "--objects", &objects.join(","), "--for", &format!("{secs}s"), "--reason", "incident 42", "--as", "carol@example.com"]);
    out.split_whitespace().nth(2).unwrap().to_string()
}

/// Issue 15: a JIT grant covers HTTP routes and LLM models a policy does not allow, for
/// its duration only; a stream the grant allowed is cut when the grant ends, and later
/// requests are denied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jit_grant_allows_http_and_llm_until_it_expires_mid_stream_included() {
    let up = start_upstream().await;
    let gw = start_gateway(&up, None);
    gw.admin(&["human", "activate", "bob@example.com"]);
    let token = gw.token("bot", Some("writer"), "5m");
    let base = format!("http://127.0.0.1:{}", gw.http_port());
    let c = client();
    let stream_body = json!({"model": "tiny", "messages": [{"role": "user", "content": "talk forever"}], "max_tokens": 50, "stream": true}).to_string();
    let get = || c.get(format!("{base}/crm/customers/1")).bearer_auth(&token).send();

    // Policy: only "reader" GETs crm routes; no policy names model "tiny".
    let r = get().await.unwrap();
    assert_eq!(r.status(), 403);
    let msg = r.json_like().await["message"].as_str().unwrap().to_string();
    assert!(msg.contains("default deny") && msg.contains("warden grant request") && msg.contains("--action http_request"), "{msg}");
    // A grant never lifts a forbid.
    let crm = request_http_grant(&gw, "crm", "writer", &["http_request"], &["GET /customers/*", "GET /admin/*"], 3);
    gw.admin(&["approvals", "approve", &crm, "--as", "bob@example.com", "--reason", "incident 42"]);
    let ai = request_http_grant(&gw, "ai", "writer", &["llm_call"], &["tiny"], 3);
    gw.admin(&["approvals", "approve", &ai, "--as", "bob@example.com", "--reason", "incident 42"]);
    let granted_at = std::time::Instant::now();

    let r = get().await.unwrap();
    assert_eq!(r.status(), 200, "the grant allows the route");
    assert_eq!(c.get(format!("{base}/crm/admin/users")).bearer_auth(&token).send().await.unwrap().status(), 403, "forbid stands");
    assert_eq!(c.delete(format!("{base}/crm/customers/1")).bearer_auth(&token).send().await.unwrap().status(), 403, "only the granted method");

    let mut r = c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).body(stream_body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200, "the grant allows the model");
    let mut text = String::new();
    let cut = tokio::time::timeout(Duration::from_secs(8), async {
        while let Ok(Some(chunk)) = r.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("event: error") {
                break;
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the stream must end with the grant");
    let lasted = granted_at.elapsed();
    println!("grant of 3 s: stream cut {lasted:?} after approval, {} events through", text.matches("hello").count());
    assert!(text.contains("hello") && text.contains("event: error") && text.contains("grant") && text.contains("expired"), "{text}");
    assert!(lasted < Duration::from_secs(5), "{lasted:?}");

    // Expired: both actions are denied again.
    assert_eq!(get().await.unwrap().status(), 403);
    assert_eq!(c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).body(stream_body).send().await.unwrap().status(), 403);
    let audit = gw.admin(&["audit", "search", "--json", "--limit", "2000"]);
    assert!(audit.contains("\"grant:grt"), "grant-based allows are audited with the grant id");

    // Revoked before it expires: the stream it allowed is cut within a second.
    let ai = request_http_grant(&gw, "ai", "writer", &["llm_call"], &["tiny"], 60);
    gw.admin(&["approvals", "approve", &ai, "--as", "bob@example.com", "--reason", "incident 43"]);
    let grants: Value = serde_json::from_str(&gw.admin(&["grant", "list", "--json"])).unwrap();
    let grant = grants.as_array().unwrap().iter().find(|g| g["approval_id"] == ai.as_str()).unwrap()["id"].as_str().unwrap().to_string();
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "talk forever"}], "max_tokens": 50, "stream": true}).to_string();
    let mut r = c.post(format!("{base}/ai/v1/chat/completions")).bearer_auth(&token).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut text = String::new();
    while text.matches("hello").count() < 2 {
        text.push_str(&String::from_utf8_lossy(&r.chunk().await.unwrap().expect("the stream runs")));
    }
    gw.admin(&["grant", "revoke", &grant]);
    let returned = std::time::Instant::now();
    read_until_error_event(&mut r, &mut text).await;
    let after = returned.elapsed();
    println!("grant revoke: stream cut {after:?} after the command returned");
    assert!(text.contains(&format!("grant {grant} was revoked")), "{text}");
    assert!(after < Duration::from_secs(1), "{after:?}");
}

/// A TLS upstream that requires a client certificate from `ca`; answers every request
/// with a small JSON body and counts what it served.
async fn start_mtls_upstream(ca: &rcgen::Certificate, issuer: &rcgen::Issuer<'_, rcgen::KeyPair>) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = r#"{"over":"mtls","card":"4111 1111 1111 1111"}"#;
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, served)
}

/// Issue 13: https:// upstreams. The server certificate is verified (against the target's
/// `tls.ca_file`, else the public roots) and Warden presents the target's client
/// certificate; a target that does not trust the upstream's CA, or has no client
/// certificate for an upstream that requires one, gets 502 and nothing is served. Masking
/// applies to TLS responses as to any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_upstreams_are_verified_and_get_the_targets_client_certificate() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let (port, served) = start_mtls_upstream(&ca, &issuer).await;
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_cert = rcgen::CertificateParams::new(vec!["warden.test".to_string()]).unwrap().signed_by(&client_key, &issuer).unwrap();

    let toml = format!(
        r#"
[[http.targets]]
name = "secure"
kind = "http"
upstream = "https://127.0.0.1:{port}"
tls = {{ ca_file = "ca.pem", client_cert_file = "client.pem", client_key_file = "client.key" }}

[[http.targets]]
name = "untrusted"
kind = "http"
upstream = "https://127.0.0.1:{port}"

[[http.targets]]
name = "nocert"
kind = "http"
upstream = "https://127.0.0.1:{port}"
tls = {{ ca_file = "ca.pem" }}
"#
    );
    let policy = "@id(\"gets\")\npermit(principal, action == Warden::Action::\"http_request\", resource is Warden::Route) when { resource.method == \"GET\" };\n";
    let gw = Gateway::builder()
        .policy(policy)
        .toml(&toml)
        .file("ca.pem", ca.pem())
        .file("client.pem", client_cert.pem())
        .file("client.key", client_key.serialize_pem())
        .start_with_http();
    gw.create_agent("bot", OWNER);
    let token = gw.token("bot", None, "5m");
    let base = format!("http://127.0.0.1:{}", gw.http_port());
    let c = client();

    let r = c.get(format!("{base}/secure/status")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("\"over\":\"mtls\"") && !body.contains("4111 1111 1111 1111"), "{body}");
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);

    for target in ["untrusted", "nocert"] {
        let r = c.get(format!("{base}/{target}/status")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 502, "{target}");
        let body = r.text().await.unwrap();
        assert!(body.contains("TLS handshake"), "{target}: {body}");
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1, "no request was served over an unverified or certificate-less connection");

    // A broken TLS setting is a startup error naming the key.
    let err = Gateway::builder()
        .toml(&format!("[[http.targets]]\nname = \"x\"\nkind = \"http\"\nupstream = \"https://127.0.0.1:{port}\"\ntls = {{ ca_file = \"missing.pem\" }}\n"))
        .serve_error();
    assert!(err.contains("http.targets[0].tls") && err.contains("missing.pem"), "{err}");
    let err = Gateway::builder()
        .toml(&format!("[[http.targets]]\nname = \"x\"\nkind = \"http\"\nupstream = \"http://127.0.0.1:{port}\"\ntls = {{ ca_file = \"ca.pem\" }}\n"))
        .serve_error();
    assert!(err.contains("applies to https:// upstreams only"), "{err}");
}

/// Issue 13: policy over JSON request body fields. `POST /refunds` is allowed only when the
/// JSON body's `amount` is at most 100; a larger amount, a string, a body that is not JSON
/// (or not declared as JSON) is denied, and decisions are not reused across bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_body_fields_decide_http_requests() {
    let up = start_upstream().await;
    let policy = r#"
@id("small-refunds")
permit(principal, action == Warden::Action::"http_request", resource is Warden::Route in Warden::Target::"crm")
when { resource.method == "POST" && resource.path == "/refunds" && context.body has amount && context.body.amount <= 100 };
"#;
    let toml = format!("[[http.targets]]\nname = \"crm\"\nkind = \"http\"\nupstream = \"http://127.0.0.1:{}\"\nauth = {{ bearer_env = \"CRM_TOKEN\" }}\n", up.port);
    let gw = Gateway::builder().policy(policy).toml(&toml).env("CRM_TOKEN", UPSTREAM_TOKEN).start_with_http();
    gw.create_agent("bot", OWNER);
    let token = gw.token("bot", None, "5m");
    let url = format!("http://127.0.0.1:{}/crm/refunds", gw.http_port());
    let c = client();
    let post = |body: &'static str, mime: &'static str| c.post(&url).bearer_auth(&token).header("content-type", mime).body(body).send();
    assert_eq!(post(r#"{"amount": 50, "order": "o-1"}"#, "application/json").await.unwrap().status(), 200);
    for (body, mime) in [
        (r#"{"amount": 500, "order": "o-1"}"#, "application/json"),
        (r#"{"amount": "50"}"#, "application/json"),
        (r#"{"order": "o-1"}"#, "application/json"),
        (r#"{"amount": 50"#, "application/json"),
        (r#"{"amount": 50, "order": "o-1"}"#, "text/plain"),
    ] {
        let r = post(body, mime).await.unwrap();
        assert_eq!(r.status(), 403, "{mime} {body}");
        let v: Value = r.json_like().await;
        assert!(v["message"].as_str().unwrap_or_default().contains("POST /refunds"), "{v}");
    }
    assert_eq!(post(r#"{"amount": 100}"#, "application/vnd.api+json").await.unwrap().status(), 200);
    assert_eq!(up.paths().len(), 2, "only the two small refunds reached the upstream: {:?}", up.paths());
}

/// Issue 13: `redact_prompts` masks sensitive values in a model request before it leaves
/// for the provider; the audit counts what was masked, never the values.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prompts_are_redacted_before_they_reach_the_provider() {
    let up = start_upstream().await;
    let toml = format!(
        "[[http.targets]]\nname = \"ext\"\nkind = \"llm\"\nupstream = \"http://127.0.0.1:{}\"\nredact_prompts = true\n[http.targets.models.small]\ninput_usd_per_mtok = 1.0\noutput_usd_per_mtok = 2.0\n",
        up.port
    );
    let policy = "@id(\"models\")\npermit(principal, action == Warden::Action::\"llm_call\", resource in Warden::Target::\"ext\");\n";
    let gw = Gateway::builder().policy(policy).toml(&toml).start_with_http();
    gw.create_agent("bot", OWNER);
    let token = gw.token("bot", None, "5m");
    let prompt = "Refund the customer, card 4111 1111 1111 1111, email ada@example.com, key AKIAIOSFODNN7EXAMPLE";
    let r = client()
        .post(format!("http://127.0.0.1:{}/ext/v1/chat/completions", gw.http_port()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"model": "small", "messages": [{"role": "user", "content": prompt}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = MODEL_REQUESTS.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let sent: Value = serde_json::from_str(&seen[0]).unwrap();
    let content = sent["messages"][0]["content"].as_str().unwrap();
    for secret in ["4111 1111 1111 1111", "ada@example.com", "AKIAIOSFODNN7EXAMPLE"] {
        assert!(!content.contains(secret), "{secret} reached the provider: {content}");
    }
    assert!(content.starts_with("Refund the customer, card ") && sent["model"] == "small", "the rest of the request is intact: {sent}");
    let audit = gw.admin(&["audit", "search", "--json", "--limit", "100"]);
    let ev: Value = audit.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|e| e["kind"] == "llm_call").expect("an llm_call event");
    assert_eq!(ev["prompt_redacted"]["card"], 1, "{ev}");
    assert!(!audit.contains("ada@example.com") && !audit.contains("AKIAIOSFODNN7EXAMPLE"));
}
