//! Identity lifecycle (issue 11): OIDC humans against a test IdP on loopback, SCIM
//! provisioning and deprovisioning that cascades to live agent sessions, and reviewed graph
//! versions whose manifests cap what policy allows.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const AUD: &str = "warden-test";

fn identity_gateway(idp: Option<&TestIdp>, extra: &str) -> Gateway {
    let mut b = Gateway::builder()
        .env("WARDEN_TEST_SCIM_TOKEN", SCIM_TOKEN)
        .toml("[scim]\ntoken_env = \"WARDEN_TEST_SCIM_TOKEN\"\n[approvals]\napprovers = [\"bob@example.com\", \"dave@example.com\", \"alice@example.com\"]\n")
        .toml(extra);
    if let Some(idp) = idp {
        b = b.toml(&idp.config_toml(AUD));
    }
    b.start()
}

fn provision(gw: &Gateway, email: &str) -> String {
    let (status, body) = scim(gw, "POST", "/scim/v2/Users", Some(&json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email, "externalId": format!("ext-{email}"), "active": true,
        "name": {"givenName": "Test", "familyName": "User"}, "emails": [{"value": email, "primary": true, "type": "work"}],
    })));
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn deactivate_patch() -> serde_json::Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": false}}]})
}

fn agent_json(gw: &Gateway, name: &str) -> serde_json::Value {
    serde_json::from_str(gw.admin(&["agent", "show", name, "--json"]).trim()).unwrap()
}

// ---------------------------------------------------------------- OIDC

#[test]
fn oidc_accepts_valid_tokens_and_refuses_expired_wrong_audience_and_wrong_signature() {
    let idp = TestIdp::start();
    let gw = identity_gateway(Some(&idp), "");
    gw.admin(&["human", "activate", "bob@example.com"]);

    let valid = idp.token("k1", &idp.claims("bob@example.com", AUD, &["warden-approvers"], 300));
    let (status, body) = api(&gw, "GET", "/v1/me", Some(&valid), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], "bob@example.com");
    assert_eq!(body["roles"], json!(["approver"]), "groups map to roles: {body}");

    // Expired beyond the 5 s clock skew.
    let expired = idp.token("k1", &idp.claims("bob@example.com", AUD, &[], -60));
    let (status, body) = api(&gw, "GET", "/v1/me", Some(&expired), None);
    assert_eq!(status, 401, "{body}");
    assert!(body.to_string().contains("expired"), "{body}");
    // Expired, but within the skew: accepted.
    let skewed = idp.token("k1", &idp.claims("bob@example.com", AUD, &[], -2));
    assert_eq!(api(&gw, "GET", "/v1/me", Some(&skewed), None).0, 200, "2 s past exp is within the 5 s clock_skew");

    let wrong_aud = idp.token("k1", &idp.claims("bob@example.com", "someone-else", &[], 300));
    let (status, body) = api(&gw, "GET", "/v1/me", Some(&wrong_aud), None);
    assert_eq!(status, 401, "{body}");
    assert!(body.to_string().contains("audience"), "{body}");

    // Signed by a key the IdP never published, under a published kid.
    let rogue = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let forged = sign_jwt(&rogue, "k1", &idp.claims("bob@example.com", AUD, &["warden-admins"], 300));
    let (status, body) = api(&gw, "GET", "/v1/me", Some(&forged), None);
    assert_eq!(status, 401, "{body}");
    assert!(body.to_string().contains("signature"), "{body}");

    // Another issuer's token.
    let mut other = idp.claims("bob@example.com", AUD, &[], 300);
    other["iss"] = "https://evil.example".into();
    let (status, _) = api(&gw, "GET", "/v1/me", Some(&idp.token("k1", &other)), None);
    assert_eq!(status, 401);

    assert_eq!(api(&gw, "GET", "/v1/me", None, None).0, 401, "no token");
    // A valid token of a human Warden does not know.
    let stranger = idp.token("k1", &idp.claims("mallory@example.com", AUD, &[], 300));
    assert_eq!(api(&gw, "GET", "/v1/me", Some(&stranger), None).0, 403);
}

