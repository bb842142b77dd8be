"""The optional LLM advisor: a model at an OpenAI-compatible endpoint reads the round's signals and
proposes one action with its reason. It only advises: `agent.controller.policy` takes the proposal when the
rules permit that action this round and overrules it otherwise, and the safety rules (budget,
invariant failures, an unreliable judge) come before it in any case. A reply that does not parse, or
an endpoint that fails, is advice the policy logs and overrules (fail closed).
"""

from __future__ import annotations

import re

from agent.controller.policy import Advice, ControllerInput, RoundSignals
from agent.interventions import interventions
from agent.sections.controller import AdvisorConfig, ControllerSettings
from tether_types import Action
from tools.endpoints import Probe, api_key, describe_error

# What the advisor may propose: train, or an intervention that lets it (`advisable`), in their order.
ADVISABLE: tuple[Action, ...] = ("train", *(spec.name for spec in interventions() if spec.advisable))
_ACTION = re.compile(r"^\s*action\s*:\s*([a-z_]+)\s*$", re.IGNORECASE | re.MULTILINE)
_REASON = re.compile(r"^\s*reason\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
# Monitors the advisor is shown: the ones the policy reads, plus quality context.
SHOWN = ("pairs", "margin_mean", "score_std", "length_mean", "length_score_corr", "position_consistency",
         "invalid_share", "over_refusal", "harmful_compliance", "prompt_reuse", "prompt_embedding_dispersion",
         "distinct_2", "embedding_dispersion")
ADVICE_TOKENS = 96  # two short lines


def advisor_prompt(inp: ControllerInput) -> str:
    """What the advisor reads: this round's signals, the recent actions, the held-out curve (the validation
    split's: agent/run/splits.py), the choices."""
    monitors = "\n".join(f"- {k}: {inp.now.monitors[k]:.3f}" for k in SHOWN if k in inp.now.monitors)
    history = ", ".join(f"r{r.round}={r.action}" for r in inp.past[-5:]) or "none"
    curve = ", ".join(f"r{r}={s:.3f}" for r, s in inp.heldout) or "not evaluated yet"
    return (
        "You steer a self-improvement loop that trains a language model with preference pairs judged by an AI "
        f"judge. Round {inp.now.round} of {inp.budget}, judge {inp.now.judge}.\n"
        f"Monitors this round:\n{monitors}\n"
        f"Recent actions: {history}\nHeld-out (validation) score of the active model: {curve}\n"
        f"Recorded failures to target: {inp.failures}\n"
        f"Choose one action: {', '.join(ADVISABLE)}.\n"
        "Answer exactly two lines:\nAction: <action>\nReason: <one sentence>"
    )


def parse_advice(text: str, source: str) -> Advice:
    """Strict: exactly one `Action:` line naming a known action and a `Reason:` line."""
    actions = _ACTION.findall(text)
    reason = _REASON.search(text)
    if len(actions) != 1 or actions[0].lower() not in ADVISABLE or reason is None:
        return Advice("", f"unparseable advice: {text.strip()[:200]!r}", source)
    return Advice(actions[0].lower(), reason.group(1), source)


def ask_advisor(cfg: ControllerSettings, inp: ControllerInput) -> Advice:
    """One request to the configured endpoint; any failure becomes advice the policy overrules."""
    assert cfg.advisor is not None
    adv = cfg.advisor
    source = f"advisor {adv.model}"
    key = api_key(adv.api_key_env)
    if key is None:
        return Advice("", f"no advice: environment variable {adv.api_key_env} is not set", source)
    from openai import OpenAI

    try:
        client = OpenAI(base_url=adv.base_url, api_key=key, timeout=adv.timeout, max_retries=0)
        reply = client.chat.completions.create(
            model=adv.model, messages=[{"role": "user", "content": advisor_prompt(inp)}], temperature=0.0,
            max_tokens=ADVICE_TOKENS,
        )
        content = (reply.choices[0].message.content if reply.choices else None) or ""
    except Exception as err:  # timeouts, HTTP and decoding errors alike
        return Advice("", f"no advice: {describe_error(err)}", source)
    return parse_advice(content, source)


def _probe_check(answer: str) -> str | None:
    if parse_advice(answer, "probe").action:
        return None
    return "no single 'Action:' line naming a known action, or no 'Reason:' line"


def advisor_probe(adv: AdvisorConfig) -> Probe:
    """Pre-flight's probe of the advisor's endpoint: the question a first round asks (no monitors yet), its
    answer read by `parse_advice`."""
    first = ControllerInput(now=RoundSignals(round=1, pairs=0, judge="(pre-flight)"), budget=1)
    return Probe("advisor", adv.base_url, adv.model, adv.api_key_env, advisor_prompt(first), ADVICE_TOKENS, adv.timeout,
                 _probe_check, f"one 'Action: <{'|'.join(ADVISABLE)}>' line and a 'Reason: ...' line")
