"""What the benchmark scripts share: a fresh workspace with a reviewer, and that reviewer at the gate.

A benchmark initialises its workspace exactly as `tether init --reviewer bench` does (the CLI command,
run in-process), then approves each candidate with the bench reviewer's signed decision from a thread,
as a person would from another shell. The reviewer's private key lives in a key folder the benchmark
names (by default inside its output folder), never in the user's key folder.
"""

from __future__ import annotations

import _thread
import tempfile
import threading
import time
import traceback
from pathlib import Path

from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import TetherConfig
from agent.run.runner import Outcome, start_run
from agent.run.workspace import Workspace
from guardrails import gate, keys, reviewers
from memory import Store

REVIEWER = "bench"


def keys_dir_for(out: Path) -> Path:
    """The default key folder of a benchmark: `keys/` beside its output file (bench-out/ is git-ignored)."""
    return out.parent / "keys"


def fresh_workspace(home: Path | None, keys_dir: Path) -> tuple[Workspace, keys.Signer]:
    """`tether init --reviewer bench` on `home` (default: a new temp dir) with the bench key in
    `keys_dir` (created there if absent, reused if present); returns the workspace and that key."""
    ws = Workspace(home or Path(tempfile.mkdtemp(prefix="tether-bench-")))
    keys_dir = keys_dir.resolve()
    # The key folder is passed to the command as a person's shell would: only for its duration, and
    # without a passphrase, so the benchmark's throwaway key is never encrypted with the user's.
    result = CliRunner().invoke(app, ["--home", str(ws.home), "init", "--reviewer", REVIEWER],
                                env={keys.KEYS_ENV: str(keys_dir), keys.PASSPHRASE_ENV: None})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if result.exit_code != 0:
        raise SystemExit(f"tether init --home {ws.home} failed (exit {result.exit_code}): {result.output.strip()}")
    print(result.output.strip())
    fix = f"Use a new --home, or the --keys-dir {ws.home} was initialised with."
    try:
        signer = keys.load_key(keys_dir, REVIEWER)
    except keys.KeyStoreError as err:
        raise SystemExit(f"{err}. {fix}") from None
    registered = reviewers.registry(Store(ws.db_path)).get(REVIEWER)
    if registered is None or registered.public_hex != signer.public_hex:
        raise SystemExit(f"{ws.home} has no reviewer '{REVIEWER}' with the key in {keys_dir}. {fix}")
    return ws, signer


def _approve_checkpoints(store: Store, signer: keys.Signer, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            for approval in store.approvals(status="pending"):
                if approval.kind == "checkpoint":  # constitution changes are left to a human
                    # Every candidate, targets met or not (the tiny model starts above its ratchet's target).
                    gate.decide(store, approval.id, "approve", signer, "benchmark approver", accept_not_met=True)
            time.sleep(0.05)
    except BaseException:
        # The run waits at the gate for a decision that will not come now: stop it rather than hang.
        traceback.print_exc()
        _thread.interrupt_main()


def start_reviewer(ws: Workspace, signer: keys.Signer) -> threading.Event:
    """Approve every candidate as it reaches the gate, signed by `signer`, as a human would from
    another shell; set the returned event to stop. A refused approval interrupts the main thread."""
    stop = threading.Event()
    threading.Thread(target=_approve_checkpoints, args=(Store(ws.db_path), signer, stop), daemon=True,
                     name="bench-reviewer").start()
    return stop


def run_reviewed(ws: Workspace, signer: keys.Signer, config: TetherConfig) -> tuple[Outcome, Store, float]:
    """One run of `config` to its end, every candidate approved by `signer` as it reaches the gate:
    (its outcome, the workspace's store, wall seconds, the reviewer's wait included)."""
    store = Store(ws.db_path)
    stop = start_reviewer(ws, signer)
    started = time.perf_counter()
    try:
        outcome = start_run(ws, store, config, say=lambda _m: None, wait=True, progress=False)
    finally:
        stop.set()
    return outcome, store, time.perf_counter() - started
