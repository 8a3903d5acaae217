"""Explains a syntax tree as language-neutral parts a page can put into plain words (pure).

The parts keep the rule's meaning exactly: a chain of `and`/`or` becomes one list, a comparison
with the constant on the left is turned round (`100 <= total_spend` is `total_spend >= 100`),
and `not` stays a part of its own rather than being pushed into a comparison, because a
comparison with a missing feature is false whichever way round it is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal as Kind

from services.segmenter.rules.nodes import (
    And,
    Compare,
    Constant,
    Feature,
    ListOf,
    Literal,
    Node,
    Not,
    Or,
    Truth,
    chain,
)
from services.segmenter.rules.printer import to_text

# The comparison seen from the other side: `a < b` is `b > a`.
_TURNED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
Value = Literal | tuple[Literal, ...] | None


@dataclass(frozen=True)
class Reason:
    """One part of an explanation.

    `condition`: `feature op value` (`op` "is set" and no value for a bare feature, "contains"
    for `value in feature`, a feature holding a list);
    `all`/`any`: every / at least one of `parts`; `not`: `parts[0]` does not hold;
    `rule`: a part with no feature on one side (two features, two constants), as rule `text`.
    """

    kind: Kind["condition", "all", "any", "not", "rule"]
    feature: str | None = None
    op: str | None = None
    value: Value = None
    text: str | None = None
    parts: tuple[Reason, ...] = ()


def explain(node: Node) -> Reason:
    """The parts of `node`; nesting is bounded by the parser's MAX_DEPTH, chains are loops."""
    if isinstance(node, And | Or):
        kind: Kind["all", "any"] = "all" if isinstance(node, And) else "any"
        return Reason(kind, parts=tuple(explain(operand) for operand in chain(node)))
    if isinstance(node, Not):
        return Reason("not", parts=(explain(node.operand),))
    if isinstance(node, Truth):
        if isinstance(node.operand, Feature):
            return Reason("condition", feature=node.operand.name, op="is set")
        return Reason("rule", text=to_text(node))
    return _comparison(node)


def _comparison(node: Compare) -> Reason:
    left, right, op = node.left, node.right, node.op
    if isinstance(right, Feature) and not isinstance(left, Feature) and op in _TURNED:
        left, right, op = right, left, _TURNED[op]
    if op == "in" and isinstance(right, Feature) and isinstance(left, Constant):
        return Reason("condition", feature=right.name, op="contains", value=left.value)
    if isinstance(left, Feature) and not isinstance(right, Feature):
        value = right.items if isinstance(right, ListOf) else right.value
        return Reason("condition", feature=left.name, op=op, value=value)
    return Reason("rule", text=to_text(node))
