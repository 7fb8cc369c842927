"""A deterministic stand-in for an OpenAI-compatible model: ``POST /v1/chat/completions``
answers with one canned tool call chosen from the last user message.

- "refund customer N $A ..."            -> issue_refund(customer_id=N, amount_cents=A*100, reason=...)
- a message carrying an injected order  -> lookup_customer(sql="DELETE FROM support_customers")
  (the model obeys the injection, as real models sometimes do)
- anything else about customer N        -> lookup_customer(sql="SELECT ... WHERE id = N")

It sits behind Warden's LLM gateway; it records the requests it saw (headers included) so the
example can show that the agent's Warden token never reaches the model provider.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INJECTION = re.compile(r"ignore (all|previous|prior) instructions", re.I)


def decide(text: str) -> tuple[str, dict[str, Any]]:
    """The tool call for a user message."""
    m = re.search(r"customer\s+#?(\d+)", text, re.I)
    customer = int(m.group(1)) if m else 1
    if INJECTION.search(text):
        return "lookup_customer", {"sql": "DELETE FROM support_customers"}
    if re.search(r"\brefund\b", text, re.I):
        amount = re.search(r"\$(\d+)", text)
        cents = int(amount.group(1)) * 100 if amount else 1000
        return "issue_refund", {"customer_id": customer, "amount_cents": cents, "reason": "support request"}
    return "lookup_customer", {"sql": f"SELECT id, name, email, card_number FROM support_customers WHERE id = {customer}"}


class StandInModel:
    """``with StandInModel() as m: m.url`` serves on an ephemeral port of 127.0.0.1."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        model = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                req = json.loads(self.rfile.read(length) or b"{}")
                model.seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": req})
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                user = [m["content"] for m in req.get("messages", []) if m.get("role") == "user"]
                name, args = decide(user[-1] if user else "")
                n = len(model.seen)
                self._send(200, {
                    "id": f"chatcmpl-standin-{n}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": req.get("model", "support-stand-in"),
                    "choices": [{
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {"role": "assistant", "content": None, "tool_calls": [
                            {"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}},
                        ]},
                    }],
                    "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52},
                })

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StandInModel:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
