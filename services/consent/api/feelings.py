"""The data-use question: the customer's optional answer from the preference center, and the
privacy officer's k-anonymous counts (scope `dsr`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from services.consent.api.deps import Dsr
from services.consent.api.preferences import Claims
from services.consent.preference.feelings import ANSWERS, DataUseFeelings
from services.consent.preference.messages import text
from shared.http import unprocessable

router = APIRouter(prefix="/preferences/{token}/feeling", tags=["preference center"])
officer = APIRouter(prefix="/v1/feedback", tags=["data use feedback"])


async def get_feelings(request: Request) -> DataUseFeelings:
    feelings: DataUseFeelings = request.app.state.runtime.feelings
    return feelings


FeelingsDep = Annotated[DataUseFeelings, Depends(get_feelings)]


class FeelingAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: str = Field(examples=list(ANSWERS))


class FeelingCounted(BaseModel):
    counted: bool = Field(description="false when the customer had answered before (counted once)")


class DataUseCounts(BaseModel):
    question: str
    k_anonymity: int
    counts: dict[str, int] = Field(
        description="customers per answer; answers given by fewer than k_anonymity are merged into"
        " `_suppressed`, itself left out when still fewer"
    )


@router.post("", response_model=FeelingCounted)
async def answer_feeling(claims: Claims, body: FeelingAnswer, feelings: FeelingsDep) -> FeelingCounted:
    """Count the customer's answer (once); nothing ties it to them."""
    if body.answer not in ANSWERS:
        raise unprocessable(["body", "answer"], f"answer: one of {', '.join(ANSWERS)}")
    return FeelingCounted(counted=await feelings.answer(claims.customer_id, body.answer))


@officer.get("/data-use", response_model=DataUseCounts)
async def data_use_counts(_: Dsr, feelings: FeelingsDep) -> DataUseCounts:
    """How customers feel about how their data is used: counts only, small groups suppressed."""
    return DataUseCounts(
        question=text("en", "feeling_question"),
        k_anonymity=feelings.k_anonymity,
        counts=await feelings.counts(),
    )
