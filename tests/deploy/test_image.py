"""The Dockerfile, read statically (no Docker engine here): one slim multi-stage non-root image."""

from __future__ import annotations

import re
import tomllib

from tests.deploy.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
# Continuation lines joined, comments dropped: one instruction per entry.
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]
IGNORE = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]


def final_stage() -> list[str]:
    starts = [i for i, line in enumerate(INSTRUCTIONS) if line.startswith("FROM ")]
    assert len(starts) >= 2, "expected a build stage and a runtime stage"
    return INSTRUCTIONS[starts[-1] :]


def test_base_image_is_a_pinned_slim_python() -> None:
    (arg,) = [line for line in INSTRUCTIONS if line.startswith("ARG PYTHON_IMAGE=")]
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm", arg)


def test_runtime_stage_runs_segwarden_serve_as_a_non_root_user() -> None:
    stage = final_stage()
    (user,) = [line for line in stage if line.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in {"0", "root"}
    assert stage[-1] == 'CMD ["segwarden", "serve", "consent"]'
    env = " ".join(line for line in stage if line.startswith("ENV "))
    assert "BIND_HOST=0.0.0.0" in env and "DATA_DIR=/var/lib/segwarden" in env
    # Only the built virtualenv comes from the build stage: no compiler, no pip cache.
    assert [line for line in stage if "--from=" in line] == [
        "COPY --from=build /opt/segwarden /opt/segwarden"
    ]


def test_build_context_holds_every_package_and_every_copied_path() -> None:
    assert IGNORE[0] == "*", ".dockerignore is an allow-list"
    allowed = {line[1:] for line in IGNORE if line.startswith("!")}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {pattern.rstrip("*") for pattern in packages["include"]} <= allowed
    for line in INSTRUCTIONS:
        if line.startswith("COPY ") and "--from=" not in line:
            source = [word for word in line.split()[1:] if not word.startswith("--")][0]
            assert source == "." or any(source == a or source.startswith(a + "/") for a in allowed), source
            assert (ROOT / source).exists(), source
