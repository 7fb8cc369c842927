//! The web console (issue 12), served on the admin address under `/console`: approvals
//! inbox (live over SSE), audit search with chain verification, sessions and replay, agents
//! and owners, graph versions, grants. Server-rendered with maud (escaped by construction);
//! the only script is `/console/static/console.js` under `Content-Security-Policy:
//! default-src 'self'` (no inline script or style).
//!
//! Sign-in: the bootstrap admin token (`[console] admin_token_env`, with the email the
//! admin acts as), an auditor token (`auditor_token_env`, read-only), or an OIDC bearer token
//! (roles from the IdP: admin, approver, auditor). The session is an opaque random id in an
//! HttpOnly, SameSite=Strict cookie (Secure when `secure_cookie`); every form carries the
//! session's CSRF token. Roles are enforced here, server-side: auditors cannot change
//! anything, and deciding goes through the same separation-of-duties check as the CLI and
//! API ([`crate::duties::check_decider`]), so nobody approves their own agent's command.

use crate::duties::{check_decider, Decidable};
use crate::ApiState;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;
use warden_audit::AuditEvent;
use warden_core::secret::Secret;
use warden_store::{ApprovalStatus, Vote, VoteOutcome};

const COOKIE: &str = "warden_console";
const LOGIN_COOKIE: &str = "warden_login";
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
const JS: &str = include_str!("console/console.js");
const CSS: &str = include_str!("console/console.css");
const OPENAPI: &str = include_str!("console/openapi.json");
const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// What the console needs from the gateway's config.
#[derive(Default)]
pub struct ConsoleSettings {
    /// Bootstrap admin token (`[console] admin_token_env`).
    pub admin_token: Option<Secret>,
    /// Read-only auditor token (`[console] auditor_token_env`).
    pub auditor_token: Option<Secret>,
    /// Mark cookies Secure (the admin address is served over TLS, or behind a TLS proxy).
    pub secure_cookie: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Admin,
    Approver,
    Auditor,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
        }
    }
    /// The console role for IdP roles (admin > approver > auditor); None: no console role.
    pub(crate) fn from_idp_roles(roles: &[String]) -> Option<Role> {
        let has = |r: &str| roles.iter().any(|x| x == r);
        [(Role::Admin, "admin"), (Role::Approver, "approver"), (Role::Auditor, "auditor")].into_iter().find(|(_, name)| has(name)).map(|(role, _)| role)
    }
    fn may_decide(self) -> bool {
        matches!(self, Role::Admin | Role::Approver)
    }
}

#[derive(Clone)]
struct Signed {
    who: String,
    role: Role,
    csrf: String,
    expires: Instant,
}

pub struct Console {
    api: ApiState,
    settings: ConsoleSettings,
    sessions: Mutex<HashMap<String, Signed>>,
    /// Authorization-code sign-ins sent to the IdP and not yet back.
    pub(crate) oidc_pending: crate::oidc_login::Pending,
}

type C = State<Arc<Console>>;

