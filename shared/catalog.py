"""The purpose catalog: which purposes exist, their lawful basis, defaults, sale/share flag, retention,
and the notice a customer agrees to (its text and version)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.events import PURPOSE_ID_PATTERN, ConsentStatus, Jurisdiction


class Purpose(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, StringConstraints(pattern=PURPOSE_ID_PATTERN)]
    description: str
    lawful_basis: str
    defaults: dict[Jurisdiction, ConsentStatus]
    sale_or_share: bool = False
    retention_days: int = Field(ge=1)
    data_categories: tuple[str, ...] = ()
    # What the customer is told before agreeing; a changed text gets a higher version, and a
    # grant recorded under a lower one is asked for again (the preference center).
    notice: str = ""
    notice_version: int = Field(1, ge=1)

    def default_for(self, jurisdiction: Jurisdiction | None) -> ConsentStatus:
        """The status without any record; denied unless the catalog says otherwise (fail closed)."""
        return self.defaults.get(jurisdiction or "OTHER", "denied")


class PurposeCatalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    purposes: tuple[Purpose, ...]

    def get(self, purpose_id: str) -> Purpose | None:
        return next((p for p in self.purposes if p.id == purpose_id), None)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.purposes)

    @property
    def sale_or_share_ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.purposes if p.sale_or_share)


def load_catalog(path: Path | None = None) -> PurposeCatalog:
    """The catalog at `path` (PURPOSES_FILE), else the shipped default."""
    if path is None:
        text = resources.files("shared").joinpath("purposes.yaml").read_text()
    else:
        text = path.read_text()
    return PurposeCatalog.model_validate(yaml.safe_load(text))
