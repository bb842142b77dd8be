"""The `reward_model` judge: a local sequence-classification reward model scores (prompt, response) pairs.

The format of the public reward models on the Hugging Face hub (Skywork-Reward, OpenAssistant's
DeBERTa RMs, ...): `AutoModelForSequenceClassification` and its tokenizer, one logit per input (or
one of several, `label_index`). The model is read from a local folder or a hub id already in the
local cache, never downloaded; it loads on the first `score` (not when a config is validated) and
`close` frees it. A logit becomes a score in [0, 1] by a sigmoid, or linearly between `scale`'s
bounds (clipped); a non-finite logit, or a batch that fails, is an invalid verdict, never an exception.
"""

from __future__ import annotations

import gc
import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.judges.base import JUDGES, JudgeItem, ScoresCompare, Verdict
from tools.judges.llm import failure_reason
from tools.registry import PluginSettingsError

_DEVICE = re.compile(r"(cpu|auto|mps|cuda(:\d+)?)")


@dataclass(frozen=True)
class RewardModelSettings:
    folder: Path  # resolved: a local folder or the cached snapshot of a hub id
    batch_size: int
    max_length: int  # tokens per input; longer ones lose their start (see `_load`)
    chat_template: bool
    scale: tuple[float, float] | None  # None: sigmoid
    label_index: int | None  # None: the only logit of a one-label head
    device: str


@dataclass
class _Loaded:
    tokenizer: Any
    model: Any
    label: int
    chat: bool  # inputs go through the tokenizer's chat template


def resolve_folder(path: str) -> Path:
    """The folder `path` loads from; PluginSettingsError naming the fix when it is not on this machine."""
    from policies.artifacts import model_folder

    try:
        folder = model_folder(path)
    except FileNotFoundError:
        raise PluginSettingsError(
            f"reward_model: path {path!r} is neither a local folder nor a model in the local Hugging Face cache, "
            "and nothing is downloaded: fetch it beforehand (`hf download ID`) or save it with save_pretrained "
            "and set settings.path to that folder") from None
    if not (folder / "config.json").is_file():
        raise PluginSettingsError(f"reward_model: {folder} holds no config.json: point settings.path at a "
                                  "folder written by save_pretrained")
    return folder


def _saved_head(folder: Path) -> tuple[list[str], int | None]:
    """The architectures and the number of labels config.json names (None: not a whole number)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise PluginSettingsError(f"reward_model: cannot read {folder / 'config.json'}: {err}") from None
    labels = config.get("id2label") or {}
    # A config that saves neither has transformers' default head of 2 labels (it omits the default).
    num = len(labels) if labels else config.get("num_labels", 2)
    return list(config.get("architectures") or []), num if isinstance(num, int) else None


def pick_label(num_labels: int, label_index: int | None) -> int:
    """The logit that is the reward: `label_index`, which a head with several logits must name."""
    if label_index is None:
        if num_labels != 1:
            raise PluginSettingsError(f"reward_model: the model's head has {num_labels} logits: set label_index")
        return 0
    if not 0 <= label_index < num_labels:
        raise PluginSettingsError(f"reward_model: label_index {label_index} is outside the head's "
                                  f"{num_labels} logit(s)")
    return label_index


def _check_head(folder: Path, label_index: int | None) -> None:
    """What config.json already tells, so a wrong model fails at validation rather than in a round:
    a causal LM loaded for sequence classification gets a randomly initialised head and scores noise."""
    architectures, num_labels = _saved_head(folder)
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise PluginSettingsError(f"reward_model: {folder} holds a {', '.join(architectures)}, not a "
                                  "...ForSequenceClassification reward model")
    if num_labels is not None:
        pick_label(num_labels, label_index)


def to_unit(logit: float, scale: tuple[float, float] | None) -> float:
    """A logit in [0, 1]: a sigmoid (strictly increasing until float64 saturates, |logit| > ~36), or linear
    between `scale`'s bounds, clipped (order is kept inside them)."""
    if scale is not None:
        low, high = scale
        return min(1.0, max(0.0, (logit - low) / (high - low)))
    if logit >= 0:  # the two branches keep exp from overflowing
        return 1.0 / (1.0 + math.exp(-logit))
    z = math.exp(logit)
    return z / (1.0 + z)


