"""The rule language: parsing, positions of errors, evaluation semantics, and property-based round trips."""

from __future__ import annotations

import inspect
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.rules import RuleError, compile_rule, parse
from services.segmenter.rules.nodes import And, Compare, Constant, Feature, ListOf, Node, Not, Or, Truth
from services.segmenter.rules.parser import MAX_DEPTH, MAX_RULE_LENGTH, MAX_TERMS
from services.segmenter.rules.printer import to_text
from shared.personal_data import contact_kind


def matches(rule: str, **features: object) -> bool:
    return compile_rule(rule).matches({k.replace("__", "."): v for k, v in features.items()})


def test_contract_example_matches_and_reads_its_features() -> None:
    rule = compile_rule("total_spend >= 100 and profile.country in ['DE', 'FR']")
    assert rule.features == {"total_spend", "profile.country"}
    assert rule.matches({"total_spend": 150.0, "profile.country": "FR"})
    assert not rule.matches({"total_spend": 99.5, "profile.country": "FR"})
    assert not rule.matches({"total_spend": 150.0, "profile.country": "US"})


@pytest.mark.parametrize(
    "rule",
    [
        "total_spend > 1",
        "total_spend != 1",
        "profile.tier in ['gold']",
        "profile.tier not in ['gold']",
        "profile.vip",
    ],
)
def test_a_comparison_with_a_missing_feature_is_false(rule: str) -> None:
    assert compile_rule(rule).matches({}) is False


def test_operators_precedence_and_literals() -> None:
    assert matches("not total_spend > 5 or event_count == 3", total_spend=10, event_count=3)
    assert not matches("(not total_spend > 5) and event_count == 3", total_spend=10, event_count=3)
    assert matches("profile.vip == true and profile.score <= -1.5", profile__vip=True, profile__score=-2.0)
    assert matches('profile.name == "O\\"Neil"', profile__name='O"Neil')
    assert not matches("profile.vip == 1", profile__vip=True)  # booleans are not numbers
    assert not matches("profile.country < 3", profile__country="DE")  # mixed types never order


def test_time_features_make_a_rule_time_sensitive() -> None:
    assert compile_rule("last_seen_days <= 30").time_sensitive
    assert not compile_rule("events.page.view >= 2").time_sensitive


@pytest.mark.parametrize(
    ("rule", "position", "words"),
    [
        ("total_spend >= ", 15, "expected a feature"),
        ("total_spend >= 10 and lifetime_value > 3", 22, "unknown feature 'lifetime_value'"),
        ("(total_spend > 1", 16, "expected ')'"),
        ("total_spend > 1 total_spend", 16, "expected 'and', 'or'"),
        ("profile.country == 'DE", 19, "unterminated string"),
        ("total_spend > 1 & x", 16, "unexpected character '&'"),
        ("profile.country in ['DE' 'FR']", 25, "expected ',' or ']'"),
        ("", 0, "expected a condition"),
    ],
)
def test_errors_name_the_position(rule: str, position: int, words: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse(rule)
    assert caught.value.position == position
    assert words in str(caught.value) and f"at position {position}" in str(caught.value)


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(RuleError):
        parse("(" * 500 + "total_spend > 1" + ")" * 500)
    with pytest.raises(RuleError):
        parse("not " * 500 + "total_spend > 1")


def test_ten_thousand_terms_are_refused_naming_the_position_and_the_limit() -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule(" or ".join(["1"] * 10_000))
    assert caught.value.position == MAX_RULE_LENGTH and "MAX_RULE_LENGTH" in str(caught.value)


def test_more_terms_than_the_limit_are_refused_at_the_first_one_over() -> None:
    rule = "or".join(["''"] * 1024)  # 4,094 characters: within the length limit
    with pytest.raises(RuleError) as caught:
        compile_rule(rule)
    assert caught.value.position == 4 * MAX_TERMS and f"more than {MAX_TERMS} terms" in str(caught.value)
    with pytest.raises(RuleError, match="MAX_DEPTH"):
        parse("(" * (MAX_DEPTH + 1) + "event_count" + ")" * (MAX_DEPTH + 1))


def test_a_chain_at_the_limit_compiles_evaluates_and_prints_without_recursing() -> None:
    rule = " or ".join(["''"] * (MAX_TERMS - 1) + ["event_count > 1"])
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + 60)  # far fewer frames than the chain is long
    try:
        compiled = compile_rule(rule)
        matched, unmatched = compiled.matches({"event_count": 2}), compiled.matches({"event_count": 0})
        printed = to_text(compiled.tree)
    finally:
        sys.setrecursionlimit(limit)
    assert (matched, unmatched) == (True, False) and compiled.features == {"event_count"}
    assert parse(printed) == compiled.tree


