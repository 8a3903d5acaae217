"""Compiles a syntax tree to closures: evaluation is plain function calls, no eval, no tree walk."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from services.segmenter.rules.nodes import (
    And,
    Compare,
    Constant,
    Feature,
    ListOf,
    Node,
    Not,
    Operand,
    Or,
    Truth,
    chain,
    features_of,
)
from services.segmenter.rules.parser import parse
from services.segmenter.rules.vocabulary import TIME_FEATURES

Features = Mapping[str, Any]
Predicate = Callable[[Features], bool]
_MISSING = object()
_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to evaluate against a customer's features, and what it reads."""

    text: str
    tree: Node
    features: frozenset[str]
    matches: Predicate

    @property
    def time_sensitive(self) -> bool:
        return bool(self.features & TIME_FEATURES)


def compile_rule(text: str) -> CompiledRule:
    """Parse and compile `text`; raises RuleError naming the position."""
    tree = parse(text)
    return CompiledRule(text, tree, features_of(tree), compile_node(tree))


def compile_node(node: Node) -> Predicate:
    """A predicate for `node`. An and/or chain compiles to one loop over its operands, so neither
    compiling nor evaluating recurses along it; only nesting (bounded by MAX_DEPTH) recurses."""
    if isinstance(node, And | Or):
        parts = tuple(compile_node(operand) for operand in chain(node))
        return _every(parts) if isinstance(node, And) else _any(parts)
    if isinstance(node, Not):
        inner = compile_node(node.operand)
        return lambda f: not inner(f)
    if isinstance(node, Truth):
        value = _value_of(node.operand)
        return lambda f: _truthy(value(f))
    return _compile_compare(node)


def _every(parts: tuple[Predicate, ...]) -> Predicate:
    if len(parts) == 2:  # the common case, without a loop
        first, second = parts
        return lambda f: first(f) and second(f)
    return lambda f: all(part(f) for part in parts)


def _any(parts: tuple[Predicate, ...]) -> Predicate:
    if len(parts) == 2:
        first, second = parts
        return lambda f: first(f) or second(f)
    return lambda f: any(part(f) for part in parts)


def _compile_compare(node: Compare) -> Predicate:
    left, right, op = _value_of(node.left), _value_of(node.right), node.op
    if op in ("in", "not in"):
        negate = op == "not in"
        return lambda f: _member(left(f), right(f), negate)
    if op in ("==", "!="):
        negate = op == "!="
        return lambda f: _equal(left(f), right(f), negate)
    ordering = _ORDERING[op]
    if isinstance(node.left, Feature) and isinstance(node.right, Constant):
        return _ordered_literal(ordering, node.left.name, node.right.value)
    return lambda f: _ordered(ordering, left(f), right(f))


# The classes of the values features hold (rule_features, JSON) per comparable family.
_CLASSES = {"number": (int, float), "str": (str,)}


def _ordered_literal(ordering: Callable[[Any, Any], bool], name: str, literal: Any) -> Predicate:
    """`feature <op> literal`, the common comparison, with the literal's family known up front:
    one class check per evaluation instead of _ordered's three _kind calls (the same outcome for
    every value a feature holds: a missing one, a bool, or another family is never ordered)."""
    classes = _CLASSES.get(_kind(literal))
    if classes is None:
        return lambda f: False
    return lambda f: (v := f.get(name, _MISSING)).__class__ in classes and ordering(v, literal)


def _value_of(operand: Operand) -> Callable[[Features], Any]:
    if isinstance(operand, Feature):
        name = operand.name
        return lambda f: f.get(name, _MISSING)
    value: Any = operand.items if isinstance(operand, ListOf) else operand.value
    return lambda f: value


def _kind(value: Any) -> str:
    """Comparable families: booleans are not numbers here, so `true == 1` is false."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _equal(left: Any, right: Any, negate: bool) -> bool:
    if left is _MISSING or right is _MISSING:
        return False  # a comparison with a missing feature is false, whatever the operator
    same = _kind(left) == _kind(right) and left == right
    return not same if negate else same


def _ordered(ordering: Callable[[Any, Any], bool], left: Any, right: Any) -> bool:
    if left is _MISSING or right is _MISSING or _kind(left) != _kind(right):
        return False
    if _kind(left) not in ("number", "str"):
        return False
    return ordering(left, right)


def _member(item: Any, collection: Any, negate: bool) -> bool:
    # A list literal is a tuple; a feature holding a list (a profile attribute, a preference with
    # several values: `'books' in profile.pref.interests`) is a list.
    if item is _MISSING or not isinstance(collection, tuple | list):
        return False
    found = any(_kind(item) == _kind(c) and item == c for c in collection)
    return not found if negate else found


def _truthy(value: Any) -> bool:
    return value is not _MISSING and bool(value)
