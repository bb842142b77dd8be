"""Iterative DPO's moving reference: a training job whose DPO reference is a parent adapter (loaded as
TRL's frozen "ref" adapter, verified like the init adapter), on the tiny random model, CPU."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from safetensors.torch import load_file
from test_training import FAST_DPO, LORA, make_job, make_random_adapter

from policies import training
from policies.adapters import AdapterIntegrityError, adapter_sha256
from policies.loading import load_base_model, load_policy
from policies.training import TrainJob, run_train_job


class _Spy:
    trainers: ClassVar[list[Any]] = []


def _spied(job: TrainJob) -> tuple[Any, Any]:
    real = training._dpo_trainer_class()

    class SpyDPOTrainer(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _Spy.trainers.append(self)

    _Spy.trainers = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "_dpo_trainer_class", lambda: SpyDPOTrainer)
        result = run_train_job(job)
    (trainer,) = _Spy.trainers
    return result, trainer


def _completion_logp(model: Any, prompt_ids: list[int], completion_ids: list[int]) -> float:
    """log p(completion | prompt) under `model`, summed over the completion's tokens."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    per_token = torch.log_softmax(logits[:-1], -1).gather(1, ids[0, 1:, None])[:, 0]
    return float(per_token[len(prompt_ids) - 1:].sum())


@pytest.fixture(scope="module")
def parent(tiny_random_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_random_adapter(tiny_random_model_dir, tmp_path_factory.mktemp("parent") / "parent", LORA, seed=21)


def test_reference_log_probs_are_the_parent_adapters(tiny_random_model_dir: Path, tmp_path: Path, parent: Any) -> None:
    job = make_job(tiny_random_model_dir, tmp_path, "out", init_adapter=str(parent.path),
                   init_adapter_sha256=parent.sha256, ref_adapter=str(parent.path), ref_adapter_sha256=parent.sha256,
                   dpo=replace(FAST_DPO, learning_rate=0.0, trl={"precompute_ref_log_probs": True}))
    result, trainer = _spied(job)
    rows = list(trainer.train_dataset)
    assert len(rows) == 8 and {"ref_chosen_logps", "ref_rejected_logps"} <= set(rows[0])
    with_parent = load_policy(str(tiny_random_model_dir), parent, "cpu")
    base = load_base_model(str(tiny_random_model_dir), "cpu")
    for row in rows:
        for side in ("chosen", "rejected"):
            expected = _completion_logp(with_parent, row["prompt_ids"], row[f"{side}_ids"])
            assert row[f"ref_{side}_logps"] == pytest.approx(expected, abs=1e-3)
    # ...and not the base model's (what the reference was before).
    assert any(abs(r["ref_chosen_logps"] - _completion_logp(base, r["prompt_ids"], r["chosen_ids"])) > 0.1
               for r in rows)
    # The policy starts at the parent, which is now also the reference: zero implicit rewards.
    assert abs(result.metrics["rewards/chosen"]) < 1e-5 and abs(result.metrics["rewards/rejected"]) < 1e-5


def test_the_reference_stays_frozen_and_only_the_trained_adapter_is_saved(
        tiny_random_model_dir: Path, tmp_path: Path, parent: Any) -> None:
    from peft import get_peft_model_state_dict

    job = make_job(tiny_random_model_dir, tmp_path, "out", init_adapter=str(parent.path),
                   init_adapter_sha256=parent.sha256, ref_adapter=str(parent.path), ref_adapter_sha256=parent.sha256)
    result, trainer = _spied(job)
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert list(model.peft_config) == ["default", "ref"] and trainer.ref_model is None
    initial = load_file(str(parent.path / "adapter_model.safetensors"))
    held = get_peft_model_state_dict(model, adapter_name="ref")
    assert all(torch.equal(held[k], initial[k]) for k in initial)  # untouched by training
    assert sorted(p.name for p in result.adapter_dir.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    saved = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert saved.keys() == initial.keys() and any(not torch.equal(saved[k], initial[k]) for k in initial)
    assert result.sha256 == adapter_sha256(result.adapter_dir)


def test_without_an_init_adapter_the_policy_starts_fresh(tiny_random_model_dir: Path, tmp_path: Path,
                                                         parent: Any) -> None:
    still = replace(FAST_DPO, learning_rate=0.0)
    plain = run_train_job(make_job(tiny_random_model_dir, tmp_path, "plain", dpo=still))
    anchored = run_train_job(make_job(tiny_random_model_dir, tmp_path, "ref", dpo=still, ref_adapter=str(parent.path),
                                      ref_adapter_sha256=parent.sha256))
    assert anchored.sha256 == plain.sha256  # the same fresh LoRA as a job without a reference adapter
    assert anchored.metrics["rewards/chosen"] != pytest.approx(0.0, abs=1e-4)  # policy (base) != reference


def test_a_tampered_or_misshapen_reference_adapter_is_refused(tiny_random_model_dir: Path, tmp_path: Path) -> None:
    ref = make_random_adapter(tiny_random_model_dir, tmp_path / "ref", LORA, seed=22)
    weights = ref.path / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    job = make_job(tiny_random_model_dir, tmp_path, "out", ref_adapter=str(ref.path), ref_adapter_sha256=ref.sha256)
    with pytest.raises(AdapterIntegrityError, match=ref.sha256):
        run_train_job(job)
    small = make_random_adapter(tiny_random_model_dir, tmp_path / "small", replace(LORA, r=4), seed=23)
    job = make_job(tiny_random_model_dir, tmp_path, "out2", ref_adapter=str(small.path),
                   ref_adapter_sha256=small.sha256)
    with pytest.raises(ValueError, match="ref adapter .* does not match"):
        run_train_job(job)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_the_job_carries_the_reference(tmp_path: Path) -> None:
    job = TrainJob(base_model="m", pairs_path="p.jsonl", output_dir="out", lora=LORA, dpo=FAST_DPO, device="cpu",
                   ref_adapter="parent", ref_adapter_sha256="ab" * 32)
    assert TrainJob.from_json(job.to_json()) == job
    assert job.with_absolute_paths().ref_adapter == str(Path("parent").resolve())
    with pytest.raises(ValueError, match="ref_adapter and ref_adapter_sha256"):
        replace(job, ref_adapter_sha256=None)
