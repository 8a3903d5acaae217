"""The invariants checked at quiescence, each counted: what was checked and what broke it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import redis

from shared.events import MembershipChanged, utcnow
from tests.faults.model import BY_ID, SEGMENTS, ConsentHistory, Model
from tests.support import segment_members, stored_customer

# A join decided this soon after a grant's expires_at was decided on a clock reading taken just
# before it (the decision reads the clock once, the message is stamped after).
GRACE = timedelta(milliseconds=100)


@dataclass
class Check:
    name: str
    unit: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)

    def expect(self, ok: bool, violation: str) -> None:
        self.checked += 1
        if not ok:
            self.violations.append(violation)


@dataclass
class Observed:
    """What the stack shows at one moment."""

    redis_members: dict[str, set[str]]
    redis_segments: dict[str, set[str]]
    api_members: dict[str, set[str]]
    announced: list[MembershipChanged]

    def signature(self) -> tuple[object, ...]:
        return (
            len(self.announced),
            tuple(sorted((s, tuple(sorted(m))) for s, m in self.redis_members.items())),
            tuple(sorted((s, tuple(sorted(m))) for s, m in self.api_members.items())),
        )


def observe(
    client: redis.Redis,
    segmenter_url: str | None,
    prefix: str,
    customers: list[str],
    announced: list[MembershipChanged],
) -> Observed:
    ns = f"sw:{prefix}"
    members = {s.segment_id: segment_members(client, ns, s.segment_id) for s in SEGMENTS}
    segments = {c: stored_customer(client, ns, c).segments for c in customers}
    return Observed(members, segments, _api_members(segmenter_url), announced)


def _api_members(url: str | None) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    if url is None:
        return found
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer admin-token-0001"}, timeout=5) as api:
        for spec in SEGMENTS:
            members: set[str] = set()
            cursor: str | None = "0"
            try:
                while cursor is not None:
                    page = api.get(
                        f"/v1/segments/{spec.segment_id}/members", params={"cursor": cursor, "limit": 500}
                    )
                    page.raise_for_status()
                    body = page.json()
                    members |= set(body["members"])
                    cursor = body["next_cursor"]
            except httpx.HTTPError as exc:
                members = {f"<API error {exc!r}>"}
            found[spec.segment_id] = members
    return found


def check(model: Model, observed: Observed, now: datetime | None = None) -> list[Check]:
    now = now or utcnow()
    return [
        _equal_sets(
            "Redis member sets = model",
            "segments",
            observed.redis_members,
            {s.segment_id: model.members(s.segment_id, now) for s in SEGMENTS},
        ),
        _equal_sets(
            "Redis customer segment sets = model",
            "customers",
            observed.redis_segments,
            {c: model.expected(c, now) for c in model.customers()},
        ),
        _equal_sets(
            "API members = model",
            "segments",
            observed.api_members,
            {s.segment_id: model.members(s.segment_id, now) for s in SEGMENTS},
        ),
        _last_announced(model, observed.announced, now),
        *_joins(model, observed.announced),
        _opt_outs_left(model, observed.announced),
    ]


def _equal_sets(name: str, unit: str, seen: dict[str, set[str]], expected: dict[str, set[str]]) -> Check:
    result = Check(name, unit)
    for key in sorted(expected):
        got, want = seen.get(key, set()), expected[key]
        result.expect(got == want, f"{key}: missing {sorted(want - got)}, unexpected {sorted(got - want)}")
    return result


def last_actions(announced: list[MembershipChanged]) -> dict[tuple[str, str], MembershipChanged]:
    last: dict[tuple[str, str], MembershipChanged] = {}
    for m in announced:
        last[(m.customer_id, m.segment_id)] = m
    return last


def _last_announced(model: Model, announced: list[MembershipChanged], now: datetime) -> Check:
    result = Check("last announced action = model", "pairs")
    last = last_actions(announced)
    for customer in model.customers():
        expected = model.expected(customer, now)
        for spec in SEGMENTS:
            m = last.get((customer, spec.segment_id))
            member = m is not None and m.action == "joined"
            said = f"{m.action} ({m.reason})" if m else "nothing"
            result.expect(
                member == (spec.segment_id in expected),
                f"{customer}/{spec.segment_id}: last announced {said}, model says "
                f"{'member' if spec.segment_id in expected else 'not a member'}",
            )
    return result


def _joins(model: Model, announced: list[MembershipChanged]) -> list[Check]:
    """A join needs every purpose effective at its `at` (when it was decided). An opt-out the API
    had answered (it answers once the change is published) before that moment must have stopped
    it: the admission barrier reads the consent topic after the decision. One not yet answered
    was in flight; the final state and the `left` checks cover it."""
    after_opt_out = Check("no join decided after an opt-out was answered", "joins")
    not_effective = Check("no join while a purpose was not effective", "joins")
    for m in announced:
        if m.action != "joined":
            continue
        history = model.history.get(m.customer_id, ConsentHistory([]))
        late = ineffective = ""
        for purpose in BY_ID[m.segment_id].purposes:
            record = history.latest(purpose, m.at)
            if record is not None and record.effective_at(m.at):
                continue
            if record is None:
                ineffective = f"{purpose} never granted"
            elif record.status == "denied":
                answered = model.acknowledged.get(record.event_id)
                if answered is not None and m.at > answered:
                    late = (
                        f"{_ms(m.at - answered)} ms after the answer to a {purpose} {record.reason} "
                        f"denial (recorded {_ms(m.at - record.recorded_at)} ms before)"
                    )
            elif record.expires_at and m.at - record.expires_at > GRACE:
                ineffective = f"{_ms(m.at - record.expires_at)} ms after {purpose} expired"
        where = f"{m.customer_id}/{m.segment_id} joined ({m.reason}) at {m.at.time()}"
        after_opt_out.expect(not late, f"{where}: {late}")
        not_effective.expect(not ineffective, f"{where}: {ineffective}")
    return [after_opt_out, not_effective]


def _opt_outs_left(model: Model, announced: list[MembershipChanged]) -> Check:
    """Every denial of a purpose, for a segment needing it whose last announcement before the denial
    was `joined`, is followed by a `left` of that segment."""
    result = Check("every opt-out of a member announced a left", "opt-outs")
    stream: dict[tuple[str, str], list[MembershipChanged]] = defaultdict(list)
    for m in announced:
        stream[(m.customer_id, m.segment_id)].append(m)
    for customer, history in model.history.items():
        for record in history.opt_outs():
            for spec in SEGMENTS:
                if record.purpose not in spec.purposes:
                    continue
                messages = stream.get((customer, spec.segment_id), [])
                before = [i for i, m in enumerate(messages) if m.at <= record.committed_after]
                if not before or messages[before[-1]].action != "joined":
                    continue
                later = messages[before[-1] + 1 :]
                result.expect(
                    any(m.action == "left" for m in later),
                    f"{customer}/{spec.segment_id}: {record.purpose} denied at "
                    f"{record.committed_after.time()} while announced joined, and no left followed",
                )
    return result


def _ms(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)


def violations(checks: list[Check]) -> int:
    return sum(len(c.violations) for c in checks)
