"""What of a source event's fields may enter the ledger, which no erasure reaches.

Pure: standard library and `shared/` only. Each record kind has an allow-list: fields whose
values the topic schema bounds to enumerations, ids of a fixed pattern, numbers or timestamps
are kept as they are; fields whose text a caller chooses freely (a consent's `source`, a
membership's `cause_event_id`, a segment's name) pass only as a short token, and anything
else becomes its keyed pseudonym; every field not listed is dropped, so a field added to a
schema later stays out of the ledger until someone decides it belongs there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shared.pseudonym import pseudonymize

TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# An event id: the same characters, as long as an EventId may be. Generated ids (hex UUIDs)
# hold long runs of digits by chance, so the number check below does not apply to them.
EVENT_ID_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# A run of digits this long in free text may be a phone, account or card number.
_NUMBER_LIKE = re.compile(r"\d{7,}")
# A string literal of the rule language, either quote, backslash escapes (as its tokenizer reads them).
_RULE_LITERAL = re.compile(r"""(['"])((?:\\.|(?!\1)[^\\])*)\1""", re.DOTALL)
HASHED_PREFIX = "hmac:"

KEEP, FREE, EVENT_ID, RULE = "keep", "free", "event_id", "rule"

ALLOWED: dict[str, dict[str, str]] = {
    "consent_change": {
        "purpose": KEEP,
        "status": KEEP,
        "previous_status": KEEP,
        "reason": KEEP,
        "jurisdiction": KEEP,
        "recorded_at": KEEP,
        "expires_at": KEEP,
        "sequence": KEEP,
        "source": FREE,
        "policy_version": FREE,
    },
    "membership_change": {
        "segment_id": KEEP,
        "action": KEEP,
        "reason": KEEP,
        "cause_at": KEEP,
        "at": KEEP,
        "cause_event_id": EVENT_ID,
    },
    "erasure_request": {"requested_at": KEEP},
    "segment_defined": {
        "segment_id": KEEP,
        "cluster": KEEP,
        "required_purposes": KEEP,
        "version": KEEP,
        "updated_at": KEEP,
        "name": FREE,
        "description": FREE,
        "model": FREE,
        "rule": RULE,
    },
    "segment_deleted": {"segment_id": KEEP},
    "delivery_outcome": {
        "destination_id": KEEP,
        "segment_id": KEEP,
        "action": KEEP,
        "reason": KEEP,
        "status": KEEP,
        "attempts": KEEP,
        "at": KEEP,
    },
    "destination_change": {
        "destination_id": KEEP,
        "change": KEEP,
        "segments": KEEP,
        "purposes": KEEP,
        "pending": KEEP,
        "at": KEEP,
    },
    "model_trained": {
        "purpose": KEEP,
        "clusters": KEEP,
        "n_training": KEEP,
        "n_without_consent": KEEP,
        "cluster_sizes": KEEP,
        "silhouette": KEEP,
        "sha256": KEEP,
        "trained_at": KEEP,
        "model_id": FREE,
        "algorithm": FREE,
        "features": FREE,
    },
    "retention_run": {
        "service": KEEP,
        "started_at": KEEP,
        "finished_at": KEEP,
        "customers": KEEP,
        "records": KEEP,
    },
}


def allowed_payload(
    kind: str, key: bytes, fields: Mapping[str, Any], customer_id: str | None = None
) -> dict[str, Any]:
    """The payload the ledger keeps for a record of `kind` built from the event's `fields`."""
    rules = ALLOWED[kind]
    kept = {name: value for name, value in fields.items() if name in rules}
    return {name: _treat(rules[name], key, value, customer_id) for name, value in kept.items()}


def free_text(key: bytes, value: str, customer_id: str | None = None) -> str:
    """`value` when it is a short token naming no one, else `hmac:` and its keyed pseudonym."""
    if TOKEN.fullmatch(value) and not _NUMBER_LIKE.search(value) and not _names(value, customer_id):
        return value
    return HASHED_PREFIX + pseudonymize(key, value)


def record_event_id(key: bytes, event_id: str, customer_id: str | None = None) -> str:
    """An event id as the ledger keeps it: a generated id as it is (a token), anything else as its
    pseudonym, which is as stable, so a redelivery is still recognised as one."""
    if EVENT_ID_TOKEN.fullmatch(event_id) and not _names(event_id, customer_id):
        return event_id
    return HASHED_PREFIX + pseudonymize(key, event_id)


def _names(value: str, customer_id: str | None) -> bool:
    return customer_id is not None and customer_id in value


def rule_text(key: bytes, rule: str) -> str:
    """The rule with each string literal that is not a token replaced by its keyed pseudonym."""

    def literal(match: re.Match[str]) -> str:
        quote, text = match.group(1), match.group(2)
        return f"{quote}{free_text(key, text)}{quote}"

    return _RULE_LITERAL.sub(literal, rule)


def _treat(how: str, key: bytes, value: Any, customer_id: str | None) -> Any:
    if how == KEEP or value is None:
        return value
    if how == RULE:
        return rule_text(key, value)
    if how == EVENT_ID:
        return record_event_id(key, value, customer_id)
    if isinstance(value, list | tuple):
        return [free_text(key, str(item), customer_id) for item in value]
    return free_text(key, str(value), customer_id)
