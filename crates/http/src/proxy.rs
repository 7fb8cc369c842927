//! The request path: authenticate, normalize, decide, hold, reserve, forward, mask, audit.

use crate::budget::{Ledger, Limit, Reservation};
use crate::config::{parse_upstream, HttpConfig, HttpLimits, ModelConfig, TargetKind, Unmaskable};
use crate::jsonmask::{mask_json, FieldRule, Tally};
use crate::llm::{micros, parse_request, read_usage, Endpoint, LlmRequest, Usage};
use crate::normalize::normalize;
use crate::sniff::{ConnFlag, Flag, Sniffed};
use crate::sse::SseMasker;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use warden_audit::{AuditEvent, AuditHandle};
use warden_core::policy::http::LlmCall;
use warden_core::policy::PolicyEngine;
use warden_core::token::{TokenError, TokenKeys};
use warden_core::{Decision, Effect, SessionIdentity};
use warden_mask::Masker;
use warden_store::{ApprovalRecord, ApprovalStatus, NewApproval, Store};

#[path = "mcp.rs"]
mod mcp;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// How long an agent's status read from the store is reused; bounds how long a suspended
/// agent can still start requests.
const AGENT_TTL: Duration = Duration::from_millis(500);
const APPROVAL_POLL: Duration = Duration::from_millis(20);
/// How often the gateway reads the store's revocation epoch (the PostgreSQL path polls at
/// the same pace); bounds how long a revoked agent's in-flight stream survives.
const REVOCATION_POLL: Duration = Duration::from_millis(200);

/// What the gateway needs from the rest of Warden.
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub policy: Arc<PolicyEngine>,
    pub tokens: Arc<TokenKeys>,
    pub audit: AuditHandle,
    pub approval_timeout: Duration,
    pub resume_lifetime: Duration,
    /// Called when an approval request is created (webhook notification).
    pub on_approval: Option<Arc<dyn Fn(&ApprovalRecord) + Send + Sync>>,
}

struct Target {
    index: usize,
    name: String,
    kind: TargetKind,
    authority: String,
    host: HeaderValue,
    base_path: String,
    credential: Option<UpstreamCredential>,
    case_insensitive: bool,
    mask: bool,
    fields: Vec<FieldRule>,
    on_unmaskable: Unmaskable,
    models: BTreeMap<String, ModelConfig>,
    budgets: crate::config::Budgets,
    redact_prompts: bool,
    default_cap: i64,
    timeout: Duration,
    /// Pooled connections to this target's upstream, with its TLS settings.
    pub(crate) client: UpstreamClient,
    pub(crate) scheme: &'static str,
    /// MCP: tool -> the argument that carries SQL.
    pub(crate) sql_arguments: BTreeMap<String, String>,
}

/// The request body as JSON, when it says it is JSON (`application/json`, `*+json`) and is.
fn json_body(headers: &HeaderMap, body: &Bytes) -> Option<serde_json::Value> {
    let mime = headers.get(header::CONTENT_TYPE)?.to_str().ok()?.split(';').next()?.trim().to_ascii_lowercase();
    if mime != "application/json" && !mime.ends_with("+json") {
        return None;
    }
    serde_json::from_slice(body).ok()
}

pub(crate) type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The connection pool for one target: plain HTTP, or TLS that always verifies the server
/// (Mozilla's roots, or only the target's `tls.ca_file`) and may present a client
/// certificate.
fn upstream_client(t: &crate::config::HttpTarget, limits: &HttpLimits, base_dir: &Path) -> Result<UpstreamClient, String> {
    use warden_pg::tls;
    let path = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) }.to_string_lossy().into_owned();
    let settings = t.tls.as_ref();
    let roots = match settings.and_then(|s| s.ca_file.as_deref()) {
        Some(ca) => tls::load_roots(&path(ca)).map_err(|e| e.to_string())?,
        None => rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
    };
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match settings.and_then(|s| s.client_cert_file.as_deref().zip(s.client_key_file.as_deref())) {
        Some((cert, key)) => {
            let certs = tls::load_certs(&path(cert)).map_err(|e| e.to_string())?;
            let key = tls::load_key(&path(key)).map_err(|e| e.to_string())?;
            builder.with_client_auth_cert(certs, key).map_err(|e| format!("client certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(limits.upstream_connect_timeout));
    connector.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().wrap_connector(connector);
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).pool_max_idle_per_host(256).build(https))
}

/// What Warden sends upstream as the target's credential.
enum UpstreamCredential {
    Header(HeaderName, HeaderValue),
    OAuth(Arc<crate::oauth::TokenSource>),
}

impl Target {
    /// Adds the target's credential to an upstream request (an OAuth token may be fetched
    /// first). An error means the request must not be sent.
    pub(crate) async fn add_credential(&self, headers: &mut HeaderMap) -> Result<(), String> {
        match &self.credential {
            None => {}
            Some(UpstreamCredential::Header(name, value)) => {
                headers.insert(name.clone(), value.clone());
            }
            Some(UpstreamCredential::OAuth(source)) => {
                let value = source.authorization().await.map_err(|e| format!("warden: no credential for the upstream of target {:?}: {e}", self.name))?;
                headers.insert(header::AUTHORIZATION, value);
            }
        }
        Ok(())
    }

    /// The upstream answered 401: a cached OAuth token is dropped.
    pub(crate) async fn credential_refused(&self) {
        if let Some(UpstreamCredential::OAuth(source)) = &self.credential {
            source.invalidate().await;
        }
    }
}

pub struct HttpGateway {
    targets: HashMap<String, Arc<Target>>,
    limits: HttpLimits,
    masker: Arc<Masker>,
    pub(crate) deps: Deps,
    ledger: Arc<Ledger>,
    agents: Mutex<HashMap<String, (Instant, Result<String, String>)>>,
    /// Decisions by every input they depend on (identity fields, target, method and path,
    /// or the model call), joined with NUL: the full text, never a hash. The policy engine
    /// never changes while the gateway runs, so entries need no epoch.
    decisions: quick_cache::sync::Cache<String, Decision>,
    /// Tokens whose signature was checked, by their full text: an Ed25519 verification per
    /// request would dominate the request's cost. Expiry is still checked on every request;
    /// revocation goes through the agent's status, not the token.
    verified: quick_cache::sync::Cache<String, Arc<warden_core::token::TokenClaims>>,
    /// MCP targets: definitions seen, pins, tools/list visibility (`mcp.rs`).
    mcp: mcp::McpState,
    /// In-flight responses (SSE streams, MCP calls) that revocation reaches into.
    pub(crate) live: crate::revocation::LiveCalls,
    /// Graph-version enforcement, the same cap the PostgreSQL path applies.
    graphs: Arc<warden_graphs::GraphGate>,
    /// Approved manifests (or the denial) by (agent, graph version); dropped whenever the
    /// store's epoch moves (a version approved or denied).
    graph_manifests: Mutex<HashMap<(String, Option<String>), GraphLookup>>,
}

type GraphLookup = Result<warden_graphs::ApprovedManifest, Box<Decision>>;

pub(crate) fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn json_response(status: u16, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(&v).expect("json")));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: u16, code: &str, message: &str) -> Response<Body> {
    json_response(status, json!({ "error": code, "message": message }))
}

