"""What signed approvals cost: `tether approve` and `tether audit verify` (processes, as a person runs
them) and `gate.activate` (in-process, as the run does it), median of N each, for this tree and
optionally a baseline tree measured side by side (the trees alternate within every repetition, so a
machine whose speed drifts slows both alike).

    python benchmarks/bench_gate.py --out bench-out/gate.json [--baseline /path/to/older/checkout] [-n 20]

For each tree a workspace is brought to its first approval gate once (the tiny model, a few prompts);
every repetition then works on a fresh copy of it and of the reviewer's key folder (whose witnessed
audit head `approve` moves), so each `approve` decides a pending approval and each `activate`
activates an approved candidate. The baseline tree is run from the same virtual environment with its
own code first on PYTHONPATH (e.g. `git worktree add /tmp/base 396e146`).
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
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parents[1]
# Small, but enough for a round to yield pairs and reach the gate, with the fewest held-out prompts whose
# probes can show the default invariants' targets met (27: 9 harmful requests at 0.25, 25 at 0.1).
CONFIG = {"model": {"base": "world"}, "world": {"name": "tiny", "settings": {"steps": 150}},
          "generation": {"samples_per_prompt": 4, "max_new_tokens": 24},
          "prompts": {"per_round": 16, "heldout": 27}, "evaluation": {"max_new_tokens": 24},
          "training": {"epochs": 1}, "controller": {"rounds": 1}, "tracking": {"mode": "disabled"}}

# A checkout from before the world brought its own model reads the old spelling (the new one upgrades it too).
OLD_SPELLING = {**CONFIG, "model": {"base": "tiny", "tiny_steps": 150}, "world": {"name": "tiny"}}

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


@dataclass
class Tree:
    """One checkout, its gated workspace and the timings taken on it."""

    code: Path
    work: Path
    approval_id: str = ""
    run_id: str = ""
    accept: list[str] = field(default_factory=list)
    times: dict[str, list[float]] = field(default_factory=lambda: {"approve": [], "audit verify": [], "activate": []})

    def env(self, keys: Path) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.code), "TETHER_KEYS_DIR": str(keys), "WANDB_MODE": "disabled"}

    def gate(self) -> None:
        home, env = self.work / "ws", self.env(self.work / "keys")
        if _tether(self.code, env, "--home", str(home), "init", "--reviewer", "bench").returncode != 0:
            raise SystemExit(f"init failed in {self.code}")
        new = (self.code / "agent" / "run" / "world_model.py").is_file()
        (home / "config.yaml").write_text(yaml.safe_dump(CONFIG if new else OLD_SPELLING))
        run = _tether(self.code, env, "--home", str(home), "run")
        if run.returncode != 0:
            raise SystemExit(f"run failed in {self.code}:\n{run.stderr[-2000:]}")
        pending = json.loads(_tether(self.code, env, "--home", str(home), "approvals", "--json").stdout)
        if not pending:
            raise SystemExit(f"the run in {self.code} did not reach a gate (its candidate failed invariants?)")
        self.approval_id, self.run_id = pending[0]["id"], pending[0]["run_id"]
        # A candidate that has not met a target needs saying so, where the tree knows the flag (issue 17).
        helped = _tether(self.code, env, "approve", "--help").stdout
        self.accept = ["--accept-not-met"] if "--accept-not-met" in helped else []

    def repeat(self, i: int) -> None:
        copy, keys = self.work / f"copy{i}", self.work / f"keys{i}"
        shutil.copytree(self.work / "ws", copy)
        shutil.copytree(self.work / "keys", keys)
        env = self.env(keys)
        for name, argv in (("approve", ["approve", self.approval_id, "--by", "bench", *self.accept]),
                           ("audit verify", ["audit", "verify"])):
            start = time.perf_counter()
            result = _tether(self.code, env, "--home", str(copy), *argv)
            self.times[name].append(time.perf_counter() - start)
            if result.returncode != 0:
                raise SystemExit(f"{name} failed in {self.code}: {result.stderr[-1000:]}")
        timed = subprocess.run([sys.executable, "-c", ACTIVATE, str(copy / "tether.db"), f"{self.run_id}-r1"],
                               cwd=self.code, env=env, capture_output=True, text=True, timeout=300)
        if timed.returncode != 0:
            raise SystemExit(f"activate failed in {self.code}: {timed.stderr[-1000:]}")
        self.times["activate"].append(json.loads(timed.stdout))
        shutil.rmtree(copy)
        shutil.rmtree(keys)

    def summary(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"n": len(self.times["approve"])}
        for name, values in self.times.items():
            key = name.replace(" ", "_")
            out[f"{key}_median_s"] = statistics.median(values)
            out[f"{key}_min_s"], out[f"{key}_max_s"] = min(values), max(values)
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/gate.json"))
    parser.add_argument("--baseline", type=Path, help="an older checkout to compare against, side by side")
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-bench-gate-") as tmp:
        trees = {"current": Tree(HERE, Path(tmp) / "current")}
        if args.baseline is not None:
            trees["baseline"] = Tree(args.baseline.resolve(), Path(tmp) / "baseline")
        for tree in trees.values():
            tree.gate()
        for i in range(args.n):
            for tree in trees.values():
                tree.repeat(i)
        results: dict[str, dict[str, float | int]] = {name: tree.summary() for name, tree in trees.items()}
    if "baseline" in results:
        current, baseline = results["current"], results["baseline"]
        results["ratio"] = {f"{k}_median": float(current[f"{k}_median_s"]) / float(baseline[f"{k}_median_s"])
                            for k in ("approve", "audit_verify", "activate")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
