"""The committed JSON Schemas and AsyncAPI document are generated from the models and up to date."""

from __future__ import annotations

import json

import yaml

from shared import topics
from shared.contract_docs import DOCS_DIR, render


def test_generated_docs_are_not_stale() -> None:
    stale = [name for name, content in render().items() if (DOCS_DIR / name).read_text() != content]
    assert not stale, f"regenerate with `make docs`: {stale}"


def test_asyncapi_lists_every_topic_with_its_schema() -> None:
    document = yaml.safe_load((DOCS_DIR / "asyncapi.yaml").read_text())
    assert document["asyncapi"].startswith("3.")
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {"{prefix}" + spec.base for spec in topics.ALL}
    for message in document["components"]["messages"].values():
        schema_path = DOCS_DIR / message["payload"]["$ref"]
        assert json.loads(schema_path.read_text())["type"] == "object"


def test_compacted_topics_and_every_retention_are_marked_in_asyncapi() -> None:
    document = yaml.safe_load((DOCS_DIR / "asyncapi.yaml").read_text())
    configurations = {
        channel["address"]: channel["bindings"]["kafka"]["topicConfiguration"]
        for channel in document["channels"].values()
    }
    compacted = {address for address, c in configurations.items() if c["cleanup.policy"] == ["compact"]}
    assert compacted == {
        "{prefix}consent.state",
        "{prefix}segment.definitions",
        "{prefix}segment.membership.state",
    }
    assert all("retention.ms" in c for c in configurations.values())
