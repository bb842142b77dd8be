"""What a run checks about its world and its invariants' probes before it starts (`tether run` refuses
to start on any problem, nothing written) and `tether validate` reports, every problem at once:

- the data roots (`inputs.roots`) are folders;
- the world builds (known name and settings) and gives its prompts: its files read (confined to the
  workspace and the data roots, within the size limits: guardrails/inputs.py), and train and held-out
  prompts do not overlap;
- `controller.heldout_metric: oracle` only with a world that has verifiers (else: use `judge`);
- `model.base: world` only with a world that builds a model (a `ModelBuilder`);
- a world's probe map names only invariants of the constitution;
- every invariant can be evaluated: its probe file reads, a judge detector names a judge of the
  config, rules apply to at least one held-out probe, and no probe is a training prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agent.config import WORLD_MODEL, TetherConfig
from agent.run.services import build_world
from agent.run.splits import heldout_slice
from agent.run.world_model import model_builder
from guardrails import checks
from guardrails.constitution import Constitution
from guardrails.probes import ProbeSet, resolve_probe_sets, unknown_invariants
from tools.registry import PluginSettingsError, UnknownPluginError
from tools.worlds import InvariantProbeMap, WorldError


@dataclass(frozen=True)
class WorldChecks:
    problems: list[str]
    probe_sets: dict[str, ProbeSet] = field(default_factory=dict)  # what a starting run pins


def world_checks(root: Path, config: TetherConfig, constitution: Constitution | None) -> WorldChecks:
    """Every problem with the world and (when `constitution` is given) the invariants' probes."""
    missing = [r for r in config.inputs.roots if not (root / r).is_dir()]
    if missing:
        return WorldChecks([f"inputs.roots: {', '.join(missing)} is not a folder: name existing folders (relative "
                            "to the config file's folder)"])
    try:
        world = build_world(config, root).plugin
        taskset = world.taskset()
    except (WorldError, UnknownPluginError, PluginSettingsError) as err:
        return WorldChecks([f"world '{config.world.name}': {err}"])
    problems = []
    if config.controller.heldout_metric == "oracle" and not world.has_oracle:
        problems.append(f"controller.heldout_metric is 'oracle', but world '{config.world.name}' has no verifiers: "
                        "set controller.heldout_metric: judge (or name verifiers in world.settings.verifiers)")
    if config.model.base == WORLD_MODEL:
        try:
            model_builder(config, world)
        except WorldError as err:
            problems.append(str(err))
    if constitution is None:
        return WorldChecks(problems)
    if isinstance(world, InvariantProbeMap):  # before the checks a misnamed id would send to another invariant
        problems += unknown_invariants(constitution, world.probe_invariants(), f"world '{config.world.name}'")
    heldout = [p.text for p in heldout_slice(taskset, config.prompts.heldout)]
    sets, unreadable = resolve_probe_sets(constitution, config.inputs.confined_to(root), heldout,
                                          world.invariant_probes)
    problems += unreadable
    problems += checks.preflight(constitution, heldout, probe_sets=sets,
                                 judges=[s.name for s in config.judge.slots()], train=[p.text for p in taskset.train])
    return WorldChecks(problems, sets)