def test_a_large_number_is_a_threshold_unless_compared_with_a_profile_attribute() -> None:
    assert compile_rule("total_spend >= 100000000").features == {"total_spend"}
    assert compile_rule("profile.age >= 18 and profile.plan == 2026").features == {
        "profile.age",
        "profile.plan",
    }


@pytest.mark.parametrize(
    ("rule", "position", "kind"),
    [
        ("profile.email == 'jane.doe@example.com'", 17, "an e-mail address"),
        ("profile.phone in ['DE', '+49 170 1234567']", 24, "a phone number"),
        ("profile.tel == '(030) 123-4567'", 15, "a phone number"),
        ("profile.mobile == 491701234567", 18, "a phone number"),
        ("profile.tel in [1, 301234567]", 19, "a phone number"),
    ],
)
def test_a_literal_that_looks_like_personal_data_is_refused(rule: str, position: int, kind: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule(rule)
    assert caught.value.position == position
    assert f"looks like {kind}" in str(caught.value) and "personal data" in str(caught.value)


@pytest.mark.parametrize(
    "rule",
    ["profile.since == '2024-01-01'", "profile.zip == '10115'", "profile.domain == 'example.com'"],
)
def test_ordinary_literals_are_not_mistaken_for_personal_data(rule: str) -> None:
    compile_rule(rule)


FEATURES = st.sampled_from(
    ["total_spend", "purchase_count", "event_count", "last_seen_days", "events.page.view", "profile.country"]
)
SCALARS = st.one_of(
    # Integers of 7 to 15 digits compared with a profile attribute are refused as phone numbers.
    st.integers(-(10**12), 10**12).filter(lambda n: not 7 <= len(str(abs(n))) <= 15),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=8).filter(lambda text: contact_kind(text) is None),
    st.booleans(),
)
OPERANDS = st.one_of(
    FEATURES.map(Feature),
    SCALARS.map(Constant),
    st.lists(SCALARS, max_size=3).map(lambda items: ListOf(tuple(items))),
)
MISSING = object()  # a feature the customer lacks
OPS = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"])
LEAVES = st.one_of(st.builds(Compare, OPS, OPERANDS, OPERANDS), OPERANDS.map(Truth))
TREES: st.SearchStrategy[Node] = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.builds(And, inner, inner), st.builds(Or, inner, inner), inner.map(Not)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(TREES)
def test_printed_rules_parse_back_to_the_same_tree(tree: Node) -> None:
    assert parse(to_text(tree)) == tree


@settings(max_examples=200, deadline=None)
@given(TREES, st.fixed_dictionaries({}, optional={"total_spend": SCALARS, "profile.country": SCALARS}))
def test_evaluation_never_raises(tree: Node, features: dict[str, object]) -> None:
    assert compile_rule(to_text(tree)).matches(features) in (True, False)


GARBAGE_ALPHABET = st.sampled_from(
    list("()[],'\"\\ <>=!-.0123456789abdeilnorstux_") + ["and", "or", "not", "in"]
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(GARBAGE_ALPHABET, max_size=30).map("".join)))
def test_garbage_never_crashes_only_raises_rule_error(text: str) -> None:
    try:
        compile_rule(text)
    except RuleError as exc:
        assert 0 <= exc.position <= len(text)


def test_a_stated_preference_is_a_feature_and_a_listed_one_is_read_with_in() -> None:
    readers = compile_rule("'books' in profile.pref.interests and profile.pref.frequency == 'weekly'")
    assert readers.features == {"profile.pref.interests", "profile.pref.frequency"}
    assert readers.matches({"profile.pref.interests": ["books", "music"], "profile.pref.frequency": "weekly"})
    assert not readers.matches({"profile.pref.interests": ["music"], "profile.pref.frequency": "weekly"})
    assert not readers.matches({"profile.pref.frequency": "weekly"})  # removed: missing


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["<", "<=", ">", ">="]), SCALARS, st.one_of(SCALARS, st.none(), st.just(MISSING)))
def test_a_comparison_with_a_literal_orders_exactly_like_the_general_one(
    op: str, literal: object, value: object
) -> None:
    # `total_spend <op> literal` takes the specialized path, `literal <op'> total_spend` the general
    # one: both must agree for every value a feature may hold (missing, bool, another family).
    mirrored = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
    features = {} if value is MISSING else {"total_spend": value}
    special = Compare(op, Feature("total_spend"), Constant(literal))  # type: ignore[arg-type]
    general = Compare(mirrored, Constant(literal), Feature("total_spend"))  # type: ignore[arg-type]
    outcome = compile_rule(to_text(special)).matches(features)
    assert outcome == compile_rule(to_text(general)).matches(features)
