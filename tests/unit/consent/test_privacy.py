"""What the consent record keeps of the request: truncated IP addresses, clipped user agents."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.consent.domain.privacy import clip_user_agent, truncate_ip


@pytest.mark.parametrize(
    ("address", "kept"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"),
        ("::ffff:198.51.100.9", "198.51.100.0"),
        ("not-an-ip", None),
        (None, None),
        ("", None),
    ],
)
def test_ip_addresses_keep_only_their_network(address: str | None, kept: str | None) -> None:
    assert truncate_ip(address) == kept


@given(st.ip_addresses(v=4))
def test_no_ipv4_host_part_survives(address) -> None:
    truncated = truncate_ip(str(address))
    assert truncated is not None and truncated.endswith(".0")
    assert truncated.split(".")[:3] == str(address).split(".")[:3]


def test_user_agents_are_clipped() -> None:
    assert clip_user_agent("x" * 1000) == "x" * 256
    assert clip_user_agent(None) is None
