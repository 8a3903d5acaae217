"""The rule language of segments: tokenizer, recursive-descent parser, compiler and printer (no eval)."""

from services.segmenter.rules.compiler import CompiledRule, compile_rule
from services.segmenter.rules.errors import RuleError
from services.segmenter.rules.parser import parse

__all__ = ["CompiledRule", "RuleError", "compile_rule", "parse"]
