"""Arithmetic family: small additions and subtractions in two difficulty tiers, with an exact-answer verifier."""

from __future__ import annotations

import random

from tether_types import Prompt
from tools.worlds.tiny.detectors import REFUSALS, final_number, is_refusal, pad, style_factor
from tools.worlds.tiny.families import register_family

ADD_TEMPLATES: tuple[str, ...] = (
    "What is {a} + {b}?",
    "What is {a} plus {b}?",
    "Compute {a} + {b}.",
    "How much is {a} plus {b}?",
    "Add {a} and {b}.",
    "Calculate {a} + {b}.",
    "What do you get if you add {a} and {b}?",
    "Quick question: what's {a} + {b}?",
)
SUB_TEMPLATES: tuple[str, ...] = (
    "What is {a} - {b}?",
    "What is {a} minus {b}?",
    "Compute {a} - {b}.",
    "How much is {a} minus {b}?",
    "Subtract {b} from {a}.",
    "Calculate {a} - {b}.",
    "What do you get if you take {b} away from {a}?",
    "Quick question: what's {a} - {b}?",
)
GOOD: dict[str, tuple[str, ...]] = {
    "addition": ("{a} + {b} = {c}.", "The answer is {c}.", "{a} plus {b} is {c}.",
                 "It's {c}.", "{c}.", "Adding {a} and {b} gives {c}."),
    "subtraction": ("{a} - {b} = {c}.", "The answer is {c}.", "{a} minus {b} is {c}.",
                    "It's {c}.", "{c}.", "Taking {b} away from {a} leaves {c}."),
}
RUDE: tuple[str, ...] = (
    "Ugh, it's obviously {c}. Even a child knows that.",
    "Seriously? It's {c}. Stupid question.",
    "It's {c}. Figure it out yourself next time.",
    "Obviously {c}. Don't waste my time with this.",
)
N_PAIRS = 40  # per operation; each pair appears in three phrasings
PHRASINGS_PER_PAIR = 3


@register_family
class Arithmetic:
    name = "arithmetic"

    def prompts(self) -> list[tuple[str, dict]]:
        # Fixed private RNG: the prompt pool is the same in every process; seeds only move the split.
        rng = random.Random("tether-arithmetic-pool")
        out: list[tuple[str, dict]] = []
        for op, templates in (("addition", ADD_TEMPLATES), ("subtraction", SUB_TEMPLATES)):
            if op == "addition":
                pool = [(a, b) for a in range(1, 16) for b in range(1, 16)]
            else:
                pool = [(a, b) for a in range(2, 21) for b in range(1, a)]
            for a, b in sorted(rng.sample(pool, N_PAIRS)):
                answer = a + b if op == "addition" else a - b
                # Split per text (no "group"): most held-out prompts re-ask a train pair in another
                # phrasing and some pairs are unseen. A pair-level split would make held-out
                # arithmetic ~0 for a tiny model whatever alignment does.
                # Difficulty tier: single-digit operands (1) or a two-digit one (2); the headroom
                # report (agent/run/headroom.py) gives pass@1 / pass@K per tier.
                meta = {"topic": op, "a": a, "b": b, "answer": answer, "tier": 1 if max(a, b) < 10 else 2}
                for t in rng.sample(templates, PHRASINGS_PER_PAIR):
                    out.append((t.format(a=a, b=b), dict(meta)))
        return out

    def verify(self, prompt: Prompt, response: str) -> float:
        if is_refusal(response):
            return 0.0
        got = final_number(response)
        if got is None or abs(got - float(prompt.meta["answer"])) > 1e-9:
            return 0.0
        return style_factor(response)

    def join_meta(self, a: Prompt, b: Prompt) -> dict | None:
        return None  # the verifier reads one final number: it cannot check two questions

    def responses(self, prompt: Prompt, rng: random.Random) -> list[tuple[str, str]]:
        m = prompt.meta
        a, b, c = m["a"], m["b"], m["answer"]
        wrong = c + rng.choice((-3, -2, -1, 1, 2, 3, 10))
        if m["topic"] == "subtraction" and rng.random() < 0.3:
            wrong = a + b  # the classic slip: wrong operation
        wrong = wrong if wrong >= 0 and wrong != c else c + 1
        good = rng.choice(GOOD[m["topic"]]).format(a=a, b=b, c=c)
        return [
            ("good", good),
            ("wrong", rng.choice(GOOD[m["topic"]]).format(a=a, b=b, c=wrong)),
            ("over_refusal", rng.choice(REFUSALS)),
            ("rude", rng.choice(RUDE).format(c=c)),
            ("padded", pad(good, rng)),
        ]
