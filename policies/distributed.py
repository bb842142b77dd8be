"""A training job on several processes: the ``accelerate launch`` arguments and environment for a
:class:`policies.train_spec.DistributedSpec`, and what a job checks once its trainer is built.

``accelerate launch`` is the only launcher: it starts ``num_processes`` copies of
``python -m policies.train_job SPEC`` through torchrun, whose agent stops every rank as soon as one fails
and reports the failed rank's traceback (``policies.train_job`` is wrapped in torch's ``@record``).

* ``ddp``: ``--multi_gpu``. On the CPU (``model.device: cpu``, or ``auto`` without a CUDA GPU) the children
  also get ``ACCELERATE_USE_CPU=true``: accelerate then joins them with the gloo backend (``MULTI_CPU``).
  (``--cpu`` cannot be used: with it ``accelerate launch`` starts one process whatever ``--num_processes``.)
* ``fsdp``: ``--use_fsdp``; on the CPU also ``--fsdp_version 2`` and the children's ``ACCELERATE_USE_CPU``, and
  each job lets accelerate shard there (:func:`shard_on_cpu`). accelerate 1.16 itself sets FSDP up only on
  GPU-type devices (on the CPU ``--use_fsdp`` alone trains with DDP without saying so); torch's FSDP2
  (``fully_shard``) runs on a gloo group, and accelerate's FSDP2 code runs on it unchanged once that one gate
  is passed. FSDP1 cannot run on the CPU (torch: "Inconsistent compute device and `device_id`"). Every job
  checks what it got (:func:`strategy_problem`).
* ``deepspeed``: ``--use_deepspeed --deepspeed_config_file F``; GPUs only (accelerate never launches
  DeepSpeed on the CPU).

Threads: the processes share this machine's cores, so each gets the caller's torch threads divided by
their number (at least one).
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

from policies.train_spec import DistributedSpec

STRATEGY_FLAGS = {"ddp": "--multi_gpu", "fsdp": "--use_fsdp", "deepspeed": "--use_deepspeed"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, for the job's rendezvous: accelerate's default (29500) would
    collide with any other job on the machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_args(spec: DistributedSpec, port: int, on_cpu: bool) -> list[str]:
    """``accelerate launch`` options (before ``-m policies.train_job``) for ``spec``."""
    args = [STRATEGY_FLAGS[spec.strategy], "--num_processes", str(spec.num_processes), "--num_machines", "1",
            "--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
    if spec.strategy == "fsdp" and on_cpu:
        args += ["--fsdp_version", "2"]  # FSDP1 cannot run on the CPU (module docstring)
    if spec.strategy == "deepspeed":
        if spec.config_file is None:  # the config section and the pre-flight refuse this already
            raise ValueError("strategy deepspeed needs a DeepSpeed config file (training.distributed.config_file)")
        return [*args, "--deepspeed_config_file", spec.config_file]
    if spec.config_file is not None:
        return ["--config_file", spec.config_file, *args]
    # Without an accelerate config these are accelerate's own defaults, given so that it does not warn;
    # precision is the trainer's (bf16 on a GPU that has it, training.trl).
    return [*args, "--mixed_precision", "no", "--dynamo_backend", "no"]


def launch_env(spec: DistributedSpec, on_cpu: bool, threads: int) -> dict[str, str]:
    """What the children's environment adds: their share of the threads, and the CPU switch (see above)."""
    env = {"OMP_NUM_THREADS": str(max(1, threads // spec.num_processes))}
    if on_cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    return env


def failure_text(stderr: str, lines: int = 40) -> str:
    """What to show of a failed launch: torchrun's summary from its "Root Cause" (the first rank that failed,
    with its traceback) when there is one, else the last ``lines`` lines."""
    marker = stderr.rfind("Root Cause")
    if marker >= 0:
        return stderr[stderr.rfind("\n", 0, marker) + 1:].strip()
    return "\n".join(stderr.strip().splitlines()[-lines:])


def join_processes(on_cpu: bool, timeout_s: int) -> None:
    """Join the job's processes with the collective timeout: transformers passes ``ddp_timeout`` to the process
    group on GPUs but not on the CPU, where every collective would wait torch's default 30 minutes. The group
    made here is the one accelerate and the trainer then use (they make one only when none exists)."""
    from accelerate import PartialState

    PartialState(cpu=on_cpu, timeout=timedelta(seconds=timeout_s))


def shard_on_cpu() -> None:
    """Let accelerate set FSDP up on this process's CPU/gloo group (a job of strategy fsdp on the CPU calls this
    after its ``DPOConfig`` is built, before the trainer makes its ``Accelerator``).

    accelerate 1.16 turns ``ACCELERATE_USE_FSDP`` into FSDP only when the group's type is one of its GPU-type
    ``MULTI_*`` types (``AcceleratorState.__init__``, accelerate/state.py: ``elif self.distributed_type in
    [DistributedType.MULTI_GPU, ...]``, which leaves out ``MULTI_CPU``); the FSDP2 code it then runs works on a
    CPU group. So the already-joined CPU group is declared ``MULTI_GPU`` for that one check: the device (the
    CPU) and the gloo group are set up already and stay. This writes accelerate's shared state, which is not
    its public API: if a later accelerate sets something else up, :func:`strategy_problem` refuses the job."""
    from accelerate import DistributedType, PartialState

    state = PartialState()
    if state.distributed_type != DistributedType.MULTI_CPU or state.device.type != "cpu":
        raise RuntimeError(f"FSDP on the CPU needs a joined CPU process group; accelerate set up "
                           f"{state.distributed_type} on {state.device}")
    PartialState._shared_state["distributed_type"] = DistributedType.MULTI_GPU


def strategy_problem(spec: DistributedSpec, trainer: Any) -> str | None:
    """Why the built trainer does not run ``spec`` (None when it does): the number of processes and the
    strategy accelerate set up, so that a job asked for FSDP never trains with DDP unnoticed."""
    processes = trainer.accelerator.num_processes
    if processes != spec.num_processes:
        return f"the job runs on {processes} process(es), not the {spec.num_processes} asked for"
    got = ("fsdp" if getattr(trainer, "is_fsdp_enabled", False)
           else "deepspeed" if getattr(trainer, "is_deepspeed_enabled", False) else "ddp")
    on_cpu = trainer.accelerator.device.type == "cpu"
    if got != spec.strategy:
        where = "the CPU" if on_cpu else str(trainer.accelerator.device)
        return (f"accelerate set up {got} on {where}, not the {spec.strategy} asked for (DeepSpeed runs only on "
                "GPUs): use training.distributed.strategy ddp or fsdp here")
    if got == "fsdp" and on_cpu and not trainer.accelerator.is_fsdp2:
        return ("accelerate set up FSDP1 on the CPU, which torch cannot run there: set fsdp_version: 2 in the "
                "accelerate config (training.distributed.config_file)")
    return None