/// The console's routes and `/api/openapi.json`, to merge into the admin router.
pub fn router(api: ApiState, settings: ConsoleSettings) -> Router {
    let console = Arc::new(Console { api, settings, sessions: Mutex::new(HashMap::new()), oidc_pending: Default::default() });
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/console", get(|| async { Redirect::to("/console/approvals") }))
        .route("/console/static/console.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], JS) }))
        .route("/console/static/console.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/approvals", get(approvals_page))
        .route("/console/approvals/list", get(approvals_fragment))
        .route("/console/approvals/{id}/decide", post(decide_approval))
        .route("/console/events", get(events))
        .route("/console/audit", get(audit_page))
        .route("/console/sessions", get(sessions_page))
        .route("/console/sessions/{id}", get(replay_page))
        .route("/console/agents", get(agents_page))
        .route("/console/agents/{name}/{action}", post(agent_action))
        .route("/console/graphs", get(graphs_page))
        .route("/console/graphs/{id}/decide", post(decide_graph))
        .route("/console/grants", get(grants_page))
        .route("/console/grants/{id}/revoke", post(revoke_grant))
        .merge(crate::saml::routes())
        .merge(crate::oidc_login::routes())
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

pub(crate) fn eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Console {
    fn signed(&self, headers: &HeaderMap) -> Option<Signed> {
        let id = cookie(headers, COOKIE)?;
        let mut sessions = self.sessions.lock().unwrap();
        sessions.retain(|_, s| s.expires > Instant::now());
        sessions.get(&id).cloned()
    }

    /// A new console session for a human signed in by any path (tokens, OIDC, SAML),
    /// audited as `console_sign_in`; returns the session's Set-Cookie value.
    pub(crate) fn start_session(&self, who: String, role: Role, via: &str) -> HeaderValue {
        let id = random_hex();
        self.sessions.lock().unwrap().insert(id.clone(), Signed { who: who.clone(), role, csrf: random_hex(), expires: Instant::now() + SESSION_TTL });
        let mut ev = AuditEvent::new("console_sign_in", "allow");
        ev.extra.insert("human".into(), who.into());
        ev.extra.insert("role".into(), role.as_str().into());
        ev.extra.insert("via".into(), via.into());
        let _ = self.api.audit.record_nowait(ev);
        HeaderValue::from_str(&self.set_cookie(COOKIE, &id, SESSION_TTL.as_secs() as i64)).unwrap()
    }

    pub(crate) fn api(&self) -> &ApiState {
        &self.api
    }

    /// A single sign-on refused: 403 with the reason, no session, audited.
    pub(crate) fn refuse_sign_in(&self, via: &str, email: Option<&str>, why: String) -> Response {
        let mut ev = AuditEvent::new("console_sign_in", "deny");
        ev.reason = Some(why.clone());
        ev.extra.insert("via".into(), via.into());
        if let Some(e) = email {
            ev.extra.insert("human".into(), e.into());
        }
        let _ = self.api.audit.record_nowait(ev);
        (StatusCode::FORBIDDEN, format!("sign-in refused: {why}")).into_response()
    }

    /// The end of a single sign-on: the IdP's verified human, checked against the store
    /// (active, SCIM groups) and given the console role their groups map to.
    pub(crate) async fn finish_sign_in(&self, via: &str, human: crate::oidc::Human, roles_for: impl Fn(&[String]) -> Vec<String>) -> Response {
        let email = human.email.clone();
        let human = match crate::humans::active_human(&self.api, roles_for, human).await {
            Ok(h) => h,
            Err((StatusCode::SERVICE_UNAVAILABLE, why)) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}; try again")).into_response(),
            Err((_, why)) => return self.refuse_sign_in(via, Some(&email), why),
        };
        let Some(role) = Role::from_idp_roles(&human.roles) else {
            return self.refuse_sign_in(via, Some(&email), "your identity provider grants you no console role (admin, approver or auditor)".into());
        };
        // A page, not a redirect: this request came from the IdP's site, and a redirect
        // chain started there would not carry the SameSite=Strict session cookie; the
        // page's refresh is a same-site navigation.
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; meta http-equiv="refresh" content="0;url=/console/approvals"; title { "Warden · signed in" } }
                body { p { "Signed in. " a href="/console/approvals" { "Continue to the console" } "." } }
            }
        };
        let mut r = Html(page.into_string()).into_response();
        r.headers_mut().append(header::SET_COOKIE, self.start_session(human.email, role, via));
        r
    }

    pub(crate) fn secure_cookie(&self) -> bool {
        self.settings.secure_cookie
    }

    fn set_cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        let secure = if self.secure_cookie() { "; Secure" } else { "" };
        format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
    }
}

/// The signed-in user, or a redirect to the sign-in page.
fn require(c: &Console, headers: &HeaderMap) -> Result<Signed, Response> {
    c.signed(headers).ok_or_else(|| Redirect::to("/console/login").into_response())
}

/// The signed-in user for a form post: CSRF token checked, role checked.
fn require_post(c: &Console, headers: &HeaderMap, form: &HashMap<String, String>, decide: bool) -> Result<Signed, Response> {
    let s = c.signed(headers).ok_or_else(|| (StatusCode::UNAUTHORIZED, "sign in first").into_response())?;
    if !form.get("csrf").is_some_and(|t| eq(t, &s.csrf)) {
        return Err((StatusCode::FORBIDDEN, "CSRF token missing or wrong; reload the page").into_response());
    }
    if decide && !s.role.may_decide() {
        return Err((StatusCode::FORBIDDEN, format!("the {} role cannot change anything here", s.role.as_str())).into_response());
    }
    Ok(s)
}

fn back(path: &str, msg: &str) -> Response {
    Redirect::to(&format!("{path}?msg={}", crate::oidc::form_encode(msg))).into_response()
}

