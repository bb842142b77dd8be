"""Run configuration: one flat pydantic model per component, every field documented.

`extra="forbid"` and strict types make typos and wrong types errors, and `load_config` reports every
error of a file at once (the `tether validate` contract).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

TINY_MODEL = "tiny"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModelConfig(_Section):
    base: str = Field(
        TINY_MODEL,
        description="Base causal LM: 'tiny' (the embedded tiny world, built into the workspace on "
        "first use), a local directory, or a Hugging Face hub id already in the local cache.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the policy runs.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype when loading the base model."
    )
    tiny_steps: int = Field(
        250, ge=1, description="Pre-training steps for the embedded tiny model (model.base='tiny')."
    )


class GenerationConfig(_Section):
    backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="transformers on CPU; vllm on GPU (extra `tether[gpu]`)."
    )
    samples_per_prompt: int = Field(6, ge=2, description="K responses sampled per prompt.")
    max_new_tokens: int = Field(48, ge=1, le=4096, description="Cap on generated tokens.")
    temperature: float = Field(1.0, gt=0.0, le=2.0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    batch_size: int = Field(64, ge=1, description="Prompts per generate call (transformers).")


class PromptsConfig(_Section):
    generator: str = Field("pool", description="Prompt generator plug-in (tools/prompts).")
    per_round: int = Field(64, ge=1, description="Training prompts drawn per round.")
    heldout: int = Field(48, ge=1, description="Held-out prompts used to evaluate candidates.")


class JudgeConfig(_Section):
    name: str = Field("rules", description="Judge plug-in (tools/judges).")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Keyword settings passed to the judge's constructor."
    )


class PairsConfig(_Section):
    min_margin: float = Field(
        0.1, gt=0.0, description="Smallest chosen-minus-rejected score kept as a preference pair."
    )


class TrainingConfig(_Section):
    launcher: Literal["inprocess", "subprocess", "accelerate"] = Field(
        "inprocess",
        description="How the TRL job runs: in this process, as `python -m policies.train_job`, or "
        "under `accelerate launch` (DDP/FSDP/DeepSpeed across devices).",
    )
    lora_r: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling alpha.")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        description="Module names LoRA adapts.",
    )
    beta: float = Field(0.1, gt=0.0, description="DPO beta: strength of the KL anchor to the base.")
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust", "sigmoid_norm", "apo_zero"] = Field(
        "sigmoid", description="TRL DPO loss; sigmoid_norm and ld_alpha counter length exploitation."
    )
    ld_alpha: float | None = Field(
        None, ge=0.0, le=1.0, description="LD-DPO weight on tokens past the shared length (None: off)."
    )
    learning_rate: float = Field(1e-3, gt=0.0, description="AdamW learning rate.")
    epochs: int = Field(3, ge=1, description="Passes over the round's pairs.")
    batch_size: int = Field(8, ge=1, description="Pairs per device step.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    max_length: int = Field(192, ge=16, description="Prompt + completion tokens kept per example.")


class EvaluationConfig(_Section):
    max_new_tokens: int = Field(48, ge=1, description="Greedy decode cap on held-out prompts.")


class ControllerConfig(_Section):
    rounds: int = Field(3, ge=1, description="Round budget; `tether run --rounds` overrides it.")
    min_pairs: int = Field(1, ge=1, description="Fewer pairs than this in a round stops the run.")
    max_invalid_share: float = Field(
        0.2, ge=0.0, le=1.0,
        description="A round whose share of invalid judgments is above this is not trained on.",
    )


class TrackingConfig(_Section):
    mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="wandb mode; runs are written under the workspace's wandb/."
    )
    project: str = Field("tether", description="wandb project name.")


class TetherConfig(_Section):
    seed: int = Field(0, description="Seed for prompt draws, sampling and training.")
    model: ModelConfig = ModelConfig()
    generation: GenerationConfig = GenerationConfig()
    prompts: PromptsConfig = PromptsConfig()
    judge: JudgeConfig = JudgeConfig()
    pairs: PairsConfig = PairsConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    controller: ControllerConfig = ControllerConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _cross_field(self) -> TetherConfig:
        if self.generation.backend == "vllm" and self.model.device == "cpu":
            raise ValueError("generation.backend 'vllm' needs a GPU: set model.device to auto or cuda")
        return self

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class ConfigError(ValueError):
    """Every problem found in a config file, one line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_config(data: Any, source: str) -> TetherConfig:
    """Validate a decoded YAML document; raise ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must hold a mapping of sections (model:, judge:, ...)"])
    try:
        return TetherConfig.model_validate(data)
    except ValidationError as err:
        problems = [f"{_location(e['loc'])}: {e['msg']}" for e in err.errors()]
        raise ConfigError(source, problems) from None


def load_config(path: Path) -> TetherConfig:
    if not path.is_file():
        raise ConfigError(str(path), ["file not found (run `tether init` to write a default one)"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(str(path), [f"not valid YAML: {err}"]) from None
    return parse_config(data, str(path))


def default_config_yaml() -> str:
    return (Path(__file__).parent / "defaults" / "config.yaml").read_text()
