"""The `openai` judge: any OpenAI-compatible chat-completions endpoint (OpenAI, `vllm serve`, ...).

A round's prompts go out as concurrent requests, at most `max_concurrency` in flight, and their answers
come back in prompt order (tools/judges/fanout.py). Every request carries the same parameters (model,
temperature, max_tokens, seed), so a round's verdicts do not depend on the concurrency. Transient
failures (timeouts, connection errors, HTTP 408/409/429/5xx) are retried by the `openai` client itself,
up to `max_retries` times with exponential backoff and jitter (0.5 s doubling up to 8 s, each cut by up
to a quarter, or the server's Retry-After). A request that still fails, and whatever the round's budget
(`max_requests_per_round`, `round_timeout`) leaves unasked or unanswered, becomes an invalid verdict
with its reason: nothing raises mid-round.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tools.endpoints import Probe, api_key
from tools.judges.base import JUDGES
from tools.judges.fanout import RoundBudget, ask_concurrently, check_concurrency
from tools.judges.llm import Answer, LLMJudge, PairwiseMode, make_rubric
from tools.judges.parsing import parse_score
from tools.judges.prompts import pointwise_prompt
from tools.registry import PluginSettingsError

if TYPE_CHECKING:
    from guardrails.constitution import Constitution

DEFAULT_MAX_CONCURRENCY = 4


@dataclass(frozen=True)
class ChatRequest:
    """What each request sends besides its prompt: the same for every one of a judge's requests."""

    model: str
    temperature: float
    max_tokens: int
    seed: int | None  # None: not sent, for an endpoint that refuses the parameter

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.model, "temperature": self.temperature,
                                  "max_tokens": self.max_tokens}
        if self.seed is not None:
            params["seed"] = self.seed
        return params


class ChatAsker:
    """Prompts -> answer texts (or the exception a request ended with), in order."""

    def __init__(self, client: Any, request: ChatRequest, timeout: float, max_concurrency: int,
                 budget: RoundBudget) -> None:
        self.client, self.request, self.timeout = client, request, timeout
        self.max_concurrency, self.budget = max_concurrency, budget

    def one(self, prompt: str, seconds_left: float | None) -> Answer:
        # Each attempt's timeout is cut to what the round has left, so a stalled request ends near the
        # round's deadline rather than holding a thread for the full `timeout` after the round gave it up.
        timeout = self.timeout if seconds_left is None else min(self.timeout, seconds_left)
        try:
            reply = self.client.chat.completions.create(
                messages=[{"role": "user", "content": prompt}], timeout=timeout, **self.request.params(),
            )
            content = reply.choices[0].message.content if reply.choices else None
            return content or ""
        except Exception as err:  # timeouts, HTTP and decoding errors alike, after the client's retries
            return err

    def __call__(self, prompts: list[str]) -> list[Answer]:
        return ask_concurrently(self.one, prompts, self.max_concurrency, self.budget)


def resolve_concurrency(max_concurrency: int | None, concurrency: int | None) -> int:
    """`max_concurrency`, or its old spelling `concurrency` (still read, deprecated); never both."""
    if max_concurrency is not None and concurrency is not None:
        raise PluginSettingsError("judge 'openai': concurrency is the old spelling of max_concurrency: "
                                  "write only max_concurrency")
    given = max_concurrency if max_concurrency is not None else concurrency
    return check_concurrency(DEFAULT_MAX_CONCURRENCY if given is None else given)


# The probe's judgment: short, and one any judge model scores without thinking long.
PROBE_ITEM = ("What is 2 + 2?", "2 + 2 = 4.")


def _probe_check(answer: str) -> str | None:
    verdict = parse_score(answer)
    return None if verdict.valid else str(verdict.details.get("invalid", "invalid"))


def endpoints(settings: Mapping[str, Any]) -> list[Probe]:
    """The endpoint an `openai` judge with `settings` calls, as pre-flight's probe (its registry `reaches`
    hook): one pointwise judgment, read by the judge's own parser. Malformed settings probe nothing: the
    config check or the judge's construction reports them."""
    defaults = {k: p.default for k, p in inspect.signature(openai_judge).parameters.items()}
    model, base_url, key_env = settings.get("model"), settings.get("base_url"), settings.get("api_key_env")
    timeout, max_tokens = settings.get("timeout", defaults["timeout"]), settings.get("max_tokens",
                                                                                       defaults["max_tokens"])
    if not (isinstance(model, str) and isinstance(base_url, str | None) and isinstance(key_env, str | None)
            and isinstance(timeout, int | float) and isinstance(max_tokens, int)):
        return []
    return [Probe("judge", base_url, model, key_env, pointwise_prompt(*PROBE_ITEM), max_tokens, float(timeout),
                  _probe_check, "a 'Score: N' line (N from 1 to 5)")]


@JUDGES.register("openai", reaches=endpoints)
def openai_judge(
    model: str,
    base_url: str | None = None,
    api_key_env: str | None = None,
    timeout: float = 60.0,
    max_retries: int = 2,
    temperature: float = 0.0,
    max_tokens: int = 256,
    seed: int | None = 0,
    max_concurrency: int | None = None,
    max_requests_per_round: int | None = None,
    round_timeout: float | None = None,
    rubric: str = "additive",
    pairwise: PairwiseMode = "prompt",
    concurrency: int | None = None,
    constitution: Constitution | None = None,
) -> LLMJudge:
    """Settings: model, base_url (e.g. http://host:8000/v1), api_key_env (NAME of the env var
    holding the key; none -> "EMPTY", what `vllm serve` accepts), timeout (s per request attempt),
    max_retries (of a transient failure, by the client, with backoff), temperature, max_tokens, seed
    (sent with every request; null: not sent), max_concurrency (requests in flight, default 4),
    max_requests_per_round and round_timeout (s) (the round's budget; null: none), rubric, pairwise
    ("prompt" | "scores"); concurrency is the deprecated old spelling of max_concurrency."""
    from openai import OpenAI

    workers = resolve_concurrency(max_concurrency, concurrency)
    budget = RoundBudget(max_requests_per_round, round_timeout)
    if seed is not None and type(seed) is not int:
        raise PluginSettingsError(f"judge 'openai': seed must be a whole number or null (not sent), got {seed!r}")
    key = api_key(api_key_env)
    if key is None:
        raise PluginSettingsError(f"judge 'openai': environment variable {api_key_env} is not set")
    client = OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries)
    asker = ChatAsker(client, ChatRequest(model, temperature, max_tokens, seed), timeout, workers, budget)
    return LLMJudge(asker, make_rubric(rubric, constitution), pairwise)
