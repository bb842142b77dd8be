"""Benchmark: the headroom of the BASE tiny model, before any round.

For each seed it builds (or reuses) the embedded tiny model, then answers every held-out prompt of the
tiny world greedily and K times sampled (the run's sampling settings: temperature 1.0, top_p 0.95), and
reports per family and per difficulty tier: pass@1 (greedy reply gets full marks from the verifier),
pass@K (any of the K samples does) and the spread of each judge's scores over the samples (sd, and the
mean best-minus-worst margin per prompt: what a preference pair of that prompt would have). pass@K
well above pass@1 where a judge's margin is wide is headroom a loop can reach. Prints a table and
writes JSON, with the build time of each model.

    python benchmarks/bench_headroom.py --seeds 0 --k 8 --out bench-out/headroom.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.run.headroom import rescore, sample_and_score, summary
from guardrails.constitution import default_constitution_yaml, parse_constitution
from policies.generation import make_backend
from tether_types import SamplingSpec
from tools.judges import JUDGES
from tools.judges.llm import BackendPolicy
from tools.worlds.tiny import TinyWorld
from tools.worlds.tiny.model import MARKER_FILE, TinySpec, build_state, ensure_tiny_model

METRICS = ("pass_at_1", "pass_at_k", "judge_sd", "judge_margin")


def measure_seed(seed: int, k: int, steps: int, models: Path, judges: list[str], max_new_tokens: int,
                 temperature: float, top_p: float, model_dir: Path | None = None) -> dict[str, Any]:
    """Build (or reuse) the seed's tiny model and measure its held-out headroom under each judge; with
    `model_dir`, measure the finished build in that folder as it is (whatever its spec)."""
    if model_dir is None:
        spec = replace(TinySpec(), steps=steps, seed=seed)
        target = models / f"tiny-s{seed}-n{steps}"
        reused = build_state(target, spec) == "built"
        ensure_tiny_model(target, spec, progress=False)
    else:
        target, reused = model_dir, True
    stats = json.loads((target / MARKER_FILE).read_text())
    world = TinyWorld(seed)
    prompts = list(world.taskset().heldout)
    constitution = parse_constitution(default_constitution_yaml(), "default constitution")
    t0 = time.perf_counter()
    with make_backend("transformers", str(target), device="cpu", batch_size=64) as backend:
        greedy = sample_and_score(backend, None, prompts, SamplingSpec(n=1, max_new_tokens=max_new_tokens,
                                                                       do_sample=False, seed=seed),
                                  world.oracle, None)
        sample_spec = SamplingSpec(n=k, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                   do_sample=True, seed=seed)
        sampled_texts = sample_and_score(backend, None, prompts, sample_spec, world.oracle, None)
        per_judge: dict[str, Any] = {}
        for name in judges:
            judge = JUDGES.build(name, {}, constitution=constitution, policy=BackendPolicy(backend)).plugin
            rescored = rescore(sampled_texts, prompts, judge)
            per_judge[name] = summary(prompts, [g[0].oracle for g in greedy], rescored)
            if hasattr(judge, "close"):
                judge.close()
    return {"seed": seed, "k": k, "prompts": len(prompts), "model": str(target), "reused_model": reused,
            "build_seconds": stats.get("seconds"), "build_cpu_seconds": stats.get("cpu_seconds"),
            "final_loss": stats.get("final_loss"), "measure_seconds": round(time.perf_counter() - t0, 1),
            "judges": per_judge}


def mean_over_seeds(results: list[dict[str, Any]], judge: str, block: str) -> dict[str, dict[str, Any]]:
    """{group: {metric: mean, metric_sd: sd}} over seeds."""
    groups = sorted({g for r in results for g in r["judges"][judge].get(block, {})})
    out: dict[str, dict[str, Any]] = {}
    for g in groups:
        row: dict[str, Any] = {}
        for m in METRICS:
            vals = [r["judges"][judge][block][g][m] for r in results
                    if m in r["judges"][judge].get(block, {}).get(g, {})]
            if vals:
                row[m] = round(statistics.fmean(vals), 4)
                row[f"{m}_sd"] = round(statistics.pstdev(vals), 4) if len(vals) > 1 else 0.0
        row["n"] = sum(r["judges"][judge][block].get(g, {}).get("n", 0) for r in results)
        out[g] = row
    return out


def print_table(results: list[dict[str, Any]], judges: list[str]) -> None:
    k = results[0]["k"]
    for judge in judges:
        print(f"\njudge {judge}: base model, held-out, {len(results)} seed(s), K={k}")
        print(f"{'group':<22} {'n':>4} {'pass@1':>7} {f'pass@{k}':>7} {'judge sd':>9} {'margin':>7}")
        for block in ("by_family", "by_tier"):
            for g, row in mean_over_seeds(results, judge, block).items():
                cells = [f"{row[m]:.3f}" if m in row else "-" for m in METRICS]
                print(f"{g:<22} {row['n']:>4} {cells[0]:>7} {cells[1]:>7} {cells[2]:>9} {cells[3]:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--k", type=int, default=8, help="Samples per held-out prompt.")
    parser.add_argument("--steps", type=int, default=TinySpec.steps, help="Pre-training steps (world.settings.steps).")
    parser.add_argument("--judge", action="append", default=None,
                        help="Judge plug-in whose spread is reported (repeatable; default: rules).")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--models", type=Path, default=Path("bench-out/models"),
                        help="Folder of built tiny models (reused when they hold the same spec).")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="Measure this finished tiny model build as it is (one seed: the split's), build nothing.")
    parser.add_argument("--out", type=Path, default=Path("bench-out/headroom.json"))
    args = parser.parse_args()
    if args.model_dir is not None and len(args.seeds) != 1:
        parser.error("--model-dir measures one model: give one --seeds value")
    judges = args.judge or ["rules"]
    results = []
    for seed in args.seeds:
        r = measure_seed(seed, args.k, args.steps, args.models, judges, args.max_new_tokens, args.temperature,
                         args.top_p, args.model_dir)
        print(f"seed {seed}: model {'reused' if r['reused_model'] else 'built'} ({r['build_seconds']} s build, "
              f"{r['build_cpu_seconds']} s CPU, final loss {r['final_loss']:.3f}); measured in "
              f"{r['measure_seconds']} s")
        results.append(r)
    print_table(results, judges)
    report = {"k": args.k, "steps": args.steps, "seeds": args.seeds, "judges": judges, "per_seed": results,
              "mean": {j: {b: mean_over_seeds(results, j, b) for b in ("by_family", "by_tier")} for j in judges}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
