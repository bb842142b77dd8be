"""A learned controller policy (`controller.policy: learned`): a contextual bandit over the decision's monitor
features, one Bayesian ridge regressor per action predicting the validation held-out change over the decision's
window (agent/controller/outcomes.py), fitted by `tether controller fit` (agent/controller/fit.py, scikit-learn).
Bayesian, so that each prediction comes with how little the fit knows about it: a few hundred decisions fit the
models, an intervention's on a few dozen, and there a confident-looking coefficient is noise.

It only chooses: the soft rule (agent/controller/rules.py `_learned`) asks it to pick among the actions the rules
permit this round, after every safety rule has spoken, exactly as the advisor may. Exploration is epsilon-greedy,
bounded by `controller.explore` and seeded by (run seed, round), so a resumed round picks the same.

Otherwise it keeps the rules' pick unless it has grounds to leave it, as safe policy improvement does: with
baseline bootstrapping (SPIBB: Laroche, Trichelair and Tachet des Combes 2019, arXiv:1712.06924) an action fitted
on fewer than `controller.learned.min_decisions` decisions is never preferred to the rules' pick, and a rules' pick
that is itself fitted on fewer (or not at all) is kept; and with a high-confidence bound (as in Thomas, Theocharous
and Ghavamzadeh 2015, "High confidence policy improvement") another action is taken only where the lower
`controller.learned.confidence` bound of its predicted gain over the rules' pick is at least
`controller.learned.min_gain`.

A policy file is untrusted input: plain JSON (no pickle, nothing executes on load), read through a strict schema
whose numbers must be finite and whose shapes must agree; a run adopts it only when its sha256 carries a verified
approval of kind controller (guardrails/controller_policy.py). Features that are missing, NaN or infinite take the
fitted median, and standardized features are clipped, so no input moves a prediction without bound.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.controller.vocabulary import LearnedChoice
from tether_types import EXIT_USAGE, TetherError

FORMAT: Literal["tether.controller-policy"] = "tether.controller-policy"
MAX_BYTES = 1 << 20  # a fitted linear policy is a few kB
CLIP = 5.0  # standard deviations: a feature beyond moves a prediction no further
# The monitor keys a decision logs as `monitor.<key>` that the policy reads, then derived features.
MONITORS = ("margin_mean", "score_std", "length_mean", "length_score_corr", "position_consistency", "invalid_share",
            "over_refusal", "harmful_compliance", "prompt_reuse", "prompt_embedding_dispersion", "distinct_2",
            "embedding_dispersion", "base_logp_mean")
# final_round: near the budget an outcome window is cut (agent/controller/outcomes.py), and on the last round an
# intervention changes nothing any round trains on: a step no linear term in round_fraction can draw.
FEATURES: tuple[str, ...] = (*(f"monitor.{k}" for k in MONITORS), "pairs", "round_fraction", "final_round",
                             "heldout_last_change", "heldout_below_best")

Finite = Annotated[float, Field(allow_inf_nan=False)]


class PolicyFileError(TetherError):
    """A policy file that is not a valid fitted policy (exit 2: nothing was run)."""

    exit_code = EXIT_USAGE


class ActionModel(BaseModel):
    """One action's Bayesian ridge: the posterior mean (coef, intercept) and what the uncertainty of a predicted
    mean needs: the posterior covariance of coef (`cov`, sklearn's sigma_), the features' mean it was centred on
    (`offset`) and the noise variance (1 / sklearn's alpha_)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    coef: list[Finite]
    intercept: Finite
    n: int = Field(ge=1, description="decisions it was fitted on")
    offset: list[Finite]
    cov: list[list[Finite]]
    noise_var: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class FittedRun(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    run_id: str
    source: str  # "workspace" or the database it was read from
    decisions: int = Field(ge=0)


class PolicyFile(BaseModel):
    """The fitted policy as stored: the imputer's medians, the scaler's means and scales, a ridge per action."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["tether.controller-policy"]
    version: Literal[2] = Field(description="2: Bayesian ridges with their uncertainty (1, plain ridges, is refused: "
                                "refit it)")
    target: Literal["validation_heldout_change"]
    metric: str
    k: int = Field(ge=1)
    features: list[str]
    medians: list[Finite]
    means: list[Finite]
    scales: list[Annotated[float, Field(gt=0.0, allow_inf_nan=False)]]
    actions: dict[str, ActionModel]
    fitted_on: list[FittedRun]
    fitted_at: str
    sklearn: str

    @model_validator(mode="after")
    def _shapes(self) -> PolicyFile:
        n = len(self.features)
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}: this tether reads {list(FEATURES)}")
        if not self.actions:
            raise ValueError("no action has a fitted model")
        if any(len(v) != n for v in (self.medians, self.means, self.scales)) or any(
                len(m.coef) != n or len(m.offset) != n or len(m.cov) != n or any(len(row) != n for row in m.cov)
                for m in self.actions.values()):
            raise ValueError(f"every parameter list must have one value per feature ({n})")
        if {"stop", "skip"} & set(self.actions):
            raise ValueError("stop and skip are the safety rules' to choose, never a learned policy's")
        return self


@dataclass(frozen=True)
class FitRow:
    """One measured decision to fit on: its features (FEATURES order, NaN = missing), action and validation
    held-out change (agent/controller/fit.py)."""

    features: tuple[float, ...]
    action: str
    target: float


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a policy file may hold")


def parse_policy(data: bytes, source: str) -> PolicyFile:
    """Validate a policy file's bytes; PolicyFileError names what is wrong."""
    if len(data) > MAX_BYTES:
        raise PolicyFileError(f"{source}: {len(data)} bytes, more than a policy file's {MAX_BYTES}")
    try:
        return PolicyFile.model_validate(json.loads(data, parse_constant=_no_constant))
    except (ValueError, ValidationError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PolicyFileError(f"{source} is not a controller policy file (fit one with `tether controller fit`): "
                              f"{err}") from None


def load_policy(path: Path) -> tuple[PolicyFile, str]:
    """(the policy, the sha256 of its bytes)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PolicyFileError(f"cannot read the controller policy file {path}: {err.strerror or err}") from None
    return parse_policy(data, str(path)), digest(data)


def feature_values(signals: Mapping[str, Any], heldout: Sequence[Sequence[float]]) -> list[float]:
    """The policy's features of a decision, NaN where missing: its logged signals (`monitor.<key>`, pairs, round,
    budget) and the validation held-out curve it read. Used alike to fit and to choose."""
    def num(value: Any) -> float:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan

    scores = [num(point[1]) for point in heldout if len(point) == 2]
    budget, round_no = num(signals.get("budget")), num(signals.get("round"))
    derived = {
        "pairs": num(signals.get("pairs")),
        "round_fraction": round_no / budget if budget and budget > 0 else math.nan,
        "final_round": float(round_no >= budget) if math.isfinite(round_no) and math.isfinite(budget) else math.nan,
        "heldout_last_change": scores[-1] - scores[-2] if len(scores) >= 2 else math.nan,
        "heldout_below_best": max(scores) - scores[-1] if scores else math.nan,
    }
    return [derived[f] if f in derived else num(signals.get(f)) for f in FEATURES]


def predict(policy: PolicyFile, values: Sequence[float]) -> dict[str, tuple[float, float]]:
    """Each fitted action's predicted held-out change for one decision's features (named as FEATURES), with the
    standard deviation of that prediction: what the fit does not know about the mean, not the outcome's noise
    (var = noise_var / n for the centred intercept + (z - offset)' cov (z - offset) for the coefficients)."""
    import numpy as np  # here: the CLI's --help and the store load no numpy

    by_name = dict(zip(FEATURES, values, strict=True))
    x = np.array([by_name.get(f, math.nan) for f in policy.features], dtype=float)
    x = np.where(np.isfinite(x), x, np.array(policy.medians))
    z = np.clip((x - np.array(policy.means)) / np.array(policy.scales), -CLIP, CLIP)
    out: dict[str, tuple[float, float]] = {}
    for action, m in policy.actions.items():
        d = z - np.array(m.offset)
        mean = float(np.dot(m.coef, z) + m.intercept)
        sd = math.sqrt(max(float(m.noise_var) / m.n + float(d @ np.array(m.cov) @ d), 0.0))
        if math.isfinite(mean) and math.isfinite(sd):
            out[action] = (mean, sd)
    return out


@dataclass(frozen=True)
class Learner:
    """An adopted policy as the soft rule's chooser (agent/controller/vocabulary.py `Chooser`)."""

    policy: PolicyFile
    sha256: str
    explore: float
    seed: int
    min_decisions: int  # controller.learned.*: when it may leave the rules' pick
    min_gain: float
    confidence: float

    def choose(self, signals: Mapping[str, Any], heldout: Sequence[tuple[int, float]], permitted: Sequence[str],
               round_no: int, baseline: str) -> LearnedChoice:
        """Pick among `permitted`; `baseline` is the rules' pick, kept unless another trusted action (enough
        decisions) has a predicted gain over it whose lower confidence bound is at least min_gain."""
        import numpy as np

        predicted = predict(self.policy, feature_values(signals, [list(p) for p in heldout]))
        shown: dict[str, float | None] = {a: predicted[a][0] if a in predicted else None for a in permitted}
        sds: dict[str, float | None] = {a: predicted[a][1] if a in predicted else None for a in permitted}
        rng = np.random.default_rng([self.seed, max(round_no, 0)])
        if permitted and rng.random() < self.explore:
            return LearnedChoice(permitted[int(rng.integers(len(permitted)))], shown, True, self.sha256, sds)
        trusted = {a: predicted[a] for a in permitted
                   if a in predicted and self.policy.actions[a].n >= self.min_decisions}
        if baseline in permitted and baseline not in trusted:
            # SPIBB keeps the baseline's own choice where its value is not known well enough to compare.
            return LearnedChoice(baseline, shown, False, self.sha256, sds)
        if not trusted:
            return LearnedChoice(None, shown, False, self.sha256, sds)
        if baseline not in trusted:  # the rules' pick is not permitted (a stop): the best predicted
            best = max(trusted, key=lambda a: (trusted[a][0], -permitted.index(a)))
            return LearnedChoice(best, shown, False, self.sha256, sds)
        z = NormalDist().inv_cdf(self.confidence)
        base_mean, base_sd = trusted[baseline]
        bound = {a: mean - base_mean - z * math.hypot(sd, base_sd)
                 for a, (mean, sd) in trusted.items() if a != baseline}
        best = max(bound, key=lambda a: (bound[a], -permitted.index(a)), default=baseline)
        return LearnedChoice(best if best != baseline and bound[best] >= self.min_gain else baseline, shown, False,
                             self.sha256, sds)
