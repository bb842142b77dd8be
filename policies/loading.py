"""Loading tokenizers, base models and (verified) LoRA adapters.

Every model goes through ``from_pretrained``: a local directory (the embedded tiny model) or a
Hugging Face hub id. Adapters are only ever applied after their SHA-256 has been checked, from the
exact bytes that were hashed.

Model files are data, never code: ``trust_remote_code=False`` on every call (a config's ``auto_map``
cannot import a ``modeling_*.py`` shipped next to the weights), and base weights load only from
safetensors (``use_safetensors=True``), so a ``pytorch_model.bin`` is never unpickled.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from policies.adapters import AdapterIntegrityError, read_verified_adapter
from tether_types import AdapterRef

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


@contextmanager
def known_deprecations_silenced() -> Iterator[None]:
    """Hide deprecation warnings that PEFT 0.21 / TRL 1.16 trigger inside transformers 5.23
    (``model.is_gradient_checkpointing``) and that callers cannot act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        yield


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Temporarily switch the tqdm bars of transformers / huggingface_hub / datasets on or off (datasets'
    only where it is installed: training needs it, loading and generating do not)."""
    from transformers.utils import logging as hf_logging

    try:
        import datasets
        from datasets.utils.tqdm import are_progress_bars_disabled
    except ImportError:
        datasets = None
    hf_before = hf_logging.is_progress_bar_enabled()
    ds_before = datasets is not None and not are_progress_bars_disabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    if datasets is not None:
        (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if hf_before else hf_logging.disable_progress_bar)()
        if datasets is not None:
            (datasets.enable_progress_bars if ds_before else datasets.disable_progress_bars)()


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> ``cuda`` if available else ``cpu``; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    """``"auto"`` (the checkpoint's dtype) or a named torch dtype."""
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(
            f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(_DTYPES)}"
        ) from None


def load_tokenizer(model_ref: str) -> PreTrainedTokenizerBase:
    """Tokenizer with ``padding_side="left"`` (for batched generation); pad token falls back to eos."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_ref), trust_remote_code=False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {model_ref!r} has neither a pad token nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(
    model_ref: str,
    device: torch.device | str,
    dtype: str | torch.dtype = "auto",
    *,
    progress: bool = False,
) -> PreTrainedModel:
    """The base causal LM via ``from_pretrained`` (local path or hub id), on ``device``, in eval mode.

    ``dtype="auto"`` keeps the checkpoint's dtype. Loading bars are hidden unless ``progress``.
    A model with only pickle weights (``pytorch_model.bin``) is refused with an ``OSError``.
    """
    with progress_bars(progress):
        model = AutoModelForCausalLM.from_pretrained(
            str(model_ref), dtype=resolve_dtype(dtype), trust_remote_code=False, use_safetensors=True
        )
    model.to(resolve_device(device))
    model.eval()
    return model


def lora_config_from_dict(data: dict[str, Any], inference_mode: bool = True) -> LoraConfig:
    """A ``LoraConfig`` from the (verified) contents of ``adapter_config.json``."""
    from peft import LoraConfig, PeftConfig

    config = PeftConfig.from_peft_type(**data)
    if not isinstance(config, LoraConfig):
        raise AdapterIntegrityError(f"adapter is {type(config).__name__}, not a LoRA adapter")
    config.inference_mode = inference_mode
    return config


def apply_adapter_weights(
    model: PeftModel, state_dict: dict[str, torch.Tensor], adapter_name: str
) -> None:
    """Load a saved adapter state dict into ``model``'s adapter ``adapter_name``; every key must match."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state_dict, adapter_name=adapter_name)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in getattr(result, "missing_keys", []) or [] if f".{adapter_name}." in k]
    if unexpected or missing:
        raise AdapterIntegrityError(
            f"adapter weights do not fit the model (adapter {adapter_name!r}): "
            f"unexpected keys {unexpected[:5]}, missing keys {missing[:5]}"
        )


def attach_adapter(model: PreTrainedModel | PeftModel, adapter: AdapterRef) -> PeftModel:
    """Verify ``adapter`` and add it to ``model`` under the name ``adapter.id``.

    ``model`` may be a plain ``PreTrainedModel`` (it is wrapped in a ``PeftModel``, which injects the
    LoRA layers in place) or an existing ``PeftModel`` (the adapter is added next to the others).
    The active adapter is left unchanged on an existing ``PeftModel``.
    """
    from peft import PeftModel, get_peft_model
    from safetensors.torch import load as load_safetensors

    verified = read_verified_adapter(adapter.path, adapter.sha256)
    state_dict = load_safetensors(verified.weights)
    config = lora_config_from_dict(verified.config)
    # Injected layers start as the identity (lora_B = 0) until the verified weights are copied in.
    config.init_lora_weights = True
    fresh = not isinstance(model, PeftModel)
    with known_deprecations_silenced():
        if fresh:
            model = get_peft_model(model, config, adapter_name=adapter.id)
        else:
            model.add_adapter(adapter.id, config)
    try:
        apply_adapter_weights(model, state_dict, adapter.id)
    except Exception:
        if fresh:
            model.unload()  # strips the injected LoRA layers from the base model again
        else:
            model.delete_adapter(adapter.id)
        raise
    model.eval()
    return model


def load_policy(
    model_ref: str, adapter: AdapterRef | None, device: torch.device | str, dtype: str = "auto"
) -> PreTrainedModel | PeftModel:
    """The base model, or a ``PeftModel`` with the verified ``adapter`` applied and active."""
    model = load_base_model(model_ref, device, dtype)
    if adapter is None:
        return model
    peft_model = attach_adapter(model, adapter)
    peft_model.set_adapter(adapter.id, inference_mode=True)
    peft_model.to(resolve_device(device))
    peft_model.eval()
    return peft_model
