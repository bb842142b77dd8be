"""What a fitted controller policy does (`tether controller show`): per action, its value as a function of each
main feature (the features its models weigh most), the others held at their fitted medians, with the standard
deviation of each value (what the fit does not know); as text, JSON and a PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from agent.controller.learned import FEATURES, PolicyFile, predict

MAIN = 4  # features explained
STEPS = (-2.0, -1.0, 0.0, 1.0, 2.0)  # standard deviations from the fitted mean


def main_features(policy: PolicyFile) -> list[str]:
    """The features with the largest weight (per standard deviation) in any action's model."""
    weight = {f: max(abs(m.coef[i]) for m in policy.actions.values()) for i, f in enumerate(policy.features)}
    return sorted(weight, key=lambda f: -weight[f])[:MAIN]


def sweep(policy: PolicyFile, feature: str, steps: tuple[float, ...] = STEPS) -> dict[str, Any]:
    """Each action's predicted held-out change, and its standard deviation, as `feature` moves over `steps`
    standard deviations."""
    i = policy.features.index(feature)
    base = dict(zip(policy.features, policy.medians, strict=True))
    xs = [policy.means[i] + s * policy.scales[i] for s in steps]
    values: dict[str, list[float | None]] = {a: [] for a in policy.actions}
    sds: dict[str, list[float | None]] = {a: [] for a in policy.actions}
    for x in xs:
        row = [base.get(f, math.nan) for f in FEATURES]
        row[FEATURES.index(feature)] = x
        got = predict(policy, row)
        for a in policy.actions:
            values[a].append(got[a][0] if a in got else None)
            sds[a].append(got[a][1] if a in got else None)
    return {"feature": feature, "x": xs, "values": values, "sd": sds}


def explain(policy: PolicyFile, sha256: str) -> dict[str, Any]:
    return {
        "sha256": sha256, "target": policy.target, "metric": policy.metric, "k": policy.k,
        "fitted_on": [r.model_dump() for r in policy.fitted_on], "fitted_at": policy.fitted_at,
        "actions": {a: {"n": m.n, "intercept": m.intercept, "noise_sd": math.sqrt(m.noise_var),
                        "weights": dict(sorted(zip(policy.features, m.coef, strict=True), key=lambda kv: -abs(kv[1])))}
                    for a, m in policy.actions.items()},
        "sweeps": [sweep(policy, f) for f in main_features(policy)],
    }


def text(doc: dict[str, Any]) -> str:
    runs = ", ".join(f"{r['run_id']} ({r['decisions']})" for r in doc["fitted_on"])
    lines = [f"controller policy {doc['sha256'][:12]}: predicts the validation held-out {doc['metric']} change "
             f"over k={doc['k']} round(s) per action (Bayesian ridge); fitted {doc['fitted_at']} "
             f"on {runs}"]
    for action, m in doc["actions"].items():
        top = ", ".join(f"{f} {w:+.4f}" for f, w in list(m["weights"].items())[:3])
        lines.append(f"  {action}: {m['n']} decisions, {m['intercept']:+.4f} at the fitted means, outcome noise sd "
                     f"{m['noise_sd']:.4f}; per sd: {top}")
    for s in doc["sweeps"]:
        lines.append(f"  by {s['feature']} (others at their medians; value ± sd), at "
                     + ", ".join(f"{x:.3g}" for x in s["x"]))
        for action, vals in s["values"].items():
            lines.append(f"    {action:<20} " + " ".join(
                "         n/a" if v is None else f"{v:+.3f}±{sd:.3f}" for v, sd in zip(vals, s["sd"][action],
                                                                                      strict=True)))
    return "\n".join(lines) + "\n"


def plot(doc: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = doc["sweeps"]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4 * len(sweeps), 3.2), squeeze=False)
    for ax, s in zip(axes[0], sweeps, strict=True):
        for action, vals in s["values"].items():
            mean = [math.nan if v is None else v for v in vals]
            sd = [math.nan if v is None else v for v in s["sd"][action]]
            line = ax.plot(s["x"], mean, marker="o", label=action)[0]
            ax.fill_between(s["x"], [m - d for m, d in zip(mean, sd, strict=True)],
                            [m + d for m, d in zip(mean, sd, strict=True)], color=line.get_color(), alpha=0.12)
        ax.set_xlabel(s["feature"])
        ax.set_ylabel("predicted held-out change")
        ax.axhline(0.0, color="grey", linewidth=0.5)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"controller policy {doc['sha256'][:12]} (validation {doc['metric']}, k={doc['k']})")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
