"""Rows of a local data file, read with Hugging Face `datasets` from local paths only (nothing is
downloaded): JSONL / JSON, CSV, Parquet, or a folder written by `Dataset.save_to_disk`.

Every file is confined first (guardrails/inputs.py: inside the workspace or a data root, never a key
folder, links followed), and its size bounded: line formats are scanned a bounded line at a time before
`datasets` parses them (no line over `inputs.max_line_bytes` is ever held whole), binary ones are
bounded by `inputs.max_file_bytes` and their records checked after loading. A file that changes
between the scan and the load is refused. `load_dataset` builds into a temporary cache that is deleted
afterwards and keeps the rows in memory, so reading a file writes nothing that outlives the call (and
nothing into the workspace).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from guardrails.inputs import InputLimits, InputRefused, Inputs, check_size, confine, read_lines
from tools.worlds.base import WorldError

BUILDERS: dict[str, str] = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
LINE_FORMATS = frozenset({".jsonl", ".json", ".csv"})  # scanned line by line before parsing
MAX_ROWS = 1_000_000
STATE_BYTES = 1024 * 1024  # a save_to_disk folder's state.json lists a few file names

Row = dict[str, Any]


def read_rows(name: str, label: str, inputs: Inputs) -> tuple[Path, list[Row]]:
    """(the file, every row of it) for the file or `save_to_disk` folder a setting names (relative: to
    the workspace); WorldError naming `label`, the file and the fix when it is outside where a run may
    read, missing, too large, of an unknown kind, or does not parse."""
    try:
        path = inputs.locate(name, label)
        if not path.exists():
            raise WorldError(f"{label}: {path} does not exist")
        if not path.is_dir() and path.suffix.lower() not in BUILDERS:
            raise WorldError(f"{label}: {path} is not a data file tether reads (use {', '.join(BUILDERS)} or a "
                             "folder written by Dataset.save_to_disk)")
        before = _identity(path)
        if path.is_dir():
            _confine_folder(path, inputs, label)
        check_size(path, inputs.limits, label)
        line_format = not path.is_dir() and path.suffix.lower() in LINE_FORMATS
        if line_format:
            for _ in read_lines(path, inputs.limits, label):
                pass
        rows = _parse(path, label)
        if not line_format:
            _check_records(rows, path, inputs.limits, label)
        if _identity(path) != before:
            raise WorldError(f"{label}: {path} changed while it was read; read it again when it is written")
    except InputRefused as err:
        raise WorldError(str(err)) from None
    if len(rows) > MAX_ROWS:
        raise WorldError(f"{label}: {path} holds {len(rows)} rows, more than {MAX_ROWS}")
    return path, rows


def _parse(path: Path, label: str) -> list[Row]:
    try:
        return _load(path)
    except WorldError:
        raise
    except Exception as err:  # datasets / pyarrow raise many kinds; each means "this file does not parse"
        cause = err.__cause__ or err
        raise WorldError(f"{label}: {path} could not be read: {type(cause).__name__}: {cause}") from None


def _identity(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def _confine_folder(folder: Path, inputs: Inputs, label: str) -> None:
    """Every entry of a save_to_disk folder, and every data file its state.json names (`datasets` joins
    those names to the folder, so "../x" would leave it), confined like the folder itself."""
    allowed = (inputs.workspace, *inputs.roots)
    for top, dirs, files in os.walk(folder):
        for entry in (*dirs, *files):
            confine(Path(top) / entry, allowed, inputs.keys_dirs, label)
        if "state.json" in files:
            state = Path(top) / "state.json"
            check_size(state, InputLimits(STATE_BYTES, STATE_BYTES), label)
            for data_file in _data_files(state, label):
                confine(Path(top) / data_file, allowed, inputs.keys_dirs, label)


def _data_files(state: Path, label: str) -> list[str]:
    try:
        listed = json.loads(state.read_bytes()).get("_data_files", [])
        return [str(f["filename"]) for f in listed]
    except (ValueError, AttributeError, TypeError, KeyError):
        raise WorldError(f"{label}: {state} is not a save_to_disk state file") from None


def _check_records(rows: list[Row], path: Path, limits: InputLimits, label: str) -> None:
    """A binary file's rows against the line limit: a record is the size of its values written as JSON."""
    for number, row in enumerate(rows, start=1):
        size = len(json.dumps(row, default=str, ensure_ascii=False).encode("utf-8"))
        if size > limits.line_bytes:
            raise InputRefused(f"{label}: {path} row {number} is {size} bytes, over the {limits.line_bytes} an "
                               "input record may hold (inputs.max_line_bytes): split the record, or raise the limit")


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
