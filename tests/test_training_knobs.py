"""Training knobs for real models: `training.trl` checked against TRL's DPOConfig, every TRL loss,
QLoRA refused where it cannot run, the config as the one source of training defaults, reference
log-probs precomputed where that leaves the loss unchanged, and a job's memory freed when it ends."""

from __future__ import annotations

import ast
import dataclasses
import re
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_training import FAST_DPO, LORA, make_job, make_random_adapter

from agent.config import ConfigError, TetherConfig, TrainingConfig, parse_config
from policies import training
from policies.train_check import dpo_config_kwargs, precompute_pays_off, training_problems
from policies.train_spec import LOSS_TYPES, TETHER_SET_FIELDS, DPOSpec, LoraSpec, TrainJob

POLICIES = Path(training.__file__).parent


def config_problems(training_section: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config({"training": training_section}, "t.yaml")
    return err.value.problems


# -- the config ----------------------------------------------------------------------------------


def test_a_trl_key_tether_sets_names_the_setting_to_use() -> None:
    (problem,) = config_problems({"trl": {"learning_rate": 0.1, "num_train_epochs": 2, "warmup_steps": 5}})
    assert "trl.learning_rate is set by tether: set training.learning_rate instead" in problem
    assert "trl.num_train_epochs is set by tether: set training.epochs instead" in problem
    assert "warmup_steps" not in problem


def test_every_field_tether_sets_is_refused_in_trl() -> None:
    from trl import DPOConfig

    names = {f.name for f in dataclasses.fields(DPOConfig)}
    assert set(TETHER_SET_FIELDS) <= names
    fixed = dpo_config_kwargs(FAST_DPO, "out", on_cpu=True, bf16_supported=False)
    tether_defaults = {"bf16", "fp16", "activation_checkpointing", "precompute_ref_log_probs"}
    assert set(fixed) - tether_defaults <= set(TETHER_SET_FIELDS)
    for key in TETHER_SET_FIELDS:
        with pytest.raises(ValueError, match=f"trl.{key} is set by tether"):
            replace(FAST_DPO, trl={key: 1})


def test_trl_values_must_be_finite() -> None:
    (problem,) = config_problems({"trl": {"weight_decay": float("inf"), "lr_scheduler_kwargs": {"x": [float("nan")]}}})
    assert "trl.weight_decay: inf is not a finite number" in problem
    assert "trl.lr_scheduler_kwargs.x[0]: nan is not a finite number" in problem


def test_every_trl_loss_type_is_accepted_and_a_typo_names_the_nearest() -> None:
    from trl import DPOConfig

    help_text = next(f for f in dataclasses.fields(DPOConfig) if f.name == "loss_type").metadata["help"]
    assert set(LOSS_TYPES) == set(re.findall(r"`'(\w+)'`", help_text))
    for loss in LOSS_TYPES:
        assert TrainingConfig(loss_type=loss).dpo_spec(seed=0).loss_type == (loss,)
    combined = TrainingConfig.model_validate({"loss_type": ["sigmoid", "sft"], "loss_weights": [0.8, 0.2]})
    assert combined.dpo_spec(seed=0).loss_weights == (0.8, 0.2)

    (problem,) = config_problems({"loss_type": "sigmod"})
    assert "unknown loss type 'sigmod' (did you mean 'sigmoid'?)" in problem
    (problem,) = config_problems({"loss_type": ["sigmoid", "apo_zeroo"]})
    assert "unknown loss type 'apo_zeroo' (did you mean 'apo_zero'?)" in problem
    (problem,) = config_problems({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0]})
    assert "loss_weights has 1 weights for 2 loss types" in problem


