"""Warden's answers as Python exceptions, and the bridge from "approval pending" to LangGraph's
``interrupt()``.

- SQLSTATE ``42501`` from the gateway → :class:`WardenDenied` (the message names the rule;
  ``hint`` says how to request access). It subclasses
  ``psycopg.errors.InsufficientPrivilege``, so existing ``except`` clauses keep working.
- SQLSTATE :data:`APPROVAL_PENDING_SQLSTATE` → :class:`WardenApprovalPending` with the approval
  id parsed from ``approval <id>`` in the message.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, overload

import psycopg
import psycopg.errors

__all__ = [
    "APPROVAL_PENDING_SQLSTATE",
    "DENIED_SQLSTATE",
    "WardenError",
    "WardenAuthError",
    "WardenDenied",
    "WardenApprovalPending",
    "WardenApprovalRejected",
    "translate",
    "translating",
    "approval_payload",
    "interrupt_on_approval",
]

#: SQLSTATE of a statement Warden refused (PostgreSQL's ``insufficient_privilege``).
DENIED_SQLSTATE = "42501"

#: SQLSTATE Warden sends when a statement is held for human approval in resume mode
#: (``warden: approval pending: approval apr_... (policy "...") must be granted by a human``).
#: Class ``WA`` is not used by PostgreSQL.
APPROVAL_PENDING_SQLSTATE = "WA001"

# "approval <id>", skipping the gateway's "approval pending:" prefix.
_APPROVAL_ID = re.compile(r"\bapproval\s+(?!pending\b)([A-Za-z0-9][A-Za-z0-9_.-]*)")


class WardenError(Exception):
    """Base class of this package's errors."""


class WardenAuthError(WardenError):
    """The enrollment secret is missing or was refused, or the admin API is unreachable."""


class WardenDenied(WardenError, psycopg.errors.InsufficientPrivilege):
    """Warden denied a statement (SQLSTATE 42501).

    ``str(exc)`` and :attr:`rule` are the gateway's message, which names the rule; :attr:`hint`
    is how to request access (e.g. a ``warden grant request ...`` command line).
    The original psycopg error is ``__cause__``.
    """

    def __init__(self, rule: str, hint: str | None = None, statement: str | None = None) -> None:
        super().__init__(rule)
        self.rule = rule
        self.hint = hint
        self.statement = statement

    sqlstate = DENIED_SQLSTATE


class WardenApprovalRejected(WardenDenied):
    """The graph was resumed with a rejection (``Command(resume={"approved": False})``)."""


class WardenApprovalPending(WardenError, psycopg.DatabaseError):
    """Warden holds the statement until a human approves it (SQLSTATE
    :data:`APPROVAL_PENDING_SQLSTATE`).

    Inside a LangGraph node, let :func:`interrupt_on_approval` turn this into ``interrupt()``.
    """

    def __init__(self, approval_id: str | None, message: str, hint: str | None = None, statement: str | None = None) -> None:
        super().__init__(message)
        self.approval_id = approval_id
        self.message = message
        self.hint = hint
        self.statement = statement

    sqlstate = APPROVAL_PENDING_SQLSTATE


def translate(exc: BaseException, statement: str | None = None) -> BaseException:
    """Map a psycopg error from the gateway to :class:`WardenDenied` /
    :class:`WardenApprovalPending`; return anything else unchanged."""
    if isinstance(exc, WardenError) or not isinstance(exc, psycopg.Error):
        return exc
    state = getattr(exc, "sqlstate", None)
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    hint = diag.message_hint
    new: WardenError
    if state == DENIED_SQLSTATE:
        new = WardenDenied(message, hint, statement)
    elif state == APPROVAL_PENDING_SQLSTATE:
        m = _APPROVAL_ID.search(message) or _APPROVAL_ID.search(hint or "")
        new = WardenApprovalPending(m.group(1) if m else None, message, hint, statement)
    else:
        return exc
    new.__cause__ = exc
    return new


@contextmanager
def translating(statement: str | None = None) -> Iterator[None]:
    """Translate gateway errors raised inside the block (for paths the cursor does not wrap,
    such as ``cursor.copy()``)."""
    try:
        yield
    except psycopg.Error as exc:
        new = translate(exc, statement)
        if new is exc:
            raise
        raise new from exc


def approval_payload(exc: WardenApprovalPending) -> dict[str, Any]:
    """The value passed to ``interrupt()``: what a human (or a UI) needs to find the request."""
    return {
        "kind": "warden_approval",
        "approval_id": exc.approval_id,
        "statement": exc.statement,
        "message": exc.message,
        "hint": exc.hint,
    }


def _rejected(answer: Any) -> bool:
    if answer is False:
        return True
    if isinstance(answer, str):
        return answer.strip().lower() in {"reject", "rejected", "deny", "denied", "no"}
    if isinstance(answer, dict):
        return answer.get("approved") is False
    return False


P = ParamSpec("P")
R = TypeVar("R")


@overload
def interrupt_on_approval(fn: Callable[P, Awaitable[R]], *, max_rounds: int = ...) -> Callable[P, Awaitable[R]]: ...
@overload
def interrupt_on_approval(fn: Callable[P, R], *, max_rounds: int = ...) -> Callable[P, R]: ...
@overload
def interrupt_on_approval(fn: None = None, *, max_rounds: int = ...) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def interrupt_on_approval(fn: Any = None, *, max_rounds: int = 10) -> Any:
    """Decorate a LangGraph node (sync or async) so that "approval pending" pauses the graph.

    When the node raises :class:`WardenApprovalPending`, the wrapper calls
    ``langgraph.types.interrupt(approval_payload(exc))``. The graph stops (it needs a
    checkpointer) and ``invoke`` returns ``{"__interrupt__": [Interrupt(value={"approval_id":
    ..., "statement": ...})]}``. A human approves in Warden; the caller resumes with
    ``graph.invoke(Command(resume=True), same_config)``.

    LangGraph re-runs the node from its first line on resume, so the node sends the same
    statement again and Warden, now holding an approval, executes it once. Work done before
    the statement must be idempotent. If the statement is still pending after a resume, the
    node interrupts again (up to ``max_rounds``). Resuming with ``False``, ``"reject"`` or
    ``{"approved": False}`` raises :class:`WardenApprovalRejected` instead of retrying.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        from langgraph.types import interrupt

        def on_pending(exc: WardenApprovalPending, rounds: int) -> None:
            if rounds >= max_rounds:
                raise exc
            answer = interrupt(approval_payload(exc))
            if _rejected(answer):
                raise WardenApprovalRejected(
                    f"approval {exc.approval_id} was rejected when the graph was resumed",
                    exc.hint,
                    exc.statement,
                ) from exc

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                rounds = 0
                while True:
                    try:
                        return await func(*args, **kwargs)
                    except WardenApprovalPending as exc:
                        on_pending(exc, rounds)
                        rounds += 1

            return awrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            rounds = 0
            while True:
                try:
                    return func(*args, **kwargs)
                except WardenApprovalPending as exc:
                    on_pending(exc, rounds)
                    rounds += 1

        return wrapper

    if fn is None:
        return decorate
    return decorate(fn)
