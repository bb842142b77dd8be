"""Plug-ins from installed packages, found through entry points (tools/registry.py).

The example package (examples/tether-plugin-example: a judge and a verifier) is pip-installed into a
folder of its own, put on the PYTHONPATH of the `tether` processes only: the repository's venv is never
changed. The failure cases use distributions written as bare dist-info folders (what pip leaves), so
importlib.metadata finds them the same way: an import that fails, a name clash, a monitor whose keys
it may not emit, a package that registers with @register instead of an entry point.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import init_workspace, tether_cli, write_test_config
from memory import Store
from tools.monitors import MONITORS, MonitorKey
from tools.monitors import _installed_monitor_problem as monitor_problem
from tools.monitors.readings import Readings
from tools.registry import PluginLoadError, Registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tether-plugin-example"
DATA = ROOT / "examples" / "data_world"
GROUP = "tether.testing"  # the in-process tests' own group: nothing installed in the venv declares it


def fake_distribution(site: Path, name: str, entry_points: dict[str, dict[str, str]],
                      modules: dict[str, str] | None = None) -> None:
    """A distribution as pip leaves it in `site`: NAME-VERSION.dist-info with METADATA and
    entry_points.txt, and its modules beside it."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{ep} = {value}\n" for ep, value in eps.items()) + "\n"
        for group, eps in entry_points.items()))
    for module, text in (modules or {}).items():
        (site / f"{module}.py").write_text(text)


def rules() -> object:
    """The local registry's built-in."""
    return object()


def local_registry(site: Path, monkeypatch: pytest.MonkeyPatch) -> Registry[Any]:
    monkeypatch.syspath_prepend(str(site))
    registry: Registry[Any] = Registry("judge")
    registry.register("rules")(rules)
    registry.use_entry_points(GROUP)
    return registry


# -- the loader, in process ------------------------------------------------------------------------------

def test_installed_plugins_load_once_with_their_origin_and_freeze_the_registry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, "acme-judges", {GROUP: {"short": "acme_short:make"}}, {"acme_short": (
        'def make(n: int = 1):\n    """Prefers short answers.\n\n    More words here."""\n    return ("short", n)\n')})
    registry = local_registry(tmp_path, monkeypatch)
    assert registry.names() == ["rules", "short"]
    del sys.modules["acme_short"]
    assert "short" in registry and registry.load_entry_points() == ()
    assert "acme_short" not in sys.modules  # loaded once: later lookups import nothing again
    info = {i.name: i for i in registry.plugins()}
    assert info["short"].origin.to_json() == {
        "builtin": False, "module": "acme_short", "distribution": "acme-judges", "version": "0.1.0",
        "entry_point": "short = acme_short:make"}
    assert info["short"].summary == "Prefers short answers."
    assert info["rules"].origin.builtin and info["rules"].origin.module == __name__
    assert info["rules"].summary == "The local registry's built-in."
    built = registry.build("short", {"n": 2})
    assert built.plugin == ("short", 2)
    assert built.spec() == {"name": "short", "settings": {"n": 2}, "origin": "acme-judges 0.1.0"}
    assert registry.build("rules").spec() == {"name": "rules", "settings": {}}  # built-ins: as before
    with pytest.raises(RuntimeError, match="frozen"):
        registry.register("late")(rules)


def test_clashes_failed_imports_and_non_factories_are_problems_naming_the_distribution(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, "acme-a", {GROUP: {"rules": "acme_a:f", "twice": "acme_a:f"}},
                      {"acme_a": "def f():\n    return 'a'\n"})
    fake_distribution(tmp_path, "acme-b", {GROUP: {"twice": "acme_b:f", "broken": "acme_broken:f",
                                                   "constant": "acme_b:VALUE"}},
                      {"acme_b": "VALUE = 3\n\ndef f():\n    return 'b'\n",
                       "acme_broken": "import acme_missing_dependency  # noqa\n"})
    registry = local_registry(tmp_path, monkeypatch)
    assert registry.names() == ["rules"]  # the built-in stays; nothing clashing or broken is registered
    problems = {(p.name, p.distribution): p.message for p in registry.problems()}
    assert sorted(problems) == [("broken", "acme-b"), ("constant", "acme-b"), ("rules", "acme-a"),
                                ("twice", "acme-a"), ("twice", "acme-b")]
    assert problems[("rules", "acme-a")] == (
        f"judge 'rules' from acme-a 0.1.0 (entry point {GROUP}: rules = acme_a:f) clashes with the built-in "
        f"judge 'rules' (built-in {__name__}): rename the entry point")
    assert f"clashes with acme-b 0.1.0 (entry point {GROUP}: twice = acme_b:f)" in problems[("twice", "acme-a")]
    assert f"clashes with acme-a 0.1.0 (entry point {GROUP}: twice = acme_a:f)" in problems[("twice", "acme-b")]
    assert problems[("broken", "acme-b")].endswith(
        "failed to import: ModuleNotFoundError: No module named 'acme_missing_dependency'")
    assert "is not callable" in problems[("constant", "acme-b")]
    with pytest.raises(PluginLoadError, match="judge 'broken' from acme-b 0.1.0 .* failed to import"):
        registry.check("broken")
    with pytest.raises(PluginLoadError, match="clashes with acme-b"):
        registry.build("twice")
    registry.check("rules")