def test_the_config_is_the_one_source_of_training_defaults() -> None:
    for spec in (LoraSpec, DPOSpec):
        defaulted = [f.name for f in dataclasses.fields(spec)
                     if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
        assert defaulted == [], f"{spec.__name__} repeats defaults: {defaulted}"
    t = TetherConfig().training
    dpo, lora = t.dpo_spec(seed=7), t.lora_spec()
    assert (dpo.learning_rate, dpo.epochs, dpo.batch_size, dpo.max_length, dpo.beta, dpo.seed) == (
        t.learning_rate, t.epochs, t.batch_size, t.max_length, t.beta, 7)
    assert (lora.r, lora.alpha, lora.target_modules, lora.quantization) == (
        t.lora_r, t.lora_alpha, tuple(t.target_modules), t.quantization)


def test_the_job_spec_carries_trl_and_quantization_through_json() -> None:
    t = TrainingConfig(quantization="4bit", trl={"lr_scheduler_type": "cosine", "warmup_steps": 3})
    job = TrainJob(base_model="m", pairs_path="p", output_dir="o", lora=t.lora_spec(), dpo=t.dpo_spec(seed=1),
                   device="cuda")
    again = TrainJob.from_json(job.to_json())
    assert again == job
    assert again.lora.quantization == "4bit" and again.dpo.trl == {"lr_scheduler_type": "cosine", "warmup_steps": 3}


def test_training_modules_import_no_cycle() -> None:
    """training -> train_job -> training was a cycle; now train_job and training import train_spec."""

    def imported(module: str) -> set[str]:
        tree = ast.parse((POLICIES / f"{module}.py").read_text())
        found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        return found | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}

    assert "policies.train_job" not in imported("training")
    assert not {"policies.training", "policies.train_job"} & (imported("train_spec") | imported("train_check"))


# -- training_problems: what `tether validate` and the pre-flight call --------------------------------


def dpo_with(trl: dict[str, Any]) -> DPOSpec:
    return TrainingConfig(trl=trl).dpo_spec(seed=0)


def test_real_model_knobs_pass_the_check() -> None:
    knobs = {"lr_scheduler_type": "cosine", "warmup_steps": 10, "weight_decay": 0.01, "max_grad_norm": 0.5,
             "activation_checkpointing": True, "bf16": True, "optim": "adamw_torch", "label_smoothing": 0.1,
             "truncation_mode": "keep_start", "lr_scheduler_kwargs": {"num_cycles": 1}}
    assert training_problems(LORA, dpo_with(knobs), "cpu") == []


def test_an_unknown_trl_key_names_the_nearest_dpo_config_field() -> None:
    problems = training_problems(LORA, dpo_with({"lr_sheduler_type": "cosine", "weight_decy": 0.1}), "cpu")
    assert problems == [
        "training.trl.lr_sheduler_type is not a DPOConfig field (did you mean 'lr_scheduler_type'?)",
        "training.trl.weight_decy is not a DPOConfig field (did you mean 'weight_decay'?)",
    ]


def test_trl_values_are_checked_by_dpo_config_itself() -> None:
    (problem,) = training_problems(LORA, dpo_with({"weight_decay": "lots"}), "cpu")
    assert problem.startswith("training.trl.weight_decay: Input should be a valid number")
    (problem,) = training_problems(LORA, dpo_with({"bf16": 1}), "cpu")
    assert problem.startswith("training.trl.bf16: Input should be a valid boolean")
    (problem,) = training_problems(LORA, dpo_with({"lr_scheduler_type": "cosinee"}), "cpu")
    assert "DPOConfig refuses these settings" in problem and "cosinee is not a valid SchedulerType" in problem
    (problem,) = training_problems(LORA, dpo_with({"warmup_steps": -1}), "cpu")
    assert "warmup_steps >= 0" in problem


def test_qlora_is_refused_without_a_gpu_and_bitsandbytes(tiny_random_model_dir: Path, tmp_path: Path) -> None:
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes"):
        pytest.skip("this machine can run QLoRA: the refusal is for machines that cannot")
    qlora = replace(LORA, quantization="4bit")
    (problem,) = training_problems(qlora, FAST_DPO, "auto")
    assert problem.startswith("training.quantization '4bit' (QLoRA) needs a CUDA GPU and bitsandbytes")
    assert "bitsandbytes does not import" in problem and "Set training.quantization to null" in problem
    assert "model.device is cpu" in training_problems(qlora, FAST_DPO, "cpu")[0]
    # A job is refused before anything is loaded or written.
    job = make_job(tiny_random_model_dir, tmp_path, "out", lora=qlora)
    with pytest.raises(ValueError, match="QLoRA"):
        training.run_train_job(job)
    assert not (tmp_path / "out").exists()


# -- training jobs -------------------------------------------------------------------------------


