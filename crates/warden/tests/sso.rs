//! Single sign-on to the console (issue 11): OIDC authorization code with PKCE against the
//! test IdP, and SAML 2.0 with assertions signed by `xmlsec1`, each with the refusals a
//! hostile or broken identity provider, browser or network would provoke.

mod common;

use common::idp::{form_decode, form_encode, Assertion, SamlIdp, SAML_IDP_ENTITY, SAML_SSO_URL};
use common::*;

const CLIENT_ID: &str = "warden-console";
const SP_ENTITY: &str = "https://warden.test/saml";
const ACS_URL: &str = "http://127.0.0.1/saml/acs";

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

/// `name=value` of the Set-Cookie header setting `name`.
fn set_cookie(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().filter(|(k, _)| k == "set-cookie").find_map(|(_, v)| v.split(';').next().filter(|kv| kv.starts_with(&format!("{name}="))).map(str::to_string))
}

fn audit_sign_ins(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.admin(&["audit", "search", "--json", "--limit", "500"]).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|e| e["kind"] == "console_sign_in").collect()
}

/// The console page with a session cookie: (status, body).
fn console_page(gw: &Gateway, session: &str) -> (u16, String) {
    http_request(gw.admin_port, "GET", "/console/approvals", &[("Cookie", session)], None)
}

// ---------------------------------------------------------------- OIDC

const CLIENT_SECRET: &str = "console-client-secret-5f1c0e7a9b";

fn oidc_gateway(idp: &TestIdp) -> Gateway {
    let client = format!("client_id = \"{CLIENT_ID}\"\nclient_secret_env = \"WARDEN_TEST_OIDC_SECRET\"\nredirect_url = \"http://127.0.0.1/console/oidc/callback\"\nscopes = [\"groups\"]\n");
    let section = idp.config_toml("warden").replacen("[oidc.roles]", &format!("{client}[oidc.roles]"), 1);
    Gateway::builder().env("WARDEN_TEST_OIDC_SECRET", CLIENT_SECRET).toml(&section).start()
}

/// Starts a sign-in at the console and follows the IdP's redirect back, like a browser
/// whose IdP session is `idp.sign_in_as(..)`. Returns (state cookie, callback path+query).
fn oidc_round_trip(gw: &Gateway, idp: &TestIdp) -> (String, String) {
    let (status, headers, body) = http_exchange(gw.admin_port, "GET", "/console/oidc/login", &[], None);
    assert_eq!(status, 303, "{body}");
    let to_idp = header(&headers, "location").to_string();
    assert!(to_idp.starts_with(&format!("{}/authorize?", idp.issuer)), "{to_idp}");
    let q = form_decode(to_idp.split_once('?').unwrap().1);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert!(q["scope"].split(' ').any(|s| s == "openid") && q["scope"].contains("groups"), "{q:?}");
    assert!(q["code_challenge"].len() >= 43 && !q.contains_key("code_verifier"), "only the challenge leaves: {q:?}");
    let state_cookie = set_cookie(&headers, "warden_oidc_state").expect("the state is bound to the browser");
    let idp_port: u16 = idp.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let (status, headers, body) = http_exchange(idp_port, "GET", &to_idp[idp.issuer.len()..], &[], None);
    assert_eq!(status, 302, "the IdP signs the browser in: {body}");
    let back = header(&headers, "location");
    let callback = back.strip_prefix("http://127.0.0.1").expect(back).to_string();
    assert!(callback.starts_with("/console/oidc/callback?code="), "{callback}");
    (state_cookie, callback)
}

