"""The registries of the controller's plug-ins: interventions and triggers, one module each.

A built-in module of this package registers a factory that returns its spec, as tools' plug-ins do:

    @INTERVENTIONS.register("switch_judge")
    def spec() -> Intervention[SwitchJudgeConfig]:
        \"\"\"Move the run to the next judge of judge.pool.\"\"\"
        return SWITCH_JUDGE

and the package imports every module of its folder (agent/interventions/__init__.py), so a new one is one
file. An installed package declares the same factory as an entry point in the `tether.interventions` or
`tether.triggers` group. The first lookup loads those and freezes both registries: the graph, the
controller's rules, the `controller:` config section and the report are built once, from what is here
then. An unknown name fails with a suggestion (tools/registry.py).

A plug-in module is imported while the config is being built: it imports the run's context (agent/run/context.py,
which needs the config) and langgraph only for its type hints, under `if TYPE_CHECKING:`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from agent.controller.vocabulary import Proposer, Roster, Rule
from agent.interventions.spec import Intervention, Trigger
from tools.registry import Registry, UnknownPluginError

INTERVENTIONS: Registry[Intervention[Any]] = Registry("intervention")
TRIGGERS: Registry[Trigger[Any]] = Registry("controller trigger")
# The controller's own actions: no plug-in may take their names.
CORE_ACTIONS = ("train", "skip", "stop")

S = TypeVar("S", Intervention[Any], Trigger[Any])


def _admit(kind: type[Any]) -> Callable[[str, Callable[..., Any]], str | None]:
    """Why an installed plug-in's factory is refused, or None."""

    def admit(name: str, factory: Callable[..., Any]) -> str | None:
        try:
            spec = factory()
        except Exception as err:  # an installed package's failure is a problem, not a crash
            return f"cannot be built without settings: {type(err).__name__}: {err}"
        if not isinstance(spec, kind):
            return f"must return a {kind.__name__} (agent/interventions/spec.py), got {type(spec).__name__}"
        if spec.name != name:
            return f"names itself '{spec.name}': the entry point and the spec's name must agree"
        return None

    return admit


INTERVENTIONS.use_entry_points("tether.interventions", admit=_admit(Intervention))
TRIGGERS.use_entry_points("tether.triggers", admit=_admit(Trigger))


def _specs(registry: Registry[S]) -> tuple[S, ...]:
    specs = []
    for name in registry.names():  # loads the installed ones and freezes the registry
        spec = registry.build(name).plugin
        if spec.name != name:
            raise ValueError(f"{registry.kind} '{name}' returns a spec named '{spec.name}'")
        specs.append(spec)
    return tuple(sorted(specs, key=lambda s: (s.order, s.name)))


@functools.cache
def interventions() -> tuple[Intervention[Any], ...]:
    """Every intervention, in order (built once: the registry is frozen by then)."""
    found = _specs(INTERVENTIONS)
    taken = sorted({s.name for s in found} & {*CORE_ACTIONS, *(t.name for t in triggers())})
    if taken:
        raise ValueError(f"intervention name(s) {', '.join(taken)} taken by the controller or a trigger")
    return found


@functools.cache
def triggers() -> tuple[Trigger[Any], ...]:
    """Every trigger, in order."""
    return _specs(TRIGGERS)


def intervention(name: str) -> Intervention[Any]:
    """The intervention named `name`; raises UnknownPluginError (with a suggestion) for any other."""
    INTERVENTIONS.check(name)
    return next(s for s in interventions() if s.name == name)


def known_intervention(name: str) -> str:
    """`name` when an intervention has it (a config's check: ValueError, with a suggestion, otherwise)."""
    try:
        INTERVENTIONS.check(name)
    except UnknownPluginError as err:
        raise ValueError(str(err)) from None
    return name


def plugins() -> tuple[Intervention[Any] | Trigger[Any], ...]:
    """Interventions and triggers together, in order: their sections are listed so under controller:."""
    return tuple(sorted((*interventions(), *triggers()), key=lambda s: (s.order, s.name)))


def plugin_rules() -> tuple[Rule, ...]:
    return tuple(r for s in plugins() for r in s.rules)


def plugin_proposers() -> tuple[Proposer, ...]:
    return tuple(p for s in plugins() for p in s.proposers)


@functools.cache
def roster() -> Roster:
    return Roster(interventions=frozenset(s.name for s in interventions()),
                  forward_only=frozenset(s.name for s in interventions() if s.forward_only))
