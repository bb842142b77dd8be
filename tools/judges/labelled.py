"""Labelled probes a user brings: read from a local JSONL, CSV or Parquet file, checked row by row.

Three kinds, told apart by their columns (or named by the caller):

- pairwise: `prompt, response_a, response_b, better` ('a' | 'b' | 'tie'), optional `category`.
  RewardBench-style `prompt, chosen, rejected` (optional `subset`, read as the category) is read too:
  `chosen` is the better answer, placed in slot A or B by a seeded draw, so a judge that favours a
  slot cannot pass for one that favours the chosen answer.
- pointwise: `prompt, response, score` (the known score, 0..1), optional `category`.
- violation: `prompt, response, violates` (true | false), optional `invariant` (the constitution's
  invariant id the label is about; absent: "violates some invariant") and `category`; these audit
  invariant detectors (tools/judges/detector_audit.py).

Columns other than these are ignored. Reading is bounded like every input tether reads
(guardrails/inputs.py: a line over `InputLimits.line_bytes`, a file over `InputLimits.file_bytes`, more
than MAX_LABELLED_PROBES records), and every error is one `LabelledProbeError` line naming the file,
the line (JSONL, CSV) or row (Parquet), the column and the fix. The path is read as given: a caller
reading a path someone else wrote confines it first (`guardrails.inputs.Inputs.locate`).
Stdlib only, plus pyarrow for Parquet (imported only for a Parquet file).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from guardrails.inputs import InputLimits, InputRefused, check_size, read_lines
from tether_types import EXIT_USAGE, TetherError, sha256_file
from tools.judges.base import Winner

ProbeKind = Literal["pairwise", "pointwise", "violation"]
SUFFIXES: tuple[str, ...] = (".jsonl", ".csv", ".parquet")
MAX_LABELLED_PROBES = 100_000
UNCATEGORISED = "uncategorised"
BUNDLED = Path(__file__).parent / "probes"  # package data (pyproject: tools.judges probes/*.jsonl)

# The columns each kind needs, as the errors name them.
REQUIRED: dict[str, tuple[str, ...]] = {
    "pairwise": ("prompt", "response_a", "response_b", "better"),
    "rewardbench": ("prompt", "chosen", "rejected"),
    "pointwise": ("prompt", "response", "score"),
    "violation": ("prompt", "response", "violates"),
}
_TRUE = frozenset({"true", "1", "yes", "y"})
_FALSE = frozenset({"false", "0", "no", "n"})


class LabelledProbeError(TetherError, ValueError):
    """A labelled probe file that cannot be used: one line naming the file, where in it, and the fix."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class PairProbe:
    prompt: str
    a: str
    b: str
    better: Winner
    category: str
    where: str  # "FILE line N" / "FILE row N": for messages about this probe


@dataclass(frozen=True)
class ScoreProbe:
    prompt: str
    response: str
    score: float
    category: str
    where: str


@dataclass(frozen=True)
class ViolationProbe:
    prompt: str
    response: str
    violates: bool
    invariant: str | None  # None: the label is "violates some invariant"
    category: str
    where: str


LabelledProbe = PairProbe | ScoreProbe | ViolationProbe


@dataclass(frozen=True)
class LabelledSet:
    """The probes of one file, all of one kind, with the file's sha256 so a report says what it ran on."""

    kind: ProbeKind
    source: str
    sha256: str
    probes: tuple[LabelledProbe, ...]
    rewardbench: bool = False  # read from prompt/chosen/rejected columns (slots drawn with `slot_seed`)
    slot_seed: int = 0

    def __len__(self) -> int:
        return len(self.probes)

    def categories(self) -> dict[str, int]:
        return dict(sorted(Counter(p.category for p in self.probes).items()))

    def pairs(self) -> list[PairProbe]:
        return [p for p in self.probes if isinstance(p, PairProbe)]

    def scores(self) -> list[ScoreProbe]:
        return [p for p in self.probes if isinstance(p, ScoreProbe)]

    def violations(self) -> list[ViolationProbe]:
        return [p for p in self.probes if isinstance(p, ViolationProbe)]


def bundled_probes(kind: Literal["pairwise", "violation"]) -> Path:
    """The probe file shipped with tether for `kind` (written by scripts/make_labelled_probes.py)."""
    return BUNDLED / f"{kind}.jsonl"


