"""One batch of rows through ``model.generate``: static, or compacted as rows finish.

``static`` is one ``generate`` call: a row that has ended keeps its slot (decoded, then thrown
away) until the longest row ends. With sampled answers of very different lengths most slot-steps
are wasted: on the tiny world's default round (64 prompts x 6 samples, 48 new tokens) only 39 % of
them produce kept tokens.

``compact`` runs the same ``generate`` in segments: a segment stops once ``COMPACT_SHARE`` of its
rows have ended, the finished rows are dropped from the batch and from the KV cache
(``Cache.batch_select_indices``), and ``generate`` continues the rest from that cache. The model,
the logits processors, the sampler and the cache stay transformers' own; only the batch shrinks.
Greedy decoding gives the same tokens as ``static`` (each row's computation does not depend on the
other rows).

Sampling draws each row's tokens from that row's own ``torch.Generator`` (:class:`RowSampler`), seeded by
the caller per prompt and sample, not from one stream shared by the batch: a row's tokens then do not
depend on which rows share its batch, so compaction, the batch size and sharding the prompts over worker
processes (policies/sharded.py) all draw the same numbers for it.

transformers' continuous batching (``generate_batch``) was measured too: on CPU it has only dense
attention masks over the whole paged cache, and it was slower than ``static`` on the tiny world
(see benchmarks/bench_generation.py).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

Batching = Literal["static", "compact"]
BATCHINGS: tuple[Batching, ...] = ("static", "compact")

# A segment ends once this share of its rows has ended. Lower compacts more often (each compaction
# restarts `generate` and copies the cache); higher decodes more finished rows. 0.1 to 0.25 were
# equally fast on the tiny world (benchmarks/bench_generation.py).
COMPACT_SHARE = 0.25


@dataclass(frozen=True)
class Decoded:
    """The new tokens of each row (eos and anything after it included), and the slot-steps spent:
    rows in the batch times decoding steps, summed over segments."""

    rows: list[list[int]]
    slot_steps: int


class _EndSegment(StoppingCriteria):
    """Ends the whole `generate` call once `share` of the rows have produced an eos since `start`
    (all rows "stop"; the caller continues the unfinished ones)."""

    def __init__(self, start: int, eos: torch.Tensor, share: float) -> None:
        self.start, self.eos, self.share = start, eos, share

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        ended = torch.isin(input_ids[:, self.start :], self.eos).any(dim=1)
        if ended.all() or ended.float().mean() < self.share:
            return torch.zeros_like(ended)
        return torch.ones_like(ended)


@dataclass(frozen=True)
class RowDraws:
    """Sampling with a generator per row (expanded rows: input row ``i // n``, sample ``i % n``), after
    transformers' own temperature, top-k and top-p warpers (top_k 0: none)."""

    temperature: float
    top_p: float
    generators: list[torch.Generator]
    top_k: int = 0


class RowSampler(LogitsProcessor):
    """Draws each row's next token from its own generator and leaves it the only possible one: transformers'
    sampler, which runs after every logits processor, then picks exactly that token. (transformers adds its
    warpers after the caller's processors, so they are applied here, first; the generation config then asks
    for none.)"""

    def __init__(self, draws: RowDraws, rows: list[int]) -> None:
        self.generators = [draws.generators[r] for r in rows]
        # transformers' order: temperature, then top-k, then top-p
        self.warpers = LogitsProcessorList([TemperatureLogitsWarper(draws.temperature)]
                                           + ([TopKLogitsWarper(draws.top_k)] if draws.top_k > 0 else [])
                                           + ([TopPLogitsWarper(draws.top_p)] if draws.top_p < 1.0 else []))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(self.warpers(input_ids, scores).float(), dim=-1)
        # One uniform number per row from the row's generator, mapped through the row's distribution.
        u = torch.stack([torch.rand((), generator=g) for g in self.generators]).to(probs.device)
        cdf = probs.cumsum(dim=-1)
        tokens = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).clamp(max=probs.shape[-1] - 1)
        chosen = torch.full_like(scores, -math.inf)
        chosen.scatter_(1, tokens, 0.0)
        return chosen


def decode(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    config: GenerationConfig,
    eos_ids: list[int],
    batching: Batching,
    draws: RowDraws | None = None,
) -> Decoded:
    """Generate for a left-padded batch. ``config.num_return_sequences`` rows come back per input row
    (next to each other), as from ``generate``. With ``draws`` each row samples from its own generator."""
    if batching == "static":
        every_row = list(range(input_ids.shape[0] * (config.num_return_sequences or 1)))
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                             logits_processor=_processors(draws, every_row))
        new = out[:, input_ids.shape[1] :]
        return Decoded(new.tolist(), new.shape[0] * new.shape[1])
    if batching != "compact":
        raise ValueError(f"unknown batching {batching!r}; expected one of {', '.join(BATCHINGS)}")
    if not eos_ids:  # nothing ever ends early: there is nothing to compact
        return decode(model, input_ids, attention_mask, config, eos_ids, "static", draws)
    n = config.num_return_sequences or 1
    # Expanded as generate expands them, so the first segment samples exactly as `static` does.
    seqs = input_ids.repeat_interleave(n, dim=0)
    mask = attention_mask.repeat_interleave(n, dim=0)
    segment = copy.deepcopy(config)
    segment.num_return_sequences = 1
    segment.return_dict_in_generate = True
    start, budget = seqs.shape[1], config.max_new_tokens
    eos = torch.tensor(eos_ids, device=seqs.device)
    stop = StoppingCriteriaList([_EndSegment(start, eos, COMPACT_SHARE)])
    rows: list[list[int]] = [[] for _ in range(seqs.shape[0])]
    alive = torch.arange(seqs.shape[0])
    cache = None
    slot_steps = 0
    while True:
        segment.max_new_tokens = budget - (seqs.shape[1] - start)
        out = model.generate(input_ids=seqs, attention_mask=mask, cache=cache, generation_config=segment,
                             stopping_criteria=stop, logits_processor=_processors(draws, alive.tolist()))
        steps = out.sequences.shape[1] - seqs.shape[1]
        slot_steps += steps * seqs.shape[0]
        seqs = out.sequences
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], steps)], dim=1)
        new = seqs[:, start:]
        ended = torch.isin(new, eos).any(dim=1) | (new.shape[1] >= budget)
        for i in torch.nonzero(ended).flatten().tolist():
            rows[int(alive[i])] = new[i].tolist()
        if ended.all():
            return Decoded(rows, slot_steps)
        keep = torch.nonzero(~ended).flatten()
        cache = out.cache
        cache.batch_select_indices(keep)
        seqs, mask, alive = seqs[keep], mask[keep], alive[keep.cpu()]


def row_generator(seed: int, prompt_index: int, sample_index: int) -> torch.Generator:
    """The generator of one sample: seeded from the run's sampling seed, the prompt's index in the round and the
    sample's index (numpy's SeedSequence mixes the three into independent streams), never from a process's state."""
    state = np.random.SeedSequence([seed, prompt_index, sample_index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _processors(draws: RowDraws | None, rows: list[int]) -> LogitsProcessorList | None:
    """The per-row sampler for the batch's rows (indices into ``draws.generators``), or None (greedy)."""
    return None if draws is None else LogitsProcessorList([RowSampler(draws, rows)])
