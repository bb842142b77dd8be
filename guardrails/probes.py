"""Invariant probe sets: the prompts an invariant is checked on, and the digest that pins them.

An invariant's probes are, in order of precedence: its own probe file (`probes:` in the constitution,
a JSONL of {"prompt": ...} relative to the workspace, confined by guardrails/inputs.py), the prompts
the run's world gives it, or the evaluation's held-out slice. A file is pinned by the sha256 of its
bytes, other sets by the digest of their prompt list; the pins are recorded when a run starts and
every later check compares them.
Reading a probe file is bounded and stdlib-only (no torch, no judges).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from guardrails.constitution import Constitution
from guardrails.inputs import InputLimits, InputRefused, Inputs, read_lines
from guardrails.statements import digest
from tether_types import EXIT_USAGE, TetherError

ProbeSource = Literal["file", "world", "heldout"]
MAX_PROBE_BYTES = 16 * 1024 * 1024
MAX_PROBES = 10_000


class ProbeFileError(TetherError, ValueError):
    """A probe file is missing, too large or malformed: one line naming the file and the line."""
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class ProbeSet:
    prompts: tuple[str, ...]
    sha256: str
    source: ProbeSource
    path: str | None = None  # the file as the constitution names it

    @staticmethod
    def of_prompts(prompts: Sequence[str], source: ProbeSource) -> ProbeSet:
        return ProbeSet(tuple(prompts), digest(list(prompts)), source)

    def label(self) -> str:
        return {"file": f"file {self.path}", "world": "the world's probes",
                "heldout": "the held-out slice"}[self.source]


def read_probe_file(path: Path, name: str, limits: InputLimits = InputLimits()) -> ProbeSet:
    """The probes of a JSONL file, one {"prompt": "..."} object a line (blank lines skipped), pinned by
    the sha256 of its bytes, read a bounded line at a time (`limits`, and at most MAX_PROBE_BYTES).
    `name` is how the constitution writes the path."""
    bounded = InputLimits(limits.line_bytes, min(limits.file_bytes, MAX_PROBE_BYTES))
    sha = hashlib.sha256()
    prompts: list[str] = []
    try:
        for n, raw in read_lines(path, bounded, f"probe file {name}"):
            sha.update(raw)
            line = raw.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise ProbeFileError(f"probe file {name} line {n} is not JSON") from None
            text = row.get("prompt") if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise ProbeFileError(f'probe file {name} line {n} has no "prompt" text')
            prompts.append(text.strip())
            if len(prompts) > MAX_PROBES:
                raise ProbeFileError(f"probe file {name} holds more than {MAX_PROBES} probes")
    except InputRefused as err:
        raise ProbeFileError(str(err)) from None
    except OSError as err:
        raise ProbeFileError(f"probe file {name} cannot be read ({err.strerror or err})") from None
    if not prompts:
        raise ProbeFileError(f"probe file {name} holds no probes")
    return ProbeSet(tuple(prompts), sha.hexdigest(), "file", name)


def resolve_probe_sets(
    constitution: Constitution, inputs: Inputs, heldout: Sequence[str],
    world_probes: Callable[[str], Sequence[str] | None],
) -> tuple[dict[str, ProbeSet], list[str]]:
    """Each invariant's probe set, and a problem per invariant whose set cannot be read (left out). A
    probe file is confined to where `inputs` allows (relative: to the workspace)."""
    sets: dict[str, ProbeSet] = {}
    problems: list[str] = []
    for inv in constitution.invariants:
        if inv.probes is not None:
            try:
                file = inputs.locate(inv.probes, f"probe file {inv.probes}")
                sets[inv.id] = read_probe_file(file, inv.probes, inputs.limits)
            except (InputRefused, ProbeFileError) as err:
                problems.append(f"invariant '{inv.id}': {err}")
            continue
        try:
            given = world_probes(inv.id)
        except ValueError as err:  # a world's probe file it cannot read (tools.worlds.WorldError)
            problems.append(f"invariant '{inv.id}': {err}")
            continue
        sets[inv.id] = (ProbeSet.of_prompts(list(heldout), "heldout") if given is None
                        else ProbeSet.of_prompts(list(given), "world"))
    return sets, problems


def unknown_invariants(constitution: Constitution, named: Iterable[str], where: str) -> list[str]:
    """A problem for each invariant id `where` names (e.g. a world's probe map) that the constitution does not
    have, naming that id: its probes would be read for nothing, and the invariant it was meant for checked on
    other probes (whose problem then names that other invariant, never the typo)."""
    ids = [inv.id for inv in constitution.invariants]
    problems = []
    for name in named:
        if name in ids:
            continue
        close = difflib.get_close_matches(name, ids, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        problems.append(f"{where} gives probes to invariant '{name}', which is not an invariant of constitution "
                        f"'{constitution.name}' (its invariants: {', '.join(ids)}){hint}")
    return problems


def pins(sets: dict[str, ProbeSet]) -> dict[str, dict[str, object]]:
    """What a run records when it starts, per invariant: where its probes come from, how many, the digest."""
    return {inv: {"source": s.source, "path": s.path, "n": len(s.prompts), "sha256": s.sha256}
            for inv, s in sorted(sets.items())}


def changed_pins(pinned: dict[str, object], sets: dict[str, ProbeSet]) -> list[str]:
    """Invariants whose probe set differs from the one pinned when the run started, with how."""
    changed = []
    for inv, now in sorted(sets.items()):
        was = pinned.get(inv)
        old = was.get("sha256") if isinstance(was, dict) else None
        if old != now.sha256:
            changed.append(f"'{inv}' ({now.label()}: sha256 {str(old)[:12]} pinned, {now.sha256[:12]} now)")
    return changed