#[test]
fn oidc_key_rotation_refetches_the_jwks_on_an_unknown_kid_rate_limited() {
    let idp = TestIdp::start();
    let gw = identity_gateway(Some(&idp), "");
    gw.admin(&["human", "activate", "bob@example.com"]);
    let t1 = idp.token("k1", &idp.claims("bob@example.com", AUD, &[], 300));
    assert_eq!(api(&gw, "GET", "/v1/me", Some(&t1), None).0, 200);
    let fetches = idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(fetches, 1, "one JWKS fetch serves every known kid");
    for _ in 0..3 {
        assert_eq!(api(&gw, "GET", "/v1/me", Some(&t1), None).0, 200);
    }
    assert_eq!(idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst), 1, "cached");

    // The IdP rotates: a new key appears later. Past the 1 s refresh limit, a token signed
    // with it makes the gateway refetch and accept it.
    std::thread::sleep(Duration::from_millis(1100));
    idp.add_key("k2");
    let t2 = idp.token("k2", &idp.claims("bob@example.com", AUD, &[], 300));
    let (status, body) = api(&gw, "GET", "/v1/me", Some(&t2), None);
    assert_eq!(status, 200, "rotated key: {body}");
    assert_eq!(idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst), 2);

    // Unknown kids in a burst cost at most one fetch per refresh interval.
    let rogue = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    for i in 0..5 {
        let t = sign_jwt(&rogue, &format!("nope-{i}"), &idp.claims("bob@example.com", AUD, &[], 300));
        assert_eq!(api(&gw, "GET", "/v1/me", Some(&t), None).0, 401);
    }
    let after = idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert!(after <= 3, "unknown kids must not flood the IdP: {after} fetches");
}

#[test]
fn approvals_over_the_api_with_oidc_apply_separation_of_duties() {
    let idp = TestIdp::start();
    let gw = identity_gateway(Some(&idp), "");
    gw.create_agent("bot", OWNER);
    gw.admin(&["human", "activate", "bob@example.com"]);
    gw.admin(&["human", "activate", "erin@example.com"]);
    let out = gw.admin(&["grant", "request", "--agent", "bot", "--target", "test", "--action", "read", "--for", "5m", "--reason", "debug", "--as", "carol@example.com"]);
    let id = out.split_whitespace().nth(2).unwrap().to_string();
    let path = format!("/v1/approvals/{id}/approve");
    let reason = json!({"reason": "looks fine"});

    // The owner cannot approve their own agent's request, even with the approver role.
    gw.admin(&["human", "activate", OWNER]);
    let owner = idp.token("k1", &idp.claims(OWNER, AUD, &["warden-approvers"], 300));
    let (status, body) = api(&gw, "POST", &path, Some(&owner), Some(&reason));
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("owns agent"), "{body}");
    // Neither can the requester.
    gw.admin(&["human", "activate", "carol@example.com"]);
    let carol = idp.token("k1", &idp.claims("carol@example.com", AUD, &["warden-approvers"], 300));
    let (status, body) = api(&gw, "POST", &path, Some(&carol), Some(&reason));
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("submitted"), "{body}");
    // Nor a human who is neither a configured approver nor in an approver group.
    let erin = idp.token("k1", &idp.claims("erin@example.com", AUD, &["developers"], 300));
    assert_eq!(api(&gw, "POST", &path, Some(&erin), Some(&reason)).0, 403);
    // erin joins the SCIM group mapped to the approver role: her token carries no groups,
    // SCIM membership is enough.
    let erin_id = provision(&gw, "erin@example.com");
    let (_, g) = scim(&gw, "POST", "/scim/v2/Groups", Some(&json!({"displayName": "warden-approvers", "members": [{"value": erin_id}]})));
    let (status, me) = api(&gw, "GET", "/v1/me", Some(&erin), None);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["roles"], json!(["approver"]), "{me} {g}");
    // bob is a configured approver.
    let bob = idp.token("k1", &idp.claims("bob@example.com", AUD, &[], 300));
    let (status, body) = api(&gw, "POST", &path, Some(&bob), Some(&reason));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved", "{body}");
    let shown: serde_json::Value = serde_json::from_str(gw.admin(&["approvals", "show", &id, "--json"]).trim()).unwrap();
    assert_eq!(shown["status"], "approved");
    let audit = gw.admin(&["audit", "search", "--json", "--agent", "bot"]);
    assert!(audit.contains("api-oidc") && audit.contains("bob@example.com"), "{audit}");
}

// ---------------------------------------------------------------- SCIM

