"""A test OIDC identity provider for the browser tests, served on http://localhost:<port>
(another site than the console on 127.0.0.1, so the browser applies its cross-site cookie
rules to the redirects). It shows a sign-in page, issues authorization codes bound to the
PKCE challenge and nonce, and signs EdDSA ID tokens with a key generated here."""

import base64
import hashlib
import html
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OidcProvider:
    def __init__(self, email: str, groups: list[str]):
        self.email, self.groups = email, groups
        self.key = Ed25519PrivateKey.generate()
        self.codes: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status, body, content_type="application/json", headers=()):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/.well-known/openid-configuration":
                    self.send(200, json.dumps({"issuer": idp.issuer, "jwks_uri": f"{idp.issuer}/jwks", "authorization_endpoint": f"{idp.issuer}/authorize", "token_endpoint": f"{idp.issuer}/token"}))
                elif url.path == "/jwks":
                    x = b64url(idp.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
                    self.send(200, json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "k1", "x": x}]}))
                elif url.path == "/authorize":
                    hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in q.items())
                    page = f'<!DOCTYPE html><html><body><h1>Test IdP</h1><form method="post" action="/authorize">{hidden}<button id="idp-continue" type="submit">Continue as {html.escape(idp.email)}</button></form></body></html>'
                    self.send(200, page, "text/html")
                else:
                    self.send(404, "{}")

            def do_POST(self):
                form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()))
                if self.path == "/authorize":
                    code = secrets.token_urlsafe(16)
                    idp.codes[code] = form
                    back = form["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": form.get("state", "")})
                    self.send(302, "", "text/plain", [("Location", back)])
                elif self.path == "/token":
                    idp.token_requests.append(form)
                    grant = idp.codes.pop(form.get("code", ""), None)
                    challenge = b64url(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
                    if not grant or challenge != grant["code_challenge"] or form.get("redirect_uri") != grant["redirect_uri"]:
                        self.send(400, json.dumps({"error": "invalid_grant"}))
                        return
                    self.send(200, json.dumps({"access_token": "opaque", "token_type": "Bearer", "id_token": idp.id_token(grant["client_id"], grant.get("nonce", ""))}))
                else:
                    self.send(404, "{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def id_token(self, audience: str, nonce: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": "sub-" + self.email, "aud": audience, "email": self.email, "groups": self.groups, "nonce": nonce, "iat": now, "exp": now + 300}
        signing_input = b64url(json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}).encode()) + "." + b64url(json.dumps(claims).encode())
        return signing_input + "." + b64url(self.key.sign(signing_input.encode()))

    def stop(self):
        self.server.shutdown()
