"""What a build of the tiny world's model is: its architecture, corpus mix and training schedule. Torch-free,
so the world reads its defaults without loading the builder (tools/worlds/tiny/model.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TinySpec:
    vocab_size: int = 2048  # upper bound: BPE stops early when the corpus has no more merges
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 256
    seq_len: int = 128  # judgment conversations (rubric prompt + reply) run to ~115 tokens
    batch_size: int = 24  # 24 x 128 tokens a step: the same compute per step as 32 x 96
    steps: int = 250  # the world's setting `steps`: ~90 s on 2 idle cores; the style mix is learned by ~150
    learning_rate: float = 3e-3
    seed: int = 0
    examples_per_prompt: int = 6
    warmup_steps: int = 15
    # > 0 adds tools.worlds.tiny.corpus.JudgmentSource (that many judgment examples per train prompt):
    # the model also learns to answer the `self` judge's rubric prompt with "Score: N".
    judgment_examples_per_prompt: int = 1
    # > 0 adds tools.worlds.tiny.corpus.PromptWritingSource (that many writing examples per train prompt):
    # the model also learns to write a new request from a few examples (self-prompting).
    writing_examples_per_prompt: int = 1