#[test]
fn scim_users_and_groups_as_okta_and_entra_id_call_them() {
    let gw = identity_gateway(None, "");
    // Bearer required, constant-time compared.
    let (status, _) = http_request(gw.admin_port, "GET", "/scim/v2/Users", &[], None);
    assert_eq!(status, 401);
    let (status, _) = http_request(gw.admin_port, "GET", "/scim/v2/Users", &[("Authorization", "Bearer wrong-token-0123456789")], None);
    assert_eq!(status, 401);

    // Okta's first call: does the user exist?
    let (status, body) = scim(&gw, "GET", "/scim/v2/Users?filter=userName%20eq%20%22ann%40example.com%22&startIndex=1&count=100", None);
    assert_eq!(status, 200);
    assert_eq!(body["totalResults"], 0);
    let ann = provision(&gw, "Ann@Example.com");
    let (status, body) = scim(&gw, "POST", "/scim/v2/Users", Some(&json!({"userName": "ann@example.com", "active": true})));
    assert_eq!(status, 409, "duplicates are refused: {body}");
    assert_eq!(body["scimType"], "uniqueness");
    let (_, body) = scim(&gw, "GET", "/scim/v2/Users?filter=userName%20eq%20%22ann%40example.com%22", None);
    assert_eq!(body["totalResults"], 1);
    assert_eq!(body["Resources"][0]["id"], ann.as_str());
    assert_eq!(body["Resources"][0]["name"]["givenName"], "Test");
    assert_eq!(body["Resources"][0]["active"], true);

    // Pagination over several users.
    for i in 0..4 {
        provision(&gw, &format!("user{i}@example.com"));
    }
    let (_, page) = scim(&gw, "GET", "/scim/v2/Users?startIndex=2&count=2", None);
    assert_eq!(page["totalResults"], 5);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(page["itemsPerPage"], 2);
    assert_eq!(page["Resources"][0]["userName"], "user0@example.com");
    let (_, last) = scim(&gw, "GET", "/scim/v2/Users?startIndex=5&count=2", None);
    assert_eq!(last["Resources"].as_array().unwrap().len(), 1);

    // GET by id, PUT replace, Entra-style PATCH with a path.
    let (status, u) = scim(&gw, "GET", &format!("/scim/v2/Users/{ann}"), None);
    assert_eq!(status, 200);
    assert_eq!(u["userName"], "ann@example.com");
    let (status, u) = scim(&gw, "PUT", &format!("/scim/v2/Users/{ann}"), Some(&json!({"userName": "ann@example.com", "displayName": "Ann A.", "active": true})));
    assert_eq!(status, 200, "{u}");
    assert_eq!(u["displayName"], "Ann A.");
    let (status, u) = scim(&gw, "PATCH", &format!("/scim/v2/Users/{ann}"), Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "Replace", "path": "name.familyName", "value": "Andersen"}]})));
    assert_eq!(status, 200, "{u}");
    assert_eq!(u["name"]["familyName"], "Andersen");
    let (status, _) = scim(&gw, "PUT", &format!("/scim/v2/Users/{ann}"), Some(&json!({"userName": "someone@example.com"})));
    assert_eq!(status, 400, "userName is immutable");
    assert_eq!(scim(&gw, "GET", "/scim/v2/Users/usr_nope", None).0, 404);

    // Entra ID's deactivation: path "active", sometimes the string "False".
    let (status, u) = scim(&gw, "PATCH", &format!("/scim/v2/Users/{ann}"), Some(&json!({"Operations": [{"op": "Replace", "path": "active", "value": "False"}]})));
    assert_eq!(status, 200, "{u}");
    assert_eq!(u["active"], false);
    let humans = gw.admin(&["human", "list", "--json"]);
    assert!(humans.contains(r#"{"email":"ann@example.com","status":"deactivated"}"#), "{humans}");

    // PUT with active: false deactivates too.
    let u2 = u_id(&gw, "user2@example.com");
    let (status, u) = scim(&gw, "PUT", &format!("/scim/v2/Users/{u2}"), Some(&json!({"userName": "user2@example.com", "active": false})));
    assert_eq!(status, 200, "{u}");
    assert_eq!(u["active"], false);
    assert!(gw.admin(&["human", "list", "--json"]).contains(r#"{"email":"user2@example.com","status":"deactivated"}"#));

    // Groups: create, list by name, add and remove members.
    let (status, g) = scim(&gw, "POST", "/scim/v2/Groups", Some(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "warden-approvers", "members": []})));
    assert_eq!(status, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    let (_, list) = scim(&gw, "GET", "/scim/v2/Groups?filter=displayName%20eq%20%22warden-approvers%22&excludedAttributes=members", None);
    assert_eq!(list["totalResults"], 1);
    assert!(list["Resources"][0].get("members").is_none());
    let (status, g) = scim(&gw, "PATCH", &format!("/scim/v2/Groups/{gid}"), Some(&json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": ann}]}]})));
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["members"][0]["value"], ann.as_str());
    let (_, g) = scim(&gw, "PATCH", &format!("/scim/v2/Groups/{gid}"), Some(&json!({"Operations": [{"op": "remove", "path": format!("members[value eq \"{ann}\"]")}]})));
    assert_eq!(g["members"], json!([]));
    let (status, g) = scim(&gw, "GET", &format!("/scim/v2/Groups/{gid}"), None);
    assert_eq!(status, 200, "{g}");

    // DELETE deprovisions too; the human record stays (audit, ownership history).
    let u1 = scim(&gw, "GET", "/scim/v2/Users?filter=userName%20eq%20%22user1%40example.com%22", None).1["Resources"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(scim(&gw, "DELETE", &format!("/scim/v2/Users/{u1}"), None).0, 204);
    assert_eq!(scim(&gw, "GET", &format!("/scim/v2/Users/{u1}"), None).0, 404);
    let humans = gw.admin(&["human", "list", "--json"]);
    assert!(humans.contains(r#"{"email":"user1@example.com","status":"deactivated"}"#), "{humans}");
}

/// Waits for the connection to be ended by the server; returns when and the error it saw.
async fn until_cut(c: Conn, since: Instant) -> (Duration, String) {
    match tokio::time::timeout(Duration::from_secs(5), c.done).await {
        Ok(Ok(Err(e))) => (since.elapsed(), error_text(&e)),
        Ok(Ok(Ok(()))) => (since.elapsed(), "connection closed cleanly".into()),
        other => panic!("the session survived the deactivation for 5 s: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_deactivation_of_the_owner_cuts_the_agents_live_session_within_a_second() {
    let gw = identity_gateway(None, "");
    let alice = provision(&gw, OWNER);
    provision(&gw, "bob@example.com");
    let secret = gw.create_agent("bot", OWNER);
    gw.create_agent("bystander", "dave@example.com");
    let token = gw.token("bot", None, "5m");
    let bystander_token = gw.token("bystander", None, "5m");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    let bystander = gw.connect("bystander", &bystander_token, Some("reader")).await.unwrap();
    // Pending work that must be withdrawn: a grant request for the agent, a request alice
    // made for another agent, and alice's vote on a quorum-2 request.
    let grant_for_bot = gw.admin(&["grant", "request", "--agent", "bot", "--target", "test", "--action", "read", "--for", "5m", "--reason", "x", "--as", "carol@example.com"]).split_whitespace().nth(2).unwrap().to_string();
    let asked_by_alice = gw.admin(&["grant", "request", "--agent", "bystander", "--target", "test", "--action", "read", "--for", "5m", "--reason", "x", "--as", OWNER]).split_whitespace().nth(2).unwrap().to_string();
    let quorum2 = gw.admin(&["grant", "request", "--agent", "bystander", "--target", "test", "--action", "read", "--for", "5m", "--reason", "x", "--as", "carol@example.com", "--quorum", "2"]).split_whitespace().nth(2).unwrap().to_string();
    gw.admin(&["approvals", "approve", &quorum2, "--as", OWNER, "--reason", "ok"]);

    let since = Instant::now();
    let patch = tokio::task::spawn_blocking({
        let port = gw.admin_port;
        move || {
            let auth = format!("Bearer {SCIM_TOKEN}");
            http_request(port, "PATCH", &format!("/scim/v2/Users/{alice}"), &[("Authorization", &auth), ("Content-Type", "application/scim+json")], Some(&deactivate_patch().to_string()))
        }
    });
    let (elapsed, seen) = until_cut(c, since).await;
    let (status, body) = patch.await.unwrap();
    assert_eq!(status, 200, "{body}");
    println!("SCIM PATCH active=false → live session received its error after {elapsed:?}: {seen}");
    assert!(seen.contains("deactivated"), "the client is told why: {seen}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");

    // New connections and new tokens are refused.
    let err = gw.connect("bot", &token, Some("reader")).await.err().expect("refused");
    assert!(error_text(&err).contains("deactivated"), "{}", error_text(&err));
    let (status, _) = http_post_json(gw.admin_port, "/v1/token", &json!({"agent": "bot", "secret": secret}));
    assert_eq!(status, 401);
    bystander.simple_query("SELECT 1").await.expect("other owners' agents keep working");

    let status_of = |id: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(gw.admin(&["approvals", "show", id, "--json"]).trim()).unwrap();
        v["status"].as_str().unwrap().to_string()
    };
    assert_eq!(status_of(&grant_for_bot), "cancelled", "the agent's pending approvals are cancelled");
    assert_eq!(status_of(&asked_by_alice), "cancelled", "requests the human made are cancelled");
    assert_eq!(status_of(&quorum2), "pending", "others' requests stay");
    let q2: serde_json::Value = serde_json::from_str(gw.admin(&["approvals", "show", &quorum2, "--json"]).trim()).unwrap();
    assert_eq!(q2["votes"], json!([]), "alice's vote on a pending request is withdrawn: {q2}");
    let audit = gw.admin(&["audit", "search", "--json", "--limit", "200"]);
    for step in ["human_deactivate", "agent_suspend", "approvals_cancel", "requests_cancel", "votes_withdraw"] {
        assert!(audit.contains(step), "audited: {step}\n{audit}");
    }

    // Reactivation restores the human, never the agent.
    let (status, u) = scim(&gw, "PATCH", &format!("/scim/v2/Users/{}", u_id(&gw, OWNER)), Some(&json!({"Operations": [{"op": "replace", "path": "active", "value": true}]})));
    assert_eq!(status, 200, "{u}");
    assert_eq!(u["active"], true);
    let a = agent_json(&gw, "bot");
    assert_eq!(a["owner_status"], "active");
    assert_eq!(a["status"], "suspended", "{a}");
    assert_eq!(a["may_act"], false);
    assert!(gw.connect("bot", &token, Some("reader")).await.is_err(), "the agent stays suspended");

    // Transfer: refused to a deactivated human, accepted to an active one (audited).
    provision(&gw, "gone@example.com");
    let gone = u_id(&gw, "gone@example.com");
    scim(&gw, "PATCH", &format!("/scim/v2/Users/{gone}"), Some(&deactivate_patch()));
    let out = gw.cli(&["agent", "transfer", "bot", "--to", "gone@example.com"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("deactivated"), "{}", String::from_utf8_lossy(&out.stderr));
    gw.admin(&["agent", "transfer", "bot", "--to", "bob@example.com"]);
    assert_eq!(agent_json(&gw, "bot")["owner"], "bob@example.com");
    assert!(gw.admin(&["audit", "search", "--json", "--agent", "bot"]).contains("agent_transfer"));
}

fn u_id(gw: &Gateway, email: &str) -> String {
    let (_, body) = scim(gw, "GET", &format!("/scim/v2/Users?filter=userName%20eq%20%22{}%22", email.replace('@', "%40")), None);
    body["Resources"][0]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_delete_cuts_the_session_too() {
    let gw = identity_gateway(None, "");
    let alice = provision(&gw, OWNER);
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    let since = Instant::now();
    let port = gw.admin_port;
    let del = tokio::task::spawn_blocking(move || http_request(port, "DELETE", &format!("/scim/v2/Users/{alice}"), &[("Authorization", &format!("Bearer {SCIM_TOKEN}"))], None));
    let (elapsed, seen) = until_cut(c, since).await;
    assert_eq!(del.await.unwrap().0, 204);
    println!("SCIM DELETE → live session received its error after {elapsed:?}: {seen}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
}

/// `bench/scim_deprovision.sh` runs this: 20 deprovisionings, median and max.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_scim_deprovision_to_session_error() {
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    let gw = identity_gateway(None, "");
    let mut samples = Vec::new();
    for i in 0..runs {
        let owner = format!("owner{i}@example.com");
        let id = provision(&gw, &owner);
        let agent = format!("bot{i}");
        gw.create_agent(&agent, &owner);
        let token = gw.token(&agent, None, "5m");
        let c = gw.connect(&agent, &token, Some("reader")).await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
        // Land at a random point of the 200 ms poll cycle.
        tokio::time::sleep(Duration::from_millis(37 * i as u64 % 200)).await;
        let port = gw.admin_port;
        let since = Instant::now();
        let patch = tokio::task::spawn_blocking(move || http_request(port, "PATCH", &format!("/scim/v2/Users/{id}"), &[("Authorization", &format!("Bearer {SCIM_TOKEN}")), ("Content-Type", "application/scim+json")], Some(&deactivate_patch().to_string())));
        let (elapsed, seen) = until_cut(c, since).await;
        assert_eq!(patch.await.unwrap().0, 200);
        assert!(seen.contains("deactivated"), "{seen}");
        samples.push(elapsed);
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = ms(samples[samples.len() / 2]);
    println!("scim_deprovision: runs={} median_ms={:.1} max_ms={:.1} min_ms={:.1} all_ms={:?}", samples.len(), median, ms(*samples.last().unwrap()), ms(samples[0]), samples.iter().map(|d| (ms(*d) * 10.0).round() / 10.0).collect::<Vec<_>>());
}

// ---------------------------------------------------------------- graph versions

fn manifest(table: &str, digest: &str) -> serde_json::Value {
    json!({"graph_id": "support", "digest": digest, "nodes": ["writer", "summarize"],
           "privileges": {"writer": [format!("select:public.{table}"), {"target": "test", "actions": ["transaction"]}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_versions_unapproved_denied_submitter_refused_approved_works_and_policy_is_capped() {
    let gw = identity_gateway(None, "");
    let table = Table::new("gv").await;
    let secret = gw.create_agent("bot", OWNER);
    for h in ["bob@example.com", "dave@example.com"] {
        gw.admin(&["human", "activate", h]);
    }

    // The agent submits v1 with its enrollment secret.
    let (status, g) = api(&gw, "POST", "/v1/graphs", None, Some(&json!({"agent": "bot", "secret": secret, "manifest": manifest(&table.name, "v1")})));
    assert_eq!(status, 201, "{g}");
    let v1 = g["id"].as_str().unwrap().to_string();
    let (status, _) = api(&gw, "POST", "/v1/graphs", None, Some(&json!({"agent": "bot", "secret": "wdn_es_wrong", "manifest": manifest(&table.name, "v9")})));
    assert_eq!(status, 401, "a wrong secret cannot submit");

    // A token for v1 (POST /v1/token accepts graph_version).
    let (status, body) = http_post_json(gw.admin_port, "/v1/token", &json!({"agent": "bot", "secret": secret, "graph_version": "v1", "node": "writer"}));
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let c = gw.connect("bot", &token, Some("writer")).await.unwrap();
    let select = format!("SELECT name FROM public.{} WHERE id = 1", table.name);
    let err = c.simple_query(&select).await.expect_err("unapproved version: denied");
    let text = error_text(&err);
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{text}");
    assert!(text.contains("pending review") && text.contains(&format!("warden graph approve {v1}")), "says how to approve: {text}");

    // The owner cannot approve; a human submitter cannot approve their own submission.
    let out = gw.cli(&["graph", "approve", &v1, "--as", OWNER, "--reason", "mine"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("owns agent"), "{}", String::from_utf8_lossy(&out.stderr));
    let file = gw.dir.path().join("v2.json");
    std::fs::write(&file, manifest(&table.name, "v2").to_string()).unwrap();
    let out = gw.admin(&["graph", "submit", "--agent", "bot", "--file", file.to_str().unwrap(), "--as", "dave@example.com"]);
    let v2 = out.split_whitespace().nth(2).unwrap().to_string();
    let out = gw.cli(&["graph", "approve", &v2, "--as", "dave@example.com", "--reason", "self"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("submitted"), "{}", String::from_utf8_lossy(&out.stderr));
    // Not a configured approver.
    gw.admin(&["human", "activate", "erin@example.com"]);
    assert!(!gw.cli(&["graph", "approve", &v1, "--as", "erin@example.com", "--reason", "x"]).status.success());

    // bob approves v1: the live session re-decides (epoch) and reads.
    gw.admin(&["graph", "approve", &v1, "--as", "bob@example.com", "--reason", "reviewed the manifest"]);
    let rows = wait_for_async(|| async { c.simple_query(&select).await.ok() }).await;
    assert!(!rows.is_empty());

    // Policy lets node "writer" update public tables; the manifest asked only for select.
    let err = c.simple_query(&format!("UPDATE public.{} SET name = 'x' WHERE id = 1", table.name)).await.expect_err("capped by the manifest");
    let text = error_text(&err);
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{text}");
    assert!(text.contains("not in the approved manifest"), "{text}");
    assert_eq!(table.rows().await, original_rows());
    // Another table the policy allows reading is outside the manifest too.
    let other = Table::new("gv_other").await;
    let err = c.simple_query(&format!("SELECT * FROM public.{}", other.name)).await.expect_err("table not in the manifest");
    assert!(error_text(&err).contains("not in the approved manifest"));
    // A node without privileges in the manifest gets nothing.
    let (_, body) = http_post_json(gw.admin_port, "/v1/token", &json!({"agent": "bot", "secret": secret, "graph_version": "v1"}));
    let any_node: serde_json::Value = serde_json::from_str(&body).unwrap();
    let c2 = gw.connect("bot", any_node["token"].as_str().unwrap(), Some("reader")).await.unwrap();
    assert!(error_text(&c2.simple_query(&select).await.unwrap_err()).contains("not in the approved manifest"));

    // Unknown version: denied with how to submit.
    let (_, body) = http_post_json(gw.admin_port, "/v1/token", &json!({"agent": "bot", "secret": secret, "graph_version": "v404", "node": "writer"}));
    let unknown: serde_json::Value = serde_json::from_str(&body).unwrap();
    let c3 = gw.connect("bot", unknown["token"].as_str().unwrap(), Some("writer")).await.unwrap();
    let text = error_text(&c3.simple_query(&select).await.unwrap_err());
    assert!(text.contains("unknown") && text.contains("warden graph submit"), "{text}");

    // Tokens without a graph version keep policy-only behaviour here.
    let plain = gw.token("bot", None, "5m");
    let c4 = gw.connect("bot", &plain, Some("writer")).await.unwrap();
    c4.simple_query(&select).await.expect("no gv, no require_approved_version: policy decides");

    let listed = gw.admin(&["graph", "list", "--json"]);
    assert!(listed.contains("\"approved\"") && listed.contains("\"pending\""), "{listed}");
    let audit = gw.admin(&["audit", "search", "--json", "--agent", "bot", "--limit", "500"]);
    assert!(audit.contains("graph_approved") && audit.contains("graph_submitted"), "{audit}");
    assert!(audit.contains("\"graph_version\":\"v1\""), "statements carry the graph version: {audit}");
}

#[tokio::test]
async fn require_approved_version_denies_tokens_without_one() {
    let gw = identity_gateway(None, "[graphs]\nrequire_approved_version = true\n");
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let text = error_text(&c.simple_query("SELECT 1").await.unwrap_err());
    assert!(text.contains("require_approved_version"), "{text}");
}

#[test]
fn python_client_manifest_digest_is_verified() {
    // The digest the Python client computes: sha256 of canonical JSON over format, nodes,
    // edges and privileges. A manifest whose digest does not match is refused.
    let body = json!({"format": "warden-graph-manifest/v1", "nodes": ["a"], "edges": [], "privileges": {"a": ["select:public.t"]}});
    let digest = warden_digest(&body);
    let mut ok = body.clone();
    ok["digest"] = digest.clone().into();
    ok["name"] = "g".into();
    let gw = identity_gateway(None, "");
    let secret = gw.create_agent("bot", OWNER);
    let (status, g) = api(&gw, "POST", "/v1/graphs", None, Some(&json!({"agent": "bot", "secret": secret, "manifest": ok})));
    assert_eq!(status, 201, "{g}");
    let mut bad = ok.clone();
    bad["privileges"]["a"] = json!(["delete:public.t"]);
    let (status, body) = api(&gw, "POST", "/v1/graphs", None, Some(&json!({"agent": "bot", "secret": secret, "manifest": bad})));
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("hashes to"), "{body}");
}

/// Python: hashlib.sha256(json.dumps(v, sort_keys=True, separators=(",", ":")).encode()).
fn warden_digest(v: &serde_json::Value) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg("import hashlib,json,sys; v=json.load(sys.stdin); print(hashlib.sha256(json.dumps(v, sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode()).hexdigest())")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(v.to_string().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn wait_for_async<T, F: std::future::Future<Output = Option<T>>>(mut f: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
