"""The one error of the rule language: what is wrong and at which character."""

from __future__ import annotations


class RuleError(ValueError):
    """A rule does not parse or names an unknown feature; `position` is the 0-based offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.reason = message
        self.position = position
