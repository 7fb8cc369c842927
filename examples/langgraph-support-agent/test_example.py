"""The support-desk example end to end: the real graph (langgraph from PyPI), the real gateway
(`$WARDEN_BIN`, default target/debug/warden), the real PostgreSQL (`test` on 127.0.0.1:5432)
and the stand-in model behind Warden's LLM gateway.

`run.py` is run once, as the README says, in a subprocess; the tests read its output and the
JSON summary it writes (the audit trail included)."""

from __future__ import annotations

import ast
import difflib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CARDS = ["4111 1111 1111 1111", "5555 5555 5555 4444", "4012 8888 8888 1881"]

def warden_bin() -> Path:
    p = Path(os.environ.get("WARDEN_BIN", "target/debug/warden"))
    return p if p.is_absolute() else REPO / p


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not warden_bin().exists():
        pytest.skip(f"warden binary not found at {warden_bin()}: run `cargo build -p warden` or set WARDEN_BIN")
    summary = tmp_path_factory.mktemp("support") / "summary.json"
    proc = subprocess.run(
        [sys.executable, str(HERE / "run.py"), "--summary", str(summary)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"run.py failed ({proc.returncode}):\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return {"stdout": proc.stdout, "stderr": proc.stderr, "summary": json.loads(summary.read_text()), "summary_text": summary.read_text()}


def events(result: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [e for e in result["summary"]["audit"] if all(e.get(k) == v for k, v in match.items())]


def test_unapproved_graph_version_gets_nothing_then_approved_works(run: dict[str, Any]) -> None:
    s = run["summary"]
    assert s["unapproved"]["status"] == "pending"
    assert "pending review" in s["unapproved"]["denied"] and s["digest"] in s["unapproved"]["denied"], s["unapproved"]
    assert not s["unapproved"]["rows"]
    # The first node's model call is already refused: the LLM gateway checks graph versions too.
    denied = events(run, kind="llm_call", decision="deny", run="ticket-1")
    assert denied and denied[0]["node"] == "agent" and "graph-version" in denied[0]["policy_ids"], denied
    assert not events(run, kind="statement", run="ticket-1"), "no statement ran on the unapproved version"
    assert events(run, kind="graph_approved", approver="ann@example.com")
    # After approval the same ticket reads (see the masked read below).
    assert s["lookup"]["rows"] and not s["lookup"]["denied"]


def test_masked_read_and_no_full_card_number_anywhere(run: dict[str, Any]) -> None:
    rows = run["summary"]["lookup"]["rows"]
    assert len(rows) == 1 and rows[0][:2] == [1, "Ada Lovelace"]
    assert rows[0][3].endswith("1111") and rows[0][3] != CARDS[0] and "*" in rows[0][3], rows
    read = [e for e in events(run, kind="statement", decision="allow", node="lookup_customer") if "card_number" in (e.get("statement") or "")]
    assert read and read[0]["masked"].get("column_rule") == 1, read
    everything = run["stdout"] + run["stderr"] + run["summary_text"]
    for card in CARDS:
        for form in (card, card.replace(" ", "")):
            assert form not in everything, f"full card number {form} in the output"


def test_refund_interrupts_is_approved_by_cli_and_runs_once(run: dict[str, Any]) -> None:
    r = run["summary"]["refund"]
    intr = r["interrupt"]
    assert intr["kind"] == "warden_approval" and re.fullmatch(r"apr_[0-9a-f]+", intr["approval_id"]), intr
    assert intr["statement"].startswith("INSERT INTO support_refunds")
    assert r["refunds_while_pending"] == 0
    assert r["refunds_after_resume"] == 1, "the INSERT ran exactly once"
    assert r["result"] == "refunded 2500 cents to customer 2" and not r["interrupted_again"]
    aid = intr["approval_id"]
    assert [e["kind"] for e in run["summary"]["audit"] if e.get("approval_id") == aid and e["kind"].startswith("approval_")] == [
        "approval_requested",
        "approval_approved",
        "approval_executed",
    ]
    assert events(run, kind="approval_approved", approval_id=aid)[0]["approver"] == "ann@example.com"
    assert f"warden approvals approve {aid} --as ann@example.com" in run["stdout"]


def test_prompt_injected_delete_is_denied_and_audited(run: dict[str, Any]) -> None:
    inj = run["summary"]["injection"]
    assert inj["sql"] == "DELETE FROM support_customers"
    assert 'node "lookup_customer"' in inj["denied"] and "denied" in inj["denied"], inj
    assert inj["customers_after"] == 3
    deny = [e for e in events(run, kind="statement", decision="deny", run="ticket-3")]
    assert len(deny) == 1 and deny[0]["node"] == "lookup_customer" and deny[0]["actions"] == ["delete"], deny
    assert deny[0]["statement"] == "DELETE FROM support_customers"


def test_model_calls_go_through_the_llm_gateway(run: dict[str, Any]) -> None:
    s = run["summary"]
    calls = events(run, kind="llm_call", decision="allow", node="agent")
    # Four tickets; the first ran on the unapproved version and its model call never left.
    assert len(calls) == s["model_requests"] == 3, calls
    assert all(c["model"] == "support-stand-in" and c["prompt_tokens"] == 40 for c in calls)
    # The provider never sees the agent's Warden token (the stand-in has no key configured).
    assert s["model_saw_authorization"] is False


def test_audit_chain_verifies(run: dict[str, Any]) -> None:
    assert run["summary"]["audit_verify_rc"] == 0
    assert "audit trail" in run["stdout"] and "cleaned up" in run["stdout"]


def test_tables_are_dropped(run: dict[str, Any]) -> None:
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(os.environ.get("WARDEN_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")) as db:
        left = db.execute("SELECT count(*) FROM pg_tables WHERE tablename IN ('support_customers', 'support_refunds')").fetchone()
    assert left == (0,)


def code_lines(path: Path) -> list[str]:
    """Code lines: without the module docstring, blank lines and comments."""
    src = path.read_text()
    tree = ast.parse(src)
    first = tree.body[0]
    start = (first.end_lineno or 0) if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) else 0
    out = []
    for line in src.splitlines()[start:]:
        line = re.sub(r"\s+#.*$", "", line).rstrip()
        if line.strip() and not line.strip().startswith("#"):
            out.append(line)
    return out


def adoption_diff() -> int:
    """Lines changed from before_warden.py to support_agent.py: per differing block, the
    larger of the lines removed and the lines added."""
    a, b = code_lines(HERE / "before_warden.py"), code_lines(HERE / "support_agent.py")
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in ops if op != "equal")


def test_adoption_is_at_most_ten_lines() -> None:
    changed = adoption_diff()
    assert 0 < changed <= 10, changed
    # Every line added or edited for Warden is marked, and the README states the count.
    marked = [line for line in (HERE / "support_agent.py").read_text().splitlines() if re.search(r"\S\s+# \[warden\]", line)]
    assert len(marked) <= changed
    assert f"**{changed} lines changed**" in (HERE / "README.md").read_text()
