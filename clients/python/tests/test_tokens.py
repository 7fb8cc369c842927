"""Token exchange, caching and refresh against a fake token endpoint (httpx MockTransport)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import pytest

from warden_langgraph import Scope, TokenCache, WardenAuthError, WardenClient, load_secret

SECRET = "wdn_es_fake-enrollment-secret"


class FakeWarden:
    """A tiny stand-in for POST /v1/token that records requests and issues numbered tokens."""

    def __init__(self, now: list[float], lifetime: float = 600.0) -> None:
        self.now = now
        self.lifetime = lifetime
        self.requests: list[dict[str, Any]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/token"
        body = json.loads(request.content)
        self.requests.append(body)
        if body["secret"] != SECRET:
            return httpx.Response(401, json={"error": "unknown agent, wrong secret"})
        n = len(self.requests)
        return httpx.Response(
            200,
            json={"token": f"tok-{n}-{body['node']}", "token_type": "Bearer", "expires_at": int(self.now[0] + self.lifetime)},
        )


def make(now: list[float], secret: str = SECRET, **kw: Any) -> tuple[TokenCache, FakeWarden]:
    fake = FakeWarden(now)
    cache = TokenCache(
        "http://warden.test/",
        "bot",
        load_secret(secret),
        clock=lambda: now[0],
        transport=httpx.MockTransport(fake.handle),
        async_transport=httpx.MockTransport(fake.handle),
        **kw,
    )
    return cache, fake


def test_cached_per_scope_and_refreshed_at_80_percent() -> None:
    now = [1_000.0]
    cache, fake = make(now, ttl="10m")
    reader = Scope("reader", "r1", "t1")
    t1 = cache.get(reader)
    assert fake.requests[0] == {"agent": "bot", "secret": SECRET, "node": "reader", "run": "r1", "thread": "t1", "ttl": "10m"}
    assert cache.get(reader) is t1
    now[0] += 0.79 * 600
    assert cache.get(reader) is t1
    # Another scope gets its own token (pinned to its node).
    w = cache.get(Scope("writer", "r1", "t1"))
    assert w.value.endswith("writer") and len(fake.requests) == 2
    now[0] = 1_000.0 + 0.8 * 600 + 1
    t2 = cache.get(reader)
    assert t2.value != t1.value and len(fake.requests) == 3
    assert cache.fetches == 3
    assert cache.expires_at(t1.value) == t1.expires_at  # remembered after the refresh


async def test_async_get_shares_the_cache() -> None:
    now = [0.0]
    cache, fake = make(now)
    s = Scope("reader", "r")
    a = await cache.aget(s)
    assert cache.get(s) is a and await cache.aget(s) is a
    assert len(fake.requests) == 1 and "thread" not in fake.requests[0] and "ttl" not in fake.requests[0]


def test_wrong_secret_is_a_clear_error_without_the_secret() -> None:
    cache, _ = make([0.0], secret="wdn_es_wrong")
    with pytest.raises(WardenAuthError, match="refused") as info:
        cache.get(Scope("reader", "r"))
    assert "wdn_es_wrong" not in str(info.value)


def test_unreachable_admin_api() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    cache = TokenCache("http://nowhere", "bot", load_secret(SECRET), transport=httpx.MockTransport(boom))
    with pytest.raises(WardenAuthError, match="cannot reach"):
        cache.get(Scope("n", "r"))


def test_lru_bound() -> None:
    cache, _ = make([0.0], max_entries=3)
    for i in range(5):
        cache.get(Scope("n", f"r{i}"))
    assert len(cache._tokens) == 3


def test_secret_sources(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARDEN_AGENT_SECRET", raising=False)
    with pytest.raises(WardenAuthError, match="WARDEN_AGENT_SECRET"):
        load_secret()
    monkeypatch.setenv("WARDEN_AGENT_SECRET", "from-env")
    assert load_secret().reveal() == "from-env"
    f = tmp_path / "secret"
    f.write_text("from-file\n")
    assert load_secret(secret_file=f).reveal() == "from-file"  # the file wins over the env
    monkeypatch.setenv("OTHER", "other")
    assert load_secret(secret_env="OTHER").reveal() == "other"
    with pytest.raises(WardenAuthError, match="cannot read"):
        load_secret(secret_file=tmp_path / "missing")


def test_secret_and_tokens_never_shown(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    now = [time.time()]
    fake = FakeWarden(now)
    monkeypatch.setenv("WARDEN_AGENT_SECRET", SECRET)
    client = WardenClient("http://warden.test", "bot", http_transport=httpx.MockTransport(fake.handle))
    tok = client.token(node="reader", run="r")
    kwargs = client.connect_kwargs(node="reader", run="r")
    assert kwargs["password"] == tok.value and kwargs["user"] == "bot" and kwargs["dbname"] == "test"
    assert kwargs["options"] == "-c warden.node=reader -c warden.run=r"
    shown = " ".join([repr(client), str(client), repr(client.tokens), repr(tok), repr(client._secret), caplog.text])
    assert SECRET not in shown and tok.value not in shown
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(client._secret)


def test_client_requires_agent_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARDEN_AGENT_SECRET", raising=False)
    with pytest.raises(ValueError):
        WardenClient("http://x", None, secret="s")
    with pytest.raises(WardenAuthError):
        WardenClient("http://x", "bot")


def test_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    f = tmp_path / "s"
    f.write_text(SECRET)
    monkeypatch.setenv("WARDEN_ADMIN_URL", "http://gw:9")
    monkeypatch.setenv("WARDEN_AGENT", "bot")
    monkeypatch.setenv("WARDEN_PG_PORT", "7000")
    monkeypatch.setenv("WARDEN_AGENT_SECRET_FILE", str(f))
    c = WardenClient.from_env()
    assert (c.admin_url, c.agent, c.pg_port, c.target) == ("http://gw:9", "bot", 7000, "test")
    assert c._secret.reveal() == SECRET
