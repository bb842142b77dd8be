"""`tether plan` (agent/run/planner.py) on model shapes written as config.json alone, and the multi-GPU recipes of
examples/scale-out/, which `tether validate` accepts on a machine without a GPU (with warnings) and `tether run`
refuses here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from agent.cli.main import app

SCALE_OUT = Path(__file__).resolve().parents[1] / "examples" / "scale-out"
MODELS = SCALE_OUT / "models"


def _plan(home: Path, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["--home", str(home), "plan", *args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}


def test_plans_for_8b_and_70b_on_8_gpus(tmp_path: Path) -> None:
    code, eight = _plan(tmp_path, "--model", str(MODELS / "llama-3-8b"), "--gpus", "8")
    assert code == 0 and eight["fits"]
    assert round(eight["parameters"] / 1e9, 2) == 8.03  # Llama-3-8B, counted from its config.json alone
    assert (eight["adapter"], eight["generation"], eight["tensor_parallel"], eight["training_processes"],
            eight["strategy"]) == ("lora", "served", 1, 7, "ddp")
    assert eight["micro_batch"] * eight["grad_accum"] * 7 == eight["global_batch"] <= 32
    assert eight["config"]["generation"]["backend"] == "server"
    code, seventy = _plan(tmp_path, "--model", str(MODELS / "llama-3-70b"), "--gpus", "8")
    assert code == 0 and seventy["fits"] and round(seventy["parameters"] / 1e9, 1) == 70.6
    # The bfloat16 base (131 GiB) is served over 4 GPUs; the 4-bit base fits each of the other 4 whole.
    assert (seventy["adapter"], seventy["tensor_parallel"], seventy["training_processes"], seventy["strategy"],
            seventy["activation_checkpointing"]) == ("qlora", 4, 4, "ddp", True)
    assert seventy["config"]["training"]["quantization"] == "4bit"
    assert seventy["training_gib_per_gpu"] < 80 * 0.9


def test_a_plan_that_does_not_fit_exits_1_and_bad_input_exits_2(tmp_path: Path) -> None:
    code, doc = _plan(tmp_path, "--model", str(MODELS / "llama-3-70b"), "--gpus", "1")
    assert code == 1 and doc["fits"] is False and "alone exceed one GPU" in doc["summary"] and doc["config"] == {}
    code, small = _plan(tmp_path, "--model", str(MODELS / "qwen2.5-0.5b"), "--gpus", "1")
    assert code == 0 and (small["generation"], small["strategy"]) == ("in-process", "single")
    assert small["parameters"] == 494_032_768  # the tied head counted once
    runner = CliRunner()
    for args, needle in ((["--model", str(tmp_path / "none"), "--gpus", "8"], "is not a folder"),
                         (["--model", str(tmp_path), "--gpus", "8"], "has no config.json"),
                         (["--model", str(MODELS / "llama-3-8b"), "--gpus", "0"], "--gpus must be 1 to 1024"),
                         (["--model", str(MODELS / "llama-3-8b"), "--gpus", "2", "--gpu-memory", "0"],
                          "--gpu-memory must be")):
        result = runner.invoke(app, ["--home", str(tmp_path / "ws"), "plan", *args])
        assert result.exit_code == 2 and needle in result.stderr, result.stderr
    assert not (tmp_path / "ws").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a GPU config where there is no GPU")
@pytest.mark.parametrize("recipe", ["llama-3-8b-8gpu.yaml", "llama-3-70b-qlora-8gpu.yaml"])
def test_the_recipes_validate_without_a_gpu_and_run_refuses_them(tmp_path: Path, recipe: str) -> None:
    from agent.config import load_config
    from agent.run import preflight

    result = CliRunner().invoke(app, ["--home", str(tmp_path / "ws"), "validate", str(SCALE_OUT / recipe)])
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("no CUDA GPU is available here" in w for w in warnings)
    assert any("no *.safetensors weights" in w for w in warnings)
    assert any("generation.server at http://127.0.0.1:8000/v1" in w for w in warnings)
    assert "is valid" in result.stderr
    config = load_config(SCALE_OUT / recipe)
    findings = preflight.preflight(config, MODELS / config.model.base.rsplit("/", 1)[-1])
    assert preflight.problems(findings, here=False) == []
    refused = preflight.problems(findings)  # what `tether run` refuses with here
    assert any("no CUDA GPU is available here" in p for p in refused)
