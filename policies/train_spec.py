"""The job spec of a LoRA DPO training run: JSON-serialisable, so the same job runs in-process,
as ``python -m policies.train_job SPEC.json`` or under ``accelerate launch``.

The specs carry no defaults for hyper-parameters: the run configuration (``agent.config.TrainingConfig``)
is their single source, and builds them. This module imports nothing heavy (no torch, no trl), so
config files that use its names load fast.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from tether_types import TetherError

LossType = Literal[
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
]
"""Every DPO loss TRL 1.16 implements (``DPOConfig.loss_type``)."""
LOSS_TYPES: tuple[str, ...] = get_args(LossType)
REFERENCE_FREE_LOSSES = frozenset({"sft"})
"""Losses that never read the reference log-probs (``sft`` is the chosen replies' NLL)."""

Quantization = Literal["4bit"]

# DPOConfig fields tether sets itself, each with what to do instead. A `training.trl` key naming one
# of them is an error: tether's value would otherwise be silently replaced (or replace the user's).
TETHER_SET_FIELDS: Mapping[str, str] = {
    "learning_rate": "set training.learning_rate instead",
    "num_train_epochs": "set training.epochs instead",
    "per_device_train_batch_size": "set training.batch_size instead",
    "gradient_accumulation_steps": "set training.grad_accum instead",
    "max_length": "set training.max_length instead",
    "beta": "set training.beta instead",
    "loss_type": "set training.loss_type instead",
    "loss_weights": "set training.loss_weights instead",
    "ld_alpha": "set training.ld_alpha instead",
    "seed": "set the top-level seed instead (round r trains with seed + r)",
    "use_cpu": "set model.device instead",
    "output_dir": "tether trains in a temporary folder and keeps only the adapter",
    "report_to": "tether logs the training metrics to its own tracker (tracking:)",
    "save_strategy": "tether saves the final adapter itself, atomically",
    "logging_strategy": "tether reads every step's log for its metrics",
    "logging_steps": "tether reads every step's log for its metrics",
    "disable_tqdm": "tether draws its own progress bar (on stderr, per optimizer step)",
    "push_to_hub": "tether never uploads an adapter",
    "dataloader_num_workers": "worker processes would fork the agent's process",
    "model_init_kwargs": "tether loads the base model itself (model.dtype, training.quantization)",
    "trust_remote_code": "model files are data, never code",
    "sync_ref_model": "the reference is the base model (the adapter disabled), or the job's reference adapter "
                      "(a pair strategy's `reference: parent`, tools/pairs)",
    "ddp_timeout": "set training.distributed.timeout_s instead",
    "ddp_backend": "accelerate picks it (gloo on the CPU, nccl on GPUs)",
    "fsdp": "set training.distributed.strategy: fsdp (and its config_file) instead",
    "fsdp_config": "set training.distributed.config_file (an accelerate config) instead",
    "deepspeed": "set training.distributed.strategy: deepspeed and its config_file instead",
}


def nearest(name: str, choices: Any) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def loss_type_problems(loss_type: Any) -> list[str]:
    """Each name in ``loss_type`` (one name or a list) that TRL does not have, with the nearest."""
    names = [loss_type] if isinstance(loss_type, str) else loss_type
    if not isinstance(names, (list, tuple)) or not names:
        return [f"loss_type must be a loss name or a non-empty list of them, got {loss_type!r}"]
    return [
        f"unknown loss type {n!r}{nearest(n, LOSS_TYPES) if isinstance(n, str) else ''}; "
        f"TRL's are {', '.join(LOSS_TYPES)}"
        for n in names if n not in LOSS_TYPES
    ]


def _value_problems(where: str, value: Any) -> list[str]:
    if value is None or isinstance(value, (str, bool, int)):
        return []
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{where}: {value!r} is not a finite number"]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _value_problems(f"{where}[{i}]", v)]
    if isinstance(value, Mapping):
        return [p for k, v in value.items()
                for p in ([f"{where}: key {k!r} is not text"] if not isinstance(k, str)
                          else _value_problems(f"{where}.{k}", v))]
    return [f"{where}: {type(value).__name__} {value!r} is not a JSON value (text, number, bool, list, mapping)"]


def trl_problems(trl: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``training.trl`` without importing trl: keys tether sets itself, values that
    are not finite JSON values. (Unknown keys and DPOConfig's own checks: ``policies.train_check``.)"""
    problems: list[str] = []
    for key, value in trl.items():
        if key in TETHER_SET_FIELDS:
            problems.append(f"trl.{key} is set by tether: {TETHER_SET_FIELDS[key]}")
        else:
            problems.extend(_value_problems(f"trl.{key}", value))
    return problems


Strategy = Literal["ddp", "fsdp", "deepspeed"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


@dataclass(frozen=True)
class DistributedSpec:
    """How many processes train the job under ``accelerate launch`` and how they share it.
    ``config_file``: an accelerate config (YAML; ddp, fsdp) or a DeepSpeed JSON (deepspeed), absolute or None.
    ``timeout_s``: how long a collective (all-reduce, barrier) waits for the other processes before the job
    fails: a rank that hangs ends the job instead of holding the others forever."""

    num_processes: int
    strategy: Strategy
    config_file: str | None
    timeout_s: int

    def __post_init__(self) -> None:
        if self.num_processes < 1:
            raise ValueError(f"DistributedSpec.num_processes must be >= 1, got {self.num_processes}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"DistributedSpec.strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.timeout_s < 1:
            raise ValueError(f"DistributedSpec.timeout_s must be >= 1, got {self.timeout_s}")


ALL_LINEAR = "all-linear"  # PEFT's shorthand for every linear layer but the output head


@dataclass(frozen=True)
class LoraSpec:
    """LoRA hyper-parameters (``lora_alpha = alpha``; scaling is ``alpha / r``). ``quantization``:
    ``"4bit"`` trains the adapter on a 4-bit NF4 base (QLoRA), ``None`` on the base as saved."""

    r: int
    alpha: int
    dropout: float
    target_modules: tuple[str, ...]
    quantization: Quantization | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if self.r < 1:
            raise ValueError(f"LoraSpec.r must be >= 1, got {self.r}")
        if not self.target_modules:
            raise ValueError("LoraSpec.target_modules must not be empty")
        if self.quantization not in (None, *get_args(Quantization)):
            raise ValueError(f"LoraSpec.quantization must be null or '4bit', got {self.quantization!r}")

    def to_lora_config(self) -> Any:  # peft.LoraConfig
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            # PEFT expands the string "all-linear" (every linear layer but the output head); in a list it is a name
            target_modules=ALL_LINEAR if self.target_modules == (ALL_LINEAR,) else list(self.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )


@dataclass(frozen=True)
class DPOSpec:
    """DPO hyper-parameters (TRL ``DPOConfig``). ``batch_size`` is per device, in pairs.
    ``loss_type``: one or more TRL losses, summed with ``loss_weights`` (``None``: 1.0 each).
    ``trl``: further ``DPOConfig`` keyword arguments (never a field tether sets itself)."""

    beta: float
    loss_type: tuple[LossType, ...]
    loss_weights: tuple[float, ...] | None
    learning_rate: float
    epochs: int
    batch_size: int
    grad_accum: int
    max_length: int
    seed: int
    ld_alpha: float | None
    trl: Mapping[str, Any]

    def __post_init__(self) -> None:
        loss_type = (self.loss_type,) if isinstance(self.loss_type, str) else tuple(self.loss_type)
        object.__setattr__(self, "loss_type", loss_type)
        if self.loss_weights is not None:
            object.__setattr__(self, "loss_weights", tuple(self.loss_weights))
        object.__setattr__(self, "trl", dict(self.trl))
        problems = loss_type_problems(list(loss_type)) + trl_problems(self.trl)
        if self.loss_weights is not None and len(self.loss_weights) != len(loss_type):
            problems.append(f"loss_weights has {len(self.loss_weights)} weights for {len(loss_type)} loss types")
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            problems.append("epochs, batch_size and grad_accum must be >= 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate >= 0):
            problems.append(f"learning_rate must be finite and >= 0, got {self.learning_rate}")
        if self.ld_alpha is not None and not 0.0 <= self.ld_alpha <= 1.0:
            problems.append(f"ld_alpha must be in [0, 1], got {self.ld_alpha}")
        if problems:
            raise ValueError("DPOSpec: " + "; ".join(problems))

    @property
    def uses_reference(self) -> bool:
        """Whether any of the losses reads the reference log-probs."""
        return any(loss not in REFERENCE_FREE_LOSSES for loss in self.loss_type)


def with_chosen_nll(spec: DPOSpec, weight: float) -> DPOSpec:
    """``spec`` with TRL's ``sft`` loss (mean token NLL of the chosen responses) added with ``weight``:
    DPO + NLL, as in Iterative RPO (tools/pairs/rpo.py). Unchanged for a weight of 0 or a loss_type
    that already lists ``sft`` (the configured weight stands)."""
    if weight <= 0.0 or "sft" in spec.loss_type:
        return spec
    weights = spec.loss_weights or (1.0,) * len(spec.loss_type)
    return replace(spec, loss_type=(*spec.loss_type, "sft"), loss_weights=(*weights, float(weight)))


@dataclass(frozen=True)
class TrainJob:
    """A self-contained, JSON-serialisable training job.

    ``pairs_path``: JSONL of ``{"prompt": str, "chosen": str, "rejected": str}`` (prompt = the user
    message, chosen/rejected = assistant replies). ``output_dir`` must not exist yet (or be empty).
    ``init_adapter`` + ``init_adapter_sha256``: warm start from that adapter (both or neither).
    ``ref_adapter`` + ``ref_adapter_sha256``: the DPO reference is the base model *with* that adapter
    (iterative DPO: the parent checkpoint), loaded as a second, frozen adapter and verified like
    ``init_adapter`` (both or neither); without it the reference is the base model, the adapter disabled.
    ``device``: ``"cpu"`` forces the CPU; anything else (``"auto"``, ``"cuda"``) lets the Trainer /
    accelerate place the model (one GPU per process under ``accelerate launch``).
    ``distributed``: the job runs on that many processes under ``accelerate launch`` (None: one process).
    """

    base_model: str
    pairs_path: str
    output_dir: str
    lora: LoraSpec
    dpo: DPOSpec
    device: str
    init_adapter: str | None = None
    init_adapter_sha256: str | None = None
    ref_adapter: str | None = None
    ref_adapter_sha256: str | None = None
    distributed: DistributedSpec | None = None

    def __post_init__(self) -> None:
        if (self.init_adapter is None) != (self.init_adapter_sha256 is None):
            raise ValueError("TrainJob.init_adapter and init_adapter_sha256 must be given together")
        if (self.ref_adapter is None) != (self.ref_adapter_sha256 is None):
            raise ValueError("TrainJob.ref_adapter and ref_adapter_sha256 must be given together")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lora"]["target_modules"] = list(self.lora.target_modules)
        data["dpo"]["loss_type"] = list(self.dpo.loss_type)
        if self.dpo.loss_weights is not None:
            data["dpo"]["loss_weights"] = list(self.dpo.loss_weights)
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
            ref_adapter=absolute(self.ref_adapter),
            distributed=None if self.distributed is None else replace(
                self.distributed, config_file=absolute(self.distributed.config_file)),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainJob:
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainJob fields: {sorted(unknown)}")
        missing = {"lora", "dpo"} - set(data)
        if missing:
            raise ValueError(f"TrainJob fields missing: {sorted(missing)}")
        lora = dict(data.pop("lora"))
        dpo = dict(data.pop("dpo"))
        dist = data.pop("distributed", None)
        return cls(lora=LoraSpec(**lora), dpo=DPOSpec(**dpo),
                   distributed=None if dist is None else DistributedSpec(**dist), **data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

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
    history: tuple[dict[str, float], ...] = ()  # every per-step log of the trainer (loss, rewards, lr, ...)

    def to_dict(self) -> dict[str, Any]:
        return {
            "adapter_dir": str(self.adapter_dir),
            "sha256": self.sha256,
            "steps": self.steps,
            "metrics": dict(self.metrics),
            "seconds": self.seconds,
            "history": [dict(h) for h in self.history],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        return cls(
            adapter_dir=Path(data["adapter_dir"]),
            sha256=str(data["sha256"]),
            steps=int(data["steps"]),
            metrics={str(k): float(v) for k, v in data["metrics"].items()},
            seconds=float(data["seconds"]),
            history=tuple({str(k): float(v) for k, v in h.items()} for h in data.get("history", ())),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainResult:
        return cls.from_dict(json.loads(text))


class TrainJobError(TetherError, RuntimeError):
    """A launched training job failed (non-zero exit or no result)."""


def result_path_for(spec_path: Path) -> Path:
    """Default result path: ``train_job-x.json`` -> ``train_job-x.result.json``."""
    spec_path = Path(spec_path)
    return spec_path.with_name(f"{spec_path.stem}.result.json")
