"""The controller's plug-ins, one module each: an intervention (agent/interventions/<name>.py) owns its
node, the rules that may choose it with their place in the controller's order, its section under
`controller:` with its defaults, and its report marker; a trigger owns rules and a section, no node.

Every module of this folder is imported here (a new one is one file), then the installed ones are loaded
from entry points (agent/interventions/registry.py) and the registries freeze: the `controller:` config
section (`ControllerConfig`), the controller's rules (agent/controller/rules.py), the graph (agent/run/graph.py) and the
report's markers (agent/review/plots.py) are built from what is registered then. The notebook (`tether
log`) shows any action and outcome as it was logged, so it needs nothing of a plug-in."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from agent.controller.vocabulary import Policy, Proposer, Rule
from agent.interventions.registry import (
    CORE_ACTIONS,
    INTERVENTIONS,
    TRIGGERS,
    intervention,
    interventions,
    known_intervention,
    plugin_proposers,
    plugin_rules,
    plugins,
    roster,
    triggers,
)
from agent.interventions.spec import Intervention, Marker, Plateau, Trigger
from agent.sections.controller import ControllerSettings, with_sections

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

if TYPE_CHECKING:  # to a type checker, the controller's own settings; each section is read by its plug-in
    ControllerConfig = ControllerSettings
else:
    ControllerConfig = with_sections({s.name: s.section for s in plugins() if s.section is not None},
                                     known_intervention, [s.name for s in interventions() if s.on_by_default])

# What a plug-in module needs: its spec and its rules' shapes and working state (its node's bookkeeping is
# agent/interventions/record.py: it reads the run's context, which this package face must not import).
__all__ = ["CORE_ACTIONS", "INTERVENTIONS", "TRIGGERS", "ControllerConfig", "Intervention", "Marker", "Plateau",
           "Policy", "Proposer", "Rule", "Trigger", "intervention", "interventions", "plugin_proposers",
           "plugin_rules", "plugins", "roster", "triggers"]
