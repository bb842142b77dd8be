"""Plug-in registries: a name per plug-in, construction recorded, frozen after start-up.

A config names a judge, monitor, prompt generator, world or verifier; `Registry.build` constructs it
and returns a `Built` that carries the exact name and settings (and, for a plug-in from an installed
package, its distribution and version), so the decision log can say which judge with which settings
scored a round (and a later reader can rebuild it).

Plug-ins from installed packages. A package declares factories as entry points in its pyproject:

    [project.entry-points."tether.judges"]
    concise = "tether_plugin_example.judges:concise"

in the groups `tether.judges`, `tether.monitors`, `tether.verifiers`, `tether.worlds` and
`tether.prompts` (each package's `__init__` names its group with `use_entry_points`). They are loaded
once, by `load_entry_points`, which every lookup (`check`, `build`, `names`, `in`, `plugins`) calls
first: no code sees a registry without them, and loading freezes the registry. A command that never
looks a plug-in up (`--help`, the review commands) imports none of them. An entry point whose name a
built-in (or another package) also has, one that fails to import, is not callable or is refused by the
registry's `admit` check is left out and becomes a `PluginProblem` naming its distribution, never an
exception; a config naming it fails with that problem (`PluginLoadError`).
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tether_types import EXIT_USAGE, TetherError

if TYPE_CHECKING:
    from tools.endpoints import Probe

T = TypeVar("T")

# Why an installed plug-in is refused (None: admitted); called with its name and loaded factory.
Admit = Callable[[str, Callable[..., Any]], str | None]
# What this machine lacks for a plug-in with the given settings (e.g. a judge's sandbox), [] when nothing.
Requires = Callable[[Mapping[str, Any]], list[str]]
# The endpoints a plug-in with the given settings calls over the network, as probes (tools/endpoints.py);
# [] for a local plug-in. Pre-flight sends each one request.
Reaches = Callable[[Mapping[str, Any]], "list[Probe]"]


class UnknownPluginError(TetherError, KeyError):
    exit_code = EXIT_USAGE

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        self.message = f"unknown {kind} '{name}'{hint} (known: {', '.join(sorted(known))})"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class PluginLoadError(UnknownPluginError):
    """A config names an installed plug-in that did not load; the message is its `PluginProblem`."""

    def __init__(self, problem: PluginProblem) -> None:
        self.problem = problem
        self.message = str(problem)
        KeyError.__init__(self, self.message)


class PluginSettingsError(TetherError, ValueError):
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Origin:
    """Where a plug-in comes from: a module of tether (built in), or an installed distribution's entry point."""

    module: str
    distribution: str | None = None  # None: built in
    version: str | None = None
    entry_point: str | None = None  # as declared: "name = module:attr"

    @property
    def builtin(self) -> bool:
        return self.distribution is None

    def __str__(self) -> str:
        if self.distribution is None:
            return f"built-in {self.module}"
        return f"{self.distribution} {self.version} (entry point {self.entry_point})"

    def to_json(self) -> dict[str, Any]:
        return {"builtin": self.builtin, "module": self.module, "distribution": self.distribution,
                "version": self.version, "entry_point": self.entry_point}


@dataclass(frozen=True)
class PluginInfo:
    """One registered plug-in, as `tether plugins` lists it."""

    kind: str
    name: str
    origin: Origin
    summary: str  # the first sentence of its factory's docstring (else of its module's)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "origin": self.origin.to_json(), "summary": self.summary}


@dataclass(frozen=True)
class PluginProblem:
    """An installed plug-in that was left out, and why; the message names the distribution."""

    kind: str
    name: str
    distribution: str
    message: str

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "distribution": self.distribution, "message": self.message}


@dataclass(frozen=True)
class Built(Generic[T]):
    """A constructed plug-in with the name and settings it was built from."""

    name: str
    settings: Mapping[str, Any]
    plugin: T
    origin: str | None = None  # "distribution version" of an installed plug-in; None: built in

    def spec(self) -> dict[str, Any]:
        spec = {"name": self.name, "settings": dict(self.settings)}
        return spec if self.origin is None else {**spec, "origin": self.origin}