/// Hop-by-hop headers (RFC 9110 7.6.1) and the ones the gateway owns.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authorization", "proxy-authenticate"] {
        h.remove(n);
    }
}

impl HttpGateway {
    pub fn new(cfg: &HttpConfig, base_dir: &Path, deps: Deps) -> Result<Arc<HttpGateway>, crate::config::ConfigError> {
        cfg.validate()?;
        let mut targets = HashMap::new();
        for (index, t) in cfg.targets.iter().enumerate() {
            let (scheme, authority, base_path) = parse_upstream(&t.upstream).map_err(|e| crate::config::ConfigError(format!("http.targets[{index}].upstream: {e}")))?;
            let credential = match &t.auth {
                Some(a) => Some(match a.resolve(&t.name, base_dir)? {
                    crate::config::Credential::Header(name, secret) => {
                        let mut v = HeaderValue::from_str(secret.expose()).map_err(|_| crate::config::ConfigError(format!("http.targets[{index}].auth: not a header value")))?;
                        v.set_sensitive(true);
                        UpstreamCredential::Header(name, v)
                    }
                    crate::config::Credential::ClientCredentials(grant) => UpstreamCredential::OAuth(Arc::new(
                        crate::oauth::TokenSource::new(grant, t.timeout).map_err(|e| crate::config::ConfigError(format!("http.targets[{index}].auth: {e}")))?,
                    )),
                }),
                None => None,
            };
            targets.insert(
                t.name.clone(),
                Arc::new(Target {
                    index,
                    name: t.name.clone(),
                    kind: t.kind,
                    host: HeaderValue::from_str(&authority).expect("validated authority"),
                    authority,
                    base_path,
                    credential,
                    case_insensitive: t.case_insensitive,
                    mask: t.mask,
                    fields: t.mask_fields.iter().map(|f| FieldRule::parse(f).expect("validated")).collect(),
                    on_unmaskable: t.on_unmaskable,
                    models: t.models.clone(),
                    budgets: t.budgets.clone(),
                    redact_prompts: t.redact_prompts,
                    default_cap: t.default_max_output_tokens,
                    timeout: t.timeout,
                    sql_arguments: t.sql_arguments.clone(),
                    client: upstream_client(t, &cfg.limits, base_dir).map_err(|e| crate::config::ConfigError(format!("http.targets[{index}].tls: {e}")))?,
                    scheme,
                }),
            );
        }
        let masker = Masker::new(&cfg.mask).map_err(|e| crate::config::ConfigError(format!("http.mask: {e}")))?;
        Ok(Arc::new(HttpGateway { targets, limits: cfg.limits.clone(), masker: Arc::new(masker), deps, ledger: Arc::new(Ledger::default()), agents: Mutex::new(HashMap::new()), decisions: quick_cache::sync::Cache::new(100_000), verified: quick_cache::sync::Cache::new(10_000), mcp: Default::default(), live: Default::default(), graphs: Arc::new(warden_graphs::GraphGate::new(false)), graph_manifests: Mutex::new(HashMap::new()) }))
    }

    /// `[graphs] require_approved_version`: callers whose token carries no graph version get
    /// no privileges either. (Tokens that carry one are always held to it.)
    pub fn require_approved_graph_version(&self, required: bool) {
        self.graphs.set_require_approved(required);
    }

    /// The approved manifest the caller is bound by (Ok(None): policy alone decides), or
    /// the denial. Only answers that grant are cached (until the store's epoch moves): a
    /// denial is looked up again, so a version approved a moment ago works at once instead
    /// of after the next epoch poll.
    pub(crate) async fn graph_lookup(&self, who: &SessionIdentity) -> GraphLookup {
        let key = (who.agent.clone(), who.graph_version.clone());
        if let Some(f) = self.graph_manifests.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned() {
            return f;
        }
        let (store, gate, id) = (self.deps.store.clone(), self.graphs.clone(), who.clone());
        let f = tokio::task::spawn_blocking(move || gate.approved_manifest(store.as_ref(), &id))
            .await
            .unwrap_or_else(|_| Err(Box::new(Decision::deny_without_policy("warden: denied because graph versions cannot be read (fail closed)"))));
        if f.is_ok() {
            let mut m = self.graph_manifests.lock().unwrap_or_else(|e| e.into_inner());
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(key, f.clone());
        }
        f
    }

    /// Narrows a policy decision to what the caller's approved graph version allows.
    pub(crate) async fn cap_to_graph_version(&self, who: &SessionIdentity, access: warden_graphs::GatewayAccess<'_>, decision: Decision) -> Decision {
        if decision.effect == Effect::Deny {
            return decision;
        }
        match self.graph_lookup(who).await {
            Err(denial) => *denial,
            Ok(manifest) => self.graphs.cap_gateway_access(manifest.as_deref(), who, &access, decision),
        }
    }

