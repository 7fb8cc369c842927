"""Where a statement comes from: the LangGraph node, run and thread.

Warden's per-node policy and audit key on the node name the session declares. This module
reads it (and the run and thread ids) from LangGraph's runtime config so graph authors do not
thread names by hand.

The node name is *declared* by the graph runtime, not proven: code holding the agent's
enrollment secret can claim any node. Warden pins each token to the node it was issued for,
which stops a token leaked from one node being replayed as another, but it cannot tell
whether the process asking for a ``reader`` token is really running the ``reader`` node.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "RUN_ID_CONFIG_KEY",
    "GENERATED_RUN_PREFIX",
    "RunSource",
    "Scope",
    "WardenScopeError",
    "current_scope",
]

#: The ``configurable`` key a caller may set to name the run:
#: ``graph.invoke(state, {"configurable": {"thread_id": t, "warden_run_id": "ticket-42"}})``.
RUN_ID_CONFIG_KEY = "warden_run_id"

#: Prefix of run ids this package generates, so the audit log shows a run id that nobody
#: supplied (``run=gen-...``) apart from one the platform or the caller supplied.
GENERATED_RUN_PREFIX = "gen-"

RunSource = Literal["explicit", "metadata", "configurable", "invoke", "generated"]
"""Where :attr:`Scope.run` came from.

``explicit``: passed to :func:`current_scope`; ``metadata``: ``config["metadata"]["run_id"]``
(set by LangGraph Platform); ``configurable``: ``config["configurable"]["warden_run_id"]``;
``invoke``: the ``run_id`` given to ``graph.invoke(..., {"run_id": ...})`` (read from the
LangGraph runtime's execution info); ``generated``: none of these, so one id is generated per
graph invocation (prefixed ``gen-``).
"""


class WardenScopeError(RuntimeError):
    """No LangGraph node could be found for a connection (called outside a graph node)."""


@dataclass(frozen=True)
class Scope:
    """The node, run and thread a connection or token belongs to.

    Tokens are cached and pools are keyed by the whole scope, so a session's audit records
    always name the node, run and thread that opened it.
    """

    node: str
    run: str
    thread: str | None = None
    run_source: RunSource = "explicit"

    def key(self) -> tuple[str, str, str | None]:
        """The cache key: ``(node, run, thread)`` (``run_source`` is informational)."""
        return (self.node, self.run, self.thread)

    def pg_options(self) -> str:
        """The libpq ``options`` value that declares this scope to the gateway."""
        parts = [f"-c warden.node={_escape_option(self.node)}", f"-c warden.run={_escape_option(self.run)}"]
        if self.thread:
            parts.append(f"-c warden.thread={_escape_option(self.thread)}")
        return " ".join(parts)


def _escape_option(value: str) -> str:
    # libpq's options are whitespace separated with backslash escapes.
    out = []
    for ch in value:
        if ch == "\\" or ch.isspace():
            out.append("\\")
        out.append(ch)
    return "".join(out)


# One generated run id per graph invocation. LangGraph creates one RunControl object per
# invocation and shares it between that invocation's nodes; it does not support weak
# references, so a bounded map keeps a strong reference (which also keeps its id() from being
# reused while the entry lives).
_GENERATED_MAX = 1024
_generated: OrderedDict[int, tuple[object, str]] = OrderedDict()
_generated_lock = threading.Lock()


def _generated_run_id(invocation: object | None) -> str:
    if invocation is None:
        return GENERATED_RUN_PREFIX + uuid.uuid4().hex
    with _generated_lock:
        hit = _generated.get(id(invocation))
        if hit is not None and hit[0] is invocation:
            _generated.move_to_end(id(invocation))
            return hit[1]
        run = GENERATED_RUN_PREFIX + uuid.uuid4().hex
        _generated[id(invocation)] = (invocation, run)
        while len(_generated) > _GENERATED_MAX:
            _generated.popitem(last=False)
        return run


def _langgraph_config() -> Mapping[str, Any] | None:
    try:
        from langgraph.config import get_config
    except ImportError:  # pragma: no cover - langgraph is a dependency
        return None
    try:
        return get_config()
    except RuntimeError:
        return None


def _runtime(configurable: Mapping[str, Any]) -> Any:
    try:
        from langgraph.runtime import CONFIG_KEY_RUNTIME  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - older langgraph
        CONFIG_KEY_RUNTIME = "__pregel_runtime"
    return configurable.get(CONFIG_KEY_RUNTIME)


def current_scope(
    config: Mapping[str, Any] | None = None,
    *,
    node: str | None = None,
    run: str | None = None,
    thread: str | None = None,
) -> Scope:
    """Return the :class:`Scope` of the LangGraph node that is running.

    Reads ``config`` (the ``RunnableConfig`` a node receives) or, when it is ``None``,
    ``langgraph.config.get_config()``, which works inside a node that does not take a config
    argument.

    - node: ``config["metadata"]["langgraph_node"]``;
    - run: ``config["metadata"]["run_id"]`` (LangGraph Platform), else
      ``config["configurable"]["warden_run_id"]``, else the ``run_id`` given to ``invoke``,
      else one generated per graph invocation (``gen-<hex>``); :attr:`Scope.run_source` says
      which;
    - thread: ``config["configurable"]["thread_id"]`` (else ``metadata["thread_id"]``).

    ``node``, ``run`` and ``thread`` override what the config says (for scripts and tests that
    run outside a graph). Raises :class:`WardenScopeError` when no node can be determined.
    """
    if config is None:
        config = _langgraph_config()
    config = config or {}
    metadata: Mapping[str, Any] = config.get("metadata") or {}
    configurable: Mapping[str, Any] = config.get("configurable") or {}

    node_name = node or metadata.get("langgraph_node")
    if not node_name:
        raise WardenScopeError(
            "no LangGraph node found: call this inside a graph node (pass the node's config, "
            "or let langgraph.config.get_config() find it), or pass node= explicitly"
        )

    run_source: RunSource
    runtime = _runtime(configurable)
    invoke_run_id = getattr(getattr(runtime, "execution_info", None), "run_id", None)
    if run:
        run_id, run_source = run, "explicit"
    elif metadata.get("run_id"):
        run_id, run_source = str(metadata["run_id"]), "metadata"
    elif configurable.get(RUN_ID_CONFIG_KEY):
        run_id, run_source = str(configurable[RUN_ID_CONFIG_KEY]), "configurable"
    elif invoke_run_id:
        run_id, run_source = str(invoke_run_id), "invoke"
    else:
        run_id, run_source = _generated_run_id(getattr(runtime, "control", None)), "generated"

    thread_id = thread or configurable.get("thread_id") or metadata.get("thread_id")
    return Scope(
        node=str(node_name),
        run=run_id,
        thread=str(thread_id) if thread_id is not None else None,
        run_source=run_source,
    )
