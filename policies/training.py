"""LoRA preference training (DPO) with TRL + PEFT, driven by a JSON-serialisable job spec.

The same :class:`TrainJob` runs in-process (:func:`run_train_job`), as a subprocess
(``python -m policies.train_job SPEC.json``) or under ``accelerate launch -m policies.train_job
SPEC.json`` (see :func:`policies.train_launch.launch_train_job`).

Semantics:

* The reference policy is the **base model** (the adapter disabled), never a second model copy: the
  plain base model goes to ``DPOTrainer`` with ``peft_config`` and ``ref_model=None``.
* With ``init_adapter`` (continuing from the active checkpoint) its SHA-256 is verified and, after the
  trainer has been built, its weights are loaded into the trainer's ``"default"`` adapter, so training
  warm-starts from it while the reference stays the base model. (A ``PeftModel`` is deliberately not
  passed to the trainer here: TRL would then add a ``"ref"`` adapter copy and use *that* as reference.)
* With ``ref_adapter`` (iterative DPO: the reference moves to the parent checkpoint) that is exactly
  what is wanted: its SHA-256 is verified, the model is wrapped here with the job's LoRA (seeded as TRL
  seeds it) and the reference's weights are put in ``"default"``; ``DPOTrainer`` (TRL >= 1.x: "re-training
  an existing adapter") then adds a frozen ``"ref"`` adapter copied from ``"default"`` and computes every
  reference log-prob through it (precomputed ones included, as they are taken while the trainer is
  built). After that ``"default"`` is reset to the fresh LoRA or the ``init_adapter`` weights, and the
  ``"ref"`` weights are checked to equal the reference adapter's. (TRL's ``ref_adapter_name`` /
  ``model_adapter_name`` of older versions are gone from ``DPOConfig``; the ``"ref"`` adapter replaced them.)
* Only the adapter is saved (``adapter_model.safetensors`` + ``adapter_config.json``), atomically, into
  a fresh ``output_dir``; the base model is never written.
* The base model is read from disk once per job. A trainer is built per job: TRL binds a trainer to
  its dataset (tokenised, reference log-probs precomputed) and its adapter at construction, so a
  round's new pairs and the parent checkpoint's weights need a new one.
* With ``LoraSpec.quantization="4bit"`` (QLoRA) the base loads in 4-bit NF4 through bitsandbytes
  and is prepared with PEFT's ``prepare_model_for_kbit_training``.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load as load_safetensors

from policies.adapter_save import save_adapter
from policies.adapters import (
    adapter_sha256,
    read_verified_adapter,
)
from policies.distributed import join_processes, shard_on_cpu, strategy_problem
from policies.loading import (
    apply_adapter_weights,
    known_deprecations_silenced,
    load_base_model,
    load_tokenizer,
    lora_config_from_dict,
    progress_bars,
    resolve_device,
)
from policies.progress import Advance
from policies.progress import bar as progress_bar
from policies.train_check import dpo_config_kwargs, spec_problems
from policies.train_metrics import final_metrics, step_history
from policies.train_spec import (
    ALL_LINEAR,
    DPOSpec,
    LoraSpec,
    TrainJob,
    TrainJobError,
    TrainResult,
)

if TYPE_CHECKING:
    from peft import LoraConfig

__all__ = [
    "DPOSpec",
    "LoraSpec",
    "TrainJob",
    "TrainJobError",
    "TrainResult",
    "read_pairs",
    "run_train_job",
]


# -- data ----------------------------------------------------------------------------------------


def read_pairs(path: str | Path) -> list[dict[str, str]]:
    """Read and validate the preference pairs JSONL; an empty file is a ``ValueError``."""
    path = Path(path)
    pairs: list[dict[str, str]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(
                    f"{path}:{lineno}: expected an object with prompt/chosen/rejected"
                )
            for key in ("prompt", "chosen", "rejected"):
                if not isinstance(row.get(key), str):
                    raise ValueError(f"{path}:{lineno}: field {key!r} must be a string")
            pairs.append({k: row[k] for k in ("prompt", "chosen", "rejected")})
    if not pairs:
        raise ValueError(f"no preference pairs in {path}: cannot train on an empty pairs file")
    return pairs


def _to_dataset(pairs: list[dict[str, str]], conversational: bool) -> Any:
    from datasets import Dataset

    if conversational:
        rows = [
            {
                "prompt": [{"role": "user", "content": p["prompt"]}],
                "chosen": [{"role": "assistant", "content": p["chosen"]}],
                "rejected": [{"role": "assistant", "content": p["rejected"]}],
            }
            for p in pairs
        ]
    else:  # no chat template: plain text, as the generation backends do
        rows = [dict(p) for p in pairs]
    return Dataset.from_list(rows)


# -- training ------------------------------------------------------------------------------------


def _check_init_adapter_config(init_adapter: str, config: LoraConfig, lora: LoraSpec, what: str = "init") -> None:
    targets = config.target_modules
    targets = sorted(targets) if not isinstance(targets, str) else [targets]
    # PEFT saves all-linear as the layer names it expanded to; apply_adapter_weights then checks every key
    wanted = targets if lora.target_modules == (ALL_LINEAR,) else sorted(lora.target_modules)
    if config.r != lora.r or targets != wanted:
        raise ValueError(
            f"{what} adapter {init_adapter} (r={config.r}, target_modules={targets}) does not match the "
            f"job's LoRA spec (r={lora.r}, target_modules={sorted(lora.target_modules)})"
        )


def _verified_state(path: str, sha256: str | None, lora: LoraSpec, what: str) -> dict[str, torch.Tensor]:
    """The weights of an adapter the job names, after its SHA-256 and its LoRA shape are checked."""
    if sha256 is None:  # TrainJob checks this too; an integrity check never asserts
        raise ValueError(f"{what}_adapter given without {what}_adapter_sha256")
    verified = read_verified_adapter(Path(path), sha256)
    _check_init_adapter_config(path, lora_config_from_dict(verified.config), lora, what)
    return load_safetensors(verified.weights)


def _dpo_trainer_class() -> type:
    """TRL's ``DPOTrainer`` (imported lazily; a seam for tests)."""
    from trl import DPOTrainer

    return DPOTrainer