#[test]
fn oidc_console_sign_in_uses_pkce_and_state_and_ends_in_a_console_session() {
    let idp = TestIdp::start();
    let gw = oidc_gateway(&idp);
    gw.admin(&["human", "activate", "bob@example.com"]);
    idp.sign_in_as("bob@example.com", &["warden-approvers"]);

    let (_, page) = http_request(gw.admin_port, "GET", "/console/login", &[], None);
    assert!(page.contains("id=\"oidc-login\""), "the sign-in page offers the IdP: {page}");

    let (state_cookie, callback) = oidc_round_trip(&gw, &idp);
    let (status, headers, body) = http_exchange(gw.admin_port, "GET", &callback, &[("Cookie", &state_cookie)], None);
    assert_eq!(status, 200, "{body}");
    let session = set_cookie(&headers, "warden_console").expect("a console session");
    let (status, page) = console_page(&gw, &session);
    assert_eq!(status, 200);
    assert!(page.contains("bob@example.com") && page.contains("(approver)"), "{page}");

    // The same callback again (a replayed code and state) is refused.
    let (status, _, body) = http_exchange(gw.admin_port, "GET", &callback, &[("Cookie", &state_cookie)], None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("already answered"), "{body}");

    let ins = audit_sign_ins(&gw);
    assert!(ins.iter().any(|e| e["decision"] == "allow" && e["via"] == "oidc" && e["human"] == "bob@example.com"), "{ins:?}");
    assert!(ins.iter().any(|e| e["decision"] == "deny" && e["via"] == "oidc"), "{ins:?}");
    let log = gw.stderr();
    assert!(!callback.split(['=', '&']).nth(1).is_some_and(|code| log.contains(code)), "the authorization code is never logged");
    // The client secret went to the token endpoint (HTTP Basic) and nowhere else.
    let audit = gw.admin(&["audit", "search", "--json", "--limit", "500"]);
    assert!(idp.token_basic_auth().is_some_and(|b| b.contains(CLIENT_SECRET)), "the code exchange authenticates the client");
    assert!(!log.contains(CLIENT_SECRET) && !audit.contains(CLIENT_SECRET), "the client secret is never logged or audited");
}

#[test]
fn oidc_callback_without_the_browsers_state_cookie_is_refused_login_csrf() {
    let idp = TestIdp::start();
    let gw = oidc_gateway(&idp);
    gw.admin(&["human", "activate", "bob@example.com"]);
    // The attacker signs in at the IdP as themself and sends the victim the callback link.
    idp.sign_in_as("bob@example.com", &["warden-approvers"]);
    let (_, callback) = oidc_round_trip(&gw, &idp);
    let (status, headers, body) = http_exchange(gw.admin_port, "GET", &callback, &[], None);
    assert_eq!(status, 403, "{body}");
    assert!(set_cookie(&headers, "warden_console").is_none());
    // A state cookie from another sign-in does not fit either.
    let (other_cookie, _) = oidc_round_trip(&gw, &idp);
    let (status, _, _) = http_exchange(gw.admin_port, "GET", &callback, &[("Cookie", &other_cookie)], None);
    assert_eq!(status, 403);
}

#[test]
fn oidc_sign_in_refuses_deactivated_and_unknown_humans_and_humans_without_a_console_role() {
    let idp = TestIdp::start();
    let gw = oidc_gateway(&idp);
    gw.admin(&["human", "activate", "carol@example.com"]);
    gw.admin(&["human", "activate", "erin@example.com"]);
    gw.admin(&["human", "deactivate", "erin@example.com"]);
    for (who, groups, why) in [
        ("carol@example.com", &["engineering"][..], "no console role"),
        ("erin@example.com", &["warden-admins"][..], "deactivated"),
        ("mallory@example.com", &["warden-admins"][..], "not a known human"),
    ] {
        idp.sign_in_as(who, groups);
        let (state_cookie, callback) = oidc_round_trip(&gw, &idp);
        let (status, headers, body) = http_exchange(gw.admin_port, "GET", &callback, &[("Cookie", &state_cookie)], None);
        assert_eq!(status, 403, "{who}: {body}");
        assert!(body.contains(why), "{who}: {body}");
        assert!(set_cookie(&headers, "warden_console").is_none(), "{who}");
    }
}

#[test]
fn oidc_error_from_the_idp_is_shown_and_no_session_starts() {
    let idp = TestIdp::start();
    let gw = oidc_gateway(&idp);
    let (status, headers, body) = http_exchange(gw.admin_port, "GET", "/console/oidc/callback?error=access_denied&error_description=user%20cancelled", &[], None);
    assert_eq!(status, 403);
    assert!(body.contains("access_denied") && body.contains("user cancelled"), "{body}");
    assert!(set_cookie(&headers, "warden_console").is_none());
}

