"""Concurrent judges: the `openai` judge against a real loopback endpoint (tests/conftest.py `serve_chat`)
with injected latency, failures and a hanging request; the `self` judge's batching. No timing assertions:
what is counted is requests, retries and requests in flight."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from conftest import ChatFault, serve_chat
from tools.judges import JUDGES, JudgeItem, PairItem, PairVerdict, Verdict
from tools.judges.fanout import RoundBudget, ask_concurrently
from tools.registry import PluginSettingsError

ITEMS = [JudgeItem(f"question {i}", f"reply number {i} " + "x" * (i % 7)) for i in range(40)]
PAIRS = [PairItem(f"question {i}", f"first reply {i}", f"second reply {i * 3}") for i in range(12)]


def _stars(reply: str) -> int:
    """The endpoint's deterministic opinion of a reply: 1..5 from its digest."""
    return 1 + int(hashlib.sha256(reply.encode()).hexdigest(), 16) % 5


def answer(prompt: str) -> str:
    """Pointwise prompts get 'Score: N', pairwise ones the reply with more stars (either order agrees)."""
    if "\nReply A: " in prompt:
        a, b = prompt.split("\nReply A: ")[1].split("\nReply B: ")
        sa, sb = _stars(a), _stars(b)
        return "Winner: tie" if sa == sb else "Winner: A" if sa > sb else "Winner: B"
    return f"Because.\nScore: {_stars(prompt.split(chr(10) + 'Reply: ')[1])}"


@dataclass
class Endpoint:
    """The loopback endpoint's behaviour and what it saw. `faults`: the answers of the first requests to
    arrive, in order; `always`: a fault for every request whose prompt contains the key; `hang`: requests
    whose prompt contains it wait for `release`."""

    latency: float = 0.0
    faults: list[ChatFault] = field(default_factory=list)
    always: dict[str, ChatFault] = field(default_factory=dict)
    hang: str | None = None
    release: threading.Event = field(default_factory=threading.Event)
    attempts: Counter[str] = field(default_factory=Counter)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, prompt: str, max_tokens: int) -> str:
        with self.lock:
            self.attempts[prompt] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            fault = self.faults.pop(0) if self.faults else None
        try:
            if fault is not None:
                raise fault
            for key, permanent in self.always.items():
                if key in prompt:
                    raise permanent
            if self.hang is not None and self.hang in prompt:
                self.release.wait(120)
            time.sleep(self.latency)
            return answer(prompt)
        finally:
            with self.lock:
                self.in_flight -= 1


@contextmanager
def served(endpoint: Endpoint) -> Iterator[str]:
    server, url = serve_chat(endpoint.respond, record=endpoint.bodies)
    try:
        yield url
    finally:
        endpoint.release.set()  # a held request ends, so its server thread does too
        server.shutdown()
        server.server_close()


def judge(url: str, **settings: Any) -> Any:
    return JUDGES.build("openai", {"base_url": url, "model": "m", "max_retries": 0, **settings}).plugin


def judged(endpoint: Endpoint, items: Sequence[JudgeItem] = ITEMS, pairs: Sequence[PairItem] = (),
           **settings: Any) -> tuple[list[Verdict], list[PairVerdict]]:
    with served(endpoint) as url:
        j = judge(url, **settings)
        return j.score(items), j.compare(pairs) if pairs else []


# -- the same verdicts at every concurrency, never more requests in flight than allowed ----------------

def test_verdicts_are_identical_at_concurrency_1_8_32() -> None:
    runs = {}
    for n in (1, 8, 32):
        endpoint = Endpoint(latency=0.01)
        runs[n] = judged(endpoint, ITEMS, PAIRS, max_concurrency=n)
        assert 1 <= endpoint.max_in_flight <= n
        if n > 1:
            assert endpoint.max_in_flight > 1  # the requests did overlap
        params = {(b["model"], b["temperature"], b["max_tokens"], b["seed"]) for b in endpoint.bodies}
        assert params == {("m", 0.0, 256, 0)}  # one set of request parameters, seed included
        assert len(endpoint.bodies) == len(ITEMS) + 2 * len(PAIRS)
    assert runs[1] == runs[8] == runs[32]
    scores, pairs = runs[1]
    assert all(v.valid for v in scores) and all(v.valid and v.position_consistent for v in pairs)
    assert [v.raw.split("Score: ")[1] for v in scores] == [str(_stars(it.response)) for it in ITEMS]


def test_the_old_spelling_concurrency_still_bounds_requests() -> None:
    endpoint = Endpoint(latency=0.01)
    old, _ = judged(endpoint, concurrency=2)
    assert endpoint.max_in_flight <= 2
    new, _ = judged(Endpoint(), max_concurrency=2)
    assert old == new
    with pytest.raises(PluginSettingsError, match="old spelling of max_concurrency"):
        judge("http://127.0.0.1:9/v1", concurrency=2, max_concurrency=4)


@pytest.mark.parametrize("settings", [
    {"max_concurrency": 0}, {"max_concurrency": "8"}, {"max_concurrency": True}, {"concurrency": 1.5},
    {"max_requests_per_round": 0}, {"round_timeout": -1.0}, {"round_timeout": "1"}, {"seed": 1.5},
])
def test_bad_settings_fail_when_the_judge_is_built(settings: dict[str, Any]) -> None:
    with pytest.raises(PluginSettingsError, match=next(iter(settings))):
        judge("http://127.0.0.1:9/v1", **settings)


