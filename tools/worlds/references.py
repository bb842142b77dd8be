"""Reference probes: held-out prompts with an answer per style, what a world with reference answers
(`tools.worlds.AuditProbeSource`, e.g. the tiny world) gives `tether judge audit` (tools/judges/audit.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from tether_types import Prompt


@dataclass(frozen=True)
class Probe:
    """A held-out prompt with reference answers: style -> text ("good", "wrong", "padded", and
    whatever other styles the family writes), plus extra (style, text) draws used to find an
    equally correct answer to set against the policy's."""

    prompt: Prompt
    references: Mapping[str, str]
    alternates: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AuditProbes:
    seed: int
    probes: tuple[Probe, ...]

    @property
    def prompts(self) -> list[Prompt]:
        return [p.prompt for p in self.probes]

    def families(self) -> dict[str, int]:
        return dict(sorted(Counter(p.prompt.family for p in self.probes).items()))

    def __len__(self) -> int:
        return len(self.probes)