#[test]
fn oidc_client_config_errors_name_the_key() {
    let idp = TestIdp::start();
    let section = idp.config_toml("warden").replacen("[oidc.roles]", &format!("client_id = \"{CLIENT_ID}\"\n[oidc.roles]"), 1);
    let out = Gateway::builder().toml(&section).serve_error();
    assert!(out.contains("oidc.redirect_url"), "{out}");
}

// ---------------------------------------------------------------- SAML

fn saml_gateway(idp: &SamlIdp, extra: &str) -> Gateway {
    let section = format!("[saml]\nsp_entity_id = \"{SP_ENTITY}\"\nacs_url = \"{ACS_URL}\"\nidp_metadata_file = \"idp.xml\"\nclock_skew = \"2s\"\n[saml.roles]\napprover = [\"warden-approvers\"]\nauditor = [\"auditors\"]\n{extra}");
    Gateway::builder().file("idp.xml", idp.metadata()).toml(&section).start()
}

/// Starts an SP-initiated sign-in: (AuthnRequest id, RelayState).
fn saml_start(gw: &Gateway) -> (String, String) {
    use std::io::Read;
    let (status, headers, body) = http_exchange(gw.admin_port, "GET", "/saml/login", &[], None);
    assert_eq!(status, 303, "{body}");
    let to_idp = header(&headers, "location");
    assert!(to_idp.starts_with(SAML_SSO_URL), "{to_idp}");
    let q = form_decode(to_idp.split_once('?').unwrap().1);
    use base64::Engine;
    let deflated = base64::engine::general_purpose::STANDARD.decode(&q["SAMLRequest"]).unwrap();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&deflated[..]).read_to_string(&mut xml).unwrap();
    assert!(xml.contains(SP_ENTITY) && xml.contains(ACS_URL), "{xml}");
    let id = xml.split("ID=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    (id, q["RelayState"].clone())
}

fn assertion(request_id: &str, email: &str) -> Assertion {
    Assertion {
        id: format!("_a{}", hex::encode(rand::random::<[u8; 8]>())),
        in_response_to: request_id.into(),
        email: email.into(),
        groups: vec!["warden-approvers".into()],
        audience: SP_ENTITY.into(),
        recipient: ACS_URL.into(),
        not_before: -5,
        not_on_or_after: 300,
    }
}

/// Posts a response to the ACS as the browser would: (status, session cookie, body).
fn saml_post(gw: &Gateway, xml: &str, relay: &str) -> (u16, Option<String>, String) {
    use base64::Engine;
    let form = format!("SAMLResponse={}&RelayState={}", form_encode(&base64::engine::general_purpose::STANDARD.encode(xml)), form_encode(relay));
    let (status, headers, body) = http_exchange(gw.admin_port, "POST", "/saml/acs", &[("Content-Type", "application/x-www-form-urlencoded")], Some(&form));
    (status, set_cookie(&headers, "warden_console"), body)
}

#[test]
fn saml_metadata_names_the_sp_and_its_acs() {
    let idp = SamlIdp::new();
    let gw = saml_gateway(&idp, "");
    let (status, body) = http_request(gw.admin_port, "GET", "/saml/metadata", &[], None);
    assert_eq!(status, 200);
    assert!(body.contains(&format!("entityID=\"{SP_ENTITY}\"")) && body.contains(ACS_URL), "{body}");
    let (_, page) = http_request(gw.admin_port, "GET", "/console/login", &[], None);
    assert!(page.contains("id=\"saml-login\""), "{page}");
}

