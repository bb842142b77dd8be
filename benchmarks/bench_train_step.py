"""Benchmark: a DPO training job's step time with and without precomputed reference log-probs, and
what the collection after a job frees.

Builds a random Llama (no download) of the size asked for, then

* ``precompute``: runs the same job (fixed seed, same pairs) with ``precompute_ref_log_probs`` off and
  on, for 1 and for 3 epochs, and reports the median time of a training step (forward + backward; with
  the reference not precomputed, also the reference forward), the trainer's construction time (the
  precompute pass and TRL's hash of the weights happen there), the whole job's time and the final loss;
* ``gc``: runs a few jobs one after another in one process (a child process per mode), with the
  collection after each job and with it disabled, and reports after each job how many of the jobs'
  base models are still alive and the process's resident memory.

Not a test: timings on shared machines are noisy, so compare ratios measured in one run.

    python benchmarks/bench_train_step.py --out bench-out/train_step.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from agent.config import TrainingConfig
from policies import training
from policies.train_spec import TrainJob

CORPUS = [
    "What is the capital of France? Paris is the capital of France.",
    "Please explain why the sky is blue in one sentence.",
    "I am sorry, but I cannot help with that request.",
    "Sure! Two plus two equals four, and three plus three equals six.",
    "Write a short poem about the sea, the wind and the stars at night.",
]


def build_model(out: Path, hidden: int, layers: int) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tools.worlds.tiny.model import build_tokenizer

    tokenizer = build_tokenizer(CORPUS * 20, vocab_size=512)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 8 // 3, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_pairs(path: Path, n: int) -> Path:
    rows = [{"prompt": f"Question {i}: {CORPUS[i % len(CORPUS)]} What do you say?",
             "chosen": f"Answer {i}: {CORPUS[(i + 1) % len(CORPUS)]}",
             "rejected": f"No. {CORPUS[(i + 2) % len(CORPUS)]} " * 2} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def timed_job(job: TrainJob) -> dict[str, Any]:
    """Run ``job`` in-process with each training step and the trainer's construction timed (wall
    clock, and this process's CPU time, which other load on a shared machine disturbs less)."""
    steps: list[tuple[float, float]] = []
    built: list[tuple[float, float]] = []
    real = training._dpo_trainer_class()

    class TimedTrainer(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            wall, cpu = time.perf_counter(), time.process_time()
            super().__init__(*args, **kwargs)
            built.append((time.perf_counter() - wall, time.process_time() - cpu))

        def training_step(self, *args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            out = super().training_step(*args, **kwargs)
            steps.append((time.perf_counter() - wall, time.process_time() - cpu))
            return out

    seam = training._dpo_trainer_class
    training._dpo_trainer_class = lambda: TimedTrainer  # type: ignore[assignment]
    try:
        cpu = time.process_time()
        result = training.run_train_job(job)
        job_cpu = time.process_time() - cpu
    finally:
        training._dpo_trainer_class = seam  # type: ignore[assignment]
    return {"step_wall_s": statistics.median(s[0] for s in steps), "step_cpu_s": statistics.median(s[1] for s in steps),
            "steps": len(steps), "trainer_build_wall_s": built[0][0], "trainer_build_cpu_s": built[0][1],
            "job_wall_s": result.seconds, "job_cpu_s": job_cpu, "loss": result.metrics.get("loss")}


def bench_precompute(model_dir: Path, tmp: Path, pairs: Path, batch: int, repeats: int) -> dict[str, Any]:
    """Off and on alternate, ``repeats`` times each; per measure, the smallest of the repeats."""
    out: dict[str, Any] = {}
    for epochs in (1, 3):
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for rep in range(repeats):
            for mode in ("off", "on"):
                dpo = TrainingConfig(epochs=epochs, batch_size=batch, max_length=128,
                                     trl={"precompute_ref_log_probs": mode == "on"}).dpo_spec(seed=0)
                job = TrainJob(base_model=str(model_dir), pairs_path=str(pairs), lora=TrainingConfig().lora_spec(),
                               output_dir=str(tmp / f"e{epochs}-{mode}-{rep}"), dpo=dpo, device="cpu")
                runs[mode].append(timed_job(job))
                print(json.dumps({"epochs": epochs, "precompute": mode, **runs[mode][-1]}), flush=True)
        best = {mode: {key: min(r[key] for r in rs) for key in rs[0] if key != "loss"} | {"loss": rs[0]["loss"]}
                for mode, rs in runs.items()}
        out[f"epochs{epochs}"] = {
            **best,
            "ratio_on_over_off": {key: best["on"][key] / best["off"][key]
                                  for key in ("step_wall_s", "step_cpu_s", "job_wall_s", "job_cpu_s")},
            "same_final_loss": best["on"]["loss"] == best["off"]["loss"],
        }
    return out


def gc_child(model_dir: Path, pairs: Path, collect: bool, jobs: int) -> None:
    """One process: ``jobs`` jobs in a row; prints one JSON line per job."""
    import gc

    if not collect:
        training.gc.collect = lambda *a, **k: 0  # type: ignore[attr-defined]
    models: list[weakref.ref[Any]] = []
    real_load = training.load_base_model

    def spy(*args: Any, **kwargs: Any) -> Any:
        model = real_load(*args, **kwargs)
        models.append(weakref.ref(model))
        return model

    training.load_base_model = spy  # type: ignore[assignment]
    tmp = Path(tempfile.mkdtemp(prefix="tether-bench-gc-"))
    dpo = TrainingConfig(epochs=1, batch_size=8, max_length=128).dpo_spec(seed=0)
    for i in range(jobs):
        job = TrainJob(base_model=str(model_dir), pairs_path=str(pairs), output_dir=str(tmp / f"o{i}"),
                       lora=TrainingConfig().lora_spec(), dpo=dpo, device="cpu")
        start = time.perf_counter()
        training.run_train_job(job)
        rss_mb = int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20
        print(json.dumps({"collect": collect, "job": i, "job_s": round(time.perf_counter() - start, 3),
                          "models_alive": sum(r() is not None for r in models), "rss_mb": round(rss_mb)}))
    start = time.perf_counter()
    gc.collect()
    print(json.dumps({"collect": collect, "one_full_collection_s": round(time.perf_counter() - start, 3)}))


def bench_gc(model_dir: Path, pairs: Path, jobs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for collect in (True, False):
        proc = subprocess.run([sys.executable, __file__, "--gc-child", str(model_dir), str(pairs), str(int(collect)),
                               str(jobs)], capture_output=True, text=True, check=True)
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        out["with_collect" if collect else "without_collect"] = lines
        print("\n".join(json.dumps(line) for line in lines))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of the random Llama")
    parser.add_argument("--layers", type=int, default=4, help="layers of the random Llama")
    parser.add_argument("--pairs", type=int, default=32, help="preference pairs per job")
    parser.add_argument("--batch", type=int, default=8, help="pairs per step")
    parser.add_argument("--jobs", type=int, default=3, help="jobs in a row for the gc section")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each precompute setting")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: CPU times barely move with other load on the machine)")
    parser.add_argument("--only", choices=["precompute", "gc"], default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--gc-child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.gc_child:
        model_dir, pairs, collect, jobs = args.gc_child
        gc_child(Path(model_dir), Path(pairs), collect == "1", int(jobs))
        return

    tmp = Path(tempfile.mkdtemp(prefix="tether-bench-train-"))
    model_dir = build_model(tmp / "model", args.hidden, args.layers)
    pairs = write_pairs(tmp / "pairs.jsonl", args.pairs)
    report: dict[str, Any] = {"model": {"hidden": args.hidden, "layers": args.layers}, "pairs": args.pairs,
                              "batch": args.batch, "torch_threads": args.threads}
    if args.only in (None, "precompute"):
        report["precompute"] = bench_precompute(model_dir, tmp, pairs, args.batch, args.repeats)
    if args.only in (None, "gc"):
        report["gc"] = bench_gc(model_dir, pairs, args.jobs)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