    /// The budget ledger (tests and metrics).
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Accepts connections until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        tokio::spawn(self.clone().watch_revocations(REVOCATION_POLL));
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let gw = self.clone();
            tokio::spawn(async move {
                let (io, flag) = Sniffed::new(stream, gw.limits.max_header_bytes, gw.limits.max_headers);
                let mut b = hyper::server::conn::http1::Builder::new();
                // hyper's own limits sit above ours, so ours answer first and name the setting.
                b.max_buf_size((gw.limits.max_header_bytes * 2).max(8192) + 1024);
                b.max_headers(gw.limits.max_headers * 2 + 16);
                b.timer(TokioTimer::new());
                b.header_read_timeout(gw.limits.client_header_timeout);
                let g = gw.clone();
                let svc = service_fn(move |req| {
                    let g = g.clone();
                    let flag = flag.clone();
                    async move { Ok::<_, Infallible>(g.handle(req, &flag, peer).await) }
                });
                if let Err(e) = b.serve_connection(TokioIo::new(io), svc).await {
                    tracing::debug!(error = %e, %peer, "http connection ended with an error");
                }
            });
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>, flag: &ConnFlag, peer: SocketAddr) -> Response<Body> {
        let mut resp = self.handle_inner(req, flag, peer).await;
        if flag.get() != Flag::None {
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    async fn handle_inner(self: &Arc<Self>, req: Request<Incoming>, flag: &ConnFlag, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let f = flag.get();
        if f != Flag::None {
            let (status, msg) = f.refusal();
            let mut ev = AuditEvent::new("http_refused", "deny");
            ev.reason = Some(msg.to_string());
            ev.extra.insert("peer".into(), peer.to_string().into());
            let _ = self.deps.audit.record_nowait(ev);
            return error(status, "bad_request", msg);
        }
        if matches!(req.method(), &Method::CONNECT | &Method::TRACE) {
            return error(405, "method_not_allowed", "warden: CONNECT and TRACE are not proxied");
        }
        if req.headers().contains_key(header::UPGRADE) {
            return error(400, "bad_request", "warden: protocol upgrades (WebSocket, h2c) are not proxied");
        }
        let norm = match normalize(req.uri().path(), false, self.limits.max_path_bytes) {
            Ok(n) => n,
            Err(e) => return error(400, "bad_path", &format!("warden: {e}; refused")),
        };
        let (target_name, rest_policy, rest_forward) = split_target(&norm.policy, &norm.forward);
        let Some(target) = self.targets.get(target_name).cloned() else {
            return error(404, "no_target", &format!("warden: no HTTP target named {target_name:?} (the first path segment selects the target)"));
        };
        let (rest_policy, rest_forward) = if target.case_insensitive { (rest_policy.to_lowercase(), rest_forward.to_lowercase()) } else { (rest_policy.to_string(), rest_forward.to_string()) };

        // Who is calling.
        let token = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        let Some(token) = token else {
            let mut r = error(401, "unauthenticated", "warden: send your Warden token as Authorization: Bearer <token>");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"warden\""));
            return r;
        };
        let token = token.trim();
        let now = now_unix();
        let cached = self.verified.get(token).filter(|c| c.exp > now);
        let claims = match cached.map(Ok).unwrap_or_else(|| self.deps.tokens.verify(token, now).map(Arc::new)) {
            Ok(c) => {
                self.verified.insert(token.to_string(), c.clone());
                c
            }
            Err(TokenError::Expired) => return error(401, "token_expired", "warden: the token has expired; get a fresh one"),
            Err(_) => return error(401, "unauthenticated", "warden: the bearer token is not a valid Warden token"),
        };
        let header_str = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        // Registered before the agent's status is read: a revocation landing after the read
        // still reaches this call through the registry.
        let revocation = self.live_call(&claims.sub);
        let owner = match self.agent_owner(&claims.sub).await {
            Ok(o) => o,
            Err(msg) => return error(403, "agent_cannot_act", &msg),
        };
        let who = SessionIdentity {
            agent: claims.sub.clone(),
            owner,
            // A node pinned in the token wins over the header.
            node: claims.node.clone().or_else(|| header_str("x-warden-node")),
            run: header_str("x-warden-run").or(claims.run.clone()),
            thread: header_str("x-warden-thread").or(claims.thread.clone()),
            graph_version: claims.gv.clone(),
            target: target.name.clone(),
        };
        let approval_mode = header_str("x-warden-approval");
        if !self.deps.audit.healthy() {
            return error(503, "audit_unavailable", "warden: denied because the audit log is unavailable (fail closed)");
        }

        // The whole request body: bound to approvals, parsed for model calls.
        let (parts, body) = req.into_parts();
        let max = self.limits.max_request_body_bytes;
        if let Some(len) = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()) {
            if len > max as u64 {
                return error(413, "body_too_large", &format!("warden: the request body is larger than http.limits.max_request_body_bytes ({max})"));
            }
        }
        let body = match Limited::new(body, max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return error(413, "body_too_large", &format!("warden: the request body is larger than http.limits.max_request_body_bytes ({max})"));
            }
            Err(_) => return error(400, "bad_request", "warden: the request body could not be read"),
        };
        let method = parts.method.as_str().to_string();
        let query = parts.uri.query().map(str::to_string);

        let mut call = Call {
            who,
            target: target.clone(),
            method: method.clone(),
            path: rest_policy.clone(),
            started,
            body_digest: hex::encode(Sha256::digest(&body)),
            llm: None,
            decision: None,
            approval_id: None,
            approver: None,
            prompt_redacted: None,
            revocation: Some(revocation),
        };
        if target.kind == TargetKind::Mcp {
            return self.mcp(call, parts, body, rest_forward, query, approval_mode).await;
        }

        // Decide.
        let endpoint = (target.kind == TargetKind::Llm && parts.method == Method::POST).then(|| Endpoint::from_path(&rest_policy)).flatten();
        let mut forward_body = body.clone();
        let decision = match endpoint {
            Some(ep) => {
                let (lreq, rewritten) = match parse_request(ep, &body, target.default_cap) {
                    Ok(x) => x,
                    Err(msg) => return error(400, "bad_model_request", &msg),
                };
                if let Some(b) = rewritten {
                    forward_body = Bytes::from(b);
                }
                if target.redact_prompts {
                    let mut tally = Tally::default();
                    match mask_json(&self.masker, &[], &forward_body, &mut tally) {
                        Ok(Some(masked)) => forward_body = Bytes::from(masked),
                        Ok(None) => {}
                        Err(_) => return error(400, "bad_model_request", "warden: the model request cannot be checked for sensitive data (http.targets.redact_prompts), so it is not sent"),
                    }
                    if tally.total() > 0 {
                        call.prompt_redacted = Some(serde_json::to_value(&tally.counts).unwrap_or_default());
                    }
                }
                let high_cost = target.models.get(&lreq.model).is_some_and(|m| m.high_cost);
                let llm_call = LlmCall { endpoint: ep.as_str(), model: &lreq.model, max_tokens: lreq.max_tokens.unwrap_or(0), stream: lreq.stream, high_cost };
                let key = decision_key(&call.who, &["llm", ep.as_str(), &lreq.model, &llm_call.max_tokens.to_string(), &lreq.stream.to_string(), &high_cost.to_string()]);
                let mut d = self.decisions.get_or_insert_with(&key, || Ok::<_, Infallible>(self.deps.policy.decide_llm(&call.who, &llm_call))).unwrap_or_else(|e| match e {});
                if d.effect == Effect::Allow && high_cost {
                    d.effect = Effect::Hold;
                    d.reason = format!("warden: model \"{}\" is high-cost (http.targets[{}].models): a human must approve this exact request", lreq.model, target.index);
                    d.policy_ids.push(format!("config:http.targets[{}].models.{}.high_cost", target.index, lreq.model));
                }
                let d = self.apply_grants(&call.who, "llm_call", &lreq.model, d).await;
                let described = format!("model \"{}\"", lreq.model);
                let d = self.cap_to_graph_version(&call.who, warden_graphs::GatewayAccess { action: "llm_call", object: &lreq.model, described: &described }, d).await;
                call.llm = Some(lreq);
                d
            }
            None => {
                let json = json_body(&parts.headers, &body);
                // A JSON body can decide, so it is part of the key (by digest).
                let body_key = if json.is_some() { call.body_digest.as_str() } else { "" };
                let key = decision_key(&call.who, &["http", &method, &rest_policy, body_key]);
                let d = self.decisions.get_or_insert_with(&key, || Ok::<_, Infallible>(self.deps.policy.decide_http(&call.who, &method, &rest_policy, json.as_ref()))).unwrap_or_else(|e| match e {});
                let route = format!("{method} {rest_policy}");
                let d = self.apply_grants(&call.who, "http_request", &route, d).await;
                self.cap_to_graph_version(&call.who, warden_graphs::GatewayAccess { action: "http_request", object: &route, described: &route }, d).await
            }
        };
        call.decision = Some(decision.clone());
        if let (Some(grant), Some(r)) = (decision.policy_ids.iter().find_map(|p| p.strip_prefix("grant:")), call.revocation.as_ref()) {
            r.rests_on_grant(&call.who.target, grant);
        }
        match decision.effect {
            Effect::Allow => {}
            Effect::Hold => {
                let statement = call.statement(query.as_deref());
                match self.hold(&call, statement, &decision, approval_mode.as_deref()).await {
                    Ok(id) => call.approval_id = Some(id),
                    Err(resp) => return resp,
                }
            }
            Effect::Deny | Effect::NeedsGrant => {
                self.audit(&call, "deny", |ev| ev.reason = Some(decision.reason.clone())).await;
                return json_response(403, json!({ "error": "denied", "message": decision.reason, "policy_ids": decision.policy_ids }));
            }
        }

        // Budgets.
        let reservation = match &call.llm {
            Some(l) => match self.reserve(&call, l) {
                Ok(r) => Some(r),
                Err(msg) => {
                    self.audit(&call, "deny", |ev| {
                        ev.reason = Some(msg.clone());
                        ev.error = Some("budget_exceeded".into());
                    })
                    .await;
                    return json_response(429, json!({ "error": "budget_exceeded", "message": msg }));
                }
            },
            None => None,
        };

        // Forward.
        let mut uri = format!("{}://{}{}{}", target.scheme, target.authority, target.base_path, rest_forward);
        if let Some(q) = &query {
            uri.push('?');
            uri.push_str(q);
        }
        let mut headers = parts.headers.clone();
        strip_hop_by_hop(&mut headers);
        headers.remove(header::AUTHORIZATION);
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::EXPECT);
        let own: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().starts_with("x-warden-")).cloned().collect();
        for k in own {
            headers.remove(k);
        }
        if target.mask {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        headers.insert(header::HOST, target.host.clone());
        if let Err(msg) = target.add_credential(&mut headers).await {
            drop(reservation);
            self.audit(&call, "allow", |ev| ev.error = Some("upstream_credential".into())).await;
            return error(502, "upstream_credential", &msg);
        }
        if !forward_body.is_empty() || !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(forward_body.len()));
        }
        let mut up = Request::new(Full::new(forward_body));
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = match uri.parse() {
            Ok(u) => u,
            Err(_) => return error(400, "bad_path", "warden: the request cannot be expressed upstream"),
        };
        *up.headers_mut() = headers;
        let revoked = call.revocation.as_mut().expect("registered for every call");
        let sent = tokio::select! {
            r = tokio::time::timeout(target.timeout, target.client.request(up)) => r,
            reason = revoked => {
                drop(reservation);
                self.audit(&call, "deny", |ev| { ev.error = Some("revoked".into()); ev.reason = Some(reason.clone()); }).await;
                return error(403, "revoked", &reason);
            }
        };
        let resp = match sent {
            Ok(Ok(r)) => {
                if r.status() == http::StatusCode::UNAUTHORIZED {
                    target.credential_refused().await;
                }
                r
            }
            Ok(Err(e)) => {
                tracing::warn!(target = %target.name, error = ?std::error::Error::source(&e), "upstream request failed");
                drop(reservation);
                self.audit(&call, "allow", |ev| ev.error = Some("upstream_unreachable".into())).await;
                return error(502, "upstream_error", &format!("warden: the upstream of target {:?} did not answer (connection refused, or for https:// a TLS handshake Warden refused: untrusted certificate, or a client certificate the upstream wants; the gateway log has the cause)", target.name));
            }
            Err(_) => {
                drop(reservation);
                self.audit(&call, "allow", |ev| ev.error = Some("upstream_timeout".into())).await;
                return error(504, "upstream_timeout", &format!("warden: the upstream of target {:?} did not answer within http.targets[{}].timeout", target.name, target.index));
            }
        };
        self.respond(call, parts.method, resp, reservation).await
    }

    /// Masks (or passes) the upstream response and audits it.
    async fn respond(self: &Arc<Self>, mut call: Call, method: Method, resp: Response<Incoming>, reservation: Option<Reservation>) -> Response<Body> {
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let status = parts.status.as_u16();
        let no_body = method == Method::HEAD || status == 204 || status == 304 || (100..200).contains(&status);
        let ctype = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let mime = ctype.split(';').next().unwrap_or("").trim().to_string();
        let encoded = parts.headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));

        if mime == "text/event-stream" && !no_body && (call.target.mask || call.llm.is_some()) {
            if encoded {
                return self.unmaskable(&call, &parts, "the event stream is compressed").await;
            }
            parts.headers.remove(header::CONTENT_LENGTH);
            let mut sse = SseMasker::new(self.masker.clone(), self.limits.max_sse_event_bytes, self.limits.sse_holdback_chars);
            if !call.target.mask {
                sse = sse.without_masking();
            }
            let gw = self.clone();
            let revoked = call.revocation.take();
            let grant_ends = call.decision.as_ref().and_then(|d| d.valid_until).map(|at| {
                let left = Duration::from_secs(at.saturating_sub(now_unix()).max(0) as u64);
                Box::pin(tokio::time::sleep(left))
            });
            let mut reservation = reservation;
            let on_end: Box<dyn FnOnce(&SseMasker, Option<&str>) + Send + Sync> = Box::new(move |m, err| {
                let usage = m.usage;
                let cost = gw.settle(&call, reservation.take(), usage);
                let mut ev = gw.event(&call, "allow");
                ev.extra.insert("status".into(), status.into());
                ev.extra.insert("stream".into(), true.into());
                ev.extra.insert("events".into(), m.events.into());
                ev.extra.insert("completion_digest".into(), m.completion_digest().into());
                if m.tally.total() > 0 {
                    ev.extra.insert("masked".into(), serde_json::to_value(&m.tally.counts).unwrap_or_default());
                }
                add_usage(&mut ev, usage, cost);
                if let Some(e) = err {
                    ev.error = Some(e.to_string());
                }
                if let Err(e) = gw.deps.audit.record_nowait(ev) {
                    tracing::error!(error = %e, "could not audit a streamed response");
                }
            });
            let body = SseBody { inner: body, masker: sse, done: false, on_end: Some(on_end), revoked, grant_ends };
            return Response::from_parts(parts, body.boxed());
        }

        if no_body || (!call.target.mask && call.llm.is_none()) {
            // Passed through as it streams; nothing to mask.
            self.audit_response(&call, status, None, None, None).await;
            if let Some(r) = reservation {
                r.settle(0, 0);
            }
            return Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed());
        }

        // Buffered masking of a JSON or text body.
        let json_like = mime == "application/json" || mime.ends_with("+json");
        let textual = mime.starts_with("text/") || mime == "application/xml" || mime == "application/x-www-form-urlencoded";
        let empty_declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()) == Some("0");
        if encoded && !empty_declared && call.target.mask {
            drop(reservation);
            return self.unmaskable(&call, &parts, "the body is compressed (Content-Encoding)").await;
        }
        if !json_like && !textual && !empty_declared && call.target.mask {
            drop(reservation);
            return self.unmaskable(&call, &parts, &format!("content type {mime:?} cannot be masked")).await;
        }
        let max = self.limits.max_masked_body_bytes;
        let bytes = match Limited::new(body, max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                drop(reservation);
                return self.unmaskable(&call, &parts, "the body is larger than http.limits.max_masked_body_bytes").await;
            }
            Err(_) => {
                drop(reservation);
                self.audit(&call, "allow", |ev| ev.error = Some("upstream_body_error".into())).await;
                return error(502, "upstream_error", "warden: the upstream response body could not be read");
            }
        };
        let mut usage = None;
        let mut completion_digest = None;
        if call.llm.is_some() && json_like {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                read_usage(&v, &mut usage);
            }
            completion_digest = Some(hex::encode(Sha256::digest(&bytes)));
        }
        let mut tally = Tally::default();
        let out = if bytes.is_empty() || !call.target.mask {
            bytes
        } else if json_like {
            match mask_json(&self.masker, &call.target.fields, &bytes, &mut tally) {
                Ok(Some(v)) => Bytes::from(v),
                Ok(None) => bytes,
                Err(_) => {
                    drop(reservation);
                    return self.unmaskable(&call, &parts, "the body is not valid JSON").await;
                }
            }
        } else {
            match std::str::from_utf8(&bytes) {
                Ok(s) => {
                    let (m, c) = self.masker.mask_str(s);
                    tally.counts.merge(&c);
                    Bytes::from(m.into_owned())
                }
                Err(_) => {
                    drop(reservation);
                    return self.unmaskable(&call, &parts, "the text body is not UTF-8").await;
                }
            }
        };
        let cost = self.settle(&call, reservation, usage);
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
        let durable = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        let mut ev = self.event(&call, "allow");
        ev.extra.insert("status".into(), status.into());
        if tally.total() > 0 {
            ev.extra.insert("masked".into(), serde_json::to_value(&tally.counts).unwrap_or_default());
            if tally.fields > 0 {
                ev.extra.insert("masked_fields".into(), tally.fields.into());
            }
        }
        if let Some(d) = completion_digest {
            ev.extra.insert("completion_digest".into(), d.into());
        }
        add_usage(&mut ev, usage, cost);
        if durable {
            if self.deps.audit.record(ev).await.is_err() {
                return error(500, "audit_unavailable", "warden: the audit log could not record this request; its result is withheld");
            }
        } else if let Err(e) = self.deps.audit.record_nowait(ev) {
            tracing::error!(error = %e, "audit enqueue failed");
        }
        Response::from_parts(parts, full(out))
    }

    async fn unmaskable(&self, call: &Call, parts: &http::response::Parts, why: &str) -> Response<Body> {
        let status = parts.status.as_u16();
        let reason = format!("warden: the response of target {:?} cannot be masked: {why}", call.target.name);
        self.audit(call, "allow", |ev| {
            ev.error = Some("unmaskable".into());
            ev.reason = Some(reason.clone());
            ev.extra.insert("status".into(), status.into());
            ev.extra.insert("on_unmaskable".into(), format!("{:?}", call.target.on_unmaskable).to_lowercase().into());
        })
        .await;
        match call.target.on_unmaskable {
            Unmaskable::Refuse => error(502, "unmaskable_response", &format!("{reason}; refused (http.targets[{}].on_unmaskable = \"refuse\")", call.target.index)),
            Unmaskable::Redact => {
                let mut r = Response::new(full("[REDACTED:unmaskable]"));
                *r.status_mut() = parts.status;
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
                r
            }
        }
    }

    fn reserve(&self, call: &Call, l: &LlmRequest) -> Result<Reservation, String> {
        let t = &call.target;
        let price = t.models.get(&l.model);
        let b = &t.budgets;
        let tokens = l.prompt_tokens_bound + l.output_bound(t.default_cap);
        let cost = price.map(|p| micros(l.prompt_tokens_bound, p.input_usd_per_mtok) + micros(l.output_bound(t.default_cap), p.output_usd_per_mtok)).unwrap_or(0);
        let uses_usd = b.per_agent_usd.is_some() || b.per_owner_usd.is_some() || b.per_run_usd.is_some();
        if uses_usd && price.is_none() {
            return Err(format!("warden: model \"{}\" has no price in http.targets[{}].models, so its spend cannot be budgeted; refused", l.model, t.index));
        }
        let usd = |v: Option<f64>| v.map(|u| (u * 1e6).floor() as u64);
        let key = |s: &str| format!("http.targets[{}].budgets.per_{s}", t.index);
        let mut limits = Vec::new();
        if b.per_agent_tokens.is_some() || b.per_agent_usd.is_some() {
            limits.push(Limit { scope: "agent", name: call.who.agent.clone(), max_tokens: b.per_agent_tokens, max_micros: usd(b.per_agent_usd), setting: key("agent") });
        }
        if b.per_owner_tokens.is_some() || b.per_owner_usd.is_some() {
            limits.push(Limit { scope: "owner", name: call.who.owner.clone(), max_tokens: b.per_owner_tokens, max_micros: usd(b.per_owner_usd), setting: key("owner") });
        }
        if b.per_run_tokens.is_some() || b.per_run_usd.is_some() {
            // Calls without a run share one "" run per agent: not declaring a run is no way out.
            let run = format!("{}/{}", call.who.agent, call.who.run.clone().unwrap_or_default());
            limits.push(Limit { scope: "run", name: run, max_tokens: b.per_run_tokens, max_micros: usd(b.per_run_usd), setting: key("run") });
        }
        let window = b.window.map(|w| now_unix() as u64 / w.as_secs().max(1)).unwrap_or(0);
        self.ledger.reserve(&t.name, window, &limits, tokens, cost)
    }

    /// Settles a reservation with the reported usage; returns the call's cost in micro-USD.
    fn settle(&self, call: &Call, reservation: Option<Reservation>, usage: Option<Usage>) -> Option<u64> {
        let l = call.llm.as_ref()?;
        let price = call.target.models.get(&l.model);
        let cost = |u: Usage| price.map(|p| micros(u.prompt, p.input_usd_per_mtok) + micros(u.completion, p.output_usd_per_mtok)).unwrap_or(0);
        match (reservation, usage) {
            (Some(r), Some(u)) => {
                let c = cost(u);
                r.settle(u.prompt + u.completion, c);
                Some(c)
            }
            // No usage reported: the reservation stands as spent.
            (Some(r), None) => Some(r.reserved().1),
            (None, u) => u.map(cost),
        }
    }

    /// Drops every cached agent status: the next request of each agent reads the store.
    pub(crate) fn forget_agent_statuses(&self) {
        self.agents.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.graph_manifests.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    async fn agent_owner(&self, agent: &str) -> Result<String, String> {
        if let Some((at, r)) = self.agents.lock().unwrap_or_else(|e| e.into_inner()).get(agent) {
            if at.elapsed() < AGENT_TTL {
                return r.clone();
            }
        }
        let store = self.deps.store.clone();
        let name = agent.to_string();
        let r = match tokio::task::spawn_blocking(move || store.agent(&name)).await {
            Ok(Ok(Some(rec))) if rec.may_act() => Ok(rec.owner),
            Ok(Ok(Some(rec))) if rec.owner_status != warden_store::HumanStatus::Active => Err(format!("warden: agent \"{agent}\" cannot act: its owner {} is deactivated", rec.owner)),
            Ok(Ok(Some(_))) => Err(format!("warden: agent \"{agent}\" is suspended")),
            Ok(Ok(None)) => Err(format!("warden: agent \"{agent}\" is unknown")),
            _ => return Err("warden: the gateway cannot confirm the agent is active (store unavailable); try again".into()),
        };
        self.agents.lock().unwrap_or_else(|e| e.into_inner()).insert(agent.to_string(), (Instant::now(), r.clone()));
        r
    }

    /// Approval of one exact request (method, path, query and a digest of the body). Ok with
    /// the approval id when it may run now.
    async fn hold(&self, call: &Call, statement: String, decision: &Decision, asked_mode: Option<&str>) -> Result<String, Response<Body>> {
        let id = &call.who;
        let store = self.deps.store.clone();
        let blocking = |f: Box<dyn FnOnce(&dyn Store) -> warden_store::Result<Option<ApprovalRecord>> + Send>| {
            let store = store.clone();
            async move { tokio::task::spawn_blocking(move || f(store.as_ref())).await.ok().and_then(Result::ok).flatten() }
        };
        let refuse = |m: String| json_response(403, json!({ "error": "denied", "message": m, "policy_ids": decision.policy_ids }));
        let (agent, node, target, stmt, digest) = (id.agent.clone(), id.node.clone(), id.target.clone(), statement.clone(), call.body_digest.clone());
        let found = blocking(Box::new(move |s| s.find_approved_command(&agent, node.as_deref(), &target, &stmt, Some(&digest), now_unix()))).await;
        if let Some(rec) = found {
            let rid = rec.id.clone();
            let store2 = store.clone();
            if tokio::task::spawn_blocking(move || store2.consume_approval(&rid)).await.ok().and_then(Result::ok) == Some(true) {
                self.approval_event(call, &rec, "approval_executed", "allow");
                return Ok(rec.id);
            }
        }
        let rule = decision.approval.clone().unwrap_or(warden_core::ApprovalRule { policy_id: decision.policy_ids.join(","), mode: None, quorum: 1 });
        let mode = rule.mode.clone().or(asked_mode.map(str::to_string)).filter(|m| m == "wait" || m == "resume").unwrap_or_else(|| "wait".into());
        let lifetime = if mode == "resume" { self.deps.resume_lifetime } else { self.deps.approval_timeout };
        let request = NewApproval {
            kind: "command".into(),
            agent: id.agent.clone(),
            owner: id.owner.clone(),
            node: id.node.clone(),
            run: id.run.clone(),
            graph_version: id.graph_version.clone(),
            target: id.target.clone(),
            statement: Some(statement),
            params_digest: Some(call.body_digest.clone()),
            rule: rule.policy_id.clone(),
            reason: Some(decision.reason.clone()),
            requested_by: format!("agent:{}", id.agent),
            quorum: rule.quorum,
            mode: mode.clone(),
            expires_at: now_unix() + lifetime.as_secs() as i64,
            grant: None,
        };
        let Some(rec) = blocking(Box::new(move |s| s.create_approval(&request).map(Some))).await else {
            return Err(refuse("warden: denied because the approval request could not be recorded (fail closed)".into()));
        };
        self.approval_event(call, &rec, "approval_requested", "hold");
        if let Some(n) = &self.deps.on_approval {
            n(&rec);
        }
        if mode == "resume" {
            return Err(json_response(
                409,
                json!({
                    "error": "approval_pending",
                    "approval_id": rec.id,
                    "policy": rule.policy_id,
                    "message": format!("warden: approval pending: approval {} (policy \"{}\") must be granted by a human; once approved, send the same request again and it runs once", rec.id, rule.policy_id),
                    "approve_with": format!("warden approvals approve {} --as EMAIL --reason \"...\"", rec.id),
                }),
            ));
        }
        let deadline = tokio::time::Instant::now() + lifetime;
        loop {
            tokio::time::sleep(APPROVAL_POLL).await;
            let rid = rec.id.clone();
            let Some(now) = blocking(Box::new(move |s| s.approval(&rid))).await else { continue };
            match now.status {
                ApprovalStatus::Pending if tokio::time::Instant::now() < deadline => continue,
                ApprovalStatus::Pending => {
                    let store2 = store.clone();
                    let _ = tokio::task::spawn_blocking(move || store2.expire_approvals(now_unix() + 1)).await;
                    return Err(json_response(504, json!({ "error": "approval_timeout", "approval_id": rec.id, "message": format!("warden: approval {} timed out; the request was not sent", rec.id) })));
                }
                ApprovalStatus::Approved => {
                    let rid = rec.id.clone();
                    let store2 = store.clone();
                    if tokio::task::spawn_blocking(move || store2.consume_approval(&rid)).await.ok().and_then(Result::ok) == Some(true) {
                        self.approval_event(call, &now, "approval_executed", "allow");
                        return Ok(rec.id);
                    }
                    return Err(refuse(format!("warden: approval {} was already used", rec.id)));
                }
                ApprovalStatus::Denied => {
                    let by = now.votes.iter().rev().find(|v| !v.approve).map(|v| (v.by.clone(), v.reason.clone())).unwrap_or_default();
                    return Err(refuse(format!("warden: approval {} denied by {}: {}", rec.id, by.0, by.1)));
                }
                other => return Err(refuse(format!("warden: approval {} is {}; the request was not sent", rec.id, other.as_str()))),
            }
        }
    }

    fn approval_event(&self, call: &Call, rec: &ApprovalRecord, kind: &str, decision: &str) {
        let mut ev = self.event(call, decision);
        ev.kind = kind.to_string();
        ev.policy_ids = vec![rec.request.rule.clone()];
        ev.extra.insert("approval_id".into(), rec.id.clone().into());
        let _ = self.deps.audit.record_nowait(ev);
    }

    fn event(&self, call: &Call, decision: &str) -> AuditEvent {
        let kind = if call.llm.is_some() { "llm_call" } else { "http_request" };
        let mut ev = AuditEvent::new(kind, decision);
        let w = &call.who;
        ev.agent = Some(w.agent.clone());
        ev.owner = Some(w.owner.clone());
        ev.node = w.node.clone();
        ev.run = w.run.clone();
        ev.thread = w.thread.clone();
        ev.graph_version = w.graph_version.clone();
        ev.target = Some(w.target.clone());
        ev.statement = Some(format!("{} {}", call.method, call.path));
        ev.params_digest = Some(call.body_digest.clone());
        ev.actions = vec![if call.llm.is_some() { "llm_call" } else { "http_request" }.to_string()];
        ev.duration_us = Some(call.started.elapsed().as_micros() as u64);
        if let Some(d) = &call.decision {
            ev.policy_ids = d.policy_ids.clone();
        }
        if let Some(r) = &call.prompt_redacted {
            ev.extra.insert("prompt_redacted".into(), r.clone());
        }
        if let Some(l) = &call.llm {
            ev.extra.insert("model".into(), l.model.clone().into());
            ev.extra.insert("endpoint".into(), l.endpoint.as_str().into());
            // The prompt only as a digest (the body digest above covers it).
            ev.extra.insert("prompt_digest".into(), call.body_digest.clone().into());
        }
        if let Some(id) = &call.approval_id {
            ev.extra.insert("approval_id".into(), id.clone().into());
        }
        ev
    }

    async fn audit(&self, call: &Call, decision: &str, f: impl FnOnce(&mut AuditEvent)) {
        let mut ev = self.event(call, decision);
        f(&mut ev);
        if let Err(e) = self.deps.audit.record_nowait(ev) {
            tracing::error!(error = %e, "audit enqueue failed");
        }
    }

    async fn audit_response(&self, call: &Call, status: u16, usage: Option<Usage>, cost: Option<u64>, err: Option<&str>) {
        self.audit(call, "allow", |ev| {
            ev.extra.insert("status".into(), status.into());
            add_usage(ev, usage, cost);
            ev.error = err.map(str::to_string);
        })
        .await;
    }
}

