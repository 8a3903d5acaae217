"""Fixtures for the deploy tests: the repository's deploy files and Debian's Prometheus binaries."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import PG_ADMIN_URL

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: `make test` installs Debian's prometheus package (tests/prepare.py)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return _binary("prometheus")


@pytest.fixture
def postgres_databases() -> Iterator[dict[str, str]]:
    """Fresh `consent` and `audit` databases for one test, like deploy/postgres/init-databases.sql."""
    psycopg = pytest.importorskip("psycopg")
    suffix = uuid.uuid4().hex[:10]
    names = {service: f"sw_{service}_{suffix}" for service in ("consent", "audit")}
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} does not answer: {exc}")
    base = urlsplit(PG_ADMIN_URL)
    try:
        for name in names.values():
            admin.execute(f'CREATE DATABASE "{name}"')
        yield {service: f"postgresql+psycopg://{base.netloc}/{name}" for service, name in names.items()}
    finally:
        for name in names.values():
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def compose_env(service_env: dict[str, str], postgres_databases: dict[str, str]) -> dict[str, dict[str, str]]:
    """Per service, the environment docker-compose.yml gives it with secrets from deploy/make_env.py,
    pointed at the test's broker, Redis, topic prefix, data dir and PostgreSQL databases."""
    from tests.deploy.compose import generated_secrets, service_environment

    secrets = generated_secrets()
    # The generated admin token plus the harness's, so `bearer()` works as in every other test.
    secrets["AUTH_TOKENS"] += f",{service_env['INTERNAL_TOKEN']}=*"
    shared = {
        key: service_env[key] for key in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "TOPIC_PREFIX", "DATA_DIR")
    }
    return {
        "consent": service_environment(
            "consent", secrets, shared | {"CONSENT_DB_URL": postgres_databases["consent"]}
        ),
        "segmenter": service_environment("segmenter", secrets, shared),
        "audit": service_environment(
            "audit", secrets, shared | {"AUDIT_DB_URL": postgres_databases["audit"]}
        ),
        "delivery": service_environment("delivery", secrets, shared),
    }
