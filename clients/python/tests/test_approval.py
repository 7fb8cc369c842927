"""Error mapping, and "approval pending" → interrupt() → Command(resume=...) in a real graph.

The gateway's approval flow (issue 10) does not exist yet, so a fake database raises the
psycopg error Warden is expected to send (SQLSTATE WA001, "approval <id>")."""

from __future__ import annotations

from typing import Any, TypedDict

import psycopg
import psycopg.errors
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from warden_langgraph import (
    APPROVAL_PENDING_SQLSTATE,
    WardenApprovalPending,
    WardenApprovalRejected,
    WardenDenied,
    interrupt_on_approval,
    translate,
    translating,
)


class FakeDiag:
    def __init__(self, primary: str, hint: str | None) -> None:
        self.message_primary = primary
        self.message_hint = hint


def pg_error(sqlstate: str, message: str, hint: str | None = None) -> psycopg.Error:
    """A psycopg error as the driver would build it from the gateway's ErrorResponse."""
    cls = psycopg.errors.lookup(sqlstate) if sqlstate == "42501" else psycopg.DatabaseError
    exc = cls(message)
    exc.sqlstate = sqlstate  # type: ignore[misc]
    object.__setattr__(exc, "_fake_diag", FakeDiag(message, hint))
    return exc


@pytest.fixture(autouse=True)
def fake_diag(monkeypatch: pytest.MonkeyPatch) -> None:
    original = psycopg.Error.diag

    def diag(self: psycopg.Error) -> Any:
        fake = getattr(self, "_fake_diag", None)
        return fake if fake is not None else original.__get__(self)

    monkeypatch.setattr(psycopg.Error, "diag", property(diag))


def test_denied_mapping() -> None:
    src = pg_error("42501", 'warden: delete on table public.t denied for agent "a" node "n"', "Request access with: warden grant request ...")
    exc = translate(src, "DELETE FROM t")
    assert isinstance(exc, WardenDenied) and isinstance(exc, psycopg.errors.InsufficientPrivilege)
    assert exc.rule.startswith("warden: delete") and exc.hint and exc.hint.startswith("Request access")
    assert exc.statement == "DELETE FROM t" and exc.sqlstate == "42501" and exc.__cause__ is src


def test_pending_mapping_and_passthrough() -> None:
    exc = translate(pg_error(APPROVAL_PENDING_SQLSTATE, "warden: held for approval ap_01HX-9 (refund over 100)"), "UPDATE x")
    assert isinstance(exc, WardenApprovalPending)
    assert exc.approval_id == "ap_01HX-9" and exc.statement == "UPDATE x" and exc.sqlstate == "WA001"
    other = pg_error("23505", "duplicate key")
    assert translate(other) is other
    plain = ValueError("x")
    assert translate(plain) is plain
    with pytest.raises(WardenDenied):
        with translating("COPY t TO STDOUT"):
            raise pg_error("42501", "warden: copy denied")


class State(TypedDict, total=False):
    result: str


class FakeDatabase:
    """Holds a statement for approval until `approve()`; then runs it exactly once."""

    def __init__(self) -> None:
        self.approved = False
        self.executed: list[str] = []
        self.attempts = 0

    def approve(self) -> None:
        self.approved = True

    def execute(self, statement: str) -> str:
        self.attempts += 1
        if not self.approved:
            with translating(statement):
                raise pg_error(APPROVAL_PENDING_SQLSTATE, "warden: statement held: approval ap-42 needs a human")
        self.executed.append(statement)
        return "UPDATE 1"


def refund_graph(db: FakeDatabase, use_async: bool = False) -> Any:
    if use_async:

        @interrupt_on_approval
        async def issue_refund(state: State) -> State:
            return {"result": db.execute("UPDATE refunds SET state = 'paid' WHERE id = 7")}

    else:

        @interrupt_on_approval
        def issue_refund(state: State) -> State:  # type: ignore[misc]
            return {"result": db.execute("UPDATE refunds SET state = 'paid' WHERE id = 7")}

    g = StateGraph(State)
    g.add_node("issue_refund", issue_refund)
    g.add_edge(START, "issue_refund")
    g.add_edge("issue_refund", END)
    return g.compile(checkpointer=InMemorySaver())


def test_pending_interrupts_and_resume_runs_once() -> None:
    db = FakeDatabase()
    graph = refund_graph(db)
    cfg = {"configurable": {"thread_id": "refund-1"}}
    out = graph.invoke({}, cfg)
    (intr,) = out["__interrupt__"]
    assert intr.value["approval_id"] == "ap-42"
    assert intr.value["statement"] == "UPDATE refunds SET state = 'paid' WHERE id = 7"
    assert db.executed == []

    # Resuming before the human approved: the node re-runs, is still pending, asks again.
    out = graph.invoke(Command(resume=True), cfg)
    assert out["__interrupt__"][0].value["approval_id"] == "ap-42" and db.executed == []

    db.approve()  # the human approves in Warden
    out = graph.invoke(Command(resume=True), cfg)
    assert out == {"result": "UPDATE 1"}
    assert db.executed == ["UPDATE refunds SET state = 'paid' WHERE id = 7"]


async def test_async_node_interrupts_too() -> None:
    db = FakeDatabase()
    graph = refund_graph(db, use_async=True)
    cfg = {"configurable": {"thread_id": "refund-2"}}
    out = await graph.ainvoke({}, cfg)
    assert out["__interrupt__"][0].value["approval_id"] == "ap-42"
    db.approve()
    assert await graph.ainvoke(Command(resume=True), cfg) == {"result": "UPDATE 1"}
    assert len(db.executed) == 1


def test_resume_with_rejection_raises() -> None:
    db = FakeDatabase()
    graph = refund_graph(db)
    cfg = {"configurable": {"thread_id": "refund-3"}}
    graph.invoke({}, cfg)
    with pytest.raises(WardenApprovalRejected, match="ap-42"):
        graph.invoke(Command(resume={"approved": False}), cfg)
    assert db.executed == []


def test_denied_is_not_turned_into_an_interrupt() -> None:
    @interrupt_on_approval
    def node(state: State) -> State:
        with translating():
            raise pg_error("42501", "warden: delete denied")

    g = StateGraph(State)
    g.add_node("node", node)
    g.add_edge(START, "node")
    g.add_edge("node", END)
    with pytest.raises(WardenDenied):
        g.compile(checkpointer=InMemorySaver()).invoke({}, {"configurable": {"thread_id": "x"}})


def test_decorated_node_still_receives_config() -> None:
    from langchain_core.runnables import RunnableConfig

    from warden_langgraph import current_scope

    @interrupt_on_approval
    def reader(state: State, config: RunnableConfig) -> State:
        return {"result": current_scope(config).node}

    g = StateGraph(State)
    g.add_node("reader", reader)
    g.add_edge(START, "reader")
    g.add_edge("reader", END)
    assert g.compile().invoke({}) == {"result": "reader"}
