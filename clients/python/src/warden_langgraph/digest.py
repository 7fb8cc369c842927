"""The graph version digest and manifest.

A graph version is identified by a SHA-256 over its structure (sorted node names and edges
from ``compiled.get_graph()``) and the privileges each node declares. Warden will approve
graph versions by this digest (issue 11); until then the digest and manifest are computed
here, and submitting the manifest is left to that issue.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MANIFEST_FORMAT", "graph_digest", "manifest"]

#: Version of the manifest layout; part of the digest, so a layout change changes digests.
MANIFEST_FORMAT = "warden-graph-manifest/v1"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _structure(compiled_graph: Any) -> tuple[list[str], list[dict[str, Any]]]:
    graph = compiled_graph.get_graph()
    nodes = sorted(str(n) for n in graph.nodes)
    edges = sorted(
        (
            {
                "source": str(e.source),
                "target": str(e.target),
                "conditional": bool(e.conditional),
                "label": None if e.data is None else str(e.data),
            }
            for e in graph.edges
        ),
        key=_canonical,
    )
    return nodes, edges


def _privileges(nodes: Sequence[str], privileges: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    unknown = sorted(set(privileges) - set(nodes))
    if unknown:
        raise ValueError(f"privileges name nodes the graph does not have: {unknown} (nodes: {list(nodes)})")
    out: dict[str, list[Any]] = {}
    for node in sorted(privileges):
        items = privileges[node]
        if isinstance(items, (str, bytes)):
            raise TypeError(f"privileges[{node!r}] must be a list, not a string")
        # Each entry is a string ("select:public.customers") or a JSON-like dict; order and
        # duplicates do not matter.
        out[node] = sorted({_canonical(i): i for i in items}.values(), key=_canonical)
    return out


def _body(compiled_graph: Any, privileges: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    nodes, edges = _structure(compiled_graph)
    return {
        "format": MANIFEST_FORMAT,
        "nodes": nodes,
        "edges": edges,
        "privileges": _privileges(nodes, privileges),
    }


def graph_digest(compiled_graph: Any, privileges: Mapping[str, Sequence[Any]]) -> str:
    """SHA-256 (hex) of the graph version: sorted nodes, sorted edges and each node's declared
    privileges, in canonical JSON. Independent of dict order, process and ``PYTHONHASHSEED``;
    changes when a node, an edge or a privilege changes.

    ``privileges`` maps node names to lists of privileges (strings or JSON-like dicts);
    naming a node the graph does not have raises ``ValueError``.
    """
    return hashlib.sha256(_canonical(_body(compiled_graph, privileges)).encode("utf-8")).hexdigest()


def manifest(
    compiled_graph: Any,
    privileges: Mapping[str, Sequence[Any]],
    *,
    agent: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The graph's manifest: what :func:`graph_digest` covers, plus the digest and (outside
    the digest) the agent and a display name. Submitting it to Warden comes with issue 11."""
    body = _body(compiled_graph, privileges)
    body["digest"] = hashlib.sha256(_canonical({k: body[k] for k in ("format", "nodes", "edges", "privileges")}).encode()).hexdigest()
    if agent is not None:
        body["agent"] = agent
    if name is not None:
        body["name"] = name
    return body
