"""A model file is data, not code: HMAC-signed metadata, a checksum of the bytes, a strict unpickler.

Unpickling runs code, so nothing is unpickled before the installation's HMAC over (metadata,
checksum) and the checksum of the bytes both match; even then only scikit-learn estimators and
numpy arrays may be rebuilt, in case the key ever leaks.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import pickle
import re
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from services.segmenter.modeling.metadata import ModelMetadata

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

DOMAIN = b"segwarden-model-v1\n"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_NUMPY_GLOBALS = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
}


class ModelIntegrityError(Exception):
    """A model file that this installation did not write, or that changed since: never loaded."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signature(key: bytes, metadata: dict[str, Any], checksum: str) -> str:
    """HMAC-SHA256 over the canonical metadata JSON and the checksum of the model bytes."""
    canonical = json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, DOMAIN + canonical.encode() + b"\n" + checksum.encode(), hashlib.sha256).hexdigest()


def envelope(key: bytes, metadata: ModelMetadata, model_bytes: bytes) -> dict[str, Any]:
    """What is written as `<id>.json`: the metadata, the checksum, and the signature over both."""
    fields = metadata.model_dump(mode="json")
    checksum = sha256_hex(model_bytes)
    return {"metadata": fields, "sha256": checksum, "hmac": signature(key, fields, checksum)}


def verified_metadata(key: bytes, raw: bytes, model_id: str) -> tuple[ModelMetadata, str]:
    """The metadata and expected checksum of a signed envelope; raises if anything was changed."""
    try:
        doc = json.loads(raw)
        fields, checksum, mac = doc["metadata"], doc["sha256"], doc["hmac"]
        expected = signature(key, fields, checksum)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelIntegrityError(
            f"model {model_id!r}: metadata file is not a signed model envelope"
        ) from exc
    if not isinstance(mac, str) or not hmac.compare_digest(mac, expected):
        raise ModelIntegrityError(
            f"model {model_id!r}: metadata signature does not match: the file was edited, "
            "or written by another installation (another model-key)"
        )
    if not isinstance(checksum, str) or not SHA256_HEX.fullmatch(checksum):
        raise ModelIntegrityError(f"model {model_id!r}: signed checksum is not a SHA-256 hex digest")
    try:
        metadata = ModelMetadata.model_validate(fields)
    except ValidationError as exc:
        raise ModelIntegrityError(f"model {model_id!r}: signed metadata is not valid: {exc}") from exc
    if metadata.id != model_id:
        raise ModelIntegrityError(f"model {model_id!r}: signed metadata names model {metadata.id!r}")
    return metadata, checksum


def unpickle_verified(model_id: str, data: bytes, checksum: str) -> Pipeline:
    """The pipeline in `data`, only if its checksum is the signed one."""
    # scikit-learn is imported here, not at the top: importing it (with scipy) is over half of a
    # segmenter's start-up, and only a model file needs it.
    from sklearn.pipeline import Pipeline

    if not hmac.compare_digest(sha256_hex(data), checksum):
        raise ModelIntegrityError(f"model {model_id!r}: model bytes do not match the signed checksum")
    try:
        loaded = _EstimatorUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise ModelIntegrityError(f"model {model_id!r}: model bytes cannot be loaded: {exc}") from exc
    if not isinstance(loaded, Pipeline):
        raise ModelIntegrityError(f"model {model_id!r}: model bytes hold a {type(loaded).__name__}")
    return loaded


class _EstimatorUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if module.startswith("sklearn."):
            from sklearn.base import BaseEstimator  # loaded already: see unpickle_verified

            found = super().find_class(module, name)
            if isinstance(found, type) and issubclass(found, BaseEstimator):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a segwarden model")
