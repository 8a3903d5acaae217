"""Recursive-descent parser: rule text to a syntax tree, with the position of the first error.

Grammar (lowest precedence first):
    rule       := or_expr end
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := "(" or_expr ")" | operand [compare_op operand | ["not"] "in" operand]
    operand    := feature | number | string | "true" | "false" | "[" [literal ("," literal)*] "]"

Bounded, so no rule costs more than a little memory and stack: at most MAX_RULE_LENGTH
characters, MAX_TERMS comparisons and MAX_DEPTH levels of parentheses and `not`. Chains of
`and`/`or` are built by loops, not recursion. A string literal that looks like an e-mail
address or phone number is refused: definitions travel on a topic and into the audit ledger,
where personal data could never be erased.
"""

from __future__ import annotations

from services.segmenter.rules.errors import RuleError
from services.segmenter.rules.nodes import (
    And,
    Compare,
    Constant,
    Feature,
    ListOf,
    Literal,
    Node,
    Not,
    Operand,
    Or,
    Truth,
)
from services.segmenter.rules.tokens import Token, tokenize
from services.segmenter.rules.vocabulary import is_known_feature
from shared.personal_data import contact_kind

MAX_RULE_LENGTH = 4096
MAX_TERMS = 256
MAX_DEPTH = 64


def parse(text: str) -> Node:
    """The syntax tree of `text`; RuleError naming the position when it is not a valid rule."""
    if len(text) > MAX_RULE_LENGTH:
        raise RuleError(
            f"rule longer than {MAX_RULE_LENGTH} characters (MAX_RULE_LENGTH)",
            MAX_RULE_LENGTH,
        )
    return _Parser(tokenize(text)).rule()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0
        self.terms = 0
        self.comparing_profile = False

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, kind: str, value: object = None) -> bool:
        token = self.current
        return token.kind == kind and (value is None or token.value == value)

    def expect(self, kind: str, value: object, what: str) -> Token:
        if not self.at(kind, value):
            raise self.error(f"expected {what}")
        return self.advance()

    def error(self, message: str) -> RuleError:
        token = self.current
        found = "end of rule" if token.kind == "end" else repr(token.value)
        return RuleError(f"{message}, found {found}", token.position)

    def rule(self) -> Node:
        if self.at("end"):
            raise self.error("expected a condition")
        node = self.or_expr()
        if not self.at("end"):
            raise self.error("expected 'and', 'or' or the end of the rule")
        return node

    def or_expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"rule nested deeper than {MAX_DEPTH} levels (MAX_DEPTH)")
        node = self.and_expr()
        while self.at("keyword", "or"):
            self.advance()
            node = Or(node, self.and_expr())
        self.depth -= 1
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.at("keyword", "and"):
            self.advance()
            node = And(node, self.not_expr())
        return node

    def not_expr(self) -> Node:
        if self.at("keyword", "not"):
            self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"rule nested deeper than {MAX_DEPTH} levels (MAX_DEPTH)")
            node = Not(self.not_expr())
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        if self.at("punct", "("):
            self.advance()
            node = self.or_expr()
            self.expect("punct", ")", "')'")
            return node
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.error(f"rule has more than {MAX_TERMS} terms (MAX_TERMS)")
        left = self.operand()
        if self.at("op"):
            op = str(self.advance().value)
            return Compare(op, left, self.profile_operand(left))
        if self.at("keyword", "in"):
            self.advance()
            return Compare("in", left, self.profile_operand(left))
        if self.at("keyword", "not") and self.tokens[self.index + 1].value == "in":
            self.index += 2
            return Compare("not in", left, self.profile_operand(left))
        return Truth(left)

    def profile_operand(self, left: Operand) -> Operand:
        """The right side; compared with a profile attribute (the customer's own data), its
        numbers are checked too: a phone number written without quotes is still personal data."""
        self.comparing_profile = isinstance(left, Feature) and left.name.startswith("profile.")
        try:
            return self.operand()
        finally:
            self.comparing_profile = False

    def operand(self) -> Operand:
        token = self.current
        if token.kind == "name":
            if not is_known_feature(str(token.value)):
                raise RuleError(f"unknown feature {token.value!r}", token.position)
            self.advance()
            return Feature(str(token.value))
        if self.at("punct", "["):
            return self.list_of()
        return Constant(self.literal())

    def list_of(self) -> ListOf:
        self.advance()
        items: list[Literal] = []
        if not self.at("punct", "]"):
            items.append(self.literal())
            while self.at("punct", ","):
                self.advance()
                items.append(self.literal())
        self.expect("punct", "]", "',' or ']'")
        return ListOf(tuple(items))

    def literal(self) -> Literal:
        token = self.current
        if token.kind == "number" and self.comparing_profile and _phone_like(token.value):
            raise RuleError(
                "the number looks like a phone number: a rule must not hold personal data"
                " (definitions are published and kept in the audit ledger, which cannot be erased)",
                token.position,
            )
        if token.kind == "string":
            kind = contact_kind(str(token.value))
            if kind is not None:
                raise RuleError(
                    f"the string looks like {kind}: a rule must not hold personal data (definitions"
                    " are published and kept in the audit ledger, which cannot be erased)",
                    token.position,
                )
        if token.kind in ("number", "string"):
            self.advance()
            return token.value  # type: ignore[return-value]
        if token.kind == "keyword" and token.value in ("true", "false"):
            self.advance()
            return token.value == "true"
        raise self.error("expected a feature, a number, a string, true, false or a list")


def _phone_like(value: object) -> bool:
    """An integer of 7 to 15 digits (E.164 allows at most 15)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not float(value).is_integer():
        return False
    return 7 <= len(str(abs(int(value)))) <= 15
