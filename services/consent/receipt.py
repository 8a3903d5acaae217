"""`ErasureReceipts`: where a customer's erasure is done, what still remains where and until when."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from services.consent.adapters.http_peers import HttpPeerExport, PeerUnavailableError
from services.consent.adapters.sql_outbox import SqlOutbox
from services.consent.api.schemas import (
    ErasureReceiptOut,
    LedgerProofOut,
    ServiceErasureOut,
    TopicRetentionOut,
)
from services.consent.domain.consent import ErasureRecord
from services.consent.service import ConsentService
from shared import topics
from shared.topics import TopicNames

T = TypeVar("T")
KAFKA_ONLY = "on Apache Kafka, plus up to the topic's segment.ms; the embedded broker keeps everything"


class ErasureReceipts:
    def __init__(
        self, service: ConsentService, outbox: SqlOutbox, peers: HttpPeerExport, names: TopicNames
    ) -> None:
        self.service, self.outbox, self.peers, self.names = service, outbox, peers, names

    async def receipt(self, customer_id: str) -> ErasureReceiptOut | None:
        """The latest erasure's receipt, or None when the customer was never erased."""
        subject = self.service.pseudonym(customer_id)
        erasure = await asyncio.to_thread(self.service.store.latest_erasure, subject)
        if erasure is None:
            return None
        held, segmenter, proof = await asyncio.gather(
            asyncio.to_thread(self.service.store.still_held, customer_id),
            _optional(self.peers.segmenter_holdings(customer_id)),
            _optional(self.peers.erasure_proof(customer_id, erasure.event_id)),
        )
        services = {
            "consent": _consent_part(held.unsent, held.records, self.outbox.log_holds_erased),
            "segmenter": _segmenter_part(segmenter, self._marker_until(erasure)),
            "audit": _audit_part(proof),
        }
        done = all(part.status == "done" for part in services.values())
        return ErasureReceiptOut(
            customer_id=customer_id,
            subject=subject,
            event_id=erasure.event_id,
            requested_at=erasure.requested_at,
            status="done" if done else "pending",
            services=services,
            topics=self._topics(erasure),
            ledger=_ledger(proof) if isinstance(proof, dict) else None,
        )

    def _marker_until(self, erasure: ErasureRecord) -> datetime:
        """When the segmenter's erasure marker expires (it may start a little later: the
        request's record time)."""
        return erasure.requested_at + timedelta(milliseconds=self.names.retention.erasure_marker_ms())

    def _topics(self, erasure: ErasureRecord) -> list[TopicRetentionOut]:
        """Every topic that may hold the raw id, until its retention ends (Apache Kafka only)."""
        keyed = [spec for spec in topics.ALL if spec.customer_keyed]
        dead = [spec for spec in topics.WITH_DEAD_LETTERS if spec.customer_keyed]
        wanted = {self.names.name(s) for s in keyed} | {self.names.dlq(s) for s in dead}
        return [
            _retention(plan.name, plan.configs, erasure.requested_at)
            for plan in self.names.plan()
            if plan.name in wanted
        ]


def _retention(name: str, configs: dict[str, str], erased_at: datetime) -> TopicRetentionOut:
    if configs.get("cleanup.policy") == "compact":
        lag = int(configs.get("max.compaction.lag.ms", "0")) + int(configs.get("delete.retention.ms", "0"))
        bound = f"compacted: the erasure's tombstone replaces the value, then is dropped ({KAFKA_ONLY})"
        return TopicRetentionOut(topic=name, until=erased_at + timedelta(milliseconds=lag), bound=bound)
    ms = int(configs.get("retention.ms", "-1"))
    until = erased_at + timedelta(milliseconds=ms) if ms >= 0 else None
    return TopicRetentionOut(topic=name, until=until, bound=f"retention.ms={ms} ({KAFKA_ONLY})")


def _consent_part(unsent: int, records: int, log_holds_erased: bool) -> ServiceErasureOut:
    remains = [f"{records} consent record(s) made after the erasure (a new signup)"] if records else []
    if unsent:
        detail = f"{unsent} message(s) of the erasure not yet published"
        return ServiceErasureOut(status="pending", detail=detail, remains=remains)
    if log_holds_erased:
        detail = "the database's write-ahead log still holds pages of deleted rows until it is truncated"
        return ServiceErasureOut(status="pending", detail=detail, remains=remains)
    detail = "consent records deleted and the erasure published; a pseudonymous proof is kept"
    return ServiceErasureOut(status="done", detail=detail, remains=remains)


def _segmenter_part(held: list[str] | PeerUnavailableError, marker_until: datetime) -> ServiceErasureOut:
    if isinstance(held, PeerUnavailableError):
        return ServiceErasureOut(status="unavailable", detail=str(held))
    if held:
        return ServiceErasureOut(
            status="pending", detail="Redis still holds keys naming the customer", remains=held
        )
    marker = (
        "an erasure marker under the customer's pseudonym (the erasure's time and consent sequence,"
        f" no data), until about {marker_until.isoformat()}: it refuses input from before the erasure"
    )
    return ServiceErasureOut(
        status="done", detail="no key, member set or queue names the customer", remains=[marker]
    )


def _audit_part(proof: dict[str, Any] | None | PeerUnavailableError) -> ServiceErasureOut:
    if isinstance(proof, PeerUnavailableError):
        return ServiceErasureOut(status="unavailable", detail=str(proof))
    if proof is None:
        return ServiceErasureOut(status="pending", detail="the ledger has not recorded the erasure yet")
    seq = proof["record"]["seq"]
    return ServiceErasureOut(
        status="done",
        detail=f"recorded in the ledger at seq {seq}",
        remains=["the ledger's pseudonymous record of the erasure (kept: it proves the erasure)"],
    )


def _ledger(proof: dict[str, Any]) -> LedgerProofOut:
    record, inclusion = proof["record"], proof["proof"]
    return LedgerProofOut(
        seq=record["seq"],
        record_hash=record["hash"],
        tree_size=inclusion["tree_size"],
        root=inclusion["root"],
        path=inclusion["path"],
        checkpoint=proof["checkpoint"],
    )


async def _optional(part: Awaitable[T]) -> T | PeerUnavailableError:
    try:
        return await part
    except PeerUnavailableError as exc:
        return exc
