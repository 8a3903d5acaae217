"""A webhook receiver on a free port (a real HTTP server in a thread) that records what it gets.

It verifies each signature on its own, with the hmac module and the documented scheme, rather
than with the service's code: `t=<unix>,v1=<hex>` over `<t>.<body>`, at most five minutes old.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_S = 300


def verify(secret: str, header: str, body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp, given = parts["t"], parts["v1"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given) and abs(time.time() - int(timestamp)) <= TOLERANCE_S


@dataclass
class Receiver:
    secret: str
    fail_first: int = 0  # answer 503 to this many requests before accepting
    # While cleared, every request waits (an endpoint that hangs); set it to let them answer.
    answering: threading.Event = field(default_factory=threading.Event)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # by Idempotency-Key
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.answering.set()

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.record(self, body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def record(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        self.answering.wait()
        key = request.headers["Idempotency-Key"]
        signed = verify(self.secret, request.headers["Segwarden-Signature"], body)
        with self.lock:
            self.attempts.append({"key": key, "signed": signed, "body": json.loads(body)})
            failing = len(self.attempts) <= self.fail_first or not signed
            if not failing:
                self.accepted.setdefault(key, json.loads(body))
        request.send_response(503 if failing else 200)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def bodies(self) -> list[dict[str, Any]]:
        """What was accepted, once per idempotency key, in arrival order."""
        with self.lock:
            return list(self.accepted.values())

    def stop(self) -> None:
        self.answering.set()
        self.server.shutdown()
        self.server.server_close()
