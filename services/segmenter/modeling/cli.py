"""`segwarden model ...`: train segmentation models on consented customers, list the stored ones.

scikit-learn, matplotlib and the adapters are imported inside the commands: every `segwarden`
invocation loads this module, and `segwarden serve` should not pay a second for them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.segmenter.modeling.metadata import ALGORITHMS
from services.segmenter.settings import SegmenterSettings

if TYPE_CHECKING:
    from services.segmenter.modeling.training import TrainedModel, TrainingSpec

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
    from services.segmenter.modeling.metadata import ModelIdError
    from services.segmenter.modeling.store import ModelExistsError
    from services.segmenter.modeling.trainer import LedgerError
    from services.segmenter.modeling.training import TrainingError, TrainingSpec

    settings = SegmenterSettings()
    spec = TrainingSpec(name, _clusters(clusters), algorithm, min_cluster_size or settings.k_anonymity, seed)
    try:
        model = asyncio.run(_train(settings, spec))
    except (TrainingError, ModelIdError, ModelExistsError, LedgerError) as exc:
        console.print(f"[red]segwarden model train: {exc}[/red]")
        raise typer.Exit(1) from exc
    _summary(model, settings)


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


async def _train(settings: SegmenterSettings, spec: TrainingSpec) -> TrainedModel:
    import redis.asyncio as aioredis
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from services.audit.settings import AuditSettings
    from services.segmenter.adapters.redis_keys import KeyLayout
    from services.segmenter.adapters.redis_store import RedisCustomerStore
    from services.segmenter.modeling.ledger import SqlAuditLedger
    from services.segmenter.modeling.sources import RedisTrainingSource
    from services.segmenter.modeling.store import model_store
    from services.segmenter.modeling.trainer import TrainingRun, train_model

    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    customers = RedisCustomerStore(client, KeyLayout(settings.redis_namespace), settings.dedupe_ttl_s)
    source = RedisTrainingSource(customers, settings.topic_partitions)
    run = TrainingRun(spec, model_store(settings), SqlAuditLedger(AuditSettings()))
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            scan = progress.add_task(
                "reading customers with profiling consent", total=await source.population()
            )
            run.on_scanned = lambda looked_at: progress.update(scan, completed=looked_at)
            run.on_step = lambda step: progress.update(scan, description=step)
            return await train_model(source, run)
    finally:
        await client.aclose()  # type: ignore[attr-defined]  # redis>=5; the stubs predate it


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
