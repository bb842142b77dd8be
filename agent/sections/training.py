"""The training section of the run configuration: LoRA, DPO and TRL settings, in one place."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.sections.base import MAX_BATCH, _Section
from agent.sections.distributed import DistributedConfig
from policies.train_spec import LOSS_TYPES, DPOSpec, LoraSpec, LossType, loss_type_problems, trl_problems


class TrainingConfig(_Section):
    """The one source of the training defaults: `lora_spec()` and `dpo_spec()` build a job's specs."""

    launcher: Literal["inprocess", "subprocess", "accelerate"] = Field(
        "inprocess",
        description="How the TRL job runs: in this process, as `python -m policies.train_job`, or "
        "under `accelerate launch` (one process, or as many as `distributed` says).",
    )
    distributed: DistributedConfig | None = Field(
        None,
        description="Train the round's job on several processes under `accelerate launch` (needs launcher: "
        "accelerate): num_processes, strategy (ddp | fsdp | deepspeed), config_file, timeout_s. null: one process.",
    )
    lora_r: int = Field(8, ge=1, le=1024, description="LoRA rank, at most 1024.")
    lora_alpha: int = Field(16, ge=1, le=4096, description="LoRA scaling alpha, at most 4096.")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        description="Module names LoRA adapts.",
    )
    quantization: Literal["4bit"] | None = Field(
        None,
        description="'4bit': QLoRA, the adapter trains on a 4-bit NF4 base (bitsandbytes, CUDA GPU only; "
        "`tether validate` refuses it elsewhere). null: the base as saved.",
    )
    beta: float = Field(
        0.1, gt=0.0, le=10.0, description="DPO beta: strength of the KL anchor to the base, in (0, 10]."
    )
    loss_type: LossType | list[LossType] = Field(
        "sigmoid",
        description="TRL DPO loss, or a list of them summed with `loss_weights`; sigmoid_norm and ld_alpha "
        f"counter length exploitation. One of: {', '.join(LOSS_TYPES)}.",
    )
    loss_weights: list[float] | None = Field(
        None, description="Weight of each loss in a `loss_type` list, as many as losses (null: 1.0 each)."
    )
    ld_alpha: float | None = Field(
        None, ge=0.0, le=1.0, description="LD-DPO weight on tokens past the shared length (None: off)."
    )
    learning_rate: float = Field(
        1e-3, gt=0.0, le=1.0,
        description="AdamW learning rate, in (0, 1]; LoRA rates are typically 1e-5 to 1e-3.",
    )
    epochs: int = Field(3, ge=1, le=100, description="Passes over the round's pairs, at most 100.")
    batch_size: int = Field(8, ge=1, le=MAX_BATCH, description=f"Pairs per device step, at most {MAX_BATCH}.")
    grad_accum: int = Field(
        1, ge=1, le=MAX_BATCH, description=f"Gradient accumulation steps, at most {MAX_BATCH}."
    )
    max_length: int = Field(
        192, ge=16, le=32_768, description="Prompt + completion tokens kept per example, 16 to 32768."
    )
    trl: dict[str, Any] = Field(
        default_factory=dict,
        description="Further TRL `DPOConfig` keyword arguments (lr_scheduler_type, warmup_steps, weight_decay, "
        "activation_checkpointing, bf16, precompute_ref_log_probs, ...). A field tether sets itself is an "
        "error naming the setting to use; `tether validate` checks the names and values against TRL's DPOConfig.",
    )

    @field_validator("loss_type", mode="before")
    @classmethod
    def _known_losses(cls, value: Any) -> Any:
        problems = loss_type_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _training_cross_field(self) -> TrainingConfig:
        problems = trl_problems(self.trl)
        if "all-linear" in self.target_modules and len(self.target_modules) > 1:
            problems.append("target_modules: all-linear names every linear layer already; list it alone")
        losses = [self.loss_type] if isinstance(self.loss_type, str) else self.loss_type
        if self.loss_weights is not None and len(self.loss_weights) != len(losses):
            problems.append(f"loss_weights has {len(self.loss_weights)} weights for {len(losses)} loss types")
        if self.distributed is not None and self.launcher != "accelerate":
            problems.append(f"distributed runs the job under accelerate launch: set launcher: accelerate (it is "
                            f"{self.launcher})")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def lora_spec(self) -> LoraSpec:
        return LoraSpec(r=self.lora_r, alpha=self.lora_alpha, dropout=self.lora_dropout,
                        target_modules=tuple(self.target_modules), quantization=self.quantization)

    def dpo_spec(self, seed: int) -> DPOSpec:
        """The DPO hyper-parameters of a job trained with ``seed``."""
        return DPOSpec(beta=self.beta, loss_type=self.loss_type, loss_weights=self.loss_weights,
                       learning_rate=self.learning_rate, epochs=self.epochs, batch_size=self.batch_size,
                       grad_accum=self.grad_accum, max_length=self.max_length, seed=seed, ld_alpha=self.ld_alpha,
                       trl=self.trl)
