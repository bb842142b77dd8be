"""What one module brings to the controller: an `Intervention` (a graph node the controller may route a
round to, with its trigger rules, its config section and its report marker) or a `Trigger` (rules and
a config section, no node: it picks among the interventions, e.g. a blind spot or a regression).

A spec is plain data; agent/interventions/registry.py registers it by name and the controller's rules,
the graph, the `controller:` config section and the report are built from the registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from agent.controller.vocabulary import Policy, Proposer, Rule
from agent.sections.base import _Section
from agent.sections.controller import ControllerSettings

C = TypeVar("C", bound=_Section)
# A LangGraph node: (RoundState, Runtime[RunContext]) -> state update. Every intervention's node records its
# outcome on the round, in the same transaction as its effect, and leads to the next round.
Node = Callable[..., dict[str, Any]]
# What an intervention's rules read from the store, as ControllerInput fields: (RunContext, round) -> fields.
Observe = Callable[[Any, int], Mapping[str, Any]]


@dataclass(frozen=True)
class Marker:
    """How `tether report` marks the rounds the intervention was chosen: a vertical line in this style."""

    color: str
    linestyle: str | tuple[float, tuple[float, ...]] = "-"

    def style(self) -> dict[str, Any]:
        return {"color": self.color, "linestyle": self.linestyle}


@dataclass(frozen=True)
class Plateau:
    """The intervention breaks a held-out plateau: when held-out scores stop rising, the plateau interventions
    are tried in `order` (the first that is ready and untried since the last gain), and the run stops only
    after each enabled one was tried. `why(p, plateau)` is the rationale, from the plateau's own."""

    order: int
    why: Callable[[Policy, str], str]


def _section(name: str, section: type[C] | None, cfg: ControllerSettings) -> C:
    if section is None:
        raise LookupError(f"'{name}' has no section under controller:")
    return cast(C, getattr(cfg, name))


@dataclass(frozen=True, kw_only=True)
class Trigger(Generic[C]):
    """Rules with a config section of their own and no node: they choose among the interventions."""

    name: str  # its section under controller: (controller.<name>)
    order: int  # where its section is listed among the plug-ins' (lower first)
    section: type[C] | None = None  # its thresholds, with their defaults and bounds
    rules: tuple[Rule, ...] = ()
    proposers: tuple[Proposer, ...] = ()

    def settings(self, cfg: ControllerSettings) -> C:
        """Its section of a controller config."""
        return _section(self.name, self.section, cfg)


@dataclass(frozen=True, kw_only=True)
class Intervention(Generic[C]):
    """An action the controller may choose: its node, what calls for it, its settings and how it is drawn."""

    name: str  # the action, the graph node, and its section under controller:
    order: int  # where it is listed (controller.interventions, the graph, the report's legend; lower first)
    node: Node
    marker: Marker
    section: type[C] | None = None
    rules: tuple[Rule, ...] = ()  # rules of the controller's order that may choose it
    proposers: tuple[Proposer, ...] = ()  # soft triggers that propose it
    on_by_default: bool = True  # in controller.interventions unless the config lists them
    forward_only: bool = False  # moves through a finite pool: exempt from max_repeats and cooldown
    advisable: bool = False  # the LLM advisor may propose it
    ready: Callable[[Policy], bool] | None = None  # whether it has anything to work on (None: always)
    plateau: Plateau | None = None
    observe: Observe | None = None  # the ControllerInput fields its rules read, from the store

    def settings(self, cfg: ControllerSettings) -> C:
        """Its section of a controller config."""
        return _section(self.name, self.section, cfg)

    def is_ready(self, p: Policy) -> bool:
        return self.ready is None or self.ready(p)
