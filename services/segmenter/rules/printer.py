"""Prints a syntax tree back to rule text that parses to the same tree (canonical form)."""

from __future__ import annotations

import math

from services.segmenter.rules.nodes import (
    And,
    Feature,
    ListOf,
    Literal,
    Node,
    Not,
    Operand,
    Or,
    Truth,
    left_spine,
)


def to_text(node: Node) -> str:
    """Parenthesized text of `node`, so precedence never changes its meaning."""
    if isinstance(node, And | Or):
        # A left-nested chain (what the parser builds) prints flat: no recursion along it, and
        # the text parses back within MAX_DEPTH however long the chain.
        joiner = " and " if isinstance(node, And) else " or "
        return "(" + joiner.join(to_text(operand) for operand in left_spine(node)) + ")"
    if isinstance(node, Not):
        return f"not {to_text(node.operand)}"
    if isinstance(node, Truth):
        return _operand(node.operand)
    return f"{_operand(node.left)} {node.op} {_operand(node.right)}"


def _operand(operand: Operand) -> str:
    if isinstance(operand, Feature):
        return operand.name
    if isinstance(operand, ListOf):
        return "[" + ", ".join(_literal(item) for item in operand.items) + "]"
    return _literal(operand.value)


def _literal(value: Literal) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("rule literals are finite numbers")
        return repr(value)
    if isinstance(value, int):
        return str(value)
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\t", "\\t")
    return f"'{escaped}'"
