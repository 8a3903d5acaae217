"""Generates the JSON Schema of every topic and an AsyncAPI 3 document from the pydantic models.

Run `make docs` (or `python -m shared.contract_docs`) after changing a schema; a test fails when
the committed files are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from shared import topics
from shared.topics import TopicSpec

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
SCHEMA_DIR_NAME = "schemas"
ASYNCAPI_NAME = "asyncapi.yaml"


def topic_schema(spec: TopicSpec) -> dict[str, Any]:
    schema = spec.schema.model_json_schema(mode="validation")
    schema["$id"] = f"https://segwarden.dev/schemas/{spec.base}.json"
    schema["description"] = spec.description
    return schema


def _channel(spec: TopicSpec, message: str) -> dict[str, Any]:
    configs = topics.Retention().configs("compacted" if spec.compacted else spec.retention)
    # The defaults; TOPIC_RETENTION_* settings change them (contract: Topics, Retention).
    topic_configuration: dict[str, Any] = {
        "cleanup.policy": [configs["cleanup.policy"]],
        "retention.ms": int(configs["retention.ms"]),
    }
    if "delete.retention.ms" in configs:
        topic_configuration["delete.retention.ms"] = int(configs["delete.retention.ms"])
    bindings: dict[str, Any] = {"kafka": {"topic": spec.base, "topicConfiguration": topic_configuration}}
    return {
        "address": "{prefix}" + spec.base,
        "description": spec.description,
        "parameters": {"prefix": {"description": "TOPIC_PREFIX of the stack (may be empty)"}},
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        "bindings": bindings,
    }


def asyncapi_document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in topics.ALL:
        message = spec.schema.__name__
        channel_id = spec.base.replace(".", "_")
        channels[channel_id] = _channel(spec, message)
        key = {"type": "string", "description": f"UTF-8 `{spec.key}`"} if spec.key else None
        messages[message] = {
            "name": message,
            "contentType": "application/json",
            "summary": (spec.schema.__doc__ or "").strip().splitlines()[0],
            "payload": {"$ref": f"./{SCHEMA_DIR_NAME}/{spec.base}.json"},
            **({"bindings": {"kafka": {"key": key}}} if key else {}),
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "segwarden topics",
            "version": "1.0.0",
            "description": "Every Kafka topic of segwarden. Values are UTF-8 JSON; every record "
            "carries a unique event_id (audit.log: a unique seq) so consumers can de-duplicate. "
            "Inputs that fail to parse go to `<topic>.dlq` as DeadLetter records.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"messages": messages},
    }


def render() -> dict[str, str]:
    """File name (relative to docs/) to content."""
    files = {
        f"{SCHEMA_DIR_NAME}/{spec.base}.json": json.dumps(topic_schema(spec), indent=2, sort_keys=True) + "\n"
        for spec in topics.ALL
    }
    dead_letter = topics.TopicSpec("dead-letter", topics.events.DeadLetter, None, "`<topic>.dlq` records.")
    files[f"{SCHEMA_DIR_NAME}/dead-letter.json"] = (
        json.dumps(topic_schema(dead_letter), indent=2, sort_keys=True) + "\n"
    )
    files[ASYNCAPI_NAME] = yaml.safe_dump(asyncapi_document(), sort_keys=False, width=100)
    return files


def write(docs_dir: Path = DOCS_DIR) -> list[Path]:
    written = []
    for name, content in render().items():
        path = docs_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        sys.stdout.write(f"wrote {path}\n")