#[test]
fn saml_signed_assertion_signs_in_and_its_replay_is_refused() {
    let idp = SamlIdp::new();
    let gw = saml_gateway(&idp, "");
    gw.admin(&["human", "activate", "bob@example.com"]);
    let (request_id, relay) = saml_start(&gw);
    let signed = idp.signed_response(&assertion(&request_id, "bob@example.com"));
    let (status, session, body) = saml_post(&gw, &signed, &relay);
    assert_eq!(status, 200, "{body}");
    let (status, page) = console_page(&gw, &session.expect("a console session"));
    assert_eq!(status, 200);
    assert!(page.contains("bob@example.com") && page.contains("(approver)"), "{page}");

    // The same POST again, and the same assertion answering a new sign-in.
    let (status, session, body) = saml_post(&gw, &signed, &relay);
    assert_eq!((status, session.is_none()), (403, true), "{body}");
    let (_, relay2) = saml_start(&gw);
    let (status, _, body) = saml_post(&gw, &signed, &relay2);
    assert_eq!(status, 403, "{body}");

    let ins = audit_sign_ins(&gw);
    assert!(ins.iter().any(|e| e["decision"] == "allow" && e["via"] == "saml" && e["human"] == "bob@example.com"), "{ins:?}");
    assert!(ins.iter().filter(|e| e["decision"] == "deny" && e["via"] == "saml").count() >= 2, "{ins:?}");
}

#[test]
fn saml_refuses_expired_not_yet_valid_wrong_audience_wrong_recipient_and_wrong_request() {
    let idp = SamlIdp::new();
    let gw = saml_gateway(&idp, "");
    gw.admin(&["human", "activate", "bob@example.com"]);
    type Edit = fn(&mut Assertion);
    let cases: [(&str, Edit, &str); 5] = [
        ("expired", |a| a.not_on_or_after = -60, "expired"),
        ("not yet valid", |a| a.not_before = 120, "not valid until"),
        ("wrong audience", |a| a.audience = "https://other.test/sp".into(), "Audience"),
        ("wrong recipient", |a| a.recipient = "http://127.0.0.1/other/saml/acs".into(), "Recipient"),
        ("answers another request", |a| a.in_response_to = "_not-our-request".into(), "InResponseTo"),
    ];
    for (what, edit, why) in cases {
        let (request_id, relay) = saml_start(&gw);
        let mut a = assertion(&request_id, "bob@example.com");
        edit(&mut a);
        let (status, session, body) = saml_post(&gw, &idp.signed_response(&a), &relay);
        assert_eq!(status, 403, "{what}: {body}");
        assert!(body.contains(why), "{what}: {body}");
        assert!(session.is_none(), "{what}");
    }
}

#[test]
fn saml_refuses_unsigned_foreign_signed_and_altered_responses() {
    let idp = SamlIdp::new();
    let impostor = SamlIdp::new();
    let gw = saml_gateway(&idp, "");
    gw.admin(&["human", "activate", "bob@example.com"]);
    gw.admin(&["human", "activate", "mallory@example.com"]);

    let (request_id, relay) = saml_start(&gw);
    let (status, _, body) = saml_post(&gw, &SamlIdp::response_xml(&assertion(&request_id, "mallory@example.com")), &relay);
    assert_eq!(status, 403, "unsigned: {body}");
    assert!(body.contains("not signed"), "{body}");

    let (request_id, relay) = saml_start(&gw);
    let (status, _, body) = saml_post(&gw, &impostor.signed_response(&assertion(&request_id, "mallory@example.com")), &relay);
    assert_eq!(status, 403, "signed by another key: {body}");

    // Signed for bob, then the NameID edited to mallory.
    let (request_id, relay) = saml_start(&gw);
    let altered = idp.signed_response(&assertion(&request_id, "bob@example.com")).replace(">bob@example.com<", ">mallory@example.com<");
    let (status, session, body) = saml_post(&gw, &altered, &relay);
    assert_eq!((status, session.is_none()), (403, true), "altered after signing: {body}");

    // Signature wrapping: bob's signed assertion kept, an unsigned one for mallory put first.
    let (request_id, relay) = saml_start(&gw);
    let signed = idp.signed_response(&assertion(&request_id, "bob@example.com"));
    let forged = SamlIdp::response_xml(&Assertion { id: "_forged".into(), ..assertion(&request_id, "mallory@example.com") });
    let forged_assertion = &forged[forged.find("<saml:Assertion").unwrap()..forged.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len()];
    let wrapped = signed.replacen("<saml:Assertion", &format!("{forged_assertion}<saml:Assertion"), 1);
    let (status, session, body) = saml_post(&gw, &wrapped, &relay);
    assert_eq!((status, session.is_none()), (403, true), "signature wrapping: {body}");

    // Garbage and a missing RelayState.
    let (_, relay) = saml_start(&gw);
    let (status, _, _) = saml_post(&gw, "<not-saml/>", &relay);
    assert_eq!(status, 403);
    let (request_id, _) = saml_start(&gw);
    let (status, _, body) = saml_post(&gw, &idp.signed_response(&assertion(&request_id, "bob@example.com")), "");
    assert_eq!(status, 403, "{body}");
    assert!(gw.stderr().lines().all(|l| !l.contains("SAMLResponse=")), "responses are not logged");
}

