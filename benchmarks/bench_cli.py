"""How long the human commands take, as a person runs them: the median of N runs of each next to
`python -c pass`, on a workspace paused at its first gate.

    python benchmarks/bench_cli.py --out bench-out/cli.json [-n 10] [--tree /path/to/older/checkout]

With --tree the commands run that checkout's code (first on PYTHONPATH, from this environment), e.g. a
`git worktree add /tmp/before 8b6a3a3` from before the review commands stopped importing torch.
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
CONFIG = {"model": {"base": "world"}, "world": {"name": "tiny", "settings": {"steps": 150}},
          "generation": {"samples_per_prompt": 4, "max_new_tokens": 24},
          "prompts": {"per_round": 16, "heldout": 27}, "evaluation": {"max_new_tokens": 24},
          "training": {"epochs": 1}, "controller": {"rounds": 1}, "tracking": {"mode": "disabled"}}


def _time(cmd: list[str], env: dict[str, str], n: int, fresh: Path | None = None, home: Path | None = None) -> float:
    times = []
    for _ in range(n):
        if fresh is not None and home is not None:  # a state-changing command gets a fresh copy each time,
            for source, copy in ((fresh, home), (fresh.with_name("keys-fresh"), Path(env["TETHER_KEYS_DIR"]))):
                shutil.rmtree(copy, ignore_errors=True)  # and so does the key folder, whose witnessed head it moves
                shutil.copytree(source, copy)
        start = time.perf_counter()
        # `python -m` puts the working directory first on sys.path: the tree's own folder, so it runs its code.
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=env.get("PYTHONPATH", HERE))
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {result.stderr[-800:]}")
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/cli.json"))
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--tree", type=Path, default=None, help="Run this checkout's tether (default: this one).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-bench-cli-") as tmp:
        env = {**os.environ, "TETHER_KEYS_DIR": f"{tmp}/keys", "WANDB_MODE": "disabled"}
        if args.tree is not None:
            env["PYTHONPATH"] = str(args.tree.resolve())
        cwd = env.get("PYTHONPATH", str(HERE))
        gated, home = Path(tmp) / "gated", Path(tmp) / "ws"
        tether = [sys.executable, "-m", "agent.cli"]
        subprocess.run([*tether, "--home", str(gated), "init", "--reviewer", "bench"], env=env, check=True, cwd=cwd,
                       capture_output=True)
        (gated / "config.yaml").write_text(yaml.safe_dump(CONFIG))
        run = subprocess.run([*tether, "--home", str(gated), "run"], env=env, capture_output=True, text=True, cwd=cwd)
        pending = json.loads(subprocess.run([*tether, "--home", str(gated), "approvals", "--json"], env=env, cwd=cwd,
                                            capture_output=True, text=True).stdout)
        if not pending:
            raise SystemExit(f"the run did not reach a gate:\n{run.stdout[-1500:]}{run.stderr[-1500:]}")
        approval, run_id = pending[0]["id"], pending[0]["run_id"]
        shutil.copytree(gated, home)
        shutil.copytree(env["TETHER_KEYS_DIR"], gated.with_name("keys-fresh"))
        # A candidate that has not met a target needs saying so where the tree knows the flag (issue 17).
        helped = subprocess.run([*tether, "approve", "--help"], env=env, capture_output=True, text=True, cwd=cwd)
        accept = ["--accept-not-met"] if "--accept-not-met" in helped.stdout else []
        h = ["--home", str(home)]
        results: dict[str, float | None] = {"python -c pass": _time([sys.executable, "-c", "pass"], env, args.n)}
        for name, argv, changes in [("--help", ["--help"], False), ("status", [*h, "status"], False),
                                    ("approvals", [*h, "approvals"], False), ("show", [*h, "show", approval], False),
                                    ("log", [*h, "log", run_id], False), ("checkpoints", [*h, "checkpoints"], False),
                                    ("audit verify", [*h, "audit", "verify"], False),
                                    ("approve", [*h, "approve", approval, "--by", "bench", *accept], True),
                                    ("reject", [*h, "reject", approval, "--by", "bench", "--note", "x"], True)]:
            try:
                fresh = (gated, home) if changes else (None, None)
                results[name] = _time([*tether, *argv], env, args.n, *fresh)
            except SystemExit as failed:  # an older tree may lack the command
                print(f"{name}: {failed}", file=sys.stderr)
                results[name] = None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"median_s": results, "n": args.n, "tree": str(args.tree or HERE)}, indent=2))
    for name, seconds in results.items():
        print(f"{name:16s} " + ("failed" if seconds is None else f"{seconds:6.3f} s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
