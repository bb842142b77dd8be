"""`tether plugins`: the judges, monitors, verifiers, worlds, prompt generators and pair strategies a
config can name, built in or from installed packages' entry points (tools/registry.py), and the
installed ones left out.

Looking the registries up loads the installed plug-ins (once); a package that fails to import, a name
that clashes with a built-in or another package, or a monitor with keys it may not emit is a problem
naming the distribution, listed here and by `tether validate`, never a crash.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from agent.cli.common import EXIT_CHECK_FAILED, fail, print_json, print_table, say_check
from tools.registry import PluginInfo, PluginProblem, Registry


def registries() -> tuple[Registry[Any], ...]:
    """Every plug-in registry, imported when a command needs them (the monitors pull in numpy: not for
    `tether --help`)."""
    from tools.judges import JUDGES
    from tools.monitors import MONITORS
    from tools.pairs import PAIR_STRATEGIES
    from tools.prompts import PROMPT_GENERATORS
    from tools.verifiers import VERIFIERS
    from tools.worlds import WORLDS

    return JUDGES, MONITORS, VERIFIERS, WORLDS, PROMPT_GENERATORS, PAIR_STRATEGIES


def installed_plugin_problems() -> list[str]:
    """Every installed plug-in that was left out, and why (one line each, naming its distribution)."""
    return [str(p) for p in _problems()]


def _problems() -> list[PluginProblem]:
    return [p for registry in registries() for p in registry.problems()]


def _row(info: PluginInfo) -> list[str]:
    origin = info.origin
    where = (f"built-in ({origin.module})" if origin.builtin
             else f"{origin.distribution} {origin.version}: {origin.entry_point}")
    return [info.kind, info.name, where, info.summary]


def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """List the judges, monitors, verifiers, worlds, prompt generators and pair strategies a config can
    name: built in, or from an installed package's entry points (groups tether.judges, tether.monitors,
    tether.verifiers, tether.worlds, tether.prompts). An installed plug-in that did not load is listed as a
    problem (exit 1)."""
    infos = [info for registry in registries() for info in registry.plugins()]
    problems = _problems()
    if as_json:
        print_json({"groups": {r.kind: r.group for r in registries()},
                    "plugins": [info.to_json() for info in infos],
                    "problems": [p.to_json() for p in problems]})
    else:
        print_table("plug-ins", ["kind", "name", "from", "summary"], [_row(info) for info in infos])
        for problem in problems:
            say_check(False, str(problem))
    if problems:
        if as_json:
            raise typer.Exit(EXIT_CHECK_FAILED)
        fail(f"{len(problems)} installed plug-in(s) left out", EXIT_CHECK_FAILED)