#[test]
fn saml_refuses_deactivated_humans_and_humans_without_a_role() {
    let idp = SamlIdp::new();
    let gw = saml_gateway(&idp, "");
    gw.admin(&["human", "activate", "erin@example.com"]);
    gw.admin(&["human", "deactivate", "erin@example.com"]);
    gw.admin(&["human", "activate", "carol@example.com"]);
    let (request_id, relay) = saml_start(&gw);
    let (status, _, body) = saml_post(&gw, &idp.signed_response(&assertion(&request_id, "erin@example.com")), &relay);
    assert_eq!(status, 403);
    assert!(body.contains("deactivated"), "{body}");
    let (request_id, relay) = saml_start(&gw);
    let a = Assertion { groups: vec!["engineering".into()], ..assertion(&request_id, "carol@example.com") };
    let (status, _, body) = saml_post(&gw, &idp.signed_response(&a), &relay);
    assert_eq!(status, 403);
    assert!(body.contains("no console role"), "{body}");
    // An auditor group gives the read-only role.
    let (request_id, relay) = saml_start(&gw);
    let a = Assertion { groups: vec!["auditors".into()], ..assertion(&request_id, "carol@example.com") };
    let (status, session, body) = saml_post(&gw, &idp.signed_response(&a), &relay);
    assert_eq!(status, 200, "{body}");
    assert!(console_page(&gw, &session.unwrap()).1.contains("(auditor)"));
}

#[test]
fn saml_config_without_a_signing_certificate_does_not_start() {
    let metadata = SamlIdp::new().metadata();
    let start = metadata.find("<md:KeyDescriptor").unwrap();
    let end = metadata.find("</md:KeyDescriptor>").unwrap() + "</md:KeyDescriptor>".len();
    let unsigned_idp = format!("{}{}", &metadata[..start], &metadata[end..]);
    let section = format!("[saml]\nsp_entity_id = \"{SP_ENTITY}\"\nacs_url = \"{ACS_URL}\"\nidp_metadata_file = \"idp.xml\"\n");
    let out = Gateway::builder().file("idp.xml", unsigned_idp).toml(&section).serve_error();
    assert!(out.contains("no signing certificate"), "{out}");
    let _ = SAML_IDP_ENTITY;
}

// ---------------------------------------------------------------- warden login