@dataclass
class Registry(Generic[T]):
    kind: str
    _factories: dict[str, Callable[..., T]] = field(default_factory=dict)
    _frozen: bool = False
    _origins: dict[str, Origin] = field(default_factory=dict)
    _group: str | None = None  # the entry-point group of installed plug-ins
    _admit: Admit | None = None
    _loaded: bool = False
    _loading: bool = False
    _problems: list[PluginProblem] = field(default_factory=list)
    _requires: dict[str, Requires] = field(default_factory=dict)
    _reaches: dict[str, Reaches] = field(default_factory=dict)
    _paths: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def register(self, name: str, requires: Requires | None = None, reaches: Reaches | None = None,
                 paths: tuple[str, ...] = ()) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """`requires`: the plug-in's machine check, which `requirements` runs (pre-flight, `tether validate`).
        `reaches`: the endpoints it calls, which `probes` lists for pre-flight to probe. `paths`: the settings
        that name files (a path, or a map of names to paths), which the config anchors at its own folder."""
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if self._loading:
                raise RuntimeError(f"{self.kind} '{name}' is registered with @register by an installed package: "
                                   f"declare it as an entry point in the '{self._group}' group instead")
            if self._frozen:
                raise RuntimeError(f"{self.kind} registry is frozen; register plug-ins at import time")
            if name in self._factories:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._factories[name] = factory
            self._origins[name] = Origin(module=getattr(factory, "__module__", None) or "?")
            if requires is not None:
                self._requires[name] = requires
            if reaches is not None:
                self._reaches[name] = reaches
            if paths:
                self._paths[name] = paths
            return factory

        return decorate

    def freeze(self) -> Mapping[str, Callable[..., T]]:
        self._frozen = True
        return MappingProxyType(self._factories)

    # -- installed plug-ins --------------------------------------------------------------------------

    def use_entry_points(self, group: str, admit: Admit | None = None) -> None:
        """Take plug-ins from installed packages' entry points in `group` too (loaded on first lookup).
        `admit(name, factory)` may refuse one with a reason, on top of the name and import checks."""
        if self._group not in (None, group):
            raise ValueError(f"{self.kind} registry already reads entry-point group {self._group}")
        self._group, self._admit = group, admit

    @property
    def group(self) -> str | None:
        """The entry-point group installed plug-ins of this kind are declared in (None: built-ins only)."""
        return self._group

    def load_entry_points(self) -> tuple[PluginProblem, ...]:
        """Register the installed plug-ins of the group (once; later calls return the first call's
        problems) and freeze the registry. Every lookup calls it first."""
        if self._group is None or self._loaded:
            return tuple(self._problems)
        self._loaded = True  # first: a plug-in that looks the registry up while it loads sees the built-ins
        self._loading = True
        try:
            self._load(list(metadata.entry_points(group=self._group)))
        finally:
            self._loading = False
            self._frozen = True
        return tuple(self._problems)

    def problems(self) -> tuple[PluginProblem, ...]:
        """Installed plug-ins that were left out, and why."""
        return self.load_entry_points()

    def _load(self, entry_points: list[metadata.EntryPoint]) -> None:
        by_name: dict[str, list[metadata.EntryPoint]] = {}
        for ep in sorted(entry_points, key=lambda e: (e.name, _dist(e)[0])):
            by_name.setdefault(ep.name, []).append(ep)
        for name, eps in by_name.items():
            if name in self._factories:
                for ep in eps:
                    self._refuse(ep, f"clashes with the built-in {self.kind} '{name}' ({self._origins[name]}): "
                                     "rename the entry point")
                continue
            if len(eps) > 1:
                for ep in eps:
                    others = ", ".join(_describe(o) for o in eps if o is not ep)
                    self._refuse(ep, f"clashes with {others}: uninstall one of them, or rename an entry point")
                continue
            ep = eps[0]
            try:
                factory = ep.load()
            except Exception as err:  # an installed package's import failure is a problem, not a crash
                self._refuse(ep, f"failed to import: {type(err).__name__}: {err}")
                continue
            reason = ("is not callable: it must name a factory (a function or a class) that builds the plug-in"
                      if not callable(factory) else self._admit(name, factory) if self._admit else None)
            if reason:
                self._refuse(ep, reason)
                continue
            dist, version = _dist(ep)
            self._factories[name] = factory
            self._origins[name] = Origin(module=ep.module, distribution=dist, version=version,
                                         entry_point=f"{ep.name} = {ep.value}")

    def _refuse(self, ep: metadata.EntryPoint, why: str) -> None:
        self._problems.append(PluginProblem(self.kind, ep.name, _dist(ep)[0],
                                            f"{self.kind} '{ep.name}' from {_describe(ep)} {why}"))

    # -- lookups ---------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        self.load_entry_points()
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        self.load_entry_points()
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def origin(self, name: str) -> Origin:
        self.check(name)
        return self._origins[name]

    def plugins(self) -> list[PluginInfo]:
        """Every registered plug-in with its origin and the first line of its docstring."""
        return [PluginInfo(self.kind, name, self._origins[name], _summary(self._factories[name]))
                for name in self.names()]

    def check(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        """Raise if `name` is unknown (or an installed plug-in that did not load) or `settings` names a
        parameter its factory lacks."""
        if name not in self:
            failed = [p for p in self._problems if p.name == name]
            if failed:
                raise PluginLoadError(failed[0])
            raise UnknownPluginError(self.kind, name, self.names())
        params = inspect.signature(self._factories[name]).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        unknown = sorted(set(settings or {}) - set(params))
        if unknown:
            raise PluginSettingsError(
                f"{self.kind} '{name}' has no setting(s) {', '.join(unknown)} "
                f"(it takes: {', '.join(params) or 'none'})"
            )

    def path_settings(self, name: str) -> tuple[str, ...]:
        """The settings of `name` that name files (see `register`)."""
        return self._paths.get(name, ())

    def requirements(self, name: str, settings: Mapping[str, Any] | None = None) -> list[str]:
        """What this machine lacks to run `name` with `settings` (its `requires` check); [] when nothing
        or when it declares no check. `name` must pass `check` first."""
        requires = self._requires.get(name)
        return list(requires(settings or {})) if requires is not None else []

    def probes(self, name: str, settings: Mapping[str, Any] | None = None) -> list[Probe]:
        """The endpoints `name` with `settings` calls (its `reaches` hook); [] for a local plug-in."""
        reaches = self._reaches.get(name)
        return list(reaches(settings or {})) if reaches is not None else []

    def build(self, name: str, settings: Mapping[str, Any] | None = None, **context: Any) -> Built[T]:
        """Construct `name` with user `settings` plus runtime `context` (not recorded)."""
        settings = dict(settings or {})
        self.check(name, settings)
        factory = self._factories[name]
        params = inspect.signature(factory).parameters
        extra = {k: v for k, v in context.items() if k in params}
        try:
            plugin = factory(**settings, **extra)
        except TypeError as err:
            raise PluginSettingsError(f"{self.kind} '{name}': {err}") from None
        origin = self._origins.get(name)
        installed = None if origin is None or origin.builtin else f"{origin.distribution} {origin.version}"
        return Built(name=name, settings=settings, plugin=plugin, origin=installed)


def _dist(ep: metadata.EntryPoint) -> tuple[str, str]:
    """(name, version) of the distribution that declares `ep`."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution", "?"
    return str(dist.metadata["Name"] or dist.name), str(dist.version)


def _describe(ep: metadata.EntryPoint) -> str:
    dist, version = _dist(ep)
    return f"{dist} {version} (entry point {ep.group}: {ep.name} = {ep.value})"


def _summary(factory: Callable[..., Any]) -> str:
    """The first sentence of the factory's own docstring, else of its module's ("one plug-in a file")."""
    doc = factory.__dict__.get("__doc__") if isinstance(factory, type) else getattr(factory, "__doc__", None)
    if not doc:
        doc = getattr(sys.modules.get(getattr(factory, "__module__", "") or ""), "__doc__", None)
    paragraph = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split()) if doc else ""
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", paragraph, maxsplit=1)[0]  # not at "e.g. http"
