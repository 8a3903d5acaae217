"""Recognizes text that looks like a direct identifier (an e-mail address, a phone number)."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# A phone number: digits with the usual separators, 7 to 15 digits (E.164 allows at most 15).
_PHONE = re.compile(r"\+?[\d\s().\-/]{7,24}")
_DATE_OR_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ].*)?|\d{1,2}:\d{2}(:\d{2})?")


def contact_kind(text: str) -> str | None:
    """'an e-mail address' or 'a phone number' when `text` looks like one, else None.

    Deliberately broad: a false alarm costs a reworded rule, a miss puts personal data where
    it cannot be erased. ISO dates and clock times are not phone numbers.
    """
    value = text.strip()
    if _EMAIL.search(value):
        return "an e-mail address"
    if _PHONE.fullmatch(value) and not _DATE_OR_TIME.fullmatch(value):
        digits = sum(ch.isdigit() for ch in value)
        if 7 <= digits <= 15:
            return "a phone number"
    return None