fn layout(title: &str, user: Option<&Signed>, msg: Option<&str>, body: Markup) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Warden · " (title) }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                header {
                    strong { "Warden" }
                    @if let Some(u) = user {
                        nav {
                            a href="/console/approvals" { "Approvals" }
                            a href="/console/audit" { "Audit" }
                            a href="/console/sessions" { "Sessions" }
                            a href="/console/agents" { "Agents" }
                            a href="/console/graphs" { "Graph versions" }
                            a href="/console/grants" { "Grants" }
                        }
                        form.inline method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(u.csrf);
                            span.who { (u.who) " (" (u.role.as_str()) ") " }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(m) = msg { p.flash id="flash" { (m) } }
                    (body)
                }
            }
        }
    };
    Html(page.into_string()).into_response()
}

fn fmt_time(unix: i64) -> String {
    fmt_us(unix * 1_000_000)
}

fn fmt_us(us: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z")).unwrap_or_default()
}

async fn blocking<T: Send + 'static>(c: &Console, f: impl FnOnce(&dyn warden_store::Store) -> T + Send + 'static) -> Result<T, Response> {
    let store = c.api.store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref())).await.map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response())
}

// ---- sign-in ----------------------------------------------------------------------------

async fn login_page(State(c): C, Query(q): Query<HashMap<String, String>>) -> Response {
    let nonce = random_hex();
    let body = html! {
        form.card method="post" action="/console/login" id="login" {
            input type="hidden" name="csrf" value=(nonce);
            label { "Token " input type="password" name="token" autocomplete="off" required; }
            p.hint { "The bootstrap admin token, an auditor token, or your OIDC bearer token." }
            label { "Act as (email; admin token only) " input type="email" name="email"; }
            button type="submit" { "Sign in" }
        }
        (crate::oidc_login::login_link(&c.api))
        (crate::saml::login_link(&c.api))
    };
    let mut r = layout("Sign in", None, q.get("msg").map(String::as_str), body);
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&c.set_cookie(LOGIN_COOKIE, &nonce, 600)).unwrap());
    r
}

async fn login(State(c): C, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let nonce = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if nonce.is_empty() || !form.get("csrf").is_some_and(|t| eq(t, &nonce)) {
        return back("/console/login", "the sign-in form expired; try again");
    }
    let token = form.get("token").map(|t| t.trim().to_string()).unwrap_or_default();
    let email = form.get("email").map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty());
    let (who, role) = if c.settings.admin_token.as_ref().is_some_and(|t| eq(t.expose(), &token)) {
        match email {
            Some(e) => (e, Role::Admin),
            None => return back("/console/login", "with the admin token, say which email you act as (it is audited and checked like any approver)"),
        }
    } else if c.settings.auditor_token.as_ref().is_some_and(|t| eq(t.expose(), &token)) {
        (email.unwrap_or_else(|| "auditor".into()), Role::Auditor)
    } else if let Some(verifier) = c.api.identity.oidc.clone().filter(|_| !token.is_empty()) {
        match verifier.verify(&token).await {
            Ok(h) => {
                let Some(role) = Role::from_idp_roles(&h.roles) else {
                    return back("/console/login", "your identity provider grants you no console role (admin, approver or auditor)");
                };
                (h.email, role)
            }
            Err(_) => return back("/console/login", "sign-in failed"),
        }
    } else {
        return back("/console/login", "sign-in failed");
    };
    let mut r = Redirect::to("/console/approvals").into_response();
    r.headers_mut().append(header::SET_COOKIE, c.start_session(who, role, "token"));
    r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&c.set_cookie(LOGIN_COOKIE, "", 0)).unwrap());
    r
}

