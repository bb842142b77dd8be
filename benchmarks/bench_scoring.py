"""Benchmark: what scoring a round's samples under the base model costs, against sampling them.

The drift monitor (tools/monitors/drift.py) and the `regularized` pair strategy read each sample's mean
log-prob per token under the base model: one forward pass over prompt + response
(`TransformersBackend.base_logprobs`). This times it against the round's sampling on the same model,
prompts and samples, alternating `--repeats` times in one process, and prints and writes as JSON the
median seconds of each and their ratio (scoring / sampling). Not a test: compare the ratio.

    python benchmarks/bench_scoring.py --model DIR --out bench-out/scoring.json
    python benchmarks/bench_scoring.py --random-qwen2 --tokenizer DIR --device cuda --out bench-out/scoring-gpu.json

--model: a saved model folder (e.g. a workspace's tiny world model). --random-qwen2: a randomly
initialised model of the Qwen2 architecture (about 0.3B parameters with the tiny world's 2k-token
vocabulary, taken from --tokenizer), saved to a temporary folder and loaded through from_pretrained like
any model; random weights never stop early, so every sample is --max-new-tokens long.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from policies.generation import TransformersBackend
from tether_types import SamplingSpec

PROMPTS: tuple[str, ...] = (
    "What is {i} + {j}?", "How do I plant tomatoes in pot number {i}?",
    "Please tell me how to study for exam {i}.", "Can you explain how to keep {j} houseplants alive?",
    "What is {i} minus {j}?", "How can I bake {j} loaves of bread?",
)


def random_qwen2(tokenizer_dir: Path, out: Path, seed: int) -> Path:
    """A randomly initialised Qwen2 (24 layers, hidden 1024, GQA 16/2 heads) with `tokenizer_dir`'s tokenizer."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
                         num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def timed(fn: Any) -> tuple[float, Any]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="A saved model folder.")
    source.add_argument("--random-qwen2", action="store_true", help="A random Qwen2 model (needs --tokenizer).")
    parser.add_argument("--tokenizer", type=Path, help="Tokenizer folder for --random-qwen2.")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch-size", type=int, default=384)
    parser.add_argument("--out", type=Path, default=Path("bench-out/scoring.json"))
    args = parser.parse_args()
    if args.random_qwen2 and args.tokenizer is None:
        parser.error("--random-qwen2 needs --tokenizer DIR")

    with tempfile.TemporaryDirectory(prefix="tether-scoring-") as tmp:
        model_dir = args.model or random_qwen2(args.tokenizer, Path(tmp) / "qwen2", seed=0)
        backend = TransformersBackend(str(model_dir), device=args.device, batch_size=args.batch_size, dtype=args.dtype)
        params = sum(p.numel() for p in backend._model.parameters())
        prompts = [PROMPTS[i % len(PROMPTS)].format(i=i, j=i % 7 + 1) for i in range(args.prompts)]
        spec = SamplingSpec(n=args.samples, max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=0.95)
        backend.generate(prompts[:4], None, spec)  # warm-up: kernels, allocator
        sampling, scoring = [], []
        tokens = 0
        for _ in range(args.repeats):
            seconds, gens = timed(lambda: backend.generate(prompts, None, spec))
            sampling.append(seconds)
            tokens = sum(g.n_tokens for g in gens)
            seconds, _ = timed(lambda gens=gens: backend.base_logprobs([prompts[g.prompt_index] for g in gens],
                                                                        [g.text for g in gens]))
            scoring.append(seconds)
        device = str(backend.device)
        name = torch.cuda.get_device_name() if torch.cuda.is_available() and device.startswith("cuda") else "cpu"
        backend.close()
    report = {"model": "random-qwen2" if args.random_qwen2 else str(args.model), "parameters": params,
              "device": device, "device_name": name, "prompts": args.prompts, "samples": args.samples,
              "max_new_tokens": args.max_new_tokens, "sampled_tokens": tokens, "repeats": args.repeats,
              "sampling_s": sampling, "scoring_s": scoring,
              "sampling_median_s": statistics.median(sampling), "scoring_median_s": statistics.median(scoring),
              "scoring_over_sampling": statistics.median(scoring) / statistics.median(sampling)}
    print(f"{report['model']} ({params / 1e6:.1f}M parameters) on {name}: {args.prompts} prompts x {args.samples} "
          f"samples, {tokens} tokens sampled")
    print(f"  sampling  {report['sampling_median_s']:.3f} s (median of {args.repeats})")
    print(f"  scoring   {report['scoring_median_s']:.3f} s: {report['scoring_over_sampling']:.3f} x sampling")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