fn add_usage(ev: &mut AuditEvent, usage: Option<Usage>, cost: Option<u64>) {
    if let Some(u) = usage {
        ev.extra.insert("prompt_tokens".into(), u.prompt.into());
        ev.extra.insert("completion_tokens".into(), u.completion.into());
    }
    if let Some(c) = cost {
        ev.extra.insert("cost_usd".into(), json!(c as f64 / 1e6));
    }
}

struct Call {
    who: SessionIdentity,
    target: Arc<Target>,
    method: String,
    path: String,
    started: Instant,
    body_digest: String,
    llm: Option<LlmRequest>,
    decision: Option<Decision>,
    approval_id: Option<String>,
    /// Who approved a held call (MCP audit).
    approver: Option<String>,
    /// What `redact_prompts` masked in the request, by kind (counts only).
    prompt_redacted: Option<serde_json::Value>,
    /// Resolves when the agent loses the right to act (suspension, owner deactivation).
    revocation: Option<crate::revocation::Revocation>,
}

impl Call {
    /// What an approval binds: method, target, normalized path and query (the body is
    /// bound by its digest).
    fn statement(&self, query: Option<&str>) -> String {
        let mut s = format!("{} /{}{}", self.method, self.target.name, self.path);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        s
    }
}

fn decision_key(who: &SessionIdentity, parts: &[&str]) -> String {
    let o = |v: &Option<String>| v.clone().map_or_else(|| "\u{1}".to_string(), |s| s);
    let mut k = [who.agent.clone(), who.owner.clone(), o(&who.node), o(&who.run), o(&who.graph_version), who.target.clone()].join("\0");
    for p in parts {
        k.push('\0');
        k.push_str(p);
    }
    k
}

