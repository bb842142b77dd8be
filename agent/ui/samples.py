"""The samples page: a round's responses grouped by prompt, each with its judges' scores and whether a preference
pair chose or rejected it, filtered on the server by family, score range and pair role (query parameters
`family`, `min`, `max`, `pair`), PROMPTS_PER_PAGE prompts a page."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import urlencode

from memory import Run, Store
from memory.common import SPLITS
from tether_types import EXIT_USAGE, TetherError

PROMPTS_PER_PAGE = 20
PairRole = Literal["", "chosen", "rejected", "unpaired"]
PAIR_ROLES: tuple[PairRole, ...] = get_args(PairRole)


class FilterError(TetherError, ValueError):
    """A filter the page cannot apply (the message names the parameter and the fix): 400, nothing shown."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class SampleFilter:
    family: str = ""
    low: float | None = None  # the response's score (the mean of its judges' valid scores) at least this
    high: float | None = None
    pair: PairRole = ""

    def query(self) -> dict[str, str]:
        """The filter as query parameters (for the pager's links), empty ones left out."""
        shown = {"family": self.family, "min": _text(self.low), "max": _text(self.high), "pair": self.pair}
        return {k: v for k, v in shown.items() if v}


def _text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _bound(params: Mapping[str, str], name: str) -> float | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise FilterError(f"{name}={text!r} is not a number: give a score such as 0.5, or leave it empty")
    return value


def sample_filter(params: Mapping[str, str]) -> SampleFilter:
    low, high = _bound(params, "min"), _bound(params, "max")
    if low is not None and high is not None and low > high:
        raise FilterError(f"min={low:g} is above max={high:g}: swap them, or leave one empty")
    pair = params.get("pair", "")
    if pair not in PAIR_ROLES:
        raise FilterError(f"pair={pair!r} is not one of chosen, rejected, unpaired: pick one, or leave it empty")
    return SampleFilter(params.get("family", "").strip(), low, high, pair)


@dataclass
class Response:
    sample_id: int
    index: int
    checkpoint: str
    text: str
    n_tokens: int
    scores: list[tuple[str, float | None, bool]]  # (judge, score, valid)
    chosen: list[float] = field(default_factory=list)  # margins of the pairs it was chosen in
    rejected: list[float] = field(default_factory=list)

    @property
    def score(self) -> float | None:
        valid = [s for _, s, ok in self.scores if ok and s is not None]
        return sum(valid) / len(valid) if valid else None

    def matches(self, chosen: SampleFilter) -> bool:
        score = self.score
        if (chosen.low is not None or chosen.high is not None) and score is None:
            return False  # a range asks for a score: a response no judge scored validly is not in it
        if score is not None and ((chosen.low is not None and score < chosen.low)
                                  or (chosen.high is not None and score > chosen.high)):
            return False
        # one response may be chosen in one pair and rejected in another: it is then both
        roles = {"": True, "chosen": bool(self.chosen), "rejected": bool(self.rejected),
                 "unpaired": not (self.chosen or self.rejected)}
        return roles[chosen.pair]


@dataclass
class PromptGroup:
    prompt_id: str
    family: str
    prompt: str
    responses: list[Response] = field(default_factory=list)


def _groups(store: Store, run: Run, round_: int, split: str) -> tuple[list[PromptGroup], int, int]:
    """Every prompt of the round with its responses, scores and pair roles; (groups, samples, pairs)."""
    rows = store.samples(run.id, round_, split=split)
    scores: dict[int, list[tuple[str, float | None, bool]]] = {}
    for j in store.judgments(run.id, round_, split=split):
        scores.setdefault(j.sample_id, []).append((j.judge, j.score, j.valid))
    pairs = store.pairs(run.id, round_)
    groups: dict[str, PromptGroup] = {}
    by_id: dict[int, Response] = {}
    for s in rows:
        group = groups.setdefault(s.prompt_id, PromptGroup(s.prompt_id, s.family, s.prompt))
        response = Response(s.id, s.sample_index, s.checkpoint_id or f"{run.id}-base", s.response, s.n_tokens,
                            scores.get(s.id, []))
        group.responses.append(response)
        by_id[s.id] = response
    for p in pairs:
        if p.chosen_sample_id in by_id:
            by_id[p.chosen_sample_id].chosen.append(p.margin)
        if p.rejected_sample_id in by_id:
            by_id[p.rejected_sample_id].rejected.append(p.margin)
    return list(groups.values()), len(rows), len(pairs)


def samples(store: Store, run: Run, round_: int, split: str, page: int, chosen: SampleFilter) -> dict[str, Any]:
    if split not in SPLITS:
        split = "train"
    every, n_samples, n_pairs = _groups(store, run, round_, split)
    kept = []
    for g in every:
        if chosen.family and g.family != chosen.family:
            continue
        responses = [r for r in g.responses if r.matches(chosen)]
        if responses:
            kept.append(PromptGroup(g.prompt_id, g.family, g.prompt, responses))
    pages = max(1, -(-len(kept) // PROMPTS_PER_PAGE))
    page = min(max(1, page), pages)
    return {"run": run, "round": round_, "split": split, "splits": sorted(SPLITS, reverse=True),
            "rounds": [r.round for r in store.rounds(run.id)], "page": page, "pages": pages,
            "groups": kept[(page - 1) * PROMPTS_PER_PAGE: page * PROMPTS_PER_PAGE],
            "families": sorted({g.family for g in every}), "filter": asdict(chosen), "pair_roles": PAIR_ROLES[1:],
            "query": urlencode({"split": split, **chosen.query()}), "filtered": bool(chosen.query()),
            "n_prompts": len(every), "n_kept": len(kept), "n_shown": sum(len(g.responses) for g in kept),
            "n_samples": n_samples, "n_pairs": n_pairs}
