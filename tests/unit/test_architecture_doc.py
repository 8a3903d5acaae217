"""docs/architecture.md names only modules that exist, so the layout it teaches is the code's."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PATH = re.compile(r"`((?:services|shared|segwarden)/[\w/]+(?:\.py|/))`")
BULLET_DIR = re.compile(r"^- `((?:services|shared)/[\w/]+/)`:")
MODULE = re.compile(r"`(\w+\.py)`")


def named_paths(text: str) -> set[str]:
    """Every full path in the doc, and each bare `x.py` of a bullet that opens with its directory."""
    paths = set(PATH.findall(text))
    directory = None
    for line in text.splitlines():
        if line.startswith("- "):
            opened = BULLET_DIR.match(line)
            directory = opened.group(1) if opened else None
        elif not line.startswith("  "):
            directory = None
        if directory is not None:
            paths.update(directory + name for name in MODULE.findall(PATH.sub("", line)))
    return paths


def test_every_module_the_architecture_names_exists() -> None:
    paths = named_paths(DOC.read_text())
    assert "services/audit/domain/merkle.py" in paths  # the parser reads the reference list
    missing = sorted(path for path in paths if not (ROOT / path).exists())
    assert missing == []
