"""A support-desk graph adopted to Warden: ``before_warden.py`` is the same graph before.
Lines added or changed for Warden end with a ``[warden]`` comment; ``test_example.py``
counts the difference between the two files (the README shows it).

    START -> agent -(tool call)-> lookup_customer -> END
                               \\-> issue_refund   -> END

- ``agent`` asks the model (an OpenAI-compatible chat.completions endpoint) which tool to
  call. The model writes the lookup's SQL itself (a "text-to-SQL" tool), which is exactly
  what a prompt injection abuses.
- ``lookup_customer`` runs the model's query against ``support_customers``.
- ``issue_refund`` records a refund in ``support_refunds``.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

import httpx
import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from warden_langgraph import WardenClient, interrupt_on_approval  # [warden]

warden = WardenClient.from_env()  # [warden] (was: DSN = os.environ[...])

MODEL = "support-stand-in"
SYSTEM = (
    "You are a support agent. Tools: lookup_customer(sql) runs a read-only query on "
    "support_customers(id, name, email, card_number); issue_refund(customer_id, amount_cents, reason)."
)

# What each node may do, for the graph version manifest (policy AND manifest both must allow).
PRIVILEGES = {"agent": [{"target": "llm", "models": [MODEL]}], "lookup_customer": ["transaction", "select:support_customers"], "issue_refund": ["transaction", "insert:support_refunds"]}  # [warden]


class State(TypedDict, total=False):
    request: str
    tool: str
    args: dict[str, Any]
    rows: list[list[Any]]
    refund: str
    denied: str


def agent(state: State, config: RunnableConfig) -> State:
    """Ask the model which tool to call."""
    body = {
        "model": MODEL,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": state["request"]}],
        "tools": [{"type": "function", "function": {"name": n}} for n in ("lookup_customer", "issue_refund")],
    }
    with httpx.Client(base_url=warden.openai_base_url("llm"), headers=warden.http_headers(config), timeout=60) as llm:  # [warden]
        resp = llm.post("/chat/completions", json=body)
    resp.raise_for_status()
    call = resp.json()["choices"][0]["message"]["tool_calls"][0]["function"]
    return {"tool": call["name"], "args": json.loads(call["arguments"])}


def lookup_customer(state: State, config: RunnableConfig) -> State:
    """Run the model's query. A denial is reported back, not raised."""
    try:
        with warden.connect(config) as conn:  # [warden]
            rows = conn.execute(state["args"]["sql"]).fetchall()
    except psycopg.errors.InsufficientPrivilege as exc:  # Warden's WardenDenied is one
        return {"rows": [], "denied": str(exc)}
    return {"rows": [list(r) for r in rows]}


@interrupt_on_approval  # [warden]
def issue_refund(state: State, config: RunnableConfig) -> State:
    """Record the refund."""
    # Warden holds the INSERT for a human: the graph pauses (interrupt) and resumes after.
    a = state["args"]
    with warden.connect(config) as conn:  # [warden]
        conn.execute(
            "INSERT INTO support_refunds (customer_id, amount_cents, reason) VALUES (%s, %s, %s)",
            (a["customer_id"], a["amount_cents"], a["reason"]),
        )
    return {"refund": f"refunded {a['amount_cents']} cents to customer {a['customer_id']}"}


def build() -> Any:
    g = StateGraph(State)
    g.add_node("agent", agent)
    g.add_node("lookup_customer", lookup_customer)
    g.add_node("issue_refund", issue_refund)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", lambda s: s["tool"], ["lookup_customer", "issue_refund"])
    g.add_edge("lookup_customer", END)
    g.add_edge("issue_refund", END)
    return g.compile(checkpointer=InMemorySaver())


graph = build()
MANIFEST = warden.use_graph(graph, PRIVILEGES, name="support-desk")  # [warden]
