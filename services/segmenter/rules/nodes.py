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
    if isinstance(node, Feature):
        return frozenset({node.name})
    if isinstance(node, Constant | ListOf):
        return frozenset()
    if isinstance(node, Compare):
        return features_of(node.left) | features_of(node.right)
    if isinstance(node, Truth | Not):
        return features_of(node.operand)
    return features_of(node.left) | features_of(node.right)
