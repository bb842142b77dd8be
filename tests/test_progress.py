"""Progress bars (policies/progress.py): drawn on stderr for the model build, sampling, judging, training (per
optimizer step) and evaluation when asked, nothing at all when not, and never on stdout."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console
from test_tiny_model import SHORT
from test_training import FAST_DPO, make_job

from policies.generation import TransformersBackend
from policies.progress import bar, wanted
from policies.training import run_train_job
from tether_types import SamplingSpec
from tools.worlds.tiny.model import build_tiny_model

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _plain(text: str) -> str:
    return ANSI.sub("", text)


def test_a_bar_on_a_terminal_shows_its_count_and_fields_and_nests_as_a_line() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with bar("evaluating", 2, True, unit="sets", console=console) as advance:
        for _ in range(2):
            with bar("generating", 3, True, unit="batches") as inner:  # a line of the drawn bar, not a 2nd display
                for _ in range(3):
                    inner()
            advance()
    with bar("training", None, True, unit="steps", fields={"loss": float("nan")}, console=console) as advance:
        advance(0, total=4)
        for step in range(4):
            advance(loss=0.5 - step / 10)
    last = _plain(out.getvalue()).rstrip().splitlines()[-1]
    assert "training" in last and "4/4 steps loss 0.200" in last and "━" in last
    assert "2/2 sets" in _plain(out.getvalue())


def test_no_bar_writes_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    with bar("generating", 3, False) as advance:
        advance(loss=1.0)
    assert capfd.readouterr() == ("", "")
    assert wanted(True) and not wanted(False)


def test_sampling_draws_its_bar_on_stderr_only_when_asked(tiny_random_model_dir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec = SamplingSpec(n=2, max_new_tokens=4, temperature=1.0, top_p=1.0, do_sample=True, seed=0)
    for progress in (True, False):
        backend = TransformersBackend(str(tiny_random_model_dir), device="cpu", batch_size=2, progress=progress)
        try:
            backend.generate(["a", "b", "c"], None, spec)
        finally:
            backend.close()
        out, err = capsys.readouterr()
        assert out == ""
        if progress:
            assert "generating" in err and "3/3 batches" in _plain(err)
        else:
            assert err == ""


def test_training_counts_optimizer_steps_on_stderr(tiny_random_model_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    result = run_train_job(make_job(tiny_random_model_dir, tmp_path, "bar", dpo=replace(FAST_DPO, epochs=2)),
                           progress=True)
    out, err = capsys.readouterr()
    assert result.steps >= 2 and f"{result.steps}/{result.steps} steps loss " in _plain(err)
    assert out == ""  # neither TRL's tqdm nor its log printer write to stdout


def test_a_run_with_progress_draws_each_step_and_keeps_stdout_to_its_contract(
        gated_workspace: tuple[Path, str, str]) -> None:
    home, run_id, _ = gated_workspace
    assert (home.parent / "run.stdout").read_text() == f"run {run_id}\n"  # no bar, no blank line
    err = _plain((home.parent / "run.stderr").read_text())
    for step in ("generating", "judging (rules)", "monitoring", "training", "evaluating"):
        assert re.search(rf"{re.escape(step)} ━+ \d+/\d+", err), step
    assert re.search(r"training ━+ (\d+)/\1 steps loss \d", err)  # per optimizer step, with the loss


def test_the_tiny_model_build_counts_its_pre_training_steps(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    build_tiny_model(tmp_path / "model", replace(SHORT, steps=2), progress=True, threads=1)
    out, err = capsys.readouterr()
    assert "pre-training the tiny model" in err and re.search(r"2/2 steps loss \d", _plain(err))
    assert "━" not in out
