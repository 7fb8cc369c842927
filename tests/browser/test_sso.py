"""Console single sign-on in Debian's chromium (issues 11 and 12): "Sign in with <issuer>"
goes to a test OIDC provider on another site (localhost vs 127.0.0.1), back through the
callback with code, state and PKCE, and ends signed in with the role the IdP's groups map
to. Screenshots go to target/screenshots/."""

import socket

import pytest

from conftest import APPROVER, SCREENSHOTS, Gateway
from idp import OidcProvider


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def sso():
    idp = OidcProvider(APPROVER, ["warden-approvers"])
    port = free_port()
    extra = f"""
[oidc]
issuer = "{idp.issuer}"
audience = ["warden"]
client_id = "warden-console"
redirect_url = "http://127.0.0.1:{port}/console/oidc/callback"
[oidc.roles]
approver = ["warden-approvers"]
"""
    g = Gateway(extra=extra, admin=f"127.0.0.1:{port}")
    g.cli("human", "activate", APPROVER)
    yield g, idp
    g.stop()
    idp.stop()


def test_oidc_sign_in_through_the_identity_provider_in_a_real_browser(sso, browser):
    gateway, idp = sso
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(gateway.url + "/console/login")
    page.click("#oidc-login")
    page.wait_for_url(idp.issuer + "/authorize**")
    page.screenshot(path=str(SCREENSHOTS / "08-oidc-idp.png"), full_page=True)
    page.click("#idp-continue")
    page.wait_for_url("**/console/approvals**")
    page.screenshot(path=str(SCREENSHOTS / "09-oidc-signed-in.png"), full_page=True)
    assert f"{APPROVER} (approver)" in page.inner_text("header")

    # The code was exchanged with a PKCE verifier, and only the session cookie remains.
    assert len(idp.token_requests) == 1 and len(idp.token_requests[0]["code_verifier"]) >= 43
    cookies = {c["name"]: c for c in ctx.cookies(gateway.url + "/console/oidc/callback")}
    assert cookies["warden_console"]["httpOnly"] and cookies["warden_console"]["sameSite"] == "Strict"
    assert "warden_oidc_state" not in cookies

    # The browser's back button to the callback (a replayed code and state) signs no one in.
    other = browser.new_context().new_page()
    resp = other.goto(page.url.replace("/console/approvals", "/console/oidc/callback?code=x&state=y"))
    assert resp.status == 403
    ctx.close()