def read_labelled(path: Path, *, kind: ProbeKind | None = None, slot_seed: int = 0,
                  limits: InputLimits = InputLimits()) -> LabelledSet:
    """Every probe of a JSONL, CSV or Parquet file. `kind` None: told from the first record's columns.
    `slot_seed` draws the slot of a RewardBench-style `chosen` answer. LabelledProbeError on any problem."""
    path = Path(path)
    if kind is not None and kind not in get_args(ProbeKind):
        raise LabelledProbeError(f"unknown probe kind {kind!r}: use one of {', '.join(get_args(ProbeKind))}")
    if not path.is_file():
        raise LabelledProbeError(f"labelled probes: {path} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise LabelledProbeError(f"labelled probes: {path} is not a file tether reads as probes: use "
                                 f"{', '.join(SUFFIXES)}")
    rows: Iterator[tuple[str, dict[str, Any]]]
    digest = hashlib.sha256()
    try:
        if suffix == ".parquet":
            check_size(path, limits, f"labelled probes {path}")
            rows = _parquet_rows(path, limits)
        else:
            rows = (_jsonl_rows if suffix == ".jsonl" else _csv_rows)(path, limits, digest)
        probes, flavour = _parse_all(rows, path, kind, random.Random(f"tether-labelled-slots/{slot_seed}"))
        # A line format is hashed as its bytes are read (what was parsed is what is pinned); pyarrow
        # reads a Parquet file itself, so that one is hashed whole.
        sha = sha256_file(path) if suffix == ".parquet" else digest.hexdigest()
    except InputRefused as err:
        raise LabelledProbeError(str(err)) from None
    except OSError as err:
        raise LabelledProbeError(f"labelled probes: {path} cannot be read ({err.strerror or err})") from None
    if not probes:
        raise LabelledProbeError(f"labelled probes: {path} holds no probes: write one record a line (JSONL), a "
                                 "header and rows (CSV), or rows (Parquet)")
    found: ProbeKind = "violation" if flavour == "violation" else "pointwise" if flavour == "pointwise" else "pairwise"
    return LabelledSet(found, str(path), sha, tuple(probes), flavour == "rewardbench", slot_seed)


# -- rows of each format ---------------------------------------------------------------------------

def _decoded(path: Path, limits: InputLimits, digest: Any) -> Iterator[tuple[int, str]]:
    for number, raw in read_lines(path, limits, f"labelled probes {path}"):
        digest.update(raw)
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError:
            raise LabelledProbeError(f"labelled probes: {path} line {number} is not UTF-8 text: save the "
                                     "file as UTF-8") from None


def _jsonl_rows(path: Path, limits: InputLimits, digest: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, line in _decoded(path, limits, digest):
        text = line.lstrip("\ufeff") if number == 1 else line  # a BOM some editors write
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            raise LabelledProbeError(f"labelled probes: {path} line {number} is not JSON ({err.msg}): write "
                                     "one JSON object a line") from None
        if not isinstance(row, dict):
            raise LabelledProbeError(f"labelled probes: {path} line {number} is a JSON {type(row).__name__}, not "
                                     "an object: write one {\"prompt\": ..., ...} object a line")
        yield f"{path} line {number}", row


def _csv_rows(path: Path, limits: InputLimits, digest: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    lines = _decoded(path, limits, digest)
    # Record numbers are lines: a quoted field may span several, so track where each record started.
    starts: list[int] = []

    def feed() -> Iterator[str]:
        for number, line in lines:
            starts.append(number)
            yield line.lstrip("\ufeff") if number == 1 else line

    reader = csv.reader(feed())
    try:
        header = next(reader, None)
        if header is None:
            return
        columns = [c.strip() for c in header]
        consumed = len(starts)
        for values in reader:
            first, consumed = starts[consumed], len(starts)
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(columns):
                raise LabelledProbeError(f"labelled probes: {path} line {first} has {len(values)} fields, the "
                                         f"header {len(columns)}: quote fields that hold commas or newlines")
            yield f"{path} line {first}", dict(zip(columns, values, strict=True))
    except csv.Error as err:
        raise LabelledProbeError(f"labelled probes: {path} line {starts[-1] if starts else 1} is not valid CSV "
                                 f"({err})") from None


def _parquet_rows(path: Path, limits: InputLimits) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]  # only for Parquet (installed with datasets)

    try:
        file = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several kinds for "not a Parquet file"
        raise LabelledProbeError(f"labelled probes: {path} is not a Parquet file pyarrow can read "
                                 f"({type(err).__name__}: {err})") from None
    if file.metadata.num_rows > MAX_LABELLED_PROBES:
        raise LabelledProbeError(f"labelled probes: {path} holds {file.metadata.num_rows} rows, more than "
                                 f"{MAX_LABELLED_PROBES}: audit a sample")
    number = 0
    for batch in file.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            # A binary record is bounded like a line: the size of its values written as JSON.
            size = len(json.dumps(row, default=str, ensure_ascii=False).encode("utf-8"))
            if size > limits.line_bytes:
                raise LabelledProbeError(f"labelled probes: {path} row {number} is {size} bytes, over the "
                                         f"{limits.line_bytes} a record may hold: split it, or raise the limit")
            yield f"{path} row {number}", row


# -- records -> probes -----------------------------------------------------------------------------

def _parse_all(rows: Iterator[tuple[str, dict[str, Any]]], path: Path, kind: ProbeKind | None,
               rng: random.Random) -> tuple[list[LabelledProbe], str]:
    probes: list[LabelledProbe] = []
    flavour = ""
    for where, row in rows:
        if not flavour:
            flavour = _flavour(row, where, kind)
        probes.append(_probe(flavour, row, where, rng))
        if len(probes) > MAX_LABELLED_PROBES:
            raise LabelledProbeError(f"labelled probes: {path} holds more than {MAX_LABELLED_PROBES} probes: "
                                     "audit a sample")
    return probes, flavour


def _flavour(row: Mapping[str, Any], where: str, kind: ProbeKind | None) -> str:
    """Which column set the file uses, from its first record: pairwise, rewardbench, pointwise or violation."""
    keys = set(row)
    told = ("rewardbench" if {"chosen", "rejected"} & keys and not {"response_a", "response_b"} & keys
            else "pairwise" if {"response_a", "response_b", "better"} & keys
            else "violation" if "violates" in keys else "pointwise" if "score" in keys else None)
    if kind is None and told is None:
        expected = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in REQUIRED.items())
        raise LabelledProbeError(f"labelled probes: {where} has the columns {', '.join(sorted(keys)) or '(none)'}, "
                                 f"which match no probe kind: give the columns of one ({expected})")
    if kind is None:
        return str(told)
    if kind == "pairwise":
        return "rewardbench" if told == "rewardbench" else "pairwise"
    return kind


