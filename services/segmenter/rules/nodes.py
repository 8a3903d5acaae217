"""The syntax tree of a rule: immutable nodes the parser builds and the compiler and printer read."""

from __future__ import annotations

from dataclasses import dataclass

Literal = float | int | str | bool


@dataclass(frozen=True)
class Feature:
    name: str


@dataclass(frozen=True)
class Constant:
    value: Literal


@dataclass(frozen=True)
class ListOf:
    items: tuple[Literal, ...]


Operand = Feature | Constant | ListOf


@dataclass(frozen=True)
class Compare:
    op: str  # "==", "!=", "<", "<=", ">", ">=", "in", "not in"
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Truth:
    """A bare operand used as a condition: true when present and truthy."""

    operand: Operand


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


Node = Compare | Truth | Not | And | Or


def features_of(node: Node | Operand) -> frozenset[str]:
    """Every feature name the rule reads (to index segments by what can change them)."""
    names: set[str] = set()
    pending: list[Node | Operand] = [node]
    while pending:  # a loop, not recursion: an and/or chain is as deep as it is long
        item = pending.pop()
        if isinstance(item, Feature):
            names.add(item.name)
        elif isinstance(item, Compare | And | Or):
            pending += (item.left, item.right)
        elif isinstance(item, Truth | Not):
            pending.append(item.operand)
    return frozenset(names)


def chain(node: And | Or) -> list[Node]:
    """The operands of a chain of one connective, left to right: `a or (b or c) or d` gives 4."""
    kind = type(node)
    operands: list[Node] = []
    pending: list[Node] = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, kind):
            pending += (item.right, item.left)
        else:
            operands.append(item)
    return operands


def left_spine(node: And | Or) -> list[Node]:
    """`a or b or c` as parsed (left-nested) back to [a, b, c]; right operands stay whole."""
    kind = type(node)
    rights: list[Node] = []
    item: Node = node
    while isinstance(item, kind):
        rights.append(item.right)
        item = item.left
    return [item, *reversed(rights)]
