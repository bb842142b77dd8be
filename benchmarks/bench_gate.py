"""What signed approvals cost: `tether approve` (a process, as a person runs it) and `gate.activate`
(in-process, as the run does it), median of N each, for this tree and optionally a baseline tree.

    python benchmarks/bench_gate.py --out bench-out/gate.json [--baseline /path/to/older/checkout]

For each tree a workspace is brought to its first approval gate once (the tiny model, a few prompts);
every measurement then works on a fresh copy of it, so each `approve` decides a pending approval and
each `activate` activates an approved candidate. The baseline tree is run from the same virtual
environment with its own code first on PYTHONPATH (e.g. `git worktree add /tmp/base 9a5fa87`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parents[1]
# Small, but enough for a round to yield pairs and reach the gate (the tests' settings, fewer held-out prompts).
CONFIG = {"model": {"base": "tiny", "tiny_steps": 150}, "generation": {"samples_per_prompt": 4, "max_new_tokens": 24},
          "prompts": {"per_round": 16, "heldout": 12}, "evaluation": {"max_new_tokens": 24},
          "training": {"epochs": 1}, "controller": {"rounds": 1}, "tracking": {"mode": "disabled"}}

ACTIVATE = """
import json, sys, time
from memory import Store
from guardrails import gate
store = Store(sys.argv[1])
start = time.perf_counter()
gate.activate(store, sys.argv[2])
print(json.dumps(time.perf_counter() - start))
"""


def _tether(tree: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=900)


def _gated(tree: Path, env: dict[str, str], home: Path, signed: bool) -> tuple[str, str]:
    init = ["--home", str(home), "init", *(["--reviewer", "bench"] if signed else [])]
    if _tether(tree, env, *init).returncode != 0:
        raise SystemExit(f"init failed in {tree}")
    (home / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    run = _tether(tree, env, "--home", str(home), "run")
    if run.returncode != 0:
        raise SystemExit(f"run failed in {tree}:\n{run.stderr[-2000:]}")
    pending = json.loads(_tether(tree, env, "--home", str(home), "approvals", "--json").stdout)
    if not pending:
        raise SystemExit(f"the run in {tree} did not reach a gate (its candidate failed invariants?)")
    return pending[0]["id"], pending[0]["run_id"]  # not parsed from `run`'s output, which may start with a build


def measure(tree: Path, work: Path, n: int, signed: bool) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "TETHER_KEYS_DIR": str(work / "keys"), "WANDB_MODE": "disabled"}
    home = work / "ws"
    approval_id, run_id = _gated(tree, env, home, signed)
    approve_s, activate_s = [], []
    for i in range(n):
        copy = work / f"copy{i}"
        shutil.copytree(home, copy)
        start = time.perf_counter()
        result = _tether(tree, env, "--home", str(copy), "approve", approval_id, "--by", "bench")
        approve_s.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"approve failed in {tree}: {result.stderr[-1000:]}")
        timed = subprocess.run([sys.executable, "-c", ACTIVATE, str(copy / "tether.db"), f"{run_id}-r1"],
                               cwd=tree, env=env, capture_output=True, text=True, timeout=300)
        if timed.returncode != 0:
            raise SystemExit(f"activate failed in {tree}: {timed.stderr[-1000:]}")
        activate_s.append(json.loads(timed.stdout))
        shutil.rmtree(copy)
    return {"approve_cli_median_s": statistics.median(approve_s), "activate_median_s": statistics.median(activate_s),
            "approve_cli_min_s": min(approve_s), "activate_min_s": min(activate_s), "n": n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/gate.json"))
    parser.add_argument("--baseline", type=Path, help="an older checkout to compare against (unsigned approvals)")
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="tether-bench-gate-") as tmp:
        results["current"] = measure(HERE, Path(tmp) / "current", args.n, signed=True)
        if args.baseline is not None:
            results["baseline"] = measure(args.baseline.resolve(), Path(tmp) / "baseline", args.n, signed=False)
    if "baseline" in results:
        results["ratio"] = {k: results["current"][k] / results["baseline"][k]
                            for k in ("approve_cli_median_s", "activate_median_s")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