def _probe(flavour: str, row: Mapping[str, Any], where: str, rng: random.Random) -> LabelledProbe:
    missing = [c for c in REQUIRED[flavour] if row.get(c) is None]
    if missing:
        raise LabelledProbeError(f"labelled probes: {where} has no {', '.join(repr(c) for c in missing)} "
                                 f"({flavour} probes need {', '.join(REQUIRED[flavour])}): add the column, or "
                                 "drop the record")
    prompt = _text(row, "prompt", where)
    if not prompt.strip():
        raise LabelledProbeError(f"labelled probes: {where} has an empty 'prompt': every probe needs its prompt")
    if flavour == "rewardbench":
        chosen, rejected = _text(row, "chosen", where), _text(row, "rejected", where)
        category = _category(row, where, "subset")
        if rng.random() < 0.5:
            return PairProbe(prompt, chosen, rejected, "a", category, where)
        return PairProbe(prompt, rejected, chosen, "b", category, where)
    category = _category(row, where, "category")
    if flavour == "pairwise":
        return PairProbe(prompt, _text(row, "response_a", where), _text(row, "response_b", where),
                         _better(row["better"], where), category, where)
    response = _text(row, "response", where)
    if flavour == "pointwise":
        return ScoreProbe(prompt, response, _score(row["score"], where), category, where)
    invariant = row.get("invariant")
    if invariant is not None and not isinstance(invariant, str):
        raise LabelledProbeError(f"labelled probes: {where} has a non-text 'invariant' ({invariant!r}): write the "
                                 "invariant's id, e.g. \"refuse-serious-harm\"")
    return ViolationProbe(prompt, response, _flag(row["violates"], where), (invariant or "").strip() or None,
                          category, where)


def _text(row: Mapping[str, Any], column: str, where: str) -> str:
    value = row[column]
    if isinstance(value, str):
        return value
    shape = "a list (chat messages?)" if isinstance(value, list) else f"a {type(value).__name__}"
    raise LabelledProbeError(f"labelled probes: {where} column '{column}' is {shape}, not text: write the reply "
                             "as one string (for chat messages, the final assistant turn)")


def _category(row: Mapping[str, Any], where: str, column: str) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return UNCATEGORISED
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise LabelledProbeError(f"labelled probes: {where} column '{column}' is {value!r}: write a category name")
    return str(value).strip()


def _better(value: Any, where: str) -> Winner:
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in ("a", "b", "tie"):
        return text  # type: ignore[return-value]
    raise LabelledProbeError(f"labelled probes: {where} column 'better' is {value!r}: write 'a', 'b' or 'tie'")


def _score(value: Any, where: str) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise LabelledProbeError(f"labelled probes: {where} column 'score' is {value!r}: write the known score as "
                                 "a number from 0 to 1")
    return number


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise LabelledProbeError(f"labelled probes: {where} column 'violates' is {value!r}: write true or false")


__all__ = [
    "MAX_LABELLED_PROBES", "LabelledProbe", "LabelledProbeError", "LabelledSet", "PairProbe", "ProbeKind",
    "ScoreProbe", "ViolationProbe", "bundled_probes", "read_labelled",
]
