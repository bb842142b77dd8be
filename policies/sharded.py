"""Sampling a round on several CPU processes (``generation.workers``): the transformers backend, once per
worker process, each with its share of the prompts and of the threads.

The prompts are split into ``workers`` contiguous shards of near-equal size; a worker samples prompt
``first_index + i`` of the round with the generators of ``(seed, first_index + i, sample)``
(:meth:`policies.generation.TransformersBackend.generate_from`), so the samples are those of one process
whatever the number of workers. The workers are ``concurrent.futures`` processes started with ``spawn``
(never ``fork``: the parent holds torch's threads and a model), each loading the model once, when the pool
starts, and keeping it (and the adapters it attached) until :meth:`ShardedBackend.close`. Adapters travel
as :class:`AdapterRef` (path and SHA-256): every worker verifies the bytes itself.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Self

from tether_types import AdapterRef, Generation, GenerationStats, SamplingSpec

_backend: Any = None  # the worker process's TransformersBackend, made by _start


def _start(model_ref: str, kwargs: dict[str, Any], threads: int) -> None:
    """Runs once in each worker process: its share of the threads, then the model."""
    global _backend
    import torch

    torch.set_num_threads(threads)
    from policies.generation import TransformersBackend

    _backend = TransformersBackend(model_ref, **kwargs)


def _generate(prompts: list[str], adapter: AdapterRef | None, spec: SamplingSpec,
              first_index: int) -> tuple[list[Generation], GenerationStats | None]:
    return _backend.generate_from(prompts, adapter, spec, first_index), _backend.last_stats


def _score(prompts: list[str], responses: list[str]) -> list[float]:
    return list(_backend.base_logprobs(prompts, responses))


def shards(count: int, workers: int) -> list[range]:
    """``range(count)`` cut into at most ``workers`` contiguous, non-empty pieces whose sizes differ by at most 1."""
    size, extra = divmod(count, workers)
    pieces, start = [], 0
    for w in range(workers):
        end = start + size + (1 if w < extra else 0)
        if end > start:
            pieces.append(range(start, end))
        start = end
    return pieces


class ShardedBackend:
    """The :class:`policies.generation.GenerationBackend` protocol over ``workers`` worker processes, each a
    ``TransformersBackend(model_ref, **kwargs)`` on ``threads // workers`` torch threads (at least 1)."""

    def __init__(self, model_ref: str, workers: int, threads: int, **kwargs: Any) -> None:
        if workers < 2:
            raise ValueError(f"a sharded backend needs at least 2 workers, got {workers}")
        self.workers = workers
        self.last_stats: GenerationStats | None = None
        self._pool = futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
            initargs=(str(model_ref), {**kwargs, "progress": False}, max(1, threads // workers)))

    def generate(self, prompts: Sequence[str], adapter: AdapterRef | None, spec: SamplingSpec) -> list[Generation]:
        """``spec.n`` responses per prompt, ordered by (prompt_index, sample_index), as one process samples them."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not a single string")
        started = time.perf_counter()
        pieces = shards(len(prompts), self.workers)
        jobs = [self._pool.submit(_generate, [prompts[i] for i in piece], adapter, spec, piece.start)
                for piece in pieces]
        results: list[Generation] = []
        tokens = decoded = slots = 0
        for piece, job in zip(pieces, jobs, strict=True):
            generations, stats = job.result()  # a worker's error is raised here, in the caller
            results += [replace(g, prompt_index=g.prompt_index + piece.start) for g in generations]
            if stats is not None:
                tokens, decoded, slots = tokens + stats.tokens, decoded + stats.decoded_tokens, slots + stats.slot_steps
        self.last_stats = GenerationStats(tokens=tokens, seconds=time.perf_counter() - started,
                                          decoded_tokens=decoded, slot_steps=slots)
        return results

    def base_logprobs(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """:meth:`policies.generation.TransformersBackend.base_logprobs`, its rows split over the workers."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
        jobs = [self._pool.submit(_score, [prompts[i] for i in piece], [responses[i] for i in piece])
                for piece in shards(len(prompts), self.workers)]
        return [value for job in jobs for value in job.result()]

    def close(self) -> None:
        """Stop the worker processes (and free their models)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
