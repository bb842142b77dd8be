"""`training.distributed`: the round's DPO job on several processes under `accelerate launch`
(policies/distributed.py launches it, policies/distributed_check.py checks it before a run)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator

from agent.sections.base import _Section
from policies.train_spec import DistributedSpec, Strategy


class DistributedConfig(_Section):
    num_processes: int = Field(
        ge=2, le=1024,
        description="Processes that train the job together, 2 to 1024: one per GPU, or CPU processes joined "
        "with gloo. training.batch_size is per process: a step sees num_processes x batch_size x "
        "grad_accum pairs.",
    )
    strategy: Strategy = Field(
        "ddp",
        description="ddp: every process holds the model, gradients are averaged (CPU or GPUs). fsdp: parameters, "
        "gradients and optimizer state sharded over the processes (GPUs; on the CPU FSDP2 over gloo). deepspeed: "
        "DeepSpeed ZeRO as its config_file says (GPUs only, `pip install deepspeed`).",
    )
    config_file: str | None = Field(
        None,
        description="ddp / fsdp: an accelerate config (YAML, from `accelerate config`) for the options tether "
        "does not set; deepspeed: the DeepSpeed JSON (required; its zero_optimization.stage 2 or 3 and offload "
        "settings are checked by `tether validate`). Relative to the config file.",
    )
    timeout_s: int = Field(
        1800, ge=5, le=86_400,
        description="Seconds a collective (gradient all-reduce, barrier) waits for the other processes, 5 to "
        "86400: a rank that hangs fails the job after this long instead of holding the others forever.",
    )

    @model_validator(mode="after")
    def _deepspeed_needs_its_file(self) -> DistributedConfig:
        if self.strategy == "deepspeed" and self.config_file is None:
            raise ValueError("strategy deepspeed needs config_file: the DeepSpeed JSON (zero_optimization.stage, "
                             "offload settings) the processes run with")
        return self

    def anchored(self, folder: Path) -> DistributedConfig:
        """With `config_file` relative to `folder` (the config file's) made absolute."""
        if self.config_file is None or Path(self.config_file).expanduser().is_absolute():
            return self
        return self.model_copy(update={"config_file": os.path.normpath(folder / self.config_file)})

    def spec(self) -> DistributedSpec:
        return DistributedSpec(num_processes=self.num_processes, strategy=self.strategy,
                               config_file=self.config_file, timeout_s=self.timeout_s)
