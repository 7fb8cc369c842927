"""Node-scoped PostgreSQL connections through Warden."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, TypeAlias

import httpx
import psycopg
import psycopg.sql
from psycopg.rows import Row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from .errors import WardenError, translate
from .scope import Scope, current_scope
from .tokens import Secret, Token, TokenCache, load_secret

__all__ = ["WardenClient", "WardenCursor", "WardenAsyncCursor"]

Config: TypeAlias = "Mapping[str, Any] | None"

#: Pooled connections whose token expires sooner than this are discarded on checkout
#: (the gateway ends a session when its token expires).
MIN_SESSION_SECONDS = 30.0


def _statement_text(query: Any, context: Any) -> str | None:
    try:
        if isinstance(query, str):
            return query
        if isinstance(query, bytes):
            return query.decode("utf-8", "replace")
        if isinstance(query, psycopg.sql.Composable):
            return query.as_string(context)
    except Exception:  # pragma: no cover - best effort, only for the error message
        return None
    return None


class WardenCursor(psycopg.Cursor[Row]):
    """A psycopg cursor that raises :class:`~warden_langgraph.WardenDenied` /
    :class:`~warden_langgraph.WardenApprovalPending` for Warden's answers."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> WardenCursor[Row]:
        try:
            super().execute(query, params, **kwargs)
        except psycopg.Error as exc:
            new = translate(exc, _statement_text(query, self))
            if new is exc:
                raise
            raise new from exc
        return self

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        try:
            super().executemany(query, params_seq, **kwargs)
        except psycopg.Error as exc:
            new = translate(exc, _statement_text(query, self))
            if new is exc:
                raise
            raise new from exc


class WardenAsyncCursor(psycopg.AsyncCursor[Row]):
    """Async :class:`WardenCursor`."""

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> WardenAsyncCursor[Row]:
        try:
            await super().execute(query, params, **kwargs)
        except psycopg.Error as exc:
            new = translate(exc, _statement_text(query, self))
            if new is exc:
                raise
            raise new from exc
        return self

    async def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        try:
            await super().executemany(query, params_seq, **kwargs)
        except psycopg.Error as exc:
            new = translate(exc, _statement_text(query, self))
            if new is exc:
                raise
            raise new from exc


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")


def _seconds(ttl: str | None) -> float | None:
    if not ttl:
        return None
    m = _DURATION.match(ttl)
    if not m:
        return None
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]


