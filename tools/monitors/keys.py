"""Monitor keys: every value a monitor may emit, named once, plus the statuses of a check against them.

A leaf module: it imports nothing of tether, so the controller, the nodes, the notebook and the
monitors can all name keys without import cycles. `MonitorKey` is a `StrEnum`: a key stores in
JSON as its plain string value (old rounds and the store keep working), and compares and hashes
equal to that string.

What is stored per round (the round's `monitors` JSON column):

    {"<key>": <finite float>, ...,
     "_could_not_check": {"<key>": "<why>", ...},   # only present when something could not be checked
     "_by_family": {"<family>": {"<family key>": <finite float>, ...}, ...}}  # only when measured

`_by_family` holds per-family values (`FamilyKey`) from the monitors that measure per prompt family
(tools/monitors/families.py, jury.py, margins.py). A family missing from it, or a family key missing
from a family, was not measured (too few judgments, no jury, no earlier pairs). When such a monitor
fails, its round-level keys are under `_could_not_check` and it contributes nothing to `_by_family`.

A key under `_could_not_check` was declared by a monitor that failed (raised, or returned a
non-finite or undeclared value) this round; the reason says which monitor and why. A key that is
simply absent was omitted by a monitor that lacked its input (see tools/monitors/base.py).
"""

from __future__ import annotations

import difflib
from enum import StrEnum
from typing import Literal


class MonitorKey(StrEnum):
    # scores
    SCORE_MEAN = "score_mean"
    SCORE_STD = "score_std"
    INVALID_SHARE = "invalid_share"
    SCORE_MODE_SHARE = "score_mode_share"
    SCORE_ENTROPY = "score_entropy"
    TIE_RATE = "tie_rate"
    # length
    LENGTH_MEAN = "length_mean"
    LENGTH_DRIFT = "length_drift"
    LENGTH_SCORE_CORR = "length_score_corr"
    # pairs
    PAIRS = "pairs"
    PAIR_YIELD = "pair_yield"
    MARGIN_MEAN = "margin_mean"
    # judge_reliability
    PAIRWISE_INVALID_SHARE = "pairwise_invalid_share"
    POSITION_CONSISTENCY = "position_consistency"
    POSITION_FIRST_RATE = "position_first_rate"
    JUDGE_POOL_SIZE = "judge_pool_size"
    JUDGE_POOL_AGREEMENT = "judge_pool_agreement"
    ORACLE_SPEARMAN = "oracle_spearman"
    ORACLE_PAIR_AGREEMENT = "oracle_pair_agreement"
    # diversity and prompt_diversity (both emit embedding_available)
    DISTINCT_1 = "distinct_1"
    DISTINCT_2 = "distinct_2"
    SELF_BLEU = "self_bleu"
    EMBEDDING_AVAILABLE = "embedding_available"
    EMBEDDING_DISPERSION = "embedding_dispersion"
    EMBEDDING_DISPERSION_ROUND = "embedding_dispersion_round"
    PROMPT_DISTINCT_1 = "prompt_distinct_1"
    PROMPT_DISTINCT_2 = "prompt_distinct_2"
    PROMPT_EMBEDDING_DISPERSION = "prompt_embedding_dispersion"
    PROMPT_REUSE = "prompt_reuse"
    # refusals
    OVER_REFUSAL = "over_refusal"
    HARMFUL_COMPLIANCE = "harmful_compliance"
    # progress (held-out evaluation of the active checkpoint and the candidate, by judge and oracle)
    HELDOUT_JUDGE_ACTIVE = "heldout_judge_active"
    HELDOUT_ORACLE_ACTIVE = "heldout_oracle_active"
    HELDOUT_JUDGE_CANDIDATE = "heldout_judge_candidate"
    HELDOUT_ORACLE_CANDIDATE = "heldout_oracle_candidate"
    ORACLE_MEAN = "oracle_mean"
    ORACLE_GAP = "oracle_gap"
    # families: the worst prompt family of the round (its per-family values are under `_by_family`)
    FAMILY_TIE_RATE_MAX = "family_tie_rate_max"
    FAMILY_SCORE_SPREAD_MIN = "family_score_spread_min"
    # jury: judge-judge disagreement inside a jury (its members' scores, from the judgments' details)
    JUDGE_DISAGREEMENT = "judge_disagreement"
    FAMILY_JUDGE_DISAGREEMENT_MAX = "family_judge_disagreement_max"
    # margins: the chosen-rejected gap of the kept pairs narrowing round over round
    MARGIN_COLLAPSE = "margin_collapse"
    FAMILY_MARGIN_COLLAPSE_MAX = "family_margin_collapse_max"


class FamilyKey(StrEnum):
    """A value measured per prompt family, stored under the round's `_by_family` entry. The round-level
    MonitorKey `family_*_max` / `_min` is the worst family's value of the same measure."""

    PROMPTS = "prompts"  # prompts of the family with >= 2 valid judgments (what its other values rest on)
    TIE_RATE = "tie_rate"
    SCORE_SPREAD = "score_spread"
    JUDGE_DISAGREEMENT = "judge_disagreement"
    MARGIN_MEAN = "margin_mean"
    MARGIN_COLLAPSE = "margin_collapse"


# The judge-reliability signals the controller's switch_judge / skip / stop rule reads. One of them
# that could not be checked on a round that would otherwise be trained on (pairs >= min_pairs)
# counts as fired: the round is never trained on without them (agent/controller.py).
SAFETY_KEYS: frozenset[MonitorKey] = frozenset(
    {MonitorKey.LENGTH_SCORE_CORR, MonitorKey.POSITION_CONSISTENCY, MonitorKey.INVALID_SHARE}
)

# The reserved entry of a round's monitors JSON: {key: why it could not be checked}.
COULD_NOT_CHECK = "_could_not_check"
# The reserved entry of a round's monitors JSON: {family: {family key: value}}.
BY_FAMILY = "_by_family"

# A controller check's outcome: the threshold was crossed, was not, or the value was missing.
CheckStatus = Literal["fired", "ok", "could_not_check"]


class UnknownMonitorKeyError(ValueError):
    def __init__(self, name: str, what: str = "monitor key") -> None:
        known = [k.value for k in MonitorKey]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        self.message = (f"unknown {what} '{name}'{hint} (monitor keys are the members of "
                        "tools.monitors.keys.MonitorKey: add it there)")
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def monitor_key(name: str) -> MonitorKey:
    """The key named `name`; raises UnknownMonitorKeyError (with a suggestion) for any other string."""
    try:
        return MonitorKey(name)
    except ValueError:
        raise UnknownMonitorKeyError(name) from None


def family_key(name: str) -> FamilyKey:
    """The per-family key named `name`; raises ValueError naming the known ones for any other string."""
    try:
        return FamilyKey(name)
    except ValueError:
        close = difflib.get_close_matches(name, [k.value for k in FamilyKey], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown family key '{name}'{hint} (the members of tools.monitors.keys.FamilyKey)") from None
