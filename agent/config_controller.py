"""The meta-controller's settings: every threshold a rule reads, with its default and bound."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.config_base import MAX_PROMPTS, MAX_ROUNDS, _Section
from tether_types import INTERVENTIONS, Intervention

# The interventions on by default: all but switch_pairs, which is opted into (with a pairs.pool to
# move through) by listing it.
OPT_IN_INTERVENTIONS: frozenset[Intervention] = frozenset({"switch_pairs"})
DEFAULT_INTERVENTIONS: tuple[Intervention, ...] = tuple(i for i in INTERVENTIONS if i not in OPT_IN_INTERVENTIONS)


class SwitchJudgeConfig(_Section):
    max_length_score_corr: float = Field(
        0.6, ge=-1.0, le=1.0,
        description="Leave a judge whose length-score correlation on a round is above this (it pays "
        "for length).",
    )
    min_position_consistency: float = Field(
        0.7, ge=0.0, le=1.0,
        description="Leave a judge whose verdicts agree across both presentation orders less often.",
    )
    invalid_rounds: int = Field(
        2, ge=1, le=MAX_ROUNDS,
        description="Leave a judge after this many rounds in a row above max_invalid_share.",
    )


class RegenerateTriggerConfig(_Section):
    max_prompt_reuse: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Prompt saturation: more than this share of a round's prompts was used before.",
    )
    min_prompt_dispersion: float = Field(
        0.2, ge=0.0, le=2.0,
        description="Prompt saturation: the round's prompts are less spread out than this (mean "
        "pairwise MiniLM cosine distance).",
    )
    margin_drop: float = Field(
        0.5, gt=0.0, le=1.0,
        description="Prompt saturation: the pair margin fell by this share of its peak over `window` "
        "rounds while more than half of the round's prompts were reused.",
    )
    window: int = Field(3, ge=2, le=MAX_ROUNDS, description="Rounds the margin trend is read over.")


class AdversarialTriggerConfig(_Section):
    plateau_rounds: int = Field(
        2, ge=1, le=MAX_ROUNDS,
        description="Held-out plateau: no gain of min_gain over this many trained rounds.",
    )
    min_gain: float = Field(
        0.02, ge=0.0, le=1.0,
        description="Smallest held-out gain that counts as progress, in [0, 1] like held-out scores.",
    )


class AmendmentTriggerConfig(_Section):
    max_over_refusal: float = Field(
        0.3, ge=0.0, le=1.0,
        description="Over-refusal: share of responses to prompts the constitution deems benign that "
        "are refusals, above which the agent drafts a stronger helpfulness principle.",
    )
    patience: int = Field(
        2, ge=1, le=MAX_ROUNDS, description="Rounds in a row over the threshold before it drafts."
    )


class BlindSpotConfig(_Section):
    """A prompt family whose preference signal collapsed (agent/rules_blind_spot.py): the controller
    switches to the next judge of judge.pool (switch_judge), else to the next pair strategy of
    pairs.pool (switch_pairs), instead of training on it as it is."""

    max_family_tie_rate: float = Field(
        0.8, ge=0.0, le=1.0,
        description="A family collapsed when at least this share of its prompts whose responses differ get the "
        "same judge score for every response (family tie_rate).",
    )
    min_family_spread: float = Field(
        0.05, ge=0.0, le=1.0,
        description="A family collapsed when its mean best-minus-worst judge score per prompt is below this.",
    )
    max_family_disagreement: float = Field(
        0.35, ge=0.0, le=1.0,
        description="A family collapsed when a jury's members order its response pairs oppositely more often than "
        "this (0.5 = coin flips); read only when the judge is a jury.",
    )
    max_family_margin_collapse: float = Field(
        0.6, gt=0.0, le=1.0,
        description="A family collapsed when its mean pair margin fell by at least this share of its peak in "
        "earlier rounds of the run.",
    )
    min_family_prompts: int = Field(
        8, ge=1, le=MAX_PROMPTS,
        description="A family with fewer prompts with two valid judgments in a round is not judged on it (too few "
        "to tell).",
    )
    patience: int = Field(
        2, ge=1, le=MAX_ROUNDS,
        description="Rounds in a row, under the same judge and pair strategy, a family's signal must have "
        "collapsed before the controller switches.",
    )


class RegressionConfig(_Section):
    """Over-optimisation (agent/rules_regression.py): the policy's samples drifted from what the base
    model finds natural, or its held-out score fell below the run's best, while it trained on its judge's
    pairs. The controller moves to the next pair strategy of pairs.pool (switch_pairs; e.g. regularized)."""

    max_base_logp_drop: float = Field(
        0.5, gt=0.0, le=100.0,
        description="The base model's mean log-prob per token of the round's samples at least this far (nats) "
        "below the run's first round (drift monitor; silent with the vllm backend).",
    )
    max_drop: float = Field(
        0.04, gt=0.0, le=1.0,
        description="The held-out score of the active policy at least this far below the run's best.",
    )
    patience: int = Field(
        2, ge=1, le=MAX_ROUNDS,
        description="Evaluated rounds a pair strategy trains before a regression may move the run past it.",
    )


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


class ControllerConfig(_Section):
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
    interventions: list[Intervention] = Field(
        default_factory=lambda: list(DEFAULT_INTERVENTIONS),
        description="Interventions the controller may choose; [] = train / skip / stop only. switch_pairs (move "
        "to the next strategy of pairs.pool on a blind spot) is not on by default: list it to use it.",
    )
    heldout_metric: Literal["oracle", "judge"] = Field(
        "oracle",
        description="Held-out score plateaus and stops are read from: oracle = the task verifiers "
        "(the tiny world has them), judge = the judge in use.",
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
    switch_judge: SwitchJudgeConfig = SwitchJudgeConfig()
    regenerate_prompts: RegenerateTriggerConfig = RegenerateTriggerConfig()
    add_adversarial: AdversarialTriggerConfig = AdversarialTriggerConfig()
    propose_amendment: AmendmentTriggerConfig = AmendmentTriggerConfig()
    blind_spot: BlindSpotConfig = BlindSpotConfig()
    regression: RegressionConfig = RegressionConfig()
    stop: StopConfig = StopConfig()
    advisor: AdvisorConfig | None = Field(None, description="Optional LLM advisor (null = rules only).")