class WardenClient:
    """An agent's way into Warden from a LangGraph graph.

    Example (inside a node)::

        warden = WardenClient.from_env()          # WARDEN_ADMIN_URL, WARDEN_AGENT, ...

        def reader(state, config):
            with warden.connect(config) as conn:  # node, run, thread come from config
                rows = conn.execute("SELECT id, name FROM customers").fetchall()

    The enrollment secret comes from the environment variable ``secret_env`` (default
    ``WARDEN_AGENT_SECRET``) or from ``secret_file``. ``secret=`` exists for tests only: a
    secret written in code ends up in version control.

    Each connection's password is a short-lived token pinned to the connection's scope
    (node, run, thread). Tokens are cached per scope and replaced once ``refresh_fraction`` of
    their lifetime has passed; every new physical connection, pooled or not, asks the cache,
    so it always presents a valid token. The gateway ends a session when its token expires:
    open connections per node call (or use :meth:`pool`), not for the life of the process.
    """

    def __init__(
        self,
        admin_url: str = "http://127.0.0.1:8181",
        agent: str | None = None,
        *,
        secret: str | None = None,
        secret_env: str | None = "WARDEN_AGENT_SECRET",
        secret_file: str | os.PathLike[str] | None = None,
        pg_host: str = "127.0.0.1",
        pg_port: int = 6543,
        target: str = "test",
        token_ttl: str | None = None,
        refresh_fraction: float = 0.8,
        max_pools: int = 32,
        http_url: str = "http://127.0.0.1:8282",
        graph_version: str | None = None,
        http_transport: httpx.BaseTransport | None = None,
        async_http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not agent:
            raise ValueError("agent is required (the name given to `warden agent create`)")
        self.admin_url = admin_url
        self.agent = agent
        self.pg_host = pg_host
        self.pg_port = int(pg_port)
        self.target = target
        self.token_ttl = token_ttl
        self.http_url = http_url.rstrip("/")
        self._http_transport = http_transport
        self._secret: Secret = load_secret(secret, secret_env, secret_file)
        self.tokens = TokenCache(
            admin_url,
            agent,
            self._secret,
            ttl=token_ttl,
            refresh_fraction=refresh_fraction,
            graph_version=graph_version,
            transport=http_transport,
            async_transport=async_http_transport,
        )
        self._max_pools = max_pools
        self._pools: OrderedDict[tuple[str, str, str | None], ConnectionPool[Any]] = OrderedDict()
        self._apools: OrderedDict[tuple[str, str, str | None], AsyncConnectionPool[Any]] = OrderedDict()
        self._pools_lock = threading.Lock()

    @classmethod
    def from_env(cls, **overrides: Any) -> WardenClient:
        """Build a client from ``WARDEN_ADMIN_URL``, ``WARDEN_AGENT``, ``WARDEN_PG_HOST``,
        ``WARDEN_PG_PORT``, ``WARDEN_TARGET``, ``WARDEN_TOKEN_TTL``, ``WARDEN_HTTP_URL`` (the
        HTTP/LLM gateway), ``WARDEN_GRAPH_VERSION`` and the secret from
        ``WARDEN_AGENT_SECRET`` or the file named by ``WARDEN_AGENT_SECRET_FILE``."""
        env = os.environ
        kw: dict[str, Any] = {
            "admin_url": env.get("WARDEN_ADMIN_URL", "http://127.0.0.1:8181"),
            "agent": env.get("WARDEN_AGENT"),
            "pg_host": env.get("WARDEN_PG_HOST", "127.0.0.1"),
            "pg_port": int(env.get("WARDEN_PG_PORT", "6543")),
            "target": env.get("WARDEN_TARGET", "test"),
            "token_ttl": env.get("WARDEN_TOKEN_TTL") or None,
            "http_url": env.get("WARDEN_HTTP_URL", "http://127.0.0.1:8282"),
            "graph_version": env.get("WARDEN_GRAPH_VERSION") or None,
        }
        if env.get("WARDEN_AGENT_SECRET_FILE"):
            kw["secret_file"] = env["WARDEN_AGENT_SECRET_FILE"]
        kw.update(overrides)
        return cls(**kw)

    def __repr__(self) -> str:
        return (
            f"WardenClient(admin_url={self.admin_url!r}, agent={self.agent!r}, "
            f"pg={self.pg_host}:{self.pg_port}, target={self.target!r}, secret=***)"
        )

    # -- scope and tokens ------------------------------------------------------------------

    def scope(self, config: Config = None, *, node: str | None = None, run: str | None = None, thread: str | None = None) -> Scope:
        """The current node/run/thread (see :func:`~warden_langgraph.current_scope`)."""
        return current_scope(config, node=node, run=run, thread=thread)

    def token(self, config: Config = None, **scope: Any) -> Token:
        """A valid token for the current scope (cached; refreshed before expiry)."""
        return self.tokens.get(self.scope(config, **scope))

    def _connect_kwargs(self, scope: Scope, token: Token) -> dict[str, Any]:
        return {
            "host": self.pg_host,
            "port": self.pg_port,
            "dbname": self.target,
            "user": self.agent,
            "password": token.value,
            "options": scope.pg_options(),
        }

    def connect_kwargs(self, config: Config = None, **scope: Any) -> dict[str, Any]:
        """The ``psycopg.connect`` keyword arguments for the current scope, including a fresh
        token as ``password`` (for code that builds its own connections)."""
        s = self.scope(config, **scope)
        return self._connect_kwargs(s, self.tokens.get(s))

    # -- HTTP and LLM gateway -------------------------------------------------------------

    def http_headers(self, config: Config = None, **scope: Any) -> dict[str, str]:
        """Headers for a request through Warden's HTTP/LLM gateway from the current node:
        ``Authorization: Bearer <token pinned to the node>`` and ``x-warden-node``/``-run``/
        ``-thread``. The gateway strips them and injects the target's own credential."""
        s = self.scope(config, **scope)
        headers = {"authorization": f"Bearer {self.tokens.get(s).value}", "x-warden-node": s.node, "x-warden-run": s.run}
        if s.thread:
            headers["x-warden-thread"] = s.thread
        return headers

    def openai_base_url(self, target: str = "llm", prefix: str = "v1") -> str:
        """The OpenAI-compatible base URL of an ``llm`` target: ``{http_url}/{target}/{prefix}``
        (pass it with :meth:`http_headers` to an OpenAI-compatible client)."""
        return "/".join(p.strip("/") for p in (self.http_url, target, prefix) if p)

    def httpx_client(
        self,
        config: Config = None,
        *,
        target: str | None = None,
        prefix: str = "",
        node: str | None = None,
        run: str | None = None,
        thread: str | None = None,
        **kwargs: Any,
    ) -> httpx.Client:
        """An ``httpx.Client`` whose base URL is ``{http_url}/{target}/{prefix}`` and whose
        headers carry the current node's token. Open one per node call (the token is fixed
        when the client is made)."""
        base = "/".join(p.strip("/") for p in (self.http_url, target or "", prefix) if p)
        headers = {**self.http_headers(config, node=node, run=run, thread=thread), **dict(kwargs.pop("headers", None) or {})}
        kwargs.setdefault("timeout", 60.0)
        return httpx.Client(base_url=base, headers=headers, **kwargs)

    # -- graph versions ---------------------------------------------------------------------

    @property
    def graph_version(self) -> str | None:
        """The graph version digest this client's tokens carry."""
        return self.tokens.graph_version

    def use_graph(self, compiled_graph: Any, privileges: Mapping[str, Any], *, name: str) -> dict[str, Any]:
        """Compute the compiled graph's manifest (see :func:`~warden_langgraph.manifest`), make
        every token from now on carry its digest as the graph version, and return the manifest
        (to submit with :meth:`submit_manifest` or ``warden graph submit``). A gateway with
        ``[graphs] require_approved_version`` gives a version nothing until a human approves
        it, and then only what both policy and the manifest allow."""
        from .digest import manifest

        m = manifest(compiled_graph, privileges, agent=self.agent, name=name)
        if m["digest"] != self.tokens.graph_version:
            self.tokens.clear()
            self.tokens.graph_version = m["digest"]
        return m

    def submit_manifest(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a graph version's manifest for review (``POST /v1/graphs`` as the agent).
        Returns the pending graph version (``id``, ``digest``, ``status``, ``next``)."""
        url = self.admin_url.rstrip("/") + "/v1/graphs"
        body = {"agent": self.agent, "secret": self._secret.reveal(), "manifest": dict(manifest)}
        try:
            with httpx.Client(timeout=10.0, transport=self._http_transport) as http:
                resp = http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise WardenError(f"cannot reach the Warden admin API at {url}: {type(exc).__name__}") from None
        if resp.status_code not in (200, 201):
            raise WardenError(f"graph submission failed: HTTP {resp.status_code}: {resp.text[:300]}")
        result: dict[str, Any] = resp.json()
        return result

    # -- single connections ----------------------------------------------------------------

    def connect(
        self,
        config: Config = None,
        *,
        node: str | None = None,
        run: str | None = None,
        thread: str | None = None,
        **kwargs: Any,
    ) -> psycopg.Connection[Any]:
        """Open a psycopg connection scoped to the current node (sync).

        ``config`` is the node's ``RunnableConfig`` (or ``None`` to find it with
        ``langgraph.config.get_config()``). Other keyword arguments go to
        ``psycopg.Connection.connect`` (e.g. ``row_factory``, ``autocommit``). Statements Warden
        denies raise :class:`~warden_langgraph.WardenDenied`.
        """
        s = self.scope(config, node=node, run=run, thread=thread)
        kw = self._connect_kwargs(s, self.tokens.get(s))
        kw.setdefault("cursor_factory", WardenCursor)
        kw.update(kwargs)
        return psycopg.Connection.connect(**kw)

    async def aconnect(
        self,
        config: Config = None,
        *,
        node: str | None = None,
        run: str | None = None,
        thread: str | None = None,
        **kwargs: Any,
    ) -> psycopg.AsyncConnection[Any]:
        """Async :meth:`connect`: returns a ``psycopg.AsyncConnection``."""
        s = self.scope(config, node=node, run=run, thread=thread)
        kw = self._connect_kwargs(s, await self.tokens.aget(s))
        kw.setdefault("cursor_factory", WardenAsyncCursor)
        kw.update(kwargs)
        return await psycopg.AsyncConnection.connect(**kw)

    # -- pools ----------------------------------------------------------------------------

    def _pool_defaults(self) -> dict[str, Any]:
        ttl = _seconds(self.token_ttl) or 15 * 60.0
        # Recycle connections well before their token expires; checkout also discards a
        # connection whose token is about to expire (see _token_still_valid).
        return {"min_size": 0, "max_size": 4, "max_idle": 60.0, "max_lifetime": max(ttl * 0.5, MIN_SESSION_SECONDS * 2)}

    def _token_still_valid(self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        expires = self.tokens.expires_at(conn.info.password)
        if expires is not None and expires - time.time() < MIN_SESSION_SECONDS:
            raise WardenError("the connection's token is about to expire")

    def pool(
        self,
        config: Config = None,
        *,
        node: str | None = None,
        run: str | None = None,
        thread: str | None = None,
        connect_kwargs: Mapping[str, Any] | None = None,
        **pool_kwargs: Any,
    ) -> ConnectionPool[Any]:
        """A ``psycopg_pool.ConnectionPool`` for the current scope, created on first use and
        reused for the same (node, run, thread).

        Each new physical connection gets a token from the cache (fresh or refreshed), so
        pooled connections never present an expired one. Use it as
        ``with client.pool(config).connection() as conn: ...``. Pools of old scopes are closed
        once more than ``max_pools`` exist. ``pool_kwargs`` go to ``ConnectionPool`` (defaults:
        ``min_size=0, max_size=4, max_idle=60``).
        """
        s = self.scope(config, node=node, run=run, thread=thread)
        evicted: list[ConnectionPool[Any]] = []
        with self._pools_lock:
            p = self._pools.get(s.key())
            if p is not None and not p.closed:
                self._pools.move_to_end(s.key())
                return p
            extra = dict(connect_kwargs or {})

            def kwargs() -> dict[str, Any]:
                kw = self._connect_kwargs(s, self.tokens.get(s))
                kw.setdefault("cursor_factory", WardenCursor)
                kw.update(extra)
                return kw

            def check(conn: psycopg.Connection[Any]) -> None:
                self._token_still_valid(conn)
                ConnectionPool.check_connection(conn)

            opts = self._pool_defaults()
            opts.update(pool_kwargs)
            p = ConnectionPool(kwargs=kwargs, check=check, open=True, name=f"warden:{s.node}:{s.run}", **opts)
            self._pools[s.key()] = p
            while len(self._pools) > self._max_pools:
                evicted.append(self._pools.popitem(last=False)[1])
        for old in evicted:
            old.close(timeout=5.0)
        return p

    async def apool(
        self,
        config: Config = None,
        *,
        node: str | None = None,
        run: str | None = None,
        thread: str | None = None,
        connect_kwargs: Mapping[str, Any] | None = None,
        **pool_kwargs: Any,
    ) -> AsyncConnectionPool[Any]:
        """Async :meth:`pool`: an opened ``psycopg_pool.AsyncConnectionPool`` for the scope."""
        s = self.scope(config, node=node, run=run, thread=thread)
        p = self._apools.get(s.key())
        if p is not None and not p.closed:
            self._apools.move_to_end(s.key())
            return p
        extra = dict(connect_kwargs or {})

        async def kwargs() -> dict[str, Any]:
            kw = self._connect_kwargs(s, await self.tokens.aget(s))
            kw.setdefault("cursor_factory", WardenAsyncCursor)
            kw.update(extra)
            return kw

        async def check(conn: psycopg.AsyncConnection[Any]) -> None:
            self._token_still_valid(conn)
            await AsyncConnectionPool.check_connection(conn)

        opts = self._pool_defaults()
        opts.update(pool_kwargs)
        p = AsyncConnectionPool(kwargs=kwargs, check=check, open=False, name=f"warden:{s.node}:{s.run}", **opts)
        await p.open()
        self._apools[s.key()] = p
        while len(self._apools) > self._max_pools:
            await self._apools.popitem(last=False)[1].close(timeout=5.0)
        return p

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close every sync pool and forget cached tokens (async pools: :meth:`aclose`)."""
        with self._pools_lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for p in pools:
            p.close(timeout=5.0)
        self.tokens.clear()

    async def aclose(self) -> None:
        """Close every pool, sync and async, and forget cached tokens."""
        apools = list(self._apools.values())
        self._apools.clear()
        await asyncio.gather(*(p.close(timeout=5.0) for p in apools))
        await asyncio.to_thread(self.close)

    def __enter__(self) -> WardenClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> WardenClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
