"""The tokenizer of the rule language."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.segmenter.rules.errors import RuleError

KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})
OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
PUNCTUATION = "()[],"

_NUMBER = re.compile(r"-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


@dataclass(frozen=True)
class Token:
    kind: str  # "number", "string", "name", "keyword", "op", "punct", "end"
    value: object
    position: int


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with an "end" token; RuleError at the first bad character."""
    tokens: list[Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
            continue
        token, index = _next_token(text, index)
        tokens.append(token)
    tokens.append(Token("end", None, len(text)))
    return tokens


def _next_token(text: str, index: int) -> tuple[Token, int]:
    char = text[index]
    if char in "'\"":
        return _string(text, index)
    for op in OPERATORS:
        if text.startswith(op, index):
            return Token("op", op, index), index + len(op)
    if char in PUNCTUATION:
        return Token("punct", char, index), index + 1
    number = _NUMBER.match(text, index)
    if number and not _NAME.match(text, number.end()):
        raw = number.group()
        value: float | int = int(raw) if raw.lstrip("-").isdigit() else float(raw)
        return Token("number", value, index), number.end()
    name = _NAME.match(text, index)
    if name:
        word = name.group()
        return Token("keyword" if word in KEYWORDS else "name", word, index), name.end()
    raise RuleError(f"unexpected character {char!r}", index)


def _string(text: str, start: int) -> tuple[Token, int]:
    quote, index = text[start], start + 1
    parts: list[str] = []
    while index < len(text):
        char = text[index]
        if char == quote:
            return Token("string", "".join(parts), start), index + 1
        if char == "\\":
            escaped = text[index + 1 : index + 2]
            if escaped not in _ESCAPES:
                raise RuleError("unknown escape in string", index)
            parts.append(_ESCAPES[escaped])
            index += 2
            continue
        parts.append(char)
        index += 1
    raise RuleError("unterminated string", start)
