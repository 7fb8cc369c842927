"""Fixtures: a real Warden gateway (started from the built binary on free ports) and a table in
the real local PostgreSQL `test` database."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "examples" / "quickstart"
PG_DIRECT = os.environ.get("WARDEN_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
LISTENING = re.compile(r"warden listening postgres=(\S+):(\d+) admin=(\S+):(\d+)")


def warden_bin() -> Path:
    p = Path(os.environ.get("WARDEN_BIN", "target/debug/warden"))
    return p if p.is_absolute() else REPO / p


@dataclass
class Gateway:
    bin: Path
    config: Path
    pg_host: str
    pg_port: int
    admin_url: str
    log: Path

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [str(self.bin), "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise AssertionError(f"warden {' '.join(args)} failed ({out.returncode}): {out.stderr}")
        return out.stdout

    def create_agent(self, name: str, owner: str = "x@example.com") -> dict[str, str]:
        return json.loads(self.cli("agent", "create", name, "--owner", owner, "--json"))

    def audit(self, agent: str) -> list[dict[str, Any]]:
        out = self.cli("audit", "search", "--agent", agent, "--json", "--limit", "1000")
        return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Start `warden serve` on a copy of the quickstart config with ports 0 and a temp data dir."""
    binary = warden_bin()
    if not binary.exists():
        pytest.skip(f"warden binary not found at {binary}: run `cargo build -p warden` or set WARDEN_BIN")
    d = tmp_path_factory.mktemp("warden")
    for f in QUICKSTART.iterdir():
        if f.is_file():
            shutil.copy(f, d / f.name)
    cfg = d / "warden.toml"
    text = cfg.read_text()
    text = re.sub(r'(?m)^data_dir\s*=.*$', f'data_dir = "{d / "data"}"', text)
    text = re.sub(r'(?m)^(postgres|admin)\s*=\s*"127\.0\.0\.1:\d+"', r'\1 = "127.0.0.1:0"', text)
    cfg.write_text(text)
    log = d / "serve.log"
    env = {k: v for k, v in os.environ.items() if k not in ("WARDEN_DATA_DIR", "WARDEN_CONFIG")}
    with open(log, "wb") as logf:
        proc = subprocess.Popen([str(binary), "serve", "--config", str(cfg)], stdout=logf, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        m = None
        while m is None:
            if proc.poll() is not None:
                raise AssertionError(f"warden serve exited with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"warden serve did not report its ports:\n{log.read_text()}")
            m = LISTENING.search(log.read_text(errors="replace"))
            if m is None:
                time.sleep(0.05)
        yield Gateway(binary, cfg, m.group(1), int(m.group(2)), f"http://{m.group(3)}:{m.group(4)}", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def customers_table() -> Iterator[str]:
    """A table in the real `test` database with three rows; dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"wl_customers_{uuid.uuid4().hex[:8]}"
    try:
        conn = psycopg.connect(PG_DIRECT, autocommit=True)
    except psycopg.OperationalError as exc:
        # Only a missing binary skips: the CI starts PostgreSQL, so its absence is a failure.
        pytest.fail(f"local PostgreSQL not reachable ({PG_DIRECT}; set WARDEN_TEST_PG): {exc}")
    with conn:
        conn.execute(f"CREATE TABLE public.{name} (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute(f"INSERT INTO public.{name} VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Linus')")
        try:
            yield name
        finally:
            conn.execute(f"DROP TABLE IF EXISTS public.{name}")


@pytest.fixture
def agent(gateway: Gateway) -> tuple[str, str]:
    """A fresh agent: (name, enrollment secret)."""
    name = f"py-{uuid.uuid4().hex[:8]}"
    created = gateway.create_agent(name)
    return created["agent"], created["enrollment_secret"]
