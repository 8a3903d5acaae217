"""`segwarden` console script."""

from __future__ import annotations

import importlib
import sys
from enum import StrEnum

import typer
from pydantic import ValidationError

from services.audit import cli as audit_cli
from services.segmenter.modeling import cli as model_cli
from shared.auth import AuthConfigError
from shared.database import StoreInUseError
from shared.embedded import InfrastructureError
from shared.files import keep_files_private
from shared.http import ConfigurationError
from shared.pseudonym import PseudonymKeyError

app = typer.Typer(help="Consent-aware, real-time customer segmentation.", no_args_is_help=True)
app.add_typer(audit_cli.app, name="audit")
app.add_typer(model_cli.app, name="model")


class Service(StrEnum):
    consent = "consent"
    segmenter = "segmenter"
    audit = "audit"
    delivery = "delivery"


def fail_on_bad_settings(exc: Exception) -> None:
    """Print one line naming the wrong setting, then exit 2 (no traceback for a config mistake)."""
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        setting = "_".join(str(p) for p in first["loc"]).upper() or exc.title
        message = f"segwarden: invalid setting {setting}: {first['msg']}"
    else:
        message = f"segwarden: {exc}"
    typer.echo(message, err=True)
    raise typer.Exit(2)


SETTING_ERRORS = (
    ValidationError,
    ConfigurationError,
    AuthConfigError,
    PseudonymKeyError,
    InfrastructureError,
    StoreInUseError,  # two processes on a DATA_DIR that is one process's
)


@app.command()
def serve(service: Service) -> None:
    """Run one service in the foreground, configured from the environment."""
    module = importlib.import_module(f"services.{service.value}.main")
    try:
        module.run()
    except SETTING_ERRORS as exc:
        fail_on_bad_settings(exc)


@app.command()
def up() -> None:
    """Start the whole stack on this machine; Ctrl-C stops all of it."""
    from segwarden.stack import run_stack

    try:
        code = run_stack()
    except SETTING_ERRORS as exc:
        fail_on_bad_settings(exc)
    raise typer.Exit(code)


@app.command()
def demo(
    customers: int = typer.Option(200, help="synthetic customers"),
    duration: float = typer.Option(60.0, help="seconds to run"),
    seed: int = typer.Option(7, help="random seed"),
) -> None:
    """Drive synthetic customers, events and consent changes against a running stack."""
    import asyncio

    import httpx

    from segwarden.demo import run_demo

    try:
        asyncio.run(run_demo(customers, duration, seed))
    except httpx.ConnectError as exc:
        typer.echo(f"segwarden demo: no running stack answers ({exc}); start one with `make run`", err=True)
        raise typer.Exit(1) from exc
    except SETTING_ERRORS as exc:
        fail_on_bad_settings(exc)


@app.command()
def bench() -> None:
    """Run the benchmarks under bench/ and print their reports."""
    from segwarden.benchrunner import run_benchmarks

    raise typer.Exit(run_benchmarks())


def main() -> None:
    keep_files_private()  # every subcommand, and the services and broker `up` starts
    app(prog_name="segwarden", args=sys.argv[1:])
