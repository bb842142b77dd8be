"""The tiny world's embedded model: a locally trained byte-level BPE tokenizer and a small Llama
pre-trained in about two CPU minutes on the tiny world's corpus, saved so that plain
`AutoModelForCausalLM.from_pretrained(dir)` / `AutoTokenizer.from_pretrained(dir)` load it.

    python -m tools.worlds.tiny.model OUT_DIR [--steps N] [--seed N] [--threads auto|N]

The build's torch threads are chosen as a run's are (`model.threads`, policies/threads.py): `auto` takes
OMP_NUM_THREADS where set, else the idle cores, so a build on a busy machine does not oversubscribe it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from policies.loading import progress_bars
from policies.progress import bar as progress_bar
from policies.progress import wanted
from policies.threads import ThreadsSetting, TorchThreads, scoped_threads
from tether_types import EXIT_USAGE, TetherError
from tools.worlds.tiny.corpus import DEFAULT_SOURCES, CorpusSource, JudgmentSource, PromptWritingSource, build_corpus
from tools.worlds.tiny.families import tiny_world
from tools.worlds.tiny.spec import TinySpec

EOS = "<|endoftext|>"
SPECIAL_TOKENS: tuple[str, ...] = (EOS, "<|user|>", "<|assistant|>", "<|system|>")
MARKER_FILE = "tiny_world.json"
# What a finished build holds (the marker, with its spec, is written last).
BUILD_FILES: tuple[str, ...] = ("config.json", "model.safetensors", "tokenizer.json", MARKER_FILE)
BuildState = Literal["absent", "built", "incomplete", "other_spec"]
# Prefix-consistent for TRL: the generation prompt "<|assistant|>\n" is exactly what precedes the
# assistant content in a full rendering, and "\n" is always its own pre-token, so token ids agree too.
# {% generation %} lets `return_assistant_tokens_mask` / TRL `assistant_only_loss` find the answers.
TINY_CHAT_TEMPLATE: str = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + '<|endoftext|>' }}{% endgeneration %}"
    "{%- elif message['role'] == 'user' -%}{{ '<|user|>\n' + message['content'] + '\n' }}"
    "{%- elif message['role'] == 'system' -%}{{ '<|system|>\n' + message['content'] + '\n' }}"
    "{%- else -%}{{ raise_exception('unknown role: ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)


def build_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts` (no unk: every byte is in the initial alphabet)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, padding_side="left",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]), model_max_length=2048,
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def encode_conversations(
    tok: PreTrainedTokenizerFast, convs: list[list[dict]], seq_len: int
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per conversation; loss only on the final assistant turn (+ eos), so the
    small model spends its capacity on answering rather than on modelling prompts."""
    full = [tok.apply_chat_template(c, tokenize=False) for c in convs]
    prefix = [tok.apply_chat_template(c[:-1], tokenize=False, add_generation_prompt=True)
              for c in convs]
    full_ids = tok(full, add_special_tokens=False)["input_ids"]
    prefix_ids = tok(prefix, add_special_tokens=False)["input_ids"]
    out: list[tuple[list[int], list[int]]] = []
    for ids, pre in zip(full_ids, prefix_ids, strict=True):
        assert ids[: len(pre)] == pre, "chat template is not prefix-consistent"
        ids = ids[:seq_len]
        out.append((ids, [-100] * len(pre) + ids[len(pre):]))
    return out


