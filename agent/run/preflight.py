"""Pre-flight: everything that can be checked about a run before it is created, all at once.

`tether validate` and `tether run` call `preflight(config, ...)`; a run starts only when it finds no
problem, and nothing is written when it does. Each check is timed (`Finding.seconds`). Nothing is
downloaded: a hub id must already be in the local cache. The only network traffic is one short request to
each endpoint a judge or the advisor will call (`endpoints`); a config without one sends nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import WORLD_MODEL, TetherConfig

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclass(frozen=True)
class Note:
    """What a passing check measured, said beside its ✓ (the memory estimate): never a problem."""

    text: str


@dataclass(frozen=True)
class Elsewhere:
    """A problem only of this machine, found for a config that asks for a CUDA GPU where there is none (it is
    meant for a GPU machine): no GPU, no weights or tokenizer files beside the model's config.json, a served-
    generation endpoint not up here. `tether validate` says it as a warning; `tether run` refuses it."""

    text: str


# A check yields its problems (one line each) and any notes on what it measured.
Check = Callable[[], Iterator[str | Note | Elsewhere]]


@dataclass
class Finding:
    check: str
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The check as `tether validate` prints it beside its ✓: name, what it measured, how long it took."""
        said = self.notes + (["left to the machine it runs on (warning above)"] if self.elsewhere else [])
        measured = f": {'; '.join(said)}" if said else ""
        return f"{self.check}{measured} ({self.seconds:.2f} s)"


@dataclass
class _Model:
    """What the model checks share: the folder, and the config/tokenizer/skeleton once loaded."""

    folder: Path | None = None
    config: object | None = None
    tokenizer: object | None = None
    _skeleton: object | None = None

    def skeleton(self) -> object:
        """A weightless (meta-device) instance: module names and parameter counts, no weights read."""
        if self._skeleton is None:
            self._skeleton = weightless(self.config)
        return self._skeleton


