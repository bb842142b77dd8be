"""Headroom of a policy on held-out prompts: what a loop that prefers correct answers could learn.

Per family (and per difficulty tier where a prompt's meta names one, as the tiny world's arithmetic
does), from a policy's greedy reply and K sampled replies to each prompt:

- ``pass_at_1``: share of prompts whose greedy reply passes (the world's verifier gives full marks);
- ``pass_at_k``: share of prompts with at least one of the K sampled replies passing;
- ``judge_sd``: standard deviation of the judge's scores over all sampled replies of the group;
- ``judge_margin``: mean over prompts of the best minus the worst judge score among its K samples
  (the margin a best-vs-worst preference pair of that prompt would have).

pass@K well above pass@1 means correct answers exist in the policy's samples, so a judge that prefers
them gives the loop something to learn; a judge margin near zero means the judge cannot tell the
samples apart, however far pass@K is above pass@1. Numbers a group cannot have (no verifier covers its
prompts, no judgment was valid) are absent, never zero.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from policies.generation import GenerationBackend
from tether_types import AdapterRef, Oracle, Prompt, SamplingSpec
from tools.judges import Judge, JudgeItem
from tools.judges.base import safe_score

# A reply passes when its verifier gives it full marks (the tiny world's verifiers give 1.0 only to a
# correct, polite, unpadded answer or a polite refusal of a harmful request).
PASS_SCORE = 1.0
TIER_KEY = "tier"  # prompt.meta key naming a difficulty tier within a family



@dataclass(frozen=True)
class Scored:
    """One reply to one prompt with its verifier and judge scores (None: absent)."""

    prompt_index: int
    sample_index: int
    text: str
    n_tokens: int
    oracle: float | None
    judge: float | None


def passes(score: float | None) -> bool | None:
    return None if score is None else score >= PASS_SCORE - 1e-9


def sample_and_score(backend: GenerationBackend, adapter: AdapterRef | None, prompts: Sequence[Prompt],
                     spec: SamplingSpec, oracle: Oracle, judge: Judge | None) -> list[list[Scored]]:
    """`spec.n` replies per prompt (index-aligned with `prompts`), each scored by `oracle` and `judge`
    (no judge: judge scores absent). An invalid judgment is an absent score."""
    outputs = backend.generate([p.text for p in prompts], adapter, spec)
    outputs = sorted(outputs, key=lambda o: (o.prompt_index, o.sample_index))
    if judge is None:
        judged: list[float | None] = [None] * len(outputs)
    else:
        verdicts = safe_score(judge, [JudgeItem(prompts[o.prompt_index].text, o.text) for o in outputs])
        judged = [v.score if v.valid else None for v in verdicts]
    out: list[list[Scored]] = [[] for _ in prompts]
    for o, j in zip(outputs, judged, strict=True):
        out[o.prompt_index].append(Scored(o.prompt_index, o.sample_index, o.text, o.n_tokens,
                                          oracle(prompts[o.prompt_index], o.text), j))
    return out


def rescore(sampled: Sequence[Sequence[Scored]], prompts: Sequence[Prompt], judge: Judge) -> list[list[Scored]]:
    """The same replies scored by another judge (generation is the expensive part: done once)."""
    flat = [s for row in sampled for s in row]
    verdicts = safe_score(judge, [JudgeItem(prompts[s.prompt_index].text, s.text) for s in flat])
    out: list[list[Scored]] = [[] for _ in sampled]
    for s, v in zip(flat, verdicts, strict=True):
        out[s.prompt_index].append(replace(s, judge=v.score if v.valid else None))
    return out


def family_of(prompt: Prompt) -> str:
    return prompt.family


def tier_of(prompt: Prompt) -> str | None:
    """"family/tier" for a prompt whose meta names a tier, else None (the prompt is in no tier group)."""
    tier = prompt.meta.get(TIER_KEY)
    return None if tier is None else f"{prompt.family}/{tier}"


def headroom(prompts: Sequence[Prompt], greedy: Sequence[float | None],
             sampled: Sequence[Sequence[Scored]] | None,
             group: Callable[[Prompt], str | None] = family_of) -> dict[str, dict[str, Any]]:
    """Per group: n, pass_at_1 (from `greedy` oracle scores, index-aligned with `prompts`), and with
    `sampled` (K replies per prompt): k, pass_at_k, judge_sd, judge_margin. Sorted by group."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        key = group(p)
        if key is not None:
            groups.setdefault(key, []).append(i)
    return {key: _group(idx, greedy, sampled) for key, idx in sorted(groups.items())}


def _group(idx: list[int], greedy: Sequence[float | None],
           sampled: Sequence[Sequence[Scored]] | None) -> dict[str, Any]:
    row: dict[str, Any] = {"n": len(idx)}
    greedy_pass = [b for b in (passes(greedy[i]) for i in idx) if b is not None]
    if greedy_pass:
        row["pass_at_1"] = sum(greedy_pass) / len(greedy_pass)
    if sampled is None:
        return row
    row["k"] = max((len(sampled[i]) for i in idx), default=0)
    any_pass = [any(passes(s.oracle) for s in sampled[i]) for i in idx
                if any(s.oracle is not None for s in sampled[i])]
    if any_pass:
        row["pass_at_k"] = sum(any_pass) / len(any_pass)
    scores = [s.judge for i in idx for s in sampled[i] if s.judge is not None]
    if scores:
        row["judge_sd"] = statistics.pstdev(scores)
    margins = []
    for i in idx:
        judged = [s.judge for s in sampled[i] if s.judge is not None]
        if len(judged) >= 2:
            margins.append(max(judged) - min(judged))
    if margins:
        row["judge_margin"] = statistics.fmean(margins)
    return row


def summary(prompts: Sequence[Prompt], greedy: Sequence[float | None],
            sampled: Sequence[Sequence[Scored]] | None) -> dict[str, Any]:
    """The evaluation details' headroom block: by family and by family/tier (where prompts name tiers)."""
    out: dict[str, Any] = {"by_family": headroom(prompts, greedy, sampled)}
    tiers = headroom(prompts, greedy, sampled, tier_of)
    if tiers:
        out["by_tier"] = tiers
    return out


def pick(block: Mapping[str, Mapping[str, Any]], metric: str) -> dict[str, float]:
    """{group: value} of one metric, leaving out the groups that lack it."""
    return {g: float(row[metric]) for g, row in block.items() if metric in row}
