"""Request and response models of the delivery API (separate from the domain and the store's rows)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.delivery.domain.destinations import Identifier, TransferMechanism
from shared.events import PurposeId, SegmentId, ShortText

Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
DESTINATION_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class AgreementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    processor: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    reference: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    signed_on: date
    expires_on: date
    country: Country = Field(description="ISO 3166-1 alpha-2 code of where the processor handles the data")
    transfer_mechanism: TransferMechanism = Field(
        description="What makes a transfer outside the EEA lawful; `none` only for a processor in the EEA"
    )

    @field_validator("signed_on", "expires_on", mode="before")
    @classmethod
    def _iso_date_text(cls, value: object) -> object:
        # pydantic would read a number as seconds since 1970; a contract date is `YYYY-MM-DD`.
        if not isinstance(value, str | date):
            raise ValueError("expected a date as YYYY-MM-DD")
        return value

    @model_validator(mode="after")
    def _expires_after_signing(self) -> AgreementIn:
        if self.expires_on <= self.signed_on:
            raise ValueError("expires_on must come after signed_on")
        return self


EXAMPLE: dict[str, Any] = {
    "name": "Newsletter platform",
    "endpoint": "https://hooks.mailer.example/segwarden",
    "segments": ["vip"],
    "purposes": ["marketing_email"],
    "agreement": {
        "processor": "Mailer GmbH",
        "reference": "DPA-2026-7",
        "signed_on": "2026-01-15",
        "expires_on": "2027-01-15",
        "country": "DE",
        "transfer_mechanism": "none",
    },
    "identifier": "pseudonym",
    "signing_secret": "whsec_9f2c4e7a1b3d5f6a8c0e2d4b6a8f0c1e",
}


class DestinationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    endpoint: AnyHttpUrl
    segments: Annotated[list[SegmentId], Field(max_length=256)]
    purposes: Annotated[
        list[PurposeId],
        Field(max_length=64, description="Purposes its recipients need, on top of each segment's own"),
    ] = []
    agreement: AgreementIn | None = None
    identifier: Identifier = "pseudonym"
    signing_secret: Annotated[
        str, StringConstraints(min_length=32, max_length=256), Field(description="Write-only: never returned")
    ]


class SegmentPropagation(BaseModel):
    segment_id: str
    held: bool = Field(description="The destination was told `joined` and not `left` since")
    last_action: Literal["joined", "left"]
    last_reason: str
    last_status: Literal["pending", "delivered", "dead", "withheld"]
    reached: bool = Field(description="The last change was acknowledged by the destination")
    changed_at: str = Field(description="When the last change was routed")
    settled_at: datetime | None = Field(description="When it was delivered, dead-lettered or withheld")


class DestinationPropagation(BaseModel):
    destination_id: str
    name: str | None = Field(description="Null when the destination was deleted since")
    processor: str | None
    country: str | None
    segments: list[SegmentPropagation]


class PropagationOut(BaseModel):
    """Where the customer's segment memberships went (GDPR Art. 15(1)(c), 19)."""

    customer_id: str
    destinations: list[DestinationPropagation]


class WebhookCounts(BaseModel):
    total: int = Field(description="Webhooks that followed from the change (0: no destination was told)")
    delivered: int = Field(description="Of those, acknowledged by their destination")
    pending: int = Field(description="Of those, still to be sent (or retried)")
    failed: int = Field(description="Of those, dead-lettered or withheld (a destination without agreement)")


class AppliedConsent(BaseModel):
    effective: bool
    sequence: int | None = Field(description="The customer's consent sequence of the change held")
    cause_ids: list[str] = Field(
        description="The inputs that carried that change: its `consent.changes` event_id and the"
        " `consent.state` snapshot's, as far as they arrived"
    )
    applied_at: str | None = Field(description="When the first of them was applied")
    webhooks: WebhookCounts | None = Field(
        description="What followed from them, directly or through the segmenter's membership change;"
        " null while no input of the change is recorded (consent applied before 0004)."
        " Ended webhooks are pruned after DELIVERY_OUTBOX_RETENTION_S unless the latest"
        " of their destination and segment"
    )


class CustomerConsentOut(BaseModel):
    """The consent delivery has applied to the customer, per purpose (empty for an unknown one)."""

    customer_id: str
    purposes: dict[str, AppliedConsent]


class DestinationOut(BaseModel):
    destination_id: str
    name: str
    endpoint: str
    segments: list[str]
    purposes: list[str]
    agreement: AgreementIn | None
    identifier: Identifier
    status: Literal["active", "suspended", "paused"] = Field(
        description="`suspended`: no valid agreement, it receives nothing; `paused`: its endpoint"
        " answered 410 Gone, its webhooks wait for a PUT"
    )
    reason: ShortText | None = Field(description="Why it is suspended or paused; null when active")
    circuit: Literal["closed", "open", "half_open"] = Field(
        description="The circuit breaker of its endpoint: `open` holds its webhooks back"
    )
    deliveries: dict[str, int] = Field(description="Webhooks by state: pending, delivered, dead, withheld")


class DestinationList(BaseModel):
    destinations: list[DestinationOut]
