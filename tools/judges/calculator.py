"""The `calculator` judge: arithmetic claims checked with a calculator, the rest by a wrapped judge.

A judge built from a constitution cannot tell a right sum from a wrong one; a person grading the
answer would reach for a calculator. This judge does, from the prompt text and the response alone:

1. It reads the arithmetic question out of the prompt: numbers and + - * / (and parentheses), written
   in symbols ("What is 17 * 3?") or words ("plus", "minus", "times", "divided by", "add A and B",
   "subtract B from A", "take B away from A", "multiply A by B", "divide A by B", "the sum / difference
   / product / quotient of A and B"). A prompt is read as a question only when it holds exactly one such
   expression and asks for it: in words, or after "what is", "compute", "calculate", "evaluate", "how
   much is", "solve", "work out", or before "=". ("Steps 1-3" in a how-to is no question.)
2. It evaluates the expression with a safe evaluator: Python's `ast`, restricted to number literals,
   unary +/- and the four operators, in exact fractions, with bounded size. Never `eval`.
3. It takes the response's final number as its claim (thousands separators allowed) and compares: equal
   to the exact value, or, for a value with no short decimal form (1/3), rounded to the decimals the
   response gives (at least two).

`combine`: "gate" (default) keeps the wrapped judge's score for a correct claim (so among right answers
it still prefers the polite, concise one) and gives 0.0 to a wrong one; "replace" gives 1.0 / 0.0.
An arithmetic question answered without any number (a refusal, ".", a change of subject) does not
answer it and scores 0.0 like a wrong sum: deferring it to the wrapped judge was a loophole that a
loop found in three rounds on the tiny world (answers shrank to "." which the rules judge likes and the
calculator never checked). A prompt that is no arithmetic question goes to the wrapped judge unchanged
(default `rules`): a drop-in for it, in judge.pool or inside a jury.

It verifies arithmetic questions only. It never reads tools/worlds or the world's oracle
(tests/test_tool_judges.py checks its imports).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from tether_types import EXIT_USAGE, TetherError
from tools.judges.base import JUDGES, Judge, JudgeItem, ScoresCompare, Verdict, safe_score
from tools.registry import Built, PluginSettingsError

if TYPE_CHECKING:
    from guardrails.constitution import Constitution
    from tools.judges.base import PolicyHandle

Combine = Literal["gate", "replace"]
MAX_EXPRESSION_CHARS = 200
MAX_MAGNITUDE = 10**15  # numerators and denominators of every intermediate value stay below this

_NUM = r"\d+(?:\.\d+)?"
_OPERAND = rf"(?:\(\s*)*-?{_NUM}(?:\s*\))*"
_EXPRESSION = re.compile(rf"{_OPERAND}(?:\s*[-+*/]\s*{_OPERAND})+")
_A, _B = rf"(-?{_NUM})", rf"(-?{_NUM})"
# Word forms, rewritten to symbols before the expression is read (case-insensitive).
_WORDED: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.IGNORECASE), r) for p, r in (
    (rf"\bsubtract\s+{_B}\s+from\s+{_A}", r"\2 - \1"),
    (rf"\btake\s+{_B}\s+away\s+from\s+{_A}", r"\2 - \1"),
    (rf"\badd\s+{_A}\s+(?:and|to)\s+{_B}", r"\1 + \2"),
    (rf"\bmultiply\s+{_A}\s+(?:by|and)\s+{_B}", r"\1 * \2"),
    (rf"\bdivide\s+{_A}\s+by\s+{_B}", r"\1 / \2"),
    (rf"\bthe\s+sum\s+of\s+{_A}\s+and\s+{_B}", r"\1 + \2"),
    (rf"\bthe\s+difference\s+(?:between|of)\s+{_A}\s+and\s+{_B}", r"\1 - \2"),
    (rf"\bthe\s+product\s+of\s+{_A}\s+and\s+{_B}", r"\1 * \2"),
    (rf"\bthe\s+quotient\s+of\s+{_A}\s+and\s+{_B}", r"\1 / \2"),
    (r"(?<=\d)\s+plus\s+(?=[-(\d])", " + "),
    (r"(?<=\d)\s+minus\s+(?=[-(\d])", " - "),
    (r"(?<=\d)\s+(?:times|multiplied\s+by)\s+(?=[-(\d])", " * "),
    (r"(?<=\d)\s+divided\s+by\s+(?=[-(\d])", " / "),
))
_ASKS = re.compile(r"\b(?:what\s+is|what's|whats|compute|calculate|evaluate|how\s+much\s+is|solve|work\s+out)\b",
                   re.IGNORECASE)
_CLAIM = re.compile(r"(?<![\d)])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\d)])-?\d+(?:\.\d+)?")
_OPS: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}


class NotArithmetic(TetherError, ValueError):
    """The text is not an expression of numbers and + - * / within the evaluator's bounds."""
    exit_code = EXIT_USAGE


def _bounded(value: Fraction) -> Fraction:
    if abs(value.numerator) >= MAX_MAGNITUDE or value.denominator >= MAX_MAGNITUDE:
        raise NotArithmetic("a value is out of the calculator's range")
    return value


