"""DPO LoRA training jobs (tiny random model, CPU)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from safetensors.torch import load_file

from agent.config import TrainingConfig
from policies import training
from policies.adapters import AdapterIntegrityError, adapter_sha256
from policies.loading import load_base_model
from policies.train_launch import launch_train_job
from policies.training import (
    LoraSpec,
    TrainJob,
    TrainJobError,
    TrainResult,
    read_pairs,
    run_train_job,
)
from tether_types import AdapterRef, sha256_file

PAIRS = [
    {
        "prompt": f"What is {i} plus {i}?",
        "chosen": f"It is {2 * i}.",
        "rejected": "I cannot help with that.",
    }
    for i in range(6)
] + [
    {"prompt": "Say hello.", "chosen": "Hello there!", "rejected": "No."},
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "I refuse to answer questions."},
]
# The specs have no defaults of their own: the config is the one source.
FAST_DPO = TrainingConfig(batch_size=4, epochs=1, learning_rate=5e-3, max_length=64).dpo_spec(seed=0)
LORA = TrainingConfig().lora_spec()


def write_pairs(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_job(model_dir: Path, tmp: Path, name: str, **overrides: Any) -> TrainJob:
    pairs = tmp / "pairs.jsonl"
    if not pairs.exists():
        write_pairs(pairs, PAIRS)
    job = TrainJob(
        base_model=str(model_dir),
        pairs_path=str(pairs),
        output_dir=str(tmp / name),
        init_adapter=None,
        init_adapter_sha256=None,
        lora=LORA,
        dpo=FAST_DPO,
        device="cpu",
    )
    return replace(job, **overrides)


def make_random_adapter(model_dir: Path, out: Path, lora: LoraSpec, seed: int) -> AdapterRef:
    """An adapter of the job's LoRA shape with non-zero A and B."""
    from peft import LoraConfig, get_peft_model

    from policies.loading import known_deprecations_silenced, load_base_model

    model = load_base_model(str(model_dir), "cpu")
    torch.manual_seed(seed)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        target_modules=list(lora.target_modules),
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    with known_deprecations_silenced():
        get_peft_model(model, config).save_pretrained(out)
    return AdapterRef(id=out.name, path=out, sha256=adapter_sha256(out))


class _Spy:
    trainers: ClassVar[list[Any]] = []


