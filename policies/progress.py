"""Progress bars for tether's long steps: the tiny model's build, sampling, judging, training, evaluation.

One style and one place: a bar is a rich ``Progress`` on stderr, so stdout keeps only what a command
promises there (`run <RUN_ID>`, a `--json` document). A caller passes ``enabled``, which the CLI decides
once per command: stderr is a terminal, or ``--progress`` asked (then the bar is drawn as on a terminal
even where stderr is a pipe or a log file). Disabled, nothing is written, not even the blank line a
transient rich display leaves on a stream that is not a terminal.

A bar opened while another is drawn (the generation inside an evaluation) becomes a line of the drawn one,
removed when its step ends: one terminal holds one live display.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Advance = Callable[..., None]  # advance(steps=1, **fields): moves the bar, updates its named fields
# The displays drawn now, innermost last (bars are drawn from the thread that drives a run).
_drawn: list[Progress] = []


def wanted(requested: bool | None) -> bool:
    """Bars or not: as asked (`--progress` / `--no-progress`), else where stderr is a terminal."""
    return sys.stderr.isatty() if requested is None else requested


def stderr_console() -> Console:
    """The console bars draw on: this process's stderr (looked up at each write, so a redirected or
    captured stderr gets them), always rendered as a terminal because a bar is drawn only when wanted."""
    return Console(stderr=True, force_terminal=True)


@contextmanager
def bar(description: str, total: int | None, enabled: bool, *, unit: str = "",
        fields: dict[str, float] | None = None, console: Console | None = None) -> Iterator[Advance]:
    """A bar of `total` steps (None: of unknown length) while the block runs; yields `advance`. `fields`
    are values shown after the count (e.g. {"loss": nan}), each updated by `advance(loss=...)`; the bar's
    length by `advance(0, total=n)`. The bar stays drawn when the block ends (its last state is the step's
    summary), unless it was a line of an outer bar."""
    if not enabled:
        yield _nothing
        return
    if _drawn:
        outer = _drawn[-1]
        task = outer.add_task(description, total=total, unit=unit, shown=_shown(fields or {}))
        try:
            yield _advancing(outer, task, dict(fields or {}))
        finally:
            outer.remove_task(task)
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[unit]}"), TextColumn("{task.fields[shown]}"), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console or stderr_console()) as progress:
        _drawn.append(progress)
        try:
            task = progress.add_task(description, total=total, unit=unit, shown=_shown(fields or {}))
            yield _advancing(progress, task, dict(fields or {}))
        finally:
            _drawn.pop()


def _shown(fields: dict[str, float]) -> str:
    return " ".join(f"{name} {value:.3f}" for name, value in fields.items())


def _advancing(progress: Progress, task: TaskID, fields: dict[str, float]) -> Advance:
    def advance(steps: int = 1, total: int | None = None, **values: float) -> None:
        fields.update(values)
        progress.update(task, advance=steps, total=total, shown=_shown(fields))

    return advance


def _nothing(steps: int = 1, total: int | None = None, **values: float) -> None:
    """The disabled bar's advance."""
