"""The switchable pool: named plug-ins in order, one slot in force per round. The run's judges (judge.name,
then judge.pool) and its pair strategies (pairs.strategy, then pairs.pool) are each one, moved forward by
the switch_judge and switch_pairs interventions.

The slot is stored one way for both: it is the number of earlier rounds whose outcome is the pool's
`switched` outcome (written with the switch's decision, in one transaction, so a slot survives a crash and
a resume). A run made before this was so reads the same: its judge switches have always written
`judge_switched` with the slot (the `runs.judge_slot` column those runs carry is no longer read).

A pool builds the plug-in of a slot once and keeps it until the slot (or the key it is built for, e.g. the
constitution a judge reads) moves on; then it closes the one before (a judge may hold a model)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from memory import RoundRecord
from tools.judges import JUDGES, Judge
from tools.pairs import PAIR_STRATEGIES, PairStrategy
from tools.registry import Built, Registry

if TYPE_CHECKING:
    from agent.config import TetherConfig

T = TypeVar("T")
JUDGE_SWITCHED = "judge_switched"
PAIRS_SWITCHED = "pairs_switched"


class PluginSpec(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def settings(self) -> Mapping[str, Any]: ...


class SwitchablePool(Generic[T]):
    """Plug-ins of one registry in slots 0..n-1; `switched` is the round outcome that moves the run one on."""

    def __init__(self, registry: Registry[T], slots: Sequence[PluginSpec], switched: str) -> None:
        if not slots:
            raise ValueError(f"a {registry.kind} pool needs at least one {registry.kind}")
        self.registry, self.slots, self.switched = registry, tuple(slots), switched
        self._held: tuple[tuple[int, Hashable], Built[T]] | None = None

    def __len__(self) -> int:
        return len(self.slots)

    def slot(self, rounds: Iterable[RoundRecord], before: int | None = None) -> int:
        """The slot in force on round `before` (None: on the run's next round): how many earlier rounds
        moved the pool on."""
        return sum(r.outcome == self.switched for r in rounds if before is None or r.round < before)

    def label(self, slot: int) -> str:
        """The slot's plug-in by name, with its slot when the pool holds that name twice. A slot past the end is
        the last, here and in `build` (a resumed run's pool may have shrunk)."""
        slot = min(slot, len(self.slots) - 1)
        name = self.slots[slot].name
        return name if sum(s.name == name for s in self.slots) == 1 else f"{name}#{slot}"

    def next_label(self, slot: int) -> str | None:
        """The label of the slot after `slot`; None when the pool has none left."""
        return self.label(slot + 1) if slot + 1 < len(self.slots) else None

    def build(self, slot: int, key: Hashable = None, **context: Any) -> Built[T]:
        """The slot's plug-in, built with `context` (not recorded) the first time it is asked for with this
        `key`, and kept until another slot or key is asked for."""
        slot = min(slot, len(self.slots) - 1)
        if self._held is None or self._held[0] != (slot, key):
            self.close()
            spec = self.slots[slot]
            self._held = ((slot, key), self.registry.build(spec.name, spec.settings, **context))
        return self._held[1]

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None and hasattr(held[1].plugin, "close"):
            held[1].plugin.close()


def judge_pool(config: TetherConfig) -> SwitchablePool[Judge]:
    return SwitchablePool(JUDGES, config.judge.slots(), JUDGE_SWITCHED)


def pair_pool(config: TetherConfig) -> SwitchablePool[PairStrategy]:
    return SwitchablePool(PAIR_STRATEGIES, config.pairs.slots(), PAIRS_SWITCHED)
