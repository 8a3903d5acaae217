"""`HttpPeerExport`: what the segmenter, the audit service and the delivery service hold about a
customer, for the DSAR bundle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import httpx

log = logging.getLogger(__name__)
AUDIT_PAGE = 1000
AUDIT_MAX_PAGES = 100


class PeerUnavailableError(RuntimeError):
    """A peer service did not answer usefully; the bundle says so instead of failing."""


class HttpPeerExport:
    def __init__(
        self, segmenter_url: str, audit_url: str, delivery_url: str, token: str, timeout: float
    ) -> None:
        self.segmenter_url = segmenter_url.rstrip("/")
        self.audit_url = audit_url.rstrip("/")
        self.delivery_url = delivery_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout = timeout

    async def segments(self, customer_id: str) -> Any:
        async with self._client() as client:
            body = await _get(client, f"{self.segmenter_url}/v1/customers/{customer_id}/segments", {})
        return body.get("segments", body)

    async def explained_segments(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's segments with why they are in each (the segmenter's `explained`)."""
        async with self._client() as client:
            body = await _get(client, f"{self.segmenter_url}/v1/customers/{customer_id}/segments", {})
        explained = body.get("explained", [])
        if not isinstance(explained, list) or not all(isinstance(s, dict) for s in explained):
            raise PeerUnavailableError(f"{self.segmenter_url}: unexpected body")
        return explained

    async def segment_definitions(self) -> list[dict[str, Any]]:
        """Every live segment with the features its rule reads (the segmenter's `GET /v1/segments`)."""
        async with self._client() as client:
            body = await _get(client, f"{self.segmenter_url}/v1/segments", {})
        segments = body.get("segments")
        if not isinstance(segments, list) or not all(isinstance(s, dict) for s in segments):
            raise PeerUnavailableError(f"{self.segmenter_url}: unexpected body")
        return segments

    async def applied_consent(self, customer_id: str) -> dict[str, dict[str, Any]]:
        """Per purpose, the consent change the segmenter holds: `{status, sequence, recorded_at}`."""
        return await self._consent_held(self.segmenter_url, customer_id)

    async def delivered_consent(self, customer_id: str) -> dict[str, dict[str, Any]]:
        """Per purpose, the consent change the delivery service applied and the webhooks it sent:
        `{effective, sequence, cause_id, applied_at, webhooks}`."""
        return await self._consent_held(self.delivery_url, customer_id)

    async def _consent_held(self, base_url: str, customer_id: str) -> dict[str, dict[str, Any]]:
        async with self._client() as client:
            body = await _get(client, f"{base_url}/v1/customers/{customer_id}/consent", {})
        purposes = body.get("purposes")
        if not isinstance(purposes, dict) or not all(isinstance(p, dict) for p in purposes.values()):
            raise PeerUnavailableError(f"{base_url}: unexpected body")
        return purposes

    async def propagation(self, customer_id: str) -> list[Any]:
        """Which third-party destinations got the customer, in which segments, and whether the
        last change reached them (the delivery service's propagation)."""
        async with self._client() as client:
            url = f"{self.delivery_url}/v1/customers/{customer_id}/propagation"
            body = await _get(client, url, {})
        destinations = body.get("destinations")
        if not isinstance(destinations, list):
            raise PeerUnavailableError(f"{self.delivery_url}: unexpected body")
        return destinations

    async def audit_trail(self, customer_id: str) -> list[Any]:
        records: list[Any] = []
        params: dict[str, Any] = {"customer_id": customer_id, "limit": AUDIT_PAGE}
        async with self._client() as client:
            for _ in range(AUDIT_MAX_PAGES):
                body = await _get(client, f"{self.audit_url}/v1/audit", params)
                records.extend(body.get("records", []))
                after = body.get("next_after_seq")
                if after is None or not body.get("records"):
                    return records
                params["after_seq"] = after
        return records

    async def recorded_consent_changes(self, customer_id: str, event_ids: Sequence[str]) -> set[str]:
        """Which of these consent changes the ledger holds a record of: one indexed look-up each
        (audit maps each id to the one it keeps), asked together, never the customer's trail."""

        async def held(client: httpx.AsyncClient, event_id: str) -> bool:
            params = {"customer_id": customer_id, "kind": "consent_change", "event_id": event_id, "limit": 1}
            records = (await _get(client, f"{self.audit_url}/v1/audit", params)).get("records")
            if not isinstance(records, list):
                raise PeerUnavailableError(f"{self.audit_url}: unexpected body")
            return bool(records)

        async with self._client() as client:
            found = await asyncio.gather(*(held(client, e) for e in event_ids), return_exceptions=True)
        if failed := next((f for f in found if isinstance(f, BaseException)), None):
            raise failed
        return {event_id for event_id, present in zip(event_ids, found, strict=True) if present}

    async def segmenter_holdings(self, customer_id: str) -> list[str]:
        """The segmenter's keys that still name the customer (empty once it forgot them)."""
        async with self._client() as client:
            body = await _get(client, f"{self.segmenter_url}/v1/customers/{customer_id}/erasure", {})
        return [str(name) for name in body.get("held", [])]

    async def erasure_proof(self, customer_id: str, event_id: str) -> dict[str, Any] | None:
        """The erasure's ledger record, a signed checkpoint covering it and its inclusion proof;
        None while the ledger does not hold it yet."""
        params = {"customer_id": customer_id, "kind": "erasure_request", "limit": AUDIT_PAGE}
        async with self._client() as client:
            body = await _get(client, f"{self.audit_url}/v1/audit", params)
            record = next((r for r in body.get("records", []) if r.get("event_id") == event_id), None)
            if record is None:
                return None
            try:
                seq = int(record["seq"])
                checkpoint = await _get(client, f"{self.audit_url}/v1/audit/checkpoint", {})
                if int(checkpoint["tree_size"]) <= seq:  # signed before the record: sign one covering it
                    checkpoint = await _send(client, "POST", f"{self.audit_url}/v1/audit/checkpoint", {})
                proof_url = f"{self.audit_url}/v1/audit/records/{seq}/proof"
                proof = await _get(client, proof_url, {"tree_size": checkpoint["tree_size"]})
                missing = ({"tree_size", "root", "path"} - set(proof)) | ({"hash"} - set(record))
            except (KeyError, TypeError, ValueError) as exc:
                reason = f"{self.audit_url}: unexpected body ({type(exc).__name__})"
                raise PeerUnavailableError(reason) from exc
            if missing:
                raise PeerUnavailableError(f"{self.audit_url}: the proof lacks {sorted(missing)}")
        return {"record": record, "checkpoint": checkpoint, "proof": proof}

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers=self.headers, timeout=self.timeout)


async def _get(client: httpx.AsyncClient, url: str, params: dict[str, Any]) -> dict[str, Any]:
    return await _send(client, "GET", url, params)


async def _send(client: httpx.AsyncClient, method: str, url: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        response = await client.request(method, url, params=params)
    except httpx.HTTPError as exc:
        raise PeerUnavailableError(f"{url}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise PeerUnavailableError(f"{url}: HTTP {response.status_code}")
    body = response.json()
    if not isinstance(body, dict):
        raise PeerUnavailableError(f"{url}: unexpected body")
    return body