def evaluate(expression: str) -> Fraction:
    """The exact value of `expression`: numbers, unary +/-, + - * / and parentheses, nothing else.
    Raises NotArithmetic for anything else (names, calls, powers, ...), division by zero or a value out
    of range. Parsed with `ast` and walked node by node: no code is ever run."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise NotArithmetic(f"longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError) as err:
        raise NotArithmetic(f"not an expression: {err}") from None

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return _bounded(Fraction(str(node.value)))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise NotArithmetic("division by zero")
            return _bounded(_OPS[type(node.op)](left, right))
        raise NotArithmetic(f"{type(node).__name__} is not arithmetic")

    return walk(tree.body)


@dataclass(frozen=True)
class Question:
    expression: str
    value: Fraction


def read_question(prompt: str) -> Question | None:
    """The one arithmetic question `prompt` asks, or None (no expression, several, or not asked)."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", prompt)
    text = text.replace("×", "*").replace("÷", "/").replace("−", "-")
    worded = False
    for pattern, symbols in _WORDED:
        text, n = pattern.subn(symbols, text)
        worded = worded or n > 0
    matches = list(_EXPRESSION.finditer(text))
    found = {re.sub(r"\s+", " ", m.group(0)).strip() for m in matches}
    if len(found) != 1:
        return None
    (expression,) = found
    before_equals = any(text[m.end():].lstrip().startswith("=") for m in matches)
    if not (worded or before_equals or _ASKS.search(text)):
        return None
    try:
        return Question(expression, evaluate(expression))
    except NotArithmetic:
        return None


def final_number(response: str) -> tuple[Fraction, int] | None:
    """(the last number in `response`, its decimal places), or None."""
    found = _CLAIM.findall(response)
    if not found:
        return None
    last = found[-1].replace(",", "")
    return Fraction(last), len(last.split(".")[1]) if "." in last else 0


def matches(claim: Fraction, decimals: int, value: Fraction) -> bool:
    """The claim states `value`: exactly, or rounded to its decimals (>= 2) when `value` has no decimal
    form of at most 6 places."""
    if claim == value:
        return True
    short = (value * 10**6).denominator == 1
    return not short and decimals >= 2 and abs(claim - value) <= Fraction(1, 2 * 10**decimals)


class CalculatorJudge(ScoresCompare):
    def __init__(self, fallback: Built[Judge], combine: Combine) -> None:
        self.fallback, self.combine = fallback, combine

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        wrapped = safe_score(self.fallback.plugin, items) if items else []
        return [self._one(item, verdict) for item, verdict in zip(items, wrapped, strict=True)]

    def _one(self, item: JudgeItem, wrapped: Verdict) -> Verdict:
        question = read_question(item.prompt)
        if question is None:
            return Verdict(wrapped.score, wrapped.valid, wrapped.raw,
                           {**wrapped.details, "calculator": {"checked": False, "why": "no arithmetic question"}})
        claim = final_number(item.response)  # None: asked for a number and gave none, no answer
        correct = claim is not None and matches(claim[0], claim[1], question.value)
        checked = {"checked": True, "expression": question.expression, "value": str(question.value),
                   "claim": None if claim is None else str(claim[0]), "correct": correct,
                   "wrapped_score": wrapped.score}
        said = ("states no number: no answer" if claim is None
                else f"claims {claim[0]}: {'correct' if correct else 'wrong'}")
        raw = f"calculator: {question.expression} = {question.value}; the response {said}"
        if not correct:
            return Verdict(0.0, True, raw, {"calculator": checked})
        if self.combine == "replace":
            return Verdict(1.0, True, raw, {"calculator": checked})
        if not wrapped.valid or wrapped.score is None:  # right, but the rest of the answer could not be judged
            return Verdict(None, False, raw, {"invalid": wrapped.details.get("invalid", "wrapped judge invalid"),
                                              "calculator": checked})
        return Verdict(wrapped.score, True, raw, {**wrapped.details, "calculator": checked})


def build_fallback(name: str, spec: Mapping[str, Any] | None, constitution: Constitution | None,
                   policy: PolicyHandle | None) -> Built[Judge]:
    """The wrapped judge of a tool judge ({name, settings}; default rules), built like a jury member."""
    from tools.judges.jury import build_member

    context = {k: v for k, v in {"constitution": constitution, "policy": policy}.items() if v is not None}
    try:
        return build_member(dict(spec) if spec is not None else {"name": "rules"}, **context)
    except TypeError as err:  # e.g. rules without a constitution
        raise PluginSettingsError(f"{name}: its wrapped judge cannot be built: {err}") from None


def check_combine(name: str, combine: str) -> Combine:
    if combine not in ("gate", "replace"):
        raise PluginSettingsError(f"{name}: combine must be 'gate' or 'replace', got {combine!r}")
    return combine  # type: ignore[return-value]


@JUDGES.register("calculator")
def calculator(
    judge: Mapping[str, Any] | None = None,
    combine: str = "gate",
    constitution: Constitution | None = None,
    policy: PolicyHandle | None = None,
) -> CalculatorJudge:
    """Settings: judge ({name, settings} of the judge for everything the calculator cannot check;
    default rules), combine (gate: a right answer keeps that judge's score, a wrong one gets 0;
    replace: 1 or 0)."""
    return CalculatorJudge(build_fallback("calculator", judge, constitution, policy),
                           check_combine("calculator", combine))
