"""Files under DATA_DIR are their owner's alone: databases with ids and IP prefixes, keys, logs."""

from __future__ import annotations

import os
from pathlib import Path

# New files are 0600 and new directories 0700, whoever creates them: SQLite (its -wal and -shm
# files too), faust, the model store, the log files `segwarden up` writes, child processes.
PRIVATE_UMASK = 0o077


def keep_files_private() -> None:
    """Set the process's umask; call first thing at process start, before anything is created."""
    os.umask(PRIVATE_UMASK)


def private_directory(path: Path) -> Path:
    """`path` created 0700 (its missing parents too). An existing directory keeps its mode: it
    may be one the operator chose to share, and changing it is the operator's call."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)  # mkdir's mode is masked by the umask; say exactly what is meant
    return path