def test_an_installed_monitor_may_emit_only_keys_that_no_other_monitor_declares(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def monitor(*keys: object) -> Callable[[], object]:
        return lambda: type("M", (), {"keys": keys, "compute": lambda self, obs: {}})()

    assert "must declare the keys it emits as `keys: tuple[MonitorKey, ...]`" in monitor_problem(
        "mine", monitor("my_signal"))
    assert "must declare the keys" in monitor_problem("mine", monitor())
    shadow = monitor_problem("mine", monitor(MonitorKey.POSITION_CONSISTENCY))
    assert shadow is not None and "declares position_consistency, which monitor 'judge_reliability' (built-in " \
        "tools.monitors.judge_reliability) emits already" in shadow

    def needs_settings(threshold: float) -> object:
        raise AssertionError("not built")

    assert "cannot be built without settings: TypeError" in monitor_problem("mine", needs_settings)
    # Every MonitorKey belongs to a built-in today; one that no monitor declared would be admitted.
    monkeypatch.setattr(MONITORS, "_factories", {k: v for k, v in MONITORS._factories.items() if k != "scores"})
    assert monitor_problem("mine", monitor(MonitorKey.SCORE_MEAN)) is None


# -- the example package, pip-installed, through the real CLI ---------------------------------------------

@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/tether-plugin-example installed with pip into a folder of its own (no network, no deps)."""
    work = tmp_path_factory.mktemp("plugin-example")
    shutil.copytree(EXAMPLE, work / "src")  # pip builds in the source folder: a copy, never the repository
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--no-cache-dir", "--target", str(work / "site"), str(work / "src")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return work / "site"


def _data_workspace(home: Path, model_dir: Path, **sections: dict) -> Path:
    (home / "data").mkdir(parents=True)
    for name in ("prompts.jsonl", "probes.jsonl"):
        shutil.copy(DATA / name, home / "data" / name)
    init_workspace(home)
    world = {"name": "data", "settings": {
        "train": "data/prompts.jsonl", "family_field": "family", "topic_field": "topic",
        "reference_field": "reference", "verifiers": {"capitals": "matches_regex"},
        "probes": {"refuse-serious-harm": "data/probes.jsonl"},
        "heldout_fraction": 0.5}}  # 30 held-out prompts: no-abuse's 0.1 needs 25 replies at confidence 0.95
    write_test_config(home, model_dir, world=world, judge={"name": "concise", "settings": {"max_words": 12}},
                      generation={"samples_per_prompt": 3, "max_new_tokens": 24},
                      evaluation={"max_new_tokens": 24}, prompts={"per_round": 12, "heldout": 30},
                      controller={"rounds": 1, "interventions": []}, **sections)
    return home


def _with(home: Path, path: Path, section: str, values: dict) -> Path:
    doc = yaml.safe_load((home / "config.yaml").read_text())
    doc[section] = {**doc.get(section, {}), **values}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_example_package_is_listed_validated_and_judges_a_real_run(
        example_site: Path, tmp_path: Path, tiny_world_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _data_workspace(tmp_path / "ws", tiny_world_model_dir)
    assert "unknown judge 'concise'" in tether_cli(home, "validate").stderr  # not installed: unknown
    monkeypatch.setenv("PYTHONPATH", str(example_site))

    listed = tether_cli(home, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["problems"] == []
    assert doc["groups"].items() >= {"judge": "tether.judges", "monitor": "tether.monitors",
                                     "verifier": "tether.verifiers", "world": "tether.worlds",
                                     "prompt generator": "tether.prompts"}.items()
    assert ("pair strategy", "best_worst") in {(p["kind"], p["name"]) for p in doc["plugins"]}
    rows = {(p["kind"], p["name"]): p for p in doc["plugins"]}
    assert rows[("judge", "concise")] == {
        "kind": "judge", "name": "concise", "summary": "Scores 1 for an answer of min_words to max_words words, "
        "less the further outside that range it falls.",
        "origin": {"builtin": False, "module": "tether_plugin_example.judges", "distribution": "tether-plugin-example",
                   "version": "0.1.0", "entry_point": "concise = tether_plugin_example.judges:concise"}}
    assert rows[("verifier", "matches_regex")]["origin"]["entry_point"] == (
        "matches_regex = tether_plugin_example.verifiers:matches_regex")
    assert rows[("judge", "rules")]["origin"] == {"builtin": True, "module": "tools.judges.rules",
                                                  "distribution": None, "version": None, "entry_point": None}
    table = tether_cli(home, "plugins")
    assert table.returncode == 0 and "tether-plugin-example" in table.stdout and "matches_regex" in table.stdout

    validated = tether_cli(home, "validate")
    assert validated.returncode == 0, validated.stderr
    typo = tether_cli(home, "validate", str(_with(home, tmp_path / "typo.yaml", "judge",
                                                   {"name": "concize", "settings": {}})))
    assert typo.returncode == 2 and "unknown judge 'concize'; did you mean 'concise'?" in typo.stderr
    setting = tether_cli(home, "validate", str(_with(home, tmp_path / "setting.yaml", "judge",
                                                      {"settings": {"max_wordz": 3}})))
    assert setting.returncode == 2 and "judge 'concise' has no setting(s) max_wordz" in setting.stderr

    result = tether_cli(home, "run")
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[1]
    with Store(home / "tether.db") as store:
        record = store.get_round(run_id, 1)
        evaluations = [(c.metrics or {}).get("eval") for c in store.checkpoints(run_id)]
    assert record is not None and record.judge is not None
    assert {k: record.judge[k] for k in ("name", "settings", "origin")} == {
        "name": "concise", "settings": {"max_words": 12}, "origin": "tether-plugin-example 0.1.0"}
    # the oracle is the installed verifier: capitals is the only verified family
    assert MonitorKey.ORACLE_MEAN in Readings.from_json(record.monitors).values, record.monitors
    assert [set(e["active"]["oracle_by_family"]) for e in evaluations if e] == [{"capitals"}], evaluations
    assert json.loads(tether_cli(home, "status", run_id, "--json").stdout)["judge"] == "concise"


def test_broken_installs_are_problems_of_plugins_and_validate_never_a_crash(
        tmp_path: Path, tiny_world_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    fake_distribution(site, "acme-broken", {"tether.judges": {"broken": "acme_broken:judge"}},
                      {"acme_broken": "import acme_missing_dependency  # noqa\n"})
    fake_distribution(site, "acme-clash", {"tether.verifiers": {"exact_match": "acme_clash:verifier"}},
                      {"acme_clash": "def verifier():\n    return None\n"})
    fake_distribution(site, "acme-monitor", {"tether.monitors": {"shadow": "acme_monitor:shadow"}}, {"acme_monitor": (
        "from tether_types import MonitorKey\n\n"
        "class Shadow:\n    keys = (MonitorKey.POSITION_CONSISTENCY,)\n\n"
        "    def compute(self, obs):\n        return {MonitorKey.POSITION_CONSISTENCY: 1.0}\n\n"
        "def shadow():\n    return Shadow()\n")})
    fake_distribution(site, "acme-sneaky", {"tether.judges": {"sneaky": "acme_sneaky:judge"}}, {"acme_sneaky": (
        "from tools.judges import JUDGES\n\n@JUDGES.register('sneaky')\ndef judge():\n    return None\n")})
    home = tmp_path / "ws"
    init_workspace(home)
    write_test_config(home, tiny_world_model_dir)
    monkeypatch.setenv("PYTHONPATH", str(site))

    listed = tether_cli(home, "plugins", "--json")
    assert listed.returncode == 1 and "Traceback" not in listed.stderr, listed.stderr
    doc = json.loads(listed.stdout)
    problems = {p["distribution"]: p["message"] for p in doc["problems"]}
    assert sorted(problems) == ["acme-broken", "acme-clash", "acme-monitor", "acme-sneaky"]
    assert "failed to import: ModuleNotFoundError: No module named 'acme_missing_dependency'" in problems["acme-broken"]
    assert ("verifier 'exact_match' from acme-clash 0.1.0 (entry point tether.verifiers: exact_match = "
            "acme_clash:verifier) clashes with the built-in verifier 'exact_match' (built-in "
            "tools.verifiers.exact_match)") in problems["acme-clash"]
    assert "may not overwrite another monitor's reading" in problems["acme-monitor"]
    assert "declare it as an entry point in the 'tether.judges' group instead" in problems["acme-sneaky"]
    names = {(p["kind"], p["name"]) for p in doc["plugins"]}
    assert ("verifier", "exact_match") in names and ("monitor", "judge_reliability") in names
    assert not names & {("judge", "broken"), ("judge", "sneaky"), ("monitor", "shadow")}
    table = tether_cli(home, "plugins")
    assert table.returncode == 1 and "4 installed plug-in(s) left out" in table.stderr

    validated = tether_cli(home, "validate")
    message = " ".join(validated.stderr.split())
    assert validated.returncode == 2 and "Traceback" not in validated.stderr, validated.stderr
    for distribution in problems:
        assert f"from {distribution} 0.1.0" in message
    named = tether_cli(home, "validate", str(_with(home, tmp_path / "b.yaml", "judge", {"name": "broken"})))
    assert named.returncode == 2
    assert " ".join(named.stderr.split()).count("judge 'broken' from acme-broken 0.1.0") == 1  # once, not twice
    assert tether_cli(home, "run").returncode == 2  # run checks what validate checks: nothing starts
