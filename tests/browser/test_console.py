"""The web console end to end in Debian's chromium (issue 12): sign in, a held statement
appears in the inbox without a reload, approving it releases the agent's rows, the audit
search finds it with the chain verified, and the replay shows the card number masked.
Also: auditors cannot approve, an owner cannot approve their own agent's command, CSRF and
CSP are in force. Screenshots of each page go to target/screenshots/."""

import json
import threading
import time
import urllib.request
import urllib.error

from conftest import ADMIN_TOKEN, APPROVER, AUDITOR_TOKEN, CARD, OWNER, SCREENSHOTS


def sign_in(page, gateway, token, email=None):
    page.goto(gateway.url + "/console/login")
    page.fill("input[name=token]", token)
    if email:
        page.fill("input[name=email]", email)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/approvals**")


def test_held_statement_approved_in_console_then_audited_and_replayed_masked(gateway, browser, cards_table):
    gateway.cli("human", "activate", APPROVER)
    gateway.cli("agent", "create", "console-agent", "--owner", OWNER)
    token = gateway.cli("token", "issue", "--agent", "console-agent", "--ttl", "10m").strip()

    ctx = browser.new_context()
    page = ctx.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(gateway.url + "/console/login")
    page.screenshot(path=str(SCREENSHOTS / "01-sign-in.png"), full_page=True)
    sign_in(page, gateway, ADMIN_TOKEN, APPROVER)
    assert "No pending requests" in page.inner_text("#inbox")

    # The agent's statement is held on its connection (wait mode) ...
    result = {}
    sql = f"SELECT id, holder, card_number FROM public.{cards_table}"
    agent = threading.Thread(target=lambda: result.update(out=gateway.agent_psql("console-agent", token, "held", sql)))
    agent.start()

    # ... and appears in the open inbox without a reload (SSE).
    card = page.locator("#inbox .request").first
    card.wait_for(timeout=15000)
    text = card.inner_text()
    for expected in [sql, "console-agent", OWNER, "held", "held-reads", "test"]:
        assert expected in text, (expected, text)
    page.screenshot(path=str(SCREENSHOTS / "02-approvals-inbox.png"), full_page=True)
    assert agent.is_alive(), "the statement must wait for the approval"

    card.locator("input[name=reason]").fill("checked: read-only lookup for the ticket")
    card.locator("button[value=approve]").click()
    page.wait_for_selector("#flash")
    assert "approved" in page.inner_text("#flash")

    # The agent's client receives its rows, masked.
    agent.join(60)
    out = result["out"]
    assert out.returncode == 0, out.stderr
    assert "ann" in out.stdout and "1111" in out.stdout and CARD not in out.stdout, out.stdout

    # Audit search finds the statement and its approval; the chain verifies.
    time.sleep(0.5)
    page.goto(gateway.url + "/console/audit?agent=console-agent")
    assert "Chain verified" in page.inner_text("#verify")
    audit = page.inner_text("#audit")
    assert sql in audit and "approval_approved" in audit and "approval_executed" in audit, audit
    page.screenshot(path=str(SCREENSHOTS / "03-audit-search.png"), full_page=True)

    # The replay shows the statement and its result as the agent saw it: masked.
    time.sleep(1.0)  # recording chunks are written at least every 500 ms
    page.goto(gateway.url + "/console/sessions?agent=console-agent")
    page.screenshot(path=str(SCREENSHOTS / "04-sessions.png"), full_page=True)
    page.locator("#sessions a").first.click()
    page.wait_for_selector("#steps")
    page.click("#all")
    steps = page.inner_text("#steps")
    assert sql in steps and "ann" in steps and "1111" in steps, steps
    assert CARD not in page.content(), "a card number reached the replay page"
    assert "Recording verified" in page.inner_text("#verify")
    page.click("#prev")
    assert "step" in page.inner_text("#position")
    page.screenshot(path=str(SCREENSHOTS / "05-session-replay.png"), full_page=True)

    for path, shot in [("/console/agents", "06-agents.png"), ("/console/graphs", "07-graph-versions.png"), ("/console/grants", "08-grants.png")]:
        page.goto(gateway.url + path)
        page.screenshot(path=str(SCREENSHOTS / shot), full_page=True)
    assert not [e for e in errors if "Content Security Policy" in e], errors
    ctx.close()


def test_roles_and_separation_of_duties_are_enforced_server_side(gateway, browser, cards_table):
    gateway.cli("human", "activate", APPROVER)
    gateway.cli("agent", "create", "duty-agent", "--owner", OWNER)
    token = gateway.cli("token", "issue", "--agent", "duty-agent", "--ttl", "10m").strip()
    result = {}
    agent = threading.Thread(target=lambda: result.update(out=gateway.agent_psql("duty-agent", token, "held", f"SELECT id FROM public.{cards_table}")))
    agent.start()

    # An auditor sees the request but has no way to approve it, and a forged post is refused.
    auditor = browser.new_context()
    page = auditor.new_page()
    sign_in(page, gateway, AUDITOR_TOKEN)
    req = page.locator("#inbox .request", has_text="duty-agent").first
    req.wait_for(timeout=15000)
    assert req.locator("button[value=approve]").count() == 0
    approval_id = req.get_attribute("data-id")
    r = page.request.post(gateway.url + f"/console/approvals/{approval_id}/decide", form={"action": "approve", "reason": "x", "csrf": "wrong"})
    assert r.status == 403
    auditor.close()

    # The agent's owner, even signed in as admin, cannot approve their own agent's command.
    owner = browser.new_context()
    page = owner.new_page()
    gateway.cli("human", "activate", OWNER)
    sign_in(page, gateway, ADMIN_TOKEN, OWNER)
    req = page.locator("#inbox .request", has_text="duty-agent").first
    req.wait_for(timeout=15000)
    req.locator("input[name=reason]").fill("my own agent")
    req.locator("button[value=approve]").click()
    page.wait_for_selector("#flash")
    assert "owns agent" in page.inner_text("#flash"), page.inner_text("#flash")
    # Deny it so the agent is released.
    owner.close()
    approver = browser.new_context()
    page = approver.new_page()
    sign_in(page, gateway, ADMIN_TOKEN, APPROVER)
    req = page.locator("#inbox .request", has_text="duty-agent").first
    req.locator("input[name=reason]").fill("not needed")
    req.locator("button[value=deny]").click()
    page.wait_for_selector("#flash")
    agent.join(60)
    assert result["out"].returncode != 0 and "denied" in result["out"].stderr
    approver.close()


def test_security_headers_cookie_flags_and_openapi(gateway):
    with urllib.request.urlopen(gateway.url + "/console/login") as r:
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        body = r.read().decode()
        assert "<script src=" in body and "<script>" not in body and " style=" not in body
    # Pages need a session.
    try:
        urllib.request.urlopen(urllib.request.Request(gateway.url + "/console/approvals/list"))
        raise AssertionError("unauthenticated fragment served")
    except urllib.error.HTTPError as e:
        assert e.code == 401
    with urllib.request.urlopen(gateway.url + "/api/openapi.json") as r:
        doc = json.load(r)
    assert doc["openapi"].startswith("3.") and "/v1/token" in doc["paths"] and "/console/approvals/{id}/decide" in doc["paths"]
    # No secret is ever rendered: the admin token is not in any page.
    with urllib.request.urlopen(gateway.url + "/console/login") as r:
        assert ADMIN_TOKEN not in r.read().decode()
