"""`ModelAssigner`: the verified models of the store, reloaded when they change, and the one call
the segmenter needs to place a customer in a cluster.

`assign` does no I/O. `refresh` (blocking: stat, read, verify, unpickle) picks up new, replaced
and removed models; an async service runs `refresh_and_notify` periodically, a script calls `refresh` itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass

from prometheus_client import Counter

from services.segmenter.modeling.compiled import CompiledModel
from services.segmenter.modeling.feature_vector import feature_vector
from services.segmenter.modeling.integrity import ModelIntegrityError
from services.segmenter.modeling.metadata import ModelMetadata
from services.segmenter.modeling.metrics import ASSIGNMENTS, MODELS_LOADED, MODELS_REFUSED
from services.segmenter.modeling.store import FileModelStore, ModelNotFoundError

logger = logging.getLogger(__name__)
Stamp = tuple[int, int, int]
OnChange = Callable[[set[str]], Awaitable[None]]


@dataclass(frozen=True)
class _Ready:
    metadata: ModelMetadata
    compiled: CompiledModel
    stamp: Stamp
    assignments: Counter  # this model's child of ASSIGNMENTS, looked up once


class ModelAssigner:
    def __init__(self, store: FileModelStore) -> None:
        self._store = store
        self._ready: dict[str, _Ready] = {}
        self._refused: dict[str, tuple[Stamp, str]] = {}

    def assign(self, model_id: str, features: Mapping[str, object], granted: Container[str]) -> int | None:
        """The customer's cluster, or None without the model's purpose in `granted` or without the model.

        `granted` is the set of purposes the customer's consent effectively grants: a model is
        never applied to someone who does not allow its purpose (profiling), whatever a segment
        definition requires.
        """
        ready = self._ready.get(model_id)
        if ready is None or ready.metadata.purpose not in granted:
            return None
        ready.assignments.inc()
        return ready.compiled.cluster_of(feature_vector(features))

    def models(self) -> list[ModelMetadata]:
        """Metadata of every model that can assign now, by id (what `GET /v1/models` lists)."""
        return [self._ready[model_id].metadata for model_id in sorted(self._ready)]

    def get(self, model_id: str) -> ModelMetadata | None:
        ready = self._ready.get(model_id)
        return None if ready is None else ready.metadata

    def refused(self) -> dict[str, str]:
        """Model id -> why its file was refused, until the file changes again."""
        return {model_id: reason for model_id, (_, reason) in self._refused.items()}

    def refresh(self) -> set[str]:
        """Load what is new or changed, drop what is gone; returns the ids whose state changed."""
        stamps = self._store.stamps()
        ready = {i: r for i, r in self._ready.items() if i in stamps and r.stamp == stamps[i]}
        self._refused = {i: r for i, r in self._refused.items() if i in stamps and r[0] == stamps[i]}
        changed = set(self._ready) - set(ready)
        for model_id, stamp in stamps.items():
            if model_id not in ready and model_id not in self._refused:
                changed.add(model_id)
                self._load(model_id, stamp, ready)
        self._ready = ready  # one swap: a concurrent `assign` sees the old set or the new one
        MODELS_LOADED.set(len(ready))
        return changed

    async def refresh_and_notify(self, on_change: OnChange | None = None) -> None:
        """`refresh` off the event loop; `on_change` gets the ids of models that appeared, changed or
        went away (to re-evaluate their segments' members). The service runs it periodically under
        its supervisor, which logs and retries a store that cannot be read."""
        changed = await asyncio.to_thread(self.refresh)
        if changed and on_change is not None:
            await on_change(changed)

    def _load(self, model_id: str, stamp: Stamp, into: dict[str, _Ready]) -> None:
        try:
            loaded = self._store.load(model_id)
        except ModelNotFoundError:
            return  # removed between listing and loading: the next refresh forgets it
        except ModelIntegrityError as exc:
            self._refused[model_id] = (stamp, str(exc))
            MODELS_REFUSED.inc()
            logger.error("model refused", extra={"model_id": model_id, "error": str(exc)})
            return
        compiled = CompiledModel(loaded.pipeline)
        into[model_id] = _Ready(loaded.metadata, compiled, stamp, ASSIGNMENTS.labels(model_id))
        logger.info("model loaded", extra={"model_id": model_id, "clusters": loaded.metadata.clusters})
