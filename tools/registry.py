"""Plug-in registries: a name per plug-in, construction recorded, frozen after start-up.

A config names a judge, monitor or prompt generator; `Registry.build` constructs it and returns a
`Built` that carries the exact name and settings, so the decision log can say which judge with which
settings scored a round (and a later reader can rebuild it).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownPluginError(KeyError):
    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        self.message = f"unknown {kind} '{name}'{hint} (known: {', '.join(sorted(known))})"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class PluginSettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Built(Generic[T]):
    """A constructed plug-in with the name and settings it was built from."""

    name: str
    settings: Mapping[str, Any]
    plugin: T

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "settings": dict(self.settings)}


@dataclass
class Registry(Generic[T]):
    kind: str
    _factories: dict[str, Callable[..., T]] = field(default_factory=dict)
    _frozen: bool = False

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if self._frozen:
                raise RuntimeError(f"{self.kind} registry is frozen; register plug-ins at import time")
            if name in self._factories:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._factories[name] = factory
            return factory

        return decorate

    def freeze(self) -> Mapping[str, Callable[..., T]]:
        self._frozen = True
        return MappingProxyType(self._factories)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def check(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        """Raise if `name` is unknown or `settings` names a parameter its factory lacks."""
        if name not in self._factories:
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
        return Built(name=name, settings=settings, plugin=plugin)
