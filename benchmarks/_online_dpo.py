"""TRL's online DPO (`trl.experimental.online_dpo`) as a benchmark system, on a world and a tether config.

What it shares with the tether systems it is compared with: the base model folder, the LoRA (r, alpha,
dropout, target modules), beta, learning rate, batch size and max length of `training`, the sampling
settings of `generation`, the sample budget per round (prompts.per_round x generation.samples_per_prompt:
online DPO draws 2 completions per prompt, so it gets half as many prompts per round, from the same pool
generator), the reward (the config's first judge, built as a run builds it, with the workspace's
constitution) and the evaluation (greedy replies to the same held-out slice, scored by the world's oracle,
through tether's generation backend).

What it is: TRL's trainer as a user would run it, one trainer for all rounds (one optimizer, a linear
learning-rate decay over the run), the reference the base model (the adapter disabled), each round's prompts
trained in order (a round is `steps_per_round` optimizer steps), no controller, no gate, no invariant check.
The round a degrading judge reads is the trainer's (global step // steps per round + 1).
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import TetherConfig
from agent.run.splits import evaluation_sets
from guardrails.constitution import parse_constitution
from tether_types import AdapterRef, Prompt, SamplingSpec
from tools.judges import JUDGES, Judge, JudgeItem
from tools.judges.base import safe_score
from tools.prompts import PROMPT_GENERATORS
from tools.worlds import World

if TYPE_CHECKING:
    from policies.generation import GenerationBackend

MODULE = "trl.experimental.online_dpo"
SYSTEM = "online_dpo"


def available() -> bool:
    """Whether this environment's TRL has online DPO."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # importing trl.experimental warns that its API may change: known
            return importlib.util.find_spec(MODULE) is not None
    except ModuleNotFoundError:
        return False


class RoundClock:
    """The round the trainer is in, for a judge that reads it (build context `run_round`)."""

    def __init__(self) -> None:
        self.round = 1

    def __call__(self) -> int:
        return self.round


def round_prompts(world: World, config: TetherConfig, rounds: int) -> tuple[list[list[Prompt]], int]:
    """Each round's prompts (the pool generator's draws, as a run draws them), and how many per round."""
    per_round = config.prompts.per_round * config.generation.samples_per_prompt // 2
    generator = PROMPT_GENERATORS.build(config.prompts.generator).plugin
    taskset = world.taskset()
    return [generator.draw(taskset, r, per_round, config.seed) for r in range(1, rounds + 1)], per_round


def build_reward_judge(config: TetherConfig, constitution_text: str, clock: RoundClock) -> Judge:
    """The config's first judge, built as a run builds it (the `self` judge needs the run's policy: refused)."""
    if config.judge.name == "self":
        raise ValueError("online DPO takes a judge that does not generate with the policy; `self` is not one")
    constitution = parse_constitution(constitution_text, "the workspace's constitution")
    return JUDGES.build(config.judge.name, config.judge.settings, constitution=constitution, run_round=clock).plugin


def reported_prompts(world: World, config: TetherConfig) -> tuple[Prompt, ...]:
    """The held-out prompts a run reports on: the test split of its evaluation slice (never validation)."""
    return evaluation_sets(world.taskset(), config.prompts.heldout, config.seed,
                           config.evaluation.validation_fraction).test


def evaluate(world: World, backend: GenerationBackend, adapter: AdapterRef | None, prompts: Sequence[Prompt],
             config: TetherConfig) -> dict[str, Any]:
    """Greedy replies to `prompts` (the test split), scored by the world's oracle: {oracle, oracle_by_family, split}."""
    spec = SamplingSpec(n=1, max_new_tokens=config.evaluation.max_new_tokens, do_sample=False, seed=config.seed)
    outputs = sorted(backend.generate([p.text for p in prompts], adapter, spec), key=lambda o: o.prompt_index)
    by_family: dict[str, list[float]] = {}
    for p, o in zip(prompts, outputs, strict=True):
        score = world.oracle(p, o.text)
        if score is not None:
            by_family.setdefault(p.family, []).append(score)
    scores = [s for v in by_family.values() for s in v]
    return {"oracle": statistics.fmean(scores) if scores else None, "split": "test",
            "oracle_by_family": {f: statistics.fmean(v) for f, v in sorted(by_family.items())}, "headroom": {}}


