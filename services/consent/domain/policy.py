"""Consent decisions: what to record and publish for a choice, an expiry or an erasure (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from services.consent.domain.consent import (
    ConsentEntry,
    CurrentConsent,
    InvalidConsentError,
    Method,
    RecordConsent,
)
from shared.catalog import PurposeCatalog
from shared.events import (
    ConsentReason,
    ConsentStateSnapshot,
    ConsentStatus,
    Jurisdiction,
    PurposeState,
    new_event_id,
)

Current = Mapping[str, CurrentConsent]


class ConsentPolicy:
    """The rules of consent over one purpose catalog; fails closed where nothing was recorded."""

    def __init__(self, catalog: PurposeCatalog) -> None:
        self.catalog = catalog

    def validate(self, command: RecordConsent, now: datetime) -> None:
        """Raise InvalidConsentError naming the field when the command breaks a rule."""
        if self.catalog.get(command.purpose) is None:
            known = ", ".join(self.catalog.ids)
            raise InvalidConsentError("purpose", f"unknown purpose {command.purpose!r}; known: {known}")
        if command.expires_at is not None:
            if command.expires_at.tzinfo is None:
                raise InvalidConsentError("expires_at", "needs a timezone (RFC 3339)")
            if command.status == "granted" and command.expires_at <= now:
                raise InvalidConsentError("expires_at", "a grant must expire in the future")
        self._validate_notice(command)

    def _validate_notice(self, command: RecordConsent) -> None:
        """A choice can be made under a notice the catalog has shown, never under a future one."""
        latest = self.catalog.get(command.purpose)
        if command.notice_version is not None and latest is not None:
            if not 1 <= command.notice_version <= latest.notice_version:
                raise InvalidConsentError(
                    "notice_version", f"must be 1 to {latest.notice_version}, the purpose's current notice"
                )

    def effective_status(
        self, purpose: str, current: Current, now: datetime, jurisdiction: Jurisdiction | None = None
    ) -> ConsentStatus:
        record = current.get(purpose)
        if record is not None:
            return "granted" if record.effective_at(now) else "denied"
        return self._default(purpose, jurisdiction)

    def _default(self, purpose: str, jurisdiction: Jurisdiction | None) -> ConsentStatus:
        found = self.catalog.get(purpose)
        return found.default_for(jurisdiction) if found else "denied"

    def decide(self, command: RecordConsent, current: Current, now: datetime) -> list[ConsentEntry]:
        """The history rows for a choice: the choice itself, then a GPC denial per sale/share purpose."""
        self.validate(command, now)
        gpc_purposes = self.catalog.sale_or_share_ids if command.gpc else ()
        entries: list[ConsentEntry] = []
        working = dict(current)
        # Under GPC a sale/share purpose is denied whatever the body asked, so its GPC row replaces it.
        if command.purpose not in gpc_purposes:
            entries.append(self._entry(command, command.status, "user", command.method, working, now))
            working[command.purpose] = entries[-1].as_current()
        for purpose in gpc_purposes:
            # No notice was agreed to: the browser's signal denied it.
            gpc_command = replace(command, purpose=purpose, expires_at=None, notice_version=None)
            entries.append(self._entry(gpc_command, "denied", "gpc", "gpc", working, now))
            working[purpose] = entries[-1].as_current()
        return entries

    def expire(self, customer_id: str, current: Current, now: datetime) -> list[ConsentEntry]:
        """A denial (reason expired) for every grant whose expiry has passed."""
        due = [
            p for p, c in current.items() if c.status == "granted" and c.expires_at and c.expires_at <= now
        ]
        return [self._system_entry(customer_id, p, current[p], "expired", now) for p in sorted(due)]

    def erase(self, customer_id: str, current: Current, now: datetime) -> list[ConsentEntry]:
        """A denial (reason erasure) for every recorded grant, so consent.changes readers stop too."""
        granted = [p for p, c in current.items() if c.status == "granted"]
        return [self._system_entry(customer_id, p, current[p], "erasure", now) for p in sorted(granted)]

    def states(self, current: Current, now: datetime) -> dict[str, PurposeState]:
        """The effective state of every catalog purpose; the catalog default where nothing was recorded."""
        jurisdiction = _latest_jurisdiction(current)
        states = {}
        for purpose in self.catalog.ids:
            record = current.get(purpose)
            status = self.effective_status(purpose, current, now, jurisdiction)
            if record is None:
                states[purpose] = PurposeState(status=status, effective=status == "granted")
                continue
            states[purpose] = PurposeState(
                status=record.status,
                effective=record.effective_at(now),
                recorded_at=record.recorded_at,
                source=record.source,
                expires_at=record.expires_at,
                jurisdiction=record.jurisdiction,
                policy_version=record.policy_version,
                sequence=record.sequence,
                notice_version=record.notice_version,
            )
        return states

    def snapshot(self, customer_id: str, current: Current, now: datetime) -> ConsentStateSnapshot:
        return ConsentStateSnapshot(
            event_id=new_event_id(),
            customer_id=customer_id,
            purposes=self.states(current, now),
            updated_at=now,
        )

    def _entry(
        self,
        command: RecordConsent,
        status: ConsentStatus,
        reason: ConsentReason,
        method: Method,
        current: Current,
        now: datetime,
    ) -> ConsentEntry:
        previous = current.get(command.purpose)
        # Compared with what was last published (the recorded status), not with the status at `now`:
        # a lapsed grant the expiry job has not reached yet is still "granted" downstream.
        before = previous.status if previous else self._default(command.purpose, command.jurisdiction)
        expires_at = command.expires_at if status == "granted" else None
        # A renewal (granted again, another expiry) changes when consent ends: subscribers need it.
        renewed = status == "granted" and (previous.expires_at if previous else None) != expires_at
        return ConsentEntry(
            event_id=new_event_id(),
            customer_id=command.customer_id,
            purpose=command.purpose,
            status=status,
            previous_status=previous.status if previous else None,
            reason=reason,
            method=method,
            source=command.source,
            jurisdiction=command.jurisdiction,
            policy_version=command.policy_version,
            recorded_at=now,
            expires_at=expires_at,
            publishes=before != status or renewed,
            user_agent=command.user_agent,
            ip_truncated=command.ip_truncated,
            notice_version=command.notice_version,
        )

    def _system_entry(
        self, customer_id: str, purpose: str, record: CurrentConsent, reason: ConsentReason, now: datetime
    ) -> ConsentEntry:
        method: Method = "expiry" if reason == "expired" else "erasure"
        return ConsentEntry(
            event_id=new_event_id(),
            customer_id=customer_id,
            purpose=purpose,
            status="denied",
            previous_status="granted",
            reason=reason,
            method=method,
            source=f"segwarden-{method}",
            jurisdiction=record.jurisdiction,
            policy_version=record.policy_version,
            recorded_at=now,
            expires_at=None,
            # An expired grant is already ineffective on reads, but nobody downstream has heard of it.
            publishes=True,
        )


def _latest_jurisdiction(current: Current) -> Jurisdiction | None:
    if not current:
        return None
    # The latest by sequence, not by clock (which may step back); pre-sequence rows are older.
    return max(
        current.values(), key=lambda c: (c.sequence is not None, c.sequence or 0, c.recorded_at)
    ).jurisdiction
