"""`FileModelStore`: trained models under DATA_DIR/models, signed by the installation's model key.

Per model: `<id>.json` (signed metadata envelope), `<id>.<sha256[:16]>.pkl` (the pipeline's bytes,
named by content so a reader never pairs new bytes with old metadata), `<id>.png` (the report).
The envelope is written last, atomically: a model exists once its envelope does.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.segmenter.modeling.integrity import (
    SHA256_HEX,
    ModelIntegrityError,
    envelope,
    unpickle_verified,
    verified_metadata,
)
from services.segmenter.modeling.metadata import ModelMetadata, check_model_id
from shared.secrets import read_or_create_secret
from shared.settings import ServiceSettings

if TYPE_CHECKING:
    # Types only: importing scikit-learn is over half of a segmenter's start-up (see integrity.py).
    from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)
KEY_FILE = "model-key"
MODELS_DIR = "models"


class ModelNotFoundError(LookupError):
    """No model of that id in the store."""


class ModelExistsError(FileExistsError):
    """A model of that id exists and replacing it was not asked for."""


@dataclass(frozen=True)
class LoadedModel:
    metadata: ModelMetadata
    pipeline: Pipeline


class FileModelStore:
    def __init__(self, directory: Path, key: bytes) -> None:
        self.directory = directory
        self._key = key

    def save(self, metadata: ModelMetadata, pipeline: Pipeline, replace: bool = False) -> Path:
        """Write the model's bytes, then its signed envelope; returns the envelope's path."""
        target = self._envelope_path(check_model_id(metadata.id))
        previous = self._recorded_checksum(target)
        if self.exists(metadata.id) and not replace:
            raise ModelExistsError(f"model {metadata.id!r} exists; retrain under a new id or replace it")
        data = pickle.dumps(pipeline, protocol=5)
        signed = envelope(self._key, metadata, data)
        _write_atomically(self._bytes_path(metadata.id, signed["sha256"]), data)
        _write_atomically(target, json.dumps(signed, indent=2, sort_keys=True).encode())
        if previous is not None and previous[:16] != signed["sha256"][:16]:
            self._bytes_path(metadata.id, previous).unlink(missing_ok=True)
        logger.info("model saved", extra={"model_id": metadata.id, "n_training": metadata.n_training})
        return target

    def load(self, model_id: str) -> LoadedModel:
        """The verified model; raises `ModelIntegrityError` before unpickling anything changed."""
        metadata, checksum = self.metadata_and_checksum(model_id)
        path = self._bytes_path(model_id, checksum)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ModelIntegrityError(f"model {model_id!r}: model bytes are missing") from exc
        return LoadedModel(metadata, unpickle_verified(model_id, data, checksum))

    def metadata_and_checksum(self, model_id: str) -> tuple[ModelMetadata, str]:
        try:
            raw = self._envelope_path(check_model_id(model_id)).read_bytes()
        except FileNotFoundError as exc:
            raise ModelNotFoundError(f"no model {model_id!r}") from exc
        return verified_metadata(self._key, raw, model_id)

    def list(self) -> list[ModelMetadata]:
        """Metadata of every model whose envelope verifies, by id; refused ones are logged."""
        found = []
        for model_id in sorted(self.stamps()):
            try:
                found.append(self.metadata_and_checksum(model_id)[0])
            except (ModelIntegrityError, ModelNotFoundError) as exc:
                logger.warning("model refused", extra={"model_id": model_id, "error": str(exc)})
        return found

    def stamps(self) -> dict[str, tuple[int, int, int]]:
        """Model id -> (inode, mtime_ns, size) of its envelope: what a watcher compares to notice changes."""
        stamps = {}
        for path in self.directory.glob("*.json"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # removed while listing
            stamps[path.stem] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        return stamps

    def remove(self, model_id: str) -> None:
        """Delete a model: its envelope first, so no reader finds it half gone."""
        checksum = self._recorded_checksum(self._envelope_path(check_model_id(model_id)))
        self._envelope_path(model_id).unlink(missing_ok=True)
        if checksum is not None:
            self._bytes_path(model_id, checksum).unlink(missing_ok=True)
        self.report_path(model_id).unlink(missing_ok=True)

    def exists(self, model_id: str) -> bool:
        return self._envelope_path(check_model_id(model_id)).exists()

    def report_path(self, model_id: str) -> Path:
        return self.directory / f"{check_model_id(model_id)}.png"

    def save_report(self, model_id: str, png: bytes) -> Path:
        path = self.report_path(model_id)
        _write_atomically(path, png)
        return path

    def _envelope_path(self, model_id: str) -> Path:
        return self.directory / f"{model_id}.json"

    def _bytes_path(self, model_id: str, checksum: str) -> Path:
        return self.directory / f"{model_id}.{checksum[:16]}.pkl"

    def _recorded_checksum(self, target: Path) -> str | None:
        """The checksum an existing envelope names (unverified: only used to tidy its old bytes)."""
        try:
            checksum = json.loads(target.read_bytes())["sha256"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        # It names a file to delete: only a hex digest may, never a path.
        return checksum if isinstance(checksum, str) and SHA256_HEX.fullmatch(checksum) else None


def model_store(settings: ServiceSettings) -> FileModelStore:
    """The installation's store: DATA_DIR/models, keyed by DATA_DIR/model-key (created once)."""
    key = read_or_create_secret(settings.data_dir / KEY_FILE, lambda: secrets.token_hex(32).encode())
    directory = settings.data_dir / MODELS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    return FileModelStore(directory, bytes.fromhex(key.decode().strip()))


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
