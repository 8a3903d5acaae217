"""`segwarden audit …`: operator commands that read the ledger's store directly."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import Engine, inspect, make_url

from services.audit.adapters.ed25519 import Ed25519Signer
from services.audit.adapters.sql_database import make_engine
from services.audit.adapters.sql_ledger import SqlLedgerStore
from services.audit.adapters.sql_side_stores import SqlCheckpointStore
from services.audit.adapters.sql_tables import records
from services.audit.domain.verify import VerifyReport, verify_ledger
from services.audit.settings import AuditSettings

app = typer.Typer(help="The audit ledger.", no_args_is_help=True)


@app.command()
def verify(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (no progress bar)."),
    merkle: bool = typer.Option(False, "--merkle", help="Also recompute every checkpoint's Merkle root."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=0,
        help="Processes checking the chain at once, a seq range each; 0: one per core.",
    ),
) -> None:
    """Verify the ledger (AUDIT_DB_URL or $DATA_DIR/audit.db): exit 0 when intact, 1 when not."""
    settings = AuditSettings() if workers is None else AuditSettings(audit_verify_workers=workers)
    url = settings.db_url
    sqlite_file = make_url(url).database if url.startswith("sqlite") else None
    if sqlite_file is not None and not Path(sqlite_file).exists():
        _no_ledger(url)
    engine = make_engine(url)
    try:
        if not inspect(engine).has_table(records.name):
            _no_ledger(engine.url.render_as_string())
        report = _verify(settings, engine, show_progress=not as_json, merkle=merkle)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(asdict(report)))
    else:
        _print(report)
    raise typer.Exit(0 if report.ok else 1)


def _no_ledger(where: str) -> None:
    typer.echo(f"segwarden: no audit ledger in {where}", err=True)
    raise typer.Exit(2)


def _verify(settings: AuditSettings, engine: Engine, show_progress: bool, merkle: bool) -> VerifyReport:
    ledger, checkpoints = SqlLedgerStore(engine), SqlCheckpointStore(engine)
    signer = Ed25519Signer.existing(settings.data_dir)
    length, _ = ledger.head()
    columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress) as progress:
        task = progress.add_task("ledger", total=length)
        advance = lambda n: progress.advance(task, n)  # noqa: E731
        return verify_ledger(ledger, checkpoints.all(), signer, advance, merkle, settings.verify_workers)


def _print(report: VerifyReport) -> None:
    console = Console()
    if report.ok:
        console.print(
            f"[green]ok[/green]: {report.length} records, head {report.head}, "
            f"{report.checkpoints_checked} signed checkpoints match"
        )
    else:
        console.print(f"[red]bad[/red]: first bad seq {report.first_bad_seq}: {report.reason}")
