"""Fit a learned controller policy (agent/controller/learned.py) from decision histories with scikit-learn: a
median imputer and a standard scaler over every decision's features, then one Bayesian ridge regressor per action
on the decisions that took it, predicting the validation held-out change over the decision's window. Its weight and
noise precisions are chosen by maximising the evidence on the fit data (MacKay 1992), so no regularisation strength
is set by hand, and its posterior covariance says how sure each prediction is. Pure: the caller gathers the rows
(agent/cli/controller.py) and writes the file.

The target is the validation split's held-out change only, measured with the task's verifiers (or the judge in
use, per controller.heldout_metric) after the round, never the judge scores a round trained on: a policy that
learned to please the judge would have nothing to learn from here (issue 22, meta-level reward hacking).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import sklearn
from sklearn.impute import SimpleImputer
from sklearn.linear_model import BayesianRidge
from sklearn.preprocessing import StandardScaler

from agent.controller.learned import FEATURES, FORMAT, ActionModel, FitRow, FittedRun, PolicyFile
from tether_types import EXIT_USAGE, TetherError

MIN_ROWS = 2  # decisions an action needs before it gets a model of its own


class FitError(TetherError):
    """Too little history to fit (exit 2)."""

    exit_code = EXIT_USAGE


def fit_policy(rows: Sequence[FitRow], fitted_on: Sequence[FittedRun], *, k: int, metric: str,
               now: str) -> tuple[PolicyFile, float]:
    """(the fitted policy, its fit seconds). Raises FitError when no action has MIN_ROWS measured decisions."""
    counts = {a: sum(r.action == a for r in rows) for a in sorted({r.action for r in rows})}
    fittable = [a for a, n in counts.items() if n >= MIN_ROWS and a not in ("stop", "skip")]
    if not fittable:
        raise FitError(f"too few measured decisions to fit: {counts or 'none'} (each action needs {MIN_ROWS}; "
                       "a decision is measured once the rounds of its window are done and evaluated): run more "
                       "rounds, or add runs with --runs / --from-db")
    started = time.perf_counter()
    x = np.array([r.features for r in rows], dtype=float)
    x[~np.isfinite(x)] = np.nan
    imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(x)
    scaler = StandardScaler().fit(imputer.transform(x))
    z = scaler.transform(imputer.transform(x))
    y = np.array([r.target for r in rows], dtype=float)
    actions: dict[str, ActionModel] = {}
    for action in fittable:
        mask = np.array([r.action == action for r in rows])
        model = BayesianRidge().fit(z[mask], y[mask])
        actions[action] = ActionModel(coef=[float(c) for c in model.coef_], intercept=float(model.intercept_),
                                      n=int(mask.sum()), offset=[float(v) for v in model.X_offset_],
                                      cov=[[float(v) for v in row] for row in model.sigma_],
                                      noise_var=1.0 / float(model.alpha_))
    seconds = time.perf_counter() - started
    medians = [float(v) if np.isfinite(v) else 0.0 for v in imputer.statistics_]
    policy = PolicyFile(
        format=FORMAT, version=2, target="validation_heldout_change", metric=metric, k=k, features=list(FEATURES),
        medians=medians, means=[float(v) for v in scaler.mean_], scales=[float(v) for v in scaler.scale_],
        actions=actions, fitted_on=list(fitted_on), fitted_at=now, sklearn=sklearn.__version__)
    return policy, seconds
