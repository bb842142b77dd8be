"""model.threads: the choice `auto` makes from OMP_NUM_THREADS or cores and load, what apply_threads sets and
returns, and scoped_threads (the tiny model's build) leaving the caller's setting as it was."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from agent.config import ConfigError, ModelConfig, parse_config
from policies import threads as threads_mod
from policies.threads import TorchThreads, apply_threads, auto_threads, scoped_threads


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # a user's setting here would decide `auto`
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("cores", "load", "expected"),
    [
        (2, 0.0, 2),  # idle: every core
        (2, 0.4, 2),
        (2, 0.6, 1),  # a core mostly busy: leave it
        (2, 1.6, 1),
        (2, 6.0, 1),  # oversubscribed: one thread, never zero
        (8, 2.4, 6),
        (8, 30.0, 1),
        (4, None, 4),  # no load average on this platform: the cores
    ],
)
def test_auto_takes_the_idle_cores(cores: int, load: float | None, expected: int) -> None:
    assert auto_threads(cores, load) == expected


def test_apply_a_number_sets_torch_and_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = apply_threads(1)
    assert torch.get_num_threads() == 1
    assert chosen.threads == 1 and chosen.setting == 1 and chosen.chosen_by == "setting"
    assert chosen.cores >= 1 and chosen.interop_threads >= 1
    assert set(chosen.as_dict()) == {"setting", "chosen_by", "threads", "interop_threads", "cores", "load"}


def test_apply_auto_reads_affinity_and_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads_mod.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads_mod.os, "cpu_count", lambda: 4)
    # a load of 2 on a 4-CPU machine, of which this process may use 2: 1 of its 2 cores is busy
    monkeypatch.setattr(threads_mod.os, "getloadavg", lambda: (2.0, 0.0, 0.0), raising=False)
    chosen = apply_threads("auto")
    assert chosen == TorchThreads(setting="auto", chosen_by="load", threads=1,
                                  interop_threads=torch.get_num_interop_threads(), cores=2, load=1.0)
    assert torch.get_num_threads() == 1
    monkeypatch.setattr(threads_mod.os, "getloadavg", lambda: (0.0, 0.0, 0.0), raising=False)
    assert apply_threads("auto").threads == 2 == torch.get_num_threads()


@pytest.mark.parametrize(("value", "expected"), [("3", 3), (" 1 ", 1), ("2,1", 2)])
def test_auto_takes_the_users_omp_num_threads(monkeypatch: pytest.MonkeyPatch, value: str, expected: int) -> None:
    # an idle machine: the load would choose both cores, and the user's number still wins
    monkeypatch.setattr(threads_mod.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads_mod.os, "getloadavg", lambda: (0.0, 0.0, 0.0), raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    chosen = apply_threads("auto")
    assert (chosen.threads, chosen.chosen_by) == (expected, "OMP_NUM_THREADS") and torch.get_num_threads() == expected
    assert apply_threads(1).chosen_by == "setting"  # a number in the config is the config's, whatever the variable


@pytest.mark.parametrize("value", ["", "0", "-2", "many", "1.5", "²"])
def test_auto_ignores_an_omp_num_threads_that_is_no_thread_count(monkeypatch: pytest.MonkeyPatch,
                                                                 value: str) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", value)  # as OpenMP ignores it
    assert apply_threads("auto").chosen_by == "load"


def test_scoped_threads_restore_the_callers_setting() -> None:
    torch.set_num_threads(2)
    with scoped_threads(1) as chosen:
        assert chosen.threads == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="inside"), scoped_threads(1):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, "many", True, 1.5])
def test_apply_refuses_what_is_not_a_thread_count(bad: object) -> None:
    with pytest.raises(ValueError, match="threads must be 'auto' or a whole number >= 1"):
        apply_threads(bad)  # type: ignore[arg-type]


def test_config_field() -> None:
    assert ModelConfig().threads == "auto"
    assert ModelConfig(threads=3).threads == 3
    for bad in (0, "many", 2.0, 5000):
        with pytest.raises(ConfigError) as info:
            parse_config({"model": {"threads": bad}}, "test")
        assert any(p.startswith("model.threads") for p in info.value.problems), info.value.problems
