"""free_port hands out ports outside the kernel's ephemeral range, each once per process."""

from __future__ import annotations

import socket

from shared.embedded import free_port


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(100)]
    assert len(set(ports)) == len(ports)
    low, _high = (int(n) for n in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    assert all(20000 <= port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # still free
