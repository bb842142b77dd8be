"""Rows of a local data file, read with Hugging Face `datasets` from local paths only (nothing is
downloaded): JSONL / JSON, CSV, Parquet, or a folder written by `Dataset.save_to_disk`.

`load_dataset` builds into a temporary cache that is deleted afterwards and keeps the rows in memory,
so reading a file writes nothing that outlives the call (and nothing into the workspace).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tools.worlds.base import WorldError

BUILDERS: dict[str, str] = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
MAX_BYTES = 512 * 1024 * 1024  # a prompt set is text: anything larger is a wrong path, not a data set
MAX_ROWS = 1_000_000

Row = dict[str, Any]


def resolve(path: str, root: Path | None) -> Path:
    """`path` as given when absolute (or `~`), else relative to `root` (the workspace)."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or root is None else Path(root) / candidate


def read_rows(path: Path, label: str) -> list[Row]:
    """Every row of the file or `save_to_disk` folder at `path`; WorldError naming `label` and the fix
    when it is missing, too large, of an unknown kind, or does not parse."""
    if not path.exists():
        raise WorldError(f"{label}: {path} does not exist")
    size = _size(path)
    if size > MAX_BYTES:
        raise WorldError(f"{label}: {path} is {size / 2**20:.0f} MiB, more than the {MAX_BYTES // 2**20} MiB a "
                         "prompt set may hold")
    if not path.is_dir() and path.suffix.lower() not in BUILDERS:
        raise WorldError(f"{label}: {path} is not a data file tether reads (use {', '.join(BUILDERS)} or a "
                         "folder written by Dataset.save_to_disk)")
    try:
        rows = _load(path)
    except WorldError:
        raise
    except Exception as err:  # datasets / pyarrow raise many kinds; each means "this file does not parse"
        cause = err.__cause__ or err
        raise WorldError(f"{label}: {path} could not be read: {type(cause).__name__}: {cause}") from None
    if len(rows) > MAX_ROWS:
        raise WorldError(f"{label}: {path} holds {len(rows)} rows, more than {MAX_ROWS}")
    return rows


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _load(path: Path) -> list[Row]:
    import datasets  # heavy (pyarrow, pandas): only when a data world reads its files

    bars, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # a parse error is raised, not also logged
    try:
        if path.is_dir():
            loaded = datasets.load_from_disk(str(path), keep_in_memory=True)
            if isinstance(loaded, datasets.DatasetDict):
                if len(loaded) != 1:
                    raise WorldError(f"{path} holds the splits {', '.join(loaded)}: save one of them "
                                     "(ds['train'].save_to_disk(...)) or point at a file")
                loaded = next(iter(loaded.values()))
            return list(loaded.to_list())
        with tempfile.TemporaryDirectory(prefix="tether-data-") as cache:
            ds = datasets.load_dataset(BUILDERS[path.suffix.lower()], data_files=str(path), split="train",
                                       cache_dir=cache, keep_in_memory=True)
            return list(ds.to_list())
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()
