"""Prompts as one-turn conversations: the chat template, or the raw text where a tokenizer has none,
and the ids that end a reply. Shared by every generation backend (policies/generation.py, vllm_backend.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def format_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
    """Render a user message with the chat template (generation prompt appended).

    A tokenizer without a chat template gets the raw prompt text (then tokenised with the
    tokenizer's usual special tokens, e.g. a BOS); a templated prompt already contains whatever
    special tokens the template emits and is tokenised without adding more.
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        assert isinstance(text, str)
        return text
    return prompt


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def eos_token_ids(tokenizer: PreTrainedTokenizerBase, generation_config: Any = None) -> list[int]:
    """The tokenizer's eos id plus any eos ids of the model's generation config."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    extra = getattr(generation_config, "eos_token_id", None)
    if isinstance(extra, int):
        extra = [extra]
    for i in extra or []:
        if int(i) not in ids:
            ids.append(int(i))
    return ids
