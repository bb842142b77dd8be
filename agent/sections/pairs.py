"""The `pairs` section of the run configuration: the pair strategy and the pool switch_pairs moves through."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from agent.sections.base import _Section


class PairStrategyConfig(_Section):
    name: str = Field(description="Pair strategy plug-in (tools/pairs): best_worst, anchored, diverse, iterative_dpo, "
                      "rpo, regularized.")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Keyword settings passed to the strategy's constructor."
    )


def default_pair_pool(backend: str) -> list[dict[str, Any]]:
    """pairs.pool when the config leaves it null: regularized (the failure-worlds suite's evidence, README "Failure
    worlds") where the backend computes the base model's log-probs it ranks by, else rpo (chosen-NLL, no
    log-probs needed)."""
    return [{"name": "regularized" if backend == "transformers" else "rpo"}]


class PairsConfig(_Section):
    """How a round's judged responses become preference pairs (tools/pairs): `strategy` first, then the
    strategies of `pool` in order, each time the controller's `switch_pairs` moves on (on a blind spot:
    controller.blind_spot, a collapse: controller.collapse, or a regression: controller.regression; while
    switch_pairs is listed in controller.interventions, as it is by default)."""

    min_margin: float = Field(
        0.1, gt=0.0, le=1.0,
        description="Smallest chosen-minus-rejected score kept as a preference pair, in (0, 1]: judge "
        "scores lie in [0, 1].",
    )
    strategy: str = Field(
        "best_worst",
        description="Pair strategy plug-in (tools/pairs): best_worst (best vs worst response per prompt), anchored "
        "(rejected from the base model's samples: Temporal Self-Rewarding), diverse (chosen high-scoring and rare, "
        "rejected low-scoring and common: DivPO), iterative_dpo (best_worst against the last approved checkpoint "
        "as DPO reference), rpo (best_worst + the chosen responses' NLL: Iterative RPO), regularized (judge score "
        "+ the base model's log-prob: the KL-regularised optimum).",
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword settings of the strategy, e.g. {reference: parent} (any strategy: train against the "
        "last approved checkpoint) or {quality_band: 0.5} (diverse).",
    )
    pool: list[PairStrategyConfig] = Field(
        default_factory=lambda: [PairStrategyConfig(**spec) for spec in default_pair_pool("transformers")],
        max_length=16,
        description="Further strategies the controller may switch to (switch_pairs), in order; the strategy "
        "above comes first. null = the generation backend's default: [regularized] with transformers (the "
        "failure-worlds suite), [rpo] with vllm or server, which compute no base log-probs.",
    )

    def slots(self) -> list[PairStrategyConfig]:
        """The whole pool in order: slot 0 is `strategy`/`settings`, then `pool`."""
        return [PairStrategyConfig(name=self.strategy, settings=self.settings), *self.pool]

    def base_logp_strategies(self) -> list[str]:
        """The strategies of the pool that rank by the base model's log-probs (transformers only)."""
        from tools.pairs import PAIR_STRATEGIES  # light: no model code

        return sorted({slot.name for slot in self.slots()
                       if PAIR_STRATEGIES.build(slot.name, slot.settings).plugin.needs_base_logp})

    @model_validator(mode="after")
    def _strategies_build(self) -> PairsConfig:
        from tools.pairs import PAIR_STRATEGIES  # light: no model code
        from tools.registry import PluginSettingsError, UnknownPluginError

        problems = []
        for i, slot in enumerate(self.slots()):
            where = "strategy" if i == 0 else f"pool[{i - 1}]"
            try:
                PAIR_STRATEGIES.build(slot.name, slot.settings)
            except (UnknownPluginError, PluginSettingsError) as err:
                problems.append(f"{where}: {err}")
        if problems:
            raise ValueError("; ".join(problems))
        return self
