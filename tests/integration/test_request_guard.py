"""Every service refuses an oversized body (413) and an unauthenticated call (401) before reading it."""

from __future__ import annotations

import select
import socket
from pathlib import Path

import pytest

from tests.conftest import bearer
from tests.support import http_client

# A route with a JSON body on each service (audit has none: its POST takes no body).
BODY_ROUTES = {
    "consent": ("PUT", "/v1/customers/c-guard/consents/marketing_email"),
    "segmenter": ("PUT", "/v1/segments/guarded"),
    "audit": ("POST", "/v1/audit/checkpoint"),
}
FIFTY_MB = 50 * 1024 * 1024
LIMIT = 64 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def send_big_body(
    port: int, method: str, path: str, size: int, headers: dict[str, str], chunked: bool
) -> int:
    """Stream `size` bytes of body until the server answers; the answer's status code."""
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    piece = b"x" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        try:
            while sent < size and not select.select([sock], [], [], 0)[0]:
                sock.sendall(b"10000\r\n" + piece + b"\r\n" if chunked else piece)
                sent += len(piece)
            if chunked and sent >= size:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed; its answer is already in our receive buffer
        answer = sock.recv(4096)
    assert sent < size, "the whole body was read before the answer"
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("name", sorted(BODY_ROUTES))
def test_oversized_and_unauthenticated_bodies_are_refused_before_reading(start_service, name: str) -> None:
    service = start_service(name).wait_ready()
    assert service.process is not None
    method, path = BODY_ROUTES[name]
    before = rss_kib(service.process.pid)

    assert send_big_body(service.port, method, path, FIFTY_MB, {}, chunked=False) == 413
    assert send_big_body(service.port, method, path, FIFTY_MB, {}, chunked=True) == 401
    # Authenticated, the stream is cut at the limit (audit's route never reads its body: answered at once).
    streamed = send_big_body(service.port, method, path, FIFTY_MB, bearer(), chunked=True)
    assert streamed == (200 if name == "audit" else 413)

    grown = rss_kib(service.process.pid) - before
    assert grown < 8 * 1024, f"{name} grew by {grown} KiB while refusing 150 MB of bodies"
    limit = http_client.request(method, service.url + path, content=b"x" * (LIMIT + 1), headers=bearer())
    assert limit.status_code == 413 and "MAX_BODY_BYTES" in limit.json()["detail"]

    malformed = http_client.request(
        method, service.url + path, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 401, malformed.text
    assert malformed.headers["WWW-Authenticate"] == "Bearer"
    unknown = http_client.request(
        method, service.url + path, content=b"{not json", headers=bearer("nope-nope-1")
    )
    assert unknown.status_code == 401
    if name != "audit":
        json_headers = {**bearer(), "Content-Type": "application/json"}
        parsed = http_client.request(method, service.url + path, content=b"{not json", headers=json_headers)
        assert parsed.status_code == 422  # authenticated: now the body is parsed
    assert http_client.get(f"{service.url}/healthz").status_code == 200  # operational routes stay open
