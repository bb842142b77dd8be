"""OpenAI-compatible endpoints a plug-in calls (the `openai` judge, the controller's advisor), and the
pre-flight probe that shows each one answers before a run depends on it.

A probe is one short request with the prompt its user really sends, its answer read by the user's own
parser: a server that is down, a model name it does not serve, a missing key or a model that does not
follow the format shows up in `tether validate`, not as a round of invalid judgments. Users that share
an endpoint, a model and a purpose share one request; requests go out together, with no retries and a
short timeout, so a dead endpoint costs seconds. `openai` is imported only when there is something to
probe: a run without endpoints makes no request and loads nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

# Seconds a probe waits at most, whatever the user's own (per-request, often generous) timeout.
PROBE_TIMEOUT = 15.0
DEFAULT_URL = "https://api.openai.com/v1"  # where the OpenAI client goes without a base_url


def describe_error(err: BaseException) -> str:
    """`Type: message`, followed by the causes that say more: the OpenAI client's `Connection error.`
    hides the `Connection refused` (or the DNS failure) that tells a reader what to fix. An error the
    server answered (it has a `status_code`) already carries the server's own words; its cause, the HTTP
    library's restatement, is left out. One line: each message's first."""
    parts, said = [_line(err)], {str(err).strip()}
    seen = {id(err)}
    cause = None if hasattr(err, "status_code") else err.__cause__ or err.__context__
    while cause is not None and id(cause) not in seen and len(parts) < 3:
        seen.add(id(cause))
        if str(cause).strip() not in said | {""}:  # the same words from the next layer down add nothing
            parts.append(_line(cause))
            said.add(str(cause).strip())
        cause = cause.__cause__ or cause.__context__
    return parts[0] + "".join(f" ({p})" for p in parts[1:])


def _line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


@dataclass(frozen=True)
class Probe:
    """One request that shows an endpoint is of use to its user: the prompt it sends, and `check`, which
    says why an answer is no use to it (None when it is)."""

    purpose: str  # what asks ("judge", "advisor"): users of one purpose share a request per endpoint+model
    base_url: str | None
    model: str
    api_key_env: str | None
    prompt: str
    max_tokens: int
    timeout: float
    check: Callable[[str], str | None]
    expects: str  # the answer's format, for the fix: "a 'Score: N' line"
    api: Literal["chat", "moderation"] = "chat"  # the endpoint's API: chat completions, or /moderations (its JSON)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.purpose, self.base_url or DEFAULT_URL, self.model


@dataclass(frozen=True)
class Use:
    """A probe and who needs it, named as the config names it ("judge.pool[0] (openai)")."""

    who: str
    probe: Probe


def probe_problems(uses: Sequence[Use]) -> list[str]:
    """One problem per endpoint+model+purpose that does not answer usefully, naming every user of it; []
    when all answer (or there is nothing to probe: no request is made)."""
    groups: dict[tuple[str, str, str], list[Use]] = {}
    for use in uses:
        groups.setdefault(use.probe.key, []).append(use)
    if not groups:
        return []
    merged = [_merged(group) for group in groups.values()]
    with ThreadPoolExecutor(len(merged)) as pool:  # one request each, all at once: the slowest sets the wait
        found = list(pool.map(_ask, [probe for _, probe in merged]))
    return [f"{who} at {probe.key[1]}, model {probe.model}: {why}"
            for (who, probe), why in zip(merged, found, strict=True) if why is not None]


def _merged(group: list[Use]) -> tuple[str, Probe]:
    """The users' names, and one probe for them all: the longest answer any of them allows (a cut answer
    would look unparseable), within the shortest timeout any of them sets."""
    who = ", ".join(dict.fromkeys(u.who for u in group))
    first = group[0].probe
    probe = Probe(first.purpose, first.base_url, first.model, first.api_key_env, first.prompt,
                  max(u.probe.max_tokens for u in group), min(u.probe.timeout for u in group),
                  first.check, first.expects, first.api)
    return who, probe


def api_key(api_key_env: str | None) -> str | None:
    """The key an endpoint is called with: the value of the variable `api_key_env` names, "EMPTY" (what `vllm
    serve` accepts) when none is named, None when the named variable is unset or empty (each caller says so
    in its own terms)."""
    if not api_key_env:
        return "EMPTY"
    return os.environ.get(api_key_env) or None


def _ask(probe: Probe) -> str | None:
    """Why the endpoint is of no use to the probe's user, with the fix; None when it answered usefully."""
    key = api_key(probe.api_key_env)
    if key is None:
        return (f"environment variable {probe.api_key_env} (api_key_env) is not set: export the key in the "
                "shell that runs tether")
    from openai import OpenAI  # only with an endpoint to probe: a local-only run never loads it

    try:
        client = OpenAI(base_url=probe.base_url, api_key=key, timeout=min(probe.timeout, PROBE_TIMEOUT),
                        max_retries=0)
        answer = _request(client, probe)
    except Exception as err:  # refused, timed out, HTTP error, a reply that is not chat-completions JSON
        return (f"unreachable or refused: {describe_error(err)[:400]}: start the server, or correct base_url, "
                "the model name or the key")
    why = probe.check(answer)
    if why is None:
        return None
    shown = answer if len(answer) <= 120 else answer[:120] + "..."
    return (f"its answer cannot be parsed ({why}): {shown!r}; {probe.purpose} needs {probe.expects}: use a "
            "model that follows the format (an instruct model), or raise max_tokens if the answer was cut off")


def _request(client: Any, probe: Probe) -> str:
    """The probe's one request; its answer as text (a moderation result as its JSON)."""
    if probe.api == "moderation":
        return client.moderations.create(model=probe.model, input=probe.prompt).model_dump_json()
    reply = client.chat.completions.create(
        model=probe.model, messages=[{"role": "user", "content": probe.prompt}], temperature=0.0,
        max_tokens=probe.max_tokens,
    )
    return (reply.choices[0].message.content if reply.choices else None) or ""
