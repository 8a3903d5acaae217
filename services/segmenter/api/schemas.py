"""Request and response models of the segmenter API (separate from the strict topic models)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.segmenter.rules.nodes import features_of
from services.segmenter.rules.parser import MAX_RULE_LENGTH, parse
from shared.events import PURPOSE_ID_PATTERN, SegmentDefinition


class SegmentRequest(BaseModel):
    """A rule-based segment (`rule`) or a model-based one (`model` and `cluster`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Big spenders",
                    "rule": "total_spend >= 500 and event_count > 3",
                    "required_purposes": ["marketing_email"],
                    "description": "customers who spent 500 or more",
                }
            ]
        }
    )

    name: Annotated[str, Field(min_length=1, max_length=256)]
    # The rule language checks the length itself, so the 422 names the position and the limit.
    rule: Annotated[str, Field(json_schema_extra={"maxLength": MAX_RULE_LENGTH})] | None = None
    model: Annotated[str, Field(max_length=128)] | None = None
    cluster: Annotated[int, Field(ge=0)] | None = None
    required_purposes: list[Annotated[str, Field(pattern=PURPOSE_ID_PATTERN)]] = []
    description: Annotated[str, Field(max_length=2048)] = ""


class SegmentResponse(BaseModel):
    segment_id: str
    name: str
    rule: str | None
    model: str | None
    cluster: int | None
    required_purposes: list[str]
    description: str
    version: int
    updated_at: datetime
    # Added: what the rule reads, so a reader (the preference center) need not parse rules.
    features: list[str] = Field([], description="the features the rule reads; empty for a model segment")

    @classmethod
    def of(cls, d: SegmentDefinition) -> SegmentResponse:
        return cls(
            segment_id=d.segment_id,
            name=d.name,
            rule=d.rule,
            model=d.model,
            cluster=d.cluster,
            required_purposes=list(d.required_purposes),
            description=d.description,
            version=d.version,
            updated_at=d.updated_at,
            features=sorted(features_of(parse(d.rule))) if d.rule else [],
        )


class SegmentList(BaseModel):
    segments: list[SegmentResponse]


class SegmentDeleted(BaseModel):
    segment_id: str
    deleted: bool


class MembersPage(BaseModel):
    members: list[str]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null when done")


class SegmentStats(BaseModel):
    segment_id: str
    size: int
    k_anonymity: int
    breakdowns: dict[str, dict[str, int]] = Field(
        description="member counts per profile attribute value; groups smaller than k_anonymity "
        "are merged into `_suppressed` (itself omitted when smaller than k_anonymity)"
    )


class ReasonOut(BaseModel):
    """A part of why a customer is in a segment (services/segmenter/rules/explain.py)."""

    model_config = ConfigDict(from_attributes=True)

    kind: Literal["condition", "all", "any", "not", "rule"] = Field(
        description="condition: `feature op value`; all/any: every/one of `parts`; not: `parts[0]`"
        " does not hold; rule: a part in rule text (no feature on one side)"
    )
    feature: str | None = None
    op: str | None = Field(None, description="a rule operator, or `is set` for a bare feature")
    value: bool | int | float | str | list[bool | int | float | str] | None = None
    text: str | None = None
    parts: list[ReasonOut] = []


class SegmentExplained(BaseModel):
    segment_id: str
    name: str
    description: str
    required_purposes: list[str]
    reason: ReasonOut | None = Field(description="the rule in parts; null for a model-based segment")


class CustomerSegments(BaseModel):
    customer_id: str
    segments: list[str]
    explained: list[SegmentExplained] = Field(
        [], description="each segment of `segments` still defined, with why the customer is in it"
    )