def weightless(model_config: object) -> Any:
    """A meta-device instance of the model `model_config` describes: module names and parameter counts, no
    weights read or allocated. Tied embeddings are tied (from_config leaves them apart on the meta device), so
    a tied head is counted once."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(model_config, trust_remote_code=False)
    skeleton.tie_weights()
    return skeleton


def preflight(config: TetherConfig, model_folder: Path | None,
              extra: list[tuple[str, Check]] | None = None) -> list[Finding]:
    """Every check; `model_folder` is the base model's folder, or None for the world's model not built yet.
    `extra` adds named checks of other rooms (the world's data files, its probes)."""
    model = _Model(folder=model_folder)
    checks: list[tuple[str, Check]] = [
        ("model", lambda: _model(config, model)),
        ("tokenizer", lambda: _tokenizer(config, model)),
        ("target_modules", lambda: _targets(config, model)),
        ("device", lambda: _device(config)),
        ("memory", lambda: _memory(config, model)),
        ("training", lambda: _training(config)),
        ("distributed", lambda: _distributed(config)),
        ("judges", lambda: _judges(config)),
        ("endpoints", lambda: _endpoints(config)),
        ("generation", lambda: _served(config)),
        *(extra or []),
    ]
    findings = []
    for name, check in checks:
        start = time.perf_counter()
        found = list(check())
        findings.append(Finding(name, time.perf_counter() - start, [f for f in found if isinstance(f, str)],
                                [f.text for f in found if isinstance(f, Note)],
                                [f.text for f in found if isinstance(f, Elsewhere)]))
    return findings


def problems(findings: list[Finding], here: bool = True) -> list[str]:
    """What refuses the run: on this machine (`here`, `tether run`) also what only this machine lacks."""
    return [p for f in findings for p in f.problems + (f.elsewhere if here else [])]


def elsewhere(findings: list[Finding]) -> list[str]:
    return [p for f in findings for p in f.elsewhere]


def for_a_gpu_elsewhere(config: TetherConfig) -> bool:
    """The config asks for a CUDA GPU (model.device: cuda) and this machine has none: it is checked as a config
    for the GPU machine it names (Elsewhere)."""
    import torch

    return config.model.device == "cuda" and not torch.cuda.is_available()


def _here(config: TetherConfig, problem: str) -> str | Elsewhere:
    return Elsewhere(problem) if for_a_gpu_elsewhere(config) else problem


def base_problems(base: str) -> list[str]:
    """`model.base` checked on its own, for a config too broken to pre-flight (validate still names a model
    folder that is not there among its other errors). The world's model (`world`) is built by the run."""
    if base == WORLD_MODEL:
        return []
    from policies.artifacts import model_folder

    try:
        model_folder(base)
    except FileNotFoundError:
        return [_not_found(base)]
    return []


def _not_found(base: str) -> str:
    return (f"model.base {base!r} is neither a local folder nor a hub id in the local Hugging Face cache (nothing "
            "is downloaded): save the model with save_pretrained and point model.base at that folder")


def _model(config: TetherConfig, model: _Model) -> Iterator[str | Elsewhere]:
    if model.folder is None:
        if config.model.base != WORLD_MODEL:
            yield _not_found(config.model.base)
        return
    from transformers import AutoConfig

    try:
        model.config = AutoConfig.from_pretrained(str(model.folder), trust_remote_code=False)
    except (OSError, ValueError) as err:
        yield f"model.base {config.model.base}: its config cannot be read ({err})"
        return
    if not any(model.folder.glob("*.safetensors")):
        yield _here(config, f"model.base {config.model.base}: no *.safetensors weights in {model.folder} (pickle "
                            "weights are refused)")


def _tokenizer(config: TetherConfig, model: _Model) -> Iterator[str | Elsewhere]:
    if model.folder is None or model.config is None:
        return
    from policies.loading import load_tokenizer

    try:
        model.tokenizer = load_tokenizer(str(model.folder))
    except (OSError, ValueError) as err:
        files = [n for n in TOKENIZER_FILES if (model.folder / n).is_file()]
        why = str(err).strip().splitlines()[0][:300] if files else f"no {' or '.join(TOKENIZER_FILES)} in the folder"
        yield _here(config, f"the tokenizer of {config.model.base} does not load (nor is its chat template "
                            f"checked): {why}")
        return
    if not getattr(model.tokenizer, "chat_template", None) and config.model.chat_template_fallback == "none":
        yield (f"the tokenizer of {config.model.base} has no chat template: use an instruct/chat model, or set "
               "model.chat_template_fallback: plain to feed prompts as plain text")


def linear_module_names(skeleton: object) -> set[str]:
    """Leaf names of the model's linear layers (what LoRA's target_modules name)."""
    import torch

    linear: tuple[type, ...] = (torch.nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D  # GPT-2's projection layers

        linear = (torch.nn.Linear, Conv1D)
    except ImportError:
        pass
    head = skeleton.get_output_embeddings()  # type: ignore[attr-defined]  # never a LoRA target (nor all-linear's)
    return {name.rsplit(".", 1)[-1] for name, module in skeleton.named_modules()  # type: ignore[attr-defined]
            if isinstance(module, linear) and module is not head}


def _targets(config: TetherConfig, model: _Model) -> Iterator[str]:
    if model.config is None:
        return
    wanted = [t for t in config.training.target_modules if t != "all-linear"]
    if not wanted:
        return
    names = linear_module_names(model.skeleton())
    missing = [t for t in wanted if t not in names]
    if missing:
        yield (f"training.target_modules {missing} are not modules of {config.model.base}; its linear layers are "
               f"{sorted(names)} (or use [all-linear])")


def _device(config: TetherConfig) -> Iterator[str | Elsewhere]:
    import torch

    device, dtype = config.model.device, config.model.dtype
    if device == "cuda" and not torch.cuda.is_available():
        yield Elsewhere("model.device is cuda but no CUDA GPU is available here: run it on a GPU machine, or set "
                        "model.device to auto or cpu")
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if on_cpu and dtype == "float16":
        yield "model.dtype float16 does not train on the CPU: use float32 or bfloat16 (or auto)"
    if not on_cpu and dtype == "bfloat16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        yield "model.dtype bfloat16 is not supported by this GPU: use float16 or float32"
    if config.generation.backend == "vllm" and on_cpu:
        yield _here(config, "generation.backend vllm needs a CUDA GPU")


def memory_estimate(parameters: int, dtype: str, on_gpu: bool, quantization: str | None) -> int:
    """Bytes a round needs at its peak, roughly: the weights in their dtype for generation, plus the
    training job's own copy (float32 on the CPU, the checkpoint's dtype on a GPU, half a byte a weight
    in 4 bit) with activations and the optimizer's LoRA state (~30 %)."""
    return generation_bytes(parameters, dtype) + training_bytes(parameters, dtype, on_gpu, quantization)


def generation_bytes(parameters: int, dtype: str) -> int:
    """The weights generation holds, in their dtype (KV cache not counted)."""
    return parameters * BYTES.get(dtype, 4)


def training_bytes(parameters: int, dtype: str, on_gpu: bool, quantization: str | None) -> int:
    """The training job's copy of the base with activations and the LoRA optimizer state (~30 %)."""
    per_weight = 0.5 if quantization == "4bit" else (BYTES.get(dtype, 4) if on_gpu else 4)
    return int(parameters * per_weight * 1.3)


def _available(on_gpu: bool) -> int | None:
    if on_gpu:
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n < 10 * 2**30 else f"{n / 2**30:.1f} GiB"


def _memory(config: TetherConfig, model: _Model) -> Iterator[str | Note]:
    if model.config is None:
        return
    import torch

    on_gpu = config.model.device != "cpu" and torch.cuda.is_available() or for_a_gpu_elsewhere(config)
    dtype = config.model.dtype if config.model.dtype != "auto" else str(
        getattr(model.config, "dtype", None) or "float32").replace("torch.", "")
    parameters = sum(p.numel() for p in model.skeleton().parameters())  # type: ignore[attr-defined]
    need = memory_estimate(parameters, dtype, on_gpu, config.training.quantization)
    have = None if for_a_gpu_elsewhere(config) else _available(on_gpu)
    where = "GPU memory free" if on_gpu else "RAM available"
    # Said even when it fits: how close a run comes to the machine's memory is what a person sizes it by.
    unknown = "no GPU here to compare with" if for_a_gpu_elsewhere(config) else f"{where} unknown"
    yield Note(f"about {_gib(need)} needed for a round (weights in {dtype} plus a training copy), "
               + (f"{_gib(have)} {where}" if have is not None else unknown))
    if have is not None and need > have:
        yield (f"{config.model.base} needs about {_gib(need)} for a round (weights in {dtype} plus a "
               f"training copy); {_gib(have)} {where}: use a smaller model, a GPU, or "
               "training.quantization: 4bit")


def _training(config: TetherConfig) -> Iterator[str | Elsewhere]:
    from policies.train_check import training_problems

    t = config.training
    for problem in training_problems(t.lora_spec(), t.dpo_spec(seed=config.seed), config.model.device):
        yield _here(config, problem) if problem.startswith("training.quantization") else problem


def _served(config: TetherConfig) -> Iterator[str | Elsewhere]:
    """generation.backend server: the completions server answers as the run needs (policies/server_backend.py)."""
    server = config.generation.server
    if server is None:
        return
    from policies.server_backend import probe_problems

    for problem in probe_problems(**server.model_dump()):
        yield _here(config, problem)


def _distributed(config: TetherConfig) -> Iterator[str | Note]:
    """`training.distributed` against this machine and its config file (agent/run/distributed_checks.py)."""
    t = config.training
    if t.distributed is None:
        return
    import torch

    from agent.run.distributed_checks import distributed_problems

    spec = t.distributed.spec()
    elsewhere = for_a_gpu_elsewhere(config)  # a GPU machine's config checked here: its GPUs are counted there
    on_cpu = not elsewhere and (config.model.device == "cpu" or not torch.cuda.is_available())
    gpus = spec.num_processes if elsewhere else torch.cuda.device_count()
    found = distributed_problems(spec, on_cpu=on_cpu, gpus=gpus, batch_size=t.batch_size, grad_accum=t.grad_accum)
    yield from found
    if not found:
        where = "the CPU" if on_cpu else "GPUs" + (" (as many as it needs: counted where it runs)" if elsewhere else "")
        yield Note(f"{spec.num_processes} {spec.strategy} processes on {where}, "
                   f"{spec.num_processes * t.batch_size * t.grad_accum} pairs a step")


def judge_specs(config: TetherConfig) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, name, settings) of each judge the config names, nested ones included (a jury's members, a
    meta judge's, a tool judge's wrapped judge: a {name, settings} anywhere in a judge's settings), `where`
    as the config spells it: `judge.pool[0].settings.judges[1]`. The invariants' judge detectors are judges
    of this pool, so they are among them."""
    from tools.judges import JUDGES

    def walk(item: Any, where: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        if isinstance(item, list):
            for i, value in enumerate(item):
                yield from walk(value, f"{where}[{i}]")
        elif isinstance(item, dict):
            name, settings = item.get("name"), item.get("settings") or {}
            if isinstance(name, str) and isinstance(settings, dict) and name in JUDGES:
                yield where, name, settings
            for key, value in item.items():
                yield from walk(value, f"{where}.{key}")

    for i, slot in enumerate(config.judge.slots()):
        yield from walk({"name": slot.name, "settings": slot.settings}, "judge" if i == 0 else f"judge.pool[{i - 1}]")


def _judges(config: TetherConfig) -> Iterator[str]:
    """What this machine lacks for each judge the config names, nested ones included: each plug-in's
    registry `requires` check, e.g. code_runner's sandbox."""
    from tools.judges import JUDGES

    found: dict[str, None] = {}  # one line per problem, however many judges share it
    for _, name, settings in judge_specs(config):
        found.update(dict.fromkeys(f"judge {name}: {p}" for p in JUDGES.requirements(name, settings)))
    yield from found


def _endpoints(config: TetherConfig) -> Iterator[str]:
    """One request to each endpoint the run will call (an `openai` judge anywhere in the pool, the advisor),
    read by its user's parser: unreachable, refused or unparseable is a problem now rather than a round of
    invalid judgments later. Without endpoints nothing is sent, nor is `openai` imported."""
    from tools.endpoints import Use, probe_problems
    from tools.judges import JUDGES

    uses = [Use(f"{where} ({name})", probe) for where, name, settings in judge_specs(config)
            for probe in JUDGES.probes(name, settings)]
    if config.controller.advisor is not None:
        from agent.controller.advisor import advisor_probe

        uses.append(Use("controller.advisor", advisor_probe(config.controller.advisor)))
    yield from probe_problems(uses)
