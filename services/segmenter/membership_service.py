"""Reconciles one customer's live membership with the membership rule, then tells campaign tools:
the use case every input of `handlers.py` (and every job) ends in, over the customer store,
publisher and consent barrier ports of `domain/ports.py`.

Order per change: decide (pure) -> commit to the customer's Redis slot (version-checked, consent
re-checked in Lua) -> segment member sets -> egress consent check -> publish. So Redis always
holds a change before it is published, and no `joined` goes out without effective consent.

Admission waits; eviction never does. A join that needs consent stays in the outbox until the
consent barrier says every consent change of the customer written before it is read (then
consent is checked again at the door); everything else is published at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.segmenter.domain.customer import Committed, CustomerSnapshot, Pending
from services.segmenter.domain.erasure import ErasureMark
from services.segmenter.domain.feature_values import rule_features
from services.segmenter.domain.membership import Assign, MembershipChange, Trigger, decide
from services.segmenter.domain.ports import (
    BarrierTimeoutError,
    ConsentBarrier,
    ConsentPartitionMovedError,
    CustomerStore,
    MembershipPublisher,
)
from services.segmenter.domain.retention import RetentionPolicy
from services.segmenter.domain.segments import Segment
from services.segmenter.locks import KeyedLocks
from services.segmenter.metrics import (
    ADMISSION_WAIT,
    ADMISSIONS_DEFERRED,
    COMMIT_CONFLICTS,
    EVALUATION_SECONDS,
    MEMBERSHIP_CHANGES,
)
from shared.events import MembershipChanged, new_event_ids
from shared.failpoints import failpoint
from shared.supervise import cancel_until_done, describe_failure, retry, uninterrupted

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 20
UNANNOUNCED_CAP = 100_000
BUILT_CAP = 20_000
# Customers a batch evaluates (handlers.py), or decides and encodes for its commit, between two
# turns of the loop: an eviction waits for the loop at each of its awaits (docs/benchmarks.md, the
# batch sizes of 2026-12-02).
CUSTOMERS_BETWEEN_YIELDS = 64
Decider = Callable[[CustomerSnapshot, float], list[MembershipChange]]
Message = Callable[[MembershipChange], str]  # the JSON announcing a change, "" for none
# Joins (and what follows them in their segment) waiting for the barrier: customer, event ids.
Waiting = tuple[str, list[str]]


class CommitConflictError(RuntimeError):
    """The customer kept changing under every attempt to commit (a bug or a storm)."""


@dataclass(frozen=True)
class Cause:
    event_id: str | None
    at: datetime | None


NO_CAUSE = Cause(None, None)


@dataclass(frozen=True)
class Plan:
    """One customer's pending reconciliation: the state read, how to decide, and why.

    `repair` is set when a step after an earlier commit may not have run (a redelivery after a
    failure): then the plan commits even when nothing changes, the member sets of these segments
    (and of the customer's own and its outbox's) follow the customer's slot, and the outbox goes out.
    """

    snapshot: CustomerSnapshot
    decide: Decider
    cause: Cause
    repair: frozenset[str] | None = None
    # The changes `decide` already gave for `snapshot` (planning needed them): not decided again.
    decided: list[MembershipChange] | None = None


@dataclass(frozen=True)
class Outgoing:
    """One customer on its way out after its commit."""

    customer_id: str
    outbox: list[str]  # JSON messages, in order
    fresh: frozenset[str] = frozenset()  # the messages this commit added: never published before
    members: dict[str, bool] = field(default_factory=dict)  # segment -> member, for the member sets


def _nothing(snapshot: CustomerSnapshot, now: float) -> list[MembershipChange]:
    return []


def _segments_of(outbox: Sequence[str]) -> set[str]:
    return {str(json.loads(message)["segment_id"]) for message in outbox}


class MembershipService:
    def __init__(
        self,
        store: CustomerStore,
        publisher: MembershipPublisher,
        required_purposes: Callable[[str], tuple[str, ...] | None],
        assign: Assign,
        clock: Callable[[], float] = time.time,
        barrier: ConsentBarrier | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.required_purposes = required_purposes  # of a live segment; None once it is gone
        self.assign = assign  # the model scorer of model-based segments
        self.clock = clock
        self.locks = KeyedLocks()
        self.barrier = barrier  # None: joins go out at once (tests of other things)
        self.retention = retention  # None: memberships never expire with inactivity
        self._waiting: set[str] = set()  # event ids of joins already waiting for the barrier
        # Joins this process wrote that were never published (so no one announced them), oldest
        # first: event id -> customer. Handed over in Redis when their partition moves (hand_over).
        self._unannounced: dict[str, str] = {}
        self._built: dict[str, MembershipChanged] = {}  # messages by their JSON, until their egress
        self._releases: set[asyncio.Task[None]] = set()

    def plan(
        self,
        snapshot: CustomerSnapshot,
        candidates: Sequence[Segment],
        trigger: Trigger,
        cause: Cause,
        redelivered: bool = False,
        evictions_only: bool = False,
    ) -> Plan | None:
        """A plan to apply the membership rule for `candidates`, or None when nothing would change
        and nothing needs repair (the input is new and the customer has no leftover outbox).
        `evictions_only` keeps only the leaves that consent decides: for a customer whose
        features cannot be trusted now (their partition is being rebuilt)."""
        repair = redelivered or snapshot.outbox > 0
        if not candidates and not repair:
            return None

        def rule(snap: CustomerSnapshot, now: float) -> list[MembershipChange]:
            started = time.perf_counter()
            features = rule_features(snap.features, now)
            # Checked at every evaluation, so no sweep brings back whom the retention job let go.
            retention = self.retention
            expired = retention.expired(candidates, snap.features, snap.consent, now) if retention else ()
            changes = decide(
                candidates, features, snap.consent, snap.segments, now, trigger, self.assign, expired
            )
            if evictions_only:
                changes = [c for c in changes if c.is_eviction]
            EVALUATION_SECONDS.observe(time.perf_counter() - started)
            return changes

        if repair:
            return Plan(snapshot, rule, cause, frozenset(s.id for s in candidates))
        # The common case ends here: nothing changes, so no lock and no Redis round trip.
        changes = rule(snapshot, self.clock())
        return Plan(snapshot, rule, cause, decided=changes) if changes else None

    async def reconcile(
        self,
        snapshot: CustomerSnapshot,
        candidates: Sequence[Segment],
        trigger: Trigger,
        cause: Cause,
        redelivered: bool = False,
        evictions_only: bool = False,
    ) -> list[MembershipChanged]:
        """Apply the membership rule for `candidates` to the customer and publish what changed."""
        plan = self.plan(snapshot, candidates, trigger, cause, redelivered, evictions_only)
        return await self.apply_many([plan]) if plan else []

    async def evict(
        self,
        customer_id: str,
        reasons: dict[str, str],
        cause: Cause,
        still: Callable[[str], bool] | None = None,
    ) -> list[MembershipChanged]:
        """Leave the named segments (segment -> reason) whatever the rule says; with `still`,
        only those for which it holds when the change is decided (under the customer's lock)."""

        def leave(snap: CustomerSnapshot, now: float) -> list[MembershipChange]:
            return [
                MembershipChange(s, "left", r)
                for s, r in reasons.items()
                if s in snap.segments and (still is None or still(s))
            ]

        return await self.apply_many([Plan(await self.store.read(customer_id), leave, cause)])

    async def erase(
        self, customer_id: str, partition: int, mark: ErasureMark, cause: Cause
    ) -> list[MembershipChanged]:
        """Forget the customer's features, consent and segments, mark the erasure and queue every
        leave in one step, then take the customer out of the member sets and the partition's sweep
        and expiry queues and announce the leaves; all under the customer's lock, so no input of
        theirs is applied or remembered in between."""
        async with self.locks.hold(customer_id):
            for _ in range(MAX_ATTEMPTS):
                segments = sorted((await self.store.read(customer_id)).segments)
                left = [MembershipChange(s, "left", "erased") for s in segments]
                messages = [(c.segment_id, m) for c, m in self._pending(customer_id, left, cause)]
                outbox = await self.store.erase(customer_id, messages, mark)
                if outbox is not None:
                    # Segments of leftover messages too: a crash may have kept them from their sets.
                    gone = dict.fromkeys(set(segments) | _segments_of(outbox), False)
                    await self.store.set_members_many([(customer_id, gone)])
                    await self.store.forget(partition, customer_id)
                    return await self._egress([Outgoing(customer_id, outbox)])
                COMMIT_CONFLICTS.inc()  # the segments changed since the read (another worker)
        raise CommitConflictError(f"no stable segments to erase after {MAX_ATTEMPTS} attempts")

    async def flush_outbox(self, customer_id: str) -> list[MembershipChanged]:
        """Publish what a crashed worker committed but never got acknowledged, after bringing the
        member sets of its segments in line with the customer's slot."""
        snapshot = await self.store.read(customer_id)
        return await self.apply_many([Plan(snapshot, _nothing, NO_CAUSE, frozenset())])

    async def pending_segments(self, customer_ids: Sequence[str]) -> dict[str, set[str]]:
        """Per customer, the segments with changes still in its outbox (joins waiting for the
        barrier, and what follows them): those changes are announced from there, in order, so no
        one else may announce the same change (call under the customers' locks)."""
        boxes = await self.store.read_outboxes(customer_ids)  # an empty outbox reads as []
        return {c: _segments_of(box) for c, box in zip(customer_ids, boxes, strict=True) if box}

    async def apply_many(self, plans: Sequence[Plan]) -> list[MembershipChanged]:
        """Under the customers' locks: decide, commit, sync member sets, publish, each step one
        pipeline for all customers (one plan per customer)."""
        if not plans:
            return []
        async with self.locks.hold_all(p.snapshot.customer_id for p in plans):
            committed = await self._commit_many(plans)
            failpoint("segmenter.after_slot_commit")
            await self.store.set_members_many([(o.customer_id, o.members) for o in committed])
            failpoint("segmenter.after_member_sync")
            return await self._egress([o for o in committed if o.outbox])

    async def _commit_many(self, plans: Sequence[Plan]) -> list[Outgoing]:
        now = self.clock()
        todo = []
        for i, p in enumerate(plans):
            if i and i % CUSTOMERS_BETWEEN_YIELDS == 0:
                await asyncio.sleep(0)  # under the customers' locks: only the loop's turn
            changes = p.decided if p.decided is not None else p.decide(p.snapshot, now)
            if changes or p.repair is not None or p.snapshot.outbox:
                todo.append((p, self._pending(p.snapshot.customer_id, changes, p.cause)))
        results = await self.store.commit_many([(p.snapshot, pending) for p, pending in todo], now)
        outgoing = []
        for (p, pending), result in zip(todo, results, strict=True):
            if result is None:  # the customer changed since it was read: retry it alone
                COMMIT_CONFLICTS.inc()
                snapshot = await self.store.read(p.snapshot.customer_id)
                result, pending = await self._commit(snapshot, p.decide, self._announce(p), p.repair)
            outgoing.append(_outgoing(p.snapshot.customer_id, pending, result, p.repair))
        return outgoing

    async def _commit(
        self,
        snapshot: CustomerSnapshot,
        decider: Decider,
        message: Message,
        repair: frozenset[str] | None = None,
    ) -> tuple[Committed, list[Pending]]:
        """Commit one customer's changes, re-reading on conflict; what took effect and what was
        asked. Without changes it commits (reads the outbox) only for a repair or a leftover."""
        for _ in range(MAX_ATTEMPTS):
            now = self.clock()
            changes = decider(snapshot, now)
            if not changes and repair is None and not snapshot.outbox:
                return Committed([], [], frozenset(snapshot.segments)), []
            pending = [(c, message(c)) for c in changes]
            result = (await self.store.commit_many([(snapshot, pending)], now))[0]
            if result is not None:
                return result, pending
            COMMIT_CONFLICTS.inc()
            snapshot = await self.store.read(snapshot.customer_id)
        raise CommitConflictError(f"no stable version after {MAX_ATTEMPTS} attempts")

    def _announce(self, plan: Plan) -> Message:
        customer_id = plan.snapshot.customer_id
        return lambda change: self._message(customer_id, change, plan.cause)

    def _pending(self, customer_id: str, changes: list[MembershipChange], cause: Cause) -> list[Pending]:
        return list(zip(changes, self._messages(customer_id, changes, cause), strict=True))

    async def _egress(self, outgoing: list[Outgoing], admit: bool = False) -> list[MembershipChanged]:
        """Publish each customer's outbox in order, then clear it. Fail closed at the door: a join
        whose consent lapsed since the commit (or whose segment is gone) is withheld, and undone;
        the undo is announced (`left`) unless the join is provably unpublished (this commit's own,
        or one this process kept waiting). Unless `admit` (the barrier passed), a join that needs
        consent waits in the outbox for the barrier."""
        decoded = [(o, [self._decode(m) for m in o.outbox]) for o in outgoing]
        joining = sorted(
            {o.customer_id for o, messages in decoded if any(m.action == "joined" for m in messages)}
        )
        fresh = {s.customer_id: s for s in await self.store.read_many(joining)} if joining else {}
        now, published, sent, waiting = self.clock(), [], [], []
        encoded: list[str] = []  # the JSON of each published message, as its outbox holds it
        done: list[str] = []  # event ids of the messages cleared from the outboxes
        foreign: list[tuple[str, str]] = []  # (customer, event id) of joins another process built
        for o, messages in decoded:
            withheld = [
                (m, raw)
                for m, raw in zip(messages, o.outbox, strict=True)
                if m.action == "joined" and not self._may_join(fresh[o.customer_id], m, now)
            ]
            # Joins no one announced: those this process built and never published, and those a
            # previous owner handed over so (a crash's leftovers count as maybe published).
            others = [
                m.event_id
                for m, raw in zip(messages, o.outbox, strict=True)
                if m.action == "joined" and raw not in o.fresh and m.event_id not in self._unannounced
            ]
            unsent = {m.event_id for m in messages if m.event_id in self._unannounced}
            if withheld and others:
                unsent |= await self.store.unsent(o.customer_id, others)
            undone: list[str] = []
            if withheld:
                log.warning(
                    "withheld joins whose consent lapsed",
                    extra={"segments": [m.segment_id for m, _ in withheld]},
                )
                # A leftover join may have been published before a crash: its undo is announced.
                announce = {
                    m.segment_id for m, raw in withheld if raw not in o.fresh and m.event_id not in unsent
                }
                undone = await self._undo(fresh[o.customer_id], {m.segment_id for m, _ in withheld}, announce)
            # Sets of event ids, not lists of messages: a customer in 1,000 segments has 1,000
            # messages here, and a list's `in` made this step quadratic (seconds for a join).
            held = {m.event_id for m, _ in withheld}
            held |= {m.event_id for m in self._never_announced(messages, held, unsent)}
            later = [] if admit else self._must_wait([m for m in messages if m.event_id not in held])
            if later:
                waiting.append((o.customer_id, [m.event_id for m in later]))
            kept = {m.event_id for m in later}
            foreign += [(o.customer_id, i) for i in others if i not in kept]
            going = [
                (m, raw)
                for m, raw in zip(messages, o.outbox, strict=True)
                if m.event_id not in held and m.event_id not in kept
            ]
            published += [m for m, _ in going]
            encoded += [raw for _, raw in going]
            undone_messages = [_decode(u) for u in undone]
            published += undone_messages
            encoded += undone
            outbox = [raw for m, raw in zip(messages, o.outbox, strict=True) if m.event_id not in kept]
            sent.append((o.customer_id, [*outbox, *undone]))
            done += [m.event_id for m in messages if m.event_id not in kept]
            done += [m.event_id for m in undone_messages]
        # A stop (its tasks cancelled) waits for the send: what the broker took leaves the outbox.
        await uninterrupted(self._send(published, encoded, sent, done, foreign))
        for (action, reason), n in Counter((m.action, m.reason) for m in published).items():
            MEMBERSHIP_CHANGES.labels(action, reason).inc(n)
        self._wait_for_barrier(waiting)
        return published

    async def _send(
        self,
        published: list[MembershipChanged],
        encoded: list[str],
        sent: list[tuple[str, list[str]]],
        done: list[str],
        foreign: list[tuple[str, str]],
    ) -> None:
        """Publish, then clear what went out from the outboxes and from the unannounced joins."""
        # A handed-over join loses its mark before it may be published: a crash after the publish
        # must not leave a published join marked as never published (its leave would be dropped).
        await self.store.forget_unsent(foreign)
        await self.publisher.publish(published, [raw.encode() for raw in encoded])
        failpoint("segmenter.after_publish")
        await self.store.clear_outbox(sent)
        for event_id in done:
            self._unannounced.pop(event_id, None)

    def _never_announced(
        self, box: list[MembershipChanged], withheld: set[str], unsent: set[str]
    ) -> list[MembershipChanged]:
        """The leave that follows a withheld join never published (`unsent`): no one announced the
        join, so no one announces its leave (each segment's stream alternates)."""
        open_segments: set[str] = set()
        unsaid = []
        for m in box:
            if m.event_id in withheld and m.event_id in unsent:
                open_segments.add(m.segment_id)
            elif m.action == "left" and m.segment_id in open_segments:
                open_segments.discard(m.segment_id)
                unsaid.append(m)
        return unsaid

    def _must_wait(self, messages: list[MembershipChanged]) -> list[MembershipChanged]:
        """The joins that need consent, and what follows them in the same segment (kept in order)."""
        if self.barrier is None:
            return []
        first: dict[str, int] = {}
        for i, m in enumerate(messages):
            if m.action == "joined" and self.required_purposes(m.segment_id):
                first.setdefault(m.segment_id, i)
        return [m for i, m in enumerate(messages) if i >= first.get(m.segment_id, len(messages))]

    def _wait_for_barrier(self, waiting: list[Waiting]) -> None:
        """Admit the waiting joins once the barrier passes, in a task of their own: the caller (the
        consent follower itself, maybe) goes on, so nothing it must read waits behind them."""
        todo = [(cid, [i for i in ids if i not in self._waiting]) for cid, ids in waiting]
        todo = [(cid, ids) for cid, ids in todo if ids]
        if not todo:
            return
        self._waiting.update(i for _, ids in todo for i in ids)
        task = asyncio.create_task(self._admit(todo))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _admit(self, todo: list[Waiting]) -> None:
        ids = {i for _, wanted in todo for i in wanted}
        try:
            # A dropped connection (a stale one after a Redis restart, say) is waited out here:
            # left to the sweep, the join would go out only at its next run.
            await retry("admit joins", lambda: self._admit_once(todo))
        except Exception as exc:  # left in the outbox: the partition's sweep relays it (and waits again)
            log.warning("joins not admitted yet", extra={"error": describe_failure(exc)})
        finally:
            self._waiting -= ids

    async def _admit_once(self, todo: list[Waiting]) -> None:
        assert self.barrier is not None
        started = time.monotonic()
        try:
            await self.barrier.settled([cid for cid, _ in todo])
        except BarrierTimeoutError as exc:
            ADMISSIONS_DEFERRED.labels(
                "moved" if isinstance(exc, ConsentPartitionMovedError) else "timeout"
            ).inc()
            # Not retried (a TimeoutError is an OSError, which `retry` waits out): a timeout (a
            # backlog, or a customer of the batch whose partition moved away, which never
            # settles) leaves the joins to the relay, once out of `_waiting`. Retried in place,
            # the scale-out test's joins of the partitions a worker kept waited for ever.
            log.warning("joins not admitted yet", extra={"error": describe_failure(exc)})
            return
        ADMISSION_WAIT.observe(time.monotonic() - started)
        async with self.locks.hold_all(cid for cid, _ in todo):
            # What is still there (an eviction may have withheld it), in one round trip: one a
            # customer was a twentieth of the segmenter's time in the memory bench's drain.
            boxes = await self.store.read_outboxes([cid for cid, _ in todo])
            outgoing = []
            for (customer_id, ids), box in zip(todo, boxes, strict=True):
                wanted = set(ids)
                outgoing.append(
                    Outgoing(customer_id, [raw for raw in box if _decode(raw).event_id in wanted])
                )
            await self._egress([o for o in outgoing if o.outbox], admit=True)

    async def hand_over(self, gone: Callable[[str], bool]) -> None:
        """Record in Redis the joins of the customers for whom `gone` holds (their partition moved
        away) that this process built and never published, and forget them here: the next owner
        (maybe this process again) then knows no one announced them, so the leave that follows a
        withheld one is not announced either; until then, it took them for a crash's leftovers and
        announced a `left` whose `joined` never went out."""
        customers = sorted({c for c in self._unannounced.values() if gone(c)})
        if not customers:
            return
        try:
            async with self.locks.hold_all(customers):  # no egress of theirs is in flight meanwhile
                joins = [(c, i) for i, c in self._unannounced.items() if gone(c)]
                await self.store.mark_unsent(joins)
                for _, event_id in joins:
                    self._unannounced.pop(event_id, None)
        except Exception as exc:  # Redis away: the next owner announces their leaves (fail safe)
            log.warning("joins not handed over", extra={"error": describe_failure(exc)})

    async def close(self) -> None:
        """Stop admitting (what waits stays in the outbox for the next owner's relay, handed over)."""
        await cancel_until_done(list(self._releases))
        await self.hand_over(lambda _customer: True)

    def _may_join(self, fresh: CustomerSnapshot, message: MembershipChanged, now: float) -> bool:
        purposes = self.required_purposes(message.segment_id)
        if purposes is None or message.segment_id not in fresh.segments:
            return False  # the segment is gone, or the customer already left it again
        return fresh.consent.all_effective(purposes, now)

    async def _undo(self, snapshot: CustomerSnapshot, segment_ids: set[str], announce: set[str]) -> list[str]:
        """Leave segments whose join was withheld; a `left` (queued in the outbox with the leave)
        for those in `announce`. The messages queued."""
        customer_id = snapshot.customer_id

        def leave(snap: CustomerSnapshot, now: float) -> list[MembershipChange]:
            changes = []
            for segment_id in sorted(segment_ids & snap.segments):
                purposes = self.required_purposes(segment_id)
                gap = "segment_deleted" if purposes is None else snap.consent.why_not(purposes, now)
                if gap:
                    changes.append(MembershipChange(segment_id, "left", gap))
            return changes

        def message(change: MembershipChange) -> str:
            return self._message(customer_id, change, NO_CAUSE) if change.segment_id in announce else ""

        undone, pending = await self._commit(snapshot, leave, message)
        await self.store.sync_members(customer_id, undone.applied)
        applied = {c.segment_id for c in undone.applied}
        return [m for c, m in pending if m and c.segment_id in applied]

    def _message(self, customer_id: str, change: MembershipChange, cause: Cause) -> str:
        return self._messages(customer_id, [change], cause)[0]

    def _messages(self, customer_id: str, changes: Sequence[MembershipChange], cause: Cause) -> list[str]:
        """The JSON announcing each change. One message is validated per kind (action, reason); the
        others of that kind are copies of it with their own event id and segment: validating a
        thousand alike was a fifth of an opt-out's cost at a thousand segments, and so were their
        thousand uuid4() calls."""
        at = datetime.now(UTC)
        kinds: dict[tuple[str, str], MembershipChanged] = {}
        out = []
        for change, event_id in zip(changes, new_event_ids(len(changes)), strict=True):
            kind = kinds.get((change.action, change.reason))
            if kind is None:
                message = kinds[(change.action, change.reason)] = MembershipChanged(
                    event_id=event_id,
                    segment_id=change.segment_id,
                    customer_id=customer_id,
                    action=change.action,  # type: ignore[arg-type]
                    reason=change.reason,  # type: ignore[arg-type]
                    cause_event_id=cause.event_id,
                    cause_at=cause.at,
                    at=at,
                )
            else:
                fresh = {"event_id": event_id, "segment_id": change.segment_id}
                message = kind.model_copy(update=fresh)
            out.append(self._remember(message))
        return out

    def _remember(self, message: MembershipChanged) -> str:
        """The message's JSON, the model kept for its egress; a join counted as unannounced."""
        if message.action == "joined":
            self._unannounced[message.event_id] = message.customer_id
            if len(self._unannounced) > UNANNOUNCED_CAP:  # forget the oldest: it then counts as announced
                del self._unannounced[next(iter(self._unannounced))]
        raw = message.model_dump_json()
        self._built[raw] = message
        if len(self._built) > BUILT_CAP:  # a commit refused or a crash left it behind: decoded if met
            del self._built[next(iter(self._built))]
        return raw

    def _decode(self, raw: str) -> MembershipChanged:
        """An outbox message; the model itself when this process built it (decoding was a third
        of the egress' cost)."""
        built = self._built.pop(raw, None)
        return built if built is not None else _decode(raw)


def _outgoing(
    customer_id: str, pending: list[Pending], result: Committed, repair: frozenset[str] | None
) -> Outgoing:
    """What the member sets and egress need: the applied segments follow the slot, and after a
    possible failure (a repair, leftovers in the outbox) so do the candidates and the outbox's."""
    applied = {c.segment_id for c in result.applied}
    fresh = frozenset(m for c, m in pending if m and c.segment_id in applied)
    sync = set(applied)
    if repair is not None or len(result.outbox) > len(fresh):
        sync |= (repair or frozenset()) | result.segments | _segments_of(result.outbox)
    return Outgoing(customer_id, result.outbox, fresh, {s: s in result.segments for s in sync})


def _decode(raw: str) -> MembershipChanged:
    return MembershipChanged.model_validate_json(raw)
