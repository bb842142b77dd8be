"""Self-prompting: the format in which a model is asked to write ONE new prompt from a few examples,
and the parser of its answer.

A small model's context is short (the embedded tiny model has 128 tokens for prompt and answer
together), so the request is as short as it can be: one instruction line, `shots` examples (one line
each) and an answer cue; the answer gets `prompts.regenerate.max_new_tokens`.
The tiny world's corpus (its PromptWritingSource) teaches the tiny model the same format, so the two
cannot drift: both call `writer_prompt`.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from tether_types import Prompt

INSTRUCTION = "Write one new request in the style of these examples."
EXAMPLE_PREFIX = "Example:"
ANSWER_CUE = "New request:"

# Labels a model may echo before its answer; stripped, in any order and case.
_LABEL_RE = re.compile(r"^\s*(?:example|new request)\s*:\s*", re.IGNORECASE)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"
_CONTROL_MARKERS: tuple[str, ...] = ("<|", "|>")  # chat control tokens, e.g. <|user|>
_TERMINALS = ("?", ".", "!")
_PUNCT = ".,;:!?" + _QUOTES


def writer_prompt(examples: Sequence[str]) -> str:
    """The user message asking for one new request in the style of `examples` (one per line)."""
    if not examples:
        raise ValueError("writer_prompt needs at least one example")
    lines = [INSTRUCTION]
    # One line per example: a newline inside one would read as the end of that example.
    lines += [f"{EXAMPLE_PREFIX} {' '.join(e.split())}" for e in examples]
    lines.append(ANSWER_CUE)
    return "\n".join(lines)


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def _strip_labels_and_quotes(line: str) -> str:
    previous = None
    while previous != line:  # labels and quotes can nest: '"New request: How do I ...?"'
        previous = line
        line = _LABEL_RE.sub("", line).strip().strip(_QUOTES).strip()
    return line


def _is_degenerate(words: list[str]) -> bool:
    """Looping output: one word makes up more than half the words, or a word trigram recurs
    (the tiny model's typical loop is a repeated phrase, which the first rule misses)."""
    # Punctuation stripped so "door?" and "door" are one word; "-" in "9 - 9." still counts.
    tokens = [w.strip(_PUNCT).lower() or w for w in words]
    if Counter(tokens).most_common(1)[0][1] > len(tokens) / 2:
        return True
    trigrams = list(zip(tokens, tokens[1:], tokens[2:], strict=False))
    return len(set(trigrams)) < len(trigrams)


def parse_written(text: str, max_words: int = 40) -> str | None:
    """The prompt a model wrote, cleaned (first non-empty line, echoed labels and quotes removed,
    whitespace collapsed), or None when it is unusable: control tokens, no letters, fewer than 3 or
    more than `max_words` words, degenerate repetition, or no final ?/./! on fewer than 4 words
    (a short unterminated answer is most likely cut off)."""
    line = _first_line(text)
    if any(marker in line for marker in _CONTROL_MARKERS):
        return None
    cleaned = " ".join(_strip_labels_and_quotes(line).split())
    words = cleaned.split()
    if not any(ch.isalpha() for ch in cleaned):
        return None
    if not 3 <= len(words) <= max_words or _is_degenerate(words):
        return None
    if not cleaned.endswith(_TERMINALS) and len(words) < 4:
        return None
    return cleaned


@dataclass(frozen=True)
class WritingTask:
    """One request to write a prompt: the family it should belong to and the few-shot examples."""

    family: str
    examples: tuple[str, ...]

    @property
    def prompt(self) -> str:
        return writer_prompt(self.examples)


def writing_tasks(
    seeds: Sequence[Prompt], n: int, shots: int, rng: random.Random
) -> list[WritingTask]:
    """`n` tasks whose examples all come from ONE family of `seeds` (mixing families would ask for a
    blend no family verifies); families take turns in sorted order, so each is covered once n >=
    the number of families. A family with fewer than `shots` seeds gives all it has."""
    if n < 0 or shots < 1:
        raise ValueError(f"need n >= 0 and shots >= 1, got n={n}, shots={shots}")
    by_family: dict[str, list[str]] = defaultdict(list)
    for p in seeds:
        by_family[p.family].append(p.text)
    if n and not by_family:
        raise ValueError("writing_tasks needs at least one seed prompt")
    families = sorted(by_family)
    tasks: list[WritingTask] = []
    for i in range(n):
        family = families[i % len(families)]
        pool = by_family[family]
        tasks.append(WritingTask(family, tuple(rng.sample(pool, min(shots, len(pool))))))
    return tasks
