"""`segwarden model ...`: train segmentation models on consented customers, list the stored ones.

scikit-learn, matplotlib and the adapters (`runner.py`) are imported inside the commands: every `segwarden`
invocation loads this module, and `segwarden serve` should not pay a second for them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.segmenter.modeling.metadata import ALGORITHMS, ModelIdError
from services.segmenter.settings import SegmenterSettings

if TYPE_CHECKING:
    from services.segmenter.modeling.training import TrainedModel

app = typer.Typer(help="Segmentation models trained on customers who allow profiling.", no_args_is_help=True)
console = Console(stderr=True)


@app.command("train")
def train_command(
    name: Annotated[str, typer.Option("--name", help="model id, used by segments as `model`")],
    clusters: Annotated[str, typer.Option(help="number of clusters, or `auto` (best silhouette of 2..8)")],
    algorithm: Annotated[str, typer.Option(help=f"one of {', '.join(ALGORITHMS)}")] = "kmeans",
    min_cluster_size: Annotated[
        int | None, typer.Option(help="smallest cluster allowed [K_ANONYMITY]")
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed of the fit")] = 0,
) -> None:
    """Train a clustering model on the customers whose profiling consent is effective, and no one else."""
    from segwarden.cli import SETTING_ERRORS, fail_on_bad_settings

    try:
        settings = SegmenterSettings()
    except SETTING_ERRORS as exc:
        fail_on_bad_settings(exc)
    size = min_cluster_size or settings.k_anonymity
    _summary(_train(settings, name, _clusters(clusters), algorithm, size, seed), settings)


def _train(
    settings: SegmenterSettings, name: str, clusters: int | None, algorithm: str, size: int, seed: int
) -> TrainedModel:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from services.segmenter.modeling.runner import run_training
    from services.segmenter.modeling.store import ModelExistsError
    from services.segmenter.modeling.trainer import LedgerError
    from services.segmenter.modeling.training import TrainingError, TrainingSpec

    try:
        return asyncio.run(
            run_training(settings, TrainingSpec(name, clusters, algorithm, size, seed), console)
        )
    except (TrainingError, ModelIdError, ModelExistsError, LedgerError) as exc:
        message = str(exc)
    except RedisConnectionError as exc:
        message = f"the segmenter's Redis at {settings.redis_url} did not answer: {exc}"
    console.print(f"[red]segwarden model train: {message}[/red]", soft_wrap=True)
    raise typer.Exit(1)


@app.command("list")
def list_command() -> None:
    """List the stored models whose signature verifies."""
    from services.segmenter.modeling.store import model_store

    table = Table("id", "created", "algorithm", "clusters", "n_training", "silhouette")
    for meta in model_store(SegmenterSettings()).list():
        quality = "-" if meta.silhouette is None else f"{meta.silhouette:.3f}"
        created = f"{meta.created_at:%Y-%m-%d %H:%M}"
        table.add_row(meta.id, created, meta.algorithm, str(meta.clusters), str(meta.n_training), quality)
    Console().print(table)


def _clusters(value: str) -> int | None:
    if value == "auto":
        return None
    if not value.isdigit():
        raise typer.BadParameter(
            f"expected a number of clusters or `auto`, got {value!r}", param_hint="--clusters"
        )
    return int(value)


def _summary(model: TrainedModel, settings: SegmenterSettings) -> None:
    from services.segmenter.modeling.store import model_store

    meta = model.metadata
    out = Console()
    out.print(f"model [bold]{meta.id}[/bold]: {meta.clusters} clusters ({meta.algorithm})")
    out.print(f"trained on {meta.n_training} customers with profiling consent, and no one else")
    if meta.k_reason:
        out.print(f"clusters chosen automatically: {meta.k_reason}")
    out.print(f"cluster sizes: {meta.cluster_sizes}; silhouette: {meta.silhouette}")
    out.print(
        f"stored in {model_store(settings).directory}; report: {model_store(settings).report_path(meta.id)}"
    )