async fn logout(State(c): C, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    if let Err(r) = require_post(&c, &headers, &form, false) {
        return r;
    }
    if let Some(id) = cookie(&headers, COOKIE) {
        c.sessions.lock().unwrap().remove(&id);
    }
    let mut r = Redirect::to("/console/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&c.set_cookie(COOKIE, "", 0)).unwrap());
    r
}

// ---- approvals --------------------------------------------------------------------------

fn inbox(list: &[warden_store::ApprovalRecord], user: &Signed) -> Markup {
    html! {
        @if list.is_empty() { p.empty { "No pending requests." } }
        @for a in list {
            @let r = &a.request;
            div.card.request data-id=(a.id) {
                div.meta {
                    span.id { (a.id) } " · " (r.kind) " · requested " (fmt_time(a.created_at)) " · expires " (fmt_time(r.expires_at))
                    " · " (a.votes.iter().filter(|v| v.approve).count()) "/" (r.quorum) " approvals"
                }
                table.kv {
                    tr { th { "agent" } td.agent { (r.agent) } th { "owner" } td { (r.owner) } }
                    tr { th { "node" } td { (r.node.as_deref().unwrap_or("-")) } th { "run" } td { (r.run.as_deref().unwrap_or("-")) } }
                    tr { th { "target" } td { (r.target) } th { "rule" } td { (r.rule) } }
                    @if let Some(g) = &r.grant {
                        tr { th { "grant" } td colspan="3" { (g.actions.join(", ")) " on " (if g.objects.is_empty() { "every table".to_string() } else { g.objects.join(", ") }) " for " (g.duration_secs) "s" } }
                    }
                    @if let Some(why) = &r.reason { tr { th { "reason" } td colspan="3" { (why) } } }
                }
                @if let Some(sql) = &r.statement { pre.sql { (sql) } }
                @if let Some(d) = &r.params_digest { p.hint { "parameters sha256:" (d) } }
                @if user.role.may_decide() {
                    form.decide method="post" action={ "/console/approvals/" (a.id) "/decide" } {
                        input type="hidden" name="csrf" value=(user.csrf);
                        input type="text" name="reason" placeholder="reason (required, audited)" required;
                        button type="submit" name="action" value="approve" { "Approve" }
                        button.deny type="submit" name="action" value="deny" { "Deny" }
                    }
                }
            }
        }
    }
}

async fn pending(c: &Console) -> Result<Vec<warden_store::ApprovalRecord>, Response> {
    blocking(c, |s| s.list_approvals(Some(ApprovalStatus::Pending), 200)).await?.map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response())
}

