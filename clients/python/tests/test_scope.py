"""Scope detection inside a real LangGraph graph (no gateway needed)."""

from __future__ import annotations

import uuid
from typing import Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from warden_langgraph import Scope, WardenScopeError, current_scope


class State(TypedDict, total=False):
    seen: list[Scope]


def graph_recording_scopes() -> Any:
    def first(state: State, config: RunnableConfig) -> State:
        return {"seen": [*state.get("seen", []), current_scope(config)]}

    def second(state: State) -> State:  # no config argument: found via get_config()
        return {"seen": [*state.get("seen", []), current_scope()]}

    g = StateGraph(State)
    g.add_node("first", first)
    g.add_node("second", second)
    g.add_edge(START, "first")
    g.add_edge("first", "second")
    g.add_edge("second", END)
    return g.compile(checkpointer=InMemorySaver())


def test_node_and_thread_come_from_the_runtime() -> None:
    out = graph_recording_scopes().invoke({}, {"configurable": {"thread_id": "t-1"}})
    a, b = out["seen"]
    assert (a.node, b.node) == ("first", "second")
    assert a.thread == b.thread == "t-1"


def test_generated_run_is_one_per_invocation() -> None:
    graph = graph_recording_scopes()
    one = graph.invoke({}, {"configurable": {"thread_id": "t"}})["seen"]
    two = graph.invoke({"seen": []}, {"configurable": {"thread_id": "t"}})["seen"]
    assert {s.run_source for s in one + two} == {"generated"}
    assert one[0].run == one[1].run and two[0].run == two[1].run
    assert one[0].run != two[0].run
    assert one[0].run.startswith("gen-")


def test_run_from_configurable_key() -> None:
    out = graph_recording_scopes().invoke({}, {"configurable": {"thread_id": "t", "warden_run_id": "ticket-7"}})
    assert [(s.run, s.run_source) for s in out["seen"]] == [("ticket-7", "configurable")] * 2


def test_run_from_invoke_run_id() -> None:
    rid = uuid.uuid4()
    out = graph_recording_scopes().invoke({}, {"configurable": {"thread_id": "t"}, "run_id": rid})
    assert [(s.run, s.run_source) for s in out["seen"]] == [(str(rid), "invoke")] * 2


def test_run_from_metadata_wins() -> None:
    # LangGraph Platform puts run_id in the metadata.
    cfg = {
        "metadata": {"run_id": "platform-run"},
        "configurable": {"thread_id": "t", "warden_run_id": "mine"},
    }
    out = graph_recording_scopes().invoke({}, cfg)
    assert [(s.run, s.run_source) for s in out["seen"]] == [("platform-run", "metadata")] * 2


def test_without_checkpointer_thread_is_none() -> None:
    def only(state: State) -> State:
        return {"seen": [current_scope()]}

    g = StateGraph(State)
    g.add_node("only", only)
    g.add_edge(START, "only")
    g.add_edge("only", END)
    (s,) = g.compile().invoke({})["seen"]
    assert s.node == "only" and s.thread is None and s.run_source == "generated"


def test_outside_a_graph() -> None:
    with pytest.raises(WardenScopeError, match="node"):
        current_scope()
    s = current_scope(node="reader", run="r", thread="t")
    assert s == Scope("reader", "r", "t", "explicit")


def test_plain_config_dict() -> None:
    s = current_scope({"metadata": {"langgraph_node": "n"}, "configurable": {"thread_id": 5, "warden_run_id": "r"}})
    assert (s.node, s.run, s.thread, s.run_source) == ("n", "r", "5", "configurable")


def test_pg_options_escape_whitespace_and_backslashes() -> None:
    s = Scope("my node", "run\\1", "t 2")
    assert s.pg_options() == r"-c warden.node=my\ node -c warden.run=run\\1 -c warden.thread=t\ 2"
    assert Scope("n", "r").pg_options() == "-c warden.node=n -c warden.run=r"
