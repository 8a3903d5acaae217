"""Destinations and their data-processing agreements: who may receive what, and why not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

Identifier = Literal["pseudonym", "customer_id"]
TransferMechanism = Literal["adequacy", "scc", "bcr", "derogation", "none"]

# EU and EEA states (ISO 3166-1 alpha-2): a processor there needs no transfer mechanism.
EEA = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO".split()
)


@dataclass(frozen=True)
class Agreement:
    """The data-processing agreement (GDPR Art. 28) that binds a destination's processor."""

    processor: str
    reference: str
    signed_on: date
    expires_on: date
    country: str
    transfer_mechanism: TransferMechanism


@dataclass(frozen=True)
class Destination:
    destination_id: str
    name: str
    endpoint: str
    segments: frozenset[str]
    purposes: frozenset[str]
    agreement: Agreement | None
    identifier: Identifier
    signing_secret: str


def agreement_problem(agreement: Agreement | None, today: date) -> str | None:
    """Why a destination under this agreement may receive nothing today, or None when it may."""
    if agreement is None:
        return "no data-processing agreement"
    if agreement.signed_on > today:
        return f"the agreement is signed only from {agreement.signed_on.isoformat()}"
    if agreement.expires_on < today:
        return f"the agreement expired on {agreement.expires_on.isoformat()}"
    if agreement.country not in EEA and agreement.transfer_mechanism == "none":
        return f"no transfer mechanism for a processor in {agreement.country}"
    return None


def active(destinations: list[Destination], today: date) -> list[Destination]:
    """The destinations that may receive today (fail closed: every other one gets nothing)."""
    return [d for d in destinations if agreement_problem(d.agreement, today) is None]