async fn approvals_page(State(c): C, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let user = match require(&c, &headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let list = match pending(&c).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let body = html! {
        p.hint { "New requests appear here as they arrive." }
        div id="inbox" { (inbox(&list, &user)) }
    };
    layout("Approvals inbox", Some(&user), q.get("msg").map(String::as_str), body)
}

async fn approvals_fragment(State(c): C, headers: HeaderMap) -> Response {
    let Some(user) = c.signed(&headers) else { return StatusCode::UNAUTHORIZED.into_response() };
    match pending(&c).await {
        Ok(list) => Html(inbox(&list, &user).into_string()).into_response(),
        Err(r) => r,
    }
}

/// Server-sent events: `approvals` whenever the set of pending requests changes.
async fn events(State(c): C, headers: HeaderMap) -> Response {
    if c.signed(&headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let stream = futures_util::stream::unfold((c, None::<Vec<String>>), |(c, last)| async move {
        loop {
            let ids: Vec<String> = pending(&c).await.map(|l| l.into_iter().map(|a| a.id).collect()).unwrap_or_default();
            if last.as_ref() != Some(&ids) {
                let ev = Event::default().event("approvals").data(ids.len().to_string());
                return Some((Ok::<_, std::convert::Infallible>(ev), (c, Some(ids))));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

async fn decide_approval(State(c): C, headers: HeaderMap, Path(id): Path<String>, Form(form): Form<HashMap<String, String>>) -> Response {
    let user = match require_post(&c, &headers, &form, true) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let approve = form.get("action").map(String::as_str) == Some("approve");
    let reason = form.get("reason").cloned().unwrap_or_default();
    if reason.trim().is_empty() {
        return back("/console/approvals", "say why: the reason is audited and shown to the requester");
    }
    let identity = c.api.identity.clone();
    let (who, why) = (user.who.clone(), reason.clone());
    let result = blocking(&c, move |store| -> Result<(warden_store::ApprovalRecord, String, VoteOutcome), String> {
        let rec = store.approval(&id).map_err(|e| e.to_string())?.ok_or_else(|| format!("no approval request {id:?}"))?;
        let r = &rec.request;
        // The owner now, not at request time: a transfer moves the duty.
        let owner = store.agent(&r.agent).ok().flatten().map(|a| a.owner).unwrap_or_else(|| r.owner.clone());
        let approvers = identity.approvers.for_target(Some(&r.target));
        let d = Decidable { what: format!("request {}", rec.id), agent: &r.agent, owner: &owner, submitted_by: &r.requested_by };
        let who = check_decider(store, &approvers, true, &d, &who)?;
        let outcome = store.vote(&id, &Vote { by: who.clone(), approve, reason: why, at: now_unix() }).map_err(|e| e.to_string())?;
        Ok((rec, who, outcome))
    })
    .await;
    let (rec, who, outcome) = match result {
        Ok(Ok(v)) => v,
        Ok(Err(msg)) => return back("/console/approvals", &format!("refused: {msg}")),
        Err(r) => return r,
    };
    let mut ev = AuditEvent::new(if approve { "approval_approved" } else { "approval_denied" }, if approve { "allow" } else { "deny" });
    ev.agent = Some(rec.request.agent.clone());
    ev.owner = Some(rec.request.owner.clone());
    ev.node = rec.request.node.clone();
    ev.target = Some(rec.request.target.clone());
    ev.statement = rec.request.statement.clone();
    ev.reason = Some(reason);
    ev.extra.insert("approval_id".into(), rec.id.clone().into());
    ev.extra.insert("approver".into(), who.into());
    ev.extra.insert("outcome".into(), format!("{outcome:?}").into());
    ev.extra.insert("via".into(), "console".into());
    if c.api.audit.record(ev).await.is_err() {
        return back("/console/approvals", "the audit log is unavailable");
    }
    let word = match outcome {
        VoteOutcome::Approved => "approved",
        VoteOutcome::Denied => "denied",
        VoteOutcome::Recorded { .. } => "vote recorded (quorum not reached yet)",
    };
    back("/console/approvals", &format!("{}: {word}", rec.id))
}

// ---- audit ------------------------------------------------------------------------------

async fn audit_page(State(c): C, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let user = match require(&c, &headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let query = match crate::reads::AuditQuery::from_params(&q) {
        Ok(query) => query,
        Err(e) => return back("/console/audit", &e),
    };
    let (events, report) = match blocking(&c, move |s| crate::reads::audit_search(s, &query)).await {
        Ok(Ok(page)) => (page.events, page.verification),
        Ok(Err(e)) => return (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
        Err(r) => return r,
    };
    let v = |k: &str| q.get(k).cloned().unwrap_or_default();
    let body = html! {
        @if report.ok {
            p.verify.ok id="verify" { "Chain verified: " (report.events) " events, " (report.checkpoints) " signed checkpoints intact (" (report.unanchored_tail) " after the last checkpoint)." }
        } @else {
            p.verify.bad id="verify" { "Chain verification FAILED: " (report.problem.as_deref().unwrap_or("unknown problem")) }
        }
        form.filters method="get" action="/console/audit" {
            input name="agent" placeholder="agent" value=(v("agent"));
            input name="node" placeholder="node" value=(v("node"));
            select name="decision" {
                @for d in ["", "allow", "deny", "hold", "needs_grant"] {
                    option value=(d) selected[v("decision") == d] { (if d.is_empty() { "any decision" } else { d }) }
                }
            }
            input name="target" placeholder="target" value=(v("target"));
            input name="since" placeholder="since (e.g. 1h)" value=(v("since"));
            button type="submit" { "Search" }
        }
        table.grid id="audit" {
            thead { tr { th { "seq" } th { "time" } th { "kind" } th { "agent" } th { "node" } th { "target" } th { "decision" } th { "statement / detail" } th { "rows" } th { "session" } } }
            tbody {
                @for (seq, e) in &events {
                    tr class={ "d-" (e.decision) } {
                        td { (seq) } td { (fmt_time(e.time.unix_timestamp())) } td { (e.kind) }
                        td { (e.agent.as_deref().unwrap_or("")) } td { (e.node.as_deref().unwrap_or("")) } td { (e.target.as_deref().unwrap_or("")) }
                        td.decision { (e.decision) }
                        td.stmt {
                            @if let Some(s) = &e.statement { code { (s) } }
                            @if let Some(r) = &e.reason { div.hint { (r) } }
                            @if let Some(a) = e.extra.get("approval_id").and_then(Value::as_str) { div.hint { "approval " (a) } }
                        }
                        td { (e.rows.map(|r| r.to_string()).unwrap_or_default()) }
                        td { @if let Some(s) = &e.session_id { a href={ "/console/sessions/" (s) } { (s.get(..8).unwrap_or(s)) } } }
                    }
                }
            }
        }
    };
    layout("Audit", Some(&user), q.get("msg").map(String::as_str), body)
}

// ---- sessions and replay ----------------------------------------------------------------

async fn sessions_page(State(c): C, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let user = match require(&c, &headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let filter = crate::reads::session_filter(&q);
    let list = match blocking(&c, move |s| crate::reads::session_list(s, &filter)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
        Err(r) => return r,
    };
    let v = |k: &str| q.get(k).cloned().unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/console/sessions" {
            input name="agent" placeholder="agent" value=(v("agent"));
            input name="node" placeholder="node" value=(v("node"));
            input name="target" placeholder="target" value=(v("target"));
            button type="submit" { "Filter" }
        }
        table.grid id="sessions" {
            thead { tr { th { "session" } th { "started" } th { "agent" } th { "node" } th { "target" } th { "level" } th { "statements" } th { "ended" } } }
            tbody {
                @for s in &list {
                    tr {
                        td { a href={ "/console/sessions/" (s.session_id) } { (s.session_id) } }
                        td { (fmt_us(s.started_at)) } td { (s.agent) } td { (s.node.as_deref().unwrap_or("-")) } td { (s.target) } td { (s.level) } td { (s.statements) }
                        td { (s.end_reason.as_deref().unwrap_or("(open)")) }
                    }
                }
            }
        }
    };
    layout("Sessions", Some(&user), None, body)
}

async fn replay_page(State(c): C, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let user = match require(&c, &headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (s, loaded) = match blocking(&c, move |s| crate::reads::session_replay(s, &id)).await {
        Ok(Ok(v)) => v,
        Ok(Err((true, msg))) => return (StatusCode::NOT_FOUND, msg).into_response(),
        Ok(Err((false, msg))) => return (StatusCode::SERVICE_UNAVAILABLE, msg).into_response(),
        Err(r) => return r,
    };
    let str_of = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let body = html! {
        table.kv {
            tr { th { "session" } td { (s.session_id) } th { "level" } td { (s.level) } }
            tr { th { "agent" } td { (s.agent) } th { "owner" } td { (s.owner.as_deref().unwrap_or("-")) } }
            tr { th { "node" } td { (s.node.as_deref().unwrap_or("-")) } th { "run" } td { (s.run.as_deref().unwrap_or("-")) } }
            tr { th { "target" } td { (s.target) } th { "ended" } td { (s.end_reason.as_deref().unwrap_or("(open)")) } }
        }
        @if loaded.verified {
            p.verify.ok id="verify" { "Recording verified: " (loaded.chunks) " chunks, each anchored in the audit chain." }
        } @else {
            p.verify.bad id="verify" { "Recording does NOT verify: " (loaded.problems.join("; ")) }
        }
        div.player {
            button type="button" id="prev" { "◀ Prev" }
            button type="button" id="play" { "▶ Play" }
            button type="button" id="next" { "Next ▶" }
            label { "speed " select id="speed" { option value="1" { "1×" } option value="2" { "2×" } option value="10" { "10×" } } }
            button type="button" id="all" { "Show all" }
            span id="position" {}
        }
        ol id="steps" {
            @for e in &loaded.entries {
                @let at = e.get("at_us").and_then(Value::as_i64).unwrap_or(s.started_at);
                @let kind = str_of(e, "kind");
                li.step data-at=(at - s.started_at) data-kind=(kind) {
                    span.offset { "+" (format!("{:.3}", (at - s.started_at) as f64 / 1e6)) "s" }
                    @match kind.as_str() {
                        "start" => { span.kind { "session start" } }
                        "end" => { span.kind { "session end: " (str_of(e, "reason")) } }
                        "gap" => { span.kind.bad { "gap: " (e.get("dropped").and_then(Value::as_u64).unwrap_or(0)) " entries not recorded" } }
                        _ => {
                            span class={ "decision d-" (str_of(e, "decision")) } { (str_of(e, "decision")) }
                            pre.sql { (str_of(e, "sql")) }
                            div.hint {
                                @if let Some(r) = e.get("rows").and_then(Value::as_i64) { (r) " rows · " }
                                @if let Some(d) = e.get("duration_us").and_then(Value::as_u64) { (format!("{:.3}", d as f64 / 1000.0)) " ms" }
                                @if let Some(err) = e.get("error").and_then(Value::as_str) { " · " (err) }
                                @if let Some(r) = e.get("reason").and_then(Value::as_str) { " · " (r) }
                                @if let Some(a) = e.get("approval_id").and_then(Value::as_str) { " · approval " (a) }
                                @if let Some(p) = e.get("params") { " · params " (p.to_string()) }
                            }
                            @if let Some(rows) = e.get("result").and_then(Value::as_array) {
                                table.grid.result {
                                    @if let Some(cols) = e.get("columns").and_then(Value::as_array) {
                                        thead { tr { @for col in cols { th { (col.as_str().unwrap_or("")) } } } }
                                    }
                                    tbody {
                                        @for row in rows {
                                            tr { @for v in row.as_array().map(Vec::as_slice).unwrap_or(&[]) { td { (v.as_str().unwrap_or("NULL")) } } }
                                        }
                                    }
                                }
                                @if e.get("truncated").and_then(Value::as_bool) == Some(true) { p.hint { "… more rows were not recorded (recording caps)" } }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Session replay", Some(&user), None, body)
}

// ---- agents -----------------------------------------------------------------------------

async fn agents_page(State(c): C, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let user = match require(&c, &headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (agents, humans) = match blocking(&c, |s| (s.list_agents(), s.list_humans())).await {
        Ok((Ok(a), Ok(h))) => (a, h),
        Ok(_) => return (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable").into_response(),
        Err(r) => return r,
    };
    let admin = user.role == Role::Admin;
    let body = html! {
        table.grid id="agents" {
            thead { tr { th { "agent" } th { "status" } th { "owner" } th { "owner status" } th { "since" } @if admin { th { "actions" } } } }
            tbody {
                @for a in &agents {
                    tr {
                        td { (a.name) } td { (a.status.as_str()) } td { (a.owner) } td { (a.owner_status.as_str()) } td { (fmt_time(a.updated_at)) }
                        @if admin {
                            td {
                                form.inline method="post" action={ "/console/agents/" (a.name) "/" (if a.status == warden_store::AgentStatus::Active { "suspend" } else { "resume" }) } {
                                    input type="hidden" name="csrf" value=(user.csrf);
                                    button type="submit" { (if a.status == warden_store::AgentStatus::Active { "Suspend" } else { "Resume" }) }
                                }
                                form.inline method="post" action={ "/console/agents/" (a.name) "/transfer" } {
                                    input type="hidden" name="csrf" value=(user.csrf);
                                    input type="email" name="to" placeholder="new owner email" required;
                                    button type="submit" { "Transfer" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Owners" }
        table.grid id="humans" {
            thead { tr { th { "email" } th { "status" } th { "agents" } } }
            tbody {
                @for h in &humans {
                    tr { td { (h.email) } td { (h.status.as_str()) } td { (agents.iter().filter(|a| a.owner == h.email).map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")) } }
                }
            }
        }
    };
    layout("Agents and owners", Some(&user), q.get("msg").map(String::as_str), body)
}

async fn agent_action(State(c): C, headers: HeaderMap, Path((name, action)): Path<(String, String)>, Form(form): Form<HashMap<String, String>>) -> Response {
    let user = match require_post(&c, &headers, &form, true) {
        Ok(u) => u,
        Err(r) => return r,
    };
    if user.role != Role::Admin {
        return (StatusCode::FORBIDDEN, "only admins suspend, resume or transfer agents").into_response();
    }
    let to = form.get("to").cloned().unwrap_or_default();
    let (n, a, t) = (name.clone(), action.clone(), to.clone());
    let result = blocking(&c, move |s| match a.as_str() {
        "suspend" => s.suspend_agent(&n).map(|_| String::new()),
        "resume" => s.resume_agent(&n).map(|_| String::new()),
        "transfer" => s.transfer_agent(&n, &t),
        _ => Err(warden_store::StoreError::NotFound(format!("no action {a:?}"))),
    })
    .await;
    match result {
        Ok(Ok(_)) => {
            if let Some(f) = &c.api.identity.on_revocation {
                f();
            }
            let mut ev = AuditEvent::new("admin", "allow");
            ev.agent = Some(name.clone());
            ev.extra.insert("action".into(), format!("agent_{action}").into());
            ev.extra.insert("by".into(), user.who.clone().into());
            ev.extra.insert("via".into(), "console".into());
            if action == "transfer" {
                ev.owner = Some(to.clone());
            }
            let _ = c.api.audit.record(ev).await;
            back("/console/agents", &format!("agent {name}: {action} done"))
        }
        Ok(Err(e)) => back("/console/agents", &format!("refused: {e}")),
        Err(r) => r,
    }
}

// ---- graph versions ---------------------------------------------------------------------

async fn graphs_page(State(c): C, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let user = match require(&c, &headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let list = match blocking(&c, |s| s.list_graphs(None, 200)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        Err(r) => return r,
    };
    let body = html! {
        table.grid id="graphs" {
            thead { tr { th { "id" } th { "agent" } th { "graph" } th { "digest" } th { "status" } th { "submitted by" } th { "decided" } th { "" } } }
            tbody {
                @for g in &list {
                    tr {
                        td { (g.id) } td { (g.agent) } td { (g.graph_id) } td { code { (g.digest.get(..16).unwrap_or(&g.digest)) } } td { (g.status.as_str()) } td { (g.submitted_by) }
                        td { (g.decided_by.as_deref().unwrap_or("")) " " (g.reason.as_deref().unwrap_or("")) }
                        td {
                            @if g.status == warden_store::GraphStatus::Pending && user.role.may_decide() {
                                form.decide method="post" action={ "/console/graphs/" (g.id) "/decide" } {
                                    input type="hidden" name="csrf" value=(user.csrf);
                                    input type="text" name="reason" placeholder="reason" required;
                                    button type="submit" name="action" value="approve" { "Approve" }
                                    button.deny type="submit" name="action" value="deny" { "Deny" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Graph versions", Some(&user), q.get("msg").map(String::as_str), body)
}

async fn decide_graph(State(c): C, headers: HeaderMap, Path(id): Path<String>, Form(form): Form<HashMap<String, String>>) -> Response {
    let user = match require_post(&c, &headers, &form, true) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let approve = form.get("action").map(String::as_str) == Some("approve");
    let reason = form.get("reason").cloned().unwrap_or_default();
    let approvers = c.api.identity.approvers.for_target(None);
    let who = user.who.clone();
    match blocking(&c, move |s| crate::graphs::decide(s, &approvers, true, &id, &who, approve, &reason)).await {
        Ok(Ok(g)) => {
            let _ = c.api.audit.record(crate::graphs::graph_decision_event(&g, approve, "console")).await;
            back("/console/graphs", &format!("graph version {}: {}", g.id, g.status.as_str()))
        }
        Ok(Err((_, msg))) => back("/console/graphs", &format!("refused: {msg}")),
        Err(r) => r,
    }
}

// ---- grants -----------------------------------------------------------------------------

async fn grants_page(State(c): C, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let user = match require(&c, &headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (grants, requests) = match blocking(&c, |s| (s.list_grants(200), s.list_approvals(Some(ApprovalStatus::Pending), 200))).await {
        Ok((Ok(g), Ok(r))) => (g, r.into_iter().filter(|a| a.request.kind == "grant").collect::<Vec<_>>()),
        Ok(_) => return (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable").into_response(),
        Err(r) => return r,
    };
    let now = now_unix();
    let body = html! {
        h2 { "Requested" }
        (inbox(&requests, &user))
        h2 { "Grants" }
        table.grid id="grants" {
            thead { tr { th { "id" } th { "agent" } th { "node" } th { "target" } th { "actions" } th { "objects" } th { "expires" } th { "state" } th { "" } } }
            tbody {
                @for g in &grants {
                    @let live = !g.revoked && g.expires_at > now;
                    tr {
                        td { (g.id) } td { (g.agent) } td { (g.node.as_deref().unwrap_or("-")) } td { (g.target) } td { (g.actions.join(", ")) }
                        td { (if g.objects.is_empty() { "every table".to_string() } else { g.objects.join(", ") }) } td { (fmt_time(g.expires_at)) }
                        td { (if g.revoked { "revoked" } else if live { "active" } else { "expired" }) }
                        td {
                            @if live && user.role.may_decide() {
                                form.inline method="post" action={ "/console/grants/" (g.id) "/revoke" } {
                                    input type="hidden" name="csrf" value=(user.csrf);
                                    button.deny type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Grants", Some(&user), q.get("msg").map(String::as_str), body)
}

async fn revoke_grant(State(c): C, headers: HeaderMap, Path(id): Path<String>, Form(form): Form<HashMap<String, String>>) -> Response {
    let user = match require_post(&c, &headers, &form, true) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let gid = id.clone();
    match blocking(&c, move |s| s.revoke_grant(&gid)).await {
        Ok(Ok(())) => {
            let mut ev = AuditEvent::new("grant_revoked", "allow");
            ev.extra.insert("grant_id".into(), id.clone().into());
            ev.extra.insert("by".into(), user.who.into());
            ev.extra.insert("via".into(), "console".into());
            let _ = c.api.audit.record(ev).await;
            back("/console/grants", &format!("grant {id} revoked"))
        }
        Ok(Err(e)) => back("/console/grants", &format!("refused: {e}")),
        Err(r) => r,
    }
}
