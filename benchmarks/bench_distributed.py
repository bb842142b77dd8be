"""Benchmark: a DPO job on 1 vs 2 processes (DDP under `accelerate launch`, gloo on the CPU), and a round's
sampling on 1 process vs 2 worker processes (`generation.workers`), on a random Llama built here (no download).

Training: the same job, the same global batch and seed, as ``python -m policies.train_job`` (1 process at 1
thread, and at ``--threads``) and under ``accelerate launch`` on 2 processes (``--threads / 2`` each): the
1-thread run separates what 2 processes gain from what one fewer intra-op thread gains on a loaded machine.
Reported: wall time of the whole launch (interpreters, imports, model load, rendezvous included), the job's
own time, the largest loss and adapter-weight differences (1 against 2 processes at the same total threads).
Sampling: one process at 1 and at ``--threads`` threads, then 2 workers (pool start timed apart, as a run pays
it once), each call timed; the samples must be identical.

Not a test: timings on a shared machine are noisy; on 2 cores expect little speedup, as both paths share them.

    python benchmarks/bench_distributed.py --out bench-out/distributed.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_train_step import build_model, write_pairs
from safetensors.torch import load_file

from agent.config import TrainingConfig
from policies.adapters import ADAPTER_WEIGHTS_NAME
from policies.generation import TransformersBackend
from policies.sharded import ShardedBackend
from policies.train_launch import launch_train_job
from policies.train_spec import DistributedSpec, TrainJob, TrainResult
from tether_types import SamplingSpec


def train(model: Path, pairs: Path, tmp: Path, processes: int, global_batch: int) -> tuple[TrainResult, float]:
    config = TrainingConfig(batch_size=global_batch // processes, epochs=1, learning_rate=1e-3, max_length=128)
    job = TrainJob(base_model=str(model), pairs_path=str(pairs), output_dir=str(tmp / f"adapter-{processes}"),
                   lora=config.lora_spec(), dpo=config.dpo_spec(seed=0), device="cpu",
                   distributed=None if processes == 1 else DistributedSpec(processes, "ddp", None, 600))
    started = time.perf_counter()
    result = launch_train_job(job, "subprocess" if processes == 1 else "accelerate", tmp / "work")
    return result, time.perf_counter() - started


def bench_training(model: Path, tmp: Path, pairs_n: int, global_batch: int, threads: int) -> dict[str, Any]:
    """1 process at 1 thread and at ``threads`` threads, then 2 processes at ``threads // 2`` threads each."""
    pairs = write_pairs(tmp / "pairs.jsonl", pairs_n)
    runs: dict[str, tuple[TrainResult, float]] = {}
    for name, processes, parent_threads in (("1x1", 1, 1), (f"1x{threads}", 1, threads),
                                            (f"2x{max(1, threads // 2)}", 2, threads)):
        torch.set_num_threads(parent_threads)  # the launcher hands this process's threads to the job
        runs[name] = train(model, pairs, tmp / name, processes, global_batch)
    (one, _), (two, _) = runs[f"1x{threads}"], runs[f"2x{max(1, threads // 2)}"]
    a, b = load_file(one.adapter_dir / ADAPTER_WEIGHTS_NAME), load_file(two.adapter_dir / ADAPTER_WEIGHTS_NAME)
    return {
        "pairs": pairs_n, "global_batch": global_batch, "steps": {k: r.steps for k, (r, _) in runs.items()},
        "launch_wall_s": {k: wall for k, (_, wall) in runs.items()},
        "job_s": {k: r.seconds for k, (r, _) in runs.items()},
        "max_loss_diff_1_vs_2": max(abs(x["loss"] - y["loss"]) for x, y in zip(one.history, two.history, strict=True)),
        "max_weight_diff_1_vs_2": max(float((a[k] - b[k]).abs().max()) for k in a),
    }


def bench_sampling(model: Path, prompts_n: int, n: int, max_new: int, repeats: int, threads: int) -> dict[str, Any]:
    """1 process at 1 thread and at ``threads`` threads, then 2 workers at ``threads // 2`` each; median call."""
    prompts = [f"Question {i}: what do you say about {i} and {i + 1}?" for i in range(prompts_n)]
    spec = SamplingSpec(n=n, max_new_tokens=max_new, temperature=1.0, top_p=0.95, seed=0)
    times: dict[str, list[float]] = {}
    samples = {}
    with TransformersBackend(str(model), device="cpu") as one:
        for t in (1, threads):
            torch.set_num_threads(t)
            times[f"1x{t}"] = []
            for _ in range(repeats):
                samples[f"1x{t}"] = one.generate(prompts, None, spec)
                times[f"1x{t}"].append(one.last_stats.seconds if one.last_stats else math.nan)
    name = f"2x{max(1, threads // 2)}"
    started = time.perf_counter()
    with ShardedBackend(str(model), 2, threads, device="cpu") as two:
        two.generate(prompts, None, spec)  # starts the workers: each loads the model
        pool_start = time.perf_counter() - started
        times[name] = []
        for _ in range(repeats):
            samples[name] = two.generate(prompts, None, spec)
            times[name].append(two.last_stats.seconds if two.last_stats else math.nan)
    return {"prompts": prompts_n, "samples_per_prompt": n, "max_new_tokens": max_new,
            "median_s": {k: statistics.median(v) for k, v in times.items()}, "all_s": times,
            "first_call_with_pool_start_s": pool_start,
            "identical_samples": all(v == samples["1x1"] for v in samples.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/distributed.json"))
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the 1-process runs, shared by 2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-bench-dist-") as tmp_name:
        tmp = Path(tmp_name)
        model = build_model(tmp / "model", args.hidden, args.layers)
        report = {
            "model": {"hidden": args.hidden, "layers": args.layers,
                      "parameters": sum(v.numel() for v in load_file(model / "model.safetensors").values())},
            "threads": args.threads,
            "load_before": os.getloadavg()[0],
            "training": bench_training(model, tmp, args.pairs, args.global_batch, args.threads),
            "sampling": bench_sampling(model, args.prompts, 4, 32, args.repeats, args.threads),
            "load_after": os.getloadavg()[0],
        }
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
