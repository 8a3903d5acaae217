"""Webhook subjects, signatures and retry delays."""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from services.delivery.domain.webhooks import retry_delay, signature, subject
from tests.unit.delivery.test_routing import destination

KEY = b"k" * 32


def test_pseudonyms_differ_per_destination_and_are_stable() -> None:
    a, b = destination("a"), destination("b")
    assert subject(KEY, a, "c-1") == subject(KEY, a, "c-1") != subject(KEY, b, "c-1")
    assert "c-1" not in subject(KEY, a, "c-1")


def test_a_customer_id_destination_gets_the_id() -> None:
    assert subject(KEY, replace(destination(), identifier="customer_id"), "c-1") == "c-1"


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(b"secret", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert signature("secret", 1_700_000_000, b"{}") == f"t=1700000000,v1={expected}"


@given(st.integers(1, 200), st.floats(0.01, 10), st.floats(1, 600), st.integers(0, 2**32))
def test_retry_delays_are_bounded_and_grow(failures: int, initial: float, cap: float, seed: int) -> None:
    rng = random.Random(seed)
    ceiling = min(cap, initial * 2 ** (failures - 1))
    delay = retry_delay(failures, initial, cap, rng)
    assert ceiling / 2 <= delay <= ceiling
