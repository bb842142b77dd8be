"""From a DPO spec to TRL's ``DPOConfig`` keyword arguments, and the checks a run's settings must pass
before any training starts (``tether validate``, the run's pre-flight, and every training job).

Importing trl costs seconds, so these checks live here and not in the config model, which fast
commands load.

tether's own choices where they differ from TRL's defaults, each replaced by the same key in
``training.trl``:

* ``activation_checkpointing`` (TRL: on) is off: it pays only when activations do not fit, and
  slows small models down. (``gradient_checkpointing``, its deprecated alias, replaces it as well.)
* ``bf16`` (TRL: on) is on only on a GPU that supports it; ``fp16`` is off.
* ``precompute_ref_log_probs`` (TRL: off) is on when a loss reads the reference and training makes
  more than one pass: the reference (the base model, adapter disabled, or a job's ``ref_adapter`` as
  TRL's frozen "ref" adapter, which exists before the pass runs) is fixed, so its log-probs are
  computed once, before training, instead of a second forward pass in every step. The loss is the
  same (tests/test_training_knobs.py); each step is ~30% faster (benchmarks/bench_train_step.py).
  With one pass the same forwards merely move, and TRL also hashes the model's weights for its
  cache (~180M parameters/s on a CPU core), so it stays off; so it does under FSDP, where TRL runs
  the pass before the adapter-wrapped policy is sharded onto its GPUs.
"""

from __future__ import annotations

import dataclasses
import tempfile
import typing
import warnings
from typing import Any

from policies.train_spec import DPOSpec, LoraSpec, nearest

CHECKPOINTING_FIELDS = ("activation_checkpointing", "gradient_checkpointing")
PRECISION_FIELDS = ("bf16", "fp16")


def precompute_pays_off(dpo: DPOSpec, fsdp: bool = False) -> bool:
    """tether's default for ``precompute_ref_log_probs`` (see the module docstring)."""
    return dpo.uses_reference and dpo.epochs > 1 and not fsdp


def dpo_config_kwargs(
    dpo: DPOSpec, output_dir: str, *, on_cpu: bool, bf16_supported: bool, fsdp: bool = False,
    ddp_timeout: int | None = None,
) -> dict[str, Any]:
    """Every ``DPOConfig`` keyword argument of a job: tether's fixed fields, its defaults, ``dpo.trl``.
    ``ddp_timeout``: seconds a collective waits on the other processes (None: transformers' 30 minutes)."""
    from trl import DPOConfig

    names = {f.name for f in dataclasses.fields(DPOConfig)}
    trl = dict(dpo.trl)
    defaults: dict[str, Any] = {}
    if not any(key in trl for key in PRECISION_FIELDS):
        defaults.update(bf16=(not on_cpu) and bf16_supported, fp16=False)
    if not any(key in trl for key in CHECKPOINTING_FIELDS):
        # transformers 5 renamed gradient_checkpointing -> activation_checkpointing (the old name warns).
        defaults[next(n for n in CHECKPOINTING_FIELDS if n in names)] = False
    if "precompute_ref_log_probs" not in trl:
        defaults["precompute_ref_log_probs"] = precompute_pays_off(dpo, fsdp)
    fixed = {
        "output_dir": output_dir,
        "report_to": "none",
        "save_strategy": "no",
        "logging_strategy": "steps",
        "logging_steps": 1,
        "disable_tqdm": True,  # tether draws its own bar (policies/progress.py), on stderr
        "use_cpu": on_cpu,
        "seed": dpo.seed,
        "learning_rate": dpo.learning_rate,
        "num_train_epochs": dpo.epochs,
        "per_device_train_batch_size": dpo.batch_size,
        "gradient_accumulation_steps": dpo.grad_accum,
        "max_length": dpo.max_length,
        "beta": dpo.beta,
        "loss_type": list(dpo.loss_type),
        "loss_weights": None if dpo.loss_weights is None else list(dpo.loss_weights),
        "ld_alpha": dpo.ld_alpha,
        "dataloader_num_workers": 0,
        "push_to_hub": False,
        **({} if ddp_timeout is None else {"ddp_timeout": ddp_timeout}),
    }
    # DPOSpec refuses trl keys tether sets (TETHER_SET_FIELDS); fixed fields win regardless.
    return {**defaults, **trl, **fixed}


