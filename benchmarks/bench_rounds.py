"""Benchmark: N rounds of the demo on the embedded tiny world, wall time per stage.

Runs `tether run --wait` in-process while a second thread approves each candidate as it reaches
the gate (as a human would from another shell), then prints and writes as JSON the wall time of
each stage (model build, model load, generate, judge, train, evaluate, monitor, everything else)
and generation throughput. Not a test: timings on shared machines are noisy, so compare ratios
measured in one run.

The approving thread signs as the workspace's reviewer 'bench', whose key is kept in `keys/`
beside --out (or --keys-dir), never in the user's key folder.

    python benchmarks/bench_rounds.py --rounds 3 --out bench-out/rounds.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from _common import fresh_workspace, keys_dir_for, start_reviewer

from agent.config import TetherConfig, default_config_yaml, load_config, parse_config
from agent.runner import ensure_model, start_run
from memory import Store

# Stages that are model compute: the policy (generate, train, evaluate, load), an LLM judge, and
# the monitors' embedding model. The rest (store, graph checkpoints, bookkeeping) is overhead.
MODEL_STAGES = ("generate", "judge", "train", "evaluate", "load_model", "monitor")


def _config(rounds: int, path: Path | None) -> TetherConfig:
    config = load_config(path) if path else parse_config(yaml.safe_load(default_config_yaml()), "default")
    return config.model_copy(update={
        "controller": config.controller.model_copy(update={"rounds": rounds}),
        "tracking": config.tracking.model_copy(update={"mode": "disabled"}),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--home", type=Path, default=None, help="Workspace (default: a new temp dir).")
    parser.add_argument("--config", type=Path, default=None, help="Config file (default: the default config).")
    parser.add_argument("--out", type=Path, default=Path("bench-out/rounds.json"))
    parser.add_argument("--keys-dir", type=Path, default=None,
                        help="Key folder of the benchmark's reviewer 'bench' (default: keys/ beside --out).")
    args = parser.parse_args()

    ws, signer = fresh_workspace(args.home, args.keys_dir or keys_dir_for(args.out))
    store = Store(ws.db_path)
    config = _config(args.rounds, args.config)

    t0 = time.perf_counter()
    ensure_model(ws, config, print)
    build_s = time.perf_counter() - t0

    stop = start_reviewer(ws, signer)
    t1 = time.perf_counter()
    outcome = start_run(ws, store, config, say=lambda _m: None, wait=True, progress=False)
    wall = time.perf_counter() - t1
    stop.set()

    stages = dict(outcome.timings)
    tokens = outcome.counts.get("generated_tokens", 0.0)
    waited = stages.pop("approval_wait", 0.0)
    rounds_s = wall - waited  # the human's think time is not tether's
    model_s = sum(stages.get(k, 0.0) for k in MODEL_STAGES)
    other = rounds_s - sum(stages.values())
    report = {
        "rounds": args.rounds,
        "final_state": outcome.state,
        "model_build_s": round(build_s, 2),
        "rounds_s_excluding_build_and_approval_wait": round(rounds_s, 2),
        "stages_s": {k: round(v, 3) for k, v in sorted(stages.items())},
        "everything_else_s": round(other, 3),
        "overhead_share": round((rounds_s - model_s) / rounds_s, 4),
        "monitor_share": round(stages.get("monitor", 0.0) / rounds_s, 4),
        "generation_tokens": int(tokens),
        "generation_tokens_per_s": round(tokens / stages["generate"], 1) if stages.get("generate") else None,
        "heldout": [
            {"round": ck.round, "status": ck.status,
             **{f"{who}_{m}": ck.metrics["eval"][who][m]
                for who in ("active", "candidate") for m in ("oracle", "judge")},
             "candidate_by_family": ck.metrics["eval"]["candidate"]["oracle_by_family"]}
            for ck in store.checkpoints(outcome.run_id) if "eval" in (ck.metrics or {})
        ],
    }
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
