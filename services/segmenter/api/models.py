"""Route of /v1/models: the segmentation models the segmenter can assign with."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from services.segmenter.api.deps import Runtime, SegmentsRead
from services.segmenter.modeling.metadata import ModelMetadata
from services.segmenter.modeling.store import model_store

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=list[ModelMetadata])
async def list_models(_: SegmentsRead, runtime: Runtime) -> list[ModelMetadata]:
    """Every trained model whose signed metadata verifies (`segwarden model train` writes them)."""
    return await asyncio.to_thread(lambda: model_store(runtime.settings).list())
