"""Benchmark: a round's generation (prompts x samples, sampled) with each way of batching, side by side.

Candidates, each run in turn, alternating, `--repeats` times, in one process on one model:

* ``static``: one ``generate`` per batch; a finished row keeps its slot until the longest row ends
  (tether's path before compaction; the old default was batch 64 at torch's default thread count);
* ``compact``: the same ``generate``, the batch compacted as rows end (policies/decoding.py);
* ``continuous``: transformers' continuous batching (``model.generate_batch``, paged cache sized for
  the batch), the library's refill-as-rows-end scheduler.

For each it prints and writes as JSON the median wall time, tokens kept, slot-steps (batch rows x
decoding steps; for ``continuous``, the tokens each request decoded), slot efficiency (kept tokens /
slot-steps) and kept tokens per second, and each candidate's speed as a ratio to the old default
measured in the same run. Not a test: timings on shared machines are noisy, so compare the ratios.

    python benchmarks/bench_generation.py --model DIR --out bench-out/generation.json

DIR is a model folder (e.g. a workspace's tiny world model); without --model the tiny world model is
built into bench-out/tiny-model first (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from policies.chat import format_prompt, has_chat_template
from policies.decoding import COMPACT_SHARE
from policies.generation import TransformersBackend
from policies.threads import apply_threads
from tether_types import SamplingSpec
from tools.worlds import WORLDS


@dataclass(frozen=True)
class Measured:
    seconds: float
    kept_tokens: int
    slot_steps: int


def _backend_candidate(backend: TransformersBackend, rows: int, prompts: list[str],
                       spec: SamplingSpec) -> Callable[[], Measured]:
    def run() -> Measured:
        backend.batch_size = rows
        backend.generate(prompts, None, spec)
        stats = backend.last_stats
        assert stats is not None
        return Measured(stats.seconds, stats.decoded_tokens, stats.slot_steps)
    return run


def _continuous_candidate(backend: TransformersBackend, rows: int, prompts: list[str],
                          spec: SamplingSpec) -> Callable[[], Measured]:
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    tok = backend.tokenizer
    templated = has_chat_template(tok)
    ids = [tok(format_prompt(tok, p), add_special_tokens=not templated)["input_ids"] for p in prompts]
    longest = max(map(len, ids)) + spec.max_new_tokens
    page = 64
    # Sized for the batch: left to itself on CPU, the cache and its attention mask are sized for
    # 8192-token batches and every step clears them (about 20 s per call on the tiny world).
    cb_config = ContinuousBatchingConfig(
        max_requests_per_batch=rows, max_batch_tokens=max(256, rows), page_size=page,
        num_blocks=rows * -(-longest // page), seed=spec.seed,
    )
    # The backend's own stop tokens and sampler settings, so all candidates sample alike.
    eos = set(backend._eos_ids)
    gen_config = backend._generation_config(spec, spec.n)

    def run() -> Measured:
        started = time.perf_counter()
        out = backend._model.generate_batch(
            ids, generation_config=gen_config, continuous_batching_config=cb_config, progress_bar=False,
            warmup=False,
        )
        seconds = time.perf_counter() - started
        kept = decoded = 0
        for result in out.values():
            tokens = list(result.generated_tokens)
            decoded += len(tokens)
            kept += next((i for i, t in enumerate(tokens) if t in eos), len(tokens))
        return Measured(seconds, kept, decoded)
    return run


def _tiny_model(out: Path) -> Path:
    world = WORLDS.build("tiny", {"steps": 250}).plugin
    return world.build_model(out, progress=True, rebuild=False, threads="auto")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="Model folder (default: build the tiny world's).")
    parser.add_argument("--prompts", type=int, default=64, help="Prompts of the round (default 64).")
    parser.add_argument("--samples", type=int, default=6, help="Samples per prompt (default 6).")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--candidates",
                        default="static/64,static/384,compact/64,compact/384,continuous/64,continuous/384",
                        help="Comma-separated BATCHING/ROWS; the old default static/64 at torch's default threads is "
                        "always measured first.")
    parser.add_argument("--out", type=Path, default=Path("bench-out/generation.json"))
    args = parser.parse_args()

    default_threads = torch.get_num_threads()
    chosen = apply_threads("auto")
    print(f"threads: torch default {default_threads}, auto {chosen.threads} ({chosen.cores} cores, load {chosen.load})")
    model = args.model or _tiny_model(args.out.parent / "tiny-model")
    world = WORLDS.build("tiny").plugin
    prompts = [p.text for p in world.taskset().train]
    random.Random(0).shuffle(prompts)
    prompts = prompts[: args.prompts]
    spec = SamplingSpec(n=args.samples, max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=0.95, seed=0)
    backends = {b: TransformersBackend(str(model), device="cpu", batching=b) for b in ("static", "compact")}

    candidates: dict[str, tuple[int, Callable[[], Measured]]] = {
        "static/64@default-threads": (default_threads, _backend_candidate(backends["static"], 64, prompts, spec)),
    }
    for name in args.candidates.split(","):
        batching, rows = name.split("/")
        run = (_continuous_candidate(backends["static"], int(rows), prompts, spec) if batching == "continuous"
               else _backend_candidate(backends[batching], int(rows), prompts, spec))
        candidates[f"{name}@auto-threads"] = (chosen.threads, run)

    measured: dict[str, list[Measured]] = {name: [] for name in candidates}
    for repeat in range(args.repeats):
        for name, (threads, run) in candidates.items():
            torch.set_num_threads(threads)
            m = run()
            measured[name].append(m)
            print(f"repeat {repeat}  {name:32s} {m.seconds:7.2f}s  kept {m.kept_tokens:5d}  slot-steps "
                  f"{m.slot_steps:6d}  eff {m.kept_tokens / m.slot_steps:.2f}  load {os.getloadavg()[0]:.1f}",
                  flush=True)
    torch.set_num_threads(chosen.threads)

    def summary(ms: list[Measured]) -> dict[str, Any]:
        seconds = statistics.median(m.seconds for m in ms)
        kept = statistics.median(m.kept_tokens for m in ms)
        return {"seconds_median": round(seconds, 3), "seconds": [round(m.seconds, 3) for m in ms],
                "kept_tokens_median": kept, "slot_efficiency": round(
                    sum(m.kept_tokens for m in ms) / sum(m.slot_steps for m in ms), 3),
                "tokens_per_s": round(kept / seconds, 1)}

    results = {name: summary(ms) for name, ms in measured.items()}
    old = "static/64@default-threads"
    for name, r in results.items():
        # Per repeat, the old default's time over this candidate's, side by side in the same round.
        r["speedup_vs_old_default"] = round(statistics.median(
            o.seconds / m.seconds for o, m in zip(measured[old], measured[name], strict=True)), 3)
    report = {
        "model": str(model), "prompts": args.prompts, "samples": args.samples, "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats, "compact_share": COMPACT_SHARE, "threads": chosen.as_dict(),
        "torch_default_threads": default_threads, "candidates": results,
    }
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
