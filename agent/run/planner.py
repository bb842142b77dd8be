"""`tether plan`: the scale configuration recommended for a model on N GPUs, from the pre-flight memory estimate
(agent/run/preflight.py: the weights generation holds, the training job's copy with its ~30 % for activations
and the LoRA optimizer state), with the model's size read from its config.json alone (a weightless skeleton:
a folder holding only config.json is enough, so 8B and 70B shapes plan on a laptop).

The rules, in order, each stated in the plan it makes:

* Usable memory is 90 % of each GPU (the CUDA context, the allocator's fragmentation).
* One GPU: generation runs in the training process (backend transformers) and its copy of the weights stays
  loaded while the job trains. Several: generation is served (`vllm serve --enable-lora`, backend server) on
  `tensor_parallel` GPUs of their own, the smallest power of two (dividing the attention heads) whose share of
  the weights takes at most half of a GPU's usable memory (the rest is the KV cache), and the other GPUs train.
* Training takes the first of LoRA with every process holding the whole base (ddp), QLoRA the same way, LoRA
  with the base sharded (DeepSpeed ZeRO stage 3, or FSDP full shard, its equal), QLoRA sharded, that leaves room
  for one pair's activations. Sharding comes last because it all-gathers the base's weights on every step;
  ZeRO stages 1 and 2 shard only gradients and optimizer state, which LoRA keeps small, so they are never
  the answer. QLoRA trains on a 4-bit base while sampling uses the base as saved: QLoRA's usual split.
* Activations per pair (chosen and rejected, MAX_LENGTH tokens each, 16-bit): 34 x tokens x hidden bytes per
  layer (Korthikanti et al. 2022, fused attention), or with activation checkpointing each layer's input plus
  one layer's, and float32 logits twice over (the log-softmax). Checkpointing is chosen only when a pair does
  not fit without it. The micro-batch is the largest power of two up to 8 that fits and does not overshoot
  GLOBAL_BATCH pairs per step; gradient accumulation makes up the rest, never past GLOBAL_BATCH.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from agent.run.preflight import generation_bytes, training_bytes, weightless
from tether_types import EXIT_USAGE, TetherError

GPU_USABLE = 0.9  # of each GPU's memory (GiB; vendors' "80 GB" cards hold 80 GiB)
KV_SHARE = 0.5  # of a serving GPU's usable memory kept for the KV cache
MAX_LENGTH = 1024  # prompt + answer tokens per sequence
GLOBAL_BATCH = 32  # pairs per optimizer step aimed at
MAX_MICRO = 8
GIB = 2**30

Quantization = Literal["4bit"] | None
Strategy = Literal["single", "ddp", "deepspeed"]


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs of a model, from its config.json: no weights are read."""

    architecture: str
    parameters: int
    dtype: str  # the 16-bit dtype it trains and serves in on a GPU
    hidden: int
    layers: int
    heads: int
    vocab: int


class PlanInputError(TetherError, ValueError):
    """The model folder cannot be planned for (no readable config.json, an unknown architecture): exit 2."""

    exit_code = EXIT_USAGE


def model_shape(folder: Path) -> ModelShape:
    """The model's size and shape from ``folder/config.json``, counted on a meta-device skeleton."""
    if not (folder / "config.json").is_file():
        raise PlanInputError(f"{folder} has no config.json: point --model at a Hugging Face model folder (its "
                             "config.json alone is enough)")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
        skeleton = weightless(config)
    except (OSError, ValueError, KeyError) as err:
        raise PlanInputError(f"{folder}/config.json does not describe a causal LM transformers knows: "
                             f"{str(err)[:300]}") from None
    text = config.get_text_config()
    saved = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "").replace("torch.", "")
    return ModelShape(
        architecture=type(skeleton).__name__,
        parameters=sum(p.numel() for p in skeleton.parameters()),
        dtype=saved if saved in ("bfloat16", "float16") else "bfloat16",
        hidden=int(text.hidden_size), layers=int(text.num_hidden_layers), heads=int(text.num_attention_heads),
        vocab=int(text.vocab_size))


@dataclass(frozen=True)
class Plan:
    fits: bool
    summary: str  # what it recommends, or why nothing fits
    gpus: int
    gpu_memory_gib: float
    parameters: int
    dtype: str
    adapter: Literal["lora", "qlora"] | None = None
    generation: Literal["in-process", "served"] | None = None
    tensor_parallel: int | None = None  # GPUs the served generation spans
    training_processes: int | None = None
    strategy: Strategy | None = None
    zero_stage: int | None = None
    micro_batch: int | None = None
    grad_accum: int | None = None
    global_batch: int | None = None
    activation_checkpointing: bool | None = None
    # What a training GPU holds: the training copy's share, the micro-batch's activations and, on one GPU, the
    # weights generation keeps loaded beside them.
    training_gib_per_gpu: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "max_length": MAX_LENGTH, "config": self.config_fragment()}

    def config_fragment(self) -> dict[str, Any]:
        """The tether config this plan amounts to (the distributed part: training.distributed, issue 23.1)."""
        if not self.fits:
            return {}
        served = self.generation == "served"
        training: dict[str, Any] = {
            "quantization": "4bit" if self.adapter == "qlora" else None, "batch_size": self.micro_batch,
            "grad_accum": self.grad_accum, "max_length": MAX_LENGTH,
            "launcher": "accelerate" if (self.training_processes or 1) > 1 else "inprocess",
            "trl": {"activation_checkpointing": bool(self.activation_checkpointing)},
        }
        if (self.training_processes or 1) > 1:
            training["distributed"] = {"num_processes": self.training_processes, "strategy": self.strategy,
                                       **({"zero_stage": self.zero_stage} if self.zero_stage else {})}
        return {"model": {"device": "cuda", "dtype": self.dtype},
                "generation": {"backend": "server" if served else "transformers"}, "training": training}