def _load(settings: RewardModelSettings) -> _Loaded:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from policies.loading import progress_bars, resolve_device

    ref = str(settings.folder)
    tokenizer = AutoTokenizer.from_pretrained(ref, local_files_only=True, trust_remote_code=False)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise PluginSettingsError(f"reward_model: the tokenizer of {ref} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    # Right padding keeps every real token's position as in an unpadded input (GPT-2's absolute positions
    # too), and the head reads the rightmost non-pad token, so a batched score equals the unbatched one.
    tokenizer.padding_side = "right"
    # The score is read at the end (last-token heads): a long input loses its start, not the response's end.
    tokenizer.truncation_side = "left"
    with progress_bars(False):
        model, info = AutoModelForSequenceClassification.from_pretrained(
            ref, local_files_only=True, trust_remote_code=False, use_safetensors=True, dtype="auto",
            output_loading_info=True)
    if info.get("missing_keys"):  # a head made up on loading would score noise
        raise PluginSettingsError(f"reward_model: {ref} lacks trained weights for "
                                  f"{', '.join(sorted(info['missing_keys'])[:3])}: it is not a reward model")
    # The head finds the last real token by pad id: it must be the id the tokenizer pads with, also for a
    # single input (without one it reads the very last token, which differs when pad is eos).
    model.config.pad_token_id = tokenizer.pad_token_id
    model.to(resolve_device(settings.device)).eval()
    chat = settings.chat_template and getattr(tokenizer, "chat_template", None) is not None
    return _Loaded(tokenizer, model, pick_label(model.config.num_labels, settings.label_index), chat)


def _render(loaded: _Loaded, item: JudgeItem) -> str:
    if loaded.chat:
        turns = [{"role": "user", "content": item.prompt}, {"role": "assistant", "content": item.response}]
        return str(loaded.tokenizer.apply_chat_template(turns, tokenize=False))
    return f"{item.prompt}\n\n{item.response}"


def _logits(loaded: _Loaded, texts: list[str], max_length: int) -> list[float]:
    import torch

    # A chat template writes its own bos; adding special tokens again would double it.
    enc = loaded.tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                           add_special_tokens=not loaded.chat, return_tensors="pt")
    enc = {k: v.to(loaded.model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    with torch.inference_mode():
        out = loaded.model(**enc).logits[:, loaded.label]
    return [float(x) for x in out.float().cpu().tolist()]


class RewardModelJudge(ScoresCompare):
    def __init__(self, settings: RewardModelSettings) -> None:
        self.settings = settings
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()  # one load, and one forward at a time, whoever calls

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        items = list(items)
        if not items:
            return []
        with self._lock:
            try:
                loaded = self._loaded = self._loaded or _load(self.settings)
            except Exception as err:  # a judge failure must not end the round
                return [Verdict.invalid("", failure_reason(err)) for _ in items]
            size = self.settings.batch_size
            return [v for start in range(0, len(items), size) for v in self._batch(loaded, items[start:start + size])]

    def _batch(self, loaded: _Loaded, items: list[JudgeItem]) -> list[Verdict]:
        try:
            logits = _logits(loaded, [_render(loaded, it) for it in items], self.settings.max_length)
        except Exception as err:  # e.g. out of memory: this batch is invalid, the others still count
            return [Verdict.invalid("", failure_reason(err)) for _ in items]
        return [self._verdict(x) for x in logits]

    def _verdict(self, logit: float) -> Verdict:
        if not math.isfinite(logit):
            return Verdict.invalid(repr(logit), f"reward model gave a non-finite logit ({logit!r})")
        return Verdict(score=to_unit(logit, self.settings.scale), valid=True, raw=repr(logit),
                       details={"logit": logit})

    def close(self) -> None:
        """Free the model (and cached GPU memory); a later `score` loads it again."""
        with self._lock:
            loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        device = str(loaded.model.device)
        del loaded
        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _whole(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PluginSettingsError(f"reward_model: {name} must be a whole number >= 1, got {value!r}")
    return value


def _scale(value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    bounds = tuple(value) if isinstance(value, list | tuple) else ()
    if (len(bounds) != 2 or any(isinstance(b, bool) or not isinstance(b, int | float) or not math.isfinite(b)
                                for b in bounds) or not bounds[0] < bounds[1]):
        raise PluginSettingsError(f"reward_model: scale must be [low, high] logits with low < high, got {value!r}")
    return float(bounds[0]), float(bounds[1])


def settings_of(path: object, batch_size: object, max_length: object, chat_template: object, scale: object,
                label_index: object, device: object) -> RewardModelSettings:
    """Checked settings, the model folder resolved and its config read (no torch: cheap at validation)."""
    if not isinstance(path, str) or not path:
        raise PluginSettingsError(f"reward_model: path must name a folder or a cached hub id, got {path!r}")
    if not isinstance(chat_template, bool):
        raise PluginSettingsError(f"reward_model: chat_template must be true or false, got {chat_template!r}")
    if label_index is not None and (isinstance(label_index, bool) or not isinstance(label_index, int)
                                    or label_index < 0):
        raise PluginSettingsError(f"reward_model: label_index must be a whole number >= 0, got {label_index!r}")
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise PluginSettingsError(f"reward_model: device must be cpu, cuda, cuda:N, mps or auto, got {device!r}")
    settings = RewardModelSettings(resolve_folder(path), _whole("batch_size", batch_size),
                                   _whole("max_length", max_length), chat_template, _scale(scale), label_index,
                                   device)
    _check_head(settings.folder, label_index)
    return settings


def requirements(settings: Mapping[str, Any]) -> list[str]:
    """What this machine lacks for a reward_model with `settings` (its registry `requires` hook, run by
    `tether validate` and a run's pre-flight): the model folder, and a head that fits `label_index`."""
    try:
        settings_of(settings.get("path"), 1, 1, True, None, settings.get("label_index"), "cpu")
    except PluginSettingsError as err:
        return [str(err)]
    return []


@JUDGES.register("reward_model", requires=requirements)
def reward_model(
    path: str,
    batch_size: int = 8,
    max_length: int = 1024,
    chat_template: bool = True,
    scale: Sequence[float] | None = None,
    label_index: int | None = None,
    device: str = "cpu",
) -> RewardModelJudge:
    """A local sequence-classification reward model, such as Skywork-Reward, scores each response.

    Settings: path (a folder or a hub id in the local cache), batch_size, max_length (tokens; longer
    inputs lose their start), chat_template (render user/assistant turns with the tokenizer's template
    when it has one, else "prompt\\n\\nresponse"), scale ([low, high]: logits mapped linearly to [0, 1]
    and clipped; default a sigmoid), label_index (which logit of a multi-logit head), device."""
    return RewardModelJudge(settings_of(path, batch_size, max_length, chat_template, scale, label_index, device))
