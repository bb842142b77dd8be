"""The meta-controller's own settings: the round budget, hysteresis, stops and the advisor, with their
defaults and bounds. Each intervention's and trigger's thresholds are its own section, beside its rule
(agent/interventions/<name>.py); `with_sections` composes them into the `controller:` section."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, create_model, model_validator

from agent.sections.base import MAX_PROMPTS, MAX_ROUNDS, _Section


class StopConfig(_Section):
    patience: int = Field(
        3, ge=1, le=MAX_ROUNDS,
        description="Stop when held-out scores have not improved by min_gain for this many trained "
        "rounds and every enabled plateau intervention was tried since the last gain.",
    )
    max_invariant_failures: int = Field(
        2, ge=1, le=MAX_ROUNDS, description="Stop after this many candidates in a row fail an invariant check."
    )


class AdvisorConfig(_Section):
    """An LLM that proposes an action with its reason; the rule policy validates it and may overrule it."""

    model: str = Field(description="Model name at the endpoint.")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://host:8000/v1.")
    api_key_env: str | None = Field(None, description="Name of the env var holding the API key.")
    timeout: float = Field(
        30.0, gt=0.0, le=600.0, description="Seconds per request, at most 600; a timeout means no advice."
    )


class LearnedSettings(_Section):
    """policy: learned: when the fitted policy may leave the rules' pick (SPIBB's baseline bootstrapping:
    agent/controller/learned.py)."""

    min_decisions: int = Field(
        10, ge=1, le=100_000,
        description="An action the policy was fitted on fewer decisions of is never preferred to the rules' pick.",
    )
    min_gain: float = Field(
        0.01, ge=0.0, le=1.0,
        description="Another action's predicted gain over the rules' pick (validation held-out change over the "
        "outcome window) must be at least this, at its lower confidence bound, before the policy takes it.",
    )
    confidence: float = Field(
        0.9, ge=0.5, lt=1.0,
        description="The one-sided confidence of that lower bound, from the models' posterior uncertainty (0.5: "
        "the predicted gain itself).",
    )


class ControllerSettings(_Section):
    """The controller's own fields; `with_sections` adds each plug-in's section (controller.<name>)."""

    rounds: int = Field(
        3, ge=1, le=MAX_ROUNDS,
        description=f"Round budget, at most {MAX_ROUNDS}; `tether run --rounds` overrides it.",
    )
    min_pairs: int = Field(
        1, ge=1, le=MAX_PROMPTS,
        description="Fewer pairs than this in a round stops the run; at most prompts.per_round (one pair "
        "per prompt).",
    )
    max_invalid_share: float = Field(
        0.2, ge=0.0, le=1.0,
        description="A round whose share of invalid judgments is above this is not trained on.",
    )
    interventions: list[str] = Field(
        default_factory=list,
        description="Interventions the controller may choose; [] = train / skip / stop only (the fixed recipe). "
        "Every built-in one is on by default; switch_pairs (the next strategy of pairs.pool on a blind spot, a "
        "collapse or a regression) since the failure-worlds suite.",
    )
    heldout_metric: Literal["oracle", "judge"] = Field(
        "oracle",
        description="Held-out score plateaus and stops are read from: oracle = the task verifiers "
        "(the world's; the default world has them), judge = the judge in use.",
    )
    max_repeats: int = Field(
        2, ge=1, le=MAX_ROUNDS, description="The same intervention at most this many rounds in a row."
    )
    cooldown: int = Field(
        2, ge=0, le=MAX_ROUNDS, description="Rounds an intervention rests after a streak of max_repeats."
    )
    max_interventions_in_a_row: int = Field(
        3, ge=1, le=MAX_ROUNDS, description="After this many intervention rounds in a row the next round trains."
    )
    stop: StopConfig = StopConfig()
    advisor: AdvisorConfig | None = Field(None, description="Optional LLM advisor (null = rules only).")
    policy: Literal["rules", "learned"] = Field(
        "rules",
        description="rules = the ordered rules choose; learned = a fitted policy (policy_file, adopted by a signed "
        "approval of kind controller) chooses among the actions the rules permit this round, never over the "
        "safety rules.",
    )
    policy_file: str | None = Field(
        None, description="The fitted policy (`tether controller fit`), relative to this config; policy: learned only."
    )
    explore: float = Field(
        0.1, ge=0.0, le=0.5,
        description="policy: learned: the chance (at most 0.5) that a round picks uniformly among the permitted "
        "actions instead of the best predicted one; each decision logs whether it explored.",
    )
    learned: LearnedSettings = LearnedSettings()
    outcome_rounds: int = Field(
        2, ge=1, le=MAX_ROUNDS,
        description="k: a decision's outcome is measured over its round and the k-1 after it, cut at the round "
        "budget (validation held-out change, invariant failures, drift, cost). Over one round an intervention's "
        "outcome is 0 by construction: its round trains nothing.",
    )

    @model_validator(mode="after")
    def _one_chooser(self) -> ControllerSettings:
        if self.policy == "learned" and not self.policy_file:
            raise ValueError("controller.policy: learned needs controller.policy_file (fit one with `tether "
                             "controller fit --runs RUN --out FILE`)")
        if self.policy == "learned" and self.advisor is not None:
            raise ValueError("controller.policy: learned and controller.advisor both choose among the permitted "
                             "actions: set advisor: null or policy: rules")
        if self.policy_file and self.policy != "learned":
            raise ValueError("controller.policy_file is read with policy: learned only: set policy: learned or "
                             "remove policy_file")
        return self


def with_sections(sections: Mapping[str, type[_Section]], known: Callable[[str], str],
                  on_by_default: Sequence[str]) -> type[ControllerSettings]:
    """The `controller:` section: `ControllerSettings` plus one section per plug-in, named by it, with its
    defaults. `known` checks an intervention's name (raising ValueError with a suggestion); the default
    `interventions` list is `on_by_default`."""
    clash = sorted(set(sections) & set(ControllerSettings.model_fields))
    if clash:
        raise ValueError(f"controller section(s) {', '.join(clash)} would replace a setting of the controller")
    listed = ControllerSettings.model_fields["interventions"]
    fields: dict[str, Any] = {
        "interventions": (list[Annotated[str, AfterValidator(known)]],
                          Field(default_factory=lambda: list(on_by_default), description=listed.description)),
        **{name: (section, section()) for name, section in sections.items()},
    }
    return create_model("ControllerConfig", __base__=ControllerSettings, __module__=__name__, **fields)
