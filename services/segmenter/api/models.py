"""Route of /v1/models: the segmentation models the segmenter can assign with."""

from __future__ import annotations

from fastapi import APIRouter

from services.segmenter.api.deps import CanRead, Context
from services.segmenter.api.schemas import ModelInfo

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=list[ModelInfo])
async def list_models(ctx: Context, _: CanRead) -> list[ModelInfo]:
    """Trained models found under DATA_DIR/models (training and assignment are issue 7's)."""
    found = []
    for path in sorted((ctx.settings.data_dir / "models").glob("*/metadata.json")):
        found.append(ModelInfo.model_validate_json(path.read_text()))
    return found
