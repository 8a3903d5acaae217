"""Explanations of rules: the parts a page words, table cases and a property (same meaning as the rule)."""

from __future__ import annotations

from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.rules import parse
from services.segmenter.rules.compiler import compile_node
from services.segmenter.rules.explain import Reason, explain
from services.segmenter.rules.nodes import And, Compare, Constant, Feature, ListOf, Node, Not, Or, Truth
from tests.unit.segmenter.test_rules import SCALARS, TREES


def condition(feature: str, op: str, value: object = None) -> Reason:
    return Reason("condition", feature=feature, op=op, value=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ("total_spend >= 100", condition("total_spend", ">=", 100)),
        ("100 <= total_spend", condition("total_spend", ">=", 100)),
        ("5 > purchase_count", condition("purchase_count", "<", 5)),
        ("'DE' == profile.country", condition("profile.country", "==", "DE")),
        ("profile.vip", condition("profile.vip", "is set")),
        ("profile.country in ['DE', 'AT']", condition("profile.country", "in", ("DE", "AT"))),
        ("'books' in profile.pref.interests", condition("profile.pref.interests", "contains", "books")),
        (
            "total_spend >= 100 and profile.country == 'DE' and events.page.view > 2",
            Reason("all", parts=(
                condition("total_spend", ">=", 100),
                condition("profile.country", "==", "DE"),
                condition("events.page.view", ">", 2),
            )),
        ),
        (
            "not (last_seen_days > 30 or purchase_count == 0)",
            Reason("not", parts=(Reason("any", parts=(
                condition("last_seen_days", ">", 30), condition("purchase_count", "==", 0),
            )),)),
        ),
        ("total_spend > purchase_count", Reason("rule", text="total_spend > purchase_count")),
        ("1 < 2", Reason("rule", text="1 < 2")),
        ("true", Reason("rule", text="true")),
    ],
)  # fmt: skip
def test_rules_explain_as_parts(rule: str, reason: Reason) -> None:
    assert explain(parse(rule)) == reason


def rebuild(reason: Reason) -> Node:
    """The rule an explanation describes, to compare its meaning with the original's."""
    if reason.kind in ("all", "any"):
        connective = And if reason.kind == "all" else Or
        return reduce(connective, (rebuild(part) for part in reason.parts))
    if reason.kind == "not":
        return Not(rebuild(reason.parts[0]))
    if reason.kind == "rule":
        return parse(reason.text or "")
    assert reason.feature is not None and reason.op is not None
    if reason.op == "is set":
        return Truth(Feature(reason.feature))
    if reason.op == "contains":
        return Compare("in", Constant(reason.value), Feature(reason.feature))  # type: ignore[arg-type]
    value = reason.value
    right = ListOf(value) if isinstance(value, tuple) else Constant(value)  # type: ignore[arg-type]
    return Compare(reason.op, Feature(reason.feature), right)


FEATURE_VALUES = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(("total_spend", "purchase_count", "event_count"), SCALARS)
    # A profile attribute may hold a list (a preference with several values): `x in feature`.
    | {"profile.country": st.one_of(SCALARS, st.lists(SCALARS, max_size=3))},
)


@settings(max_examples=300, deadline=None)
@given(TREES, FEATURE_VALUES)
def test_an_explanation_means_what_the_rule_means(tree: Node, features: dict[str, object]) -> None:
    assert compile_node(rebuild(explain(tree)))(features) == compile_node(tree)(features)
