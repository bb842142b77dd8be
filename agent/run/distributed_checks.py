"""What `tether validate` and a run's pre-flight (agent/run/preflight.py) check of ``training.distributed``
before any process starts: the machine can run the strategy, and its config file says what tether trains with.

* ``ddp`` and ``fsdp`` run on the CPU (gloo) or on GPUs, one process a GPU: more processes than GPUs is refused.
  FSDP on the CPU is FSDP2 (policies/distributed.py): an accelerate config there may not ask for
  ``fsdp_version`` 1, which torch cannot run on the CPU.
* ``deepspeed`` needs CUDA GPUs: accelerate never launches DeepSpeed on the CPU.
* A DeepSpeed JSON must parse to a mapping with ``zero_optimization.stage`` 2 or 3 (ZeRO-2 shards gradients
  and optimizer state, ZeRO-3 the parameters too); ``offload_param`` only with stage 3; an offload
  ``device`` of ``cpu``, ``nvme`` (with its ``nvme_path``) or ``none``; batch sizes either ``"auto"`` (the
  HF integration fills them in from the trainer) or equal to what tether trains with; and deepspeed must be
  installed (it is not a dependency of tether: it builds CUDA kernels).
* An accelerate config (YAML) must parse to a mapping whose ``distributed_type`` agrees with the strategy.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from guardrails.safe_yaml import YamlRefused, read_yaml
from policies.train_spec import DistributedSpec

ZERO_STAGES = (2, 3)
OFFLOAD_DEVICES = ("cpu", "nvme", "none")
ACCELERATE_TYPES = {"ddp": ("MULTI_GPU", "MULTI_CPU"), "fsdp": ("FSDP",), "deepspeed": ("DEEPSPEED",)}
WHERE = "training.distributed"


def distributed_problems(spec: DistributedSpec, *, on_cpu: bool, gpus: int, batch_size: int,
                         grad_accum: int) -> list[str]:
    """Every problem with running ``spec`` here, one line each with its fix; empty when it can run."""
    problems: list[str] = []
    if on_cpu and spec.strategy == "deepspeed":
        problems.append(f"{WHERE}.strategy deepspeed needs CUDA GPUs (accelerate launches DeepSpeed only on GPUs): "
                        "use strategy ddp or fsdp on the CPU")
    elif not on_cpu and spec.num_processes > gpus:
        problems.append(f"{WHERE}.num_processes is {spec.num_processes} but {gpus} GPU(s) are visible here: one "
                        "process a GPU, so set num_processes to at most the GPUs")
    if spec.config_file is None:
        return problems
    path = Path(spec.config_file)
    if not path.is_file():
        return [*problems, f"{WHERE}.config_file {path} is not a file: point it at the "
                           f"{'DeepSpeed JSON' if spec.strategy == 'deepspeed' else 'accelerate config'}"]
    if spec.strategy == "deepspeed":
        return problems + deepspeed_problems(path, batch_size, grad_accum)
    return problems + accelerate_config_problems(path, spec, on_cpu)


def deepspeed_problems(path: Path, batch_size: int, grad_accum: int) -> list[str]:
    """A DeepSpeed JSON checked as the module docstring says, and whether deepspeed is importable."""
    problems = []
    if importlib.util.find_spec("deepspeed") is None:
        problems.append("strategy deepspeed needs the deepspeed package, which is not installed: pip install "
                        "deepspeed (on the GPU machine: it builds CUDA kernels)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return [*problems, f"{WHERE}.config_file {path} is not a DeepSpeed JSON: {err}"]
    if not isinstance(config, dict):
        return [*problems, f"{WHERE}.config_file {path} must hold a JSON object (DeepSpeed's config)"]
    zero = config.get("zero_optimization")
    if not isinstance(zero, dict):
        zero = {}
    stage = zero.get("stage")
    if stage not in ZERO_STAGES or isinstance(stage, bool):
        return [*problems, f"{path}: zero_optimization.stage must be 2 or 3 (ZeRO-2: gradients and optimizer "
                           f"state sharded; ZeRO-3: parameters too), got {stage!r}"]
    for key in ("offload_optimizer", "offload_param"):
        problems += _offload_problems(path, key, zero.get(key), stage)
    for key, ours, setting in (("train_micro_batch_size_per_gpu", batch_size, "training.batch_size"),
                               ("gradient_accumulation_steps", grad_accum, "training.grad_accum")):
        value = config.get(key, "auto")
        if value != "auto" and value != ours:
            problems.append(f"{path}: {key} is {value!r} but {setting} is {ours}: write \"auto\" (the trainer fills "
                            f"it in) or {ours}")
    return problems


def _offload_problems(path: Path, key: str, value: Any, stage: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [f"{path}: zero_optimization.{key} must be an object with a device, got {value!r}"]
    device = value.get("device", "none")
    if device not in OFFLOAD_DEVICES:
        return [f"{path}: zero_optimization.{key}.device must be one of {', '.join(OFFLOAD_DEVICES)}, got {device!r}"]
    if key == "offload_param" and device != "none" and stage != 3:
        return [f"{path}: zero_optimization.offload_param needs stage 3 (only ZeRO-3 partitions the parameters); "
                "use offload_optimizer with stage 2"]
    if device == "nvme" and not value.get("nvme_path"):
        return [f"{path}: zero_optimization.{key} offloads to nvme but names no nvme_path"]
    return []


def accelerate_config_problems(path: Path, spec: DistributedSpec, on_cpu: bool) -> list[str]:
    """An accelerate config (YAML) that parses to a mapping whose distributed_type fits the strategy, and on the
    CPU no FSDP1 (its ``fsdp_config.fsdp_version`` overrides the ``--fsdp_version 2`` tether passes)."""
    try:
        config = read_yaml(path)
    except (YamlRefused, OSError) as err:
        return [f"{WHERE}.config_file {path} is not an accelerate config: {err}"]
    if not isinstance(config, dict):
        return [f"{WHERE}.config_file {path} must hold a mapping (an accelerate config, from `accelerate config`)"]
    kind = config.get("distributed_type")
    wanted = ACCELERATE_TYPES[spec.strategy]
    if kind is not None and kind not in wanted:
        return [f"{path}: distributed_type {kind!r} does not fit strategy {spec.strategy} (expected "
                f"{' or '.join(wanted)})"]
    fsdp = config.get("fsdp_config")
    version = fsdp.get("fsdp_version") if isinstance(fsdp, dict) else None
    if spec.strategy == "fsdp" and on_cpu and version is not None and str(version) != "2":
        return [f"{path}: fsdp_config.fsdp_version is {version!r}, but on the CPU only FSDP2 runs (torch's FSDP1 "
                "refuses a CPU device): set fsdp_version: 2, or run on GPUs"]
    return []
