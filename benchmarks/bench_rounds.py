"""Benchmark: rounds of the demo on the embedded tiny world, wall time per stage.

Runs `tether run --wait` in-process while a second thread approves each candidate as it reaches
the gate (as a human would from another shell), then prints and writes as JSON the wall time of
each stage, each counted once (model load, generate, self-prompting, judge, train, evaluate,
monitor, store, everything else), generation throughput and slot efficiency (the share of the
decoder's batch slots that produced kept tokens). Not a test: timings on shared machines are
noisy, so compare ratios measured in one run.

With --compare-defaults it runs the round with the previous defaults (torch's default thread
count, static batching of 64 sequences, no precomputed reference log-probs), with the previous
defaults but the thread count the current defaults choose (what the rest gains where threads
gain nothing, e.g. on an idle machine), and with the current defaults, in turns (the order
rotating each repeat), --repeats times, for the default round (64 prompts x 6 samples) and a small
one (16 x 6), after one unmeasured warm-up run (imports, the monitors' embedding model). It reports
each stage's median and its ratio to the same stage with the previous defaults, paired repeat by
repeat.

Then (unless --one-round-repeats 0) `tether run --rounds 1` as a user starts it, a process of its own: its wall
time against the sum of its node times, and the import time alone (benchmarks/_overhead.py); with
--baseline CHECKOUT, that checkout's run too, alternating, for a before/after side by side.

The approving thread signs as the workspace's reviewer 'bench', whose key is kept in `keys/`
beside --out (or --keys-dir), never in the user's key folder.

    python benchmarks/bench_rounds.py --rounds 3 --out bench-out/rounds.json
    python benchmarks/bench_rounds.py --compare-defaults --out bench-out/rounds-compare.json
    python benchmarks/bench_rounds.py --rounds 1 --one-round-repeats 3 --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from _common import fresh_workspace, keys_dir_for, run_reviewed
from _overhead import compare as one_round_overhead

from agent.config import TetherConfig, default_config_yaml, load_config, parse_config
from agent.run.runner import ensure_model
from agent.run.workspace import Workspace
from guardrails import keys
from memory import Store
from policies.progress import wanted as bars_wanted
from policies.threads import apply_threads

# Each stage is timed once (RunContext.timed is exclusive: the model load inside the first generate
# is load_model only). The run's `regenerate` stage, the policy writing new prompts, is reported as
# self_prompting, a stage of its own (not overhead).
RENAMED = {"regenerate": "self_prompting"}
COMPARE_SIZES = ((64, 6), (16, 6))


def _config(rounds: int, path: Path | None) -> TetherConfig:
    config = load_config(path) if path else parse_config(yaml.safe_load(default_config_yaml()), "default")
    return config.model_copy(update={
        "controller": config.controller.model_copy(update={"rounds": rounds}),
        "tracking": config.tracking.model_copy(update={"mode": "disabled"}),
    })


def _resized(config: TetherConfig, prompts: int, samples: int) -> TetherConfig:
    return config.model_copy(update={
        "prompts": config.prompts.model_copy(update={"per_round": prompts}),
        "generation": config.generation.model_copy(update={"samples_per_prompt": samples}),
    })


def previous_defaults(config: TetherConfig, torch_threads: int) -> TetherConfig:
    """The defaults before the round-throughput work: torch's own thread count, static batches of 64
    sequences, reference log-probs computed at every step."""
    data = config.model_dump(mode="json")
    data["model"]["threads"] = torch_threads
    data["generation"].update(batching="static", batch_size=64)
    data["training"]["trl"] = {**data["training"]["trl"], "precompute_ref_log_probs": False}
    return TetherConfig.model_validate(data)


def with_threads(config: TetherConfig, threads: int) -> TetherConfig:
    return config.model_copy(update={"model": config.model.model_copy(update={"threads": threads})})


def _changed(old: Any, new: Any, path: str = "") -> dict[str, Any]:
    """The settings that differ, as {dotted.path: [old, new]}."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, Any] = {}
        for key in sorted(set(old) | set(new)):
            out.update(_changed(old.get(key), new.get(key), f"{path}.{key}" if path else key))
        return out
    return {} if old == new else {path: [old, new]}


def measure_run(ws: Workspace, signer: keys.Signer, config: TetherConfig) -> tuple[dict[str, Any], Store]:
    """One run of `config` to its end, approvals given by the bench reviewer: its stages in seconds."""
    outcome, store, wall = run_reviewed(ws, signer, config)
    stages = {RENAMED.get(k, k): v for k, v in outcome.timings.items()}
    waited = stages.pop("approval_wait", 0.0)
    rounds_s = wall - waited  # the human's think time is not tether's
    counts = outcome.counts
    tokens = counts.get("generated_tokens", 0.0)
    slot_steps = counts.get("slot_steps", 0.0)
    timed = sum(stages.values())
    return {
        "run_id": outcome.run_id,
        "final_state": outcome.state,
        "rounds_s": round(rounds_s, 3),
        "stages_s": {k: round(v, 3) for k, v in sorted(stages.items())},
        "everything_else_s": round(rounds_s - timed, 3),
        "overhead_share": round((rounds_s - timed + stages.get("store", 0.0)) / rounds_s, 4),
        "generation_tokens": int(tokens),
        "generation_tokens_per_s": round(tokens / stages["generate"], 1) if stages.get("generate") else None,
        "slot_efficiency": round(counts.get("decoded_tokens", 0.0) / slot_steps, 4) if slot_steps else None,
    }, store


