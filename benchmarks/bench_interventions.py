"""Benchmark: the controller's interventions against a length-biased judge, side by side.

Two runs of N rounds on the embedded tiny world, both with the `length_biased` judge first in the
judge pool and `rules` after it: one with the controller's interventions on (the default), one with
`controller.interventions: []` (train / skip / stop only: the fixed recipe). A thread approves each
candidate as it reaches the gate, as a reviewer would. Per round it prints and writes as JSON the
held-out oracle score of the active checkpoint after the round, the mean response length of the
round's training samples, the action and the judge in use. Not a test: compare the two columns.

The approving thread signs as the workspace's reviewer 'bench', whose key is kept in `keys/`
beside --out (or --keys-dir), never in the user's key folder.

    python benchmarks/bench_interventions.py --rounds 8 --out bench-out/interventions.json
"""

from __future__ import annotations

import argparse
import json
from itertools import zip_longest
from pathlib import Path
from typing import Any

import yaml
from _common import fresh_workspace, keys_dir_for, run_reviewed

from agent.config import TetherConfig, default_config_yaml, parse_config
from agent.review.notebook import judge_label
from agent.run.runner import ensure_model
from agent.run.workspace import Workspace
from guardrails.keys import Signer
from memory import Store


def _config(rounds: int, interventions: bool, model_base: str | None) -> TetherConfig:
    doc = yaml.safe_load(default_config_yaml())
    doc["judge"] = {"name": "length_biased", "settings": {}, "pool": [{"name": "rules"}]}
    doc["controller"]["rounds"] = rounds
    if not interventions:
        doc["controller"]["interventions"] = []
    doc["tracking"]["mode"] = "disabled"
    if model_base:
        doc["model"]["base"] = model_base
    return parse_config(doc, "bench")


def _per_round(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Held-out oracle of the active checkpoint after each round (the reported test split, which no decision
    read), with what the round did."""
    evals = {ck.round: ck for ck in store.checkpoints(run_id) if "eval" in (ck.metrics or {})}
    active: float | None = next((ck.metrics["eval"]["active"]["oracle"] for ck in evals.values()), None)
    rows = []
    for r in store.rounds(run_id):
        ck = evals.get(r.round)
        if ck is not None:
            active = ck.metrics["eval"]["candidate" if ck.status == "approved" else "active"]["oracle"]
        rows.append({"round": r.round, "action": r.action, "outcome": r.outcome,
                     "judge": judge_label(r),
                     "heldout_oracle_active": None if active is None else round(active, 4),
                     "length_mean": round((r.monitors or {}).get("length_mean", float("nan")), 2),
                     "length_score_corr": round((r.monitors or {}).get("length_score_corr", float("nan")), 3)})
    return rows


def _run(ws: Workspace, signer: Signer, config: TetherConfig) -> dict[str, Any]:
    outcome, store, wall = run_reviewed(ws, signer, config)
    rows = _per_round(store, outcome.run_id)
    switched = next((r["round"] for r in rows if r["action"] == "switch_judge"), None)
    return {"run_id": outcome.run_id, "final_state": outcome.state, "wall_s": round(wall, 1),
            "switch_round": switched, "rounds": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--home", type=Path, default=None, help="Workspace (default: a new temp dir).")
    parser.add_argument("--model", default=None, help="model.base (default: the embedded tiny model).")
    parser.add_argument("--out", type=Path, default=Path("bench-out/interventions.json"))
    parser.add_argument("--keys-dir", type=Path, default=None,
                        help="Key folder of the benchmark's reviewer 'bench' (default: keys/ beside --out).")
    args = parser.parse_args()

    ws, signer = fresh_workspace(args.home, args.keys_dir or keys_dir_for(args.out))
    on, off = _config(args.rounds, True, args.model), _config(args.rounds, False, args.model)
    ensure_model(ws, on, print)
    report = {"rounds": args.rounds, "judge_pool": ["length_biased", "rules"],
              "interventions_on": _run(ws, signer, on), "interventions_off": _run(ws, signer, off)}
    print(f"{'round':>5} | {'on: action':<20} {'judge':<14} {'oracle':>6} {'len':>6} | "
          f"{'off: action':<12} {'oracle':>6} {'len':>6}")
    blank = {"round": "", "action": "", "judge": "", "heldout_oracle_active": "", "length_mean": ""}
    for a, b in zip_longest(report["interventions_on"]["rounds"], report["interventions_off"]["rounds"]):
        a, b = a or blank, b or blank
        print(f"{a['round'] or b['round']:>5} | {str(a['action']):<20} {str(a['judge']):<14} "
              f"{a['heldout_oracle_active']!s:>6} {a['length_mean']!s:>6} | {str(b['action']):<12} "
              f"{b['heldout_oracle_active']!s:>6} {b['length_mean']!s:>6}")
    print(f"judge switched at round {report['interventions_on']['switch_round']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
