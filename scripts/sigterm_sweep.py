"""Send `tether run` a SIGTERM at varied delays after a `NODE done` line and record how each run ended.

    python scripts/sigterm_sweep.py --home TEMPLATE --node monitor --delays 1.8,2.0,2.2,2.4,2.6,2.8

TEMPLATE is a workspace made with `tether init` and a config (the tiny world's takes ~12 s a run). Each
trial runs on a copy of it and of $TETHER_KEYS_DIR (without its witnessed heads, which would refuse a
copy), so trials do not see one another. A line per trial: `terminated` (exit 1, the run recorded as
failed or still paused with the SIGTERM as its error), `killed` (the signal came after the run had
ended and the default action ended the process), or `IGNORED` (exit 0: the stop was lost). With the
lost stop of agent/run/terminate.py, 6 of 12 trials at 2.2-2.8 s after `monitor done` were IGNORED.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from guardrails.keys import resolve_keys_dir


def _term_after(proc: subprocess.Popen[str], delay: float) -> None:
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)


def trial(template: Path, keys: Path, node: str, delay: float, scratch: Path) -> dict[str, object]:
    home, trial_keys = scratch / "ws", scratch / "keys"
    shutil.copytree(template, home)
    shutil.copytree(keys, trial_keys, ignore=shutil.ignore_patterns("witness"))
    env = {**os.environ, "TETHER_KEYS_DIR": str(trial_keys), "PYTHONUNBUFFERED": "1"}
    cli = [sys.executable, "-m", "agent.cli", "--home", str(home)]
    proc = subprocess.Popen([*cli, "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    armed = False
    for line in proc.stderr or ():
        if not armed and line.strip().startswith(f"{node} done"):
            armed = True  # the delay is timed from the line, on a thread, so stderr keeps being read
            threading.Thread(target=_term_after, args=(proc, delay), daemon=True).start()
    proc.wait()
    status = subprocess.run([*cli, "status", "--json"], capture_output=True, text=True, env=env)
    found: Any = json.loads(status.stdout) if status.returncode == 0 else {}
    run: dict[str, Any] = found[0] if isinstance(found, list) and found else found
    verdict = {1: "terminated", -signal.SIGTERM: "killed", 0: "IGNORED"}.get(proc.returncode, "other")
    return {"node": node, "delay": delay, "exit": proc.returncode, "verdict": verdict if armed else "not reached",
            "state": run.get("state"), "error": run.get("error")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="the template workspace")
    parser.add_argument("--node", required=True, help="the node whose `done` line starts the delay")
    parser.add_argument("--delays", required=True, help="seconds after the line, comma-separated")
    args = parser.parse_args()
    keys = resolve_keys_dir()
    for delay in (float(d) for d in args.delays.split(",")):
        with tempfile.TemporaryDirectory(prefix="tether-sigterm-") as scratch:
            print(json.dumps(trial(args.home, keys, args.node, delay, Path(scratch))), flush=True)


if __name__ == "__main__":
    main()
