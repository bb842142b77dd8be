"""The `openai` judge: any OpenAI-compatible chat-completions endpoint (OpenAI, `vllm serve`, ...).

Requests run concurrently; each one's timeout or error becomes an invalid verdict for that item.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tools.endpoints import Probe
from tools.judges.base import JUDGES
from tools.judges.llm import Answer, LLMJudge, PairwiseMode, make_rubric
from tools.judges.parsing import parse_score
from tools.judges.prompts import pointwise_prompt
from tools.registry import PluginSettingsError

if TYPE_CHECKING:
    from guardrails.constitution import Constitution


class ChatAsker:
    def __init__(self, client: Any, model: str, temperature: float, max_tokens: int,
                 concurrency: int) -> None:
        self.client, self.model = client, model
        self.temperature, self.max_tokens, self.concurrency = temperature, max_tokens, concurrency

    def one(self, prompt: str) -> Answer:
        try:
            reply = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}],
                temperature=self.temperature, max_tokens=self.max_tokens,
            )
            content = reply.choices[0].message.content if reply.choices else None
            return content or ""
        except Exception as err:  # timeouts, HTTP and decoding errors alike
            return err

    def __call__(self, prompts: list[str]) -> list[Answer]:
        if self.concurrency <= 1 or len(prompts) <= 1:
            return [self.one(p) for p in prompts]
        with ThreadPoolExecutor(min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(self.one, prompts))


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
    concurrency: int = 4,
    rubric: str = "additive",
    pairwise: PairwiseMode = "prompt",
    constitution: Constitution | None = None,
) -> LLMJudge:
    """Settings: model, base_url (e.g. http://host:8000/v1), api_key_env (NAME of the env var
    holding the key; none -> "EMPTY", what `vllm serve` accepts), timeout (s per request),
    max_retries, temperature, max_tokens, concurrency, rubric, pairwise ("prompt" | "scores")."""
    from openai import OpenAI

    api_key = "EMPTY"
    if api_key_env:
        api_key = os.environ.get(api_key_env, "")
        if not api_key:
            raise PluginSettingsError(f"judge 'openai': environment variable {api_key_env} is not set")
    client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
    asker = ChatAsker(client, model, temperature, max_tokens, concurrency)
    return LLMJudge(asker, make_rubric(rubric, constitution), pairwise)
