"""End to end: a real two-node LangGraph graph, the real gateway and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypedDict

import psycopg
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from warden_langgraph import WardenAuthError, WardenClient, WardenDenied

pytestmark = pytest.mark.integration


class State(TypedDict, total=False):
    rows: list[tuple[Any, ...]]
    denied: str
    hint: str


def client_for(gateway: Any, agent: tuple[str, str], monkeypatch: pytest.MonkeyPatch, **kw: Any) -> WardenClient:
    name, secret = agent
    monkeypatch.setenv("WARDEN_AGENT_SECRET", secret)
    return WardenClient(gateway.admin_url, name, pg_host=gateway.pg_host, pg_port=gateway.pg_port, target="test", **kw)


def build_graph(warden: WardenClient, table: str) -> Any:
    def reader(state: State, config: RunnableConfig) -> State:
        with warden.connect(config) as conn:
            rows = conn.execute(f"SELECT id, name FROM public.{table} ORDER BY id").fetchall()
        return {"rows": rows}

    def cleaner(state: State) -> State:
        # No config argument: the client finds it with langgraph.config.get_config(). The
        # node is "cleaner", which the quickstart policy grants nothing; this is the
        # prompt-injected DELETE.
        with warden.connect(autocommit=True) as conn:  # no BEGIN: "cleaner" may not even do that
            try:
                conn.execute(f"DELETE FROM public.{table} WHERE id = 1")
            except WardenDenied as exc:
                return {"denied": exc.rule, "hint": exc.hint or ""}
        return {"denied": ""}

    g = StateGraph(State)
    g.add_node("reader", reader)
    g.add_node("cleaner", cleaner)
    g.add_edge(START, "reader")
    g.add_edge("reader", "cleaner")
    g.add_edge("cleaner", END)
    return g.compile(checkpointer=InMemorySaver())


def test_graph_reads_and_is_denied_and_audited(gateway: Any, agent: tuple[str, str], customers_table: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    warden = client_for(gateway, agent, monkeypatch)
    graph = build_graph(warden, customers_table)
    config: RunnableConfig = {"configurable": {"thread_id": "thread-1", "warden_run_id": "run-42"}}
    out = graph.invoke({}, config)

    assert out["rows"] == [(1, "Ada"), (2, "Grace"), (3, "Linus")]
    # The message names the rule (DELETE ... WHERE also reads, so it may name either action).
    assert 'node "cleaner"' in out["denied"] and "denied" in out["denied"], out["denied"]
    assert "warden grant request" in out["hint"]

    # The row is still there (checked directly against PostgreSQL).
    from conftest import PG_DIRECT

    with psycopg.connect(PG_DIRECT) as direct:
        assert direct.execute(f"SELECT count(*) FROM public.{customers_table}").fetchone() == (3,)

    events = gateway.audit(agent[0])
    stmts = [e for e in events if e.get("kind") == "statement"]
    read = [e for e in stmts if e["decision"] == "allow" and "select" in e.get("actions", [])]
    deny = [e for e in stmts if e["decision"] == "deny"]
    assert read and read[0]["node"] == "reader", stmts
    assert deny and deny[0]["node"] == "cleaner" and "delete" in deny[0]["actions"], stmts
    for e in read + deny:
        assert e["run"] == "run-42" and e["thread"] == "thread-1"
    # Tokens were issued per node, pinned to it.
    issued = [e for e in events if e.get("kind") == "token_issued"]
    assert sorted(e["node"] for e in issued) == ["cleaner", "reader"]

    # Neither the secret nor a token reached a log record or a repr.
    tokens = {t.value for t in warden.tokens._tokens.values()}
    text = caplog.text + repr(warden) + repr(warden.tokens)
    assert agent[1] not in text
    for t in tokens:
        assert t not in text


def test_generated_run_id_is_shared_by_the_nodes_of_one_invocation(gateway: Any, agent: tuple[str, str], customers_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    warden = client_for(gateway, agent, monkeypatch)
    graph = build_graph(warden, customers_table)
    graph.invoke({}, {"configurable": {"thread_id": "t-a"}})
    graph.invoke({}, {"configurable": {"thread_id": "t-a"}})
    # Read events are committed asynchronously (group commit): wait for all four nodes'.
    deadline = time.monotonic() + 10
    while True:
        stmts = [e for e in gateway.audit(agent[0]) if e.get("kind") == "statement"]
        runs = {e["run"] for e in stmts}
        complete = all({e["node"] for e in stmts if e["run"] == r} == {"cleaner", "reader"} for r in runs)
        if (len(runs) == 2 and complete) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(runs) == 2 and all(r.startswith("gen-") for r in runs), runs
    for run in runs:
        assert {e["node"] for e in stmts if e["run"] == run} == {"cleaner", "reader"}


def test_writer_node_may_insert(gateway: Any, agent: tuple[str, str], customers_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    warden = client_for(gateway, agent, monkeypatch)
    with warden.connect(node="writer", run="manual") as conn:
        conn.execute(f"INSERT INTO public.{customers_table} VALUES (100, 'Barbara')")
        conn.commit()
    with warden.connect(node="reader", run="manual") as conn:
        assert conn.execute(f"SELECT name FROM public.{customers_table} WHERE id = 100").fetchone() == ("Barbara",)
        with pytest.raises(WardenDenied):
            conn.execute(f"INSERT INTO public.{customers_table} VALUES (101, 'Edsger')")
        conn.rollback()
        # The session stays usable after a denial.
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # WardenDenied is also psycopg's InsufficientPrivilege.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"DELETE FROM public.{customers_table}")
        conn.rollback()
    with warden.connect(node="writer", run="manual", autocommit=True) as conn:
        conn.execute(f"UPDATE public.{customers_table} SET name = name WHERE id = 100")


def test_token_is_pinned_to_its_node(gateway: Any, agent: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    warden = client_for(gateway, agent, monkeypatch)
    kw = warden.connect_kwargs(node="reader", run="r")
    kw["options"] = "-c warden.node=writer -c warden.run=r"
    with pytest.raises(psycopg.OperationalError, match="pinned"):
        psycopg.connect(**kw)


def test_bad_secret_is_refused(gateway: Any, agent: tuple[str, str]) -> None:
    warden = WardenClient(gateway.admin_url, agent[0], secret="wdn_es_not-the-secret", pg_host=gateway.pg_host, pg_port=gateway.pg_port)
    with pytest.raises(WardenAuthError) as info:
        warden.connect(node="reader", run="r")
    assert "wdn_es_not-the-secret" not in str(info.value)


def test_pool_reuses_connections_and_refreshes_tokens(gateway: Any, agent: tuple[str, str], customers_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    warden = client_for(gateway, agent, monkeypatch, token_ttl="10m")
    try:
        pool = warden.pool(node="reader", run="pooled", thread="t", max_size=2)
        assert warden.pool(node="reader", run="pooled", thread="t") is pool
        for _ in range(5):
            with pool.connection() as conn:
                assert conn.execute(f"SELECT count(*) FROM public.{customers_table}").fetchone()[0] >= 3
        assert warden.tokens.fetches == 1
        # Once the token is past its refresh point, the next physical connection gets a new one.
        scope = warden.scope(node="reader", run="pooled", thread="t")
        first = warden.tokens.get(scope)
        monkeypatch.setattr(warden.tokens, "_clock", lambda: first.refresh_at(0.8) + 1)
        with pool.connection() as conn:  # an idle pooled connection: no new token needed
            conn.execute("SELECT 1")
        with warden.connect(node="reader", run="pooled", thread="t") as conn:
            conn.execute("SELECT 1")
        assert warden.tokens.fetches == 2
        assert warden.tokens.get(scope).value != first.value
        monkeypatch.undo()
        with pytest.raises(WardenDenied):
            with pool.connection() as conn:
                conn.execute(f"DELETE FROM public.{customers_table}")
    finally:
        warden.close()


async def test_async_connect_and_pool(gateway: Any, agent: tuple[str, str], customers_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    warden = client_for(gateway, agent, monkeypatch)

    async def reader(state: State, config: RunnableConfig) -> State:
        async with await warden.aconnect(config) as conn:
            cur = await conn.execute(f"SELECT id, name FROM public.{customers_table} WHERE id <= 3 ORDER BY id")
            rows = await cur.fetchall()
        pool = await warden.apool(config)
        async with pool.connection() as conn:
            try:
                await conn.execute(f"DELETE FROM public.{customers_table}")
            except WardenDenied as exc:
                return {"rows": rows, "denied": exc.rule}
        return {"rows": rows, "denied": ""}

    g = StateGraph(State)
    g.add_node("reader", reader)
    g.add_edge(START, "reader")
    g.add_edge("reader", END)
    graph = g.compile(checkpointer=InMemorySaver())
    try:
        out = await graph.ainvoke({}, {"configurable": {"thread_id": "async-t"}})
    finally:
        await warden.aclose()
    assert out["rows"] == [(1, "Ada"), (2, "Grace"), (3, "Linus")]
    assert 'node "reader"' in out["denied"]
    stmts = [e for e in gateway.audit(agent[0]) if e.get("kind") == "statement"]
    assert {e["node"] for e in stmts} == {"reader"} and {e["thread"] for e in stmts} == {"async-t"}
    assert len({e["run"] for e in stmts}) == 1


def test_real_psycopg_errors_map(customers_table: str) -> None:
    """The mapping works on errors psycopg builds from a real ErrorResponse (raised by the
    local PostgreSQL with Warden's SQLSTATEs, since the gateway's approval flow is not built)."""
    from conftest import PG_DIRECT

    from warden_langgraph import WardenApprovalPending, WardenCursor

    with psycopg.connect(PG_DIRECT, autocommit=True, cursor_factory=WardenCursor) as conn:
        with pytest.raises(WardenApprovalPending) as pending:
            conn.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'warden: statement held: approval ap_7f3 needs a human' "
                "USING ERRCODE = 'WA001', HINT = 'warden approval show ap_7f3'; END $$"
            )
        assert pending.value.approval_id == "ap_7f3" and pending.value.hint == "warden approval show ap_7f3"
        assert pending.value.statement is not None and pending.value.statement.startswith("DO $$")
        with pytest.raises(WardenDenied) as denied:
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'warden: no' USING ERRCODE = '42501', HINT = 'ask'; END $$")
        assert (denied.value.rule, denied.value.hint) == ("warden: no", "ask")
