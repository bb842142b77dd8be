"""Write tether's bundled labelled probes from the hand-written templates (scripts/labelled_probe_templates.py).

    python scripts/make_labelled_probes.py [--out tools/judges/probes]

Writes pairwise.jsonl (judgment pairs: prompt, response_a, response_b, better, category) and
violation.jsonl (detector probes: prompt, response, invariant, violates, category). Deterministic:
the same templates and seed give the same bytes, so a diff of the committed files is a review of the
templates. The files are package data (pyproject: tools.judges probes/*.jsonl).

Why these probes, how they are labelled, and why they teach nothing harmful: the templates' module.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labelled_probe_templates import (
    ABUSE,
    ALARMING_BENIGN,
    ARITH_FORMS,
    ARITHMETIC,
    EVASIONS,
    HARM,
    HARM_ASKS,
    KIND_WITH_WORDS,
    MARKED_HARM,
    PADDING_CLOSE,
    PADDING_OPEN,
    PARAPHRASED_REFUSALS,
    QA,
    REFUSE_THEN_COMPLY,
    RUDE_PLAIN,
    RUDE_WORDED,
    STANDARD_REFUSALS,
    UNMARKED_HARM,
    VAGUE_COMPLIANCE,
    WORDS_NOT_ABUSE,
)

SEED = "tether-labelled-probes-v1"


def pairwise(rng: random.Random) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(prompt: str, better: str, worse: str, category: str) -> None:
        # The better answer's slot is drawn, so a judge favouring a slot cannot score by it.
        a, b, label = (better, worse, "a") if rng.random() < 0.5 else (worse, better, "b")
        rows.append({"prompt": prompt, "response_a": a, "response_b": b, "better": label, "category": category})

    for question, right, wrong in ARITHMETIC:  # two phrasings each: right vs wrong, same form
        for form in rng.sample(ARITH_FORMS, 2):
            add(question, form.format(x=right), form.format(x=wrong), "arithmetic")
    for request, what in (*UNMARKED_HARM, *MARKED_HARM):
        for _ in range(2 if (request, what) in UNMARKED_HARM[:11] else 1):
            refusal = rng.choice(PARAPHRASED_REFUSALS + STANDARD_REFUSALS).format(what=what)
            add(rng.choice(HARM_ASKS).format(x=request), refusal, rng.choice(VAGUE_COMPLIANCE), "harmful")
    for question, answer in ALARMING_BENIGN:
        add(question, answer, rng.choice(STANDARD_REFUSALS).format(what="That"), "over_refusal")
    for i, (question, first, second) in enumerate(QA):
        answer = (first, second)[i % 2]
        add(question, answer, rng.choice(RUDE_PLAIN + RUDE_WORDED).format(answer=answer), "rude")
        add(question, first, rng.choice(EVASIONS), "evasive")
        add(question, second, rng.choice(EVASIONS), "evasive")
        add(question, answer, f"{rng.choice(PADDING_OPEN)} {answer} {rng.choice(PADDING_CLOSE)}", "concise")
        rows.append({"prompt": question, "response_a": first, "response_b": second, "better": "tie",
                     "category": "equivalent"})
    for question, answer in WORDS_NOT_ABUSE:
        add(question, answer, rng.choice(RUDE_PLAIN).format(answer=answer), "rude")
    return rows


def violations(rng: random.Random) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(prompt: str, response: str, invariant: str, violates: bool, category: str) -> None:
        rows.append({"prompt": prompt, "response": response, "invariant": invariant, "violates": violates,
                     "category": category})

    for request, what in UNMARKED_HARM:
        asks = rng.sample(HARM_ASKS, 3)
        add(asks[0].format(x=request), rng.choice(VAGUE_COMPLIANCE), HARM, True, "harm_unmarked_complies")
        add(asks[1].format(x=request), rng.choice(VAGUE_COMPLIANCE), HARM, True, "harm_unmarked_complies")
        add(asks[2].format(x=request), rng.choice(PARAPHRASED_REFUSALS).format(what=what), HARM, False,
            "harm_unmarked_refuses")
    for request, what in MARKED_HARM:
        asks = rng.sample(HARM_ASKS, 5)
        add(asks[0].format(x=request), rng.choice(PARAPHRASED_REFUSALS).format(what=what), HARM, False,
            "harm_paraphrased_refusal")
        add(asks[1].format(x=request), rng.choice(PARAPHRASED_REFUSALS).format(what=what), HARM, False,
            "harm_paraphrased_refusal")
        add(asks[2].format(x=request), rng.choice(STANDARD_REFUSALS).format(what=what), HARM, False,
            "harm_standard_refusal")
        add(asks[3].format(x=request), rng.choice(VAGUE_COMPLIANCE), HARM, True, "harm_complies")
        add(asks[4].format(x=request), rng.choice(REFUSE_THEN_COMPLY), HARM, True, "harm_refuses_then_complies")
    for question, answer in ALARMING_BENIGN:
        add(question, answer, HARM, False, "benign_alarming_words")
    for question, first, second in QA:
        add(question, rng.choice(RUDE_PLAIN).format(answer=first), ABUSE, True, "abuse_without_insult_word")
        add(question, rng.choice(RUDE_PLAIN).format(answer=second), ABUSE, True, "abuse_without_insult_word")
        add(question, rng.choice(RUDE_WORDED).format(answer=second), ABUSE, True, "abuse_with_insult_word")
        add(question, rng.choice(KIND_WITH_WORDS).format(answer=first), ABUSE, False, "insult_word_not_abuse")
        add(question, first, ABUSE, False, "polite")
    for question, answer in WORDS_NOT_ABUSE:
        add(question, answer, ABUSE, False, "insult_word_not_abuse")
    return rows


def write(rows: Sequence[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tools/judges/probes")
    args = parser.parse_args()
    pairs, probes = pairwise(random.Random(f"{SEED}/pairwise")), violations(random.Random(f"{SEED}/violation"))
    write(pairs, args.out / "pairwise.jsonl")
    write(probes, args.out / "violation.jsonl")
    print(f"wrote {len(pairs)} pairs to {args.out / 'pairwise.jsonl'} and {len(probes)} violation probes to "
          f"{args.out / 'violation.jsonl'}")


if __name__ == "__main__":
    main()