def _dpo_config(job: TrainJob, work_dir: str) -> Any:
    from trl import DPOConfig

    on_cpu = resolve_device(job.device).type == "cpu"
    bf16_supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    timeout = None if job.distributed is None else job.distributed.timeout_s
    several = timeout is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if several:
        join_processes(on_cpu, timeout)
    # The job's spec says whether it shards (accelerate's state says FSDP only once the trainer has built its
    # Accelerator, after this config); strategy_problem then checks that it does.
    fsdp = job.distributed is not None and job.distributed.strategy == "fsdp"
    config = DPOConfig(**dpo_config_kwargs(job.dpo, work_dir, on_cpu=on_cpu, bf16_supported=bf16_supported,
                                           fsdp=fsdp, ddp_timeout=timeout))
    if fsdp and on_cpu and several:  # after the config, whose TrainingArguments resets accelerate's state
        shard_on_cpu()
    return config



def _load_model(job: TrainJob, config: Any) -> Any:
    """The base model, read once: as saved (on the CPU; the Trainer moves it to its accelerate-assigned
    device), or for QLoRA in 4-bit NF4 on this process's GPU, prepared for k-bit training."""
    if job.lora.quantization is None:
        return load_base_model(job.base_model, torch.device("cpu"))
    from accelerate import PartialState
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    compute_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype
    )
    # The same guarantees as policies.loading.load_base_model: no code from the model folder, no pickles.
    model = AutoModelForCausalLM.from_pretrained(
        job.base_model,
        quantization_config=quantization,
        dtype=compute_dtype,
        device_map={"": PartialState().local_process_index},
        trust_remote_code=False,
        use_safetensors=True,
    )
    return prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=bool(config.gradient_checkpointing)  # mirrors activation_checkpointing
    )


@contextmanager
def _tqdm_disabled() -> Iterator[None]:
    """TRL's reference log-prob pass shows a tqdm bar (on stdout's terminal, in another style) unless
    $TQDM_DISABLE is set (it does not read ``disable_tqdm``): set while the trainer is built, then restored."""
    before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = before


def _with_reference(job: TrainJob, config: Any, model: Any, ref_state: dict[str, torch.Tensor]) -> tuple[Any, Any]:
    """(the model wrapped with the job's LoRA holding the reference weights, the fresh LoRA's weights): TRL
    copies "default" into its frozen "ref" adapter when it is handed a PeftModel."""
    from peft import get_peft_model, get_peft_model_state_dict
    from transformers import set_seed

    set_seed(config.seed)  # as DPOTrainer seeds before it wraps a model: the same fresh adapter
    with known_deprecations_silenced():
        peft_model = get_peft_model(model, job.lora.to_lora_config())
    fresh = {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model, adapter_name="default").items()}
    apply_adapter_weights(peft_model, ref_state, "default")
    return peft_model, fresh


def _make_trainer(job: TrainJob, config: Any, model: Any, tokenizer: Any, dataset: Any,
                  with_reference: bool = False) -> Any:
    """A DPOTrainer on the plain base model with the job's LoRA config, or (with_reference) on a model
    already wrapped by `_with_reference`, from which TRL makes its "ref" adapter."""
    from transformers import PrinterCallback

    with _tqdm_disabled():
        trainer = _dpo_trainer_class()(
            model=model,
            ref_model=None,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=None if with_reference else job.lora.to_lora_config(),
        )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout; the bar shows the loss
    return trainer


def _step_bar(advance: Advance) -> Any:
    """A TrainerCallback that feeds the training bar: its length when training starts, one step per
    optimizer step, the loss of each logged step."""
    from transformers import TrainerCallback

    class StepBar(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            advance(0, total=state.max_steps)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            advance()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kwargs: Any) -> None:
            if logs and "loss" in logs:
                advance(0, loss=logs["loss"])

    return StepBar()


