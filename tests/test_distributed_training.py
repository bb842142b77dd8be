"""The round's DPO job on 2 processes under `accelerate launch` (DDP, and FSDP2, over gloo on the CPU, tiny random
model): it matches one process on the same global batch and seed, the adapter is saved once, and a failing or
hanging rank fails the job with that rank's error. DeepSpeed needs GPUs (agent/run/distributed_checks.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from agent.config import TrainingConfig
from policies.adapters import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, adapter_sha256
from policies.train_launch import launch_train_job
from policies.train_spec import DistributedSpec, Strategy, TrainJob, TrainJobError, TrainResult

# 8 pairs, 4 a step (2 a process on 2 processes): 2 optimizer steps either way.
PAIRS = [{"prompt": f"What is {i} plus {i}?", "chosen": f"It is {2 * i}.", "rejected": "I cannot help with that."}
         for i in range(8)]
GLOBAL_BATCH = 4
# Tolerances: the same global batch gives the same mean loss; only the order of float sums differs (DDP's
# all-reduce, FSDP's reduce-scatter average two half-batch gradients). Measured: losses equal to the last digit,
# weights within 6e-7 (DDP) and 5.2e-7 (FSDP2).
LOSS_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-5
FAULT_FOLDER = Path(__file__).parent / "fixtures" / "rank_fault"


def _job(model_dir: Path, tmp: Path, name: str, processes: int, timeout_s: int = 120,
         strategy: Strategy = "ddp") -> TrainJob:
    pairs = tmp / "pairs.jsonl"
    if not pairs.exists():
        pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS), encoding="utf-8")
    config = TrainingConfig(batch_size=GLOBAL_BATCH // processes, epochs=1, learning_rate=5e-3, max_length=64)
    return TrainJob(base_model=str(model_dir), pairs_path=str(pairs), output_dir=str(tmp / name),
                    lora=config.lora_spec(), dpo=config.dpo_spec(seed=0), device="cpu",
                    distributed=None if processes == 1 else DistributedSpec(processes, strategy, None, timeout_s))


@pytest.fixture(scope="module")
def one_process(tiny_random_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    tmp = tmp_path_factory.mktemp("one")
    return launch_train_job(_job(tiny_random_model_dir, tmp, "out", 1), "inprocess", tmp / "work")


def _losses(result: TrainResult) -> list[float]:
    return [h["loss"] for h in result.history]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(
    strategy: Strategy, one_process: TrainResult, tiny_random_model_dir: Path, tmp_path: Path
) -> None:
    # fsdp: FSDP2 on the CPU; the job refuses to train unless accelerate set it up (policies/distributed.py).
    job = _job(tiny_random_model_dir, tmp_path, "out", 2, strategy=strategy)
    result = launch_train_job(job, "accelerate", tmp_path / "work")

    assert result.steps == one_process.steps == len(PAIRS) // GLOBAL_BATCH
    assert _losses(result) == pytest.approx(_losses(one_process), abs=LOSS_TOLERANCE)
    ours, theirs = load_file(result.adapter_dir / ADAPTER_WEIGHTS_NAME), load_file(
        one_process.adapter_dir / ADAPTER_WEIGHTS_NAME)
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        torch.testing.assert_close(value, theirs[key], atol=WEIGHT_TOLERANCE, rtol=0)
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in ours.items() if "lora_B" in k)  # it trained
    # Saved once, by the main process, atomically: one complete adapter, no staging folder left, its digest.
    assert sorted(p.name for p in result.adapter_dir.iterdir()) == sorted([ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pairs.jsonl", "work"]
    assert result.sha256 == adapter_sha256(result.adapter_dir)


@pytest.mark.parametrize(("fault", "error"), [
    ("raise", r"rank\s*: 1 [\s\S]*RuntimeError: injected failure on rank 1"),
    ("hang", r"rank\s*: 0 [\s\S]*Timed out waiting 5000ms"),  # rank 0 waits in the all-reduce for timeout_s
])
def test_a_failing_rank_fails_the_job_with_its_error(
    fault: str, error: str, tiny_random_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(FAULT_FOLDER))
    monkeypatch.setenv("TETHER_TEST_RANK_FAULT", fault)
    job = _job(tiny_random_model_dir, tmp_path, "out", 2, timeout_s=5)
    with pytest.raises(TrainJobError, match=error):
        launch_train_job(job, "accelerate", tmp_path / "work")
    assert not (tmp_path / "out").exists()


def test_a_job_on_several_processes_needs_accelerate(tiny_random_model_dir: Path, tmp_path: Path) -> None:
    job = _job(tiny_random_model_dir, tmp_path, "out", 2)
    with pytest.raises(ValueError, match="set training.launcher: accelerate"):
        launch_train_job(job, "subprocess", tmp_path / "work")
    assert TrainJob.from_json(job.to_json()) == job  # the spec the processes read back


def test_the_config_section(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="set launcher: accelerate"):
        TrainingConfig(distributed={"num_processes": 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strategy deepspeed needs config_file"):
        TrainingConfig(launcher="accelerate", distributed={"num_processes": 2, "strategy": "deepspeed"})  # type: ignore[arg-type]
    section = TrainingConfig(launcher="accelerate", distributed={"num_processes": 2, "config_file": "acc.yaml"})  # type: ignore[arg-type]
    assert section.distributed is not None
    spec = section.distributed.anchored(tmp_path).spec()
    assert spec == DistributedSpec(2, "ddp", str(tmp_path / "acc.yaml"), 1800)
    with pytest.raises(ValueError, match="training.distributed.timeout_s"):
        TrainingConfig(trl={"ddp_timeout": 60})


def _deepspeed(tmp: Path, doc: Any) -> DistributedSpec:
    path = tmp / "ds.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return DistributedSpec(8, "deepspeed", str(path), 600)


@pytest.mark.parametrize(("doc", "problem"), [
    ("{not json", "is not a DeepSpeed JSON"),
    ({"zero_optimization": {"stage": 1}}, "stage must be 2 or 3"),
    ({"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}}, "offload_param needs stage 3"),
    ({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "gpu"}}}, "device must be one of cpu, nvme"),
    ({"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme"}}}, "names no nvme_path"),
    ({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": 16}, "write \"auto\""),
])
def test_validate_checks_a_deepspeed_config(doc: Any, problem: str, tmp_path: Path) -> None:
    from agent.run.distributed_checks import distributed_problems

    found = distributed_problems(_deepspeed(tmp_path, doc), on_cpu=False, gpus=8, batch_size=4, grad_accum=1)
    assert any(problem in p for p in found), found


def test_validate_passes_zero3_with_offload_but_for_what_this_machine_lacks(tmp_path: Path) -> None:
    from agent.run.distributed_checks import distributed_problems

    zero = {"stage": 3, "offload_param": {"device": "cpu"}, "offload_optimizer": {"device": "cpu"}}
    doc = {"zero_optimization": zero, "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": 1}
    spec = _deepspeed(tmp_path, doc)
    found = distributed_problems(spec, on_cpu=False, gpus=8, batch_size=4, grad_accum=1)
    try:
        import deepspeed  # noqa: F401
        assert found == []
    except ImportError:
        assert found == [p for p in found if "pip install deepspeed" in p] and len(found) == 1
    on_cpu = distributed_problems(spec, on_cpu=True, gpus=0, batch_size=4, grad_accum=1)
    assert any("needs CUDA GPUs" in p and "use strategy ddp or fsdp on the CPU" in p for p in on_cpu)
    assert distributed_problems(replace(spec, strategy="fsdp", config_file=None), on_cpu=True, gpus=0, batch_size=4,
                                grad_accum=1) == []
    too_many = distributed_problems(replace(spec, strategy="ddp", config_file=None), on_cpu=False, gpus=2,
                                    batch_size=4, grad_accum=1)
    assert too_many and "2 GPU(s) are visible" in too_many[0]


def test_the_preflight_reads_the_deepspeed_file_next_to_the_config(tmp_path: Path) -> None:
    from agent.config import load_config
    from agent.run.preflight import preflight

    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 1}}), encoding="utf-8")
    (tmp_path / "config.yaml").write_text("model: {device: cpu}\ntraining:\n  launcher: accelerate\n  distributed:\n"
                                          "    {num_processes: 2, strategy: deepspeed, config_file: ds.json}\n")
    findings = {f.check: f for f in preflight(load_config(tmp_path / "config.yaml"), None)}
    problems = findings["distributed"].problems
    assert any("needs CUDA GPUs (accelerate launches DeepSpeed only on GPUs)" in p for p in problems)
    assert any(p.startswith(f"{tmp_path / 'ds.json'}: zero_optimization.stage must be 2 or 3") for p in problems)


def test_validate_refuses_fsdp1_on_the_cpu(tmp_path: Path) -> None:
    from agent.run.distributed_checks import distributed_problems

    path = tmp_path / "acc.yaml"
    path.write_text("distributed_type: FSDP\nfsdp_config:\n  fsdp_version: 1\n", encoding="utf-8")
    spec = DistributedSpec(2, "fsdp", str(path), 600)
    on_cpu = distributed_problems(spec, on_cpu=True, gpus=0, batch_size=2, grad_accum=1)
    assert len(on_cpu) == 1 and "only FSDP2 runs" in on_cpu[0]
    assert distributed_problems(spec, on_cpu=False, gpus=2, batch_size=2, grad_accum=1) == []
