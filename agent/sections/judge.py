"""The `judge` section: the judge, the pool the controller may switch to, and the audit it must have passed
(agent/run/judge_trust.py)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator

from agent.sections.base import _Section

# The metrics a judge audit reports (tools/judges/audit.py on a world's probes, labelled_audit.py on a
# labelled file); a test holds this list to theirs. Named here so the config loads no judge.
AUDIT_METRICS = frozenset({"accuracy", "position_bias", "length_bias", "self_preference", "oracle_agreement",
                           "oracle_spearman", "invalid_rate", "ece", "spearman", "mae"})


class JudgeSpecConfig(_Section):
    name: str = Field(description="Judge plug-in (tools/judges).")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Keyword settings passed to the judge's constructor."
    )


class JudgeConfig(_Section):
    name: str = Field("rules", description="Judge plug-in (tools/judges).")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Keyword settings passed to the judge's constructor."
    )
    pool: list[JudgeSpecConfig] = Field(
        default_factory=list,
        description="Further judge configurations the controller may switch to, in order; the judge "
        "above comes first. Empty: a judge found unreliable stops the run instead.",
    )
    require_audit: dict[str, float] | None = Field(
        None,
        description="Bounds on audit metrics (`tether judge audit`), e.g. {accuracy: 0.7, ece: 0.15, "
        "position_bias: 0.2}: a run refuses every judge of the pool whose latest audit of this configuration on "
        "this world signed by a reviewer (`tether judge audit --by NAME`) is missing or misses one (each metric "
        "is bounded the way it flags: a rate or bias from above, accuracy and agreement from below). A "
        "per-category metric is written `accuracy[CATEGORY]`. "
        "None: no audit is required.",
    )

    @field_validator("require_audit")
    @classmethod
    def _known_metrics(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for metric, bound in (value or {}).items():
            base = metric.split("[", 1)[0]
            if base not in AUDIT_METRICS:
                raise ValueError(f"unknown audit metric {metric!r}: one of {', '.join(sorted(AUDIT_METRICS))} "
                                 "(a per-category one as accuracy[CATEGORY])")
            if not math.isfinite(bound):
                raise ValueError(f"{metric}: the bound must be a finite number, got {bound}")
        if value is not None and not value:
            raise ValueError("an empty map requires nothing: leave require_audit out, or name a metric")
        return value

    def slots(self) -> list[JudgeSpecConfig]:
        """The whole pool in order: slot 0 is `name`/`settings`, then `pool`."""
        return [JudgeSpecConfig(name=self.name, settings=self.settings), *self.pool]
