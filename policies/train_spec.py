"""The job spec of a LoRA DPO training run: JSON-serialisable, so the same job runs in-process,
as ``python -m policies.train_job SPEC.json`` or under ``accelerate launch``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoraSpec:
    """LoRA hyper-parameters (``lora_alpha = alpha``; scaling is ``alpha / r``)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if self.r < 1:
            raise ValueError(f"LoraSpec.r must be >= 1, got {self.r}")
        if not self.target_modules:
            raise ValueError("LoraSpec.target_modules must not be empty")

    def to_lora_config(self) -> Any:  # peft.LoraConfig
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )


@dataclass(frozen=True)
class DPOSpec:
    """DPO hyper-parameters (TRL ``DPOConfig``). ``batch_size`` is per device, in pairs.

    ``gradient_checkpointing`` is off by default (TRL turns it on): it only pays off for models
    whose activations do not fit, and slows small models down.
    """

    beta: float = 0.1
    loss_type: str = "sigmoid"
    learning_rate: float = 5e-4
    epochs: int = 1
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 192
    seed: int = 0
    ld_alpha: float | None = None
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("DPOSpec.epochs, batch_size and grad_accum must be >= 1")
        if self.learning_rate < 0:
            raise ValueError(f"DPOSpec.learning_rate must be >= 0, got {self.learning_rate}")
        if self.ld_alpha is not None and not 0.0 <= self.ld_alpha <= 1.0:
            raise ValueError(f"DPOSpec.ld_alpha must be in [0, 1], got {self.ld_alpha}")


@dataclass(frozen=True)
class TrainJob:
    """A self-contained, JSON-serialisable training job.

    ``pairs_path``: JSONL of ``{"prompt": str, "chosen": str, "rejected": str}`` (prompt = the user
    message, chosen/rejected = assistant replies). ``output_dir`` must not exist yet (or be empty).
    ``init_adapter`` + ``init_adapter_sha256``: warm start from that adapter (both or neither).
    ``device``: ``"cpu"`` forces the CPU; anything else (``"auto"``, ``"cuda"``) lets the Trainer /
    accelerate place the model (one GPU per process under ``accelerate launch``).
    """

    base_model: str
    pairs_path: str
    output_dir: str
    init_adapter: str | None = None
    init_adapter_sha256: str | None = None
    lora: LoraSpec = field(default_factory=LoraSpec)
    dpo: DPOSpec = field(default_factory=DPOSpec)
    device: str = "auto"

    def __post_init__(self) -> None:
        if (self.init_adapter is None) != (self.init_adapter_sha256 is None):
            raise ValueError("TrainJob.init_adapter and init_adapter_sha256 must be given together")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lora"]["target_modules"] = list(self.lora.target_modules)
        return data

    def with_absolute_paths(self) -> TrainJob:
        """The same job with local paths made absolute (a hub id ``base_model`` is kept as is),
        so it means the same thing from another working directory."""

        def absolute(path: str | None) -> str | None:
            return None if path is None else str(Path(path).resolve())

        base = self.base_model
        if Path(base).exists():
            base = str(Path(base).resolve())
        return replace(
            self,
            base_model=base,
            pairs_path=str(absolute(self.pairs_path)),
            output_dir=str(absolute(self.output_dir)),
            init_adapter=absolute(self.init_adapter),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainJob:
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainJob fields: {sorted(unknown)}")
        lora = dict(data.pop("lora", {}) or {})
        if "target_modules" in lora:
            lora["target_modules"] = tuple(lora["target_modules"])
        dpo = dict(data.pop("dpo", {}) or {})
        return cls(lora=LoraSpec(**lora), dpo=DPOSpec(**dpo), **data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainJob:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class TrainResult:
    """The saved adapter (directory + SHA-256 of its weights), optimizer steps, final metrics."""

    adapter_dir: Path
    sha256: str
    steps: int
    metrics: dict[str, float]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "adapter_dir": str(self.adapter_dir),
            "sha256": self.sha256,
            "steps": self.steps,
            "metrics": dict(self.metrics),
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        return cls(
            adapter_dir=Path(data["adapter_dir"]),
            sha256=str(data["sha256"]),
            steps=int(data["steps"]),
            metrics={str(k): float(v) for k, v in data["metrics"].items()},
            seconds=float(data["seconds"]),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainResult:
        return cls.from_dict(json.loads(text))


class TrainJobError(RuntimeError):
    """A launched training job failed (non-zero exit or no result)."""