def pack_rows(
    examples: list[tuple[list[int], list[int]]], seq_len: int, pad_id: int, rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First-fit pack whole conversations into rows of `seq_len` (scanning only the last few open
    rows keeps it linear). Positions restart at 0 for every conversation: transformers then builds
    a block-diagonal mask, so conversations sharing a row never attend to each other and each sees
    the positions it will see at inference."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    rows: list[tuple[list[int], list[int], list[int]]] = []
    for i in order:
        ids, labels = examples[i]
        row = next((r for r in rows[-16:] if len(r[0]) + len(ids) <= seq_len), None)
        if row is None:
            row = ([], [], [])
            rows.append(row)
        row[0].extend(ids)
        row[1].extend(labels)
        row[2].extend(range(len(ids)))
    rng.shuffle(rows)
    n = len(rows)
    input_ids = torch.full((n, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((n, seq_len), -100, dtype=torch.long)
    positions = torch.zeros((n, seq_len), dtype=torch.long)
    for r, (ids, lab, pos) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        labels[r, : len(lab)] = torch.tensor(lab)
        positions[r, : len(pos)] = torch.tensor(pos)
        # Padding tail = its own "sequence" starting at 0, masked out of the loss.
        positions[r, len(pos):] = torch.arange(seq_len - len(pos))
    return input_ids, labels, positions


def lr_at(step: int, spec: TinySpec) -> float:
    """Linear warmup then cosine decay to 10% of the peak."""
    warmup = min(spec.warmup_steps, max(1, spec.steps // 10))
    if step < warmup:
        return spec.learning_rate * (step + 1) / warmup
    frac = (step - warmup) / max(1, spec.steps - warmup)
    return spec.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def _train(model: LlamaForCausalLM, examples: list[tuple[list[int], list[int]]],
           pad_id: int, spec: TinySpec, progress: bool) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, betas=(0.9, 0.95),
                            weight_decay=0.05)
    rng = random.Random(f"tether-tiny-pack/{spec.seed}")
    batches: list[tuple[torch.Tensor, ...]] = []
    losses: list[float] = []
    model.train()
    with progress_bar("pre-training the tiny model", spec.steps, progress, unit="steps",
                      fields={"loss": float("nan")}) as advance:
        for step in range(spec.steps):
            if not batches:  # new epoch: re-pack with a fresh shuffle so rows differ
                ids, labels, pos = pack_rows(examples, spec.seq_len, pad_id, rng)
                perm = torch.randperm(len(ids))
                batches = [(ids[j], labels[j], pos[j])
                           for j in perm.split(spec.batch_size) if len(j) == spec.batch_size]
                batches.reverse()
            ids, labels, pos = batches.pop()
            for group in opt.param_groups:
                group["lr"] = lr_at(step, spec)
            # use_cache=False: a cache would disable the packed-sequence (block-diagonal) mask.
            loss = model(input_ids=ids, position_ids=pos, labels=labels, use_cache=False).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            advance(loss=sum(losses[-20:]) / len(losses[-20:]))
    model.eval()
    return losses


def build_tiny_model(out_dir: Path, spec: TinySpec = TinySpec(), progress: bool = True, *,
                     threads: ThreadsSetting = "auto") -> Path:
    """Build tokenizer + model for `spec` into `out_dir` (replacing it), deterministic for the seed. Torch
    runs it on the threads a run with `model.threads: threads` would choose, for the build only."""
    out_dir = Path(out_dir)
    t0, cpu0 = time.monotonic(), time.process_time()
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    with scoped_threads(threads) as chosen:
        return _build(out_dir, spec, progress, t0, cpu0, chosen)


def _build(out_dir: Path, spec: TinySpec, progress: bool, t0: float, cpu0: float, threads: TorchThreads) -> Path:
    sources: tuple[CorpusSource, ...] = DEFAULT_SOURCES
    if spec.judgment_examples_per_prompt > 0:
        sources += (JudgmentSource(per_prompt=spec.judgment_examples_per_prompt),)
    if spec.writing_examples_per_prompt > 0:
        sources += (PromptWritingSource(per_prompt=spec.writing_examples_per_prompt),)
    convs = build_corpus(tiny_world(spec.seed), spec.seed, spec.examples_per_prompt, sources)
    tok = build_tokenizer([m["content"] for c in convs for m in c], spec.vocab_size)
    pad_id = tok.pad_token_id
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,  # fewer parameters, better use of a small corpus
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=pad_id,
    )
    model = LlamaForCausalLM(config)
    examples = encode_conversations(tok, convs, spec.seq_len)
    losses = _train(model, examples, pad_id, spec, progress)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=pad_id,
        max_new_tokens=64,
    )

    # Build next to out_dir, then rename: a crash never leaves a half-written model behind.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        with progress_bars(False):  # a one-shard save needs no bar
            model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        tail = losses[-20:] if losses else [float("nan")]
        stats = {
            "spec": asdict(spec),
            "params": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tok),
            "conversations": len(convs),
            "final_loss": sum(tail) / len(tail),
            "first_loss": losses[0] if losses else None,
            "loss_curve": [round(sum(losses[i:i + 10]) / len(losses[i:i + 10]), 4)
                           for i in range(0, len(losses), 10)],
            "seconds": round(time.monotonic() - t0, 2),
            # CPU time is robust to other jobs sharing the cores; wall ~ cpu / threads when idle.
            "cpu_seconds": round(time.process_time() - cpu0, 2),
            "threads": threads.threads,
            "thread_choice": threads.as_dict(),  # what the threads were chosen from (policies/threads.py)
        }
        (tmp / MARKER_FILE).write_text(json.dumps(stats, indent=2))
        old = None
        if out_dir.exists():  # directories can't be replaced in one rename: swap, then delete
            old = out_dir.with_name(f"{tmp.name}.old")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


class IncompleteModelError(TetherError, FileNotFoundError):
    """A model folder holds some files of a build but not all (an interrupted copy, a deleted file):
    never rebuilt unless asked, since that replaces the folder."""
    exit_code = EXIT_USAGE

    def __init__(self, out_dir: Path, missing: list[str]) -> None:
        self.out_dir, self.missing = Path(out_dir), missing
        super().__init__(f"the tiny model folder {out_dir} is incomplete ({', '.join(missing)} missing): rebuild "
                         "it, or delete the folder")


def missing_files(out_dir: Path) -> list[str]:
    """The files of a finished build that `out_dir` lacks; an unreadable marker counts as missing."""
    out_dir = Path(out_dir)
    missing = [f for f in BUILD_FILES if not (out_dir / f).is_file()]
    if MARKER_FILE not in missing and _stored_spec(out_dir) is None:
        missing.append(f"{MARKER_FILE} (unreadable)")
    return missing


def _stored_spec(out_dir: Path) -> dict | None:
    try:
        stored = json.loads((out_dir / MARKER_FILE).read_text()).get("spec")
    except (OSError, ValueError, AttributeError):
        return None
    return stored if isinstance(stored, dict) else None


def build_state(out_dir: Path, spec: TinySpec) -> BuildState:
    """absent (no folder, or an empty one), built (a finished build of `spec`), incomplete (some files
    of a build, not all), or other_spec (a finished build of another spec)."""
    out_dir = Path(out_dir)
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return "absent"
    if missing_files(out_dir):
        return "incomplete"
    return "built" if is_complete(out_dir, spec) else "other_spec"


# Value a build made before the field existed effectively had (it lacks that corpus source).
_BEFORE_FIELD_EXISTED: dict[str, object] = {"writing_examples_per_prompt": 0}


def is_complete(out_dir: Path, spec: TinySpec | None = None) -> bool:
    """True when `out_dir` holds a finished build (of `spec`, when given)."""
    out_dir = Path(out_dir)
    if not all((out_dir / f).is_file() for f in BUILD_FILES):
        return False
    if spec is None:
        return True
    stored = _stored_spec(out_dir)
    # Fields added later take their defaults, so older builds of the same spec stay valid, except
    # those that add corpus content: an older build lacks it, so it counts as built without it.
    full = {**asdict(TinySpec()), **_BEFORE_FIELD_EXISTED, **stored} if stored is not None else None
    return full == asdict(spec)


def ensure_tiny_model(out_dir: Path, spec: TinySpec = TinySpec(), progress: bool = True, *,
                      rebuild: bool = False, threads: ThreadsSetting = "auto") -> Path:
    """Return `out_dir` holding a build of `spec`: built first (on `threads`, as `build_tiny_model`) when the
    folder is absent or empty, or holds a build of another spec, or `rebuild` is set. A folder with some files
    of a build but not all raises IncompleteModelError naming them, and nothing is built."""
    state = build_state(out_dir, spec)
    if state == "built" and not rebuild:
        return Path(out_dir)
    if state == "incomplete" and not rebuild:
        raise IncompleteModelError(Path(out_dir), missing_files(out_dir))
    return build_tiny_model(out_dir, spec, progress, threads=threads)


def _threads_arg(value: str) -> ThreadsSetting:
    if value == "auto":
        return "auto"
    if not (value.isascii() and value.isdigit() and int(value) >= 1):
        raise argparse.ArgumentTypeError(f"'auto' or a whole number >= 1, got {value!r}")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.worlds.tiny.model", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--steps", type=int, default=TinySpec.steps)
    parser.add_argument("--seed", type=int, default=TinySpec.seed)
    parser.add_argument("--force", action="store_true", help="rebuild even if already complete")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=_threads_arg, default="auto",
                        help="torch threads: auto (OMP_NUM_THREADS, else the idle cores) or a number")
    args = parser.parse_args(argv)
    spec = replace(TinySpec(), steps=args.steps, seed=args.seed)
    try:
        path = ensure_tiny_model(args.out_dir, spec, progress=wanted(False if args.quiet else None), rebuild=args.force,
                                 threads=args.threads)
    except IncompleteModelError as err:
        parser.error(f"{err} (--force rebuilds it)")
    stats = json.loads((path / MARKER_FILE).read_text())
    print(f"tiny model at {path}: {stats['params']:,} params, final loss {stats['final_loss']:.3f}, "
          f"{stats['seconds']}s on {stats['threads']} torch thread(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