@pytest.fixture(scope="module")
def trained(
    tiny_random_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One in-process job, with DPOTrainer instances recorded and the base model hashed around it."""
    tmp = tmp_path_factory.mktemp("train")
    base_file = tiny_random_model_dir / "model.safetensors"
    sha_before = sha256_file(base_file)
    state_before = {
        k: v.clone()
        for k, v in load_base_model(str(tiny_random_model_dir), "cpu").state_dict().items()
    }
    real_class = training._dpo_trainer_class()

    class SpyDPOTrainer(real_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _Spy.trainers.append(self)

    _Spy.trainers = []
    job = make_job(tiny_random_model_dir, tmp, "fresh")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "_dpo_trainer_class", lambda: SpyDPOTrainer)
        result = run_train_job(job)
    return {
        "job": job,
        "result": result,
        "trainers": list(_Spy.trainers),
        "sha_before": sha_before,
        "state_before": state_before,
        "tmp": tmp,
    }


def test_result_and_saved_adapter(trained: dict[str, Any]) -> None:
    result: TrainResult = trained["result"]
    job: TrainJob = trained["job"]
    assert result.adapter_dir == Path(job.output_dir)
    assert sorted(p.name for p in result.adapter_dir.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert result.sha256 == adapter_sha256(result.adapter_dir)
    assert result.steps == 2  # 8 pairs / batch 4, 1 epoch
    assert result.seconds > 0
    for key in ("loss", "train_loss", "rewards/margins", "rewards/accuracies"):
        assert key in result.metrics and isinstance(result.metrics[key], float)
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert config["r"] == job.lora.r and config["lora_alpha"] == job.lora.alpha
    assert sorted(config["target_modules"]) == sorted(job.lora.target_modules)


def test_lora_weights_moved_from_init(trained: dict[str, Any]) -> None:
    weights = load_file(str(trained["result"].adapter_dir / "adapter_model.safetensors"))
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and len(lora_b) == 2 * 4  # 2 layers x q,k,v,o
    # lora_B starts at zero (identity adapter); training must have moved it
    assert any(v.abs().max().item() > 0 for v in lora_b)


def test_base_model_untouched(trained: dict[str, Any], tiny_random_model_dir: Path) -> None:
    assert sha256_file(tiny_random_model_dir / "model.safetensors") == trained["sha_before"]
    fresh = load_base_model(str(tiny_random_model_dir), "cpu").state_dict()
    before = trained["state_before"]
    assert fresh.keys() == before.keys()
    assert all(torch.equal(fresh[k], before[k]) for k in before)


def test_reference_is_base_model_through_disabled_adapter(trained: dict[str, Any]) -> None:
    from peft import PeftModel

    (trainer,) = trained["trainers"]
    assert trainer.ref_model is None
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert isinstance(model, PeftModel)
    assert list(model.peft_config) == ["default"]  # no "ref" adapter copy


def test_warm_start_from_init_adapter(
    trained: dict[str, Any], tiny_random_model_dir: Path, tmp_path: Path
) -> None:
    init = make_random_adapter(tiny_random_model_dir, tmp_path / "init", LORA, seed=11)
    job = make_job(
        tiny_random_model_dir,
        tmp_path,
        "warm",
        init_adapter=str(init.path),
        init_adapter_sha256=init.sha256,
        dpo=replace(FAST_DPO, learning_rate=0.0),
    )
    result = run_train_job(job)
    saved = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    initial = load_file(str(init.path / "adapter_model.safetensors"))
    assert saved.keys() == initial.keys()
    assert all(torch.equal(saved[k], initial[k]) for k in initial)
    # The policy starts at the init adapter but the reference is the base model, so the implicit
    # rewards are non-zero from the first step (a copy of the adapter as reference would give 0).
    assert abs(result.metrics["rewards/chosen"]) > 1e-6
    assert abs(result.metrics["rewards/rejected"]) > 1e-6


def test_warm_start_with_mismatched_lora_spec_is_rejected(
    tiny_random_model_dir: Path, tmp_path: Path
) -> None:
    init = make_random_adapter(tiny_random_model_dir, tmp_path / "init", replace(LORA, r=4), seed=12)
    job = make_job(
        tiny_random_model_dir,
        tmp_path,
        "out",
        init_adapter=str(init.path),
        init_adapter_sha256=init.sha256,
    )
    with pytest.raises(ValueError, match="does not match"):
        run_train_job(job)


def test_tampered_init_adapter_is_refused(tiny_random_model_dir: Path, tmp_path: Path) -> None:
    init = make_random_adapter(tiny_random_model_dir, tmp_path / "init", LORA, seed=13)
    weights = init.path / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    job = make_job(
        tiny_random_model_dir,
        tmp_path,
        "out",
        init_adapter=str(init.path),
        init_adapter_sha256=init.sha256,
    )
    with pytest.raises(AdapterIntegrityError, match=init.sha256):
        run_train_job(job)
    assert not (tmp_path / "out").exists()


def test_empty_pairs_file_is_a_value_error(tiny_random_model_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    job = make_job(tiny_random_model_dir, tmp_path, "out", pairs_path=str(empty))
    with pytest.raises(ValueError, match="no preference pairs"):
        run_train_job(job)
    with pytest.raises(ValueError, match="'chosen'"):
        read_pairs(write_pairs(tmp_path / "bad.jsonl", [{"prompt": "p", "rejected": "r"}]))


def test_output_dir_must_be_fresh(trained: dict[str, Any], tiny_random_model_dir: Path) -> None:
    with pytest.raises(FileExistsError):
        run_train_job(trained["job"])


def test_job_json_round_trip(tmp_path: Path) -> None:
    job = TrainJob(
        base_model="m",
        pairs_path="p.jsonl",
        output_dir="out",
        init_adapter="a",
        init_adapter_sha256="ab" * 32,
        lora=replace(LORA, r=4, target_modules=("q_proj",)),
        dpo=replace(FAST_DPO, beta=0.2, ld_alpha=0.5, loss_type=("sigmoid", "sft"), loss_weights=(1.0, 0.5),
                    trl={"lr_scheduler_type": "cosine", "lr_scheduler_kwargs": {"num_cycles": 1}}),
        device="cpu",
    )
    assert TrainJob.from_json(job.to_json()) == job
    result = TrainResult(Path("x"), "ab" * 32, 3, {"loss": 0.5}, 1.5)
    assert TrainResult.from_json(result.to_json()) == result
    with pytest.raises(ValueError):
        TrainJob(
            base_model="m",
            pairs_path="p",
            output_dir="o",
            lora=LORA,
            dpo=FAST_DPO,
            device="cpu",
            init_adapter="a",
            init_adapter_sha256=None,
        )


def test_subprocess_launch_matches_in_process(
    trained: dict[str, Any],
    tiny_random_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    job = replace(trained["job"], output_dir="sub")  # relative paths mean the caller's cwd
    result = launch_train_job(job, "subprocess", Path("work"))
    assert isinstance(result, TrainResult)
    assert result.adapter_dir == tmp_path / "sub"
    assert result.sha256 == adapter_sha256(result.adapter_dir)
    assert result.steps == trained["result"].steps
    # same job, same seed, same CPU: bit-identical adapter
    assert result.sha256 == trained["result"].sha256
    assert list((tmp_path / "work").glob("*.result.json"))


def test_subprocess_failure_raises_with_stderr_tail(
    tiny_random_model_dir: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    job = make_job(tiny_random_model_dir, tmp_path, "out", pairs_path=str(empty))
    with pytest.raises(TrainJobError, match="no preference pairs"):
        launch_train_job(job, "subprocess", tmp_path / "work")


def test_chosen_logp_change_compares_the_same_pairs_in_the_first_and_last_epoch() -> None:
    from policies.train_metrics import chosen_logp_change

    logs = [{"loss": 0.7, "epoch": 0.5, "logps/chosen": -10.0}, {"loss": 0.6, "epoch": 1.0, "logps/chosen": -12.0},
            {"loss": 0.5, "epoch": 1.5, "logps/chosen": -14.0}, {"loss": 0.4, "epoch": 2.0, "logps/chosen": -16.0},
            {"loss": 0.3, "epoch": 2.5, "logps/chosen": -11.0}, {"loss": 0.2, "epoch": 3.0, "logps/chosen": -13.0}]
    assert chosen_logp_change(logs) == pytest.approx(-12.0 - -11.0)  # last epoch -12 vs first -11: displaced
    assert chosen_logp_change(logs[:2]) is None  # one epoch: nothing to compare
    assert chosen_logp_change([{**e, "logps/chosen": float("nan")} for e in logs]) is None
