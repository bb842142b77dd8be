"""Guardrail-owned state: only guardrails/ writes what decides an active adapter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from memory import Store

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("agent", "policies", "tools", "memory", "guardrails", "benchmarks")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_only_guardrails_import_the_guarded_writes() -> None:
    offenders = [str(p.relative_to(REPO)) for room in ROOMS for p in (REPO / room).rglob("*.py")
                 if room not in ("guardrails", "memory") and "memory.guarded" in _imports(p)]
    assert offenders == []


def test_the_store_offers_no_update_of_guarded_columns(tmp_path: Path) -> None:
    store = Store(tmp_path / "tether.db")
    public = {name for name in dir(store) if not name.startswith("_")}
    for forbidden in ("add_checkpoint", "decide_approval", "create_approval", "add_constitution_version",
                      "set_active", "add_signature"):
        assert forbidden not in public, forbidden
    for column in ("active_checkpoint", "constitution_version", "base_model", "config"):
        with pytest.raises(ValueError):
            store.update_run("any", **{column: "x"})
    for column in ("status", "sha256", "path", "invariant_ok", "invariant_report"):
        with pytest.raises(ValueError):
            store.update_checkpoint("any", **{column: "x"})