def _check_reference(peft_model: Any, ref_state: dict[str, torch.Tensor], path: str | None) -> None:
    """The trainer's "ref" adapter holds exactly the reference adapter's weights, and is frozen."""
    from peft import get_peft_model_state_dict

    held = get_peft_model_state_dict(peft_model, adapter_name="ref")
    if held.keys() != ref_state.keys() or any(
            not torch.equal(held[k].detach().cpu().to(ref_state[k].dtype), ref_state[k]) for k in ref_state):
        raise RuntimeError(f"DPOTrainer's reference adapter does not hold the weights of {path}")
    for name, param in peft_model.named_parameters():
        if ".ref." in name:
            param.requires_grad_(False)


def run_train_job(job: TrainJob, progress: bool = False) -> TrainResult:
    """Run a DPO LoRA job in this process and return the saved adapter and metrics."""
    started = time.perf_counter()
    try:
        steps, metrics, history = _train(job, progress)
    finally:
        # The trainer, the model and the optimizer hold one another in reference cycles, so only a
        # collection frees them, and with them the memory the next job's model needs. Collected here,
        # once _train's frame is gone, they are all unreachable (inside it, its locals still held the
        # model); measured in benchmarks/bench_train_step.py.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    output_dir = Path(job.output_dir)
    return TrainResult(
        adapter_dir=output_dir,
        sha256=adapter_sha256(output_dir),
        steps=steps,
        metrics=metrics,
        seconds=time.perf_counter() - started,
        history=history,
    )


def _train(job: TrainJob, progress: bool) -> tuple[int, dict[str, float], tuple[dict[str, float], ...]]:
    from peft import PeftModel

    problems = spec_problems(job.lora, job.dpo, job.device)  # the DPOConfig built below checks the rest
    if problems:
        raise ValueError("training job refused: " + "; ".join(problems))
    pairs = read_pairs(job.pairs_path)
    output_dir = Path(job.output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"output_dir {output_dir} already exists and is not empty")
    init_state = None if job.init_adapter is None else _verified_state(job.init_adapter, job.init_adapter_sha256,
                                                                          job.lora, "init")
    ref_state = None if job.ref_adapter is None else _verified_state(job.ref_adapter, job.ref_adapter_sha256,
                                                                       job.lora, "ref")

    with progress_bars(progress), known_deprecations_silenced():
        tokenizer = load_tokenizer(job.base_model)
        conversational = bool(getattr(tokenizer, "chat_template", None))
        dataset = _to_dataset(pairs, conversational)
        work_dir = tempfile.mkdtemp(prefix="tether-dpo-")
        try:
            config = _dpo_config(job, work_dir)
            model, fresh = _load_model(job, config), None
            if ref_state is not None:
                model, fresh = _with_reference(job, config, model, ref_state)
            trainer = _make_trainer(job, config, model, tokenizer, dataset, ref_state is not None)
            # The reference is the base model through the disabled adapter, or through the frozen "ref"
            # adapter holding the job's reference adapter: never a second model copy.
            peft_model = trainer.accelerator.unwrap_model(trainer.model)
            if trainer.ref_model is not None:
                raise RuntimeError("DPOTrainer built a separate reference model; the reference must be the base")
            adapters = ["default"] if ref_state is None else ["default", "ref"]
            if not isinstance(peft_model, PeftModel) or list(peft_model.peft_config) != adapters:
                raise RuntimeError(f"DPOTrainer did not wrap the model with the LoRA adapters {adapters}: "
                                   f"{list(getattr(peft_model, 'peft_config', {}))}")
            if job.distributed is not None:
                problem = strategy_problem(job.distributed, trainer)
                if problem is not None:  # before any step: never a job trained some other way than asked
                    raise RuntimeError(f"training job refused: {problem}")
            if ref_state is not None:
                _check_reference(peft_model, ref_state, job.ref_adapter)
            # Precomputed reference log-probs (built with the trainer) are unaffected: they come from the
            # base with the adapter disabled, or from "ref", whatever "default" holds.
            if init_state is not None:
                apply_adapter_weights(peft_model, init_state, "default")
            elif fresh is not None:
                apply_adapter_weights(peft_model, fresh, "default")
            if len(trainer.train_dataset) == 0:
                raise ValueError(
                    f"every pair in {job.pairs_path} has a prompt of >= max_length="
                    f"{job.dpo.max_length} tokens; nothing to train on"
                )
            with progress_bar("training", None, progress, unit="steps", fields={"loss": float("nan")}) as advance:
                trainer.add_callback(_step_bar(advance))
                output = trainer.train()
            save_adapter(trainer, output_dir)
            log = trainer.state.log_history
            return int(trainer.state.global_step), final_metrics(log, output.training_loss), step_history(log)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
