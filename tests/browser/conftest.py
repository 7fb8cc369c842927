"""A real `warden serve` for the console tests: own temp dir and ports, the `test` database
on 127.0.0.1:5432, full recording with card numbers masked, and a policy that holds the
`held` node's reads for human approval."""

import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WARDEN = os.environ.get("WARDEN_BIN", str(ROOT / "target" / "debug" / "warden"))
SCREENSHOTS = ROOT / "target" / "screenshots"
ADMIN_TOKEN = "console-admin-token-" + uuid.uuid4().hex
AUDITOR_TOKEN = "console-auditor-token-" + uuid.uuid4().hex
OWNER = "alice@example.com"
APPROVER = "bob@example.com"
CARD = "4111111111111111"

POLICY = """
@id("held-reads")
@approval("required")
permit(principal, action == Warden::Action::"select", resource in Warden::Target::"test")
when { context.node == "held" };
"""

CONFIG = """
data_dir = "data"
[listen]
postgres = "127.0.0.1:0"
admin = "{admin}"
[policy]
files = ["policy.cedar"]
[approvals]
approvers = ["{approver}"]
timeout = "2m"
[recording]
default = "full"
[console]
admin_token_env = "WARDEN_TEST_CONSOLE_ADMIN"
auditor_token_env = "WARDEN_TEST_CONSOLE_AUDITOR"
[masking]
columns = [{{ pattern = "*.card_number", method = "keep_last4" }}]
[[targets]]
name = "test"
host = "127.0.0.1"
port = 5432
database = "test"
user = "postgres"
tls = "disable"
{extra}
"""


def psql_direct(sql):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", sql], check=True, capture_output=True)


class Gateway:
    def __init__(self, extra="", admin="127.0.0.1:0"):
        self.dir = tempfile.TemporaryDirectory()
        d = Path(self.dir.name)
        (d / "policy.cedar").write_text(POLICY)
        self.config = d / "warden.toml"
        self.config.write_text(CONFIG.format(approver=APPROVER, admin=admin, extra=extra))
        self.env = dict(os.environ, WARDEN_TEST_CONSOLE_ADMIN=ADMIN_TOKEN, WARDEN_TEST_CONSOLE_AUDITOR=AUDITOR_TOKEN)
        self.env.pop("WARDEN_DATA_DIR", None)
        self.env.pop("WARDEN_LOG", None)
        self.proc = subprocess.Popen([WARDEN, "--config", str(self.config), "serve"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"postgres=\S*:(\d+).*admin=\S*:(\d+)", line)
                if "warden listening" in line and m:
                    self.pg_port, self.admin_port = int(m.group(1)), int(m.group(2))
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60):
            raise RuntimeError("gateway did not start:\n" + "".join(self.log))
        self.url = f"http://127.0.0.1:{self.admin_port}"

    def cli(self, *args):
        out = subprocess.run([WARDEN, "--config", str(self.config), *args], env=self.env, capture_output=True, text=True)
        assert out.returncode == 0, f"warden {args}: {out.stderr}"
        return out.stdout

    def agent_psql(self, agent, token, node, sql):
        """Runs psql as the agent through the gateway (blocks while the statement is held)."""
        conninfo = f"host=127.0.0.1 port={self.pg_port} user={agent} dbname=test options='-c warden.node={node}'"
        return subprocess.run(["psql", "-X", "-A", "-t", conninfo, "-c", sql], env=dict(os.environ, PGPASSWORD=token, PGCONNECT_TIMEOUT="10"), capture_output=True, text=True, timeout=120)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()


@pytest.fixture(scope="session")
def gateway():
    g = Gateway()
    yield g
    g.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


@pytest.fixture()
def cards_table():
    name = "console_cards_" + uuid.uuid4().hex[:8]
    psql_direct(f"CREATE TABLE public.{name} (id int primary key, holder text, card_number text); INSERT INTO public.{name} VALUES (1, 'ann', '{CARD}')")
    yield name
    psql_direct(f"DROP TABLE IF EXISTS public.{name}")
