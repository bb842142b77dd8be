"""The tiny world's judge-audit probes: held-out prompts with reference answers in every style its
families write (good, wrong, over-refusing, rude, padded), for `tether judge audit`."""

from __future__ import annotations

import random

from tether_types import Prompt
from tools.worlds.base import TaskSet
from tools.worlds.references import AuditProbes, Probe
from tools.worlds.tiny.detectors import pad
from tools.worlds.tiny.families import get_family


def build_probes(taskset: TaskSet, seed: int = 0, n: int = 48, alternates: int = 5) -> AuditProbes:
    """`n` held-out prompts (all of them if fewer), balanced across families (round-robin over a
    seeded shuffle of each), with reference answers from the families' own `responses`. A family
    without a "padded" style gets its good answer wrapped in the tiny world's filler (`pad`)."""
    if n < 1:
        raise ValueError(f"the probe set needs at least one prompt, got n={n}")
    queues: dict[str, list[Prompt]] = {}
    for family in taskset.families:
        pool = list(taskset.by_family(family, "heldout"))
        random.Random(f"tether-audit/{seed}/{family}").shuffle(pool)
        if pool:
            queues[family] = pool
    chosen: list[Prompt] = []
    while len(chosen) < n and any(queues.values()):
        for family in sorted(queues):
            if queues[family] and len(chosen) < n:
                chosen.append(queues[family].pop(0))
    return AuditProbes(seed, tuple(_probe(p, seed, alternates) for p in chosen))


def _probe(prompt: Prompt, seed: int, alternates: int) -> Probe:
    rng = random.Random(f"tether-audit/{seed}/{prompt.id}")
    family = get_family(prompt.family)
    references = dict(family.responses(prompt, rng))
    if "good" not in references:
        raise ValueError(f"family {prompt.family!r} writes no 'good' response for {prompt.id}")
    if "padded" not in references:
        references["padded"] = pad(references["good"], rng)
    extra = tuple(pair for _ in range(alternates) for pair in family.responses(prompt, rng))
    return Probe(prompt, references, extra)
