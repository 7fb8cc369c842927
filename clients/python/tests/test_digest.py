"""Graph version digest: stable across runs and processes, sensitive to structure and privileges."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from warden_langgraph import MANIFEST_FORMAT, graph_digest, manifest


class State(TypedDict, total=False):
    x: int


def build(extra_edge: bool = False, order: tuple[str, ...] = ("lookup", "refund")) -> Any:
    g = StateGraph(State)
    for name in order:
        g.add_node(name, lambda s: s)
    g.add_edge(START, "lookup")
    if extra_edge:
        g.add_conditional_edges("lookup", lambda s: "refund", {"refund": "refund", "end": END})
    else:
        g.add_edge("lookup", "refund")
    g.add_edge("refund", END)
    return g.compile()


PRIVS = {"lookup": ["select:public.customers"], "refund": ["insert:public.refunds", "select:public.customers"]}


def test_digest_is_stable_and_order_independent() -> None:
    d = graph_digest(build(), PRIVS)
    assert len(d) == 64 and d == graph_digest(build(), PRIVS)
    assert d == graph_digest(build(order=("refund", "lookup")), PRIVS)
    shuffled = {"refund": ["select:public.customers", "insert:public.refunds", "insert:public.refunds"], "lookup": ["select:public.customers"]}
    assert d == graph_digest(build(), shuffled)


def test_digest_changes_with_structure_and_privileges() -> None:
    d = graph_digest(build(), PRIVS)
    assert d != graph_digest(build(extra_edge=True), PRIVS)
    assert d != graph_digest(build(), {**PRIVS, "lookup": ["select:public.customers", "delete:public.customers"]})
    assert d != graph_digest(build(), {"lookup": PRIVS["lookup"]})


def test_digest_is_the_same_in_another_process() -> None:
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from test_digest import build, PRIVS\n"
        "from warden_langgraph import graph_digest\n"
        "print(graph_digest(build(), PRIVS))\n"
    ) % str(Path(__file__).parent)
    # This process runs with a random hash seed; the child with a fixed, different one.
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True)
    assert out.stdout.strip() == graph_digest(build(), PRIVS)


def test_manifest() -> None:
    m = manifest(build(), PRIVS, agent="support-bot", name="support desk")
    assert m["format"] == MANIFEST_FORMAT
    assert m["digest"] == graph_digest(build(), PRIVS)
    assert m["nodes"] == ["__end__", "__start__", "lookup", "refund"]
    assert {"source": "lookup", "target": "refund", "conditional": False, "label": None} in m["edges"]
    assert m["privileges"]["refund"] == ["insert:public.refunds", "select:public.customers"]
    assert (m["agent"], m["name"]) == ("support-bot", "support desk")


def test_unknown_node_and_bad_privileges() -> None:
    with pytest.raises(ValueError, match="nope"):
        graph_digest(build(), {"nope": []})
    with pytest.raises(TypeError):
        graph_digest(build(), {"lookup": "select:public.customers"})  # type: ignore[dict-item]
    # Dict privileges are canonicalized too.
    a = graph_digest(build(), {"lookup": [{"action": "select", "table": "public.customers"}]})
    b = graph_digest(build(), {"lookup": [{"table": "public.customers", "action": "select"}]})
    assert a == b
