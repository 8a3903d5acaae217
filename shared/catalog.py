"""The purpose catalog (which purposes exist, their lawful basis, defaults, sale/share flag, retention,
and the notice a customer agrees to) and the preference catalog (the zero-party preferences a
customer may state: their keys and allowed values)."""

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
    # The same notice in other languages, by language code (`de`); shown to a customer reading
    # the page in that language. A translation is of the current version: change both together.
    notice_translations: dict[str, str] = {}

    def notice_in(self, lang: str) -> str:
        return self.notice_translations.get(lang) or self.notice

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
    return PurposeCatalog.model_validate(_load_yaml(path, "purposes.yaml"))


# A stated preference `<key>` is the profile attribute `pref.<key>`, so the rule feature
# `profile.pref.<key>`: apart from what upstream apps send as profile attributes.
PREFERENCE_ATTRIBUTE_PREFIX = "pref."
PreferenceValue = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]


class PreferenceChoiceError(ValueError):
    """A stated preference the catalog does not allow; the message says what it allows."""


class PreferenceKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
    description: str
    # Several values may be chosen (the feature is a list, read with `'x' in ...`), else one.
    multiple: bool = False
    values: tuple[PreferenceValue, ...] = Field(min_length=1)

    @property
    def attribute(self) -> str:
        return PREFERENCE_ATTRIBUTE_PREFIX + self.id

    @property
    def feature(self) -> str:
        return "profile." + self.attribute

    def check(self, value: str | list[str]) -> str | list[str]:
        """The value as stored (a list without repeats, in catalog order); PreferenceChoiceError."""
        chosen = value if isinstance(value, list) else [value]
        unknown = [v for v in chosen if v not in self.values]
        if unknown:
            raise PreferenceChoiceError(f"{unknown[0]!r} is not one of {', '.join(self.values)}")
        if not self.multiple:
            if isinstance(value, list):
                raise PreferenceChoiceError(f"one of {', '.join(self.values)}, not a list")
            return value
        if not chosen:
            raise PreferenceChoiceError("choose at least one value, or remove the preference")
        return [v for v in self.values if v in chosen]


class PreferenceCatalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    preferences: tuple[PreferenceKey, ...]

    def get(self, key: str) -> PreferenceKey | None:
        return next((p for p in self.preferences if p.id == key), None)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.preferences)


def load_preference_catalog(path: Path | None = None) -> PreferenceCatalog:
    """The preference catalog at `path` (CONSENT_PREFERENCES_FILE), else the shipped default."""
    return PreferenceCatalog.model_validate(_load_yaml(path, "preferences.yaml"))


def _load_yaml(path: Path | None, shipped: str) -> object:
    text = resources.files("shared").joinpath(shipped).read_text() if path is None else path.read_text()
    return yaml.safe_load(text)