def _micro(free: float, per_pair: float, processes: int) -> int:
    """The largest power of two up to MAX_MICRO whose pairs fit `free` bytes and do not overshoot GLOBAL_BATCH."""
    cap = min(MAX_MICRO, 2 ** int(math.log2(max(1, math.ceil(GLOBAL_BATCH / processes)))))
    micro = cap
    while micro >= 1 and micro * per_pair > free:
        micro //= 2
    return micro


def pair_activation_bytes(shape: ModelShape, checkpointing: bool) -> int:
    """Activation bytes of one pair (two sequences of MAX_LENGTH tokens) kept for the backward pass."""
    per_layer = 34 * MAX_LENGTH * shape.hidden
    body = shape.layers * 2 * MAX_LENGTH * shape.hidden + per_layer if checkpointing else shape.layers * per_layer
    logits = MAX_LENGTH * shape.vocab * 4 * 2
    return 2 * (body + logits)


def _serving_split(shape: ModelShape, gpus: int, budget: float) -> tuple[int, str | None]:
    """(tensor-parallel size of the served generation, why no split works or None)."""
    weights = generation_bytes(shape.parameters, shape.dtype)
    tp = 1
    while weights / tp > budget * KV_SHARE or shape.heads % tp:
        tp *= 2
        if tp >= gpus:
            return tp, (f"serving the {weights / GIB:.0f} GiB of {shape.dtype} weights with room for the KV cache "
                        f"takes {tp} GPUs or more, leaving none of {gpus} to train: add GPUs, or larger ones")
    return tp, None


def plan(shape: ModelShape, gpus: int, gpu_memory_gib: float) -> Plan:
    budget = gpu_memory_gib * GIB * GPU_USABLE
    base = {"gpus": gpus, "gpu_memory_gib": gpu_memory_gib, "parameters": shape.parameters, "dtype": shape.dtype}
    if gpus == 1:
        weights = generation_bytes(shape.parameters, shape.dtype)
        tp, processes, free_for_training = 1, 1, budget - weights
        if free_for_training <= 0:
            return Plan(False, f"the {shape.dtype} weights generation holds ({weights / GIB:.0f} GiB) alone exceed "
                        f"one GPU's usable {budget / GIB:.0f} GiB: plan for more GPUs (generation then served on "
                        "GPUs of its own)", **base)
    else:
        tp, why = _serving_split(shape, gpus, budget)
        if why is not None:
            return Plan(False, why, **base)
        processes, free_for_training = gpus - tp, budget
    options: list[tuple[Quantization, Strategy]] = [(None, "ddp"), ("4bit", "ddp")]
    if processes > 1:
        options += [(None, "deepspeed"), ("4bit", "deepspeed")]
    for quantization, strategy in options:
        copy = training_bytes(shape.parameters, shape.dtype, True, quantization)
        share = copy / processes if strategy == "deepspeed" else copy
        for checkpointing in (False, True):
            per_pair = pair_activation_bytes(shape, checkpointing)
            micro = _micro(free_for_training - share, per_pair, processes)
            if micro >= 1:
                accum = max(1, GLOBAL_BATCH // (micro * processes))
                chosen = Plan(
                    True, "", **base, adapter="qlora" if quantization else "lora",
                    generation="in-process" if gpus == 1 else "served", tensor_parallel=tp,
                    training_processes=processes, strategy="single" if processes == 1 else strategy,
                    zero_stage=3 if strategy == "deepspeed" else None, micro_batch=micro, grad_accum=accum,
                    global_batch=micro * accum * processes, activation_checkpointing=checkpointing,
                    training_gib_per_gpu=round((budget - free_for_training + share + micro * per_pair) / GIB, 1))
                return Plan(**{**asdict(chosen), "summary": describe(chosen)})
    need = training_bytes(shape.parameters, shape.dtype, True, "4bit") / max(processes, 1)
    return Plan(False, f"even QLoRA with the base sharded over {processes} GPU(s) needs {need / GIB:.0f} GiB a GPU "
                f"before activations, of {free_for_training / GIB:.0f} GiB free: add GPUs, or larger ones", **base)


def describe(p: Plan) -> str:
    adapter = "QLoRA (4-bit NF4 base)" if p.adapter == "qlora" else f"LoRA ({p.dtype} base)"
    if p.strategy == "single":
        training = "1 process"
    elif p.strategy == "ddp":
        training = f"{p.training_processes} processes, ddp (each holds the whole base)"
    else:
        training = f"{p.training_processes} processes, deepspeed ZeRO-3 (the base sharded; fsdp full shard alike)"
    generation = ("in the training process, sharing its GPU" if p.generation == "in-process" else
                  f"served by vLLM, tensor parallel {p.tensor_parallel} on {p.tensor_parallel} GPU(s) of its own")
    return (f"{adapter}; training {training}; micro-batch {p.micro_batch} x grad accumulation {p.grad_accum} = "
            f"{p.global_batch} pairs a step{', activation checkpointing' if p.activation_checkpointing else ''}; "
            f"about {p.training_gib_per_gpu} GiB a training GPU; generation {generation}")
