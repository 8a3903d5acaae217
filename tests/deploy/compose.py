"""docker-compose.yml as data, and the environment it gives a service, re-pointed at the test's stores."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import yaml

from tests.deploy.conftest import DEPLOY, ROOT

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")
# Where the services find each other and listen: the harness picks those per test.
_PER_TEST = {
    "BIND_HOST",
    "CONSENT_URL",
    "SEGMENTER_URL",
    "AUDIT_URL",
    "DELIVERY_URL",
    "CONSENT_PORT",
    "SEGMENTER_PORT",
    "AUDIT_PORT",
    "DELIVERY_PORT",
}


def resolve(text: str, variables: dict[str, str] | None = None) -> str:
    """Interpolate as compose does: `${V:-default}`, `${V:?error}` and `${V}` from `variables`."""

    def value(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if variables and variables.get(name):
            return variables[name]
        if kind == "-":
            return rest
        raise KeyError(f"{name} is required: {rest or 'no default'}")

    return _VARIABLE.sub(value, text)


def generated_secrets() -> dict[str, str]:
    """What `python3 deploy/make_env.py > .env` would write."""
    output = subprocess.run(
        [sys.executable, str(DEPLOY / "make_env.py")], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in output.splitlines())


def service_environment(name: str, variables: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """The compose environment of `name`, interpolated, minus per-test addresses, plus `overrides`."""
    env = {key: resolve(str(value), variables) for key, value in SERVICES[name]["environment"].items()}
    return {key: value for key, value in env.items() if key not in _PER_TEST} | overrides
