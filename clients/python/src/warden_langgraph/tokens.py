"""Short-lived Warden tokens: exchange the enrollment secret, cache per scope, refresh early.

The enrollment secret is long-lived and stays in this process; what reaches the database
connection is a token pinned to one node, run and thread that expires in minutes. Neither the
secret nor a token is ever logged or shown by ``repr``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .errors import WardenAuthError
from .scope import Scope

__all__ = ["Secret", "Token", "TokenCache", "load_secret"]


class Secret:
    """A string that does not show itself in ``repr``/``str``/logs. Use :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value (only to send it where it belongs)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[Any, ...]:  # never pickle a secret by accident
        raise TypeError("a Secret cannot be pickled")


def load_secret(
    secret: str | None = None,
    secret_env: str | None = "WARDEN_AGENT_SECRET",
    secret_file: str | os.PathLike[str] | None = None,
) -> Secret:
    """Find the agent's enrollment secret: ``secret`` (tests only), else ``secret_file``, else
    the environment variable ``secret_env``. Raises :class:`WardenAuthError` if none is set."""
    if secret is not None:
        return Secret(secret)
    if secret_file is not None:
        try:
            value = Path(secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise WardenAuthError(f"cannot read the enrollment secret file {str(secret_file)!r}: {exc.strerror}") from None
        if not value:
            raise WardenAuthError(f"the enrollment secret file {str(secret_file)!r} is empty")
        return Secret(value)
    if secret_env:
        value = os.environ.get(secret_env, "").strip()
        if value:
            return Secret(value)
    raise WardenAuthError(
        f"no enrollment secret: set the environment variable {secret_env!r} or pass secret_file= "
        "(the secret is shown once by `warden agent create`)"
    )


@dataclass(frozen=True)
class Token:
    """A token issued for one scope. ``repr`` hides the value."""

    value: str = field(repr=False)
    expires_at: float
    issued_at: float
    scope: Scope

    @property
    def lifetime(self) -> float:
        """Seconds between issue and expiry, as seen by this process."""
        return max(self.expires_at - self.issued_at, 0.0)

    def refresh_at(self, fraction: float) -> float:
        """The time at which a token ``fraction`` through its lifetime should be replaced."""
        return self.issued_at + self.lifetime * fraction

    def expires_in(self, now: float | None = None) -> float:
        """Seconds left before the token expires."""
        return self.expires_at - (time.time() if now is None else now)


class TokenCache:
    """Exchanges the enrollment secret for tokens at ``POST {admin_url}/v1/token`` and keeps one
    token per scope, replacing it once ``refresh_fraction`` of its lifetime has passed.

    Thread-safe. The async path (:meth:`aget`) does not hold the lock while awaiting, so two
    coroutines may both fetch a fresh token for the same scope; the later one wins the cache.
    """

    def __init__(
        self,
        admin_url: str,
        agent: str,
        secret: Secret,
        *,
        ttl: str | None = None,
        refresh_fraction: float = 0.8,
        graph_version: str | None = None,
        max_entries: int = 256,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not 0.0 < refresh_fraction < 1.0:
            raise ValueError("refresh_fraction must be between 0 and 1")
        self._url = admin_url.rstrip("/") + "/v1/token"
        self._agent = agent
        self._secret = secret
        self._ttl = ttl
        #: The graph version digest tokens carry (``None``: no version); see
        #: :meth:`WardenClient.use_graph`.
        self.graph_version = graph_version
        self._fraction = refresh_fraction
        self._max = max_entries
        self._timeout = timeout
        self._clock = clock
        self._transport = transport
        self._async_transport = async_transport
        self._lock = threading.Lock()
        self._tokens: OrderedDict[tuple[str, str, str | None], Token] = OrderedDict()
        # Expiry of recently issued tokens, also after a refresh replaced them in _tokens:
        # pooled connections opened with an older token still need to know when it ends.
        self._expiry: OrderedDict[str, float] = OrderedDict()
        #: How many tokens were fetched from the gateway (for tests and metrics).
        self.fetches = 0

    def __repr__(self) -> str:
        return f"TokenCache(url={self._url!r}, agent={self._agent!r}, cached={len(self._tokens)})"

    def _body(self, scope: Scope) -> dict[str, str]:
        body = {"agent": self._agent, "secret": self._secret.reveal(), "node": scope.node, "run": scope.run}
        if scope.thread:
            body["thread"] = scope.thread
        if self._ttl:
            body["ttl"] = self._ttl
        if self.graph_version:
            body["graph_version"] = self.graph_version
        return body

    def _fresh(self, scope: Scope) -> Token | None:
        tok = self._tokens.get(scope.key())
        if tok is not None and self._clock() < tok.refresh_at(self._fraction):
            self._tokens.move_to_end(scope.key())
            return tok
        return None

    def _store(self, tok: Token) -> Token:
        self._tokens[tok.scope.key()] = tok
        self._tokens.move_to_end(tok.scope.key())
        while len(self._tokens) > self._max:
            self._tokens.popitem(last=False)
        self._expiry[tok.value] = tok.expires_at
        while len(self._expiry) > self._max * 4:
            self._expiry.popitem(last=False)
        self.fetches += 1
        return tok

    def _parse(self, scope: Scope, issued_at: float, response: httpx.Response) -> Token:
        if response.status_code == 401:
            raise WardenAuthError(
                f"Warden refused the enrollment secret of agent {self._agent!r} "
                "(unknown agent, wrong secret, or the agent or its owner is suspended)"
            )
        if response.status_code != 200:
            # The body is the gateway's error message; it never echoes the secret.
            raise WardenAuthError(f"token exchange failed: HTTP {response.status_code}: {response.text[:300]}")
        data = response.json()
        return Token(value=str(data["token"]), expires_at=float(data["expires_at"]), issued_at=issued_at, scope=scope)

    def get(self, scope: Scope) -> Token:
        """A valid token for ``scope``: the cached one, or a fresh one past the refresh point."""
        with self._lock:
            tok = self._fresh(scope)
            if tok is not None:
                return tok
            issued_at = self._clock()
            try:
                with httpx.Client(timeout=self._timeout, transport=self._transport) as http:
                    resp = http.post(self._url, json=self._body(scope))
            except httpx.HTTPError as exc:
                raise WardenAuthError(f"cannot reach the Warden admin API at {self._url}: {type(exc).__name__}") from None
            return self._store(self._parse(scope, issued_at, resp))

    async def aget(self, scope: Scope) -> Token:
        """Async :meth:`get`."""
        with self._lock:
            tok = self._fresh(scope)
        if tok is not None:
            return tok
        issued_at = self._clock()
        try:
            async with httpx.AsyncClient(timeout=self._timeout, transport=self._async_transport) as http:
                resp = await http.post(self._url, json=self._body(scope))
        except httpx.HTTPError as exc:
            raise WardenAuthError(f"cannot reach the Warden admin API at {self._url}: {type(exc).__name__}") from None
        tok = self._parse(scope, issued_at, resp)
        with self._lock:
            return self._store(tok)

    def expires_at(self, token_value: str) -> float | None:
        """When a token this cache handed out expires (``None`` if it is long forgotten)."""
        with self._lock:
            return self._expiry.get(token_value)

    def clear(self) -> None:
        """Forget every cached token."""
        with self._lock:
            self._tokens.clear()
            self._expiry.clear()
