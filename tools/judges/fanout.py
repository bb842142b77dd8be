"""One judge call's requests sent at once: at most `max_concurrency` in flight, answers in prompt order,
and a per-round budget that turns what it leaves unasked (or unanswered) into a value, never a hang.

The run judges a round's samples in one `score` (or `compare`) call, so "per round" here means per
call. Nothing here retries: a request's own client does that (the `openai` client backs off
exponentially with jitter on timeouts, connection errors, 408/409/429 and 5xx, honouring Retry-After).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from tether_types import TetherError
from tools.registry import PluginSettingsError

T = TypeVar("T")
# One request: (prompt, seconds left in the round or None for no limit) -> its answer. It should return
# its failure as a value; one it raises anyway becomes that prompt's answer too.
AskOne = Callable[[str, float | None], T]


class BudgetSpent(TetherError):
    """The answer of a prompt the round's budget left unasked, or whose answer came too late."""


@dataclass(frozen=True)
class RoundBudget:
    """What one call may spend. `max_requests`: requests sent (a request's retries count as one), the
    first ones in prompt order, so the cut does not depend on concurrency. `seconds`: wall clock from
    the call's start; what has no answer by then is given up, not waited for (its thread ends with its
    own request's timeout, which the `openai` judge cuts to the time the round had left)."""

    max_requests: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_requests is not None and (type(self.max_requests) is not int or self.max_requests < 1):
            raise PluginSettingsError(f"max_requests_per_round must be a whole number >= 1 or null (no limit), "
                                      f"got {self.max_requests!r}")
        if self.seconds is not None and (type(self.seconds) not in (int, float) or not self.seconds > 0):
            raise PluginSettingsError(f"round_timeout must be a number of seconds > 0 or null (no limit), "
                                      f"got {self.seconds!r}")

    def unasked(self) -> BudgetSpent:
        return BudgetSpent(f"round budget spent: not asked (max_requests_per_round={self.max_requests})")

    def too_late(self) -> BudgetSpent:
        return BudgetSpent(f"round budget spent: no answer within round_timeout={self.seconds:g} s")


def check_concurrency(max_concurrency: object) -> int:
    """The setting as given, or PluginSettingsError (checked when the judge is built, not mid-round)."""
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise PluginSettingsError(f"max_concurrency must be a whole number >= 1, got {max_concurrency!r}")
    return max_concurrency


def ask_concurrently(ask_one: AskOne[T], prompts: Sequence[str], max_concurrency: int,
                     budget: RoundBudget = RoundBudget(),
                     clock: Callable[[], float] = time.monotonic) -> list[T | BaseException]:
    """`ask_one` for every prompt, at most `max_concurrency` at a time; one answer per prompt, in order.
    Never raises for a request, and returns by the budget's deadline whatever is still in flight."""
    prompts = list(prompts)
    if not prompts:
        return []
    asked = prompts if budget.max_requests is None else prompts[:budget.max_requests]
    unasked: list[T | BaseException] = [budget.unasked()] * (len(prompts) - len(asked))
    deadline = None if budget.seconds is None else clock() + budget.seconds

    def task(prompt: str) -> T | BaseException:
        left = None if deadline is None else deadline - clock()
        if left is not None and left <= 0:  # queued behind slower requests until the round's time ran out
            return budget.too_late()
        return ask_one(prompt, left)

    # A pool per call: its threads exist only while a round is judged; a sequential call (1 worker)
    # takes the same path, so the budget means the same at every concurrency.
    pool = ThreadPoolExecutor(min(max_concurrency, len(asked)), thread_name_prefix="judge-request")
    futures = [pool.submit(task, p) for p in asked]
    try:
        done, _ = wait(futures, timeout=None if deadline is None else max(0.0, deadline - clock()))
    finally:
        # Past the deadline, requests in flight are left to end by their own timeout: the round goes on.
        pool.shutdown(wait=deadline is None, cancel_futures=True)
    return [_outcome(f) if f in done else budget.too_late() for f in futures] + unasked


def _outcome(future: Future[T | BaseException]) -> T | BaseException:
    err = future.exception()
    return err if err is not None else future.result()
