"""The webhook receiver's process (`python -m tests.integration.delivery.webhook PORT SECRET LOG`).

It verifies each signature on its own, with the hmac module and the documented scheme, rather than
with the service's code: `t=<unix>,v1=<hex>` over `<t>.<body>`, at most five minutes old. It appends
every attempt to LOG (one JSON line, flushed before it answers), so what it saw outlives a kill and
a restart. `PUT /_control` sets how it answers: `fail_first` (the first N attempts, counted over the
log, get `status`, 503 by default; 410 makes a gone endpoint) and `hang` (requests wait, unanswered,
until it is cleared: an endpoint that times out). `GET /_control` says how many requests wait.

The standard library only: the tests start a receiver process many times, and importing the test
harness (httpx, kafka, pytest) cost each start about half a second of CPU on a loaded machine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOLERANCE_S = 300


def verify(secret: str, header: str, body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp, given = parts["t"], parts["v1"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given) and abs(time.time() - int(timestamp)) <= TOLERANCE_S


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def serve(port: int, secret: str, log_path: Path) -> None:
    control: dict[str, Any] = {"fail_first": 0, "status": 503}
    waiting = [0]  # requests held by `hang`
    answering = threading.Event()
    answering.set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # noqa: N802 (http.server's name)
            settings = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            control.update({k: v for k, v in settings.items() if k != "hang"})
            if "hang" in settings:
                (answering.clear if settings["hang"] else answering.set)()
            self._answer(204)

        def do_GET(self) -> None:  # noqa: N802
            shown = json.dumps({"waiting": waiting[0]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(shown)))
            self.end_headers()
            self.wfile.write(shown)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                waiting[0] += 1
            answering.wait()
            with lock:
                waiting[0] -= 1
            signed = verify(secret, self.headers["Segwarden-Signature"], body)
            with lock, log_path.open("a") as log:
                seen = len(read_log(log_path))
                status = control["status"] if seen < control["fail_first"] or not signed else 200
                entry = {"key": self.headers["Idempotency-Key"], "signed": signed, "status": status}
                log.write(json.dumps(entry | {"body": json.loads(body)}) + "\n")
            self._answer(status)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    threading.Thread(target=_exit_with_the_parent, daemon=True).start()
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def _exit_with_the_parent() -> None:
    """A receiver whose test died without killing it does not outlive the test run."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