def _heldout(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The reported evaluations (metrics["eval"]: the test split, which no decision read; "heldout" for a run
    evaluated before the split), each labelled with its split."""
    return [
        {"round": ck.round, "status": ck.status, "split": ck.metrics["eval"]["candidate"].get("split", "heldout"),
         **{f"{who}_{m}": ck.metrics["eval"][who][m] for who in ("active", "candidate") for m in ("oracle", "judge")},
         "candidate_by_family": ck.metrics["eval"]["candidate"]["oracle_by_family"]}
        for ck in store.checkpoints(run_id) if "eval" in (ck.metrics or {})
    ]


def _series(runs: list[dict[str, Any]], stage: str) -> list[float]:
    """A stage's seconds, run by run (0 where a run never entered it)."""
    if stage == "everything_else":
        return [r["everything_else_s"] for r in runs]
    return [r["stages_s"].get(stage, 0.0) for r in runs]


def _paired_ratio(new: list[float], old: list[float]) -> float | None:
    ratios = [n / o for n, o in zip(new, old, strict=True) if o > 0]
    return round(statistics.median(ratios), 3) if ratios else None


def _ratios_over(runs: dict[str, list[dict[str, Any]]],
                 values: Callable[[list[dict[str, Any]]], list[float]]) -> dict[str, float | None]:
    """The new defaults' values over each other variant's, paired repeat by repeat (median)."""
    return {n: _paired_ratio(values(runs["new"]), values(rs)) for n, rs in runs.items() if n != "new"}


def compare_defaults(ws: Workspace, signer: keys.Signer, base: TetherConfig, torch_threads: int,
                     repeats: int) -> dict[str, Any]:
    new_defaults = base
    old_defaults = previous_defaults(base, torch_threads)
    chosen = apply_threads(base.model.threads)  # what the current defaults run with, here and now
    measure_run(ws, signer, _resized(new_defaults, *COMPARE_SIZES[-1]))  # warm-up, not measured
    report: dict[str, Any] = {
        "repeats": repeats,
        "torch_default_threads": torch_threads,
        "threads_chosen": chosen.as_dict(),
        "changed_settings": _changed(old_defaults.model_dump(mode="json"), new_defaults.model_dump(mode="json")),
        "sizes": {},
    }
    for prompts, samples in COMPARE_SIZES:
        variants = {"old": _resized(old_defaults, prompts, samples),
                    "old_same_threads": _resized(with_threads(old_defaults, chosen.threads), prompts, samples),
                    "new": _resized(new_defaults, prompts, samples)}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        names = list(variants)
        for repeat in range(repeats):
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # rotate: drift hits all
                result, _ = measure_run(ws, signer, variants[name])
                runs[name].append(result)
                print(f"{prompts}x{samples} repeat {repeat} {name}: round {result['rounds_s']:.1f}s "
                      f"{json.dumps(result['stages_s'])} slot efficiency {result['slot_efficiency']}", flush=True)
        stages = sorted({s for rs in runs.values() for r in rs for s in r["stages_s"]} | {"everything_else"})

        size: dict[str, Any] = {
            "round_s": {n: [r["rounds_s"] for r in runs[n]] for n in runs},
            "round_ratio_new_over": _ratios_over(runs, lambda rs: [r["rounds_s"] for r in rs]),
            "stages": {
                stage: {"median_s": {n: round(statistics.median(_series(runs[n], stage)), 3) for n in runs},
                        "ratio_new_over": _ratios_over(runs, lambda rs, stage=stage: _series(rs, stage))}
                for stage in stages
            },
            "slot_efficiency": {n: [r["slot_efficiency"] for r in runs[n]] for n in runs},
            "generation_tokens_per_s": {n: [r["generation_tokens_per_s"] for r in runs[n]] for n in runs},
            "runs": runs,
        }
        report["sizes"][f"{prompts}x{samples}"] = size
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=None,
                        help="Rounds per run (default 3; 1 with --compare-defaults).")
    parser.add_argument("--home", type=Path, default=None, help="Workspace (default: a new temp dir).")
    parser.add_argument("--config", type=Path, default=None, help="Config file (default: the default config).")
    parser.add_argument("--out", type=Path, default=Path("bench-out/rounds.json"))
    parser.add_argument("--keys-dir", type=Path, default=None,
                        help="Key folder of the benchmark's reviewer 'bench' (default: keys/ beside --out).")
    parser.add_argument("--compare-defaults", action="store_true",
                        help="Previous defaults vs current ones, alternating, at 64x6 and 16x6.")
    parser.add_argument("--repeats", type=int, default=3, help="Repeats per variant with --compare-defaults.")
    parser.add_argument("--one-round-repeats", type=int, default=1,
                        help="One-round `tether run` processes timed against their node times (0: none).")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="An older checkout whose one-round run is timed too, alternating with this one.")
    args = parser.parse_args()

    torch_threads = torch.get_num_threads()  # torch's default, before any run sets model.threads
    ws, signer = fresh_workspace(args.home, args.keys_dir or keys_dir_for(args.out))
    config = _config(args.rounds or (1 if args.compare_defaults else 3), args.config)

    t0 = time.perf_counter()
    ensure_model(ws, config, print, progress=bars_wanted(None))
    build_s = time.perf_counter() - t0

    if args.compare_defaults:
        report = {"model_build_s": round(build_s, 2), "rounds_per_run": config.controller.rounds,
                  **compare_defaults(ws, signer, config, torch_threads, args.repeats)}
    else:
        result, store = measure_run(ws, signer, config)
        report = {"rounds": config.controller.rounds, "model_build_s": round(build_s, 2), **result,
                  "heldout": _heldout(store, result["run_id"])}
    if args.one_round_repeats > 0:
        trees = {"current": Path(__file__).resolve().parent.parent}
        if args.baseline is not None:
            trees["baseline"] = args.baseline.resolve()
        report["one_round_process"] = one_round_overhead(trees, ws.home, args.one_round_repeats)
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
