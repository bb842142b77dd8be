"""What the benchmark scripts share: a fresh workspace with a reviewer, that reviewer at the gate, the recipes
the benchmarks compare, and the curve of a run.

A benchmark initialises its workspace exactly as `tether init --reviewer bench` does (the CLI command,
run in-process), then approves each candidate with the bench reviewer's signed decision from a thread,
as a person would from another shell; where a benchmark says so, the same reviewer also approves the
agent's constitution amendments. The reviewer's private key lives in a key folder the benchmark names (by
default inside its output folder), never in the user's key folder.

Recipes (`apply_recipe`), on a config document: `tether` as configured; `fixed`, the same with
`controller.interventions: []`; `regularized`, the fixed recipe with `pairs.strategy: regularized` from round
1; `self_rewarding`, the policy judging itself (`judge.name: self`), a fixed recipe of 3 iterations.
"""

from __future__ import annotations

import _thread
import os
import statistics
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import TetherConfig
from agent.review.notebook import judge_label
from agent.run.runner import Outcome, start_run
from agent.run.workspace import Workspace
from guardrails import amendments, gate, keys, reviewers
from memory import Store

REVIEWER = "bench"
RECIPES: tuple[str, ...] = ("tether", "fixed", "regularized", "self_rewarding")
SELF_REWARDING_ITERATIONS = 3
NOT_INTERVENTIONS = frozenset({"train", "skip", "stop", None})


def keys_dir_for(out: Path) -> Path:
    """The default key folder of a benchmark: `keys/` beside its output file (bench-out/ is git-ignored)."""
    return out.parent / "keys"


def fresh_workspace(home: Path | None, keys_dir: Path,
                    constitution: str | None = None) -> tuple[Workspace, keys.Signer]:
    """`tether init --reviewer bench` on `home` (default: a new temp dir) with the bench key in
    `keys_dir` (created there if absent, reused if present); returns the workspace and that key.
    `constitution`: the text the workspace starts with instead of the default (written before `init`,
    which keeps a constitution file it finds, as a user who wrote their own would)."""
    ws = Workspace(home or Path(tempfile.mkdtemp(prefix="tether-bench-")))
    keys_dir = keys_dir.resolve()
    if constitution is not None:
        ws.home.mkdir(parents=True, exist_ok=True)
        ws.constitution_path.write_text(constitution)
    # The key folder is passed to the command as a person's shell would: only for its duration, and
    # without a passphrase, so the benchmark's throwaway key is never encrypted with the user's.
    result = CliRunner().invoke(app, ["--home", str(ws.home), "init", "--reviewer", REVIEWER],
                                env={keys.KEYS_ENV: str(keys_dir), keys.PASSPHRASE_ENV: None})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if result.exit_code != 0:
        raise SystemExit(f"tether init --home {ws.home} failed (exit {result.exit_code}): {result.output.strip()}")
    print(result.output.strip())
    # This process is the bench reviewer from now on (its thread signs at the gate, and the run verifies those
    # signatures): the registry's root of trust that `init` pinned is in the bench key folder, not the user's.
    os.environ[keys.KEYS_ENV] = str(keys_dir)
    fix = f"Use a new --home, or the --keys-dir {ws.home} was initialised with."
    try:
        signer = keys.load_key(keys_dir, REVIEWER)
    except keys.KeyStoreError as err:
        raise SystemExit(f"{err}. {fix}") from None
    registered = reviewers.registry(Store(ws.db_path)).get(REVIEWER)
    if registered is None or registered.public_hex != signer.public_hex:
        raise SystemExit(f"{ws.home} has no reviewer '{REVIEWER}' with the key in {keys_dir}. {fix}")
    return ws, signer


def _approve(store: Store, signer: keys.Signer, stop: threading.Event, constitution: Path,
             approve_amendments: bool) -> None:
    try:
        while not stop.is_set():
            for approval in store.approvals(status="pending"):
                if approval.kind == "checkpoint":
                    # Every candidate, targets met or not (the tiny model starts above its ratchet's target).
                    gate.decide(store, approval.id, "approve", signer, "benchmark approver", accept_not_met=True)
                elif approval.kind == "constitution":
                    # The agent's amendment, approved as a reviewer who reads and accepts it would (re-checked
                    # there: an amendment touching an invariant is refused), or declined where the benchmark keeps
                    # its constitution: the run waits for a decision either way (approvals.hold_for_amendment).
                    verdict, note = (("approve", "benchmark approver") if approve_amendments
                                     else ("reject", "this benchmark keeps its constitution"))
                    amendments.decide(store, approval.id, verdict, signer, note, constitution)
            time.sleep(0.05)
    except BaseException:
        # The run waits at the gate for a decision that will not come now: stop it rather than hang.
        traceback.print_exc()
        _thread.interrupt_main()


def start_reviewer(ws: Workspace, signer: keys.Signer, approve_amendments: bool = False) -> threading.Event:
    """Approve every candidate as it reaches the gate, signed by `signer`, as a human would from
    another shell (and, with `approve_amendments`, every constitution amendment the agent proposes; without,
    those are rejected: the run waits for a decision); set the returned event to stop. A refused approval
    interrupts the main thread."""
    stop = threading.Event()
    threading.Thread(target=_approve, args=(Store(ws.db_path), signer, stop, ws.constitution_path, approve_amendments),
                     daemon=True, name="bench-reviewer").start()
    return stop


