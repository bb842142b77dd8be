"""The shared vocabulary of tether's rooms: leaf types that several of them name.

Prompts, how to sample and what sampling returns, adapter references and the hashing of artifacts,
monitor keys and the statuses of a check against them, the controller's own actions (each intervention
is named by its module, agent/interventions/<name>.py, and checked by their registry), and
`TetherError`, the root of every tether exception, with its CLI exit code and fix. It imports nothing
of tether, so any room (agent, policies, guardrails, tools, memory) can use it without an import
cycle, and it imports no torch.

Monitor keys: every value a monitor may emit. `MonitorKey` is a `StrEnum`: a key stores in JSON as
its plain string value (old rounds and the store keep working), and compares and hashes equal to it.
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
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal

_HASH_CHUNK = 1 << 20

# -- errors ------------------------------------------------------------------------------------------

# The CLI's exit codes for a failure (0 is success): a check failed or tampering was found; bad usage
# or invalid input, with nothing written.
EXIT_CHECK_FAILED: Final = 1
EXIT_USAGE: Final = 2
ExitCode = Literal[1, 2]


class TetherError(Exception):
    """The root of every error tether raises. `exit_code` is what the CLI exits with when it ends a
    command (the UI answers 403 for 1, 400 for 2); `hint`, when not empty, is the fix, printed after
    the message. Each class sets both for its kind of failure; the message names what and where.
    A class that callers also catch as a builtin (ValueError, KeyError, ...) keeps that as a second base."""

    exit_code: ExitCode = EXIT_CHECK_FAILED
    hint: str = ""


# -- prompts -----------------------------------------------------------------------------------------


def prompt_id(family: str, text: str) -> str:
    """Hash of family + text: stable across processes and seeds (never use hash(), it is salted)."""
    digest = hashlib.sha256(f"{family}\n{text}".encode()).hexdigest()[:8]
    return f"{family}-{digest}"


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    family: str
    split: str  # "train" | "heldout"
    # Excluded from hash/eq so the frozen dataclass stays hashable with a plain (JSON-able) dict.
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "family": self.family,
                "split": self.split, "meta": dict(self.meta)}



# A world's verifier of a reply to a prompt: a score in [0, 1], None where no verifier covers the prompt.
# The evaluation and the monitors use it; the agent's judges never see it.
Oracle = Callable[[Prompt, str], "float | None"]


# -- sampling and what it returns -----------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingSpec:
    """How to sample. ``do_sample=False`` (or ``temperature == 0``) is greedy decoding; with greedy
    decoding the ``n`` samples of a prompt are identical (it is decoded once and repeated)."""

    n: int = 1
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    do_sample: bool = True
    seed: int = 0
    top_k: int = 0  # sample among the k most likely tokens; 0 = off

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"SamplingSpec.n must be >= 1, got {self.n}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingSpec.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"SamplingSpec.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingSpec.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"SamplingSpec.top_k must be >= 0 (0 = off), got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0


@dataclass(frozen=True)
class Generation:
    """One sampled response. ``n_tokens`` counts generated tokens, excluding eos and padding. ``served_by`` is
    the model name a completions server answered with (the adapter it used), None from a local backend."""

    prompt_index: int
    sample_index: int
    text: str
    n_tokens: int
    served_by: str | None = None


@dataclass(frozen=True)
class GenerationStats:
    """Throughput of the last ``generate`` call (wall-clock, tokenisation and decoding included).

    ``tokens`` counts the tokens of every returned sample (a greedy answer repeated ``n`` times
    counts ``n`` times). ``decoded_tokens`` counts the kept tokens of the rows actually decoded and
    ``slot_steps`` the batch rows times decoding steps spent on them (0 where the backend does not
    report it): their ratio is the share of the decoder's work that produced kept tokens.
    """

    tokens: int
    seconds: float
    decoded_tokens: int = 0
    slot_steps: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def slot_efficiency(self) -> float | None:
        return self.decoded_tokens / self.slot_steps if self.slot_steps else None


# -- adapters and the hashing of artifacts ------------------------------------------------------------


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter on disk: a stable id, its directory and the SHA-256 of its weights file."""

    id: str
    path: Path
    sha256: str


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- the controller's actions ---------------------------------------------------------------------------

# The controller's own actions: train, skip or stop the round.
CoreAction = Literal["train", "skip", "stop"]
# An intervention's name. Each is a graph node of its own that leads to the next round, named once, by the
# module that owns it (agent/interventions/<name>.py): the config, the graph, the rules and the report take
# them from the registry there, which refuses an unknown name with a suggestion. A new one is one file.
Intervention = str
# Every action the controller may choose: one of its own, or an intervention.
Action = CoreAction | Intervention
GateOutcome = Literal["approved", "rejected", "failed_invariants", "failed_checks"]


# -- monitor keys -----------------------------------------------------------------------------------------


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
    # drift: how natural the base model finds the policy's samples (a per-token KL estimate's other half)
    BASE_LOGP_MEAN = "base_logp_mean"


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
# counts as fired: the round is never trained on without them (agent/controller/rules.py).
SAFETY_KEYS: frozenset[MonitorKey] = frozenset(
    {MonitorKey.LENGTH_SCORE_CORR, MonitorKey.POSITION_CONSISTENCY, MonitorKey.INVALID_SHARE}
)

# The reserved entry of a round's monitors JSON: {key: why it could not be checked}.
COULD_NOT_CHECK = "_could_not_check"
# The reserved entry of a round's monitors JSON: {family: {family key: value}}.
BY_FAMILY = "_by_family"

# A controller check's outcome: the threshold was crossed, was not, or the value was missing.
CheckStatus = Literal["fired", "ok", "could_not_check"]


class UnknownMonitorKeyError(TetherError, ValueError):
    exit_code = EXIT_USAGE

    def __init__(self, name: str, what: str = "monitor key") -> None:
        known = [k.value for k in MonitorKey]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        self.message = (f"unknown {what} '{name}'{hint} (monitor keys are the members of "
                        "tether_types.MonitorKey: add it there)")
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
        raise ValueError(f"unknown family key '{name}'{hint} (the members of tether_types.FamilyKey)") from None