fn cli_gateway(idp: &TestIdp, credentials: &std::path::Path) -> Gateway {
    let section = idp.config_toml("warden").replacen("[oidc.roles]", "cli_client_id = \"warden-cli\"\n[oidc.roles]", 1);
    Gateway::builder().env("WARDEN_CREDENTIALS", credentials.to_str().unwrap()).toml(&section).toml("[approvals]\napprovers = [\"bob@example.com\"]\n").start()
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn warden_login_by_device_flow_saves_a_private_login_that_approvals_use_until_the_human_is_deactivated() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    let idp = TestIdp::start();
    let home = tempfile::tempdir().unwrap();
    let credentials = home.path().join("warden").join("credentials.json");
    let gw = cli_gateway(&idp, &credentials);
    gw.create_agent("bot", OWNER);
    gw.admin(&["human", "activate", "bob@example.com"]);

    let mut login = std::process::Command::new(WARDEN)
        .args(["--config", gw.config.to_str().unwrap(), "login"])
        .env("WARDEN_CREDENTIALS", &credentials)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut prompt = String::new();
    let mut errors = BufReader::new(login.stderr.take().unwrap());
    errors.read_line(&mut prompt).unwrap();
    assert!(prompt.contains(&format!("{}/activate", idp.issuer)), "{prompt}");
    let user_code = prompt.trim().rsplit(' ').next().unwrap().to_string();
    // Pending until the human approves at the IdP.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(login.try_wait().unwrap().is_none(), "warden login waits for the approval");
    assert!(idp.approve_device(&user_code, "bob@example.com", &["warden-approvers"]));
    let out = login.wait_with_output().unwrap();
    std::io::Read::read_to_string(&mut errors, &mut prompt).unwrap();
    let printed = stdout_of(&out) + &prompt;
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("signed in as bob@example.com (approver)"), "{printed}");

    let mode = std::fs::metadata(&credentials).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only its owner can read the saved login");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&credentials).unwrap()).unwrap();
    let token = saved["token"].as_str().unwrap();
    assert!(!printed.contains(token) && !gw.stderr().contains(token), "the token is never printed");
    assert!(gw.admin(&["whoami"]).contains("bob@example.com"));

    // Approving without --as acts as the signed-in human.
    let out = gw.admin(&["grant", "request", "--agent", "bot", "--target", "test", "--action", "read", "--for", "5m", "--reason", "debug", "--as", "carol@example.com"]);
    let id = out.split_whitespace().nth(2).unwrap().to_string();
    let out = gw.admin(&["approvals", "approve", &id, "--reason", "checked"]);
    assert!(out.contains("approved by bob@example.com"), "{out}");

    // Deactivated: the saved login stops working at once.
    gw.admin(&["human", "deactivate", "bob@example.com"]);
    let out = gw.cli(&["whoami"]);
    assert!(!out.status.success() && stdout_of(&out).contains("deactivated"), "{}", stdout_of(&out));
    let out = gw.admin(&["grant", "request", "--agent", "bot", "--target", "test", "--action", "read", "--for", "5m", "--reason", "again", "--as", "carol@example.com"]);
    let id = out.split_whitespace().nth(2).unwrap().to_string();
    let out = gw.cli(&["approvals", "approve", &id, "--reason", "checked"]);
    assert!(!out.status.success() && stdout_of(&out).contains("deactivated"), "{}", stdout_of(&out));

    assert!(gw.admin(&["logout"]).contains("signed out"));
    assert!(!credentials.exists());
    let out = gw.cli(&["approvals", "approve", &id, "--reason", "checked"]);
    assert!(!out.status.success() && stdout_of(&out).contains("warden login"), "{}", stdout_of(&out));
}

#[test]
fn warden_login_with_a_pasted_token_verifies_it_first() {
    use std::io::Write;
    let idp = TestIdp::start();
    let home = tempfile::tempdir().unwrap();
    let credentials = home.path().join("credentials.json");
    let gw = cli_gateway(&idp, &credentials);
    gw.admin(&["human", "activate", "bob@example.com"]);
    let paste = |token: &str| {
        let mut child = std::process::Command::new(WARDEN)
            .args(["--config", gw.config.to_str().unwrap(), "login", "--token-stdin"])
            .env("WARDEN_CREDENTIALS", &credentials)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let expired = idp.token("k1", &idp.claims("bob@example.com", "warden", &["warden-approvers"], -60));
    let out = paste(&expired);
    assert!(!out.status.success() && stdout_of(&out).contains("expired"), "{}", stdout_of(&out));
    assert!(!credentials.exists(), "nothing is saved for a refused token");
    let other_audience = idp.token("k1", &idp.claims("bob@example.com", "someone-else", &[], 300));
    assert!(!paste(&other_audience).status.success());
    let forged = sign_jwt(&ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng), "k1", &idp.claims("bob@example.com", "warden", &[], 300));
    assert!(!paste(&forged).status.success());
    let valid = idp.token("k1", &idp.claims("bob@example.com", "warden", &["warden-approvers"], 300));
    let out = paste(&format!("{valid}\n"));
    assert!(out.status.success(), "{}", stdout_of(&out));
    assert!(gw.admin(&["whoami"]).contains("bob@example.com (approver)"));
}
