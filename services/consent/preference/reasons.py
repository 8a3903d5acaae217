"""Why the customer is in a segment, in plain words: the segmenter's explanation (its `reason`
parts) and the segment's required purposes, worded from the message catalog (pure). Amounts are
in the shop's currency (CONSENT_SHOP_CURRENCY): the segmenter sums purchase amounts as sent."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from services.consent.preference.messages import text
from shared.catalog import PREFERENCE_ATTRIBUTE_PREFIX

# Features the catalog words as a whole phrase for some operators ("you spent at least 100 EUR").
_FAMILIES = ("events", "profile")
_PREFERENCE = "profile." + PREFERENCE_ATTRIBUTE_PREFIX


def segment_reason(
    lang: str, segment: Mapping[str, Any], purpose_title: Callable[[str], str], currency: str
) -> str:
    """One sentence: the rule's parts, then each purpose the customer allowed for the segment."""
    reason = segment.get("reason")
    parts = _parts(lang, reason, currency) if isinstance(reason, Mapping) else [text(lang, "why.model")]
    purposes = segment.get("required_purposes", [])
    allowed = [text(lang, "why.allowed").format(purpose=purpose_title(p)) for p in purposes]
    return text(lang, "why").format(reason=_join(lang, [*parts, *allowed], "why.and"))


def _parts(lang: str, reason: Mapping[str, Any], currency: str) -> list[str]:
    """A top-level `all` is listed like the purposes after it; anything else is one phrase."""
    if reason.get("kind") == "all":
        return [_phrase(lang, part, currency) for part in reason.get("parts", [])]
    return [_phrase(lang, reason, currency)]


def _phrase(lang: str, reason: Mapping[str, Any], currency: str) -> str:
    kind, parts = reason.get("kind"), reason.get("parts", [])
    if kind in ("all", "any"):
        connective = "why.and" if kind == "all" else "why.or"
        words = _join(lang, [_phrase(lang, part, currency) for part in parts], connective)
        return text(lang, f"why.{kind}").format(parts=words)
    if kind == "not" and parts:
        return text(lang, "why.not").format(part=_phrase(lang, parts[0], currency))
    if kind == "condition":
        feature, op = str(reason.get("feature")), str(reason.get("op"))
        return _condition(lang, feature, op, reason.get("value"), currency)
    return text(lang, "why.rule").format(text=reason.get("text", ""))


def _condition(lang: str, feature: str, op: str, value: Any, currency: str) -> str:
    key = feature[len(_PREFERENCE) :] if feature.startswith(_PREFERENCE) else None
    shown = _value(lang, value, key)
    try:
        return text(lang, f"why.{feature}.{op}").format(value=shown, currency=currency)
    except KeyError:
        return text(lang, f"op.{op}").format(feature=_feature(lang, feature, currency), value=shown)


def _feature(lang: str, feature: str, currency: str) -> str:
    if feature.startswith(_PREFERENCE):  # a preference the customer stated: its title on the page
        key = feature[len(_PREFERENCE) :]
        title = text(lang, "quoted").format(value=text(lang, f"pref.{key}", key.replace("_", " ")))
        return text(lang, "feature.pref").format(name=title)
    family, _, name = feature.partition(".")
    if family in _FAMILIES and name:
        quoted = text(lang, "quoted").format(value=name.replace("_", " "))
        return text(lang, f"feature.{family}").format(name=quoted)
    # A scalar feature's words may name the currency ("the amount you spent in EUR").
    return text(lang, f"feature.{feature}", feature.replace("_", " ")).format(currency=currency)


def _value(lang: str, value: Any, preference: str | None = None) -> str:
    """A value in words; a stated preference's value by its label on the page."""
    if isinstance(value, list):
        return _join(lang, [_value(lang, item, preference) for item in value], "why.or")
    if isinstance(value, bool):
        return text(lang, "yes" if value else "no")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        label = text(lang, f"pref.{preference}.{value}", value) if preference else value
        return text(lang, "quoted").format(value=label)
    return str(value)


def _join(lang: str, words: Sequence[str], last: str) -> str:
    """`a, b and c` (or `a, b or c`): commas, then the connective before the last."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + text(lang, last) + words[-1]