/// ("target", "/rest" policy form, "/rest" forward form).
fn split_target<'a>(policy: &'a str, forward: &'a str) -> (&'a str, &'a str, &'a str) {
    let p = &policy[1..];
    let f = &forward[1..];
    let (t, rest_p) = match p.find('/') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, "/"),
    };
    let rest_f = match f.find('/') {
        Some(i) => &f[i..],
        None => "/",
    };
    (t, rest_p, rest_f)
}

/// An upstream event stream, masked event by event.
struct SseBody {
    inner: Incoming,
    masker: SseMasker,
    done: bool,
    on_end: Option<Box<dyn FnOnce(&SseMasker, Option<&str>) + Send + Sync>>,
    /// Cuts the stream when the agent is revoked mid-response.
    revoked: Option<crate::revocation::Revocation>,
    /// Cuts the stream when the JIT grant it rests on expires.
    grant_ends: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The event a revoked stream ends with: OpenAI-style error data, so SDKs raise it.
fn revoked_event(reason: &str) -> Bytes {
    let data = json!({ "error": { "type": "warden_revoked", "code": "agent_revoked", "message": reason } });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

impl SseBody {
    fn end(&mut self, err: Option<&str>) {
        if let Some(f) = self.on_end.take() {
            f(&self.masker, err);
        }
    }
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(r) = this.revoked.as_mut() {
                if let Poll::Ready(reason) = Pin::new(r).poll(cx) {
                    this.done = true;
                    this.revoked = None;
                    this.end(Some(&reason));
                    // What the masker still holds back is dropped, never released unmasked.
                    return Poll::Ready(Some(Ok(Frame::data(revoked_event(&reason)))));
                }
            }
            if let Some(s) = this.grant_ends.as_mut() {
                if s.as_mut().poll(cx).is_ready() {
                    let reason = "warden: the just-in-time grant this stream rests on has expired; the stream was cut".to_string();
                    this.done = true;
                    this.grant_ends = None;
                    this.end(Some(&reason));
                    return Poll::Ready(Some(Ok(Frame::data(revoked_event(&reason)))));
                }
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    let mut out = Vec::new();
                    if let Err(e) = this.masker.push(&data, &mut out) {
                        this.done = true;
                        this.end(Some(&e.to_string()));
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let mut out = Vec::new();
                    let r = this.masker.finish(&mut out);
                    this.end(r.as_ref().err().map(|e| e.to_string()).as_deref());
                    if let Err(e) = r {
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    this.end(Some("upstream stream error"));
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        // The client went away mid-stream: the call still ends (and is settled) here.
        self.end(Some("client disconnected"));
    }
}
