"""`tether plan --model DIR --gpus N`: the scale configuration recommended for a model (agent/run/planner.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import EXIT_CHECK_FAILED, fail, print_json, say, say_check


def plan(
    model: Annotated[Path, typer.Option("--model", help="A Hugging Face model folder; its config.json is enough.")],
    gpus: Annotated[int, typer.Option("--gpus", help="GPUs to plan for, 1 to 1024.")],
    gpu_memory: Annotated[float, typer.Option("--gpu-memory", help="Memory of each GPU in GB (GiB), 1 to 1024.")]
    = 80.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Recommend how to train and sample a model on N GPUs: LoRA or QLoRA, the training strategy (ddp, or
    deepspeed ZeRO-3) over how many processes, served generation's tensor-parallel size, the micro-batch and
    gradient accumulation, from the pre-flight memory estimate. No weights are read. Exit 1 when nothing fits."""
    if not 1 <= gpus <= 1024:
        fail(f"--gpus must be 1 to 1024, got {gpus}")
    if not 1.0 <= gpu_memory <= 1024.0:
        fail(f"--gpu-memory must be 1 to 1024 (GB of one GPU), got {gpu_memory}", hint="e.g. --gpu-memory 80")
    if not model.is_dir():
        fail(f"--model {model} is not a folder", hint="point it at a model folder holding config.json")
    from agent.run.planner import MAX_LENGTH, model_shape
    from agent.run.planner import plan as make_plan

    shape = model_shape(model)
    made = make_plan(shape, gpus, gpu_memory)
    if as_json:
        print_json({"model": str(model), "architecture": shape.architecture, **made.to_json()})
    else:
        say(f"{model}: {shape.architecture}, {shape.parameters / 1e9:.2f}B parameters, {shape.dtype}; "
            f"{gpus} GPU(s) of {gpu_memory:g} GB; pairs of {MAX_LENGTH} tokens")
        say_check(made.fits, made.summary)
        if made.fits:
            import yaml

            say("config (training.distributed: issue 23.1's section):")
            say(yaml.safe_dump(made.config_fragment(), sort_keys=False).rstrip())
    if not made.fits:
        raise typer.Exit(EXIT_CHECK_FAILED)
