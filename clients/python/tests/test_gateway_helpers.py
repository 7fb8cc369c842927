"""The HTTP/LLM gateway helpers, graph versions on tokens and manifest submission, against a
fake admin API (httpx MockTransport); and the approval id in the gateway's real message."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from langgraph.graph import END, START, StateGraph

from warden_langgraph import WardenClient, WardenError, manifest
from warden_langgraph.errors import _APPROVAL_ID

SECRET = "wdn_es_fake-enrollment-secret"


class FakeAdmin:
    def __init__(self) -> None:
        self.tokens: list[dict[str, Any]] = []
        self.graphs: list[dict[str, Any]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/v1/token":
            self.tokens.append(body)
            return httpx.Response(200, json={"token": f"tok-{len(self.tokens)}", "token_type": "Bearer", "expires_at": 4_000_000_000})
        if request.url.path == "/v1/graphs":
            self.graphs.append(body)
            if body["secret"] != SECRET:
                return httpx.Response(401, json={"error": "authenticate as the agent"})
            return httpx.Response(201, json={"id": "gv_1", "digest": body["manifest"]["digest"], "status": "pending"})
        return httpx.Response(404)


def client(fake: FakeAdmin, **kw: Any) -> WardenClient:
    return WardenClient(
        "http://admin.test", "bot", secret=SECRET, http_url="http://gw.test:8282/", http_transport=httpx.MockTransport(fake.handle), **kw
    )


def two_nodes() -> Any:
    g = StateGraph(dict)
    g.add_node("a", lambda s: s)
    g.add_node("b", lambda s: s)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", END)
    return g.compile()


def test_http_headers_carry_a_token_pinned_to_the_node() -> None:
    fake = FakeAdmin()
    w = client(fake)
    h = w.http_headers(node="agent", run="r1", thread="t1")
    assert h == {"authorization": "Bearer tok-1", "x-warden-node": "agent", "x-warden-run": "r1", "x-warden-thread": "t1"}
    assert fake.tokens[0]["node"] == "agent" and "graph_version" not in fake.tokens[0]
    assert "x-warden-thread" not in w.http_headers(node="agent", run="r2")


def test_openai_base_url_and_httpx_client() -> None:
    w = client(FakeAdmin())
    assert w.openai_base_url() == "http://gw.test:8282/llm/v1"
    assert w.openai_base_url("ai", prefix="") == "http://gw.test:8282/ai"
    with w.httpx_client(node="agent", run="r", target="crm", headers={"x-extra": "1"}) as http:
        assert str(http.base_url) == "http://gw.test:8282/crm/"
        assert http.headers["authorization"] == "Bearer tok-1" and http.headers["x-warden-node"] == "agent"
        assert http.headers["x-extra"] == "1"


def test_from_env_reads_http_url_and_graph_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_AGENT", "bot")
    monkeypatch.setenv("WARDEN_AGENT_SECRET", SECRET)
    monkeypatch.setenv("WARDEN_HTTP_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WARDEN_GRAPH_VERSION", "abc")
    w = WardenClient.from_env()
    assert w.http_url == "http://127.0.0.1:9" and w.graph_version == "abc"


def test_use_graph_puts_the_digest_on_every_token_and_submit_manifest() -> None:
    fake = FakeAdmin()
    w = client(fake)
    w.token(node="a", run="r")
    privileges = {"a": ["select:public.t"]}
    m = w.use_graph(two_nodes(), privileges, name="g")
    assert m == manifest(two_nodes(), privileges, agent="bot", name="g") and w.graph_version == m["digest"]
    w.token(node="a", run="r")  # the cached token without a version is not reused
    assert [t.get("graph_version") for t in fake.tokens] == [None, m["digest"]]
    assert w.use_graph(two_nodes(), privileges, name="g") == m
    w.token(node="a", run="r")
    assert len(fake.tokens) == 2, "same version: cache kept"

    assert w.submit_manifest(m) == {"id": "gv_1", "digest": m["digest"], "status": "pending"}
    assert fake.graphs[0] == {"agent": "bot", "secret": SECRET, "manifest": m}
    bad = WardenClient("http://admin.test", "bot", secret="wrong", http_transport=httpx.MockTransport(fake.handle))
    with pytest.raises(WardenError) as info:
        bad.submit_manifest(m)
    assert "401" in str(info.value) and "wrong" not in str(info.value)


def test_approval_id_in_the_gateways_message() -> None:
    msg = 'warden: approval pending: approval apr_5fac76d5f96ae98d (policy "support-refunds") must be granted by a human; once approved, ...'
    m = _APPROVAL_ID.search(msg)
    assert m and m.group(1) == "apr_5fac76d5f96ae98d"
