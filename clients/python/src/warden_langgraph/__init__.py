"""warden-langgraph: adopt Warden from a LangGraph graph by changing a few lines.

- :class:`WardenClient` exchanges the agent's enrollment secret for short-lived tokens pinned
  to the current node, run and thread, and hands out psycopg connections (sync, async,
  pooled) through the gateway.
- :func:`current_scope` reads the node, run and thread from LangGraph's runtime config.
- :class:`WardenDenied` / :class:`WardenApprovalPending` are Warden's answers as exceptions;
  :func:`interrupt_on_approval` turns "approval pending" into ``interrupt()``.
- :func:`graph_digest` / :func:`manifest` identify a graph version.

Node identity is declared by the graph runtime, not proven: see the README.
"""

from .client import WardenAsyncCursor, WardenClient, WardenCursor
from .digest import MANIFEST_FORMAT, graph_digest, manifest
from .errors import (
    APPROVAL_PENDING_SQLSTATE,
    DENIED_SQLSTATE,
    WardenApprovalPending,
    WardenApprovalRejected,
    WardenAuthError,
    WardenDenied,
    WardenError,
    approval_payload,
    interrupt_on_approval,
    translate,
    translating,
)
from .scope import GENERATED_RUN_PREFIX, RUN_ID_CONFIG_KEY, RunSource, Scope, WardenScopeError, current_scope
from .tokens import Secret, Token, TokenCache, load_secret

__version__ = "0.1.0"

__all__ = [
    "APPROVAL_PENDING_SQLSTATE",
    "DENIED_SQLSTATE",
    "GENERATED_RUN_PREFIX",
    "MANIFEST_FORMAT",
    "RUN_ID_CONFIG_KEY",
    "RunSource",
    "Scope",
    "Secret",
    "Token",
    "TokenCache",
    "WardenApprovalPending",
    "WardenApprovalRejected",
    "WardenAsyncCursor",
    "WardenAuthError",
    "WardenClient",
    "WardenCursor",
    "WardenDenied",
    "WardenError",
    "WardenScopeError",
    "approval_payload",
    "current_scope",
    "graph_digest",
    "interrupt_on_approval",
    "load_secret",
    "manifest",
    "translate",
    "translating",
]
