"""A one-round `tether run` as a user starts it (a process of its own): its wall time against the sum of
its node times (the `NODE done (Xs)` lines it prints), the share outside the nodes, and how much of that
share is only importing the code (`python -c "import agent.cli.main, agent.run.runner"`, timed apart).

With a baseline checkout the two trees run alternately, repeat by repeat (drift hits both), each from the
same virtual environment with its own code first on PYTHONPATH (e.g. `git worktree add /tmp/base bc238fd`),
on the same workspace and its config (tracking as `tether init` writes it).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NODE_LINE = re.compile(r"^\s+(\w+) done \((\d+(?:\.\d+)?)s\)$", re.MULTILINE)
IMPORTS = "import agent.cli.main, agent.run.runner"


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def one_round(tree: Path, home: Path) -> dict[str, Any]:
    """`tether run --rounds 1` of `tree` on `home` (it pauses at the gate): wall, node seconds, the rest."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "--home", str(home), "run", "--rounds", "1"],
                          cwd=tree, env=_env(tree), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"tether run in {tree} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    nodes = {name: float(s) for name, s in NODE_LINE.findall(proc.stderr)}
    node_s = sum(nodes.values())
    return {"wall_s": round(wall, 2), "nodes_s": round(node_s, 2), "outside_nodes_s": round(wall - node_s, 2),
            "wall_over_nodes": round(wall / node_s, 2) if node_s else None, "nodes": nodes}


def import_floor(tree: Path) -> float:
    """Seconds a fresh interpreter takes to import what `tether run` imports before its first node."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], cwd=tree, env=_env(tree), check=True)
    return round(time.perf_counter() - started, 2)


def compare(trees: dict[str, Path], home: Path, repeats: int) -> dict[str, Any]:
    """Each tree's one-round runs and import floors, alternating (the order rotating each repeat), with
    medians; with two trees, the first's medians over the second's."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    floors: dict[str, list[float]] = {name: [] for name in trees}
    names = list(trees)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            floors[name].append(import_floor(trees[name]))
            result = one_round(trees[name], home)
            runs[name].append(result)
            print(f"one round, {name} repeat {repeat}: wall {result['wall_s']} s, nodes {result['nodes_s']} s, "
                  f"imports alone {floors[name][-1]} s", flush=True)
    report: dict[str, Any] = {"repeats": repeats, "trees": {n: str(t) for n, t in trees.items()}}
    for name in names:
        median = {key: round(statistics.median(r[key] for r in runs[name]), 2)
                  for key in ("wall_s", "nodes_s", "outside_nodes_s")}
        median["wall_over_nodes"] = round(median["wall_s"] / median["nodes_s"], 2)
        median["imports_s"] = round(statistics.median(floors[name]), 2)
        report[name] = {"median": median, "runs": runs[name], "imports_s": floors[name]}
    if len(names) == 2:
        new, old = (report[n]["median"] for n in names)
        report[f"{names[0]}_over_{names[1]}"] = {k: round(new[k] / old[k], 3) for k in new if old[k]}
    return report