def quantization_problems(lora: LoraSpec, device: str) -> list[str]:
    """QLoRA needs a CUDA GPU and bitsandbytes; say which is missing."""
    if lora.quantization is None:
        return []
    import torch

    missing = []
    if device == "cpu":
        missing.append("model.device is cpu")
    elif not torch.cuda.is_available():
        missing.append("no CUDA GPU is available")
    try:
        import bitsandbytes  # noqa: F401
    except Exception as err:  # ImportError, or a bitsandbytes build that fails to load its library
        missing.append(f"bitsandbytes does not import ({type(err).__name__}: {err}; pip install bitsandbytes)")
    if not missing:
        return []
    return [f"training.quantization {lora.quantization!r} (QLoRA) needs a CUDA GPU and bitsandbytes: "
            f"{'; '.join(missing)}. Set training.quantization to null to train on the unquantized base."]


def _field_type_problems(trl: dict[str, Any]) -> list[str]:
    """Each ``trl`` value checked against the type DPOConfig declares for its field (strict: a bool is
    not a number, text is not a number)."""
    from pydantic import TypeAdapter, ValidationError
    from trl import DPOConfig

    hints = typing.get_type_hints(DPOConfig)
    problems = []
    for key, value in trl.items():
        try:
            TypeAdapter(hints[key]).validate_python(value, strict=True)
        except ValidationError as err:
            first = err.errors()[0]["msg"]
            problems.append(f"training.trl.{key}: {first} (DPOConfig declares {hints[key]}), got {value!r}")
    return problems


def spec_problems(lora: LoraSpec, dpo: DPOSpec, device: str = "auto") -> list[str]:
    """QLoRA's prerequisites, and each ``training.trl`` key a ``DPOConfig`` field (else the nearest is
    named) holding a value of the type that field declares. No side effects: every training job runs
    these first, also under ``accelerate launch``."""
    from trl import DPOConfig

    problems = quantization_problems(lora, device)
    names = {f.name for f in dataclasses.fields(DPOConfig) if f.init}
    unknown = [key for key in dpo.trl if key not in names]
    problems += [f"training.trl.{key} is not a DPOConfig field{nearest(key, names)}" for key in unknown]
    if not unknown:
        problems += _field_type_problems(dict(dpo.trl))
    return problems


def training_problems(lora: LoraSpec, dpo: DPOSpec, device: str = "auto") -> list[str]:
    """Every problem with a training setup, one line each; empty when TRL accepts it.

    :func:`spec_problems`, then, if those pass, builds the ``DPOConfig`` tether would build, so its own
    validation (scheduler names, warmup, loss weights, ...) runs too. About 5 s the first time in a
    process (importing trl). Like any ``TrainingArguments``, that ``DPOConfig`` resets accelerate's
    process-wide state: call this before training, never inside a running job. Checks made by
    ``DPOTrainer`` itself (e.g. ``robust`` needs ``label_smoothing`` in [0, 0.5)) run when a job builds it."""
    from trl import DPOConfig

    problems = spec_problems(lora, dpo, device)
    if any(p.startswith("training.trl.") for p in problems):
        return problems
    with tempfile.TemporaryDirectory(prefix="tether-check-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            DPOConfig(**dpo_config_kwargs(dpo, tmp, on_cpu=True, bf16_supported=False))
        except (ValueError, TypeError, KeyError) as err:
            problems.append(f"training.trl: DPOConfig refuses these settings: {err}")
    return problems