class Recorder:
    """DPOTrainer instances built while active, with the forward passes each ran while training."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.trainers: list[Any] = []
        self.forwards: list[int] = []
        real = training._dpo_trainer_class()
        recorder = self

        class RecordingTrainer(real):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                index = len(recorder.trainers)
                recorder.trainers.append(self)
                recorder.forwards.append(0)

                def count(*_: Any) -> None:
                    recorder.forwards[index] += 1

                self.model.register_forward_hook(count)  # registered after any precompute pass

        monkeypatch.setattr(training, "_dpo_trainer_class", lambda: RecordingTrainer)


def test_trl_knobs_reach_the_trainer(tiny_random_model_dir: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    knobs = {"lr_scheduler_type": "cosine", "warmup_steps": 1, "weight_decay": 0.05, "max_grad_norm": 0.5}
    result = training.run_train_job(make_job(tiny_random_model_dir, tmp_path, "out", dpo=replace(FAST_DPO, trl=knobs)))
    (trainer,) = recorder.trainers
    assert (trainer.args.lr_scheduler_type.value, trainer.args.warmup_steps, trainer.args.weight_decay,
            trainer.args.max_grad_norm) == ("cosine", 1, 0.05, 0.5)
    assert trainer.args.learning_rate == FAST_DPO.learning_rate and result.steps == 2


def test_precompute_default_follows_the_loss_and_the_epochs() -> None:
    def default(**fields: Any) -> bool:
        spec = TrainingConfig(**fields).dpo_spec(seed=0)
        return dpo_config_kwargs(spec, "o", on_cpu=True, bf16_supported=False)[
            "precompute_ref_log_probs"]

    assert default(epochs=3) is True  # the shipped config: the reference is read in every pass
    assert default(epochs=3, loss_type=["sigmoid", "sft"]) is True
    assert default(epochs=3, loss_type="sft") is False  # sft never reads the reference
    assert default(epochs=1) is False  # one pass: the same reference forwards, merely moved
    assert default(epochs=3, trl={"precompute_ref_log_probs": False}) is False
    assert precompute_pays_off(TetherConfig().training.dpo_spec(seed=0))
    assert not precompute_pays_off(TetherConfig().training.dpo_spec(seed=0), fsdp=True)


def test_precomputed_reference_gives_the_same_loss_with_one_forward_per_step(
    tiny_random_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The same job (seed, pairs, a non-zero warm-start adapter so policy != reference from step 1) with
    the reference log-probs computed in every step and precomputed once: every step logs the same loss
    and rewards, and the precomputed run does one forward pass per step instead of two."""
    init = make_random_adapter(tiny_random_model_dir, tmp_path / "init", LORA, seed=21)
    recorder = Recorder(monkeypatch)
    for precompute in (False, True):
        job = make_job(tiny_random_model_dir, tmp_path, f"out-{precompute}", init_adapter=str(init.path),
                       init_adapter_sha256=init.sha256,
                       dpo=replace(FAST_DPO, trl={"precompute_ref_log_probs": precompute}))
        training.run_train_job(job)
    per_step, precomputed = recorder.trainers
    assert not per_step.precompute_ref_logps and precomputed.precompute_ref_logps
    assert "ref_chosen_logps" in precomputed.train_dataset.column_names
    logs = [[e for e in t.state.log_history if "loss" in e and "train_loss" not in e] for t in recorder.trainers]
    assert len(logs[0]) == len(logs[1]) == 2
    for a, b in zip(*logs, strict=True):
        assert abs(a["rewards/chosen"]) > 1e-6  # the reference differs from the policy
        for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key
    assert recorder.forwards == [2 * 2, 2]  # 2 steps: policy + reference each, then the policy alone
    # Without progress, TRL's precompute bar stays quiet.
    assert "Computing reference log probs" not in capfd.readouterr().err


def test_a_job_reads_the_base_model_once_and_frees_it(tiny_random_model_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import PreTrainedModel

    loaded: list[weakref.ref[Any]] = []
    real = PreTrainedModel.from_pretrained.__func__  # type: ignore[attr-defined]

    def counting(cls: type, *args: Any, **kwargs: Any) -> Any:
        model = real(cls, *args, **kwargs)
        loaded.append(weakref.ref(model))
        return model

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(counting))
    training.run_train_job(make_job(tiny_random_model_dir, tmp_path, "out", dpo=replace(FAST_DPO, epochs=2)))
    assert len(loaded) == 1  # no second copy for the reference, none for the precompute pass
    # The trainer, model and optimizer hold one another in cycles: the job collects them before it
    # returns, so the next job's model never shares memory with this one's.
    assert loaded[0]() is None