def run_reviewed(ws: Workspace, signer: keys.Signer, config: TetherConfig,
                 approve_amendments: bool = False) -> tuple[Outcome, Store, float]:
    """One run of `config` to its end, every candidate approved by `signer` as it reaches the gate:
    (its outcome, the workspace's store, wall seconds, the reviewer's wait included)."""
    store = Store(ws.db_path)
    stop = start_reviewer(ws, signer, approve_amendments)
    started = time.perf_counter()
    try:
        outcome = start_run(ws, store, config, say=lambda _m: None, wait=True, progress=False)
    finally:
        stop.set()
    return outcome, store, time.perf_counter() - started


# -- recipes -----------------------------------------------------------------------------------------------

def apply_overrides(doc: dict[str, Any], overrides: list[str]) -> None:
    """`--set a.b=VALUE` (VALUE in YAML) into the config document, for every system alike."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. training.loss_type=[sigmoid,sft]")
        *parents, leaf = key.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)


def apply_recipe(doc: dict[str, Any], system: str, rounds: int) -> None:
    """Turn a config document into `system`'s recipe (see the module's docstring), in place."""
    if system not in RECIPES:
        raise ValueError(f"unknown recipe {system!r} (known: {', '.join(RECIPES)})")
    if system == "tether":
        return
    doc["controller"]["interventions"] = []
    if system == "regularized":
        doc["pairs"] = {**(doc.get("pairs") or {}), "strategy": "regularized"}
    elif system == "self_rewarding":
        # Its own judge, whatever the configured one was; the pool is unused with interventions off.
        doc["judge"] = {**(doc.get("judge") or {}), "name": "self", "settings": {}, "pool": []}
        doc["controller"]["rounds"] = min(rounds, SELF_REWARDING_ITERATIONS)


# -- the curve of a run: the held-out score of the checkpoint active after each round ----------------------

def active_after_each_round(store: Store, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the base's evaluation, per round the evaluation of the checkpoint active after it, with what the
    round did). A round without an evaluation keeps the previous one."""
    evals = {ck.round: ck for ck in store.checkpoints(run_id) if "eval" in (ck.metrics or {})}
    first = min(evals) if evals else None
    base: dict[str, Any] = evals[first].metrics["eval"]["active"] if first is not None else {}
    active = base
    rows = []
    for r in store.rounds(run_id):
        ck = evals.get(r.round)
        if ck is not None:
            active = ck.metrics["eval"]["candidate" if ck.status == "approved" else "active"]
        rows.append({"round": r.round, "action": r.action, "outcome": r.outcome, "judge": judge_label(r),
                     "eval": active})
    return base, rows


def curve_point(evaluation: dict[str, Any]) -> dict[str, Any]:
    """What a curve plots from an evaluation (the reported one: the test split, which no decision of the run
    read), labelled with its split: oracle overall and per family, pass rates where sampled."""
    block = evaluation.get("headroom") or {}
    return {"split": evaluation.get("split", "heldout"), "oracle": evaluation.get("oracle"),
            "oracle_by_family": evaluation.get("oracle_by_family") or {}, "headroom": block}


def carry_forward(curve: list[dict[str, Any]], rounds: int) -> None:
    """A run that stopped early (or a recipe's last iteration) keeps its last value to round `rounds`, marked."""
    while len(curve) <= rounds:
        curve.append({**curve[-1], "round": len(curve), "carried": True, "action": None, "outcome": None})


def run_system(ws: Workspace, signer: keys.Signer, system: str, config: TetherConfig, rounds: int,
               approve_amendments: bool = False) -> dict[str, Any]:
    """Run `config` to its end with the bench reviewer at the gate; its curve (round 0 = the base) to round
    `rounds`, what each round did, and where it intervened."""
    outcome, store, wall = run_reviewed(ws, signer, config, approve_amendments)
    base, rows = active_after_each_round(store, outcome.run_id)
    curve = [{"round": 0, "carried": False, **curve_point(base)}]
    for row in rows:
        curve.append({"round": row["round"], "carried": False, "action": row["action"], "outcome": row["outcome"],
                      "judge": row["judge"], **curve_point(row["eval"])})
    carry_forward(curve, rounds)
    interventions = [r["round"] for r in rows if r["action"] not in NOT_INTERVENTIONS]
    return {"system": system, "run_id": outcome.run_id, "final_state": outcome.state, "rounds_run": len(rows),
            "trained_rounds": sum(r["action"] == "train" for r in rows),
            "approved_rounds": sum(r["outcome"] == "approved" for r in rows),
            "intervention_rounds": interventions,
            "interventions": {r["round"]: r["action"] for r in rows if r["action"] not in NOT_INTERVENTIONS},
            "wall_s": round(wall, 1), "curve": curve}


def mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0.0 for one value; None, None for none)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