def test_seed_null_is_not_sent() -> None:
    endpoint = Endpoint()
    judged(endpoint, ITEMS[:2], seed=None)
    assert all("seed" not in b for b in endpoint.bodies)


# -- retries: transient failures retried by the client, the rest invalid with the error -----------------

def test_transient_failures_are_retried_and_succeed() -> None:
    expected, _ = judged(Endpoint(), ITEMS[:8])
    endpoint = Endpoint(faults=[ChatFault(500), ChatFault(503), ChatFault(429, {"retry-after-ms": "1"})])
    verdicts, _ = judged(endpoint, ITEMS[:8], max_concurrency=4, max_retries=3)
    assert verdicts == expected and all(v.valid for v in verdicts)
    assert sum(endpoint.attempts.values()) == 8 + 3  # each injected failure cost one more request


def test_a_request_that_keeps_failing_becomes_an_invalid_verdict_carrying_the_error() -> None:
    items = [*ITEMS[:3], JudgeItem("q", "poison"), JudgeItem("q", "malformed")]
    endpoint = Endpoint(always={"poison": ChatFault(500, {"retry-after-ms": "1"}), "malformed": ChatFault(400)})
    verdicts, _ = judged(endpoint, items, max_concurrency=8, max_retries=2)
    assert all(v.valid for v in verdicts[:3])
    poison, malformed = verdicts[3:]
    assert not poison.valid and "InternalServerError" in poison.details["invalid"]
    assert not malformed.valid and "BadRequestError" in malformed.details["invalid"]
    by_reply = {p.rsplit("Reply: ", 1)[1]: n for p, n in endpoint.attempts.items()}
    assert by_reply["poison"] == 3  # the first try and max_retries=2 retries
    assert by_reply["malformed"] == 1  # a 400 is not transient: never retried


def test_a_hanging_request_times_out_into_an_invalid_verdict() -> None:
    items = [*ITEMS[:4], JudgeItem("q", "hang")]
    verdicts, _ = judged(Endpoint(hang="Reply: hang"), items, max_concurrency=8, timeout=1.0)
    assert all(v.valid for v in verdicts[:4])
    assert not verdicts[4].valid and "APITimeoutError" in verdicts[4].details["invalid"]


# -- the per-round budget ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 4])
def test_the_request_budget_stops_further_requests(n: int) -> None:
    endpoint = Endpoint()
    verdicts, _ = judged(endpoint, ITEMS[:8], max_concurrency=n, max_requests_per_round=5)
    assert len(endpoint.bodies) == 5  # the first 5 prompts, whatever the concurrency
    assert verdicts == judged(Endpoint(), ITEMS[:5])[0] + verdicts[5:]
    assert all(not v.valid and v.details["invalid"] == "round budget spent: not asked (max_requests_per_round=5)"
               for v in verdicts[5:])

    endpoint = Endpoint()
    _, pairs = judged(endpoint, [], PAIRS[:2], max_concurrency=n, max_requests_per_round=3)
    assert len(endpoint.bodies) == 3
    assert pairs[0].valid
    assert not pairs[1].valid and "b-first: round budget spent: not asked" in pairs[1].details["invalid"]


def test_the_round_time_budget_gives_up_on_a_hanging_request_without_waiting() -> None:
    items = [*ITEMS[:5], JudgeItem("q", "hang")]
    endpoint = Endpoint(hang="Reply: hang")
    verdicts, _ = judged(endpoint, items, max_concurrency=8, round_timeout=3.0, timeout=600.0)
    assert all(v.valid for v in verdicts[:5])
    assert verdicts[5].details["invalid"] == "round budget spent: no answer within round_timeout=3 s"


def test_what_waits_for_a_worker_past_the_deadline_is_not_asked_at_all() -> None:
    asked: list[str] = []
    main = threading.current_thread()

    def clock() -> float:
        # The round's own thread sees time stand still (it waits for all three); the one worker sees the
        # deadline pass once it has asked the first prompt, while the other two still wait for it.
        return 5.0 if asked and threading.current_thread() is not main else 0.0

    def ask_one(prompt: str, left: float | None) -> str:
        asked.append(prompt)
        return prompt.upper()

    out = ask_concurrently(ask_one, ["a", "b", "c"], 1, RoundBudget(seconds=1.0), clock=clock)
    assert asked == ["a"] and out[0] == "A"
    assert all(str(o) == "round budget spent: no answer within round_timeout=1 s" for o in out[1:])


def test_a_request_that_raises_becomes_its_answer_not_an_error_mid_round() -> None:
    def ask_one(prompt: str, left: float | None) -> str:
        if prompt == "b":
            raise ConnectionError("gone")
        return prompt

    out = ask_concurrently(ask_one, ["a", "b", "c"], 2)
    assert out[0] == "a" and isinstance(out[1], ConnectionError) and out[2] == "c"


# -- local model judges batch instead --------------------------------------------------------------------

class CountingPolicy:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def generate(self, prompts: Sequence[str], spec: Any) -> list[str]:
        self.calls.append(len(prompts))
        return [answer(p) for p in prompts]


def test_the_self_judge_hands_a_round_to_its_model_in_one_batched_call() -> None:
    policy = CountingPolicy()
    self_judge = JUDGES.build("self", {"pairwise": "prompt"}, policy=policy).plugin
    verdicts = self_judge.score(ITEMS)
    pairs = self_judge.compare(PAIRS)
    assert policy.calls == [len(ITEMS), 2 * len(PAIRS)]  # the backend batches them (its batch_size)
    assert all(v.valid for v in verdicts) and all(p.valid for p in pairs)
