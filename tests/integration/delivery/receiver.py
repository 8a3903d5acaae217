"""A webhook receiver as a process of its own on a free port, and the test's handle on it.

The process (`python -m tests.integration.delivery.receiver PORT SECRET LOG`) verifies each
signature on its own, with the hmac module and the documented scheme, rather than with the
service's code: `t=<unix>,v1=<hex>` over `<t>.<body>`, at most five minutes old. It appends every
attempt to LOG (one JSON line, flushed before it answers), so what it saw outlives a kill and a
restart. `PUT /_control` sets how it answers: `fail_first` (the first N attempts, counted over
the log, get `status`, 503 by default; 410 makes a gone endpoint) and `hang` (requests wait,
unanswered, until it is cleared: an endpoint that times out).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from shared.embedded import free_port
from tests.support import wait_for

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

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answering.wait()
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


class Receiver:
    """The test's handle: start, control, kill (down: connections refused) and read what came."""

    def __init__(self, secret: str, log_path: Path, fail_first: int = 0, status: int = 503) -> None:
        self.secret, self.log_path, self.port = secret, log_path, free_port()
        self.control: dict[str, Any] = {"fail_first": fail_first, "status": status}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        """Start (or start again, on the same port, with the same log and control)."""
        argv = [sys.executable, "-m", "tests.integration.delivery.receiver", str(self.port), self.secret]
        self.process = subprocess.Popen([*argv, str(self.log_path)])
        wait_for(self._up, what="the receiver to listen")
        self.set(**self.control)
        return self

    def _up(self) -> bool:
        try:
            return httpx.put(f"http://127.0.0.1:{self.port}/_control", json={}).status_code == 204
        except httpx.TransportError:
            return False

    def set(self, **control: Any) -> None:
        self.control |= {k: v for k, v in control.items() if k != "hang"}
        httpx.put(f"http://127.0.0.1:{self.port}/_control", json=control).raise_for_status()

    @property
    def attempts(self) -> list[dict[str, Any]]:
        return read_log(self.log_path)

    def bodies(self) -> list[dict[str, Any]]:
        """What was accepted, once per idempotency key, in arrival order."""
        accepted: dict[str, dict[str, Any]] = {}
        for attempt in self.attempts:
            if attempt["status"] == 200:
                accepted.setdefault(attempt["key"], attempt["body"])
        return list(accepted.values())

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    stop = kill


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
