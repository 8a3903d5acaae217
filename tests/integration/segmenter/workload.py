"""A seeded random workload of events and consent changes, the model it must end in, and the
checks every published membership stream must pass."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.events import ConsentChanged, MembershipChanged
from tests.integration.segmenter.conftest import Inputs

Features = dict[str, Any]
# segment -> (rule, required purposes, the same rule written independently in Python)
SEGMENTS: dict[str, tuple[str, tuple[str, ...], Callable[[Features], bool]]] = {
    "spenders": ("total_spend >= 300", ("marketing_email",), lambda f: f["spend"] >= 300),
    "clickers": (
        "events.click >= 3 and profile.tier in ['gold', 'silver']",
        ("marketing_email", "personalization"),
        lambda f: f["click"] >= 3 and f.get("tier") in ("gold", "silver"),
    ),
    "regulars": (
        "purchase_count >= 2 or profile.country == 'DE'",
        ("third_party_sharing",),
        lambda f: f["purchases"] >= 2 or f.get("country") == "DE",
    ),
}
PURPOSES = ("marketing_email", "personalization", "third_party_sharing")


@dataclass
class Model:
    features: dict[str, Features] = field(default_factory=lambda: defaultdict(_empty))
    consent: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    changes: dict[str, list[ConsentChanged]] = field(default_factory=lambda: defaultdict(list))

    def expected(self, customer: str) -> set[str]:
        features, consent = self.features[customer], self.consent[customer]
        return {
            segment
            for segment, (_, purposes, rule) in SEGMENTS.items()
            if rule(features) and all(consent.get(p) == "granted" for p in purposes)
        }


def _empty() -> Features:
    return {"spend": 0.0, "purchases": 0, "click": 0}


async def run_workload(
    inputs: Inputs, model: Model, seed: int, steps: int, customers: int, name: str = ""
) -> None:
    """Produce `steps` random inputs in order (per customer, the partition keeps that order), to
    customers `<name>-<n>` (`name` defaults to `w<seed>`, so each seed has customers of its own)."""
    rng = random.Random(seed)
    sent: dict[str, list[Any]] = defaultdict(list)
    for _ in range(steps):
        customer = f"{name or f'w{seed}'}-{rng.randrange(customers)}"
        roll = rng.random()
        if roll < 0.2:
            purpose, status = rng.choice(PURPOSES), rng.choice(("granted", "granted", "denied"))
            model.changes[customer].append(await inputs.consent(customer, purpose, status, wait=False))
            model.consent[customer][purpose] = status
        elif roll < 0.22 and sent[customer]:
            await inputs.event(
                customer, "click", wait=False, event_id=rng.choice(sent[customer])
            )  # redelivery
        else:
            sent[customer].append(await _event(inputs, model.features[customer], customer, rng))
    await inputs.producer.flush()


async def _event(inputs: Inputs, features: Features, customer: str, rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        features["click"] += 1
        return (await inputs.event(customer, "click", wait=False)).event_id
    if kind < 0.8:
        amount = rng.randrange(10, 200)
        features["spend"] += amount
        features["purchases"] += 1
        return (await inputs.event(customer, "purchase", wait=False, amount=amount, currency="EUR")).event_id
    country, tier = rng.choice(("DE", "FR", "IT")), rng.choice(("gold", "silver", "bronze"))
    features.update(country=country, tier=tier)
    return (await inputs.event(customer, "profile_update", wait=False, country=country, tier=tier)).event_id


def replay(messages: list[MembershipChanged]) -> dict[str, set[str]]:
    """The membership campaign tools end up with from the published stream alone."""
    members: dict[str, set[str]] = defaultdict(set)
    for m in messages:
        (members[m.customer_id].add if m.action == "joined" else members[m.customer_id].discard)(m.segment_id)
    return members


def check_stream(
    messages: list[MembershipChanged], model: Model, published: Mapping[str, datetime] | None = None
) -> None:
    """Every (customer, segment) alternates joined/left; no join without consent the service had seen.
    `published`: when each message (by event id) went out, where known. A join's `at` is when it
    was decided; one kept at the consent barrier goes out later, after its consent is checked
    again, and maybe after a `left` caused by a consent change recorded after that `at`."""
    by_customer: dict[str, list[MembershipChanged]] = defaultdict(list)
    seen: set[str] = set()
    for m in messages:
        # At least once (docs/contract.md, "Topics"): a repeat of an event id is the same change,
        # which consumers drop, so it is checked as they see the stream. Where a test forbids
        # repeats (a clean stop), it checks the ids itself (`repeated`).
        if m.event_id not in seen:
            seen.add(m.event_id)
            by_customer[m.customer_id].append(m)
    for customer, stream in by_customer.items():
        _check_alternation(stream, model.changes[customer], published or {})
        _check_joins_had_consent(stream, model.changes[customer], published or {})


def repeated(
    messages: list[MembershipChanged], model: Model, published: Mapping[str, datetime] | None = None
) -> str:
    """The history of every (customer, segment) with an event id published more than once; ""
    when none was."""
    counts = Counter(m.event_id for m in messages)
    pairs = sorted({(m.customer_id, m.segment_id) for m in messages if counts[m.event_id] > 1})
    return "\n".join(
        history(c, s, [m for m in messages if m.customer_id == c], model.changes[c], published or {})
        for c, s in pairs
    )


def _check_alternation(
    stream: list[MembershipChanged], changes: list[ConsentChanged], published: Mapping[str, datetime]
) -> None:
    last: dict[str, str] = {}
    for m in stream:
        if last.get(m.segment_id, "left") == m.action:
            raise AssertionError(
                f"{m.action} twice in a row: {m}\n"
                + history(m.customer_id, m.segment_id, stream, changes, published)
            )
        last[m.segment_id] = m.action


def history(
    customer: str,
    segment: str,
    stream: list[MembershipChanged],
    changes: list[ConsentChanged],
    published: Mapping[str, datetime],
) -> str:
    """The pair's whole story, to tell a duplicate from a join never sent: what was announced, in
    stream order (decided `at`, sent `out`, event ids), then the customer's changes of the
    segment's purposes, in the order sent."""

    def clock(t: datetime | None) -> str:
        return t.strftime("%H:%M:%S.%f")[:-3] if t else "-"

    announced = [
        f"  {m.action} {m.reason} at={clock(m.at)} out={clock(published.get(m.event_id))} "
        f"id={m.event_id} cause={m.cause_event_id} cause_at={clock(m.cause_at)}"
        for m in stream
        if m.segment_id == segment
    ]
    required = SEGMENTS[segment][1] if segment in SEGMENTS else ()
    consent = [
        f"  consent {c.purpose}={c.status} recorded={clock(c.recorded_at)} id={c.event_id}"
        for c in changes
        if c.purpose in required
    ]
    return "\n".join([f"{customer} / {segment} announced:", *announced, "consent:", *consent])


def _check_joins_had_consent(
    stream: list[MembershipChanged], changes: list[ConsentChanged], published: Mapping[str, datetime]
) -> None:
    """A join is valid only for a consent state the service could have been in: after every change
    it had already acted on (k_min) and at most the changes recorded before the join went out
    (k_max; its decision time `at` when its publication is not known)."""
    index = {c.event_id: i for i, c in enumerate(changes)}
    k_min = 0
    for m in stream:
        if m.cause_event_id in index:
            k_min = max(k_min, index[m.cause_event_id] + 1)
        if m.action != "joined":
            continue
        out = max(m.at, published.get(m.event_id, m.at))
        k_max = sum(1 for c in changes if c.recorded_at <= out)
        required = SEGMENTS[m.segment_id][1]
        states = [_consent_after(changes[:k]) for k in range(k_min, k_max + 1)]
        assert any(all(s.get(p) == "granted" for p in required) for s in states), f"join without consent: {m}"


def _consent_after(prefix: list[ConsentChanged]) -> dict[str, str]:
    return {c.purpose: c.status for c in prefix}
