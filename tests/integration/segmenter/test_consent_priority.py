"""Consent changes never wait behind an event batch: a stream of grants and opt-outs, for members,
newcomers and customers of the backlog itself, is handled while a saturating backlog of customer
events is still being drained; once it is, every invariant holds against an independent model.

The fault is the load itself: the backlog, then the consent stream, are produced while the
segmenter is stopped, so it finds both waiting when it is back. Before the event follower gave way
to the consent follower (kafka_events.py, kafka_consent.py `give_way`), the changes were handled
about 1.5 a second under such a load and the backlog was drained long before the last opt-out was
announced. (With the segmenter running while the backlog was produced, how much of it was left
depended on the producer's speed against the segmenter's: a segmenter that kept up drained it
all before the stream was sent, and the test failed for that alone.)"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest

from tests.integration.segmenter.conftest import Inputs, put_segment, wait_until
from tests.integration.segmenter.test_invariants import customers_of, settle
from tests.integration.segmenter.workload import SEGMENTS, Model, check_stream
from tests.support import ServiceProcess, metric_total

BACKLOG = 40_000  # events of the backlog customers, produced before the consent stream
BACKLOG_CUSTOMERS = 200
STREAM = 30  # members who opt out, newcomers who grant, backlog customers who change consent


@pytest.fixture(scope="module")
def shared_segmenter_env() -> dict[str, str]:
    """Sweeps and the compliance scan at their defaults (30 s, 60 s): they must mask nothing."""
    return {}


@pytest.fixture
def io_prefix(shared_prefix: str) -> str:
    return shared_prefix


def processed(url: str) -> float:
    """Customer events the segmenter has handled (applied, duplicate, refused or dead-lettered)."""
    return metric_total(url, "segwarden_segmenter_events_processed_total")


async def purchases(inputs: Inputs, model: Model, customer: str, amounts: list[int]) -> None:
    for amount in amounts:
        model.features[customer]["spend"] += amount
        model.features[customer]["purchases"] += 1
        await inputs.event(customer, "purchase", wait=False, amount=amount, currency="EUR")


async def consent(inputs: Inputs, model: Model, customer: str, purpose: str, status: str) -> None:
    model.changes[customer].append(await inputs.consent(customer, purpose, status, wait=False))
    model.consent[customer][purpose] = status


async def backlog(inputs: Inputs, model: Model, customers: list[str]) -> None:
    """BACKLOG clicks and purchases of `customers`, recorded in the model."""
    rng = random.Random(14)
    for _ in range(BACKLOG):
        customer = rng.choice(customers)
        if rng.random() < 0.3:
            await purchases(inputs, model, customer, [rng.randrange(5, 60)])
        else:
            model.features[customer]["click"] += 1
            await inputs.event(customer, "click", wait=False)
    await inputs.producer.flush()


def recorded(redis_view: Any, model: Model, customer: str, purpose: str) -> bool:
    """Redis holds the purpose's last change of the model (`status|expires|recorded|...`)."""
    stored = redis_view.consent(customer, purpose) or ""
    return stored.startswith(model.consent[customer][purpose] + "|")


async def test_consent_changes_are_handled_while_an_event_backlog_drains(
    api: httpx.Client, segmenter: ServiceProcess, kafka_io: Any, redis_view: Any
) -> None:
    inputs, outputs = kafka_io
    for segment, (rule, purposes, _) in SEGMENTS.items():
        put_segment(api, segment, rule, *purposes)
    model = Model()
    members = [f"m-{i}" for i in range(STREAM)]
    newcomers = [f"n-{i}" for i in range(STREAM)]
    loaded = [f"l-{i}" for i in range(BACKLOG_CUSTOMERS)]
    for customer in members:  # in `spenders` and `regulars` before the load
        await consent(inputs, model, customer, "marketing_email", "granted")
        await consent(inputs, model, customer, "third_party_sharing", "granted")
    for customer in members + newcomers:
        await purchases(inputs, model, customer, [200, 200])
    await inputs.producer.flush()
    await settle(model, redis_view, outputs)

    await asyncio.to_thread(segmenter.stop)
    await backlog(inputs, model, loaded)
    changes: list[tuple[str, str]] = []
    for i in range(STREAM):  # interleaved, so every partition carries each kind
        await consent(inputs, model, members[i], "marketing_email", "denied")
        await consent(inputs, model, newcomers[i], "marketing_email", "granted")
        await consent(inputs, model, loaded[i], "marketing_email", "granted")
        changes += [(members[i], "marketing_email"), (newcomers[i], "marketing_email")]
        changes.append((loaded[i], "marketing_email"))
        if i % 3 == 0:  # a backlog customer who opts out again right away
            await consent(inputs, model, loaded[i], "marketing_email", "denied")
    await inputs.producer.flush()
    await asyncio.to_thread(segmenter.start().wait_ready, 90)

    def stream_handled() -> bool:
        return all(recorded(redis_view, model, c, p) for c, p in changes) and all(
            outputs.find(m, "spenders", "left", "consent_withdrawn") for m in members
        )

    await wait_until(stream_handled, timeout=120, what="every consent change handled and opt-out announced")
    drained = processed(segmenter.url)  # since the start
    assert drained < BACKLOG, "the event backlog was drained before the consent stream was handled"

    await settle(model, redis_view, outputs, timeout=240)
    check_stream(outputs.messages, model, outputs.published)
    for segment in SEGMENTS:
        expected = {c for c in customers_of(model) if segment in model.expected(c)}
        assert redis_view.members(segment) == expected
    assert all(outputs.find(n, "spenders", "joined") for n in newcomers)
