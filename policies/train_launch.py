"""Launching a training job: in this process, as ``python -m policies.train_job SPEC`` or under
``accelerate launch -m policies.train_job SPEC`` (DDP/FSDP/DeepSpeed across devices).

A child process gets the spec as JSON (paths made absolute) and writes its result beside it; this
module reads it back. The child inherits this process's thread choice (model.threads).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Literal

from policies.distributed import failure_text, free_port, launch_args, launch_env
from policies.train_spec import TrainJob, TrainJobError, TrainResult, result_path_for


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def launch_train_job(
    job: TrainJob,
    launcher: Literal["inprocess", "subprocess", "accelerate"],
    workdir: Path,
    progress: bool = False,
    timeout: float | None = None,
) -> TrainResult:
    """Run ``job`` in-process, as ``python -m policies.train_job SPEC`` or under
    ``accelerate launch -m policies.train_job SPEC``; a job with ``distributed`` runs under accelerate on that
    many processes (policies/distributed.py) and needs ``launcher="accelerate"``.

    The spec (paths made absolute) is written to ``workdir/train_job-<id>.json``; the job writes
    its result next to it (``train_job-<id>.result.json``), which is read back. A non-zero exit
    raises :class:`TrainJobError` with the tail of stderr (of several processes: the first failed rank's
    traceback, as torchrun reports it). ``timeout`` (seconds) is passed to
    ``subprocess.run``. ``workdir`` is unused in-process.
    """
    if job.distributed is not None and launcher != "accelerate":
        raise ValueError(f"a job on {job.distributed.num_processes} processes runs under accelerate launch, "
                         f"not launcher {launcher!r}: set training.launcher: accelerate")
    if launcher == "inprocess":
        from policies import training  # torch and TRL, in this process: only now

        return training.run_train_job(job, progress=progress)
    if launcher not in ("subprocess", "accelerate"):
        raise ValueError(
            f"unknown launcher {launcher!r}; expected inprocess, subprocess or accelerate"
        )

    job = job.with_absolute_paths()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / f"train_job-{uuid.uuid4().hex[:12]}.json"
    spec_path.write_text(job.to_json(), encoding="utf-8")
    result_path = result_path_for(spec_path)
    import torch  # the thread count this process chose (set before any job runs), and whether a GPU is here

    on_cpu = job.device == "cpu" or not torch.cuda.is_available()
    job_args = ["-m", "policies.train_job", str(spec_path)] + (["--progress"] if progress else [])
    if launcher == "subprocess":
        cmd = [sys.executable, *job_args]
    else:
        sibling = Path(sys.executable).with_name(
            "accelerate"
        )  # this environment's accelerate first
        accelerate = str(sibling) if sibling.is_file() else shutil.which("accelerate")
        if accelerate is None:
            raise TrainJobError("launcher 'accelerate' needs the `accelerate` command on PATH")
        spread = [] if job.distributed is None else launch_args(job.distributed, free_port(), on_cpu)
        cmd = [accelerate, "launch", *spread, *job_args]

    env = dict(os.environ)
    root = str(_project_root())
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # The child is a new process: it gets this process's thread choice (model.threads), not torch's default.
    env.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    if job.distributed is not None:
        env.update(launch_env(job.distributed, on_cpu, torch.get_num_threads()))
    # With progress the child's bar goes to this process's stderr, so stderr is not captured; stdout is
    # never the child's (a command's stdout holds only what it promises, e.g. `run <RUN_ID>`).
    proc = subprocess.run(
        cmd,
        check=False,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=None if progress else subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        if proc.stderr is None:
            tail = "(stderr went to the console)"
        else:
            tail = failure_text(proc.stderr)
        raise TrainJobError(
            f"training job {spec_path} failed with exit code {proc.returncode} ({' '.join(cmd[:3])} ...)"
            f":\n{tail}"
        )
    if not result_path.is_file():
        raise TrainJobError(
            f"training job {spec_path} exited 0 but wrote no result at {result_path}"
        )
    return TrainResult.from_json(result_path.read_text(encoding="utf-8"))