def run_online_dpo(world: World, config: TetherConfig, constitution_text: str, model_dir: Path, rounds: int,
                   work_dir: Path) -> dict[str, Any]:
    """`rounds` rounds of online DPO on `world`; the same result shape as `_common.run_system` (its curve:
    round 0 the base, then the adapter after each round)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the experimental-API warning, once per import
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    from policies.adapters import adapter_sha256
    from policies.generation import make_backend
    from policies.loading import resolve_device
    from policies.threads import scoped_threads

    class InOrder(OnlineDPOTrainer):  # type: ignore[misc]
        """Each round's prompts in their round: the trainer's own sampler would shuffle them across rounds."""

        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> SequentialSampler:
            return SequentialSampler(self.train_dataset)

    started, cpu0 = time.perf_counter(), time.process_time()
    train, cfg = config.training, config.generation
    drawn, per_round = round_prompts(world, config, rounds)
    steps_per_round = max(1, per_round // train.batch_size)
    # The test split of the held-out slice, as every other system's curve reports it (agent/run/splits.py).
    heldout = reported_prompts(world, config)
    clock = RoundClock()
    judge = build_reward_judge(config, constitution_text, clock)

    def reward(prompts: list[Any], completions: list[Any], trainer_state: Any = None, **_: Any) -> list[float | None]:
        if trainer_state is not None:  # the step being taken is global_step (0-based) of the run
            clock.round = trainer_state.global_step // steps_per_round + 1
        items = [JudgeItem(p[-1]["content"], c[-1]["content"]) for p, c in zip(prompts, completions, strict=True)]
        return [v.score if v.valid else None for v in safe_score(judge, items)]

    curve: list[dict[str, Any]] = []
    with scoped_threads(config.model.threads):
        backend = make_backend("transformers", str(model_dir), device=config.model.device, dtype=config.model.dtype,
                               batch_size=cfg.batch_size)
        curve.append({"round": 0, "carried": False, **evaluate(world, backend, None, heldout, config)})

        class EvaluateEachRound(TrainerCallback):  # type: ignore[misc]
            def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
                if state.global_step % steps_per_round:
                    return
                r = state.global_step // steps_per_round
                folder = work_dir / f"round-{r}"
                model.save_pretrained(folder)
                ref = AdapterRef(id=f"{SYSTEM}-r{r}", path=folder, sha256=adapter_sha256(folder))
                curve.append({"round": r, "carried": False, "action": "train", "outcome": "trained",
                              **evaluate(world, backend, ref, heldout, config)})

        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir))
        rows = [{"prompt": [{"role": "user", "content": p.text}]} for batch in drawn for p in batch]
        args = OnlineDPOConfig(
            output_dir=str(work_dir / "trainer"), per_device_train_batch_size=train.batch_size,
            gradient_accumulation_steps=1, learning_rate=train.learning_rate, beta=[train.beta],
            max_steps=steps_per_round * rounds, max_new_tokens=cfg.max_new_tokens, max_length=train.max_length,
            temperature=cfg.temperature, top_p=cfg.top_p, gradient_checkpointing=False, save_strategy="no",
            report_to=[], logging_steps=10_000, disable_tqdm=True, seed=config.seed,
            use_cpu=resolve_device(config.model.device).type == "cpu")
        lora = LoraConfig(r=train.lora_r, lora_alpha=train.lora_alpha, lora_dropout=train.lora_dropout,
                          target_modules=list(train.target_modules), task_type="CAUSAL_LM")
        trainer = InOrder(model=model, reward_funcs=reward, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, peft_config=lora, callbacks=[EvaluateEachRound()])
        trainer.train()
        backend.close()
        del trainer, model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return {"system": SYSTEM, "run_id": None, "final_state": "stopped", "rounds_run": len(curve) - 1,
            "trained_rounds": len(curve) - 1, "approved_rounds": None, "intervention_rounds": [], "interventions": {},
            "steps_per_round": steps_per_round, "prompts_per_round": per_round,
            "wall_s": round(time.perf_counter() - started, 1), "cpu_s": round(time.process_time() - cpu0, 1),
            "curve": curve}
